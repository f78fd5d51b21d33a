//! How a node agent's HTTPS endpoint is identified: it publishes its serving certificate's
//! SHA-256 on its Node, and the API server trusts exactly that certificate when it connects.

/// The Node annotation carrying the agent endpoint's certificate fingerprint (lowercase hex).
pub const CERTIFICATE_ANNOTATION: &str = "everynode.io/agent-certificate-sha256";

/// SHA-256 of a certificate's DER bytes, lowercase hex: the value of [`CERTIFICATE_ANNOTATION`].
pub fn certificate_sha256(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lowercase_hex_sha256() {
        assert_eq!(
            certificate_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

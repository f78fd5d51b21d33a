//! The server's credentials in its data directory, generated on first start and reused after:
//! a CA, a serving certificate it signed, an admin bearer token, and a kubeconfig using them.
//! Private keys, the token and the kubeconfig are written with mode 0600.

use base64::Engine;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Credential errors. None is retryable: they need a writable data directory or valid files.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} holds no usable {what}")]
    Unusable { path: PathBuf, what: &'static str },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The PEMs and token the server runs with.
#[derive(Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The client certificate and key the server presents to node agents (upstream's
    /// `--kubelet-client-certificate`), signed by the CA.
    pub agent_client_cert_pem: String,
    pub agent_client_key_pem: String,
    pub token: String,
}

/// Writes a file atomically (temporary file, fsync, rename) with the given mode.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CredentialsError> {
    let err = |source| CredentialsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A fresh admin token: 32 random bytes, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `issue_server_certificates` makes, as PEM.
struct Pki {
    server_cert: String,
    server_key: String,
    agent_client_cert: String,
    agent_client_key: String,
}

/// The CA's parameters. The same every time, so that an issuer rebuilt from the kept key signs
/// certificates that chain to the CA certificate made on first start.
fn ca_params() -> Result<CertificateParams, CredentialsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "everynode-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca_params)
}

/// A new CA: (certificate, key) as PEM.
fn generate_ca() -> Result<(String, String), CredentialsError> {
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
    Ok((ca_cert.pem(), ca_key.serialize_pem()))
}

/// The server's serving certificate for `hosts` and its client certificate towards agents,
/// signed by the CA whose key is `ca_key_pem`.
fn issue_server_certificates(ca_key_pem: &str, hosts: &[String]) -> Result<Pki, CredentialsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params()?, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "everynode-apiserver");
    for host in hosts {
        params
            .subject_alt_names
            .push(match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into()?),
            });
    }
    let cert = params.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "everynode-apiserver-agent-client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer)?;
    Ok(Pki {
        server_cert: cert.pem(),
        server_key: server_key.serialize_pem(),
        agent_client_cert: client_cert.pem(),
        agent_client_key: client_key.serialize_pem(),
    })
}

/// Loads the credentials in `dir`, creating whatever is missing. `hosts` are the names and
/// addresses the serving certificate is valid for (used only when it is generated).
pub fn ensure(dir: &Path, hosts: &[String]) -> Result<Credentials, CredentialsError> {
    let pki = dir.join("pki");
    let ca_key_path = pki.join("ca.key");
    let (ca_path, cert_path, key_path) = (
        pki.join("ca.crt"),
        pki.join("apiserver.crt"),
        pki.join("apiserver.key"),
    );
    let (client_cert_path, client_key_path) = (
        pki.join("apiserver-agent-client.crt"),
        pki.join("apiserver-agent-client.key"),
    );
    // The CA is made once (or comes from the cluster's shared credentials); the server's own
    // certificates are issued from it whenever one is missing.
    if !ca_path.exists() || !ca_key_path.exists() {
        let (ca, ca_key) = generate_ca()?;
        write_file(&ca_key_path, ca_key.as_bytes(), 0o600)?;
        write_file(&ca_path, ca.as_bytes(), 0o644)?;
        for stale in [&cert_path, &key_path, &client_cert_path, &client_key_path] {
            let _ = std::fs::remove_file(stale);
        }
    }
    let leaves = [&cert_path, &key_path, &client_cert_path, &client_key_path];
    if !leaves.iter().all(|p| p.exists()) {
        let pki = issue_server_certificates(&read(&ca_key_path)?, hosts)?;
        write_file(&key_path, pki.server_key.as_bytes(), 0o600)?;
        write_file(&cert_path, pki.server_cert.as_bytes(), 0o644)?;
        write_file(&client_key_path, pki.agent_client_key.as_bytes(), 0o600)?;
        write_file(&client_cert_path, pki.agent_client_cert.as_bytes(), 0o644)?;
    }
    let token_path = dir.join("admin.token");
    if !token_path.exists() {
        write_file(&token_path, new_token().as_bytes(), 0o600)?;
    }
    let token = read(&token_path)?.trim().to_owned();
    if token.is_empty() {
        return Err(CredentialsError::Unusable {
            path: token_path,
            what: "token",
        });
    }
    Ok(Credentials {
        ca_pem: read(&ca_path)?,
        cert_pem: read(&cert_path)?,
        key_pem: read(&key_path)?,
        agent_client_cert_pem: read(&client_cert_path)?,
        agent_client_key_pem: read(&client_key_path)?,
        token,
    })
}

/// A client certificate signed by the CA kept in `dir` (`pki/ca.key`): CN is the user, O the
/// group (one: rcgen keeps one value per attribute type), valid for `days`. Returns
/// (certificate, private key) as PEM. `now` starts its validity (less five minutes of clock
/// skew).
pub fn issue_client_certificate(
    dir: &Path,
    user: &str,
    group: Option<&str>,
    days: i64,
    now: jiff::Timestamp,
) -> Result<(String, String), CredentialsError> {
    let ca_key_path = dir.join("pki").join("ca.key");
    let ca_key =
        KeyPair::from_pem(&read(&ca_key_path)?).map_err(|_| CredentialsError::Unusable {
            path: ca_key_path.clone(),
            what: "CA key",
        })?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    if let Some(group) = group {
        params
            .distinguished_name
            .push(DnType::OrganizationName, group);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = std::time::SystemTime::from(now);
    params.not_before = (now - std::time::Duration::from_secs(300)).into();
    params.not_after =
        (now + std::time::Duration::from_secs(days.max(1).unsigned_abs() * 86_400)).into();
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Signs certificate signing requests with the cluster CA (the `csrsigning` controller's key).
pub struct CsrSigner {
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CsrSigner {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrSigner").finish_non_exhaustive()
    }
}

impl CsrSigner {
    /// The CA kept in `dir` (`pki/ca.key`).
    pub fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let ca_key_path = dir.join("pki").join("ca.key");
        let ca_key =
            KeyPair::from_pem(&read(&ca_key_path)?).map_err(|_| CredentialsError::Unusable {
                path: ca_key_path.clone(),
                what: "CA key",
            })?;
        Ok(CsrSigner {
            issuer: Issuer::new(ca_params()?, ca_key),
        })
    }

    /// A certificate for the subject and names of `request_pem` (whose signature is checked),
    /// with the key usages named in `usages`, valid from `now` (less five minutes of clock
    /// skew) for `valid_for`. Returns it as PEM.
    pub fn sign(
        &self,
        request_pem: &str,
        usages: &[String],
        now: jiff::Timestamp,
        valid_for: std::time::Duration,
    ) -> Result<String, CredentialsError> {
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(request_pem)?;
        let params = &mut request.params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = usages
            .iter()
            .filter_map(|u| match u.as_str() {
                "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
                "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
                "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
                "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
                _ => None,
            })
            .collect();
        params.extended_key_usages = usages
            .iter()
            .filter_map(|u| match u.as_str() {
                "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
                _ => None,
            })
            .collect();
        let serial: [u8; 16] = rand::rng().random();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let now = std::time::SystemTime::from(now);
        params.not_before = (now - std::time::Duration::from_secs(300)).into();
        params.not_after = (now + valid_for).into();
        Ok(request.signed_by(&self.issuer)?.pem())
    }
}

/// `sha256:<hex>` of the CA certificate's public key (its DER SubjectPublicKeyInfo): what
/// `agent --join --ca-cert-hash` pins, as kubeadm's discovery does.
pub fn ca_cert_hash(ca_pem: &str) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&block.contents).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Some(format!(
        "sha256:{}",
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// A kubeconfig for `user` with a client certificate (and its key), both PEM.
pub fn kubeconfig_with_certificate(
    server_url: &str,
    ca_pem: Option<&str>,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca_line = ca_pem
        .map(|pem| format!("    certificate-authority-data: {}\n", b64(pem)))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: everynode\n  cluster:\n    server: {server_url}\n{ca_line}users:\n- name: {user:?}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: everynode\n  context:\n    cluster: everynode\n    user: {user:?}\n    namespace: default\ncurrent-context: everynode\n",
        b64(cert_pem),
        b64(key_pem)
    )
}

/// A kubeconfig for the admin user. `ca_pem` is `None` for plain HTTP.
pub fn kubeconfig(server_url: &str, ca_pem: Option<&str>, token: &str) -> String {
    kubeconfig_for(server_url, ca_pem, "everynode-admin", token, "default")
}

/// A kubeconfig for `user` with a bearer token, its context in `namespace`.
pub fn kubeconfig_for(
    server_url: &str,
    ca_pem: Option<&str>,
    user: &str,
    token: &str,
    namespace: &str,
) -> String {
    let ca_line = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: everynode\n  cluster:\n    server: {server_url}\n{ca_line}users:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: everynode\n  context:\n    cluster: everynode\n    user: {user}\n    namespace: {namespace}\ncurrent-context: everynode\n"
    )
}

/// What serving TLS needs: the rustls configuration, and the check of the client certificate
/// chains it lets through.
#[derive(Clone)]
pub struct TlsServing {
    pub config: Arc<rustls::ServerConfig>,
    pub client_chains: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl TlsServing {
    /// The user a verified client certificate chain names; `None` without a certificate or
    /// when the chain does not lead to the cluster CA (the request may still carry a token).
    pub fn client_user(
        &self,
        chain: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Option<crate::authn::UserInfo> {
        let (leaf, intermediates) = chain?.split_first()?;
        self.client_chains
            .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
            .ok()?;
        crate::authn::user_of_certificate(leaf)
    }
}

/// Asks for a client certificate and accepts any during the handshake (still checking that
/// the client holds its key), so that a certificate from another CA is a 401 from
/// authentication, as upstream answers it, rather than a failed handshake.
#[derive(Debug)]
struct RequestClientCertificate(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for RequestClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls configuration serving these credentials, offering HTTP/2 and HTTP/1.1 and asking
/// for client certificates signed by the cluster CA (CN = user, O = groups).
pub fn tls_config(creds: &Credentials) -> Result<TlsServing, CredentialsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut creds.cert_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let key = rustls_pemfile::private_key(&mut creds.key_pem.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| CredentialsError::Unusable {
            path: PathBuf::from("pki/apiserver.key"),
            what: "private key",
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut creds.ca_pem.as_bytes()).filter_map(Result::ok) {
        roots.add(ca)?;
    }
    let client_chains = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(RequestClientCertificate(Arc::clone(
            &client_chains,
        ))))
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsServing {
        config: Arc::new(config),
        client_chains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_secrets_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first =
            ensure(dir.path(), &["localhost".into(), "127.0.0.1".into()]).expect("generate");
        let again = ensure(dir.path(), &[]).expect("reuse");
        assert_eq!(first.token, again.token);
        assert_eq!(first.ca_pem, again.ca_pem);
        for secret in [
            "admin.token",
            "pki/ca.key",
            "pki/apiserver.key",
            "pki/apiserver-agent-client.key",
        ] {
            let mode = std::fs::metadata(dir.path().join(secret))
                .expect("exists")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{secret}");
        }
        let tls = tls_config(&first).expect("rustls accepts the generated pair");
        // A client certificate issued later chains to the CA made on first start.
        let (cert, _key) = issue_client_certificate(
            dir.path(),
            "system:node:n1",
            Some("system:nodes"),
            1,
            everynode_clock::system().now(),
        )
        .expect("issued");
        let chain: Vec<_> = rustls_pemfile::certs(&mut cert.as_bytes())
            .filter_map(Result::ok)
            .collect();
        let user = tls.client_user(Some(&chain)).expect("verified");
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, ["system:nodes", "system:authenticated"]);
        let other = tempfile::tempdir().expect("tempdir");
        ensure(other.path(), &[]).expect("another CA");
        let (foreign, _) = issue_client_certificate(
            other.path(),
            "mallory",
            None,
            1,
            everynode_clock::system().now(),
        )
        .expect("issued");
        let foreign: Vec<_> = rustls_pemfile::certs(&mut foreign.as_bytes())
            .filter_map(Result::ok)
            .collect();
        assert!(tls.client_user(Some(&foreign)).is_none());
        let kc = kubeconfig("https://127.0.0.1:6443", Some(&first.ca_pem), &first.token);
        assert!(kc.contains("certificate-authority-data: ") && kc.contains(&first.token));
    }
}

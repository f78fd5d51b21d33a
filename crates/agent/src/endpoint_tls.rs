//! TLS of the agent's endpoint. The agent serves with a certificate of its own making, whose
//! SHA-256 it publishes on its Node (`node::CERTIFICATE_ANNOTATION`), and accepts only callers
//! presenting a client certificate signed by the cluster CA: the API server's. No bearer token
//! crosses this channel, so a Node pointing its address at another listener gets no credential
//! it could replay, and the API server, pinning the published fingerprint, talks to nothing else.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// Why the endpoint's TLS could not be set up. Not retryable: the inputs are wrong.
#[derive(Debug, thiserror::Error)]
pub enum EndpointTlsError {
    #[error("cannot make the agent endpoint's certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the cluster CA is needed to check the API server's client certificate: {0}")]
    ClientCa(String),
    #[error("agent endpoint TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The endpoint's serving certificate and key.
pub struct ServingIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServingIdentity {
    /// A fresh self-signed certificate for `names` (addresses and host names).
    pub fn generate(names: &[String]) -> Result<Self, EndpointTlsError> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(names.to_vec())?;
        let cert = params.self_signed(&key)?;
        Ok(ServingIdentity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// SHA-256 of the certificate (DER), lowercase hex: what the Node publishes.
    pub fn sha256(&self) -> String {
        everynode_api::node_endpoint::certificate_sha256(&self.cert)
    }

    /// The server configuration: this certificate, clients verified against `client_ca` (PEM).
    pub fn server_config(
        &self,
        client_ca: &[u8],
    ) -> Result<Arc<rustls::ServerConfig>, EndpointTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &client_ca[..]) {
            let cert = cert.map_err(|e| EndpointTlsError::ClientCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| EndpointTlsError::ClientCa(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(EndpointTlsError::ClientCa(
                "no certificate in the CA data".into(),
            ));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| EndpointTlsError::ClientCa(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

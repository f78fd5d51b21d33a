//! How the API server reaches a node agent's endpoint (`pods/log`): with its own client
//! certificate, signed by the cluster CA, which the agent checks; and trusting exactly the
//! serving certificate whose SHA-256 the agent published on its Node. No bearer token is sent,
//! so a Node that points its address at another listener receives nothing reusable, and the
//! server reads logs only from the agent that registered the Node.

use everynode_api::node_endpoint::certificate_sha256;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;

/// Why no connection to an agent could be prepared. Not retryable: configuration is wrong.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    #[error("the agent client certificate or key is unusable: {0}")]
    Identity(String),
    #[error("agent client TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("agent client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The server's client identity towards agents.
#[derive(Clone)]
pub struct AgentClient {
    certs: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for AgentClient {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

impl AgentClient {
    /// From the PEM certificate and key in the data directory's `pki/`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, AgentClientError> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| AgentClientError::Identity(e.to_string()))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| AgentClientError::Identity(e.to_string()))?
            .ok_or_else(|| AgentClientError::Identity("no private key".into()))?;
        Ok(AgentClient {
            certs,
            key: Arc::new(key),
        })
    }

    /// An HTTPS client that presents this identity and accepts only the server certificate
    /// whose SHA-256 (hex) is `pinned_sha256`.
    pub fn pinned_to(&self, pinned_sha256: &str) -> Result<reqwest::Client, AgentClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedCertificate {
            sha256: pinned_sha256.to_ascii_lowercase(),
            provider: provider.clone(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.certs.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .build()?)
    }
}

/// Accepts exactly one certificate, by fingerprint: the one the agent published. Signatures
/// are still checked, so the peer must hold that certificate's key.
#[derive(Debug)]
struct PinnedCertificate {
    sha256: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if certificate_sha256(end_entity) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the agent's certificate is not the one its Node publishes".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

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

    /// TLS that presents this identity and accepts only the server certificate whose SHA-256
    /// (hex) is `pinned_sha256`, offering the protocols `alpn`.
    fn pinned_config(
        &self,
        pinned_sha256: &str,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, AgentClientError> {
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
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// An HTTPS client that presents this identity and accepts only the server certificate
    /// whose SHA-256 (hex) is `pinned_sha256`.
    pub fn pinned_to(&self, pinned_sha256: &str) -> Result<reqwest::Client, AgentClientError> {
        let config = self.pinned_config(pinned_sha256, &[b"h2", b"http/1.1"])?;
        Ok(reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .build()?)
    }

    /// A WebSocket to `url` (`wss://address/...`) on the agent whose certificate is
    /// `pinned_sha256`, asking for `protocol`. An agent that answers without upgrading gives its
    /// status and text.
    pub async fn websocket(
        &self,
        pinned_sha256: &str,
        address: &str,
        path_and_query: &str,
        protocol: &str,
    ) -> Result<AgentSocket, WebSocketRefusal> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let config = self
            .pinned_config(pinned_sha256, &[b"http/1.1"])
            .map_err(|e| WebSocketRefusal::Unreachable(e.to_string()))?;
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_matches(['[', ']']);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| WebSocketRefusal::Unreachable(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| WebSocketRefusal::Unreachable(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| WebSocketRefusal::Unreachable(e.to_string()))?;
        let mut request = format!("wss://{address}{path_and_query}")
            .into_client_request()
            .map_err(|e| WebSocketRefusal::Unreachable(e.to_string()))?;
        let value = protocol
            .parse()
            .map_err(|_| WebSocketRefusal::Unreachable("bad protocol".into()))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
        match tokio_tungstenite::client_async(request, tls).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let text = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default();
                Err(WebSocketRefusal::Refused { status, text })
            }
            Err(e) => Err(WebSocketRefusal::Unreachable(e.to_string())),
        }
    }
}

/// A WebSocket to an agent.
pub type AgentSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Why no WebSocket to an agent opened. Not retryable as such: the client may try again.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketRefusal {
    #[error("{0}")]
    Unreachable(String),
    /// The agent answered `status` with `text` instead of upgrading.
    #[error("{text}")]
    Refused { status: u16, text: String },
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

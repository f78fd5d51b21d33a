//! The console's way to the Kubernetes API: a `kube::Client` carrying the signed-in user's token,
//! to the API server's router in this process or to another cluster's API server.
//!
//! Every page reads and every button writes as kubectl would, as that user, through
//! authentication, validation and admission, with no second path into storage; the same pages
//! work against any cluster (`everynode console --kubeconfig`).

use crate::error::ConsoleError;
use axum::Router;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use bytes::Bytes;
use everynode_clock::SharedClock;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Content types the console writes with.
pub const JSON: &str = "application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
pub const YAML: &str = "application/yaml";

/// Where the console's requests go.
#[derive(Clone)]
pub enum Backend {
    /// The API server's router, in this process.
    Router(Router),
    /// Another cluster's API server: its address and CA from a kubeconfig; the signed-in user's
    /// token is the credential.
    Remote(Box<kube::Config>),
}

impl Backend {
    /// A client of the backend that sends `token` with every request.
    pub fn client(&self, token: &str) -> Result<kube::Client, ConsoleError> {
        match self {
            Backend::Router(router) => {
                let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ConsoleError::Unauthorized)?;
                let service = tower::ServiceBuilder::new()
                    .map_request(move |mut request: Request<kube::client::Body>| {
                        request
                            .headers_mut()
                            .insert(header::AUTHORIZATION, bearer.clone());
                        request
                    })
                    .service(router.clone());
                Ok(kube::Client::new(service, "default"))
            }
            Backend::Remote(config) => {
                let mut config = (**config).clone();
                config.auth_info = kube::config::AuthInfo {
                    token: Some(token.to_owned().into()),
                    ..Default::default()
                };
                kube::Client::try_from(config).map_err(|e| {
                    ConsoleError::Internal(format!("a client for {}: {e}", config_url(self)))
                })
            }
        }
    }
}

fn config_url(backend: &Backend) -> String {
    match backend {
        Backend::Router(_) => "this server".into(),
        Backend::Remote(config) => config.cluster_url.to_string(),
    }
}

/// Decodes an answer as the type the console reads it as.
fn decode<K: DeserializeOwned>(path: &str, value: Value) -> Result<K, ConsoleError> {
    serde_json::from_value(value)
        .map_err(|e| ConsoleError::Internal(format!("decoding the answer to {path}: {e}")))
}

/// An API client for one user.
#[derive(Clone)]
pub struct ApiClient {
    client: kube::Client,
    clock: SharedClock,
}

impl ApiClient {
    /// A client of `backend` as the user whose token this is.
    pub fn new(backend: &Backend, token: &str, clock: SharedClock) -> Result<Self, ConsoleError> {
        Ok(ApiClient {
            client: backend.client(token)?,
            clock,
        })
    }

    /// The time by the console's clock: ages on the pages, `restartedAt` of a redeploy.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<axum::http::Response<kube::client::Body>, ConsoleError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, JSON)
            .header(header::USER_AGENT, "everynode-console/v1");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = request
            .body(kube::client::Body::from(body))
            .map_err(|e| ConsoleError::Internal(format!("building a request for {path}: {e}")))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| ConsoleError::Internal(format!("{path}: {e}")))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(ConsoleError::Unauthorized);
        }
        Ok(response)
    }

    /// The whole body of an answer.
    async fn bytes(
        path: &str,
        response: axum::http::Response<kube::client::Body>,
    ) -> Result<(StatusCode, Bytes), ConsoleError> {
        let code = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ConsoleError::Internal(format!("reading {path}: {e}")))?
            .to_bytes();
        Ok((code, bytes))
    }

    /// A request whose answer is one JSON document; a non-2xx answer becomes `ConsoleError::Api`
    /// with the server's `Status`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value, ConsoleError> {
        let response = self.call(method, path, content_type, body).await?;
        let (code, bytes) = Self::bytes(path, response).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if code.is_success() {
            Ok(value)
        } else {
            Err(ConsoleError::api(code, value))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ConsoleError> {
        self.send(Method::GET, path, None, Vec::new()).await
    }

    /// One object, typed.
    pub async fn get_as<K: DeserializeOwned>(&self, path: &str) -> Result<K, ConsoleError> {
        decode(path, self.get(path).await?)
    }

    /// The `items` of a list, typed.
    pub async fn list_as<K: DeserializeOwned>(&self, path: &str) -> Result<Vec<K>, ConsoleError> {
        self.list(path)
            .await?
            .into_iter()
            .map(|item| decode(path, item))
            .collect()
    }

    /// The `items` of a list.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ConsoleError> {
        let mut list = self.get(path).await?;
        match list.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => Ok(items),
            _ => Ok(Vec::new()),
        }
    }

    pub async fn write(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Value, ConsoleError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ConsoleError::Internal(format!("encoding a body for {path}: {e}")))?;
        self.send(method, path, Some(content_type), bytes).await
    }

    /// Plain text (pod logs). Errors still come back as a `Status`.
    pub async fn text(&self, path: &str) -> Result<String, ConsoleError> {
        let response = self.call(Method::GET, path, None, Vec::new()).await?;
        let (code, bytes) = Self::bytes(path, response).await?;
        if code.is_success() {
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            let status = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Err(ConsoleError::api(code, status))
        }
    }

    /// The body of a streaming answer (a followed log), chunk by chunk.
    pub async fn byte_stream(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static, ConsoleError> {
        let response = self.call(Method::GET, path, None, Vec::new()).await?;
        let code = response.status();
        if !code.is_success() {
            let (_, bytes) = Self::bytes(path, response).await?;
            let status = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(ConsoleError::api(code, status));
        }
        Ok(response
            .into_body()
            .into_data_stream()
            .take_while(|chunk| std::future::ready(chunk.is_ok()))
            .filter_map(|chunk| std::future::ready(chunk.ok())))
    }

    /// A watch (`path` includes `watch=true`): one JSON event per item. Ends with the watch.
    pub async fn watch(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Value> + Send + 'static, ConsoleError> {
        let chunks = self.byte_stream(path).await?;
        let lines = futures::stream::unfold(
            (Box::pin(chunks), Vec::<u8>::new()),
            |(mut chunks, mut pending)| async move {
                loop {
                    if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                            return Some((event, (chunks, pending)));
                        }
                        continue;
                    }
                    let chunk = chunks.next().await?;
                    pending.extend_from_slice(&chunk);
                }
            },
        );
        Ok(lines)
    }
}

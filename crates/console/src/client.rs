//! The console's way to the Kubernetes API: HTTP requests carrying the signed-in user's token.
//!
//! The console holds the API server's router and sends it whole requests (authentication,
//! validation and admission included), so every page reads and every button writes exactly as
//! kubectl would, as that user, with no second path into storage.

use crate::error::ConsoleError;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use everynode_clock::SharedClock;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tower::ServiceExt;

/// Content types the console writes with.
pub const JSON: &str = "application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
pub const YAML: &str = "application/yaml";

/// An API client for one user.
#[derive(Clone)]
pub struct ApiClient {
    api: Router,
    token: String,
    clock: SharedClock,
}

impl ApiClient {
    pub fn new(api: Router, token: String, clock: SharedClock) -> Self {
        ApiClient { api, token, clock }
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
    ) -> Result<axum::http::Response<Body>, ConsoleError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, JSON)
            .header(header::USER_AGENT, "everynode-console/v1");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let request = request
            .body(Body::from(body))
            .map_err(|e| ConsoleError::Internal(format!("building a request for {path}: {e}")))?;
        let response = self
            .api
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ConsoleError::Internal(format!("{path}: {e}")))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(ConsoleError::Unauthorized);
        }
        Ok(response)
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
        let code = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| ConsoleError::Internal(format!("reading {path}: {e}")))?;
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
        let code = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| ConsoleError::Internal(format!("reading {path}: {e}")))?;
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
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
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

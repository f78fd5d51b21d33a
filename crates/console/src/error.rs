//! What can go wrong behind a console page, and what the browser gets for it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

/// One problem the API server names: a field path (may be empty) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No token, or one the API server refuses: sign in again. Not retryable as is.
    #[error("sign in with a token to use the console")]
    Unauthorized,
    /// The API server refused the request; its `Status` says why. Retryable when the code is 409
    /// (someone else wrote first) or 5xx.
    #[error("{message}")]
    Api {
        code: StatusCode,
        message: String,
        causes: Vec<Cause>,
    },
    /// The browser sent something the console cannot read (a form or YAML it cannot parse).
    #[error("{0}")]
    BadInput(String),
    /// A fault in the console itself. Not retryable.
    #[error("console error: {0}")]
    Internal(String),
}

impl ConsoleError {
    pub fn api(code: StatusCode, status: Value) -> Self {
        let message = status
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| match &status {
                Value::String(s) => s.clone(),
                _ => code.to_string(),
            });
        let causes = status
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .map(|c| Cause {
                        field: c
                            .get("field")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        message: c
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ConsoleError::Api {
            code,
            message,
            causes,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Unauthorized => StatusCode::UNAUTHORIZED,
            ConsoleError::Api { code, .. } => *code,
            ConsoleError::BadInput(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn causes(&self) -> &[Cause] {
        match self {
            ConsoleError::Api { causes, .. } => causes,
            _ => &[],
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == StatusCode::NOT_FOUND
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if matches!(self, ConsoleError::Unauthorized) {
            return Redirect::to("/ui/login").into_response();
        }
        let page = crate::layout::error_page(&self);
        (self.status(), page).into_response()
    }
}

pub type ConsoleResult<T> = Result<T, ConsoleError>;

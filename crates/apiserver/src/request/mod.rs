//! A resource request as types: what the path addresses ([`ResourcePath`], with a
//! [`Subresource`]), the raw query ([`Query`]) and each verb's options decoded from it
//! ([`options`]). [`ResourceRequest`] is the axum extractor that yields the first two; each
//! handler decodes the options its verb takes.

pub mod options;
mod path;
mod query;

pub use path::{ResourcePath, Subresource, parse_path};
pub use query::Query;

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// A request for a served resource: the resolved path and the query. A path that names no
/// served resource or subresource is a 404 `Status`; a malformed query string a 400.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub path: ResourcePath,
    pub query: Query,
    /// The path as the client sent it, for messages.
    pub raw_path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ResourceRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let path = parse_path(parts.uri.path()).ok_or_else(ApiError::no_route)?;
        let query = Query::parse(parts.uri.query())?;
        Ok(ResourceRequest {
            path,
            query,
            raw_path: parts.uri.path().to_owned(),
        })
    }
}

//! Responses: JSON bodies, `Warning` headers, and Table negotiation.

use crate::request::options::IncludeObjectPolicy;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use everynode_api::table::IncludeObject;
use serde_json::Value;

/// A JSON body with `code`.
pub fn json(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// A 200 JSON body.
pub fn ok(body: &Value) -> Response {
    json(StatusCode::OK, body)
}

/// 201 for a write that created the object, else 200.
pub fn written(created: bool, body: &Value) -> Response {
    json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        body,
    )
}

/// Adds upstream-style `Warning` headers.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` asks for a Table; `includeObject`
/// says what each row carries. `None` when no Table is asked for.
pub fn table_request(headers: &HeaderMap, include: IncludeObjectPolicy) -> Option<IncludeObject> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wants = accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
    });
    wants.then_some(match include {
        IncludeObjectPolicy::None => IncludeObject::None,
        IncludeObjectPolicy::Metadata => IncludeObject::Metadata,
        IncludeObjectPolicy::Object => IncludeObject::Object,
    })
}

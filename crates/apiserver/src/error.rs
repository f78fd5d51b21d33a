//! API errors. Every error knows its HTTP status and renders as a `metav1.Status` body naming the
//! object, the field paths and the reason, as upstream's `apierrors` do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use everynode_api::field::{FieldError, aggregate_message};
use everynode_api::registry::Resource;
use serde_json::{Value, json};

/// An error answered to an API client. Whether a client may retry follows from the status:
/// 409 Conflict, 429, 500 and 504 are worth retrying; 4xx input errors are not.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    /// Upstream's `StatusReason`; empty for plain internal errors.
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 for an object of a resource.
    pub fn not_found(res: &Resource, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", res.group_resource()),
        )
        .with_details(json!({"name": name, "group": res.group, "kind": res.plural}))
    }

    /// 404 for an object of a resource that is not stored (`nodemetrics.metrics.k8s.io "x"
    /// not found`).
    pub fn not_found_in(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource}.{group} \"{name}\" not found"),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    /// 404 for a path that names no resource.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 on create of an existing name.
    pub fn already_exists(res: &Resource, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.group_resource()),
        )
        .with_details(json!({"name": name, "group": res.group, "kind": res.plural}))
    }

    /// 409 on a write against a stale resourceVersion or a failed precondition.
    pub fn conflict(res: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                res.group_resource()
            ),
        )
        .with_details(json!({"name": name, "group": res.group, "kind": res.plural}))
    }

    /// 409 for a server-side apply that would change fields other managers own; one cause
    /// (reason `FieldManagerConflict`) per field, as upstream's `NewApplyConflict`.
    pub fn apply_conflict(conflicts: &everynode_apimachinery::managed_fields::Conflicts) -> Self {
        let causes: Vec<Value> = conflicts
            .0
            .iter()
            .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.field}))
            .collect();
        Self::new(StatusCode::CONFLICT, "Conflict", conflicts.to_string())
            .with_details(json!({"causes": causes}))
    }

    /// The usual stale-resourceVersion conflict.
    pub fn modified(res: &Resource, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error.
    pub fn invalid(res: &Resource, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid_kind(res.group, res.kind, name, errors)
    }

    /// 422 for an object of a kind that is not a stored resource (the access reviews).
    pub fn invalid_kind(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let group_kind = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.cause_reason(), "message": e.body(), "field": e.field.as_str()}))
            .collect();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{group_kind} \"{name}\" is invalid: {}",
                aggregate_message(errors)
            ),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// 422 for invalid `PatchOptions` (a missing fieldManager on apply, force elsewhere).
    pub fn unprocessable_patch_options(field: &str, detail: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {detail}"),
        )
        .with_details(
            json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
            {"reason": "FieldValueInvalid", "message": detail, "field": field}]}),
        )
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403.
    pub fn forbidden(res: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", res.group_resource()),
        )
        .with_details(json!({"name": name, "group": res.group, "kind": res.plural}))
    }

    /// 403 with a free message (namespace lifecycle).
    pub fn forbidden_message(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 405.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    /// 410 for a watch or continue token older than the kept history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 413: a request, or what it would make of an object, is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            message,
        )
    }

    /// 429: over the in-flight request limits; the client retries after a second.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
    }

    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"
            ),
        )
    }

    /// 500 with no reason, as upstream answers plain errors.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "", message)
    }

    /// 500 InternalError, for storage failures.
    pub fn storage(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// 504 when the cache cannot reach the requested resourceVersion in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code.as_u16(),
        });
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }

    /// Maps a storage error for `name` of `res`.
    pub fn from_store(res: &Resource, name: &str, e: everynode_store::Error) -> Self {
        use everynode_store::Error as E;
        match e {
            E::AlreadyExists(_) => Self::already_exists(res, name),
            E::NotFound(_) => Self::not_found(res, name),
            E::Conflict { .. } => Self::modified(res, name),
            E::Compacted { requested, oldest } => {
                Self::gone(format!("too old resource version: {requested} ({oldest})"))
            }
            E::Io(_) | E::Closed => Self::storage(e),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (
            self.code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use everynode_api::field::Path;
    use everynode_api::registry::find;

    #[test]
    fn invalid_names_object_field_and_reason() {
        let ds = find("apps", "v1", "daemonsets").expect("served");
        let e = ApiError::invalid(
            ds,
            "foo",
            &[FieldError::forbidden(
                &Path::root("spec").child("x"),
                "nope",
            )],
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(
            s["message"],
            "DaemonSet.apps \"foo\" is invalid: spec.x: Forbidden: nope"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "spec.x");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueForbidden");
        assert_eq!(
            ApiError::not_found(ds, "foo").message,
            "daemonsets.apps \"foo\" not found"
        );
        assert!(ApiError::internal("x").to_status().get("reason").is_none());
    }
}

//! The review APIs, create-only and stored nowhere: `SelfSubjectAccessReview`,
//! `SubjectAccessReview`, `LocalSubjectAccessReview` and `SelfSubjectRulesReview`
//! (`authorization.k8s.io/v1`), and `SelfSubjectReview` (`authentication.k8s.io/v1`). They
//! are what `kubectl auth can-i [--list]` and `kubectl auth whoami` ask.

use super::attributes::Attributes;
use super::{Authorizer, Decision};
use crate::authn::UserInfo;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::response::json as respond;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use everynode_api::field::{ErrorList, FieldError, Path as FieldPath};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const AUTHORIZATION: &str = "authorization.k8s.io";
pub const AUTHENTICATION: &str = "authentication.k8s.io";

/// The review resources, for discovery: (group, plural, kind, namespaced).
pub const RESOURCES: &[(&str, &str, &str, bool)] = &[
    (
        AUTHENTICATION,
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
    ),
    (
        AUTHORIZATION,
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        true,
    ),
    (
        AUTHORIZATION,
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
    ),
    (
        AUTHORIZATION,
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        false,
    ),
    (
        AUTHORIZATION,
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
    ),
];

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The attributes a review's spec asks about, or the 422 upstream gives.
fn spec_attributes(kind: &str, spec: &Value) -> ApiResult<Attributes> {
    let path = FieldPath::root("spec");
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let mut errs = ErrorList::new();
    let attributes = match (resource, non_resource) {
        (Some(r), None) => Attributes::resource(
            text(r, "verb"),
            text(r, "group"),
            text(r, "resource"),
            text(r, "subresource"),
            text(r, "namespace"),
            text(r, "name"),
        ),
        (None, Some(n)) => Attributes::non_resource(text(n, "verb"), text(n, "path")),
        (Some(_), Some(_)) => {
            errs.push(FieldError::invalid(
                &path.child("nonResourceAttributes"),
                everynode_api::field::BadValue::Raw(
                    "&authorization.NonResourceAttributes{...}".into(),
                ),
                "cannot be specified in combination with resourceAttributes",
            ));
            Attributes::default()
        }
        (None, None) => {
            errs.push(FieldError::required(
                &path.child("resourceAttributes"),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
            Attributes::default()
        }
    };
    if errs.is_empty() {
        Ok(attributes)
    } else {
        Err(ApiError::invalid_kind(AUTHORIZATION, kind, "", &errs))
    }
}

fn answer(mut review: Value, status: Value) -> Response {
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = status;
    respond(StatusCode::CREATED, &review)
}

fn access_status(decision: &Decision) -> Value {
    match decision {
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
    }
}

fn authorizer(registry: &Registry) -> &Authorizer {
    &registry.authz
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`
pub async fn self_subject_access(
    State(registry): State<Arc<Registry>>,
    Extension(user): Extension<UserInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let review = body::object(&headers, &body)?;
        let a = spec_attributes("SelfSubjectAccessReview", &review["spec"])?;
        let decision = authorizer(&registry).authorize(&user, &a);
        Ok::<_, ApiError>(answer(review, access_status(&decision)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The user a `SubjectAccessReview` spec names.
fn spec_user(kind: &str, spec: &Value) -> ApiResult<UserInfo> {
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let name = text(spec, "user").to_owned();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid_kind(
            AUTHORIZATION,
            kind,
            "",
            &[FieldError::invalid(
                &FieldPath::root("spec").child("user"),
                "",
                "at least one of user or group must be specified",
            )],
        ));
    }
    let extra: BTreeMap<String, Vec<String>> =
        serde_json::from_value(spec["extra"].clone()).unwrap_or_default();
    Ok(UserInfo {
        name,
        uid: text(spec, "uid").to_owned(),
        groups,
        extra,
    })
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`
pub async fn subject_access(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let review = body::object(&headers, &body)?;
        let subject = spec_user("SubjectAccessReview", &review["spec"])?;
        let a = spec_attributes("SubjectAccessReview", &review["spec"])?;
        let decision = authorizer(&registry).authorize(&subject, &a);
        Ok::<_, ApiError>(answer(review, access_status(&decision)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews`
pub async fn local_subject_access(
    State(registry): State<Arc<Registry>>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let review = body::object(&headers, &body)?;
        let kind = "LocalSubjectAccessReview";
        let subject = spec_user(kind, &review["spec"])?;
        let a = spec_attributes(kind, &review["spec"])?;
        if !a.resource_request || a.namespace != namespace {
            let field = if a.resource_request {
                FieldPath::root("spec")
                    .child("resourceAttributes")
                    .child("namespace")
            } else {
                FieldPath::root("spec").child("nonResourceAttributes")
            };
            let message = if a.resource_request {
                "must match metadata.namespace"
            } else {
                "disallowed on this kind of request"
            };
            return Err(ApiError::invalid_kind(
                AUTHORIZATION,
                kind,
                "",
                &[FieldError::invalid(&field, a.namespace.as_str(), message)],
            ));
        }
        let decision = authorizer(&registry).authorize(&subject, &a);
        let mut review = review;
        review["metadata"] = json!({"namespace": namespace});
        let mut response = answer(review, access_status(&decision));
        *response.status_mut() = StatusCode::CREATED;
        Ok(response)
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`
pub async fn self_subject_rules(
    State(registry): State<Arc<Registry>>,
    Extension(user): Extension<UserInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let review = body::object(&headers, &body)?;
        let namespace = text(&review["spec"], "namespace").to_owned();
        if namespace.is_empty() {
            return Err(ApiError::invalid_kind(
                AUTHORIZATION,
                "SelfSubjectRulesReview",
                "",
                &[FieldError::required(
                    &FieldPath::root("spec").child("namespace"),
                    "",
                )],
            ));
        }
        let rules = authorizer(&registry).rules_for(&user, &namespace);
        let (resource, non_resource): (Vec<_>, Vec<_>) =
            rules.iter().partition(|r| r.non_resource_urls.is_empty());
        let resource_rules: Vec<Value> = resource
            .iter()
            .map(|r| {
                let mut v =
                    json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                if !r.resource_names.is_empty() {
                    v["resourceNames"] = json!(r.resource_names);
                }
                v
            })
            .collect();
        let non_resource_rules: Vec<Value> = non_resource
            .iter()
            .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
            .collect();
        Ok(answer(
            review,
            json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false}),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`
pub async fn self_subject(
    Extension(user): Extension<UserInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let review = body::object(&headers, &body)?;
        let mut info = json!({"username": user.name, "groups": user.groups});
        if !user.uid.is_empty() {
            info["uid"] = json!(user.uid);
        }
        if !user.extra.is_empty() {
            info["extra"] = json!(user.extra);
        }
        Ok::<_, ApiError>(answer(review, json!({"userInfo": info})))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

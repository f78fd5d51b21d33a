//! The HTTP surface: routes, verbs, content negotiation. Thin: the work happens in `api`.

use crate::api::{Api, DeleteOptions, Deleted, UpdateMode};
use crate::auth::{Tokens, authenticate};
use crate::cache::Filter;
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::object::parse_rv;
use crate::request::{Query, ResourcePath, parse_path};
use crate::watch::{self, WatchParams};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use everynode_api::registry::{Kind, Resource};
use everynode_api::table::{IncludeObject, table};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Upstream's request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// The whole router, authentication included.
pub fn router(api: Arc<Api>, tokens: Tokens) -> Router {
    Router::new()
        .route("/version", get(|| async { ok(&discovery::version()) }))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .route("/api", get(|| async { ok(&discovery::core_versions()) }))
        .route(
            "/api/v1",
            get(|| async {
                discovery::resources("", "v1")
                    .map_or_else(|| ApiError::no_route().into_response(), |d| ok(&d))
            }),
        )
        .route("/apis", get(|| async { ok(&discovery::groups()) }))
        .route(
            "/apis/{group}",
            get(|Path(group): Path<String>| async move {
                discovery::group(&group)
                    .map_or_else(|| ApiError::no_route().into_response(), |d| ok(&d))
            }),
        )
        .route(
            "/apis/{group}/{version}",
            get(
                |Path((group, version)): Path<(String, String)>| async move {
                    discovery::resources(&group, &version)
                        .map_or_else(|| ApiError::no_route().into_response(), |d| ok(&d))
                },
            ),
        )
        .route("/openapi/v2", get(crate::openapi::v2))
        .route("/openapi/v3", get(crate::openapi::index))
        .route("/openapi/v3/{*path}", get(crate::openapi::document))
        .fallback(resource_request)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(tokens, authenticate))
        .with_state(api)
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    match api.cache.wait_for(0, Duration::from_millis(1)).await {
        Ok(()) => "ok".into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "[-]watch-cache failed: not synced yet\nreadyz check failed",
        )
            .into_response(),
    }
}

async fn resource_request(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&api, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, path = uri.path(), code = e.code.as_u16(), message = %e.message, "request failed");
            e.into_response()
        }
    }
}

/// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` asks for a Table; `includeObject`
/// says what each row carries.
fn table_request(headers: &HeaderMap, q: &Query) -> Option<IncludeObject> {
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
    wants.then(|| match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    })
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Parses a YAML (or JSON, which is YAML) body; errors name the line and column.
fn yaml_body(body: &Bytes) -> ApiResult<Value> {
    serde_yaml_ng::from_slice(body).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        ApiError::bad_request(format!("error converting YAML to JSON: yaml: {at}{msg}"))
    })
}

/// The field manager of a write: `fieldManager`, else the client's user agent up to its first
/// `/` (upstream's default), so kubectl's `kubectl-edit`, `kubectl-label`, ... own what they set.
fn field_manager(q: &Query, headers: &HeaderMap) -> ApiResult<String> {
    if let Some(m) = requested_field_manager(q)? {
        return Ok(m.to_owned());
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let prefix: String = agent
        .split('/')
        .next()
        .unwrap_or("")
        .chars()
        .take(128)
        .collect();
    Ok(if prefix.is_empty() {
        "unknown".to_owned()
    } else {
        prefix
    })
}

/// The `fieldManager` parameter, when given: at most 128 characters, as upstream allows.
fn requested_field_manager(q: &Query) -> ApiResult<Option<&str>> {
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) if m.len() > 128 => Err(ApiError::bad_request(format!(
            "invalid fieldManager: may not be more than 128 characters, got {}",
            m.len()
        ))),
        other => Ok(other),
    }
}

/// Parses a JSON or YAML object body. YAML errors name the line and column.
fn json_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let ct = content_type(headers);
    let v: Value = match ct.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => yaml_body(body)?,
        "application/vnd.kubernetes.protobuf" => everynode_apimachinery::protobuf::decode(body)
            .map_err(|e| match e {
                everynode_apimachinery::protobuf::ProtobufError::Unsupported { .. } => {
                    let mut err =
                        ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf");
                    err.message = e.to_string();
                    err
                }
                other => ApiError::bad_request(other.to_string()),
            })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; the body is not an object",
        ));
    }
    Ok(v)
}

/// `fieldValidation`: what to do with fields the schema does not declare.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn field_validation(q: &Query) -> ApiResult<FieldValidation> {
    match q.get("fieldValidation").unwrap_or("") {
        // Upstream's default since v1.23.
        "" | "Warn" => Ok(FieldValidation::Warn),
        "Ignore" => Ok(FieldValidation::Ignore),
        "Strict" => Ok(FieldValidation::Strict),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}"
        ))),
    }
}

/// The object a create or an update sends, the field-validation warnings about it, and its
/// field manager.
fn written_object(
    res: &'static Resource,
    namespace: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    q: &Query,
) -> ApiResult<(Value, Vec<String>, String)> {
    let raw = json_body(headers, body)?;
    let warnings = check_fields(
        res,
        namespace,
        &raw,
        &duplicated_fields(headers, body),
        field_validation(q)?,
    )?;
    Ok((raw, warnings, field_manager(q, headers)?))
}

/// Keys a request body repeats, by dotted path, for the body types that are maps.
fn duplicated_fields(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    use everynode_apimachinery::duplicate_fields::{in_json, in_yaml};
    match content_type(headers).as_str() {
        ""
        | "application/json"
        | "*/*"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => in_json(body),
        "application/yaml"
        | "application/x-yaml"
        | "text/yaml"
        | "application/apply-patch+yaml" => in_yaml(body),
        _ => Vec::new(),
    }
}

/// Checks a body for undeclared and repeated fields: 400 under Strict, warnings under Warn.
///
/// Under Strict the message starts as upstream's strict decoding error; when the object is also
/// invalid once the unknown fields are gone (fields one level too high usually leave required ones
/// missing), that is said too, so one round trip shows everything to fix. Every problem is also a
/// `details.causes` entry with its field path.
fn check_fields(
    res: &'static Resource,
    namespace: Option<&str>,
    raw: &Value,
    duplicated: &[String],
    mode: FieldValidation,
) -> ApiResult<Vec<String>> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let Ok(decoded) = res.decode(raw.clone()) else {
        // Type errors are reported by the decode that follows, with their own message.
        return Ok(Vec::new());
    };
    let paths = everynode_api::registry::unknown_fields(raw, &decoded);
    let problems: Vec<String> = duplicated
        .iter()
        .map(|p| format!("duplicate field \"{p}\""))
        .chain(paths.iter().map(|p| format!("unknown field \"{p}\"")))
        .collect();
    if mode == FieldValidation::Strict && !problems.is_empty() {
        let mut causes: Vec<Value> = duplicated
            .iter()
            .map(|p| json!({"reason": "FieldValueDuplicate", "message": "duplicate field", "field": p}))
            .chain(paths.iter().map(
                |p| json!({"reason": "FieldValueUnknown", "message": "unknown field", "field": p}),
            ))
            .collect();
        let mut message = format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            res.kind,
            res.version,
            res.kind,
            problems.join(", ")
        );
        let mut obj = decoded;
        if res.namespaced
            && let Some(ns) = namespace
        {
            crate::object::set_meta(&mut obj, "namespace", json!(ns));
        }
        everynode_api::defaults::apply(res.id, &mut obj);
        let invalid = everynode_api::validation::validate_create(res, &obj);
        if !invalid.is_empty() {
            message.push_str(&format!(
                "; without them the object is invalid: {}",
                everynode_api::field::aggregate_message(&invalid)
            ));
            causes.extend(invalid.iter().map(|e| json!({"reason": e.kind.cause_reason(), "message": e.body(), "field": e.field.as_str()})));
        }
        let name = crate::object::meta_str(raw, "name").unwrap_or_default();
        let mut err = ApiError::bad_request(message);
        err.details =
            Some(json!({"name": name, "group": res.group, "kind": res.kind, "causes": causes}));
        return Err(err);
    }
    Ok(problems)
}

/// Adds upstream-style `Warning` headers.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

async fn dispatch(
    api: &Arc<Api>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let rp = parse_path(uri.path()).ok_or_else(ApiError::no_route)?;
    let q = Query::parse(uri.query())?;
    let res = rp.res;
    let ns = rp.namespace.as_deref();
    match (
        method.clone(),
        rp.name.as_deref(),
        rp.subresource.as_deref(),
    ) {
        (Method::GET, None, None) if q.flag("watch") => {
            watch(api, &rp, &q, table_request(headers, &q)).await
        }
        (Method::GET, None, None) => list(api, &rp, &q, table_request(headers, &q)).await,
        (Method::GET, Some(name), None | Some("status")) => {
            let obj = api
                .get(res, ns, name, q.get("resourceVersion") == Some("0"))
                .await?;
            match table_request(headers, &q) {
                Some(include) => {
                    let rv = obj["metadata"]["resourceVersion"].clone();
                    Ok(ok(&table(
                        res,
                        std::slice::from_ref(&obj),
                        json!({"resourceVersion": rv}),
                        api.clock.now(),
                        include,
                    )))
                }
                None => Ok(ok(&obj)),
            }
        }
        (Method::POST, None, None) => {
            let (raw, warnings, manager) = written_object(res, ns, headers, &body, &q)?;
            let obj = api
                .create(res, ns, raw, q.dry_run()?, Some(&manager))
                .await?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &obj),
                &warnings,
            ))
        }
        (Method::GET, Some(name), Some("log")) => {
            crate::logs::proxy(api, ns.unwrap_or("default"), name, &q).await
        }
        (Method::POST, Some(name), Some("binding")) => {
            let binding = json_body(headers, &body)?;
            let target = binding
                .get("target")
                .and_then(|t| t.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if target.is_empty() {
                return Err(ApiError::bad_request("binding target name is required"));
            }
            api.bind(ns.unwrap_or("default"), name, target, q.dry_run()?)
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let mode = if sub.is_some() {
                UpdateMode::Status
            } else {
                UpdateMode::Main
            };
            let (raw, warnings, manager) = written_object(res, ns, headers, &body, &q)?;
            let (obj, created) = api
                .replace(res, ns, name, raw, mode, q.dry_run()?, Some(&manager))
                .await?;
            Ok(with_warnings(
                json_response(
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    &obj,
                ),
                &warnings,
            ))
        }
        (Method::PUT, Some(name), Some("finalize")) if res.id == Kind::Namespace => {
            let body = json_body(headers, &body)?;
            let wanted = body
                .get("spec")
                .and_then(|s| s.get("finalizers"))
                .cloned()
                .unwrap_or(json!([]));
            let obj = api
                .update_with(
                    res,
                    None,
                    name,
                    UpdateMode::System,
                    q.dry_run()?,
                    None,
                    &move |current| {
                        let mut new = current.clone();
                        new["spec"]["finalizers"] = wanted.clone();
                        Ok(new)
                    },
                )
                .await?;
            Ok(ok(&obj))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let mode = if sub.is_some() {
                UpdateMode::Status
            } else {
                UpdateMode::Main
            };
            if content_type(headers) == "application/apply-patch+yaml" {
                let (obj, created, warnings) =
                    apply_patch(api, res, ns, name, &body, mode, &q).await?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok(with_warnings(json_response(code, &obj), &warnings));
            }
            let (obj, warnings) = patch(api, res, ns, name, headers, &body, mode, &q).await?;
            Ok(with_warnings(ok(&obj), &warnings))
        }
        (Method::DELETE, Some(name), None) => {
            let opts = delete_options(&q, &body)?;
            match api.delete(res, ns, name, &opts).await? {
                Deleted::Now(obj) if res.id == Kind::Pod => Ok(ok(&obj)),
                Deleted::Now(obj) => Ok(ok(&json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]}
                }))),
                Deleted::Pending(obj) => Ok(ok(&obj)),
            }
        }
        (Method::DELETE, None, None) => delete_collection(api, &rp, &q, &body).await,
        (m, _, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {}",
            uri.path()
        ))),
    }
}

/// Applies a parsed patch document to an object.
type PatchFn = Box<dyn Fn(&mut Value) -> Result<(), String> + Send + Sync>;

#[allow(clippy::too_many_arguments)]
async fn patch(
    api: &Arc<Api>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    mode: UpdateMode,
    q: &Query,
) -> ApiResult<(Value, Vec<String>)> {
    let dry_run = q.dry_run()?;
    let validation = field_validation(q)?;
    if q.get("force").is_some() {
        return Err(ApiError::unprocessable_patch_options(
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let manager = field_manager(q, headers)?;
    let warnings = std::sync::Mutex::new(Vec::new());
    let duplicated = duplicated_fields(headers, body);
    let ct = content_type(headers);
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let apply: PatchFn = match ct.as_str() {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(parsed)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            Box::new(move |doc| json_patch::patch(doc, &p).map_err(|e| e.to_string()))
        }
        "application/merge-patch+json" => {
            if !parsed.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            Box::new(move |doc| {
                json_patch::merge(doc, &parsed);
                Ok(())
            })
        }
        "application/strategic-merge-patch+json" => {
            if !parsed.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a strategic merge patch must be a JSON object",
                ));
            }
            let kind = res.id;
            Box::new(move |doc| {
                *doc = everynode_apimachinery::strategic_merge::apply(doc, &parsed, kind)
                    .map_err(|e| e.to_string())?;
                Ok(())
            })
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    let obj = api
        .update_with(res, ns, name, mode, dry_run, Some(&manager), &|current| {
            let mut doc = current.clone();
            apply(&mut doc).map_err(|e| {
                ApiError::invalid(
                    res,
                    name,
                    &[everynode_api::field::FieldError::invalid(
                        &everynode_api::field::Path::root("patch"),
                        everynode_api::field::BadValue::None,
                        e,
                    )],
                )
            })?;
            // A patch that leaves the resourceVersion as read carries no precondition.
            if doc.get("metadata").and_then(|m| m.get("resourceVersion"))
                == current
                    .get("metadata")
                    .and_then(|m| m.get("resourceVersion"))
            {
                crate::object::remove_meta(&mut doc, "resourceVersion");
            }
            let rv = doc
                .get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .cloned();
            let found = check_fields(res, ns, &doc, &duplicated, validation)?;
            *warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = found;
            let mut decoded = api.decode(res, doc)?;
            if let Some(rv) = rv {
                crate::object::set_meta(&mut decoded, "resourceVersion", rv);
            }
            Ok(decoded)
        })
        .await?;
    Ok((
        obj,
        warnings
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ))
}

/// Server-side apply (`application/apply-patch+yaml`): the body is the manager's whole intent
/// for the object. Creates the object when it does not exist. Returns the object, whether it
/// was created, and the field-validation warnings.
#[allow(clippy::too_many_arguments)]
async fn apply_patch(
    api: &Arc<Api>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    body: &Bytes,
    mode: UpdateMode,
    q: &Query,
) -> ApiResult<(Value, bool, Vec<String>)> {
    let dry_run = q.dry_run()?;
    let validation = field_validation(q)?;
    let Some(manager) = requested_field_manager(q)? else {
        return Err(ApiError::unprocessable_patch_options(
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    };
    let force = match q.get("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid force parameter {other:?}: must be true or false"
            )));
        }
    };
    let config = yaml_body(body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: an apply patch must be an object",
        ));
    }
    for (field, want) in [
        ("apiVersion", res.api_version()),
        ("kind", res.kind.to_owned()),
    ] {
        match config.get(field).and_then(Value::as_str) {
            Some(have) if have == want => {}
            Some(have) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the applied object ({have}) does not match the resource ({want})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "error decoding patch: {field} must be set in an apply patch"
                )));
            }
        }
    }
    match config
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
    {
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "error decoding patch: metadata.name must be set in an apply patch",
            ));
        }
    }
    let warnings = check_fields(
        res,
        ns,
        &config,
        &everynode_apimachinery::duplicate_fields::in_yaml(body),
        validation,
    )?;
    let part = api
        .field_part(res, mode)
        .ok_or_else(|| ApiError::internal("apply is not a server-internal write"))?;
    let time = everynode_clock::format_time(api.clock.now());
    let api_version = res.api_version();
    let writer = everynode_apimachinery::managed_fields::Writer {
        manager,
        api_version: &api_version,
        time: &time,
        part,
    };
    let merge = |live: Option<&Value>| {
        everynode_apimachinery::managed_fields::apply(live, &config, res.id, writer, force)
            .map_err(|c| ApiError::apply_conflict(&c))
    };
    let updated = api
        .update_with(res, ns, name, mode, dry_run, None, &|current| {
            let merged = merge(Some(current))?;
            let mut decoded = api.decode(res, merged)?;
            // An apply carries no precondition unless the configuration names a resourceVersion.
            match config["metadata"].get("resourceVersion") {
                Some(pinned) => {
                    crate::object::set_meta(&mut decoded, "resourceVersion", pinned.clone())
                }
                None => crate::object::remove_meta(&mut decoded, "resourceVersion"),
            }
            Ok(decoded)
        })
        .await;
    match updated {
        Ok(obj) => Ok((obj, false, warnings)),
        Err(e) if e.code == StatusCode::NOT_FOUND && mode == UpdateMode::Main => {
            let created = merge(None)?;
            let obj = api.create(res, ns, created, dry_run, None).await?;
            Ok((obj, true, warnings))
        }
        Err(e) => Err(e),
    }
}

fn delete_options(q: &Query, body: &Bytes) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions {
        dry_run: q.dry_run()?,
        ..Default::default()
    };
    let trimmed = body.iter().any(|b| !b.is_ascii_whitespace());
    let mut orphan = None;
    if trimmed {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode DeleteOptions: {e}")))?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned);
        opts.precondition_uid = v
            .get("preconditions")
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        opts.precondition_rv = v
            .get("preconditions")
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        orphan = v.get("orphanDependents").and_then(Value::as_bool);
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    if let Some(g) = q.number("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation_policy = Some(p.to_owned());
    }
    if let Some(o) = q.get("orphanDependents") {
        orphan = Some(o == "true");
    }
    match (orphan, &opts.propagation_policy) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "orphanDependents and deletionPropagation cannot be both set",
            ));
        }
        (Some(true), None) => opts.propagation_policy = Some("Orphan".into()),
        (Some(false), None) => opts.propagation_policy = Some("Background".into()),
        _ => {}
    }
    Ok(opts)
}

/// A continue token: where the next page starts. Opaque to clients, as upstream's.
fn encode_continue(rev: u64, after: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_continue(token: &str) -> ApiResult<String> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("start")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(bad)
}

/// The objects a list, watch or collection delete addresses: the path's resource and
/// namespace, narrowed by the `labelSelector` and `fieldSelector` parameters.
fn request_filter(rp: &ResourcePath, q: &Query) -> ApiResult<Filter> {
    Ok(Api::filter(
        rp.res,
        rp.namespace.as_deref(),
        q.label_selector()?,
        q.field_selector(rp.res)?,
    ))
}

async fn list(
    api: &Arc<Api>,
    rp: &ResourcePath,
    q: &Query,
    as_table: Option<IncludeObject>,
) -> ApiResult<Response> {
    let res = rp.res;
    let filter = request_filter(rp, q)?;
    let limit = q.number("limit")?.unwrap_or(0).max(0) as usize;
    let continue_after = q
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(decode_continue)
        .transpose()?;
    match (
        q.get("resourceVersion").unwrap_or(""),
        q.get("resourceVersionMatch").unwrap_or(""),
    ) {
        ("0", _) if continue_after.is_none() => {}
        ("", _) => {
            api.fresh_cache().await?;
        }
        (rv, "Exact") => {
            let rev = parse_rv(rv).map_err(ApiError::bad_request)?;
            api.cache
                .wait_for(rev, api.options.cache_wait)
                .await
                .map_err(|e| ApiError::timeout(e.to_string()))?;
            if api.cache.revision() != rev {
                return Err(ApiError::gone(format!(
                    "too old resource version: {rev} ({})",
                    api.cache.revision()
                )));
            }
        }
        (rv, _) => {
            let rev = parse_rv(rv).map_err(ApiError::bad_request)?;
            api.cache
                .wait_for(rev, api.options.cache_wait)
                .await
                .map_err(|e| ApiError::timeout(e.to_string()))?;
        }
    }
    let page = api.cache.list(&filter, continue_after.as_deref(), limit);
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(after) = &page.continue_after {
        metadata["continue"] = json!(encode_continue(page.revision, after));
    }
    if let Some(include) = as_table {
        let objects: Vec<Value> = page
            .items
            .iter()
            .filter_map(|o| serde_json::from_slice(&o.json).ok())
            .collect();
        return Ok(ok(&table(
            res,
            &objects,
            metadata,
            api.clock.now(),
            include,
        )));
    }
    // Items are spliced in as the cache holds them, already serialized.
    let head =
        json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": metadata});
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.pop();
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

async fn watch(
    api: &Arc<Api>,
    rp: &ResourcePath,
    q: &Query,
    as_table: Option<IncludeObject>,
) -> ApiResult<Response> {
    let res = rp.res;
    let filter = request_filter(rp, q)?;
    let after = match q.get("resourceVersion").unwrap_or("") {
        "" | "0" => None,
        rv => Some(parse_rv(rv).map_err(ApiError::bad_request)?),
    };
    let timeout = q
        .number("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let params = WatchParams {
        filter,
        after,
        bookmarks: q.flag("allowWatchBookmarks"),
        initial_events_end: q.flag("sendInitialEvents"),
        timeout,
        render: as_table.map(|include| {
            let clock = Arc::clone(&api.clock);
            let render: crate::watch::Render = Arc::new(move |json: &[u8]| {
                let obj: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
                let rv = obj["metadata"]["resourceVersion"].clone();
                serde_json::to_vec(&table(
                    res,
                    &[obj],
                    json!({"resourceVersion": rv}),
                    clock.now(),
                    include,
                ))
                .unwrap_or_default()
                .into()
            });
            render
        }),
    };
    watch::serve(api, res, params).await
}

async fn delete_collection(
    api: &Arc<Api>,
    rp: &ResourcePath,
    q: &Query,
    body: &Bytes,
) -> ApiResult<Response> {
    let res = rp.res;
    let opts = delete_options(q, body)?;
    let filter = request_filter(rp, q)?;
    api.fresh_cache().await?;
    let page = api.cache.list(&filter, None, 0);
    let mut items = Vec::new();
    for obj in page.items {
        let v: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ns = v["metadata"]["namespace"].as_str().map(str::to_owned);
        match api.delete(res, ns.as_deref(), &name, &opts).await {
            Ok(Deleted::Now(o) | Deleted::Pending(o)) => items.push(o),
            // Gone meanwhile: someone else deleted it, which is what was asked.
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let rev = api.store.current_revision();
    Ok(ok(
        &json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
    ))
}

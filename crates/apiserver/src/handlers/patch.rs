//! PATCH of one object or its status: JSON patch, merge patch, strategic merge patch, and
//! server-side apply (`application/apply-patch+yaml`), which may create the object.

use super::update::Target;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, UpdateMode};
use crate::request::options::PatchOptions;
use crate::response;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use everynode_api::field::{BadValue, FieldError, Path};
use everynode_api::registry::Kind;
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError};

pub async fn handle(
    registry: &Arc<Registry>,
    target: &Target<'_>,
    options: &PatchOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let patch_type = body::content_type(headers);
    if patch_type == "application/apply-patch+yaml" {
        let (obj, created, warnings) = apply(registry, target, options, body).await?;
        return Ok(response::with_warnings(
            response::written(created, &obj),
            &warnings,
        ));
    }
    let (obj, warnings) = patch(registry, target, options, headers, &patch_type, body).await?;
    Ok(response::with_warnings(response::ok(&obj), &warnings))
}

/// The most operations a JSON patch may have, as upstream allows.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most a JSON patch may add to an object, by the serialized size of the values its `add`,
/// `replace` and `copy` operations put in: upstream's request body limit, which it also applies
/// to a patch's accumulated copies. Without it, twenty `copy` operations of a growing value
/// took a 2 KB patch to gigabytes.
const MAX_PATCH_GROWTH_BYTES: usize = 3 * 1024 * 1024;

/// Why a patch did not apply.
#[derive(Debug)]
enum PatchFailure {
    /// The patch does not apply to this object (a failed `test`, a missing path): 422.
    Invalid(String),
    /// The patched object would be too large: 413.
    TooLarge(String),
    /// The patch is malformed (a directive of the wrong shape): 400.
    Malformed(String),
}

/// Applies a parsed patch document to an object.
type PatchFn = Box<dyn Fn(&mut Value) -> Result<(), PatchFailure> + Send + Sync>;

/// The serialized size of a value.
fn size_of(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// Applies a JSON patch an operation at a time, refusing one that grows the object past
/// `MAX_PATCH_GROWTH_BYTES`. Each value is measured once, so the work is bounded by the limit.
fn apply_json_patch(doc: &mut Value, patch: &json_patch::Patch) -> Result<(), PatchFailure> {
    use json_patch::PatchOperation::{Add, Copy, Replace};
    let mut growth = 0usize;
    for op in &patch.0 {
        growth += match op {
            Add(o) => size_of(&o.value),
            Replace(o) => size_of(&o.value),
            Copy(o) => doc.pointer(o.from.as_str()).map_or(0, size_of),
            _ => 0,
        };
        if growth > MAX_PATCH_GROWTH_BYTES {
            return Err(PatchFailure::TooLarge(format!(
                "the JSON patch would add more than {MAX_PATCH_GROWTH_BYTES} bytes to the object"
            )));
        }
        json_patch::patch(doc, std::slice::from_ref(op))
            .map_err(|e| PatchFailure::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// A JSON, merge or strategic merge patch applied to `original` as PATCH applies it before
/// decoding the result: the same limits and the same errors, without a store. For the fuzz
/// targets and tests.
pub fn patched(original: &Value, kind: Kind, patch_type: &str, body: &[u8]) -> ApiResult<Value> {
    let apply = patch_fn(kind, patch_type, body)?;
    let mut doc = original.clone();
    apply(&mut doc).map_err(|failure| match failure {
        PatchFailure::TooLarge(message) => ApiError::too_large(message),
        PatchFailure::Invalid(message) | PatchFailure::Malformed(message) => {
            ApiError::bad_request(message)
        }
    })?;
    let name = original
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    check_patched(&doc, name)?;
    Ok(doc)
}

/// The patch document as a function of the object, by its patch type.
fn patch_fn(kind: Kind, patch_type: &str, body: &[u8]) -> ApiResult<PatchFn> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    Ok(match patch_type {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(parsed)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if p.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(ApiError::too_large(format!(
                    "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    p.0.len()
                )));
            }
            Box::new(move |doc| apply_json_patch(doc, &p))
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
            Box::new(move |doc| {
                *doc = everynode_apimachinery::strategic_merge::apply(doc, &parsed, kind).map_err(
                    |e| {
                        if e.is_bad_request() {
                            PatchFailure::Malformed(e.to_string())
                        } else {
                            PatchFailure::Invalid(e.to_string())
                        }
                    },
                )?;
                Ok(())
            })
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    })
}

/// A JSON, merge or strategic merge patch. Returns the object and the field-validation
/// warnings.
async fn patch(
    registry: &Arc<Registry>,
    target: &Target<'_>,
    options: &PatchOptions,
    headers: &HeaderMap,
    patch_type: &str,
    body: &Bytes,
) -> ApiResult<(Value, Vec<String>)> {
    let (res, ns, name) = (target.path.res, target.path.namespace(), target.name);
    if options.force.is_some() {
        return Err(ApiError::unprocessable_patch_options(
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let manager = options.write.manager(body::user_agent(headers))?;
    let validation = options.write.field_validation;
    let warnings = Mutex::new(Vec::new());
    let duplicated = body::duplicated_fields(headers, body);
    let apply = patch_fn(target.path.res.id, patch_type, body)?;
    let write = target.write(options.write.dry_run, Some(&manager));
    let obj = registry
        .update_with(&write, &|current| {
            let mut doc = current.clone();
            apply(&mut doc).map_err(|failure| match failure {
                PatchFailure::TooLarge(message) => ApiError::too_large(message),
                PatchFailure::Malformed(message) => ApiError::bad_request(message),
                PatchFailure::Invalid(message) => ApiError::invalid(
                    res,
                    name,
                    &[FieldError::invalid(
                        &Path::root("patch"),
                        BadValue::None,
                        message,
                    )],
                ),
            })?;
            check_patched(&doc, name)?;
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
            let mut decoded = match registry.decode(res, doc.clone()) {
                Ok(decoded) => {
                    let found = body::check_decoded_fields(
                        res,
                        ns,
                        &doc,
                        &decoded,
                        &duplicated,
                        validation,
                    )?;
                    *warnings.lock().unwrap_or_else(PoisonError::into_inner) = found;
                    decoded
                }
                Err(e) => {
                    // Unknown fields are named before a decode error, as when checked first.
                    body::check_fields(res, ns, &doc, &duplicated, validation)?;
                    return Err(e);
                }
            };
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
            .unwrap_or_else(PoisonError::into_inner),
    ))
}

/// A patch may not turn the object into something else: the result must be an object with the
/// name on the URL (upstream answers the same 400 for a patch that changes or drops it).
fn check_patched(doc: &Value, name: &str) -> ApiResult<()> {
    if !doc.is_object() {
        return Err(ApiError::bad_request(
            "the patched object is not a JSON object: a patch may not replace the object with another kind of value",
        ));
    }
    let patched = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if patched != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({patched}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// Checks that an apply configuration names the object the URL does.
fn check_configuration(target: &Target<'_>, config: &Value) -> ApiResult<()> {
    let res = target.path.res;
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
        Some(n) if n == target.name => Ok(()),
        Some(n) => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            target.name
        ))),
        None => Err(ApiError::bad_request(
            "error decoding patch: metadata.name must be set in an apply patch",
        )),
    }
}

/// Server-side apply: the body is the manager's whole intent for the object. Creates the object
/// when it does not exist. Returns the object, whether it was created, and the field-validation
/// warnings.
async fn apply(
    registry: &Arc<Registry>,
    target: &Target<'_>,
    options: &PatchOptions,
    body: &Bytes,
) -> ApiResult<(Value, bool, Vec<String>)> {
    let (res, ns) = (target.path.res, target.path.namespace());
    let dry_run = options.write.dry_run;
    let Some(manager) = options.write.requested_manager()? else {
        return Err(ApiError::unprocessable_patch_options(
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    };
    let force = options.force.unwrap_or(false);
    let config = body::yaml(body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: an apply patch must be an object",
        ));
    }
    check_configuration(target, &config)?;
    let warnings = body::check_fields(
        res,
        ns,
        &config,
        &everynode_apimachinery::duplicate_fields::in_yaml(body),
        options.write.field_validation,
    )?;
    let part = registry
        .field_part(res, target.mode)
        .ok_or_else(|| ApiError::internal("apply is not a server-internal write"))?;
    let time = everynode_clock::format_time(registry.clock.now());
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
    let updated = registry
        .update_with(&target.write(dry_run, None), &|current| {
            let merged = merge(Some(current))?;
            let mut decoded = registry.decode(res, merged)?;
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
        Err(e) if e.code == StatusCode::NOT_FOUND && target.mode == UpdateMode::Main => {
            let created = merge(None)?;
            let obj = registry.create(res, ns, created, dry_run, None).await?;
            Ok((obj, true, warnings))
        }
        Err(e) => Err(e),
    }
}

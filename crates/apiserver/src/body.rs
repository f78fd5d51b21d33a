//! Request bodies: content types, decoding (JSON, YAML with line and column, protobuf), and
//! `fieldValidation`'s check for undeclared and repeated fields.

use crate::error::{ApiError, ApiResult};
use crate::request::ResourcePath;
use crate::request::options::{FieldValidation, WriteOptions};
use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use everynode_api::registry::Resource;
use serde_json::{Value, json};

/// The request's media type, lower-cased, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The client's user agent, for the default field manager.
pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Parses a YAML (or JSON, which is YAML) body; errors name the line and column. A body nested
/// deeper than `MAX_DEPTH` is refused before the parser, whose cost grows with the square of
/// the depth, sees it.
pub fn yaml(body: &Bytes) -> ApiResult<Value> {
    use everynode_apimachinery::nesting::{MAX_DEPTH, flow_depth};
    let depth = flow_depth(body);
    if depth > MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "error converting YAML to JSON: yaml: the document nests {depth} levels deep; at most {MAX_DEPTH} are allowed"
        )));
    }
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

/// Parses a JSON, YAML or protobuf object body by its content type.
pub fn object(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let ct = content_type(headers);
    let v: Value = match ct.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => yaml(body)?,
        "application/vnd.kubernetes.protobuf" => {
            use everynode_apimachinery::protobuf::{ProtobufError, decode};
            decode(body).map_err(|e| match e {
                ProtobufError::Unsupported { .. } => {
                    let mut err =
                        ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf");
                    err.message = e.to_string();
                    err
                }
                ProtobufError::Schemas(_) => ApiError::internal(e.to_string()),
                other => ApiError::bad_request(other.to_string()),
            })?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; the body is not an object",
        ));
    }
    Ok(v)
}

/// Keys a request body repeats, by dotted path, for the body types that are maps.
pub fn duplicated_fields(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
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
pub fn check_fields(
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
    check_decoded_fields(res, namespace, raw, &decoded, duplicated, mode)
}

/// [`check_fields`] for a caller that has decoded `raw` already: a write's decode is the
/// costliest step of a pod status patch, so it is done once.
pub fn check_decoded_fields(
    res: &'static Resource,
    namespace: Option<&str>,
    raw: &Value,
    decoded: &Value,
    duplicated: &[String],
    mode: FieldValidation,
) -> ApiResult<Vec<String>> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let paths = everynode_api::registry::unknown_fields(raw, decoded);
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
        let mut obj = decoded.clone();
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

/// What a create or an update sends: the object, the field-validation warnings about it, and
/// the field manager that writes it.
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub manager: String,
}

/// Reads the object a create or an update sends to `path`.
pub fn written_object(
    path: &ResourcePath,
    headers: &HeaderMap,
    body: &Bytes,
    options: &WriteOptions,
) -> ApiResult<Written> {
    let object = self::object(headers, body)?;
    let warnings = check_fields(
        path.res,
        path.namespace(),
        &object,
        &duplicated_fields(headers, body),
        options.field_validation,
    )?;
    let manager = options.manager(user_agent(headers))?;
    Ok(Written {
        object,
        warnings,
        manager,
    })
}

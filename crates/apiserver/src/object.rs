//! Small helpers over objects as JSON: metadata access and the stored form.

use bytes::Bytes;
use everynode_store::{KeyValue, Revision};
use serde_json::{Value, json};

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Sets `metadata.<field>`, creating `metadata` if needed.
pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][field] = value;
}

/// Removes `metadata.<field>`.
pub fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(field);
    }
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces `metadata.finalizers` (removing the field when empty).
pub fn set_finalizers(obj: &mut Value, list: &[String]) {
    if list.is_empty() {
        remove_meta(obj, "finalizers");
    } else {
        set_meta(obj, "finalizers", json!(list));
    }
}

/// The bytes stored for an object: everything but `metadata.resourceVersion`, which the store's
/// revision supplies on every read.
pub fn to_stored(obj: &Value) -> Bytes {
    let mut v = obj.clone();
    remove_meta(&mut v, "resourceVersion");
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// An object read back from the store, with its resourceVersion.
pub fn from_stored(kv: &KeyValue) -> Value {
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    set_rv(&mut v, kv.mod_revision);
    v
}

/// Sets `metadata.resourceVersion`.
pub fn set_rv(obj: &mut Value, rev: Revision) {
    set_meta(obj, "resourceVersion", Value::String(rev.to_string()));
}

/// The same object ignoring its resourceVersion, for "did anything change" checks.
pub fn without_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    remove_meta(&mut v, "resourceVersion");
    v
}

/// A resourceVersion parameter as a revision; 400-worthy text when it is not one.
pub fn parse_rv(s: &str) -> Result<Revision, String> {
    s.parse::<Revision>()
        .map_err(|_| format!("invalid resource version: {s:?}"))
}

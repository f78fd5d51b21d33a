//! Reading pasted or uploaded YAML for the import page. Pure.
//!
//! Manifests exported with `kubectl get -o yaml` carry what the server set (uid,
//! resourceVersion, ...). The API refuses those on create, as Kubernetes does; the console's
//! import removes them first and says which it removed, because the user's intent is plain.

use everynode_api::registry::{self, Resource};
use serde::Deserialize;
use serde_json::Value;

/// Metadata fields only the server sets.
const SERVER_METADATA: [&str; 6] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];

/// One document of the input, ready to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub object: Value,
    /// What was removed, as field paths (`metadata.uid`, `status`).
    pub dropped: Vec<String>,
}

/// A YAML problem with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Removes what the server sets and returns the paths removed.
pub fn strip_server_fields(object: &mut Value) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SERVER_METADATA {
            if meta.remove(field).is_some() {
                dropped.push(format!("metadata.{field}"));
            }
        }
    }
    if let Some(obj) = object.as_object_mut()
        && obj.remove("status").is_some()
    {
        dropped.push("status".to_owned());
    }
    dropped
}

/// Every non-empty document of `text`, stripped of server-set fields.
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(de).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            YamlError {
                line,
                column,
                message,
            }
        })?;
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            return Err(YamlError {
                line: 1,
                column: 1,
                message: "a manifest must be a mapping with apiVersion and kind".into(),
            });
        }
        let mut object = value;
        let dropped = strip_server_fields(&mut object);
        out.push(Document { object, dropped });
    }
    Ok(out)
}

/// The served resource an object's apiVersion and kind name.
pub fn resource_of(object: &Value) -> Result<&'static Resource, String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    registry::RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .ok_or_else(|| {
            format!("no served resource has apiVersion {api_version:?} and kind {kind:?}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_objects_lose_server_fields_and_say_which() {
        let docs = parse(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: a\n  uid: x\n  resourceVersion: \"5\"\n  generation: 2\nstatus:\n  numberReady: 1\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n",
        )
        .expect("valid yaml");
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].dropped,
            vec![
                "metadata.uid",
                "metadata.resourceVersion",
                "metadata.generation",
                "status"
            ]
        );
        assert!(docs[0].object.get("status").is_none());
        assert!(docs[1].dropped.is_empty());
        assert_eq!(
            resource_of(&docs[0].object).map(|r| r.plural),
            Ok("daemonsets")
        );
        assert_eq!(
            resource_of(&docs[1].object).map(|r| r.plural),
            Ok("namespaces")
        );
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = parse("a: 1\nb: [\n").expect_err("unclosed");
        assert!(err.line >= 2, "{err}");
        assert!(err.column >= 1, "{err}");
    }

    #[test]
    fn unknown_kinds_are_named() {
        let obj = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        assert_eq!(
            resource_of(&obj).map(|r| r.plural),
            Err("no served resource has apiVersion \"apps/v1\" and kind \"Deployment\"".into())
        );
    }
}

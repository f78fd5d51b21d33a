//! The OpenAPI v2 (Swagger 2.0) document at `/openapi/v2`, for clients older than OpenAPI v3
//! support (kubectl before 1.27 validates and builds apply patches from it). Its definitions
//! are the v3 component schemas in v2 form. kubectl asks for it as protobuf
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's `openapi.v2`
//! messages, encoded here by hand because the subset a schema document needs is small and no
//! maintained crate carries gnostic's types.

use serde_json::{Map, Value, json};

/// The media type kubectl 1.20 asks for.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// v3 references point into `components/schemas`; v2 ones into `definitions`.
fn v2_ref(r: &str) -> String {
    r.replace("#/components/schemas/", "#/definitions/")
}

/// One schema in v2 form: references rewritten, and a lone `allOf` (how the v3 generator
/// attaches a description to a reference) collapsed into the reference, as upstream's v2
/// documents write it.
fn v2_schema(s: &Value) -> Value {
    let Some(map) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        match k.as_str() {
            "$ref" => {
                out.insert(k.clone(), json!(v2_ref(v.as_str().unwrap_or(""))));
            }
            "allOf" if v.as_array().is_some_and(|a| a.len() == 1) => {
                if let Some(Value::Object(inner)) = v.get(0).map(v2_schema) {
                    for (ik, iv) in inner {
                        out.entry(ik).or_insert(iv);
                    }
                }
            }
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, p)| (name.clone(), v2_schema(p)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), v2_schema(v));
            }
            // v3-only keywords have no place in a v2 schema.
            "nullable" | "oneOf" | "anyOf" | "not" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// The Swagger 2.0 document: every served kind's definitions (with GVK and patch-strategy
/// extensions), no paths — clients read definitions, and find resources by discovery.
pub fn document() -> Value {
    let mut definitions = Map::new();
    for (_, group, version) in crate::openapi::group_versions() {
        let Some(doc) = crate::openapi::group_version_document(group, version) else {
            continue;
        };
        let schemas = doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, schema) in schemas {
            definitions
                .entry(name)
                .or_insert_with(|| v2_schema(&schema));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {},
        "definitions": definitions,
    })
}

/// Protobuf wire writing: just what gnostic's messages need.
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer(Vec::new());
        build(&mut inner);
        self.bytes(field, &inner.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.tag(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.tag(field, 0);
            self.varint(v as u64);
        }
    }
}

/// `NamedAny {1: name, 2: Any {2: yaml}}`: a vendor extension, its value as YAML (JSON is YAML).
fn named_any(w: &mut Writer, field: u32, name: &str, value: &Value) {
    w.message(field, |na| {
        na.string(1, name);
        na.message(2, |any| any.string(2, &value.to_string()));
    });
}

/// gnostic `Schema`: 1 _ref, 2 format, 4 description, 11/12 max/minLength, 19 required,
/// 20 enum, 21 additionalProperties, 22 type, 23 items, 25 properties, 27 readOnly,
/// 31 vendor extensions.
fn schema(w: &mut Writer, s: &Value) {
    let Some(map) = s.as_object() else {
        return;
    };
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
    w.string(1, text("$ref"));
    w.string(2, text("format"));
    w.string(4, text("description"));
    w.int64(
        11,
        map.get("maxLength").and_then(Value::as_i64).unwrap_or(0),
    );
    w.int64(
        12,
        map.get("minLength").and_then(Value::as_i64).unwrap_or(0),
    );
    for r in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.string(19, r.as_str().unwrap_or(""));
    }
    for e in map
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(20, |any| any.string(2, &e.to_string()));
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(b)) => w.message(21, |ap| ap.boolean(2, *b)),
        Some(inner @ Value::Object(_)) => w.message(21, |ap| ap.message(1, |s| schema(s, inner))),
        _ => {}
    }
    if let Some(t) = map.get("type").and_then(Value::as_str) {
        w.message(22, |ti| ti.string(1, t));
    }
    if let Some(items) = map.get("items").filter(|i| i.is_object()) {
        w.message(23, |ii| ii.message(1, |s| schema(s, items)));
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        w.message(25, |p| {
            for (name, prop) in props {
                p.message(1, |ns| {
                    ns.string(1, name);
                    ns.message(2, |s| schema(s, prop));
                });
            }
        });
    }
    w.boolean(
        27,
        map.get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    for (k, v) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        named_any(w, 31, k, v);
    }
}

/// gnostic `Document`: 1 swagger, 2 info {1 title, 2 version}, 8 paths, 9 definitions
/// {1: NamedSchema {1 name, 2 schema}}.
pub fn encode_protobuf(doc: &Value) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    w.message(2, |info| {
        info.string(1, doc["info"]["title"].as_str().unwrap_or(""));
        info.string(2, doc["info"]["version"].as_str().unwrap_or(""));
    });
    w.message(8, |_| {});
    w.message(9, |defs| {
        for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
            defs.message(1, |ns| {
                ns.string(1, name);
                ns.message(2, |w| schema(w, s));
            });
        }
    });
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_use_v2_references_and_keep_kubectl_extensions() {
        let doc = document();
        let ds = &doc["definitions"]["io.k8s.api.apps.v1.DaemonSet"];
        assert_eq!(
            ds["x-kubernetes-group-version-kind"][0]["kind"],
            "DaemonSet"
        );
        let selector =
            &doc["definitions"]["io.k8s.api.apps.v1.DaemonSetSpec"]["properties"]["selector"];
        assert_eq!(
            selector["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
        );
        assert!(selector.get("allOf").is_none());
        let containers =
            &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert!(!doc.to_string().contains("#/components/"));
    }

    #[test]
    fn protobuf_starts_with_the_swagger_version_and_carries_every_definition_name() {
        let doc = document();
        let bytes = encode_protobuf(&doc);
        assert_eq!(&bytes[..5], b"\x0a\x032.0");
        let text = String::from_utf8_lossy(&bytes);
        for name in doc["definitions"].as_object().expect("definitions").keys() {
            assert!(text.contains(name.as_str()), "{name}");
        }
    }

    #[test]
    fn varints_and_nested_lengths_are_protobuf() {
        let mut w = Writer(Vec::new());
        w.varint(300);
        assert_eq!(w.0, vec![0xac, 0x02]);
        let mut w = Writer(Vec::new());
        w.message(2, |m| m.string(1, "ab"));
        assert_eq!(w.0, vec![0x12, 0x04, 0x0a, 0x02, b'a', b'b']);
    }
}

//! Reading Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into
//! JSON, for the objects kubectl's `create` generators send that way (`kubectl create namespace`,
//! `create configmap`, `create secret`, `create serviceaccount`, `create service`,
//! `create priorityclass`). Everything else arrives as JSON.
//!
//! Hand-written because no maintained crate carries the Kubernetes protobuf schemas for Rust;
//! only the messages those generators produce are described, with field numbers from
//! `k8s.io/api`'s `generated.proto`. Unknown fields are skipped, as protobuf readers do.
//!
//! Wire form: the 4 bytes `k8s\0`, then a `runtime.Unknown` {1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw (the object's message), 3: contentEncoding, 4: contentType}.

use base64::Engine as _;
use serde_json::{Map, Value, json};

pub const MAGIC: &[u8; 4] = b"k8s\0";

/// How a protobuf field maps to JSON.
#[derive(Clone, Copy)]
enum F {
    Str(&'static str),
    Int(&'static str),
    /// An `omitempty` number: zero means unset (Go writes zeros on the wire).
    IntOmitZero(&'static str),
    Bool(&'static str),
    Msg(&'static str, &'static [(u32, F)]),
    RepStr(&'static str),
    RepMsg(&'static str, &'static [(u32, F)]),
    MapStr(&'static str),
    MapBytes(&'static str),
    /// metav1.Time {1: seconds, 2: nanos} → RFC 3339.
    Time(&'static str),
    /// intstr.IntOrString {1: type, 2: intVal, 3: strVal}.
    IntOrString(&'static str),
}

const OWNER_REFERENCE: &[(u32, F)] = &[
    (1, F::Str("kind")),
    (3, F::Str("name")),
    (4, F::Str("uid")),
    (5, F::Str("apiVersion")),
    (6, F::Bool("controller")),
    (7, F::Bool("blockOwnerDeletion")),
];

const OBJECT_META: &[(u32, F)] = &[
    (1, F::Str("name")),
    (2, F::Str("generateName")),
    (3, F::Str("namespace")),
    (5, F::Str("uid")),
    (6, F::Str("resourceVersion")),
    (7, F::IntOmitZero("generation")),
    (8, F::Time("creationTimestamp")),
    (11, F::MapStr("labels")),
    (12, F::MapStr("annotations")),
    (13, F::RepMsg("ownerReferences", OWNER_REFERENCE)),
    (14, F::RepStr("finalizers")),
];

const NAMESPACE: &[(u32, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", &[(1, F::RepStr("finalizers"))])),
];

const CONFIG_MAP: &[(u32, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapStr("data")),
    (3, F::MapBytes("binaryData")),
    (4, F::Bool("immutable")),
];

const SECRET: &[(u32, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapBytes("data")),
    (3, F::Str("type")),
    (4, F::MapStr("stringData")),
    (5, F::Bool("immutable")),
];

const SERVICE_ACCOUNT: &[(u32, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (3, F::RepMsg("imagePullSecrets", &[(1, F::Str("name"))])),
    (4, F::Bool("automountServiceAccountToken")),
];

const SERVICE_PORT: &[(u32, F)] = &[
    (1, F::Str("name")),
    (2, F::Str("protocol")),
    (3, F::Int("port")),
    (4, F::IntOrString("targetPort")),
    (5, F::IntOmitZero("nodePort")),
];

const SERVICE: &[(u32, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::RepMsg("ports", SERVICE_PORT)),
                (2, F::MapStr("selector")),
                (3, F::Str("clusterIP")),
                (4, F::Str("type")),
                (5, F::RepStr("externalIPs")),
                (11, F::Str("externalName")),
            ],
        ),
    ),
];

const PRIORITY_CLASS: &[(u32, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Int("value")),
    (3, F::Bool("globalDefault")),
    (4, F::Str("description")),
    (5, F::Str("preemptionPolicy")),
];

/// `metav1.DeleteOptions` (`k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`), which
/// client-go (Helm's uninstall among its users) sends as protobuf.
const DELETE_OPTIONS: &[(u32, F)] = &[
    (1, F::Int("gracePeriodSeconds")),
    (
        2,
        F::Msg(
            "preconditions",
            &[(1, F::Str("uid")), (2, F::Str("resourceVersion"))],
        ),
    ),
    (3, F::Bool("orphanDependents")),
    (4, F::Str("propagationPolicy")),
    (5, F::RepStr("dryRun")),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [(u32, F)]> {
    // DeleteOptions travels under whichever group version the client used for the request.
    if kind == "DeleteOptions" {
        return Some(DELETE_OPTIONS);
    }
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("scheduling.k8s.io/v1", "PriorityClass") => PRIORITY_CLASS,
        _ => return None,
    })
}

/// Why a protobuf body could not be read.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body is not a Kubernetes protobuf object (it does not start with \"k8s\\x00\")")]
    NotKubernetes,
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    #[error(
        "protobuf bodies are accepted for Namespace, ConfigMap, Secret, ServiceAccount, Service, PriorityClass and DeleteOptions; send {kind} ({api_version}) as JSON or YAML"
    )]
    Unsupported { api_version: String, kind: String },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(ProtobufError::Malformed("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(ProtobufError::Malformed("length past the end"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next (field number, value), or `None` at the end.
    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = (key >> 3) as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Skipped
            }
            2 => {
                let n = self.varint()? as usize;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Skipped
            }
            _ => return Err(ProtobufError::Malformed("unsupported wire type")),
        };
        Ok(Some((number, wire)))
    }
}

fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed("string is not UTF-8"))
}

/// A map entry message {1: key, 2: value}.
fn entry(bytes: &[u8]) -> Result<(String, &[u8]), ProtobufError> {
    let mut r = Reader::new(bytes);
    let (mut key, mut value) = (String::new(), &[][..]);
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, Wire::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

fn message(bytes: &[u8], schema: &[(u32, F)]) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while let Some((number, wire)) = r.field()? {
        let Some((_, f)) = schema.iter().find(|(n, _)| *n == number) else {
            continue;
        };
        match (*f, wire) {
            // Go writes empty strings on the wire; in JSON they are omitted.
            (F::Str(_), Wire::Bytes([])) => {}
            (F::Str(name), Wire::Bytes(b)) => {
                out.insert(name.into(), Value::String(text(b)?));
            }
            (F::IntOmitZero(_), Wire::Varint(0)) => {}
            (F::IntOmitZero(name), Wire::Varint(v)) => {
                out.insert(name.into(), json!(v as i64));
            }
            (F::Int(name), Wire::Varint(v)) => {
                out.insert(name.into(), json!(v as i64));
            }
            (F::Bool(name), Wire::Varint(v)) => {
                out.insert(name.into(), Value::Bool(v != 0));
            }
            (F::Msg(name, s), Wire::Bytes(b)) => {
                out.insert(name.into(), message(b, s)?);
            }
            (F::RepStr(name), Wire::Bytes(b)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(Value::String(text(b)?));
                }
            }
            (F::RepMsg(name, s), Wire::Bytes(b)) => {
                let item = message(b, s)?;
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(item);
                }
            }
            (F::MapStr(name), Wire::Bytes(b)) => {
                let (k, v) = entry(b)?;
                let v = text(v)?;
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, Value::String(v));
                }
            }
            (F::MapBytes(name), Wire::Bytes(b)) => {
                let (k, v) = entry(b)?;
                let v = base64::engine::general_purpose::STANDARD.encode(v);
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, Value::String(v));
                }
            }
            (F::Time(name), Wire::Bytes(b)) => {
                let mut t = Reader::new(b);
                let mut seconds = 0i64;
                while let Some((n, w)) = t.field()? {
                    if let (1, Wire::Varint(v)) = (n, w) {
                        seconds = v as i64;
                    }
                }
                if let Ok(ts) = jiff::Timestamp::from_second(seconds) {
                    out.insert(name.into(), Value::String(ts.to_string()));
                }
            }
            (F::IntOrString(name), Wire::Bytes(b)) => {
                let mut t = Reader::new(b);
                let (mut kind, mut int, mut string) = (0u64, 0i64, String::new());
                while let Some((n, w)) = t.field()? {
                    match (n, w) {
                        (1, Wire::Varint(v)) => kind = v,
                        (2, Wire::Varint(v)) => int = v as i32 as i64,
                        (3, Wire::Bytes(s)) => string = text(s)?,
                        _ => {}
                    }
                }
                out.insert(
                    name.into(),
                    if kind == 1 {
                        Value::String(string)
                    } else {
                        json!(int)
                    },
                );
            }
            _ => {
                return Err(ProtobufError::Malformed(
                    "field has an unexpected wire type",
                ));
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a Kubernetes protobuf body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::NotKubernetes)?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(b)) => {
                let mut t = Reader::new(b);
                while let Some((n, w)) = t.field()? {
                    match (n, w) {
                        (1, Wire::Bytes(s)) => api_version = text(s)?,
                        (2, Wire::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind).ok_or_else(|| ProtobufError::Unsupported {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut obj = message(raw, schema)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_decode_as_client_go_sends_them() {
        let mut raw = Vec::new();
        varint(1 << 3, &mut raw);
        varint(0, &mut raw); // gracePeriodSeconds: 0 is meaningful (delete now)
        let mut pre = Vec::new();
        bytes_field(1, b"u-1", &mut pre);
        bytes_field(2, &pre, &mut raw);
        bytes_field(4, b"Background", &mut raw);
        bytes_field(5, b"All", &mut raw);
        let obj = decode(&envelope("v1", "DeleteOptions", &raw)).expect("decodes");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "preconditions": {"uid": "u-1"}, "propagationPolicy": "Background",
                   "dryRun": ["All"]})
        );
    }

    /// A tiny protobuf writer for the tests.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(n: u32, b: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(n) << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v, &mut e);
        e
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut out = MAGIC.to_vec();
        bytes_field(1, &tm, &mut out);
        bytes_field(2, raw, &mut out);
        out
    }

    #[test]
    fn config_map_with_labels_data_and_binary_data() {
        let mut meta = Vec::new();
        bytes_field(1, b"settings", &mut meta);
        bytes_field(3, b"ns1", &mut meta);
        bytes_field(11, &entry("app", b"web"), &mut meta);
        let mut cm = Vec::new();
        bytes_field(1, &meta, &mut cm);
        bytes_field(2, &entry("level", b"debug"), &mut cm);
        bytes_field(3, &entry("blob", &[0, 1, 2]), &mut cm);
        varint(4 << 3, &mut cm);
        varint(1, &mut cm);
        let v = decode(&envelope("v1", "ConfigMap", &cm)).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "ns1", "labels": {"app": "web"}},
                "data": {"level": "debug"}, "binaryData": {"blob": "AAEC"}, "immutable": true})
        );
    }

    #[test]
    fn namespace_and_service_ports() {
        let mut meta = Vec::new();
        bytes_field(1, b"team-a", &mut meta);
        let mut ns = Vec::new();
        bytes_field(1, &meta, &mut ns);
        let v = decode(&envelope("v1", "Namespace", &ns)).expect("decodes");
        assert_eq!(v["metadata"]["name"], "team-a");
        let mut target = Vec::new();
        varint(2 << 3, &mut target);
        varint(8080, &mut target);
        let mut port = Vec::new();
        bytes_field(1, b"80-8080", &mut port);
        bytes_field(2, b"TCP", &mut port);
        varint(3 << 3, &mut port);
        varint(80, &mut port);
        bytes_field(4, &target, &mut port);
        let mut spec = Vec::new();
        bytes_field(1, &port, &mut spec);
        bytes_field(4, b"ClusterIP", &mut spec);
        let mut svc = Vec::new();
        bytes_field(1, &meta, &mut svc);
        bytes_field(2, &spec, &mut svc);
        let v = decode(&envelope("v1", "Service", &svc)).expect("decodes");
        assert_eq!(
            v["spec"],
            json!({"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}], "type": "ClusterIP"})
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert_eq!(decode(b"{}"), Err(ProtobufError::NotKubernetes));
        let err = decode(&envelope("apps/v1", "Deployment", &[])).expect_err("unsupported");
        assert!(
            err.to_string()
                .contains("send Deployment (apps/v1) as JSON or YAML")
        );
        let mut truncated = MAGIC.to_vec();
        truncated.extend_from_slice(&[0x0a, 0x10, 0x01]);
        assert_eq!(
            decode(&truncated),
            Err(ProtobufError::Malformed("length past the end"))
        );
    }
}

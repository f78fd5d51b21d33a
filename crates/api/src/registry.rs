//! The resources everynode serves, with what discovery, routing, storage and decoding need.

use k8s_openapi::api::{
    apps, certificates, coordination, core, discovery, events, rbac, scheduling,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;

/// Which object type a resource holds; strategies dispatch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    ConfigMap,
    Secret,
    Service,
    Endpoints,
    Event,
    ServiceAccount,
    DaemonSet,
    ControllerRevision,
    Lease,
    PriorityClass,
    EventsV1Event,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    EndpointSlice,
}

/// A served resource.
#[derive(Debug)]
pub struct Resource {
    pub id: Kind,
    /// API group; "" for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub categories: &'static [&'static str],
    /// Subresources beyond the object itself, e.g. "status", "binding".
    pub subresources: &'static [&'static str],
    decode: fn(Value) -> Result<Value, DecodeError>,
    /// Registers the type's OpenAPI schema and returns a reference to it.
    schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

/// A field selector names a field the resource cannot be selected by. Not retryable: the client
/// must select by another field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field label not supported: {0}")]
pub struct UnsupportedFieldLabel(pub String);

/// A body that does not decode into the resource's type.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// Field path of the offending value (`spec.template.spec.containers[0].ports[0].containerPort`), if known.
    pub path: String,
    pub message: String,
}

/// Removes what decoding invented: k8s-openapi fills a missing required field with its empty
/// value, but upstream tells "missing" from "empty" (a null selector matches nothing, `{}`
/// everything), so a value absent from the body and empty after decoding is dropped again.
fn prune_invented(raw: &Value, decoded: &mut Value) {
    // A subtree that decoded unchanged (free-form data such as a RawExtension) invented nothing.
    if raw == decoded {
        return;
    }
    let is_empty = |v: &Value| match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Null => true,
    };
    match (raw, decoded) {
        (Value::Object(r), Value::Object(d)) => {
            d.retain(|k, v| r.get(k).is_some_and(|rv| !rv.is_null()) || !is_empty(v));
            for (k, v) in d.iter_mut() {
                if let Some(rv) = r.get(k) {
                    prune_invented(rv, v);
                }
            }
        }
        (Value::Array(r), Value::Array(d)) => {
            for (rv, dv) in r.iter().zip(d.iter_mut()) {
                prune_invented(rv, dv);
            }
        }
        _ => {}
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, DecodeError> {
    let raw = v.clone();
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        DecodeError {
            message: format!("{path}: {inner}"),
            path,
        }
    })?;
    let mut decoded = serde_json::to_value(typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
    })?;
    prune_invented(&raw, &mut decoded);
    Ok(decoded)
}

/// The standard verbs of every resource.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

macro_rules! resource {
    ($id:ident, $ty:ty, $group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $short:expr, $ns:expr, $cats:expr, $subs:expr) => {
        Resource {
            id: Kind::$id,
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            namespaced: $ns,
            categories: $cats,
            subresources: $subs,
            decode: roundtrip::<$ty>,
            schema: |generator| generator.subschema_for::<$ty>(),
        }
    };
}

/// Every served resource.
pub static RESOURCES: &[Resource] = &[
    resource!(
        Namespace,
        core::v1::Namespace,
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        &[],
        &["status", "finalize"]
    ),
    resource!(
        Node,
        core::v1::Node,
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        &["no"],
        false,
        &[],
        &["status"]
    ),
    resource!(
        Pod,
        core::v1::Pod,
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        &["po"],
        true,
        &["all"],
        &["status", "binding", "log"]
    ),
    resource!(
        ConfigMap,
        core::v1::ConfigMap,
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        &[],
        &[]
    ),
    resource!(
        Secret,
        core::v1::Secret,
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        &[],
        true,
        &[],
        &[]
    ),
    resource!(
        Service,
        core::v1::Service,
        "",
        "v1",
        "Service",
        "services",
        "service",
        &["svc"],
        true,
        &["all"],
        &["status"]
    ),
    resource!(
        Endpoints,
        core::v1::Endpoints,
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        &[],
        &[]
    ),
    resource!(
        Event,
        core::v1::Event,
        "",
        "v1",
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        &[],
        &[]
    ),
    resource!(
        ServiceAccount,
        core::v1::ServiceAccount,
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        &[],
        &[]
    ),
    resource!(
        DaemonSet,
        apps::v1::DaemonSet,
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        true,
        &["all"],
        &["status", "placement", "preview", "log"]
    ),
    resource!(
        ControllerRevision,
        apps::v1::ControllerRevision,
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        &[],
        true,
        &[],
        &[]
    ),
    resource!(
        Lease,
        coordination::v1::Lease,
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        &[],
        true,
        &[],
        &[]
    ),
    resource!(
        PriorityClass,
        scheduling::v1::PriorityClass,
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        &["pc"],
        false,
        &[],
        &[]
    ),
    resource!(
        EventsV1Event,
        events::v1::Event,
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        &[],
        &[]
    ),
    resource!(
        Role,
        rbac::v1::Role,
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        &[],
        true,
        &[],
        &[]
    ),
    resource!(
        ClusterRole,
        rbac::v1::ClusterRole,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        &[],
        false,
        &[],
        &[]
    ),
    resource!(
        RoleBinding,
        rbac::v1::RoleBinding,
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        &[],
        true,
        &[],
        &[]
    ),
    resource!(
        ClusterRoleBinding,
        rbac::v1::ClusterRoleBinding,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        &[],
        false,
        &[],
        &[]
    ),
    resource!(
        CertificateSigningRequest,
        certificates::v1::CertificateSigningRequest,
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        "certificatesigningrequest",
        &["csr"],
        false,
        &[],
        &["status", "approval"]
    ),
    resource!(
        EndpointSlice,
        discovery::v1::EndpointSlice,
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        &[],
        true,
        &[],
        &[]
    ),
];

impl Resource {
    /// Registers the type's OpenAPI schema with `generator` and returns a reference to it.
    pub fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        (self.schema)(generator)
    }

    /// `apps/v1`, or `v1` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `daemonsets.apps`, or `pods` for core: how upstream names a resource in NotFound/Conflict messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    /// `DaemonSet.apps`, or `Pod` for core: how upstream names a kind in Invalid messages.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
    /// `DaemonSetList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    /// Storage prefix of every object of this resource, ending in '/'.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{group}/{}/", self.plural)
    }
    /// Storage prefix of one namespace's objects, or of all of them.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }
    /// Storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.list_prefix(namespace))
    }
    /// The resource whose storage holds this one's objects: itself, except `events.k8s.io`
    /// Events, which are stored as core Events as upstream stores them.
    pub fn stored_as(&self) -> &'static Resource {
        match self.id {
            Kind::EventsV1Event => by_kind(Kind::Event),
            _ => by_kind(self.id),
        }
    }
    /// This resource's view of an object stored by [`Resource::stored_as`].
    pub fn view_of_stored(&self, stored: Value) -> Value {
        match self.id {
            Kind::EventsV1Event => crate::event_versions::to_events_v1(&stored),
            _ => stored,
        }
    }
    /// The stored form of an object in this resource's view.
    pub fn stored_form<'a>(&self, view: &'a Value) -> std::borrow::Cow<'a, Value> {
        match self.id {
            Kind::EventsV1Event => std::borrow::Cow::Owned(crate::event_versions::to_core(view)),
            _ => std::borrow::Cow::Borrowed(view),
        }
    }
    /// The storage key of one object (see [`Resource::stored_as`]); [`Resource::key`] is where
    /// the watch cache keeps this resource's view of it.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        self.stored_as().key(namespace, name)
    }
    /// Whether the resource has this subresource.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
    /// Decodes a body into this resource's type and re-encodes it: unknown fields are dropped,
    /// wrongly typed ones reported with their path.
    pub fn decode(&self, v: Value) -> Result<Value, DecodeError> {
        (self.decode)(v)
    }
    /// Field selector labels this resource supports, beyond `metadata.name` and `metadata.namespace`.
    pub fn extra_field_labels(&self) -> &'static [&'static str] {
        match self.id {
            Kind::Pod => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            Kind::Node => &["spec.unschedulable"],
            Kind::Event => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            Kind::EventsV1Event => &[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "reason",
                "reportingController",
                "type",
            ],
            Kind::Secret => &["type"],
            Kind::CertificateSigningRequest => &["spec.signerName"],
            Kind::Namespace => &["status.phase"],
            _ => &[],
        }
    }
    /// Checks that every field a selector names is supported (upstream: "field label not supported").
    pub fn check_field_labels(
        &self,
        fields: &crate::selector::FieldSelector,
    ) -> Result<(), UnsupportedFieldLabel> {
        for term in &fields.0 {
            let f = term.field.as_str();
            if f != "metadata.name"
                && f != "metadata.namespace"
                && !self.extra_field_labels().contains(&f)
            {
                return Err(UnsupportedFieldLabel(f.to_owned()));
            }
        }
        Ok(())
    }
    /// The values of the selectable fields of `obj`.
    pub fn field_set(&self, obj: &Value) -> BTreeMap<&'static str, String> {
        let mut set = BTreeMap::new();
        set.insert("metadata.name", str_at(obj, &["metadata", "name"]));
        if self.namespaced {
            set.insert(
                "metadata.namespace",
                str_at(obj, &["metadata", "namespace"]),
            );
        }
        for label in self.extra_field_labels() {
            let path: Vec<&str> = label.split('.').collect();
            let value = match (self.id, *label) {
                (Kind::Event, "source") => str_at(obj, &["source", "component"]),
                (Kind::Pod, "spec.hostNetwork") => bool_at(obj, &path),
                (Kind::Node, "spec.unschedulable") => bool_at(obj, &path),
                _ => str_at(obj, &path),
            };
            set.insert(label, value);
        }
        set
    }
}

fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

fn str_at(obj: &Value, path: &[&str]) -> String {
    value_at(obj, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn bool_at(obj: &Value, path: &[&str]) -> String {
    value_at(obj, path)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// Fields of `raw` that decoding dropped: present (and not null) in the body, absent from the
/// decoded object. Paths are dotted (`spec.template.containers`), as upstream's strict decoder
/// reports them.
pub fn unknown_fields(raw: &Value, decoded: &Value) -> Vec<String> {
    fn walk(raw: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
        match (raw, decoded) {
            (Value::Object(r), Value::Object(d)) => {
                for (k, v) in r {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match d.get(k) {
                        Some(dv) => walk(v, dv, &p, out),
                        None if !v.is_null() => out.push(p),
                        None => {}
                    }
                }
            }
            (Value::Array(r), Value::Array(d)) => {
                for (i, (rv, dv)) in r.iter().zip(d).enumerate() {
                    walk(rv, dv, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(raw, decoded, "", &mut out);
    out
}

/// Finds a resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds the resource of a kind (core/v1 wins for `Event`).
pub fn by_kind(id: Kind) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or(&RESOURCES[0])
}

/// The served API groups other than core, in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_names() {
        let ds = find("apps", "v1", "daemonsets").expect("served");
        assert_eq!(
            ds.key(Some("default"), "fluentd"),
            "/apps/daemonsets/default/fluentd"
        );
        assert_eq!(ds.list_prefix(None), "/apps/daemonsets/");
        assert_eq!(ds.group_resource(), "daemonsets.apps");
        let node = find("", "v1", "nodes").expect("served");
        assert_eq!(node.key(Some("ignored"), "n1"), "/core/nodes/n1");
        assert_eq!(by_kind(Kind::Lease).group, "coordination.k8s.io");
        assert_eq!(
            groups(),
            vec![
                "apps",
                "coordination.k8s.io",
                "scheduling.k8s.io",
                "events.k8s.io",
                "rbac.authorization.k8s.io",
                "certificates.k8s.io",
                "discovery.k8s.io"
            ]
        );
    }

    #[test]
    fn decode_reports_path_of_wrong_type() {
        let ds = find("apps", "v1", "daemonsets").expect("served");
        let err = ds
            .decode(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
                "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}}}}))
            .expect_err("wrong type");
        assert_eq!(
            err.path,
            "spec.template.spec.containers[0].ports[0].containerPort"
        );
        let ok = ds.decode(json!({"metadata": {"name": "x", "bogus": 1}, "spec": {"selector": {}, "template": {}}})).expect("decodes");
        assert!(
            ok["metadata"].get("bogus").is_none(),
            "unknown fields are dropped"
        );
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let ds = find("apps", "v1", "daemonsets").expect("served");
        let raw = json!({"metadata": {"name": "x"}, "spec": {"selector": {}, "template": {"containers": [{"name": "c"}],
            "tolerations": [], "spec": {"containers": [{"name": "c", "imagee": "typo"}]}}, "bogus": null}});
        let decoded = ds.decode(raw.clone()).expect("decodes");
        assert_eq!(
            unknown_fields(&raw, &decoded),
            vec![
                "spec.template.containers",
                "spec.template.tolerations",
                "spec.template.spec.containers[0].imagee"
            ]
        );
    }

    #[test]
    fn field_sets() {
        let pods = find("", "v1", "pods").expect("served");
        let set = pods.field_set(&json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}));
        assert_eq!(set["spec.nodeName"], "n1");
        assert_eq!(set["status.phase"], "Running");
        assert_eq!(set["spec.hostNetwork"], "false");
        let bad = crate::selector::parse_field_selector("spec.bogus=1").expect("parses");
        assert_eq!(
            pods.check_field_labels(&bad)
                .expect_err("unsupported")
                .to_string(),
            "field label not supported: spec.bogus"
        );
    }
}

//! Validation entry points: object metadata for every kind, then the kind's own rules.

pub mod csr;
pub mod daemonset;
pub mod pod;
pub mod rbac;
pub mod service;

use crate::field::{BadValue, ErrorList, FieldError, Path};
use crate::names;
use crate::registry::{Kind, Resource};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn typed<T: DeserializeOwned + Default>(v: &Value) -> T {
    // The body was already decoded through the same type on the way in, so this cannot fail
    // for stored objects; a default keeps validation total either way.
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn meta_of(v: &Value) -> ObjectMeta {
    v.get("metadata").map(typed).unwrap_or_default()
}

fn name_errors(res: &Resource, name: &str) -> Vec<String> {
    match res.id {
        Kind::Namespace => names::dns1123_label(name),
        // RBAC names are path segments only, so `system:controller:x` is a valid name.
        Kind::Event
        | Kind::EventsV1Event
        | Kind::Role
        | Kind::ClusterRole
        | Kind::RoleBinding
        | Kind::ClusterRoleBinding => names::path_segment_name(name),
        _ => {
            let mut e = names::path_segment_name(name);
            if e.is_empty() {
                e = names::dns1123_subdomain(name);
            }
            e
        }
    }
}

/// `ValidateObjectMeta`.
pub fn validate_object_meta(res: &Resource, meta: &ObjectMeta) -> ErrorList {
    let path = Path::root("metadata");
    let mut errs = ErrorList::new();
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        if meta.generate_name.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for m in name_errors(res, name) {
            errs.push(FieldError::invalid(&path.child("name"), name, m));
        }
    }
    let ns = meta.namespace.as_deref().unwrap_or("");
    if res.namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for m in names::dns1123_label(ns) {
                errs.push(FieldError::invalid(&path.child("namespace"), ns, m));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    errs.extend(names::validate_labels(
        &meta.labels.clone().unwrap_or_default(),
        &path.child("labels"),
    ));
    errs.extend(names::validate_annotations(
        &meta.annotations.clone().unwrap_or_default(),
        &path.child("annotations"),
    ));
    for (i, owner) in meta.owner_references.iter().flatten().enumerate() {
        let p = path.child("ownerReferences").index(i);
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            if value.is_empty() {
                errs.push(FieldError::invalid(
                    &p.child(field),
                    "",
                    format!("{field} must not be empty"),
                ));
            }
        }
    }
    let controllers = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true))
        .count();
    if controllers > 1 {
        errs.push(FieldError::invalid(
            &path.child("ownerReferences"),
            BadValue::None,
            "Only one reference can have Controller set to true",
        ));
    }
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        for m in names::qualified_name(f) {
            errs.push(FieldError::invalid(
                &path.child("finalizers").index(i),
                f,
                m,
            ));
        }
    }
    errs
}

/// `ValidateObjectMetaUpdate`: identity fields may not change.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let path = Path::root("metadata");
    let mut errs = ErrorList::new();
    if new.name != old.name {
        errs.push(FieldError::invalid(
            &path.child("name"),
            new.name.as_deref().unwrap_or(""),
            "field is immutable",
        ));
    }
    if new.namespace != old.namespace {
        errs.push(FieldError::invalid(
            &path.child("namespace"),
            new.namespace.as_deref().unwrap_or(""),
            "field is immutable",
        ));
    }
    errs
}

fn validate_node(node: &Node) -> ErrorList {
    let mut errs = ErrorList::new();
    let path = Path::root("spec").child("taints");
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = path.index(i);
        for m in names::qualified_name(&t.key) {
            errs.push(FieldError::invalid(&p.child("key"), &t.key, m));
        }
        for m in names::label_value(t.value.as_deref().unwrap_or("")) {
            errs.push(FieldError::invalid(
                &p.child("value"),
                t.value.as_deref().unwrap_or(""),
                m,
            ));
        }
        if !pod::taint_effects().contains(&t.effect.as_str()) {
            errs.push(FieldError::not_supported(
                &p.child("effect"),
                &t.effect,
                pod::taint_effects(),
            ));
        }
        if !seen.insert((t.key.clone(), t.effect.clone())) {
            errs.push(FieldError::duplicate(
                &p,
                BadValue::Raw(format!(
                    "{}={}:{}",
                    t.key,
                    t.value.as_deref().unwrap_or(""),
                    t.effect
                )),
            ));
        }
    }
    errs
}

fn validate_controller_revision(cr: &ControllerRevision, raw: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    if raw.get("data").is_none_or(Value::is_null) || cr.data.is_none() {
        errs.push(FieldError::required(&Path::root("data"), ""));
    }
    if cr.revision < 0 {
        errs.push(FieldError::invalid(
            &Path::root("revision"),
            cr.revision,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

fn validate_priority_class(pc: &PriorityClass) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = pc.metadata.name.as_deref().unwrap_or("");
    let builtin = matches!(name, "system-node-critical" | "system-cluster-critical");
    if !builtin && pc.value > 1_000_000_000 {
        errs.push(FieldError::forbidden(
            &Path::root("value"),
            "maximum allowed value of a user defined priority is 1000000000",
        ));
    }
    if !builtin && name.starts_with("system-") {
        errs.push(FieldError::invalid(
            &Path::root("metadata").child("name"),
            name,
            "priority class names with 'system-' prefix are reserved",
        ));
    }
    if let Some(p) = pc.preemption_policy.as_deref()
        && !["Never", "PreemptLowerPriority"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            &Path::root("preemptionPolicy"),
            p,
            &["Never", "PreemptLowerPriority"],
        ));
    }
    errs
}

/// Everything checked when an object is created.
pub fn validate_create(res: &Resource, obj: &Value) -> ErrorList {
    let mut errs = validate_object_meta(res, &meta_of(obj));
    errs.extend(validate_kind(res, obj));
    errs
}

fn validate_kind(res: &Resource, obj: &Value) -> ErrorList {
    match res.id {
        Kind::DaemonSet => daemonset::validate_spec(&typed::<DaemonSet>(obj), obj),
        Kind::Pod => {
            let pod: Pod = typed(obj);
            pod::validate_pod_spec(&pod.spec.unwrap_or_default(), &Path::root("spec"))
        }
        Kind::Node => validate_node(&typed(obj)),
        Kind::ControllerRevision => validate_controller_revision(&typed(obj), obj),
        Kind::PriorityClass => validate_priority_class(&typed(obj)),
        Kind::Role => rbac::validate_rules(obj, true),
        Kind::ClusterRole => rbac::validate_rules(obj, false),
        Kind::RoleBinding => rbac::validate_binding(obj, true),
        Kind::ClusterRoleBinding => rbac::validate_binding(obj, false),
        Kind::ConfigMap => validate_data_size(obj, &["data", "binaryData"], Path::root("[]")),
        Kind::Secret => validate_data_size(obj, &["data"], Path::root("data")),
        Kind::CertificateSigningRequest => csr::validate(obj),
        Kind::Service => service::validate(&typed(obj)),
        _ => ErrorList::new(),
    }
}

/// Upstream's limit on what a ConfigMap or a Secret holds (`core.MaxSecretSize`), so that one
/// object cannot crowd out the rest of the store.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The bytes a base64 value decodes to (`binaryData` and Secret `data` are base64 on the wire,
/// and decoding has already checked the form).
fn decoded_len(value: &str) -> usize {
    let padding = value.bytes().rev().take_while(|b| *b == b'=').count();
    (value.len() / 4 * 3).saturating_sub(padding)
}

/// ConfigMap data plus binaryData, or Secret data, at most `MAX_DATA_BYTES` in all
/// (upstream reports it on `[]` for a ConfigMap and on `data` for a Secret).
fn validate_data_size(obj: &Value, maps: &[&str], field: Path) -> ErrorList {
    let is_secret = maps == ["data"];
    let total: usize = maps
        .iter()
        .filter_map(|m| obj.get(*m).and_then(Value::as_object).map(|o| (*m, o)))
        .flat_map(|(m, o)| {
            o.values().filter_map(Value::as_str).map(move |v| {
                if is_secret || m == "binaryData" {
                    decoded_len(v)
                } else {
                    v.len()
                }
            })
        })
        .sum();
    if total > MAX_DATA_BYTES {
        vec![FieldError::too_long(&field, MAX_DATA_BYTES)]
    } else {
        ErrorList::new()
    }
}

/// Everything checked when an object is replaced through its main resource.
pub fn validate_update(res: &Resource, new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_object_meta(res, &meta_of(new));
    errs.extend(validate_object_meta_update(&meta_of(new), &meta_of(old)));
    errs.extend(validate_kind(res, new));
    match res.id {
        Kind::DaemonSet => errs.extend(daemonset::validate_update(&typed(new), &typed(old))),
        Kind::Service => errs.extend(service::validate_update(&typed(new), &typed(old))),
        Kind::ControllerRevision if new.get("data") != old.get("data") => {
            errs.push(FieldError::invalid(
                &Path::root("data"),
                BadValue::Raw("runtime.RawExtension{...}".into()),
                "field is immutable",
            ));
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding
            if new.get("roleRef") != old.get("roleRef") =>
        {
            errs.push(FieldError::invalid(
                &Path::root("roleRef"),
                BadValue::Raw(rbac::role_ref_go_value(new)),
                "cannot change roleRef",
            ));
        }
        Kind::Pod => {
            // Pod specs are immutable apart from a few fields; spec.nodeName is set only by binding.
            let spec = |v: &Value, f: &str| v.get("spec").and_then(|s| s.get(f)).cloned();
            if spec(new, "nodeName") != spec(old, "nodeName") && spec(old, "nodeName").is_some() {
                errs.push(FieldError::forbidden(&Path::root("spec").child("nodeName"), "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
            }
        }
        _ => {}
    }
    errs
}

/// Everything checked when an object's status is written through `/status`.
pub fn validate_status_update(res: &Resource, new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_object_meta_update(&meta_of(new), &meta_of(old));
    if res.id == Kind::DaemonSet {
        let (n, o): (DaemonSet, DaemonSet) = (typed(new), typed(old));
        errs.extend(daemonset::validate_status_update(
            n.status.as_ref(),
            o.status.as_ref(),
        ));
    }
    if res.id == Kind::CertificateSigningRequest {
        errs.extend(csr::validate_status_update(new, old));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    #[test]
    fn s018_controller_revision_data_immutable() {
        let res = find("apps", "v1", "controllerrevisions").expect("served");
        let old = json!({"metadata": {"name": "foo-1", "namespace": "default"}, "data": {"a": 1}, "revision": 1});
        let mut new = old.clone();
        new["data"] = json!({"a": 2});
        let e = validate_update(res, &new, &old);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field.as_str(), "data");
        let mut renumbered = old.clone();
        renumbered["revision"] = json!(5);
        renumbered["metadata"]["labels"] = json!({"x": "y"});
        assert!(validate_update(res, &renumbered, &old).is_empty());
        let missing =
            json!({"metadata": {"name": "foo-1", "namespace": "default"}, "revision": -1});
        let e: Vec<String> = validate_create(res, &missing)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e,
            vec![
                "data: Required value",
                "revision: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }

    #[test]
    fn object_meta_rules() {
        let res = find("apps", "v1", "daemonsets").expect("served");
        let meta: ObjectMeta =
            serde_json::from_value(json!({"namespace": "default", "labels": {"bad key!": "v"}}))
                .expect("meta");
        let e: Vec<String> = validate_object_meta(res, &meta)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            e[0],
            "metadata.name: Required value: name or generateName is required"
        );
        assert!(
            e[1].starts_with("metadata.labels: Invalid value: \"bad key!\""),
            "{e:?}"
        );
        let ns = find("", "v1", "namespaces").expect("served");
        let meta: ObjectMeta = serde_json::from_value(json!({"name": "a.b"})).expect("meta");
        assert!(
            validate_object_meta(ns, &meta)[0]
                .to_string()
                .starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label")
        );
    }

    #[test]
    fn node_taints() {
        let nodes = find("", "v1", "nodes").expect("served");
        let node = json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}, {"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]}});
        let e: Vec<String> = validate_create(nodes, &node)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            e[0].starts_with("spec.taints[0].effect: Unsupported value: \"Sometimes\""),
            "{e:?}"
        );
        assert!(e[1].starts_with("spec.taints[2]: Duplicate value"), "{e:?}");
    }
}

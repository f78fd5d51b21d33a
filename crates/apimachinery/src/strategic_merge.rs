//! Strategic merge patch (`application/strategic-merge-patch+json`), as apimachinery's
//! `strategicpatch` applies it. Written here because no maintained crate implements it.
//!
//! A patch merges into the object like a JSON merge patch (null deletes a key), except that:
//! - lists whose Go field declares `patchStrategy:"merge"` are merged element by element on their
//!   `patchMergeKey` (containers by `name`, ports by `containerPort`, ...), or as sets for
//!   primitive lists (finalizers); all other lists are replaced;
//! - directives steer the merge: `$patch: replace|delete|merge` in a map or list element,
//!   `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`;
//! - merged lists are ordered as upstream orders them: patch items in patch (or
//!   `$setElementOrder`) order, items only on the server kept in their relative places.

use everynode_api::registry::Kind;
use serde_json::{Map, Value};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// A patch that cannot be applied. Not retryable: the patch itself is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("Unknown patch type: {0}")]
    UnknownDirective(String),
    #[error("map: {item} does not contain declared merge key: {key}")]
    MissingMergeKey { item: String, key: String },
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A directive of the wrong shape (upstream's `mergepatch.ErrBadPatchFormat*`): the
    /// request is malformed, a 400.
    #[error("{0}")]
    BadFormat(&'static str),
    /// A patch field outside its map's `$retainKeys` list (upstream's 422).
    #[error("patch content doesn't match retainKeys list")]
    NotMatchRetainKeys,
}

impl PatchError {
    /// Whether upstream answers this with 400 Bad Request (else 422 Unprocessable Entity).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, PatchError::BadFormat(_))
    }
}

const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ORDER: &str = "invalid patch format of setElementOrder list";
const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";

/// The Go types whose fields carry patch strategies. `Any` merges maps and replaces lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Any,
    Root(Kind),
    ObjectMeta,
    DaemonSetSpec,
    DaemonSetStatus,
    PodTemplateSpec,
    PodSpec,
    Container,
    Volume,
    PodStatus,
    NodeSpec,
    NodeStatus,
    ServiceSpec,
    /// Items of `status.conditions`-like lists.
    Leaf,
}

/// How a list field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    Replace,
    /// Merge maps on the first of these keys (`patchMergeKey`); server-side apply identifies
    /// items by all of them (`x-kubernetes-list-map-keys`).
    MergeOn(&'static [&'static str]),
    /// Merge primitives as a set.
    MergeSet,
}

use ListStrategy::{MergeOn, MergeSet};

/// Fields leading to typed structs (for navigation).
const OBJECT_FIELDS: &[(Ty, &str, Ty)] = &[
    (Ty::Root(Kind::DaemonSet), "spec", Ty::DaemonSetSpec),
    (Ty::Root(Kind::DaemonSet), "status", Ty::DaemonSetStatus),
    (Ty::Root(Kind::Pod), "spec", Ty::PodSpec),
    (Ty::Root(Kind::Pod), "status", Ty::PodStatus),
    (Ty::Root(Kind::Node), "spec", Ty::NodeSpec),
    (Ty::Root(Kind::Node), "status", Ty::NodeStatus),
    (Ty::Root(Kind::Service), "spec", Ty::ServiceSpec),
    (Ty::DaemonSetSpec, "template", Ty::PodTemplateSpec),
    (Ty::PodTemplateSpec, "spec", Ty::PodSpec),
    (Ty::PodTemplateSpec, "metadata", Ty::ObjectMeta),
];

/// Every list field with a patch strategy: `patchStrategy`/`patchMergeKey` upstream. The same
/// table is published in the OpenAPI documents, which is where kubectl reads it from.
const LIST_FIELDS: &[(Ty, &str, Ty, ListStrategy)] = &[
    (Ty::ObjectMeta, "finalizers", Ty::Leaf, MergeSet),
    (
        Ty::ObjectMeta,
        "ownerReferences",
        Ty::Leaf,
        MergeOn(&["uid"]),
    ),
    (
        Ty::DaemonSetStatus,
        "conditions",
        Ty::Leaf,
        MergeOn(&["type"]),
    ),
    (Ty::PodStatus, "conditions", Ty::Leaf, MergeOn(&["type"])),
    (Ty::PodStatus, "podIPs", Ty::Leaf, MergeOn(&["ip"])),
    (Ty::NodeStatus, "conditions", Ty::Leaf, MergeOn(&["type"])),
    (Ty::NodeStatus, "addresses", Ty::Leaf, MergeOn(&["type"])),
    (Ty::PodSpec, "containers", Ty::Container, MergeOn(&["name"])),
    (
        Ty::PodSpec,
        "initContainers",
        Ty::Container,
        MergeOn(&["name"]),
    ),
    (
        Ty::PodSpec,
        "ephemeralContainers",
        Ty::Container,
        MergeOn(&["name"]),
    ),
    (Ty::PodSpec, "volumes", Ty::Volume, MergeOn(&["name"])),
    (
        Ty::PodSpec,
        "imagePullSecrets",
        Ty::Leaf,
        MergeOn(&["name"]),
    ),
    (Ty::PodSpec, "resourceClaims", Ty::Leaf, MergeOn(&["name"])),
    (Ty::PodSpec, "schedulingGates", Ty::Leaf, MergeOn(&["name"])),
    (Ty::PodSpec, "hostAliases", Ty::Leaf, MergeOn(&["ip"])),
    (Ty::Container, "env", Ty::Leaf, MergeOn(&["name"])),
    (
        Ty::Container,
        "ports",
        Ty::Leaf,
        MergeOn(&["containerPort", "protocol"]),
    ),
    (
        Ty::Container,
        "volumeMounts",
        Ty::Leaf,
        MergeOn(&["mountPath"]),
    ),
    (
        Ty::Container,
        "volumeDevices",
        Ty::Leaf,
        MergeOn(&["devicePath"]),
    ),
    (
        Ty::ServiceSpec,
        "ports",
        Ty::Leaf,
        MergeOn(&["port", "protocol"]),
    ),
];

/// The type of `field` inside `ty`, and how it is patched if it is a list.
fn field(ty: Ty, name: &str) -> (Ty, ListStrategy) {
    if let Some((_, _, child, strategy)) = LIST_FIELDS
        .iter()
        .find(|(t, f, _, _)| *t == ty && *f == name)
    {
        return (*child, *strategy);
    }
    if let Some((_, _, child)) = OBJECT_FIELDS
        .iter()
        .find(|(t, f, _)| *t == ty && *f == name)
    {
        return (*child, ListStrategy::Replace);
    }
    if name == "metadata" && matches!(ty, Ty::Root(_)) {
        return (Ty::ObjectMeta, ListStrategy::Replace);
    }
    (Ty::Any, ListStrategy::Replace)
}

/// How server-side apply treats a list (`x-kubernetes-list-type`), from the same table the
/// strategic merge patch uses: lists merged on a key are associative, primitive lists merged as
/// sets are sets, every other list is atomic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    /// Items identified by these fields (`x-kubernetes-list-map-keys`).
    Map(&'static [&'static str]),
}

/// A position in an object's type, for walking it field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schema(Ty);

impl Schema {
    /// The top of an object of `kind`.
    pub fn root(kind: Kind) -> Self {
        Schema(Ty::Root(kind))
    }

    /// The type of `name` inside this one (of its items, for a list), and its list type.
    pub fn field(self, name: &str) -> (Schema, ListType) {
        let (child, strategy) = field(self.0, name);
        let list = match strategy {
            ListStrategy::Replace => ListType::Atomic,
            MergeSet => ListType::Set,
            MergeOn(keys) => ListType::Map(keys),
        };
        (Schema(child), list)
    }
}

fn schema_type_name(ty: Ty) -> Option<&'static str> {
    Some(match ty {
        Ty::ObjectMeta => "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        Ty::DaemonSetStatus => "io.k8s.api.apps.v1.DaemonSetStatus",
        Ty::PodStatus => "io.k8s.api.core.v1.PodStatus",
        Ty::NodeStatus => "io.k8s.api.core.v1.NodeStatus",
        Ty::PodSpec => "io.k8s.api.core.v1.PodSpec",
        Ty::Container => "io.k8s.api.core.v1.Container",
        Ty::ServiceSpec => "io.k8s.api.core.v1.ServiceSpec",
        _ => return None,
    })
}

/// OpenAPI extensions for each list field with a patch strategy, as upstream publishes them:
/// `(schema name, property, extensions)`.
pub fn openapi_extensions() -> Vec<(&'static str, &'static str, Value)> {
    LIST_FIELDS
        .iter()
        .filter_map(|(ty, name, _, strategy)| {
            let schema = schema_type_name(*ty)?;
            let ext = match strategy {
                MergeOn(keys) => {
                    let key = keys.first()?;
                    let patch_strategy = if *name == "volumes" { "merge,retainKeys" } else { "merge" };
                    serde_json::json!({"x-kubernetes-patch-merge-key": key, "x-kubernetes-patch-strategy": patch_strategy,
                        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys})
                }
                MergeSet => serde_json::json!({"x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set"}),
                ListStrategy::Replace => return None,
            };
            Some((schema, *name, ext))
        })
        .collect()
}

/// Applies a strategic merge patch to an object of `kind`.
pub fn apply(original: &Value, patch: &Value, kind: Kind) -> Result<Value, PatchError> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    merge_map(o.clone(), p.clone(), Ty::Root(kind)).map(Value::Object)
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(PATCH) {
        match directive.as_str() {
            Some("replace") => return Ok(patch),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => return Err(PatchError::UnknownDirective(key_text(&directive))),
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        // A string or map here used to retain nothing and wipe the map.
        let keep: Vec<String> = retain
            .as_array()
            .ok_or(PatchError::BadFormat(BAD_RETAIN_KEYS))?
            .iter()
            .map(|k| k.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(PatchError::BadFormat(BAD_RETAIN_KEYS))?;
        let outside = patch
            .iter()
            .any(|(k, v)| !v.is_null() && !k.starts_with('$') && !keep.contains(k));
        if outside {
            return Err(PatchError::NotMatchRetainKeys);
        }
        original.retain(|k, _| keep.contains(k));
    }
    // $setElementOrder directives merge their list now and fix its order.
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for order_key in order_keys {
        let field_name = order_key[SET_ORDER.len()..].to_owned();
        let order = match patch.remove(&order_key) {
            Some(Value::Array(order)) => order,
            _ => return Err(PatchError::BadFormat(BAD_SET_ORDER)),
        };
        let (item_ty, strategy) = field(ty, &field_name);
        let orig_list = original
            .get(&field_name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let merged = match patch.remove(&field_name) {
            Some(Value::Array(p)) => merge_list_items(&orig_list, p, strategy, item_ty)?,
            Some(Value::Null) => Vec::new(),
            _ => orig_list.clone(),
        };
        let sorted = normalize_order(merged, &order, &orig_list, strategy);
        if sorted.is_empty() {
            original.remove(&field_name);
        } else {
            original.insert(field_name, Value::Array(sorted));
        }
    }
    for (k, pv) in patch {
        if let Some(field_name) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(remove) = pv else {
                return Err(PatchError::BadFormat(BAD_PRIMITIVE_LIST));
            };
            if let Some(Value::Array(list)) = original.get_mut(field_name) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(PatchError::UnknownDirective(k));
        }
        if pv.is_null() {
            original.remove(&k);
            continue;
        }
        let (child_ty, strategy) = field(ty, &k);
        let merged = match (original.remove(&k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p, child_ty)?),
            (Some(Value::Array(o)), Value::Array(p)) => {
                Value::Array(merge_list(&o, p, strategy, child_ty)?)
            }
            (None, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, child_ty)?),
            (None, Value::Array(p)) => Value::Array(merge_list(&[], p, strategy, child_ty)?),
            (_, p) => p,
        };
        original.insert(k, merged);
    }
    Ok(original)
}

/// Merges a list and orders it by the patch, as upstream does without `$setElementOrder`.
fn merge_list(
    original: &[Value],
    patch: Vec<Value>,
    strategy: ListStrategy,
    item_ty: Ty,
) -> Result<Vec<Value>, PatchError> {
    if strategy == ListStrategy::Replace {
        return Ok(patch);
    }
    let order = patch.clone();
    let merged = merge_list_items(original, patch, strategy, item_ty)?;
    Ok(normalize_order(merged, &order, original, strategy))
}

fn merge_key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key)
}

fn merge_list_items(
    original: &[Value],
    patch: Vec<Value>,
    strategy: ListStrategy,
    item_ty: Ty,
) -> Result<Vec<Value>, PatchError> {
    match strategy {
        // No key to merge on (no table entry is written so): replace, as for atomic lists.
        ListStrategy::Replace | ListStrategy::MergeOn(&[]) => Ok(patch),
        ListStrategy::MergeSet => {
            let mut out: Vec<Value> = original.to_vec();
            for p in patch {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            Ok(out)
        }
        ListStrategy::MergeOn(&[key, ..]) => {
            let mut out: Vec<Value> = original.to_vec();
            let mut rest = Vec::new();
            for p in patch {
                match p.get(PATCH).and_then(Value::as_str) {
                    Some("replace") => {
                        // The remaining patch items replace the whole list.
                        out.clear();
                        continue;
                    }
                    Some("delete") => {
                        let target = merge_key_of(&p, key).cloned().ok_or_else(|| {
                            PatchError::MissingMergeKey {
                                item: p.to_string(),
                                key: key.to_owned(),
                            }
                        })?;
                        out.retain(|o| merge_key_of(o, key) != Some(&target));
                        continue;
                    }
                    Some("merge") | None => rest.push(p),
                    Some(other) => return Err(PatchError::UnknownDirective(other.to_owned())),
                }
            }
            for p in rest {
                let Value::Object(pm) = p else {
                    return Err(PatchError::Invalid(format!(
                        "list items merged on {key:?} must be objects"
                    )));
                };
                let k = pm
                    .get(key)
                    .cloned()
                    .ok_or_else(|| PatchError::MissingMergeKey {
                        item: Value::Object(pm.clone()).to_string(),
                        key: key.to_owned(),
                    })?;
                match out.iter().position(|o| merge_key_of(o, key) == Some(&k)) {
                    Some(i) => {
                        let existing = match std::mem::take(&mut out[i]) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        out[i] = Value::Object(merge_map(existing, pm, item_ty)?);
                    }
                    None => out.push(Value::Object(merge_map(Map::new(), pm, item_ty)?)),
                }
            }
            Ok(out)
        }
    }
}

/// Upstream's `normalizeElementOrder`: items named by `order` come in that order; items only on
/// the server keep their original relative order, interleaved by their original positions.
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    server: &[Value],
    strategy: ListStrategy,
) -> Vec<Value> {
    let identity = |v: &Value| -> Value {
        match strategy {
            ListStrategy::MergeOn(&[key, ..]) => v.get(key).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order
        .iter()
        .filter(|v| v.get(PATCH).is_none())
        .map(identity)
        .collect();
    let server_ids: Vec<Value> = server.iter().map(identity).collect();
    let (mut from_patch, from_server): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| order_ids.contains(&identity(v)));
    from_patch.sort_by_key(|v| {
        order_ids
            .iter()
            .position(|o| *o == identity(v))
            .unwrap_or(usize::MAX)
    });
    let pos = |v: &Value| server_ids.iter().position(|s| *s == identity(v));
    let mut out = Vec::with_capacity(from_patch.len() + from_server.len());
    let (mut left, mut right) = (
        from_patch.into_iter().peekable(),
        from_server.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((pos(l), pos(r)), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(containers: Value) -> Value {
        json!({"metadata": {"name": "foo", "labels": {"a": "1"}}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": containers}}}})
    }

    #[test]
    fn containers_merge_by_name_and_scalars_replace() {
        let original = ds(
            json!([{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]}, {"name": "b", "image": "b:1"}]),
        );
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]}, {"name": "b", "image": "b:2"}])
        );
    }

    #[test]
    fn env_merges_by_name_tolerations_replace() {
        let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}],
            "tolerations": [{"key": "k1", "operator": "Exists"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}],
            "tolerations": [{"key": "k2", "operator": "Exists"}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}])
        );
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "k2", "operator": "Exists"}]),
            "tolerations have no merge strategy"
        );
    }

    #[test]
    fn null_deletes_and_maps_merge() {
        let out = apply(
            &json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
            Kind::ConfigMap,
        )
        .expect("applies");
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }

    #[test]
    fn patch_replace_directive_replaces_the_template_as_rollout_undo_sends_it() {
        let original =
            ds(json!([{"name": "a", "image": "a:2", "env": [{"name": "NEW", "value": "x"}]}]));
        let revision_data = json!({"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}});
        let out = apply(&original, &revision_data, Kind::DaemonSet).expect("applies");
        assert_eq!(
            out["spec"]["template"],
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}})
        );
        assert_eq!(
            out["metadata"]["labels"]["a"], "1",
            "everything outside the template is untouched"
        );
    }

    #[test]
    fn delete_directive_in_a_list_and_map() {
        let original = ds(json!([{"name": "a"}, {"name": "b"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete", "name": "a"}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b"}])
        );
        let cleared = apply(
            &json!({"metadata": {"labels": {"a": "1"}}}),
            &json!({"metadata": {"labels": {"$patch": "delete"}}}),
            Kind::Pod,
        )
        .expect("applies");
        assert_eq!(cleared["metadata"]["labels"], json!({}));
    }

    #[test]
    fn replace_directive_inside_a_list() {
        let original = ds(json!([{"name": "a"}, {"name": "b"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c"}])
        );
    }

    #[test]
    fn set_element_order_and_delete_from_primitive_list_as_kubectl_apply_sends_them() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]},
            "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "1"}, {"name": "y", "image": "1"}, {"name": "z", "image": "1"}]}}}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]},
            "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "z"}, {"name": "x"}], "containers": [{"name": "y", "$patch": "delete"}, {"name": "z", "image": "2"}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "z", "image": "2"}, {"name": "x", "image": "1"}])
        );
    }

    #[test]
    fn retain_keys_clears_other_members_of_a_union() {
        let original = json!({"spec": {"template": {"spec": {"containers": [], "volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "$retainKeys": ["emptyDir", "name"], "emptyDir": {}}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "v", "emptyDir": {}}])
        );
    }

    /// Issue 15, defect 10: directives of the wrong type were accepted, and a string
    /// `$retainKeys` wiped the spec. Upstream refuses each with its own 400 message, and a patch
    /// field outside `$retainKeys` with a 422.
    #[test]
    fn directives_of_the_wrong_shape_are_refused_not_obeyed() {
        let original = json!({"metadata": {"finalizers": ["a"]}, "spec": {"minReadySeconds": 1,
            "template": {"spec": {"containers": [{"name": "x"}]}}}});
        let cases = [
            (
                json!({"spec": {"$retainKeys": "spec"}}),
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec": {"$retainKeys": [1]}}),
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "x"}}}}),
                "invalid patch format of setElementOrder list",
            ),
            (
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": {"a": 1}}}),
                "invalid patch format of primitive list",
            ),
        ];
        for (patch, message) in cases {
            let err = apply(&original, &patch, Kind::DaemonSet).expect_err("refused");
            assert_eq!(err.to_string(), message, "{patch}");
            assert!(err.is_bad_request());
        }
        let outside = json!({"spec": {"$retainKeys": ["template"], "minReadySeconds": 2}});
        let err = apply(&original, &outside, Kind::DaemonSet).expect_err("refused");
        assert_eq!(err, PatchError::NotMatchRetainKeys);
        assert!(!err.is_bad_request());
    }

    #[test]
    fn new_items_go_after_server_items_and_patch_order_wins_among_patched() {
        let original = ds(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "2"}, {"name": "d"}]}}}});
        let out = apply(&original, &patch, Kind::DaemonSet).expect("applies");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            apply(&json!({}), &json!({"$patch": "explode"}), Kind::Pod),
            Err(PatchError::UnknownDirective("explode".into()))
        );
        let missing = apply(
            &ds(json!([{"name": "a"}])),
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            Kind::DaemonSet,
        );
        assert!(matches!(missing, Err(PatchError::MissingMergeKey { .. })));
        assert!(apply(&json!({}), &json!([1]), Kind::Pod).is_err());
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let original = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let out = apply(&original, &patch, Kind::Pod).expect("applies");
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
    }
}

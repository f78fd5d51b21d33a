//! What the registry does to an object on create and update, before validation: status handling,
//! `metadata.generation` and the DaemonSet template generation (spec §1.4). Pure functions.

use crate::quantity::Quantity;
use crate::registry::{Kind, Resource};
use serde_json::{Value, json};

/// The DaemonSet annotation carrying the template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

fn annotation(obj: &Value, key: &str) -> Option<String> {
    obj.get("metadata")?
        .get("annotations")?
        .get(key)?
        .as_str()
        .map(str::to_owned)
}

fn set_annotation(obj: &mut Value, key: &str, value: String) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[key] = Value::String(value);
    }
}

/// The template generation stored on a DaemonSet; a missing or non-integer value is `None`.
pub fn template_generation(ds: &Value) -> Option<i64> {
    annotation(ds, TEMPLATE_GENERATION_ANNOTATION)?.parse().ok()
}

fn generation(obj: &Value) -> i64 {
    obj.get("metadata")
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn set_generation(obj: &mut Value, g: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("generation".into(), json!(g));
    }
}

fn without(obj: &Value, keys: &[&str]) -> Value {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}

/// The QoS class of a pod spec, as upstream's `GetPodQOS` computes it.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten())
        .collect::<Vec<_>>();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let get = |kind: &str, res: &str| {
            c.get("resources")
                .and_then(|r| r.get(kind))
                .and_then(|m| m.get(res))
                .and_then(Value::as_str)
                .and_then(|q| Quantity::parse(q).ok())
        };
        for res in ["cpu", "memory"] {
            let (req, lim) = (get("requests", res), get("limits", res));
            if req.is_some_and(|q| q > Quantity::ZERO) || lim.is_some_and(|q| q > Quantity::ZERO) {
                any = true;
            }
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Registry work on create (after defaulting, before validation): status and generations.
pub fn prepare_for_create(res: &Resource, obj: &mut Value) {
    set_generation(obj, 1);
    match res.id {
        Kind::DaemonSet => {
            obj["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
            let supplied = template_generation(obj).unwrap_or(0);
            set_annotation(
                obj,
                TEMPLATE_GENERATION_ANNOTATION,
                supplied.max(1).to_string(),
            );
        }
        Kind::CertificateSigningRequest => crate::csr::prepare_for_create(obj),
        Kind::Pod => {
            let qos = obj.get("spec").map_or("BestEffort", qos_class);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        Kind::Namespace => {
            // Upstream's namespace strategy: a new namespace is Active and carries the
            // `kubernetes` finalizer, whatever the client sent (kubectl sends `spec: {}`), so
            // its deletion waits until the namespace controller has emptied it.
            obj["status"] = json!({"phase": "Active"});
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            let finalizers = &mut obj["spec"]["finalizers"];
            if !finalizers.is_array() {
                *finalizers = json!([]);
            }
            if let Some(list) = finalizers.as_array_mut()
                && !list.iter().any(|f| f == "kubernetes")
            {
                list.push(json!("kubernetes"));
            }
        }
        _ => {}
    }
}

/// Registry work on an update through the main resource: status is kept from the stored object,
/// generation rises when the spec changes, and for DaemonSets the template generation rises when
/// the template changes (spec §1.4; S-014, S-015, S-016).
pub fn prepare_for_update(res: &Resource, new: &mut Value, old: &Value) {
    if res.id == Kind::CertificateSigningRequest {
        crate::csr::prepare_for_update(new, old);
    }
    if res.has_subresource("status") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let old_gen = generation(old);
    let changed = |new: &Value| {
        without(new, &["metadata", "status"]) != without(old, &["metadata", "status"])
    };
    let mut next_gen = old_gen;
    if res.id == Kind::DaemonSet {
        let old_template = old.get("spec").and_then(|s| s.get("template"));
        let new_template = new.get("spec").and_then(|s| s.get("template"));
        let mut tg = template_generation(old).unwrap_or(1);
        if old_template != new_template {
            tg += 1;
            next_gen += 1;
        } else if changed(new) {
            next_gen += 1;
        }
        set_annotation(new, TEMPLATE_GENERATION_ANNOTATION, tg.to_string());
    } else if changed(new) {
        next_gen += 1;
    } else if res.id == Kind::EndpointSlice
        && new["metadata"].get("labels") != old["metadata"].get("labels")
    {
        // Upstream's EndpointSlice strategy counts a label change as a new generation: the
        // labels say which Service the slice serves.
        next_gen += 1;
    }
    set_generation(new, next_gen);
}

/// Registry work on a write to `/status`: everything but the status comes from the stored object.
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    let mut merged = old.clone();
    if let Some(o) = merged.as_object_mut() {
        match status {
            Some(s) => {
                o.insert("status".into(), s);
            }
            None => {
                o.remove("status");
            }
        }
    }
    // The precondition the client sent is kept so the store can check it.
    if let Some(rv) = new
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .cloned()
    {
        merged["metadata"]["resourceVersion"] = rv;
    }
    *new = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use crate::registry::find;

    fn ds() -> Value {
        json!({"metadata": {"name": "foo", "namespace": "default", "labels": {"a": "b"}},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}})
    }

    fn create(mut obj: Value) -> Value {
        let res = find("apps", "v1", "daemonsets").expect("served");
        defaults::apply(res.id, &mut obj);
        prepare_for_create(res, &mut obj);
        obj
    }

    fn update(old: &Value, mut new: Value) -> Value {
        let res = find("apps", "v1", "daemonsets").expect("served");
        defaults::apply(res.id, &mut new);
        prepare_for_update(res, &mut new, old);
        new
    }

    #[test]
    fn s001_create_sets_generation_and_template_generation() {
        let stored = create(ds());
        assert_eq!(stored["metadata"]["generation"], 1);
        assert_eq!(
            stored["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
            "1"
        );
        assert_eq!(stored["status"]["numberReady"], 0);
    }

    #[test]
    fn s014_generation_and_template_generation() {
        let v1 = create(ds());
        let mut image = v1.clone();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
        let v2 = update(&v1, image);
        assert_eq!(
            (
                v2["metadata"]["generation"].as_i64(),
                template_generation(&v2)
            ),
            (Some(2), Some(2))
        );
        let mut mrs = v2.clone();
        mrs["spec"]["minReadySeconds"] = json!(5);
        let v3 = update(&v2, mrs);
        assert_eq!(
            (
                v3["metadata"]["generation"].as_i64(),
                template_generation(&v3)
            ),
            (Some(3), Some(2))
        );
        let mut labels = v3.clone();
        labels["metadata"]["labels"]["x"] = json!("y");
        let v4 = update(&v3, labels);
        assert_eq!(v4["metadata"]["generation"], 3);
        let v5 = update(&v4, v4.clone());
        assert_eq!(v5["metadata"]["generation"], 3);
    }

    #[test]
    fn s015_template_generation_settable_only_at_create() {
        let mut supplied = ds();
        supplied["metadata"]["annotations"] = json!({TEMPLATE_GENERATION_ANNOTATION: "999"});
        let v1 = create(supplied);
        assert_eq!(template_generation(&v1), Some(999));
        let mut attempt = v1.clone();
        attempt["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!("5");
        let v2 = update(&v1, attempt);
        assert_eq!(template_generation(&v2), Some(999));
        let mut changed = v2.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:3");
        assert_eq!(template_generation(&update(&v2, changed)), Some(1000));
    }

    #[test]
    fn s016_status_ignored_on_main_resource_spec_ignored_on_status() {
        let v1 = create(ds());
        let mut fabricated = v1.clone();
        fabricated["status"]["numberReady"] = json!(7);
        let v2 = update(&v1, fabricated);
        assert_eq!(v2["status"]["numberReady"], 0);
        let mut status_write = v1.clone();
        status_write["status"]["numberReady"] = json!(3);
        status_write["spec"]["minReadySeconds"] = json!(99);
        prepare_for_status_update(&mut status_write, &v1);
        assert_eq!(status_write["status"]["numberReady"], 3);
        assert!(status_write["spec"].get("minReadySeconds").is_none());
        assert_eq!(status_write["metadata"]["generation"], 1);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "a"}]})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]})),
            "Burstable"
        );
    }
}

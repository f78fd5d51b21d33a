//! One Event, two views. Upstream stores a single Event (`/registry/events/<ns>/<name>`) and
//! serves it as `core/v1` and as `events.k8s.io/v1`; the newer API renames some fields and keeps
//! the old ones under `deprecated*`. everynode stores the `core/v1` form and converts at the
//! registry's edges, so `kubectl get events`, `kubectl events` and clients of the new API (kube-rs's
//! and client-go's recorders) all see the same objects.

use serde_json::{Map, Value};

/// `core/v1` field ↔ `events.k8s.io/v1` field, as upstream's conversion maps them.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

pub const CORE_API_VERSION: &str = "v1";
pub const EVENTS_API_VERSION: &str = "events.k8s.io/v1";

fn renamed(obj: &Value, api_version: &str, rename: impl Fn(&str) -> Option<&'static str>) -> Value {
    let Some(fields) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::with_capacity(fields.len());
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" => {
                out.insert(key.clone(), Value::String(api_version.to_owned()));
            }
            other => {
                let name = rename(other)
                    .map(str::to_owned)
                    .unwrap_or_else(|| key.clone());
                out.insert(name, value.clone());
            }
        }
    }
    if !out.contains_key("apiVersion") {
        out.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    }
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// The `events.k8s.io/v1` view of a stored (`core/v1`) Event.
pub fn to_events_v1(core: &Value) -> Value {
    let mut v1 = renamed(core, EVENTS_API_VERSION, |f| {
        RENAMED.iter().find(|(c, _)| *c == f).map(|(_, v1)| *v1)
    });
    // A required field of the new API that older Events lack; upstream sends it as null.
    if let Some(fields) = v1.as_object_mut() {
        fields.entry("eventTime").or_insert(Value::Null);
    }
    v1
}

/// The `core/v1` form of an `events.k8s.io/v1` Event, as it is stored.
pub fn to_core(events_v1: &Value) -> Value {
    let mut core = renamed(events_v1, CORE_API_VERSION, |f| {
        RENAMED.iter().find(|(_, v1)| *v1 == f).map(|(c, _)| *c)
    });
    if let Some(fields) = core.as_object_mut()
        && fields.get("eventTime").is_some_and(Value::is_null)
    {
        fields.remove("eventTime");
    }
    core
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_renamed_both_ways_as_upstream_converts_them() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "ds.1", "namespace": "default", "labels": {"a": "b"}},
            "involvedObject": {"kind": "DaemonSet", "name": "ds", "namespace": "default"},
            "reason": "SuccessfulCreate", "message": "Created pod: ds-x", "type": "Normal",
            "source": {"component": "daemonset-controller"},
            "firstTimestamp": "2026-12-01T00:00:00Z", "lastTimestamp": "2026-12-01T00:01:00Z",
            "count": 3, "reportingComponent": "daemonset-controller", "reportingInstance": "s1",
            "eventTime": "2026-12-01T00:01:00.000000Z", "action": "Create",
            "series": {"count": 2, "lastObservedTime": "2026-12-01T00:01:00.000000Z"},
        });
        let v1 = to_events_v1(&core);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["kind"], "DaemonSet");
        assert_eq!(v1["note"], "Created pod: ds-x");
        assert_eq!(v1["reportingController"], "daemonset-controller");
        assert_eq!(v1["deprecatedSource"]["component"], "daemonset-controller");
        assert_eq!(v1["deprecatedFirstTimestamp"], "2026-12-01T00:00:00Z");
        assert_eq!(v1["deprecatedLastTimestamp"], "2026-12-01T00:01:00Z");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["series"]["count"], 2);
        assert_eq!(v1["metadata"]["labels"]["a"], "b");
        for gone in [
            "involvedObject",
            "message",
            "source",
            "count",
            "reportingComponent",
        ] {
            assert!(v1.get(gone).is_none(), "{gone} renamed");
        }
        assert_eq!(to_core(&v1), core, "the round trip loses nothing");
    }

    #[test]
    fn an_old_event_gets_the_new_views_type_meta_and_a_null_event_time() {
        let v1 = to_events_v1(&json!({"metadata": {"name": "e"}}));
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["kind"], "Event");
        assert!(
            v1["eventTime"].is_null() && v1.get("eventTime").is_some(),
            "sent as null"
        );
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert!(core.get("eventTime").is_none(), "not stored as null");
    }
}

//! Defaulting, as upstream's `SetDefaults_*` functions (core/v1, apps/v1) do it. Operates on the
//! JSON form after the body has been decoded through the typed model, so shapes are known.

use crate::registry::Kind;
use serde_json::{Map, Value, json};

fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.to_owned(), value);
    }
}

fn object_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

fn each_in<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `Always` when the image has no tag or the tag is `latest`, else `IfNotPresent`.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_http_get(handler: &mut Map<String, Value>) {
    if let Some(http) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_default(http, "path", json!("/"));
        set_default(http, "scheme", json!("HTTP"));
    }
}

fn default_probe(probe: &mut Map<String, Value>) {
    set_default(probe, "timeoutSeconds", json!(1));
    set_default(probe, "periodSeconds", json!(10));
    set_default(probe, "successThreshold", json!(1));
    set_default(probe, "failureThreshold", json!(3));
    default_http_get(probe);
}

fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    if let Some(image) = c.get("image").and_then(Value::as_str) {
        let policy = default_image_pull_policy(image);
        set_default(c, "imagePullPolicy", json!(policy));
    }
    for port in each_in(c, "ports") {
        set_default(port, "protocol", json!("TCP"));
        if host_network && let Some(cp) = port.get("containerPort").cloned() {
            set_default(port, "hostPort", cp);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook).and_then(Value::as_object_mut) {
                default_http_get(h);
            }
        }
    }
    for env in each_in(c, "env") {
        if let Some(field_ref) = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// Defaults of a pod spec (`SetDefaults_PodSpec` and the per-container defaults).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for key in ["containers", "initContainers"] {
        for c in each_in(spec, key) {
            default_container(c, host_network);
        }
    }
    for vol in each_in(spec, "volumes") {
        if let Some(hp) = vol.get_mut("hostPath").and_then(Value::as_object_mut) {
            set_default(hp, "type", json!(""));
        }
        for source in ["secret", "configMap", "downwardAPI", "projected"] {
            if let Some(s) = vol.get_mut(source).and_then(Value::as_object_mut) {
                set_default(s, "defaultMode", json!(420));
            }
        }
    }
}

/// Pod-only defaults: requests default to limits (`SetDefaults_Pod`), the service account
/// (what the ServiceAccount admission plugin sets).
fn default_pod(pod: &mut Value) {
    let Some(spec) = object_at(pod, "spec") else {
        return;
    };
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "serviceAccountName", json!("default"));
    for key in ["containers", "initContainers"] {
        for c in each_in(spec, key) {
            let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = resources.entry("requests").or_insert_with(|| json!({}));
            if let Some(requests) = requests.as_object_mut() {
                for (name, qty) in limits {
                    requests.entry(name).or_insert(qty);
                }
            }
        }
    }
}

/// `SetDefaults_DaemonSet` plus the pod-template defaults.
fn default_daemon_set(ds: &mut Value) {
    let Some(spec) = object_at(ds, "spec") else {
        return;
    };
    let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
    if let Some(strategy) = strategy.as_object_mut() {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy
                .get_mut("rollingUpdate")
                .and_then(Value::as_object_mut)
            {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    if let Some(pod_spec) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(pod_spec);
    }
}

fn default_service(svc: &mut Value) {
    let Some(spec) = object_at(svc, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    for port in each_in(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        if let Some(p) = port.get("port").cloned() {
            set_default(port, "targetPort", p);
        }
    }
}

/// `stringData` is write-only: its entries replace those of `data` (base64-encoded) and it is
/// never stored, as upstream's conversion of a v1 Secret does.
fn merge_string_data(secret: &mut serde_json::Map<String, Value>) {
    use base64::Engine as _;
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    let data = secret.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            if let Some(text) = v.as_str() {
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(k, Value::String(encoded));
            }
        }
    }
}

/// Applies the defaults of `kind` to an object.
pub fn apply(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::DaemonSet => default_daemon_set(obj),
        Kind::Pod => default_pod(obj),
        Kind::Service => default_service(obj),
        Kind::Secret => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "type", json!("Opaque"));
                merge_string_data(o);
            }
        }
        // `SetDefaults_Subject`: users and groups are of the RBAC group.
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
                for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
                    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
                    let group_unset = subject
                        .get("apiGroup")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty();
                    if group_unset && matches!(kind, "User" | "Group") {
                        subject.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
                    }
                }
            }
        }
        Kind::PriorityClass => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        Kind::Namespace => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "spec", json!({"finalizers": ["kubernetes"]}));
                set_default(o, "status", json!({"phase": "Active"}));
            }
        }
        Kind::Node => {
            if let Some(status) = object_at(obj, "status")
                && let Some(capacity) = status.get("capacity").cloned()
            {
                set_default(status, "allocatable", capacity);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy() {
        assert_eq!(default_image_pull_policy("nginx"), "Always");
        assert_eq!(default_image_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_image_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            default_image_pull_policy("quay.io/x/y@sha256:abc"),
            "IfNotPresent"
        );
    }

    #[test]
    fn s001_defaults_on_create() {
        let mut ds = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}});
        apply(Kind::DaemonSet, &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            pod["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
    }

    #[test]
    fn s002_on_delete_keeps_no_rolling_update() {
        let mut ds = json!({"spec": {"updateStrategy": {"type": "OnDelete"}, "template": {}}});
        apply(Kind::DaemonSet, &mut ds);
        assert!(ds["spec"]["updateStrategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn pod_requests_default_to_limits() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}}}]}});
        apply(Kind::Pod, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
    }

    #[test]
    fn secret_string_data_is_written_into_data_and_never_kept() {
        let mut secret = json!({"data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new"}});
        apply(Kind::Secret, &mut secret);
        assert_eq!(
            secret,
            json!({"type": "Opaque", "data": {"a": "bmV3", "b": "Yg=="}})
        );
    }
}

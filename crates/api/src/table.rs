//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for, with upstream's columns and
//! cell values (its `printers` package), for every served resource. Pure: `now` is passed in.

use crate::registry::{Kind, Resource};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A column: name, type, priority (0: always shown; 1: with `-o wide`).
struct Column(&'static str, &'static str, u8);

/// Upstream's `duration.HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: "<unknown>" for a missing time.
fn since(ts: Option<&Value>, now: Timestamp) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
    {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn i(v: &Value, path: &[&str]) -> i64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Up to three entries and how many more, as kubectl's printers list endpoints; `<none>` for none.
fn first_three(all: &[String]) -> String {
    match all.len() {
        0 => "<none>".to_owned(),
        n if n <= 3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

/// `labels.FormatLabels`: `k=v,...` sorted, or `<none>`.
fn format_labels(v: Option<&Value>) -> String {
    let map: BTreeMap<String, String> = v
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    or_none(
        &map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`.
fn format_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = Vec::new();
    let labels: BTreeMap<String, String> = sel
        .get("matchLabels")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    parts.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
    for e in arr(sel, &["matchExpressions"]) {
        let values: Vec<&str> = arr(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let key = s(e, &["key"]);
        parts.push(match s(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn join_field(list: &[Value], field: &str) -> String {
    list.iter()
        .map(|c| s(c, &[field]))
        .collect::<Vec<_>>()
        .join(",")
}

fn daemonset_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let tpl = &o["spec"]["template"]["spec"];
    let containers = arr(tpl, &["containers"]);
    vec![
        json!(s(o, &["metadata", "name"])),
        json!(i(o, &["status", "desiredNumberScheduled"])),
        json!(i(o, &["status", "currentNumberScheduled"])),
        json!(i(o, &["status", "numberReady"])),
        json!(i(o, &["status", "updatedNumberScheduled"])),
        json!(i(o, &["status", "numberAvailable"])),
        json!(format_labels(tpl.get("nodeSelector"))),
        json!(since(o["metadata"].get("creationTimestamp"), now)),
        json!(join_field(containers, "name")),
        json!(join_field(containers, "image")),
        json!(format_selector(o["spec"].get("selector"))),
    ]
}

/// The pod READY, STATUS word and RESTARTS columns, in that order, as upstream's `printPod` derives them.
pub fn pod_status(o: &Value, now: Timestamp) -> (String, String, String) {
    let status = &o["status"];
    let mut reason = s(status, &["phase"]).to_owned();
    if !s(status, &["reason"]).is_empty() {
        reason = s(status, &["reason"]).to_owned();
    }
    for c in arr(status, &["conditions"]) {
        if s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let init_specs = arr(o, &["spec", "initContainers"]);
    let mut restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut note_restart = |c: &Value| {
        if let Some(t) = c["lastState"]["terminated"]
            .get("finishedAt")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
        {
            last_restart = Some(last_restart.map_or(t, |l| l.max(t)));
        }
    };
    let mut initializing = false;
    let init_statuses = arr(status, &["initContainerStatuses"]);
    for (idx, c) in init_statuses.iter().enumerate() {
        restarts += i(c, &["restartCount"]);
        note_restart(c);
        let term = c["state"].get("terminated");
        let wait = c["state"].get("waiting");
        if term.is_some_and(|t| i(t, &["exitCode"]) == 0) {
            continue;
        }
        if let Some(t) = term {
            reason = if s(t, &["reason"]).is_empty() {
                if i(t, &["signal"]) != 0 {
                    format!("Init:Signal:{}", i(t, &["signal"]))
                } else {
                    format!("Init:ExitCode:{}", i(t, &["exitCode"]))
                }
            } else {
                format!("Init:{}", s(t, &["reason"]))
            };
        } else if let Some(w) =
            wait.filter(|w| !s(w, &["reason"]).is_empty() && s(w, &["reason"]) != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, &["reason"]));
        } else {
            reason = format!("Init:{idx}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }
    let initialized = arr(status, &["conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == "Initialized" && s(c, &["status"]) == "True");
    let containers = arr(o, &["spec", "containers"]);
    let mut ready = 0;
    if !initializing || initialized {
        let mut running = false;
        for c in arr(status, &["containerStatuses"]).iter().rev() {
            restarts += i(c, &["restartCount"]);
            note_restart(c);
            let st = &c["state"];
            if let Some(w) = st.get("waiting").filter(|w| !s(w, &["reason"]).is_empty()) {
                reason = s(w, &["reason"]).to_owned();
            } else if let Some(t) = st.get("terminated") {
                reason = if !s(t, &["reason"]).is_empty() {
                    s(t, &["reason"]).to_owned()
                } else if i(t, &["signal"]) != 0 {
                    format!("Signal:{}", i(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", i(t, &["exitCode"]))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && st.get("running").is_some()
            {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            let has_ready = arr(status, &["conditions"])
                .iter()
                .any(|c| s(c, &["type"]) == "Ready" && s(c, &["status"]) == "True");
            reason = if has_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let deleting = o["metadata"].get("deletionTimestamp").is_some();
    if deleting && s(status, &["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && !matches!(s(status, &["phase"]), "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }
    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.duration_since(t).as_secs())
        ),
        _ => restarts.to_string(),
    };
    (
        format!("{ready}/{}", containers.len()),
        reason,
        restarts_text,
    )
}

fn pod_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let (ready, status, restarts) = pod_status(o, now);
    let gates = arr(o, &["spec", "readinessGates"]);
    let gates_text = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let conditions = arr(o, &["status", "conditions"]);
        let met = gates
            .iter()
            .filter(|g| {
                conditions.iter().any(|c| {
                    s(c, &["type"]) == s(g, &["conditionType"]) && s(c, &["status"]) == "True"
                })
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        json!(s(o, &["metadata", "name"])),
        json!(ready),
        json!(status),
        json!(restarts),
        json!(since(o["metadata"].get("creationTimestamp"), now)),
        json!(or_none(s(o, &["status", "podIP"]))),
        json!(or_none(s(o, &["spec", "nodeName"]))),
        json!(or_none(s(o, &["status", "nominatedNodeName"]))),
        json!(gates_text),
    ]
}

/// The node STATUS column: Ready / NotReady / Unknown, plus SchedulingDisabled.
pub fn node_status(o: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = arr(o, &["status", "conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == "Ready")
    {
        parts.push(if s(c, &["status"]) == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if parts.is_empty() {
        parts.push("Unknown".into());
    }
    if o["spec"].get("unschedulable").and_then(Value::as_bool) == Some(true) {
        parts.push("SchedulingDisabled".into());
    }
    parts.join(",")
}

fn node_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = o["metadata"].get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k
                .strip_prefix("node-role.kubernetes.io/")
                .filter(|r| !r.is_empty())
            {
                roles.push(role.to_owned());
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|r| !r.is_empty()) {
                roles.push(v.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |t: &str| {
        arr(o, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == t)
            .map(|a| s(a, &["address"]).to_owned())
            .unwrap_or_default()
    };
    let info = &o["status"]["nodeInfo"];
    vec![
        json!(s(o, &["metadata", "name"])),
        json!(node_status(o)),
        json!(or_none(&roles.join(","))),
        json!(since(o["metadata"].get("creationTimestamp"), now)),
        json!(s(info, &["kubeletVersion"])),
        json!(or_none(&address("InternalIP"))),
        json!(or_none(&address("ExternalIP"))),
        json!(or_none(s(info, &["osImage"]))),
        json!(or_none(s(info, &["kernelVersion"]))),
        json!(or_none(s(info, &["containerRuntimeVersion"]))),
    ]
}

fn controller_of(o: &Value) -> String {
    arr(o, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            let group = s(r, &["apiVersion"])
                .split_once('/')
                .map(|(g, _)| g)
                .unwrap_or("");
            let kind = s(r, &["kind"]).to_lowercase();
            let name = s(r, &["name"]);
            if group.is_empty() {
                format!("{kind}/{name}")
            } else {
                format!("{kind}.{group}/{name}")
            }
        })
        .unwrap_or_else(|| "<none>".into())
}

fn event_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let last = o
        .get("lastTimestamp")
        .filter(|v| !v.is_null())
        .or_else(|| o.get("eventTime").filter(|v| !v.is_null()))
        .or_else(|| o.get("firstTimestamp"));
    let first = o
        .get("firstTimestamp")
        .filter(|v| !v.is_null())
        .or_else(|| o.get("eventTime"));
    let involved = &o["involvedObject"];
    let source = {
        let comp = s(o, &["source", "component"]);
        let host = s(o, &["source", "host"]);
        let comp = if comp.is_empty() {
            s(o, &["reportingComponent"])
        } else {
            comp
        };
        if host.is_empty() {
            comp.to_owned()
        } else {
            format!("{comp}, {host}")
        }
    };
    vec![
        json!(since(last, now)),
        json!(s(o, &["type"])),
        json!(s(o, &["reason"])),
        json!(format!(
            "{}/{}",
            s(involved, &["kind"]).to_lowercase(),
            s(involved, &["name"])
        )),
        json!(s(involved, &["fieldPath"])),
        json!(source),
        json!(s(o, &["message"]).trim()),
        json!(since(first, now)),
        json!(i(o, &["count"]).max(1)),
        json!(s(o, &["metadata", "name"])),
    ]
}

fn columns(kind: Kind) -> Vec<Column> {
    let name = Column("Name", "string", 0);
    let age = Column("Age", "string", 0);
    match kind {
        Kind::DaemonSet => vec![
            name,
            Column("Desired", "integer", 0),
            Column("Current", "integer", 0),
            Column("Ready", "integer", 0),
            Column("Up-to-date", "integer", 0),
            Column("Available", "integer", 0),
            Column("Node Selector", "string", 0),
            age,
            Column("Containers", "string", 1),
            Column("Images", "string", 1),
            Column("Selector", "string", 1),
        ],
        Kind::Pod => vec![
            name,
            Column("Ready", "string", 0),
            Column("Status", "string", 0),
            Column("Restarts", "string", 0),
            age,
            Column("IP", "string", 1),
            Column("Node", "string", 1),
            Column("Nominated Node", "string", 1),
            Column("Readiness Gates", "string", 1),
        ],
        Kind::Node => vec![
            name,
            Column("Status", "string", 0),
            Column("Roles", "string", 0),
            age,
            Column("Version", "string", 0),
            Column("Internal-IP", "string", 1),
            Column("External-IP", "string", 1),
            Column("OS-Image", "string", 1),
            Column("Kernel-Version", "string", 1),
            Column("Container-Runtime", "string", 1),
        ],
        Kind::Namespace => vec![name, Column("Status", "string", 0), age],
        Kind::ControllerRevision => vec![
            name,
            Column("Controller", "string", 0),
            Column("Revision", "integer", 0),
            age,
        ],
        Kind::Event => vec![
            Column("Last Seen", "string", 0),
            Column("Type", "string", 0),
            Column("Reason", "string", 0),
            Column("Object", "string", 0),
            Column("Subobject", "string", 1),
            Column("Source", "string", 1),
            Column("Message", "string", 0),
            Column("First Seen", "string", 1),
            Column("Count", "integer", 1),
            Column("Name", "string", 1),
        ],
        Kind::Lease => vec![name, Column("Holder", "string", 0), age],
        Kind::Endpoints => vec![name, Column("Endpoints", "string", 0), age],
        Kind::EndpointSlice => vec![
            name,
            Column("AddressType", "string", 0),
            Column("Ports", "string", 0),
            Column("Endpoints", "string", 0),
            age,
        ],
        Kind::ConfigMap => vec![name, Column("Data", "integer", 0), age],
        Kind::Secret => vec![
            name,
            Column("Type", "string", 0),
            Column("Data", "integer", 0),
            age,
        ],
        Kind::Service => vec![
            name,
            Column("Type", "string", 0),
            Column("Cluster-IP", "string", 0),
            Column("External-IP", "string", 0),
            Column("Port(s)", "string", 0),
            age,
            Column("Selector", "string", 1),
        ],
        Kind::Role | Kind::ClusterRole => vec![name, Column("Created At", "date", 0)],
        Kind::RoleBinding | Kind::ClusterRoleBinding => vec![
            name,
            Column("Role", "string", 0),
            age,
            Column("Users", "string", 1),
            Column("Groups", "string", 1),
            Column("ServiceAccounts", "string", 1),
        ],
        Kind::CertificateSigningRequest => vec![
            name,
            age,
            Column("SignerName", "string", 0),
            Column("Requestor", "string", 0),
            Column("RequestedDuration", "string", 0),
            Column("Condition", "string", 0),
        ],
        Kind::PriorityClass => vec![
            name,
            Column("Value", "integer", 0),
            Column("Global-Default", "boolean", 0),
            age,
            Column("PreemptionPolicy", "string", 0),
        ],
        _ => vec![name, age],
    }
}

fn row_cells(kind: Kind, o: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(s(o, &["metadata", "name"]));
    let age = json!(since(o["metadata"].get("creationTimestamp"), now));
    match kind {
        Kind::DaemonSet => daemonset_row(o, now),
        Kind::Pod => pod_row(o, now),
        Kind::Node => node_row(o, now),
        Kind::Event => event_row(o, now),
        Kind::Namespace => vec![name, json!(s(o, &["status", "phase"])), age],
        Kind::ControllerRevision => vec![
            name,
            json!(controller_of(o)),
            json!(i(o, &["revision"])),
            age,
        ],
        Kind::Lease => vec![name, json!(s(o, &["spec", "holderIdentity"])), age],
        Kind::Endpoints => {
            let mut all = Vec::new();
            for subset in arr(o, &["subsets"]) {
                let ports = arr(subset, &["ports"]);
                for address in arr(subset, &["addresses"]) {
                    let ip = s(address, &["ip"]);
                    if ports.is_empty() {
                        all.push(ip.to_owned());
                    }
                    for port in ports {
                        all.push(format!("{ip}:{}", i(port, &["port"])));
                    }
                }
            }
            vec![name, json!(first_three(&all)), age]
        }
        Kind::EndpointSlice => {
            let ports: Vec<String> = arr(o, &["ports"])
                .iter()
                .map(|p| p.get("port").and_then(Value::as_i64).map(|n| n.to_string()))
                .collect::<Option<Vec<String>>>()
                .unwrap_or_default();
            let addresses: Vec<String> = arr(o, &["endpoints"])
                .iter()
                .flat_map(|e| arr(e, &["addresses"]))
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".to_owned()
            } else {
                ports.join(",")
            };
            vec![
                name,
                json!(s(o, &["addressType"])),
                json!(ports),
                json!(first_three(&addresses)),
                age,
            ]
        }
        Kind::ConfigMap => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        Kind::Secret => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![name, json!(s(o, &["type"])), json!(n), age]
        }
        Kind::Service => {
            let ports: Vec<String> = arr(o, &["spec", "ports"])
                .iter()
                .map(|p| {
                    let node_port = i(p, &["nodePort"]);
                    let proto = s(p, &["protocol"]);
                    if node_port > 0 {
                        format!("{}:{node_port}/{proto}", i(p, &["port"]))
                    } else {
                        format!("{}/{proto}", i(p, &["port"]))
                    }
                })
                .collect();
            let external: Vec<&str> = arr(o, &["spec", "externalIPs"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                name,
                json!(s(o, &["spec", "type"])),
                json!(or_none(s(o, &["spec", "clusterIP"]))),
                json!(or_none(&external.join(","))),
                json!(or_none(&ports.join(","))),
                age,
                json!(format_labels(o["spec"].get("selector"))),
            ]
        }
        Kind::Role | Kind::ClusterRole => {
            vec![name, json!(s(o, &["metadata", "creationTimestamp"]))]
        }
        Kind::CertificateSigningRequest => {
            // Upstream's printer: the condition types in order, `Issued` once a certificate
            // is there, `Pending` when there is neither.
            let mut condition: Vec<String> = arr(o, &["status", "conditions"])
                .iter()
                .map(|c| s(c, &["type"]).to_owned())
                .collect();
            if !s(o, &["status", "certificate"]).is_empty() {
                condition.push("Issued".into());
            }
            if condition.is_empty() {
                condition.push("Pending".into());
            }
            let duration = o["spec"]["expirationSeconds"]
                .as_i64()
                .map_or_else(|| "<none>".to_owned(), human_duration);
            vec![
                name,
                age,
                json!(s(o, &["spec", "signerName"])),
                json!(s(o, &["spec", "username"])),
                json!(duration),
                json!(condition.join(",")),
            ]
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            let subjects = |kind: &str| -> String {
                arr(o, &["subjects"])
                    .iter()
                    .filter(|x| s(x, &["kind"]) == kind)
                    .map(|x| match kind {
                        "ServiceAccount" => format!("{}/{}", s(x, &["namespace"]), s(x, &["name"])),
                        _ => s(x, &["name"]).to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(o, &["roleRef", "kind"]),
                    s(o, &["roleRef", "name"])
                )),
                age,
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
        Kind::PriorityClass => vec![
            name,
            json!(i(o, &["value"])),
            json!(
                o.get("globalDefault")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age,
            json!(s(o, &["preemptionPolicy"])),
        ],
        _ => vec![name, age],
    }
}

/// What a row carries besides its cells (`?includeObject=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

fn row(kind: Kind, o: &Value, now: Timestamp, include: IncludeObject) -> Value {
    let mut r = json!({"cells": row_cells(kind, o, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))});
        }
        IncludeObject::Object => r["object"] = o.clone(),
    }
    r
}

/// A Table of `objects`, with the list metadata given.
pub fn table(
    res: &Resource,
    objects: &[Value],
    list_meta: Value,
    now: Timestamp,
    include: IncludeObject,
) -> Value {
    let defs: Vec<Value> = columns(res.id)
        .into_iter()
        .map(|Column(name, ty, priority)| {
            let mut d = json!({"name": name, "type": ty, "format": "", "description": "", "priority": priority});
            if name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(res.id, o, now, include))
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::by_kind;

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn human_durations_as_upstream() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn k08_daemonset_columns() {
        let ds = json!({"metadata": {"name": "foo", "creationTimestamp": "2026-11-25T11:55:00Z"},
            "spec": {"selector": {"matchLabels": {"name": "simple-daemon"}}, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        let t = table(
            by_kind(Kind::DaemonSet),
            &[ds],
            json!({}),
            now(),
            IncludeObject::Metadata,
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("defs")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "foo",
                3,
                3,
                2,
                3,
                2,
                "<none>",
                "5m",
                "a,b",
                "a:1,b:1",
                "name=simple-daemon"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn pod_status_words() {
        let base = |status: Value| json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": status});
        let running = base(
            json!({"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        assert_eq!(
            pod_status(&running, now()),
            ("1/1".into(), "Running".into(), "0".into())
        );
        let crash = base(
            json!({"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 3,
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-25T11:59:00Z"}}, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        assert_eq!(
            pod_status(&crash, now()),
            (
                "0/1".into(),
                "CrashLoopBackOff".into(),
                "3 (60s ago)".into()
            )
        );
        let done = base(
            json!({"phase": "Succeeded", "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(pod_status(&done, now()).1, "Completed");
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-25T12:00:30Z");
        assert_eq!(pod_status(&deleting, now()).1, "Terminating");
        let pending = base(json!({"phase": "Pending"}));
        assert_eq!(
            pod_status(&pending, now()),
            ("0/1".into(), "Pending".into(), "0".into())
        );
        let init = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(pod_status(&init, now()).1, "Init:0/1");
    }

    #[test]
    fn node_status_and_roles() {
        let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        let cells = row_cells(Kind::Node, &node, now());
        assert_eq!(cells[1], "NotReady,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(node_status(&json!({"status": {}})), "Unknown");
    }

    #[test]
    fn controller_revision_controller_column() {
        let cr = json!({"metadata": {"name": "foo-abc", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "foo", "uid": "u", "controller": true}]}, "revision": 2});
        let cells = row_cells(Kind::ControllerRevision, &cr, now());
        assert_eq!(cells[1], "daemonset.apps/foo");
        assert_eq!(cells[2], 2);
    }
}

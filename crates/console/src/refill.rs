//! The wizard's fields for a DaemonSet that exists (and the Service the wizard made for it): the
//! inverse of `form::build`, so that Edit reopens the full wizard on the object. Pure.
//!
//! Not every DaemonSet fits the form (a projected volume, a second node-affinity term, a
//! `resourceFieldRef`...). `differences` names what a round trip through the form would change,
//! so the console offers the wizard only when nothing would be lost.

use crate::form::{DESCRIPTION_ANNOTATION, PROBE_TIMINGS};
use everynode_api::rollout_controls::{AUTO_ROLLBACK, PROGRESS_DEADLINE_SECONDS};
use serde_json::Value;

/// Appends `name=value` when `value` is not empty.
fn put(out: &mut Vec<(String, String)>, name: impl Into<String>, value: impl Into<String>) {
    let value = value.into();
    if !value.is_empty() {
        out.push((name.into(), value));
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn lines(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn pairs(v: &Value, skip: &[&str]) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn probe(out: &mut Vec<(String, String)>, prefix: &str, p: &Value) {
    if p.is_null() {
        return;
    }
    if let Some(exec) = p.get("exec") {
        put(out, format!("{prefix}.type"), "exec");
        put(out, format!("{prefix}.command"), lines(&exec["command"]));
    } else if let Some(get) = p.get("httpGet") {
        put(out, format!("{prefix}.type"), "http");
        put(out, format!("{prefix}.path"), text(&get["path"]));
        put(out, format!("{prefix}.port"), text(&get["port"]));
    } else if let Some(tcp) = p.get("tcpSocket") {
        put(out, format!("{prefix}.type"), "tcp");
        put(out, format!("{prefix}.port"), text(&tcp["port"]));
    }
    for timing in PROBE_TIMINGS {
        put(out, format!("{prefix}.{timing}"), text(&p[timing]));
    }
}

const LOCALTIME: &str = "host-localtime";

fn container(out: &mut Vec<(String, String)>, i: usize, kind: &str, c: &Value, volumes: &[Value]) {
    let f = |x: &str| format!("c.{i}.{x}");
    put(out, f("kind"), kind);
    put(out, f("name"), text(&c["name"]));
    put(out, f("image"), text(&c["image"]));
    put(out, f("pullPolicy"), text(&c["imagePullPolicy"]));
    let sc = &c["securityContext"];
    if sc["privileged"] == Value::Bool(true) {
        put(out, f("privileged"), "on");
    }
    let r = &c["resources"];
    put(out, f("cpuRequest"), text(&r["requests"]["cpu"]));
    put(out, f("cpuLimit"), text(&r["limits"]["cpu"]));
    put(out, f("memRequest"), text(&r["requests"]["memory"]));
    put(out, f("memLimit"), text(&r["limits"]["memory"]));
    put(out, f("gpu"), text(&r["limits"]["nvidia.com/gpu"]));
    for (p, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let g = |x: &str| f(&format!("port.{p}.{x}"));
        put(out, g("name"), text(&port["name"]));
        put(out, g("containerPort"), text(&port["containerPort"]));
        put(out, g("protocol"), text(&port["protocol"]));
        put(out, g("hostPort"), text(&port["hostPort"]));
    }
    put(out, f("command"), lines(&c["command"]));
    put(out, f("args"), lines(&c["args"]));
    put(
        out,
        f("postStart"),
        lines(&c["lifecycle"]["postStart"]["exec"]["command"]),
    );
    put(
        out,
        f("preStop"),
        lines(&c["lifecycle"]["preStop"]["exec"]["command"]),
    );
    probe(out, &f("liveness"), &c["livenessProbe"]);
    probe(out, &f("readiness"), &c["readinessProbe"]);
    probe(out, &f("startup"), &c["startupProbe"]);
    for (e, var) in c["env"].as_array().into_iter().flatten().enumerate() {
        let g = |x: &str| f(&format!("env.{e}.{x}"));
        put(out, g("name"), text(&var["name"]));
        let from = &var["valueFrom"];
        if let Some(r) = from.get("configMapKeyRef") {
            put(out, g("source"), "configMap");
            put(out, g("ref"), text(&r["name"]));
            put(out, g("key"), text(&r["key"]));
        } else if let Some(r) = from.get("secretKeyRef") {
            put(out, g("source"), "secret");
            put(out, g("ref"), text(&r["name"]));
            put(out, g("key"), text(&r["key"]));
        } else if let Some(r) = from.get("fieldRef") {
            put(out, g("source"), "field");
            put(out, g("ref"), text(&r["fieldPath"]));
        } else {
            put(out, g("source"), "value");
            put(out, g("value"), text(&var["value"]));
        }
    }
    let mounts = c["volumeMounts"].as_array().into_iter().flatten();
    for (v, mount) in mounts
        .filter(|m| m["name"].as_str() != Some(LOCALTIME))
        .enumerate()
    {
        let g = |x: &str| f(&format!("vol.{v}.{x}"));
        let name = text(&mount["name"]);
        let volume = volumes
            .iter()
            .find(|vol| vol["name"].as_str() == Some(name.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        let (kind, source) = if let Some(hp) = volume.get("hostPath") {
            put(out, g("hostPathType"), text(&hp["type"]));
            ("hostPath", text(&hp["path"]))
        } else if let Some(pvc) = volume.get("persistentVolumeClaim") {
            ("pvc", text(&pvc["claimName"]))
        } else if let Some(cm) = volume.get("configMap") {
            ("configMap", text(&cm["name"]))
        } else if let Some(secret) = volume.get("secret") {
            ("secret", text(&secret["secretName"]))
        } else {
            ("emptyDir", String::new())
        };
        put(out, g("type"), kind);
        put(out, g("name"), name);
        put(out, g("source"), source);
        put(out, g("mountPath"), text(&mount["mountPath"]));
        if mount["readOnly"] == Value::Bool(true) {
            put(out, g("readOnly"), "on");
        }
    }
    put(out, f("runAsUser"), text(&sc["runAsUser"]));
    put(
        out,
        f("capAdd"),
        lines(&sc["capabilities"]["add"]).replace('\n', ", "),
    );
    put(
        out,
        f("capDrop"),
        lines(&sc["capabilities"]["drop"]).replace('\n', ", "),
    );
}

/// The wizard's fields for `ds`, and for `service` when the wizard made one for it.
pub fn fields(ds: &Value, service: Option<&Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let meta = &ds["metadata"];
    put(&mut out, "name", text(&meta["name"]));
    put(&mut out, "namespace", text(&meta["namespace"]));
    let annotations = &meta["annotations"];
    put(
        &mut out,
        "description",
        text(&annotations[DESCRIPTION_ANNOTATION]),
    );
    // An empty deadline is the absence of one: the page's default (600) must not creep in.
    out.push((
        "progressDeadlineSeconds".into(),
        text(&annotations[PROGRESS_DEADLINE_SECONDS]),
    ));
    if annotations[AUTO_ROLLBACK].as_str() == Some("true") {
        put(&mut out, "autoRollback", "true");
    }
    put(
        &mut out,
        "annotations",
        pairs(
            annotations,
            &[
                DESCRIPTION_ANNOTATION,
                PROGRESS_DEADLINE_SECONDS,
                AUTO_ROLLBACK,
                // The controller's, moved with the template.
                "deprecated.daemonset.template.generation",
            ],
        ),
    );
    put(&mut out, "labels", pairs(&meta["labels"], &[]));
    let spec = &ds["spec"];
    let template = &spec["template"];
    put(
        &mut out,
        "podLabels",
        pairs(&template["metadata"]["labels"], &[]),
    );
    put(
        &mut out,
        "podAnnotations",
        pairs(&template["metadata"]["annotations"], &[]),
    );
    let pod = &template["spec"];
    let volumes: Vec<Value> = pod["volumes"].as_array().cloned().unwrap_or_default();
    let mut i = 0;
    for (kind, list) in [("container", "containers"), ("init", "initContainers")] {
        for c in pod[list].as_array().into_iter().flatten() {
            container(&mut out, i, kind, c, &volumes);
            i += 1;
        }
    }
    if volumes
        .iter()
        .any(|v| v["name"] == LOCALTIME && v["hostPath"]["path"] == "/etc/localtime")
    {
        put(&mut out, "syncTimezone", "on");
    }
    put(&mut out, "dnsPolicy", text(&pod["dnsPolicy"]));
    let dns = &pod["dnsConfig"];
    put(&mut out, "nameservers", lines(&dns["nameservers"]));
    put(&mut out, "searches", lines(&dns["searches"]));
    let options: Vec<String> = dns["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| match o.get("value") {
            Some(v) if !v.is_null() => format!("{}={}", text(&o["name"]), text(v)),
            _ => text(&o["name"]),
        })
        .collect();
    put(&mut out, "dnsOptions", options.join("\n"));
    let aliases: Vec<String> = pod["hostAliases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} {}",
                text(&a["ip"]),
                lines(&a["hostnames"]).replace('\n', " ")
            )
        })
        .collect();
    put(&mut out, "hostAliases", aliases.join("\n"));
    let strategy = &spec["updateStrategy"];
    put(&mut out, "strategy", text(&strategy["type"]));
    put(
        &mut out,
        "maxUnavailable",
        text(&strategy["rollingUpdate"]["maxUnavailable"]),
    );
    put(
        &mut out,
        "maxSurge",
        text(&strategy["rollingUpdate"]["maxSurge"]),
    );
    put(&mut out, "minReadySeconds", text(&spec["minReadySeconds"]));
    put(
        &mut out,
        "revisionHistoryLimit",
        text(&spec["revisionHistoryLimit"]),
    );
    put(
        &mut out,
        "terminationGracePeriodSeconds",
        text(&pod["terminationGracePeriodSeconds"]),
    );
    for (t, tol) in pod["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let g = |x: &str| format!("tol.{t}.{x}");
        put(&mut out, g("key"), text(&tol["key"]));
        put(&mut out, g("operator"), text(&tol["operator"]));
        put(&mut out, g("value"), text(&tol["value"]));
        put(&mut out, g("effect"), text(&tol["effect"]));
        put(&mut out, g("seconds"), text(&tol["tolerationSeconds"]));
    }
    put(&mut out, "nodeSelector", pairs(&pod["nodeSelector"], &[]));
    let affinity = &pod["affinity"];
    let terms = &affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    for (n, expr) in terms[0]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let g = |x: &str| format!("na.{n}.{x}");
        put(&mut out, g("key"), text(&expr["key"]));
        put(&mut out, g("operator"), text(&expr["operator"]));
        put(
            &mut out,
            g("values"),
            lines(&expr["values"]).replace('\n', ", "),
        );
    }
    let mut p = 0;
    for (kind, field) in [("affinity", "podAffinity"), ("anti", "podAntiAffinity")] {
        for term in affinity[field]["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let g = |x: &str| format!("pa.{p}.{x}");
            put(&mut out, g("kind"), kind);
            put(
                &mut out,
                g("labels"),
                pairs(&term["labelSelector"]["matchLabels"], &[]),
            );
            put(&mut out, g("topologyKey"), text(&term["topologyKey"]));
            p += 1;
        }
    }
    if let Some(svc) = service {
        put(&mut out, "svc.enabled", "on");
        put(&mut out, "svc.name", text(&svc["metadata"]["name"]));
        let kind = if svc["spec"]["clusterIP"] == "None" {
            "Headless".to_owned()
        } else {
            text(&svc["spec"]["type"])
        };
        put(&mut out, "svc.type", kind);
        for (n, port) in svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let g = |x: &str| format!("svc.port.{n}.{x}");
            put(&mut out, g("name"), text(&port["name"]));
            put(&mut out, g("port"), text(&port["port"]));
            put(&mut out, g("targetPort"), text(&port["targetPort"]));
            put(&mut out, g("protocol"), text(&port["protocol"]));
            put(&mut out, g("nodePort"), text(&port["nodePort"]));
        }
    }
    out
}

/// The JSON paths where `after` differs from `before` (at most `limit`), for saying what a
/// round trip through the form would change.
pub fn differences(before: &Value, after: &Value, limit: usize) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>, limit: usize) {
        if out.len() >= limit || a == b {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = Value::Null;
                    let child = format!("{path}.{k}");
                    walk(
                        &child,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                        limit,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), p, q, out, limit);
                }
            }
            _ => out.push(path.trim_start_matches('.').to_owned()),
        }
    }
    let mut out = Vec::new();
    walk("", before, after, &mut out, limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::{Form, build, tests::every_section};

    fn form_of(pairs: &[(String, String)]) -> Form {
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Form::from_pairs(&borrowed)
    }

    #[test]
    fn every_section_survives_a_round_trip_through_the_form() {
        let built = build(&every_section()).expect("valid form");
        let again = build(&form_of(&fields(&built.daemonset, built.service.as_ref())))
            .expect("the refilled form is valid");
        assert_eq!(
            differences(&built.daemonset, &again.daemonset, 20),
            Vec::<String>::new()
        );
        assert_eq!(again.service, built.service);
    }

    #[test]
    fn what_the_form_cannot_hold_is_named() {
        let mut ds = build(&every_section()).expect("valid form").daemonset;
        ds["spec"]["template"]["spec"]["volumes"][1] =
            serde_json::json!({"name": "c0-vol1", "projected": {"sources": []}});
        let again = build(&form_of(&fields(&ds, None))).expect("valid");
        assert_eq!(
            differences(&ds["spec"], &again.daemonset["spec"], 5),
            vec![
                "template.spec.volumes[1].emptyDir",
                "template.spec.volumes[1].projected"
            ]
        );
    }
}

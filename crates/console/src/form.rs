//! The create wizard's fields, turned into the DaemonSet (and optional Service) it submits.
//!
//! Pure: the posted `name=value` pairs in, objects out. Field names are flat and indexed
//! (`c.0.image`, `c.0.env.1.name`, `tol.0.key`) so the page can add rows without a framework;
//! `form_field` maps a field path in the API server's answer back to the input that set it, so
//! a validation error lands next to that input.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The posted fields.
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_urlencoded::from_bytes(body)
            .map(Form)
            .map_err(|e| format!("the form could not be read: {e}"))
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// The trimmed value, when given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v == "on" || v == "true")
    }

    /// The indices used under `prefix` (`c.` → 0, 1, 3), in order.
    fn indices(&self, prefix: &str) -> Vec<usize> {
        let mut found: Vec<usize> = self
            .0
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(prefix))
            .filter_map(|rest| rest.split('.').next())
            .filter_map(|i| i.parse().ok())
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    fn int(&self, name: &str) -> Result<Option<i64>, FormError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| FormError {
                    field: name.to_owned(),
                    message: format!("{v:?} is not a whole number"),
                })
            })
            .transpose()
    }

    /// Lines of a text area, trimmed, blank ones dropped.
    fn lines(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `key=value` lines (labels, annotations, node selector).
    fn pairs(&self, name: &str) -> Result<BTreeMap<String, String>, FormError> {
        let mut out = BTreeMap::new();
        for line in self.lines(name) {
            let Some((k, v)) = line.split_once('=') else {
                return Err(FormError {
                    field: name.to_owned(),
                    message: format!("{line:?} is not key=value"),
                });
            };
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(out)
    }
}

/// A field the form itself refuses, before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: String,
    pub message: String,
}

/// What the wizard submits.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub namespace: String,
    pub daemonset: Value,
    pub service: Option<Value>,
    /// Form indices of the regular containers and of the init containers, in object order.
    pub containers: Vec<usize>,
    pub init_containers: Vec<usize>,
}

/// The annotation the description is kept in (DCE and KubeSphere keep it the same way).
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// The longest description the form takes.
pub const MAX_DESCRIPTION: usize = 512;
/// At most this many DNS search domains (upstream's `MaxDNSSearchPaths` since 1.28; the API
/// server checks the rest of the limits).
pub const MAX_SEARCHES: usize = 32;

fn insert_nonempty(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.to_owned(), value);
    }
}

fn int_or_string(v: &str) -> Value {
    v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
}

/// A probe's timing fields, each an input of its own (`c.0.liveness.periodSeconds`).
pub const PROBE_TIMINGS: [&str; 5] = [
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
];

fn probe(form: &Form, p: &str) -> Result<Value, FormError> {
    let mut probe = Map::new();
    match form.get(&format!("{p}.type")).unwrap_or("none") {
        "http" => {
            let mut get = Map::new();
            insert_nonempty(
                &mut get,
                "path",
                json!(form.get(&format!("{p}.path")).unwrap_or("/")),
            );
            get.insert(
                "port".into(),
                int_or_string(form.get(&format!("{p}.port")).unwrap_or("")),
            );
            probe.insert("httpGet".into(), Value::Object(get));
        }
        "tcp" => {
            probe.insert(
                "tcpSocket".into(),
                json!({"port": int_or_string(form.get(&format!("{p}.port")).unwrap_or(""))}),
            );
        }
        "exec" => {
            probe.insert(
                "exec".into(),
                json!({"command": form.lines(&format!("{p}.command"))}),
            );
        }
        _ => return Ok(Value::Null),
    }
    for timing in PROBE_TIMINGS {
        if let Some(n) = form.int(&format!("{p}.{timing}"))? {
            probe.insert(timing.into(), json!(n));
        }
    }
    Ok(Value::Object(probe))
}

fn container(form: &Form, i: usize, volumes: &mut Vec<Value>) -> Result<Value, FormError> {
    let c = |f: &str| format!("c.{i}.{f}");
    let mut out = Map::new();
    insert_nonempty(&mut out, "name", json!(form.get(&c("name")).unwrap_or("")));
    insert_nonempty(
        &mut out,
        "image",
        json!(form.get(&c("image")).unwrap_or("")),
    );
    insert_nonempty(
        &mut out,
        "imagePullPolicy",
        json!(form.get(&c("pullPolicy")).unwrap_or("")),
    );
    insert_nonempty(&mut out, "command", json!(form.lines(&c("command"))));
    insert_nonempty(&mut out, "args", json!(form.lines(&c("args"))));

    let mut requests = Map::new();
    let mut limits = Map::new();
    insert_nonempty(
        &mut requests,
        "cpu",
        json!(form.get(&c("cpuRequest")).unwrap_or("")),
    );
    insert_nonempty(
        &mut requests,
        "memory",
        json!(form.get(&c("memRequest")).unwrap_or("")),
    );
    insert_nonempty(
        &mut limits,
        "cpu",
        json!(form.get(&c("cpuLimit")).unwrap_or("")),
    );
    insert_nonempty(
        &mut limits,
        "memory",
        json!(form.get(&c("memLimit")).unwrap_or("")),
    );
    if let Some(gpus) = form.int(&c("gpu"))?.filter(|n| *n > 0) {
        limits.insert("nvidia.com/gpu".into(), json!(gpus.to_string()));
    }
    let mut resources = Map::new();
    insert_nonempty(&mut resources, "requests", Value::Object(requests));
    insert_nonempty(&mut resources, "limits", Value::Object(limits));
    insert_nonempty(&mut out, "resources", Value::Object(resources));

    let mut ports = Vec::new();
    for p in form.indices(&c("port.")) {
        let f = |x: &str| c(&format!("port.{p}.{x}"));
        let Some(number) = form.int(&f("containerPort"))? else {
            continue;
        };
        let mut port = Map::new();
        insert_nonempty(&mut port, "name", json!(form.get(&f("name")).unwrap_or("")));
        port.insert("containerPort".into(), json!(number));
        port.insert(
            "protocol".into(),
            json!(form.get(&f("protocol")).unwrap_or("TCP")),
        );
        if let Some(host) = form.int(&f("hostPort"))? {
            port.insert("hostPort".into(), json!(host));
        }
        ports.push(Value::Object(port));
    }
    insert_nonempty(&mut out, "ports", json!(ports));

    let mut env = Vec::new();
    for e in form.indices(&c("env.")) {
        let f = |x: &str| c(&format!("env.{e}.{x}"));
        let Some(name) = form.get(&f("name")) else {
            continue;
        };
        let reference = form.get(&f("ref")).unwrap_or("");
        let key = form.get(&f("key")).unwrap_or("");
        let var = match form.get(&f("source")).unwrap_or("value") {
            "configMap" => {
                json!({"name": name, "valueFrom": {"configMapKeyRef": {"name": reference, "key": key}}})
            }
            "secret" => {
                json!({"name": name, "valueFrom": {"secretKeyRef": {"name": reference, "key": key}}})
            }
            "field" => json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": reference}}}),
            _ => json!({"name": name, "value": form.get(&f("value")).unwrap_or("")}),
        };
        env.push(var);
    }
    insert_nonempty(&mut out, "env", json!(env));

    let mut mounts = Vec::new();
    for v in form.indices(&c("vol.")) {
        let f = |x: &str| c(&format!("vol.{v}.{x}"));
        let Some(mount_path) = form.get(&f("mountPath")) else {
            continue;
        };
        let name = form
            .get(&f("name"))
            .map_or_else(|| format!("c{i}-vol{v}"), str::to_owned);
        let source = form.get(&f("source")).unwrap_or("");
        let volume = match form.get(&f("type")).unwrap_or("emptyDir") {
            "hostPath" => {
                let mut hp = Map::new();
                hp.insert("path".into(), json!(source));
                insert_nonempty(
                    &mut hp,
                    "type",
                    json!(form.get(&f("hostPathType")).unwrap_or("")),
                );
                json!({"name": name, "hostPath": hp})
            }
            "pvc" => json!({"name": name, "persistentVolumeClaim": {"claimName": source}}),
            "configMap" => json!({"name": name, "configMap": {"name": source}}),
            "secret" => json!({"name": name, "secret": {"secretName": source}}),
            _ => json!({"name": name, "emptyDir": {}}),
        };
        if !volumes
            .iter()
            .any(|existing| existing["name"] == volume["name"])
        {
            volumes.push(volume);
        }
        let mut mount = Map::new();
        mount.insert("name".into(), json!(name));
        mount.insert("mountPath".into(), json!(mount_path));
        if form.checked(&f("readOnly")) {
            mount.insert("readOnly".into(), json!(true));
        }
        mounts.push(Value::Object(mount));
    }
    insert_nonempty(&mut out, "volumeMounts", json!(mounts));

    let mut lifecycle = Map::new();
    for (hook, field) in [("postStart", "postStart"), ("preStop", "preStop")] {
        let command = form.lines(&c(field));
        if !command.is_empty() {
            lifecycle.insert(hook.into(), json!({"exec": {"command": command}}));
        }
    }
    insert_nonempty(&mut out, "lifecycle", Value::Object(lifecycle));
    for (probe_field, name) in [
        ("livenessProbe", "liveness"),
        ("readinessProbe", "readiness"),
        ("startupProbe", "startup"),
    ] {
        insert_nonempty(&mut out, probe_field, probe(form, &c(name))?);
    }

    let mut security = Map::new();
    if form.checked(&c("privileged")) {
        security.insert("privileged".into(), json!(true));
    }
    if let Some(uid) = form.int(&c("runAsUser"))? {
        security.insert("runAsUser".into(), json!(uid));
    }
    let split = |f: &str| -> Vec<String> {
        form.get(&c(f))
            .unwrap_or("")
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut caps = Map::new();
    insert_nonempty(&mut caps, "add", json!(split("capAdd")));
    insert_nonempty(&mut caps, "drop", json!(split("capDrop")));
    insert_nonempty(&mut security, "capabilities", Value::Object(caps));
    insert_nonempty(&mut out, "securityContext", Value::Object(security));
    Ok(Value::Object(out))
}

fn tolerations(form: &Form) -> Result<Vec<Value>, FormError> {
    let mut out = Vec::new();
    for t in form.indices("tol.") {
        let f = |x: &str| format!("tol.{t}.{x}");
        let operator = form.get(&f("operator")).unwrap_or("Equal");
        let key = form.get(&f("key")).unwrap_or("");
        if key.is_empty() && operator != "Exists" {
            continue;
        }
        let mut tol = Map::new();
        insert_nonempty(&mut tol, "key", json!(key));
        tol.insert("operator".into(), json!(operator));
        if operator != "Exists" {
            insert_nonempty(
                &mut tol,
                "value",
                json!(form.get(&f("value")).unwrap_or("")),
            );
        }
        insert_nonempty(
            &mut tol,
            "effect",
            json!(form.get(&f("effect")).unwrap_or("")),
        );
        if let Some(seconds) = form.int(&f("seconds"))? {
            tol.insert("tolerationSeconds".into(), json!(seconds));
        }
        out.push(Value::Object(tol));
    }
    Ok(out)
}

fn affinity(form: &Form) -> Result<Value, FormError> {
    let mut terms = Vec::new();
    for n in form.indices("na.") {
        let f = |x: &str| format!("na.{n}.{x}");
        let Some(key) = form.get(&f("key")) else {
            continue;
        };
        let operator = form.get(&f("operator")).unwrap_or("In");
        let mut expr = json!({"key": key, "operator": operator});
        let values: Vec<&str> = form
            .get(&f("values"))
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if !values.is_empty() {
            expr["values"] = json!(values);
        }
        terms.push(expr);
    }
    let mut affinity = Map::new();
    if !terms.is_empty() {
        affinity.insert(
            "nodeAffinity".into(),
            json!({"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": terms}]}}),
        );
    }
    let mut pod_affinity = Vec::new();
    let mut pod_anti_affinity = Vec::new();
    for p in form.indices("pa.") {
        let f = |x: &str| format!("pa.{p}.{x}");
        let Some(topology_key) = form.get(&f("topologyKey")) else {
            continue;
        };
        let labels = form.pairs(&f("labels"))?;
        let term = json!({"labelSelector": {"matchLabels": labels}, "topologyKey": topology_key});
        if form.get(&f("kind")) == Some("anti") {
            pod_anti_affinity.push(term);
        } else {
            pod_affinity.push(term);
        }
    }
    if !pod_affinity.is_empty() {
        affinity.insert(
            "podAffinity".into(),
            json!({"requiredDuringSchedulingIgnoredDuringExecution": pod_affinity}),
        );
    }
    if !pod_anti_affinity.is_empty() {
        affinity.insert(
            "podAntiAffinity".into(),
            json!({"requiredDuringSchedulingIgnoredDuringExecution": pod_anti_affinity}),
        );
    }
    Ok(Value::Object(affinity))
}

fn dns(form: &Form, spec: &mut Map<String, Value>) -> Result<(), FormError> {
    insert_nonempty(
        spec,
        "dnsPolicy",
        json!(form.get("dnsPolicy").unwrap_or("")),
    );
    let searches = form.lines("searches");
    if searches.len() > MAX_SEARCHES {
        return Err(FormError {
            field: "searches".into(),
            message: format!(
                "at most {MAX_SEARCHES} search domains, {} given",
                searches.len()
            ),
        });
    }
    let options: Vec<Value> = form
        .lines("dnsOptions")
        .iter()
        .map(|line| match line.split_once('=') {
            Some((name, value)) => json!({"name": name.trim(), "value": value.trim()}),
            None => json!({"name": line}),
        })
        .collect();
    let mut config = Map::new();
    insert_nonempty(&mut config, "nameservers", json!(form.lines("nameservers")));
    insert_nonempty(&mut config, "searches", json!(searches));
    insert_nonempty(&mut config, "options", json!(options));
    insert_nonempty(spec, "dnsConfig", Value::Object(config));
    let aliases: Vec<Value> = form
        .lines("hostAliases")
        .iter()
        .map(|line| {
            let mut words = line.split_whitespace();
            let ip = words.next().unwrap_or_default();
            json!({"ip": ip, "hostnames": words.collect::<Vec<_>>()})
        })
        .collect();
    insert_nonempty(spec, "hostAliases", json!(aliases));
    Ok(())
}

fn service(
    form: &Form,
    name: &str,
    namespace: &str,
    selector: &Value,
) -> Result<Option<Value>, FormError> {
    if !form.checked("svc.enabled") {
        return Ok(None);
    }
    let kind = form.get("svc.type").unwrap_or("ClusterIP");
    let mut ports = Vec::new();
    for p in form.indices("svc.port.") {
        let f = |x: &str| format!("svc.port.{p}.{x}");
        let Some(port) = form.int(&f("port"))? else {
            continue;
        };
        let mut out = Map::new();
        insert_nonempty(&mut out, "name", json!(form.get(&f("name")).unwrap_or("")));
        out.insert("port".into(), json!(port));
        out.insert(
            "protocol".into(),
            json!(form.get(&f("protocol")).unwrap_or("TCP")),
        );
        if let Some(target) = form.get(&f("targetPort")) {
            out.insert("targetPort".into(), int_or_string(target));
        }
        if kind == "NodePort"
            && let Some(node_port) = form.int(&f("nodePort"))?
        {
            out.insert("nodePort".into(), json!(node_port));
        }
        ports.push(Value::Object(out));
    }
    let mut spec = json!({"selector": selector, "ports": ports});
    match kind {
        "Headless" => {
            spec["type"] = json!("ClusterIP");
            spec["clusterIP"] = json!("None");
        }
        other => spec["type"] = json!(other),
    }
    Ok(Some(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": form.get("svc.name").unwrap_or(name), "namespace": namespace},
        "spec": spec,
    })))
}

/// The objects the form describes. Checks only what the form alone can know (numbers, limits,
/// shapes); everything else is the API server's to judge, and its errors come back per field.
pub fn build(form: &Form) -> Result<Built, FormError> {
    let name = form.get("name").unwrap_or("").to_owned();
    let namespace = form.get("namespace").unwrap_or("default").to_owned();
    let description = form.get("description").unwrap_or("");
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(FormError {
            field: "description".into(),
            message: format!("at most {MAX_DESCRIPTION} characters"),
        });
    }
    let mut labels = form.pairs("labels")?;
    let mut annotations = form.pairs("annotations")?;
    if !description.is_empty() {
        annotations.insert(DESCRIPTION_ANNOTATION.into(), description.into());
    }
    let mut pod_labels = form.pairs("podLabels")?;
    if pod_labels.is_empty() {
        pod_labels.insert("app".into(), name.clone());
    }
    if labels.is_empty() {
        labels = pod_labels.clone();
    }
    let pod_annotations = form.pairs("podAnnotations")?;
    // The upgrade section's deadline and rollback (beyond.md §2), as their annotations: the
    // API server checks their values.
    if let Some(seconds) = form.get("progressDeadlineSeconds") {
        annotations.insert(
            everynode_api::rollout_controls::PROGRESS_DEADLINE_SECONDS.into(),
            seconds.to_owned(),
        );
    }
    if form.checked("autoRollback") {
        annotations.insert(
            everynode_api::rollout_controls::AUTO_ROLLBACK.into(),
            "true".into(),
        );
    }

    let mut volumes = Vec::new();
    let mut containers = Vec::new();
    let mut init_containers = Vec::new();
    let mut container_indices = Vec::new();
    let mut init_indices = Vec::new();
    for i in form.indices("c.") {
        let built = container(form, i, &mut volumes)?;
        if form.get(&format!("c.{i}.kind")) == Some("init") {
            init_containers.push(built);
            init_indices.push(i);
        } else {
            containers.push(built);
            container_indices.push(i);
        }
    }
    if form.checked("syncTimezone") {
        volumes.push(json!({"name": "host-localtime", "hostPath": {"path": "/etc/localtime", "type": "File"}}));
        for c in containers.iter_mut().chain(init_containers.iter_mut()) {
            let mounts = c
                .as_object_mut()
                .map(|o| o.entry("volumeMounts").or_insert_with(|| json!([])));
            if let Some(Value::Array(mounts)) = mounts {
                mounts.push(json!({"name": "host-localtime", "mountPath": "/etc/localtime", "readOnly": true}));
            }
        }
    }

    let mut pod_spec = Map::new();
    insert_nonempty(&mut pod_spec, "initContainers", json!(init_containers));
    pod_spec.insert("containers".into(), json!(containers));
    insert_nonempty(&mut pod_spec, "volumes", json!(volumes));
    insert_nonempty(
        &mut pod_spec,
        "nodeSelector",
        json!(form.pairs("nodeSelector")?),
    );
    insert_nonempty(&mut pod_spec, "tolerations", json!(tolerations(form)?));
    insert_nonempty(&mut pod_spec, "affinity", affinity(form)?);
    if let Some(grace) = form.int("terminationGracePeriodSeconds")? {
        pod_spec.insert("terminationGracePeriodSeconds".into(), json!(grace));
    }
    dns(form, &mut pod_spec)?;

    let mut strategy = Map::new();
    let strategy_type = form.get("strategy").unwrap_or("RollingUpdate");
    strategy.insert("type".into(), json!(strategy_type));
    if strategy_type == "RollingUpdate" {
        let mut rolling = Map::new();
        if let Some(v) = form.get("maxUnavailable") {
            rolling.insert("maxUnavailable".into(), int_or_string(v));
        }
        if let Some(v) = form.get("maxSurge") {
            rolling.insert("maxSurge".into(), int_or_string(v));
        }
        insert_nonempty(&mut strategy, "rollingUpdate", Value::Object(rolling));
    }

    let mut template_meta = Map::new();
    template_meta.insert("labels".into(), json!(pod_labels));
    insert_nonempty(&mut template_meta, "annotations", json!(pod_annotations));
    let mut spec = Map::new();
    spec.insert("selector".into(), json!({"matchLabels": pod_labels}));
    spec.insert(
        "template".into(),
        json!({"metadata": template_meta, "spec": pod_spec}),
    );
    spec.insert("updateStrategy".into(), Value::Object(strategy));
    if let Some(n) = form.int("minReadySeconds")? {
        spec.insert("minReadySeconds".into(), json!(n));
    }
    if let Some(n) = form.int("revisionHistoryLimit")? {
        spec.insert("revisionHistoryLimit".into(), json!(n));
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    metadata.insert("labels".into(), json!(labels));
    insert_nonempty(&mut metadata, "annotations", json!(annotations));
    let daemonset = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": metadata, "spec": spec,
    });
    let service = service(form, &name, &namespace, &json!(pod_labels))?;
    Ok(Built {
        namespace,
        daemonset,
        service,
        containers: container_indices,
        init_containers: init_indices,
    })
}

/// The form input a field path of the API server's answer names, when the form has one.
pub fn form_field(built: &Built, path: &str) -> Option<String> {
    let direct = [
        (
            "metadata.annotations[everynode.dev/progress-deadline-seconds]",
            "progressDeadlineSeconds",
        ),
        (
            "metadata.annotations[everynode.dev/auto-rollback]",
            "autoRollback",
        ),
        ("metadata.name", "name"),
        ("metadata.namespace", "namespace"),
        ("metadata.labels", "labels"),
        ("metadata.annotations", "annotations"),
        ("spec.selector", "podLabels"),
        ("spec.template.metadata.labels", "podLabels"),
        ("spec.template.metadata.annotations", "podAnnotations"),
        (
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "maxUnavailable",
        ),
        ("spec.updateStrategy.rollingUpdate.maxSurge", "maxSurge"),
        ("spec.updateStrategy", "strategy"),
        ("spec.minReadySeconds", "minReadySeconds"),
        ("spec.revisionHistoryLimit", "revisionHistoryLimit"),
        ("spec.template.spec.nodeSelector", "nodeSelector"),
        ("spec.template.spec.dnsPolicy", "dnsPolicy"),
        ("spec.template.spec.dnsConfig.nameservers", "nameservers"),
        ("spec.template.spec.dnsConfig.searches", "searches"),
        ("spec.template.spec.dnsConfig.options", "dnsOptions"),
        ("spec.template.spec.hostAliases", "hostAliases"),
        (
            "spec.template.spec.terminationGracePeriodSeconds",
            "terminationGracePeriodSeconds",
        ),
    ];
    if let Some((_, field)) = direct.iter().find(|(p, _)| path.starts_with(p)) {
        return Some((*field).to_owned());
    }
    for (list, indices) in [
        ("spec.template.spec.containers[", &built.containers),
        ("spec.template.spec.initContainers[", &built.init_containers),
    ] {
        let Some(rest) = path.strip_prefix(list) else {
            continue;
        };
        let (position, rest) = rest.split_once(']')?;
        let form_index = indices.get(position.parse::<usize>().ok()?)?;
        // The server names map keys in brackets: `resources.requests[memory]`.
        let rest = rest
            .trim_start_matches('.')
            .replace('[', ".")
            .replace(']', "");
        let field = [
            ("name", "name"),
            ("image", "image"),
            ("imagePullPolicy", "pullPolicy"),
            ("resources.requests.cpu", "cpuRequest"),
            ("resources.requests.memory", "memRequest"),
            ("resources.limits.cpu", "cpuLimit"),
            ("resources.limits.memory", "memLimit"),
            ("resources", "cpuRequest"),
            ("command", "command"),
            ("args", "args"),
            ("securityContext.runAsUser", "runAsUser"),
            ("securityContext", "privileged"),
        ]
        .iter()
        .find(|(p, _)| rest.starts_with(p))
        .map(|(_, f)| *f)
        .unwrap_or("image");
        return Some(format!("c.{form_index}.{field}"));
    }
    path.starts_with("spec.template.spec.tolerations")
        .then(|| "tol.0.key".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn every_section() -> Form {
        Form::from_pairs(&[
            ("name", "node-agent"),
            ("namespace", "monitoring"),
            ("description", "collects node metrics"),
            ("c.0.kind", "container"),
            ("c.0.name", "agent"),
            ("c.0.image", "busybox:1.36"),
            ("c.0.pullPolicy", "IfNotPresent"),
            ("c.0.privileged", "on"),
            ("c.0.cpuRequest", "100m"),
            ("c.0.memRequest", "64Mi"),
            ("c.0.cpuLimit", "500m"),
            ("c.0.memLimit", "128Mi"),
            ("c.0.gpu", "1"),
            ("c.0.command", "sh\n-c"),
            ("c.0.args", "echo hi; sleep 3600"),
            ("c.0.postStart", "sh\n-c\necho started"),
            ("c.0.preStop", "sh\n-c\necho stopping"),
            ("c.0.liveness.type", "exec"),
            ("c.0.liveness.command", "true"),
            ("c.0.liveness.periodSeconds", "5"),
            ("c.0.readiness.type", "tcp"),
            ("c.0.readiness.port", "9100"),
            ("c.0.startup.type", "http"),
            ("c.0.startup.path", "/healthz"),
            ("c.0.startup.port", "http"),
            ("c.0.port.0.name", "http"),
            ("c.0.port.0.containerPort", "9100"),
            ("c.0.port.0.protocol", "TCP"),
            ("c.0.env.0.name", "MODE"),
            ("c.0.env.0.source", "value"),
            ("c.0.env.0.value", "fast"),
            ("c.0.env.1.name", "NODE"),
            ("c.0.env.1.source", "field"),
            ("c.0.env.1.ref", "spec.nodeName"),
            ("c.0.env.2.name", "LEVEL"),
            ("c.0.env.2.source", "configMap"),
            ("c.0.env.2.ref", "settings"),
            ("c.0.env.2.key", "level"),
            ("c.0.vol.0.type", "hostPath"),
            ("c.0.vol.0.name", "proc"),
            ("c.0.vol.0.source", "/proc"),
            ("c.0.vol.0.hostPathType", "Directory"),
            ("c.0.vol.0.mountPath", "/host/proc"),
            ("c.0.vol.0.readOnly", "on"),
            ("c.0.vol.1.type", "emptyDir"),
            ("c.0.vol.1.mountPath", "/scratch"),
            ("c.0.runAsUser", "0"),
            ("c.0.capAdd", "SYS_PTRACE, NET_ADMIN"),
            ("c.1.kind", "init"),
            ("c.1.name", "setup"),
            ("c.1.image", "busybox:1.36"),
            ("c.1.command", "true"),
            ("svc.enabled", "on"),
            ("svc.type", "Headless"),
            ("svc.port.0.name", "http"),
            ("svc.port.0.port", "80"),
            ("svc.port.0.targetPort", "http"),
            ("dnsPolicy", "None"),
            ("nameservers", "1.1.1.1"),
            ("searches", "svc.cluster.local"),
            ("dnsOptions", "ndots=2"),
            ("hostAliases", "10.0.0.1 metrics.local m"),
            ("strategy", "RollingUpdate"),
            ("maxUnavailable", "25%"),
            ("maxSurge", "0"),
            ("minReadySeconds", "3"),
            ("revisionHistoryLimit", "5"),
            ("terminationGracePeriodSeconds", "10"),
            ("tol.0.key", "dedicated"),
            ("tol.0.operator", "Equal"),
            ("tol.0.value", "gpu"),
            ("tol.0.effect", "NoExecute"),
            ("tol.0.seconds", "60"),
            ("nodeSelector", "kubernetes.io/os=linux"),
            ("na.0.key", "kubernetes.io/hostname"),
            ("na.0.operator", "In"),
            ("na.0.values", "node-1, node-2"),
            ("pa.0.kind", "anti"),
            ("pa.0.labels", "app=other"),
            ("pa.0.topologyKey", "kubernetes.io/hostname"),
            ("labels", "team=infra"),
            ("annotations", "owner=ops"),
            ("podLabels", "app=node-agent"),
            ("podAnnotations", "scrape=true"),
            ("syncTimezone", "on"),
        ])
    }

    #[test]
    fn every_section_lands_in_the_object() {
        let built = build(&every_section()).expect("valid form");
        let ds = &built.daemonset;
        assert_eq!(built.namespace, "monitoring");
        assert_eq!(
            ds["metadata"]["annotations"][DESCRIPTION_ANNOTATION],
            "collects node metrics"
        );
        assert_eq!(ds["metadata"]["labels"]["team"], "infra");
        assert_eq!(ds["spec"]["selector"]["matchLabels"]["app"], "node-agent");
        let spec = &ds["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "busybox:1.36");
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(c["command"], json!(["sh", "-c"]));
        assert_eq!(
            c["lifecycle"]["preStop"]["exec"]["command"][2],
            "echo stopping"
        );
        assert_eq!(
            c["livenessProbe"],
            json!({"exec": {"command": ["true"]}, "periodSeconds": 5})
        );
        assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], 9100);
        assert_eq!(
            c["startupProbe"]["httpGet"],
            json!({"path": "/healthz", "port": "http"})
        );
        assert_eq!(
            c["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
            "spec.nodeName"
        );
        assert_eq!(
            c["env"][2]["valueFrom"]["configMapKeyRef"],
            json!({"name": "settings", "key": "level"})
        );
        assert_eq!(
            c["securityContext"]["capabilities"]["add"],
            json!(["SYS_PTRACE", "NET_ADMIN"])
        );
        assert_eq!(c["securityContext"]["privileged"], true);
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "proc", "mountPath": "/host/proc", "readOnly": true},
                   {"name": "c0-vol1", "mountPath": "/scratch"},
                   {"name": "host-localtime", "mountPath": "/etc/localtime", "readOnly": true}])
        );
        assert_eq!(spec["initContainers"][0]["name"], "setup");
        assert_eq!(
            spec["volumes"][0],
            json!({"name": "proc", "hostPath": {"path": "/proc", "type": "Directory"}})
        );
        assert_eq!(
            spec["dnsConfig"]["options"],
            json!([{"name": "ndots", "value": "2"}])
        );
        assert_eq!(
            spec["hostAliases"][0]["hostnames"],
            json!(["metrics.local", "m"])
        );
        assert_eq!(spec["tolerations"][0]["tolerationSeconds"], 60);
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["values"],
            json!(["node-1", "node-2"])
        );
        assert_eq!(
            spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                [0]["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"],
            json!({"maxUnavailable": "25%", "maxSurge": 0})
        );
        let svc = built.service.expect("service asked for");
        assert_eq!(svc["spec"]["clusterIP"], "None");
        assert_eq!(svc["spec"]["selector"], json!({"app": "node-agent"}));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    }

    #[test]
    fn form_only_refusals_name_their_input() {
        let long = "x".repeat(MAX_DESCRIPTION + 1);
        let err = build(&Form::from_pairs(&[("name", "a"), ("description", &long)]))
            .expect_err("too long");
        assert_eq!(err.field, "description");
        let searches: Vec<String> = (0..=MAX_SEARCHES).map(|i| format!("s{i}")).collect();
        let err = build(&Form::from_pairs(&[
            ("name", "a"),
            ("searches", &searches.join("\n")),
        ]))
        .expect_err("too many");
        assert_eq!(err.field, "searches");
        let err = build(&Form::from_pairs(&[
            ("name", "a"),
            ("minReadySeconds", "soon"),
        ]))
        .expect_err("not a number");
        assert_eq!(
            err,
            FormError {
                field: "minReadySeconds".into(),
                message: "\"soon\" is not a whole number".into()
            }
        );
    }

    #[test]
    fn server_field_paths_map_back_to_inputs() {
        let built = build(&Form::from_pairs(&[
            ("name", "a"),
            ("c.0.kind", "init"),
            ("c.0.name", "i"),
            ("c.2.name", "main"),
        ]))
        .expect("valid form");
        assert_eq!(form_field(&built, "metadata.name").as_deref(), Some("name"));
        assert_eq!(
            form_field(&built, "spec.template.spec.containers[0].image").as_deref(),
            Some("c.2.image")
        );
        assert_eq!(
            form_field(
                &built,
                "spec.template.spec.initContainers[0].resources.limits[cpu]"
            )
            .as_deref(),
            Some("c.0.cpuLimit")
        );
        assert_eq!(
            form_field(&built, "spec.template.spec.containers[5].image"),
            None
        );
    }
}

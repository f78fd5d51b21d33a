//! A container's environment, resolved as kubelet does: `envFrom` first, then `env` in order,
//! each value expanded against what came before; `fieldRef`, `resourceFieldRef`,
//! `configMapKeyRef` and `secretKeyRef`. Pure: ConfigMaps and Secrets are fetched by the caller.

use everynode_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::{BTreeMap, HashMap};

/// What `env` may refer to besides the pod itself.
#[derive(Default, Debug)]
pub struct Sources {
    /// ConfigMap name → data (binaryData is not usable in env, as upstream).
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
    /// Secret name → decoded data.
    pub secrets: HashMap<String, BTreeMap<String, String>>,
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
    /// Node allocatable, used by `resourceFieldRef` when the container sets no limit.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// The ConfigMaps and Secrets a pod's containers refer to in env: (config maps, secrets).
pub fn referenced_sources(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.push(r.name.clone());
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(src) = &e.value_from {
                if let Some(r) = &src.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &src.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Expands `$(VAR)` references as upstream's `expansion.Expand`: `$$` is a literal `$`, an
/// undefined `$(VAR)` stays as written, any other `$` is kept.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        match vars(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += close + 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch_len = input[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&input[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Why an environment could not be built; shown as `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported resource: {0}")]
    Resource(String),
}

/// The value of a downward-API `fieldPath` (env and downwardAPI volumes).
pub fn field_value(pod: &Pod, path: &str, sources: &Sources) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let labels_or_annotations = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.node_name.clone().unwrap_or(sources.node_name.clone()),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => sources.host_ip.clone(),
        "status.podIP" | "status.podIPs" => sources.pod_ip.clone(),
        p => {
            if let Some(key) = p
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                labels_or_annotations(&meta.labels, key)
            } else if let Some(key) = p
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                labels_or_annotations(&meta.annotations, key)
            } else {
                return Err(EnvError::FieldPath(p.to_owned()));
            }
        }
    })
}

/// `key="value"` lines sorted by key, as the downward API writes label and annotation maps.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// The value of a `resourceFieldRef`: the container's limit (or request), falling back to node
/// allocatable for limits, divided by `divisor` and rounded up, as upstream.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    sources: &Sources,
) -> Result<String, EnvError> {
    let r = container.resources.clone().unwrap_or_default();
    let (map, fallback_key) = match resource.split_once('.') {
        Some(("limits", name)) => (r.limits.unwrap_or_default(), Some(name)),
        Some(("requests", _)) => (r.requests.unwrap_or_default(), None),
        _ => return Err(EnvError::Resource(resource.to_owned())),
    };
    let name = resource.split_once('.').map(|(_, n)| n).unwrap_or(resource);
    let value = map
        .get(name)
        .and_then(|q| Quantity::parse(&q.0).ok())
        .or_else(|| fallback_key.and_then(|k| sources.node_allocatable.get(k).copied()))
        .unwrap_or(Quantity::ZERO);
    let divisor = divisor
        .and_then(|d| Quantity::parse(d).ok())
        .filter(|d| *d != Quantity::ZERO)
        .unwrap_or_else(|| Quantity::parse("1").unwrap_or(Quantity::ZERO));
    let (v, d) = (value.nanos(), divisor.nanos());
    if d == 0 {
        return Ok("0".into());
    }
    // Ceiling division; cpu limits of 0 report 1 when the divisor is a core, as upstream.
    let mut out = (v + d - 1).div_euclid(d);
    if name == "cpu" && out == 0 && v > 0 {
        out = 1;
    }
    Ok(out.to_string())
}

/// Builds the container's environment variables, in order.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = vars.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                Some(field_value(pod, &f.field_path, sources)?)
            } else if let Some(r) = &src.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|c| c.name == name))
                        .unwrap_or(container),
                    None => container,
                };
                Some(resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    sources,
                )?)
            } else if let Some(r) = &src.config_map_key_ref {
                match sources.config_maps.get(&r.name) {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace: ns.clone(),
                                name: r.name.clone(),
                            });
                        }
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &src.secret_key_ref {
                match sources.secrets.get(&r.name) {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace: ns.clone(),
                                name: r.name.clone(),
                            });
                        }
                    },
                    None if r.optional == Some(true) => None,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else {
                None
            }
        } else {
            let so_far = vars.clone();
            Some(expand(e.value.as_deref().unwrap_or(""), &|name| {
                so_far
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }))
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(vars)
}

/// `command` and `args` with `$(VAR)` expanded against the container's environment.
pub fn command_and_args(
    container: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let expand_all = |list: &Option<Vec<String>>| {
        list.iter()
            .flatten()
            .map(|s| expand(s, &lookup))
            .collect::<Vec<_>>()
    };
    (expand_all(&container.command), expand_all(&container.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [{
                "name": "c", "image": "i",
                "resources": {"limits": {"memory": "64Mi"}},
                "command": ["sh", "-c", "echo $(GREETING) $(MISSING) $$(ESCAPED)"],
                "env": [
                    {"name": "GREETING", "value": "hi-$(NODE)"},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "GREETING2", "value": "hi-$(NODE)"},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                ],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cfg"}}]
            }]}
        }))
        .expect("pod")
    }

    fn sources() -> Sources {
        let mut s = Sources {
            node_name: "n1".into(),
            host_ip: "10.0.0.1".into(),
            pod_ip: "10.0.0.1".into(),
            ..Default::default()
        };
        s.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([("level".to_owned(), "debug".to_owned())]),
        );
        s.node_allocatable
            .insert("cpu".into(), Quantity::parse("2").expect("q"));
        s
    }

    #[test]
    fn env_resolves_references_in_order() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let env = container_env(&p, c, &sources()).expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_level"), Some("debug"));
        // Only variables defined earlier expand.
        assert_eq!(get("GREETING"), Some("hi-$(NODE)"));
        assert_eq!(get("GREETING2"), Some("hi-n1"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("2"));
        assert_eq!(get("LEVEL"), Some("debug"));
        assert_eq!(get("POD_IP"), Some("10.0.0.1"));
        let (command, args) = command_and_args(c, &env);
        assert_eq!(
            command,
            vec!["sh", "-c", "echo hi-$(NODE) $(MISSING) $(ESCAPED)"]
        );
        assert!(args.is_empty());
    }

    #[test]
    fn missing_config_map_is_a_config_error() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let err = container_env(&p, c, &Sources::default()).expect_err("missing");
        assert_eq!(err.to_string(), "configmap \"cfg\" not found");
    }
}

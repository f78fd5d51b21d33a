//! Pod and pod-template validation: the rules users hit (`ValidatePodSpec` upstream).

use crate::field::{BadValue, ErrorList, FieldError, Path};
use crate::names;
use crate::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, PodSpec, Toleration, Volume};
use std::collections::{BTreeMap, BTreeSet};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["FallbackToLogsOnError", "File"];

fn volume_sources(v: &Volume) -> Vec<&'static str> {
    let mut s = Vec::new();
    macro_rules! source {
        ($($field:ident => $name:literal),*) => { $( if v.$field.is_some() { s.push($name); } )* };
    }
    source!(host_path => "hostPath", empty_dir => "emptyDir", secret => "secret", config_map => "configMap",
        downward_api => "downwardAPI", projected => "projected", persistent_volume_claim => "persistentVolumeClaim",
        nfs => "nfs", csi => "csi", ephemeral => "ephemeral", iscsi => "iscsi", image => "image", fc => "fc",
        rbd => "rbd", cephfs => "cephfs", git_repo => "gitRepo", azure_file => "azureFile", azure_disk => "azureDisk",
        gce_persistent_disk => "gcePersistentDisk", aws_elastic_block_store => "awsElasticBlockStore");
    s
}

fn validate_volumes(volumes: &[Volume], path: &Path) -> (ErrorList, BTreeSet<String>) {
    let mut errs = ErrorList::new();
    let mut names_seen = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        if v.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            for m in names::dns1123_label(&v.name) {
                errs.push(FieldError::invalid(&p.child("name"), &v.name, m));
            }
        }
        if !v.name.is_empty() && !names_seen.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(&p.child("name"), &v.name));
        }
        let sources = volume_sources(v);
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&p, "must specify a volume type")),
            [_] => {}
            [_, extra, ..] => errs.push(FieldError::forbidden(
                &p.child(extra),
                "may not specify more than 1 volume type",
            )),
        }
        if let Some(hp) = &v.host_path {
            if hp.path.is_empty() {
                errs.push(FieldError::required(&p.child("hostPath").child("path"), ""));
            }
            let t = hp.type_.as_deref().unwrap_or("");
            if !HOST_PATH_TYPES.contains(&t) {
                errs.push(FieldError::not_supported(
                    &p.child("hostPath").child("type"),
                    t,
                    HOST_PATH_TYPES,
                ));
            }
        }
        if let Some(cm) = &v.config_map
            && cm.name.is_empty()
        {
            errs.push(FieldError::required(
                &p.child("configMap").child("name"),
                "",
            ));
        }
        if let Some(s) = &v.secret
            && s.secret_name.as_deref().unwrap_or("").is_empty()
        {
            errs.push(FieldError::required(
                &p.child("secret").child("secretName"),
                "",
            ));
        }
        if let Some(pvc) = &v.persistent_volume_claim
            && pvc.claim_name.is_empty()
        {
            errs.push(FieldError::required(
                &p.child("persistentVolumeClaim").child("claimName"),
                "",
            ));
        }
    }
    (errs, names_seen)
}

fn validate_quantity_map(
    map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    path: &Path,
) -> (ErrorList, BTreeMap<String, Quantity>) {
    let mut errs = ErrorList::new();
    let mut parsed = BTreeMap::new();
    for (name, q) in map {
        let p = path.key(name);
        match Quantity::parse(&q.0) {
            Ok(v) if v.is_negative() => errs.push(FieldError::invalid(
                &p,
                &q.0,
                "must be greater than or equal to 0",
            )),
            Ok(v) => {
                parsed.insert(name.clone(), v);
            }
            Err(e) => errs.push(FieldError::invalid(&p, &q.0, e.to_string())),
        }
    }
    (errs, parsed)
}

fn validate_container(
    c: &Container,
    path: &Path,
    volumes: &BTreeSet<String>,
    host_network: bool,
) -> ErrorList {
    let mut errs = ErrorList::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        for m in names::dns1123_label(&c.name) {
            errs.push(FieldError::invalid(&path.child("name"), &c.name, m));
        }
    }
    if c.image.as_deref().unwrap_or("").trim().is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    if let Some(policy) = &c.image_pull_policy
        && !PULL_POLICIES.contains(&policy.as_str())
    {
        errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            policy,
            PULL_POLICIES,
        ));
    }
    if let Some(policy) = &c.termination_message_policy
        && !TERMINATION_MESSAGE_POLICIES.contains(&policy.as_str())
    {
        errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            policy,
            TERMINATION_MESSAGE_POLICIES,
        ));
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = path.child("ports").index(i);
        if !(1..=65535).contains(&port.container_port) {
            errs.push(FieldError::invalid(
                &p.child("containerPort"),
                port.container_port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(hp) = port.host_port {
            if !(0..=65535).contains(&hp) {
                errs.push(FieldError::invalid(
                    &p.child("hostPort"),
                    hp,
                    "must be between 1 and 65535, inclusive",
                ));
            } else if host_network && hp != port.container_port {
                errs.push(FieldError::invalid(
                    &p.child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
        if let Some(proto) = &port.protocol
            && !PROTOCOLS.contains(&proto.as_str())
        {
            errs.push(FieldError::not_supported(
                &p.child("protocol"),
                proto,
                PROTOCOLS,
            ));
        }
        if let Some(name) = &port.name {
            for m in names::iana_svc_name(name) {
                errs.push(FieldError::invalid(&p.child("name"), name, m));
            }
            if !port_names.insert(name.clone()) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(&p.child("name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.clone()) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.name.is_empty() {
            errs.push(FieldError::required(
                &path.child("env").index(i).child("name"),
                "",
            ));
        }
    }
    if let Some(res) = &c.resources {
        let rp = path.child("resources");
        let (le, limits) =
            validate_quantity_map(&res.limits.clone().unwrap_or_default(), &rp.child("limits"));
        let (re, requests) = validate_quantity_map(
            &res.requests.clone().unwrap_or_default(),
            &rp.child("requests"),
        );
        errs.extend(le);
        errs.extend(re);
        for (name, req) in &requests {
            if let Some(limit) = limits.get(name)
                && req > limit
            {
                let raw_req = res
                    .requests
                    .as_ref()
                    .and_then(|r| r.get(name))
                    .map(|q| q.0.clone())
                    .unwrap_or_default();
                let raw_limit = res
                    .limits
                    .as_ref()
                    .and_then(|l| l.get(name))
                    .map(|q| q.0.clone())
                    .unwrap_or_default();
                errs.push(FieldError::invalid(
                    &rp.child("requests"),
                    BadValue::Str(raw_req),
                    format!("must be less than or equal to {name} limit of {raw_limit}"),
                ));
            }
        }
    }
    errs
}

/// `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = t.key.as_deref().unwrap_or("");
        if !key.is_empty() {
            for m in names::qualified_name(key) {
                errs.push(FieldError::invalid(&p.child("key"), key, m));
            }
        }
        let op = t.operator.as_deref().unwrap_or("Equal");
        match op {
            "Equal" => {
                if key.is_empty() {
                    errs.push(FieldError::invalid(&p.child("operator"), op, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
                }
                for m in names::label_value(t.value.as_deref().unwrap_or("")) {
                    errs.push(FieldError::invalid(
                        &p.child("value"),
                        t.value.as_deref().unwrap_or(""),
                        m,
                    ));
                }
            }
            "Exists" => {
                if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        op,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        let effect = t.effect.as_deref().unwrap_or("");
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &p.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
    }
    errs
}

/// Taint effects upstream accepts.
pub fn taint_effects() -> &'static [&'static str] {
    TAINT_EFFECTS
}

/// `ValidatePodSpec` (the commonly hit subset; see docs/api.md for what is checked).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let (verrs, volumes) = validate_volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        &path.child("volumes"),
    );
    errs.extend(verrs);
    let host_network = spec.host_network.unwrap_or(false);
    if spec.containers.is_empty() {
        errs.push(FieldError::required(&path.child("containers"), ""));
    }
    let mut container_names = BTreeSet::new();
    for (field, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", &spec.containers[..]),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = path.child(field).index(i);
            errs.extend(validate_container(c, &p, &volumes, host_network));
            if !c.name.is_empty() && !container_names.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(&p.child("name"), &c.name));
            }
        }
    }
    if let Some(rp) = &spec.restart_policy
        && !RESTART_POLICIES.contains(&rp.as_str())
    {
        errs.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            rp,
            RESTART_POLICIES,
        ));
    }
    if let Some(dp) = &spec.dns_policy
        && !DNS_POLICIES.contains(&dp.as_str())
    {
        errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            dp,
            DNS_POLICIES,
        ));
    }
    errs.extend(validate_dns_config(
        spec.dns_config.as_ref(),
        spec.dns_policy.as_deref(),
        &path.child("dnsConfig"),
    ));
    if let Some(ads) = spec.active_deadline_seconds
        && ads < 1
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            ads,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(tg) = spec.termination_grace_period_seconds
        && tg < 0
    {
        errs.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            tg,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(names::validate_labels(
        &spec.node_selector.clone().unwrap_or_default(),
        &path.child("nodeSelector"),
    ));
    errs.extend(validate_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
    ));
    if let Some(sa) = &spec.service_account_name
        && !sa.is_empty()
    {
        for m in names::dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(
                &path.child("serviceAccountName"),
                sa,
                m,
            ));
        }
    }
    errs
}

/// Upstream's limits on a pod's DNS (`validation.MaxDNSNameservers` and friends), which come
/// from libc's resolver.
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// A list of strings as Go prints it in a field error (`[]string{"a", "b"}`).
fn go_string_list(items: &[String]) -> crate::field::BadValue {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    crate::field::BadValue::Raw(format!("[]string{{{}}}", quoted.join(", ")))
}

/// Upstream's `validatePodDNSConfig`: `dnsPolicy: None` needs a config with a nameserver; at
/// most 3 nameservers, each an IP; at most 32 searches of at most 2048 characters together,
/// each a DNS subdomain (a trailing dot allowed); every option named.
fn validate_dns_config(
    config: Option<&k8s_openapi::api::core::v1::PodDNSConfig>,
    policy: Option<&str>,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    if policy == Some("None") {
        let Some(config) = config else {
            errs.push(FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return errs;
        };
        if config.nameservers.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return errs;
        }
    }
    let Some(config) = config else {
        return errs;
    };
    let nameservers = config.nameservers.clone().unwrap_or_default();
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        errs.push(FieldError::invalid(
            &path.child("nameservers"),
            go_string_list(&nameservers),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, server) in nameservers.iter().enumerate() {
        if server.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                &path.child("nameservers").index(i),
                server,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let searches = config.searches.clone().unwrap_or_default();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(FieldError::invalid(
            &path.child("searches"),
            go_string_list(&searches),
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(FieldError::invalid(
            &path.child("searches"),
            go_string_list(&searches),
            format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        let search = search.strip_suffix('.').unwrap_or(search);
        for message in names::dns1123_subdomain(search) {
            errs.push(FieldError::invalid(
                &path.child("searches").index(i),
                search,
                message,
            ));
        }
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if option.name.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                &path.child("options").index(i),
                "Option.Name must not be empty",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("pod spec")
    }

    fn fields(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn dns_policy_none_needs_a_config_with_a_nameserver() {
        let c = json!([{"name": "a", "image": "x"}]);
        let errs = validate_pod_spec(
            &spec(json!({"containers": c, "dnsPolicy": "None"})),
            &Path::root("spec"),
        );
        assert_eq!(
            fields(&errs),
            vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
            ]
        );
        let errs = validate_pod_spec(
            &spec(json!({"containers": c, "dnsPolicy": "None", "dnsConfig": {"searches": ["a"]}})),
            &Path::root("spec"),
        );
        assert_eq!(
            fields(&errs),
            vec![
                "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"
            ]
        );
    }

    #[test]
    fn dns_config_limits_are_upstreams() {
        let searches: Vec<String> = (0..33).map(|i| format!("s{i}.example")).collect();
        let errs = validate_pod_spec(
            &spec(
                json!({"containers": [{"name": "a", "image": "x"}], "dnsConfig": {
                    "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "not-an-ip"],
                    "searches": searches,
                    "options": [{"value": "2"}],
                }}),
            ),
            &Path::root("spec"),
        );
        let f = fields(&errs);
        assert!(f.contains(&"spec.dnsConfig.nameservers: Invalid value: []string{\"1.1.1.1\", \"8.8.8.8\", \"9.9.9.9\", \"not-an-ip\"}: must not have more than 3 nameservers".to_owned()), "{f:?}");
        assert!(f.contains(&"spec.dnsConfig.nameservers[3]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_owned()), "{f:?}");
        assert!(
            f.iter().any(
                |e| e.starts_with("spec.dnsConfig.searches: Invalid value: []string{")
                    && e.ends_with("must not have more than 32 search paths")
            ),
            "{f:?}"
        );
        assert!(
            f.contains(
                &"spec.dnsConfig.options[0]: Required value: Option.Name must not be empty"
                    .to_owned()
            ),
            "{f:?}"
        );
        let long: Vec<String> = (0..30).map(|i| format!("{i}{}", "x".repeat(70))).collect();
        let errs = validate_pod_spec(
            &spec(
                json!({"containers": [{"name": "a", "image": "x"}], "dnsConfig": {"searches": long}}),
            ),
            &Path::root("spec"),
        );
        assert!(fields(&errs).iter().any(|e| e.ends_with(
            "must not have more than 2048 characters (including spaces) in the search list"
        )));
        let errs = validate_pod_spec(
            &spec(
                json!({"containers": [{"name": "a", "image": "x"}], "dnsConfig": {"searches": ["ok.example.", "Bad_Name"]}}),
            ),
            &Path::root("spec"),
        );
        let f = fields(&errs);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("spec.dnsConfig.searches[1]: Invalid value: \"Bad_Name\""),
            "{f:?}"
        );
    }

    #[test]
    fn containers_required() {
        let errs = validate_pod_spec(&spec(json!({"containers": []})), &Path::root("spec"));
        assert_eq!(fields(&errs), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn names_images_and_duplicates() {
        let errs = validate_pod_spec(
            &spec(
                json!({"containers": [{"name": "a", "image": "x"}, {"name": "a"}, {"name": "B_", "image": "y"}]}),
            ),
            &Path::root("spec"),
        );
        let f = fields(&errs);
        assert!(
            f.contains(&"spec.containers[1].image: Required value".to_owned()),
            "{f:?}"
        );
        assert!(
            f.contains(&"spec.containers[1].name: Duplicate value: \"a\"".to_owned()),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|e| e.starts_with("spec.containers[2].name: Invalid value: \"B_\"")),
            "{f:?}"
        );
    }

    #[test]
    fn volume_references_ports_resources() {
        let errs = validate_pod_spec(
            &spec(json!({"containers": [{"name": "a", "image": "x",
                "volumeMounts": [{"name": "missing", "mountPath": "/m"}],
                "ports": [{"containerPort": 70000}],
                "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "lots"}}}],
                "restartPolicy": "Sometimes"})),
            &Path::root("spec"),
        );
        let f = fields(&errs);
        assert!(
            f.contains(
                &"spec.containers[0].volumeMounts[0].name: Not found: \"missing\"".to_owned()
            ),
            "{f:?}"
        );
        assert!(f.contains(&"spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".to_owned()), "{f:?}");
        assert!(f.contains(&"spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1".to_owned()), "{f:?}");
        assert!(
            f.iter().any(|e| e.starts_with(
                "spec.containers[0].resources.limits[memory]: Invalid value: \"lots\""
            )),
            "{f:?}"
        );
        assert!(f.contains(&"spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".to_owned()), "{f:?}");
    }

    #[test]
    fn volumes_need_one_source_and_valid_host_path_type() {
        let errs = validate_pod_spec(
            &spec(json!({"containers": [{"name": "a", "image": "x"}],
                "volumes": [{"name": "v"}, {"name": "h", "hostPath": {"path": "/x", "type": "Dir"}}]})),
            &Path::root("spec"),
        );
        let f = fields(&errs);
        assert!(
            f.contains(&"spec.volumes[0]: Required value: must specify a volume type".to_owned()),
            "{f:?}"
        );
        assert!(f.iter().any(|e| e.starts_with("spec.volumes[1].hostPath.type: Unsupported value: \"Dir\"")), "{f:?}");
    }

    #[test]
    fn tolerations() {
        let t: Vec<Toleration> = serde_json::from_value(json!([
            {"key": "k", "operator": "Exists", "value": "v"},
            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
            {"operator": "Exists"}
        ]))
        .expect("tolerations");
        let f = fields(&validate_tolerations(&t, &Path::root("tolerations")));
        assert_eq!(f.len(), 2, "{f:?}");
    }
}

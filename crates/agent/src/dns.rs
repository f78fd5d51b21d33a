//! A pod's `/etc/resolv.conf` and `/etc/hosts`, as kubelet composes them (pure functions of the
//! pod and the node's own files): `dnsPolicy` picks the base, `dnsConfig` is merged into it, and
//! upstream's limits are applied; the hosts file is kubelet's managed one plus `hostAliases`.

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// Upstream's limits (`validation.MaxDNSNameservers`, `MaxDNSSearchPaths`,
/// `MaxDNSSearchListChars`).
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// The node's own resolv.conf and hosts file, read once: every pod on every node of this agent
/// process starts from them.
pub static NODE_FILES: std::sync::LazyLock<(Resolv, String)> = std::sync::LazyLock::new(|| {
    (
        Resolv::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
    )
});

/// The cluster's DNS domain (kubelet's `--cluster-domain` default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The contents of a resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolv {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    /// Parses a resolv.conf (`nameserver`, `search`/`domain`, `options` lines; the last
    /// `search` wins, as in glibc).
    pub fn parse(text: &str) -> Resolv {
        let mut out = Resolv::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.servers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => {
                    out.searches = words.map(str::to_owned).collect();
                }
                Some("options") => out.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        out
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for server in &self.servers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// The resolv.conf for `pod`, given the node's own (`host`) and the cluster DNS server, if
/// the cluster has one (`cluster_dns`, with its domain). Returns it and, when kubelet would
/// warn, the warning (e.g. ClusterFirst without cluster DNS falls back to the node's).
pub fn resolv_for(
    pod: &Pod,
    host: &Resolv,
    cluster_dns: Option<(&str, &str)>,
) -> (Resolv, Option<String>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut warning = None;
    // ClusterFirst means Default for a host-network pod; ClusterFirstWithHostNet means
    // ClusterFirst for any pod.
    let policy = match policy {
        "ClusterFirst" if host_network => "Default",
        "ClusterFirstWithHostNet" => "ClusterFirst",
        other => other,
    };
    let mut resolv = match (policy, cluster_dns) {
        ("None", _) => Resolv::default(),
        ("ClusterFirst", Some((server, domain))) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut searches = vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_owned(),
            ];
            searches.extend(host.searches.iter().cloned());
            Resolv {
                servers: vec![server.to_owned()],
                searches,
                options: vec!["ndots:5".to_owned()],
            }
        }
        ("ClusterFirst", None) => {
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let uid = pod.metadata.uid.as_deref().unwrap_or("");
            warning = Some(format!(
                "pod: \"{name}_{ns}({uid})\". kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
            ));
            host.clone()
        }
        _ => host.clone(),
    };
    if let Some(config) = &spec.dns_config {
        for server in config.nameservers.iter().flatten() {
            resolv.servers.push(server.clone());
        }
        for search in config.searches.iter().flatten() {
            if !resolv.searches.contains(search) {
                resolv.searches.push(search.clone());
            }
        }
        for option in config.options.iter().flatten() {
            let text = match &option.value {
                Some(v) => format!("{}:{v}", option.name.clone().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = option.name.clone().unwrap_or_default();
            // An option of the same name is replaced, not repeated.
            resolv
                .options
                .retain(|o| o.split(':').next() != Some(name.as_str()));
            resolv.options.push(text);
        }
    }
    resolv.servers.dedup();
    resolv.servers.truncate(MAX_NAMESERVERS);
    truncate_searches(&mut resolv.searches);
    (resolv, warning)
}

/// At most `MAX_SEARCHES` domains and `MAX_SEARCH_CHARS` characters (joined by spaces), as
/// kubelet trims the node's list.
fn truncate_searches(searches: &mut Vec<String>) {
    searches.truncate(MAX_SEARCHES);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
}

/// kubelet's managed `/etc/hosts` for a pod with its own network: localhost entries, the pod's
/// own address under its host name (and FQDN with a subdomain), then `hostAliases`.
pub fn hosts_file(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let hostname = hostname_of(pod);
    if !pod_ip.is_empty() {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                text.push_str(&format!(
                    "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                ));
            }
            None => text.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    text.push_str(&host_aliases(
        spec.host_aliases.as_deref().unwrap_or_default(),
    ));
    text
}

/// The node's own hosts file with the pod's `hostAliases` appended (host-network pods).
pub fn host_network_hosts_file(pod: &Pod, node_hosts: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut text = node_hosts.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&host_aliases(
        spec.host_aliases.as_deref().unwrap_or_default(),
    ));
    text
}

fn host_aliases(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        text.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    text
}

/// The pod's host name: `spec.hostname`, else its name cut to 63 characters (as kubelet).
pub fn hostname_of(pod: &Pod) -> String {
    let spec_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let name = spec_name.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-x7k2p", "namespace": "logging"},
            "spec": spec,
        }))
        .expect("a pod")
    }

    fn host() -> Resolv {
        Resolv::parse(
            "# generated\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\noptions edns0\n",
        )
    }

    #[test]
    fn resolv_conf_parses_and_renders() {
        let r = host();
        assert_eq!(r.servers, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(r.searches, ["corp.example"]);
        assert_eq!(
            r.render(),
            "nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\noptions edns0\n"
        );
    }

    #[test]
    fn default_policy_is_the_nodes_file() {
        let (r, warning) = resolv_for(&pod(json!({"dnsPolicy": "Default"})), &host(), None);
        assert_eq!(r, host());
        assert_eq!(warning, None);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_with_a_warning() {
        let (r, warning) = resolv_for(&pod(json!({})), &host(), None);
        assert_eq!(r, host());
        assert!(warning.is_some_and(|w| w.ends_with("Falling back to \"Default\" policy.")));
    }

    #[test]
    fn cluster_first_with_cluster_dns_searches_the_namespace_first() {
        let (r, _) = resolv_for(
            &pod(json!({"dnsPolicy": "ClusterFirst"})),
            &host(),
            Some(("10.96.0.10", "cluster.local")),
        );
        assert_eq!(r.servers, ["10.96.0.10"]);
        assert_eq!(
            r.searches,
            [
                "logging.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(r.options, ["ndots:5"]);
    }

    #[test]
    fn cluster_first_on_host_network_is_default_unless_with_host_net() {
        let dns = Some(("10.96.0.10", "cluster.local"));
        let (r, _) = resolv_for(&pod(json!({"hostNetwork": true})), &host(), dns);
        assert_eq!(r, host());
        let (r, _) = resolv_for(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &host(),
            dns,
        );
        assert_eq!(r.servers, ["10.96.0.10"]);
    }

    #[test]
    fn none_takes_only_dns_config_and_options_override_by_name() {
        let spec = json!({
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["1.1.1.1"],
                "searches": ["a.example", "a.example", "b.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
        });
        let (r, _) = resolv_for(&pod(spec), &host(), None);
        assert_eq!(r.servers, ["1.1.1.1"]);
        assert_eq!(r.searches, ["a.example", "b.example"]);
        assert_eq!(r.options, ["ndots:2", "edns0"]);
        let spec = json!({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "edns0"}, {"name": "ndots", "value": "1"}]}});
        let (r, _) = resolv_for(&pod(spec), &host(), None);
        assert_eq!(r.options, ["edns0", "ndots:1"]);
    }

    #[test]
    fn limits_cut_nameservers_and_searches() {
        let spec = json!({
            "dnsPolicy": "Default",
            "dnsConfig": {
                "nameservers": ["1.1.1.1", "8.8.8.8"],
                "searches": (0..40).map(|i| format!("d{i}.{}", "x".repeat(60))).collect::<Vec<_>>(),
            },
        });
        let (r, _) = resolv_for(&pod(spec), &host(), None);
        assert_eq!(r.servers, ["10.0.0.2", "10.0.0.3", "1.1.1.1"]);
        assert!(r.searches.len() <= MAX_SEARCHES);
        assert!(r.searches.join(" ").len() <= MAX_SEARCH_CHARS);
    }

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let p = pod(json!({
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}],
        }));
        let text = hosts_file(&p, "10.244.1.5", "cluster.local");
        assert!(text.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.244.1.5\tagent-x7k2p\n"));
        assert!(
            text.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n")
        );
        let p = pod(json!({"hostname": "h", "subdomain": "s"}));
        assert!(
            hosts_file(&p, "10.244.1.5", "cluster.local")
                .contains("10.244.1.5\th.s.logging.svc.cluster.local\th\n")
        );
    }

    #[test]
    fn host_network_keeps_the_nodes_hosts_file() {
        let p = pod(
            json!({"hostNetwork": true, "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo"]}]}),
        );
        let text = host_network_hosts_file(&p, "127.0.0.1 localhost");
        assert_eq!(
            text,
            "127.0.0.1 localhost\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\n"
        );
    }
}

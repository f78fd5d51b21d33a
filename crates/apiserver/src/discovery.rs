//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}[/{version}]`.

use everynode_api::registry::{self, Resource, VERBS};
use serde_json::{Value, json};

/// The Kubernetes version everynode serves. kubectl's dispatcher picks its binary from the minor.
pub const KUBERNETES_MINOR: &str = "33";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-everynode.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn group_doc(group: &str) -> Value {
    let version = if group == crate::resource_metrics::GROUP {
        crate::resource_metrics::VERSION
    } else {
        "v1"
    };
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// The served groups: those of stored resources, then those of the review APIs.
fn served_groups() -> Vec<&'static str> {
    let mut groups = registry::groups();
    for (group, ..) in crate::authz::reviews::RESOURCES {
        if !groups.contains(group) {
            groups.push(group);
        }
    }
    groups.push(crate::resource_metrics::GROUP);
    groups.push(crate::resource_metrics::history::GROUP);
    groups
}

/// `/apis`.
pub fn groups() -> Value {
    let groups: Vec<Value> = served_groups().into_iter().map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
pub fn group(name: &str) -> Option<Value> {
    served_groups().contains(&name).then(|| {
        let mut g = group_doc(name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    for sub in r.subresources {
        let (kind, verbs): (&str, &[&str]) = match *sub {
            "binding" => ("Binding", &["create"]),
            "finalize" => (r.kind, &["update"]),
            "placement" => ("DaemonSetPlacement", &["get"]),
            "preview" => ("DaemonSetPreview", &["create"]),
            "log" => (r.kind, &["get"]),
            _ => (r.kind, &["get", "patch", "update"]),
        };
        out.push(json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs}));
    }
    if r.group.is_empty() && r.plural == "pods" {
        for (sub, kind) in crate::handlers::exec::SUBRESOURCES {
            out.push(json!({"name": format!("pods/{sub}"), "singularName": "", "namespaced": true, "kind": kind, "verbs": ["create", "get"]}));
        }
    }
    out
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let mut list: Vec<Value> = registry::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(resource_entries)
        .collect();
    if version == "v1" {
        // The reviews are create-only and stored nowhere.
        for (g, plural, kind, namespaced) in crate::authz::reviews::RESOURCES {
            if *g == group {
                list.push(json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind, "verbs": ["create"]}));
            }
        }
    }
    if group == crate::resource_metrics::GROUP && version == crate::resource_metrics::VERSION {
        for (plural, kind, namespaced) in crate::resource_metrics::RESOURCES {
            list.push(json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]}));
        }
    }
    if group == crate::resource_metrics::history::GROUP
        && version == crate::resource_metrics::history::VERSION
    {
        for (plural, kind, namespaced) in crate::resource_metrics::history::RESOURCES {
            list.push(json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]}));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let apps = resources("apps", "v1").expect("apps");
        let ds = apps["resources"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == "daemonsets")
            .expect("ds");
        assert_eq!(ds["shortNames"], json!(["ds"]));
        assert_eq!(ds["categories"], json!(["all"]));
        let core = resources("", "v1").expect("core");
        assert!(
            core["resources"]
                .as_array()
                .expect("list")
                .iter()
                .any(|r| r["name"] == "pods/binding" && r["kind"] == "Binding")
        );
        assert!(group("apps").is_some() && group("batch").is_none());
        assert_eq!(version()["minor"], "33");
    }
}

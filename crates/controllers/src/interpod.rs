//! The scheduler's InterPodAffinity filter for required terms
//! (`requiredDuringSchedulingIgnoredDuringExecution`), with upstream's reasons:
//! - the pod's affinity terms: some pod matching each term must run in the candidate node's
//!   topology domain (`topologyKey` label value); a term nothing matches yet is satisfied when
//!   the pod matches it itself (the first pod of a group);
//! - the pod's anti-affinity terms: no matching pod may run in the candidate's domain;
//! - existing pods' anti-affinity terms: no pod whose term matches the incoming pod may run in
//!   the candidate's domain.
//!
//! Namespaces, as upstream: a term applies to the union of its `namespaces` and the namespaces
//! its `namespaceSelector` matches (by namespace labels); an empty selector (`{}`) means all
//! namespaces; neither given means the namespace of the pod that carries the term.

use everynode_api::selector::from_label_selector;
use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};
use std::collections::{BTreeMap, HashMap};

pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

fn labels_of(node: &Node) -> Option<&std::collections::BTreeMap<String, String>> {
    node.metadata.labels.as_ref()
}

fn domain<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    labels_of(node).and_then(|l| l.get(key)).map(String::as_str)
}

/// Labels of every namespace, by name: what namespace selectors are matched against.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// Whether `term`, written in a pod of namespace `owner_ns`, covers namespace `ns`.
fn covers_namespace(
    term: &PodAffinityTerm,
    owner_ns: &str,
    ns: &str,
    namespaces: &NamespaceLabels,
) -> bool {
    let listed = term.namespaces.as_ref().filter(|n| !n.is_empty());
    if listed.is_some_and(|list| list.iter().any(|n| n == ns)) {
        return true;
    }
    match &term.namespace_selector {
        Some(selector) => {
            let Ok(selector) = from_label_selector(Some(selector)) else {
                return false;
            };
            match namespaces.get(ns) {
                Some(labels) => selector.matches(labels),
                // A namespace the cache has not seen has no labels (only `{}` matches it).
                None => selector.matches(&BTreeMap::new()),
            }
        }
        None => listed.is_none() && ns == owner_ns,
    }
}

/// Whether `candidate` matches `term` as written in a pod of namespace `owner_ns`.
fn term_matches(
    term: &PodAffinityTerm,
    owner_ns: &str,
    candidate: &Pod,
    namespaces: &NamespaceLabels,
) -> bool {
    let ns = candidate.metadata.namespace.as_deref().unwrap_or("default");
    if !covers_namespace(term, owner_ns, ns, namespaces) {
        return false;
    }
    let Ok(selector) = from_label_selector(term.label_selector.as_ref()) else {
        return false;
    };
    selector.matches(&candidate.metadata.labels.clone().unwrap_or_default())
}

fn required(pod: &Pod, anti: bool) -> Vec<PodAffinityTerm> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
    } else {
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
    };
    terms.unwrap_or_default()
}

/// Checks `pod` on `node` against `placed`: every bound pod with its node.
pub fn check(
    pod: &Pod,
    node: &Node,
    placed: &[(&Pod, &Node)],
    namespaces: &NamespaceLabels,
) -> Result<(), &'static str> {
    let own_ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for term in required(pod, false) {
        let matching: Vec<&(&Pod, &Node)> = placed
            .iter()
            .filter(|(p, _)| term_matches(&term, own_ns, p, namespaces))
            .collect();
        let satisfied = match domain(node, &term.topology_key) {
            None => false,
            Some(value) => {
                matching
                    .iter()
                    .any(|(_, n)| domain(n, &term.topology_key) == Some(value))
                    || (matching.is_empty() && term_matches(&term, own_ns, pod, namespaces))
            }
        };
        if !satisfied {
            return Err(AFFINITY);
        }
    }
    for term in required(pod, true) {
        if let Some(value) = domain(node, &term.topology_key)
            && placed.iter().any(|(p, n)| {
                term_matches(&term, own_ns, p, namespaces)
                    && domain(n, &term.topology_key) == Some(value)
            })
        {
            return Err(ANTI_AFFINITY);
        }
    }
    for (existing, existing_node) in placed {
        let their_ns = existing.metadata.namespace.as_deref().unwrap_or("default");
        for term in required(existing, true) {
            if term_matches(&term, their_ns, pod, namespaces)
                && let Some(value) = domain(node, &term.topology_key)
                && domain(existing_node, &term.topology_key) == Some(value)
            {
                return Err(EXISTING_ANTI_AFFINITY);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name, "zone": zone}}}))
        .expect("node")
    }

    fn pod(labels: serde_json::Value, affinity: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "labels": labels},
            "spec": {"containers": [], "affinity": affinity}}),
        )
        .expect("pod")
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}])
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_same_domain() {
        let (a1, a2, b1) = (node("a1", "a"), node("a2", "a"), node("b1", "b"));
        let cache = pod(json!({"app": "cache"}), json!({}));
        let web = pod(
            json!({"app": "web"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("cache", "zone")}}),
        );
        let placed = [(&cache, &a1)];
        assert_eq!(check(&web, &a2, &placed, &NamespaceLabels::new()), Ok(()));
        assert_eq!(
            check(&web, &b1, &placed, &NamespaceLabels::new()),
            Err(AFFINITY)
        );
        // Nothing matches anywhere and the pod does not match its own term: nowhere.
        assert_eq!(
            check(&web, &a1, &[], &NamespaceLabels::new()),
            Err(AFFINITY)
        );
        // ... but a pod that matches its own term may start the group.
        let first = pod(
            json!({"app": "cache"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("cache", "zone")}}),
        );
        assert_eq!(check(&first, &b1, &[], &NamespaceLabels::new()), Ok(()));
    }

    #[test]
    fn anti_affinity_both_ways() {
        let (a1, a2, b1) = (node("a1", "a"), node("a2", "a"), node("b1", "b"));
        let spread = |labels| {
            pod(
                labels,
                json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web", "kubernetes.io/hostname")}}),
            )
        };
        let first = spread(json!({"app": "web"}));
        let second = spread(json!({"app": "web"}));
        assert_eq!(
            check(&second, &a1, &[(&first, &a1)], &NamespaceLabels::new()),
            Err(ANTI_AFFINITY)
        );
        assert_eq!(
            check(&second, &a2, &[(&first, &a1)], &NamespaceLabels::new()),
            Ok(())
        );
        // An existing pod's anti-affinity keeps matching pods out of its domain.
        let zonal = pod(
            json!({"app": "db"}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web", "zone")}}),
        );
        let plain_web = pod(json!({"app": "web"}), json!({}));
        assert_eq!(
            check(&plain_web, &a2, &[(&zonal, &a1)], &NamespaceLabels::new()),
            Err(EXISTING_ANTI_AFFINITY)
        );
        assert_eq!(
            check(&plain_web, &b1, &[(&zonal, &a1)], &NamespaceLabels::new()),
            Ok(())
        );
    }

    fn in_namespace(ns: &str, labels: serde_json::Value) -> Pod {
        let mut p = pod(labels, json!({}));
        p.metadata.namespace = Some(ns.into());
        p
    }

    #[test]
    fn namespace_selectors_match_namespace_labels() {
        let (a1, b1) = (node("a1", "a"), node("b1", "b"));
        let namespaces: NamespaceLabels = [
            ("default".to_owned(), BTreeMap::new()),
            (
                "logging".to_owned(),
                BTreeMap::from([("team".to_owned(), "obs".to_owned())]),
            ),
            ("other".to_owned(), BTreeMap::new()),
        ]
        .into();
        let with_term = |term: serde_json::Value| {
            pod(
                json!({"app": "agent"}),
                json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}),
            )
        };
        let collector = in_namespace("logging", json!({"app": "collector"}));
        let stray = in_namespace("other", json!({"app": "collector"}));
        // By selector: only the labelled namespace counts.
        let selected = with_term(
            json!({"labelSelector": {"matchLabels": {"app": "collector"}},
            "namespaceSelector": {"matchLabels": {"team": "obs"}}, "topologyKey": "zone"}),
        );
        assert_eq!(
            check(&selected, &a1, &[(&collector, &a1)], &namespaces),
            Err(ANTI_AFFINITY)
        );
        assert_eq!(check(&selected, &a1, &[(&stray, &a1)], &namespaces), Ok(()));
        // Neither list nor selector: only the pod's own namespace.
        let own = with_term(
            json!({"labelSelector": {"matchLabels": {"app": "collector"}}, "topologyKey": "zone"}),
        );
        assert_eq!(check(&own, &a1, &[(&collector, &a1)], &namespaces), Ok(()));
        // `{}` selects every namespace; a list and a selector are a union.
        let all = with_term(
            json!({"labelSelector": {"matchLabels": {"app": "collector"}}, "namespaceSelector": {}, "topologyKey": "zone"}),
        );
        assert_eq!(
            check(&all, &a1, &[(&stray, &a1)], &namespaces),
            Err(ANTI_AFFINITY)
        );
        let union = with_term(
            json!({"labelSelector": {"matchLabels": {"app": "collector"}}, "namespaces": ["other"],
            "namespaceSelector": {"matchLabels": {"team": "obs"}}, "topologyKey": "zone"}),
        );
        assert_eq!(
            check(&union, &a1, &[(&stray, &a1)], &namespaces),
            Err(ANTI_AFFINITY)
        );
        assert_eq!(
            check(&union, &a1, &[(&collector, &a1)], &namespaces),
            Err(ANTI_AFFINITY)
        );
        assert_eq!(
            check(&union, &b1, &[(&collector, &a1)], &namespaces),
            Ok(())
        );
    }
}

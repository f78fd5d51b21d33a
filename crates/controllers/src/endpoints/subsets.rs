//! The Endpoints object a Service with a selector should have, and whether the one it has needs
//! writing: upstream's endpoints controller (`syncService`, `RepackSubsets`,
//! `truncateEndpoints`). Pure functions of the Service, its pods and the current object.

use super::pod_endpoint::{
    address_in, endpoints_family, find_port, is_headless, is_ready, pod_reference,
    publishes_not_ready, selector, selects, should_be_in_endpoints, should_set_hostname,
};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Most addresses, ready and not, one Endpoints object lists; beyond it the controller
/// truncates and says so in [`OVER_CAPACITY`].
pub const MAX_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// When the newest change of a pod or the Service that this object reflects happened.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What the controller does with a Service's Endpoints.
#[derive(Debug, PartialEq)]
pub enum EndpointsWrite {
    Unchanged,
    Create(Endpoints),
    Update(Endpoints),
}

/// An address's identity: the same IP from two pods is two addresses.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AddressKey {
    ip: Option<IpAddr>,
    ip_text: String,
    uid: String,
}

fn address_key(a: &EndpointAddress) -> AddressKey {
    AddressKey {
        ip: a.ip.parse().ok(),
        ip_text: a.ip.clone(),
        uid: a
            .target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    }
}

/// A port's identity, sortable; no ports at all (a headless Service without ports) is a port
/// of its own so its addresses are kept.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

impl PortKey {
    const NONE: PortKey = PortKey {
        name: String::new(),
        port: -1,
        protocol: String::new(),
        app_protocol: None,
    };

    fn of(p: &EndpointPort) -> Self {
        PortKey {
            name: p.name.clone().unwrap_or_default(),
            port: p.port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        }
    }

    fn port(&self) -> Option<EndpointPort> {
        (self.port >= 0).then(|| EndpointPort {
            name: Some(self.name.clone()).filter(|n| !n.is_empty()),
            port: self.port,
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        })
    }
}

/// The subsets upstream's `RepackSubsets` makes: for each port the addresses offering it, then
/// one subset per distinct set of addresses (with their readiness) and the ports it offers.
/// An address ready on a port stays ready there.
fn repack(entries: Vec<(EndpointAddress, bool, Vec<EndpointPort>)>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for (address, ready, ports) in entries {
        let key = address_key(&address);
        addresses.entry(key.clone()).or_insert(address);
        let ports: Vec<PortKey> = if ports.is_empty() {
            vec![PortKey::NONE]
        } else {
            ports.iter().map(PortKey::of).collect()
        };
        for port in ports {
            let seen = by_port
                .entry(port)
                .or_default()
                .entry(key.clone())
                .or_insert(ready);
            *seen |= ready;
        }
    }
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, set) in by_port {
        by_addresses
            .entry(set.into_iter().collect())
            .or_default()
            .push(port);
    }
    by_addresses
        .into_iter()
        .map(|(set, ports)| {
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for (key, is_ready) in set {
                if let Some(a) = addresses.get(&key) {
                    if is_ready { &mut ready } else { &mut not_ready }.push(a.clone());
                }
            }
            let ports: Vec<EndpointPort> = ports.iter().filter_map(PortKey::port).collect();
            EndpointSubset {
                addresses: Some(ready).filter(|v| !v.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|v| !v.is_empty()),
                ports: Some(ports).filter(|v| !v.is_empty()),
            }
        })
        .collect()
}

/// Subsets in their canonical form (upstream's `RepackSubsets`), as the mirroring controller
/// reads manually written Endpoints.
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut entries = Vec::new();
    for subset in subsets {
        let ports = subset.ports.clone().unwrap_or_default();
        for (list, ready) in [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ] {
            for address in list.iter().flatten() {
                entries.push((address.clone(), ready, ports.clone()));
            }
        }
    }
    repack(entries)
}

/// Cuts the subsets to [`MAX_ADDRESSES`], as upstream's `truncateEndpoints`: ready addresses
/// are kept first, and each subset keeps its share of the kept ones. True when it cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ADDRESSES {
        return false;
    }
    let cut_ready = ready > MAX_ADDRESSES;
    let (room, total) = if cut_ready {
        (MAX_ADDRESSES, ready)
    } else {
        (MAX_ADDRESSES - ready, not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if cut_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let here = count(list);
        let share = (here * room).div_ceil(total.max(1)).min(left);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        left -= count(list);
    }
    true
}

/// When the newest change this Service's endpoints reflect happened: its creation, or a pod's
/// readiness turning, creation or deletion.
pub(super) fn trigger_time(service: &Service, pods: &[&Pod]) -> Option<Timestamp> {
    let mut newest = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
    for pod in pods {
        let ready_changed = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref());
        let changed = [
            ready_changed,
            pod.metadata.creation_timestamp.as_ref(),
            pod.metadata.deletion_timestamp.as_ref(),
        ];
        for t in changed.into_iter().flatten() {
            newest = newest.max(Some(t.0));
        }
    }
    newest
}

/// The pods of `service` among `pods` (any namespace).
pub fn selected<'a>(service: &Service, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let Some(selector) = selector(service) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| p.metadata.namespace == service.metadata.namespace)
        .filter(|p| selects(selector, p.metadata.labels.as_ref()))
        .map(|p| p.as_ref())
        .collect()
}

/// The subsets of the Service's Endpoints, and whether they were truncated.
fn desired_subsets(service: &Service, pods: &[&Pod]) -> (Vec<EndpointSubset>, bool) {
    let publish_not_ready = publishes_not_ready(service);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut entries = Vec::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = endpoints_family(service, pod).and_then(|f| address_in(pod, f)) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: should_set_hostname(pod, service)
                .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
                .flatten(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let ready = publish_not_ready || is_ready(pod);
        if service_ports.is_empty() {
            // Without ports only a headless Service lists addresses (for DNS).
            if is_headless(service) {
                entries.push((address, ready, Vec::new()));
            }
            continue;
        }
        for port in service_ports {
            // A pod without the named port is simply not behind that port.
            let Ok(number) = find_port(pod, port) else {
                continue;
            };
            let port = EndpointPort {
                name: port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            };
            entries.push((address.clone(), ready, vec![port]));
        }
    }
    let mut subsets = repack(entries);
    let truncated = truncate(&mut subsets);
    (subsets, truncated)
}

/// The labels an Endpoints object carries: its Service's, and the headless label when headless.
pub fn labels_for(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// Subsets as the server returns them: empty lists are no lists.
fn normalized(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let nonempty = |v: &Option<Vec<EndpointAddress>>| v.clone().filter(|v| !v.is_empty());
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: nonempty(&s.addresses),
            not_ready_addresses: nonempty(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|v| !v.is_empty()),
        })
        .collect()
}

/// What to write for a Service that has a selector and is not an ExternalName, given its pods
/// (any namespace; the Service's own are picked) and its current Endpoints.
pub fn plan(service: &Service, pods: &[Arc<Pod>], current: Option<&Endpoints>) -> EndpointsWrite {
    let pods = selected(service, pods);
    let (subsets, truncated) = desired_subsets(service, &pods);
    let labels = labels_for(service);
    if let Some(current) = current {
        let annotations = current.metadata.annotations.as_ref();
        let over_capacity_marked = annotations
            .and_then(|a| a.get(OVER_CAPACITY))
            .map(String::as_str)
            == truncated.then_some("truncated");
        if normalized(current.subsets.as_ref()) == subsets
            && current.metadata.labels.clone().unwrap_or_default() == labels
            && over_capacity_marked
        {
            return EndpointsWrite::Unchanged;
        }
    }
    let mut annotations = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    match trigger_time(service, &pods) {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.to_string()),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    let metadata = ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations).filter(|a| !a.is_empty()),
        ..current
            .map(|c| c.metadata.clone())
            .unwrap_or_else(|| ObjectMeta {
                name: service.metadata.name.clone(),
                namespace: service.metadata.namespace.clone(),
                ..Default::default()
            })
    };
    let endpoints = Endpoints {
        metadata,
        subsets: Some(subsets),
    };
    match current {
        Some(_) => EndpointsWrite::Update(endpoints),
        None => EndpointsWrite::Create(endpoints),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::pod_endpoint::tests::{pod, service};
    use serde_json::{Value, json};

    fn web(name: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(pod(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": format!("node-{name}"), "containers": [{"name": "c",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2026-01-01T00:00:05Z"}]}
        })))
    }

    fn svc(spec: Value) -> Service {
        let mut spec = spec;
        spec["selector"] = json!({"app": "web"});
        service(json!({"metadata": {"name": "web", "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"team": "a"}}, "spec": spec}))
    }

    fn created(write: EndpointsWrite) -> Endpoints {
        match write {
            EndpointsWrite::Create(e) => e,
            other => panic!("expected a create, got {other:?}"),
        }
    }

    fn json_of(e: &Endpoints) -> Value {
        serde_json::to_value(e).expect("json")
    }

    #[test]
    fn ready_and_not_ready_pods_share_a_subset_with_named_ports_resolved() {
        let s = svc(json!({"clusterIP": "10.96.0.10",
            "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}));
        let pods = vec![web("b", "10.1.0.2", false), web("a", "10.1.0.1", true)];
        let e = json_of(&created(plan(&s, &pods, None)));
        assert_eq!(e["metadata"]["name"], "web");
        assert_eq!(e["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(
            e["metadata"]["annotations"][LAST_CHANGE_TRIGGER_TIME],
            "2026-01-01T00:00:05Z"
        );
        assert_eq!(
            e["subsets"],
            json!([{
                "addresses": [{"ip": "10.1.0.1", "nodeName": "node-a",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}],
                "notReadyAddresses": [{"ip": "10.1.0.2", "nodeName": "node-b",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}}],
                "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]
            }])
        );
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let s = svc(
            json!({"clusterIP": "10.96.0.10", "publishNotReadyAddresses": true,
            "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        let pods = vec![web("b", "10.1.0.2", false)];
        let e = json_of(&created(plan(&s, &pods, None)));
        assert_eq!(e["subsets"][0]["addresses"][0]["ip"], "10.1.0.2");
        assert!(e["subsets"][0].get("notReadyAddresses").is_none());
    }

    #[test]
    fn a_headless_service_without_ports_lists_addresses_and_is_labelled() {
        let headless = svc(json!({"clusterIP": "None"}));
        let pods = vec![web("a", "10.1.0.1", true)];
        let e = json_of(&created(plan(&headless, &pods, None)));
        assert_eq!(e["metadata"]["labels"][HEADLESS_LABEL], "");
        assert_eq!(e["subsets"][0]["addresses"][0]["ip"], "10.1.0.1");
        assert!(e["subsets"][0].get("ports").is_none());
        let plain = svc(json!({"clusterIP": "10.96.0.10"}));
        let e = json_of(&created(plan(&plain, &pods, None)));
        assert_eq!(
            e["subsets"],
            json!([]),
            "a ClusterIP Service without ports lists nobody"
        );
    }

    #[test]
    fn pods_lacking_a_named_port_are_only_behind_the_ports_they_have() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "ports": [
            {"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]}));
        let a = web("a", "10.1.0.1", true);
        let mut b = (*web("b", "10.1.0.2", true)).clone();
        if let Some(spec) = b.spec.as_mut() {
            spec.containers[0].ports = Some(vec![
                serde_json::from_value(json!({"name": "http", "containerPort": 8080}))
                    .expect("port"),
                serde_json::from_value(json!({"name": "metrics", "containerPort": 9100}))
                    .expect("port"),
            ]);
        }
        let e = json_of(&created(plan(&s, &[a, Arc::new(b)], None)));
        let subsets = e["subsets"].as_array().expect("subsets");
        assert_eq!(subsets.len(), 2);
        let ips = |s: &Value| -> Vec<String> {
            s["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["ip"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let both = subsets
            .iter()
            .find(|s| s["ports"][0]["name"] == "web")
            .expect("web");
        assert_eq!(ips(both), vec!["10.1.0.1", "10.1.0.2"]);
        let metrics = subsets
            .iter()
            .find(|s| s["ports"][0]["name"] == "metrics")
            .expect("metrics");
        assert_eq!(ips(metrics), vec!["10.1.0.2"]);
    }

    #[test]
    fn an_endpoints_object_that_matches_is_left_alone_and_one_that_differs_is_updated() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}));
        let pods = vec![web("a", "10.1.0.1", true)];
        let mut current = created(plan(&s, &pods, None));
        current.metadata.resource_version = Some("7".into());
        assert_eq!(plan(&s, &pods, Some(&current)), EndpointsWrite::Unchanged);
        let more = vec![web("a", "10.1.0.1", true), web("b", "10.1.0.2", true)];
        match plan(&s, &more, Some(&current)) {
            EndpointsWrite::Update(e) => {
                assert_eq!(e.metadata.resource_version.as_deref(), Some("7"));
                assert_eq!(
                    json_of(&e)["subsets"][0]["addresses"]
                        .as_array()
                        .map(Vec::len),
                    Some(2)
                );
            }
            other => panic!("expected an update, got {other:?}"),
        }
        let mut relabelled = s.clone();
        relabelled.metadata.labels = None;
        assert!(matches!(
            plan(&relabelled, &pods, Some(&current)),
            EndpointsWrite::Update(_)
        ));
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_keeping_ready_ones() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}));
        let pods: Vec<Arc<Pod>> = (0..1200)
            .map(|i| {
                web(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i < 900,
                )
            })
            .collect();
        let e = created(plan(&s, &pods, None));
        let subsets = e.subsets.as_ref().expect("subsets");
        let ready: usize = subsets
            .iter()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        let not_ready: usize = subsets
            .iter()
            .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!((ready, not_ready), (900, 100));
        assert_eq!(
            e.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(OVER_CAPACITY))
                .map(String::as_str),
            Some("truncated")
        );
        assert_eq!(
            plan(&s, &pods, Some(&e)),
            EndpointsWrite::Unchanged,
            "stable once cut"
        );
    }

    #[test]
    fn terminating_and_other_namespaces_pods_are_not_listed() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}));
        let mut leaving = (*web("a", "10.1.0.1", true)).clone();
        leaving.metadata.deletion_timestamp = leaving.metadata.creation_timestamp.clone().or(Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        ));
        let mut elsewhere = (*web("b", "10.1.0.2", true)).clone();
        elsewhere.metadata.namespace = Some("other".into());
        let e = json_of(&created(plan(
            &s,
            &[Arc::new(leaving), Arc::new(elsewhere)],
            None,
        )));
        assert_eq!(e["subsets"], json!([]));
    }
}

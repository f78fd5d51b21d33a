//! The EndpointSlices a Service with a selector should have, and the fewest writes that get
//! them there: upstream's EndpointSlice reconciler (`reconcileByAddressType`,
//! `reconcileByPortMapping`, `finalize`). Endpoints stay in the slice they are in while they are
//! wanted; new ones fill slices being written anyway, then the one unchanged slice they fit in,
//! then new slices of at most `max_per_slice`. Pure: a function of the Service, its pods, the
//! nodes and the slices it has.

use super::pod_endpoint::{
    Family, address_in, find_port, is_headless, is_ready, is_terminating, pod_reference,
    publishes_not_ready, should_be_in_endpoints, should_set_hostname, slice_families,
};
use super::subsets::{HEADLESS_LABEL, LAST_CHANGE_TRIGGER_TIME, selected, trigger_time};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The `managed-by` value of slices this controller makes for Services with selectors.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The writes that bring a Service's slices to what its pods say, in the order to make them:
/// creates first, so a consumer never sees an endpoint gone that is only moving.
#[derive(Debug, Default)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
    /// Nodes that pods are bound to but that are not known yet: those pods are left out until
    /// they are, and the Service is synced again.
    pub unknown_nodes: BTreeSet<String>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// A port list's identity: its ports, sorted, as (name, number, protocol, app protocol).
pub(super) type PortsKey = Vec<(String, i32, String, Option<String>)>;

pub(super) fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// An endpoint's identity: the pod it stands for and its address. Ordered by pod name so new
/// slices fill in a stable order.
type EndpointKey = (String, String, String);

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let target = e.target_ref.as_ref();
    (
        target.and_then(|t| t.name.clone()).unwrap_or_default(),
        target.and_then(|t| t.uid.clone()).unwrap_or_default(),
        e.addresses.first().cloned().unwrap_or_default(),
    )
}

/// The endpoints wanted for one address type and one port list.
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

/// The labels every slice of the Service carries: the Service's own (but the reserved ones),
/// its name, the manager, and the headless label when headless.
pub fn slice_labels(service: &Service, manager: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), manager.into());
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The Service as the controlling owner of its slices, so they go when it goes.
pub fn owner_ref(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Service" && Some(&o.uid) == service.metadata.uid.as_ref())
}

/// A slice not yet created: the server names it from the Service's name.
pub fn new_slice(
    service: &Service,
    manager: &str,
    family: Family,
    ports: Vec<EndpointPort>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service, manager)),
            owner_references: Some(vec![owner_ref(service)]),
            ..Default::default()
        },
        address_type: family.name().into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// The endpoint a pod is in a Service's slices of `family`, as upstream's `podToEndpoint`.
fn endpoint_of(
    service: &Service,
    pod: &Pod,
    family: Family,
    zone: Option<String>,
) -> Option<Endpoint> {
    let address = address_in(pod, family)?;
    let serving = is_ready(pod);
    let terminating = is_terminating(pod);
    // A terminating pod is never ready, unless not-ready addresses are published anyway.
    let ready = publishes_not_ready(service) || (serving && !terminating);
    let spec = pod.spec.as_ref();
    Some(Endpoint {
        addresses: vec![address],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, service)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        zone,
        ..Default::default()
    })
}

/// The ports a pod serves of the Service's, named ports resolved for it.
fn ports_of(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let number = find_port(pod, port).ok()?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// How a node is known to the plan: `None` when it is not (yet) in the cache, else its zone.
pub type NodeZone<'a> = &'a dyn Fn(&str) -> Option<Option<String>>;

/// The writes for one Service with a selector (not an ExternalName). `existing` are the slices
/// labelled for the Service and managed by this controller, not being deleted.
pub fn plan(
    service: &Service,
    pods: &[Arc<Pod>],
    node_zone: NodeZone<'_>,
    existing: &[Arc<EndpointSlice>],
    max_per_slice: usize,
) -> SlicePlan {
    let max_per_slice = max_per_slice.max(1);
    let mut out = SlicePlan::default();
    let families = slice_families(service);
    let pods = selected(service, pods);
    let mut groups: BTreeMap<(Family, PortsKey), Group> = BTreeMap::new();
    for pod in &pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let zone = if node.is_empty() {
            None
        } else {
            match node_zone(node) {
                Some(zone) => zone,
                None => {
                    out.unknown_nodes.insert(node.to_owned());
                    continue;
                }
            }
        };
        let ports = ports_of(service, pod);
        let key = ports_key(&ports);
        for family in &families {
            let Some(endpoint) = endpoint_of(service, pod, *family, zone.clone()) else {
                continue;
            };
            groups
                .entry((*family, key.clone()))
                .or_insert_with(|| Group {
                    ports: ports.clone(),
                    endpoints: BTreeMap::new(),
                })
                .endpoints
                .insert(endpoint_key(&endpoint), endpoint);
        }
    }

    // Slices of another Service of the same name (being collected) or of a family the Service
    // no longer has go; the rest are sorted by family and port list.
    let mut by_group: BTreeMap<(Family, PortsKey), Vec<&EndpointSlice>> = BTreeMap::new();
    let mut existing_by_family: BTreeMap<Family, usize> = BTreeMap::new();
    for slice in existing {
        let family = Family::from_name(&slice.address_type).filter(|f| families.contains(f));
        match family {
            Some(f) if owned_by(slice, service) => {
                *existing_by_family.entry(f).or_default() += 1;
                let key = ports_key(slice.ports.as_deref().unwrap_or_default());
                by_group.entry((f, key)).or_default().push(slice.as_ref());
            }
            _ => out.delete.push(slice.as_ref().clone()),
        }
    }

    let labels = slice_labels(service, CONTROLLER_NAME);
    for family in &families {
        let (mut create, mut delete) = (Vec::new(), Vec::new());
        let keys: BTreeSet<(Family, PortsKey)> = groups
            .keys()
            .chain(by_group.keys())
            .filter(|(f, _)| f == family)
            .cloned()
            .collect();
        for key in keys {
            let slices = by_group.remove(&key).unwrap_or_default();
            match groups.remove(&key) {
                Some(group) => by_port_mapping(
                    service,
                    &labels,
                    *family,
                    group,
                    &slices,
                    max_per_slice,
                    &mut create,
                    &mut out.update,
                    &mut delete,
                ),
                None => delete.extend(slices.into_iter().cloned()),
            }
        }
        // A Service without endpoints keeps one empty slice, so readers can tell "no endpoints"
        // from "not processed yet".
        let existing_here = existing_by_family.get(family).copied().unwrap_or(0);
        if existing_here == delete.len() && create.is_empty() {
            let placeholder = new_slice(service, CONTROLLER_NAME, *family, Vec::new());
            match delete.iter().position(is_placeholder) {
                Some(i) if delete.len() == 1 => {
                    delete.remove(i);
                }
                _ => create.push(placeholder),
            }
        }
        out.create.extend(create);
        out.delete.extend(delete);
    }
    recycle_deletions(service, &mut out);
    out
}

fn is_placeholder(slice: &EndpointSlice) -> bool {
    slice.endpoints.is_empty() && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// One family and port list: keep wanted endpoints where they are, refresh changed ones, drop
/// unwanted ones, then place the new ones.
#[allow(clippy::too_many_arguments)]
fn by_port_mapping(
    service: &Service,
    labels: &BTreeMap<String, String>,
    family: Family,
    mut wanted: Group,
    slices: &[&EndpointSlice],
    max_per_slice: usize,
    create: &mut Vec<EndpointSlice>,
    update: &mut Vec<EndpointSlice>,
    delete: &mut Vec<EndpointSlice>,
) {
    let mut updating: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();
    for slice in slices {
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            if let Some(want) = wanted.endpoints.remove(&endpoint_key(endpoint)) {
                changed |= &want != endpoint;
                kept.push(want);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                delete.push((*slice).clone());
            } else {
                let mut s = (*slice).clone();
                s.endpoints = kept;
                s.metadata.labels = Some(labels.clone());
                updating.push(s);
            }
        } else if labels_changed {
            let mut s = (*slice).clone();
            s.metadata.labels = Some(labels.clone());
            updating.push(s);
        } else {
            unchanged.push(slice);
        }
    }
    // Popped from the back: reversed, they are placed in key order.
    let mut pending: Vec<Endpoint> = std::mem::take(&mut wanted.endpoints)
        .into_values()
        .collect();
    pending.reverse();
    // Fill the slices written anyway, fullest first.
    updating.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for s in &mut updating {
        while s.endpoints.len() < max_per_slice {
            let Some(e) = pending.pop() else { break };
            s.endpoints.push(e);
        }
    }
    while !pending.is_empty() {
        // Fewer than a slice's worth left: the fullest unchanged slice they all fit in.
        let fits = (pending.len() < max_per_slice)
            .then(|| {
                unchanged
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.endpoints.len() + pending.len() <= max_per_slice)
                    .max_by_key(|(_, s)| s.endpoints.len())
                    .map(|(i, _)| i)
            })
            .flatten();
        let mut slice = match fits {
            Some(i) => unchanged.remove(i).clone(),
            None => new_slice(service, CONTROLLER_NAME, family, wanted.ports.clone()),
        };
        while slice.endpoints.len() < max_per_slice {
            let Some(e) = pending.pop() else { break };
            slice.endpoints.push(e);
        }
        if slice.metadata.name.is_some() {
            updating.push(slice);
        } else {
            create.push(slice);
        }
    }
    update.extend(updating);
}

/// Creates and deletes of the same family become updates of the slices that would go, as
/// upstream's `finalize` does: fewer writes, and names are kept.
fn recycle_deletions(service: &Service, plan: &mut SlicePlan) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let Some(last) = plan.create.last() else {
            break;
        };
        let gone = &plan.delete[i];
        if gone.address_type == last.address_type && owned_by(gone, service) {
            let gone = plan.delete.remove(i);
            if let Some(mut slice) = plan.create.pop() {
                slice.metadata = ObjectMeta {
                    labels: slice.metadata.labels,
                    ..gone.metadata
                };
                plan.update.push(slice);
            }
        } else {
            i += 1;
        }
    }
}

/// Stamps the time of the change the writes carry out on every slice written.
pub fn stamp(plan: &mut SlicePlan, service: &Service, pods: &[Arc<Pod>]) {
    let Some(at) = trigger_time(service, &selected(service, pods)) else {
        return;
    };
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        slice
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(LAST_CHANGE_TRIGGER_TIME.into(), at.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::pod_endpoint::tests::{pod, service};
    use serde_json::{Value, json};

    fn web(i: usize, ready: bool) -> Arc<Pod> {
        Arc::new(pod(json!({
            "metadata": {"name": format!("web-{i:05}"), "namespace": "default",
                "uid": format!("uid-{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": format!("node-{i}"), "containers": [{"name": "c",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", i / 250, i % 250),
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        })))
    }

    fn svc(spec: Value) -> Service {
        let mut spec = spec;
        spec["selector"] = json!({"app": "web"});
        service(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": spec}),
        )
    }

    fn http() -> Service {
        svc(json!({"clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"],
            "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}))
    }

    fn every_node(_: &str) -> Option<Option<String>> {
        Some(Some("zone-a".into()))
    }

    /// Carries a plan out as the server would: names new slices, bumps nothing else.
    fn apply(existing: &mut Vec<Arc<EndpointSlice>>, plan: SlicePlan, next_name: &mut usize) {
        let gone: BTreeSet<String> = plan
            .delete
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        let updated: BTreeMap<String, EndpointSlice> = plan
            .update
            .into_iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, s)))
            .collect();
        existing.retain(|s| !gone.contains(s.metadata.name.as_deref().unwrap_or_default()));
        for s in existing.iter_mut() {
            if let Some(u) = updated.get(s.metadata.name.as_deref().unwrap_or_default()) {
                *s = Arc::new(u.clone());
            }
        }
        for mut s in plan.create {
            *next_name += 1;
            s.metadata.name = Some(format!("web-{next_name}"));
            existing.push(Arc::new(s));
        }
    }

    fn endpoint_count(slices: &[Arc<EndpointSlice>]) -> usize {
        slices.iter().map(|s| s.endpoints.len()).sum()
    }

    #[test]
    fn endpoints_carry_conditions_node_zone_and_resolved_ports() {
        let pods = vec![web(1, true), web(2, false)];
        let p = plan(&http(), &pods, &every_node, &[], MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(p.create.len(), 1);
        let slice = serde_json::to_value(&p.create[0]).expect("json");
        assert_eq!(slice["metadata"]["generateName"], "web-");
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
        assert_eq!(
            slice["metadata"]["labels"][MANAGED_BY_LABEL],
            CONTROLLER_NAME
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["ports"],
            json!([{"name": "web", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(
            slice["endpoints"][0],
            json!({"addresses": ["10.1.0.1"], "conditions": {"ready": true, "serving": true,
                "terminating": false}, "nodeName": "node-1", "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-00001", "uid": "uid-1"}})
        );
        assert_eq!(slice["endpoints"][1]["conditions"]["ready"], false);
    }

    #[test]
    fn a_terminating_pod_is_serving_but_not_ready() {
        let mut leaving = (*web(1, true)).clone();
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let p = plan(&http(), &[Arc::new(leaving)], &every_node, &[], 100);
        let conditions = p.create[0].endpoints[0]
            .conditions
            .clone()
            .expect("conditions");
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn slices_hold_at_most_a_hundred_and_a_rollout_rewrites_only_changed_slices() {
        let pods: Vec<Arc<Pod>> = (0..250).map(|i| web(i, true)).collect();
        let mut slices = Vec::new();
        let mut names = 0;
        let p = plan(&http(), &pods, &every_node, &slices, 100);
        assert_eq!(
            p.create
                .iter()
                .map(|s| s.endpoints.len())
                .collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        apply(&mut slices, p, &mut names);
        let p = plan(&http(), &pods, &every_node, &slices, 100);
        assert!(p.is_empty(), "converged: {p:?}");
        // One pod turns unready: one slice is updated in place.
        let mut changed = pods.clone();
        changed[7] = web(7, false);
        let p = plan(&http(), &changed, &every_node, &slices, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        apply(&mut slices, p, &mut names);
        // Ten pods go and ten new ones come: the slices that lost endpoints take the new ones.
        let mut replaced: Vec<Arc<Pod>> = changed[10..].to_vec();
        replaced.extend((1000..1010).map(|i| web(i, true)));
        let p = plan(&http(), &replaced, &every_node, &slices, 100);
        assert!(p.create.is_empty(), "{p:?}");
        apply(&mut slices, p, &mut names);
        assert_eq!(endpoint_count(&slices), 250);
        assert_eq!(slices.len(), 3);
        assert!(slices.iter().all(|s| s.endpoints.len() <= 100));
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_placeholder() {
        let mut slices = Vec::new();
        let mut names = 0;
        let p = plan(&http(), &[], &every_node, &slices, 100);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        assert_eq!(p.create[0].ports, Some(Vec::new()));
        apply(&mut slices, p, &mut names);
        assert!(plan(&http(), &[], &every_node, &slices, 100).is_empty());
        // Endpoints come: the placeholder is reused, not deleted and created.
        let p = plan(&http(), &[web(1, true)], &every_node, &slices, 100);
        assert_eq!(
            (p.create.len(), p.update.len(), p.delete.len()),
            (0, 1, 0),
            "{p:?}"
        );
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-1"));
        apply(&mut slices, p, &mut names);
        // And go again: back to one empty slice.
        let p = plan(&http(), &[], &every_node, &slices, 100);
        assert_eq!(
            (p.create.len(), p.update.len(), p.delete.len()),
            (0, 1, 0),
            "{p:?}"
        );
        apply(&mut slices, p, &mut names);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
    }

    #[test]
    fn slices_of_an_older_service_of_the_same_name_are_deleted() {
        let mut old = new_slice(&http(), CONTROLLER_NAME, Family::IPv4, Vec::new());
        old.metadata.name = Some("web-old".into());
        old.metadata.owner_references.as_mut().expect("owner")[0].uid = "older".into();
        let p = plan(&http(), &[web(1, true)], &every_node, &[Arc::new(old)], 100);
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_them() {
        let nowhere = |_: &str| None;
        let p = plan(&http(), &[web(1, true)], &nowhere, &[], 100);
        assert_eq!(p.unknown_nodes.iter().collect::<Vec<_>>(), vec!["node-1"]);
    }

    #[test]
    fn a_headless_service_is_labelled_and_lists_pods_without_ports() {
        let headless = svc(json!({"clusterIP": "None"}));
        let p = plan(
            &headless,
            &[web(1, true), web(2, true)],
            &every_node,
            &[],
            100,
        );
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].endpoints.len(), 2);
        assert_eq!(
            p.create[0]
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HEADLESS_LABEL))
                .map(String::as_str),
            Some("")
        );
    }
}

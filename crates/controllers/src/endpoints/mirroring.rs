//! EndpointSlices mirrored from Endpoints that users write by hand for a Service without a
//! selector: upstream's EndpointSlice mirroring controller. One slice per address type and port
//! list of the canonical subsets, at most [`MAX_PER_SUBSET`] addresses each, labelled and
//! annotated as the Endpoints are, owned by them. Pure functions.

use super::pod_endpoint::{Family, selector};
use super::slices::{MANAGED_BY_LABEL, PortsKey, SERVICE_NAME_LABEL, SlicePlan, ports_key};
use super::subsets::{LAST_CHANGE_TRIGGER_TIME, repack_subsets};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `managed-by` value of mirrored slices.
pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream's `--mirroring-max-endpoints-per-subset` default.
pub const MAX_PER_SUBSET: usize = 1000;
/// Endpoints labelled so are not mirrored.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Endpoints carrying a leader-election record are locks, not endpoints.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What mirroring found worth a warning on the Endpoints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Addresses that are not IPs.
    pub invalid: usize,
    /// Addresses left out, invalid ones included.
    pub total: usize,
}

/// Whether the Endpoints `endpoints` of Service `service` are mirrored: the Service exists and
/// has no selector, and the Endpoints are not a lock and not marked to skip.
pub fn should_mirror(service: Option<&Service>, endpoints: Option<&Endpoints>) -> bool {
    let (Some(service), Some(endpoints)) = (service, endpoints) else {
        return false;
    };
    let meta = &endpoints.metadata;
    selector(service).is_none()
        && meta
            .labels
            .as_ref()
            .and_then(|l| l.get(SKIP_MIRROR_LABEL))
            .map(String::as_str)
            != Some("true")
        && !meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION))
}

fn slice_meta(endpoints: &Endpoints, name: Option<String>) -> ObjectMeta {
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        endpoints.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    ObjectMeta {
        generate_name: name.is_none().then(|| {
            format!(
                "{}-",
                endpoints.metadata.name.as_deref().unwrap_or_default()
            )
        }),
        name,
        namespace: endpoints.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: Some(mirrored_annotations(endpoints)).filter(|a| !a.is_empty()),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            name: endpoints.metadata.name.clone().unwrap_or_default(),
            uid: endpoints.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    }
}

fn mirrored_annotations(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_CHANGE_TRIGGER_TIME);
    annotations.remove(LAST_APPLIED);
    annotations
}

fn endpoint_of(address: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![address.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    }
}

struct Desired {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<String, Endpoint>,
}

/// The writes that make the mirrored slices match `endpoints`; `existing` are the slices this
/// controller manages for them.
pub fn plan(endpoints: &Endpoints, existing: &[Arc<EndpointSlice>]) -> (SlicePlan, Skipped) {
    let mut skipped = Skipped::default();
    let mut desired: BTreeMap<(Family, PortsKey), Desired> = BTreeMap::new();
    for subset in repack_subsets(endpoints.subsets.as_deref().unwrap_or_default()) {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let key = ports_key(&ports);
        let mut added = 0;
        let listed = [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ];
        for (list, ready) in listed {
            for address in list.iter().flatten() {
                if added >= MAX_PER_SUBSET {
                    skipped.total += 1;
                    continue;
                }
                let Some(family) = Family::of(&address.ip) else {
                    skipped.invalid += 1;
                    skipped.total += 1;
                    continue;
                };
                added += 1;
                desired
                    .entry((family, key.clone()))
                    .or_insert_with(|| Desired {
                        ports: ports.clone(),
                        endpoints: BTreeMap::new(),
                    })
                    .endpoints
                    .entry(address.ip.clone())
                    .or_insert_with(|| endpoint_of(address, ready));
            }
        }
    }

    let mut by_key: BTreeMap<(Option<Family>, PortsKey), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = ports_key(slice.ports.as_deref().unwrap_or_default());
        by_key
            .entry((Family::from_name(&slice.address_type), key))
            .or_default()
            .push(slice.as_ref());
    }

    let mut out = SlicePlan::default();
    let owner_uid = endpoints.metadata.uid.as_deref().unwrap_or_default();
    for ((family, key), want) in desired {
        let slices = by_key.remove(&(Some(family), key)).unwrap_or_default();
        let mut slices = slices.into_iter();
        let first = slices.next();
        out.delete.extend(slices.cloned());
        let wanted: Vec<Endpoint> = want.endpoints.into_values().collect();
        if let Some(first) = first {
            let same_owner = first
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == owner_uid);
            let mut have = first.endpoints.clone();
            let mut sorted_wanted = wanted.clone();
            let by_address = |e: &Endpoint| e.addresses.first().cloned().unwrap_or_default();
            have.sort_by_key(by_address);
            sorted_wanted.sort_by_key(by_address);
            let meta = slice_meta(endpoints, first.metadata.name.clone());
            if same_owner
                && have == sorted_wanted
                && first.metadata.labels == meta.labels
                && first.metadata.annotations.clone().unwrap_or_default()
                    == meta.annotations.clone().unwrap_or_default()
            {
                continue;
            }
            out.update.push(EndpointSlice {
                metadata: ObjectMeta {
                    resource_version: first.metadata.resource_version.clone(),
                    ..meta
                },
                address_type: family.name().into(),
                endpoints: wanted,
                ports: Some(want.ports),
            });
        } else {
            out.create.push(EndpointSlice {
                metadata: slice_meta(endpoints, None),
                address_type: family.name().into(),
                endpoints: wanted,
                ports: Some(want.ports),
            });
        }
    }
    // Port lists and families no longer listed.
    for slices in by_key.into_values() {
        out.delete.extend(slices.into_iter().cloned());
    }
    // A create and a delete of the same family are one update of the slice that would go.
    while let (Some(i), true) = (
        out.delete.iter().position(|d| {
            out.create
                .last()
                .is_some_and(|c| c.address_type == d.address_type)
        }),
        !out.create.is_empty(),
    ) {
        let gone = out.delete.remove(i);
        if let Some(mut slice) = out.create.pop() {
            slice.metadata.generate_name = None;
            slice.metadata.name = gone.metadata.name;
            slice.metadata.resource_version = gone.metadata.resource_version;
            out.update.push(slice);
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::pod_endpoint::tests::service;
    use serde_json::{Value, json};

    fn endpoints(subsets: Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default", "uid": "ep-uid",
                "labels": {"team": "a"}, "annotations": {"note": "x",
                    LAST_CHANGE_TRIGGER_TIME: "2026-01-01T00:00:00Z"}},
            "subsets": subsets
        }))
        .expect("endpoints")
    }

    fn apply(existing: &mut Vec<Arc<EndpointSlice>>, plan: SlicePlan) {
        existing.retain(|s| {
            !plan
                .delete
                .iter()
                .any(|d| d.metadata.name == s.metadata.name)
        });
        for u in plan.update {
            for s in existing.iter_mut() {
                if s.metadata.name == u.metadata.name {
                    *s = Arc::new(u.clone());
                }
            }
        }
        for (i, mut c) in plan.create.into_iter().enumerate() {
            c.metadata.name = Some(format!("db-{}-{i}", existing.len()));
            existing.push(Arc::new(c));
        }
    }

    #[test]
    fn only_selectorless_services_unmarked_endpoints_are_mirrored() {
        let bare =
            service(json!({"metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}}));
        let selecting =
            service(json!({"metadata": {"name": "db"}, "spec": {"selector": {"a": "b"}}}));
        let ep = endpoints(json!([]));
        assert!(should_mirror(Some(&bare), Some(&ep)));
        assert!(!should_mirror(Some(&selecting), Some(&ep)));
        assert!(!should_mirror(None, Some(&ep)));
        let mut skip = ep.clone();
        skip.metadata.labels = Some([(SKIP_MIRROR_LABEL.to_owned(), "true".to_owned())].into());
        assert!(!should_mirror(Some(&bare), Some(&skip)));
        let mut lock = ep.clone();
        lock.metadata.annotations = Some([(LEADER_ANNOTATION.to_owned(), "{}".to_owned())].into());
        assert!(!should_mirror(Some(&bare), Some(&lock)));
    }

    #[test]
    fn each_subset_becomes_a_slice_labelled_and_owned_as_upstream() {
        let ep = endpoints(json!([
            {"addresses": [{"ip": "192.168.0.10", "nodeName": "n1"}],
             "notReadyAddresses": [{"ip": "192.168.0.11"}, {"ip": "not-an-ip"}],
             "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
            {"addresses": [{"ip": "fd00::10"}], "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}
        ]));
        let (p, skipped) = plan(&ep, &[]);
        assert_eq!(
            skipped,
            Skipped {
                invalid: 1,
                total: 1
            }
        );
        assert_eq!(p.create.len(), 2);
        let v4 = serde_json::to_value(
            p.create
                .iter()
                .find(|s| s.address_type == "IPv4")
                .expect("v4"),
        )
        .expect("json");
        assert_eq!(v4["metadata"]["generateName"], "db-");
        assert_eq!(
            v4["metadata"]["labels"],
            json!({"team": "a", SERVICE_NAME_LABEL: "db", MANAGED_BY_LABEL: CONTROLLER_NAME})
        );
        assert_eq!(v4["metadata"]["annotations"], json!({"note": "x"}));
        assert_eq!(v4["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
        assert_eq!(v4["metadata"]["ownerReferences"][0]["uid"], "ep-uid");
        assert_eq!(
            v4["endpoints"],
            json!([{"addresses": ["192.168.0.10"], "conditions": {"ready": true}, "nodeName": "n1"},
                   {"addresses": ["192.168.0.11"], "conditions": {"ready": false}}])
        );
        assert_eq!(
            v4["ports"],
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}])
        );
    }

    #[test]
    fn mirrored_slices_follow_edits_and_go_with_their_subsets() {
        let mut slices = Vec::new();
        let ep = endpoints(json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]));
        let (first, _) = plan(&ep, &slices);
        apply(&mut slices, first);
        assert!(plan(&ep, &slices).0.is_empty(), "converged");
        let moved =
            endpoints(json!([{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]));
        let (p, _) = plan(&moved, &slices);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        apply(&mut slices, p);
        // A new port list: the old slice is reused for it.
        let repointed =
            endpoints(json!([{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 81}]}]));
        let (p, _) = plan(&repointed, &slices);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        apply(&mut slices, p);
        let (p, _) = plan(&endpoints(json!([])), &slices);
        assert_eq!(p.delete.len(), 1);
    }

    #[test]
    fn at_most_a_thousand_addresses_of_a_subset_are_mirrored() {
        let addresses: Vec<Value> = (0..1100)
            .map(|i| json!({"ip": format!("10.0.{}.{}", i / 250, i % 250)}))
            .collect();
        let ep = endpoints(json!([{"addresses": addresses, "ports": [{"port": 80}]}]));
        let (p, skipped) = plan(&ep, &[]);
        assert_eq!(p.create[0].endpoints.len(), 1000);
        assert_eq!(
            skipped,
            Skipped {
                invalid: 0,
                total: 100
            }
        );
    }
}

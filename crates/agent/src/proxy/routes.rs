//! Where this node sends a Service's traffic: for each Service port, its frontends (the cluster
//! IPs and the node port) and the endpoints that cluster-IP and node-port traffic go to, as
//! kube-proxy's `CategorizeEndpoints` picks them: ready endpoints; with none, the serving ones
//! that are terminating; a `Local` traffic policy keeps only this node's. Pure functions of the
//! Services, their EndpointSlices and the node's name.

use crate::service_cache::service_of;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`: three hours.
const DEFAULT_AFFINITY: Duration = Duration::from_secs(10_800);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One Service port as this node serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub namespace: String,
    pub service: String,
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ips: Vec<IpAddr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Where traffic to a cluster IP goes (`internalTrafficPolicy` applied).
    pub internal: Vec<SocketAddr>,
    /// Where traffic to the node port goes (`externalTrafficPolicy` applied).
    pub external: Vec<SocketAddr>,
    /// `sessionAffinity: ClientIP`: how long a client keeps its endpoint.
    pub affinity: Option<Duration>,
}

impl Route {
    /// The name kube-proxy gives a Service port in its logs and metrics: `ns/name:port`.
    pub fn name(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.service, self.port_name)
    }
}

/// An endpoint of one Service port.
#[derive(Clone, Debug)]
struct Candidate {
    address: SocketAddr,
    local: bool,
    ready: bool,
    serving: bool,
    terminating: bool,
}

impl Candidate {
    fn of(e: &Endpoint, port: u16, node: &str) -> Option<Candidate> {
        let ip: IpAddr = e.addresses.first()?.parse().ok()?;
        let c = e.conditions.clone().unwrap_or_default();
        // Unset conditions mean ready and serving, not terminating (the API's documented
        // reading for clients).
        let ready = c.ready.unwrap_or(true);
        Some(Candidate {
            address: SocketAddr::new(ip, port),
            local: e.node_name.as_deref() == Some(node),
            ready,
            serving: c.serving.unwrap_or(ready),
            terminating: c.terminating.unwrap_or(false),
        })
    }
}

/// Ready endpoints, or if there are none the serving terminating ones.
fn usable(candidates: &[&Candidate]) -> Vec<SocketAddr> {
    let ready: Vec<SocketAddr> = candidates
        .iter()
        .filter(|c| c.ready)
        .map(|c| c.address)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates
        .iter()
        .filter(|c| c.serving && c.terminating)
        .map(|c| c.address)
        .collect()
}

fn policy_is_local(policy: Option<&str>) -> bool {
    policy == Some("Local")
}

/// The routes of every Service this node proxies (those with a cluster IP or a node port).
pub fn routes(node: &str, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<Route> {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if let Some(service) = service_of(slice) {
            by_service.entry(service).or_default().push(slice);
        }
    }
    let mut out = Vec::new();
    for service in services {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let cluster_ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let external_reachable = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(DEFAULT_AFFINITY, Duration::from_secs)
        });
        let slices = by_service
            .get(&(namespace.as_str(), name.as_str()))
            .cloned()
            .unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                // SCTP is not proxied here.
                _ => continue,
            };
            let node_port = port
                .node_port
                .filter(|_| external_reachable)
                .and_then(|p| u16::try_from(p).ok());
            if cluster_ips.is_empty() && node_port.is_none() {
                continue;
            }
            let port_name = port.name.clone().unwrap_or_default();
            let protocol_name = port.protocol.as_deref().unwrap_or("TCP");
            let mut seen = BTreeSet::new();
            let candidates: Vec<Candidate> = slices
                .iter()
                .flat_map(|slice| {
                    let target = slice.ports.iter().flatten().find(|p| {
                        p.name.as_deref().unwrap_or_default() == port_name
                            && p.protocol.as_deref().unwrap_or("TCP") == protocol_name
                    });
                    let number = target
                        .and_then(|p| p.port)
                        .and_then(|p| u16::try_from(p).ok());
                    slice
                        .endpoints
                        .iter()
                        .filter_map(move |e| Candidate::of(e, number?, node))
                })
                .filter(|c| seen.insert(c.address))
                .collect();
            let all: Vec<&Candidate> = candidates.iter().collect();
            let local: Vec<&Candidate> = candidates.iter().filter(|c| c.local).collect();
            let pick = |local_only: bool| usable(if local_only { &local } else { &all });
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            out.push(Route {
                namespace: namespace.clone(),
                service: name.clone(),
                port_name,
                protocol,
                cluster_ips: cluster_ips.clone(),
                port: number,
                node_port,
                internal: pick(policy_is_local(spec.internal_traffic_policy.as_deref())),
                external: pick(policy_is_local(spec.external_traffic_policy.as_deref())),
                affinity,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_cache::SERVICE_NAME_LABEL;
    use serde_json::{Value, json};

    fn service(spec: Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
            )
            .expect("service"),
        )
    }

    fn slice(endpoints: Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web-x", "namespace": "default",
                    "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints
            }))
            .expect("slice"),
        )
    }

    fn endpoint(ip: &str, node: &str, ready: bool, terminating: bool) -> Value {
        json!({"addresses": [ip], "nodeName": node,
            "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating}})
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    fn node_port_service(external: &str, internal: &str) -> Arc<Service> {
        service(
            json!({"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "externalTrafficPolicy": external, "internalTrafficPolicy": internal,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}]}),
        )
    }

    #[test]
    fn local_policies_keep_traffic_on_the_node() {
        let slices = [slice(json!([
            endpoint("10.1.1.5", "node-1", true, false),
            endpoint("10.1.2.5", "node-2", true, false)
        ]))];
        let cluster = routes(
            "node-1",
            &[node_port_service("Cluster", "Cluster")],
            &slices,
        );
        assert_eq!(cluster.len(), 1);
        let r = &cluster[0];
        assert_eq!(
            (r.port, r.node_port, r.name()),
            (80, Some(30080), "default/web:http".to_owned())
        );
        assert_eq!(
            r.cluster_ips,
            vec!["10.96.0.10".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            r.external,
            vec![addr("10.1.1.5:8080"), addr("10.1.2.5:8080")]
        );
        let local = routes("node-2", &[node_port_service("Local", "Local")], &slices);
        assert_eq!(local[0].external, vec![addr("10.1.2.5:8080")]);
        assert_eq!(local[0].internal, vec![addr("10.1.2.5:8080")]);
        let elsewhere = routes("node-3", &[node_port_service("Local", "Cluster")], &slices);
        assert!(
            elsewhere[0].external.is_empty(),
            "no local endpoint: node-port traffic is dropped"
        );
        assert_eq!(elsewhere[0].internal.len(), 2);
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let slices = [slice(json!([
            endpoint("10.1.1.5", "node-1", false, true),
            endpoint("10.1.1.6", "node-1", true, false),
            endpoint("10.1.1.7", "node-1", false, false)
        ]))];
        let svc = node_port_service("Cluster", "Cluster");
        assert_eq!(
            routes("node-1", std::slice::from_ref(&svc), &slices)[0].internal,
            vec![addr("10.1.1.6:8080")]
        );
        let draining = [slice(json!([
            endpoint("10.1.1.5", "node-1", false, true),
            endpoint("10.1.1.7", "node-1", false, false)
        ]))];
        assert_eq!(
            routes("node-1", &[svc], &draining)[0].internal,
            vec![addr("10.1.1.5:8080")]
        );
    }

    #[test]
    fn headless_and_external_name_services_are_not_proxied_and_affinity_is_read() {
        let headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let alias = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert!(routes("node-1", &[headless, alias], &[]).is_empty());
        let sticky = service(
            json!({"clusterIP": "10.96.0.11", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        );
        let r = routes("node-1", &[sticky], &[]);
        assert_eq!(r[0].affinity, Some(Duration::from_secs(60)));
        assert_eq!(r[0].node_port, None, "a ClusterIP Service has no node port");
    }

    #[test]
    fn ports_are_matched_by_name_and_protocol() {
        let svc = service(json!({"clusterIP": "10.96.0.12", "ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"}]}));
        let slices = [slice(json!([endpoint("10.1.1.5", "node-1", true, false)]))];
        let r = routes("node-1", &[svc], &slices);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].internal, vec![addr("10.1.1.5:8080")]);
        assert!(r[1].internal.is_empty(), "the slice has no dns port");
        assert_eq!(r[1].protocol, Protocol::Udp);
    }
}

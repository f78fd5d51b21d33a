//! Which pods a Service's endpoints list, with which address and ports: the rules upstream's
//! Endpoints and EndpointSlice controllers share (`endpointsliceutil.ShouldPodBeInEndpoints`,
//! `podutil.FindPort`, `ShouldSetHostname`). Pure functions.

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The Service's pod selector, or none. An empty selector is none too: upstream's storage turns
/// `selector: {}` into no selector, and such a Service gets its endpoints from elsewhere.
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether `labels` carry every key and value of `selector`.
pub fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// `clusterIP: None`.
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// `type: ExternalName`: such a Service is a DNS alias and gets no endpoints.
pub fn is_external_name(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

pub fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    everynode_api::daemonset::is_ready(pod)
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the pod belongs in endpoints at all: it has an address, has not finished, and is not
/// being deleted unless terminating endpoints are wanted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    if status
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or("")
        .is_empty()
    {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

/// IPv4 or IPv6, as Kubernetes names the families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    IPv4,
    IPv6,
}

impl Family {
    pub fn of(ip: &str) -> Option<Family> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some(Family::IPv4),
            IpAddr::V6(_) => Some(Family::IPv6),
        }
    }

    pub fn from_name(name: &str) -> Option<Family> {
        match name {
            "IPv4" => Some(Family::IPv4),
            "IPv6" => Some(Family::IPv6),
            _ => None,
        }
    }

    /// The name Kubernetes gives it (`ipFamilies`, an EndpointSlice's `addressType`).
    pub fn name(self) -> &'static str {
        match self {
            Family::IPv4 => "IPv4",
            Family::IPv6 => "IPv6",
        }
    }
}

/// The pod's IPs, the primary first.
fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<&str> = status.pod_ip.as_deref().into_iter().collect();
    for ip in status.pod_ips.iter().flatten() {
        if !ips.contains(&ip.ip.as_str()) {
            ips.push(&ip.ip);
        }
    }
    ips
}

/// The family the Endpoints object of `service` lists (upstream's `podToEndpointAddressForService`):
/// its first IP family; for an old object without families, its cluster IP's, or, headless, the
/// pod's own.
pub fn endpoints_family(service: &Service, pod: &Pod) -> Option<Family> {
    let spec = service.spec.as_ref();
    if let Some(first) = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        return Family::from_name(first);
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => Family::of(ip),
        _ => pod_ips(pod).first().and_then(|ip| Family::of(ip)),
    }
}

/// The families a Service's EndpointSlices are made for: its `ipFamilies`, else its cluster IP's,
/// else IPv4 (upstream's `getAddressTypesForService`).
pub fn slice_families(service: &Service) -> Vec<Family> {
    let spec = service.spec.as_ref();
    let listed: Vec<Family> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| Family::from_name(f))
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    match spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(Family::of)
    {
        Some(f) => vec![f],
        None => vec![Family::IPv4],
    }
}

/// The pod's address in `family`, if it has one.
pub fn address_in(pod: &Pod, family: Family) -> Option<String> {
    pod_ips(pod)
        .into_iter()
        .find(|ip| Family::of(ip) == Some(family))
        .map(str::to_owned)
}

/// The reference an endpoint carries to its pod.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// A pod's hostname is published for a Service when the pod names the Service as its subdomain.
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.as_deref()).unwrap_or("");
    !hostname.is_empty()
        && spec.and_then(|s| s.subdomain.as_deref()) == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace
}

/// A Service port's target could not be found on a pod. Not retryable: the pod's ports are
/// immutable; the pod simply does not serve that port.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no suitable port for manifest: {uid}")]
pub struct NoSuitablePort {
    uid: String,
}

/// The pod's port number for a Service port: a number as it is, a name looked up among the
/// pod's container ports of the same protocol (upstream's `podutil.FindPort`, which also looks
/// at restartable init containers, the sidecars).
pub fn find_port(pod: &Pod, port: &ServicePort) -> Result<i32, NoSuitablePort> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Ok(port.port),
        Some(IntOrString::Int(n)) => Ok(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref();
            let sidecars = spec
                .and_then(|s| s.init_containers.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
            containers
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
                .ok_or_else(|| NoSuitablePort {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                })
        }
    }
}

/// What of a pod its endpoints show. Two versions of a pod with the same view need no sync
/// (upstream's `podEndpointsChanged`, plus the labels that decide which Services select it).
#[derive(PartialEq)]
pub struct EndpointView<'a> {
    ips: Vec<&'a str>,
    ready: bool,
    terminating: bool,
    finished: bool,
    node: Option<&'a str>,
    hostname: Option<&'a str>,
    subdomain: Option<&'a str>,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> EndpointView<'a> {
    pub fn of(pod: &'a Pod) -> Self {
        let spec = pod.spec.as_ref();
        EndpointView {
            ips: pod_ips(pod),
            ready: is_ready(pod),
            terminating: is_terminating(pod),
            finished: matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ),
            node: spec.and_then(|s| s.node_name.as_deref()),
            hostname: spec.and_then(|s| s.hostname.as_deref()),
            subdomain: spec.and_then(|s| s.subdomain.as_deref()),
            labels: pod.metadata.labels.as_ref(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    pub fn pod(value: Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    pub fn service(value: Value) -> Service {
        serde_json::from_value(value).expect("service")
    }

    fn port(value: Value) -> ServicePort {
        serde_json::from_value(value).expect("port")
    }

    fn web_pod() -> Pod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}],
                "initContainers": [{"name": "side", "restartPolicy": "Always",
                    "ports": [{"name": "metrics", "containerPort": 9100}]}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5"}
        }))
    }

    #[test]
    fn named_ports_resolve_per_pod_and_protocol() {
        let p = web_pod();
        let named = |name: &str, protocol: &str| {
            find_port(
                &p,
                &port(json!({"port": 80, "targetPort": name, "protocol": protocol})),
            )
        };
        assert_eq!(named("http", "TCP"), Ok(8080));
        assert_eq!(named("dns", "UDP"), Ok(53));
        assert_eq!(named("metrics", "TCP"), Ok(9100), "a sidecar's port");
        assert_eq!(
            named("dns", "TCP").map_err(|e| e.to_string()),
            Err("no suitable port for manifest: u1".to_owned())
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 80, "targetPort": 81}))),
            Ok(81)
        );
        assert_eq!(find_port(&p, &port(json!({"port": 80}))), Ok(80));
    }

    #[test]
    fn finished_unaddressed_and_terminating_pods_are_left_out() {
        let mut p = web_pod();
        assert!(should_be_in_endpoints(&p, false));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(!should_be_in_endpoints(&p, false));
        assert!(should_be_in_endpoints(&p, true));
        let mut done = web_pod();
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        assert!(!should_be_in_endpoints(&done, true));
        let mut no_ip = web_pod();
        if let Some(s) = no_ip.status.as_mut() {
            s.pod_ip = None;
        }
        assert!(!should_be_in_endpoints(&no_ip, true));
    }

    #[test]
    fn an_empty_selector_is_no_selector() {
        let with =
            |sel: Value| service(json!({"metadata": {"name": "s"}, "spec": {"selector": sel}}));
        assert!(selector(&with(json!({}))).is_none());
        assert!(selector(&with(Value::Null)).is_none());
        let s = with(json!({"app": "x"}));
        let sel = selector(&s).expect("selector");
        let labels: BTreeMap<String, String> =
            [("app".into(), "x".into()), ("z".into(), "1".into())].into();
        assert!(selects(sel, Some(&labels)));
        assert!(!selects(sel, None));
    }

    #[test]
    fn the_hostname_is_published_for_the_subdomain_service_only() {
        let mut p = web_pod();
        if let Some(s) = p.spec.as_mut() {
            s.hostname = Some("h".into());
            s.subdomain = Some("web".into());
        }
        let web = service(json!({"metadata": {"name": "web", "namespace": "default"}}));
        let other = service(json!({"metadata": {"name": "other", "namespace": "default"}}));
        assert!(should_set_hostname(&p, &web));
        assert!(!should_set_hostname(&p, &other));
    }

    #[test]
    fn families_come_from_the_service_then_its_cluster_ip() {
        let p = web_pod();
        let dual =
            service(json!({"spec": {"ipFamilies": ["IPv6", "IPv4"], "clusterIP": "fd00::1"}}));
        assert_eq!(slice_families(&dual), vec![Family::IPv6, Family::IPv4]);
        assert_eq!(endpoints_family(&dual, &p), Some(Family::IPv6));
        let old = service(json!({"spec": {"clusterIP": "10.96.0.1"}}));
        assert_eq!(slice_families(&old), vec![Family::IPv4]);
        let headless = service(json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(endpoints_family(&headless, &p), Some(Family::IPv4));
        assert_eq!(address_in(&p, Family::IPv4).as_deref(), Some("10.1.0.5"));
        assert_eq!(address_in(&p, Family::IPv6), None);
    }
}

//! What the cluster DNS answers, after the Kubernetes DNS-based service discovery
//! specification as CoreDNS's `kubernetes` plugin implements it (with `pods insecure`, kubeadm's
//! default). Pure: a function of the question, the Services and their EndpointSlices.
//!
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA of the cluster IP; for a headless Service one record per
//!   ready endpoint; a CNAME for an ExternalName.
//! - `<host>.<svc>.<ns>.svc.<zone>`: a headless Service's endpoint, by its hostname or its
//!   address with dashes (`10-1-2-3`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>` (and `<svc>.<ns>.svc.<zone>` for every port): SRV
//!   to the Service, or to each ready endpoint of a headless one, with their addresses as
//!   additional records.
//! - `<a-b-c-d>.<ns>.pod.<zone>`: A of that address.
//! - PTR for cluster IPs and headless endpoints' addresses.
//!
//! A name in the zone that does not exist is NXDOMAIN; one that exists without records of the
//! asked type is NODATA; both carry the zone's SOA. Other names go to the node's resolvers.

use crate::service_cache::service_of;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

/// CoreDNS's `kubernetes` plugin default TTL.
pub const TTL: u32 = 5;

/// The answer to one question.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// Not a cluster name: ask the node's resolvers.
    Outside,
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, without records of this type.
    NoData,
    NxDomain,
}

/// The zone's SOA record, sent with NXDOMAIN and NODATA (CoreDNS's values).
pub fn soa(zone: &str) -> Option<Record> {
    let zone_name = fqdn(zone)?;
    let mname = fqdn(&format!("ns.dns.{zone}"))?;
    let rname = fqdn(&format!("hostmaster.{zone}"))?;
    Some(Record::from_rdata(
        zone_name,
        TTL,
        RData::SOA(SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL)),
    ))
}

fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A ready endpoint of a headless Service: its address, the name it answers to, its ports.
struct Member {
    ip: IpAddr,
    host: String,
    ports: Vec<(String, String, u16)>,
}

fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn members(service: &Service, slices: &[Arc<EndpointSlice>]) -> Vec<Member> {
    let namespace = service.metadata.namespace.as_deref();
    let name = service.metadata.name.as_deref();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in slices {
        if service_of(slice) != Some((namespace.unwrap_or_default(), name.unwrap_or_default())) {
            continue;
        }
        let ports: Vec<(String, String, u16)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    u16::try_from(p.port?).ok()?,
                ))
            })
            .collect();
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            if !ready || !seen.insert(ip) {
                continue;
            }
            let host = endpoint.hostname.clone().unwrap_or_else(|| dashed(&ip));
            out.push(Member {
                ip,
                host,
                ports: ports.clone(),
            });
        }
    }
    out.sort_by_key(|m| m.ip);
    out
}

fn address_record(name: &Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name.clone(), TTL, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(v6))),
    }
}

fn wanted(qtype: RecordType, ip: &IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (RecordType::A | RecordType::ANY, IpAddr::V4(_))
            | (RecordType::AAAA | RecordType::ANY, IpAddr::V6(_))
    )
}

fn found(answers: Vec<Record>, additionals: Vec<Record>) -> Lookup {
    if answers.is_empty() {
        Lookup::NoData
    } else {
        Lookup::Found {
            answers,
            additionals,
        }
    }
}

fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let spec = service.spec.as_ref();
    let mut ips: Vec<IpAddr> = spec
        .and_then(|s| s.cluster_ips.clone())
        .unwrap_or_default()
        .iter()
        .chain(spec.and_then(|s| s.cluster_ip.as_ref()))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn external_name(service: &Service) -> Option<&str> {
    let spec = service.spec.as_ref()?;
    (spec.type_.as_deref() == Some("ExternalName"))
        .then_some(spec.external_name.as_deref())
        .flatten()
}

/// The answer for `name` (lower case, without the final dot) of type `qtype`.
pub fn lookup(
    name: &str,
    qtype: RecordType,
    zone: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Lookup {
    if let Some(reversed) = name.strip_suffix(".in-addr.arpa") {
        return reverse(name, reversed, zone, services, slices);
    }
    let Some(within) = name.strip_suffix(zone).and_then(|rest| {
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_suffix('.')
        }
    }) else {
        return Lookup::Outside;
    };
    let Some(query_name) = fqdn(name) else {
        return Lookup::NxDomain;
    };
    let labels: Vec<&str> = if within.is_empty() {
        Vec::new()
    } else {
        within.split('.').collect()
    };
    match labels.as_slice() {
        [] | ["svc"] | ["pod"] => Lookup::NoData,
        [namespace, "svc"] => {
            if services
                .iter()
                .any(|s| s.metadata.namespace.as_deref() == Some(namespace))
            {
                Lookup::NoData
            } else {
                Lookup::NxDomain
            }
        }
        [pod, _namespace, "pod"] => {
            let ip: Option<IpAddr> = pod
                .replace('-', ".")
                .parse()
                .ok()
                .or_else(|| pod.replace('-', ":").parse().ok());
            match ip {
                Some(ip) if wanted(qtype, &ip) => {
                    found(vec![address_record(&query_name, ip)], Vec::new())
                }
                Some(_) => Lookup::NoData,
                None => Lookup::NxDomain,
            }
        }
        [service, namespace, "svc"] => {
            let Some(svc) = find(services, namespace, service) else {
                return Lookup::NxDomain;
            };
            service_records(&query_name, svc, qtype, zone, slices)
        }
        [port, protocol, service, namespace, "svc"]
            if port.starts_with('_') && protocol.starts_with('_') =>
        {
            let Some(svc) = find(services, namespace, service) else {
                return Lookup::NxDomain;
            };
            if qtype != RecordType::SRV && qtype != RecordType::ANY {
                return Lookup::NoData;
            }
            srv_records(svc, Some((&port[1..], &protocol[1..])), zone, slices)
        }
        [host, service, namespace, "svc"] => {
            let Some(svc) = find(services, namespace, service) else {
                return Lookup::NxDomain;
            };
            let member = members(svc, slices).into_iter().find(|m| m.host == *host);
            match member {
                Some(m) if wanted(qtype, &m.ip) => {
                    found(vec![address_record(&query_name, m.ip)], Vec::new())
                }
                Some(_) => Lookup::NoData,
                None => Lookup::NxDomain,
            }
        }
        _ => Lookup::NxDomain,
    }
}

fn find<'a>(services: &'a [Arc<Service>], namespace: &str, name: &str) -> Option<&'a Service> {
    services
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        })
        .map(|s| s.as_ref())
}

fn service_records(
    query_name: &Name,
    service: &Service,
    qtype: RecordType,
    zone: &str,
    slices: &[Arc<EndpointSlice>],
) -> Lookup {
    if let Some(target) = external_name(service) {
        return match (qtype, fqdn(target)) {
            (RecordType::A | RecordType::AAAA | RecordType::CNAME | RecordType::ANY, Some(t)) => {
                found(
                    vec![Record::from_rdata(
                        query_name.clone(),
                        TTL,
                        RData::CNAME(CNAME(t)),
                    )],
                    Vec::new(),
                )
            }
            _ => Lookup::NoData,
        };
    }
    if qtype == RecordType::SRV {
        return srv_records(service, None, zone, slices);
    }
    let ips: Vec<IpAddr> = if is_headless(service) {
        members(service, slices).into_iter().map(|m| m.ip).collect()
    } else {
        cluster_ips(service)
    };
    let answers = ips
        .into_iter()
        .filter(|ip| wanted(qtype, ip))
        .map(|ip| address_record(query_name, ip))
        .collect();
    found(answers, Vec::new())
}

/// SRV records for the Service's ports (`only` one, by name and protocol, or all).
fn srv_records(
    service: &Service,
    only: Option<(&str, &str)>,
    zone: &str,
    slices: &[Arc<EndpointSlice>],
) -> Lookup {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let base = format!("{name}.{namespace}.svc.{zone}");
    let matches = |port: &str, protocol: &str| {
        only.is_none_or(|(p, proto)| {
            p == port.to_ascii_lowercase() && proto == protocol.to_ascii_lowercase()
        })
    };
    let srv_name = |port: &str, protocol: &str| match only {
        Some(_) => fqdn(&format!(
            "_{}._{}.{base}",
            port.to_ascii_lowercase(),
            protocol.to_ascii_lowercase()
        )),
        None => fqdn(&base),
    };
    let (mut answers, mut additionals) = (Vec::new(), Vec::new());
    if is_headless(service) {
        let members = members(service, slices);
        let weight = u16::try_from(100 / members.len().max(1)).unwrap_or(100);
        for m in &members {
            let Some(target) = fqdn(&format!("{}.{base}", m.host)) else {
                continue;
            };
            let mut listed = false;
            for (port, protocol, number) in &m.ports {
                if port.is_empty() || !matches(port, protocol) {
                    continue;
                }
                let Some(owner) = srv_name(port, protocol) else {
                    continue;
                };
                let srv = SRV::new(0, weight, *number, target.clone());
                answers.push(Record::from_rdata(owner, TTL, RData::SRV(srv)));
                listed = true;
            }
            if listed {
                additionals.push(address_record(&target, m.ip));
            }
        }
    } else {
        let Some(target) = fqdn(&base) else {
            return Lookup::NxDomain;
        };
        for port in service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
        {
            let port_name = port.name.clone().unwrap_or_default();
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            if port_name.is_empty() || !matches(&port_name, &protocol) {
                continue;
            }
            let (Some(owner), Ok(number)) =
                (srv_name(&port_name, &protocol), u16::try_from(port.port))
            else {
                continue;
            };
            answers.push(Record::from_rdata(
                owner,
                TTL,
                RData::SRV(SRV::new(0, 100, number, target.clone())),
            ));
        }
        if !answers.is_empty() {
            additionals.extend(
                cluster_ips(service)
                    .into_iter()
                    .map(|ip| address_record(&target, ip)),
            );
        }
    }
    found(answers, additionals)
}

/// PTR for a cluster IP or a headless Service's endpoint; other addresses are not ours.
fn reverse(
    name: &str,
    reversed: &str,
    zone: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Lookup {
    let octets: Vec<&str> = reversed.split('.').rev().collect();
    let Ok(ip) = octets.join(".").parse::<IpAddr>() else {
        return Lookup::Outside;
    };
    let Some(query_name) = fqdn(name) else {
        return Lookup::Outside;
    };
    let ptr = |target: String| -> Lookup {
        match fqdn(&target) {
            Some(t) => found(
                vec![Record::from_rdata(
                    query_name.clone(),
                    TTL,
                    RData::PTR(PTR(t)),
                )],
                Vec::new(),
            ),
            None => Lookup::NxDomain,
        }
    };
    for service in services {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        if cluster_ips(service).contains(&ip) {
            return ptr(format!("{name}.{namespace}.svc.{zone}"));
        }
        if is_headless(service)
            && let Some(m) = members(service, slices).into_iter().find(|m| m.ip == ip)
        {
            return ptr(format!("{}.{name}.{namespace}.svc.{zone}", m.host));
        }
    }
    Lookup::Outside
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_cache::SERVICE_NAME_LABEL;
    use serde_json::{Value, json};

    const ZONE: &str = "cluster.local";

    fn service(name: &str, spec: Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
            )
            .expect("service"),
        )
    }

    fn slice(service: &str, endpoints: Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-x"), "namespace": "default",
                    "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints
            }))
            .expect("slice"),
        )
    }

    fn world() -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        let services = vec![
            service(
                "web",
                json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
            ),
            service(
                "peers",
                json!({"clusterIP": "None", "clusterIPs": ["None"],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
            ),
            service(
                "search",
                json!({"type": "ExternalName", "externalName": "search.example.com"}),
            ),
        ];
        let slices = vec![slice(
            "peers",
            json!([
                {"addresses": ["10.1.2.5"], "conditions": {"ready": true}},
                {"addresses": ["10.1.1.5"], "conditions": {"ready": true}, "hostname": "first"},
                {"addresses": ["10.1.3.5"], "conditions": {"ready": false}}
            ]),
        )];
        (services, slices)
    }

    fn ask(name: &str, qtype: RecordType) -> Lookup {
        let (services, slices) = world();
        lookup(name, qtype, ZONE, &services, &slices)
    }

    fn data(lookup: &Lookup) -> Vec<String> {
        match lookup {
            Lookup::Found { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn a_service_name_is_its_cluster_ip_or_its_ready_endpoints() {
        assert_eq!(
            data(&ask("web.default.svc.cluster.local", RecordType::A)),
            ["10.96.0.10"]
        );
        assert_eq!(
            data(&ask("peers.default.svc.cluster.local", RecordType::A)),
            ["10.1.1.5", "10.1.2.5"],
            "one record per ready endpoint"
        );
        assert_eq!(
            ask("web.default.svc.cluster.local", RecordType::AAAA),
            Lookup::NoData
        );
        assert_eq!(
            ask("nope.default.svc.cluster.local", RecordType::A),
            Lookup::NxDomain
        );
        assert_eq!(ask("example.com", RecordType::A), Lookup::Outside);
        assert_eq!(
            data(&ask("search.default.svc.cluster.local", RecordType::A)),
            ["search.example.com."]
        );
    }

    #[test]
    fn headless_endpoints_answer_by_hostname_or_dashed_address() {
        assert_eq!(
            data(&ask("first.peers.default.svc.cluster.local", RecordType::A)),
            ["10.1.1.5"]
        );
        assert_eq!(
            data(&ask(
                "10-1-2-5.peers.default.svc.cluster.local",
                RecordType::A
            )),
            ["10.1.2.5"]
        );
        assert_eq!(
            ask("10-1-3-5.peers.default.svc.cluster.local", RecordType::A),
            Lookup::NxDomain,
            "not ready"
        );
    }

    #[test]
    fn srv_records_name_the_port_and_its_targets() {
        let web = ask("_http._tcp.web.default.svc.cluster.local", RecordType::SRV);
        assert_eq!(data(&web), ["0 100 80 web.default.svc.cluster.local."]);
        let Lookup::Found { additionals, .. } = &web else {
            panic!("found")
        };
        assert_eq!(additionals[0].data.to_string(), "10.96.0.10");
        let peers = ask(
            "_http._tcp.peers.default.svc.cluster.local",
            RecordType::SRV,
        );
        assert_eq!(
            data(&peers),
            [
                "0 50 8080 first.peers.default.svc.cluster.local.",
                "0 50 8080 10-1-2-5.peers.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            ask("_dns._udp.web.default.svc.cluster.local", RecordType::SRV),
            Lookup::NoData
        );
    }

    #[test]
    fn pods_by_dashed_address_and_reverse_lookups() {
        assert_eq!(
            data(&ask("10-1-9-9.default.pod.cluster.local", RecordType::A)),
            ["10.1.9.9"]
        );
        assert_eq!(
            data(&ask("10.0.96.10.in-addr.arpa", RecordType::PTR)),
            ["web.default.svc.cluster.local."]
        );
        assert_eq!(
            data(&ask("5.1.1.10.in-addr.arpa", RecordType::PTR)),
            ["first.peers.default.svc.cluster.local."]
        );
        assert_eq!(
            ask("1.0.0.127.in-addr.arpa", RecordType::PTR),
            Lookup::Outside
        );
    }

    #[test]
    fn the_zone_and_namespaces_exist_without_records() {
        assert_eq!(ask("cluster.local", RecordType::A), Lookup::NoData);
        assert_eq!(
            ask("default.svc.cluster.local", RecordType::A),
            Lookup::NoData
        );
        assert_eq!(
            ask("elsewhere.svc.cluster.local", RecordType::A),
            Lookup::NxDomain
        );
        assert_eq!(ask("notcluster.local", RecordType::A), Lookup::Outside);
        assert!(soa(ZONE).is_some());
    }
}

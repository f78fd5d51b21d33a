//! `ValidateService` and `ValidateServiceUpdate`: the checks upstream makes of a Service's spec
//! that do not depend on the cluster (allocation against the ranges is the API server's), in
//! upstream's words.

use crate::field::{BadValue, ErrorList, FieldError, Path};
use crate::names;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeSet;

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

fn port_range_error(field: &Path, value: i32) -> Option<FieldError> {
    (!(1..=65535).contains(&value))
        .then(|| FieldError::invalid(field, value, "must be between 1 and 65535, inclusive"))
}

/// The spec's checks, on create and update.
pub fn validate(svc: &Service) -> ErrorList {
    let mut errs = ErrorList::new();
    let spec_path = Path::root("spec");
    let Some(spec) = svc.spec.as_ref() else {
        errs.push(FieldError::required(&spec_path, ""));
        return errs;
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !TYPES.contains(&kind) {
        errs.push(FieldError::not_supported(
            &spec_path.child("type"),
            kind,
            &TYPES,
        ));
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let ports_path = spec_path.child("ports");
    if ports.is_empty() && kind != "ExternalName" && !headless {
        errs.push(FieldError::required(&ports_path, ""));
    }
    if kind == "ExternalName" {
        let name = spec.external_name.as_deref().unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&spec_path.child("externalName"), ""));
        } else {
            for m in names::dns1123_subdomain(name.trim_end_matches('.')) {
                errs.push(FieldError::invalid(
                    &spec_path.child("externalName"),
                    name,
                    m,
                ));
            }
        }
    }
    let mut names_seen = BTreeSet::new();
    let mut ports_seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(validate_port(
            port,
            ports.len() > 1,
            &ports_path.index(i),
            &mut names_seen,
        ));
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !ports_seen.insert((port.port, protocol.to_owned())) {
            errs.push(FieldError::duplicate(
                &ports_path.index(i),
                BadValue::Raw(format!(
                    "core.ServicePort{{Name:{:?}, Protocol:{:?}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{...}}, NodePort:{}}}",
                    port.name.as_deref().unwrap_or(""),
                    protocol,
                    port.port,
                    port.node_port.unwrap_or(0)
                )),
            ));
        }
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            if !matches!(kind, "NodePort" | "LoadBalancer") {
                errs.push(FieldError::forbidden(
                    &ports_path.index(i).child("nodePort"),
                    format!("may not be used when `type` is '{kind}'"),
                ));
            } else if let Some(e) =
                port_range_error(&ports_path.index(i).child("nodePort"), node_port)
            {
                errs.push(e);
            }
        }
    }
    if headless && matches!(kind, "NodePort" | "LoadBalancer") {
        errs.push(FieldError::invalid(
            &spec_path.child("clusterIPs").index(0),
            "None",
            "may not be set to 'None' for LoadBalancer or NodePort services",
        ));
    }
    if let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        errs.push(FieldError::invalid(
            &spec_path.child("clusterIPs").index(0),
            ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if let Some(policy) = spec.external_traffic_policy.as_deref() {
        if !matches!(kind, "NodePort" | "LoadBalancer") {
            errs.push(FieldError::invalid(
                &spec_path.child("externalTrafficPolicy"),
                policy,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        } else if !matches!(policy, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                &spec_path.child("externalTrafficPolicy"),
                policy,
                &["Cluster", "Local"],
            ));
        }
    }
    if let Some(policy) = spec.internal_traffic_policy.as_deref()
        && !matches!(policy, "Cluster" | "Local")
    {
        errs.push(FieldError::not_supported(
            &spec_path.child("internalTrafficPolicy"),
            policy,
            &["Cluster", "Local"],
        ));
    }
    if let Some(affinity) = spec.session_affinity.as_deref()
        && !matches!(affinity, "None" | "ClientIP")
    {
        errs.push(FieldError::not_supported(
            &spec_path.child("sessionAffinity"),
            affinity,
            &["ClientIP", "None"],
        ));
    }
    if let Some(selector) = spec.selector.as_ref() {
        errs.extend(names::validate_labels(
            &selector.clone().into_iter().collect(),
            &spec_path.child("selector"),
        ));
    }
    errs
}

fn validate_port(
    port: &ServicePort,
    several: bool,
    path: &Path,
    names_seen: &mut BTreeSet<String>,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = port.name.as_deref().unwrap_or("");
    if several && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        for m in names::dns1123_label(name) {
            errs.push(FieldError::invalid(&path.child("name"), name, m));
        }
        if !names_seen.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&path.child("name"), name));
        }
    }
    errs.extend(port_range_error(&path.child("port"), port.port));
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    if !PROTOCOLS.contains(&protocol) {
        errs.push(FieldError::not_supported(
            &path.child("protocol"),
            protocol,
            &PROTOCOLS,
        ));
    }
    match &port.target_port {
        Some(IntOrString::Int(p)) => errs.extend(port_range_error(&path.child("targetPort"), *p)),
        Some(IntOrString::String(s)) => {
            for m in names::iana_svc_name(s) {
                errs.push(FieldError::invalid(&path.child("targetPort"), s, m));
            }
        }
        None => {}
    }
    errs
}

/// What may not change: an allocated cluster IP (unless the Service becomes an ExternalName).
pub fn validate_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs = ErrorList::new();
    let ip = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.clone())
            .unwrap_or_default()
    };
    let new_kind = new.spec.as_ref().and_then(|s| s.type_.as_deref());
    let (new_ip, old_ip) = (ip(new), ip(old));
    if !old_ip.is_empty() && new_ip != old_ip && new_kind != Some("ExternalName") {
        errs.push(FieldError::invalid(
            &Path::root("spec").child("clusterIPs").index(0),
            new_ip.as_str(),
            "may not change once set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).expect("service")
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_plain_service_is_valid() {
        let s =
            svc(json!({"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": "http"}]}));
        assert!(validate(&s).is_empty());
    }

    #[test]
    fn errors_are_worded_as_upstreams() {
        let s = svc(json!({"type": "ClusterIP", "ports": [
            {"name": "a", "port": 0, "nodePort": 30080},
            {"port": 80, "protocol": "ICMP"}]}));
        assert_eq!(
            messages(&validate(&s)),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.ports[1].name: Required value",
                "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
        let s = svc(json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}));
        assert_eq!(
            messages(&validate(&s)),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer or NodePort services"
            ]
        );
        let s = svc(json!({"ports": []}));
        assert_eq!(messages(&validate(&s)), vec!["spec.ports: Required value"]);
        let headless = svc(json!({"clusterIP": "None", "selector": {"app": "x"}}));
        assert!(
            validate(&headless).is_empty(),
            "a headless Service needs no port"
        );
    }

    #[test]
    fn the_cluster_ip_may_not_change() {
        let old = svc(json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}));
        let new = svc(json!({"clusterIP": "10.96.0.6", "ports": [{"port": 80}]}));
        assert_eq!(
            messages(&validate_update(&new, &old)),
            vec!["spec.clusterIPs[0]: Invalid value: \"10.96.0.6\": may not change once set"]
        );
    }
}

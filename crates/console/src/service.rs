//! The Service the wizard made for a DaemonSet, on the DaemonSet's page: its type, cluster IP
//! and ports (with node ports), and its endpoints as its EndpointSlices list them — ready,
//! serving, terminating, per node. It is part of the live status panel, so endpoints follow the
//! pods as they turn ready or go. The Service is edited with the DaemonSet (the edit tab).

use crate::client::ApiClient;
use crate::error::ConsoleResult;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use maud::{Markup, html};
use serde_json::Value;

/// One endpoint as the panel shows it.
struct Row {
    node: String,
    address: String,
    pod: String,
    state: &'static str,
}

fn state_of(e: &Endpoint) -> &'static str {
    let c = e.conditions.clone().unwrap_or_default();
    match (
        c.ready.unwrap_or(true),
        c.serving.unwrap_or(true),
        c.terminating.unwrap_or(false),
    ) {
        (_, _, true) => "terminating",
        (true, _, false) => "ready",
        (false, true, false) => "serving",
        (false, false, false) => "not ready",
    }
}

fn rows(slices: &[EndpointSlice]) -> Vec<Row> {
    let mut rows: Vec<Row> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| Row {
            node: e.node_name.clone().unwrap_or_default(),
            address: e.addresses.join(", "),
            pod: e
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .unwrap_or_default(),
            state: state_of(e),
        })
        .collect();
    rows.sort_by(|a, b| (&a.node, &a.pod).cmp(&(&b.node, &b.pod)));
    rows
}

/// `80:30080/TCP → http` for each port.
fn ports(service: &Service) -> Vec<String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| {
            let node_port = p.node_port.map(|n| format!(":{n}")).unwrap_or_default();
            let target = match &p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                    n.to_string()
                }
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                    s.clone()
                }
                None => p.port.to_string(),
            };
            format!(
                "{}{node_port}/{} → {target}",
                p.port,
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect()
}

/// The panel for the DaemonSet `ds` (JSON); nothing when it has no Service, or when the user
/// may not read Services or EndpointSlices there.
pub async fn panel(client: &ApiClient, ds: &Value) -> ConsoleResult<Markup> {
    let Some(found) = crate::wizard_edit::wizard_service(client, ds).await? else {
        return Ok(html! {});
    };
    let service: Service = serde_json::from_value(found).unwrap_or_default();
    let ns = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let selector = format!("kubernetes.io%2Fservice-name%3D{name}");
    let slices: Vec<EndpointSlice> = match client
        .list(&format!(
            "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector={selector}"
        ))
        .await
    {
        Ok(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        Err(e) if e.status() == axum::http::StatusCode::FORBIDDEN => Vec::new(),
        Err(e) => return Err(e),
    };
    let spec = service.spec.clone().unwrap_or_default();
    let rows = rows(&slices);
    let ready = rows.iter().filter(|r| r.state == "ready").count();
    Ok(html! {
        div.card #service-panel data-service=(name) {
            h2 { "Service " (name) }
            div.counters {
                span { "Type " b data-field="type" { (spec.type_.as_deref().unwrap_or("ClusterIP")) } }
                span { "Cluster IP " code data-field="cluster-ip" { (spec.cluster_ip.as_deref().unwrap_or("")) } }
                span { "Ports " code data-field="ports" { (ports(&service).join(", ")) } }
                @if let Some(policy) = spec.external_traffic_policy.as_deref() {
                    span { "External traffic " b { (policy) } }
                }
                span { "Endpoints " b data-field="ready" { (ready) } " ready of " (rows.len()) }
            }
            @if !rows.is_empty() {
                table #endpoints {
                    thead { tr { th { "Node" } th { "Address" } th { "Pod" } th { "State" } } }
                    tbody {
                        @for r in &rows {
                            tr data-node=(r.node) data-state=(r.state) {
                                td { @if !r.node.is_empty() { a href={"/ui/nodes/" (r.node)} { (r.node) } } }
                                td { code { (r.address) } } td { (r.pod) } td { (r.state) }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_show_their_state_by_node_and_ports_their_node_ports() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-x"}, "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.2.5"], "nodeName": "node-2", "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.1.1.5"], "nodeName": "node-1", "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "web-a"}},
                {"addresses": ["10.1.3.5"], "nodeName": "node-3", "conditions": {"ready": false, "serving": false}}
            ]
        }))
        .expect("slice");
        let shown: Vec<(String, &str)> = rows(&[slice])
            .into_iter()
            .map(|r| (r.node, r.state))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("node-1".to_owned(), "ready"),
                ("node-2".to_owned(), "terminating"),
                ("node-3".to_owned(), "not ready")
            ]
        );
        let service: Service =
            serde_json::from_value(json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}]}}))
            .expect("service");
        assert_eq!(ports(&service), vec!["80:30080/TCP → http"]);
    }
}

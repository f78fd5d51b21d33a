//! Probe and hook actions: exec, httpGet, tcpSocket, grpc and sleep, with kubelet's failure
//! messages (they become `Liveness probe failed: ...` events).

use crate::runtime::Container;
use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;

/// One thing a probe or hook does.
#[derive(Clone, Debug)]
pub enum Action {
    Exec(ExecAction),
    Http(HTTPGetAction),
    Tcp(TCPSocketAction),
    Grpc(GRPCAction),
    Sleep(i64),
}

impl Action {
    pub fn of_probe(p: &Probe) -> Option<Action> {
        if let Some(e) = &p.exec {
            Some(Action::Exec(e.clone()))
        } else if let Some(h) = &p.http_get {
            Some(Action::Http(h.clone()))
        } else if let Some(t) = &p.tcp_socket {
            Some(Action::Tcp(t.clone()))
        } else {
            p.grpc.as_ref().map(|g| Action::Grpc(g.clone()))
        }
    }

    pub fn of_hook(h: &LifecycleHandler) -> Option<Action> {
        if let Some(e) = &h.exec {
            Some(Action::Exec(e.clone()))
        } else if let Some(g) = &h.http_get {
            Some(Action::Http(g.clone()))
        } else if let Some(t) = &h.tcp_socket {
            Some(Action::Tcp(t.clone()))
        } else {
            h.sleep.as_ref().map(|s| Action::Sleep(s.seconds))
        }
    }
}

/// Probe timing with upstream defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<i32, String> {
    match port {
        IntOrString::Int(p) => Ok(*p),
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(p) => Ok(p),
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name}")),
        },
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    // Kubelet does not verify probe certificates, and does not follow redirects to other hosts.
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(timeout)
        .user_agent(concat!(
            "kube-probe/1.33 everynode/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| e.to_string())
}

/// Runs `action` once; `Err` carries the failure message.
pub async fn run(
    action: &Action,
    container: &dyn Container,
    pod_ip: &str,
    ports: &[ContainerPort],
    timeout: Duration,
) -> Result<(), String> {
    match action {
        Action::Exec(e) => {
            let argv = e.command.clone().unwrap_or_default();
            let out = container
                .exec(&argv, timeout)
                .await
                .map_err(|e| e.to_string())?;
            if out.code == 0 {
                Ok(())
            } else if out.output.is_empty() {
                Err(format!("command {argv:?} exited with {}", out.code))
            } else {
                Err(out.output)
            }
        }
        Action::Http(h) => {
            let port = resolve_port(&h.port, ports)?;
            let host = h
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or(pod_ip.to_owned());
            let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let path = if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            };
            let url = format!("{scheme}://{host}:{port}{path}");
            let client = http_client(timeout)?;
            let mut request = client.get(&url);
            for header in h.http_headers.iter().flatten() {
                request = request.header(&header.name, &header.value);
            }
            match request.send().await {
                Err(e) if e.is_timeout() => Err(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )),
                Err(e) => Err(format!("Get \"{url}\": {}", root_cause(&e))),
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    if (200..400).contains(&code) {
                        Ok(())
                    } else {
                        Err(format!("HTTP probe failed with statuscode: {code}"))
                    }
                }
            }
        }
        Action::Tcp(t) => {
            let port = resolve_port(&t.port, ports)?;
            let host = t
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or(pod_ip.to_owned());
            let addr = format!("{host}:{port}");
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", lower_io(&e))),
                Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
            }
        }
        Action::Grpc(g) => grpc_health(pod_ip, g, timeout).await,
        Action::Sleep(seconds) => {
            tokio::time::sleep(Duration::from_secs((*seconds).max(0) as u64)).await;
            Ok(())
        }
    }
}

fn lower_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        return format!("dial tcp: connect: {}", lower_io(io));
    }
    cur.to_string()
}

/// The gRPC health checking protocol (`grpc.health.v1.Health/Check`), over HTTP/2 without TLS
/// as kubelet does. The request and response are tiny protobuf messages encoded by hand:
/// request field 1 (string service); response field 1 (enum status, 1 = SERVING).
async fn grpc_health(pod_ip: &str, g: &GRPCAction, timeout: Duration) -> Result<(), String> {
    let service = g.service.clone().unwrap_or_default();
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        message.push(service.len() as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let url = format!("http://{pod_ip}:{}/grpc.health.v1.Health/Check", g.port);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(&url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!(
                    "timeout: failed to connect service \"{pod_ip}:{}\" within {}s",
                    g.port,
                    timeout.as_secs()
                )
            } else {
                format!(
                    "failed to connect service \"{pod_ip}:{}\": {}",
                    g.port,
                    root_cause(&e)
                )
            }
        })?;
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    // 5-byte frame header, then the message: 0x08 <status varint>.
    let status = bytes.get(5..).and_then(|m| {
        if m.first() == Some(&0x08) {
            m.get(1).copied()
        } else {
            Some(0)
        }
    });
    match status {
        Some(1) => Ok(()),
        Some(s) => Err(format!(
            "service unhealthy (responded with \"{}\")",
            match s {
                2 => "NOT_SERVING",
                3 => "SERVICE_UNKNOWN",
                _ => "UNKNOWN",
            }
        )),
        None => Err("rpc error: no health status in the response".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_defaults_are_upstreams() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ports),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &ports), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &ports),
            Err("couldn't find port: metrics".into())
        );
    }
}

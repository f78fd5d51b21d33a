//! The audit log: one JSON line per request at upstream's `Metadata` level, in the
//! `audit.k8s.io/v1` `Event` form (who, what verb on which object, the answer's code, when it
//! was received and answered), never a request or response body. Written by one task through
//! a bounded queue (a request waits rather than going unrecorded, as upstream's blocking log
//! backend), to a file of mode 0600 rotated by size: the full file is renamed
//! `audit-<time>.log` and the oldest backups beyond the limit are removed.

use crate::authn::UserInfo;
use crate::authz::attributes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use everynode_clock::Clock;
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where and how much (upstream's `--audit-log-path`, `--audit-log-maxsize` in megabytes and
/// `--audit-log-maxbackup`).
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub max_size_bytes: u64,
    pub max_backups: usize,
}

/// The address a connection came from (set per connection by the server).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The middleware's handle on the writer.
#[derive(Clone)]
pub struct AuditLog {
    lines: mpsc::Sender<String>,
    clock: Arc<dyn Clock>,
}

const QUEUE: usize = 10_000;

impl AuditLog {
    /// Starts the writer task.
    pub fn start(config: AuditConfig, clock: Arc<dyn Clock>) -> Self {
        let (lines, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_lines(config, rx, Arc::clone(&clock)));
        AuditLog { lines, clock }
    }
}

/// Microsecond timestamps, as upstream's `MicroTime`.
fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The event for one request (pure, for the tests).
#[allow(clippy::too_many_arguments)]
pub fn event(
    audit_id: &str,
    method: &str,
    uri: &axum::http::Uri,
    user: Option<&UserInfo>,
    source: Option<SocketAddr>,
    user_agent: &str,
    code: u16,
    received: jiff::Timestamp,
    answered: jiff::Timestamp,
) -> Value {
    let a = attributes::of_request(method, uri.path(), uri.query());
    let mut e = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": uri.to_string(),
        "verb": a.verb,
        "user": {},
        "sourceIPs": source.map(|s| vec![s.ip().to_string()]).unwrap_or_default(),
        "userAgent": user_agent,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": micro_time(received),
        "stageTimestamp": micro_time(answered),
        "annotations": {
            "everynode.io/latency": format!("{}us", answered.duration_since(received).as_micros()),
        },
    });
    if let Some(u) = user {
        let mut info = json!({"username": u.name, "groups": u.groups});
        if !u.uid.is_empty() {
            info["uid"] = json!(u.uid);
        }
        e["user"] = info;
    }
    if a.resource_request {
        let mut object = json!({"resource": a.resource, "apiVersion": a.api_version});
        for (key, value) in [
            ("namespace", &a.namespace),
            ("name", &a.name),
            ("apiGroup", &a.api_group),
            ("subresource", &a.subresource),
        ] {
            if !value.is_empty() {
                object[key] = json!(value);
            }
        }
        e["objectRef"] = object;
    }
    e
}

/// Middleware: records each request once its answer is ready (nothing without a log).
pub async fn record(State(log): State<Option<AuditLog>>, req: Request, next: Next) -> Response {
    let Some(log) = log else {
        return next.run(req).await;
    };
    let received = log.clock.now();
    let method = req.method().as_str().to_owned();
    let uri = req.uri().clone();
    let source = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let user_agent = crate::body::user_agent(req.headers()).to_owned();
    let response = next.run(req).await;
    let user = response.extensions().get::<UserInfo>().cloned();
    let e = event(
        &uuid::Uuid::new_v4().to_string(),
        &method,
        &uri,
        user.as_ref(),
        source,
        &user_agent,
        response.status().as_u16(),
        received,
        log.clock.now(),
    );
    let _ = log.lines.send(e.to_string()).await;
    response
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Renames the full log to `audit-<time>.log` beside it and keeps the newest `max_backups`.
fn rotate(config: &AuditConfig, now: jiff::Timestamp) -> std::io::Result<()> {
    let dir = config.path.parent().unwrap_or(Path::new("."));
    let stem = config
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("audit");
    let stamp = now.strftime("%Y-%m-%dT%H-%M-%S%.3f");
    std::fs::rename(&config.path, dir.join(format!("{stem}-{stamp}.log")))?;
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(".log"))
        })
        .collect();
    // The names sort by time.
    backups.sort();
    let excess = backups.len().saturating_sub(config.max_backups);
    for old in backups.into_iter().take(excess) {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

async fn write_lines(config: AuditConfig, mut rx: mpsc::Receiver<String>, clock: Arc<dyn Clock>) {
    let mut file = None;
    let mut size = std::fs::metadata(&config.path).map_or(0, |m| m.len());
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut bytes = Vec::new();
        for line in batch.drain(..) {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        if size > 0 && size + bytes.len() as u64 > config.max_size_bytes {
            file = None;
            match rotate(&config, clock.now()) {
                Ok(()) => size = 0,
                Err(e) => tracing::warn!(error = %e, "cannot rotate the audit log"),
            }
        }
        if file.is_none() {
            match open(&config.path) {
                Ok(f) => file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %config.path.display(), error = %e, "cannot open the audit log");
                    continue;
                }
            }
        }
        if let Some(f) = file.as_mut() {
            match f.write_all(&bytes) {
                Ok(()) => size += bytes.len() as u64,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the audit log");
                    file = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_upstreams_form() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().expect("time");
        let uri: axum::http::Uri = "/apis/apps/v1/namespaces/a/daemonsets/ds1?fieldManager=kubectl"
            .parse()
            .expect("uri");
        let alice = UserInfo::new("alice", "u1", &["system:authenticated"]);
        let e = event(
            "id-1",
            "PATCH",
            &uri,
            Some(&alice),
            Some("127.0.0.1:5555".parse().expect("addr")),
            "kubectl/v1.33.0",
            200,
            t("2026-11-30T12:00:00.000001Z"),
            t("2026-11-30T12:00:00.012001Z"),
        );
        assert_eq!(e["verb"], "patch");
        assert_eq!(
            e["objectRef"],
            json!({"resource": "daemonsets", "namespace": "a", "name": "ds1", "apiGroup": "apps", "apiVersion": "v1"})
        );
        assert_eq!(
            e["user"],
            json!({"username": "alice", "uid": "u1", "groups": ["system:authenticated"]})
        );
        assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]));
        assert_eq!(e["responseStatus"]["code"], 200);
        assert_eq!(e["requestReceivedTimestamp"], "2026-11-30T12:00:00.000001Z");
        assert_eq!(e["annotations"]["everynode.io/latency"], "12000us");
        assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none());
    }

    #[test]
    fn rotation_keeps_the_newest_backups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AuditConfig {
            path: dir.path().join("audit.log"),
            max_size_bytes: 10,
            max_backups: 2,
        };
        for (i, at) in [
            "2026-11-30T12:00:01Z",
            "2026-11-30T12:00:02Z",
            "2026-11-30T12:00:03Z",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(&config.path, format!("line {i}\n")).expect("write");
            rotate(&config, at.parse().expect("time")).expect("rotate");
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "audit-2026-11-30T12-00-02.000.log",
                "audit-2026-11-30T12-00-03.000.log"
            ]
        );
    }
}

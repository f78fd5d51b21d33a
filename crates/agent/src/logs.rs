//! kubelet's `/containerLogs/{namespace}/{pod}/{container}` on the agent's endpoint (`endpoint`):
//! the API server proxies `pods/{name}/log` here.
//! Options as kubelet: follow, previous, tailLines, sinceSeconds, sinceTime, timestamps,
//! limitBytes.

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use everynode_clock::SharedClock;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Clone)]
pub struct LogServer {
    /// State directories of the nodes served (one, or a hollow fleet's).
    pub state_dirs: Arc<Vec<PathBuf>>,
    /// For `sinceSeconds`.
    pub clock: SharedClock,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default)]
    pub follow: Option<String>,
    #[serde(default)]
    pub previous: Option<String>,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    #[serde(default)]
    pub timestamps: Option<String>,
    pub limit_bytes: Option<i64>,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | ""))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

/// One CRI log line: (time, stream, text).
fn parse_line(line: &str) -> Option<(&str, &str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    let (_tag, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((time, stream, text))
}

fn render(line: &str, timestamps: bool, since: Option<jiff::Timestamp>) -> Option<String> {
    let (time, _stream, text) = parse_line(line)?;
    if let Some(since) = since
        && time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since)
    {
        return None;
    }
    Some(if timestamps {
        format!("{time} {text}\n")
    } else {
        format!("{text}\n")
    })
}

/// The numbered log files of a container: (restart number, path), ascending.
fn log_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// The pod's log directory (newest uid when a pod of the same name was replaced).
pub(crate) fn pod_log_dir(
    state_dirs: &[PathBuf],
    ns: &str,
    pod: &str,
) -> Option<(PathBuf, String, PathBuf)> {
    let prefix = format!("{ns}_{pod}_");
    state_dirs
        .iter()
        .flat_map(|s| {
            std::fs::read_dir(s.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .map(move |e| (s.clone(), e))
        })
        .filter_map(|(state, e)| {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name.strip_prefix(&prefix)?.to_owned();
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, e.path(), uid, state))
        })
        .max_by_key(|(m, ..)| *m)
        .map(|(_, path, uid, state)| (path, uid, state))
}

async fn container_logs(
    State(server): State<LogServer>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(options): Query<LogOptions>,
) -> Response {
    let Some((dir, uid, state)) = pod_log_dir(&server.state_dirs, &ns, &pod) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" in namespace \"{ns}\" has no logs on this node"),
        );
    };
    let files = log_files(&dir.join(&container));
    let pick = if flag(&options.previous) {
        files.len().checked_sub(2).and_then(|i| files.get(i))
    } else {
        files.last()
    };
    let Some((_, path)) = pick.cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            if flag(&options.previous) {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            } else {
                format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                )
            },
        );
    };
    let since = options
        .since_seconds
        .map(|s| server.clock.now() - jiff::SignedDuration::from_secs(s))
        .or_else(|| options.since_time.as_deref().and_then(|t| t.parse().ok()));
    let timestamps = flag(&options.timestamps);
    // Rotated parts first (`N.log.2`, `N.log.1`), then the live file.
    let mut text = String::new();
    let mut parts: Vec<PathBuf> = (1..10)
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .filter(|p| p.exists())
        .collect();
    parts.reverse();
    for part in parts.iter().chain(std::iter::once(&path)) {
        text.push_str(&std::fs::read_to_string(part).unwrap_or_default());
    }
    let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut lines: Vec<String> = text
        .lines()
        .filter_map(|l| render(l, timestamps, since))
        .collect();
    if let Some(n) = options.tail_lines.filter(|n| *n >= 0) {
        let n = n as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    let mut head = lines.concat().into_bytes();
    let limit = options.limit_bytes.filter(|l| *l > 0).map(|l| l as usize);
    if let Some(limit) = limit {
        head.truncate(limit);
    }
    if !flag(&options.follow) || limit.is_some_and(|l| head.len() >= l) {
        return ([(header::CONTENT_TYPE, "text/plain")], head).into_response();
    }
    let exit_file = state
        .join("containers")
        .join(&uid)
        .join(&container)
        .join("exit");
    let log_dir = dir.join(&container);
    let current = files.last().map_or(0, |(n, _)| *n);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if tx.send(Bytes::from(head)).await.is_err() {
            return;
        }
        follow(path, offset, exit_file, log_dir, current, timestamps, tx).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The output a container writes from now on, until it exits or restarts (`kubectl attach`):
/// its log followed from the current end, and the container's state directory (where its
/// stdin FIFO is). `None` when the container has no log here.
pub(crate) fn attach(
    state_dirs: &[PathBuf],
    ns: &str,
    pod: &str,
    container: &str,
) -> Option<(tokio::sync::mpsc::Receiver<Bytes>, PathBuf)> {
    let (dir, uid, state) = pod_log_dir(state_dirs, ns, pod)?;
    let log_dir = dir.join(container);
    let (current, path) = log_files(&log_dir).last().cloned()?;
    let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    let container_dir = state.join("containers").join(&uid).join(container);
    let exit_file = container_dir.join("exit");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(follow(path, offset, exit_file, log_dir, current, false, tx));
    Some((rx, container_dir))
}

/// Streams lines appended to `path` from `offset` until the container exits or restarts (a
/// newer log file appears), or the client goes away.
async fn follow(
    path: PathBuf,
    mut offset: u64,
    exit_file: PathBuf,
    log_dir: PathBuf,
    current: u64,
    timestamps: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut pending = String::new();
    loop {
        let len = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        if len < offset {
            // Rotated: the live file starts again.
            offset = 0;
        }
        if len > offset
            && let Ok(mut f) = tokio::fs::File::open(&path).await
            && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
        {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).await.is_ok() {
                offset += buf.len() as u64;
                pending.push_str(&String::from_utf8_lossy(&buf));
                let mut out = String::new();
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    if let Some(r) = render(line.trim_end_matches('\n'), timestamps, None) {
                        out.push_str(&r);
                    }
                }
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
                continue;
            }
        }
        let restarted = log_files(&log_dir)
            .last()
            .is_some_and(|(n, _)| *n > current);
        if exit_file.exists() || restarted || tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log routes, for the agent's endpoint (`endpoint::serve`).
pub fn routes(server: LogServer) -> axum::Router {
    axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(container_logs),
        )
        .with_state(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_render_with_and_without_timestamps() {
        let line = "2026-11-25T10:00:00.5Z stdout F hello world";
        assert_eq!(render(line, false, None).as_deref(), Some("hello world\n"));
        assert_eq!(
            render(line, true, None).as_deref(),
            Some("2026-11-25T10:00:00.5Z hello world\n")
        );
        let later: jiff::Timestamp = "2026-11-25T10:00:01Z".parse().expect("time");
        assert_eq!(render(line, false, Some(later)), None);
        assert_eq!(
            render("2026-11-25T10:00:00Z stderr F ", false, None).as_deref(),
            Some("\n")
        );
    }
}

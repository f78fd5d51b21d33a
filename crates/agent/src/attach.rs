//! kubelet's `/attach/{namespace}/{pod}/{container}` (`kubectl attach`): the running container's
//! output from now on and, when the client asks for it and the container was started with
//! `stdin: true`, the client's input to the container's stdin. The session speaks the same
//! stream protocol as exec (`exec.rs`).
//!
//! The CRI runtime attaches through containerd's streaming server, with a terminal when the
//! container has one. The process runtime has no streaming server: output is the container's
//! log followed from its end, and input goes to the FIFO its shim reads (`runtime/shim.rs`).

use crate::endpoint::Workloads;
use crate::exec::{
    Options, PROTOCOLS, V5, failure, first_terminal_size, framed, normal_close, pump, refuse,
};
use crate::runtime::exec::{ExecSession, ExecSpec, Writer};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use everynode_apimachinery::channel::ERROR as STATUS;
use futures::FutureExt;
use std::path::Path as FsPath;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// `GET /attach/{namespace}/{pod}/{container}` (`POST` as kubelet accepts it).
pub async fn attach(
    State(workloads): State<Workloads>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let options = Options::parse(query.as_deref());
    let Some(key) = workloads.key(&namespace, &pod, &container) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        );
    };
    let mut spec = ExecSpec {
        argv: Vec::new(),
        stdin: options.stdin,
        tty: options.tty,
        size: None,
    };
    let url = match workloads.runtime.attach_url(&key, &spec).await {
        Some(Ok(url)) => Some(url),
        Some(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        None => None,
    };
    let local = match url {
        Some(_) => None,
        None => {
            let Some(found) =
                crate::logs::attach(&workloads.state_dirs, &namespace, &pod, &container)
            else {
                return refuse(
                    StatusCode::NOT_FOUND,
                    format!("container not found ({container:?})"),
                );
            };
            Some(found)
        }
    };
    upgrade
        .protocols(PROTOCOLS)
        .on_upgrade(move |mut socket| async move {
            let v5 = socket.protocol().is_some_and(|p| p == V5);
            let mut early = Vec::new();
            let session = match (url, local) {
                (Some(url), _) => {
                    // The runtime's terminal gets the client's size before the first output.
                    if spec.tty {
                        spec.size = first_terminal_size(&mut socket, &mut early).await;
                    }
                    crate::runtime::remote_exec::connect(&url, &spec).await
                }
                (None, Some((output, container_dir))) => {
                    Ok(local_session(output, &container_dir, options.stdin).await)
                }
                (None, None) => return,
            };
            match session {
                Ok(session) => pump(socket, session, v5, Vec::new(), early).await,
                Err(e) => {
                    let status = serde_json::to_vec(&failure(&e.to_string())).unwrap_or_default();
                    let _ = socket.send(framed(STATUS, &status)).await;
                    let _ = socket.send(normal_close()).await;
                }
            }
        })
}

/// A process-runtime container's attach session: its log from now on as stdout, until it exits
/// or restarts, and its stdin FIFO when asked for and open (a container without `stdin`, or
/// whose `stdinOnce` input has been closed, takes no input).
async fn local_session(
    mut output: mpsc::Receiver<Bytes>,
    container_dir: &FsPath,
    want_stdin: bool,
) -> ExecSession {
    let (mut near, far) = tokio::io::duplex(64 * 1024);
    let (ended_tx, ended_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(chunk) = output.recv().await {
            if near.write_all(&chunk).await.is_err() {
                break;
            }
        }
        drop(near);
        let _ = ended_tx.send(());
    });
    let stdin = if want_stdin {
        open_stdin(&container_dir.join("stdin"))
    } else {
        None
    };
    ExecSession {
        stdin,
        stdout: Some(Box::new(far)),
        stderr: None,
        resize: None,
        // The container ran to its end (or restarted): the session succeeded, as kubelet's
        // attach ends. Dropping this does nothing to the container.
        exit: async move {
            let _ = ended_rx.await;
            0
        }
        .boxed(),
    }
}

/// The container's stdin FIFO for writing, if its shim is reading it.
fn open_stdin(fifo: &FsPath) -> Option<Writer> {
    match tokio::net::unix::pipe::OpenOptions::new().open_sender(fifo) {
        Ok(sender) => Some(Box::new(sender)),
        Err(e) => {
            tracing::debug!(path = %fifo.display(), error = %e, "container takes no input");
            None
        }
    }
}

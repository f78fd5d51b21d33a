//! kubelet's `/exec/{namespace}/{pod}/{container}` on the agent's endpoint (`attach` reuses the
//! session pump for `/attach/...`), over WebSocket with Kubernetes' stream protocol (`v5.channel.k8s.io`, or `v4`): every binary
//! message starts with its stream's number — 0 stdin, 1 stdout, 2 stderr, 3 the final status,
//! 4 terminal resizes — and v5 adds `[255, n]`, the client closing stream `n` (stdin at the end
//! of its input, which `kubectl cp` needs). The API server relays these messages between the
//! client and here unchanged.
//!
//! The final status is a `metav1.Status` on stream 3: `Success`, or `Failure` with reason
//! `NonZeroExitCode` and the code as the `ExitCode` cause, from which kubectl exits with the
//! same code.

use crate::endpoint::Workloads;
use crate::runtime::exec::{ExecSession, ExecSpec, Reader, Resize, Writer};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use everynode_apimachinery::channel::{CLOSE, ERROR as STATUS, RESIZE, STDERR, STDIN, STDOUT};
pub use everynode_apimachinery::channel::{V4, V5};
/// The protocols served, in order of preference.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

/// How long output may still drain after the command ended (a background process can hold a
/// terminal open forever).
const DRAIN: Duration = Duration::from_secs(2);

/// The query kubelet takes: `command` repeated, the streams wanted, `tty`.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    pub fn parse(query: Option<&str>) -> Options {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
        let flag = |name: &str| {
            pairs
                .iter()
                .any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true" | "True" | ""))
        };
        Options {
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }
    }
}

pub(crate) fn refuse(code: StatusCode, message: String) -> Response {
    (code, message).into_response()
}

/// The status that ends a session.
pub fn final_status(code: i32, command: &[String]) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.clamp(0, 255).to_string()}]},
    })
}

pub(crate) fn failure(message: &str) -> serde_json::Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

/// The end of a session: a normal closure (1000), which clients read as the end of every
/// stream; a close without a code (1005) is an error to them.
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

pub(crate) fn framed(stream: u8, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(stream);
    frame.extend_from_slice(data);
    Message::Binary(Bytes::from(frame))
}

/// Copies `reader` to the client as stream `stream`.
async fn copy_out(reader: Option<Reader>, stream: u8, tx: mpsc::Sender<Message>) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(framed(stream, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    width: u16,
    height: u16,
}

/// The (columns, rows) of a resize message.
fn terminal_size(message: &Message) -> Option<(u16, u16)> {
    let Message::Binary(data) = message else {
        return None;
    };
    if data.first() != Some(&RESIZE) {
        return None;
    }
    let size: Size = serde_json::from_slice(&data[1..]).ok()?;
    Some((size.width, size.height))
}

/// Applies one client message; false when the client is done.
async fn take_input(
    message: Message,
    v5: bool,
    stdin: &mut Option<Writer>,
    resize: Option<&Resize>,
) -> bool {
    let data = match message {
        Message::Binary(data) => data,
        Message::Close(_) => return false,
        _ => return true,
    };
    match data.first() {
        Some(&STDIN) => {
            if let Some(writer) = stdin.as_mut()
                && (writer.write_all(&data[1..]).await.is_err() || writer.flush().await.is_err())
            {
                *stdin = None;
            }
        }
        Some(&RESIZE) => {
            if let (Some(resize), Ok(size)) = (resize, serde_json::from_slice::<Size>(&data[1..])) {
                resize(size.width, size.height);
            }
        }
        Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => {
            if let Some(mut writer) = stdin.take() {
                let _ = writer.shutdown().await;
            }
        }
        _ => {}
    }
    true
}

/// Runs a session over `socket` until the command ends (then its status) or the client leaves
/// (then the command is killed).
pub(crate) async fn pump(
    socket: WebSocket,
    session: ExecSession,
    v5: bool,
    command: Vec<String>,
    early: Vec<Message>,
) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    let ExecSession {
        mut stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = session;
    let output = tokio::spawn({
        let tx = tx.clone();
        async move {
            tokio::join!(
                copy_out(stdout, STDOUT, tx.clone()),
                copy_out(stderr, STDERR, tx)
            );
        }
    });
    for message in early {
        take_input(message, v5, &mut stdin, resize.as_ref()).await;
    }
    let input = async {
        while let Some(Ok(message)) = incoming.next().await {
            if !take_input(message, v5, &mut stdin, resize.as_ref()).await {
                break;
            }
        }
    };
    let code = tokio::select! {
        code = exit => code,
        () = input => {
            tracing::debug!(?command, "exec client left before the command ended");
            // The client left: dropping the exit future kills the command.
            output.abort();
            return;
        }
    };
    let _ = tokio::time::timeout(DRAIN, output).await;
    let status = serde_json::to_vec(&final_status(code, &command)).unwrap_or_default();
    let _ = tx.send(framed(STATUS, &status)).await;
    drop(tx);
    let _ = writer.await;
}

/// How long a TTY session waits for the client's terminal size before starting the command, so
/// the command sees the right size from its first line.
const FIRST_SIZE: Duration = Duration::from_secs(1);
/// Messages held while waiting for that size.
const MAX_EARLY: usize = 64;

/// Waits up to `FIRST_SIZE` for the client's terminal size, holding in `early` what the client
/// sends until then (the size message included, at most `MAX_EARLY`), to be given to the
/// session once it starts: input typed before the size arrives reaches the command after it,
/// and a runtime's streaming server, which learns the size only from a resize, gets it first.
pub(crate) async fn first_terminal_size(
    socket: &mut WebSocket,
    early: &mut Vec<Message>,
) -> Option<(u16, u16)> {
    let deadline = tokio::time::Instant::now() + FIRST_SIZE;
    while early.len() < MAX_EARLY
        && let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.recv()).await
    {
        let size = terminal_size(&message);
        early.push(message);
        if size.is_some() {
            return size;
        }
    }
    None
}

/// `GET /exec/{namespace}/{pod}/{container}` (the API server's relay; `POST` is accepted as
/// kubelet accepts it).
pub async fn exec(
    State(workloads): State<Workloads>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let options = Options::parse(query.as_deref());
    if options.command.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container".into(),
        );
    }
    let Some(key) = workloads.key(&namespace, &pod, &container) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        );
    };
    let mut spec = ExecSpec {
        argv: options.command.clone(),
        stdin: options.stdin,
        tty: options.tty,
        size: None,
    };
    upgrade
        .protocols(PROTOCOLS)
        .on_upgrade(move |mut socket| async move {
            let v5 = socket.protocol().is_some_and(|p| p == V5);
            let mut early = Vec::new();
            if spec.tty {
                spec.size = first_terminal_size(&mut socket, &mut early).await;
            }
            let command = spec.argv.clone();
            let started = match workloads.runtime.exec_url(&key, &spec).await {
                Some(Ok(url)) => crate::runtime::remote_exec::connect(&url, &spec).await,
                Some(Err(e)) => Err(e),
                None => workloads.runtime.exec_session(&key, spec).await,
            };
            match started {
                Ok(session) => pump(socket, session, v5, command, early).await,
                Err(e) => {
                    let status = serde_json::to_vec(&failure(&e.to_string())).unwrap_or_default();
                    let _ = socket.send(framed(STATUS, &status)).await;
                    let _ = socket.send(normal_close()).await;
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_as_kubelet_reads_it() {
        let o = Options::parse(Some(
            "command=sh&command=-c&command=exit+3&stdin=true&stdout=true&tty=1&container=c",
        ));
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
    }

    #[test]
    fn a_non_zero_exit_is_the_status_kubectl_reads_its_code_from() {
        let status = final_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(final_status(0, &[])["status"], "Success");
    }
}

//! An exec session run by the container runtime's own streaming server (CRI's `Exec` answers
//! with its URL), seen as an `ExecSession`. The agent connects as kubectl before 1.30 did: an
//! HTTP/1.1 upgrade to SPDY/3.1 with `v4.channel.k8s.io`, one stream per channel (`error`,
//! `stdin`, `stdout`, `stderr`, `resize`), which containerd's streaming server speaks. Unlike
//! its WebSocket form, SPDY ends stdin (the stream's FIN), so a command that waits for the end
//! of its input (`kubectl cp` into a pod's `tar`) ends.

use super::exec::{ExecError, ExecSession, ExecSpec};
use bytes::{Bytes, BytesMut};
use everynode_apimachinery::spdy::{self, Decoder, Encoder, Frame};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{BytesCodec, FramedRead};

use everynode_apimachinery::channel::V4 as PROTOCOL;

/// The exit code a final `Status` carries: 0 for `Success`, the `ExitCode` cause for
/// `NonZeroExitCode`, else 1 with the message to report.
pub fn exit_of(status: &serde_json::Value) -> (i32, Option<String>) {
    if status["status"] == "Success" {
        return (0, None);
    }
    let code = status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str()?.parse().ok());
    match code {
        Some(code) if status["reason"] == "NonZeroExitCode" => (code, None),
        _ => (1, status["message"].as_str().map(str::to_owned)),
    }
}

/// Stops the relay tasks when the session is dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The streams of a session, by SPDY stream id (the client's ids are odd, from 1).
#[derive(Clone, Copy)]
struct Ids {
    error: u32,
    stdin: Option<u32>,
    stdout: u32,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Ids {
    /// The streams the runtime expects for `spec`, as the CRI request asked for them.
    fn of(spec: &ExecSpec) -> (Ids, Vec<(u32, &'static str)>) {
        let mut next = 1;
        let mut take = |kind: &'static str, opened: &mut Vec<(u32, &'static str)>| {
            let id = next;
            next += 2;
            opened.push((id, kind));
            id
        };
        let mut opened = Vec::new();
        let error = take("error", &mut opened);
        let stdin = spec.stdin.then(|| take("stdin", &mut opened));
        let stdout = take("stdout", &mut opened);
        let stderr = (!spec.tty).then(|| take("stderr", &mut opened));
        let resize = spec.tty.then(|| take("resize", &mut opened));
        (
            Ids {
                error,
                stdin,
                stdout,
                stderr,
                resize,
            },
            opened,
        )
    }
}

/// Frames to send: data (with FIN or not) on a stream, or a ping's echo.
enum Outgoing {
    Data(u32, Bytes, bool),
    Pong(u32),
}

/// Upgrades a connection to the streaming server at `url` to SPDY/3.1.
async fn upgrade(url: &str) -> Result<hyper::upgrade::Upgraded, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: only http:// streaming servers are supported"
        ));
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| format!("{url}: no address"))?;
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection.with_upgrades());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, &authority)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", PROTOCOL)
        .body(String::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("the upgrade was refused: {}", response.status()));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| e.to_string())
}

/// Opens the streaming server's session at `url`.
pub async fn connect(url: &str, spec: &ExecSpec) -> Result<ExecSession, ExecError> {
    let unreachable = |e: String| ExecError::Start(format!("the runtime's streaming server: {e}"));
    let upgraded = upgrade(url).await.map_err(unreachable)?;
    let (read_half, mut write_half) = tokio::io::split(TokioIo::new(upgraded));
    let (ids, opened) = Ids::of(spec);
    let mut encoder = Encoder::default();
    for (id, kind) in &opened {
        let frame = encoder.syn_stream(*id, &[("streamType", kind)], false);
        write_half
            .write_all(&frame)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    }
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(16);
    let writer = tokio::spawn(async move {
        while let Some(item) = out_rx.recv().await {
            let frame = match item {
                Outgoing::Data(id, data, fin) => spdy::data(id, &data, fin),
                Outgoing::Pong(id) => spdy::ping(id),
            };
            if write_half.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = write_half.shutdown().await;
    });
    let (stdout_near, stdout_far) = tokio::io::duplex(64 * 1024);
    let (stderr_near, stderr_far) = tokio::io::duplex(64 * 1024);
    let (stdin_near, mut stdin_far) = tokio::io::duplex(64 * 1024);
    let (exit_tx, exit_rx) = oneshot::channel::<(i32, Option<String>)>();
    let input_tx = out_tx.clone();
    let input = tokio::spawn(async move {
        let Some(id) = ids.stdin else { return };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin_far.read(&mut buf).await {
                Ok(n @ 1..) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if input_tx
                        .send(Outgoing::Data(id, data, false))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // The end of the client's input: the stream's FIN ends the command's stdin.
                _ => {
                    let _ = input_tx.send(Outgoing::Data(id, Bytes::new(), true)).await;
                    return;
                }
            }
        }
    });
    let pong_tx = out_tx.clone();
    let reader = tokio::spawn(async move {
        let (mut stdout, mut stderr) = (stdout_near, stderr_near);
        let mut frames = FramedRead::new(read_half, BytesCodec::new());
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut status = Vec::new();
        // The streams the server writes, until each has its FIN.
        let mut open: Vec<u32> = [Some(ids.error), Some(ids.stdout), ids.stderr]
            .into_iter()
            .flatten()
            .collect();
        'connection: while let Some(Ok(chunk)) = frames.next().await {
            buf.extend_from_slice(&chunk);
            loop {
                let frame = match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(_) => break 'connection,
                };
                match frame {
                    Frame::Data {
                        stream_id,
                        data,
                        fin,
                    } => {
                        if stream_id == ids.stdout {
                            let _ = stdout.write_all(&data).await;
                        } else if Some(stream_id) == ids.stderr {
                            let _ = stderr.write_all(&data).await;
                        } else if stream_id == ids.error && status.len() < 64 * 1024 {
                            status.extend_from_slice(&data);
                        }
                        if fin {
                            open.retain(|id| *id != stream_id);
                        }
                    }
                    Frame::RstStream { stream_id, .. } => open.retain(|id| *id != stream_id),
                    Frame::Ping { id } => {
                        let _ = pong_tx.send(Outgoing::Pong(id)).await;
                    }
                    Frame::GoAway => break 'connection,
                    Frame::SynStream { .. } | Frame::Ignored => {}
                }
                if open.is_empty() {
                    break 'connection;
                }
            }
        }
        // v4 writes a Status on the error stream; nothing there means success.
        let exit = if status.is_empty() {
            (0, None)
        } else {
            match serde_json::from_slice(&status) {
                Ok(status) => exit_of(&status),
                Err(_) => (1, Some(String::from_utf8_lossy(&status).into_owned())),
            }
        };
        if let Some(message) = &exit.1 {
            let _ = stderr.write_all(format!("{message}\n").as_bytes()).await;
        }
        drop((stdout, stderr));
        let _ = exit_tx.send(exit);
    });
    let resize_tx = out_tx;
    let resize_id = ids.resize;
    let resize = move |columns: u16, rows: u16| {
        if let Some(id) = resize_id {
            let size = serde_json::json!({"Width": columns, "Height": rows}).to_string();
            let _ = resize_tx.try_send(Outgoing::Data(id, Bytes::from(size), false));
        }
    };
    if let Some((columns, rows)) = spec.size {
        resize(columns, rows);
    }
    let tasks = Tasks(vec![writer, input, reader]);
    Ok(ExecSession {
        stdin: spec
            .stdin
            .then(|| Box::new(stdin_near) as super::exec::Writer),
        stdout: Some(Box::new(stdout_far)),
        stderr: (!spec.tty).then(|| Box::new(stderr_far) as super::exec::Reader),
        resize: spec.tty.then(|| Box::new(resize) as super::exec::Resize),
        exit: Box::pin(async move {
            let _tasks = tasks;
            exit_rx.await.map_or(1, |(code, _)| code)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_final_status_gives_the_exit_code() {
        assert_eq!(exit_of(&json!({"status": "Success"})), (0, None));
        let failed = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_of(&failed), (3, None));
        let broken = json!({"status": "Failure", "message": "exec failed"});
        assert_eq!(exit_of(&broken), (1, Some("exec failed".into())));
    }
}

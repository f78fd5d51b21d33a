//! An exec session run by the container runtime's own streaming server (CRI's `Exec` answers
//! with its URL), seen as an `ExecSession`: the agent connects with WebSocket and
//! `v4.channel.k8s.io`, which containerd's streaming server speaks, and maps the streams back,
//! so the agent's endpoint serves every runtime the same way.
//!
//! v4 has no way to end stdin, so a client's end of input (v5) is not passed on: a command
//! that waits for the end of its input (`kubectl cp` into a pod's `tar`) does not end.

use super::exec::{ExecError, ExecSession, ExecSpec};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PROTOCOL: &str = "v4.channel.k8s.io";

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

/// Opens the streaming server's session at `url`.
pub async fn connect(url: &str, spec: &ExecSpec) -> Result<ExecSession, ExecError> {
    let ws_url = url
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let unreachable = |e: String| ExecError::Start(format!("the runtime's streaming server: {e}"));
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| unreachable(e.to_string()))?;
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| unreachable("no address".into()))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static(PROTOCOL),
    );
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sink, mut incoming) = socket.split();
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(16);
    let (stdout_near, stdout_far) = tokio::io::duplex(64 * 1024);
    let (stderr_near, stderr_far) = tokio::io::duplex(64 * 1024);
    let (stdin_near, mut stdin_far) = tokio::io::duplex(64 * 1024);
    let (exit_tx, exit_rx) = oneshot::channel::<(i32, Option<String>)>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
    });
    let input_frames = frames_tx.clone();
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = stdin_far.read(&mut buf).await {
            if n == 0 {
                return;
            }
            let mut frame = vec![0u8];
            frame.extend_from_slice(&buf[..n]);
            if input_frames.send(frame).await.is_err() {
                return;
            }
        }
    });
    let reader = tokio::spawn(async move {
        let (mut stdout, mut stderr) = (stdout_near, stderr_near);
        let mut exit = (
            1,
            Some("the runtime's stream ended without a status".to_owned()),
        );
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.split_first() {
                Some((1, rest)) => {
                    let _ = stdout.write_all(rest).await;
                }
                Some((2, rest)) => {
                    let _ = stderr.write_all(rest).await;
                }
                Some((3, rest)) => {
                    if let Ok(status) = serde_json::from_slice(rest) {
                        exit = exit_of(&status);
                    }
                }
                _ => {}
            }
        }
        if let Some(message) = &exit.1 {
            let _ = stderr.write_all(format!("{message}\n").as_bytes()).await;
        }
        drop((stdout, stderr));
        let _ = exit_tx.send(exit);
    });
    let resize_frames = frames_tx;
    let resize = move |columns: u16, rows: u16| {
        let mut frame = vec![4u8];
        frame.extend_from_slice(
            serde_json::json!({"Width": columns, "Height": rows})
                .to_string()
                .as_bytes(),
        );
        let _ = resize_frames.try_send(frame);
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

//! exec and attach for SPDY clients (kubectl before 1.30, `v4.channel.k8s.io`): the client opens
//! one stream per channel, named by its `streamType` header, and they are mapped onto the
//! agent's WebSocket, which speaks `v5.channel.k8s.io`:
//!
//! | SPDY stream | agent channel |
//! |---|---|
//! | `stdin` data, then its FIN | 0, then close of 0 (v5's 255) |
//! | `stdout`, `stderr` | 1, 2 |
//! | `error` (the final `Status` as JSON) | 3 |
//! | `resize` (a JSON `TerminalSize` after another) | 4, one message each |
//!
//! When the agent closes, every stream the server writes gets its FIN, which ends the client.

use crate::agent_client::AgentSocket;
use crate::spdy::IncomingStream;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use everynode_apimachinery::channel::{CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};

/// How long the client has to open every stream it asked for (upstream's stream creation
/// timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The streams a request's options call for, as upstream counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Expected {
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let flag = |name: &str| {
            pairs
                .iter()
                .any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true" | "True"))
        };
        Expected {
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }
    }

    /// The error stream, each requested one, and resize with a terminal; with a terminal,
    /// stderr is merged into stdout.
    fn count(self) -> usize {
        1 + usize::from(self.stdin)
            + usize::from(self.stdout)
            + usize::from(self.stderr && !self.tty)
            + usize::from(self.tty)
    }
}

#[derive(Default)]
struct Streams {
    error: Option<IncomingStream>,
    stdin: Option<IncomingStream>,
    stdout: Option<IncomingStream>,
    stderr: Option<IncomingStream>,
    resize: Option<IncomingStream>,
}

/// Waits for the client's streams, then relays until the agent ends the session.
pub async fn relay(
    mut incoming: mpsc::Receiver<IncomingStream>,
    agent: AgentSocket,
    expected: Expected,
) {
    let mut streams = Streams::default();
    let gathered = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        let mut seen = 0;
        while seen < expected.count() {
            let Some(stream) = incoming.recv().await else {
                return false;
            };
            let slot = match stream.header("streamType").unwrap_or_default() {
                "error" => &mut streams.error,
                "stdin" => &mut streams.stdin,
                "stdout" => &mut streams.stdout,
                "stderr" => &mut streams.stderr,
                "resize" => &mut streams.resize,
                _ => {
                    stream.writer.reset().await;
                    continue;
                }
            };
            if slot.is_none() {
                seen += 1;
            }
            *slot = Some(stream);
        }
        true
    })
    .await;
    if gathered != Ok(true) {
        if let Some(error) = &streams.error {
            let _ = error
                .writer
                .write(Bytes::from_static(
                    b"timed out waiting for client to create streams",
                ))
                .await;
            error.writer.finish().await;
        }
        return;
    }
    let writers = [
        streams.stdout.as_ref().map(|s| s.writer.clone()),
        streams.stderr.as_ref().map(|s| s.writer.clone()),
        streams.error.as_ref().map(|s| s.writer.clone()),
    ];
    let (mut to_agent, mut from_agent) = agent.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let stdin = streams.stdin.take().map(|s| {
        let tx = tx.clone();
        tokio::spawn(forward_stdin(s, tx))
    });
    let resize = streams
        .resize
        .take()
        .map(|s| tokio::spawn(forward_resizes(s, tx.clone())));
    drop(tx);
    let upstream = async {
        while let Some(message) = rx.recv().await {
            if to_agent.send(message).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = from_agent.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            let writer = match channel {
                STDOUT => &writers[0],
                STDERR => &writers[1],
                ERROR => &writers[2],
                _ => &None,
            };
            if let Some(writer) = writer
                && writer.write(Bytes::copy_from_slice(payload)).await.is_err()
            {
                break;
            }
        }
    };
    // A client that leaves ends the session (and so the command) too.
    let client_gone = async { while incoming.recv().await.is_some() {} };
    tokio::select! {
        () = downstream => {}
        () = upstream => {}
        () = client_gone => {}
    }
    for writer in writers.iter().flatten() {
        writer.finish().await;
    }
    for task in [stdin, resize].into_iter().flatten() {
        task.abort();
    }
    let _ = to_agent.close().await;
}

async fn forward_stdin(mut stream: IncomingStream, tx: mpsc::Sender<Message>) {
    while let Some(data) = stream.data.recv().await {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(STDIN);
        frame.extend_from_slice(&data);
        if tx.send(Message::Binary(frame.into())).await.is_err() {
            return;
        }
    }
    // The client's FIN: the command's stdin ends (`kubectl cp` needs it to finish its tar).
    let _ = tx
        .send(Message::Binary(Bytes::from_static(&[CLOSE, STDIN])))
        .await;
}

/// Each complete JSON object on the resize stream becomes one resize message.
async fn forward_resizes(mut stream: IncomingStream, tx: mpsc::Sender<Message>) {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(data) = stream.data.recv().await {
        pending.extend_from_slice(&data);
        for size in take_json_values(&mut pending) {
            let mut frame = vec![RESIZE];
            frame.extend_from_slice(&size);
            if tx.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        if pending.len() > 4096 {
            return;
        }
    }
}

/// Splits the complete JSON values off the front of `pending`, leaving a partial one.
fn take_json_values(pending: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let mut iter = serde_json::Deserializer::from_slice(pending).into_iter::<serde_json::Value>();
    let mut consumed = 0;
    loop {
        match iter.next() {
            Some(Ok(value)) => {
                consumed = iter.byte_offset();
                if let Ok(bytes) = serde_json::to_vec(&value) {
                    values.push(bytes);
                }
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Not JSON: drop what was sent, as upstream's decoder would end the stream.
                consumed = pending.len();
                break;
            }
            None => break,
        }
    }
    pending.drain(..consumed);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(text).expect("in the test")
    }

    #[test]
    fn streams_are_counted_as_upstream_counts_them() {
        assert_eq!(
            Expected::from_query(&pairs("stdout=true&stderr=true")).count(),
            3
        );
        assert_eq!(
            Expected::from_query(&pairs("stdin=true&stdout=true&stderr=true&tty=true")).count(),
            4,
            "a terminal merges stderr and adds resize"
        );
        assert_eq!(Expected::from_query(&pairs("stdin=1&stdout=1")).count(), 3);
    }

    #[test]
    fn resizes_are_split_into_whole_objects() {
        let mut pending = br#"{"Width":80,"Height":24}{"Width":100,"#.to_vec();
        let values = take_json_values(&mut pending);
        assert_eq!(values, vec![br#"{"Width":80,"Height":24}"#.to_vec()]);
        assert_eq!(pending, br#"{"Width":100,"#.to_vec());
        pending.extend_from_slice(br#""Height":30}"#);
        assert_eq!(
            take_json_values(&mut pending),
            vec![br#"{"Width":100,"Height":30}"#.to_vec()]
        );
        assert!(pending.is_empty());
    }
}

//! The server side of one SPDY/3.1 connection: the peer opens streams, the server accepts each
//! (SYN_REPLY), and both send data until each side's FIN. Pings are answered. The transport is
//! any byte stream and sink: an upgraded HTTP/1.1 connection, or the binary messages of a
//! WebSocket that tunnels SPDY (kubectl's port-forward since 1.31).
//!
//! There is no flow control, as in kubectl's own SPDY library: a stream whose handler does not
//! read holds up the connection's reading once its buffer is full.

use super::frame::{self, Decoder, Encoder, Frame, Headers};
use bytes::{Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::collections::{HashMap, HashSet};
use std::io;
use tokio::sync::mpsc;

/// Chunks of a stream's data buffered towards its handler.
const STREAM_BUFFER: usize = 64;
/// Streams open at once on one connection; more are refused (RST_STREAM REFUSED_STREAM).
const MAX_STREAMS: usize = 1024;
const REFUSED_STREAM: u32 = 3;
/// The largest DATA frame written (kubectl's library writes what each write hands it).
const MAX_DATA_FRAME: usize = 32 * 1024;

/// A stream the peer opened.
pub struct IncomingStream {
    pub id: u32,
    pub headers: Headers,
    /// The peer's data; ends at its FIN, its RST_STREAM or the connection's end.
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl IncomingStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

/// The connection is gone (or the stream was reset): nothing more can be sent.
#[derive(Debug, thiserror::Error)]
#[error("the SPDY connection is closed")]
pub struct Closed;

/// Sends on one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Outgoing>,
}

pub(crate) enum Outgoing {
    Reply(u32),
    Data(u32, Bytes, bool),
    Reset(u32, u32),
    Ping(u32),
    GoAway(u32),
}

impl StreamWriter {
    #[cfg(test)]
    pub(crate) fn for_tests(id: u32, out: mpsc::Sender<Outgoing>) -> Self {
        StreamWriter { id, out }
    }

    pub async fn write(&self, mut data: Bytes) -> Result<(), Closed> {
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(MAX_DATA_FRAME));
            self.out
                .send(Outgoing::Data(self.id, piece, false))
                .await
                .map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Ends this side of the stream (FIN).
    pub async fn finish(&self) {
        let _ = self
            .out
            .send(Outgoing::Data(self.id, Bytes::new(), true))
            .await;
    }

    /// Refuses or abandons the stream (RST_STREAM).
    pub async fn reset(&self) {
        let _ = self.out.send(Outgoing::Reset(self.id, frame::CANCEL)).await;
    }

    /// Ends the connection after what is queued (GOAWAY, then the transport closes).
    pub async fn close_connection(&self) {
        let _ = self.out.send(Outgoing::GoAway(self.id)).await;
    }
}

/// Serves one connection: returns the streams the peer opens, in order. The connection ends
/// when the peer closes it or sends GOAWAY, and the writer when every `StreamWriter` is gone.
pub fn serve<I, O>(input: I, output: O) -> mpsc::Receiver<IncomingStream>
where
    I: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    O: Sink<Bytes, Error = io::Error> + Send + Unpin + 'static,
{
    let (accepted_tx, accepted_rx) = mpsc::channel(16);
    let (out_tx, out_rx) = mpsc::channel(256);
    tokio::spawn(write_frames(out_rx, output));
    tokio::spawn(read_frames(input, out_tx, accepted_tx));
    accepted_rx
}

async fn read_frames<I>(
    mut input: I,
    out: mpsc::Sender<Outgoing>,
    accepted: mpsc::Sender<IncomingStream>,
) where
    I: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut last_id = 0u32;
    'connection: while let Some(Ok(chunk)) = input.next().await {
        buf.extend_from_slice(&chunk);
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY connection ends");
                    let _ = out.send(Outgoing::GoAway(last_id)).await;
                    break 'connection;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    headers,
                    fin,
                } => {
                    // The client's streams have odd, rising ids.
                    if stream_id % 2 == 0 || stream_id <= last_id {
                        let _ = out
                            .send(Outgoing::Reset(stream_id, frame::PROTOCOL_ERROR))
                            .await;
                        continue;
                    }
                    last_id = stream_id;
                    if open.len() >= MAX_STREAMS {
                        let _ = out.send(Outgoing::Reset(stream_id, REFUSED_STREAM)).await;
                        continue;
                    }
                    let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
                    if !fin {
                        open.insert(stream_id, data_tx);
                    }
                    if out.send(Outgoing::Reply(stream_id)).await.is_err() {
                        break 'connection;
                    }
                    let stream = IncomingStream {
                        id: stream_id,
                        headers,
                        data: data_rx,
                        writer: StreamWriter {
                            id: stream_id,
                            out: out.clone(),
                        },
                    };
                    if accepted.send(stream).await.is_err() {
                        let _ = out.send(Outgoing::Reset(stream_id, REFUSED_STREAM)).await;
                    }
                }
                Frame::Data {
                    stream_id,
                    data,
                    fin,
                } => {
                    if let Some(tx) = open.get(&stream_id)
                        && (!data.is_empty() && tx.send(data).await.is_err() || fin)
                    {
                        open.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    open.remove(&stream_id);
                }
                Frame::Ping { id } => {
                    let _ = out.send(Outgoing::Ping(id)).await;
                }
                Frame::GoAway => break 'connection,
                Frame::Ignored => {}
            }
        }
    }
}

async fn write_frames<O>(mut queue: mpsc::Receiver<Outgoing>, mut output: O)
where
    O: Sink<Bytes, Error = io::Error> + Unpin,
{
    let mut encoder = Encoder::default();
    // Streams this side has ended: later writes on them are dropped, never sent.
    let mut ended: HashSet<u32> = HashSet::new();
    while let Some(item) = queue.recv().await {
        let bytes = match item {
            Outgoing::Reply(id) => encoder.syn_reply(id, false),
            Outgoing::Data(id, data, fin) => {
                if ended.contains(&id) {
                    continue;
                }
                if fin {
                    ended.insert(id);
                }
                frame::data(id, &data, fin)
            }
            Outgoing::Reset(id, status) => {
                if !ended.insert(id) {
                    continue;
                }
                frame::rst_stream(id, status)
            }
            Outgoing::Ping(id) => frame::ping(id),
            Outgoing::GoAway(last) => {
                let _ = output.send(frame::go_away(last)).await;
                break;
            }
        };
        if output.send(bytes).await.is_err() {
            break;
        }
    }
    let _ = output.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc as fmpsc;

    fn spawn_session() -> (
        fmpsc::UnboundedSender<io::Result<Bytes>>,
        fmpsc::UnboundedReceiver<Bytes>,
        mpsc::Receiver<IncomingStream>,
    ) {
        let (in_tx, in_rx) = fmpsc::unbounded();
        let (out_tx, out_rx) = fmpsc::unbounded::<Bytes>();
        let sink = out_tx.sink_map_err(io::Error::other);
        (in_tx, out_rx, serve(in_rx, sink))
    }

    fn frames(bytes: &[Bytes]) -> Vec<Vec<u8>> {
        bytes.iter().map(|b| b.to_vec()).collect()
    }

    #[tokio::test]
    async fn pings_are_echoed() {
        let (input, mut output, _streams) = spawn_session();
        input
            .unbounded_send(Ok(frame::ping(1)))
            .expect("in the test");
        let echoed = output.next().await.expect("in the test");
        assert_eq!(frames(&[echoed]), frames(&[frame::ping(1)]));
    }

    #[tokio::test]
    async fn data_after_a_fin_is_not_sent() {
        let (tx, rx) = mpsc::channel(8);
        let writer = StreamWriter { id: 1, out: tx };
        let (out_tx, out_rx) = fmpsc::unbounded::<Bytes>();
        tokio::spawn(write_frames(rx, out_tx.sink_map_err(io::Error::other)));
        writer
            .write(Bytes::from_static(b"a"))
            .await
            .expect("in the test");
        writer.finish().await;
        writer
            .write(Bytes::from_static(b"b"))
            .await
            .expect("in the test");
        drop(writer);
        let sent: Vec<Bytes> = out_rx.collect().await;
        assert_eq!(
            frames(&sent),
            frames(&[frame::data(1, b"a", false), frame::data(1, b"", true)])
        );
    }
}

//! SPDY/3.1 frames: reading them off a byte buffer and writing the few a server sends.
//!
//! Written here because no maintained Rust crate speaks SPDY, which kubectl still uses for
//! `port-forward` (tunnelled in a WebSocket since 1.31) and, before 1.30, for exec, attach and
//! cp. The layout follows the SPDY/3 draft (draft-mbelshe-httpbis-spdy-00): an 8-byte header,
//! control frames marked by the high bit, header blocks compressed by one zlib stream per
//! direction with the protocol's preset dictionary.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The preset dictionary of SPDY/3 header compression (the draft's section 2.6.10.1).
const DICTIONARY: &[u8] = include_bytes!("spdy_dictionary.bin");

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;

/// A header block may not decompress to more than this: a peer cannot make the server allocate
/// without bound from a small compressed frame.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// RST_STREAM status codes the server sends.
pub const PROTOCOL_ERROR: u32 = 1;
pub const CANCEL: u32 = 5;

/// Header names (lowercase, as SPDY requires) and values (several joined by NUL, as sent).
pub type Headers = Vec<(String, String)>;

/// A frame as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        headers: Headers,
        fin: bool,
    },
    Data {
        stream_id: u32,
        data: Bytes,
        fin: bool,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// SYN_REPLY, HEADERS, SETTINGS and WINDOW_UPDATE: nothing a server of kubectl's streams
    /// acts on (kubectl's SPDY library has no flow control either).
    Ignored,
}

/// Why the peer's bytes are not SPDY/3.1. Not retryable: the connection is done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("unknown SPDY control frame type {0}")]
    UnknownType(u16),
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    #[error("SPDY header block: {0}")]
    HeaderBlock(String),
}

/// Looks up a header (names are lowercase on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or_default())
}

/// Reads frames; holds the peer's header decompression stream.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            inflate: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// Takes one whole frame off the front of `buf`; `None` until one has arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + length {
            buf.reserve(8 + length - buf.len());
            return Ok(None);
        }
        let first = buf.get_u32();
        let flags = buf.get_u8();
        buf.advance(3);
        let mut payload = buf.split_to(length).freeze();
        let fin = flags & FLAG_FIN != 0;
        if first & 0x8000_0000 == 0 {
            let stream_id = first & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(FrameError::Malformed("DATA"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                data: payload,
                fin,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let frame = match kind {
            SYN_STREAM => {
                if payload.len() < 10 {
                    return Err(FrameError::Malformed("SYN_STREAM"));
                }
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                payload.advance(6); // associated stream, priority, slot
                let headers = self.headers(&payload)?;
                if stream_id == 0 {
                    return Err(FrameError::Malformed("SYN_STREAM"));
                }
                Frame::SynStream {
                    stream_id,
                    headers,
                    fin,
                }
            }
            SYN_REPLY | HEADERS => {
                if payload.len() < 4 {
                    return Err(FrameError::Malformed("HEADERS"));
                }
                payload.advance(4);
                // Read to keep the shared decompression stream in step.
                self.headers(&payload)?;
                Frame::Ignored
            }
            RST_STREAM => {
                if payload.len() != 8 {
                    return Err(FrameError::Malformed("RST_STREAM"));
                }
                Frame::RstStream {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    status: payload.get_u32(),
                }
            }
            PING => {
                if payload.len() != 4 {
                    return Err(FrameError::Malformed("PING"));
                }
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            GOAWAY => Frame::GoAway,
            SETTINGS | WINDOW_UPDATE => Frame::Ignored,
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(Some(frame))
    }

    /// Decompresses and parses one header block.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let bad = |why: &str| FrameError::HeaderBlock(why.to_owned());
        let mut block = Vec::with_capacity(256);
        let mut input = compressed;
        loop {
            if block.len() == block.capacity() {
                if block.len() >= MAX_HEADER_BLOCK {
                    return Err(bad("larger than 64 KiB"));
                }
                block.reserve(block.len().max(256));
            }
            let (in_before, out_before) = (self.inflate.total_in(), block.len());
            let result = self
                .inflate
                .decompress_vec(input, &mut block, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - in_before) as usize;
            input = &input[used..];
            match result {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) => break,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| bad(&e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(bad(&e.to_string())),
            }
            let room_left = block.len() < block.capacity();
            if input.is_empty() && room_left {
                break;
            }
            if used == 0 && block.len() == out_before && room_left {
                return Err(bad("truncated compressed data"));
            }
        }
        parse_block(&block).ok_or_else(|| bad("truncated"))
    }
}

fn parse_block(mut block: &[u8]) -> Option<Headers> {
    let take = |block: &mut &[u8]| -> Option<String> {
        if block.len() < 4 {
            return None;
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return None;
        }
        let text = String::from_utf8_lossy(&block[..len]).into_owned();
        block.advance(len);
        Some(text)
    };
    if block.len() < 4 {
        return None;
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut block)?.to_ascii_lowercase();
        let value = take(&mut block)?;
        headers.push((name, value));
    }
    Some(headers)
}

/// Writes frames; holds the server's header compression stream.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh stream takes a dictionary: this cannot fail.
        let _ = deflate.set_dictionary(DICTIONARY);
        Encoder { deflate }
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + payload.len());
    out.put_u32(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind));
    out.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// An uncompressed header block: the count, then each name and value with its length.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    block.put_u32(headers.len() as u32);
    for (name, value) in headers {
        block.put_u32(name.len() as u32);
        block.put_slice(name.to_ascii_lowercase().as_bytes());
        block.put_u32(value.len() as u32);
        block.put_slice(value.as_bytes());
    }
    block
}

impl Encoder {
    /// SYN_STREAM opening a stream with `headers` (a client's frame).
    pub fn syn_stream(&mut self, stream_id: u32, headers: &[(&str, &str)], fin: bool) -> Bytes {
        let block = self.compress(&header_block(headers));
        let mut payload = Vec::with_capacity(10 + block.len());
        payload.extend_from_slice(&stream_id.to_be_bytes());
        // No associated stream, priority 0, slot 0.
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&block);
        control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &payload)
    }

    /// SYN_REPLY accepting a stream, with no headers (what kubectl's peers send).
    pub fn syn_reply(&mut self, stream_id: u32, fin: bool) -> Bytes {
        let block = self.compress(&0u32.to_be_bytes());
        let mut payload = Vec::with_capacity(4 + block.len());
        payload.extend_from_slice(&stream_id.to_be_bytes());
        payload.extend_from_slice(&block);
        control(SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &payload)
    }

    fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = block;
        loop {
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(64);
        }
    }
}

/// A DATA frame (at most 16 MiB − 1 bytes of `data`: callers send smaller pieces).
pub fn data(stream_id: u32, data: &[u8], fin: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + data.len());
    out.put_u32(stream_id & 0x7fff_ffff);
    out.put_u32((u32::from(if fin { FLAG_FIN } else { 0 }) << 24) | data.len() as u32);
    out.put_slice(data);
    out.freeze()
}

pub fn rst_stream(stream_id: u32, status: u32) -> Bytes {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&stream_id.to_be_bytes());
    payload[4..].copy_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &payload)
}

pub fn ping(id: u32) -> Bytes {
    control(PING, 0, &id.to_be_bytes())
}

/// GOAWAY with status OK.
pub fn go_away(last_good_stream_id: u32) -> Bytes {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&last_good_stream_id.to_be_bytes());
    control(GOAWAY, 0, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's encoder, for the tests: SYN_STREAM with headers through its own zlib stream.
    fn syn_stream(deflate: &mut Compress, stream_id: u32, headers: &[(&str, &str)]) -> Bytes {
        let mut block = Vec::new();
        block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (n, v) in headers {
            block.extend_from_slice(&(n.len() as u32).to_be_bytes());
            block.extend_from_slice(n.as_bytes());
            block.extend_from_slice(&(v.len() as u32).to_be_bytes());
            block.extend_from_slice(v.as_bytes());
        }
        let mut compressed = Vec::with_capacity(block.len() + 128);
        deflate
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)
            .expect("in the test");
        let mut payload = Vec::new();
        payload.extend_from_slice(&stream_id.to_be_bytes());
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&compressed);
        control(SYN_STREAM, 0, &payload)
    }

    fn client_deflate() -> Compress {
        let mut d = Compress::new(Compression::best(), true);
        d.set_dictionary(DICTIONARY).expect("in the test");
        d
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        // Its Adler-32 is the dictionary id SPDY/3 peers put in their zlib headers.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in DICTIONARY {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((DICTIONARY.len(), (b << 16) | a), (1423, 0xe3c6_a7c2));
    }

    #[test]
    fn streams_decode_across_frames_sharing_one_zlib_stream() {
        let mut deflate = client_deflate();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&syn_stream(
            &mut deflate,
            1,
            &[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ],
        ));
        buf.extend_from_slice(&syn_stream(
            &mut deflate,
            3,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
        ));
        buf.extend_from_slice(&data(3, b"GET / HTTP/1.0\r\n\r\n", true));
        let mut decoder = Decoder::default();
        let Some(Frame::SynStream {
            stream_id: 1,
            headers,
            ..
        }) = decoder.decode(&mut buf).expect("in the test")
        else {
            panic!("the error stream")
        };
        assert_eq!(header(&headers, "streamType"), Some("error"));
        let Some(Frame::SynStream {
            stream_id: 3,
            headers,
            ..
        }) = decoder.decode(&mut buf).expect("in the test")
        else {
            panic!("the data stream")
        };
        assert_eq!(header(&headers, "port"), Some("8080"));
        assert_eq!(
            decoder.decode(&mut buf).expect("in the test"),
            Some(Frame::Data {
                stream_id: 3,
                data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
                fin: true
            })
        );
        assert_eq!(decoder.decode(&mut buf).expect("in the test"), None);
    }

    #[test]
    fn an_encoders_streams_decode() {
        let mut encoder = Encoder::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encoder.syn_stream(1, &[("streamType", "error")], false));
        buf.extend_from_slice(&encoder.syn_stream(3, &[("streamType", "stdout")], true));
        let mut decoder = Decoder::default();
        let Some(Frame::SynStream { headers, fin, .. }) =
            decoder.decode(&mut buf).expect("in the test")
        else {
            panic!("a stream")
        };
        assert_eq!(
            (header(&headers, "streamtype"), fin),
            (Some("error"), false)
        );
        let Some(Frame::SynStream {
            stream_id: 3,
            fin: true,
            ..
        }) = decoder.decode(&mut buf).expect("in the test")
        else {
            panic!("the second stream")
        };
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let whole = ping(7);
        let mut buf = BytesMut::from(&whole[..5]);
        let mut decoder = Decoder::default();
        assert_eq!(decoder.decode(&mut buf).expect("in the test"), None);
        buf.extend_from_slice(&whole[5..]);
        assert_eq!(
            decoder.decode(&mut buf).expect("in the test"),
            Some(Frame::Ping { id: 7 })
        );
    }

    #[test]
    fn replies_decompress_with_the_dictionary() {
        let mut encoder = Encoder::default();
        let mut inflate = Decompress::new(true);
        for id in [1u32, 3] {
            let frame = encoder.syn_reply(id, false);
            assert_eq!(&frame[..4], &[0x80, 0x03, 0x00, 0x02]);
            let mut out = Vec::with_capacity(64);
            let block = &frame[12..];
            let mut input = block;
            loop {
                let before = inflate.total_in();
                let r = inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
                input = &input[(inflate.total_in() - before) as usize..];
                match r {
                    Err(e) if e.needs_dictionary().is_some() => {
                        inflate.set_dictionary(DICTIONARY).expect("in the test");
                    }
                    Err(e) => panic!("{e}"),
                    Ok(_) if input.is_empty() => break,
                    Ok(_) => {}
                }
            }
            assert_eq!(out, vec![0, 0, 0, 0], "an empty header block");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::from(&[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::Version(2)));
        let mut buf = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2,
            ][..],
        );
        assert!(matches!(
            Decoder::default().decode(&mut buf),
            Err(FrameError::HeaderBlock(_))
        ));
    }
}

//! The WebSocket protocol's frames (RFC 6455): encoding server frames, decoding client
//! frames, and the messages handlers receive and send ([`Message`], [`IntoFrame`]).
//!
//! Server frames are never masked, so the encoded bytes of one message are the same for every
//! recipient: a [`Frame`] is encoded once and shared by reference count across all sockets it
//! goes to.

mod message;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use message::{IntoFrame, Json, Message};

/// Close codes this crate sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown, idle timeout).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// No status code was present in the peer's close frame.
    pub const NO_STATUS: u16 = 1005;
    /// The connection dropped without a close frame.
    pub const ABNORMAL: u16 = 1006;
    /// A text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy: slow consumer, connection limit, rate limit.
    pub const POLICY: u16 = 1008;
    /// A message exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// A handler failed.
    pub const INTERNAL: u16 = 1011;
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// An encoded server-to-client WebSocket frame, ready to write. Cloning shares the bytes.
///
/// Encode a message once and send the frame to many sockets:
/// ```
/// use asena_runtime::Frame;
/// let frame = Frame::text("hello");
/// assert_eq!(frame.payload(), b"hello");
/// assert!(frame.is_text());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("opcode", &(self.bytes[0] & 0x0F))
            .field("len", &self.payload().len())
            .finish()
    }
}

impl Frame {
    /// A text frame.
    pub fn text(text: &str) -> Frame {
        Frame::encode(OP_TEXT, text.as_bytes())
    }

    /// A binary frame.
    pub fn binary(data: &[u8]) -> Frame {
        Frame::encode(OP_BINARY, data)
    }

    /// A text frame holding `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Frame, serde_json::Error> {
        let mut buf = BytesMut::with_capacity(128);
        buf.put_slice(&[0; 10]);
        serde_json::to_writer((&mut buf).writer(), value)?;
        let len = buf.len() - 10;
        let header = header(OP_TEXT, len);
        let start = 10 - header.len();
        buf[start..10].copy_from_slice(&header);
        let mut bytes = buf.freeze();
        bytes.advance(start);
        Ok(Frame {
            bytes,
            header_len: header.len() as u8,
        })
    }

    pub(crate) fn close(code: u16, reason: &str) -> Frame {
        let reason = truncate_utf8(reason, 123);
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        Frame::encode(OP_CLOSE, &payload)
    }

    pub(crate) fn pong(payload: &[u8]) -> Frame {
        Frame::encode(OP_PONG, payload)
    }

    fn encode(opcode: u8, payload: &[u8]) -> Frame {
        let header = header(opcode, payload.len());
        let mut buf = BytesMut::with_capacity(header.len() + payload.len());
        buf.put_slice(&header);
        buf.put_slice(payload);
        Frame {
            bytes: buf.freeze(),
            header_len: header.len() as u8,
        }
    }

    /// The message bytes, without the frame header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.header_len as usize..]
    }

    /// The message bytes as a shared buffer.
    pub fn payload_bytes(&self) -> Bytes {
        self.bytes.slice(self.header_len as usize..)
    }

    /// Whether this is a text frame (as opposed to binary).
    pub fn is_text(&self) -> bool {
        self.bytes[0] & 0x0F == OP_TEXT
    }

    /// The whole encoded frame, header included.
    pub(crate) fn wire(&self) -> &Bytes {
        &self.bytes
    }

    /// Length on the wire.
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Frame header for an unmasked frame with FIN set.
fn header(opcode: u8, len: usize) -> HeaderBuf {
    let mut h = HeaderBuf {
        buf: [0; 10],
        len: 0,
    };
    h.buf[0] = 0x80 | opcode;
    if len < 126 {
        h.buf[1] = len as u8;
        h.len = 2;
    } else if len <= u16::MAX as usize {
        h.buf[1] = 126;
        h.buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        h.len = 4;
    } else {
        h.buf[1] = 127;
        h.buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        h.len = 10;
    }
    h
}

struct HeaderBuf {
    buf: [u8; 10],
    len: usize,
}

impl std::ops::Deref for HeaderBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What the decoder got from the peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A complete text or binary message.
    Data(Message),
    Ping(Bytes),
    Pong,
    /// A close frame: code (1005 when absent) and reason.
    Close(u16, String),
}

/// Why the decoder gave up; each maps to a close code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Protocol(&'static str),
    InvalidUtf8,
    TooBig { limit: usize },
}

impl DecodeError {
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            DecodeError::Protocol(_) => close_code::PROTOCOL,
            DecodeError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            DecodeError::TooBig { .. } => close_code::TOO_BIG,
        }
    }

    pub(crate) fn reason(&self) -> &'static str {
        match self {
            DecodeError::Protocol(why) => why,
            DecodeError::InvalidUtf8 => "Invalid UTF-8 in text message",
            DecodeError::TooBig { .. } => "Message too big",
        }
    }
}

/// Incremental decoder of client frames, with reassembly of fragmented messages.
#[derive(Debug)]
pub(crate) struct Decoder {
    max_message: usize,
    fragments: Option<(u8, BytesMut)>,
}

impl Decoder {
    pub(crate) fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            fragments: None,
        }
    }

    /// Decodes the next complete message or control frame from `buf`; `Ok(None)` means more
    /// bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        loop {
            if buf.len() < 2 {
                return Ok(None);
            }
            let b0 = buf[0];
            let b1 = buf[1];
            let fin = b0 & 0x80 != 0;
            if b0 & 0x70 != 0 {
                return Err(DecodeError::Protocol("Reserved bits set"));
            }
            let opcode = b0 & 0x0F;
            if b1 & 0x80 == 0 {
                return Err(DecodeError::Protocol("Client frames must be masked"));
            }
            let (len, mut header_len) = match b1 & 0x7F {
                126 => {
                    if buf.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
                }
                127 => {
                    if buf.len() < 10 {
                        return Ok(None);
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(b), 10)
                }
                n => (n as u64, 2),
            };
            let is_control = opcode & 0x08 != 0;
            if is_control {
                if !fin {
                    return Err(DecodeError::Protocol("Fragmented control frame"));
                }
                if len > 125 {
                    return Err(DecodeError::Protocol("Control frame too long"));
                }
            } else {
                let already = self.fragments.as_ref().map_or(0, |(_, b)| b.len() as u64);
                if already + len > self.max_message as u64 {
                    return Err(DecodeError::TooBig {
                        limit: self.max_message,
                    });
                }
            }
            let len = len as usize;
            header_len += 4;
            if buf.len() < header_len + len {
                buf.reserve(header_len + len - buf.len());
                return Ok(None);
            }
            let mask = [
                buf[header_len - 4],
                buf[header_len - 3],
                buf[header_len - 2],
                buf[header_len - 1],
            ];
            buf.advance(header_len);
            let mut payload = buf.split_to(len);
            unmask(&mut payload, mask);

            match opcode {
                OP_TEXT | OP_BINARY => {
                    if self.fragments.is_some() {
                        return Err(DecodeError::Protocol("Expected a continuation frame"));
                    }
                    if fin {
                        return finish(opcode, payload).map(Some);
                    }
                    self.fragments = Some((opcode, payload));
                }
                OP_CONTINUATION => {
                    let Some((first, mut acc)) = self.fragments.take() else {
                        return Err(DecodeError::Protocol("Unexpected continuation frame"));
                    };
                    acc.extend_from_slice(&payload);
                    if fin {
                        return finish(first, acc).map(Some);
                    }
                    self.fragments = Some((first, acc));
                }
                OP_PING => return Ok(Some(Incoming::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Incoming::Pong)),
                OP_CLOSE => {
                    if payload.is_empty() {
                        return Ok(Some(Incoming::Close(close_code::NO_STATUS, String::new())));
                    }
                    if payload.len() == 1 {
                        return Err(DecodeError::Protocol("Invalid close frame"));
                    }
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !valid_close_code(code) {
                        return Err(DecodeError::Protocol("Invalid close code"));
                    }
                    let reason = std::str::from_utf8(&payload[2..])
                        .map_err(|_| DecodeError::InvalidUtf8)?
                        .to_owned();
                    return Ok(Some(Incoming::Close(code, reason)));
                }
                _ => return Err(DecodeError::Protocol("Unknown opcode")),
            }
        }
    }
}

fn finish(opcode: u8, payload: BytesMut) -> Result<Incoming, DecodeError> {
    if opcode == OP_TEXT {
        String::from_utf8(payload.to_vec())
            .map(|text| Incoming::Data(Message::Text(text)))
            .map_err(|_| DecodeError::InvalidUtf8)
    } else {
        Ok(Incoming::Data(Message::Binary(payload.freeze())))
    }
}

fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `data` with the 4-byte mask, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let mask8 = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(word) ^ mask8;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = BytesMut::new();
        out.put_u8(if fin { 0x80 } else { 0 } | opcode);
        if payload.len() < 126 {
            out.put_u8(0x80 | payload.len() as u8);
        } else if payload.len() <= 65535 {
            out.put_u8(0x80 | 126);
            out.put_u16(payload.len() as u16);
        } else {
            out.put_u8(0x80 | 127);
            out.put_u64(payload.len() as u64);
        }
        out.put_slice(&mask);
        for (i, b) in payload.iter().enumerate() {
            out.put_u8(b ^ mask[i % 4]);
        }
        out
    }

    #[test]
    fn encodes_headers_for_all_lengths() {
        assert_eq!(Frame::text("hi").wire().as_ref(), b"\x81\x02hi");
        let f = Frame::binary(&[7u8; 300]);
        assert_eq!(&f.wire()[..4], &[0x82, 126, 1, 44]);
        let f = Frame::binary(&vec![0u8; 70_000]);
        assert_eq!(f.wire()[1], 127);
        assert_eq!(f.payload().len(), 70_000);
    }

    #[test]
    fn json_frames_match_plain_encoding() {
        let v = serde_json::json!({"type": "pong"});
        let frame = Frame::json(&v).expect("serialises");
        assert_eq!(frame, Frame::text(r#"{"type":"pong"}"#));
        let big = "x".repeat(200);
        assert_eq!(
            Frame::json(&big).expect("serialises"),
            Frame::text(&format!("\"{big}\""))
        );
    }

    #[test]
    fn decodes_masked_text_across_partial_reads() {
        let mut d = Decoder::new(1 << 20);
        let full = client_frame(true, OP_TEXT, "hello wörld, longer than eight".as_bytes());
        let mut buf = BytesMut::new();
        for byte in full.iter() {
            assert_eq!(d.decode(&mut buf), Ok(None));
            buf.put_u8(*byte);
        }
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Data(Message::Text(
                "hello wörld, longer than eight".into()
            ))))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn reassembles_fragments_with_interleaved_ping() {
        let mut d = Decoder::new(1 << 20);
        let mut buf = client_frame(false, OP_TEXT, b"ab");
        buf.extend_from_slice(&client_frame(true, OP_PING, b"p"));
        buf.extend_from_slice(&client_frame(true, OP_CONTINUATION, b"cd"));
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Ping(Bytes::from_static(b"p"))))
        );
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Data(Message::Text("abcd".into()))))
        );
    }

    #[test]
    fn rejects_oversize_before_reading_payload() {
        let mut d = Decoder::new(10);
        let mut buf = client_frame(true, OP_BINARY, &[0u8; 11]);
        buf.truncate(4);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::TooBig { limit: 10 }));
    }

    #[test]
    fn rejects_invalid_utf8_and_unmasked_frames() {
        let mut d = Decoder::new(100);
        let mut buf = client_frame(true, OP_TEXT, &[0xff, 0xfe]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::InvalidUtf8));
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&b"\x81\x02hi"[..]);
        assert!(matches!(d.decode(&mut buf), Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn decodes_close_codes() {
        let mut d = Decoder::new(100);
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let mut buf = client_frame(true, OP_CLOSE, &payload);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Close(1000, "bye".into())))
        );
        let mut buf = client_frame(true, OP_CLOSE, &[]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Close(1005, String::new())))
        );
    }

    #[test]
    fn close_reason_is_truncated_on_char_boundary() {
        let f = Frame::close(1000, &"é".repeat(100));
        assert!(f.payload().len() <= 125);
        assert!(std::str::from_utf8(&f.payload()[2..]).is_ok());
    }
}

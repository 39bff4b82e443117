//! The WebSocket protocol's frames (RFC 6455): encoding server frames, decoding client
//! frames, and the messages handlers receive and send ([`Message`], [`IntoFrame`]).
//!
//! Server frames are never masked, so the encoded bytes of one message are the same for every
//! recipient: a [`Frame`] is encoded once and shared by reference count across all sockets it
//! goes to. With permessage-deflate (`deflate.rs`) the server compresses every message on its
//! own, so the compressed frame is shared the same way: a frame compresses itself at most once,
//! for the first compressing recipient. Decoding client frames is `decode.rs`.

mod decode;
pub(crate) mod deflate;
mod message;
#[cfg(test)]
mod proptests;

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use asena_protocol::Message;
pub(crate) use decode::{Decoder, Incoming};
pub use message::{IntoFrame, Json};

/// Close codes (RFC 6455 §7.4.1 and the managed protocol's), from `asena-protocol`.
pub use asena_protocol::close_code;

/// Set on the first frame of a compressed message (permessage-deflate).
const RSV1: u8 = 0x40;
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
#[derive(Clone)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
    /// The compressed frame (window 15, at the level it was made with), made on first use;
    /// `None` inside when compression does not make it smaller.
    deflated: OnceLock<(u32, Option<Bytes>)>,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Frame {}

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
            deflated: OnceLock::new(),
        })
    }

    pub(crate) fn close(code: u16, reason: &str) -> Frame {
        let reason = close_reason(reason);
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        Frame::encode(OP_CLOSE, &payload)
    }

    pub(crate) fn pong(payload: &[u8]) -> Frame {
        Frame::encode(OP_PONG, payload)
    }

    pub(crate) fn ping(payload: &[u8]) -> Frame {
        Frame::encode(OP_PING, payload)
    }

    fn encode(opcode: u8, payload: &[u8]) -> Frame {
        let header = header(opcode, payload.len());
        let mut buf = BytesMut::with_capacity(header.len() + payload.len());
        buf.put_slice(&header);
        buf.put_slice(payload);
        Frame {
            bytes: buf.freeze(),
            header_len: header.len() as u8,
            deflated: OnceLock::new(),
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

    /// Whether this is a text or binary frame (what permessage-deflate may compress).
    pub(crate) fn is_data(&self) -> bool {
        matches!(self.bytes[0] & 0x0F, OP_TEXT | OP_BINARY)
    }

    /// The frame compressed for a peer that inflates with `window_bits`, compressed at
    /// `level`; `None` when compression does not make it smaller. The common case (window 15)
    /// is compressed once and kept, so every compressing recipient shares one buffer.
    pub(crate) fn deflated(&self, window_bits: u8, level: u32) -> Option<Cow<'_, Bytes>> {
        if window_bits == deflate::MAX_WINDOW_BITS {
            let (made_at, bytes) = self
                .deflated
                .get_or_init(|| (level, self.deflate(window_bits, level)));
            if *made_at == level {
                return bytes.as_ref().map(Cow::Borrowed);
            }
        }
        self.deflate(window_bits, level).map(Cow::Owned)
    }

    fn deflate(&self, window_bits: u8, level: u32) -> Option<Bytes> {
        let compressed = deflate::compress(self.payload(), window_bits, level)?;
        let opcode = self.bytes[0] & 0x0F;
        let header = header(opcode, compressed.len());
        let mut buf = BytesMut::with_capacity(header.len() + compressed.len());
        buf.put_slice(&header);
        buf[0] |= RSV1;
        buf.put_slice(&compressed);
        Some(buf.freeze())
    }

    /// Length on the wire.
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }
}

/// `reason` as a close frame carries it: at most 123 bytes (RFC 6455 §5.5.1), cut on a
/// character boundary.
pub(crate) fn close_reason(reason: &str) -> &str {
    &reason[..reason.floor_char_boundary(123)]
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

/// A client frame as a conforming client writes it, for the decoder's tests: first byte
/// `b0`, the length as [`header`] encodes it with the mask bit set, then `mask` and the
/// masked payload.
#[cfg(test)]
pub(crate) fn put_client_frame(out: &mut Vec<u8>, b0: u8, mask: [u8; 4], payload: &[u8]) {
    let header = header(0, payload.len());
    out.push(b0);
    out.push(0x80 | header[1]);
    out.extend_from_slice(&header[2..]);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(close_reason("abc"), "abc");
        let long = "é".repeat(100);
        assert_eq!(close_reason(&long).len(), 122);
        assert_eq!(close_reason(&"x".repeat(200)).len(), 123);
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
    fn a_frame_compresses_once_and_keeps_its_opcode() {
        let f = Frame::text(&"fan out ".repeat(100));
        let a = f.deflated(15, 1).expect("compressible");
        let b = f.deflated(15, 1).expect("compressible");
        assert!(matches!(b, Cow::Borrowed(_)), "kept, not compressed again");
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the same buffer for every recipient"
        );
        assert_eq!(a[0], 0x80 | RSV1 | OP_TEXT);
        assert!(a.len() < f.wire_len());
        assert_eq!(Frame::text("tiny").deflated(15, 1), None);
        assert_ne!(f.deflated(10, 1), None);
        assert_eq!(f.clone(), f, "equality ignores the cache");
    }

    #[test]
    fn close_reason_is_truncated_on_char_boundary() {
        let f = Frame::close(1000, &"é".repeat(100));
        assert!(f.payload().len() <= 125);
        assert!(std::str::from_utf8(&f.payload()[2..]).is_ok());
    }
}

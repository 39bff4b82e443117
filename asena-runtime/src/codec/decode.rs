//! Decoding client frames: an incremental decoder that reassembles fragmented messages,
//! inflates compressed ones and checks text as it arrives.
//!
//! Data frames are consumed as their bytes come in, not once the whole frame is buffered: a
//! text message whose bytes can no longer be completed to valid UTF-8 fails at once (1007),
//! in the middle of a frame if need be, and a message is limited by its inflated size (1009)
//! before it is inflated in full. A frame that arrives whole and alone (the common case) is
//! taken straight from the read buffer: binary without a copy, text with one.

use bytes::{Buf, Bytes, BytesMut};

use super::deflate::{Deflate, InflateError, Inflater};
use super::{Message, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, close_code};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    Protocol(&'static str),
    InvalidUtf8,
    TooBig { limit: usize },
}

impl FrameError {
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => close_code::PROTOCOL,
            FrameError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            FrameError::TooBig { .. } => close_code::TOO_BIG,
        }
    }

    pub(crate) fn reason(&self) -> &'static str {
        match self {
            FrameError::Protocol(why) => why,
            FrameError::InvalidUtf8 => "Invalid UTF-8 in text message",
            FrameError::TooBig { .. } => "Message too big",
        }
    }
}

/// The data frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    /// Payload bytes of this frame already unmasked (the mask's phase).
    done: usize,
}

/// The message being assembled from one or more frames.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// Bytes of `data` known to be valid UTF-8 (the rest is an incomplete character).
    utf8_valid: usize,
    /// Compressed bytes received, for the limit on what is on the wire.
    wire: usize,
}

/// Incremental decoder of client frames.
#[derive(Debug)]
pub(crate) struct Decoder {
    max_message: usize,
    /// Boxed: a zlib stream is a few hundred bytes, which connections without
    /// permessage-deflate (and their idle reader futures) should not carry.
    inflater: Option<Box<Inflater>>,
    frame: Option<InFrame>,
    /// Boxed: only a fragmented, compressed or not yet complete message has one, and every
    /// idle connection's reader holds a decoder.
    message: Option<Box<Partial>>,
}

impl Decoder {
    /// A decoder for messages up to `max_message` bytes (inflated), with permessage-deflate
    /// when it was negotiated.
    pub(crate) fn new(max_message: usize, deflate: Option<&Deflate>) -> Decoder {
        Decoder {
            max_message,
            inflater: deflate.map(|d| Box::new(Inflater::new(d))),
            frame: None,
            message: None,
        }
    }

    /// Decodes the next complete message or control frame from `buf`; `Ok(None)` means more
    /// bytes are needed (what was usable has been consumed from `buf`).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        loop {
            if let Some(frame) = self.frame {
                match self.payload(frame, buf)? {
                    Progress::NeedMore => return Ok(None),
                    Progress::FrameDone => continue,
                    Progress::Message(m) => return Ok(Some(Incoming::Data(m))),
                }
            }
            match self.header(buf)? {
                Header::NeedMore => return Ok(None),
                Header::Done(incoming) => return Ok(Some(incoming)),
                Header::Payload => {}
            }
        }
    }

    /// Reads one frame header (and a control frame or a whole lone data frame with it).
    fn header(&mut self, buf: &mut BytesMut) -> Result<Header, FrameError> {
        if buf.len() < 2 {
            return Ok(Header::NeedMore);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 {
            return Err(FrameError::Protocol("Reserved bits set"));
        }
        let opcode = b0 & 0x0F;
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("Client frames must be masked"));
        }
        let (len, header_len) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(Header::NeedMore);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(Header::NeedMore);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let header_len = header_len + 4;
        let is_control = opcode & 0x08 != 0;
        if is_control {
            if !fin {
                return Err(FrameError::Protocol("Fragmented control frame"));
            }
            if len > 125 {
                return Err(FrameError::Protocol("Control frame too long"));
            }
            if rsv1 {
                return Err(FrameError::Protocol("Reserved bits set"));
            }
            // Control frames are small: wait for the whole frame.
            let len = len as usize;
            if buf.len() < header_len + len {
                return Ok(Header::NeedMore);
            }
            let mask = mask_at(buf, header_len);
            buf.advance(header_len);
            let mut payload = buf.split_to(len);
            unmask(&mut payload, mask, 0);
            return control(opcode, payload).map(Header::Done);
        }

        match opcode {
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(FrameError::Protocol("Expected a continuation frame"));
                }
                if rsv1 && self.inflater.is_none() {
                    return Err(FrameError::Protocol("Reserved bits set"));
                }
            }
            OP_CONTINUATION => {
                if self.message.is_none() {
                    return Err(FrameError::Protocol("Unexpected continuation frame"));
                }
                if rsv1 {
                    return Err(FrameError::Protocol("Reserved bits set"));
                }
            }
            _ => return Err(FrameError::Protocol("Unknown opcode")),
        }
        let already = self
            .message
            .as_ref()
            .map_or(0, |m| if m.compressed { m.wire } else { m.data.len() });
        // Saturating: a declared length near 2^64 must not wrap past the limit.
        if (already as u64).saturating_add(len) > self.max_message as u64 {
            return Err(FrameError::TooBig {
                limit: self.max_message,
            });
        }

        // Fast path: a whole, unfragmented, uncompressed message already in the buffer.
        let len_usize = len as usize;
        if fin && !rsv1 && opcode != OP_CONTINUATION && buf.len() >= header_len + len_usize {
            let mask = mask_at(buf, header_len);
            buf.advance(header_len);
            let mut payload = buf.split_to(len_usize);
            unmask(&mut payload, mask, 0);
            let message = if opcode == OP_TEXT {
                Message::Text(
                    String::from_utf8(payload.to_vec()).map_err(|_| FrameError::InvalidUtf8)?,
                )
            } else {
                Message::Binary(payload.freeze())
            };
            return Ok(Header::Done(Incoming::Data(message)));
        }

        if buf.len() < header_len {
            return Ok(Header::NeedMore);
        }
        let mask = mask_at(buf, header_len);
        buf.advance(header_len);
        if self.message.is_none() {
            self.message = Some(Box::new(Partial {
                text: opcode == OP_TEXT,
                compressed: rsv1,
                data: Vec::with_capacity(len_usize.min(64 * 1024)),
                utf8_valid: 0,
                wire: 0,
            }));
        }
        self.frame = Some(InFrame {
            fin,
            remaining: len,
            mask,
            done: 0,
        });
        Ok(Header::Payload)
    }

    /// Consumes what `buf` holds of the current data frame's payload.
    fn payload(&mut self, mut frame: InFrame, buf: &mut BytesMut) -> Result<Progress, FrameError> {
        let n = usize::try_from(frame.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if n == 0 && frame.remaining > 0 {
            return Ok(Progress::NeedMore);
        }
        let mut chunk = buf.split_to(n);
        unmask(&mut chunk, frame.mask, frame.done);
        frame.done += n;
        frame.remaining -= n as u64;
        let limit = self.max_message;
        let message = self
            .message
            .as_deref_mut()
            .expect("invariant: a data frame belongs to a message");
        if message.compressed {
            message.wire += n;
            let inflater = self
                .inflater
                .as_mut()
                .expect("invariant: compressed messages only with an inflater");
            let fed = inflater.feed(&chunk, &mut message.data, limit);
            inflate_result(fed, message, limit)?;
        } else {
            message.data.extend_from_slice(&chunk);
        }
        if message.text {
            check_utf8(message)?;
        }
        if frame.remaining > 0 {
            self.frame = Some(frame);
            return Ok(Progress::NeedMore);
        }
        self.frame = None;
        if !frame.fin {
            return Ok(Progress::FrameDone);
        }
        let mut message = *self
            .message
            .take()
            .expect("invariant: a data frame belongs to a message");
        if message.compressed {
            let inflater = self
                .inflater
                .as_mut()
                .expect("invariant: compressed messages only with an inflater");
            let finished = inflater.finish(&mut message.data, limit);
            inflate_result(finished, &mut message, limit)?;
            if message.text {
                check_utf8(&mut message)?;
            }
        }
        let done = if message.text {
            if message.utf8_valid != message.data.len() {
                return Err(FrameError::InvalidUtf8);
            }
            Message::Text(String::from_utf8(message.data).map_err(|_| FrameError::InvalidUtf8)?)
        } else {
            Message::Binary(Bytes::from(message.data))
        };
        Ok(Progress::Message(done))
    }
}

enum Header {
    NeedMore,
    /// A data frame's payload follows.
    Payload,
    Done(Incoming),
}

enum Progress {
    NeedMore,
    /// A non-final frame ended; the message goes on.
    FrameDone,
    Message(Message),
}

/// An inflater's failure as the decoder's. Text inflated before the failure is checked
/// first: invalid there, the message is invalid UTF-8 (1007), the error smaller reads would
/// have found, so the close code does not depend on how the network split the message.
fn inflate_result(
    result: Result<(), InflateError>,
    message: &mut Partial,
    limit: usize,
) -> Result<(), FrameError> {
    let Err(e) = result else {
        return Ok(());
    };
    if message.text {
        check_utf8(message)?;
    }
    Err(match e {
        InflateError::Corrupt => FrameError::Protocol("Invalid compressed data"),
        InflateError::TooBig => FrameError::TooBig { limit },
    })
}

/// Validates what arrived since the last check; an incomplete character at the end may still
/// be completed, anything else invalid fails now.
fn check_utf8(message: &mut Partial) -> Result<(), FrameError> {
    match std::str::from_utf8(&message.data[message.utf8_valid..]) {
        Ok(_) => message.utf8_valid = message.data.len(),
        Err(e) if e.error_len().is_none() => message.utf8_valid += e.valid_up_to(),
        Err(_) => return Err(FrameError::InvalidUtf8),
    }
    Ok(())
}

fn control(opcode: u8, payload: BytesMut) -> Result<Incoming, FrameError> {
    match opcode {
        OP_PING => Ok(Incoming::Ping(payload.freeze())),
        OP_PONG => Ok(Incoming::Pong),
        OP_CLOSE => {
            if payload.is_empty() {
                return Ok(Incoming::Close(close_code::NO_STATUS, String::new()));
            }
            if payload.len() == 1 {
                return Err(FrameError::Protocol("Invalid close frame"));
            }
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_sendable(code) {
                return Err(FrameError::Protocol("Invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| FrameError::InvalidUtf8)?
                .to_owned();
            Ok(Incoming::Close(code, reason))
        }
        _ => Err(FrameError::Protocol("Unknown opcode")),
    }
}

fn mask_at(buf: &[u8], header_len: usize) -> [u8; 4] {
    [
        buf[header_len - 4],
        buf[header_len - 3],
        buf[header_len - 2],
        buf[header_len - 1],
    ]
}

/// XORs `data` with the 4-byte mask, starting at payload offset `phase`, eight bytes at a
/// time.
fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mask = [
        mask[phase % 4],
        mask[(phase + 1) % 4],
        mask[(phase + 2) % 4],
        mask[(phase + 3) % 4],
    ];
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
    use bytes::BufMut;

    use super::super::deflate::compress;
    use super::super::put_client_frame;
    use super::*;

    fn client_frame_rsv(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> BytesMut {
        let b0 = if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode;
        let mut out = Vec::new();
        put_client_frame(&mut out, b0, [0x11, 0x22, 0x33, 0x44], payload);
        BytesMut::from(&out[..])
    }

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> BytesMut {
        client_frame_rsv(fin, false, opcode, payload)
    }

    fn deflate() -> Deflate {
        Deflate {
            server_window_bits: 15,
            client_no_context_takeover: false,
        }
    }

    #[test]
    fn decodes_masked_text_across_partial_reads() {
        let mut d = Decoder::new(1 << 20, None);
        let full = client_frame(true, OP_TEXT, "hello wörld, longer than eight".as_bytes());
        let mut buf = BytesMut::new();
        let mut got = None;
        for byte in full.iter() {
            buf.put_u8(*byte);
            if let Some(m) = d.decode(&mut buf).expect("valid") {
                got = Some(m);
            }
        }
        assert_eq!(
            got,
            Some(Incoming::Data(Message::Text(
                "hello wörld, longer than eight".into()
            )))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn reassembles_fragments_with_interleaved_ping() {
        let mut d = Decoder::new(1 << 20, None);
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
        let mut d = Decoder::new(10, None);
        let mut buf = client_frame(true, OP_BINARY, &[0u8; 11]);
        buf.truncate(4);
        assert_eq!(d.decode(&mut buf), Err(FrameError::TooBig { limit: 10 }));
    }

    #[test]
    fn a_continuation_of_2_pow_64_bytes_is_too_big_not_an_overflow() {
        // A message has begun; a continuation declares 2^64 - 1 more bytes. Added to what
        // came before, that length wrapped around (a panic in debug builds, a frame that
        // escaped the size limit in release builds).
        for compressed in [false, true] {
            let mut d = Decoder::new(100, Some(&deflate()));
            let mut buf = client_frame_rsv(false, compressed, OP_BINARY, b"x");
            buf.put_u8(OP_CONTINUATION);
            buf.put_u8(0x80 | 127);
            buf.put_u64(u64::MAX);
            buf.put_slice(&[0; 4]);
            assert_eq!(d.decode(&mut buf), Err(FrameError::TooBig { limit: 100 }));
        }
    }

    #[test]
    fn rejects_invalid_utf8_and_unmasked_frames() {
        let mut d = Decoder::new(100, None);
        let mut buf = client_frame(true, OP_TEXT, &[0xff, 0xfe]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::InvalidUtf8));
        let mut d = Decoder::new(100, None);
        let mut buf = BytesMut::from(&b"\x81\x02hi"[..]);
        assert!(matches!(d.decode(&mut buf), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn invalid_utf8_fails_in_the_middle_of_a_frame() {
        // A valid start, then a byte that no character can continue, then more: the decoder
        // fails before the frame is complete.
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ]);
        payload.extend_from_slice(b"edited");
        let full = client_frame(true, OP_TEXT, &payload);
        let cut = full.len() - 6;
        let mut d = Decoder::new(1 << 20, None);
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn an_incomplete_character_waits_for_the_next_fragment() {
        let euro = "€".as_bytes();
        let mut d = Decoder::new(100, None);
        let mut buf = client_frame(false, OP_TEXT, &euro[..1]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&client_frame(true, OP_CONTINUATION, &euro[1..]));
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Data(Message::Text("€".into()))))
        );
        // ...but a message may not end in the middle of one.
        let mut buf = client_frame(true, OP_TEXT, &euro[..2]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn fragmented_invalid_utf8_fails_on_the_fragment_that_breaks_it() {
        let mut d = Decoder::new(100, None);
        let mut buf = client_frame(false, OP_TEXT, b"valid ");
        assert_eq!(d.decode(&mut buf), Ok(None));
        let mut buf = client_frame(false, OP_CONTINUATION, &[0xc0, 0xaf]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn decodes_close_codes() {
        let mut d = Decoder::new(100, None);
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
    fn compressed_messages_inflate_whole_and_fragmented() {
        let text = "compress me, compress me, compress me ".repeat(50);
        let compressed = compress(text.as_bytes(), 15, 1).expect("compressible");
        let mut d = Decoder::new(1 << 20, Some(&deflate()));
        let mut buf = client_frame_rsv(true, true, OP_TEXT, &compressed);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Data(Message::Text(text.clone()))))
        );
        // The same message in three fragments, RSV1 on the first only.
        let (a, rest) = compressed.split_at(compressed.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut buf = client_frame_rsv(false, true, OP_TEXT, a);
        buf.extend_from_slice(&client_frame(false, OP_CONTINUATION, b));
        buf.extend_from_slice(&client_frame(true, OP_CONTINUATION, c));
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Data(Message::Text(text))))
        );
        // An uncompressed message on the same connection.
        let mut buf = client_frame(true, OP_BINARY, b"raw");
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Incoming::Data(Message::Binary(Bytes::from_static(
                b"raw"
            )))))
        );
    }

    #[test]
    fn invalid_text_before_corrupt_compressed_data_is_1007_however_it_is_read() {
        // A stored block inflating to invalid UTF-8, then a block header of the reserved
        // type 11: the text is invalid before the compressed data is. Whole or split after
        // the stored block, the message fails the same way.
        let text = b"ok \xff\xfe";
        let mut compressed = vec![0x00, text.len() as u8, 0x00, !(text.len() as u8), 0xff];
        compressed.extend_from_slice(text);
        compressed.push(0x06);
        let frame = client_frame_rsv(true, true, OP_TEXT, &compressed);
        for split in [frame.len(), frame.len() - 1] {
            let mut d = Decoder::new(100, Some(&deflate()));
            let mut buf = BytesMut::from(&frame[..split]);
            let mut result = d.decode(&mut buf);
            if result == Ok(None) {
                buf.extend_from_slice(&frame[split..]);
                result = d.decode(&mut buf);
            }
            assert_eq!(result, Err(FrameError::InvalidUtf8), "split at {split}");
        }
    }

    #[test]
    fn rsv1_without_the_extension_or_on_a_continuation_is_a_protocol_error() {
        let mut d = Decoder::new(100, None);
        let mut buf = client_frame_rsv(true, true, OP_TEXT, b"x");
        assert!(matches!(d.decode(&mut buf), Err(FrameError::Protocol(_))));
        let mut d = Decoder::new(100, Some(&deflate()));
        let mut buf = client_frame(false, OP_TEXT, b"x");
        buf.extend_from_slice(&client_frame_rsv(true, true, OP_CONTINUATION, b"y"));
        assert!(matches!(d.decode(&mut buf), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn a_compressed_bomb_is_too_big_before_it_is_inflated() {
        let bomb = compress(&vec![b'a'; 8 << 20], 15, 9).expect("compressible");
        let mut d = Decoder::new(1 << 20, Some(&deflate()));
        let mut buf = client_frame_rsv(true, true, OP_BINARY, &bomb);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooBig { limit: 1 << 20 })
        );
    }
}

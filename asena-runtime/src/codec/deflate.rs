//! permessage-deflate (RFC 7692): negotiating the extension, compressing server messages,
//! inflating client messages.
//!
//! The server always runs without context takeover (`server_no_context_takeover`): every
//! message is compressed on its own, so one compressed frame is valid for every compressing
//! recipient and a room message is compressed once, not once per socket. Client messages are
//! inflated with the client's context unless it offered `client_no_context_takeover`.
//! Compression uses `flate2` (the `zlib-rs` backend, which supports every window size).

use std::cell::RefCell;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use http::{HeaderMap, HeaderValue, header};

/// The tail every compressed message ends with before the sender strips it (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The extension parameters agreed on for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// LZ77 window of what the server sends (9–15).
    pub(crate) server_window_bits: u8,
    /// The client resets its compressor after every message, so we may reset ours.
    pub(crate) client_no_context_takeover: bool,
}

/// The default (and widest) window.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// Picks the first `permessage-deflate` offer of the request we can honour and returns the
/// agreed parameters with the `Sec-WebSocket-Extensions` response value. Offers with unknown,
/// repeated or invalid parameters are declined (RFC 7692 §5), and so is a server window of 8
/// bits, which zlib cannot produce.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<(Deflate, HeaderValue)> {
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for offer in offers {
        let mut parts = offer.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
        {
            continue;
        }
        if let Some(agreed) = accept(parts) {
            let mut response = String::from("permessage-deflate; server_no_context_takeover");
            if agreed.client_no_context_takeover {
                response.push_str("; client_no_context_takeover");
            }
            if agreed.server_window_bits != MAX_WINDOW_BITS {
                response.push_str(&format!(
                    "; server_max_window_bits={}",
                    agreed.server_window_bits
                ));
            }
            return HeaderValue::from_str(&response).ok().map(|v| (agreed, v));
        }
    }
    None
}

/// The parameters of one offer, if acceptable.
fn accept<'a>(params: impl Iterator<Item = &'a str>) -> Option<Deflate> {
    let mut seen = Vec::new();
    let mut agreed = Deflate {
        server_window_bits: MAX_WINDOW_BITS,
        client_no_context_takeover: false,
    };
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                let bits = window_bits(v)?;
                if bits < 9 {
                    return None;
                }
                agreed.server_window_bits = bits;
            }
            // The client may use any window up to 15; we inflate with the widest.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(agreed)
}

/// A window-bits value: 8 to 15, digits only.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

thread_local! {
    /// One compressor per window size per thread, reset before every message.
    static COMPRESSORS: RefCell<[Option<Compress>; 16]> = const { RefCell::new([const { None }; 16]) };
}

/// Compresses one message on its own (no context takeover) at `level`, without the final
/// `00 00 ff ff`. `None` when compression would not make it smaller.
pub(crate) fn compress(payload: &[u8], window_bits: u8, level: u32) -> Option<Vec<u8>> {
    let bits = window_bits.clamp(9, MAX_WINDOW_BITS);
    COMPRESSORS.with(|cell| {
        let mut all = cell.borrow_mut();
        let slot = &mut all[usize::from(bits)];
        let c = slot.get_or_insert_with(|| {
            Compress::new_with_window_bits(flate2::Compression::new(level), false, bits)
        });
        c.reset();
        c.set_level(flate2::Compression::new(level)).ok()?;
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = c.total_in();
            c.compress_vec(input, &mut out, FlushCompress::Sync).ok()?;
            let consumed = usize::try_from(c.total_in() - before).ok()?;
            input = &input[consumed..];
            // Done once all input is in and the sync flush fit in the output.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        (out.len() < payload.len()).then_some(out)
    })
}

/// Inflates the messages of one connection.
pub(crate) struct Inflater {
    inflate: Decompress,
    reset_after_message: bool,
    /// The message's DEFLATE stream ended with a final block (RFC 7692 §7.2.3.4): the rest
    /// of the message (the empty block a sender appends after it) is ignored, and the next
    /// message starts a new stream, as the sender's compressor did.
    stream_ended: bool,
    /// The current message has brought compressed bytes. One without any (what a
    /// compressor flushed twice in a row sends for an empty message) is the empty message,
    /// and the stream stays where it was.
    has_data: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_after_message", &self.reset_after_message)
            .field("stream_ended", &self.stream_ended)
            .field("has_data", &self.has_data)
            .finish()
    }
}

/// What went wrong while inflating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The data is not a valid deflate stream.
    Corrupt,
    /// The inflated message exceeds the limit.
    TooBig,
}

impl Inflater {
    pub(crate) fn new(deflate: &Deflate) -> Inflater {
        Inflater {
            inflate: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            reset_after_message: deflate.client_no_context_takeover,
            stream_ended: false,
            has_data: false,
        }
    }

    /// Inflates the next piece of a compressed message into `out`, failing as soon as `out`
    /// would exceed `limit`.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        if self.stream_ended || input.is_empty() {
            return Ok(());
        }
        self.has_data = true;
        self.run(input, out, limit, FlushDecompress::None)
    }

    /// Ends a message: inflates the stripped tail and, without context takeover, resets.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let result = if self.stream_ended || !self.has_data {
            Ok(())
        } else {
            self.run(&TAIL, out, limit, FlushDecompress::Sync)
        };
        self.stream_ended = false;
        self.has_data = false;
        if self.reset_after_message || result.is_err() {
            self.inflate.reset(false);
        }
        result
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        flush: FlushDecompress,
    ) -> Result<(), InflateError> {
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                // Double, but never past the limit: a bomb is stopped early.
                let room = limit + 1 - out.len();
                out.reserve_exact(out.capacity().max(4096).min(room));
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let result = self.inflate.decompress_vec(input, out, flush);
            // Past the limit before the data turned bad (the inflater can fail on the next
            // symbol with the output full): too big, as smaller pieces of input would find.
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let status = result.map_err(|_| InflateError::Corrupt)?;
            let consumed = usize::try_from(self.inflate.total_in() - in_before)
                .map_err(|_| InflateError::Corrupt)?;
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // A final block: the message's stream is over; what follows is its tail.
                self.inflate.reset(false);
                self.stream_ended = true;
                return Ok(());
            }
            let room_left = out.len() < out.capacity();
            if input.is_empty() && room_left {
                return Ok(());
            }
            if consumed == 0 && out.len() == out_before && room_left {
                return Err(InflateError::Corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<(Deflate, String)> {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(value).expect("header"),
        );
        negotiate(&h).map(|(d, v)| (d, v.to_str().expect("ascii").to_owned()))
    }

    #[test]
    fn negotiates_the_first_acceptable_offer() {
        let (d, v) = offer("permessage-deflate; client_max_window_bits").expect("accepted");
        assert_eq!(v, "permessage-deflate; server_no_context_takeover");
        assert_eq!(d.server_window_bits, 15);
        assert!(!d.client_no_context_takeover);

        let (d, v) = offer(
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover; server_max_window_bits=\"10\"",
        )
        .expect("second offer");
        assert_eq!(
            v,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(d.server_window_bits, 10);
        assert!(d.client_no_context_takeover);
    }

    #[test]
    fn declines_invalid_offers() {
        assert!(offer("x-webkit-deflate-frame").is_none());
        assert!(offer("permessage-deflate; unknown").is_none());
        assert!(offer("permessage-deflate; server_max_window_bits").is_none());
        assert!(offer("permessage-deflate; server_max_window_bits=16").is_none());
        assert!(offer("permessage-deflate; client_max_window_bits=7").is_none());
        assert!(
            offer("permessage-deflate; client_no_context_takeover; client_no_context_takeover")
                .is_none()
        );
        assert!(offer("permessage-deflate; client_no_context_takeover=1").is_none());
        assert!(negotiate(&HeaderMap::new()).is_none());
    }

    fn round_trip(inflater: &mut Inflater, msg: &[u8], bits: u8) -> Vec<u8> {
        let compressed = compress(msg, bits, 1).expect("compressible");
        assert!(compressed.len() < msg.len());
        let mut out = Vec::new();
        // Feed in uneven pieces, as frames and reads split it.
        for piece in compressed.chunks(7) {
            inflater.feed(piece, &mut out, 1 << 20).expect("inflates");
        }
        inflater.finish(&mut out, 1 << 20).expect("finishes");
        out
    }

    #[test]
    fn compressed_messages_inflate_back_with_and_without_context() {
        let msg = br#"{"type":"message","message":"hello hello hello hello hello"}"#.repeat(20);
        for reset in [false, true] {
            let mut inflater = Inflater::new(&Deflate {
                server_window_bits: 15,
                client_no_context_takeover: reset,
            });
            for bits in [15, 12, 9] {
                assert_eq!(round_trip(&mut inflater, &msg, bits), msg);
                assert_eq!(
                    round_trip(&mut inflater, b"short short short short", bits),
                    b"short short short short"
                );
            }
        }
        assert_eq!(compress(b"ab", 15, 1), None, "incompressible stays raw");
    }

    #[test]
    fn a_message_ending_in_a_final_block_leaves_the_next_one_intact() {
        // RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set, then the header octet of the
        // empty stored block the sender appended (and stripped of its last four octets).
        let hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let msg = b"the next message, from a compressor that started over".repeat(4);
        // Whole, or split right after the final block, as frames or reads may split it.
        for split in [hello.len(), 7] {
            let mut inflater = Inflater::new(&Deflate {
                server_window_bits: 15,
                client_no_context_takeover: false,
            });
            let mut out = Vec::new();
            for piece in [&hello[..split], &hello[split..]] {
                inflater.feed(piece, &mut out, 1 << 20).expect("inflates");
            }
            inflater.finish(&mut out, 1 << 20).expect("finishes");
            assert_eq!(out, b"Hello");
            assert_eq!(round_trip(&mut inflater, &msg, 15), msg, "split at {split}");
        }
    }

    #[test]
    fn a_message_with_no_compressed_data_is_empty_and_leaves_the_stream_alone() {
        // A client compressor (context taken over) flushed twice in a row emits nothing for
        // an empty message. The appended tail alone is no DEFLATE block: inflating it left
        // the stream inside a stored block's header, and the next message came out wrong.
        let mut client = Compress::new_with_window_bits(flate2::Compression::new(0), false, 15);
        let mut send = |msg: &[u8]| {
            let mut out = Vec::with_capacity(msg.len() + 64);
            client
                .compress_vec(msg, &mut out, FlushCompress::Sync)
                .expect("compresses");
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            out
        };
        let messages = [&b""[..], b"", b"", b"hello"];
        let wire: Vec<Vec<u8>> = messages.iter().map(|m| send(m)).collect();
        assert!(wire[1].is_empty(), "the second flush emits nothing");
        let mut inflater = Inflater::new(&Deflate {
            server_window_bits: 15,
            client_no_context_takeover: false,
        });
        for (msg, data) in messages.iter().zip(&wire) {
            let mut out = Vec::new();
            inflater.feed(data, &mut out, 1 << 20).expect("inflates");
            inflater.finish(&mut out, 1 << 20).expect("finishes");
            assert_eq!(out, *msg);
        }
    }

    #[test]
    fn too_big_before_corrupt_is_too_big_however_the_input_is_split() {
        // Fixed-Huffman blocks that inflate past the 256-byte limit, then a bad symbol the
        // inflater rejects with its output already full (found by the frame_decoder_deflate
        // fuzz target). Fed whole it was corrupt; fed in pieces, too big.
        let data = [
            0x4a, 0x20, 0x00, 0x00, 0x4a, 0x20, 0x04, 0x00, 0x4a, 0x20, 0x00, 0x00, 0x4a, 0x20,
            0x00, 0x00, 0x4a, 0x20, 0x00, 0x00, 0x4a, 0x20, 0x00, 0x00, 0x4a, 0x20, 0x00, 0x00,
            0x4a, 0x20, 0x00, 0x00, 0xdc, 0x57, 0x8a, 0xf8, 0xfd, 0x97, 0xb7, 0x8b,
        ];
        for piece in [data.len(), 8, 1] {
            let mut inflater = Inflater::new(&Deflate {
                server_window_bits: 15,
                client_no_context_takeover: false,
            });
            let mut out = Vec::new();
            let result = data
                .chunks(piece)
                .try_for_each(|p| inflater.feed(p, &mut out, 256));
            assert_eq!(result, Err(InflateError::TooBig), "pieces of {piece}");
        }
    }

    #[test]
    fn a_compression_bomb_stops_at_the_limit() {
        let bomb = compress(&vec![0u8; 10 << 20], 15, 9).expect("compressible");
        assert!(bomb.len() < 64 * 1024);
        let mut inflater = Inflater::new(&Deflate {
            server_window_bits: 15,
            client_no_context_takeover: false,
        });
        let mut out = Vec::new();
        assert_eq!(
            inflater.feed(&bomb, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(
            out.len() <= (1 << 20) + 1,
            "stopped at the limit: {}",
            out.len()
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut inflater = Inflater::new(&Deflate {
            server_window_bits: 15,
            client_no_context_takeover: false,
        });
        let mut out = Vec::new();
        let result = inflater
            .feed(&[0xff; 32], &mut out, 1 << 20)
            .and_then(|()| inflater.finish(&mut out, 1 << 20));
        assert_eq!(result, Err(InflateError::Corrupt));
    }
}

//! Property tests of the client frame decoder, with and without permessage-deflate: what a
//! conforming client sends comes out unchanged however it is fragmented, masked, compressed or
//! split by the network; anything else ends in a close code, never a panic.
//!
//! The fuzz targets in the repository's `fuzz/` crate drive the same decoder with coverage
//! guidance; these run on stable with every `cargo test`.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::decode::FrameError;
use super::deflate::{self, Deflate};
use super::{
    Decoder, Incoming, Message, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, RSV1,
    close_code, put_client_frame,
};

const FIN: u8 = 0x80;
const MAX: usize = 1 << 20;

/// 256 cases each, a few seconds in a debug build; `PROPTEST_CASES=N` runs more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

// ---- building client streams ----

/// How one message is cut into frames, masked, and interleaved with pings.
#[derive(Debug, Clone)]
struct Fragmentation {
    /// Where the payload is cut (any byte offset, repeats make empty fragments).
    cuts: Vec<Index>,
    /// The masks of successive frames, cycled.
    masks: Vec<[u8; 4]>,
    /// A ping after the fragment with the same index, if any (never after the last).
    pings: Vec<Option<Vec<u8>>>,
}

fn fragmentation() -> impl Strategy<Value = Fragmentation> {
    (
        vec(any::<Index>(), 0..6),
        vec(any::<[u8; 4]>(), 1..4),
        vec(proptest::option::of(vec(any::<u8>(), 0..=125)), 0..6),
    )
        .prop_map(|(cuts, masks, pings)| Fragmentation { cuts, masks, pings })
}

impl Fragmentation {
    /// Appends the frames of one message to `out`; returns the pings it interleaved, in order.
    fn write(&self, out: &mut Vec<u8>, opcode: u8, compressed: bool, payload: &[u8]) -> Vec<Bytes> {
        let mut cuts: Vec<usize> = self
            .cuts
            .iter()
            .map(|i| i.index(payload.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut pings = Vec::new();
        let mut start = 0;
        let mut masks = self.masks.iter().cycle();
        for (i, &end) in cuts.iter().enumerate() {
            let last = i + 1 == cuts.len();
            let mut b0 = if i == 0 { opcode } else { OP_CONTINUATION };
            if i == 0 && compressed {
                b0 |= RSV1;
            }
            if last {
                b0 |= FIN;
            }
            let mask = *masks.next().expect("cycle of a non-empty list");
            put_client_frame(out, b0, mask, &payload[start..end]);
            start = end;
            if let (false, Some(Some(ping))) = (last, self.pings.get(i)) {
                put_client_frame(out, FIN | OP_PING, mask, ping);
                pings.push(Bytes::copy_from_slice(ping));
            }
        }
        pings
    }
}

/// Pseudo-random bytes (incompressible, cheap to make in bulk).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Text of any characters: short, or a pattern repeated past the 16- and 64-bit lengths.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => vec(any::<char>(), 0..200).prop_map(String::from_iter),
        1 => (vec(any::<char>(), 1..20), 1..70_000usize).prop_map(|(chars, n)| {
            let unit = String::from_iter(chars);
            unit.repeat((n / unit.len()).max(1))
        }),
    ]
}

/// Binary of any bytes: short, long noise (incompressible), or a repeated pattern.
fn binary() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..300),
        1 => (60_000..70_000usize, any::<u64>()).prop_map(|(len, seed)| noise(len, seed | 1)),
        1 => (vec(any::<u8>(), 1..16), 1..70_000usize).prop_map(|(unit, n)| {
            unit.repeat((n / unit.len()).max(1))
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        text().prop_map(Message::Text),
        binary().prop_map(|b| Message::Binary(Bytes::from(b))),
    ]
}

fn opcode_of(message: &Message) -> u8 {
    match message {
        Message::Text(_) => OP_TEXT,
        Message::Binary(_) => OP_BINARY,
    }
}

/// A client's compressor: one DEFLATE stream, flushed after every message (RFC 7692 §7.2.1).
struct ClientDeflate {
    compress: Compress,
    /// Whether each message ends its stream with a final block (`BFINAL`, RFC 7692
    /// §7.2.3.4) instead of a sync flush; the compressor then starts over for the next one.
    finish: bool,
}

impl ClientDeflate {
    fn new(level: u32, window_bits: u8, finish: bool) -> ClientDeflate {
        ClientDeflate {
            compress: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            finish,
        }
    }

    /// One message compressed, the trailing `00 00 ff ff` stripped.
    fn message(&mut self, payload: &[u8]) -> Vec<u8> {
        let flush = if self.finish {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut out = Vec::with_capacity(payload.len() + 64);
        let start = self.compress.total_in();
        loop {
            let consumed = (self.compress.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(4096);
            }
            let status = self
                .compress
                .compress_vec(&payload[consumed..], &mut out, flush)
                .expect("compresses");
            let all_in = (self.compress.total_in() - start) as usize == payload.len();
            if all_in && (status == flate2::Status::StreamEnd || out.len() < out.capacity()) {
                break;
            }
        }
        if self.finish {
            // RFC 7692 §7.2.3.4: after a final block comes an empty stored block, stripped
            // of its last four octets like any message's.
            out.push(0x00);
            self.compress.reset();
        } else if out.ends_with(&[0, 0, 0xff, 0xff]) {
            // (An empty message right after a flush compresses to nothing at all.)
            out.truncate(out.len() - 4);
        }
        out
    }
}

// ---- decoding ----

type Results = Vec<Result<Incoming, FrameError>>;

/// Decodes what `buf` holds into `out`; false once the decoder failed.
fn drain(decoder: &mut Decoder, buf: &mut BytesMut, out: &mut Results) -> bool {
    loop {
        match decoder.decode(buf) {
            Ok(None) => return true,
            Ok(Some(incoming)) => out.push(Ok(incoming)),
            Err(e) => {
                out.push(Err(e));
                return false;
            }
        }
    }
}

/// Feeds `stream` in chunks of the given sizes (cycled), as reads would deliver it.
fn decode_in_chunks(decoder: &mut Decoder, stream: &[u8], sizes: &[usize]) -> Results {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(usize::MAX)
            .clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if !drain(decoder, &mut buf, &mut out) {
            break;
        }
    }
    out
}

fn decode_whole(decoder: &mut Decoder, stream: &[u8]) -> Results {
    decode_in_chunks(decoder, stream, &[stream.len()])
}

fn deflate_params(client_no_context_takeover: bool) -> Deflate {
    Deflate {
        server_window_bits: 15,
        client_no_context_takeover,
    }
}

fn assert_close_codes(results: &Results) {
    for result in results {
        if let Err(e) = result {
            assert!(
                [
                    close_code::PROTOCOL,
                    close_code::INVALID_PAYLOAD,
                    close_code::TOO_BIG
                ]
                .contains(&e.close_code()),
                "{e:?} maps to {}",
                e.close_code()
            );
            assert!(!e.reason().is_empty());
        }
    }
}

/// One message of a stream: compressed or not, and how it is fragmented.
fn stream_message() -> impl Strategy<Value = (Message, bool, Fragmentation)> {
    (message(), any::<bool>(), fragmentation())
}

/// Streams of messages, compressed by a client with or without context takeover; returns the
/// bytes and what a decoder must yield for them.
fn client_stream(
    messages: &[(Message, bool, Fragmentation)],
    client: &mut Option<ClientDeflate>,
) -> (Vec<u8>, Vec<Incoming>) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (message, compress, fragmentation) in messages {
        let opcode = opcode_of(message);
        let pings = match client.as_mut().filter(|_| *compress) {
            Some(client) => {
                let compressed = client.message(message.as_bytes());
                fragmentation.write(&mut stream, opcode, true, &compressed)
            }
            None => fragmentation.write(&mut stream, opcode, false, message.as_bytes()),
        };
        expected.extend(pings.into_iter().map(Incoming::Ping));
        expected.push(Incoming::Data(message.clone()));
    }
    (stream, expected)
}

proptest! {
    #![proptest_config(config())]

    /// Any message, fragmented anywhere (inside a UTF-8 character too), masked with any
    /// masks, with pings between the fragments, decodes to the pings and then the message.
    #[test]
    fn any_fragmented_message_round_trips(
        message in message(),
        fragmentation in fragmentation(),
    ) {
        let mut stream = Vec::new();
        let pings = fragmentation.write(&mut stream, opcode_of(&message), false, message.as_bytes());
        let mut expected: Results = pings.into_iter().map(|p| Ok(Incoming::Ping(p))).collect();
        expected.push(Ok(Incoming::Data(message)));
        let mut decoder = Decoder::new(MAX, None);
        let mut buf = BytesMut::from(&stream[..]);
        let mut got = Vec::new();
        prop_assert!(drain(&mut decoder, &mut buf, &mut got));
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty());
    }

    /// A message compressed at any level and window (by the runtime's own compressor or a
    /// client's), RSV1 on the first frame only, fragmented anywhere, inflates unchanged.
    #[test]
    fn any_compressed_message_round_trips(
        message in message(),
        fragmentation in fragmentation(),
        level in 0..=9u32,
        window_bits in 9..=15u8,
        runtime_compressor in any::<bool>(),
    ) {
        let payload = message.as_bytes();
        let compressed = runtime_compressor
            .then(|| deflate::compress(payload, window_bits, level))
            .flatten()
            .unwrap_or_else(|| ClientDeflate::new(level, window_bits, false).message(payload));
        let mut stream = Vec::new();
        let pings = fragmentation.write(&mut stream, opcode_of(&message), true, &compressed);
        let mut expected: Results = pings.into_iter().map(|p| Ok(Incoming::Ping(p))).collect();
        expected.push(Ok(Incoming::Data(message)));
        for no_context_takeover in [false, true] {
            let mut decoder = Decoder::new(MAX, Some(&deflate_params(no_context_takeover)));
            prop_assert_eq!(&decode_whole(&mut decoder, &stream), &expected);
        }
    }

    /// Several messages from one client compressor (context taken over between messages
    /// unless the client offered not to; some messages sent uncompressed; some clients end
    /// every message with a final block) decode in order.
    #[test]
    fn compressed_conversations_round_trip(
        messages in vec(stream_message(), 1..4),
        level in 0..=9u32,
        window_bits in 9..=15u8,
        no_context_takeover in any::<bool>(),
        finish in any::<bool>(),
    ) {
        let mut client = Some(ClientDeflate::new(level, window_bits, finish));
        let (stream, expected) = client_stream(&messages, &mut client);
        if no_context_takeover {
            // Such a client resets its compressor after every message: compress again so.
            let mut stream = Vec::new();
            let mut expected_again = Vec::new();
            for m in &messages {
                let mut fresh = Some(ClientDeflate::new(level, window_bits, finish));
                let (s, e) = client_stream(std::slice::from_ref(m), &mut fresh);
                stream.extend_from_slice(&s);
                expected_again.extend(e);
            }
            let mut decoder = Decoder::new(MAX, Some(&deflate_params(true)));
            let got = decode_whole(&mut decoder, &stream);
            prop_assert_eq!(got, expected_again.into_iter().map(Ok).collect::<Results>());
        } else {
            let mut decoder = Decoder::new(MAX, Some(&deflate_params(false)));
            let got = decode_whole(&mut decoder, &stream);
            prop_assert_eq!(got, expected.into_iter().map(Ok).collect::<Results>());
        }
    }

    /// However the network splits a stream (down to single bytes), the decoder yields what it
    /// yields for the stream in one piece: messages, control frames, and the first error.
    #[test]
    fn chunking_does_not_change_the_results(
        messages in vec(stream_message(), 0..4),
        close in proptest::option::of((1000..=1003u16, vec(any::<u8>(), 0..20))),
        garbage in proptest::option::of((any::<Index>(), any::<u8>())),
        tail in vec(any::<u8>(), 0..16),
        sizes in vec(1..200usize, 1..8),
        max in prop_oneof![Just(MAX), 0..2000usize],
        deflate in any::<bool>(),
        level in 0..=9u32,
    ) {
        let mut client = deflate.then(|| ClientDeflate::new(level, 15, false));
        let (mut stream, _) = client_stream(&messages, &mut client);
        if let Some((code, reason)) = close {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(&reason);
            put_client_frame(&mut stream, FIN | OP_CLOSE, [1, 2, 3, 4], &payload);
        }
        if let Some((at, xor)) = garbage
            && !stream.is_empty()
        {
            let i = at.index(stream.len());
            stream[i] ^= xor;
        }
        stream.extend_from_slice(&tail);
        let params = deflate.then(|| deflate_params(false));
        let whole = decode_whole(&mut Decoder::new(max, params.as_ref()), &stream);
        let chunked = decode_in_chunks(&mut Decoder::new(max, params.as_ref()), &stream, &sizes);
        assert_close_codes(&whole);
        prop_assert_eq!(whole, chunked);
    }

    /// Arbitrary bytes never panic the decoder, with or without an inflater, and every error
    /// is a protocol error (1002), invalid UTF-8 (1007) or too big (1009).
    #[test]
    fn arbitrary_bytes_end_in_a_close_code(
        bytes in vec(any::<u8>(), 0..2048),
        sizes in vec(1..64usize, 1..4),
        max in prop_oneof![Just(MAX), 0..300usize],
        deflate in any::<bool>(),
    ) {
        let params = deflate.then(|| deflate_params(false));
        assert_close_codes(&decode_whole(&mut Decoder::new(max, params.as_ref()), &bytes));
        assert_close_codes(&decode_in_chunks(&mut Decoder::new(max, params.as_ref()), &bytes, &sizes));
    }

    /// Frames with arbitrary header bits, masking and declared lengths (up to 2^64 - 1) and
    /// arbitrary payloads: no panic, and only the three close codes.
    #[test]
    fn arbitrary_frames_end_in_a_close_code(
        start in proptest::option::of((any::<bool>(), vec(any::<u8>(), 1..50))),
        frames in vec(arbitrary_frame(), 0..8),
        max in prop_oneof![Just(MAX), 0..300usize],
        deflate in any::<bool>(),
    ) {
        // Often a message has begun, so the frames' continuations are taken as such.
        let mut stream = Vec::new();
        if let Some((compressed, payload)) = start {
            let compressed = compressed && deflate;
            let b0 = if compressed { OP_BINARY | RSV1 } else { OP_BINARY };
            put_client_frame(&mut stream, b0, [5, 6, 7, 8], &payload);
        }
        stream.extend(frames.concat());
        let params = deflate.then(|| deflate_params(false));
        assert_close_codes(&decode_whole(&mut Decoder::new(max, params.as_ref()), &stream));
    }

    /// A text message is accepted exactly when its bytes are UTF-8, however it is fragmented
    /// (compressed or not); so is a close frame's reason.
    #[test]
    fn text_is_accepted_iff_it_is_utf8(
        bytes in maybe_utf8(),
        fragmentation in fragmentation(),
        compressed in any::<bool>(),
        sizes in vec(1..64usize, 1..4),
    ) {
        let valid = std::str::from_utf8(&bytes).ok().map(str::to_owned);
        let mut stream = Vec::new();
        let fragmentation = Fragmentation { pings: Vec::new(), ..fragmentation };
        if compressed {
            let deflated = ClientDeflate::new(6, 15, false).message(&bytes);
            fragmentation.write(&mut stream, OP_TEXT, true, &deflated);
        } else {
            fragmentation.write(&mut stream, OP_TEXT, false, &bytes);
        }
        let expected = match &valid {
            Some(text) => Ok(Incoming::Data(Message::Text(text.clone()))),
            None => Err(FrameError::InvalidUtf8),
        };
        let params = compressed.then(|| deflate_params(false));
        for got in [
            decode_whole(&mut Decoder::new(MAX, params.as_ref()), &stream),
            decode_in_chunks(&mut Decoder::new(MAX, params.as_ref()), &stream, &sizes),
        ] {
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(&got[0], &expected);
        }

        let reason = &bytes[..bytes.len().min(123)];
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        let mut stream = Vec::new();
        put_client_frame(&mut stream, FIN | OP_CLOSE, [9, 8, 7, 6], &payload);
        let expected = match std::str::from_utf8(reason) {
            Ok(reason) => Ok(Incoming::Close(1000, reason.to_owned())),
            Err(_) => Err(FrameError::InvalidUtf8),
        };
        prop_assert_eq!(decode_whole(&mut Decoder::new(MAX, None), &stream), vec![expected]);
    }
}

/// One frame with arbitrary first byte, mask bit, declared length and payload.
fn arbitrary_frame() -> impl Strategy<Value = Vec<u8>> {
    let b0 = prop_oneof![
        1 => any::<u8>(),
        2 => proptest::sample::select(vec![
            OP_TEXT,
            OP_BINARY,
            OP_TEXT | RSV1,
            OP_BINARY | RSV1,
            FIN | OP_TEXT,
            FIN | OP_BINARY,
            FIN | RSV1 | OP_TEXT,
        ]),
        2 => proptest::sample::select(vec![OP_CONTINUATION, FIN | OP_CONTINUATION]),
        1 => proptest::sample::select(vec![FIN | OP_PING, FIN | OP_CLOSE, OP_PING]),
    ];
    let declared = prop_oneof![
        3 => Just(None),
        1 => (0..=125u64).prop_map(Some),
        1 => (126..=65_535u64).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
        2 => proptest::sample::select(vec![u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1])
            .prop_map(Some),
    ];
    (
        b0,
        prop::bool::weighted(0.95),
        declared,
        any::<[u8; 4]>(),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(|(b0, masked, declared, mask, payload)| {
            let mut out = vec![b0];
            let mask_bit = if masked { 0x80 } else { 0 };
            match declared.unwrap_or(payload.len() as u64) {
                n if n < 126 => out.push(mask_bit | n as u8),
                n if n <= u64::from(u16::MAX) => {
                    out.push(mask_bit | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(mask_bit | 127);
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            if masked {
                out.extend_from_slice(&mask);
            }
            out.extend_from_slice(&payload);
            out
        })
}

/// Bytes that are often UTF-8 and often only almost: valid text, text with one byte changed,
/// text cut anywhere, or arbitrary bytes.
fn maybe_utf8() -> impl Strategy<Value = Vec<u8>> {
    let text = || vec(any::<char>(), 0..100).prop_map(|c| String::from_iter(c).into_bytes());
    prop_oneof![
        text(),
        (text(), any::<Index>(), any::<u8>()).prop_map(|(mut b, at, byte)| {
            if !b.is_empty() {
                let i = at.index(b.len());
                b[i] = byte;
            }
            b
        }),
        (text(), any::<Index>()).prop_map(|(b, at)| b[..at.index(b.len() + 1)].to_vec()),
        vec(any::<u8>(), 0..100),
    ]
}

//! Requests and their replies (acknowledgements) on a service's own connection, both ways,
//! for the channel protocol (raw, JSON and typed services). The server and the typed client
//! encode and decode them here, and nowhere else.
//!
//! | message | shape | sent by |
//! |---|---|---|
//! | request | `{"$req":<id>,"data":<payload>}` | either side; the other side answers it |
//! | reply | `{"$ack":<id>,"data":<payload>}` | the side that was asked |
//! | failed reply | `{"$ack":<id>,"error":{"code":<string>,"message":<string>}}` | the side that was asked, when it cannot answer |
//!
//! `id` is an unsigned 64-bit integer the asking side chooses (the server counts from 1 on
//! each connection); a reply carries the id of its request. `data` is the request's or the
//! reply's payload: for a typed service, the JSON of its types. The two sides' ids are
//! independent: a reply answers a request the *other* side sent.
//!
//! A message is one of these only when it *starts* with the exact bytes `{"$req":` or
//! `{"$ack":` (what `JSON.stringify` and serde_json write for these objects), so telling
//! them from the service's own messages is a comparison of eight bytes, made only where a
//! request or a reply can be expected: a server looks for replies on a socket it has sent a
//! request to, and for requests only in a service that answers them. Anything else is the
//! service's own message, untouched.
//!
//! The managed protocol carries the same exchange in its own envelope: a request is an
//! event with a string `id`, its reply the event [`MANAGED_REPLY_EVENT`] with that `id`
//! (see the runtime's `managed` module).
//!
//! ```
//! use asena_protocol::ack::{self, Decoded};
//!
//! let request = ack::request(7, &serde_json::json!({"q": "ready?"})).unwrap();
//! assert_eq!(request, r#"{"$req":7,"data":{"q":"ready?"}}"#);
//! assert!(ack::is_request(request.as_bytes()));
//!
//! let reply = ack::reply(7, &true).unwrap();
//! match ack::decode(reply.as_bytes()).unwrap() {
//!     Decoded::Reply { id, data } => assert_eq!((id, data.get()), (7, "true")),
//!     other => panic!("{other:?}"),
//! }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// How every request starts.
pub const REQUEST_PREFIX: &[u8] = br#"{"$req":"#;
/// How every reply starts, failed or not.
pub const REPLY_PREFIX: &[u8] = br#"{"$ack":"#;
/// The event of a reply in the managed protocol: `{"event":"ack","id":<id>,"data":..}`.
pub const MANAGED_REPLY_EVENT: &str = "ack";
/// The most bytes of a failed reply's `code` and `message` kept when one is decoded (longer
/// ones are cut at a character boundary), so what a peer sends cannot make an error large.
pub const MAX_ERROR_TEXT: usize = 256;

/// Whether `bytes` is a request (`{"$req":` …).
#[inline]
pub fn is_request(bytes: &[u8]) -> bool {
    bytes.starts_with(REQUEST_PREFIX)
}

/// Whether `bytes` is a reply (`{"$ack":` …).
#[inline]
pub fn is_reply(bytes: &[u8]) -> bool {
    bytes.starts_with(REPLY_PREFIX)
}

/// Why the side that was asked did not answer with data: `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A short stable name: `handler_failed` (the handler failed or panicked),
    /// `not_answered` (the side does not answer requests), a decode error's code
    /// (`syntax`, `unknown_variant`, … when the request did not decode), or the peer's own.
    pub code: String,
    /// What went wrong, for people; at most [`MAX_ERROR_TEXT`] bytes once decoded.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            code: code.into(),
            message: message.into(),
        }
    }

    fn bounded(mut self) -> Failure {
        cut(&mut self.code);
        cut(&mut self.message);
        self
    }
}

fn cut(text: &mut String) {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// A request or a reply, decoded; the payload is borrowed from the message, as JSON text.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// `{"$req":id,"data":..}`.
    Request {
        /// The asking side's id.
        id: u64,
        /// The payload (`null` when absent).
        data: &'a RawValue,
    },
    /// `{"$ack":id,"data":..}`.
    Reply {
        /// The id of the request it answers.
        id: u64,
        /// The payload (`null` when absent).
        data: &'a RawValue,
    },
    /// `{"$ack":id,"error":{..}}`.
    Failed {
        /// The id of the request it answers.
        id: u64,
        /// Why (bounded).
        failure: Failure,
    },
}

/// Why a message that starts like a request or a reply is not one.
#[derive(Debug, thiserror::Error)]
pub enum MalformedError {
    /// Not a JSON object with an id that is an unsigned 64-bit integer (too large, negative,
    /// a string), or `error` is not `{"code","message"}`.
    #[error("not a request or reply: {0}")]
    Json(#[from] serde_json::Error),
    /// Neither `{"$req":` nor `{"$ack":`.
    #[error("not a request or reply")]
    NotAck,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "$req")]
    req: Option<u64>,
    #[serde(rename = "$ack")]
    ack: Option<u64>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    error: Option<Failure>,
}

const NULL: &str = "null";

fn null() -> &'static RawValue {
    // `RawValue::NULL` needs a newer serde_json than the workspace asks for.
    serde_json::from_str(NULL).expect("invariant: `null` is JSON")
}

/// Decodes a request or a reply (linear in the message: one serde_json pass, the payload
/// borrowed, not parsed).
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, MalformedError> {
    let text = std::str::from_utf8(bytes).map_err(|_| MalformedError::NotAck)?;
    let wire: Wire<'_> = serde_json::from_str(text)?;
    let data = || wire.data.unwrap_or_else(|| null());
    match (wire.req, wire.ack) {
        (Some(id), None) if is_request(bytes) => Ok(Decoded::Request { id, data: data() }),
        (None, Some(id)) if is_reply(bytes) => Ok(match wire.error {
            Some(failure) => Decoded::Failed {
                id,
                failure: failure.bounded(),
            },
            None => Decoded::Reply { id, data: data() },
        }),
        _ => Err(MalformedError::NotAck),
    }
}

/// Writes `{"<key>":id,"data":<json>}` from the payload's JSON text.
fn envelope(key: &str, id: u64, json: &str) -> String {
    let mut out = String::with_capacity(key.len() + json.len() + 32);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":");
    out.push_str(&id.to_string());
    out.push_str(",\"data\":");
    out.push_str(json);
    out.push('}');
    out
}

/// `{"$req":id,"data":<data>}`.
pub fn request<T: Serialize + ?Sized>(id: u64, data: &T) -> Result<String, serde_json::Error> {
    Ok(envelope("$req", id, &serde_json::to_string(data)?))
}

/// `{"$req":id,"data":<json>}` from a payload already encoded as JSON text.
pub fn request_json(id: u64, json: &str) -> String {
    envelope("$req", id, json)
}

/// `{"$ack":id,"data":<data>}`.
pub fn reply<T: Serialize + ?Sized>(id: u64, data: &T) -> Result<String, serde_json::Error> {
    Ok(reply_json(id, &serde_json::to_string(data)?))
}

/// `{"$ack":id,"data":<json>}` from a payload already encoded as JSON text.
pub fn reply_json(id: u64, json: &str) -> String {
    envelope("$ack", id, json)
}

/// `{"$ack":id,"error":{"code","message"}}`.
pub fn failed(id: u64, failure: &Failure) -> String {
    #[derive(Serialize)]
    struct Failed<'a> {
        #[serde(rename = "$ack")]
        id: u64,
        error: &'a Failure,
    }
    serde_json::to_string(&Failed { id, error: failure })
        .expect("invariant: an id and two strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = request(1, &serde_json::json!([1, 2])).expect("json");
        assert!(
            matches!(decode(r.as_bytes()), Ok(Decoded::Request { id: 1, data }) if data.get() == "[1,2]")
        );
        let f = failed(u64::MAX, &Failure::new("handler_failed", "x"));
        assert_eq!(
            f,
            r#"{"$ack":18446744073709551615,"error":{"code":"handler_failed","message":"x"}}"#
        );
        assert!(matches!(
            decode(f.as_bytes()),
            Ok(Decoded::Failed { id: u64::MAX, .. })
        ));
        assert!(matches!(
            decode(br#"{"$ack":3}"#),
            Ok(Decoded::Reply { id: 3, data }) if data.get() == "null"
        ));
    }

    #[test]
    fn ids_beyond_u64_and_other_shapes_are_malformed() {
        for bad in [
            &br#"{"$ack":18446744073709551616,"data":1}"#[..],
            br#"{"$ack":-1,"data":1}"#,
            br#"{"$ack":"7","data":1}"#,
            br#"{"$ack":1,"$req":2}"#,
            br#"{"data":1,"$ack":1}"#,
            br#"{"$ack":1,"error":"no"}"#,
            b"{\"$ack\":1",
            b"\xff",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let huge = format!(r#"{{"$ack":{}}}"#, "9".repeat(100_000));
        assert!(decode(huge.as_bytes()).is_err());
    }

    #[test]
    fn a_long_failure_is_cut() {
        let long = "é".repeat(1000);
        let f = failed(1, &Failure::new(long.clone(), long));
        let Ok(Decoded::Failed { failure, .. }) = decode(f.as_bytes()) else {
            panic!("a failed reply");
        };
        assert!(failure.code.len() <= MAX_ERROR_TEXT && failure.message.len() <= MAX_ERROR_TEXT);
    }
}

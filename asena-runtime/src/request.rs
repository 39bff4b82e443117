//! What the framework keeps of an upgrade request: the peer address, path, headers, query and
//! path parameters, and the subprotocol chosen for it, shared by the middleware
//! [`Context`](crate::Context) and the socket.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};

/// What we know about the upgrade request of a connection. Kept for the socket's lifetime,
/// so kept small: the headers packed into one allocation, the pairs in exact-size slices.
#[derive(Debug, Default)]
pub(crate) struct RequestInfo {
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) path: Arc<str>,
    pub(crate) headers: Headers,
    pub(crate) query: Box<[(String, String)]>,
    pub(crate) params: Box<[(String, String)]>,
    /// The path parameters deserialized into the service's `params` type (`()` when it
    /// declares none); the upgrade always sets them.
    pub(crate) typed_params: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// The subprotocol chosen at the upgrade: an entry of the service's `PROTOCOLS`.
    pub(crate) protocol: Option<&'static str>,
}

/// The first value for `key` in decoded request pairs (query or path parameters).
pub(crate) fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name`, from every `Cookie` header.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The largest request head (request line and headers, 32 KiB) the server reads, and the
/// most an upgrade may carry: a socket keeps its request's headers and query for its life.
pub(crate) const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// The most query pairs an upgrade request may carry (64). The pairs are kept for the
/// socket's life, and a pair costs about 50 bytes more than its text: without a bound a 64 KiB
/// query of `a&a&a…` would keep some 2.5 MB per socket.
pub(crate) const MAX_QUERY_PAIRS: usize = 64;

/// Decodes a query string (`a=1&b=x%20y`) into pairs, in order; `None` when it holds more
/// than [`MAX_QUERY_PAIRS`] (decoding stops there).
pub(crate) fn parse_query_bounded(query: Option<&str>) -> Option<Vec<(String, String)>> {
    let Some(query) = query else {
        return Some(Vec::new());
    };
    let pairs: Vec<(String, String)> = pairs(query).take(MAX_QUERY_PAIRS + 1).collect();
    (pairs.len() <= MAX_QUERY_PAIRS).then_some(pairs)
}

/// The decoded pairs of a query string, in order, as they are read.
fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// Decodes a query string (`a=1&b=x%20y`) into pairs, in order.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query.map(|q| pairs(q).collect()).unwrap_or_default()
}

/// The headers of an upgrade request, packed into one allocation: a `HeaderMap` of the few
/// headers of a typical upgrade is about 600 bytes in a dozen allocations (its buckets are
/// sized for growth), held by every socket for its lifetime, while handlers rarely look at
/// it. [`Headers::map`] builds the `HeaderMap` on first use; [`Headers::get`] reads the
/// packed form directly. Copying also lets go of hyper's 8 KiB read buffer, which the
/// request's own header values are views into.
///
/// The headers of the handshake itself ([`HANDSHAKE_ONLY`]) are left out: they only say that
/// this was a WebSocket upgrade (what it negotiated is the socket's state), and in a
/// typical upgrade they are most of the bytes every socket would keep.
#[derive(Default)]
pub(crate) struct Headers {
    /// Per header, in order: a sensitivity flag byte, the name's and the value's lengths
    /// (`u32`, little endian), the name, the value.
    packed: Box<[u8]>,
    map: OnceLock<Box<HeaderMap>>,
}

/// Upgrade request headers a socket does not keep (see [`Headers`]).
pub(crate) const HANDSHAKE_ONLY: [HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::UPGRADE,
    http::header::SEC_WEBSOCKET_KEY,
    http::header::SEC_WEBSOCKET_VERSION,
    http::header::SEC_WEBSOCKET_EXTENSIONS,
];

impl Headers {
    pub(crate) fn new(headers: &HeaderMap) -> Headers {
        let kept = || {
            headers
                .iter()
                .filter(|(name, _)| !HANDSHAKE_ONLY.contains(name))
        };
        let len = kept()
            .map(|(name, value)| 9 + name.as_str().len() + value.len())
            .sum();
        let mut packed = Vec::with_capacity(len);
        for (name, value) in kept() {
            let (name, sensitive, value) = (name.as_str(), value.is_sensitive(), value.as_bytes());
            packed.push(u8::from(sensitive));
            packed.extend_from_slice(&(name.len() as u32).to_le_bytes());
            packed.extend_from_slice(&(value.len() as u32).to_le_bytes());
            packed.extend_from_slice(name.as_bytes());
            packed.extend_from_slice(value);
        }
        Headers {
            packed: packed.into_boxed_slice(),
            map: OnceLock::new(),
        }
    }

    /// (sensitive, name, value) per header, in order.
    fn entries(&self) -> impl Iterator<Item = (bool, &[u8], &[u8])> {
        let mut rest = &self.packed[..];
        std::iter::from_fn(move || {
            let (head, tail) = rest.split_at_checked(9)?;
            let len = |at: usize| {
                u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]) as usize
            };
            let (name, tail) = tail.split_at(len(1));
            let (value, tail) = tail.split_at(len(5));
            rest = tail;
            Some((head[0] != 0, name, value))
        })
    }

    /// The headers as a `HeaderMap` (built on first use, then kept).
    pub(crate) fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = HeaderMap::new();
            for (sensitive, name, value) in self.entries() {
                // Both were valid in the request they were copied from.
                if let (Ok(name), Ok(mut value)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    value.set_sensitive(sensitive);
                    map.append(name, value);
                }
            }
            Box::new(map)
        })
    }

    /// The first value of header `name` (any case), if it is visible ASCII like
    /// [`HeaderValue::to_str`] requires.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let (_, _, value) = self
            .entries()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name.as_bytes()))?;
        let visible = value.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
        if visible {
            std::str::from_utf8(value).ok()
        } else {
            None
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.map(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_headers_read_back_as_the_request_had_them() {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("example.com:80"));
        map.append("x-multi", HeaderValue::from_static("one"));
        map.append("x-multi", HeaderValue::from_static("two"));
        let mut secret = HeaderValue::from_static("Bearer abc");
        secret.set_sensitive(true);
        map.insert("authorization", secret);
        map.insert(
            "x-bytes",
            HeaderValue::from_bytes(b"caf\xc3\xa9").expect("a valid value"),
        );
        map.insert("x-empty", HeaderValue::from_static(""));

        let headers = Headers::new(&map);
        assert_eq!(headers.get("Host"), Some("example.com:80"));
        assert_eq!(headers.get("x-multi"), Some("one"), "the first value wins");
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(
            headers.get("x-bytes"),
            None,
            "not visible ASCII, like to_str()"
        );
        assert_eq!(headers.get("x-missing"), None);

        let rebuilt = headers.map();
        assert_eq!(rebuilt, &map);
        assert!(rebuilt["authorization"].is_sensitive());
        let all: Vec<_> = rebuilt.get_all("x-multi").iter().collect();
        assert_eq!(all, ["one", "two"]);
        assert!(std::ptr::eq(rebuilt, headers.map()), "built once");

        let empty = Headers::new(&HeaderMap::new());
        assert_eq!(empty.get("host"), None);
        assert!(empty.map().is_empty());
    }

    #[test]
    fn the_handshake_headers_are_not_kept() {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("example.com:80"));
        for name in &HANDSHAKE_ONLY {
            map.insert(name, HeaderValue::from_static("x"));
        }
        map.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        let headers = Headers::new(&map);
        for name in &HANDSHAKE_ONLY {
            assert_eq!(headers.get(name.as_str()), None, "{name}");
        }
        assert_eq!(headers.get("host"), Some("example.com:80"));
        assert_eq!(headers.get("sec-websocket-protocol"), Some("chat"));
        assert_eq!(headers.map().len(), 2);
    }
}

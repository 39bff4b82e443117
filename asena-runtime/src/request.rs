//! What the framework keeps of an upgrade request: the peer address, path, headers, query and
//! path parameters, and the subprotocol chosen for it, shared by the middleware
//! [`Context`](crate::Context) and the socket.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};

/// What we know about the upgrade request of a connection.
#[derive(Debug, Default)]
pub(crate) struct RequestInfo {
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) params: Vec<(String, String)>,
    /// The path parameters deserialized into the service's `params` type (none for `()`).
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

/// Decodes a query string (`a=1&b=x%20y`) into pairs, in order.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Copies the request headers into their own small allocations. hyper's header values are
/// views into its 8 KiB connection read buffer, so keeping the original map for the socket's
/// lifetime would keep that whole buffer alive for every idle socket.
pub(crate) fn compact_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

//! The Origin policy of an upgrade request: which browser pages may open a socket.
//!
//! Browsers send cookies and HTTP credentials with a WebSocket upgrade to any site, whichever
//! page opens it; the `Origin` header they add is the server's only way to tell its own pages
//! from another site's (cross-site WebSocket hijacking). Non-browser clients send no `Origin`
//! and are let through by every policy: the policy guards browsers, authentication guards the
//! rest.
//!
//! | policy | an `Origin` header is allowed when |
//! |---|---|
//! | [`SameOrigin`](OriginPolicy::SameOrigin) (the default) | its host and port equal the request's `Host` (default ports filled in from the Origin's scheme, host names compared case-insensitively) |
//! | [`AllowList`](OriginPolicy::AllowList) | it equals an entry, ASCII case-insensitively, or an entry is `*` |
//! | [`Any`](OriginPolicy::Any) | always (no check) |
//!
//! Under the first two, an `Origin` that is not visible ASCII, not a serialized origin
//! (`null`, a URL with a path, credentials or no host), or sent twice is refused: it is never
//! read as absent. A refused request is answered 403 `{"error":"Origin not allowed"}`.
//! Behind a proxy that rewrites `Host`, the Origin can never match: list the public origins
//! with [`allowed_origins`](crate::AsenaBuilder::allowed_origins).
//!
//! The check parses at most two short header values with the `url` crate: linear in their
//! length, and HTTP bounds header sizes before the request gets here.

use std::sync::Arc;

use http::{HeaderMap, header};
use url::Url;

/// Which `Origin`s an upgrade request may carry (module docs).
#[derive(Debug, Clone, Default)]
pub(crate) enum OriginPolicy {
    /// The Origin's host and port must be the request's `Host`.
    #[default]
    SameOrigin,
    /// The Origin must be one of these (or one is `*`).
    AllowList(Arc<[String]>),
    /// Every Origin is allowed.
    Any,
}

impl OriginPolicy {
    /// Whether a request with these headers passes the policy.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        if matches!(self, OriginPolicy::Any) {
            return true;
        }
        let mut values = headers.get_all(header::ORIGIN).iter();
        let Some(value) = values.next() else {
            // Non-browser clients send no Origin; the policy guards browsers.
            return true;
        };
        if values.next().is_some() {
            return false;
        }
        let Ok(origin) = value.to_str() else {
            return false;
        };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList(allowed) => allowed
                .iter()
                .any(|a| a == "*" || a.eq_ignore_ascii_case(origin)),
            OriginPolicy::SameOrigin => same_origin(origin, headers),
        }
    }
}

/// Whether `origin` (a serialized origin: `scheme://host[:port]`) names the host and port of
/// the request's `Host` header.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(origin) = parse_origin(origin) else {
        return false;
    };
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    // An authority only: a Host with a path, query, credentials or a scheme is malformed.
    if host.is_empty() || host.contains(['/', '?', '#', '@', '\\']) {
        return false;
    }
    // The Host read with the Origin's scheme: a port it leaves out is that scheme's default,
    // and the host name is normalised the same way (case, IDNA, IPv6 brackets).
    let Ok(request) = Url::parse(&format!("{}://{host}", origin.scheme())) else {
        return false;
    };
    request.host() == origin.host()
        && request.port_or_known_default() == origin.port_or_known_default()
}

/// An `Origin` value as a URL: `http(s)://host[:port]`, nothing else (no credentials, path,
/// query or fragment; `null` and opaque origins are not).
fn parse_origin(origin: &str) -> Option<Url> {
    let url = Url::parse(origin).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && !origin.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none();
    plain.then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&[u8]>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(
                header::HOST,
                HeaderValue::from_str(host).expect("a header value"),
            );
        }
        if let Some(origin) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_bytes(origin).expect("a header value"),
            );
        }
        h
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let p = OriginPolicy::SameOrigin;
        let ok = |host: &str, origin: &str| p.allows(&headers(Some(host), Some(origin.as_bytes())));
        assert!(p.allows(&headers(Some("a.example"), None)));
        assert!(ok("a.example", "https://a.example"));
        assert!(ok("A.EXAMPLE:443", "https://a.example"));
        assert!(ok("a.example", "http://a.example:80"));
        assert!(ok("127.0.0.1:3000", "http://127.0.0.1:3000"));
        assert!(ok("[::1]:3000", "http://[::1]:3000"));
        assert!(!ok("a.example", "https://b.example"));
        assert!(!ok("a.example:3000", "http://a.example:3001"));
        assert!(!ok("a.example:80", "https://a.example"));
        assert!(!ok("a.example", "https://a.example/"));
        assert!(!ok("a.example", "https://a.example/path"));
        assert!(!ok("a.example", "https://u:p@a.example"));
        assert!(!ok("a.example", "null"));
        assert!(!ok("a.example", "file:///etc/passwd"));
        assert!(!ok("a.example/x", "https://a.example"));
        assert!(!ok("u@a.example", "https://a.example"));
        assert!(!ok("", "https://a.example"));
        assert!(!p.allows(&headers(None, Some(b"https://a.example"))));
        assert!(!p.allows(&headers(Some("a.example"), Some(b"https://a.example\xff"))));
    }

    #[test]
    fn allow_list_and_any() {
        let list = OriginPolicy::AllowList(Arc::from(vec!["https://app.example".to_owned()]));
        assert!(list.allows(&headers(None, None)));
        assert!(list.allows(&headers(None, Some(b"https://APP.example"))));
        assert!(!list.allows(&headers(None, Some(b"https://evil.example"))));
        assert!(!list.allows(&headers(None, Some(b"https://app.example\xff"))));
        let mut twice = headers(None, Some(b"https://app.example"));
        twice.append(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert!(!list.allows(&twice));
        assert!(OriginPolicy::Any.allows(&headers(None, Some(b"\xff"))));
        assert!(OriginPolicy::Any.allows(&twice));
    }
}

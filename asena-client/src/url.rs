//! The URL a client connects to: the base URL (parsed by the `url` crate), the channel's
//! path with its `{params}` filled in, and the query.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use url::Url;

use crate::ClientError;

/// What a path parameter's value keeps as it is: RFC 3986's unreserved characters; every
/// other byte is percent-encoded, `/` included, so a value is one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed base URL: `ws://` or `wss://`, host and port, an optional path prefix and query.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    url: Url,
}

impl Base {
    /// Parses `ws[s]://host[:port][/prefix][?query]`; `http://` is taken as `ws://` and
    /// `https://` as `wss://`.
    pub(crate) fn parse(text: &str) -> Result<Base, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: text.to_owned(),
            reason,
        };
        let mut url = Url::parse(text).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                bad("expected `ws://host:port` or `wss://host:port`".to_owned())
            }
            url::ParseError::EmptyHost => bad("no host".to_owned()),
            other => bad(other.to_string()),
        })?;
        let scheme = match url.scheme() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            _ => return Err(bad("the scheme must be `ws://` or `wss://`".to_owned())),
        };
        url.set_scheme(scheme)
            .map_err(|()| bad("the scheme must be `ws://` or `wss://`".to_owned()))?;
        if url.fragment().is_some() {
            return Err(bad("a WebSocket URL has no fragment (`#...`)".to_owned()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials in the URL are not sent; use `.header(\"authorization\", ..)`"
                    .to_owned(),
            ));
        }
        Ok(Base { url })
    }

    /// Whether the URL asks for TLS (`wss://`).
    pub(crate) fn is_tls(&self) -> bool {
        self.url.scheme() == "wss"
    }

    /// The full URL for `path` (already filled in and encoded) under the base URL's path
    /// prefix, with the `query` pairs (form-encoded) after the base URL's own query.
    pub(crate) fn join(&self, path: &str, query: &[(String, String)]) -> String {
        let mut url = self.url.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url.into()
    }
}

/// Fills `{name}` (and `{*name}`, which may span segments) in `pattern` from `params`, the
/// JSON form of the channel's `Params`; each value is percent-encoded as a path segment.
pub(crate) fn fill_path(pattern: &'static str, params: &Value) -> Result<String, ClientError> {
    let empty = serde_json::Map::new();
    let map = match params {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            return Err(ClientError::InvalidParam {
                path: pattern,
                name: String::new(),
                reason: format!(
                    "the params must serialize to a struct or a map, found {}",
                    kind(other)
                ),
            });
        }
    };
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| ClientError::InvalidParam {
            path: pattern,
            name: String::new(),
            reason: "unbalanced `{` in the path".to_owned(),
        })?;
        let raw_name = &after[..close];
        let (name, wildcard) = match raw_name.strip_prefix('*') {
            Some(name) => (name, true),
            None => (raw_name, false),
        };
        let value = map.get(name).ok_or_else(|| ClientError::MissingParam {
            path: pattern,
            name: name.to_owned(),
        })?;
        let invalid = |reason: String| ClientError::InvalidParam {
            path: pattern,
            name: name.to_owned(),
            reason,
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(invalid(format!(
                    "must be a string, number or boolean, found {}",
                    kind(other)
                )));
            }
        };
        if text.is_empty() {
            return Err(invalid(
                "is empty; an empty path segment matches no route".to_owned(),
            ));
        }
        if wildcard {
            let segments: Vec<String> = text.split('/').map(encode_segment).collect();
            out.push_str(&segments.join("/"));
        } else {
            out.push_str(&encode_segment(&text));
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_and_encodes_params() {
        let path = fill_path("/user/{id}/room/{room}", &json!({"id": 7, "room": "a b/c"})).unwrap();
        assert_eq!(path, "/user/7/room/a%20b%2Fc");
        assert_eq!(fill_path("/chat", &json!(null)).unwrap(), "/chat");
        assert_eq!(
            fill_path("/files/{*rest}", &json!({"rest": "a/b c"})).unwrap(),
            "/files/a/b%20c"
        );
    }

    #[test]
    fn a_missing_param_is_named() {
        let e = fill_path("/user/{id}", &json!({"room": "x"})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the path `/user/{id}` needs the parameter `id`"),
            "{e}"
        );
        let e = fill_path("/user/{id}", &json!(null)).unwrap_err();
        assert!(matches!(e, ClientError::MissingParam { .. }), "{e}");
    }

    #[test]
    fn params_of_the_wrong_shape_are_refused() {
        let e = fill_path("/user/{id}", &json!({"id": [1]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "path parameter `id` of `/user/{id}`: must be a string, number or boolean, found an array"
        );
        assert!(fill_path("/user/{id}", &json!({"id": ""})).is_err());
        assert!(fill_path("/user/{id}", &json!(5)).is_err());
    }

    #[test]
    fn joins_base_path_and_query() {
        let base = Base::parse("ws://127.0.0.1:3000").unwrap();
        let q = vec![("username".to_owned(), "al ice&co".to_owned())];
        assert_eq!(
            base.join("/chat/r1", &q),
            "ws://127.0.0.1:3000/chat/r1?username=al+ice%26co"
        );
        let base = Base::parse("http://host/api/?v=1").unwrap();
        assert_eq!(
            base.join("/chat", &q),
            "ws://host/api/chat?v=1&username=al+ice%26co"
        );
        assert_eq!(base.join("/chat", &[]), "ws://host/api/chat?v=1");
        // Encoded parameters stay as they are.
        assert_eq!(
            base.join("/user/a%20b%2Fc", &[]),
            "ws://host/api/user/a%20b%2Fc?v=1"
        );
        let tls = Base::parse("https://example.com:8443").unwrap();
        assert!(tls.is_tls());
        assert_eq!(tls.join("/chat", &[]), "wss://example.com:8443/chat");
        assert!(!base.is_tls());
    }

    #[test]
    fn bad_base_urls_say_why() {
        let e = Base::parse("127.0.0.1:3000").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad URL `127.0.0.1:3000`: expected `ws://host:port` or `wss://host:port`"
        );
        for (url, why) in [
            ("ftp://x", "scheme"),
            ("ws://", "no host"),
            ("ws://host/chat#top", "fragment"),
            ("ws://user:secret@host", "credentials"),
        ] {
            let e = Base::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}

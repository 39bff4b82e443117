//! The URL a client connects to: the base URL, the channel's path with its `{params}` filled
//! in, and the query.

use serde_json::Value;

use crate::Error;

/// A parsed base URL: `ws://host:port` plus an optional path prefix and query.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// `ws://host:port` (no trailing slash).
    origin: String,
    /// A path prefix without trailing slash (`/api`), or empty.
    prefix: String,
    /// The base URL's own query, without `?`, or empty.
    query: String,
}

impl Base {
    /// Parses `ws://host[:port][/prefix][?query]`; `http://` is taken as `ws://`.
    pub(crate) fn parse(url: &str) -> Result<Base, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected `ws://host:port`"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => "ws",
            "wss" | "https" => {
                return Err(bad(
                    "wss:// needs TLS, which this build of asena-client does not include",
                ));
            }
            _ => return Err(bad("the scheme must be `ws://`")),
        };
        if rest.contains('#') {
            return Err(bad("a WebSocket URL has no fragment (`#...`)"));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        Ok(Base {
            origin: format!("{scheme}://{authority}"),
            prefix: path.trim_end_matches('/').to_owned(),
            query: query.to_owned(),
        })
    }

    /// The full URL for `path` (already filled in) with the `query` pairs appended.
    pub(crate) fn join(&self, path: &str, query: &[(String, String)]) -> Result<String, Error> {
        let mut url = format!("{}{}{}", self.origin, self.prefix, path);
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        pairs.extend_pairs(query);
        let pairs = pairs.finish();
        let query = match (self.query.is_empty(), pairs.is_empty()) {
            (true, true) => String::new(),
            (false, true) => self.query.clone(),
            (true, false) => pairs,
            (false, false) => format!("{}&{pairs}", self.query),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url.parse::<tokio_tungstenite::tungstenite::http::Uri>()
            .map_err(|e| Error::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok(url)
    }
}

/// Fills `{name}` (and `{*name}`, which may span segments) in `pattern` from `params`, the
/// JSON form of the channel's `Params`; each value is percent-encoded as a path segment.
pub(crate) fn fill_path(pattern: &'static str, params: &Value) -> Result<String, Error> {
    let empty = serde_json::Map::new();
    let map = match params {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            return Err(Error::InvalidParam {
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
        let close = after.find('}').ok_or_else(|| Error::InvalidParam {
            path: pattern,
            name: String::new(),
            reason: "unbalanced `{` in the path".to_owned(),
        })?;
        let raw_name = &after[..close];
        let (name, wildcard) = match raw_name.strip_prefix('*') {
            Some(name) => (name, true),
            None => (raw_name, false),
        };
        let value = map.get(name).ok_or_else(|| Error::MissingParam {
            path: pattern,
            name: name.to_owned(),
        })?;
        let invalid = |reason: String| Error::InvalidParam {
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
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
        assert!(matches!(e, Error::MissingParam { .. }), "{e}");
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
            base.join("/chat/r1", &q).unwrap(),
            "ws://127.0.0.1:3000/chat/r1?username=al+ice%26co"
        );
        let base = Base::parse("http://host/api/?v=1").unwrap();
        assert_eq!(
            base.join("/chat", &q).unwrap(),
            "ws://host/api/chat?v=1&username=al+ice%26co"
        );
        assert_eq!(base.join("/chat", &[]).unwrap(), "ws://host/api/chat?v=1");
    }

    #[test]
    fn bad_base_urls_say_why() {
        let e = Base::parse("127.0.0.1:3000").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad URL `127.0.0.1:3000`: expected `ws://host:port`"
        );
        assert!(
            Base::parse("ftp://x")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
        assert!(
            Base::parse("wss://x")
                .unwrap_err()
                .to_string()
                .contains("TLS")
        );
        assert!(
            Base::parse("ws:///chat")
                .unwrap_err()
                .to_string()
                .contains("no host")
        );
    }
}

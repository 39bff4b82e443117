//! How the inspector's requests carry its token: an `Authorization: Bearer` header (scripts,
//! curl) or the inspector's cookie (the page in a browser), never the URL.
//!
//! - `POST <path>/login` with a form body `token=<token>` (the login page's form) runs the
//!   guard on the token as if it came as a bearer token; when the guard lets it through, the
//!   answer is `303` to the page with the cookie [`COOKIE`] set (`HttpOnly`, so the page's
//!   scripts never see it; `SameSite=Strict`, so no other site's page sends it;
//!   `Path=<path>`), holding the token base64url-encoded. A login from another origin is
//!   refused with 403, a refused token answers the login page again with the guard's status.
//! - `POST <path>/logout` clears the cookie.
//! - Every other request: a request without `Authorization` that carries the cookie is handed
//!   to the guard with `Authorization: Bearer <the cookie's token>`, so a guard checks one
//!   place ([`Context::bearer_token`](crate::Context::bearer_token)), and the feed's
//!   WebSocket authenticates by the cookie the browser sends with the upgrade.
//! - A request whose query names `token` is refused with 400 before the guard runs: a token
//!   in a URL ends up in logs, history and `Referer` headers, so it must not work even once.
//!
//! The cookie holds the token itself, not a session: the guard sees every request, and
//! changing the token logs every browser out. Serve the inspector over HTTPS (the cookie is
//! marked `Secure` when the request arrived as `https`, as a proxy's `X-Forwarded-Proto`
//! says).

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::middleware::TokenGuard;
use crate::ws::origin::OriginPolicy;

/// The name of the inspector's cookie.
pub(crate) const COOKIE: &str = "asena_inspector";

/// The login page: a form that posts the token to `<path>/login`.
const LOGIN_PAGE: &str = include_str!("login.html");

/// The inspector's ready-made guard: a [`TokenGuard`], the name kept for apps that guard
/// the inspector with it. The login cookie reaches the guard as a bearer token, so the
/// guard needs no cookie name here.
///
/// ```
/// use asena_runtime::{Asena, InspectorToken};
/// # fn builder() -> asena_runtime::AsenaBuilder {
/// let token = std::env::var("INSPECTOR_TOKEN").unwrap_or_default();
/// Asena::builder().inspector("/_asena", InspectorToken::new(token))
/// # }
/// ```
pub type InspectorToken = TokenGuard;

/// Refuses a request whose query names `token` (module docs), before anything else runs.
pub(crate) async fn refuse_token_in_url(req: Request, next: Next) -> Response<Body> {
    let query = crate::request::parse_query(req.uri().query());
    if query.iter().any(|(k, _)| k == "token") {
        return super::error(
            StatusCode::BAD_REQUEST,
            "The inspector's token goes in an Authorization: Bearer header or its login cookie, \
             never in the URL"
                .to_owned(),
        );
    }
    next.run(req).await
}

/// Hands the cookie's token to the guard as a bearer token, when the request has no
/// `Authorization` of its own.
pub(crate) fn cookie_as_bearer(headers: &mut HeaderMap) {
    if headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let Some(token) = cookie_token(headers) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, value);
    }
}

/// The token in the inspector's cookie, if one is there and decodes to visible ASCII.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let encoded = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })?;
    let token = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())).then_some(token)
}

/// What a login form posted: its token, with the headers the guard sees (`Authorization`
/// set to it). `None` when the body holds no token.
pub(crate) fn login_headers(headers: &HeaderMap, body: &[u8]) -> Option<(String, HeaderMap)> {
    let token = form_urlencoded::parse(body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|t| !t.is_empty())?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    let mut headers = headers.clone();
    headers.insert(header::AUTHORIZATION, bearer);
    Some((token, headers))
}

/// Whether a login request came from a page of this app (a login from another site's page
/// would log the operator's browser into someone else's session).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    OriginPolicy::SameOrigin.allows(headers)
}

/// `303` to the page, setting the cookie to `token` (or clearing it).
pub(crate) fn redirect_with_cookie(
    base: &str,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Response<Body> {
    let path = if base.is_empty() { "/" } else { base };
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let value = match token {
        Some(token) => URL_SAFE_NO_PAD.encode(token),
        None => String::new(),
    };
    let mut cookie = format!("{COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if token.is_none() {
        cookie.push_str("; Max-Age=0");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, format!("{base}/"))
        .header(header::SET_COOKIE, cookie)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The login page with `status` (the guard's refusal), `failed` when a token was refused.
pub(crate) fn login_page(base: &str, status: StatusCode, failed: bool) -> Response<Body> {
    let message = if failed {
        "That token was refused."
    } else {
        "Sign in with the inspector's token."
    };
    let body = LOGIN_PAGE
        .replace("{{action}}", &html_escape(&format!("{base}/login")))
        .replace("{{message}}", message);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        // Not `no-referrer`: under it browsers send `Origin: null` with the form's POST, which
        // the login's same-origin check refuses.
        .header("referrer-policy", "same-origin")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        )
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(cookie).expect("a value"),
        );
        h
    }

    #[test]
    fn the_cookie_becomes_a_bearer_token() {
        let encoded = URL_SAFE_NO_PAD.encode("s3cret");
        let mut h = with_cookie(&format!("a=b; {COOKIE}={encoded}; c=d"));
        cookie_as_bearer(&mut h);
        assert_eq!(h[header::AUTHORIZATION], "Bearer s3cret");
        // An Authorization of the request's own wins.
        let mut h = with_cookie(&format!("{COOKIE}={encoded}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        cookie_as_bearer(&mut h);
        assert_eq!(h[header::AUTHORIZATION], "Bearer other");
        // What does not decode to a token is ignored.
        for bad in [
            "!!!",
            "",
            &URL_SAFE_NO_PAD.encode("a b"),
            &URL_SAFE_NO_PAD.encode([0xff]),
        ] {
            let mut h = with_cookie(&format!("{COOKIE}={bad}"));
            cookie_as_bearer(&mut h);
            assert!(!h.contains_key(header::AUTHORIZATION), "{bad:?}");
        }
    }

    #[test]
    fn a_login_form_posts_a_token() {
        let (token, h) = login_headers(&HeaderMap::new(), b"token=a%2Bb%20").expect("a token");
        assert_eq!(token, "a+b");
        assert_eq!(h[header::AUTHORIZATION], "Bearer a+b");
        assert!(login_headers(&HeaderMap::new(), b"token=").is_none());
        assert!(login_headers(&HeaderMap::new(), b"other=x").is_none());
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let resp = redirect_with_cookie("/_asena", &HeaderMap::new(), Some("t"));
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let cookie = resp.headers()[header::SET_COOKIE].to_str().expect("ASCII");
        assert_eq!(
            cookie,
            format!("{COOKIE}=dA; Path=/_asena; HttpOnly; SameSite=Strict")
        );
        let out = redirect_with_cookie("/_asena", &HeaderMap::new(), None);
        let cookie = out.headers()[header::SET_COOKIE].to_str().expect("ASCII");
        assert!(cookie.ends_with("Max-Age=0"), "{cookie}");
    }
}

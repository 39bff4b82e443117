//! The `auth` example's contract (documented in `examples/auth/app.rs`) and its three-middleware chain, over real
//! sockets and raw HTTP.
#![allow(clippy::unwrap_used)]

#[path = "../examples/auth/app.rs"]
#[allow(dead_code)]
mod auth;

use asena_tests::{Client, TestServer, header_values, json_body, start, upgrade_request};
use serde_json::{Value, json};

async fn server() -> anyhow::Result<TestServer> {
    start(auth::builder().without_auto_registration()).await
}

/// No extra request headers.
const NO_HEADERS: &[(&str, &str)] = &[];

fn authenticated() -> Value {
    json!({"type": "authenticated", "userId": "123", "username": "john_doe"})
}

/// No token is 401 `Unauthorized`, a wrong one 401 `Invalid token`; no socket opens.
#[tokio::test]
async fn no_token_is_401_unauthorized_and_a_wrong_one_invalid_token() -> anyhow::Result<()> {
    let s = server().await?;
    // A non-Bearer Authorization header carries no token either.
    let basic = [("Authorization", "Basic dXNlcjpwYXNz")];
    let wrong_bearer = [("Authorization", "Bearer nope")];
    for (path, headers, error) in [
        ("/private", NO_HEADERS, "Unauthorized"),
        ("/private?token=", NO_HEADERS, "Unauthorized"),
        ("/private", &basic[..], "Unauthorized"),
        ("/private?token=nope", NO_HEADERS, "Invalid token"),
        ("/private", &wrong_bearer[..], "Invalid token"),
    ] {
        let (status, resp) = upgrade_request(s.addr, path, headers).await?;
        assert_eq!(status, 401, "{path} {headers:?}");
        let body = json_body(&resp);
        assert_eq!(body, json!({"error": error}), "{path} {headers:?}");
    }
    assert_eq!(s.app.namespace("/private").expect("ns").socket_count(), 0);
    s.stop().await
}

/// A valid token in the query or as a bearer: the socket opens, is told who it is, and
/// answers `ping` and `whoami`.
#[tokio::test]
async fn valid_query_or_bearer_token_opens_and_authenticates() -> anyhow::Result<()> {
    let s = server().await?;
    let bearer = [("Authorization", "Bearer valid-token")];
    for (path, headers) in [
        ("/private?token=valid-token", NO_HEADERS),
        ("/private", &bearer[..]),
    ] {
        let mut c = Client::connect_with_headers(&s.ws_url(path), headers).await?;
        assert_eq!(c.recv_json().await?, authenticated(), "{path}");
        c.send_json(&json!({"type": "ping"})).await?;
        assert_eq!(c.recv_json().await?, json!({"type": "pong"}), "{path}");
        c.send_json(&json!({"type": "whoami"})).await?;
        let whoami = json!({"type": "whoami", "userId": "123", "username": "john_doe"});
        assert_eq!(c.recv_json().await?, whoami, "{path}");
    }
    s.stop().await
}

#[tokio::test]
async fn secure_chain_runs_logging_then_auth_then_rate_limit() -> anyhow::Result<()> {
    let s = server().await?;
    let (status, resp) = upgrade_request(s.addr, "/secure?token=valid-token", &[]).await?;
    assert_eq!(status, 101, "{resp}");
    assert_eq!(
        header_values(&resp, "x-middleware"),
        ["logging", "auth", "rate-limit"]
    );
    let mut c = s.connect("/secure?token=valid-token").await?;
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "welcome", "username": "john_doe"})
    );
    c.send_text("hi").await?;
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "echo", "username": "john_doe", "message": "hi"})
    );
    s.stop().await
}

#[tokio::test]
async fn rate_limit_answers_429_after_the_quota_and_auth_runs_first() -> anyhow::Result<()> {
    let s = server().await?;
    let max = auth::RateLimit::MAX_PER_WINDOW;
    // Unauthenticated requests are refused by auth before they count against the quota.
    for _ in 0..max + 2 {
        let (status, _) = upgrade_request(s.addr, "/secure?token=nope", &[]).await?;
        assert_eq!(status, 401);
    }
    for i in 0..max {
        let (status, resp) = upgrade_request(s.addr, "/secure?token=valid-token", &[]).await?;
        assert_eq!(status, 101, "connection {i}: {resp}");
    }
    let (status, resp) = upgrade_request(s.addr, "/secure?token=valid-token", &[]).await?;
    assert_eq!(status, 429);
    assert_eq!(json_body(&resp), json!({"error": "Too Many Requests"}));
    let retry: u64 = header_values(&resp, "retry-after")
        .first()
        .expect("Retry-After")
        .parse()?;
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // Still 401 (not 429) for a bad token: auth runs before the rate limit.
    let (status, _) = upgrade_request(s.addr, "/secure?token=nope", &[]).await?;
    assert_eq!(status, 401);
    // The limit is per service chain: /private is unaffected.
    let mut c = s.connect("/private?token=valid-token").await?;
    assert_eq!(c.recv_json().await?, authenticated());
    s.stop().await
}

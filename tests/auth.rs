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

fn authenticated() -> Value {
    json!({"type": "authenticated", "userId": "123", "username": "john_doe"})
}

#[tokio::test]
async fn no_token_is_401_unauthorized() -> anyhow::Result<()> {
    let s = server().await?;
    for path in ["/private", "/private?token="] {
        let (status, resp) = upgrade_request(s.addr, path, &[]).await?;
        assert_eq!(status, 401, "{path}");
        assert_eq!(json_body(&resp), json!({"error": "Unauthorized"}), "{path}");
    }
    // A non-Bearer Authorization header carries no token either.
    let (status, resp) = upgrade_request(
        s.addr,
        "/private",
        &[("Authorization", "Basic dXNlcjpwYXNz")],
    )
    .await?;
    assert_eq!(status, 401);
    assert_eq!(json_body(&resp), json!({"error": "Unauthorized"}));
    assert_eq!(s.app.namespace("/private").expect("ns").socket_count(), 0);
    s.stop().await
}

#[tokio::test]
async fn wrong_token_is_401_invalid_token() -> anyhow::Result<()> {
    let s = server().await?;
    let (status, resp) = upgrade_request(s.addr, "/private?token=nope", &[]).await?;
    assert_eq!(status, 401);
    assert_eq!(json_body(&resp), json!({"error": "Invalid token"}));
    let (status, resp) =
        upgrade_request(s.addr, "/private", &[("Authorization", "Bearer nope")]).await?;
    assert_eq!(status, 401);
    assert_eq!(json_body(&resp), json!({"error": "Invalid token"}));
    assert_eq!(s.app.namespace("/private").expect("ns").socket_count(), 0);
    s.stop().await
}

#[tokio::test]
async fn valid_query_token_opens_and_authenticates() -> anyhow::Result<()> {
    let s = server().await?;
    let mut c = s.connect("/private?token=valid-token").await?;
    assert_eq!(c.recv_json().await?, authenticated());
    c.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(c.recv_json().await?, json!({"type": "pong"}));
    s.stop().await
}

#[tokio::test]
async fn valid_bearer_token_opens_and_authenticates() -> anyhow::Result<()> {
    let s = server().await?;
    let mut c = Client::connect_with_headers(
        &s.ws_url("/private"),
        &[("Authorization", "Bearer valid-token")],
    )
    .await?;
    assert_eq!(c.recv_json().await?, authenticated());
    c.send_json(&json!({"type": "whoami"})).await?;
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "whoami", "userId": "123", "username": "john_doe"})
    );
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

//! The `notifications` example's contract (documented in `examples/notifications/app.rs`): sockets, `POST /admin/announcement`
//! and `PUT /users/{id}/profile`, over real sockets and raw HTTP.
#![allow(clippy::unwrap_used)]

#[path = "../examples/notifications/app.rs"]
#[allow(dead_code)]
mod notifications;

use asena_tests::{Client, TestServer, eventually, in_order, start};
use serde_json::{Value, json};

async fn server() -> anyhow::Result<TestServer> {
    start(notifications::builder().without_auto_registration()).await
}

async fn subscriber(s: &TestServer, user: &str) -> anyhow::Result<Client> {
    let mut c = s
        .connect(&format!("/ws/notifications?userId={user}"))
        .await?;
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "connected", "message": "Connected to notification system"})
    );
    Ok(c)
}

/// A server with one [`subscriber`], `user`.
async fn server_with_subscriber(user: &str) -> anyhow::Result<(TestServer, Client)> {
    let s = server().await?;
    let c = subscriber(&s, user).await?;
    Ok((s, c))
}

/// Connects a [`subscriber`] for each user, in order.
async fn subscribers<const N: usize>(
    s: &TestServer,
    users: [&str; N],
) -> anyhow::Result<[Client; N]> {
    in_order(users, async |user| subscriber(s, user).await).await
}

/// `method path` with the JSON `body`, answered with a 200; returns the answer's JSON.
async fn request_ok(
    s: &TestServer,
    method: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let resp = s.request(method, path, Some(&body)).await?;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()
}

fn is_iso8601(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| humantime::parse_rfc3339(t).is_ok() && t.ends_with('Z'))
}

#[tokio::test]
async fn connect_joins_rooms_and_ping_pongs() -> anyhow::Result<()> {
    let (s, mut c) = server_with_subscriber("42").await?;
    c.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(c.recv_json().await?, json!({"type": "pong"}));
    let ns = s.app.namespace("/ws/notifications").expect("ns");
    let rooms: Vec<String> = ns.rooms().into_iter().map(|r| r.name).collect();
    assert_eq!(rooms, ["announcements", "user:42"]);
    s.stop().await
}

#[tokio::test]
async fn announcement_reaches_every_socket() -> anyhow::Result<()> {
    let s = server().await?;
    let [mut a, mut b] = subscribers(&s, ["1", "2"]).await?;
    let answer = request_ok(
        &s,
        "POST",
        "/admin/announcement",
        json!({"message": "Maintenance at noon"}),
    )
    .await?;
    assert_eq!(answer, json!({"success": true}));
    for c in [&mut a, &mut b] {
        let m = c.recv_json().await?;
        assert_eq!(m["type"], "announcement");
        assert_eq!(m["message"], "Maintenance at noon");
        assert!(is_iso8601(&m["timestamp"]), "{m}");
        assert_eq!(m.as_object().map(|o| o.len()), Some(3), "{m}");
    }
    s.stop().await
}

#[tokio::test]
async fn profile_update_reaches_only_that_users_sockets() -> anyhow::Result<()> {
    let s = server().await?;
    let [mut u7a, mut u7b, mut u8] = subscribers(&s, ["7", "7", "8"]).await?;
    let answer = request_ok(&s, "PUT", "/users/7/profile", json!({"name": "Ada"})).await?;
    assert_eq!(answer["success"], true);
    for c in [&mut u7a, &mut u7b] {
        let m = c.recv_json().await?;
        assert_eq!(m["type"], "profile_updated");
        assert!(m["message"].is_string());
        assert!(is_iso8601(&m["timestamp"]), "{m}");
    }
    // User 8 got nothing: its next message is the answer to its own ping.
    u8.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(u8.recv_json().await?, json!({"type": "pong"}));
    // The socket service reads the profile through the injected UserService.
    u7a.send_json(&json!({"type": "profile"})).await?;
    assert_eq!(
        u7a.recv_json().await?,
        json!({"type": "profile", "profile": {"name": "Ada"}})
    );
    s.stop().await
}

#[tokio::test]
async fn user_service_sends_through_ulak_not_the_socket_service() -> anyhow::Result<()> {
    let (s, mut c) = server_with_subscriber("9").await?;
    let users = s
        .app
        .get::<notifications::UserService>()
        .expect("UserService");
    assert_eq!(users.announce("direct")?, 1);
    assert_eq!(c.recv_json().await?["message"], "direct");
    assert_eq!(users.update_profile("nobody", json!({}))?, 0);
    c.close().await?;
    let ns = s.app.namespace("/ws/notifications").expect("ns");
    eventually(|| ns.socket_count() == 0 && ns.room_count() == 0).await?;
    s.stop().await
}

#[tokio::test]
async fn bad_announcement_body_is_refused() -> anyhow::Result<()> {
    let (s, mut c) = server_with_subscriber("1").await?;
    let resp = s
        .request("POST", "/admin/announcement", Some(&json!({})))
        .await?;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.body
    );
    // Nothing was sent.
    c.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(c.recv_json().await?, json!({"type": "pong"}));
    s.stop().await
}

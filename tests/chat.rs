//! The `chat` example's contract (documented in `examples/chat/app.rs`), over real sockets.

#[path = "../examples/chat/app.rs"]
#[allow(dead_code)]
mod chat;

use asena_tests::chat::{join, private, private_message};
use asena_tests::{Client, TestServer, start};
use serde_json::{Value, json};

async fn server() -> anyhow::Result<TestServer> {
    start(chat::builder().without_auto_registration()).await
}

/// A server with alice and bob in `r1`, once alice has heard bob join; bob's welcome.
async fn alice_and_bob() -> anyhow::Result<(TestServer, Client, Client, Value)> {
    let s = server().await?;
    let (mut alice, _) = join(&s, "alice", "r1").await?;
    let (bob, bob_welcome) = join(&s, "bob", "r1").await?;
    alice.recv_type("user_joined").await?;
    Ok((s, alice, bob, bob_welcome))
}

#[tokio::test]
async fn welcome_and_join_notice() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, welcome) = join(&s, "alice", "r1").await?;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["message"], "Welcome to r1, alice!");
    assert_eq!(welcome["users"], json!(["alice"]));
    assert_eq!(welcome["id"].as_str().map(str::len), Some(36));

    let (_bob, welcome) = join(&s, "bob", "r1").await?;
    let mut users: Vec<String> = serde_json::from_value(welcome["users"].clone())?;
    users.sort();
    assert_eq!(users, vec!["alice", "bob"]);
    let joined = alice.recv_json().await?;
    assert_eq!(joined["type"], "user_joined");
    assert_eq!(joined["username"], "bob");
    assert!(
        joined["timestamp"]
            .as_str()
            .is_some_and(|t| t.contains('T'))
    );
    s.stop().await
}

#[tokio::test]
async fn messages_go_to_others_in_the_room_only() -> anyhow::Result<()> {
    let (s, mut alice, mut bob, _) = alice_and_bob().await?;
    let (mut carol, _) = join(&s, "carol", "other").await?;

    alice
        .send_json(&json!({"type": "message", "message": "hi"}))
        .await?;
    let m = bob.recv_json().await?;
    assert_eq!(m["type"], "message");
    assert_eq!(m["username"], "alice");
    assert_eq!(m["message"], "hi");
    assert!(m["timestamp"].is_string());
    // Neither the sender nor another room got it: their next message is the pong.
    alice.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(alice.recv_json().await?, json!({"type": "pong"}));
    carol.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(carol.recv_json().await?, json!({"type": "pong"}));
    s.stop().await
}

#[tokio::test]
async fn typing_room_info_and_private() -> anyhow::Result<()> {
    let (s, mut alice, mut bob, bob_welcome) = alice_and_bob().await?;

    alice.send_json(&json!({"type": "typing"})).await?;
    assert_eq!(
        bob.recv_json().await?,
        json!({"type": "typing", "username": "alice"})
    );

    bob.send_json(&json!({"type": "room_info"})).await?;
    assert_eq!(
        bob.recv_json().await?,
        json!({"type": "room_info", "room": "r1", "totalUsers": 2})
    );

    let bob_id = bob_welcome["id"].as_str().unwrap_or_default();
    let got = private(&mut alice, &mut bob, bob_id, "psst").await?;
    assert_eq!(got, private_message("alice", "psst"));
    s.stop().await
}

#[tokio::test]
async fn bad_input_gets_errors_and_socket_stays_open() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, _) = join(&s, "alice", "r1").await?;
    for (input, error) in [
        ("{not json", "Invalid message format"),
        (r#"{"type":"dance"}"#, "Unknown message type: dance"),
        (r#"{"message":"no type"}"#, "Message type is required"),
    ] {
        alice.send_text(input).await?;
        assert_eq!(
            alice.recv_json().await?,
            json!({"type": "error", "message": error}),
            "{input}"
        );
    }
    alice.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(alice.recv_json().await?, json!({"type": "pong"}));
    s.stop().await
}

#[tokio::test]
async fn leaving_notifies_the_room_and_defaults_apply() -> anyhow::Result<()> {
    let s = server().await?;
    let mut anon = s.connect("/chat").await?;
    let welcome = anon.recv_json().await?;
    assert_eq!(welcome["message"], "Welcome to general, Anonymous!");
    let (bob, _) = join(&s, "bob", "general").await?;
    anon.recv_type("user_joined").await?;
    bob.close().await?;
    assert_eq!(
        anon.recv_json().await?,
        json!({"type": "user_left", "username": "bob"})
    );
    s.stop().await
}

#[tokio::test]
async fn serves_the_browser_page() -> anyhow::Result<()> {
    let s = server().await?;
    // `/` is a plain page: the upgrade headers are ignored and HTML comes back.
    let response = s.upgrade_answered("/", 200).await?;
    for id in [
        "username", "room", "join", "message", "send", "messages", "users",
    ] {
        assert!(
            response.body.contains(&format!("id=\"{id}\"")),
            "missing #{id}"
        );
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_wants_the_token_as_a_bearer_never_in_the_query() -> anyhow::Result<()> {
    let s = start(chat::builder_with_inspector("open-sesame").without_auto_registration()).await?;
    let get = |path: &str, bearer: Option<&str>| {
        let mut req = hyper::Request::get(s.http_url(path));
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        asena_tests::http_request(req.body(Default::default()).expect("request"))
    };
    for (path, bearer) in [
        ("/_asena/api/fleet", None),
        ("/_asena/api/fleet", Some("open-sesamE")),
        ("/_asena/api/sockets", Some("")),
    ] {
        let refused = get(path, bearer).await?;
        assert_eq!(refused.status, 401, "{path}: {refused}");
        assert_eq!(refused.json()?, json!({"error": "Unauthorized"}));
    }
    // The page without a token is the login form; a token in the URL never counts.
    assert_eq!(get("/_asena", None).await?.status, 401);
    for path in ["/_asena?token=open-sesame", "/_asena/api/sockets?token="] {
        assert_eq!(get(path, None).await?.status, 400, "{path}");
    }
    s.upgrade_answered("/_asena/ws", 401).await?;

    let page = get("/_asena", Some("open-sesame")).await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Asena inspector"));
    let (alice, _) = join(&s, "alice", "r1").await?;
    let sockets = get("/_asena/api/sockets?ns=/chat", Some("open-sesame")).await?;
    assert_eq!(sockets.status, 200, "{sockets}");
    assert_eq!(sockets.json()?["sockets"][0]["rooms"], json!(["r1"]));
    let mut feed = Client::connect_with_headers(
        &s.ws_url("/_asena/ws"),
        &[("authorization", "Bearer open-sesame")],
    )
    .await?;
    assert_eq!(feed.recv_type("fleet").await?["instances"][0]["self"], true);
    // The chat's own routes stay open.
    assert_eq!(get("/metrics", None).await?.status, 200);
    alice.close().await?;
    s.stop().await
}

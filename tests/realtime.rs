//! The `realtime` example's contract (documented in `examples/realtime/app.rs`), over real
//! sockets: tokens, the room validator, `say`, presence (one instance, and two sharing Redis),
//! notifications to every session of a user, the served files, the configured timeouts, and
//! two instances on the managed Redis bus (rooms, presence and `Emitter::to_user` across them).

#[path = "../examples/realtime/app.rs"]
#[allow(dead_code)]
mod realtime;

use std::time::Duration;

use asena_tests::broker::REDIS;
use asena_tests::managed::{raw_sender, with_token_users};
use asena_tests::{
    Client, TestServer, event, managed_login, managed_login_closed, serve, stop_all, unique,
    validate_asyncapi,
};
use realtime::Options;
use serde_json::{Value, json};

async fn server_with(options: Options) -> anyhow::Result<TestServer> {
    serve(realtime::build(realtime::builder().without_auto_registration(), options).await?).await
}

async fn server() -> anyhow::Result<TestServer> {
    server_with(Options::default()).await
}

/// Connects to `/ws` and authenticates with `token`; returns the client and `connected`.
async fn sign_in(s: &TestServer, token: &str) -> anyhow::Result<(Client, Value)> {
    managed_login(s, "/ws", json!({"type": "token", "token": token})).await
}

/// A [`server`] with each of `users` signed in with its `U-token`, in order.
async fn with_users<const N: usize>(users: [&str; N]) -> anyhow::Result<(TestServer, [Client; N])> {
    with_token_users(server().await?, "/ws", users).await
}

/// The next message that is not a presence snapshot.
async fn next_not_presence(c: &mut Client) -> anyhow::Result<Value> {
    loop {
        let m = c.recv_json().await?;
        if m["event"] != "presence" {
            return Ok(m);
        }
    }
}

/// Asks to join `rooms`; returns the answer, the next message that is not a presence
/// snapshot.
async fn join(c: &mut Client, rooms: &[&str]) -> anyhow::Result<Value> {
    c.send_json(&event("join", json!({"rooms": rooms}))).await?;
    next_not_presence(c).await
}

/// `from`, signed in as `name`, says `text` in `room`; `to` hears it next (presence snapshots
/// aside).
async fn say_to(
    from: &mut Client,
    name: &str,
    room: &str,
    text: &str,
    to: &mut Client,
) -> anyhow::Result<()> {
    from.send_json(&event("say", json!({"room": room, "text": text})))
        .await?;
    assert_eq!(
        next_not_presence(to).await?,
        event("said", json!({"room": room, "from": name, "text": text}))
    );
    Ok(())
}

/// The options of an instance keeping presence in a hash of the shared Redis that no other
/// test uses.
fn redis_presence() -> Options {
    Options {
        presence_redis: Some(REDIS.to_owned()),
        presence_key: unique("realtime-test"),
        ..Options::default()
    }
}

/// Deletes the presence hash of `options` (and its version) from Redis.
async fn delete_presence(options: &Options) -> anyhow::Result<()> {
    let mut redis = redis::Client::open(REDIS)?
        .get_multiplexed_async_connection()
        .await?;
    let key = &options.presence_key;
    let () = redis::cmd("DEL")
        .arg(key)
        .arg(format!("{key}:version"))
        .query_async(&mut redis)
        .await?;
    Ok(())
}

/// The next presence snapshot's users (other messages are an error).
async fn presence(c: &mut Client) -> anyhow::Result<(Vec<String>, u64)> {
    let m = c.recv_json().await?;
    anyhow::ensure!(m["event"] == "presence", "expected presence, got {m}");
    let online = serde_json::from_value(m["data"]["online"].clone())?;
    let version = m["data"]["version"].as_u64().unwrap_or_default();
    Ok((online, version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_tokens_are_users_and_others_close_4003() -> anyhow::Result<()> {
    let s = server().await?;
    let (_alice, connected) = sign_in(&s, "alice-token").await?;
    assert_eq!(connected["data"]["userId"], "alice");
    let (_bob, connected) = sign_in(&s, "bob-token").await?;
    assert_eq!(connected["data"]["userId"], "bob");
    for token in [json!("carol-token"), json!(""), Value::Null] {
        assert_eq!(
            managed_login_closed(&s, "/ws", json!({"token": token})).await?,
            (4003, "Authentication failed".into()),
            "{token}"
        );
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_and_public_rooms_are_allowed_the_rest_denied() -> anyhow::Result<()> {
    let (s, [mut alice]) = with_users(["alice"]).await?;
    assert_eq!(
        join(
            &mut alice,
            &["lobby", "public-1", "secret", "private-1", "publicity"]
        )
        .await?,
        event(
            "join",
            json!({"rooms": ["lobby", "public-1"], "denied": ["secret", "private-1", "publicity"]})
        )
    );
    alice
        .send_json(&event("leave", json!({"rooms": ["public-1", "secret"]})))
        .await?;
    assert_eq!(
        next_not_presence(&mut alice).await?,
        event("leave", json!({"rooms": ["public-1"]}))
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn say_reaches_the_room_but_not_the_sender() -> anyhow::Result<()> {
    let (s, [mut alice, mut bob]) = with_users(["alice", "bob"]).await?;
    for c in [&mut alice, &mut bob] {
        assert_eq!(join(c, &["public-1"]).await?["event"], "join");
    }
    // Everyone is in the default room `lobby`.
    say_to(&mut alice, "alice", "lobby", "hi all", &mut bob).await?;
    say_to(&mut bob, "bob", "public-1", "hi", &mut alice).await?;
    // Neither sender got its own line: the next answer is to its next request.
    for c in [&mut alice, &mut bob] {
        c.send_json(&event("say", json!({"room": "public-9", "text": "x"})))
            .await?;
        assert_eq!(
            next_not_presence(c).await?,
            event("error", json!({"message": "Not in room public-9"}))
        );
    }
    // The text's length is checked.
    alice
        .send_json(&event("say", json!({"room": "lobby", "text": ""})))
        .await?;
    let e = next_not_presence(&mut alice).await?;
    assert_eq!(
        (&e["event"], &e["data"]["code"]),
        (&json!("error"), &json!("constraint"))
    );
    alice
        .send_json(&event(
            "say",
            json!({"room": "lobby", "text": "x".repeat(501)}),
        ))
        .await?;
    assert_eq!(
        next_not_presence(&mut alice).await?["data"]["code"],
        "constraint"
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_users_not_sessions() -> anyhow::Result<()> {
    let (s, [mut alice]) = with_users(["alice"]).await?;
    let (online, v1) = presence(&mut alice).await?;
    assert_eq!(online, vec!["alice"]);

    let (mut bob, _) = sign_in(&s, "bob-token").await?;
    let (online, v2) = presence(&mut bob).await?;
    assert_eq!(online, vec!["alice", "bob"]);
    assert!(v2 > v1);
    assert_eq!(presence(&mut alice).await?, (online.clone(), v2));

    // A second session of alice: only it gets the list; nobody else hears of it.
    let (mut alice2, _) = sign_in(&s, "alice-token").await?;
    assert_eq!(presence(&mut alice2).await?.0, vec!["alice", "bob"]);
    alice2.close().await?;
    // bob's next presence is alice going offline, not her second session.
    alice.close().await?;
    let (online, v3) = presence(&mut bob).await?;
    assert_eq!(online, vec!["bob"]);
    assert!(v3 > v2);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_reaches_every_session_of_the_user() -> anyhow::Result<()> {
    let (s, [mut alice1, mut alice2, mut bob]) = with_users(["alice", "alice", "bob"]).await?;
    // What the emit example's `--user alice --event notification` delivers, sent in process.
    let managed = raw_sender::<realtime::Realtime>(&s)?;
    let notification = event("notification", json!({"message": "hello"}));
    assert_eq!(
        managed.to_user("alice", ("notification", json!({"message": "hello"})))?,
        2
    );
    assert_eq!(next_not_presence(&mut alice1).await?, notification);
    assert_eq!(next_not_presence(&mut alice2).await?, notification);
    // bob got nothing: his next message answers his own request.
    assert_eq!(join(&mut bob, &[]).await?["event"], "join");
    // The typed variant is the same message.
    let typed = serde_json::to_value(realtime::RealtimeOut::Notification {
        message: "hello".into(),
    })?;
    assert_eq!(typed, notification);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_the_client_and_the_document_are_served() -> anyhow::Result<()> {
    let s = server().await?;
    let page = s.get("/").await?;
    assert_eq!(page.status, 200);
    for id in [
        "token",
        "signin",
        "room",
        "join",
        "leave",
        "message",
        "send",
        "messages",
        "online",
        "notifications",
        "status",
    ] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    assert!(page.body.contains("src=\"/client.js\""));
    let client = s.get("/client.js").await?;
    assert_eq!(client.status, 200);
    assert!(
        asena_tests::header_values(&client, "content-type")
            .iter()
            .any(|v| v.starts_with("text/javascript"))
    );
    assert!(client.body.contains("class ManagedClient"));
    assert_eq!(
        s.get("/config.json").await?.json()?,
        json!({"authTimeoutMs": 5000, "heartbeatTimeoutMs": 30000})
    );
    let doc = s.get("/asyncapi.json").await?.json()?;
    let messages = doc["channels"]["Realtime"]["messages"]
        .as_object()
        .map(|m| {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort();
            keys
        })
        .unwrap_or_default();
    // The app's events (the managed protocol adds its own, such as `send.error`).
    for expected in [
        "receive.say",
        "send.said",
        "send.presence",
        "send.notification",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected}: {messages:?}"
        );
    }
    validate_asyncapi(&[("realtime", doc)])?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeouts_are_the_configured_ones() -> anyhow::Result<()> {
    let s = server_with(Options {
        auth_timeout: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_millis(600),
        ..Options::default()
    })
    .await?;
    let config = s.get("/config.json").await?;
    assert_eq!(
        config.json()?,
        json!({"authTimeoutMs": 200, "heartbeatTimeoutMs": 600})
    );
    let started = tokio::time::Instant::now();
    let mut silent = s.connect("/ws").await?;
    assert_eq!(
        silent.recv_close().await?,
        (4001, "Authentication timeout".into())
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let (mut alice, _) = sign_in(&s, "alice-token").await?;
    // Heartbeats every 150 ms for 1.2 s (twice the timeout) keep her.
    let mut ticker = tokio::time::interval(Duration::from_millis(150));
    for _ in 0..8 {
        ticker.tick().await;
        alice.send_json(&json!({"event": "heartbeat"})).await?;
    }
    assert_eq!(join(&mut alice, &["lobby"]).await?["event"], "join");
    // Then silence.
    assert_eq!(
        alice.recv_close().await?,
        (4002, "Heartbeat timeout".into())
    );
    s.stop().await
}

/// A presence hash of this test alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_in_redis_spans_instances() -> anyhow::Result<()> {
    let options = redis_presence();
    let key = options.presence_key.clone();
    let one = server_with(options.clone()).await?;
    let two = server_with(options.clone()).await?;
    let (mut alice, _) = sign_in(&one, "alice-token").await?;
    assert_eq!(presence(&mut alice).await?.0, vec!["alice"]);
    // bob, on the other instance, sees alice too.
    let (mut bob, _) = sign_in(&two, "bob-token").await?;
    let (online, _) = presence(&mut bob).await?;
    assert_eq!(online, vec!["alice", "bob"]);
    // A second session of alice on instance two is counted, not announced.
    let (mut alice2, _) = sign_in(&two, "alice-token").await?;
    assert_eq!(presence(&mut alice2).await?.0, vec!["alice", "bob"]);

    let mut redis = redis::Client::open(REDIS)?
        .get_multiplexed_async_connection()
        .await?;
    let counts: std::collections::BTreeMap<String, i64> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut redis)
        .await?;
    assert_eq!(counts, [("alice".into(), 2), ("bob".into(), 1)].into());

    // Sessions closing are counted out; the hash empties with the last one.
    alice.close().await?;
    alice2.close().await?;
    bob.close().await?;
    asena_tests::until_some(Duration::from_secs(5), "no user online", async || {
        let len: i64 = redis::cmd("HLEN").arg(&key).query_async(&mut redis).await?;
        Ok((len == 0).then_some(()))
    })
    .await?;
    delete_presence(&options).await?;
    stop_all([one, two]).await
}

/// Skips messages until a presence snapshot listing exactly `users`.
async fn presence_until(c: &mut Client, users: &[&str]) -> anyhow::Result<()> {
    loop {
        let m = c.recv_json().await?;
        if m["event"] == "presence" && m["data"]["online"] == json!(users) {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_rooms_presence_and_notifications() -> anyhow::Result<()> {
    let options = redis_presence();
    // What `ASENA_TRANSPORT=redis://…` gives `main`: the managed services' Redis bus.
    let instance = || async {
        let builder = realtime::builder()
            .without_auto_registration()
            .transport(asena_runtime::transport::RedisTransport::new(REDIS));
        serve(realtime::build(builder, options.clone()).await?).await
    };
    let one = instance().await?;
    let two = instance().await?;

    let (mut alice, _) = sign_in(&one, "alice-token").await?;
    presence_until(&mut alice, &["alice"]).await?;
    let (mut bob, _) = sign_in(&two, "bob-token").await?;
    presence_until(&mut bob, &["alice", "bob"]).await?;
    // bob coming online on instance two is broadcast to instance one.
    presence_until(&mut alice, &["alice", "bob"]).await?;

    // A room spans the instances; the sender is still excluded.
    for c in [&mut alice, &mut bob] {
        assert_eq!(join(c, &["public-fleet"]).await?["event"], "join");
    }
    say_to(&mut alice, "alice", "public-fleet", "across", &mut bob).await?;

    // `emit --user alice --event notification`: every session of alice, on both instances.
    let (mut alice2, _) = sign_in(&two, "alice-token").await?;
    let emitter = asena_runtime::transport::Emitter::connect(REDIS).await?;
    emitter
        .managed("ws")
        .to_user("alice", ("notification", json!({"message": "hello"})))
        .await?;
    emitter.close().await;
    let notification = event("notification", json!({"message": "hello"}));
    assert_eq!(next_not_presence(&mut alice).await?, notification);
    assert_eq!(next_not_presence(&mut alice2).await?, notification);
    // Neither bob nor alice (the sender of `say`) got anything else.
    for c in [&mut bob, &mut alice] {
        assert_eq!(join(c, &[]).await?["event"], "join");
    }

    // bob leaving instance two is broadcast to instance one.
    bob.close().await?;
    presence_until(&mut alice, &["alice"]).await?;

    alice.close().await?;
    alice2.close().await?;
    one.stop().await?;
    two.stop().await?;
    delete_presence(&options).await
}

//! The `realtime` example's contract (documented in `examples/realtime/app.rs`), over real
//! sockets: tokens, the room validator, `say`, who is online (the runtime's presence in the
//! lobby), notifications to every session of a user, the served files, the configured
//! timeouts, and two instances on Redis (rooms, who is online and `Emitter::to_user` across
//! them).

#[path = "../examples/realtime/app.rs"]
#[allow(dead_code)]
mod realtime;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use asena_tests::broker::REDIS;
use asena_tests::managed::{raw_sender, with_token_users};
use asena_tests::{
    Client, TestServer, event, managed_login, managed_login_closed, serve, stop_all,
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

/// Whether `m` is a presence event.
fn is_presence(m: &Value) -> bool {
    m["event"] == "presence_state" || m["event"] == "presence_diff"
}

/// The next message that is not a presence event.
async fn next_not_presence(c: &mut Client) -> anyhow::Result<Value> {
    loop {
        let m = c.recv_json().await?;
        if !is_presence(&m) {
            return Ok(m);
        }
    }
}

/// Asks to join `rooms`; returns the answer, the next message that is not a presence
/// event.
async fn join(c: &mut Client, rooms: &[&str]) -> anyhow::Result<Value> {
    c.send_json(&event("join", json!({"rooms": rooms}))).await?;
    next_not_presence(c).await
}

/// `from`, signed in as `name`, says `text` in `room`; `to` hears it next (presence events
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

/// Who one client heard is online in the lobby: user → the refs of its sessions, from its
/// `presence_state` and the `presence_diff`s after it.
#[derive(Debug, Default)]
struct Online(BTreeMap<String, BTreeSet<String>>);

impl Online {
    /// Reads `c`'s presence events until the lobby holds exactly `users` (each with its number
    /// of sessions); any other message is an error.
    async fn until(&mut self, c: &mut Client, users: &[(&str, usize)]) -> anyhow::Result<()> {
        while self.users() != users {
            let m = c.recv_json().await?;
            anyhow::ensure!(is_presence(&m), "expected presence, got {m}");
            let data = &m["data"];
            assert_eq!(data["room"], "lobby", "{m}");
            if m["event"] == "presence_state" {
                self.0.clear();
                self.add(&data["state"]);
            } else {
                self.remove(&data["leaves"]);
                self.add(&data["joins"]);
            }
        }
        Ok(())
    }

    fn users(&self) -> Vec<(&str, usize)> {
        self.0
            .iter()
            .map(|(u, refs)| (u.as_str(), refs.len()))
            .collect()
    }

    /// Each meta has the time it came online and its ref.
    fn metas(list: &Value) -> impl Iterator<Item = (String, String)> + '_ {
        list.as_object()
            .into_iter()
            .flatten()
            .flat_map(|(user, entry)| {
                entry["metas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |meta| {
                        assert!(
                            meta["since"]
                                .as_u64()
                                .is_some_and(|t| t > 1_700_000_000_000),
                            "{meta}"
                        );
                        (
                            user.clone(),
                            meta["phx_ref"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
            })
    }

    fn add(&mut self, list: &Value) {
        for (user, phx_ref) in Self::metas(list) {
            self.0.entry(user).or_default().insert(phx_ref);
        }
    }

    fn remove(&mut self, list: &Value) {
        for (user, phx_ref) in Self::metas(list) {
            if let Some(refs) = self.0.get_mut(&user) {
                refs.remove(&phx_ref);
                if refs.is_empty() {
                    self.0.remove(&user);
                }
            }
        }
    }
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
async fn who_is_online_follows_the_sessions_in_the_lobby() -> anyhow::Result<()> {
    let (s, [mut alice]) = with_users(["alice"]).await?;
    let mut seen_by_alice = Online::default();
    seen_by_alice.until(&mut alice, &[("alice", 1)]).await?;

    let (mut bob, _) = sign_in(&s, "bob-token").await?;
    let mut seen_by_bob = Online::default();
    seen_by_bob
        .until(&mut bob, &[("alice", 1), ("bob", 1)])
        .await?;
    seen_by_alice
        .until(&mut alice, &[("alice", 1), ("bob", 1)])
        .await?;

    // A second session of alice is a second entry under her name.
    let (mut alice2, _) = sign_in(&s, "alice-token").await?;
    Online::default()
        .until(&mut alice2, &[("alice", 2), ("bob", 1)])
        .await?;
    seen_by_bob
        .until(&mut bob, &[("alice", 2), ("bob", 1)])
        .await?;
    alice2.close().await?;
    seen_by_bob
        .until(&mut bob, &[("alice", 1), ("bob", 1)])
        .await?;
    // Leaving the lobby takes a session off the list.
    alice
        .send_json(&event("leave", json!({"rooms": ["lobby"]})))
        .await?;
    seen_by_bob.until(&mut bob, &[("bob", 1)]).await?;
    alice.close().await?;
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
        "send.presence_state",
        "send.presence_diff",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_rooms_presence_and_notifications() -> anyhow::Result<()> {
    let options = Options::default();
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
    let mut seen_by_alice = Online::default();
    seen_by_alice.until(&mut alice, &[("alice", 1)]).await?;
    let (mut bob, _) = sign_in(&two, "bob-token").await?;
    Online::default()
        .until(&mut bob, &[("alice", 1), ("bob", 1)])
        .await?;
    // bob coming online on instance two reaches instance one.
    seen_by_alice
        .until(&mut alice, &[("alice", 1), ("bob", 1)])
        .await?;

    // A room spans the instances; the sender is still excluded.
    for c in [&mut alice, &mut bob] {
        assert_eq!(join(c, &["public-fleet"]).await?["event"], "join");
    }
    say_to(&mut alice, "alice", "public-fleet", "across", &mut bob).await?;

    // `emit --user alice --event notification`: every session of alice, on both instances.
    let (mut alice2, _) = sign_in(&two, "alice-token").await?;
    seen_by_alice
        .until(&mut alice, &[("alice", 2), ("bob", 1)])
        .await?;
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

    // bob leaving instance two reaches instance one (alice's second session joined between).
    bob.close().await?;
    seen_by_alice.until(&mut alice, &[("alice", 2)]).await?;

    alice.close().await?;
    alice2.close().await?;
    stop_all([one, two]).await
}

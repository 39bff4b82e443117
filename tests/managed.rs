//! The managed protocol over real sockets: authentication after open and its close codes,
//! heartbeats, client join/leave with validation, users with several sessions, exclude,
//! typed application events, callbacks and shutdown.

use std::sync::Mutex;
use std::time::Duration;

use asena_runtime::managed::{Authenticated, ManagedOptions, ManagedService, OutboundTransform};
use asena_runtime::prelude::*;
use asena_tests::managed::{raw_sender, with_token_users};
use asena_tests::{Client, TestServer, event, isolated, managed_login_closed, start};
use serde_json::{Value, json};

/// What clients send besides the system events.
#[derive(Debug, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
pub enum AppIn {
    /// To a room, except the sender.
    Say {
        room: String,
        #[garde(length(chars, min = 1, max = 20))]
        text: String,
    },
    /// To every session of a user.
    Poke { user: String },
    /// Fails the handler.
    Fail,
}

/// What the service sends.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum AppOut {
    Said { from: String, text: String },
    Poked { by: String },
}

/// Callbacks seen, in order.
#[service]
#[derive(Debug, Default)]
pub struct Journal {
    pub lines: Mutex<Vec<String>>,
}

impl Journal {
    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
    fn has(&self, line: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l == line)
    }
}

#[websocket(path = "/rt", receives = AppIn, sends = AppOut, managed)]
#[derive(Debug)]
pub struct Realtime {
    #[inject]
    journal: Arc<Journal>,
}

impl ManagedService for Realtime {
    fn options(&self) -> ManagedOptions {
        ManagedOptions::default()
            .auth_timeout(Duration::from_millis(500))
            .heartbeat_timeout(Some(Duration::from_millis(1000)))
            .default_rooms(["lobby"])
    }

    async fn authenticate(
        &self,
        _ws: &Socket<Self>,
        credentials: Value,
    ) -> Result<Option<Authenticated>> {
        match credentials["token"].as_str() {
            Some("alice-token") => Ok(Some(Authenticated {
                user_id: "alice".into(),
                metadata: json!({"role": "admin"}),
            })),
            Some("bob-token") => Ok(Some(Authenticated::user("bob"))),
            Some("carol-token") => Ok(Some(Authenticated::user("carol"))),
            Some("slow-token") => {
                // Longer than three authentication timeouts.
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Some(Authenticated::user("slow")))
            }
            Some("broken-token") => Err("the token store is down".into()),
            _ => Ok(None),
        }
    }

    async fn validate_rooms(&self, _ws: &Socket<Self>, rooms: Vec<String>) -> Vec<String> {
        rooms
            .into_iter()
            .filter(|r| r == "lobby" || r.starts_with("public-"))
            .collect()
    }

    async fn on_connected(&self, ws: &Socket<Self>) -> Result<()> {
        let client = &ws.data().values;
        if client.user_id().as_deref() == Some("carol") {
            client.set_outbound(Arc::new(Shout));
        }
        self.journal.push(format!(
            "connected {} {}",
            client.user_id().unwrap_or_default(),
            client.metadata()
        ));
        Ok(())
    }

    async fn on_event(&self, ws: &Socket<Self>, event: AppIn) -> Result<()> {
        let me = ws.data().values.user_id().unwrap_or_default();
        let managed = ws.managed();
        match event {
            AppIn::Say { room, text } => {
                managed.to_room(&room, &AppOut::Said { from: me, text }, &[ws.id()])?;
            }
            AppIn::Poke { user } => {
                managed.to_user(&user, &AppOut::Poked { by: me })?;
            }
            AppIn::Fail => return Err("the handler failed".into()),
        }
        Ok(())
    }

    async fn on_disconnected(&self, ws: &Socket<Self>, code: u16, _reason: &str) {
        let user = ws.data().values.user_id().unwrap_or_else(|| "-".into());
        self.journal.push(format!("disconnected {user} {code}"));
    }
}

/// Carol's outbound transformer: her deliveries come upper-cased, and are counted.
#[derive(Debug)]
struct Shout;

static SHOUTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl OutboundTransform for Shout {
    fn transform(&self, plaintext: &[u8]) -> std::result::Result<String, BoxError> {
        SHOUTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(std::str::from_utf8(plaintext)?.to_uppercase())
    }
}

/// A managed service that does not say who may join what.
#[websocket(path = "/closed", managed)]
#[derive(Debug)]
pub struct Closed;

impl ManagedService for Closed {
    async fn authenticate(&self, _ws: &Socket<Self>, _c: Value) -> Result<Option<Authenticated>> {
        Ok(Some(Authenticated::user("anyone")))
    }
    async fn on_event(&self, ws: &Socket<Self>, event: Message) -> Result<()> {
        // Untyped: the whole envelope, echoed as a `got` event.
        let envelope: Value = event.json()?;
        let managed = ws.managed();
        managed.to_client(ws.id(), ("got", envelope))?;
        Ok(())
    }
}

async fn server() -> anyhow::Result<TestServer> {
    start(
        isolated()
            .websocket::<Realtime>()
            .websocket::<Closed>()
            .service::<Journal>(),
    )
    .await
}

/// A [`server`] with each of `users` logged in to `/rt` with its `U-token`, in order.
async fn with_users<const N: usize>(users: [&str; N]) -> anyhow::Result<(TestServer, [Client; N])> {
    with_token_users(server().await?, "/rt", users).await
}

async fn login(s: &TestServer, token: &str) -> anyhow::Result<(Client, Value)> {
    asena_tests::managed_login(s, "/rt", json!({"type": "token", "token": token})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_admits_with_connected() -> anyhow::Result<()> {
    let s = server().await?;
    let (_alice, connected) = login(&s, "alice-token").await?;
    let data = &connected["data"];
    assert_eq!(data["userId"], "alice");
    assert_eq!(data["id"].as_str().map(str::len), Some(36));
    assert!(data["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let journal = s.app.get::<Journal>().expect("registered");
    asena_tests::eventually(|| journal.has(r#"connected alice {"role":"admin"}"#)).await?;
    s.stop().await
}

/// No `authenticate` in time, or an authenticator slower than the timeout: closed with 4001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_authentication_in_time_closes_4001() -> anyhow::Result<()> {
    let s = server().await?;
    for credentials in [None, Some(json!({"token": "slow-token"}))] {
        let mut c = s.connect("/rt").await?;
        if let Some(credentials) = &credentials {
            c.send_json(&event("authenticate", credentials.clone()))
                .await?;
        }
        let closed = c.recv_close().await?;
        let timeout = (4001, "Authentication timeout".into());
        assert_eq!(closed, timeout, "{credentials:?}");
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_or_failing_authentication_closes_4003() -> anyhow::Result<()> {
    let s = server().await?;
    for token in ["wrong", "broken-token"] {
        assert_eq!(
            managed_login_closed(&s, "/rt", json!({"token": token})).await?,
            (4003, "Authentication failed".into()),
            "{token}"
        );
    }
    let journal = s.app.get::<Journal>().expect("registered");
    asena_tests::eventually(|| journal.has("disconnected - 4003")).await?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_before_authentication_are_refused() -> anyhow::Result<()> {
    let s = server().await?;
    let mut c = s.connect("/rt").await?;
    c.send_json(&event("say", json!({"room": "lobby", "text": "hi"})))
        .await?;
    assert_eq!(
        c.recv_json().await?,
        event("error", json!({"message": "Not authenticated"}))
    );
    c.send_json(&event("join", json!({"rooms": ["lobby"]})))
        .await?;
    assert_eq!(
        c.recv_json().await?,
        event("error", json!({"message": "Not authenticated"}))
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_client_and_silence_closes_4002() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut c, _) = login(&s, "bob-token").await?;
    // Heartbeats every 250 ms for 2 s: twice the timeout, still open.
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    for _ in 0..8 {
        ticker.tick().await;
        c.send_json(&json!({"event": "heartbeat"})).await?;
    }
    c.send_json(&event("join", json!({"rooms": ["lobby"]})))
        .await?;
    assert_eq!(c.recv_json().await?["event"], "join");
    // Then silence.
    assert_eq!(c.recv_close().await?, (4002, "Heartbeat timeout".into()));
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_or_are_dropped() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut c, _) = login(&s, "bob-token").await?;
    c.send_text("{not json").await?;
    assert_eq!(
        c.recv_json().await?,
        event("error", json!({"message": "Invalid message format"}))
    );
    // No `event`: dropped without an answer; the next answer is to the next message.
    c.send_json(&json!({"data": 1})).await?;
    c.send_json(&event("say", json!({"room": "lobby", "text": ""})))
        .await?;
    let e = c.recv_json().await?;
    assert_eq!(e["event"], "error");
    assert_eq!(e["data"]["code"], "constraint");
    assert_eq!(e["data"]["message"], "text: length is lower than 1");
    c.send_json(&event("dance", json!({}))).await?;
    assert_eq!(c.recv_json().await?["data"]["code"], "unknown_variant");
    assert_eq!(
        s.app.namespace("/rt").map(|n| n.stats().invalid_messages()),
        Some(2)
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_validated_and_leaves_only_joined_rooms() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut c, _) = login(&s, "alice-token").await?;
    assert_eq!(
        c.ask(&event(
            "join",
            json!({"rooms": ["public-1", "secret", "ws:broadcast", "public-2"]}),
        ))
        .await?,
        event(
            "join",
            json!({"rooms": ["public-1", "public-2"], "denied": ["secret"]})
        )
    );
    assert_eq!(
        c.ask(&event(
            "leave",
            json!({"rooms": ["public-1", "never-joined"]}),
        ))
        .await?,
        event("leave", json!({"rooms": ["public-1"]}))
    );
    let ns = s.app.namespace("/rt").expect("registered");
    let rooms: Vec<String> = ns.rooms().into_iter().map(|r| r.name).collect();
    assert_eq!(rooms, vec!["lobby", "public-2"]);

    // Without a validator every join is refused.
    let mut closed = s.connect("/closed").await?;
    assert_eq!(
        closed.ask(&event("authenticate", json!({}))).await?["event"],
        "connected"
    );
    assert_eq!(
        closed
            .ask(&event("join", json!({"rooms": ["lobby"]})))
            .await?,
        event("join", json!({"rooms": [], "denied": ["lobby"]}))
    );
    // Untyped events arrive whole.
    assert_eq!(
        closed.ask(&event("anything", json!({"x": 1}))).await?,
        event("got", event("anything", json!({"x": 1})))
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_exclude_and_users_with_several_sessions() -> anyhow::Result<()> {
    let (s, [mut alice1, mut alice2, mut bob]) = with_users(["alice", "alice", "bob"]).await?;

    // Every session of alice gets the poke.
    bob.send_json(&event("poke", json!({"user": "alice"})))
        .await?;
    let poked = event("poked", json!({"by": "bob"}));
    assert_eq!(alice1.recv_json().await?, poked);
    assert_eq!(alice2.recv_json().await?, poked);

    // The default room, minus the sender (excluded by id).
    alice1
        .send_json(&event("say", json!({"room": "lobby", "text": "hi"})))
        .await?;
    let said = event("said", json!({"from": "alice", "text": "hi"}));
    assert_eq!(alice2.recv_json().await?, said);
    assert_eq!(bob.recv_json().await?, said);
    // alice1 got nothing: its next message answers its own next request.
    alice1.send_json(&event("dance", json!({}))).await?;
    assert_eq!(alice1.recv_json().await?["event"], "error");

    let managed = raw_sender::<Realtime>(&s)?;
    assert_eq!(managed.local_users(), vec!["alice", "bob"]);
    // Ignis's getClientsByUser: alice's two sessions, each reachable by its id.
    let alices = managed.user_clients("alice");
    assert_eq!((alices.len(), managed.user_clients("bob").len()), (2, 1));
    assert!(managed.user_clients("carol").is_empty());
    assert_eq!(managed.to_client(&alices[1], ("ping", 2))?, 1);
    assert_eq!(managed.to_client(&alices[0], ("ping", 1))?, 1);
    let pings = [alice1.recv_json().await?, alice2.recv_json().await?];
    assert!(
        pings.contains(&event("ping", json!(1))) && pings.contains(&event("ping", json!(2))),
        "{pings:?}"
    );
    // The user goes with the last session.
    alice1.close().await?;
    alice2.close().await?;
    asena_tests::eventually(|| managed.local_users() == vec!["bob".to_owned()]).await?;
    assert!(managed.user_clients("alice").is_empty());
    assert_eq!(managed.to_user("alice", ("x", 1))?, 0);
    assert_eq!(managed.broadcast(("news", "all"), &[])?, 1);
    assert_eq!(bob.recv_json().await?, event("news", json!("all")));
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_1001_and_runs_the_callbacks() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut bob, _) = login(&s, "bob-token").await?;
    let journal = s.app.get::<Journal>().expect("registered");
    let app = s.app.clone();
    let stopping = tokio::spawn(async move { app.shutdown().await });
    assert_eq!(bob.recv_close().await?.0, 1001);
    stopping.await?;
    assert!(journal.has("disconnected bob 1001"));
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformed_client_leaves_the_others_on_the_shared_frame() -> anyhow::Result<()> {
    let (s, [mut carol, mut alice, mut bob]) = with_users(["carol", "alice", "bob"]).await?;
    let managed = raw_sender::<Realtime>(&s)?;
    let before = SHOUTS.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(managed.to_room("lobby", ("note", "quiet"), &[])?, 3);
    // One transform, for carol alone; alice and bob got the same untouched bytes.
    assert_eq!(SHOUTS.load(std::sync::atomic::Ordering::SeqCst) - before, 1);
    assert_eq!(
        carol.recv_text().await?,
        r#"{"DATA":"QUIET","EVENT":"NOTE"}"#
    );
    let plain = r#"{"data":"quiet","event":"note"}"#;
    assert_eq!(alice.recv_text().await?, plain);
    assert_eq!(bob.recv_text().await?, plain);
    s.stop().await
}

#[tokio::test]
async fn a_failing_handler_answers_with_the_managed_error_event() -> anyhow::Result<()> {
    let (s, [mut alice]) = with_users(["alice"]).await?;
    alice.send_json(&event("fail", json!(null))).await?;
    // The managed protocol's `error` event, not Asena's `{"type":"error"}`; no detail of the
    // failure reaches the client.
    assert_eq!(
        alice.recv_json().await?,
        event("error", json!({"message": "Server error occurred"}))
    );
    assert_eq!(alice.recv_close().await?.0, 1011);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_resolves_its_destination_as_ignis_does() -> anyhow::Result<()> {
    let (s, [mut alice, mut bob]) = with_users(["alice", "bob"]).await?;
    let managed = raw_sender::<Realtime>(&s)?;
    // No destination: everyone.
    assert_eq!(managed.send(None, ("all", 1))?, 2);
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.recv_json().await?, event("all", json!(1)));
    }
    // A client connected here: that client alone.
    let alice_id = managed.user_clients("alice").remove(0);
    assert_eq!(managed.send(Some(&alice_id), ("you", 2))?, 1);
    assert_eq!(alice.recv_json().await?, event("you", json!(2)));
    // Anything else: a room (both are in the default `lobby`).
    assert_eq!(managed.send(Some("lobby"), ("room", 3))?, 2);
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.recv_json().await?, event("room", json!(3)));
    }
    // A room nobody here is in reaches no one here.
    assert_eq!(managed.send(Some("elsewhere"), ("none", 4))?, 0);
    // Bob got neither the private message nor the last one: his next is this.
    assert_eq!(
        managed.to_client(&managed.user_clients("bob")[0], ("last", 5))?,
        1
    );
    assert_eq!(bob.recv_json().await?, event("last", json!(5)));
    s.stop().await
}

//! The managed client against real servers on 127.0.0.1: a managed Asena service (plain and
//! one that requires encryption), and raw tokio-tungstenite servers that play the parts a
//! real server will not (one that never answers `join`, one that replays a sealed message).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use asena_client::ClientError;
use asena_client::managed::{ManagedConnection, ManagedEvent, RoomsAnswer};
use asena_protocol::crypto::{Flow, agree};
use asena_runtime::managed::{Authenticated, ManagedOptions, ManagedService};
use asena_runtime::prelude::*;
use asena_runtime::{Asena, AsenaBuilder};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

mod support;

use support::{Server, WAIT, soon};

/// The server's heartbeat timeout: short, so that a silent client is closed soon.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(600);

// ---------------------------------------------------------------------------------------
// The application events, as the server declares them and the client uses them.

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum RtIn {
    /// To the other members of `room`.
    Say { room: String, text: String },
    /// Asks who the server thinks the client is.
    Whoami,
    /// Asks the server to drop the connection.
    Kick,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
enum RtOut {
    Said {
        room: String,
        from: String,
        text: String,
    },
    You {
        user: String,
        encrypted: bool,
    },
}

// ---------------------------------------------------------------------------------------
// The servers.

async fn authenticate(credentials: &Value) -> Result<Option<Authenticated>> {
    Ok(match credentials["token"].as_str() {
        Some("alice-token") => Some(Authenticated::user("alice")),
        Some("bob-token") => Some(Authenticated::user("bob")),
        Some("slow-token") => {
            // Longer than three of `Realtime`'s authentication timeouts.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            Some(Authenticated::user("slow"))
        }
        _ => None,
    })
}

async fn handle<S: ManagedService<Out = RtOut>>(ws: &Socket<S>, event: RtIn) -> Result<()> {
    let client = &ws.data().values;
    let me = client.user_id().unwrap_or_default();
    match event {
        RtIn::Say { room, text } => {
            let said = RtOut::Said {
                room: room.clone(),
                from: me,
                text,
            };
            ws.managed().to_room(&room, &said, &[ws.id()])?;
        }
        RtIn::Whoami => {
            let you = RtOut::You {
                user: me,
                encrypted: client.is_encrypted(),
            };
            ws.managed().to_client(ws.id(), &you)?;
        }
        RtIn::Kick => ws.close_with(4000, "kicked"),
    }
    Ok(())
}

/// Rooms named `public-*` may be joined.
fn public(rooms: Vec<String>) -> Vec<String> {
    rooms
        .into_iter()
        .filter(|r| r.starts_with("public-"))
        .collect()
}

/// A managed service at `path` with `options`: it admits by [`authenticate`], lets clients
/// join the [`public`] rooms, and answers with [`handle`].
macro_rules! rt_service {
    ($name:ident, $path:literal, $options:expr) => {
        #[websocket(path = $path, receives = RtIn, sends = RtOut, managed)]
        struct $name;

        impl ManagedService for $name {
            fn options(&self) -> ManagedOptions {
                $options
            }

            async fn authenticate(
                &self,
                _ws: &Socket<Self>,
                credentials: Value,
            ) -> Result<Option<Authenticated>> {
                authenticate(&credentials).await
            }

            async fn validate_rooms(&self, _ws: &Socket<Self>, rooms: Vec<String>) -> Vec<String> {
                public(rooms)
            }

            async fn on_event(&self, ws: &Socket<Self>, event: RtIn) -> Result<()> {
                handle(ws, event).await
            }
        }
    };
}

// The authentication deadline is short too: the server's watchdog arms the heartbeat
// deadline once the authentication deadline has passed.
rt_service!(
    Realtime,
    "/rt",
    ManagedOptions::default()
        .auth_timeout(Duration::from_millis(300))
        .heartbeat_timeout(Some(HEARTBEAT_TIMEOUT))
);

// The same service, but every client must agree keys first.
rt_service!(
    Sealed,
    "/sealed",
    ManagedOptions::default().require_encryption(true)
);

fn app() -> AsenaBuilder {
    Asena::builder()
        .without_auto_registration()
        .websocket::<Realtime>()
        .websocket::<Sealed>()
}

/// Serves a fresh app on a free port.
async fn start() -> Server {
    Server::serve(app(), "127.0.0.1:0").await
}

/// The URL of `path` on `server`.
fn url(server: &Server, path: &str) -> String {
    format!("{}{path}", server.base())
}

/// A connection of `token` to `/rt`, typed by `RtOut`, that reconnects soon.
async fn connect(server: &Server, token: &str) -> ManagedConnection<RtOut> {
    ManagedConnection::<RtOut>::builder(url(server, "/rt"))
        .token(token)
        .heartbeat(Duration::from_millis(150))
        .reconnect(soon())
        .connect()
        .await
        .unwrap()
}

/// Why a connection of `token` to `url` failed.
async fn refusal(url: String, token: &str) -> ClientError {
    ManagedConnection::<RtOut>::builder(url)
        .token(token)
        .connect()
        .await
        .unwrap_err()
}

async fn next(conn: &mut ManagedConnection<RtOut>) -> ManagedEvent<RtOut> {
    timeout(WAIT, conn.next())
        .await
        .expect("no event in time")
        .expect("the event stream ended")
}

/// The next application event, skipping the answers to joins and leaves.
async fn next_message(conn: &mut ManagedConnection<RtOut>) -> RtOut {
    loop {
        match next(conn).await {
            ManagedEvent::Message(message) => return message,
            ManagedEvent::Joined(_) | ManagedEvent::Left(_) => {}
            other => panic!("expected an application event, got {other:?}"),
        }
    }
}

/// Asks the server who `conn` is, and checks it answers `user`, `encrypted`.
async fn assert_whoami(conn: &mut ManagedConnection<RtOut>, user: &str, encrypted: bool) {
    conn.send(&RtIn::Whoami).await.unwrap();
    assert_eq!(
        next_message(conn).await,
        RtOut::You {
            user: user.into(),
            encrypted
        }
    );
}

/// `from` says `text` in `room`, and `to` hears it from `from`'s user.
async fn assert_relayed(
    from: &ManagedConnection<RtOut>,
    to: &mut ManagedConnection<RtOut>,
    room: &str,
    text: &str,
) {
    from.send(&RtIn::Say {
        room: room.into(),
        text: text.into(),
    })
    .await
    .unwrap();
    assert_eq!(
        next_message(to).await,
        RtOut::Said {
            room: room.into(),
            from: from.connected().unwrap().user_id,
            text: text.into()
        }
    );
}

/// Asserts that `error` matches `pattern` and that its message contains `needle`.
macro_rules! assert_error {
    ($error:expr, $pattern:pat, $needle:expr) => {{
        let error = &$error;
        assert!(matches!(error, $pattern), "{error:?}");
        assert!(error.to_string().contains($needle), "{error}");
    }};
}

/// Closes `conn`, then stops `server`.
async fn close_and_stop(mut conn: ManagedConnection<RtOut>, server: Server) {
    conn.close().await.unwrap();
    server.stop().await;
}

fn answer(rooms: &[&str], denied: &[&str]) -> RoomsAnswer {
    serde_json::from_value(json!({"rooms": rooms, "denied": denied})).unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_and_reports_connected() {
    let server = start().await;
    let mut alice = connect(&server, "alice-token").await;
    let connected = alice.connected().expect("connected");
    assert_eq!(connected.user_id, "alice");
    assert!(!connected.id.is_empty());
    assert!(connected.time.is_some());
    assert_whoami(&mut alice, "alice", false).await;
    close_and_stop(alice, server).await;
}

#[tokio::test]
async fn refused_credentials_are_a_clear_error() {
    let server = start().await;
    let error = ManagedConnection::<RtOut>::builder(url(&server, "/rt"))
        .credentials(&json!({"token": "mallory-token"}))
        .connect()
        .await
        .unwrap_err();
    assert_error!(
        error,
        ClientError::AuthenticationFailed { .. },
        "refused the credentials (close 4003"
    );

    // A service that requires encryption refuses a plain client with 4004.
    let error = refusal(url(&server, "/sealed"), "alice-token").await;
    assert_error!(
        error,
        ClientError::EncryptionRequired { .. },
        ".encrypt(true)"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_authenticator_is_an_authentication_timeout() {
    let server = start().await;
    let error = refusal(url(&server, "/rt"), "slow-token").await;
    assert_error!(error, ClientError::AuthenticationTimeout { .. }, "4001");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_session_round_trips_and_the_server_sees_it_encrypted() {
    let server = start().await;
    let connect_sealed = |token: &'static str| {
        ManagedConnection::<RtOut>::builder(url(&server, "/sealed"))
            .token(token)
            .encrypt(true)
            .connect()
    };
    let mut alice = connect_sealed("alice-token").await.unwrap();
    let mut bob = connect_sealed("bob-token").await.unwrap();
    assert_eq!(alice.connected().unwrap().user_id, "alice");
    assert_whoami(&mut alice, "alice", true).await;
    assert_eq!(
        alice.join(["public-1"]).await.unwrap(),
        answer(&["public-1"], &[])
    );
    assert_eq!(
        bob.join(["public-1"]).await.unwrap(),
        answer(&["public-1"], &[])
    );
    // Several messages each way: the counters of both directions move on together.
    for i in 0..3 {
        assert_relayed(&bob, &mut alice, "public-1", &format!("sealed {i}")).await;
    }
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_the_client_alive_while_a_silent_socket_is_closed() {
    let server = start().await;
    let mut alice = connect(&server, "alice-token").await;

    // A raw socket that authenticates after alice did, then says nothing.
    let (mut silent, _) = tokio_tungstenite::connect_async(url(&server, "/rt"))
        .await
        .unwrap();
    silent
        .send(WsMessage::text(
            r#"{"event":"authenticate","data":{"token":"bob-token"}}"#,
        ))
        .await
        .unwrap();
    let code = timeout(WAIT, async {
        let mut code = None;
        // Reading on after the close frame sends tungstenite's answer to it.
        while let Some(Ok(message)) = silent.next().await {
            if let WsMessage::Close(Some(frame)) = message {
                code = Some(u16::from(frame.code));
            }
        }
        code
    })
    .await
    .expect("the silent socket was not closed");
    assert_eq!(code, Some(4002));

    // Alice has been authenticated longer than the heartbeat timeout, and is still there.
    assert_whoami(&mut alice, "alice", false).await;
    close_and_stop(alice, server).await;
}

#[tokio::test]
async fn join_and_leave_return_the_servers_answers() {
    let server = start().await;
    let mut alice = connect(&server, "alice-token").await;
    let joined = alice.join(["public-1", "secret"]).await.unwrap();
    assert_eq!(joined, answer(&["public-1"], &["secret"]));
    // The answer is an event too.
    assert!(matches!(next(&mut alice).await, ManagedEvent::Joined(a) if a == joined));
    assert_eq!(alice.rooms(), ["public-1"]);

    let left = alice.leave(["public-1"]).await.unwrap();
    assert_eq!(left, answer(&["public-1"], &[]));
    assert!(matches!(next(&mut alice).await, ManagedEvent::Left(a) if a == left));
    assert!(alice.rooms().is_empty());
    close_and_stop(alice, server).await;
}

/// A raw server that admits any client, records the events it receives, and answers
/// nothing else (like Ignis, which never answers `join`).
async fn silent_server() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(message)) = ws.next().await {
            let WsMessage::Text(text) = message else {
                continue;
            };
            let envelope: Value = serde_json::from_str(text.as_str()).unwrap();
            let event = envelope["event"].as_str().unwrap_or_default().to_owned();
            if event == "authenticate" {
                let connected =
                    json!({"event": "connected", "data": {"id": "c-1", "userId": "alice"}});
                ws.send(WsMessage::text(connected.to_string()))
                    .await
                    .unwrap();
            }
            let _ = seen.send(event);
        }
    });
    (addr, events)
}

#[tokio::test]
async fn a_join_the_server_never_answers_times_out() {
    let (addr, mut events) = silent_server().await;
    let alice = ManagedConnection::<RtOut>::builder(format!("ws://{addr}/ws"))
        .token("alice-token")
        .request_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    assert_eq!(alice.connected().unwrap().id, "c-1");
    let error = alice.join(["public-1"]).await.unwrap_err();
    assert!(
        matches!(error, ClientError::NoAnswer { waiting_for: "join", after } if after == Duration::from_millis(200)),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "no `join` from the server within 200ms");
    // The request went out: what the server never answered.
    assert_eq!(
        timeout(WAIT, events.recv()).await.unwrap().unwrap(),
        "authenticate"
    );
    assert_eq!(timeout(WAIT, events.recv()).await.unwrap().unwrap(), "join");
    // The room is still asked for again after a reconnect (the server may have joined it).
    assert_eq!(alice.rooms(), ["public-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_events_both_ways() {
    let server = start().await;
    let mut alice = connect(&server, "alice-token").await;
    let bob = connect(&server, "bob-token").await;
    alice.join(["public-1"]).await.unwrap();
    bob.join(["public-1"]).await.unwrap();
    assert_relayed(&bob, &mut alice, "public-1", "typed").await;
    // By name, from another task's handle.
    let sender = bob.sender();
    tokio::spawn(async move {
        sender
            .send_event("say", &json!({"room": "public-1", "text": "by name"}))
            .await
            .unwrap();
    });
    assert!(matches!(
        next_message(&mut alice).await,
        RtOut::Said { text, .. } if text == "by name"
    ));
    // Something that is not an event is refused before it is sent.
    let error = bob.send(&json!(["say"])).await.unwrap_err();
    assert!(matches!(error, ClientError::NotAnEvent { .. }), "{error:?}");
    close_and_stop(alice, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_reauthenticates_and_rejoins() {
    let server = start().await;
    let mut alice = ManagedConnection::<RtOut>::builder(url(&server, "/sealed"))
        .token("alice-token")
        .encrypt(true)
        .reconnect(soon())
        .connect()
        .await
        .unwrap();
    let bob = ManagedConnection::<RtOut>::builder(url(&server, "/sealed"))
        .token("bob-token")
        .encrypt(true)
        .connect()
        .await
        .unwrap();
    let first = alice.connected().unwrap();
    alice.join(["public-1", "public-2"]).await.unwrap();
    bob.join(["public-1"]).await.unwrap();

    alice.send(&RtIn::Kick).await.unwrap();
    let (connected, rejoining) = loop {
        match next(&mut alice).await {
            ManagedEvent::Joined(_) => {}
            ManagedEvent::Disconnected { code, reason } => {
                assert_eq!((code, reason.as_str()), (Some(4000), "kicked"));
            }
            ManagedEvent::Reconnected {
                connected,
                rejoining,
            } => break (connected, rejoining),
            other => panic!("expected a reconnect, got {other:?}"),
        }
    };
    assert_eq!(connected.user_id, "alice");
    assert_ne!(connected.id, first.id, "a new connection");
    assert_eq!(alice.connected(), Some(connected));
    assert_eq!(rejoining, ["public-1", "public-2"]);
    assert!(matches!(
        next(&mut alice).await,
        ManagedEvent::Joined(a) if a == answer(&["public-1", "public-2"], &[])
    ));

    // The new connection is in the room again (and its keys are new).
    assert_relayed(&bob, &mut alice, "public-1", "welcome back").await;
    assert_whoami(&mut alice, "alice", true).await;
    close_and_stop(alice, server).await;
}

/// The next text message of `ws`, as JSON.
async fn read_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        if let Some(Ok(WsMessage::Text(text))) = ws.next().await {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// A raw server that agrees keys with the client, admits it, then sends one sealed event
/// twice (a replay), and reports the close code the client answers with.
async fn replaying_server() -> (SocketAddr, tokio::sync::oneshot::Receiver<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let encrypt = read_json(&mut ws).await;
        assert_eq!(encrypt["event"], "encrypt");
        let (session, handshake) = agree(&encrypt["data"]["publicKey"], Flow::Channel).unwrap();
        let channel = session.channel().unwrap();
        let answer = json!({"event": "encrypted", "data": handshake.to_json()});
        ws.send(WsMessage::text(answer.to_string())).await.unwrap();
        let authenticate = read_json(&mut ws).await;
        let plain: Value =
            serde_json::from_slice(&channel.open(&authenticate["data"]).unwrap()).unwrap();
        assert_eq!(plain["event"], "authenticate");
        let connected = json!({"event": "connected", "data": {"id": "c-1", "userId": "alice"}});
        let you = json!({"event": "you", "data": {"user": "alice", "encrypted": true}});
        // Counter 0, then counter 1 twice.
        let connected = channel.seal(connected.to_string().as_bytes()).unwrap();
        let sealed = channel.seal(you.to_string().as_bytes()).unwrap();
        for frame in [connected, sealed.clone(), sealed] {
            ws.send(WsMessage::text(frame)).await.unwrap();
        }
        let mut code = None;
        while let Some(Ok(message)) = ws.next().await {
            if let WsMessage::Close(frame) = message {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
        }
        let _ = report.send(code);
    });
    (addr, closed)
}

#[tokio::test]
async fn a_replayed_message_from_the_server_breaks_off_with_4005() {
    let (addr, closed) = replaying_server().await;
    let mut alice = ManagedConnection::<RtOut>::builder(format!("ws://{addr}/ws"))
        .token("alice-token")
        .encrypt(true)
        .without_reconnect()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut alice).await,
        RtOut::You {
            user: "alice".into(),
            encrypted: true
        }
    );
    match next(&mut alice).await {
        ManagedEvent::Disconnected { code, reason } => {
            assert_eq!(code, Some(4005));
            assert!(reason.contains("not the next one"), "{reason}");
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert_eq!(timeout(WAIT, closed).await.unwrap().unwrap(), Some(4005));
    assert!(timeout(WAIT, alice.next()).await.unwrap().is_none());
}

//! The client against real servers on 127.0.0.1: a typed Asena service (the client is typed
//! by that same service), and for the heartbeat a TCP server that completes the handshake and
//! then goes silent.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use asena_client::{Backoff, Client, ClientBuilder, ClientError, Event};
use asena_runtime::prelude::*;
use asena_runtime::{Asena, AsenaBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod support;

use support::{Server, WAIT, soon};

// ---------------------------------------------------------------------------------------
// The channel: what a `#[websocket(params = .., receives = .., sends = ..)]` service declares.

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct RoomParams {
    room: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum ChatIn {
    Say {
        text: String,
    },
    /// Asks the server for a message that is not a `ChatOut`, then a `Pong`.
    Garble,
    Ping,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatOut {
    Said { room: String, text: String },
    Pong,
}

// ---------------------------------------------------------------------------------------
// The server side.

/// What each upgrade carried, recorded in `on_open`.
#[derive(Debug, Clone, PartialEq)]
struct Opened {
    room: String,
    username: Option<String>,
    authorization: Option<String>,
}

#[service]
#[derive(Default)]
struct Seen {
    opened: Mutex<Vec<Opened>>,
    changed: Notify,
}

impl Seen {
    async fn wait_for(&self, count: usize) -> Vec<Opened> {
        timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                let all = self.opened.lock().unwrap().clone();
                if all.len() >= count {
                    return all;
                }
                notified.await;
            }
        })
        .await
        .expect("the server did not see the connection in time")
    }
}

#[middleware]
struct RoomGate;

impl Middleware for RoomGate {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        if ctx.param("room") == Some("closed") {
            return Err(Refusal::json(400, json!({"error": "room is closed"})));
        }
        next.run(ctx).await
    }
}

/// The service, and the type the client is typed by.
#[websocket(
    path = "/chat/{room}",
    params = RoomParams,
    receives = ChatIn,
    sends = ChatOut,
    middlewares = [RoomGate]
)]
struct Chat {
    #[inject]
    seen: Arc<Seen>,
}

impl WebSocketService for Chat {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        self.seen.opened.lock().unwrap().push(Opened {
            room: ws.params().room.clone(),
            username: ws.query("username").map(str::to_owned),
            authorization: ws.header("authorization").map(str::to_owned),
        });
        self.seen.changed.notify_waiters();
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: ChatIn) -> Result<()> {
        match msg {
            ChatIn::Say { text } => {
                let room = ws.params().room.clone();
                ws.send(ChatOut::Said { room, text })?;
            }
            ChatIn::Garble => {
                // Not a ChatOut: only the untyped handle can send it.
                ws.raw().send(r#"{"type":"nope"}"#)?;
                ws.send(ChatOut::Pong)?;
            }
            ChatIn::Ping => ws.send(ChatOut::Pong)?,
        }
        Ok(())
    }
}

fn app() -> AsenaBuilder {
    Asena::builder()
        .without_auto_registration()
        .websocket::<Chat>()
        .middleware::<RoomGate>()
        .service::<Seen>()
}

/// Serves a fresh app on `addr` (`127.0.0.1:0` for any port).
async fn start(addr: &str) -> Server {
    Server::serve(app(), addr).await
}

/// The connections `server`'s app has seen.
fn seen(server: &Server) -> Arc<Seen> {
    server.app.get::<Seen>().unwrap()
}

fn room(name: &str) -> RoomParams {
    RoomParams { room: name.into() }
}

/// A client of the room `r1` at `base`.
fn in_r1(base: impl AsRef<str>) -> ClientBuilder<Chat> {
    Client::<Chat>::builder(base).params(&room("r1"))
}

/// A client of the room `r1` on `server` that reconnects soon: after 20 ms, then doubling up
/// to 200 ms.
fn reconnecting(server: &Server) -> ClientBuilder<Chat> {
    in_r1(server.base()).reconnect(soon())
}

/// The text of the next event, which must be a `Said` message.
async fn next_said(client: &mut Client<Chat>) -> String {
    match next_event(client).await {
        Event::Message(ChatOut::Said { text, .. }) => text,
        other => panic!("expected a said message, got {other:?}"),
    }
}

async fn next_event(client: &mut Client<Chat>) -> Event<ChatOut> {
    timeout(WAIT, client.next())
        .await
        .expect("no event in time")
        .expect("the event stream ended")
}

/// The close code and reason of the next event, which must be `Disconnected`.
async fn next_disconnect(client: &mut Client<Chat>) -> (Option<u16>, String) {
    match next_event(client).await {
        Event::Disconnected { code, reason } => (code, reason),
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

/// Starts a server on `addr` again and waits until `client` has reconnected to it.
async fn restart(addr: SocketAddr, client: &mut Client<Chat>) -> Server {
    let server = start(&addr.to_string()).await;
    assert!(matches!(next_event(client).await, Event::Reconnected));
    server
}

/// The next event of `client` is the `Said` message `text`; then the client closes and
/// `server` stops.
async fn said_then_stop(client: &mut Client<Chat>, server: Server, text: &str) {
    assert_eq!(next_said(client).await, text);
    client.close().await.unwrap();
    server.stop().await;
}

/// The event stream has ended, and sends fail with `Closed`.
async fn assert_ended(client: &mut Client<Chat>) {
    assert!(timeout(WAIT, client.next()).await.unwrap().is_none());
    assert!(matches!(
        client.send(&ChatIn::Ping).await,
        Err(ClientError::Closed)
    ));
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_round_trip_with_params_query_and_headers() {
    let server = start("127.0.0.1:0").await;
    let mut client = Client::<Chat>::builder(server.base())
        .params(&room("r 1/ü"))
        .query("username", "alice & bob")
        .header("authorization", "Bearer t0k3n")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.url(),
        format!(
            "{}/chat/r%201%2F%C3%BC?username=alice+%26+bob",
            server.base()
        )
    );

    let opened = seen(&server).wait_for(1).await;
    assert_eq!(
        opened[0],
        Opened {
            room: "r 1/ü".into(),
            username: Some("alice & bob".into()),
            authorization: Some("Bearer t0k3n".into()),
        }
    );

    client
        .send(&ChatIn::Say { text: "hi".into() })
        .await
        .unwrap();
    match next_event(&mut client).await {
        Event::Message(out) => assert_eq!(
            out,
            ChatOut::Said {
                room: "r 1/ü".into(),
                text: "hi".into()
            }
        ),
        other => panic!("expected a message, got {other:?}"),
    }

    client.close().await.unwrap();
    assert_ended(&mut client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_reported_and_the_stream_goes_on() {
    let server = start("127.0.0.1:0").await;
    let mut client = in_r1(server.base()).connect().await.unwrap();
    client.send(&ChatIn::Garble).await.unwrap();
    match next_event(&mut client).await {
        Event::Undecodable { text, error } => {
            assert_eq!(text, r#"{"type":"nope"}"#);
            assert!(
                error
                    .to_string()
                    .starts_with("unknown variant `nope`, expected `said` or `pong`"),
                "{error}"
            );
        }
        other => panic!("expected an undecodable message, got {other:?}"),
    }
    // The client is also a `Stream`.
    let event = timeout(WAIT, futures_util::StreamExt::next(&mut client))
        .await
        .unwrap();
    assert!(matches!(event, Some(Event::Message(ChatOut::Pong))));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_a_server_restarted_on_the_same_port() {
    let first = start("127.0.0.1:0").await;
    let mut client = reconnecting(&first).connect().await.unwrap();
    client.send(&ChatIn::Ping).await.unwrap();
    assert!(matches!(
        next_event(&mut client).await,
        Event::Message(ChatOut::Pong)
    ));

    let addr = first.stop().await;
    assert_eq!(next_disconnect(&mut client).await.0, Some(1001));

    // The client retries against a closed port until the new server is up.
    let second = restart(addr, &mut client).await;
    assert_eq!(seen(&second).wait_for(1).await[0].room, "r1");
    client
        .send(&ChatIn::Say {
            text: "again".into(),
        })
        .await
        .unwrap();
    said_then_stop(&mut client, second, "again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_disconnected_go_out_after_the_reconnect() {
    let first = start("127.0.0.1:0").await;
    let mut client = reconnecting(&first).queue(1).connect().await.unwrap();
    let addr = first.stop().await;
    next_disconnect(&mut client).await;
    client
        .send(&ChatIn::Say {
            text: "queued".into(),
        })
        .await
        .unwrap();
    // The queue holds one message, and nothing takes it out while disconnected.
    let full = client.try_send(&ChatIn::Ping).unwrap_err();
    assert!(
        matches!(full, ClientError::QueueFull { capacity: 1 }),
        "{full:?}"
    );
    assert_eq!(
        full.to_string(),
        "the send queue is full (capacity 1); the connection is down or slower than the sender"
    );

    let second = restart(addr, &mut client).await;
    said_then_stop(&mut client, second, "queued").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_names_status_and_body() {
    let server = start("127.0.0.1:0").await;
    let error = Client::<Chat>::builder(server.base())
        .params(&room("closed"))
        .connect()
        .await
        .unwrap_err();
    match &error {
        ClientError::Refused { status, body, .. } => {
            assert_eq!(status.as_u16(), 400);
            assert_eq!(body, r#"{"error":"room is closed"}"#);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            r#"the server refused the WebSocket upgrade of {}/chat/closed with 400 Bad Request: {{"error":"room is closed"}}"#,
            server.base()
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_path_parameter_fails_before_connecting() {
    // Nothing listens there: the error comes before any connection attempt.
    let error = Client::<Chat>::builder("ws://127.0.0.1:9")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::MissingParam { ref name, .. } if name == "room"));
    assert!(
        error
            .to_string()
            .starts_with("the path `/chat/{room}` needs the parameter `room`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_connect_fails_at_once_and_reconnecting_can_give_up() {
    // A port nobody listens on: bind one, note it, free it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = timeout(WAIT, in_r1(format!("ws://{addr}")).connect())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("could not connect to ws://{addr}/chat/r1")
    );

    let server = start("127.0.0.1:0").await;
    let mut client = in_r1(server.base())
        .reconnect(
            Backoff::exponential(Duration::from_millis(5), Duration::from_millis(20))
                .max_attempts(3),
        )
        .connect()
        .await
        .unwrap();
    server.stop().await;
    next_disconnect(&mut client).await;
    match next_event(&mut client).await {
        Event::GaveUp { attempts, error } => {
            assert_eq!(attempts, 3);
            assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    assert_ended(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_the_stream_ends_after_the_disconnect() {
    let server = start("127.0.0.1:0").await;
    let mut client = in_r1(server.base())
        .without_reconnect()
        .connect()
        .await
        .unwrap();
    server.stop().await;
    assert_eq!(next_disconnect(&mut client).await.0, Some(1001));
    assert_ended(&mut client).await;
}

/// Accepts one WebSocket handshake, then never reads or writes again.
async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut key = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("sec-websocket-key")
            {
                key = value.trim().to_owned();
            }
            if line == "\r\n" {
                break;
            }
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        stream
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .unwrap();
        // Keep the socket open and say nothing.
        std::future::pending::<()>().await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_found_dead_after_two_heartbeats() {
    let (addr, server) = silent_server().await;
    let interval = Duration::from_millis(200);
    let connected = tokio::time::Instant::now();
    let mut client = in_r1(format!("ws://{addr}"))
        .heartbeat(interval)
        .without_reconnect()
        .connect()
        .await
        .unwrap();
    // Bounded by the test's wait, well under the OS's own detection.
    let (code, reason) = next_disconnect(&mut client).await;
    assert_eq!(code, None);
    assert!(reason.contains("2 heartbeat intervals"), "{reason}");
    assert!(connected.elapsed() >= interval * 2);
    assert_ended(&mut client).await;
    server.abort();
}

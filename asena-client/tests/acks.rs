//! Requests and replies between the typed clients and real servers on 127.0.0.1: the
//! client's request answered by the service's `on_request` (typed), failed, timed out, cut
//! by a lost connection, a reply after the timeout ignored; the server's request answered by
//! the client's handler (and `not_answered` without one), a room of clients asked under one
//! deadline; the managed client both ways.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use asena_client::managed::ManagedConnection;
use asena_client::{Client, ClientError, Event};
use asena_protocol::ack::Failure;
use asena_runtime::ack::{AckError, Answer, Answers};
use asena_runtime::managed::{Authenticated, ManagedService};
use asena_runtime::prelude::*;
use asena_runtime::{Asena, Namespace};
use serde_json::{Value, json};
use std::future::IntoFuture;

use tokio::time::timeout;

mod support;

use support::{Server, WAIT};

#[derive(Debug, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
struct Sum {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum DeskIn {
    Hello,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeskOut {
    Question { text: String },
    Hi,
}

/// Answers sums (`a == 13` fails); ignores its messages.
#[websocket(path = "/desk", receives = DeskIn, sends = DeskOut)]
struct Desk;

impl WebSocketService for Desk {
    type Data = ();
    const ANSWERS: Answers<Self> = Answers::ON_REQUEST;
    async fn on_message(&self, _: &Socket<Self>, hello: DeskIn) -> Result<()> {
        let DeskIn::Hello = hello;
        Ok(())
    }
}

impl Answer for Desk {
    type Request = Sum;
    type Reply = i64;
    async fn on_request(&self, _ws: &Socket<Self>, sum: Sum) -> Result<i64> {
        if sum.a == 13 {
            return Err("unlucky".into());
        }
        Ok(sum.a + sum.b)
    }
}

/// Answers no requests and says nothing.
#[websocket(path = "/silent", sends = DeskOut)]
struct Silent;

impl WebSocketService for Silent {
    type Data = ();
    async fn on_message(&self, _: &Socket<Self>, _: Message) -> Result<()> {
        Ok(())
    }
}

async fn serve() -> Server {
    Server::serve(
        Asena::builder()
            .without_auto_registration()
            .websocket::<Desk>()
            .websocket::<Silent>()
            .websocket::<Hall>(),
        "127.0.0.1:0",
    )
    .await
}

/// A client of `C` on `server` that does not reconnect.
async fn once<C: asena_protocol::Channel>(server: &Server) -> Client<C>
where
    C::Out: serde::de::DeserializeOwned,
{
    Client::<C>::builder(server.base())
        .without_reconnect()
        .connect()
        .await
        .unwrap()
}

/// `result` is the other side's failure with `code`.
fn failed_with<R: std::fmt::Debug>(result: &Result<R, AckError>, code: &str) {
    assert!(
        matches!(result, Err(AckError::Failed(f)) if f.code == code),
        "{result:?}"
    );
}

fn namespace(server: &Server, path: &str) -> Namespace {
    server.app.namespace(path).unwrap()
}

async fn sockets(ns: &Namespace, count: usize) -> Vec<asena_runtime::SocketRef> {
    timeout(WAIT, async {
        while ns.socket_count() < count {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    ns.sockets()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_request_is_answered_typed_or_failed() {
    let server = serve().await;
    let client = once::<Desk>(&server).await;
    let sum: i64 = client
        .request(&Sum { a: 2, b: 40 })
        .timeout(WAIT)
        .await
        .unwrap();
    assert_eq!(sum, 42);
    // Many at once from several tasks: each reply reaches its own request.
    let asks = (0..20).map(|i| {
        let sender = client.sender();
        tokio::spawn(async move {
            sender
                .request::<i64, _>(&Sum { a: 100 + i, b: 1 })
                .timeout(WAIT)
                .await
        })
    });
    for (i, ask) in asks.enumerate() {
        assert_eq!(ask.await.unwrap().unwrap(), i as i64 + 101);
    }
    // A reply that does not decode into what was asked for.
    let wrong = client
        .request::<String, _>(&Sum { a: 1, b: 1 })
        .timeout(WAIT)
        .await;
    assert!(matches!(wrong, Err(ClientError::Reply(_))), "{wrong:?}");
    // A failing handler: the failure with the request's id (then the server closes).
    let failed = client
        .request::<i64, _>(&Sum { a: 13, b: 0 })
        .timeout(WAIT)
        .await;
    match failed {
        Err(ClientError::Server { code, .. }) => {
            assert_eq!(code.as_deref(), Some("handler_failed"))
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_request_nobody_answers_times_out_and_a_reply_after_it_is_ignored() {
    let server = serve().await;
    let mut client = once::<Silent>(&server).await;
    let started = Instant::now();
    let nothing = client
        .request::<i64, _>(&json!(1))
        .timeout(Duration::from_millis(200))
        .await;
    assert!(
        matches!(nothing, Err(ClientError::NoAnswer { .. })),
        "{nothing:?}"
    );
    assert!(started.elapsed() < WAIT);
    // The server replies late, and to an id never asked; then says something ordinary.
    let socket = sockets(&namespace(&server, "/silent"), 1).await.remove(0);
    socket.raw().send(r#"{"$ack":1,"data":5}"#).unwrap();
    socket.raw().send(r#"{"$ack":77,"data":5}"#).unwrap();
    socket.send(r#"{"type":"hi"}"#).unwrap();
    let next = timeout(WAIT, client.next()).await.unwrap();
    assert!(
        matches!(next, Some(Event::Message(DeskOut::Hi))),
        "{next:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_request_fails_it_at_once() {
    let server = serve().await;
    let client = once::<Silent>(&server).await;
    let socket = sockets(&namespace(&server, "/silent"), 1).await.remove(0);
    let asking = tokio::spawn({
        let sender = client.sender();
        async move { sender.request::<i64, _>(&json!(1)).timeout(WAIT * 3).await }
    });
    tokio::task::yield_now().await;
    let started = Instant::now();
    socket.close();
    let lost = timeout(WAIT, asking).await.unwrap().unwrap();
    assert!(
        matches!(
            lost,
            Err(ClientError::Lost { .. }) | Err(ClientError::Closed)
        ),
        "{lost:?}"
    );
    assert!(started.elapsed() < WAIT);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_request_is_answered_by_the_clients_handler() {
    let server = serve().await;
    let _client = Client::<Desk>::builder(server.base())
        .on_request(|asked: DeskOut| async move {
            match asked {
                DeskOut::Question { text } => Ok(text.to_uppercase()),
                DeskOut::Hi => Err(Failure::new("rude", "a greeting is no question")),
            }
        })
        .connect()
        .await
        .unwrap();
    let socket = sockets(&namespace(&server, "/desk"), 1).await.remove(0);
    let desk = server.app.ulak::<Desk>().unwrap();
    let socket = desk.socket(socket.id()).unwrap();
    let loud: String = socket
        .request(&DeskOut::Question { text: "hey".into() })
        .timeout(WAIT)
        .await
        .unwrap();
    assert_eq!(loud, "HEY");
    let rude = socket.request::<String>(&DeskOut::Hi).timeout(WAIT).await;
    failed_with(&rude, "rude");
    // A client without a handler says so at once.
    let _plain = Client::<Silent>::builder(server.base())
        .connect()
        .await
        .unwrap();
    let silent = sockets(&namespace(&server, "/silent"), 1).await.remove(0);
    let unanswered = silent
        .request::<String>(json!({"type": "hi"}))
        .timeout(WAIT)
        .await;
    failed_with(&unanswered, "not_answered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_clients_is_asked_under_one_deadline() {
    let server = serve().await;
    let mut clients = Vec::new();
    for delay in [0u64, 10, 60_000] {
        clients.push(
            Client::<Desk>::builder(server.base())
                .on_request(move |_: DeskOut| async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Ok(delay)
                })
                .connect()
                .await
                .unwrap(),
        );
    }
    let ns = namespace(&server, "/desk");
    let all = sockets(&ns, 3).await;
    for socket in &all {
        socket.subscribe("crew").unwrap();
    }
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let replies = ns
        .request_room::<u64>("crew", json!({"type": "hi"}))
        .timeout(deadline)
        .await;
    let elapsed = started.elapsed();
    assert!(elapsed >= deadline && elapsed < deadline * 4, "{elapsed:?}");
    let mut answered: Vec<Option<u64>> = replies.into_iter().map(|r| r.reply.ok()).collect();
    answered.sort_unstable();
    assert_eq!(answered, [None, Some(0), Some(10)]);
    server.stop().await;
}

#[derive(Debug, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum HallAsk {
    Sum { a: i64, b: i64 },
}

/// A managed service (untyped) that answers sums.
#[websocket(path = "/hall", managed)]
struct Hall;

impl ManagedService for Hall {
    const ANSWERS: Answers<Self> = Answers::ON_REQUEST;
    async fn authenticate(&self, _: &Socket<Self>, _: Value) -> Result<Option<Authenticated>> {
        Ok(Some(Authenticated::user("ann")))
    }
    fn on_event(&self, _: &Socket<Self>, _: Message) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

impl Answer for Hall {
    type Request = HallAsk;
    type Reply = i64;
    async fn on_request(&self, _: &Socket<Self>, ask: HallAsk) -> Result<i64> {
        let HallAsk::Sum { a, b } = ask;
        Ok(a + b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_client_asks_and_answers_plain_and_encrypted() {
    let server = serve().await;
    for encrypt in [false, true] {
        let conn = ManagedConnection::<Value>::builder(format!("{}/hall", server.base()))
            .encrypt(encrypt)
            .on_request(|told: Value| async move {
                match told["data"]["round"].as_u64() {
                    Some(round) => Ok(round * 10),
                    None => Err(Failure::new("no_round", "a `ready` names its round")),
                }
            })
            .connect()
            .await
            .unwrap();
        let sum: i64 = conn
            .request(&HallAsk::Sum { a: 40, b: 2 })
            .timeout(WAIT)
            .await
            .unwrap();
        assert_eq!(sum, 42);
        let id = conn.connected().unwrap().id;
        let hall = server.app.ulak::<Hall>().unwrap();
        let ask = |data: Value| hall.managed().request::<u32>(&id, ("ready", data));
        assert_eq!(ask(json!({"round": 4})).timeout(WAIT).await.unwrap(), 40);
        let refused = ask(json!({})).timeout(WAIT).await;
        failed_with(&refused, "no_round");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_flooding_requests_gets_busy_past_the_clients_bound() {
    let server = serve().await;
    let _client = Client::<Desk>::builder(server.base())
        .on_request(|_: DeskOut| async {
            std::future::pending::<()>().await;
            Ok(0)
        })
        .connect()
        .await
        .unwrap();
    let socket = sockets(&namespace(&server, "/desk"), 1).await.remove(0);
    let flood = 100;
    let asks = (0..flood).map(|_| {
        socket
            .request::<u8>(json!({"type": "hi"}))
            .timeout(Duration::from_millis(500))
            .into_future()
    });
    let results = futures_util::future::join_all(asks).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(AckError::Failed(f)) if f.code == "busy"))
        .count();
    let timed_out = results
        .iter()
        .filter(|r| matches!(r, Err(AckError::Timeout(_))))
        .count();
    assert_eq!(
        (busy, timed_out),
        (
            flood - asena_client::ack::MAX_ANSWERING,
            asena_client::ack::MAX_ANSWERING
        )
    );
    server.stop().await;
}

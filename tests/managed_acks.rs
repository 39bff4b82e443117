//! Requests and replies in the managed protocol's envelope, over real sockets: the server
//! asks a client (an event with an `id`, answered with `ack`), typed; a timeout and a reply
//! after it, ids never asked or not numbers; a client that has not authenticated is not
//! asked; the socket closing mid-request; a room asked under one deadline; a client's event
//! with an `id` answered by the service's `on_request` (`ack`, or `error` with the id, and
//! 1011 after a failing handler); `ack` from a client never asked stays an application
//! event.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use asena_runtime::ack::{AckError, Answer, Answers};
use asena_runtime::managed::{Authenticated, ManagedService};
use asena_runtime::prelude::*;
use asena_runtime::{SendError, Ulak};
use asena_tests::{
    Client, TestServer, WAIT, ack_outcomes, event, eventually, isolated, managed_login, start,
};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum Ask {
    Sum { a: i64, b: i64 },
    Fail,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
enum Told {
    Ready { round: u32 },
    Seen { event: String },
}

/// Admits anyone as `guest`; lets clients join any room; answers `sum` requests; tells
/// every other event back as `seen`.
#[websocket(path = "/desk", managed, sends = Told)]
struct Desk;

impl ManagedService for Desk {
    const ANSWERS: Answers<Self> = Answers::ON_REQUEST;

    async fn authenticate(&self, _: &Socket<Self>, _: Value) -> Result<Option<Authenticated>> {
        Ok(Some(Authenticated::user("guest")))
    }

    async fn validate_rooms(&self, _ws: &Socket<Self>, rooms: Vec<String>) -> Vec<String> {
        rooms
    }

    async fn on_event(&self, ws: &Socket<Self>, event: Message) -> Result<()> {
        let event: Value = serde_json::from_slice(event.as_bytes())?;
        let event = event["event"].as_str().unwrap_or_default().to_owned();
        ws.managed().to_client(ws.id(), &Told::Seen { event })?;
        Ok(())
    }
}

impl Answer for Desk {
    type Request = Ask;
    type Reply = i64;
    async fn on_request(&self, _ws: &Socket<Self>, ask: Ask) -> Result<i64> {
        match ask {
            Ask::Sum { a, b } => Ok(a + b),
            Ask::Fail => Err("asked to fail".into()),
        }
    }
}

async fn server() -> anyhow::Result<(TestServer, Ulak<Desk>)> {
    let server = start(isolated().websocket::<Desk>()).await?;
    let desk = server
        .app
        .ulak::<Desk>()
        .ok_or_else(|| anyhow::anyhow!("no Ulak<Desk>"))?;
    Ok((server, desk))
}

/// A server, its `Ulak<Desk>`, and a client signed in as `user` with its id.
async fn signed_in(user: &str) -> anyhow::Result<(TestServer, Ulak<Desk>, Client, String)> {
    let (server, desk) = server().await?;
    let (client, id) = login(&server, user).await?;
    Ok((server, desk, client, id))
}

/// A client signed in as `user`, and its id.
async fn login(server: &TestServer, user: &str) -> anyhow::Result<(Client, String)> {
    let (client, connected) = managed_login(server, "/desk", json!({"user": user})).await?;
    let id = connected["data"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{connected}"))?
        .to_owned();
    Ok((client, id))
}

/// The next request the server sent: its event, data and id.
async fn next_request(client: &mut Client) -> anyhow::Result<(String, Value, String)> {
    let request = client.recv_json().await?;
    match (request["event"].as_str(), request["id"].as_str()) {
        (Some(event), Some(id)) => Ok((event.to_owned(), request["data"].clone(), id.to_owned())),
        _ => anyhow::bail!("not a request: {request}"),
    }
}

/// The client's `poke` comes back as `seen`: nothing else came before it.
async fn pokes(client: &mut Client) -> anyhow::Result<()> {
    let seen = client.ask(&event("poke", json!(null))).await?;
    anyhow::ensure!(
        seen == json!({"event": "seen", "data": {"event": "poke"}}),
        "{seen}"
    );
    Ok(())
}

fn ack(id: &str, data: Value) -> Value {
    json!({"event": "ack", "id": id, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_asks_a_client_and_its_ack_comes_back_typed() -> anyhow::Result<()> {
    let (server, desk, mut client, id) = signed_in("alice").await?;
    let asking = desk
        .managed()
        .request::<bool>(&id, &Told::Ready { round: 1 });
    let asking = tokio::spawn(asking.timeout(WAIT).into_future());
    let (name, data, request_id) = next_request(&mut client).await?;
    assert_eq!((name.as_str(), data), ("ready", json!({"round": 1})));
    client.send_json(&ack(&request_id, json!(true))).await?;
    assert!(asking.await??);
    // An event after it is handled as before: the ack went to its request only.
    pokes(&mut client).await?;
    server.stop().await
}

#[tokio::test]
async fn a_timeout_then_late_unknown_and_unnumbered_acks_reach_nobody() -> anyhow::Result<()> {
    let (server, desk, mut client, id) = signed_in("bob").await?;

    // Never asked: `ack` is an application event.
    client.send_json(&ack("1", json!(1))).await?;
    assert_eq!(
        client.recv_json().await?,
        json!({"event": "seen", "data": {"event": "ack"}})
    );

    let started = Instant::now();
    let asked = desk
        .managed()
        .raw()
        .request::<Value>(&id, ("question", json!("?")))
        .timeout(Duration::from_millis(200));
    let (result, request) = tokio::join!(asked.into_future(), next_request(&mut client));
    assert!(matches!(result, Err(AckError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < WAIT);
    let (_, _, request_id) = request?;
    for stray in [
        ack(&request_id, json!("late")),
        ack("424242", json!(1)),
        ack("not a number", json!(1)),
        ack(&"9".repeat(100_000), json!(1)),
        json!({"event": "ack", "data": 1}),
    ] {
        client.send_json(&stray).await?;
    }
    pokes(&mut client).await?;
    let stats = desk.stats();
    assert_eq!((stats.request_timeouts(), stats.stray_replies()), (1, 5));
    server.stop().await
}

#[tokio::test]
async fn a_client_that_has_not_authenticated_is_not_asked() -> anyhow::Result<()> {
    let (server, desk) = server().await?;
    let mut client = server.connect("/desk").await?;
    eventually(|| desk.socket_count() == 1).await?;
    let id = desk.sockets().remove(0).id().to_owned();
    let refused = desk
        .managed()
        .raw()
        .request::<Value>(&id, ("question", json!(1)))
        .timeout(WAIT)
        .await;
    assert!(
        matches!(&refused, Err(AckError::Send(SendError { .. }))),
        "{refused:?}"
    );
    let elsewhere = desk
        .managed()
        .raw()
        .request::<Value>("no-such-client", ("question", json!(1)))
        .await;
    assert!(
        matches!(&elsewhere, Err(AckError::Send(e)) if e.code.as_str() == "SOCKET_NOT_FOUND"),
        "{elsewhere:?}"
    );
    // Nothing reached the client: its first message is the answer to its authenticate.
    client
        .send_json(&event("authenticate", json!({"user": "carol"})))
        .await?;
    assert_eq!(client.recv_json().await?["event"], "connected");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_request_fails_it_at_once() -> anyhow::Result<()> {
    let (server, desk, mut client, id) = signed_in("dan").await?;
    let asking = desk
        .managed()
        .raw()
        .request::<Value>(&id, ("question", json!(1)));
    let asking = tokio::spawn(asking.timeout(WAIT * 4).into_future());
    next_request(&mut client).await?;
    let started = Instant::now();
    client.close().await?;
    let result = tokio::time::timeout(WAIT, asking).await??;
    assert!(matches!(result, Err(AckError::Closed)), "{result:?}");
    assert!(started.elapsed() < WAIT);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_managed_clients_is_asked_under_one_deadline() -> anyhow::Result<()> {
    let (server, desk) = server().await?;
    let mut clients = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let (mut client, _) = login(&server, user).await?;
        let joined = client
            .ask(&json!({"event": "join", "data": {"rooms": ["ops"]}, "id": "j"}))
            .await?;
        assert_eq!(joined["data"]["rooms"], json!(["ops"]));
        clients.push(client);
    }
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let asking = desk
        .managed()
        .request_room::<u32>("ops", &Told::Ready { round: 2 });
    let asking = tokio::spawn(asking.timeout(deadline).into_future());
    let (_, _, first) = next_request(&mut clients[0]).await?;
    clients[0].send_json(&ack(&first, json!(1))).await?;
    let (_, _, second) = next_request(&mut clients[1]).await?;
    clients[1]
        .send_json(
            &json!({"event": "ack", "id": second, "error": {"code": "no", "message": "not now"}}),
        )
        .await?;
    next_request(&mut clients[2]).await?;
    let replies = asking.await?;
    assert!(started.elapsed() >= deadline && started.elapsed() < deadline * 4);
    assert_eq!(
        ack_outcomes(&replies, "one", |answer| *answer == 1),
        ["no", "one", "timeout"]
    );
    server.stop().await
}

#[tokio::test]
async fn a_clients_event_with_an_id_is_answered_with_ack_or_error_and_that_id() -> anyhow::Result<()>
{
    let (server, _desk, mut client, _) = signed_in("erin").await?;
    let reply = client
        .ask(&json!({"event": "sum", "data": {"a": 2, "b": 40}, "id": "q1"}))
        .await?;
    assert_eq!(reply, json!({"event": "ack", "data": 42, "id": "q1"}));
    // Without an id it is an ordinary event.
    let seen = client
        .ask(&json!({"event": "sum", "data": {"a": 2, "b": 40}}))
        .await?;
    assert_eq!(seen, json!({"event": "seen", "data": {"event": "sum"}}));
    // An event with an id that is not one of the requests is an ordinary event.
    let seen = client
        .ask(&json!({"event": "poke", "data": null, "id": "q0"}))
        .await?;
    assert_eq!(seen, json!({"event": "seen", "data": {"event": "poke"}}));
    // A request that does not decode: `error` with its id and code; the socket stays.
    let refused = client
        .ask(&json!({"event": "sum", "data": {"a": "two"}, "id": "q2"}))
        .await?;
    assert_eq!(
        (refused["event"].as_str(), refused["id"].as_str()),
        (Some("error"), Some("q2"))
    );
    assert_eq!(refused["data"]["code"], "invalid_value", "{refused}");
    // A failing handler: `error` with the id, then the protocol's failure and 1011.
    client
        .send_json(&json!({"event": "fail", "id": "q3"}))
        .await?;
    assert_eq!(
        client.recv_json().await?,
        json!({"event": "error", "data": {"message": "Server error occurred", "code": "handler_failed"}, "id": "q3"})
    );
    assert_eq!(client.recv_json().await?["event"], "error");
    assert_eq!(client.recv_close().await?.0, 1011);
    server.stop().await
}

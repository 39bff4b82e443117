//! Requests and replies on the channel protocol, both ways, over real sockets: a reply
//! typed, a timeout that frees its entry and a reply after it (ignored, counted), replies
//! with ids never asked, repeated, past `u64` or malformed, the pending bound, the socket
//! closing mid-request, a reply that does not decode or that fails; a typed service that
//! answers its clients' requests (a decode error, a failing and a panicking handler), a
//! flood of requests against the rate limit and the one-at-a-time dispatch; a room asked at
//! once under one deadline; the AsyncAPI document's request and reply.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use asena_runtime::ack::{AckError, Answer, Answers};
use asena_runtime::config::{Limits, RateLimit};
use asena_runtime::prelude::*;
use asena_runtime::{Namespace, SocketRef};
use asena_tests::{Client, TestServer, WAIT, ack_outcomes, eventually, isolated, start};
use serde_json::{Value, json};

/// Echoes every message back; a socket joins the room its query names.
#[websocket(path = "/echo")]
struct Echo;

impl WebSocketService for Echo {
    type Data = ();
    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        if let Some(room) = ws.query("room") {
            ws.subscribe(room)?;
        }
        Ok(())
    }
    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        ws.send(&msg)?;
        Ok(())
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum CalcIn {
    Note { text: String },
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CalcOut {
    Noted,
    AreYouReady,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Validate)]
struct Sum {
    #[garde(range(min = -1000, max = 1000))]
    a: i64,
    #[garde(skip)]
    b: i64,
}

/// A typed service that answers requests: sums, `a == 13` fails, `a == 666` panics.
#[websocket(path = "/calc", receives = CalcIn, sends = CalcOut)]
struct Calc;

/// How many requests of one socket are being answered, and the most at once.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl WebSocketService for Calc {
    type Data = InFlight;
    const ANSWERS: Answers<Self> = Answers::ON_REQUEST;
    async fn on_message(&self, ws: &Socket<Self>, _: CalcIn) -> Result<()> {
        ws.send(CalcOut::Noted)?;
        Ok(())
    }
}

impl Answer for Calc {
    type Request = Sum;
    type Reply = i64;
    async fn on_request(&self, ws: &Socket<Self>, sum: Sum) -> Result<i64> {
        let in_flight = &ws.data().values;
        let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        in_flight.most.fetch_max(now, Ordering::SeqCst);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        in_flight.now.fetch_sub(1, Ordering::SeqCst);
        match sum.a {
            13 => Err("unlucky".into()),
            666 => panic!("the number of the beast"),
            _ => Ok(sum.a + sum.b),
        }
    }
}

async fn server() -> anyhow::Result<TestServer> {
    start(isolated().websocket::<Echo>().websocket::<Calc>()).await
}

/// The server's handle of the only socket connected to `path`.
async fn only_socket(server: &TestServer, path: &str) -> anyhow::Result<SocketRef> {
    let ns = namespace(server, path)?;
    eventually(|| ns.socket_count() == 1).await?;
    Ok(ns.sockets().remove(0))
}

fn namespace(server: &TestServer, path: &str) -> anyhow::Result<Namespace> {
    server
        .app
        .namespace(path)
        .ok_or_else(|| anyhow::anyhow!("no namespace {path}"))
}

/// Reads the next request the server sent: its id and data.
async fn next_request(client: &mut Client) -> anyhow::Result<(u64, Value)> {
    let request = client.recv_json().await?;
    let id = request["$req"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("not a request: {request}"))?;
    Ok((id, request["data"].clone()))
}

/// The echo of a plain message: the socket still serves, and nothing came before it.
async fn still_echoes(client: &mut Client) -> anyhow::Result<()> {
    let echoed = client.ask(&json!({"plain": true})).await?;
    anyhow::ensure!(echoed == json!({"plain": true}), "{echoed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_comes_back_to_its_request_typed() -> anyhow::Result<()> {
    let server = server().await?;
    let mut client = server.connect("/echo").await?;
    let socket = only_socket(&server, "/echo").await?;
    let asking = tokio::spawn(async move {
        socket
            .request::<Vec<u32>>(json!({"give": "numbers"}))
            .timeout(WAIT)
            .await
    });
    let (id, data) = next_request(&mut client).await?;
    assert_eq!(data, json!({"give": "numbers"}));
    client
        .send_json(&json!({"$ack": id, "data": [1, 2, 3]}))
        .await?;
    assert_eq!(asking.await??, vec![1, 2, 3]);
    // The reply reached its request only: the next message is the echo of a plain one.
    still_echoes(&mut client).await?;
    server.stop().await
}

#[tokio::test]
async fn a_timeout_frees_its_entry_and_a_reply_after_it_is_ignored_and_counted()
-> anyhow::Result<()> {
    let server = server().await?;
    let mut client = server.connect("/echo").await?;
    let socket = only_socket(&server, "/echo").await?;
    let started = Instant::now();
    let asked = socket
        .request::<Value>(json!("anyone?"))
        .timeout(Duration::from_millis(200));
    let (result, request) = tokio::join!(asked.into_future(), next_request(&mut client));
    assert!(matches!(result, Err(AckError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < WAIT);
    assert_eq!(socket.pending_requests(), 0, "the timeout freed the entry");
    assert_eq!(namespace(&server, "/echo")?.stats().request_timeouts(), 1);

    let (id, _) = request?;
    client
        .send_json(&json!({"$ack": id, "data": "late"}))
        .await?;
    still_echoes(&mut client).await?;
    assert_eq!(namespace(&server, "/echo")?.stats().stray_replies(), 1);
    server.stop().await
}

#[tokio::test]
async fn replies_never_asked_repeated_huge_or_malformed_reach_nobody() -> anyhow::Result<()> {
    let server = server().await?;
    let mut client = server.connect("/echo").await?;
    let socket = only_socket(&server, "/echo").await?;

    // Before the server asked anything, `{"$ack":..}` is an ordinary message.
    let echoed = client.ask(&json!({"$ack": 1, "data": "mine"})).await?;
    assert_eq!(echoed, json!({"$ack": 1, "data": "mine"}));

    let asking = tokio::spawn({
        let socket = socket.clone();
        async move { socket.request::<u8>(json!(null)).timeout(WAIT).await }
    });
    let (id, _) = next_request(&mut client).await?;
    let huge = format!(r#"{{"$ack":{},"data":1}}"#, "9".repeat(500_000));
    for stray in [
        json!({"$ack": id + 1000, "data": 1}).to_string(),
        json!({"$ack": 0, "data": 1}).to_string(),
        r#"{"$ack":18446744073709551616,"data":1}"#.to_owned(),
        r#"{"$ack":"1","data":1}"#.to_owned(),
        r#"{"$ack":-1}"#.to_owned(),
        r#"{"$ack":1,"error":"nope"}"#.to_owned(),
        r#"{"$ack":"#.to_owned(),
        huge,
    ] {
        client.send_text(&stray).await?;
    }
    client.send_json(&json!({"$ack": id, "data": 7})).await?;
    client.send_json(&json!({"$ack": id, "data": 8})).await?;
    assert_eq!(asking.await??, 7);
    still_echoes(&mut client).await?;
    assert_eq!(namespace(&server, "/echo")?.stats().stray_replies(), 9);
    assert_eq!(socket.pending_requests(), 0);
    server.stop().await
}

#[tokio::test]
async fn a_client_that_never_answers_fills_its_bound_and_the_next_request_fails_at_once()
-> anyhow::Result<()> {
    let limits = Limits {
        max_pending_requests: 4,
        ..Limits::default()
    };
    let server = start(isolated().websocket::<Echo>().limits_for("/echo", limits)).await?;
    let mut client = server.connect("/echo").await?;
    let socket = only_socket(&server, "/echo").await?;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let socket = socket.clone();
        waiting.push(tokio::spawn(async move {
            socket.request::<Value>(json!(1)).timeout(WAIT * 4).await
        }));
        next_request(&mut client).await?;
    }
    assert_eq!(socket.pending_requests(), 4);
    let full = tokio::time::timeout(WAIT, socket.request::<Value>(json!(2)).into_future()).await?;
    assert!(
        matches!(full, Err(AckError::TooManyPending { limit: 4 })),
        "{full:?}"
    );
    // Closing the socket fails every pending request at once, long before their timeouts.
    let started = Instant::now();
    client.close().await?;
    for waiting in waiting {
        let result = tokio::time::timeout(WAIT, waiting).await??;
        assert!(matches!(result, Err(AckError::Closed)), "{result:?}");
    }
    assert!(started.elapsed() < WAIT);
    let after = socket.request::<Value>(json!(3)).await;
    assert!(matches!(after, Err(AckError::Closed)), "{after:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_does_not_decode_or_that_fails_is_the_callers_error() -> anyhow::Result<()> {
    let server = server().await?;
    let mut client = server.connect("/echo").await?;
    let socket = only_socket(&server, "/echo").await?;

    let asking = tokio::spawn({
        let socket = socket.clone();
        async move { socket.request::<u8>(json!(null)).timeout(WAIT).await }
    });
    let (id, _) = next_request(&mut client).await?;
    client
        .send_json(&json!({"$ack": id, "data": "not a number"}))
        .await?;
    let undecodable = asking.await?;
    assert!(
        matches!(&undecodable, Err(AckError::Undecodable(e)) if e.kind().code() == "invalid_value"),
        "{undecodable:?}"
    );

    let asking = tokio::spawn(async move { socket.request::<u8>(json!(null)).timeout(WAIT).await });
    let (id, _) = next_request(&mut client).await?;
    client
        .send_json(&json!({"$ack": id, "error": {"code": "busy", "message": "later"}}))
        .await?;
    match asking.await? {
        Err(AckError::Failed(failure)) => assert_eq!(failure.code, "busy"),
        other => panic!("{other:?}"),
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_service_asks_with_its_sends_type_and_answers_its_clients() -> anyhow::Result<()> {
    let server = server().await?;
    let mut client = server.connect("/calc").await?;
    let ns = server
        .app
        .namespace("/calc")
        .ok_or_else(|| anyhow::anyhow!("no /calc"))?;
    eventually(|| ns.socket_count() == 1).await?;
    let calc = server
        .app
        .ulak::<Calc>()
        .ok_or_else(|| anyhow::anyhow!("no Ulak<Calc>"))?;
    let socket = calc.sockets().remove(0);

    // Server → client, typed: the request is a `CalcOut`.
    let asking = tokio::spawn(async move {
        socket
            .request::<bool>(&CalcOut::AreYouReady)
            .timeout(WAIT)
            .await
    });
    let (id, data) = next_request(&mut client).await?;
    assert_eq!(data, json!({"type": "are_you_ready"}));
    client.send_json(&json!({"$ack": id, "data": true})).await?;
    assert!(asking.await??);

    // Client → server.
    let reply = client
        .ask(&json!({"$req": 1, "data": {"a": 2, "b": 3}}))
        .await?;
    assert_eq!(reply, json!({"$ack": 1, "data": 5}));
    // Ordinary messages are untouched.
    let noted = client.ask(&json!({"type": "note", "text": "x"})).await?;
    assert_eq!(noted, json!({"type": "noted"}));
    // A request that does not decode is answered with the decode error; the socket stays.
    let refused = client
        .ask(&json!({"$req": 2, "data": {"a": 5000, "b": 0}}))
        .await?;
    assert_eq!(refused["$ack"], 2);
    assert_eq!(refused["error"]["code"], "constraint", "{refused}");
    let refused = client.ask(&json!({"$req": 3, "data": "sum?"})).await?;
    assert_eq!(refused["error"]["code"], "invalid_value", "{refused}");
    let reply = client
        .ask(&json!({"$req": u64::MAX, "data": {"a": 1, "b": 1}}))
        .await?;
    assert_eq!(reply, json!({"$ack": u64::MAX, "data": 2}));
    server.stop().await
}

/// A failing or panicking request handler answers its id, then the socket closes with 1011.
async fn a_failing_request_handler(a: i64) -> anyhow::Result<()> {
    let server = server().await?;
    let mut client = server.connect("/calc").await?;
    client
        .send_json(&json!({"$req": 9, "data": {"a": a, "b": 0}}))
        .await?;
    let answer = client.recv_json().await?;
    assert_eq!(
        answer,
        json!({"$ack": 9, "error": {"code": "handler_failed", "message": "Server error occurred"}})
    );
    let failure = client.recv_json().await?;
    assert_eq!(failure["type"], "error");
    assert_eq!(client.recv_close().await?.0, 1011);
    assert_eq!(namespace(&server, "/calc")?.stats().handler_errors(), 1);
    server.stop().await
}

#[tokio::test]
async fn a_request_handler_that_fails_answers_its_id_then_closes_with_1011() -> anyhow::Result<()> {
    a_failing_request_handler(13).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_handler_that_panics_answers_its_id_then_closes_with_1011() -> anyhow::Result<()>
{
    a_failing_request_handler(666).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_is_dispatched_one_at_a_time_and_meets_the_rate_limit()
-> anyhow::Result<()> {
    let limits = Limits {
        rate_limit: Some(RateLimit::per_second(50, 1 << 20)),
        ..Limits::default()
    };
    let server = start(isolated().websocket::<Calc>().limits_for("/calc", limits)).await?;
    let mut client = server.connect("/calc").await?;
    let calc = server
        .app
        .ulak::<Calc>()
        .ok_or_else(|| anyhow::anyhow!("no Ulak<Calc>"))?;
    eventually(|| calc.socket_count() == 1).await?;
    let socket = calc.sockets().remove(0);
    let flood: String = (1..=200u64)
        .map(|id| json!({"$req": id, "data": {"a": 1, "b": 1}}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for line in flood.lines() {
        client.send_text(line).await?;
    }
    let mut answered = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut client.ws)).await? {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                let reply: Value = serde_json::from_str(&text)?;
                answered += 1;
                assert_eq!(reply["$ack"], answered, "in order");
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                break frame.map(|f| u16::from(f.code));
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!((1..200).contains(&answered), "{answered} answered");
    assert_eq!(socket.data().values.most.load(Ordering::SeqCst), 1);
    assert!(namespace(&server, "/calc")?.stats().rate_limited() >= 1);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_asked_at_once_and_each_socket_answers_under_one_deadline() -> anyhow::Result<()>
{
    let server = server().await?;
    let mut yes = server.connect("/echo?room=crew").await?;
    let mut no = server.connect("/echo?room=crew").await?;
    let mut silent = server.connect("/echo?room=crew").await?;
    let _outside = server.connect("/echo?room=other").await?;
    let ns = namespace(&server, "/echo")?;
    eventually(|| ns.sockets_in("crew").len() == 3).await?;

    let deadline = Duration::from_millis(400);
    let started = Instant::now();
    let asking = tokio::spawn({
        let ns = ns.clone();
        async move {
            ns.request_room::<String>("crew", json!("ready?"))
                .timeout(deadline)
                .await
        }
    });
    let (id, _) = next_request(&mut yes).await?;
    yes.send_json(&json!({"$ack": id, "data": "yes"})).await?;
    let (id, _) = next_request(&mut no).await?;
    no.send_json(&json!({"$ack": id, "error": {"code": "no", "message": "not ready"}}))
        .await?;
    next_request(&mut silent).await?;
    let replies = asking.await?;
    let elapsed = started.elapsed();
    assert!(elapsed >= deadline && elapsed < deadline * 4, "{elapsed:?}");
    assert_eq!(
        ack_outcomes(&replies, "yes", |answer| answer == "yes"),
        ["no", "timeout", "yes"]
    );
    server.stop().await
}

#[tokio::test]
async fn the_asyncapi_document_has_the_request_and_its_reply() -> anyhow::Result<()> {
    let server = server().await?;
    let doc = server.app.asyncapi();
    let operation = doc["operations"]
        .as_object()
        .and_then(|ops| {
            ops.iter()
                .find(|(key, op)| key.contains("request") && op.get("reply").is_some())
        })
        .map(|(_, op)| op.clone())
        .ok_or_else(|| anyhow::anyhow!("no request operation: {doc}"))?;
    assert_eq!(operation["action"], "receive");
    let request = &doc["components"]["messages"]["Calc.request"];
    assert_eq!(
        request["payload"]["properties"]["data"]["properties"]["a"]["maximum"], 1000,
        "{request}"
    );
    asena_tests::validate_asyncapi(&[("acks", doc.clone())])?;
    let reply = &doc["components"]["messages"]["Calc.reply"];
    assert_eq!(
        reply["payload"]["properties"]["data"]["type"], "integer",
        "{reply}"
    );
    server.stop().await
}

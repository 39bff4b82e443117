//! Bounded work for hostile clients, over real sockets: the per-socket inbound rate limit
//! (a flood is closed with 1008 or its excess dropped, counted; other clients and a polite
//! client are untouched) and typed decode errors that stay small and fast on a 1 MiB
//! hostile message.

use std::time::Duration;

use asena_runtime::Namespace;
use asena_runtime::config::{Limits, RateLimit, RateLimitPolicy};
use asena_runtime::prelude::*;
use asena_tests::{
    Client, TestServer, WAIT, echo_service, eventually, isolated, start, until_some,
};

// `/echo`: every text message goes back to its sender.
echo_service!(Echo, "/echo");

// `/drop`: the same, under a limit that drops the excess.
echo_service!(DropEcho, "/drop");

// `/bytes`: the same, under a byte limit.
echo_service!(BytesEcho, "/bytes");

/// What clients send to [`Typed`].
#[derive(Debug, Deserialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum TypedIn {
    Say {
        #[garde(length(chars, min = 1, max = 100))]
        text: String,
    },
    Move {
        #[garde(dive)]
        to: Point,
    },
}

#[derive(Debug, Deserialize, JsonSchema, Validate)]
struct Point {
    #[garde(range(min = 0, max = 9))]
    x: i32,
    #[garde(range(min = 0, max = 9))]
    y: i32,
}

/// `/typed`: answers `say` with its text; decode errors get the default answer.
#[websocket(path = "/typed", receives = TypedIn)]
#[derive(Debug)]
struct Typed;

impl WebSocketService for Typed {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, msg: TypedIn) -> Result<()> {
        if let TypedIn::Say { text } = msg {
            ws.send(text)?;
        }
        Ok(())
    }
}

fn limited(limit: RateLimit) -> Limits {
    Limits {
        rate_limit: Some(limit),
        ..Limits::default()
    }
}

async fn app() -> anyhow::Result<TestServer> {
    start(
        isolated()
            .websocket::<Echo>()
            .websocket::<DropEcho>()
            .websocket::<BytesEcho>()
            .websocket::<Typed>()
            // /echo keeps the defaults (1,000 messages a second, a second's worth at once).
            .limits_for(
                "/drop",
                limited(
                    RateLimit::per_second(20, 1 << 20).with_policy(RateLimitPolicy::DropMessages),
                ),
            )
            .limits_for(
                "/bytes",
                Limits {
                    max_message_size: 16 << 10,
                    ..limited(RateLimit::per_second(10_000, 64 << 10))
                },
            )
            .limits_for(
                "/typed",
                Limits {
                    max_message_size: 2 << 20,
                    ..Limits::default()
                },
            ),
    )
    .await
}

/// The app, its `/drop` namespace (20 messages a second, the excess dropped) and a client
/// there.
async fn on_drop() -> anyhow::Result<(TestServer, Namespace, Client)> {
    let s = app().await?;
    let ns = s.app.namespace("/drop").expect("registered");
    let client = s.connect("/drop").await?;
    Ok((s, ns, client))
}

/// Sends `n` text messages `prefix0`, `prefix1`, … as fast as the socket takes them (one
/// flush at the end).
async fn flood(client: &mut Client, prefix: &str, n: usize) -> anyhow::Result<()> {
    use futures_util::SinkExt;
    for i in 0..n {
        client
            .ws
            .feed(asena_tests::tungstenite::Message::text(format!(
                "{prefix}{i}"
            )))
            .await?;
    }
    client.ws.flush().await?;
    Ok(())
}

/// Reads the echoes `m0`, `m1`, … in order until the server's close frame; returns how
/// many came and the close's code and reason.
async fn echoes_until_close(client: &mut Client) -> anyhow::Result<(usize, (u16, String))> {
    use asena_tests::tungstenite::Message as Ws;
    use futures_util::StreamExt;
    let mut echoed = 0;
    loop {
        let next = tokio::time::timeout(WAIT, client.ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended without a close frame"))??;
        match next {
            Ws::Text(text) => {
                assert_eq!(text.as_str(), format!("m{echoed}"));
                echoed += 1;
            }
            Ws::Close(Some(frame)) => {
                return Ok((echoed, (u16::from(frame.code), frame.reason.to_string())));
            }
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_flood_is_closed_with_1008_while_other_clients_are_served() -> anyhow::Result<()> {
    let s = app().await?;
    let mut attacker = s.connect("/echo").await?;
    let mut other = s.connect("/echo").await?;
    // Three seconds' worth of messages at the default limit, at once.
    flood(&mut attacker, "m", 3_000).await?;
    // The burst (a second's worth) is echoed in order, then the socket is closed.
    let (echoed, close) = echoes_until_close(&mut attacker).await?;
    assert_eq!(close, (1008, "rate limit exceeded".to_owned()));
    let ns = s.app.namespace("/echo").expect("registered");
    let stats = ns.stats();
    eventually(|| stats.rate_limited() == 1).await?;
    // At least the burst; fewer than all, however slowly this machine reads (three seconds'
    // worth would need two seconds of reading to pass).
    assert!(
        (1_000..3_000).contains(&echoed),
        "{echoed} echoed before the close"
    );
    eventually(|| stats.closed().contains(&(1008, 1))).await?;
    // The other client is served as before.
    other.send_text("still here").await?;
    assert_eq!(other.recv_text().await?, "still here");
    let text = s.app.metrics_text();
    assert!(
        text.contains("asena_rate_limited_total{namespace=\"/echo\"} 1"),
        "{text}"
    );
    s.stop().await
}

#[tokio::test]
async fn the_close_names_the_limit() -> anyhow::Result<()> {
    let s = app().await?;
    let mut attacker = s.connect("/bytes").await?;
    // 64 KiB a second: four 16 KiB messages fit the burst, and one more each quarter of a
    // second; eight sent at once do not all fit, however slowly this machine reads them.
    let big = "x".repeat(16 << 10);
    for _ in 0..8 {
        attacker.send_text(&big).await?;
    }
    let mut echoed = 0;
    let close = loop {
        use futures_util::StreamExt;
        let next = tokio::time::timeout(WAIT, attacker.ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended without a close frame"))??;
        match next {
            asena_tests::tungstenite::Message::Text(text) => {
                assert_eq!(text.len(), big.len());
                echoed += 1;
            }
            asena_tests::tungstenite::Message::Close(Some(frame)) => {
                break (u16::from(frame.code), frame.reason.to_string());
            }
            other => anyhow::bail!("unexpected {other:?}"),
        }
    };
    assert_eq!(close, (1008, "rate limit exceeded".to_owned()));
    assert!((4..8).contains(&echoed), "{echoed} echoed before the close");
    let ns = s.app.namespace("/bytes").expect("registered");
    let stats = ns.stats();
    eventually(|| stats.rate_limited() == 1).await?;
    s.stop().await
}

#[tokio::test]
async fn the_drop_policy_drops_and_counts_the_excess_and_keeps_the_socket() -> anyhow::Result<()> {
    let (s, ns, mut flooder) = on_drop().await?;
    let stats = ns.stats();
    const N: usize = 200;
    flood(&mut flooder, "m", N).await?;
    eventually(|| stats.messages_received() == N as u64).await?;
    let dropped = stats.rate_limited() as usize;
    // 20 a second with a second's burst: about 20 get through (more if this machine takes
    // long to read them), the rest are dropped.
    assert!((N - 60..=N - 20).contains(&dropped), "{dropped} dropped");
    // The ones that got through are echoed in order, with gaps where messages were dropped.
    let mut last = None;
    for _ in 0..N - dropped {
        let text = flooder.recv_text().await?;
        let i: usize = text.trim_start_matches('m').parse()?;
        assert!(last.is_none_or(|l| i > l), "{text} after {last:?}");
        last = Some(i);
    }
    // The socket stays open: once the bucket refills (50 ms a message), a message passes.
    let answer = until_some(WAIT, "a message after the flood", async || {
        flooder.send_text("again").await?;
        match tokio::time::timeout(Duration::from_millis(20), flooder.recv_text()).await {
            Ok(text) => Ok(Some(text?)),
            Err(_) => Ok(None),
        }
    })
    .await?;
    assert_eq!(answer, "again");
    assert!(stats.closed().is_empty(), "{:?}", stats.closed());
    s.stop().await
}

#[tokio::test]
async fn a_polite_client_is_untouched() -> anyhow::Result<()> {
    let (s, ns, mut polite) = on_drop().await?;
    // 20 a second sustained: 40 messages at 10 a second never touch the limit.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..40 {
        tick.tick().await;
        polite.send_text(&format!("p{i}")).await?;
        assert_eq!(polite.recv_text().await?, format!("p{i}"));
    }
    assert_eq!(ns.stats().rate_limited(), 0);
    polite.close().await?;
    s.stop().await
}

#[tokio::test]
async fn a_megabyte_of_hostile_typed_json_gets_a_small_answer_at_once() -> anyhow::Result<()> {
    let s = app().await?;
    let mut attacker = s.connect("/typed").await?;
    let mut other = s.connect("/typed").await?;
    let fives = vec!["5"; 1 << 19].join(",");
    let long = "k".repeat(1 << 19);
    let hostile = [
        // A long string quoted by the error.
        format!(r#"{{"type":"move","to":{{"x":"{long}{long}","y":1}}}}"#),
        // A long unknown tag.
        format!(r#"{{"type":"{long}{long}"}}"#),
        // Many values matching the mismatch, under a long key.
        format!(r#"{{"type":"say","text":5,"{long}":[{fives}]}}"#),
    ];
    for input in &hostile {
        assert!(input.len() >= 1 << 20);
        attacker.send_text(input).await?;
        // The answer comes within the usual wait, and is small.
        let answer = attacker.recv_text().await?;
        assert!(answer.len() <= 700, "{} bytes: {answer:.200}", answer.len());
        let json: serde_json::Value = serde_json::from_str(&answer)?;
        assert_eq!(json["type"], "error");
        // Meanwhile another client is served.
        other.send_text(r#"{"type":"say","text":"hi"}"#).await?;
        assert_eq!(other.recv_text().await?, "hi");
    }
    let ns = s.app.namespace("/typed").expect("registered");
    let stats = ns.stats();
    assert_eq!(stats.invalid_messages(), hostile.len() as u64);
    s.stop().await
}

/// A message of many nested containers is refused before serde builds a value per container
/// (which for an internally tagged enum means buffering the whole message first).
#[tokio::test]
async fn a_message_of_many_containers_is_refused_before_decoding() -> anyhow::Result<()> {
    let s = app().await?;
    let mut attacker = s.connect("/typed").await?;
    let deep = format!("{}5{}", "[".repeat(100), "]".repeat(100));
    let hostile = format!(
        r#"{{"type":"say","text":[{}]}}"#,
        vec![deep.as_str(); 5_000].join(",")
    );
    attacker.send_text(&hostile).await?;
    let answer: serde_json::Value = serde_json::from_str(&attacker.recv_text().await?)?;
    assert_eq!(answer["code"], "too_many_containers", "{answer}");
    attacker.send_text(r#"{"type":"say","text":"hi"}"#).await?;
    assert_eq!(attacker.recv_text().await?, "hi");
    s.stop().await
}

/// An upgrade whose query string holds more pairs than a socket may keep is refused with
/// 400, and a request head larger than the server reads gets 431 or 414: a socket keeps its
/// upgrade's query and headers for its life.
#[tokio::test]
async fn upgrade_requests_are_bounded() -> anyhow::Result<()> {
    let s = app().await?;
    let many = vec!["a"; 65].join("&");
    let (status, response) =
        asena_tests::upgrade_request(s.addr, &format!("/echo?{many}"), &[]).await?;
    assert_eq!(status, 400, "{response}");
    assert!(
        asena_tests::body_of(&response).contains("64 query parameters"),
        "{response}"
    );
    let enough = vec!["a"; 64].join("&");
    let (status, response) =
        asena_tests::upgrade_request(s.addr, &format!("/echo?{enough}"), &[]).await?;
    assert_eq!(status, 101, "{response}");

    let long_query = "a".repeat(40 * 1024);
    let (status, _) =
        asena_tests::upgrade_request(s.addr, &format!("/echo?q={long_query}"), &[]).await?;
    assert!(status == 414 || status == 431, "{status}");
    for size in [40 * 1024, 100 * 1024] {
        let big = "x".repeat(size);
        let (status, _) = asena_tests::upgrade_request(s.addr, "/echo", &[("x-big", &big)]).await?;
        assert_eq!(status, 431, "{size}");
    }
    s.stop().await
}

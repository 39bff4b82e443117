//! Trace context through the fleet, on a real Redis and a real NATS: an HTTP request with a
//! `traceparent` makes a room message whose send (on one instance) and delivery (on the
//! other) are logged in spans of the request's trace, linked by the sending span's id; a
//! request without one, or with a malformed one, starts a new trace; the message arrives
//! either way.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::prelude::*;
use asena_runtime::trace::{self, TraceParent};
use asena_runtime::transport::{NatsTransport, RedisTransport};
use asena_runtime::{FromApp, InspectorToken};
use asena_tests::broker::{NATS, REDIS};
use asena_tests::managed::{next_event, raw_sender};
use asena_tests::{
    Captured, Client, TestServer, http_request, isolated, join_hall, managed_login, start,
    start_service_with, unique,
};
use axum::extract::Path;
use axum::routing::post;
use tracing_subscriber::util::SubscriberInitExt as _;

asena_tests::hall_service!(Traced, "/hall");

/// A channel prefix of this process's own, on the shared Redis.
static PREFIX: LazyLock<String> = LazyLock::new(|| format!("tr{}", std::process::id()));
asena_tests::managed_service!(TracedManaged, "/managed", PREFIX.as_str());

/// Sends `hello` to a room from an HTTP route, in the request's trace.
async fn notify(FromApp(ulak): FromApp<Ulak<Traced>>, Path(room): Path<String>) -> String {
    match ulak.to(&room, "hello") {
        Ok(n) => n.to_string(),
        Err(error) => error.to_string(),
    }
}

/// The log of every test in this file (one subscriber per process); each test finds its
/// own lines by its room's name.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        captured.subscriber("asena::trace=debug").init();
        captured
    })
}

/// The inspector's token in these tests.
const TOKEN: &str = "trace-inspector-token";

/// An instance named `name` on `url`, in the fleet of the channel (or subject) `fleet`, with
/// its inspector; and its transport's pod id (what its delivery spans carry).
async fn instance(url: &str, fleet: &str, name: &str) -> anyhow::Result<(TestServer, String)> {
    let routes = axum::Router::new()
        .route("/notify/{room}", post(notify))
        .layer(axum::middleware::from_fn(trace::propagate));
    let builder = isolated()
        .websocket::<Traced>()
        .router(routes)
        .instance_name(name)
        .inspector("/_asena", InspectorToken::new(TOKEN))
        .announce_every(Duration::from_millis(100));
    let (builder, pod) = if url.starts_with("nats") {
        let transport = NatsTransport::new(url).subject(fleet);
        let pod = transport.pod_id().to_owned();
        (builder.transport(transport), pod)
    } else {
        let transport = RedisTransport::new(url).channel(fleet);
        let pod = transport.pod_id().to_owned();
        (builder.transport(transport), pod)
    };
    Ok((start(builder).await?, pod))
}

/// The inspector's traces view of `server`.
async fn inspected_traces(server: &TestServer) -> anyhow::Result<Vec<serde_json::Value>> {
    let request = hyper::Request::get(server.http_url("/_asena/api/traces"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Default::default())?;
    let response = http_request(request).await?;
    anyhow::ensure!(response.status == 200, "{response}");
    let body: serde_json::Value = serde_json::from_str(&response.body)?;
    Ok(body["traces"].as_array().cloned().unwrap_or_default())
}

/// The next message `client` gets that is not a probe.
async fn after_probes(client: &mut Client) -> anyhow::Result<String> {
    loop {
        let text = client.recv_text().await?;
        if text != "probe" {
            return Ok(text);
        }
    }
}

/// POSTs `/notify/{room}` to `server`, with `traceparent` when given.
async fn post_notify(
    server: &TestServer,
    room: &str,
    traceparent: Option<&str>,
) -> anyhow::Result<()> {
    let mut request = hyper::Request::post(server.http_url(&format!("/notify/{room}")));
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = http_request(request.body(Default::default())?).await?;
    anyhow::ensure!(response.status == 200 && response.body == "0", "{response}");
    Ok(())
}

/// The value of `field=` in `line`.
fn field<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let start = line.find(&format!("{field}="))? + field.len() + 1;
    let rest = &line[start..];
    let end = rest.find([' ', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// The `asena.send` line about `room` and the `asena.deliver` line of the instance `pod`,
/// once both are logged.
async fn spans_of(room: &str, pod: &str) -> anyhow::Result<(String, String)> {
    spans_at(&format!("hall.{room}"), Some(pod)).await
}

/// The `asena.send` line about `address` and the `asena.deliver` line of the instance `pod`
/// when given (on a shared Redis channel every instance delivers, most of them to nobody),
/// once both are logged.
async fn spans_at(address: &str, pod: Option<&str>) -> anyhow::Result<(String, String)> {
    let both = || {
        let text = captured().text();
        let about = |span: &str, pod: Option<&str>| {
            text.lines()
                .find(|l| {
                    l.contains(span)
                        && field(l, "address") == Some(address)
                        && pod.is_none_or(|pod| field(l, "pod") == Some(pod))
                })
                .map(str::to_owned)
        };
        Some((about("asena.send{", None)?, about("asena.deliver{", pod)?))
    };
    asena_tests::until_some(
        asena_tests::WAIT,
        "the send and delivery spans",
        async || Ok(both()),
    )
    .await
}

/// One fleet of two instances on `url`: the three ways a request can come.
async fn trace_through(url: &str) -> anyhow::Result<()> {
    let fleet = unique("trace-fleet");
    let (a, _) = instance(url, &fleet, "alpha").await?;
    let (b, pod) = instance(url, &fleet, "beta").await?;

    // 1. The caller's trace: the same trace id on both instances, and the delivery's parent
    //    is the send's span.
    let room = unique("traced");
    let (mut client, _) = join_hall(&b, &room).await?;
    asena_tests::until_probe_heard::<Traced>(&a, &room, &mut client).await?;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    post_notify(&a, &room, Some(incoming)).await?;
    assert_eq!(after_probes(&mut client).await?, "hello");
    let (send, deliver) = spans_of(&room, &pod).await?;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert_eq!(field(&send, "trace_id"), Some(trace_id), "{send}");
    assert_eq!(
        field(&send, "parent_id"),
        Some("00f067aa0ba902b7"),
        "{send}"
    );
    assert_eq!(field(&deliver, "trace_id"), Some(trace_id), "{deliver}");
    let hop = field(&send, "span_id").context("no span id")?;
    assert_ne!(hop, "00f067aa0ba902b7");
    assert_eq!(field(&deliver, "parent_id"), Some(hop), "{deliver}");
    assert!(deliver.contains("recipients=1"), "{deliver}");
    // The inspector links the send on alpha to the delivery on beta, from their
    // announcements.
    let linked = asena_tests::until_some(
        asena_tests::WAIT,
        "the trace in the inspector",
        async || {
            let traces = inspected_traces(&a).await?;
            Ok(traces.into_iter().find(|t| {
                t["traceId"] == trace_id
                    && t["spanId"] == hop
                    && !t["deliveries"]
                        .as_object()
                        .is_none_or(serde_json::Map::is_empty)
            }))
        },
    )
    .await?;
    assert_eq!(linked["sentBy"], "alpha", "{linked}");
    assert_eq!(linked["address"], format!("hall.{room}"), "{linked}");
    assert_eq!(
        linked["deliveries"],
        serde_json::json!({"beta": 1}),
        "{linked}"
    );

    // 2. and 3. No header, and a malformed one: a new trace, the same on both sides.
    for header in [None, Some("00-NOT-A-TRACE-01")] {
        let room = unique("traced");
        let (mut client, _) = join_hall(&b, &room).await?;
        asena_tests::until_probe_heard::<Traced>(&a, &room, &mut client).await?;
        post_notify(&a, &room, header).await?;
        assert_eq!(after_probes(&mut client).await?, "hello");
        let (send, deliver) = spans_of(&room, &pod).await?;
        let started = field(&send, "trace_id").context("no trace id")?;
        assert_eq!(started.len(), 32, "{send}");
        assert_ne!(started, trace_id);
        assert_eq!(field(&deliver, "trace_id"), Some(started), "{deliver}");
    }
    asena_tests::stop_all([a, b]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_trace_reaches_the_other_instance_through_redis() -> anyhow::Result<()> {
    captured();
    trace_through(REDIS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_trace_reaches_the_other_instance_through_nats() -> anyhow::Result<()> {
    captured();
    trace_through(NATS).await
}

/// A managed message (Ignis's envelope, `traceparent` beside its fields) carries the trace
/// it was sent in to the instance that delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_message_carries_its_trace_to_the_other_instance() -> anyhow::Result<()> {
    captured();
    let a = start_service_with::<TracedManaged>(RedisTransport::new(REDIS)).await?;
    let b = start_service_with::<TracedManaged>(RedisTransport::new(REDIS)).await?;
    let user = unique("ada");
    let (mut client, _) = managed_login(&b, "/managed", serde_json::json!({"user": user})).await?;
    let parent = trace::start();
    let managed = raw_sender::<TracedManaged>(&a)?;
    asena_tests::until_some(
        asena_tests::WAIT,
        "a probe crosses the broker",
        async || {
            managed.to_user(&user, ("probe", 0))?;
            let heard =
                tokio::time::timeout(Duration::from_millis(200), next_event(&mut client, "probe"));
            Ok(heard.await.ok().and_then(Result::ok))
        },
    )
    .await?;
    let here = trace::scope(parent, async { managed.to_user(&user, ("traced", 1)) }).await?;
    assert_eq!(here, 0, "the user is on the other instance");
    assert_eq!(next_event(&mut client, "traced").await?["data"], 1);
    // Only the two instances here use this prefix, and the sender skips its own messages.
    let (send, deliver) = spans_at(&format!("{}:user:{user}", PREFIX.as_str()), None).await?;
    let trace_id = parent.trace_id().to_string();
    assert_eq!(field(&send, "trace_id"), Some(trace_id.as_str()), "{send}");
    assert_eq!(
        field(&deliver, "trace_id"),
        Some(trace_id.as_str()),
        "{deliver}"
    );
    assert_eq!(
        field(&deliver, "parent_id"),
        field(&send, "span_id"),
        "{deliver}"
    );
    assert!(deliver.contains("recipients=1"), "{deliver}");
    asena_tests::stop_all([a, b]).await
}

/// A task runs outside any trace unless `scope` gives it one; a started trace is sampled and
/// reads back as a valid `traceparent`.
#[tokio::test]
async fn a_scope_sets_the_context_and_a_started_trace_is_valid() -> anyhow::Result<()> {
    assert_eq!(trace::current(), None);
    let parent = trace::start();
    assert!(parent.sampled());
    let inside = trace::scope(parent, async { trace::current() }).await;
    assert_eq!(inside, Some(parent));
    assert_eq!(
        TraceParent::parse(&parent.to_string()),
        Some(parent),
        "a started trace is a valid traceparent"
    );
    Ok(())
}

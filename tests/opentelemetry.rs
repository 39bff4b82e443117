//! The runtime's trace spans as OpenTelemetry spans (feature `opentelemetry`), exported
//! through tracing-opentelemetry to the SDK's in-memory exporter: a room message sent inside
//! an application's own OpenTelemetry span, on one instance, is delivered on another in a
//! span whose parent is the sending span, itself the child of the application's span — one
//! trace across the fleet, through a real Redis.

use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::prelude::*;
use asena_runtime::transport::RedisTransport;
use asena_tests::broker::REDIS;
use asena_tests::{Client, TestServer, isolated, join_hall, start, unique};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

asena_tests::hall_service!(Hall, "/hall");

async fn instance(channel: &str) -> anyhow::Result<TestServer> {
    start(
        isolated()
            .websocket::<Hall>()
            .transport(RedisTransport::new(REDIS).channel(channel)),
    )
    .await
}

/// The finished span named `name` whose `address` attribute is `address`.
fn span<'a>(spans: &'a [SpanData], name: &str, address: &str) -> Option<&'a SpanData> {
    spans.iter().find(|s| {
        s.name == name
            && s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "address" && kv.value.as_str() == address)
    })
}

/// Sends untraced probes from `from` to `room` until `client` hears one.
async fn until_heard(from: &TestServer, room: &str, client: &mut Client) -> anyhow::Result<()> {
    let ulak = from.app.ulak::<Hall>().context("Hall is registered")?;
    asena_tests::until_some(asena_tests::WAIT, "a probe crosses Redis", async || {
        ulak.to(room, "probe")?;
        let heard = tokio::time::timeout(Duration::from_millis(200), client.recv_text()).await;
        Ok(heard
            .ok()
            .and_then(Result::ok)
            .filter(|text| text == "probe"))
    })
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_is_one_opentelemetry_trace_across_instances() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let only = tracing_subscriber::filter::Targets::new()
        .with_target("asena::trace", tracing::Level::DEBUG)
        .with_target("app", tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("test"))
                .with_filter(only),
        )
        .init();

    let channel = unique("otel");
    let (a, b) = (instance(&channel).await?, instance(&channel).await?);
    let room = unique("otel-room");
    let (mut client, _) = join_hall(&b, &room).await?;
    until_heard(&a, &room, &mut client).await?;

    // The application's own span (an HTTP request, a job) around the send; no
    // `trace::scope`: the runtime takes the span's OpenTelemetry context.
    let request = tracing::info_span!(target: "app", "request");
    let ulak = a.app.ulak::<Hall>().context("Hall is registered")?;
    request.in_scope(|| ulak.to(&room, "hello"))?;
    drop(request);
    loop {
        if client.recv_text().await? == "hello" {
            break;
        }
    }

    let address = format!("hall.{room}");
    let spans = asena_tests::until_some(asena_tests::WAIT, "the exported spans", async || {
        let spans = exporter.get_finished_spans()?;
        let all = ["request"]
            .iter()
            .all(|n| spans.iter().any(|s| s.name == *n))
            && span(&spans, "asena.send", &address).is_some()
            && span(&spans, "asena.deliver", &address).is_some();
        Ok(all.then_some(spans))
    })
    .await?;
    let request = spans
        .iter()
        .find(|s| s.name == "request")
        .context("the request span")?;
    let send = span(&spans, "asena.send", &address).context("send")?;
    let deliver = span(&spans, "asena.deliver", &address).context("deliver")?;

    let trace = request.span_context.trace_id();
    assert_eq!(send.span_context.trace_id(), trace);
    assert_eq!(deliver.span_context.trace_id(), trace);
    assert_eq!(send.parent_span_id, request.span_context.span_id());
    assert_eq!(deliver.parent_span_id, send.span_context.span_id());
    assert!(
        deliver.parent_span_is_remote,
        "the parent is on the other instance"
    );
    asena_tests::stop_all([a, b]).await
}

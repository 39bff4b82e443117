//! Prometheus metrics: the `/metrics` route serves OpenMetrics text that a strict parser
//! accepts, and its counters move as sockets open, send, get refused and close.

use std::collections::HashMap;

use asena_runtime::prelude::*;
use asena_tests::{TestServer, eventually, isolated, start, start_service, upgrade_request};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ItemPath {
    pub id: u64,
}

asena_tests::needs_name_middleware!(NeedsName);

/// Everyone is in `lobby`; every message goes to the lobby.
#[websocket(path = "/lobby", middlewares = [NeedsName])]
#[derive(Debug)]
pub struct Lobby;

impl WebSocketService for Lobby {
    type Data = ();
    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.subscribe("lobby")?;
        Ok(())
    }
    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        ws.namespace().to("lobby", msg)?;
        Ok(())
    }
}

/// A parametrised path: `/items/abc` is refused with 400.
#[websocket(path = "/items/{id}", params = ItemPath)]
#[derive(Debug)]
pub struct Items;

asena_tests::impl_message_service!(Items);

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

async fn scrape(s: &TestServer) -> anyhow::Result<(String, Exposition)> {
    let resp = s.get("/metrics").await?;
    anyhow::ensure!(resp.status == 200, "{resp}");
    let content_type = resp
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    anyhow::ensure!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{resp}"
    );
    let parsed = parse(&resp.body)?;
    Ok((resp.body, parsed))
}

/// Scrapes until `ready` holds (every 10 ms, at most 10 s); returns the last scrape.
async fn scrape_until(
    s: &TestServer,
    ready: impl Fn(&Exposition) -> bool,
) -> anyhow::Result<(String, Exposition)> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (text, exp) = scrape(s).await?;
        if ready(&exp) || tokio::time::Instant::now() > deadline {
            return Ok((text, exp));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Parses the exposition strictly. The parser rejects `# UNIT` on a histogram, which the
/// OpenMetrics spec allows (its own example is `foo_seconds`): that one line is checked here
/// and left out of what the parser sees.
fn parse(text: &str) -> anyhow::Result<Exposition> {
    const HISTOGRAM_UNIT: &str = "# UNIT asena_fanout_queue_seconds seconds\n";
    anyhow::ensure!(text.contains(HISTOGRAM_UNIT), "{text}");
    openmetrics_parser::openmetrics::parse_openmetrics(&text.replace(HISTOGRAM_UNIT, ""))
        .map_err(|e| anyhow::anyhow!("not OpenMetrics text ({e:?}):\n{text}"))
}

/// The value of `family`'s sample with `labels` (a histogram's count), if there is one.
fn value(exp: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = exp.families.get(family)?;
    let wanted: HashMap<&str, &str> = labels.iter().copied().collect();
    let values: Vec<String> = family
        .get_label_names()
        .iter()
        .map(|name| wanted.get(name.as_str()).map(|v| v.to_string()))
        .collect::<Option<_>>()?;
    if values.len() != wanted.len() {
        return None;
    }
    let sample = family.get_sample_by_label_values(&values)?;
    match &sample.value {
        OpenMetricsValue::Counter(c) => Some(c.value.as_f64()),
        OpenMetricsValue::Gauge(g) => Some(g.as_f64()),
        OpenMetricsValue::Histogram(h) => h.count.map(|c| c as f64),
        _ => None,
    }
}

fn of(exp: &Exposition, family: &str, ns: &str) -> f64 {
    value(exp, family, &[("namespace", ns)]).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_sockets_open_send_get_refused_and_close() -> anyhow::Result<()> {
    let s = start(
        isolated()
            .websocket::<Lobby>()
            .websocket::<Items>()
            .middleware::<NeedsName>()
            .metrics_route("/metrics"),
    )
    .await?;

    // Before anything happened: every family is there, at zero.
    let (text, exp) = scrape(&s).await?;
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE asena_received_bytes counter"),
        "{text}"
    );
    assert!(text.contains("# UNIT asena_received_bytes bytes"), "{text}");
    let type_of = |family: &str| exp.families.get(family).map(|f| &f.family_type);
    assert!(
        matches!(
            type_of("asena_connections_opened"),
            Some(OpenMetricsType::Counter)
        ),
        "{text}"
    );
    assert!(
        matches!(
            type_of("asena_fanout_queue_seconds"),
            Some(OpenMetricsType::Histogram)
        ),
        "{text}"
    );
    for family in [
        "asena_connections",
        "asena_connections_opened",
        "asena_rooms",
        "asena_messages_received",
        "asena_received_bytes",
        "asena_messages_sent",
        "asena_deliveries",
        "asena_slow_consumer",
        "asena_dropped_messages",
        "asena_handler_errors",
        "asena_protocol_errors",
        "asena_invalid_messages",
        "asena_fanout_queue_seconds",
    ] {
        assert_eq!(of(&exp, family, "/lobby"), 0.0, "{family} in\n{text}");
        assert_eq!(of(&exp, family, "/items/{id}"), 0.0, "{family} in\n{text}");
    }
    // No transport, no transport metrics.
    assert!(
        !exp.families.contains_key("asena_transport_published"),
        "{text}"
    );

    // Refused: by the middleware (401) and by a path parameter that is not a number (400).
    assert_eq!(upgrade_request(s.addr, "/lobby", &[]).await?.0, 401);
    assert_eq!(upgrade_request(s.addr, "/items/abc", &[]).await?.0, 400);
    assert_eq!(upgrade_request(s.addr, "/items/abc", &[]).await?.0, 400);

    // Two sockets in the lobby; one message reaches both.
    let mut a = s.connect("/lobby?name=a").await?;
    let mut b = s.connect("/lobby?name=b").await?;
    let ns = s.app.namespace("/lobby").expect("the lobby");
    eventually(|| ns.socket_count() == 2).await?;
    a.send_text("hello").await?;
    assert_eq!(a.recv_text().await?, "hello");
    assert_eq!(b.recv_text().await?, "hello");

    // A reader adds what it counted once it has handled everything it read: the echo can
    // reach the clients first.
    let (text, exp) = scrape_until(&s, |exp| {
        of(exp, "asena_fanout_queue_seconds", "/lobby") == 1.0
    })
    .await?;
    assert_eq!(
        value(
            &exp,
            "asena_refused_upgrades",
            &[("namespace", "/lobby"), ("status", "401")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &exp,
            "asena_refused_upgrades",
            &[("namespace", "/items/{id}"), ("status", "400")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(of(&exp, "asena_connections", "/lobby"), 2.0, "{text}");
    assert_eq!(
        of(&exp, "asena_connections_opened", "/lobby"),
        2.0,
        "{text}"
    );
    assert_eq!(of(&exp, "asena_rooms", "/lobby"), 1.0, "{text}");
    assert_eq!(of(&exp, "asena_messages_received", "/lobby"), 1.0, "{text}");
    assert_eq!(of(&exp, "asena_received_bytes", "/lobby"), 5.0, "{text}");
    assert_eq!(of(&exp, "asena_messages_sent", "/lobby"), 1.0, "{text}");
    assert_eq!(of(&exp, "asena_deliveries", "/lobby"), 2.0, "{text}");
    // The room message's fan-out was measured once, from its arrival.
    assert_eq!(
        of(&exp, "asena_fanout_queue_seconds", "/lobby"),
        1.0,
        "{text}"
    );
    assert_eq!(
        of(&exp, "asena_connections_opened", "/items/{id}"),
        0.0,
        "{text}"
    );

    // A normal close: closed_total{code="1000"}; the peer vanishing: 1006.
    a.ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await?;
    eventually(|| ns.socket_count() == 1).await?;
    drop(b);
    eventually(|| ns.socket_count() == 0).await?;
    let closed = |exp: &Exposition, code: &str| {
        value(
            exp,
            "asena_connections_closed",
            &[("namespace", "/lobby"), ("code", code)],
        )
    };
    let (text, exp) = scrape(&s).await?;
    assert_eq!(closed(&exp, "1000"), Some(1.0), "{text}");
    assert_eq!(closed(&exp, "1006"), Some(1.0), "{text}");
    assert_eq!(of(&exp, "asena_connections", "/lobby"), 0.0, "{text}");
    assert_eq!(of(&exp, "asena_rooms", "/lobby"), 0.0, "{text}");

    // The same text without the route.
    let own = s.app.metrics_text();
    parse(&own)?;
    assert!(
        own.contains(r#"asena_connections_closed_total{namespace="/lobby",code="1000"} 1"#),
        "{own}"
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_is_opt_in() -> anyhow::Result<()> {
    let s = start_service::<Items>().await?;
    let resp = s.get("/metrics").await?;
    assert_eq!(resp.status, 404, "{resp}");
    // The text is there all the same.
    assert!(s.app.metrics_text().ends_with("# EOF\n"));
    s.stop().await
}

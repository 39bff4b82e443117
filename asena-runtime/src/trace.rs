//! Trace context through the fleet: a room message sent within a W3C trace carries its
//! `traceparent` to the other instances, and each step is a span with the trace's id.
//!
//! - **Where a trace comes from.** A task runs within a context with [`scope`]; an HTTP
//!   route gets one from its request's `traceparent` header with the [`propagate`]
//!   middleware (a request without a valid one starts a new trace), so a message an HTTP
//!   handler sends through `Ulak` belongs to the request's trace.
//! - **Sending.** A message to other instances sent within a context (a room, a broadcast,
//!   one socket, a managed target) gets a new span id, is logged in the span `asena.send`
//!   (`trace_id`, `span_id`, `parent_id`, `address`) and carries
//!   `00-<trace id>-<that span id>-<flags>` in its envelope: `tp` in Asena's, `traceparent`
//!   in the managed one (see [`asena_protocol::trace`]).
//! - **Delivering.** The instance that receives it delivers in the span `asena.deliver`
//!   (`trace_id`, `parent_id` — the sender's span — `address`, and `pod`, the delivering
//!   instance: its transport's pod id, or a managed service's `serverId`) and logs
//!   `delivered` with the number of local recipients. On a transport with one channel for
//!   everything every instance delivers, most of them to nobody (`recipients=0`).
//!
//! Both spans are at `DEBUG` under the target `asena::trace`. With the `opentelemetry`
//! feature and `tracing-opentelemetry`'s layer installed, they are OpenTelemetry spans: a
//! send inside one of the app's spans takes that span's context when no [`scope`] is set, the
//! hop carries the `asena.send` span's own id, and `asena.deliver` is its remote child. A message sent outside any
//! context carries nothing and costs one task-local read; local deliveries never leave the
//! process and get no span. An invalid `traceparent` (from a request or an envelope) is no
//! context, never an error.
//!
//! ```
//! use asena_runtime::trace::{self, TraceParent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert_eq!(trace::current(), None);
//! let seen = trace::scope(parent.unwrap(), async { trace::current() }).await;
//! assert_eq!(seen, parent);
//! # }
//! ```
//!
//! An HTTP route whose handler sends to a room, in the caller's trace:
//!
//! ```
//! use asena_runtime::trace;
//! use axum::{Router, routing::post};
//!
//! let routes: Router = Router::new()
//!     .route("/notify", post(|| async { /* ulak.to("lobby", ..) */ }))
//!     .layer(axum::middleware::from_fn(trace::propagate));
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

pub use asena_protocol::trace::{SpanId, TraceId, TraceParent};

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// The trace context the current task runs in, if any: the one [`scope`] set, else (with
/// the `opentelemetry` feature) the OpenTelemetry context of the current `tracing` span.
pub fn current() -> Option<TraceParent> {
    let scoped = CURRENT.try_with(|parent| *parent).ok();
    #[cfg(feature = "opentelemetry")]
    let scoped = scoped.or_else(otel::current_span);
    scoped
}

/// Runs `future` within the trace context `parent`: what it sends to other instances belongs
/// to that trace.
pub async fn scope<F: Future>(parent: TraceParent, future: F) -> F::Output {
    CURRENT.scope(parent, future).await
}

/// The `traceparent` header of a request, when it holds a valid context (only the first
/// such header counts, as W3C Trace Context requires a single one).
pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    TraceParent::parse(value)
}

/// A new trace, sampled, with random ids.
pub fn start() -> TraceParent {
    let trace = uuid::Uuid::new_v4().into_bytes();
    TraceParent::new(trace, span_id(), 1)
        .expect("invariant: a v4 UUID has version bits set, so it is never all zeros")
}

/// An axum middleware (`axum::middleware::from_fn(trace::propagate)`) that runs the rest of
/// the request within its `traceparent`'s context, or a new trace's when it has none.
pub async fn propagate(request: Request, next: Next) -> Response {
    let parent = from_headers(request.headers()).unwrap_or_else(start);
    scope(parent, next.run(request)).await
}

/// A new random span id (never all zeros).
fn span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // Bytes 0..6 and 8 of a v4 UUID are random; byte 6 holds the version (4), so never zero.
    [
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[8],
    ]
}

/// The context a message to other instances carries when sent now: the current trace with a
/// new span id, logged as `asena.send`. `None` (and nothing logged) outside any trace.
pub(crate) fn hop(address: &str) -> Option<TraceParent> {
    let parent = current()?;
    let span = tracing::debug_span!(
        target: "asena::trace",
        "asena.send",
        trace_id = %parent.trace_id(),
        span_id = tracing::field::Empty,
        parent_id = %parent.parent_id(),
        address = %Bounded(address),
    );
    // With OpenTelemetry the hop's id is the exported span's own; else a random one.
    #[cfg(feature = "opentelemetry")]
    let sent = otel::adopt(&span, parent).unwrap_or_else(|| parent.child(span_id()));
    #[cfg(not(feature = "opentelemetry"))]
    let sent = parent.child(span_id());
    span.record("span_id", tracing::field::display(sent.parent_id()));
    span.in_scope(|| tracing::debug!(target: "asena::trace", "sent to the fleet"));
    Some(sent)
}

/// Enters the span `asena.deliver` of the trace a message from another instance carried, if
/// it carried one, for the delivery that follows; [`Delivering::done`] ends it.
pub(crate) fn delivering(trace: Option<TraceParent>, address: &str, pod: &str) -> Delivering {
    Delivering(trace.map(|trace| {
        let span = tracing::debug_span!(
            target: "asena::trace",
            "asena.deliver",
            trace_id = %trace.trace_id(),
            parent_id = %trace.parent_id(),
            address = %Bounded(address),
            pod,
        );
        #[cfg(feature = "opentelemetry")]
        otel::adopt(&span, trace);
        (trace, span.entered())
    }))
}

/// A delivery under way in its trace's span (nothing for a message without a trace).
pub(crate) struct Delivering(Option<(TraceParent, tracing::span::EnteredSpan)>);

impl Delivering {
    /// The delivery of the message to `address` reached `recipients` local sockets; recorded
    /// in `log` when given.
    pub(crate) fn done(self, recipients: usize, address: &str, log: Option<&TraceLog>) {
        let Some((trace, _span)) = self.0 else {
            return;
        };
        tracing::debug!(target: "asena::trace", recipients, "delivered");
        if let Some(log) = log {
            log.record(trace, address, Some(recipients as u64));
        }
    }
}

/// A message an instance sent to the fleet, or delivered from it, within a trace: what the
/// inspector shows, linking a send to its deliveries on other instances by
/// `(trace_id, span_id)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TracedMessage {
    /// The trace (32 hex digits).
    pub trace_id: String,
    /// The span that sent the message (16 hex digits): the sender's `asena.send` span, the
    /// `parent_id` of every `asena.deliver` span it caused.
    pub span_id: String,
    /// The topic or channel, at most 128 characters.
    pub address: String,
    /// `None` where it was sent; where it was delivered, to how many local sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// When (ms since the Unix epoch, the instance's clock).
    pub at: u64,
}

/// The last [`TraceLog::CAPACITY`] traced messages an instance sent or delivered (a ring:
/// one short lock per traced message, nothing for the others).
#[derive(Debug, Default)]
pub(crate) struct TraceLog(Mutex<VecDeque<TracedMessage>>);

impl TraceLog {
    /// How many it keeps.
    pub(crate) const CAPACITY: usize = 32;

    /// Records a message of `trace` (whose parent is the sending span) to `address`.
    pub(crate) fn record(&self, trace: TraceParent, address: &str, delivered: Option<u64>) {
        let message = TracedMessage {
            trace_id: trace.trace_id().to_string(),
            span_id: trace.parent_id().to_string(),
            address: Bounded(address).to_string(),
            delivered,
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let mut ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == Self::CAPACITY {
            ring.pop_front();
        }
        ring.push_back(message);
    }

    /// What it holds, oldest first.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) fn recent(&self) -> Vec<TracedMessage> {
        let ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }
}

/// An address as a log field: its first 128 characters (a room name is client-chosen).
struct Bounded<'a>(&'a str);

impl std::fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(128) {
            Some((end, _)) => write!(f, "{}…", &self.0[..end]),
            None => f.write_str(self.0),
        }
    }
}

/// The bridge to OpenTelemetry through `tracing-opentelemetry`: what its layer knows of a
/// span, read and set as [`TraceParent`]s.
#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::TraceParent;

    /// The OpenTelemetry context of the current `tracing` span, when it has a valid one.
    pub(super) fn current_span() -> Option<TraceParent> {
        of(tracing::Span::current().context().span().span_context())
    }

    /// Makes `span` the child of the remote span `parent`, and returns what the span passes
    /// on: the same trace with the span's own id. `None` when no OpenTelemetry layer records
    /// the span (it is disabled, or the app exports nothing).
    pub(super) fn adopt(span: &tracing::Span, parent: TraceParent) -> Option<TraceParent> {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id().to_bytes()),
            SpanId::from_bytes(parent.parent_id().to_bytes()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote))
            .ok()?;
        of(span.context().span().span_context())
    }

    fn of(context: &SpanContext) -> Option<TraceParent> {
        if !context.is_valid() {
            return None;
        }
        TraceParent::new(
            context.trace_id().to_bytes(),
            context.span_id().to_bytes(),
            context.trace_flags().to_u8(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hop_keeps_the_trace_and_changes_the_parent() {
        assert_eq!(hop("chat.lobby"), None);
        let parent = start();
        let sent = scope(parent, async { hop("chat.lobby") })
            .await
            .expect("in a trace");
        assert_eq!(sent.trace_id(), parent.trace_id());
        assert_ne!(sent.parent_id(), parent.parent_id());
        assert!(sent.sampled());
    }

    #[test]
    fn only_a_valid_header_is_a_context() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers), None);
        headers.insert("traceparent", "garbage".parse().expect("header"));
        assert_eq!(from_headers(&headers), None);
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", valid.parse().expect("header"));
        assert_eq!(
            from_headers(&headers).map(|t| t.to_string()).as_deref(),
            Some(valid)
        );
    }

    #[test]
    fn the_log_keeps_the_last_messages() {
        let log = TraceLog::default();
        let trace = start();
        for n in 0..TraceLog::CAPACITY + 5 {
            log.record(trace, &format!("chat.{n}"), Some(n as u64));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), TraceLog::CAPACITY);
        assert_eq!(recent[0].address, "chat.5");
        assert_eq!(recent[0].span_id, trace.parent_id().to_string());
        let last = recent.last().expect("full");
        assert_eq!(last.delivered, Some(TraceLog::CAPACITY as u64 + 4));
    }

    #[test]
    fn log_fields_are_bounded() {
        let long = "é".repeat(1000);
        let shown = Bounded(&long).to_string();
        assert_eq!(shown.chars().count(), 129);
    }
}

//! The Prometheus exposition of the app's counters, made at scrape time.
//!
//! Nothing here runs on the hot path: connections count with relaxed atomic adds in each
//! namespace's [`NamespaceStats`](crate::namespace::NamespaceStats) (a fan-out adds its recipient count
//! once), and a scrape reads those atomics, the namespaces' socket and room counts and the
//! transport's [`TransportStats`] into one [`Collector`], which `prometheus-client` encodes
//! as OpenMetrics text (`# TYPE`, `# UNIT`, `# HELP`, `_total` counters, `# EOF`).
//!
//! Labels come from bounded sets only: `namespace` (the service's path template, e.g.
//! `/user/events/{user_id}`), `code` (a close code) and `status` (an HTTP status).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::namespace::{Namespace, NamespaceStats};
use crate::transport::{Transport, TransportStats};

/// The `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads: the namespaces and the transport.
#[derive(Clone)]
pub(crate) struct Scrape {
    pub(crate) namespaces: Arc<[Namespace]>,
    pub(crate) transport: Option<Arc<dyn Transport>>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("namespaces", &self.namespaces.len())
            .finish()
    }
}

impl Scrape {
    /// The exposition text.
    pub(crate) fn text(&self) -> String {
        let mut registry = Registry::with_prefix("asena");
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // Writing into a String does not fail, and the collector never returns an error.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: a descriptor and its samples.
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    unit: Option<Unit>,
    kind: MetricType,
}

impl Family<'_> {
    fn write(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> Result<(), std::fmt::Error> {
        // A family with no samples yet (no close, no refusal) is left out: the format allows
        // it, but not every parser does.
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return Ok(());
        }
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.kind)?;
        for (labels, value) in samples {
            let mut sample = metric.encode_family(&labels)?;
            match self.kind {
                MetricType::Counter => sample.encode_counter::<NoLabelSet, _, u64>(&value, None)?,
                _ => sample.encode_gauge(&i64::try_from(value).unwrap_or(i64::MAX))?,
            }
        }
        Ok(())
    }
}

fn counter<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family {
        name,
        help,
        unit: None,
        kind: MetricType::Counter,
    }
}

fn gauge<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family {
        name,
        help,
        unit: None,
        kind: MetricType::Gauge,
    }
}

/// One of a namespace's counters, read from its [`NamespaceStats`].
type Counter = fn(&NamespaceStats) -> u64;

/// The counters of each namespace exposed as its [`NamespaceStats`] reads them: name, help
/// and the reader.
const NAMESPACE_COUNTERS: [(&str, &str, Counter); 12] = [
    (
        "connections_opened",
        "Connections admitted (upgraded and running).",
        NamespaceStats::opened,
    ),
    (
        "rejected_connections",
        "Upgraded connections closed with 1008 because the connection limit was reached.",
        NamespaceStats::rejected_connections,
    ),
    (
        "messages_received",
        "Messages read from sockets.",
        NamespaceStats::messages_received,
    ),
    (
        "messages_sent",
        "Sends made on this instance: room, broadcast and direct (a room send counts once).",
        NamespaceStats::messages_sent,
    ),
    (
        "deliveries",
        "Frames queued to local sockets, by local sends and messages from other instances.",
        NamespaceStats::deliveries,
    ),
    (
        "slow_consumer",
        "Sockets that hit the slow-consumer policy (once each).",
        NamespaceStats::slow_sockets,
    ),
    (
        "dropped_messages",
        "Frames not queued to a socket because its send queue was full.",
        NamespaceStats::slow_consumers,
    ),
    (
        "handler_errors",
        "Handlers that returned an error or panicked.",
        NamespaceStats::handler_errors,
    ),
    (
        "protocol_errors",
        "Connections closed for protocol violations, bad UTF-8 or oversized messages.",
        NamespaceStats::protocol_errors,
    ),
    (
        "invalid_messages",
        "Messages that did not decode into the service's receives type (sent to on_invalid).",
        NamespaceStats::invalid_messages,
    ),
    (
        "too_large_sends",
        "Sends refused as larger than the transport carries between instances (NATS max_payload).",
        NamespaceStats::too_large,
    ),
    (
        "rate_limited",
        "Messages over their socket's inbound rate limit: dropped, or the one that closed \
         the socket with 1008 (no handler saw them).",
        NamespaceStats::rate_limited,
    ),
];

fn ns_label(ns: &Namespace) -> Labels {
    vec![("namespace", ns.path().to_owned())]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let nss = &self.namespaces;
        let per_ns = |f: fn(&Namespace) -> u64| nss.iter().map(move |ns| (ns_label(ns), f(ns)));
        let per_ns_stat =
            |read: Counter| nss.iter().map(move |ns| (ns_label(ns), read(ns.stats())));
        // A count per namespace and per `label` (a close code, an HTTP status).
        let per_ns_and = |label: &'static str, read: fn(&NamespaceStats) -> Vec<(u16, u64)>| {
            nss.iter().flat_map(move |ns| {
                read(ns.stats()).into_iter().map(move |(key, n)| {
                    let mut labels = ns_label(ns);
                    labels.push((label, key.to_string()));
                    (labels, n)
                })
            })
        };

        gauge("connections", "Open websocket connections.")
            .write(e, per_ns(|ns| ns.socket_count() as u64))?;
        counter(
            "connections_closed",
            "Connections ended, by the close code on_close saw (1006: the peer vanished).",
        )
        .write(e, per_ns_and("code", NamespaceStats::closed))?;
        counter(
            "refused_upgrades",
            "Upgrade requests answered with an HTTP status instead of 101, by status.",
        )
        .write(e, per_ns_and("status", NamespaceStats::refused_upgrades))?;
        gauge("rooms", "Named rooms with at least one local member.")
            .write(e, per_ns(|ns| ns.room_count() as u64))?;
        Family {
            name: "received",
            help: "Payload bytes of the messages read from sockets (after inflating).",
            unit: Some(Unit::Bytes),
            kind: MetricType::Counter,
        }
        .write(e, per_ns_stat(NamespaceStats::received_bytes))?;
        for (name, help, read) in NAMESPACE_COUNTERS {
            counter(name, help).write(e, per_ns_stat(read))?;
        }

        if !nss.is_empty() {
            let mut metric = e.encode_descriptor(
                "fanout_queue",
                "Time from a message's arrival (its bytes read by the socket's reader) to the \
                 local fan-out of a room or broadcast message its handler sent being queued \
                 on every local member (queued, not yet written). Sampled: each connection's \
                 first such send, then one in 16 at random; the count is not the number of \
                 messages.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for ns in nss.iter() {
                let h = ns.stats().fanout_latency();
                let labels = ns_label(ns);
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)?;
            }
        }

        if let Some(t) = &self.transport
            && let Some(stats) = t.stats()
        {
            transport(e, &stats)?;
            if t.routes_by_interest() {
                gauge(
                    "transport_subscriptions",
                    "Rooms this instance is subscribed to on the broker (interest-based routing).",
                )
                .write(e, [(Labels::new(), stats.subscriptions)])?;
            }
        }
        Ok(())
    }
}

fn transport(e: &mut DescriptorEncoder<'_>, stats: &TransportStats) -> Result<(), std::fmt::Error> {
    for (name, help, value) in [
        (
            "transport_published",
            "Messages sent to the broker.",
            stats.published,
        ),
        (
            "transport_received",
            "Messages from other instances handed to local delivery.",
            stats.received,
        ),
        (
            "transport_dropped",
            "Outgoing messages dropped: queue full, broker down, or send failed.",
            stats.dropped,
        ),
        (
            "transport_oversize",
            "Outgoing messages refused as larger than the broker accepts (counted in dropped too).",
            stats.oversize,
        ),
        (
            "transport_errors",
            "Broker errors: failed sends and connects, lost connections, malformed envelopes.",
            stats.errors,
        ),
        (
            "transport_reconnects",
            "Successful reconnections after a lost connection.",
            stats.reconnects,
        ),
    ] {
        counter(name, help).write(e, [(Labels::new(), value)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_without_namespaces_still_ends_with_eof() {
        let scrape = Scrape {
            namespaces: Arc::from(Vec::new()),
            transport: None,
        };
        // No namespace, no samples: every family is left out.
        assert_eq!(scrape.text(), "# EOF\n");
    }
}

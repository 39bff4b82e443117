//! The fleet view: every instance announces itself and its counts through the transport at a
//! steady interval, on [`wire::FLEET_TOPIC`]; each instance keeps the announcements it hears
//! (its own included) and drops an instance that has been silent for three of its intervals,
//! or that said goodbye on shutdown. Rates (messages in and out, deliveries per second) are
//! the difference between an instance's last two announcements, over the time between them by
//! its own clock. Each instance's rates and counts are also kept as a history: a ring of its
//! last [`HISTORY`] samples, one per announcement from its second on, that the page charts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::namespace::Namespace;
use crate::trace::{TraceLog, TracedMessage};
use crate::transport::{Transport, TransportStats};

/// How many of its own intervals an instance may stay silent before it leaves the view.
const SILENT_INTERVALS: u32 = 3;

/// How many samples of each instance the history keeps: five minutes at the default
/// interval of one second.
pub(super) const HISTORY: usize = 300;

/// How many of an instance's namespaces a sample keeps (its first, in its announcement's
/// order), so an instance that announces many costs a bounded history.
const SAMPLED_NAMESPACES: usize = 32;

/// The version of the announcement format.
const VERSION: u8 = 1;

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What an instance says about itself, as JSON on [`wire::FLEET_TOPIC`](crate::wire::FLEET_TOPIC).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Announcement {
    /// The format version.
    pub(super) v: u8,
    /// A random id, new at every start.
    pub(super) id: String,
    /// A name for people (`AsenaBuilder::instance_name`, else the host name and pid).
    pub(super) name: String,
    /// Where it listens, once it does.
    #[serde(default)]
    pub(super) addr: Option<String>,
    /// When it started (ms since the epoch).
    pub(super) started_at: u64,
    /// When it said this (ms since the epoch, its own clock).
    pub(super) at: u64,
    /// How often it announces (ms).
    pub(super) every_ms: u64,
    /// Said once on shutdown: drop this instance now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) bye: bool,
    /// Its namespaces and their counters.
    pub(super) namespaces: Vec<NamespaceCounts>,
    /// Its transport's counters, when it has a broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) transport: Option<TransportStats>,
    /// The last messages it sent or delivered within a trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) traces: Vec<TracedMessage>,
}

/// A traced message as the inspector shows it: where it was sent from and every delivery
/// of it heard of, linked by its trace and sending span.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct TraceView {
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) address: String,
    /// The instance that sent it, when its announcement still lists the send.
    pub(super) sent_by: Option<String>,
    /// When it was sent, or first delivered when the send is not known.
    pub(super) at: u64,
    /// The instances that delivered it (by name), each with its number of local recipients.
    pub(super) deliveries: BTreeMap<String, u64>,
}

/// Whether a traced message from an announcement has the shape this crate writes: ids of
/// hex digits of their lengths, an address of at most 129 characters. Others are dropped when
/// the announcement arrives, so a hostile one costs what its JSON costs and no more.
fn well_formed(message: &TracedMessage) -> bool {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    hex(&message.trace_id, 32)
        && hex(&message.span_id, 16)
        && message.address.chars().nth(129).is_none()
}

/// A transport as the inspector shows it: its counters and its messages per second to and
/// from the broker.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct BrokerView {
    #[serde(flatten)]
    pub(super) counts: TransportStats,
    pub(super) published_rate: f64,
    pub(super) received_rate: f64,
    pub(super) dropped_rate: f64,
}

/// Messages per second to and from the broker, and dropped, between two announcements.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct BrokerRates {
    pub(super) published: f64,
    pub(super) received: f64,
    pub(super) dropped: f64,
}

impl BrokerRates {
    fn between(before: &TransportStats, after: &TransportStats, seconds: f64) -> BrokerRates {
        let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
        BrokerRates {
            published: per_s(before.published, after.published),
            received: per_s(before.received, after.received),
            dropped: per_s(before.dropped, after.dropped),
        }
    }
}

/// One point of an instance's history: its counts when it announced, and its rates since its
/// announcement before.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Sample {
    /// When the instance announced (ms since the epoch, its own clock).
    pub(super) at: u64,
    pub(super) sockets: u64,
    /// The rates of all its namespaces together.
    #[serde(flatten)]
    pub(super) rates: Rates,
    /// Its broker traffic, when it has a transport.
    pub(super) broker: Option<BrokerRates>,
    /// Its first [`SAMPLED_NAMESPACES`] namespaces.
    pub(super) namespaces: Vec<NamespaceSample>,
}

/// One namespace in a [`Sample`].
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct NamespaceSample {
    pub(super) path: String,
    pub(super) sockets: u64,
    #[serde(flatten)]
    pub(super) rates: Rates,
}

/// An instance's history as the inspector serves it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct HistoryView {
    pub(super) id: String,
    pub(super) name: String,
    #[serde(rename = "self")]
    pub(super) this: bool,
    /// Oldest first.
    pub(super) samples: Vec<Sample>,
}

/// One namespace's counts in an announcement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct NamespaceCounts {
    pub(super) path: String,
    pub(super) sockets: u64,
    pub(super) rooms: u64,
    /// Messages received from clients (cumulative).
    pub(super) received: u64,
    /// Messages sent (a room message counts once, however many members).
    pub(super) sent: u64,
    /// Messages written to sockets' queues (one per recipient).
    pub(super) deliveries: u64,
}

impl NamespaceCounts {
    pub(super) fn of(ns: &Namespace) -> NamespaceCounts {
        let stats = ns.stats();
        NamespaceCounts {
            path: ns.path().to_owned(),
            sockets: ns.socket_count() as u64,
            rooms: ns.room_count() as u64,
            received: stats.messages_received(),
            sent: stats.messages_sent(),
            deliveries: stats.deliveries(),
        }
    }
}

/// Per-second rates between two announcements.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rates {
    pub(super) received: f64,
    pub(super) sent: f64,
    pub(super) deliveries: f64,
}

impl Rates {
    fn between(before: &NamespaceCounts, after: &NamespaceCounts, seconds: f64) -> Rates {
        let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
        Rates {
            received: per_s(before.received, after.received),
            sent: per_s(before.sent, after.sent),
            deliveries: per_s(before.deliveries, after.deliveries),
        }
    }

    fn add(&mut self, other: Rates) {
        self.received += other.received;
        self.sent += other.sent;
        self.deliveries += other.deliveries;
    }
}

/// What the view keeps of one instance.
#[derive(Debug)]
struct Member {
    last: Announcement,
    /// Rates per namespace path, from the last two announcements.
    rates: HashMap<String, Rates>,
    /// Messages per second published to, received from the broker and dropped.
    broker_rates: BrokerRates,
    /// When the last announcement arrived, by our clock.
    seen: Instant,
    /// Its last [`HISTORY`] samples, oldest first.
    history: VecDeque<Sample>,
}

/// One instance as the inspector shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct InstanceView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) addr: Option<String>,
    /// Whether this is the instance serving the page.
    #[serde(rename = "self")]
    pub(super) this: bool,
    pub(super) started_at: u64,
    /// Milliseconds since its last announcement arrived.
    pub(super) last_seen_ms: u64,
    pub(super) sockets: u64,
    pub(super) rooms: u64,
    pub(super) rates: Rates,
    pub(super) namespaces: Vec<NamespaceView>,
    /// Its broker traffic, when it has a transport.
    pub(super) transport: Option<BrokerView>,
}

/// One namespace of an instance as the inspector shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct NamespaceView {
    #[serde(flatten)]
    pub(super) counts: NamespaceCounts,
    pub(super) rates: Rates,
}

/// The instances this one has heard from (itself included).
#[derive(Debug)]
pub(super) struct Fleet {
    /// This instance's id.
    own: String,
    members: Mutex<HashMap<String, Member>>,
}

impl Fleet {
    pub(super) fn new(own: String) -> Fleet {
        Fleet {
            own,
            members: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn own_id(&self) -> &str {
        &self.own
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An announcement arrived as JSON from another instance; malformed ones are logged and
    /// dropped.
    pub(super) fn receive(&self, payload: &[u8], now: Instant) {
        match serde_json::from_slice::<Announcement>(payload) {
            Ok(announcement) if announcement.v == VERSION => self.record(announcement, now),
            Ok(announcement) => tracing::debug!(
                target: "asena::inspector",
                version = announcement.v,
                "ignoring a fleet announcement of another format version"
            ),
            Err(error) => tracing::warn!(
                target: "asena::inspector",
                %error,
                "dropping a malformed fleet announcement"
            ),
        }
    }

    /// Records an announcement (a goodbye removes the instance).
    pub(super) fn record(&self, mut announcement: Announcement, now: Instant) {
        // Kept as an instance of this crate announces them: at most the log's capacity, each
        // of its shape.
        announcement.traces.retain(well_formed);
        announcement.traces.truncate(TraceLog::CAPACITY);
        let mut members = self.lock();
        if announcement.bye {
            if members.remove(&announcement.id).is_some() {
                tracing::info!(
                    target: "asena::inspector",
                    instance = %announcement.id,
                    name = %announcement.name,
                    "instance left the fleet"
                );
            }
            return;
        }
        let (rates, broker_rates, mut history) = match members.remove(&announcement.id) {
            Some(previous) if announcement.at > previous.last.at => {
                let seconds = (announcement.at - previous.last.at) as f64 / 1000.0;
                let rates = announcement
                    .namespaces
                    .iter()
                    .filter_map(|after| {
                        let before = previous
                            .last
                            .namespaces
                            .iter()
                            .find(|b| b.path == after.path)?;
                        Some((after.path.clone(), Rates::between(before, after, seconds)))
                    })
                    .collect();
                let broker = match (previous.last.transport, announcement.transport) {
                    (Some(before), Some(after)) => BrokerRates::between(&before, &after, seconds),
                    _ => BrokerRates::default(),
                };
                (rates, broker, Some(previous.history))
            }
            // An announcement older than what we have (reordered) is ignored.
            Some(previous) => {
                members.insert(announcement.id.clone(), previous);
                return;
            }
            None => {
                if announcement.id != self.own {
                    tracing::info!(
                        target: "asena::inspector",
                        instance = %announcement.id,
                        name = %announcement.name,
                        "instance joined the fleet"
                    );
                }
                (HashMap::new(), BrokerRates::default(), None)
            }
        };
        // The first announcement has no rates yet: the history starts at the second.
        if let Some(history) = &mut history {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(sample(&announcement, &rates, broker_rates));
        }
        members.insert(
            announcement.id.clone(),
            Member {
                last: announcement,
                rates,
                broker_rates,
                seen: now,
                history: history.unwrap_or_default(),
            },
        );
    }

    /// Drops the instances silent for [`SILENT_INTERVALS`] of their own intervals.
    pub(super) fn expire(&self, now: Instant) {
        self.lock().retain(|id, m| {
            let limit = Duration::from_millis(m.last.every_ms) * SILENT_INTERVALS;
            let alive = id == &self.own || now.saturating_duration_since(m.seen) <= limit;
            if !alive {
                tracing::warn!(
                    target: "asena::inspector",
                    instance = %id,
                    name = %m.last.name,
                    "instance went silent; dropped from the fleet"
                );
            }
            alive
        });
    }

    /// The instances, this one first, then by name.
    pub(super) fn view(&self, now: Instant) -> Vec<InstanceView> {
        self.expire(now);
        let members = self.lock();
        let mut out: Vec<InstanceView> = members
            .values()
            .map(|m| {
                let namespaces: Vec<NamespaceView> = m
                    .last
                    .namespaces
                    .iter()
                    .map(|counts| NamespaceView {
                        counts: counts.clone(),
                        rates: m.rates.get(&counts.path).copied().unwrap_or_default(),
                    })
                    .collect();
                let mut rates = Rates::default();
                for ns in &namespaces {
                    rates.add(ns.rates);
                }
                InstanceView {
                    id: m.last.id.clone(),
                    name: m.last.name.clone(),
                    addr: m.last.addr.clone(),
                    this: m.last.id == self.own,
                    started_at: m.last.started_at,
                    last_seen_ms: u64::try_from(now.saturating_duration_since(m.seen).as_millis())
                        .unwrap_or(u64::MAX),
                    sockets: namespaces.iter().map(|n| n.counts.sockets).sum(),
                    rooms: namespaces.iter().map(|n| n.counts.rooms).sum(),
                    rates,
                    namespaces,
                    transport: m.last.transport.map(|counts| BrokerView {
                        counts,
                        published_rate: m.broker_rates.published,
                        received_rate: m.broker_rates.received,
                        dropped_rate: m.broker_rates.dropped,
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| b.this.cmp(&a.this).then_with(|| a.name.cmp(&b.name)));
        out
    }

    /// Every instance's samples taken after `since` (ms since the epoch, by each instance's
    /// clock; all of them when `None`), in the order of [`view`](Self::view).
    pub(super) fn history(&self, now: Instant, since: Option<u64>) -> Vec<HistoryView> {
        self.expire(now);
        let members = self.lock();
        let mut out: Vec<HistoryView> = members
            .values()
            .map(|m| HistoryView {
                id: m.last.id.clone(),
                name: m.last.name.clone(),
                this: m.last.id == self.own,
                samples: m
                    .history
                    .iter()
                    .filter(|s| since.is_none_or(|since| s.at > since))
                    .cloned()
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| b.this.cmp(&a.this).then_with(|| a.name.cmp(&b.name)));
        out
    }

    /// The traced messages every instance announced, each send with its deliveries, newest
    /// first.
    pub(super) fn traces(&self, now: Instant) -> Vec<TraceView> {
        self.expire(now);
        let members = self.lock();
        let mut views: HashMap<(&str, &str), TraceView> = HashMap::new();
        for member in members.values() {
            let name = &member.last.name;
            for message in &member.last.traces {
                let view = views
                    .entry((&message.trace_id, &message.span_id))
                    .or_insert_with(|| TraceView {
                        trace_id: message.trace_id.clone(),
                        span_id: message.span_id.clone(),
                        address: message.address.clone(),
                        sent_by: None,
                        at: message.at,
                        deliveries: BTreeMap::new(),
                    });
                match message.delivered {
                    None => {
                        view.sent_by = Some(name.clone());
                        view.at = message.at;
                    }
                    Some(recipients) => {
                        if view.sent_by.is_none() {
                            view.at = view.at.min(message.at);
                        }
                        view.deliveries.insert(name.clone(), recipients);
                    }
                }
            }
        }
        let mut out: Vec<TraceView> = views.into_values().collect();
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.trace_id.cmp(&b.trace_id)));
        out
    }
}

/// The sample of an announcement, with the rates since the one before.
fn sample(
    announcement: &Announcement,
    rates: &HashMap<String, Rates>,
    broker: BrokerRates,
) -> Sample {
    let mut total = Rates::default();
    for r in rates.values() {
        total.add(*r);
    }
    Sample {
        at: announcement.at,
        sockets: announcement.namespaces.iter().map(|n| n.sockets).sum(),
        rates: total,
        broker: announcement.transport.map(|_| broker),
        namespaces: announcement
            .namespaces
            .iter()
            .take(SAMPLED_NAMESPACES)
            .map(|n| NamespaceSample {
                path: n.path.clone(),
                sockets: n.sockets,
                rates: rates.get(&n.path).copied().unwrap_or_default(),
            })
            .collect(),
    }
}

/// A new announcement of this instance.
pub(super) fn announcement(
    id: &str,
    name: &str,
    addr: Option<String>,
    started_at: u64,
    every: Duration,
    namespaces: &[Namespace],
    transport: Option<&dyn Transport>,
) -> Announcement {
    Announcement {
        v: VERSION,
        id: id.to_owned(),
        name: name.to_owned(),
        addr,
        started_at,
        at: unix_ms(),
        every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1),
        bye: false,
        namespaces: namespaces.iter().map(NamespaceCounts::of).collect(),
        transport: transport.and_then(Transport::stats),
        traces: transport.map(Transport::recent_traces).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(path: &str, received: u64, deliveries: u64) -> NamespaceCounts {
        NamespaceCounts {
            path: path.to_owned(),
            sockets: 2,
            rooms: 1,
            received,
            sent: received,
            deliveries,
        }
    }

    fn said(id: &str, at: u64, every_ms: u64, ns: Vec<NamespaceCounts>) -> Announcement {
        Announcement {
            v: VERSION,
            id: id.to_owned(),
            name: format!("instance {id}"),
            addr: None,
            started_at: 0,
            at,
            every_ms,
            bye: false,
            namespaces: ns,
            transport: None,
            traces: Vec::new(),
        }
    }

    fn traced(span: &str, address: &str, delivered: Option<u64>, at: u64) -> TracedMessage {
        TracedMessage {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            span_id: span.to_owned(),
            address: address.to_owned(),
            delivered,
            at,
        }
    }

    #[test]
    fn a_send_is_linked_to_its_deliveries_on_other_instances() {
        let fleet = Fleet::new("a".into());
        let now = Instant::now();
        let span = "00f067aa0ba902b7";
        let mut a = said("a", 1_000, 1000, Vec::new());
        a.traces = vec![traced(span, "chat.lobby", None, 900)];
        let mut b = said("b", 1_000, 1000, Vec::new());
        b.traces = vec![
            traced(span, "chat.lobby", Some(3), 950),
            // Not this crate's shape: dropped.
            traced("not-hex", "chat.lobby", Some(1), 960),
            traced(span, &"x".repeat(500), Some(1), 970),
        ];
        let mut c = said("c", 1_000, 1000, Vec::new());
        c.traces = vec![traced(span, "chat.lobby", Some(0), 940)];
        for announcement in [a, b, c] {
            fleet.record(announcement, now);
        }
        let traces = fleet.traces(now);
        assert_eq!(traces.len(), 1, "{traces:?}");
        let trace = &traces[0];
        assert_eq!(trace.sent_by.as_deref(), Some("instance a"));
        assert_eq!((trace.address.as_str(), trace.at), ("chat.lobby", 900));
        let deliveries: Vec<(&str, u64)> = trace
            .deliveries
            .iter()
            .map(|(instance, recipients)| (instance.as_str(), *recipients))
            .collect();
        assert_eq!(deliveries, [("instance b", 3), ("instance c", 0)]);

        // An instance that announces more than a log holds is kept to the log's capacity.
        let mut d = said("d", 1_000, 1000, Vec::new());
        d.traces = (0..1000)
            .map(|n| traced(&format!("{n:016x}"), "chat.lobby", Some(1), 1_000 + n))
            .collect();
        fleet.record(d, now);
        let from_d = fleet
            .traces(now)
            .iter()
            .filter(|t| t.deliveries.contains_key("instance d"))
            .count();
        assert_eq!(from_d, TraceLog::CAPACITY);
    }

    #[test]
    fn rates_come_from_the_last_two_announcements() {
        let fleet = Fleet::new("a".into());
        let t0 = Instant::now();
        fleet.record(
            said("b", 10_000, 1000, vec![counts("/chat", 100, 1000)]),
            t0,
        );
        let first = fleet.view(t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].rates, Rates::default(), "no rate from one sample");
        // Two seconds later by b's clock: 50 more messages, 400 more deliveries.
        fleet.record(
            said("b", 12_000, 1000, vec![counts("/chat", 150, 1400)]),
            t0,
        );
        let view = fleet.view(t0);
        assert_eq!(view[0].rates.received, 25.0);
        assert_eq!(view[0].rates.deliveries, 200.0);
        assert_eq!(view[0].sockets, 2);
        // A reordered, older announcement changes nothing.
        fleet.record(said("b", 11_000, 1000, vec![counts("/chat", 0, 0)]), t0);
        assert_eq!(fleet.view(t0)[0].rates.received, 25.0);
    }

    #[test]
    fn the_history_keeps_the_last_samples_from_the_second_announcement() {
        let fleet = Fleet::new("a".into());
        let t0 = Instant::now();
        fleet.record(said("b", 1_000, 1000, vec![counts("/chat", 0, 0)]), t0);
        assert!(
            fleet.history(t0, None)[0].samples.is_empty(),
            "no rates yet"
        );
        for n in 1..=(HISTORY as u64 + 5) {
            let ns = vec![counts("/chat", n * 10, n * 20)];
            fleet.record(said("b", 1_000 + n * 1000, 1000, ns), t0);
        }
        let history = fleet.history(t0, None);
        let samples = &history[0].samples;
        assert_eq!(samples.len(), HISTORY, "bounded");
        let last = samples.last().expect("samples");
        assert_eq!(last.at, 1_000 + (HISTORY as u64 + 5) * 1000);
        assert_eq!((last.rates.received, last.rates.deliveries), (10.0, 20.0));
        assert_eq!(last.namespaces[0].path, "/chat");
        assert_eq!(last.broker, None, "no transport");
        assert_eq!(samples[0].at, 1_000 + 6 * 1000, "the oldest went first");
        // Only what is newer than `since`.
        let newer = fleet.history(t0, Some(last.at - 1500));
        assert_eq!(newer[0].samples.len(), 2);
    }

    #[test]
    fn a_silent_instance_drops_off_after_three_intervals_and_self_stays() {
        let fleet = Fleet::new("a".into());
        let t0 = Instant::now();
        fleet.record(said("a", 1, 100, vec![]), t0);
        fleet.record(said("b", 1, 100, vec![]), t0);
        assert_eq!(fleet.view(t0 + Duration::from_millis(300)).len(), 2);
        let later = fleet.view(t0 + Duration::from_millis(301));
        assert_eq!(later.len(), 1);
        assert!(later[0].this);
    }

    #[test]
    fn a_goodbye_removes_the_instance_at_once() {
        let fleet = Fleet::new("a".into());
        let t0 = Instant::now();
        fleet.record(said("b", 1, 1000, vec![]), t0);
        let mut bye = said("b", 2, 1000, vec![]);
        bye.bye = true;
        fleet.receive(&serde_json::to_vec(&bye).expect("encodes"), t0);
        assert!(fleet.view(t0).is_empty());
    }

    #[test]
    fn malformed_and_foreign_announcements_are_dropped() {
        let fleet = Fleet::new("a".into());
        let t0 = Instant::now();
        fleet.receive(b"not json", t0);
        fleet.receive(br#"{"v": 99, "id": "x"}"#, t0);
        let mut other = serde_json::to_value(said("c", 1, 1000, vec![])).expect("encodes");
        other["v"] = 2.into();
        fleet.receive(&serde_json::to_vec(&other).expect("encodes"), t0);
        assert!(fleet.view(t0).is_empty());
    }
}

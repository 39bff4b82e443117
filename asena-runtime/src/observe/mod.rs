//! Watching a running app: the Prometheus exposition of its counters (`metrics.rs`) and the
//! live inspector (`inspector/`: its page, JSON API and WebSocket feed, and the fleet view
//! made from the instances' announcements). The counters themselves are the namespaces'
//! ([`NamespaceStats`](crate::namespace::NamespaceStats)) and the transport's.

pub(crate) mod inspector;
pub(crate) mod metrics;

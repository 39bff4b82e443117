//! One managed client: where it is in the authentication state machine, its user and
//! metadata, when it connected and was last heard from, and whether its send queue is
//! backed up.

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::crypto::{Flow, Session};
use super::gate::{Gate, OutboundTransform};
use crate::connection::Conn;
use crate::connection::seal::Seal;
use crate::namespace::WebSocketData;

/// Where a client is in the authentication state machine.
///
/// `Unauthorized --authenticate--> Authenticating --> Authenticated`, and `Disconnected`
/// from any of them (timeout, failed authentication, close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Connected, no `authenticate` yet.
    Unauthorized,
    /// `authenticate` received; the service's `authenticate` is running.
    Authenticating,
    /// Authenticated: application events, rooms and deliveries.
    Authenticated,
    /// Closed or closing.
    Disconnected,
}

/// The socket values of a managed service: the client's state, user and metadata. Handlers
/// read it as `ws.data().values`.
#[derive(Debug)]
pub struct ManagedClient {
    inner: Mutex<Inner>,
    /// What every message to the client passes through: withheld before it authenticates,
    /// then transformed or encrypted (also the connection's seal).
    gate: Arc<Gate>,
    /// The wall-clock time of `connected_at` (the instants below are monotonic).
    connected_wall: SystemTime,
    /// The connection, whose send queue says whether the client is backpressured (weak: the
    /// connection owns this value).
    conn: OnceLock<Weak<Conn>>,
    /// Woken when the client authenticates, so that the watchdog, asleep until the
    /// authentication deadline, reads the heartbeat deadline at once.
    authenticated: tokio::sync::Notify,
}

#[derive(Debug)]
struct Inner {
    state: ClientState,
    user_id: Option<String>,
    metadata: serde_json::Value,
    connected_at: Instant,
    last_activity: Instant,
    authenticating_since: Option<Instant>,
    watchdog: Option<AbortHandle>,
    /// The service's key exchange settings, read when the socket opened.
    key_exchange: KeyExchange,
}

/// How a client may agree a key (from the service's options).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyExchange {
    /// Clients must agree a key before anything else (or in `authenticate`, Ignis's way).
    pub(crate) required: bool,
    /// Ignis's key exchange instead of the channel's.
    pub(crate) ignis: bool,
}

impl Default for ManagedClient {
    fn default() -> Self {
        let now = Instant::now();
        ManagedClient {
            inner: Mutex::new(Inner {
                state: ClientState::Unauthorized,
                user_id: None,
                metadata: serde_json::Value::Null,
                connected_at: now,
                last_activity: now,
                authenticating_since: None,
                watchdog: None,
                key_exchange: KeyExchange::default(),
            }),
            gate: Arc::default(),
            connected_wall: SystemTime::now(),
            conn: OnceLock::new(),
            authenticated: tokio::sync::Notify::new(),
        }
    }
}

impl ManagedClient {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the client is in the state machine.
    pub fn state(&self) -> ClientState {
        self.lock().state
    }

    /// Whether it has authenticated (and not disconnected).
    pub fn is_authenticated(&self) -> bool {
        self.state() == ClientState::Authenticated
    }

    /// The user it authenticated as.
    pub fn user_id(&self) -> Option<String> {
        self.lock().user_id.clone()
    }

    /// What the service's `authenticate` returned with the user (`null` before).
    pub fn metadata(&self) -> serde_json::Value {
        self.lock().metadata.clone()
    }

    /// When the client connected (Ignis's `connectedAt`).
    #[doc(alias = "connectedAt")]
    pub fn connected_at(&self) -> SystemTime {
        self.connected_wall
    }

    /// When the client was last heard from: any message, a `heartbeat` included, and its
    /// authentication (Ignis's `lastActivity`). The heartbeat timeout counts from here.
    #[doc(alias = "lastActivity")]
    pub fn last_activity(&self) -> SystemTime {
        let inner = self.lock();
        self.connected_wall + inner.last_activity.duration_since(inner.connected_at)
    }

    /// Whether the client's send queue is backed up (Ignis's `backpressured`): it went past
    /// its high-water mark, half of the queue limit
    /// ([`Limits::max_queued_bytes`](crate::config::Limits::max_queued_bytes)), and has not
    /// emptied since. It clears when the queue drains, just before
    /// [`ManagedService::on_drain`](super::ManagedService::on_drain) runs. Where Ignis sets
    /// it when one `send` is refused by Bun, this reads the queue itself, so it is never
    /// stale; messages pushed past the limit follow the app's
    /// [`SlowConsumer`](crate::config::SlowConsumer) policy either way.
    #[doc(alias = "backpressured")]
    pub fn is_backpressured(&self) -> bool {
        self.conn
            .get()
            .and_then(Weak::upgrade)
            .is_some_and(|conn| conn.outbox.is_pressured())
    }

    /// Ties the client to its connection (once, when it opens).
    pub(crate) fn attach(&self, conn: &Arc<Conn>) {
        let _ = self.conn.set(Arc::downgrade(conn));
    }

    /// Gives this client an outbound transformer (once; later calls are ignored and return
    /// false, and so does a call for an encrypted client). From then on it takes the
    /// per-client delivery path on every send.
    pub fn set_outbound(&self, transform: Arc<dyn OutboundTransform>) -> bool {
        self.gate.set_transform(transform)
    }

    /// The client's outbound transformer, if the service gave it one.
    pub fn outbound(&self) -> Option<&Arc<dyn OutboundTransform>> {
        self.gate.transform()
    }

    /// Whether the client agreed a key: everything it receives after the key agreement is
    /// encrypted (see the [module docs](super)).
    pub fn is_encrypted(&self) -> bool {
        self.gate.session().is_some()
    }

    pub(crate) fn encryption(&self) -> Option<&Arc<Session>> {
        self.gate.session()
    }

    /// Whether the client agreed a key with the channel's key exchange (`encrypt` first).
    pub(crate) fn has_channel(&self) -> bool {
        self.encryption().is_some_and(|s| s.flow() == Flow::Channel)
    }

    /// Makes the client encrypted. False if it already has a transformer (or a session).
    pub(crate) fn set_encryption(&self, session: Arc<Session>) -> bool {
        self.gate.set_session(session)
    }

    /// The client's gate, the seal of its connection.
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    pub(crate) fn set_key_exchange(&self, key_exchange: KeyExchange) {
        self.lock().key_exchange = key_exchange;
    }

    pub(crate) fn key_exchange(&self) -> KeyExchange {
        self.lock().key_exchange
    }

    pub(crate) fn touch(&self) {
        self.lock().last_activity = Instant::now();
    }

    /// Moves `Unauthorized` to `Authenticating`; false from any other state.
    pub(crate) fn begin_authentication(&self) -> bool {
        let mut inner = self.lock();
        if inner.state != ClientState::Unauthorized {
            return false;
        }
        inner.state = ClientState::Authenticating;
        inner.authenticating_since = Some(Instant::now());
        true
    }

    /// Moves `Authenticating` to `Authenticated`; false if the client left meanwhile.
    pub(crate) fn authenticated(&self, user_id: String, metadata: serde_json::Value) -> bool {
        let mut inner = self.lock();
        if inner.state != ClientState::Authenticating {
            return false;
        }
        inner.state = ClientState::Authenticated;
        self.gate.set_open(true);
        inner.user_id = Some(user_id);
        inner.metadata = metadata;
        inner.last_activity = Instant::now();
        drop(inner);
        self.authenticated.notify_one();
        true
    }

    /// Resolves once the client has authenticated (at once if it did since the last call).
    pub(crate) async fn authenticated_now(&self) {
        self.authenticated.notified().await;
    }

    /// Marks the client gone; returns its user id and stops its watchdog.
    pub(crate) fn disconnected(&self) -> Option<String> {
        let mut inner = self.lock();
        inner.state = ClientState::Disconnected;
        self.gate.set_open(false);
        if let Some(w) = inner.watchdog.take() {
            w.abort();
        }
        inner.user_id.clone()
    }

    pub(crate) fn set_watchdog(&self, handle: AbortHandle) {
        let mut inner = self.lock();
        if inner.state == ClientState::Disconnected {
            handle.abort();
        } else {
            inner.watchdog = Some(handle);
        }
    }

    /// When the current phase times out, and the close it gets then: the authentication
    /// deadlines (4001) before, the heartbeat deadline (4002) after authenticating. `None`
    /// once disconnected.
    pub(crate) fn deadline(
        &self,
        auth_timeout: std::time::Duration,
        heartbeat_timeout: Option<std::time::Duration>,
    ) -> Option<(Option<Instant>, u16, &'static str)> {
        let inner = self.lock();
        match inner.state {
            ClientState::Unauthorized => Some((
                Some(inner.connected_at + auth_timeout),
                super::close::AUTH_TIMEOUT,
                "Authentication timeout",
            )),
            ClientState::Authenticating => Some((
                inner.authenticating_since.map(|t| t + auth_timeout * 3),
                super::close::AUTH_TIMEOUT,
                "Authentication timeout",
            )),
            ClientState::Authenticated => Some((
                heartbeat_timeout.map(|h| inner.last_activity + h),
                super::close::HEARTBEAT_TIMEOUT,
                "Heartbeat timeout",
            )),
            ClientState::Disconnected => None,
        }
    }
}

/// The [`SealFor`](crate::connection::seal::SealFor) of managed namespaces: a connection's seal
/// is its client's gate.
pub(crate) fn seal_for(data: &(dyn Any + Send + Sync)) -> Option<Arc<dyn Seal>> {
    let data = data.downcast_ref::<WebSocketData<ManagedClient>>()?;
    Some(data.values.gate().clone())
}

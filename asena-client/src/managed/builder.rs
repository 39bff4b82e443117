//! [`ManagedBuilder`]: where to connect, who to authenticate as, and how to stay connected.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use asena_protocol::ack::Failure;

use super::dialect::{Managed, Settings};
use super::{ManagedConnection, ManagedSender, Shared};
use crate::ack::{Handler, Pending as Requests};
use crate::builder::{ConnectOptions, setters};
use crate::driver::{Config, Dialect, Driver};
use crate::url::Base;
use crate::{Backoff, ClientError};

/// Configures a [`ManagedConnection`]; made by [`ManagedConnection::builder`], finished by
/// [`connect`](Self::connect). Setters never fail: `connect` reports what is wrong.
///
/// | setting | default |
/// |---|---|
/// | [`credentials`](Self::credentials) / [`token`](Self::token) | `null` |
/// | [`encrypt`](Self::encrypt) | off |
/// | [`heartbeat`](Self::heartbeat) | a `heartbeat` event (and a ping) every 15 s |
/// | [`handshake_timeout`](Self::handshake_timeout) | 10 s for `encrypted` and `connected` |
/// | [`request_timeout`](Self::request_timeout) | 5 s for the answer to `join` / `leave` |
/// | [`reconnect`](Self::reconnect) | on: [`Backoff::default`] |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s per attempt |
/// | [`queue`](Self::queue) | 64 messages wait while disconnected |
pub struct ManagedBuilder<T> {
    url: String,
    options: ConnectOptions,
    credentials: Result<Value, Arc<serde_json::Error>>,
    encrypt: bool,
    handshake_timeout: Duration,
    request_timeout: Duration,
    handler: Option<Handler<T>>,
    events: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send + 'static> ManagedBuilder<T> {
    pub(crate) fn new(url: &str) -> Self {
        ManagedBuilder {
            url: url.to_owned(),
            options: ConnectOptions::default(),
            credentials: Ok(Value::Null),
            encrypt: false,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            handler: None,
            events: PhantomData,
        }
    }

    /// Answers the server's requests (an event with an `id`, from `managed().request(..)` on
    /// the server): `f` gets each one as `T` and returns the reply, sent as
    /// `{"event":"ack","id":..,"data":..}`, or a [`Failure`] (`"error": {"code","message"}`).
    /// Each runs in a task of its own. Without it every request is answered with the
    /// failure `not_answered`. See [`ack`](crate::ack).
    pub fn on_request<F, Fut, Rep>(mut self, f: F) -> Self
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, Failure>> + Send + 'static,
        Rep: Serialize,
    {
        self.handler = Some(crate::ack::handler(f));
        self
    }

    /// The data of `authenticate`, handed to the service's authenticator: any `Serialize`
    /// value (a `serde_json::Value`, or a type of yours). Sent again on every reconnect.
    #[doc(alias = "authenticate")]
    pub fn credentials<C: Serialize>(mut self, credentials: &C) -> Self {
        self.credentials = serde_json::to_value(credentials).map_err(Arc::new);
        self
    }

    /// Ignis's token credentials: `{"type": "token", "token": token}`.
    pub fn token(self, token: impl Into<String>) -> Self {
        let token: String = token.into();
        self.credentials(&serde_json::json!({"type": "token", "token": token}))
    }

    setters! {
        /// Adds a query pair to the URL (`?key=value`); repeat for more.
        query(key: impl Into<String>, value: impl Into<String>) => options.query += (key.into(), value.into());

        /// Adds a header to the upgrade request (and to every reconnect).
        header(name: impl Into<String>, value: impl Into<String>) => options.headers += (name.into(), value.into());

        /// Trusts `certificate` (DER or PEM) as a root for `wss://`, besides Mozilla's roots; as
        /// [`ClientBuilder::add_root_certificate`](crate::ClientBuilder::add_root_certificate).
        add_root_certificate(certificate: impl Into<Vec<u8>>) => options.roots += certificate.into();

        /// Agrees keys with `encrypt` before anything else, so that every message after it
        /// (the credentials included) is sealed; on every reconnect too.
        encrypt(on: bool) => encrypt = on;

        /// Sends a `heartbeat` event (and a WebSocket ping) every `interval`, which must be
        /// shorter than the server's heartbeat timeout (a third of it is a good value); two
        /// intervals without a frame from the server is a dead connection.
        heartbeat(interval: Duration) => options.heartbeat = Some(interval);

        /// Sends no heartbeat: the server then closes a quiet client (4002).
        without_heartbeat() => options.heartbeat = None;

        /// How long the server may take to answer `encrypt` and `authenticate`.
        handshake_timeout(timeout: Duration) => handshake_timeout = timeout;

        /// How long [`join`](ManagedConnection::join) and [`leave`](ManagedConnection::leave)
        /// wait for the server's answer.
        request_timeout(timeout: Duration) => request_timeout = timeout;

        /// Reconnects after a lost connection with this backoff.
        reconnect(backoff: Backoff) => options.reconnect = Some(backoff);

        /// Never reconnects: a lost connection ends the event stream.
        without_reconnect() => options.reconnect = None;

        /// How long one connect attempt (TCP and WebSocket handshake) may take.
        connect_timeout(timeout: Duration) => options.connect_timeout = timeout;

        /// How many messages and requests may wait for the connection. At least 1.
        queue(capacity: usize) => options.queue = capacity.max(1);
    }

    /// Connects, agrees keys (with [`encrypt`](Self::encrypt)), authenticates and waits for
    /// `connected`, once: a failure is returned (reconnecting starts only after a first
    /// success), e.g. [`ClientError::AuthenticationFailed`] for refused credentials.
    pub async fn connect(self) -> Result<ManagedConnection<T>, ClientError> {
        let config = self.config()?;
        let credentials = self.credentials.map_err(|e| ClientError::NotAnEvent {
            reason: format!("the credentials do not serialize: {e}"),
        })?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let requests = Arc::new(Requests::default());
        let mut dialect = Managed::<T>::new(
            Settings {
                credentials,
                encrypt: self.encrypt,
                handshake_timeout: self.handshake_timeout,
            },
            Arc::clone(&shared),
            (requests.clone(), self.handler),
        );
        let mut ws = crate::driver::connect(&config).await?;
        dialect.open(&mut ws, false).await?;
        tracing::debug!(target: "asena::client", url = %config.url, encrypted = self.encrypt, "managed connection authenticated");
        let url = config.url.clone();
        let (tx, events) = Driver::spawn(config, dialect, ws, self.options.queue);
        Ok(ManagedConnection {
            sender: ManagedSender {
                tx,
                shared,
                request_timeout: self.request_timeout,
                requests,
            },
            events,
            url,
        })
    }

    fn config(&self) -> Result<Config, ClientError> {
        self.options.config(&Base::parse(&self.url)?, "", "")
    }
}

impl<T> std::fmt::Debug for ManagedBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedBuilder")
            .field("url", &self.url)
            .field("encrypt", &self.encrypt)
            .field("heartbeat", &self.options.heartbeat)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect", &self.options.reconnect)
            .finish_non_exhaustive()
    }
}

//! [`ClientBuilder`]: where to connect and how to stay connected.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use asena_protocol::Channel;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use asena_protocol::ack::Failure;
use serde::Serialize;

use crate::ack::{Handler, Pending};
use crate::driver::{Config, Driver, Plain};
use crate::url::{Base, fill_path};
use crate::{Backoff, Client, ClientError, Sender};

/// How many events wait for [`Client::next`] before the client stops reading the socket.
pub(crate) const EVENT_BUFFER: usize = 256;

/// Configures a [`Client`]; made by [`Client::builder`], finished by
/// [`connect`](Self::connect).
///
/// Setters never fail: a bad URL, header or parameter is reported by `connect`.
///
/// | setting | default |
/// |---|---|
/// | [`params`](Self::params) | none (a path with `{params}` then fails to connect) |
/// | [`reconnect`](Self::reconnect) | on: [`Backoff::default`], 100 ms doubling to 10 s, unlimited |
/// | [`heartbeat`](Self::heartbeat) | a ping every 15 s; 30 s without any frame is a dead connection |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s per attempt |
/// | [`queue`](Self::queue) | 64 messages wait while disconnected |
/// | [`add_root_certificate`](Self::add_root_certificate) | `wss://` trusts Mozilla's roots (`webpki-roots`) only |
pub struct ClientBuilder<C: Channel> {
    base: String,
    params: Option<Result<Value, serde_json::Error>>,
    options: ConnectOptions,
    handler: Option<Handler<C::Out>>,
    channel: PhantomData<fn() -> C>,
}

/// Declares setters that change one field each: `name(argument: Type, ..) => field = value`
/// sets it, `name(..) => field += value` pushes `value` onto it (a `Vec`); `field` may be a
/// path (`options.queue`).
macro_rules! setters {
    () => {};
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $($field:ident).+ = $value:expr; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self $(, $arg: $ty)*) -> Self {
            self.$($field).+ = $value;
            self
        }
        setters! { $($rest)* }
    };
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $($field:ident).+ += $value:expr; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn $name(mut self $(, $arg: $ty)*) -> Self {
            self.$($field).+.push($value);
            self
        }
        setters! { $($rest)* }
    };
}
pub(crate) use setters;

/// What [`ClientBuilder`] and [`ManagedBuilder`](crate::managed::ManagedBuilder) both
/// configure about the connection itself: the URL's query, the upgrade request's headers,
/// extra TLS roots, reconnecting, the heartbeat, the connect timeout and the send queue.
pub(crate) struct ConnectOptions {
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) roots: Vec<Vec<u8>>,
    pub(crate) reconnect: Option<Backoff>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) queue: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            query: Vec::new(),
            headers: Vec::new(),
            roots: Vec::new(),
            reconnect: Some(Backoff::default()),
            heartbeat: Some(Duration::from_secs(15)),
            connect_timeout: Duration::from_secs(10),
            queue: 64,
        }
    }
}

impl ConnectOptions {
    /// The driver's configuration for the server at `base` with `path` appended; `template`
    /// is the channel's path before its parameters were filled in.
    pub(crate) fn config(
        &self,
        base: &Base,
        path: &str,
        template: &'static str,
    ) -> Result<Config, ClientError> {
        let url = base.join(path, &self.query);
        let tls = if base.is_tls() {
            Some(tls_config(&self.roots)?)
        } else {
            None
        };
        Ok(Config {
            url,
            path: template,
            headers: parse_headers(&self.headers)?,
            reconnect: self.reconnect,
            heartbeat: self.heartbeat,
            connect_timeout: self.connect_timeout,
            tls,
        })
    }
}

impl<C: Channel> ClientBuilder<C> {
    pub(crate) fn new(base: &str) -> Self {
        ClientBuilder {
            base: base.to_owned(),
            params: None,
            options: ConnectOptions::default(),
            handler: None,
            channel: PhantomData,
        }
    }

    /// Answers the server's requests (`ws.request(..)` on the server): `f` gets each one as
    /// the channel's `Out` and returns the reply, or a [`Failure`] to answer with. Each runs
    /// in a task of its own. Without it every request is answered with the failure
    /// `not_answered`; a request that does not decode into `Out` with the decode error's
    /// code. See [`ack`](crate::ack).
    ///
    /// ```no_run
    /// # use asena_client::Client;
    /// # async fn run<C: asena_protocol::Channel<Params = ()>>() -> Result<(), asena_client::ClientError>
    /// # where C::Out: serde::de::DeserializeOwned + Send {
    /// let client = Client::<C>::builder("ws://127.0.0.1:3000")
    ///     .on_request(|_asked: C::Out| async { Ok(true) })     // answers `true` to anything
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_request<F, Fut, Rep>(mut self, f: F) -> Self
    where
        F: Fn(C::Out) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, Failure>> + Send + 'static,
        Rep: Serialize,
        C::Out: Send + 'static,
    {
        self.handler = Some(crate::ack::handler(f));
        self
    }

    /// The path parameters: each field fills the `{field}` of the channel's path, as one
    /// percent-encoded path segment. Strings, numbers and booleans are allowed.
    ///
    /// ```no_run
    /// # use asena_client::Client;
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Room { room: String }
    /// # async fn run<C: asena_protocol::Channel<Params = Room>>() -> Result<(), asena_client::ClientError>
    /// # where C::Out: serde::de::DeserializeOwned {
    /// // C::PATH is "/chat/{room}": connects to ws://127.0.0.1:3000/chat/general
    /// let client = Client::<C>::builder("ws://127.0.0.1:3000")
    ///     .params(&Room { room: "general".into() })
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn params(mut self, params: &C::Params) -> Self {
        self.params = Some(serde_json::to_value(params));
        self
    }

    setters! {
        /// Adds a query pair (`?key=value`, form-encoded); repeat for more.
        query(key: impl Into<String>, value: impl Into<String>) => options.query += (key.into(), value.into());

        /// Adds a header to the upgrade request (and to every reconnect), e.g.
        /// `.header("authorization", "Bearer t0k3n")`.
        header(name: impl Into<String>, value: impl Into<String>) => options.headers += (name.into(), value.into());

        /// Reconnects after a lost connection with this backoff (the default is
        /// [`Backoff::default`]).
        reconnect(backoff: Backoff) => options.reconnect = Some(backoff);

        /// Never reconnects: after a lost connection the event stream yields
        /// [`Event::Disconnected`](crate::Event::Disconnected) and ends.
        without_reconnect() => options.reconnect = None;

        /// Pings the server every `interval`; a connection on which no frame at all arrived for
        /// two intervals (and a write that stalls as long) counts as dead and is replaced.
        heartbeat(interval: Duration) => options.heartbeat = Some(interval);

        /// Never pings; a silent dead connection then goes unnoticed until the OS gives up on it.
        without_heartbeat() => options.heartbeat = None;

        /// How long one connect attempt (TCP and handshake) may take.
        connect_timeout(timeout: Duration) => options.connect_timeout = timeout;

        /// How many sent messages may wait for the connection (during a reconnect, or when the
        /// socket is slower than the sender). [`Client::send`] waits when the queue is full,
        /// [`Client::try_send`] fails with [`ClientError::QueueFull`]. At least 1.
        queue(capacity: usize) => options.queue = capacity.max(1);
    }

    /// Trusts `certificate` as a root for `wss://`, besides Mozilla's roots: a private CA's,
    /// or a test server's self-signed certificate. DER, or PEM (every `CERTIFICATE` in it);
    /// repeat for more. A certificate that does not parse fails
    /// [`connect`](Self::connect) with [`ClientError::BadCertificate`].
    ///
    /// ```no_run
    /// # use asena_client::Client;
    /// # async fn run<C: asena_protocol::Channel<Params = ()>>() -> Result<(), asena_client::ClientError>
    /// # where C::Out: serde::de::DeserializeOwned {
    /// let ca = std::fs::read("ca.pem").expect("the CA's certificate");
    /// let client = Client::<C>::builder("wss://chat.internal:8443")
    ///     .add_root_certificate(ca)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn add_root_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        self.options.roots.push(certificate.into());
        self
    }

    /// Connects, once: a failure is returned at once (reconnecting only starts after a first
    /// successful connection), e.g. [`ClientError::Refused`] with the server's status and body, or
    /// [`ClientError::MissingParam`] before anything is sent.
    pub async fn connect(self) -> Result<Client<C>, ClientError>
    where
        C::Out: DeserializeOwned,
    {
        let config = self.config()?;
        let ws = crate::driver::connect(&config).await?;
        tracing::debug!(target: "asena::client", url = %config.url, path = config.path, "connected");
        let url = config.url.clone();
        let queue = self.options.queue;
        let pending = Arc::new(Pending::default());
        let dialect = Plain {
            pending: pending.clone(),
            handler: self.handler,
            outlet: None,
            positions: Default::default(),
        };
        let (tx, events) = Driver::spawn(config, dialect, ws, queue);
        Ok(Client {
            sender: Sender::new(tx, queue, pending),
            events,
            url,
        })
    }

    fn config(&self) -> Result<Config, ClientError> {
        let base = Base::parse(&self.base)?;
        let params = match &self.params {
            None => Value::Null,
            Some(Ok(value)) => value.clone(),
            Some(Err(e)) => {
                return Err(ClientError::InvalidParam {
                    path: C::PATH,
                    name: String::new(),
                    reason: format!("the params do not serialize: {e}"),
                });
            }
        };
        let path = fill_path(C::PATH, &params)?;
        self.options.config(&base, &path, C::PATH)
    }
}

/// The headers of the upgrade request, checked.
pub(crate) fn parse_headers(
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, ClientError> {
    headers
        .iter()
        .map(|(name, value)| {
            let bad = |reason: String| ClientError::BadHeader {
                name: name.clone(),
                reason,
            };
            Ok((
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?,
                HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?,
            ))
        })
        .collect()
}

/// The TLS configuration of `wss://`: Mozilla's roots and `extra` (DER or PEM), rustls on
/// the `ring` provider, TLS 1.2 and 1.3.
pub(crate) fn tls_config(extra: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let bad = |reason: String| ClientError::BadCertificate { reason };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in extra {
        let ders = if certificate.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateDer::pem_slice_iter(certificate)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("PEM: {e}")))?
        } else {
            vec![CertificateDer::from(certificate.clone())]
        };
        if ders.is_empty() {
            return Err(bad("the PEM holds no CERTIFICATE".to_owned()));
        }
        for der in ders {
            roots.add(der).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl<C: Channel> std::fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("channel", &C::NAME)
            .field("base", &self.base)
            .field("query", &self.options.query)
            .field(
                "headers",
                &self
                    .options
                    .headers
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .field("reconnect", &self.options.reconnect)
            .field("heartbeat", &self.options.heartbeat)
            .field("connect_timeout", &self.options.connect_timeout)
            .field("queue", &self.options.queue)
            .field("extra_roots", &self.options.roots.len())
            .finish_non_exhaustive()
    }
}

//! What can go wrong: building the URL, connecting, sending.

use std::time::Duration;

/// A boxed error from the WebSocket layer, kept as the [`source`](std::error::Error::source)
/// of [`ClientError::Connect`].
pub use asena_protocol::BoxError;

/// An error from the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL given to [`Client::builder`](crate::Client::builder) is not a usable
    /// `ws://` or `wss://` URL.
    #[error("bad URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The channel's path has a `{name}` the path parameters do not fill.
    #[error(
        "the path `{path}` needs the parameter `{name}`, which the params do not have\nhint: pass it with `.params(..)`"
    )]
    MissingParam {
        /// The channel's path pattern.
        path: &'static str,
        /// The missing parameter.
        name: String,
    },

    /// The path parameters could not be turned into path segments.
    #[error("path parameter `{name}` of `{path}`: {reason}")]
    InvalidParam {
        /// The channel's path pattern.
        path: &'static str,
        /// The parameter (empty when the parameters as a whole are the problem).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A header given to the builder has an invalid name or value.
    #[error("invalid header `{name}`: {reason}")]
    BadHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The TCP connection or the WebSocket handshake failed (refused, reset, not a WebSocket
    /// server, ...).
    #[error("could not connect to {url}")]
    Connect {
        /// The URL connected to.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The TLS handshake of a `wss://` URL failed, e.g. the server's certificate is not
    /// signed by a trusted root (add a private CA's with
    /// [`add_root_certificate`](crate::ClientBuilder::add_root_certificate)) or does not
    /// name the host. The source is rustls's reason.
    #[error("TLS handshake with {url} failed: {source}")]
    Tls {
        /// The URL connected to.
        url: String,
        /// rustls's error.
        #[source]
        source: BoxError,
    },

    /// A root certificate given to
    /// [`add_root_certificate`](crate::ClientBuilder::add_root_certificate) is not a
    /// usable DER or PEM certificate.
    #[error("bad root certificate: {reason}")]
    BadCertificate {
        /// What is wrong with it.
        reason: String,
    },

    /// The server answered the upgrade request with an HTTP error instead of switching
    /// protocols, e.g. a middleware's `401 {"error":"Unauthorized"}`.
    #[error("the server refused the WebSocket upgrade of {url} with {status}: {}", body_text(.body))]
    Refused {
        /// The URL connected to.
        url: String,
        /// The HTTP status, e.g. `400 Bad Request`.
        status: tokio_tungstenite::tungstenite::http::StatusCode,
        /// The response body (often JSON), lossily decoded as UTF-8.
        body: String,
    },

    /// Connecting took longer than the connect timeout.
    #[error("connecting to {url} timed out after {after:?}")]
    Timeout {
        /// The URL connected to.
        url: String,
        /// The timeout.
        after: Duration,
    },

    /// A message could not be serialised as JSON.
    #[error("could not encode the message as JSON")]
    Encode(#[source] serde_json::Error),

    /// The send queue is full (from [`Client::try_send`](crate::Client::try_send); `send`
    /// waits instead).
    #[error(
        "the send queue is full (capacity {capacity}); the connection is down or slower than the sender"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },

    /// The message breaks a constraint of the channel's schema (checked by
    /// [`publish`](crate::publish) and [`publish_on`](crate::publish_on)); it was not sent.
    #[error("the message was not sent: {0}")]
    Invalid(#[source] asena_protocol::DecodeError),

    /// Writing to or reading from a socket the application owns failed
    /// ([`publish_on`](crate::publish_on), [`subscribe_on`](crate::subscribe_on)).
    #[error("the WebSocket failed: {source}")]
    Socket {
        /// tungstenite's error.
        #[source]
        source: BoxError,
    },

    /// The client is closed: [`close`](crate::Client::close) was called, the connection was
    /// lost with reconnect off, or reconnecting gave up.
    #[error("the client is closed")]
    Closed,

    /// The managed server closed the connection with 4001: it received no `authenticate` in
    /// time, or its authenticator took too long.
    #[error("the server closed the connection with 4001 (authentication timeout): {reason}")]
    AuthenticationTimeout {
        /// The close reason.
        reason: String,
    },

    /// The managed server refused the credentials (close 4003).
    #[error("the server refused the credentials (close 4003 {reason}){}", said(.message))]
    AuthenticationFailed {
        /// The close reason, e.g. `Authentication failed`.
        reason: String,
        /// The server's `error` event before the close (Ignis sends one), if any.
        message: Option<String>,
    },

    /// The managed server requires encryption, or refused the client's key (close 4004).
    #[error(
        "the server requires encryption (close 4004 {reason})\nhint: agree keys with `.encrypt(true)`"
    )]
    EncryptionRequired {
        /// The close reason.
        reason: String,
    },

    /// The encrypted channel broke (4005): a message that was not the next sealed one, from
    /// the server (the client closed with 4005) or from the client (the server did).
    #[error("the encrypted channel broke (4005): {reason}")]
    DecryptionFailed {
        /// What was wrong, or the server's close reason.
        reason: String,
    },

    /// The managed server closed the connection (or it broke) before `connected`, with a
    /// code that is none of the above.
    #[error("the connection ended during the managed handshake ({}): {reason}", code_text(*.code))]
    HandshakeClosed {
        /// The close code, `None` without a close frame.
        code: Option<u16>,
        /// The close reason, or what went wrong.
        reason: String,
    },

    /// The server did not answer in time: `encrypted` or `connected` within the handshake
    /// timeout, or `join` / `leave` within the request timeout (Ignis never answers those).
    #[error("no `{waiting_for}` from the server within {after:?}")]
    NoAnswer {
        /// The event waited for.
        waiting_for: &'static str,
        /// How long the client waited.
        after: Duration,
    },

    /// The connection was lost before the server answered the request.
    #[error("the connection was lost before the server answered `{waiting_for}`")]
    Lost {
        /// The request's event.
        waiting_for: &'static str,
    },

    /// The server answered a request with a failure: the managed `error` event, or a
    /// failed reply (`{"$ack":id,"error":{"code","message"}}`).
    #[error("the server refused the request: {message}")]
    Server {
        /// The server's message.
        message: String,
        /// Asena's machine-readable code (`too_many_rooms_in_request`), if any.
        code: Option<String>,
    },

    /// As many requests await a reply as [`MAX_PENDING`](crate::ack::MAX_PENDING) allows;
    /// this one was not sent.
    #[error("{limit} requests already await a reply")]
    TooManyPending {
        /// The limit.
        limit: usize,
    },

    /// The server's reply to a request does not decode into the type asked for.
    #[error("the reply does not decode: {0}")]
    Reply(#[source] asena_protocol::DecodeError),

    /// The managed server broke the protocol (a malformed `connected`, ...).
    #[error("the server broke the managed protocol: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },

    /// The key agreement failed: the server's answer to `encrypt` holds no usable key or
    /// salt, or the system's random number generator failed.
    #[error("the key agreement failed")]
    Crypto(#[source] asena_protocol::crypto::CryptoError),

    /// What was given to send as a managed event is not `{"event": string, "data"?: any}`,
    /// or the credentials do not serialize.
    #[error("not a managed event: {reason}")]
    NotAnEvent {
        /// What is wrong with it.
        reason: String,
    },
}

fn said(message: &Option<String>) -> String {
    match message {
        Some(message) => format!(": {message}"),
        None => String::new(),
    }
}

fn code_text(code: Option<u16>) -> String {
    match code {
        Some(code) => format!("close {code}"),
        None => "no close code".to_owned(),
    }
}

fn body_text(body: &str) -> &str {
    if body.is_empty() {
        "(empty body)"
    } else {
        body
    }
}

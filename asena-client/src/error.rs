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
}

fn body_text(body: &str) -> &str {
    if body.is_empty() {
        "(empty body)"
    } else {
        body
    }
}

//! [`Error`]: building, starting or serving an app failed.

use std::net::SocketAddr;

use crate::di::{ContainerError, DiError};
use crate::error::BoxError;
use crate::transport::TransportError;

/// Building, starting or serving an app failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The component graph is invalid; every problem is listed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A component could not be constructed.
    #[error("could not build a component: {0}")]
    Construct(#[from] DiError),
    /// A component's `on_start` hook failed.
    #[error("{component} failed to start: {source}")]
    Start {
        /// The component's name.
        component: &'static str,
        /// What its hook returned.
        #[source]
        source: BoxError,
    },
    /// The listener could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The transport to other instances could not start.
    #[error("transport failed to start: {0}")]
    Transport(#[from] TransportError),
    /// `ASENA_TRANSPORT` or a builder setting is not valid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O error while serving.
    #[error("server I/O error on {addr:?}: {source}")]
    Io {
        /// The local address, if known.
        addr: Option<SocketAddr>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

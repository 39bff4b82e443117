//! The error type handlers and hooks return.
//!
//! The app's own error ([`Error`](crate::Error)) lives with the app; each area has its own
//! error type next to the code that produces it ([`SendError`](crate::SendError),
//! [`TransportError`](crate::transport::TransportError), [`ContainerError`](crate::di::ContainerError)).

/// Any error a handler or hook may return; use `?` on anything that implements
/// `std::error::Error`.
pub use asena_protocol::BoxError;

/// Result of handlers and hooks: `Result<()>` is `Result<(), BoxError>`.
pub type Result<T = (), E = BoxError> = std::result::Result<T, E>;

//! The error type handlers and hooks return.
//!
//! The app's own error ([`Error`](crate::Error)) lives with the app; each area has its own
//! error type next to the code that produces it ([`SendError`](crate::SendError),
//! [`TransportError`](crate::TransportError), [`ContainerError`](crate::ContainerError)).

/// Any error a handler or hook may return; use `?` on anything that implements
/// `std::error::Error`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of handlers and hooks: `Result<()>` is `Result<(), BoxError>`.
pub type Result<T = (), E = BoxError> = std::result::Result<T, E>;

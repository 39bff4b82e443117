//! The hand-off from middleware to the connection: the typed value a middleware stores with
//! [`Context::set_websocket_value`](crate::Context::set_websocket_value), checked against the
//! service's `Data` type when the socket is created.

use std::any::Any;

/// A value set by middleware, with its type name for error messages.
pub(crate) struct WsValue {
    pub(crate) value: Box<dyn Any + Send + Sync>,
    pub(crate) type_name: &'static str,
}

/// What middleware stored does not match the service's `Data` type.
#[derive(Debug)]
pub(crate) struct TypeMismatch {
    pub(crate) expected: &'static str,
    pub(crate) found: &'static str,
}

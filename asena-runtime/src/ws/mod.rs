//! Serving a websocket service: the type-erased service the router holds, the upgrade that
//! admits a connection (`upgrade.rs`, with its Origin policy in `origin.rs`), and the reader
//! and writer loops that run it through its [`Protocol`] (`run.rs`).

pub(crate) mod origin;
mod rate;
pub(crate) mod run;
pub(crate) mod upgrade;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;

use crate::asyncapi::ChannelSpec;
use crate::channel::{Receives, Sends};
use crate::connection::io::Io;
use crate::error::Result;
use crate::middleware::{Refusal, TypeMismatch, WsValue};
use crate::namespace::{Namespace, SocketRef, WebSocketData};

use crate::protocol::{DataOf, Endpoint, Fleet, Protocol};

/// A websocket service with its types erased, as the router holds it. Hidden and
/// effectively sealed: its methods name crate-private types.
#[doc(hidden)]
#[allow(private_interfaces)]
pub trait ErasedService: Send + Sync + 'static {
    /// Builds the connection's `WebSocketData<Data>`.
    fn make_data(
        &self,
        value: Option<WsValue>,
        id: &Arc<str>,
        path: &Arc<str>,
    ) -> std::result::Result<Box<dyn Any + Send + Sync>, TypeMismatch>;
    /// [`WebSocketService::PROTOCOLS`].
    fn protocols(&self) -> &'static [&'static str];
    /// [`WebSocketService::REQUIRE_PROTOCOL`].
    fn require_protocol(&self) -> bool;
    /// Deserializes the path parameters into [`Channel::Params`]; refuses with 400 naming the
    /// parameter when they do not deserialize.
    fn parse_params<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> Pin<Box<dyn Future<Output = ParsedParams> + Send + 'a>>;
    /// The service's channel for the AsyncAPI document, its schemas made with `generator`.
    fn describe(&self, generator: &mut schemars::SchemaGenerator) -> ChannelSpec;
    /// [`Protocol::start`].
    fn start<'a>(
        &'a self,
        ns: &'a Namespace,
        fleet: &'a Fleet,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
    /// [`Protocol::stop`].
    fn stop<'a>(&'a self, ns: &'a Namespace) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// Runs a connection to the end.
    fn run(
        self: Arc<Self>,
        socket: SocketRef,
        io: Io,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// What [`ErasedService::parse_params`] gives: the typed parameters, or the refusal.
pub(crate) type ParsedParams = std::result::Result<Option<Box<dyn Any + Send + Sync>>, Refusal>;

impl std::fmt::Debug for dyn ErasedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErasedService")
    }
}

struct ServiceAdapter<S>(Arc<S>);

/// The delivery a message of `S` chooses ([`Channel::delivery`]).
fn delivery_of<S: Endpoint>(
    message: &(dyn Any + Send + Sync),
) -> Option<asena_protocol::delivery::Delivery> {
    message.downcast_ref::<S::Out>().and_then(S::delivery)
}

impl<S: Endpoint> ErasedService for ServiceAdapter<S> {
    fn make_data(
        &self,
        value: Option<WsValue>,
        id: &Arc<str>,
        path: &Arc<str>,
    ) -> std::result::Result<Box<dyn Any + Send + Sync>, TypeMismatch> {
        let values = match value {
            None => DataOf::<S>::default(),
            Some(v) => match v.value.downcast::<DataOf<S>>() {
                Ok(values) => *values,
                Err(_) => {
                    return Err(TypeMismatch {
                        expected: std::any::type_name::<DataOf<S>>(),
                        found: v.type_name,
                    });
                }
            },
        };
        Ok(Box::new(WebSocketData {
            values,
            id: id.clone(),
            path: path.clone(),
        }))
    }

    fn protocols(&self) -> &'static [&'static str] {
        S::Protocol::SUBPROTOCOLS
    }

    fn require_protocol(&self) -> bool {
        S::Protocol::REQUIRE_SUBPROTOCOL
    }

    fn parse_params<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> Pin<Box<dyn Future<Output = ParsedParams> + Send + 'a>> {
        Box::pin(upgrade::parse_params::<S::Params>(parts))
    }

    fn describe(&self, generator: &mut schemars::SchemaGenerator) -> ChannelSpec {
        let typed_params = std::any::TypeId::of::<S::Params>() != std::any::TypeId::of::<()>();
        let mut spec = ChannelSpec {
            name: S::NAME.to_owned(),
            path: S::PATH.to_owned(),
            params: typed_params.then(|| generator.subschema_for::<S::Params>()),
            receives: S::In::schema(generator),
            sends: S::Out::schema(generator),
            protocols: S::Protocol::SUBPROTOCOLS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            ..ChannelSpec::default()
        };
        <S::Protocol as Protocol<S>>::describe(&mut spec);
        spec
    }

    fn start<'a>(
        &'a self,
        ns: &'a Namespace,
        fleet: &'a Fleet,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        let _ = ns.shared().inspect.set(inspect_data::<S>);
        let _ = ns.shared().delivery.set(delivery_of::<S>);
        Box::pin(S::Protocol::start(&self.0, ns, fleet))
    }

    fn stop<'a>(&'a self, ns: &'a Namespace) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(S::Protocol::stop(&self.0, ns))
    }

    fn run(
        self: Arc<Self>,
        socket: SocketRef,
        io: Io,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        run::run(self.0.clone(), socket, io)
    }
}

/// The [`InspectData`](crate::connection::InspectData) of `S`'s namespace: its protocol's
/// view of a connection's state.
fn inspect_data<S: Endpoint>(data: &(dyn Any + Send + Sync)) -> serde_json::Value {
    data.downcast_ref::<WebSocketData<DataOf<S>>>()
        .map_or(serde_json::Value::Null, |data| {
            <S::Protocol as Protocol<S>>::inspect(&data.values)
        })
}

impl<S: Endpoint> ServiceAdapter<S> {
    /// Evaluated for every service an app registers, so a bad `PROTOCOLS` or
    /// `REQUIRE_PROTOCOL` fails the build (`cargo build`; `cargo check` does not evaluate it).
    const VALID_PROTOCOLS: () =
        check_protocols(S::Protocol::SUBPROTOCOLS, S::Protocol::REQUIRE_SUBPROTOCOL);
}

/// Wraps a built websocket service for the router.
pub(crate) fn erase<S: Endpoint>(service: Arc<S>) -> Arc<dyn ErasedService> {
    let () = ServiceAdapter::<S>::VALID_PROTOCOLS;
    Arc::new(ServiceAdapter(service))
}

/// Panics (at compile time, where it is used in a `const`) when a protocol name is not an
/// HTTP token or a protocol is required but none is declared.
const fn check_protocols(protocols: &[&str], required: bool) {
    assert!(
        !required || !protocols.is_empty(),
        "`REQUIRE_PROTOCOL = true` needs at least one entry in `WebSocketService::PROTOCOLS`"
    );
    let mut i = 0;
    while i < protocols.len() {
        assert!(
            is_token(protocols[i].as_bytes()),
            "every entry of `WebSocketService::PROTOCOLS` must be a non-empty HTTP token \
             (letters, digits and !#$%&'*+-.^_`|~; no spaces, commas or other separators)"
        );
        i += 1;
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), the form RFC 6455 §4.1 requires of a
/// subprotocol name.
const fn is_token(name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        let ok = matches!(
            name[i],
            b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_are_tokens() {
        for good in [
            "chat",
            "chat.v2",
            "graphql-transport-ws",
            "v1.json.api",
            "a!#$%&'*+-.^_`|~9",
        ] {
            assert!(is_token(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "chat v2", "a,b", "x;y", "\"q\"", "a/b", "tab\t", "é", "{}",
        ] {
            assert!(!is_token(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn checks_accept_valid_declarations() {
        check_protocols(&[], false);
        check_protocols(&["chat.v2", "chat.v1"], true);
    }

    #[test]
    #[should_panic(expected = "needs at least one entry")]
    fn a_required_protocol_needs_one_declared() {
        check_protocols(&[], true);
    }

    #[test]
    #[should_panic(expected = "non-empty HTTP token")]
    fn a_protocol_name_with_a_space_is_rejected() {
        check_protocols(&["chat v1"], false);
    }
}

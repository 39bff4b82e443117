//! Spec first: the User Service of `asyncapi.yaml`, its server and client generated at
//! build time (`build.rs` runs `asena_codegen::Builder`).
//!
//! The generated module [`user_events`] holds the path parameters, the message types and
//! the contract [`user_events::UserEvents`]; [`UserEventsSocket`] is the server, an ordinary
//! `#[websocket]` service on that contract. A client connects to
//! `ws://host/user/events/{userId}` and publishes `UserSignedUp` events; the server checks
//! each against the document (a bad one is answered with an error frame naming the field and
//! the rule) and sends it to every connection of that user.

include!(concat!(env!("OUT_DIR"), "/asyncapi.rs"));

use asena_runtime::prelude::*;

/// The server side of `user/events/{userId}`: every event a user's connection publishes
/// goes to all of that user's connections.
#[websocket(channel = user_events::UserEvents)]
#[derive(Debug)]
pub struct UserEventsSocket;

impl WebSocketService for UserEventsSocket {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        tracing::info!(user = %ws.params().user_id, "user connected");
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, event: UserSignedUp) -> Result<()> {
        // Everyone at this concrete path: the user's connections, this one included.
        ws.namespace().to(ws.path(), &event)?;
        Ok(())
    }
}

/// The app: the one service, nothing registered automatically.
pub fn builder() -> asena_runtime::AsenaBuilder {
    asena_runtime::Asena::builder()
        .without_auto_registration()
        .websocket::<UserEventsSocket>()
}

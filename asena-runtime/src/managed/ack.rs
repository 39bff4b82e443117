//! Requests and replies in the managed protocol's envelope (see [`ack`](crate::ack) for
//! the API and the channel protocol's shapes):
//!
//! | message | direction | shape |
//! |---|---|---|
//! | request | server → client | `{"event": <event>, "data": .., "id": "<n>"}`: an ordinary event with an `id` ([`Managed::request`], [`Managed::request_room`]) |
//! | reply | client → server | `{"event": "ack", "id": "<n>", "data": ..}`, or `{"event": "ack", "id": "<n>", "error": {"code", "message"}}` |
//! | request | client → server | an application event with a string `id` that is one of the `Request` events of a service whose `ANSWERS` is `Answers::ON_REQUEST` (any other goes to `on_event`, as before) |
//! | reply | server → client | `{"event": "ack", "data": .., "id": <the client's id>}`, or `{"event": "error", "data": {"message", "code"}, "id": ..}` |
//!
//! A client that ignores what it does not know (Ignis's) handles a request as the event it
//! names and never replies: the caller's timeout ends the wait. Only authenticated clients
//! are asked (the gate withholds everything else from the others): asking one that is not
//! fails at once with `SEND_FAILED`. The event `ack` is a reply only from a client that was
//! asked something; from any other it is an application event as before.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Envelope, ManagedService, answer};
use crate::ack::{self, Body, Failure, RoomRequest, SocketRequest};
use crate::channel::EventMessage;
use crate::codec::Message;
use crate::error::Result;
use crate::namespace::{SendError, SendErrorCode, Socket, SocketRef};

pub(crate) use asena_protocol::ack::MANAGED_REPLY_EVENT;

use super::send::Managed;

impl<O> Managed<O> {
    /// Sends `message` to the client `client_id` on **this instance** as a request and,
    /// when awaited, waits for its `ack` (`.timeout(d)`, [`DEFAULT_TIMEOUT`](crate::ack::DEFAULT_TIMEOUT)
    /// otherwise). A client elsewhere in the fleet fails with `SOCKET_NOT_FOUND`: its reply
    /// could only be read by the instance that holds it.
    pub fn request<R>(&self, client_id: &str, message: impl EventMessage<O>) -> SocketRequest<R> {
        let ns = self.ns();
        let target = match ns.socket(client_id) {
            None => Err(SendError::new(
                SendErrorCode::SocketNotFound,
                Some(ns.path()),
                "no such client on this instance",
            )),
            Some(socket) => event(ns.path(), message).map(|e| (socket, Body::Managed(Arc::new(e)))),
        };
        SocketRequest::new(target)
    }

    /// Sends `message` as a request to every client in `room` on **this instance** and,
    /// when awaited, collects each one's reply under one deadline (see
    /// [`Namespace::request_room`](crate::Namespace::request_room)).
    pub fn request_room<R>(&self, room: &str, message: impl EventMessage<O>) -> RoomRequest<R> {
        let ns = self.ns();
        ns.request_room_event(room, event(ns.path(), message))
    }
}

fn event<O>(
    path: &str,
    message: impl EventMessage<O>,
) -> std::result::Result<(String, Value), SendError> {
    message
        .into_event()
        .map_err(|e| SendError::invalid_message(Some(path), e))
}

/// `{"event":"ack","id":..}` from a client the server asked something: handed to the
/// request it answers; `false` when the client was never asked (an ordinary event then).
pub(super) fn take_reply<O>(ws: &SocketRef<O>, envelope: &Envelope) -> bool {
    let conn = &ws.conn;
    if conn.acks.get().is_none() {
        return false;
    }
    let Some(id) = envelope.id().and_then(|id| id.parse::<u64>().ok()) else {
        ack::stray(conn, None, "no numeric id");
        return true;
    };
    let answered = match &envelope.error {
        Value::Null => Ok(envelope.data.to_string().into_boxed_str()),
        error => Err(serde_json::from_value::<Failure>(error.clone())
            .unwrap_or_else(|_| Failure::new("failed", "the client answered with an error"))),
    };
    ack::settle(conn, id, answered);
    true
}

/// A client's application event with an `id`, to a service that answers requests, when it
/// is one of the service's `Request` events: its reply goes back as `ack` with that `id`, a
/// failure as `error` with it (and a failing handler then closes the socket with 1011).
/// `Err(message)` hands it back when the service answers none, or the event is not one of
/// its requests (an `unknown_variant`): it is then an ordinary event.
pub(super) async fn answer_event<S: ManagedService>(
    service: &S,
    ws: &Socket<S>,
    message: Message,
    id: &str,
) -> std::result::Result<Result<()>, Message> {
    let Some(on_request) = <S as ManagedService>::ANSWERS.answer else {
        return Err(message);
    };
    Ok(match on_request(service, ws, message.clone()).await {
        Ok(json) => {
            let data = serde_json::from_str(&json).unwrap_or(Value::Null);
            answer(ws, Some(id), MANAGED_REPLY_EVENT, data)
        }
        Err((failure, None)) if failure.code == "unknown_variant" => return Err(message),
        Err((failure, error)) => {
            if error.is_none() {
                ack::undecodable(ws, &failure);
            }
            let sent = answer(
                ws,
                Some(id),
                "error",
                json!({"message": failure.message, "code": failure.code}),
            );
            match error {
                Some(error) => Err(error),
                None => sent,
            }
        }
    })
}

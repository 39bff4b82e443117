//! Sending to managed clients: by client, by user (every session), by room, to everyone
//! authenticated; each with an `exclude` list, locally and through the fleet bus.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::channel::{EventMessage, Raw};
use crate::codec::Frame;
use crate::namespace::{Namespace, SendError, Socket, SocketRef};

use asena_protocol::managed::{ManagedEnvelope, TargetKind};

use super::ManagedService;
use crate::transport::{Outbound, Transport};

/// What a managed namespace keeps besides its sockets: who is online as which user, and
/// where deliveries for other instances go.
#[derive(Debug)]
pub(crate) struct ManagedState {
    /// user id → that user's local client ids.
    users: Mutex<HashMap<String, Vec<Arc<str>>>>,
    /// This server's id in the fleet's envelopes (self-dedup).
    pub(crate) server_id: String,
    pub(crate) bus: OnceLock<FleetBus>,
}

impl Default for ManagedState {
    fn default() -> Self {
        ManagedState {
            users: Mutex::new(HashMap::new()),
            server_id: uuid::Uuid::new_v4().to_string(),
            bus: OnceLock::new(),
        }
    }
}

/// Where deliveries for other instances go: the managed layout of channels (under `prefix`)
/// on the app's transport.
pub(crate) struct FleetBus {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) prefix: String,
}

impl std::fmt::Debug for FleetBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBus")
            .field("transport", &self.transport.name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl FleetBus {
    /// Hands a delivery to the other instances, from the server `server_id`.
    fn publish(&self, server_id: &str, delivery: Delivery<'_>) {
        let (kind, target) = match delivery.target {
            Target::Client(id) => (TargetKind::Client, Some(id.to_owned())),
            Target::User(user) => (TargetKind::User, Some(user.to_owned())),
            Target::Room(room) => (TargetKind::Room, Some(room.to_owned())),
            Target::Broadcast => (TargetKind::Broadcast, None),
        };
        let envelope = ManagedEnvelope {
            server_id: server_id.to_owned(),
            kind,
            target,
            event: delivery.event.to_owned(),
            data: delivery.data.clone(),
            exclude: (!delivery.exclude.is_empty())
                .then(|| delivery.exclude.iter().map(|c| (*c).to_owned()).collect()),
            traceparent: None,
        };
        let channel = envelope.channel_under(&self.prefix);
        let trace = crate::trace::hop(&channel);
        let envelope = ManagedEnvelope {
            traceparent: trace,
            ..envelope
        };
        self.transport.publish(Outbound {
            trace,
            ..Outbound::channel(channel, envelope.encode().into())
        });
    }
}

/// Who a delivery is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Client(&'a str),
    User(&'a str),
    Room(&'a str),
    Broadcast,
}

/// One delivery: who it is for, the event and its data, and the clients it skips.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery<'a> {
    pub(crate) target: Target<'a>,
    pub(crate) event: &'a str,
    pub(crate) data: &'a Value,
    pub(crate) exclude: &'a [&'a str],
}

impl ManagedState {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<str>>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add_session(&self, user_id: &str, client_id: Arc<str>) {
        self.users()
            .entry(user_id.to_owned())
            .or_default()
            .push(client_id);
    }

    /// Removes a session; the user's entry goes with its last session.
    pub(crate) fn remove_session(&self, user_id: &str, client_id: &str) {
        let mut users = self.users();
        if let Some(sessions) = users.get_mut(user_id) {
            sessions.retain(|c| &**c != client_id);
            if sessions.is_empty() {
                users.remove(user_id);
            }
        }
    }

    /// The local client ids of `user_id`.
    pub(crate) fn sessions(&self, user_id: &str) -> Vec<Arc<str>> {
        self.users().get(user_id).cloned().unwrap_or_default()
    }

    /// Users with at least one local session, sorted.
    pub(crate) fn local_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.users().keys().cloned().collect();
        users.sort();
        users
    }

    /// Delivers to the local clients `target` names, skipping `exclude` (and, through their
    /// gates, clients that have not authenticated). The frame is encoded once for all of
    /// them; an encrypted client's gate seals it for that client.
    pub(crate) fn deliver_local(
        &self,
        ns: &Namespace,
        delivery: Delivery<'_>,
    ) -> Result<usize, SendError> {
        let frame = event_frame(ns, delivery.event, delivery.data)?;
        let mut n = 0;
        let candidates: Vec<SocketRef> = match delivery.target {
            Target::Client(id) => ns.socket(id).into_iter().collect(),
            Target::User(user) => self
                .sessions(user)
                .iter()
                .filter_map(|id| ns.socket(id))
                .collect(),
            Target::Room(room) => ns.sockets_in(room),
            Target::Broadcast => ns.sockets(),
        };
        for socket in &candidates {
            if delivery.exclude.contains(&socket.id()) {
                continue;
            }
            // The client's gate withholds it before authentication and seals it for an
            // encrypted client; a plain one gets the shared frame.
            n += usize::from(socket.conn.push(&frame).is_ok());
        }
        ns.stats().record_send(n, false);
        Ok(n)
    }

    /// Local delivery, then the other instances.
    pub(crate) fn deliver(
        &self,
        ns: &Namespace,
        delivery: Delivery<'_>,
    ) -> Result<usize, SendError> {
        let local = self.deliver_local(ns, delivery)?;
        if let Some(bus) = self.bus.get() {
            bus.publish(&self.server_id, delivery);
        }
        Ok(local)
    }
}

/// `{"event": .., "data": ..}`, encoded once.
pub(crate) fn event_frame(ns: &Namespace, event: &str, data: &Value) -> Result<Frame, SendError> {
    Frame::json(&serde_json::json!({ "event": event, "data": data }))
        .map_err(|e| SendError::invalid_message(Some(ns.path()), e))
}

/// Sends to the clients of a managed service, on every instance. Get it with
/// `ws.managed()` in a managed service's handlers, `ulak.managed()` elsewhere. Cheap to clone.
///
/// Every method returns the number of *local* recipients; only authenticated clients
/// receive anything, and `exclude` lists client ids to skip.
pub struct Managed<O = Raw> {
    ns: Namespace,
    state: Arc<ManagedState>,
    _out: PhantomData<fn() -> O>,
}

impl<O> Clone for Managed<O> {
    fn clone(&self) -> Self {
        self.typed()
    }
}

impl<O> std::fmt::Debug for Managed<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("path", &self.ns.path())
            .field("server_id", &self.state.server_id)
            .finish()
    }
}

impl<O> Namespace<O> {
    /// The managed-protocol sender of this namespace, whose service speaks the managed
    /// protocol (the types of the callers, `Socket<S>` and `Ulak<N>` of a managed service,
    /// say so).
    pub(crate) fn managed(&self) -> Managed<O> {
        let state = self
            .extension(ManagedState::default)
            .expect("a namespace's extension state is the managed protocol's");
        Managed {
            ns: self.raw(),
            state,
            _out: PhantomData,
        }
    }
}

impl<S: ManagedService> Socket<S> {
    /// The managed-protocol sender of this socket's service: to a client, a user's every
    /// session, a room or everyone, on every instance. Only a managed service's socket has
    /// it.
    pub fn managed(&self) -> Managed<S::Out> {
        self.namespace().managed()
    }
}

/// Declares the senders to one target named by an id, excluding no one:
/// `name(id) => Target variant`.
macro_rules! senders_to_one {
    ($($(#[$doc:meta])* $name:ident($id:ident) => $target:ident;)+) => {$(
        $(#[$doc])*
        pub fn $name(
            &self,
            $id: &str,
            message: impl EventMessage<O>,
        ) -> Result<usize, SendError> {
            self.deliver(Target::$target($id), message, &[])
        }
    )+};
}

impl<O> Managed<O> {
    /// The namespace it sends in.
    pub(super) fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// The untyped sender: any `(event, data)` pair, whatever the service declares it
    /// `sends`.
    pub fn raw(&self) -> Managed {
        self.typed()
    }

    /// The same sender, sending the messages of `P`.
    fn typed<P>(&self) -> Managed<P> {
        Managed {
            ns: self.ns.clone(),
            state: self.state.clone(),
            _out: PhantomData,
        }
    }

    fn deliver(
        &self,
        target: Target<'_>,
        message: impl EventMessage<O>,
        exclude: &[&str],
    ) -> Result<usize, SendError> {
        let (event, data) = message
            .into_event()
            .map_err(|e| SendError::invalid_message(Some(self.ns.path()), e))?;
        let delivery = Delivery {
            target,
            event: &event,
            data: &data,
            exclude,
        };
        self.state.deliver(&self.ns, delivery)
    }

    senders_to_one! {
        /// To one client, by id, wherever it is connected.
        to_client(client_id) => Client;
        /// To every session of a user, **on every instance** (`ws:user:{id}` on the fleet's
        /// transport, like Ignis's `WebSocketEmitter.toUser`).
        ///
        /// Porting trap: Ignis's server-side `sendToUser` reaches only the user's sessions on
        /// the instance that calls it; this one reaches them all. For Ignis's local-only
        /// behaviour use [`to_local_user`](Self::to_local_user).
        #[doc(alias = "sendToUser")]
        #[doc(alias = "toUser")]
        to_user(user_id) => User;
    }

    /// To the sessions of a user connected to **this instance only**, as Ignis's server-side
    /// `sendToUser` does (nothing goes on the fleet's transport). Returns how many received
    /// it. [`to_user`](Self::to_user) reaches every instance.
    #[doc(alias = "sendToUser")]
    pub fn to_local_user(
        &self,
        user_id: &str,
        message: impl EventMessage<O>,
    ) -> Result<usize, SendError> {
        let (event, data) = message
            .into_event()
            .map_err(|e| SendError::invalid_message(Some(self.ns.path()), e))?;
        let delivery = Delivery {
            target: Target::User(user_id),
            event: &event,
            data: &data,
            exclude: &[],
        };
        self.state.deliver_local(&self.ns, delivery)
    }

    /// Tells a client connected to this instance to go (Ignis's `disconnect` system event,
    /// server to client): it is sent `{"event":"disconnect","data":{"reason"}}` (sealed for
    /// an encrypted client; sent before authentication too), then the socket closes with
    /// 1000 and `reason` (cut to what a close frame holds, 123 bytes), after everything
    /// already queued for it. [`ManagedService::on_disconnected`] runs with that code and
    /// reason. Returns whether the client is connected here.
    ///
    /// Local only: Ignis's fleet envelope has no message type for it (`client`, `user`,
    /// `room`, `broadcast`), so a client on another instance is told to go by that
    /// instance (for example from a handler of an event sent with
    /// [`to_client`](Self::to_client)).
    #[doc(alias = "kick")]
    pub fn disconnect(&self, client_id: &str, reason: &str) -> bool {
        let Some(socket) = self.ns.socket(client_id) else {
            return false;
        };
        if let Err(error) = super::answer(
            &socket,
            None,
            "disconnect",
            serde_json::json!({"reason": reason}),
        ) {
            tracing::warn!(target: "asena::managed", %error, "disconnect event not encoded");
        }
        tracing::info!(target: "asena::managed", socket_id = %client_id, reason, "server disconnects the client");
        socket.close_with(crate::close_code::NORMAL, reason);
        true
    }

    /// To every member of a room (a client id names that client's own room), on every
    /// instance, except the clients in `exclude`.
    pub fn to_room(
        &self,
        room: &str,
        message: impl EventMessage<O>,
        exclude: &[&str],
    ) -> Result<usize, SendError> {
        self.deliver(Target::Room(room), message, exclude)
    }

    /// To every authenticated client, on every instance, except the clients in `exclude`.
    pub fn broadcast(
        &self,
        message: impl EventMessage<O>,
        exclude: &[&str],
    ) -> Result<usize, SendError> {
        self.deliver(Target::Broadcast, message, exclude)
    }

    /// Sends to `destination` resolved as Ignis's `send({ destination })` does: none is
    /// everyone ([`broadcast`](Self::broadcast)); a client connected here is that client
    /// ([`to_client`](Self::to_client)); anything else is a room, on every instance
    /// ([`to_room`](Self::to_room)). A user id is not a destination: use
    /// [`to_user`](Self::to_user).
    #[doc(alias = "send({ destination })")]
    pub fn send(
        &self,
        destination: Option<&str>,
        message: impl EventMessage<O>,
    ) -> Result<usize, SendError> {
        match destination {
            None => self.broadcast(message, &[]),
            Some(id) if self.ns.socket(id).is_some() => self.to_client(id, message),
            Some(room) => self.to_room(room, message, &[]),
        }
    }

    /// Users with at least one session on this instance, sorted.
    pub fn local_users(&self) -> Vec<String> {
        self.state.local_users()
    }

    /// The ids of `user_id`'s clients connected to this instance, in the order they
    /// authenticated (empty for a user with none here). Ignis's `getClientsByUser`; like it,
    /// local only: [`to_user`](Self::to_user) reaches the user's sessions on every instance.
    #[doc(alias = "getClientsByUser")]
    #[doc(alias = "clients_by_user")]
    pub fn user_clients(&self, user_id: &str) -> Vec<String> {
        self.state
            .sessions(user_id)
            .iter()
            .map(|id| id.to_string())
            .collect()
    }

    /// This instance's id on the fleet bus.
    pub fn server_id(&self) -> &str {
        &self.state.server_id
    }
}

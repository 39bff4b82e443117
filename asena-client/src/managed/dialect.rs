//! The managed protocol as the connection's task speaks it: the handshake after each
//! connection (encryption, authentication, rejoining rooms), sealing and opening messages,
//! the answers to `join` and `leave`, heartbeats.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asena_protocol::close_code::{
    AUTH_FAILED, AUTH_TIMEOUT, DECRYPTION_FAILED, ENCRYPTION_REQUIRED,
};
use asena_protocol::crypto::{KeyOffer, SealedChannel};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{Command, Connected, ManagedEvent, RoomsAnswer, Shared, lock};
use asena_protocol::ack::{Failure, MANAGED_REPLY_EVENT};
use tokio::sync::mpsc;

use crate::ack::{self, Handler, Pending as Requests};
use crate::driver::{Dialect, Step, Ws, decode_bytes};
use crate::presence::PresenceFrame;
use crate::{ClientError, Event};

/// How many `join` (and `leave`) requests may wait for an answer. A server that never
/// answers (Ignis) would otherwise make the queue grow forever; past this, the oldest
/// (long timed out) are forgotten.
const MAX_PENDING: usize = 64;

/// What the dialect keeps across connections.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) credentials: Value,
    pub(crate) encrypt: bool,
    pub(crate) handshake_timeout: Duration,
}

/// A `join` or `leave` waiting for its answer.
#[derive(Debug)]
struct Pending {
    rooms: Vec<String>,
    /// `None` for the rejoin after a reconnect, which nobody awaits.
    reply: Option<oneshot::Sender<Result<RoomsAnswer, ClientError>>>,
}

/// The envelope of a message from the server.
#[derive(Deserialize)]
struct Envelope {
    event: Option<String>,
    #[serde(default)]
    data: Value,
    /// A request's id (the server's), or the id of the client's request an answer is for.
    #[serde(default)]
    id: Value,
}

/// The managed protocol's [`Dialect`].
pub(crate) struct Managed<T> {
    settings: Settings,
    shared: Arc<Mutex<Shared>>,
    /// This connection's end of the encrypted channel, once keys are agreed.
    channel: Option<SealedChannel>,
    joins: VecDeque<Pending>,
    leaves: VecDeque<Pending>,
    /// The client's requests awaiting `ack`, and the handler of the server's.
    requests: Arc<Requests>,
    handler: Option<Handler<T>>,
    outlet: Option<mpsc::WeakSender<Command>>,
    events: PhantomData<fn() -> T>,
}

impl<T> Managed<T> {
    pub(crate) fn new(
        settings: Settings,
        shared: Arc<Mutex<Shared>>,
        (requests, handler): (Arc<Requests>, Option<Handler<T>>),
    ) -> Self {
        Managed {
            settings,
            shared,
            channel: None,
            joins: VecDeque::new(),
            leaves: VecDeque::new(),
            requests,
            handler,
            outlet: None,
            events: PhantomData,
        }
    }

    /// `text` as it goes on the wire: sealed once keys are agreed.
    fn frame(&self, text: &str) -> Result<WsMessage, String> {
        match &self.channel {
            None => Ok(WsMessage::text(text)),
            Some(channel) => channel
                .seal(text.as_bytes())
                .map(WsMessage::text)
                .map_err(|e| format!("sealing failed: {e}")),
        }
    }

    /// The plaintext of a message from the server; `Err` (why) when it breaks the channel.
    fn unseal(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let Some(channel) = &self.channel else {
            return Ok(bytes.to_vec());
        };
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(Envelope {
                event: Some(event),
                data,
                ..
            }) if event == "encrypted" => channel.open(&data).map_err(|e| e.to_string()),
            _ => Err("a plain message on the encrypted channel".to_owned()),
        }
    }

    /// Queues a `join`/`leave` and returns its frame.
    fn rooms_request(&mut self, leave: bool, pending: Pending) -> Result<WsMessage, String> {
        let event = if leave { "leave" } else { "join" };
        let text = json!({"event": event, "data": {"rooms": pending.rooms}}).to_string();
        {
            let mut shared = lock(&self.shared);
            for room in &pending.rooms {
                if leave {
                    shared.rooms.remove(room);
                } else {
                    shared.rooms.insert(room.clone());
                }
            }
        }
        let queue = if leave {
            &mut self.leaves
        } else {
            &mut self.joins
        };
        if queue.len() == MAX_PENDING {
            queue.pop_front();
        }
        queue.push_back(pending);
        self.frame(&text)
    }

    /// The server answered a `join` or `leave`.
    fn answered(&mut self, leave: bool, data: Value) -> ManagedEvent<T> {
        let answer: RoomsAnswer = serde_json::from_value(data).unwrap_or_default();
        if !answer.denied.is_empty() {
            let mut shared = lock(&self.shared);
            for room in &answer.denied {
                shared.rooms.remove(room);
            }
        }
        let queue = if leave {
            &mut self.leaves
        } else {
            &mut self.joins
        };
        if let Some(Pending {
            reply: Some(reply), ..
        }) = queue.pop_front()
        {
            let _ = reply.send(Ok(answer.clone()));
        }
        if leave {
            ManagedEvent::Left(answer)
        } else {
            ManagedEvent::Joined(answer)
        }
    }

    /// The server's `error` event; one naming `join` or `leave` (Asena's refusal of a whole
    /// request) answers that request.
    fn error(&mut self, data: Value) -> ManagedEvent<T> {
        let message = data["message"].as_str().unwrap_or_default().to_owned();
        let code = data["code"].as_str().map(str::to_owned);
        let leave = match data["event"].as_str() {
            Some("join") => Some(false),
            Some("leave") => Some(true),
            _ => None,
        };
        if let Some(leave) = leave {
            let queue = if leave {
                &mut self.leaves
            } else {
                &mut self.joins
            };
            if let Some(pending) = queue.pop_front() {
                if !leave {
                    let mut shared = lock(&self.shared);
                    for room in &pending.rooms {
                        shared.rooms.remove(room);
                    }
                }
                if let Some(reply) = pending.reply {
                    let _ = reply.send(Err(ClientError::Server {
                        message: message.clone(),
                        code: code.clone(),
                    }));
                }
            }
        }
        ManagedEvent::Error {
            message,
            code,
            data,
        }
    }

    /// Reads until the server sends `wanted` (its data), during the handshake. `error`
    /// events are kept for the error of a close that follows; a close is the error its
    /// code means.
    async fn wait_for(
        &self,
        ws: &mut Ws,
        wanted: &'static str,
        deadline: Instant,
        said: &mut Option<String>,
    ) -> Result<Value, ClientError> {
        loop {
            let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => {
                    return Err(ClientError::NoAnswer {
                        waiting_for: wanted,
                        after: self.settings.handshake_timeout,
                    });
                }
                Ok(frame) => frame,
            };
            let bytes = match frame {
                Some(Ok(WsMessage::Text(text))) => text.as_bytes().to_vec(),
                Some(Ok(WsMessage::Binary(bytes))) => bytes.to_vec(),
                Some(Ok(WsMessage::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    return Err(closed(code, reason, said.take()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(ClientError::HandshakeClosed {
                        code: None,
                        reason: e.to_string(),
                    });
                }
                None => {
                    return Err(ClientError::HandshakeClosed {
                        code: None,
                        reason: "the connection ended without a close frame".to_owned(),
                    });
                }
            };
            let plain = match self.unseal(&bytes) {
                Ok(plain) => plain,
                Err(reason) => {
                    let _ = ws
                        .close(Some(CloseFrame {
                            code: CloseCode::from(DECRYPTION_FAILED),
                            reason: "Decryption failed".into(),
                        }))
                        .await;
                    return Err(ClientError::DecryptionFailed { reason });
                }
            };
            let Ok(envelope) = serde_json::from_slice::<Envelope>(&plain) else {
                continue;
            };
            match envelope.event.as_deref() {
                Some(event) if event == wanted => return Ok(envelope.data),
                Some("error") => {
                    *said = envelope.data["message"].as_str().map(str::to_owned);
                }
                other => {
                    tracing::debug!(target: "asena::client", event = ?other, wanted, "ignored during the managed handshake");
                }
            }
        }
    }

    /// Sends `text` during the handshake.
    async fn write(&self, ws: &mut Ws, text: &str) -> Result<(), ClientError> {
        send_in_handshake(ws, self.frame(text)).await
    }
}

/// Sends `frame` during the handshake: a frame that could not be made is a protocol error, a
/// failed send a closed handshake.
async fn send_in_handshake(
    ws: &mut Ws,
    frame: Result<WsMessage, String>,
) -> Result<(), ClientError> {
    let frame = frame.map_err(|reason| ClientError::Protocol { reason })?;
    ws.send(frame)
        .await
        .map_err(|e| ClientError::HandshakeClosed {
            code: None,
            reason: e.to_string(),
        })
}

/// The error of a close during the handshake: what its code means.
/// The `error` of a failed `ack`: `{"code","message"}`.
fn plain_error(plain: &[u8]) -> Option<Failure> {
    #[derive(Deserialize)]
    struct Failed {
        error: Option<Failure>,
    }
    serde_json::from_slice::<Failed>(plain).ok()?.error
}

fn closed(code: Option<u16>, reason: String, said: Option<String>) -> ClientError {
    match code {
        Some(AUTH_TIMEOUT) => ClientError::AuthenticationTimeout { reason },
        Some(AUTH_FAILED) => ClientError::AuthenticationFailed {
            reason,
            message: said,
        },
        Some(ENCRYPTION_REQUIRED) => ClientError::EncryptionRequired { reason },
        Some(DECRYPTION_FAILED) => ClientError::DecryptionFailed { reason },
        code => ClientError::HandshakeClosed { code, reason },
    }
}

impl<T: DeserializeOwned + Send + 'static> Dialect for Managed<T> {
    type Event = ManagedEvent<T>;
    type Outgoing = Command;

    async fn open(
        &mut self,
        ws: &mut Ws,
        reconnected: bool,
    ) -> Result<Vec<ManagedEvent<T>>, ClientError> {
        self.channel = None;
        let deadline = Instant::now() + self.settings.handshake_timeout;
        let mut said = None;
        if self.settings.encrypt {
            let offer = KeyOffer::new().map_err(ClientError::Crypto)?;
            self.write(ws, &offer.message()).await?;
            let answer = self.wait_for(ws, "encrypted", deadline, &mut said).await?;
            self.channel = Some(offer.complete(&answer).map_err(ClientError::Crypto)?);
        }
        let authenticate =
            json!({"event": "authenticate", "data": self.settings.credentials}).to_string();
        self.write(ws, &authenticate).await?;
        let data = self.wait_for(ws, "connected", deadline, &mut said).await?;
        let connected: Connected =
            serde_json::from_value(data).map_err(|e| ClientError::Protocol {
                reason: format!("`connected` is not {{id, userId}}: {e}"),
            })?;
        let rooms: Vec<String> = {
            let mut shared = lock(&self.shared);
            shared.connected = Some(connected.clone());
            shared.rooms.iter().cloned().collect()
        };
        if !reconnected {
            return Ok(Vec::new());
        }
        if !rooms.is_empty() {
            let pending = Pending {
                rooms: rooms.clone(),
                reply: None,
            };
            send_in_handshake(ws, self.rooms_request(false, pending)).await?;
        }
        Ok(vec![ManagedEvent::Reconnected {
            connected,
            rejoining: rooms,
        }])
    }

    fn is_final(&self, error: &ClientError) -> bool {
        matches!(
            error,
            ClientError::AuthenticationFailed { .. } | ClientError::EncryptionRequired { .. }
        )
    }

    fn outgoing(&mut self, command: Command) -> Result<Option<WsMessage>, String> {
        match command {
            Command::Event(text) => self.frame(&text).map(Some),
            Command::Rooms {
                leave,
                rooms,
                reply,
            } => self
                .rooms_request(
                    leave,
                    Pending {
                        rooms,
                        reply: Some(reply),
                    },
                )
                .map(Some),
        }
    }

    fn incoming(&mut self, bytes: &[u8]) -> Step<ManagedEvent<T>> {
        let plain = match self.unseal(bytes) {
            Ok(plain) => plain,
            Err(reason) => {
                return Step::Break {
                    code: DECRYPTION_FAILED,
                    reason,
                };
            }
        };
        let envelope = serde_json::from_slice::<Envelope>(&plain).ok();
        let (event, data, id) = match envelope {
            Some(Envelope {
                event: Some(event),
                data,
                id,
            }) => (event, data, id),
            _ => {
                return Step::Event(match decode_bytes::<T>(&plain) {
                    Event::Message(message) => ManagedEvent::Message(message),
                    Event::Presence(frame) => ManagedEvent::Presence(frame),
                    Event::Undecodable { text, error } => ManagedEvent::Undecodable { text, error },
                    _ => return Step::Nothing,
                });
            }
        };
        // The answer to one of the client's requests, by its (numeric) id.
        let ours = id.as_str().and_then(|id| id.parse::<u64>().ok());
        match (event.as_str(), ours) {
            (MANAGED_REPLY_EVENT, Some(ours)) => {
                let answered = match plain_error(&plain) {
                    Some(failure) => Err(failure),
                    None => Ok(data.to_string().into_boxed_str()),
                };
                self.requests.settle(ours, answered);
                return Step::Nothing;
            }
            ("error", Some(ours)) => {
                let failure = Failure::new(
                    data["code"].as_str().unwrap_or("error"),
                    data["message"].as_str().unwrap_or_default(),
                );
                if self.requests.settle(ours, Err(failure)) {
                    return Step::Nothing;
                }
            }
            _ => {}
        }
        // A request of the server: an application event with an `id`.
        if let Some(id) = id.as_str()
            && !matches!(
                event.as_str(),
                "join" | "leave" | "error" | "connected" | "encrypted" | MANAGED_REPLY_EVENT
            )
        {
            let mut reply = json!({"event": MANAGED_REPLY_EVENT, "id": id});
            let outlet = self.outlet.as_ref();
            ack::answer(self.handler.as_ref(), &plain, outlet, move |answered| {
                match answered {
                    Ok(data) => reply["data"] = data,
                    Err(failure) => reply["error"] = serde_json::to_value(failure).ok()?,
                }
                Some(Command::Event(reply.to_string()))
            });
            return Step::Nothing;
        }
        Step::Event(match event.as_str() {
            "join" => self.answered(false, data),
            "leave" => self.answered(true, data),
            "error" => self.error(data),
            "connected" | "encrypted" => {
                tracing::debug!(target: "asena::client", event, "protocol event after the handshake ignored");
                return Step::Nothing;
            }
            _ => match decode_bytes::<T>(&plain) {
                Event::Message(message) => ManagedEvent::Message(message),
                Event::Undecodable { text, error } => {
                    match PresenceFrame::from_event(&event, data) {
                        Some(frame) => ManagedEvent::Presence(frame),
                        None => ManagedEvent::Undecodable { text, error },
                    }
                }
                _ => return Step::Nothing,
            },
        })
    }

    fn heartbeat(&mut self) -> Vec<WsMessage> {
        let mut frames = Vec::with_capacity(2);
        match self.frame(r#"{"event":"heartbeat"}"#) {
            Ok(frame) => frames.push(frame),
            Err(reason) => tracing::warn!(target: "asena::client", %reason, "heartbeat not sent"),
        }
        // A ping too: the pong keeps the liveness deadline moving on a quiet connection.
        frames.push(WsMessage::Ping(Default::default()));
        frames
    }

    fn outlet(&mut self, outlet: mpsc::WeakSender<Command>) {
        self.outlet = Some(outlet);
    }

    fn disconnected(&mut self, code: Option<u16>, reason: String) -> ManagedEvent<T> {
        self.channel = None;
        self.requests.lost();
        // Requests sent on the lost connection get no answer: their callers see `Lost`.
        self.joins.clear();
        self.leaves.clear();
        lock(&self.shared).connected = None;
        ManagedEvent::Disconnected { code, reason }
    }

    fn gave_up(&mut self, attempts: u32, error: ClientError) -> ManagedEvent<T> {
        ManagedEvent::GaveUp { attempts, error }
    }
}

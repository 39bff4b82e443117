//! One live connection: [`Conn`] holds its state (send queue, rooms, close handshake, the
//! request it came from and the middleware's typed values), shared by its reader task, its
//! writer task (spawned when first needed, see [`outbox`](outbox)), the namespace's socket
//! map and the room index.
//!
//! The connection layer knows nothing of namespaces or services: what the connections of one
//! namespace share (path, limits, counters, flushers, shutdown tracker) is a [`Shared`] they
//! all point to. Sending to a connection is [`Conn::push`]: the frame's encoded bytes go into
//! the [`outbox`](outbox) and, on an idle plain-TCP socket, the connection is put on a
//! [`flush`](flush) list. The reader and writer loops that drive a connection are in
//! `ws/run.rs`; the raw socket I/O they and the flushers share is in [`io`](io). The reader
//! is woken through a [`signal`](signal), and records when it last heard from the peer in
//! its [`liveness`](liveness) timestamps, which the namespace's sweep reads. A protocol that
//! must see (encrypt, withhold) every frame one connection is sent gives it a
//! [`seal`](seal). The requests the server awaits replies to are in [`ack`](ack).

pub(crate) mod ack;
pub(crate) mod flush;
pub(crate) mod io;
pub(crate) mod liveness;
pub(crate) mod outbox;
pub(crate) mod seal;
pub(crate) mod signal;

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::codec::deflate::Deflate;
use crate::codec::{Frame, close_code};
use crate::config::{Compression, Limits, SlowConsumer};
use crate::request::RequestInfo;
use crate::rooms::Member;
use crate::shutdown::Tracker;
use crate::stats::NamespaceStats;
use flush::Flusher;
use liveness::Liveness;
use outbox::{Outbox, Pushed};
use seal::{Origin, Seal, SealFor};
use signal::Signal;

/// What the connections of one namespace share.
pub(crate) struct Shared {
    /// The namespace path, for logs.
    pub(crate) path: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) compression: Compression,
    pub(crate) stats: NamespaceStats,
    /// Writes fan-out to idle sockets (`None` when created outside a runtime).
    pub(crate) flusher: Option<Arc<Flusher>>,
    /// Live connection tasks of the app, for graceful shutdown.
    pub(crate) tracker: Arc<Tracker>,
    /// The runtime the connections' readers run on, where their writer tasks are spawned
    /// (a hand-over to a writer can come from any thread). Set by the first reader.
    pub(crate) runtime: OnceLock<Handle>,
    /// Where new connections find their [`seal`](seal), for a protocol that needs one (set
    /// once, when the app is built).
    pub(crate) seal_for: OnceLock<SealFor>,
    /// What the inspector shows of a connection's state (its service's
    /// [`Protocol::inspect`](crate::protocol::Protocol::inspect)), set once when the app is
    /// built.
    pub(crate) inspect: OnceLock<InspectData>,
    /// The delivery its service's messages choose (`Channel::delivery`), set once when the
    /// app starts.
    pub(crate) delivery: OnceLock<DeliveryOf>,
}

/// The delivery a typed message chooses, if its type does.
pub(crate) type DeliveryOf =
    fn(&(dyn std::any::Any + Send + Sync)) -> Option<asena_protocol::delivery::Delivery>;

/// Describes a connection's state (`Conn::data`) as JSON for the inspector.
pub(crate) type InspectData = fn(&(dyn Any + Send + Sync)) -> serde_json::Value;

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("compression", &self.compression)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The connection is closed or closing.
    Closed,
    /// The send queue is full; the slow-consumer policy was applied.
    Full,
    /// The connection's seal refused the frame (a managed client that has not
    /// authenticated, or an outbound transformer that failed).
    Withheld,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A process-wide unique key for a new connection (cheaper to compare than its id).
pub(crate) fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// One live connection.
pub(crate) struct Conn {
    pub(crate) key: u64,
    pub(crate) id: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) outbox: Outbox,
    /// Wakes the reader: a close was asked for, or the writer task ended.
    pub(crate) wake_reader: Signal,
    /// When the peer was last heard from, for the namespace's liveness sweep.
    pub(crate) alive: Liveness,
    pub(crate) rooms: Mutex<Vec<Arc<str>>>,
    pub(crate) request: RequestInfo,
    pub(crate) data: Box<dyn Any + Send + Sync>,
    /// permessage-deflate, when negotiated.
    pub(crate) deflate: Option<Deflate>,
    /// The close we initiated (code, reason), if any.
    pub(crate) closing: Mutex<Option<(u16, String)>>,
    /// The writer has put our close frame on the wire.
    pub(crate) close_written: AtomicBool,
    slow_reported: AtomicBool,
    /// What every data frame for this connection passes through, if its protocol needs it.
    /// Boxed: a thin pointer (8 bytes) in every connection, sealed or not.
    seal: Option<Box<Arc<dyn Seal>>>,
    /// The plain TCP stream, shared by the reader, the writer and the flushers (held here,
    /// not in an `Arc` of its own: one allocation less per connection).
    stream: OnceLock<TcpStream>,
    /// The requests the server awaits replies to, made by the first one ([`ack`](ack)):
    /// a socket never asked anything pays this empty slot.
    pub(crate) acks: OnceLock<Box<ack::Acks>>,
}

impl Member for Conn {
    fn key(&self) -> u64 {
        self.key
    }
}

impl Conn {
    pub(crate) fn new(
        id: Arc<str>,
        shared: Arc<Shared>,
        request: RequestInfo,
        data: Box<dyn Any + Send + Sync>,
        deflate: Option<Deflate>,
    ) -> Conn {
        let seal = shared
            .seal_for
            .get()
            .and_then(|seal_for| seal_for(&*data))
            .map(Box::new);
        Conn {
            key: next_key(),
            seal,
            id,
            shared,
            deflate,
            outbox: Outbox::new(),
            wake_reader: Signal::default(),
            alive: Liveness::new(),
            rooms: Mutex::new(Vec::new()),
            request,
            data,
            closing: Mutex::new(None),
            close_written: AtomicBool::new(false),
            slow_reported: AtomicBool::new(false),
            stream: OnceLock::new(),
            acks: OnceLock::new(),
        }
    }

    /// The connection's table of pending requests, made on first use.
    pub(crate) fn acks(&self) -> &ack::Acks {
        self.acks.get_or_init(Box::default)
    }

    /// The namespace path, for logs.
    pub(crate) fn path(&self) -> &str {
        &self.shared.path
    }

    /// Serves this connection over a plain TCP stream: when the namespace has flushers,
    /// frames queued on an idle socket are written by them (see `flush.rs`).
    pub(crate) fn attach_stream(&self, stream: TcpStream) {
        if self.stream.set(stream).is_ok() && self.shared.flusher.is_some() {
            self.outbox.enable_direct();
        }
    }

    pub(crate) fn stream(&self) -> Option<&TcpStream> {
        self.stream.get()
    }

    /// Queues an encoded frame from the application, through the connection's seal if it
    /// has one (see [`Conn::push_unsealed`]).
    #[inline]
    pub(crate) fn push(self: &Arc<Self>, frame: &Frame) -> Result<(), PushError> {
        match &self.seal {
            None => self.push_unsealed(frame),
            Some(seal) => seal.push(self, frame, Origin::App),
        }
    }

    /// Queues one of the connection protocol's own events: through the seal too (which may
    /// encrypt it), but never withheld as not yet admitted.
    pub(crate) fn push_protocol(self: &Arc<Self>, frame: &Frame) -> Result<(), PushError> {
        match &self.seal {
            None => self.push_unsealed(frame),
            Some(seal) => seal.push(self, frame, Origin::Protocol),
        }
    }

    /// Queues an encoded frame as is, applying the slow-consumer policy when the queue is
    /// full. A socket with permessage-deflate gets the frame's compressed form (made once per
    /// frame, shared by every compressing recipient) when the message is long enough. Only
    /// the connection and its seal call this: everything else goes through [`Conn::push`].
    #[inline]
    pub(crate) fn push_unsealed(self: &Arc<Self>, frame: &Frame) -> Result<(), PushError> {
        let limit = self.shared.limits.max_queued_bytes;
        if let Some(deflate) = &self.deflate
            && frame.payload().len() >= self.shared.compression.threshold
            && frame.is_data()
            && let Some(compressed) =
                frame.deflated(deflate.server_window_bits, self.shared.compression.level)
        {
            return self.push_wire(&compressed, limit);
        }
        self.push_wire(frame.wire(), limit)
    }

    /// Queues encoded bytes (see [`Conn::push`]) against `limit`.
    #[inline]
    pub(crate) fn push_wire(self: &Arc<Self>, wire: &Bytes, limit: usize) -> Result<(), PushError> {
        match self.outbox.push(wire, limit) {
            Pushed::Queued => Ok(()),
            Pushed::Schedule => {
                if let Some(flusher) = &self.shared.flusher {
                    flusher.schedule(self.clone());
                }
                Ok(())
            }
            Pushed::Closed => Err(PushError::Closed),
            Pushed::Full => {
                self.on_full(self.shared.limits.slow_consumer);
                Err(PushError::Full)
            }
        }
    }

    #[cold]
    fn on_full(&self, policy: SlowConsumer) {
        self.shared.stats.record_slow_consumer();
        let first = !self.slow_reported.swap(true, Ordering::Relaxed);
        if first {
            self.shared.stats.record_slow_socket();
        }
        match policy {
            SlowConsumer::Close => {
                tracing::warn!(
                    target: "asena::ws",
                    socket_id = %self.id,
                    path = %self.path(),
                    "send queue full; closing slow consumer with 1008"
                );
                self.close(close_code::POLICY, "Slow consumer");
            }
            SlowConsumer::DropMessages => {
                if first {
                    tracing::warn!(
                        target: "asena::ws",
                        socket_id = %self.id,
                        path = %self.path(),
                        "send queue full; dropping messages for slow consumer"
                    );
                }
            }
        }
    }

    /// Queues the answer to a ping, in order; unwritten pongs are bounded (see the outbox).
    pub(crate) fn push_pong(self: &Arc<Self>, payload: &[u8]) {
        if self.outbox.push_pong(Frame::pong(payload).wire()) == Pushed::Schedule
            && let Some(flusher) = &self.shared.flusher
        {
            flusher.schedule(self.clone());
        }
    }

    /// Starts the closing handshake with `code`; later calls are ignored. A code that may
    /// not be sent (1005, 1006, 1015, unassigned ones) is replaced by 1000 and logged.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        let code = if close_code::is_sendable(code) {
            code
        } else {
            tracing::warn!(
                target: "asena::ws",
                socket_id = %self.id,
                code,
                "close code {code} may not be sent; closing with 1000 instead"
            );
            close_code::NORMAL
        };
        let mut closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        if closing.is_some() {
            return;
        }
        *closing = Some((code, reason.to_owned()));
        drop(closing);
        self.outbox.close(Frame::close(code, reason).wire().clone());
        self.wake_reader.notify();
    }

    pub(crate) fn close_requested(&self) -> Option<(u16, String)> {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The named rooms this connection joined.
    pub(crate) fn rooms_lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<str>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("path", &self.path())
            .finish()
    }
}

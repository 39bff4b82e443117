//! The two tasks of a connection: the reader (decodes frames, runs handlers in order) and the
//! writer (drains the outbox in batches), spawned only once the outbox first hands it the
//! socket.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::WebSocketService;
use crate::channel::Receives;
use crate::config::Limits;
use crate::conn::Conn;
use crate::conn::io::{BufferedSource, Io, Sink, Source, TcpSink, TcpSource};
use crate::conn::outbox::Pending;
use crate::error::{BoxError, Result};
use crate::frame::{Decoder, Frame, Incoming, Message, close_code};
use crate::namespace::{Socket, SocketRef};
use crate::shutdown::LiveGuard;
use crate::stats;

/// How long we wait for the peer's close frame after ours is on the wire.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a close may wait behind a peer that does not read (slow consumer) before the
/// connection is dropped without the closing handshake.
const CLOSE_STALL: Duration = Duration::from_secs(10);
const FAR_FUTURE: Duration = Duration::from_secs(86400 * 365);

/// The future that runs a connection to the end: `on_open`, every message, `on_close`.
///
/// Not an `async fn`: one keeps its arguments for as long as it runs, next to what it moved
/// out of them, so the transport (72 bytes) would be held twice by every idle connection.
/// What can be done before the first poll is done here, and the box holds only `drive`.
pub(crate) fn run<S: WebSocketService>(
    service: Arc<S>,
    socket: SocketRef,
    io: Io,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
    let live = socket.conn.shared.tracker.enter();
    match io {
        Io::Tcp { stream, leftover } => {
            let stream = Arc::new(stream);
            socket.conn.attach_stream(stream.clone());
            Box::pin(drive(
                service,
                socket,
                live,
                TcpSource(stream.clone()),
                TcpSink(stream),
                read_buffer(leftover),
            ))
        }
        Io::Other(io) => {
            let (r, w) = tokio::io::split(io);
            Box::pin(drive(
                service,
                socket,
                live,
                BufferedSource(r),
                w,
                BytesMut::new(),
            ))
        }
    }
}

/// The reader's first buffer: a copy of what hyper read past the handshake, so its 8 KiB
/// read buffer (which `leftover` is a view into) is let go of now, not held by an idle
/// socket.
fn read_buffer(leftover: Bytes) -> BytesMut {
    if leftover.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&leftover[..])
    }
}

/// When a connection is pinged, and when it is closed for being quiet (the durations are
/// the namespace's [`Limits`](crate::config::Limits), not copied per connection).
struct Liveness {
    last_heard: Instant,
    /// When our unanswered ping went out.
    pinged: Option<Instant>,
}

/// What the reader does when its timer fires.
enum Check {
    Wait,
    Ping,
    Close(&'static str),
}

impl Liveness {
    fn new(now: Instant) -> Liveness {
        Liveness {
            last_heard: now,
            pinged: None,
        }
    }

    /// Anything from the peer (a pong included) counts as a sign of life.
    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.pinged = None;
    }

    fn deadline(&self, limits: &Limits) -> Instant {
        let far = self.last_heard + FAR_FUTURE;
        let idle = limits.idle_timeout.map_or(far, |d| self.last_heard + d);
        let ping = match (self.pinged, limits.ping_interval) {
            (Some(at), _) => at + limits.ping_timeout,
            (None, Some(every)) => self.last_heard + every,
            (None, None) => far,
        };
        idle.min(ping)
    }

    fn check(&mut self, limits: &Limits, now: Instant) -> Check {
        if limits
            .idle_timeout
            .is_some_and(|d| now >= self.last_heard + d)
        {
            return Check::Close("Idle timeout");
        }
        match (self.pinged, limits.ping_interval) {
            (Some(at), _) if now >= at + limits.ping_timeout => Check::Close("Ping timeout"),
            (None, Some(every)) if now >= self.last_heard + every => {
                self.pinged = Some(now);
                Check::Ping
            }
            _ => Check::Wait,
        }
    }
}

/// Runs a handler future, turning panics into errors. The handler's future is boxed: held
/// inline, the largest handler future would set the size of every connection's reader
/// future, idle or not (see "Memory per connection" in ARCHITECTURE.md).
fn guarded<F: Future<Output = Result<(), BoxError>>>(
    fut: F,
) -> impl Future<Output = Result<(), BoxError>> {
    let fut = Box::pin(AssertUnwindSafe(fut).catch_unwind());
    async move {
        match fut.await {
            Ok(r) => r,
            Err(panic) => Err(panic_message(&panic).into()),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into());
    format!("handler panicked: {msg}")
}

/// A handler failed: tell the client, log, count, close with 1011.
fn handler_failed(conn: &Arc<Conn>, handler: &'static str, err: &BoxError) {
    conn.shared.stats.record_handler_error();
    tracing::error!(
        target: "asena::ws",
        socket_id = %conn.id,
        path = %conn.path(),
        handler,
        error = %err,
        "handler failed; closing socket with 1011"
    );
    let _ = conn.push(&Frame::text(
        r#"{"type":"error","message":"Server error occurred"}"#,
    ));
    conn.close(close_code::INTERNAL, "Server error");
}

/// Runs the connection: `on_open`, the message loop, `on_close`, then waits for the writer
/// task (if one was spawned) to finish.
///
/// An `async move` block rather than an `async fn`: an `async fn` copies each argument into a
/// local of its future and keeps both for as long as it runs (a block uses them in place),
/// and this future is what every idle connection holds.
#[allow(clippy::manual_async_fn)]
fn drive<S, R, W>(
    service: Arc<S>,
    handle: SocketRef,
    live: LiveGuard,
    mut src: R,
    w: W,
    buf: BytesMut,
) -> impl Future<Output = ()>
where
    S: WebSocketService,
    R: Source,
    W: Sink + 'static,
{
    async move {
        let conn = handle.conn.clone();
        let ns = handle.ns.clone();
        let socket = Socket::<S::Data, S::Out>::new(handle.retype());
        // The writer task is spawned when the outbox first hands it the socket (see `Writer` in
        // `conn/outbox.rs`); the spawner holds the socket, so it is dropped when this returns.
        let _spawner = SpawnerGuard(&conn);
        conn.outbox
            .spawn_writer_lazily(writer_spawner(service.clone(), socket.clone(), w));
        tracing::debug!(target: "asena::ws", socket_id = %conn.id, path = %conn.path(), "open");
        if ns.path().contains('{') {
            // A parametrised service: the concrete path is a room (see `Namespace`).
            socket.subscribe(&conn.request.path);
        }

        if let Err(e) = guarded(service.on_open(&socket)).await {
            handler_failed(&conn, "on_open", &e);
        }

        // The message loop runs with a task-local tally for its handlers' sends (see `stats`).
        let peer_close = stats::counting(read_loop(&service, &conn, &socket, &mut src, buf)).await;

        // Report the code of whoever closed first; a vanished peer is 1006.
        let (code, reason) = peer_close
            .or_else(|| conn.close_requested())
            .unwrap_or((close_code::ABNORMAL, String::new()));
        // Counted before the socket leaves the namespace: whoever sees it gone sees it counted.
        conn.shared.stats.record_closed(code);
        ns.remove(&conn);
        if let Err(e) = guarded(async {
            service.on_close(&socket, code, &reason).await;
            Ok(())
        })
        .await
        {
            conn.shared.stats.record_handler_error();
            tracing::error!(target: "asena::ws", socket_id = %conn.id, error = %e, "on_close failed");
        }
        tracing::debug!(target: "asena::ws", code, reason = %reason, "closed");

        // Let the writer flush the close frame, then make sure it is gone.
        if conn.close_requested().is_none() {
            conn.outbox.seal();
        }
        let grace = tokio::time::sleep(CLOSE_GRACE);
        tokio::pin!(grace);
        // The writer notifies `wake_reader` as it exits (a permit is kept if nobody waits yet).
        while !conn.outbox.writer_done() {
            tokio::select! {
                _ = conn.wake_reader.notified() => {}
                _ = &mut grace => break,
            }
        }
        conn.outbox.abort_writer();
        drop(live);
    }
}

/// Drops a writer spawner that was never used (it holds the connection) when the reader
/// ends, however it ends.
struct SpawnerGuard<'a>(&'a Conn);

impl Drop for SpawnerGuard<'_> {
    fn drop(&mut self) {
        self.0.outbox.drop_spawner();
    }
}

/// What spawns the connection's writer task: on the runtime of whoever hands it the socket
/// first, in the connection's span.
fn writer_spawner<S, W>(
    service: Arc<S>,
    socket: Socket<S::Data, S::Out>,
    w: W,
) -> crate::conn::outbox::Spawn
where
    S: WebSocketService,
    W: Sink + 'static,
{
    let span = tracing::Span::current();
    // The reader's runtime (a hand-over can come from any thread).
    let runtime = Handle::current();
    Box::new(move || {
        runtime
            .spawn(tracing::Instrument::instrument(
                write_loop(service, socket, w),
                span,
            ))
            .abort_handle()
    })
}

/// Reads and handles messages until the connection ends; returns the peer's close code and
/// reason if the peer started the closing handshake. Every read's messages, and what their
/// handlers sent, are added to the namespace's counters once they are handled.
///
/// An `async move` block rather than an `async fn`, for the reason given at [`drive`].
#[allow(clippy::manual_async_fn)]
fn read_loop<S, R>(
    service: &Arc<S>,
    conn: &Arc<Conn>,
    socket: &Socket<S::Data, S::Out>,
    src: &mut R,
    mut buf: BytesMut,
) -> impl Future<Output = Option<(u16, String)>>
where
    S: WebSocketService,
    R: Source,
{
    async move {
        let stats = &conn.shared.stats;
        let limits = &conn.shared.limits;
        let mut decoder = Decoder::new(limits.max_message_size, conn.deflate.as_ref());
        let mut alive = Liveness::new(Instant::now());
        // When the bytes being decoded were read: the arrival time of their messages.
        let mut read_at = Instant::now();
        let sleep = tokio::time::sleep_until(alive.deadline(limits));
        tokio::pin!(sleep);
        let mut closing_since: Option<Instant> = None;
        let mut grace_started = false;
        // The close code and reason reported to on_close.
        let mut peer_close: Option<(u16, String)> = None;

        'outer: loop {
            // The messages of this read and their payload bytes.
            let (mut received, mut received_bytes) = (0u64, 0u64);
            // Handle everything already buffered.
            loop {
                match decoder.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(Incoming::Data(message))) => {
                        if received == 0 {
                            stats::begin_read(stats, read_at);
                        }
                        received += 1;
                        received_bytes += message.as_bytes().len() as u64;
                        // Once a close is under way (ours, after a failed handler or `ws.close`,
                        // or the peer's), buffered messages are not dispatched any more; after
                        // our close frame, data from the peer is discarded (RFC 6455 §5.5.1).
                        if conn.close_requested().is_none()
                            && let Err(e) = guarded(service.__dispatch(socket, message)).await
                        {
                            handler_failed(conn, "on_message", &e);
                        }
                    }
                    Ok(Some(Incoming::Ping(payload))) => conn.push_pong(&payload),
                    Ok(Some(Incoming::Pong)) => {}
                    Ok(Some(Incoming::Close(code, reason))) => {
                        if conn.close_requested().is_none() {
                            // The peer started the handshake: echo its code.
                            let echo = if code == close_code::NO_STATUS {
                                close_code::NORMAL
                            } else {
                                code
                            };
                            conn.close(echo, "");
                            peer_close = Some((code, reason));
                        }
                        stats::end_read(stats, received, received_bytes);
                        break 'outer;
                    }
                    Err(e) => {
                        stats::end_read(stats, received, received_bytes);
                        stats.record_protocol_error();
                        tracing::warn!(
                            target: "asena::ws",
                            socket_id = %conn.id,
                            path = %conn.path(),
                            code = e.close_code(),
                            reason = e.reason(),
                            "closing socket after a bad frame"
                        );
                        conn.close(e.close_code(), e.reason());
                        break 'outer;
                    }
                }
            }
            stats::end_read(stats, received, received_bytes);
            if buf.is_empty() && buf.capacity() > 0 {
                buf = BytesMut::new();
            }
            if closing_since.is_none() && conn.close_requested().is_some() {
                let now = Instant::now();
                closing_since = Some(now);
                sleep.as_mut().reset(now + CLOSE_STALL);
            }
            if closing_since.is_some()
                && !grace_started
                && conn.close_written.load(Ordering::Acquire)
            {
                grace_started = true;
                sleep.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            tokio::select! {
                biased;
                _ = conn.wake_reader.notified() => {
                    if conn.outbox.finished() && closing_since.is_none() {
                        // The writer died (peer gone).
                        break 'outer;
                    }
                }
                _ = &mut sleep => {
                    if closing_since.is_some() {
                        break 'outer;
                    }
                    match alive.check(limits, Instant::now()) {
                        Check::Wait => {}
                        Check::Ping => {
                            let _ = conn.push_wire(Frame::ping(b"").wire(), usize::MAX);
                        }
                        Check::Close(reason) => {
                            tracing::debug!(target: "asena::ws", socket_id = %conn.id, reason, "closing a quiet socket");
                            conn.close(close_code::GOING_AWAY, reason);
                        }
                    }
                    if conn.close_requested().is_none() {
                        sleep.as_mut().reset(alive.deadline(limits));
                    }
                }
                read = src.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break 'outer,
                    Ok(_) => {
                        read_at = Instant::now();
                        alive.heard(read_at);
                    }
                }
            }
        }

        peer_close
    }
}

/// Decodes a message into the service's `receives` type and hands it to `on_message`, or
/// the decode error to `on_invalid` (counted; the socket stays open).
pub(crate) async fn dispatch<S: WebSocketService>(
    service: &S,
    socket: &Socket<S::Data, S::Out>,
    message: Message,
) -> Result<()> {
    match S::In::decode(message) {
        Ok(message) => service.on_message(socket, message).await,
        Err(error) => {
            socket.conn.shared.stats.record_invalid_message();
            tracing::debug!(
                target: "asena::ws",
                socket_id = %socket.id(),
                path = %socket.path(),
                code = error.kind().code(),
                %error,
                "message did not decode"
            );
            service.on_invalid(socket, error).await
        }
    }
}

async fn write_loop<S, W>(service: Arc<S>, socket: Socket<S::Data, S::Out>, mut w: W)
where
    S: WebSocketService,
    W: Sink,
{
    let conn = socket.as_socket_ref().conn.clone();
    // However this task ends (done, aborted, or `on_drain` panicked), the reader waiting for
    // it hears so at once, as it did from the `JoinHandle` it used to hold.
    let _exit = WriterExit(&conn);
    let mut pending = Pending::default();
    loop {
        // Waits until the outbox hands the socket to this task (a flusher writes it
        // otherwise); then one lock round-trip takes the batch and says what to do when it
        // was empty.
        conn.outbox.ready().await;
        let taken = conn.outbox.take(&mut pending);
        if pending.is_empty() && taken.close.is_none() {
            if taken.finished {
                break;
            }
            if taken.drained {
                service.on_drain(&socket).await;
            }
            continue;
        }
        let mut result = write_pending(&mut w, &pending, taken.skip).await;
        pending.clear();
        let closing = taken.close.is_some();
        if let (Ok(()), Some(close)) = (&result, taken.close) {
            result = async {
                w.write_all(&close).await?;
                conn.close_written.store(true, Ordering::Release);
                w.shutdown().await
            }
            .await;
        }
        if result.is_err() || closing {
            break;
        }
    }
    conn.outbox.seal();
}

/// Tells the reader the writer task is gone, when dropped.
struct WriterExit<'a>(&'a Conn);

impl Drop for WriterExit<'_> {
    fn drop(&mut self) {
        self.0.outbox.writer_exited();
        self.0.wake_reader.notify_one();
    }
}

/// Writes a batch taken from the outbox, minus the `skip` bytes a flusher already wrote:
/// small frames are already contiguous, so a batch without large frames is a single write.
async fn write_pending<W: Sink>(w: &mut W, pending: &Pending, skip: usize) -> io::Result<()> {
    for segment in pending.segments_from(skip) {
        w.write_all(segment).await?;
    }
    Ok(())
}

//! The two tasks of a connection: the reader (decodes frames, runs handlers in order) and the
//! writer (drains the outbox in batches), spawned only once the outbox first hands it the
//! socket.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};

use super::rate::Bucket;
use crate::codec::{Decoder, Frame, Incoming, Message, close_code};
use crate::config::RateLimitPolicy;
use crate::connection::Conn;
use crate::connection::io::{BufferedSource, Io, Sink, Source, TcpSink, TcpSource};
use crate::connection::outbox::Pending;
use crate::error::{BoxError, Result};
use crate::namespace::{Socket, SocketRef};
use crate::protocol::{Endpoint, Protocol};
use crate::shutdown::LiveGuard;
use crate::stats;

/// The reason of the 1008 close a socket over its rate limit gets
/// ([`RateLimitPolicy::Close`]).
pub(crate) const RATE_LIMIT_EXCEEDED: &str = "rate limit exceeded";
/// How long we wait for the peer's close frame after ours is on the wire.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a close may wait behind a peer that does not read (slow consumer) before the
/// connection is dropped without the closing handshake.
const CLOSE_STALL: Duration = Duration::from_secs(10);

/// The future that runs a connection to the end: `on_open`, every message, `on_close`.
///
/// Not an `async fn`: one keeps its arguments for as long as it runs, next to what it moved
/// out of them, so the transport (72 bytes) would be held twice by every idle connection.
/// What can be done before the first poll is done here, and the box holds only `drive`.
pub(crate) fn run<S: Endpoint>(
    service: Arc<S>,
    socket: SocketRef,
    io: Io,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
    let shared = &socket.conn.shared;
    let live = shared.tracker.enter();
    shared.runtime.get_or_init(Handle::current);
    let socket = Socket::<S>::of_service(socket.retype());
    match io {
        Io::Tcp { stream, leftover } => {
            let conn = socket.as_socket_ref().conn.clone();
            conn.attach_stream(stream);
            Box::pin(drive(
                service,
                socket,
                live,
                Reader::new(TcpSource(conn.clone()), read_buffer(leftover)),
                TcpSink(conn),
            ))
        }
        Io::Other(io) => {
            let (r, w) = tokio::io::split(io);
            Box::pin(drive(
                service,
                socket,
                live,
                Reader::new(BufferedSource(r), BytesMut::new()),
                w,
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

/// The read side of a connection: the socket and what was read from it and not yet decoded.
struct Reader<R> {
    src: R,
    buf: BytesMut,
}

impl<R: Source> Reader<R> {
    fn new(src: R, buf: BytesMut) -> Reader<R> {
        Reader { src, buf }
    }
}

/// What ended the reader's wait.
enum Woke {
    /// `Conn::wake_reader`: a close was asked for, or the writer task ended.
    Signal,
    /// The closing handshake's timer ran out.
    Timer,
    Read(io::Result<usize>),
}

/// Waits for the reader's signal, its closing timer (when closing) and its socket, in that
/// order, in one poll: an idle connection holds no future for any of them.
fn wait<'a, R: Source>(
    conn: &'a Conn,
    timer: &'a mut Option<Pin<Box<Sleep>>>,
    reader: &'a mut Reader<R>,
) -> impl Future<Output = Woke> + 'a {
    std::future::poll_fn(move |cx| {
        if conn.wake_reader.poll(cx).is_ready() {
            return Poll::Ready(Woke::Signal);
        }
        if let Some(timer) = timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Woke::Timer);
        }
        reader.src.poll_read(cx, &mut reader.buf).map(Woke::Read)
    })
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

/// A handler failed: tell the client (with its protocol's `failure` message), log, count,
/// close with 1011.
fn handler_failed(conn: &Arc<Conn>, handler: &'static str, err: &BoxError, failure: &'static str) {
    conn.shared.stats.record_handler_error();
    tracing::error!(
        target: "asena::ws",
        socket_id = %conn.id,
        path = %conn.path(),
        handler,
        error = %err,
        "handler failed; closing socket with 1011"
    );
    let _ = conn.push(&Frame::text(failure));
    conn.close(close_code::INTERNAL, "Server error");
}

/// Runs the connection: `on_open`, the message loop, `on_close`, then waits for the writer
/// task (if one was spawned) to finish.
///
/// An `async move` block rather than an `async fn`: an `async fn` copies each argument into a
/// local of its future and keeps both for as long as it runs (a block uses them in place),
/// and this future is what every idle connection holds. For the same reason it keeps no
/// copies of what `socket` leads to (the connection, the namespace): each use reaches them
/// through it.
#[allow(clippy::manual_async_fn)]
fn drive<S, R, W>(
    service: Arc<S>,
    socket: Socket<S>,
    live: LiveGuard,
    mut reader: Reader<R>,
    w: W,
) -> impl Future<Output = ()>
where
    S: Endpoint,
    R: Source,
    W: Sink + 'static,
{
    async move {
        let conn = &socket.as_socket_ref().conn;
        // The writer task is spawned when the outbox first hands it the socket (see `Writer` in
        // `connection/outbox.rs`); the spawner holds the socket, so it is dropped when this returns.
        let _spawner = SpawnerGuard(conn);
        conn.outbox
            .spawn_writer_lazily(writer_spawner(service.clone(), socket.clone(), w));
        tracing::debug!(target: "asena::ws", socket_id = %conn.id, path = %conn.path(), "open");
        if socket.as_socket_ref().ns.path().contains('{') {
            // A parametrised service: the concrete path is a room (see `Namespace`).
            socket.join(&conn.request.path);
        }

        if let Err(e) = guarded(S::Protocol::open(&service, &socket)).await {
            handler_failed(conn, "on_open", &e, <S::Protocol as Protocol<S>>::FAILURE);
        }

        // The message loop runs with a task-local tally for its handlers' sends (see `stats`).
        let peer_close = stats::counting(read_loop(&service, &socket, &mut reader)).await;
        drop(reader);

        // Report the code of whoever closed first; a vanished peer is 1006.
        let (code, reason) = peer_close
            .or_else(|| conn.close_requested())
            .unwrap_or((close_code::ABNORMAL, String::new()));
        // Counted before the socket leaves the namespace: whoever sees it gone sees it counted.
        conn.shared.stats.record_closed(code);
        socket.as_socket_ref().ns.remove(conn);
        if let Err(e) = guarded(async {
            S::Protocol::close(&service, &socket, code, &reason).await;
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
        let mut grace = Box::pin(tokio::time::sleep(CLOSE_GRACE));
        // The writer notifies `wake_reader` as it exits (kept if nobody waits yet).
        while !conn.outbox.writer_done() {
            let timed_out = std::future::poll_fn(|cx| match conn.wake_reader.poll(cx) {
                Poll::Ready(()) => Poll::Ready(false),
                Poll::Pending => grace.as_mut().poll(cx).map(|()| true),
            });
            if timed_out.await {
                break;
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

/// What spawns the connection's writer task: on the runtime its reader runs on, in a span
/// with the connection's fields (whoever hands the socket over first may be in any span,
/// on any thread).
fn writer_spawner<S, W>(
    service: Arc<S>,
    socket: Socket<S>,
    w: W,
) -> crate::connection::outbox::Spawn
where
    S: Endpoint,
    W: Sink + 'static,
{
    Box::new(move || {
        let span = connection_span(&socket.as_socket_ref().conn);
        let runtime = socket.as_socket_ref().conn.shared.runtime.get().cloned();
        let spawn = tracing::Instrument::instrument(write_loop(service, socket, w), span);
        match runtime {
            Some(runtime) => runtime.spawn(spawn),
            None => tokio::spawn(spawn),
        }
        .abort_handle()
    })
}

/// The span every log line of a connection's tasks is in: its id, path and peer.
pub(crate) fn connection_span(conn: &Conn) -> tracing::Span {
    tracing::info_span!(
        target: "asena::ws",
        "connection",
        socket_id = %conn.id,
        path = %conn.request.path,
        remote = ?conn.request.remote_addr,
    )
}

/// Reads and handles messages until the connection ends; returns the peer's close code and
/// reason if the peer started the closing handshake. Every read's messages, and what their
/// handlers sent, are added to the namespace's counters once they are handled.
///
/// Once a close is under way (ours, after a failed handler, `ws.close` or the liveness
/// sweep; or the peer's), buffered messages are not dispatched any more; after our close
/// frame, data from the peer is discarded (RFC 6455 §5.5.1) while we wait for its close
/// frame: at most [`CLOSE_STALL`] for ours to be written, then [`CLOSE_GRACE`].
///
/// An `async move` block rather than an `async fn`, for the reason given at [`drive`]. What
/// it holds while idle is kept small on purpose (see "Memory per connection" in
/// ARCHITECTURE.md): no timer (the namespace's liveness sweep pings and closes quiet sockets),
/// no wait futures (see [`wait`]), and the closing timer is boxed, made only when closing.
#[allow(clippy::manual_async_fn)]
fn read_loop<'a, S, R>(
    service: &'a Arc<S>,
    socket: &'a Socket<S>,
    reader: &'a mut Reader<R>,
) -> impl Future<Output = Option<(u16, String)>> + 'a
where
    S: Endpoint,
    R: Source,
{
    async move {
        let conn = &socket.as_socket_ref().conn;
        let mut decoder = Decoder::new(conn.shared.limits.max_message_size, conn.deflate.as_ref());
        // The socket's inbound rate limit: two timestamps, refilled by the clock at each read
        // (the limits are reached through `conn` where used: a local would be kept too).
        let mut bucket = Bucket::new();
        // When the bytes being decoded were read: the arrival time of their messages.
        let mut read_at = Instant::now();
        // Set once a close is under way: first the stall limit, then the grace period.
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        let mut grace_started = false;

        loop {
            // The messages of this read and their payload bytes.
            let (mut received, mut received_bytes) = (0u64, 0u64);
            // Handle everything already buffered.
            loop {
                let message = match decoder.decode(&mut reader.buf) {
                    Ok(None) => break,
                    Ok(Some(Incoming::Data(message))) => {
                        if received == 0 {
                            stats::begin_read(&conn.shared.stats, read_at);
                        }
                        received += 1;
                        received_bytes += message.as_bytes().len() as u64;
                        message
                    }
                    Ok(Some(Incoming::Ping(payload))) => {
                        conn.push_pong(&payload);
                        continue;
                    }
                    Ok(Some(Incoming::Pong)) => continue,
                    Ok(Some(Incoming::Close(code, reason))) => {
                        stats::end_read(&conn.shared.stats, received, received_bytes);
                        if conn.close_requested().is_some() {
                            return None;
                        }
                        // The peer started the handshake: echo its code.
                        let echo = if code == close_code::NO_STATUS {
                            close_code::NORMAL
                        } else {
                            code
                        };
                        conn.close(echo, "");
                        return Some((code, reason));
                    }
                    Err(e) => {
                        let stats = &conn.shared.stats;
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
                        return None;
                    }
                };
                if conn.close_requested().is_none() {
                    if let Some(policy) = over_limit(conn, &mut bucket, read_at, &message) {
                        rate_limited(conn, policy);
                        continue;
                    }
                    // The handler's boxed future holds the message: counted in the arm above,
                    // `message` is never borrowed, so its slot is not kept across the await.
                    if let Err(e) = guarded(S::Protocol::receive(service, socket, message)).await {
                        handler_failed(
                            conn,
                            "on_message",
                            &e,
                            <S::Protocol as Protocol<S>>::FAILURE,
                        );
                    }
                }
            }
            stats::end_read(&conn.shared.stats, received, received_bytes);
            if reader.buf.is_empty() && reader.buf.capacity() > 0 {
                reader.buf = BytesMut::new();
            }
            if timer.is_none() && conn.close_requested().is_some() {
                timer = Some(Box::pin(tokio::time::sleep(CLOSE_STALL)));
            }
            if let Some(timer) = &mut timer
                && !grace_started
                && conn.close_written.load(Ordering::Acquire)
            {
                grace_started = true;
                timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            match wait(conn, &mut timer, reader).await {
                // The writer died (peer gone) before any close.
                Woke::Signal if conn.outbox.finished() && timer.is_none() => return None,
                Woke::Signal => {}
                Woke::Timer | Woke::Read(Ok(0) | Err(_)) => return None,
                Woke::Read(Ok(_)) => {
                    read_at = Instant::now();
                    conn.alive.heard(read_at);
                }
            }
        }
    }
}

/// Whether `message`, read at `at`, is over the socket's rate limit: the policy to apply
/// if it is (taken from the bucket if it is not).
#[inline]
fn over_limit(
    conn: &Conn,
    bucket: &mut Bucket,
    at: Instant,
    message: &Message,
) -> Option<RateLimitPolicy> {
    let limits = &conn.shared.limits;
    let limit = limits.rate_limit.as_ref()?;
    let len = message.as_bytes().len();
    (!bucket.admit(limit, limits.max_message_size, at, len)).then_some(limit.policy)
}

/// A message over the socket's rate limit: counted, and dropped or the socket closed with
/// 1008 "rate limit exceeded" (logged once per socket, since nothing it sends afterwards is
/// dispatched).
fn rate_limited(conn: &Conn, policy: RateLimitPolicy) {
    conn.shared.stats.record_rate_limited();
    match policy {
        RateLimitPolicy::DropMessages => {}
        RateLimitPolicy::Close => {
            tracing::warn!(
                target: "asena::ws",
                socket_id = %conn.id,
                path = %conn.path(),
                "rate limit exceeded; closing socket with 1008"
            );
            conn.close(close_code::POLICY, RATE_LIMIT_EXCEEDED);
        }
    }
}

async fn write_loop<S, W>(service: Arc<S>, socket: Socket<S>, mut w: W)
where
    S: Endpoint,
    W: Sink,
{
    let conn = socket.as_socket_ref().conn.clone();
    // However this task ends (done, aborted, or `on_drain` panicked), the reader waiting for
    // it hears so at once: it holds no `JoinHandle`, the outbox marks the writer done.
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
                S::Protocol::drain(&service, &socket).await;
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
        self.0.wake_reader.notify();
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

//! Flushers: write queued frames straight to idle sockets, in the order they became ready.
//!
//! Fanning a message out to a room queues the same encoded bytes on every member. Waking every
//! member's writer task would put one task per socket in the runtime's queue, and the order in
//! which tokio then runs a thousand tasks (local queue, LIFO slot, global queue) gives some
//! sockets their bytes many milliseconds after others. Instead, the first frame queued on an
//! idle plain-TCP socket appends the connection to a flusher's list (FIFO). The flusher task
//! takes the list 64 sockets at a time and gives each one non-blocking write of everything it
//! has queued by then. Before each chunk it lets the runtime poll for I/O, so messages that
//! arrived meanwhile are handled first and ride along with the sockets still waiting: under
//! load a socket gets one write per trip through the list, however many messages it carries,
//! and a new message reaches every socket within about one trip.
//!
//! A socket that cannot take it all (its send buffer is full) is handed, with the rest, to its
//! own writer task (spawned then, the first time it is needed: most sockets never need one),
//! which waits for it to become writable; closing handshakes and `on_drain` also belong to
//! the writer task. There is one list per runtime worker (a connection always
//! uses the same one), so the workers flush in parallel; a flusher task exists only while its
//! list is not empty.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::Conn;
use super::io::try_write_some;
use super::outbox::{FlushTake, Flushed, Pending};

/// Sockets written between two polls for I/O.
const CHUNK: usize = 64;

/// The flushers of one namespace.
pub(crate) struct Flusher {
    lists: Box<[Mutex<List>]>,
    runtime: Handle,
}

#[derive(Default)]
struct List {
    ready: VecDeque<Arc<Conn>>,
    /// A flusher task is running for this list.
    running: bool,
}

impl Flusher {
    /// Flushers on the current runtime, or `None` outside of one.
    pub(crate) fn current() -> Option<Arc<Flusher>> {
        let runtime = Handle::try_current().ok()?;
        let workers = runtime.metrics().num_workers().clamp(1, 64);
        Some(Arc::new(Flusher {
            lists: (0..workers).map(|_| Mutex::default()).collect(),
            runtime,
        }))
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, List> {
        self.lists[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a connection whose outbox answered [`Pushed::Schedule`] on its list.
    ///
    /// [`Pushed::Schedule`]: super::outbox::Pushed::Schedule
    pub(crate) fn schedule(self: &Arc<Self>, conn: Arc<Conn>) {
        let i = (conn.key % self.lists.len() as u64) as usize;
        let mut list = self.lock(i);
        list.ready.push_back(conn);
        if !list.running {
            list.running = true;
            drop(list);
            // The runtime serving the push (the app may have been built on another one);
            // the namespace's own for pushes from outside any runtime.
            let runtime = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
            runtime.spawn(run(self.clone(), i));
        }
    }
}

/// One flusher task: writes the sockets on its list in order, a few at a time, until the
/// list stays empty.
async fn run(flusher: Arc<Flusher>, i: usize) {
    let mut chunk: Vec<Arc<Conn>> = Vec::with_capacity(CHUNK);
    let mut requeue: Vec<Arc<Conn>> = Vec::new();
    let mut scratch = Pending::default();
    loop {
        // Let the runtime poll for I/O between chunks: messages that arrived meanwhile are
        // handled first, so they ride along with the sockets still on the list and a new
        // message never waits for a whole pass to end before it starts going out.
        tokio::task::yield_now().await;
        {
            let mut list = flusher.lock(i);
            list.ready.extend(requeue.drain(..));
            if list.ready.is_empty() {
                list.running = false;
                return;
            }
            let n = list.ready.len().min(CHUNK);
            chunk.extend(list.ready.drain(..n));
        }
        for conn in chunk.drain(..) {
            if flush_one(&conn, &mut scratch) {
                requeue.push(conn);
            }
        }
    }
}

/// Writes what `conn` has queued without waiting. Returns true when more was queued meanwhile
/// and the connection belongs on the next pass.
fn flush_one(conn: &Conn, scratch: &mut Pending) -> bool {
    let Some(stream) = conn.stream() else {
        // Direct mode is only enabled once the stream is known.
        return false;
    };
    if conn.outbox.flush_take(scratch) == FlushTake::HandedOver {
        return false;
    }
    // On WouldBlock the writer task waits for room; on any other error it hits the error
    // again and ends the connection the usual way.
    let mut written = 0;
    let mut outcome = Flushed::All;
    for segment in scratch.segments() {
        let (n, stopped) = try_write_some(stream, segment);
        written += n;
        if stopped.is_some() {
            outcome = Flushed::Partial(written);
            break;
        }
    }
    let again = conn.outbox.flushed(scratch, outcome);
    scratch.clear();
    again
}

//! The per-connection send queue: producers push encoded frames, and whoever owns the socket
//! (a flusher, or the connection's writer task) takes everything queued in one go and writes
//! it with as few syscalls as possible.
//!
//! Small frames (the common case for chat-style fan-out) are copied into one contiguous byte
//! buffer as they are queued: copying a few dozen bytes is cheaper than bumping and later
//! dropping the shared reference count of the frame, a cache line that every core fanning
//! out the same message would otherwise fight over. The writer swaps that buffer out under
//! the lock (double buffering, no allocation in steady state) and hands it to the socket as
//! is. Large frames stay shared (`Bytes`) and are written from their own buffer, in order.
//!
//! The writer's waker lives under the same lock as the queue, so checking for work and
//! registering for a wake-up is one lock round-trip, and a push pays for a wake-up only when
//! the writer is actually waiting.
//!
//! The writer task itself is spawned the first time the socket is handed to it (a send buffer
//! filled, a close or a drain is due, or the transport is not a plain TCP stream): an idle
//! socket has none. The queue keeps the spawner until then, and the task's abort handle
//! after, so the reader waits for it (and stops it) through the queue, not a `JoinHandle`.

use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::task::AbortHandle;

/// Bookkeeping overhead counted per queued frame, so floods of tiny frames are bounded too.
const PER_FRAME_OVERHEAD: usize = 32;
/// Frames up to this many bytes are copied into the queue's byte buffer; larger ones are
/// queued by reference.
const INLINE_MAX: usize = 512;
/// Bytes of unwritten pongs a connection may hold: enough to answer a burst of pings one by
/// one, too little for a peer that pings without reading to matter.
pub(crate) const PONG_BUDGET: usize = 2048;
/// First allocation of an empty byte buffer, so a burst does not regrow it from a few bytes.
const INITIAL_CAPACITY: usize = 256;
/// Buffers with more capacity than this are released once written, so a socket that goes
/// quiet after a burst keeps at most two small buffers.
const KEEP_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
}

/// Who may write the socket right now. Exactly one party writes at a time, so frames from
/// the flusher and the writer task never interleave on the wire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Nobody: the next push decides.
    #[default]
    Idle,
    /// The connection is on a flusher's list (direct mode, see `flush.rs`).
    Flusher,
    /// The connection's writer task.
    Writer,
}

/// Spawns a connection's writer task; returns its abort handle.
pub(crate) type Spawn = Box<dyn FnOnce() -> AbortHandle + Send>;

/// A connection's writer task. It is spawned the first time the socket is handed to it: on a
/// plain TCP socket the flushers write everything until a send buffer fills or the socket
/// closes, so most connections never need one (a task is about 0.75 KB per connection).
enum Writer {
    /// Not spawned yet: this spawns it.
    Lazy(Spawn),
    /// Spawned (or, for an outbox without a spawner, driven by its owner).
    Running {
        /// Its waker while it waits for the socket to be handed to it.
        waker: Option<Waker>,
        abort: Option<AbortHandle>,
    },
    /// It finished, was aborted, or was never needed.
    Done,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::Running {
            waker: None,
            abort: None,
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Writer::Lazy(_) => "Lazy",
            Writer::Running { .. } => "Running",
            Writer::Done => "Done",
        })
    }
}

/// What to do, after unlocking, to give the socket to the writer task.
#[must_use]
enum Handover {
    Nothing,
    Wake(Waker),
    Spawn(Spawn),
}

#[derive(Debug, Default)]
struct State {
    pending: Pending,
    /// Frames queued (inline and by reference).
    frames: usize,
    /// Bytes counted against the queue limit.
    queued: usize,
    /// The close frame to write after everything queued before it.
    close: Option<Bytes>,
    /// No more frames are accepted (close requested, or the writer is gone).
    sealed: bool,
    /// The queue went past half its limit; `on_drain` fires when it empties.
    pressured: bool,
    /// Pushes hand the socket to a flusher instead of waking the writer task.
    direct: bool,
    owner: Owner,
    /// What a flusher could not write (the socket was full), and how many of its bytes were
    /// written already; the writer task writes the rest before anything else.
    /// Boxed: only a socket whose send buffer filled has one, and an idle socket's queue
    /// should not carry the room for it.
    carry: Option<Box<(Pending, usize)>>,
    /// The writer task: not spawned yet, running, or gone.
    writer: Writer,
    /// Bytes of pongs queued and not yet taken (with the per-frame overhead); at most
    /// [`PONG_BUDGET`], so a peer that pings without reading cannot grow the queue.
    pong_bytes: usize,
    /// Where the last queued pong is in `pending.large`, to answer a newer ping instead
    /// once the budget is spent.
    last_pong: Option<usize>,
}

impl State {
    /// Gives the socket to the writer task; returns what to do after unlocking (wake it, or
    /// spawn it if it does not exist yet).
    fn hand_to_writer(&mut self) -> Handover {
        self.owner = Owner::Writer;
        match &mut self.writer {
            Writer::Running { waker, .. } => waker.take().map_or(Handover::Nothing, Handover::Wake),
            Writer::Done => Handover::Nothing,
            Writer::Lazy(_) => {
                let Writer::Lazy(spawn) = std::mem::replace(
                    &mut self.writer,
                    Writer::Running {
                        waker: None,
                        abort: None,
                    },
                ) else {
                    unreachable!()
                };
                Handover::Spawn(spawn)
            }
        }
    }

    /// Work was queued: an idle socket goes to a flusher (returns true: schedule it) or to
    /// the writer task (what to do is put in `writer`).
    fn claim_idle(&mut self, writer: &mut Handover) -> bool {
        if self.owner != Owner::Idle {
            return false;
        }
        if self.direct {
            self.owner = Owner::Flusher;
            true
        } else {
            *writer = self.hand_to_writer();
            false
        }
    }

    /// The pending bytes were taken: their pongs went with them.
    fn forget_pongs(&mut self) {
        self.pong_bytes = 0;
        self.last_pong = None;
    }
}

/// Queued bytes in write order: `bytes` holds the small frames back to back; each large frame
/// is written at its offset in `bytes` (before the bytes from that offset on).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) bytes: Vec<u8>,
    pub(crate) large: Vec<(usize, Bytes)>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.large.is_empty()
    }

    /// Empties the buffers, releasing them when they grew large.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.large.clear();
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::new();
        }
        if self.large.capacity() > 16 {
            self.large = Vec::new();
        }
    }

    /// The queued bytes as consecutive slices, in write order.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        let mut large = self.large.iter();
        let mut next_large: Option<&(usize, Bytes)> = large.next();
        std::iter::from_fn(move || match next_large {
            Some((offset, frame)) if *offset <= at => {
                next_large = large.next();
                Some(&frame[..])
            }
            Some((offset, _)) => {
                let seg = &self.bytes[at..*offset];
                at = *offset;
                Some(seg)
            }
            None if at < self.bytes.len() => {
                let seg = &self.bytes[at..];
                at = self.bytes.len();
                Some(seg)
            }
            None => None,
        })
    }

    /// The queued bytes after the first `skip`, as consecutive non-empty slices.
    pub(crate) fn segments_from(&self, mut skip: usize) -> impl Iterator<Item = &[u8]> {
        self.segments().filter_map(move |seg| {
            let cut = skip.min(seg.len());
            skip -= cut;
            (cut < seg.len()).then(|| &seg[cut..])
        })
    }
}

/// Outcome of a push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued, and the caller must put the connection on its flusher's list.
    Schedule,
    Full,
    Closed,
}

/// The outcome of a push that queued something: wakes (or spawns) the writer task if it was
/// handed the socket (after the lock is released).
#[inline]
fn queued(outbox: &Outbox, writer: Handover, schedule: bool) -> Pushed {
    outbox.hand_over(writer);
    if schedule {
        Pushed::Schedule
    } else {
        Pushed::Queued
    }
}

/// What the writer took in one go, and what to do when it took nothing.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Bytes of the batch already written by a flusher.
    pub(crate) skip: usize,
    pub(crate) close: Option<Bytes>,
    /// Nothing was queued and the queue is sealed: the writer is done.
    pub(crate) finished: bool,
    /// Nothing was queued and the queue had been under pressure: fire `on_drain` (once).
    pub(crate) drained: bool,
}

/// What a flusher should do with a connection it picked from its list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlushTake {
    /// Write the taken bytes, then report with [`Outbox::flushed`].
    Write,
    /// Nothing for the flusher: the writer task has the socket now (close, seal, drain).
    HandedOver,
}

/// How a flusher's write went.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// Everything was written.
    All,
    /// The socket took only this many bytes (or failed): the writer task continues.
    Partial(usize),
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carries out a [`Handover`] decided under the lock (call it unlocked). Most pushes
    /// hand nothing over: that check stays inline on the fan-out path.
    #[inline]
    fn hand_over(&self, handover: Handover) {
        if !matches!(handover, Handover::Nothing) {
            self.hand_over_now(handover);
        }
    }

    #[cold]
    #[inline(never)]
    fn hand_over_now(&self, handover: Handover) {
        match handover {
            Handover::Nothing => {}
            Handover::Wake(waker) => waker.wake(),
            Handover::Spawn(spawn) => {
                let handle = spawn();
                match &mut self.lock().writer {
                    Writer::Running { abort, .. } => *abort = Some(handle),
                    // Aborted before it was spawned (or already finished, where this is a
                    // no-op: the writer does not yield after `writer_exited`).
                    _ => handle.abort(),
                }
            }
        }
    }

    /// Spawn the writer task with `spawn` the first time the socket is handed to it, instead
    /// of expecting one to be running.
    pub(crate) fn spawn_writer_lazily(&self, spawn: Spawn) {
        let mut st = self.lock();
        debug_assert_eq!(st.owner, Owner::Idle);
        st.writer = Writer::Lazy(spawn);
    }

    /// Writer: it is about to return.
    pub(crate) fn writer_exited(&self) {
        self.lock().writer = Writer::Done;
    }

    /// True when there is no writer task, and none will be spawned.
    pub(crate) fn writer_done(&self) -> bool {
        matches!(self.lock().writer, Writer::Done)
    }

    /// Drops the writer's spawner if it was never used.
    pub(crate) fn drop_spawner(&self) {
        let mut st = self.lock();
        if matches!(st.writer, Writer::Lazy(_)) {
            let spawn = std::mem::replace(&mut st.writer, Writer::Done);
            drop(st);
            drop(spawn);
        }
    }

    /// The connection is over: aborts the writer task (still writing to a peer that does not
    /// read), or drops its spawner when it was never needed.
    pub(crate) fn abort_writer(&self) {
        let writer = std::mem::replace(&mut self.lock().writer, Writer::Done);
        if let Writer::Running {
            abort: Some(abort), ..
        } = &writer
        {
            abort.abort();
        }
        drop(writer);
    }

    /// From now on a push that finds the socket idle hands it to a flusher
    /// ([`Pushed::Schedule`]) instead of waking the writer task.
    pub(crate) fn enable_direct(&self) {
        self.lock().direct = true;
    }

    /// Queues a frame unless the queue would exceed `limit` bytes (one frame is always
    /// accepted into an empty queue).
    pub(crate) fn push(&self, frame: &Bytes, limit: usize) -> Pushed {
        let cost = frame.len() + PER_FRAME_OVERHEAD;
        let mut writer = Handover::Nothing;
        let schedule = {
            let mut st = self.lock();
            if st.sealed {
                return Pushed::Closed;
            }
            let was_empty = st.frames == 0;
            if st.queued + cost > limit && !was_empty {
                return Pushed::Full;
            }
            st.queued += cost;
            st.frames += 1;
            if st.queued > limit / 2 {
                st.pressured = true;
            }
            let pending = &mut st.pending;
            if frame.len() <= INLINE_MAX {
                if pending.bytes.capacity() == 0 {
                    pending.bytes.reserve(INITIAL_CAPACITY.max(frame.len()));
                }
                pending.bytes.extend_from_slice(frame);
            } else {
                let at = pending.bytes.len();
                pending.large.push((at, frame.clone()));
            }
            st.claim_idle(&mut writer)
        };
        queued(self, writer, schedule)
    }

    /// Queues the answer to a ping, in order with the data. Unwritten pongs may take up to
    /// [`PONG_BUDGET`] bytes; past it the newest one replaces the last queued (RFC 6455
    /// §5.5.3 allows answering only the latest ping). Pongs do not count against the queue
    /// limit.
    pub(crate) fn push_pong(&self, frame: &Bytes) -> Pushed {
        let mut writer = Handover::Nothing;
        let schedule = {
            let mut st = self.lock();
            if st.sealed {
                return Pushed::Closed;
            }
            let st = &mut *st;
            let cost = frame.len() + PER_FRAME_OVERHEAD;
            match st.last_pong {
                Some(i) if st.pong_bytes + cost > PONG_BUDGET => {
                    let old = std::mem::replace(&mut st.pending.large[i].1, frame.clone());
                    st.pong_bytes = st.pong_bytes - old.len() + frame.len();
                }
                _ => {
                    st.last_pong = Some(st.pending.large.len());
                    let at = st.pending.bytes.len();
                    st.pending.large.push((at, frame.clone()));
                    st.pong_bytes += cost;
                    st.frames += 1;
                }
            }
            st.claim_idle(&mut writer)
        };
        queued(self, writer, schedule)
    }

    /// Seals the queue and schedules `frame` as the last thing written. Returns false when a
    /// close was already requested.
    pub(crate) fn close(&self, frame: Bytes) -> bool {
        let writer = {
            let mut st = self.lock();
            if st.sealed {
                return false;
            }
            st.sealed = true;
            st.close = Some(frame);
            // A flusher that owns the socket hands it over when it is done with it.
            match st.owner {
                Owner::Idle => st.hand_to_writer(),
                _ => Handover::Nothing,
            }
        };
        self.hand_over(writer);
        true
    }

    /// Seals the queue without a close frame (the connection is gone).
    pub(crate) fn seal(&self) {
        let mut st = self.lock();
        st.sealed = true;
        st.pending = Pending::default();
        st.forget_pongs();
        st.carry = None;
        st.frames = 0;
        st.queued = 0;
        let writer = match st.owner {
            Owner::Flusher => Handover::Nothing,
            // Nothing is left to write: a writer that was never spawned is not needed.
            Owner::Idle if matches!(st.writer, Writer::Lazy(_)) => {
                st.owner = Owner::Writer;
                let spawn = std::mem::replace(&mut st.writer, Writer::Done);
                drop(st);
                drop(spawn);
                return;
            }
            _ => st.hand_to_writer(),
        };
        drop(st);
        self.hand_over(writer);
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.lock().sealed
    }

    /// Flusher: takes what is queued into `into` (which must be empty), unless the writer
    /// task has to take over.
    pub(crate) fn flush_take(&self, into: &mut Pending) -> FlushTake {
        debug_assert!(into.is_empty());
        let mut st = self.lock();
        debug_assert_eq!(st.owner, Owner::Flusher);
        if st.sealed || st.frames == 0 {
            // Closing, gone, or nothing left (a drain is due): the writer task decides.
            let writer = st.hand_to_writer();
            drop(st);
            self.hand_over(writer);
            return FlushTake::HandedOver;
        }
        std::mem::swap(&mut st.pending, into);
        st.forget_pongs();
        st.frames = 0;
        st.queued = 0;
        FlushTake::Write
    }

    /// Flusher: reports how writing `written` (taken by [`Outbox::flush_take`]) went. Returns
    /// true when more was queued meanwhile and the connection stays on the flusher's list.
    pub(crate) fn flushed(&self, written: &mut Pending, outcome: Flushed) -> bool {
        let mut st = self.lock();
        let writer = match outcome {
            Flushed::All if st.frames > 0 && !st.sealed => return true,
            Flushed::All if !st.sealed && !st.pressured => {
                st.owner = Owner::Idle;
                Handover::Nothing
            }
            // Closing, or a drain to report: both are the writer task's.
            Flushed::All => st.hand_to_writer(),
            // Kept even when sealed: a close requested meanwhile must follow these bytes, and
            // for a connection that is gone the writer's next write fails and ends it.
            Flushed::Partial(done) => {
                st.carry = Some(Box::new((std::mem::take(written), done)));
                st.hand_to_writer()
            }
        };
        drop(st);
        self.hand_over(writer);
        false
    }

    /// Writer: waits until the socket is handed to the writer task.
    pub(crate) async fn ready(&self) {
        poll_fn(|cx| self.poll_ready(cx)).await;
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.owner == Owner::Writer {
            return Poll::Ready(());
        }
        if let Writer::Running { waker, .. } = &mut st.writer {
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    /// Writer: moves everything to write next into `into`, which must be empty (its buffers
    /// are recycled as the queue's next ones). When there is nothing, the socket goes back
    /// to idle, unless the queue is finished or a drain is due. One lock round-trip per
    /// batch, including the idle checks.
    pub(crate) fn take(&self, into: &mut Pending) -> Batch {
        debug_assert!(into.is_empty());
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(carry) = st.carry.take() {
            let (carried, skip) = *carry;
            *into = carried;
            return Batch {
                skip,
                close: None,
                finished: false,
                drained: false,
            };
        }
        std::mem::swap(&mut st.pending, into);
        st.forget_pongs();
        let took = st.frames > 0;
        st.frames = 0;
        st.queued = 0;
        let close = st.close.take();
        let idle = !took && close.is_none();
        let finished = idle && st.sealed;
        let drained = idle && !finished && std::mem::take(&mut st.pressured);
        if idle && !finished && !drained {
            st.owner = Owner::Idle;
        }
        Batch {
            skip: 0,
            close,
            finished,
            drained,
        }
    }

    /// Whether the queue went past half its limit and has not emptied since (the flag
    /// `on_drain` clears).
    pub(crate) fn is_pressured(&self) -> bool {
        self.lock().pressured
    }

    /// Bytes queued and not yet taken by a writer (what counts against the queue limit).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().queued
    }

    /// True when the writer has nothing left to do and the queue is sealed.
    pub(crate) fn finished(&self) -> bool {
        let st = self.lock();
        st.sealed && st.frames == 0 && st.close.is_none() && st.carry.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(p: &Pending) -> Vec<u8> {
        p.segments().flatten().copied().collect()
    }

    /// What is left to write of a batch after its first `skip` bytes.
    fn taken_from(p: &Pending, skip: usize) -> Vec<u8> {
        p.segments_from(skip).flatten().copied().collect()
    }

    /// A frame too large to be copied inline: queued as its own segment.
    fn large_frame() -> Vec<u8> {
        vec![b'L'; INLINE_MAX + 1]
    }

    /// Queues `frames` in order, the queue unbounded.
    fn push_unbounded(o: &Outbox, frames: &[&[u8]]) {
        for frame in frames {
            o.push(&Bytes::copy_from_slice(frame), usize::MAX);
        }
    }

    /// An outbox in direct mode: flushers write to the socket themselves.
    fn direct_outbox() -> Outbox {
        let o = Outbox::new();
        o.enable_direct();
        o
    }

    fn pong(i: u32) -> Bytes {
        Bytes::from(vec![
            0x8a,
            4,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ])
    }

    #[test]
    fn pongs_keep_their_place_and_their_budget() {
        let outbox = Outbox::new();
        outbox.push(&Bytes::from_static(b"before"), 1 << 20);
        outbox.push_pong(&pong(1));
        outbox.push(&Bytes::from_static(b"after"), 1 << 20);
        let mut pending = Pending::default();
        outbox.take(&mut pending);
        // In order: data queued before the ping, the pong, data queued after it.
        assert_eq!(
            taken(&pending),
            [&b"before"[..], &pong(1), b"after"].concat()
        );
        pending.clear();

        // A flood of pings without reading: the pongs stay within the budget, and the
        // newest ping is the one answered last.
        for i in 0..100_000u32 {
            assert_ne!(outbox.push_pong(&pong(i)), Pushed::Closed);
        }
        outbox.take(&mut pending);
        let bytes = taken(&pending);
        assert!(bytes.len() <= PONG_BUDGET, "{} bytes of pongs", bytes.len());
        assert_eq!(&bytes[bytes.len() - 6..], &pong(99_999)[..]);
        assert_eq!(&bytes[..6], &pong(0)[..], "a burst is answered one by one");
        pending.clear();
        outbox.seal();
        assert_eq!(outbox.push_pong(&pong(7)), Pushed::Closed);
    }

    #[test]
    fn bounded_by_bytes_but_always_accepts_one_frame() {
        let o = Outbox::new();
        let big = Bytes::from(vec![0u8; 100]);
        assert_eq!(o.push(&big, 50), Pushed::Queued);
        assert_eq!(o.push(&big, 50), Pushed::Full);
        let mut batch = Pending::default();
        o.take(&mut batch);
        assert_eq!(taken(&batch).len(), 100);
        batch.clear();
        assert_eq!(o.push(&big, 50), Pushed::Queued);
    }

    #[test]
    fn close_seals_and_comes_last() {
        let o = Outbox::new();
        let f = Bytes::from_static(b"x");
        o.push(&f, 1000);
        assert!(o.close(Bytes::from_static(b"close")));
        assert!(!o.close(Bytes::from_static(b"again")));
        assert_eq!(o.push(&f, 1000), Pushed::Closed);
        let mut batch = Pending::default();
        let b = o.take(&mut batch);
        assert_eq!(taken(&batch), b"x");
        assert_eq!(b.close.as_deref(), Some(&b"close"[..]));
        assert!(o.finished());
        batch.clear();
        assert!(o.take(&mut batch).finished);
    }

    #[test]
    fn small_and_large_frames_keep_their_order() {
        let o = Outbox::new();
        let large = large_frame();
        push_unbounded(&o, &[&large, b"ab", &large, &large, b"cd"]);
        let mut batch = Pending::default();
        o.take(&mut batch);
        let mut want = large.clone();
        want.extend_from_slice(b"ab");
        want.extend_from_slice(&large);
        want.extend_from_slice(&large);
        want.extend_from_slice(b"cd");
        assert_eq!(taken(&batch), want);
        assert_eq!(batch.segments().count(), 5);
    }

    #[test]
    fn drained_fires_once_after_pressure() {
        let o = Outbox::new();
        let f = Bytes::from(vec![0u8; 40]);
        o.push(&f, 100);
        let mut batch = Pending::default();
        let b = o.take(&mut batch);
        assert!(!b.drained && !b.finished);
        batch.clear();
        assert!(o.take(&mut batch).drained);
        assert!(!o.take(&mut batch).drained);
        o.seal();
        assert!(o.take(&mut batch).finished);
    }

    fn ready_now(o: &Outbox) -> bool {
        use futures_util::FutureExt;
        o.ready().now_or_never().is_some()
    }

    #[test]
    fn without_direct_mode_a_push_hands_the_socket_to_the_writer() {
        let o = Outbox::new();
        assert!(!ready_now(&o));
        assert_eq!(o.push(&Bytes::from_static(b"a"), 100), Pushed::Queued);
        assert!(ready_now(&o));
        let mut batch = Pending::default();
        o.take(&mut batch);
        assert_eq!(taken(&batch), b"a");
        batch.clear();
        // Nothing left: the writer gives the socket back and waits again.
        o.take(&mut batch);
        assert!(!ready_now(&o));
    }

    #[test]
    fn direct_mode_schedules_an_idle_socket_once_per_flush() {
        let o = direct_outbox();
        assert_eq!(o.push(&Bytes::from_static(b"a"), 1000), Pushed::Schedule);
        assert_eq!(o.push(&Bytes::from_static(b"b"), 1000), Pushed::Queued);
        assert!(!ready_now(&o), "the writer task stays out of direct writes");
        let mut batch = Pending::default();
        assert_eq!(o.flush_take(&mut batch), FlushTake::Write);
        assert_eq!(taken(&batch), b"ab");
        assert!(!o.flushed(&mut batch, Flushed::All));
        batch.clear();
        assert_eq!(o.push(&Bytes::from_static(b"c"), 1000), Pushed::Schedule);
    }

    #[test]
    fn frames_queued_during_a_flush_keep_the_socket_on_the_list() {
        let o = direct_outbox();
        o.push(&Bytes::from_static(b"a"), 1000);
        let mut batch = Pending::default();
        o.flush_take(&mut batch);
        assert_eq!(o.push(&Bytes::from_static(b"b"), 1000), Pushed::Queued);
        assert!(o.flushed(&mut batch, Flushed::All));
        batch.clear();
        assert_eq!(o.flush_take(&mut batch), FlushTake::Write);
        assert_eq!(taken(&batch), b"b");
    }

    #[test]
    fn a_partial_flush_leaves_the_rest_to_the_writer_in_order() {
        let o = direct_outbox();
        push_unbounded(&o, &[b"abc", &large_frame(), b"de"]);
        let mut batch = Pending::default();
        o.flush_take(&mut batch);
        // The socket took "abc" and two bytes of the large frame.
        assert!(!o.flushed(&mut batch, Flushed::Partial(5)));
        assert!(ready_now(&o));
        assert_eq!(
            o.push(&Bytes::from_static(b"f"), usize::MAX),
            Pushed::Queued
        );
        let mut batch = Pending::default();
        let b = o.take(&mut batch);
        let rest = taken_from(&batch, b.skip);
        let mut want = vec![b'L'; INLINE_MAX - 1];
        want.extend_from_slice(b"de");
        assert_eq!(rest, want);
        batch.clear();
        o.take(&mut batch);
        assert_eq!(taken(&batch), b"f");
        batch.clear();
        o.take(&mut batch);
        // Drained: the next frame goes the direct way again.
        assert_eq!(
            o.push(&Bytes::from_static(b"g"), usize::MAX),
            Pushed::Schedule
        );
    }

    #[test]
    fn a_close_during_a_flush_is_written_by_the_writer_after_the_frames() {
        let o = direct_outbox();
        o.push(&Bytes::from_static(b"a"), 100);
        assert!(o.close(Bytes::from_static(b"close")));
        assert!(
            !ready_now(&o),
            "the flusher owns the socket until it hands it over"
        );
        let mut batch = Pending::default();
        assert_eq!(o.flush_take(&mut batch), FlushTake::HandedOver);
        assert!(ready_now(&o));
        let b = o.take(&mut batch);
        assert_eq!(taken(&batch), b"a");
        assert_eq!(b.close.as_deref(), Some(&b"close"[..]));
    }

    #[test]
    fn a_flush_that_empties_a_pressured_queue_lets_the_writer_fire_on_drain() {
        let o = direct_outbox();
        o.push(&Bytes::from(vec![0u8; 40]), 100);
        let mut batch = Pending::default();
        o.flush_take(&mut batch);
        assert!(!o.flushed(&mut batch, Flushed::All));
        assert!(ready_now(&o));
        let mut batch = Pending::default();
        assert!(o.take(&mut batch).drained);
        o.take(&mut batch);
        assert!(!ready_now(&o));
    }

    #[test]
    fn a_close_during_a_partial_flush_comes_after_the_unwritten_rest() {
        let o = direct_outbox();
        o.push(&Bytes::from_static(b"abcdef"), usize::MAX);
        let mut batch = Pending::default();
        o.flush_take(&mut batch);
        // The close is requested while the flusher is writing; the socket took 2 bytes.
        assert!(o.close(Bytes::from_static(b"close")));
        assert!(!o.flushed(&mut batch, Flushed::Partial(2)));
        let mut batch = Pending::default();
        let b = o.take(&mut batch);
        let rest = taken_from(&batch, b.skip);
        assert_eq!(rest, b"cdef");
        assert!(b.close.is_none());
        assert!(!o.finished());
        batch.clear();
        let b = o.take(&mut batch);
        assert_eq!(b.close.as_deref(), Some(&b"close"[..]));
    }

    /// A spawner that counts its calls (the "writer" it spawns does nothing).
    fn counting_spawner() -> (Spawn, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let spawn: Spawn = Box::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(std::future::pending::<()>()).abort_handle()
        });
        (spawn, calls)
    }

    /// A direct-mode outbox whose writer is spawned lazily by a [`counting_spawner`].
    fn direct_outbox_with_lazy_writer() -> (Outbox, std::sync::Arc<std::sync::atomic::AtomicUsize>)
    {
        let o = direct_outbox();
        let (spawn, calls) = counting_spawner();
        o.spawn_writer_lazily(spawn);
        (o, calls)
    }

    fn spawned(calls: &std::sync::atomic::AtomicUsize) -> usize {
        calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_writer_is_spawned_when_a_flusher_first_cannot_write_everything() {
        let (o, calls) = direct_outbox_with_lazy_writer();
        // Flushes that write everything need no writer.
        for _ in 0..3 {
            assert_eq!(o.push(&Bytes::from_static(b"a"), 1000), Pushed::Schedule);
            let mut batch = Pending::default();
            assert_eq!(o.flush_take(&mut batch), FlushTake::Write);
            assert!(!o.flushed(&mut batch, Flushed::All));
        }
        assert_eq!(spawned(&calls), 0);
        assert!(!o.writer_done());
        // A full send buffer hands the rest to the writer: spawned once, and it has the socket.
        o.push(&Bytes::from_static(b"bcd"), 1000);
        let mut batch = Pending::default();
        o.flush_take(&mut batch);
        assert!(!o.flushed(&mut batch, Flushed::Partial(1)));
        assert_eq!(spawned(&calls), 1);
        assert!(ready_now(&o));
        let mut batch = Pending::default();
        let b = o.take(&mut batch);
        let rest = taken_from(&batch, b.skip);
        assert_eq!(rest, b"cd");
        batch.clear();
        o.take(&mut batch);
        // Back to idle; the next hand-over wakes the same writer instead of spawning another.
        assert!(!ready_now(&o));
        o.push(&Bytes::from_static(b"e"), 1000);
        let mut batch = Pending::default();
        o.flush_take(&mut batch);
        assert!(!o.flushed(&mut batch, Flushed::Partial(0)));
        assert!(ready_now(&o));
        assert_eq!(spawned(&calls), 1);
        o.writer_exited();
        assert!(o.writer_done());
    }

    #[tokio::test]
    async fn a_close_spawns_the_writer_and_a_seal_does_not() {
        let (o, calls) = direct_outbox_with_lazy_writer();
        assert!(o.close(Bytes::from_static(b"close")));
        assert_eq!(spawned(&calls), 1, "the close frame needs the writer");
        assert!(ready_now(&o));
        assert!(!o.writer_done());

        // A connection that ends without a close (the peer went away) needs no writer.
        let (o, calls) = direct_outbox_with_lazy_writer();
        o.seal();
        assert_eq!(spawned(&calls), 0);
        assert!(o.writer_done());
        assert_eq!(o.push(&Bytes::from_static(b"a"), 1000), Pushed::Closed);

        // ... unless a flusher still has the socket: it hands it over when it is done.
        let (o, calls) = direct_outbox_with_lazy_writer();
        o.push(&Bytes::from_static(b"a"), 1000);
        o.close(Bytes::from_static(b"close"));
        assert_eq!(spawned(&calls), 0, "the flusher owns the socket");
        let mut batch = Pending::default();
        assert_eq!(o.flush_take(&mut batch), FlushTake::HandedOver);
        assert_eq!(spawned(&calls), 1);
        let b = o.take(&mut batch);
        assert_eq!(taken(&batch), b"a");
        assert_eq!(b.close.as_deref(), Some(&b"close"[..]));
    }

    #[tokio::test]
    async fn aborting_drops_an_unused_spawner_and_stops_a_spawned_writer() {
        let o = Outbox::new();
        let (spawn, calls) = counting_spawner();
        o.spawn_writer_lazily(spawn);
        o.drop_spawner();
        assert!(o.writer_done());
        o.close(Bytes::from_static(b"close"));
        assert_eq!(spawned(&calls), 0, "a dropped spawner spawns nothing");

        let o = Outbox::new();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<tokio::task::JoinHandle<()>>();
        let counted = calls.clone();
        o.spawn_writer_lazily(Box::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let task = tokio::spawn(std::future::pending::<()>());
            let abort = task.abort_handle();
            let _ = tx.send(task);
            abort
        }));
        o.push(&Bytes::from_static(b"a"), 1000);
        assert_eq!(spawned(&calls), 1);
        o.abort_writer();
        assert!(o.writer_done());
        let task = rx.await.expect("spawned");
        assert!(task.await.expect_err("aborted").is_cancelled());
    }

    #[test]
    fn segments_from_skips_across_segments() {
        let o = Outbox::new();
        push_unbounded(&o, &[b"ab", &large_frame(), b"cd"]);
        let mut batch = Pending::default();
        o.take(&mut batch);
        let lens: Vec<usize> = batch.segments_from(0).map(<[u8]>::len).collect();
        assert_eq!(lens, [2, INLINE_MAX + 1, 2]);
        let lens: Vec<usize> = batch.segments_from(2).map(<[u8]>::len).collect();
        assert_eq!(lens, [INLINE_MAX + 1, 2]);
        let lens: Vec<usize> = batch
            .segments_from(INLINE_MAX + 4)
            .map(<[u8]>::len)
            .collect();
        assert_eq!(lens, [1]);
        assert_eq!(batch.segments_from(INLINE_MAX + 5).count(), 0);
    }
}

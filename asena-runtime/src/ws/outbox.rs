//! The per-connection send queue: producers push encoded frames, one writer task takes
//! everything queued in one go and writes it with as few syscalls as possible.
//!
//! Small frames (the common case for chat-style fan-out) are copied into one contiguous byte
//! buffer as they are queued: copying a few dozen bytes is cheaper than bumping and later
//! dropping the shared reference count of the frame, a cache line that every core fanning
//! out the same message would otherwise fight over. The writer swaps that buffer out under
//! the lock (double buffering, no allocation in steady state) and hands it to the socket as
//! is. Large frames stay shared (`Bytes`) and are written from their own buffer, in order.

use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Bookkeeping overhead counted per queued frame, so floods of tiny frames are bounded too.
const PER_FRAME_OVERHEAD: usize = 32;
/// Frames up to this many bytes are copied into the queue's byte buffer; larger ones are
/// queued by reference.
const INLINE_MAX: usize = 512;
/// First allocation of an empty byte buffer, so a burst does not regrow it from a few bytes.
const INITIAL_CAPACITY: usize = 256;
/// Buffers with more capacity than this are released once written, so a socket that goes
/// quiet after a burst keeps at most two small buffers.
const KEEP_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    pub(crate) wake_writer: Notify,
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
}

/// Outcome of a push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    Full,
    Closed,
}

/// What the writer took in one go, and what to do when it took nothing.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) close: Option<Bytes>,
    /// Nothing was queued and the queue is sealed: the writer is done.
    pub(crate) finished: bool,
    /// Nothing was queued and the queue had been under pressure: fire `on_drain` (once).
    pub(crate) drained: bool,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            wake_writer: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame unless the queue would exceed `limit` bytes (one frame is always
    /// accepted into an empty queue).
    pub(crate) fn push(&self, frame: &Bytes, limit: usize) -> Pushed {
        let cost = frame.len() + PER_FRAME_OVERHEAD;
        let was_empty;
        {
            let mut st = self.lock();
            if st.sealed {
                return Pushed::Closed;
            }
            was_empty = st.frames == 0;
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
        }
        if was_empty {
            self.wake_writer.notify_one();
        }
        Pushed::Queued
    }

    /// Seals the queue and schedules `frame` as the last thing written. Returns false when a
    /// close was already requested.
    pub(crate) fn close(&self, frame: Bytes) -> bool {
        {
            let mut st = self.lock();
            if st.sealed {
                return false;
            }
            st.sealed = true;
            st.close = Some(frame);
        }
        self.wake_writer.notify_one();
        true
    }

    /// Seals the queue without a close frame (the connection is gone).
    pub(crate) fn seal(&self) {
        let mut st = self.lock();
        st.sealed = true;
        st.pending = Pending::default();
        st.frames = 0;
        st.queued = 0;
        drop(st);
        self.wake_writer.notify_one();
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.lock().sealed
    }

    /// Moves everything queued into `into`, which must be empty (its buffers are recycled as
    /// the queue's next ones). One lock round-trip per batch, including the idle checks.
    pub(crate) fn take(&self, into: &mut Pending) -> Batch {
        debug_assert!(into.is_empty());
        let mut st = self.lock();
        let st = &mut *st;
        std::mem::swap(&mut st.pending, into);
        let took = st.frames > 0;
        st.frames = 0;
        st.queued = 0;
        let close = st.close.take();
        let idle = !took && close.is_none();
        let finished = idle && st.sealed;
        let drained = idle && !finished && std::mem::take(&mut st.pressured);
        Batch {
            close,
            finished,
            drained,
        }
    }

    /// True when the writer has nothing left to do and the queue is sealed.
    pub(crate) fn finished(&self) -> bool {
        let st = self.lock();
        st.sealed && st.frames == 0 && st.close.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(p: &Pending) -> Vec<u8> {
        p.segments().flatten().copied().collect()
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
        let large = Bytes::from(vec![b'L'; INLINE_MAX + 1]);
        o.push(&large, usize::MAX);
        o.push(&Bytes::from_static(b"ab"), usize::MAX);
        o.push(&large, usize::MAX);
        o.push(&large, usize::MAX);
        o.push(&Bytes::from_static(b"cd"), usize::MAX);
        let mut batch = Pending::default();
        o.take(&mut batch);
        let mut want = large.to_vec();
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
}

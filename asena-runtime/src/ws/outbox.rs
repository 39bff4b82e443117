//! The per-connection send queue: producers push shared frames, one writer task drains
//! everything queued and writes it with a single flush.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Bookkeeping overhead counted per queued frame, so floods of tiny frames are bounded too.
const PER_FRAME_OVERHEAD: usize = 32;

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    pub(crate) wake_writer: Notify,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    queued: usize,
    /// The close frame to write after everything queued before it.
    close: Option<Bytes>,
    /// No more frames are accepted (close requested, or the writer is gone).
    sealed: bool,
    /// The queue went past half its limit; `on_drain` fires when it empties.
    pressured: bool,
}

/// Outcome of a push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    Full,
    Closed,
}

/// What the writer took in one go.
pub(crate) struct Batch {
    pub(crate) close: Option<Bytes>,
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

    /// Queues a frame unless the queue would exceed `limit` bytes.
    pub(crate) fn push(&self, frame: &Bytes, limit: usize) -> Pushed {
        let cost = frame.len() + PER_FRAME_OVERHEAD;
        let was_empty;
        {
            let mut st = self.lock();
            if st.sealed {
                return Pushed::Closed;
            }
            if st.queued + cost > limit && !st.frames.is_empty() {
                return Pushed::Full;
            }
            was_empty = st.frames.is_empty();
            st.queued += cost;
            if st.queued > limit / 2 {
                st.pressured = true;
            }
            st.frames.push_back(frame.clone());
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
        st.frames.clear();
        st.queued = 0;
        drop(st);
        self.wake_writer.notify_one();
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.lock().sealed
    }

    /// Moves everything queued into `into` (which must be empty).
    pub(crate) fn take(&self, into: &mut VecDeque<Bytes>) -> Batch {
        let mut st = self.lock();
        std::mem::swap(&mut st.frames, into);
        st.queued = 0;
        Batch {
            close: st.close.take(),
        }
    }

    /// True once after the queue drained from pressure.
    pub(crate) fn drained(&self) -> bool {
        let mut st = self.lock();
        if st.pressured && st.frames.is_empty() {
            st.pressured = false;
            true
        } else {
            false
        }
    }

    /// True when the writer has nothing left to do and the queue is sealed.
    pub(crate) fn finished(&self) -> bool {
        let st = self.lock();
        st.sealed && st.frames.is_empty() && st.close.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_but_always_accepts_one_frame() {
        let o = Outbox::new();
        let big = Bytes::from(vec![0u8; 100]);
        assert_eq!(o.push(&big, 50), Pushed::Queued);
        assert_eq!(o.push(&big, 50), Pushed::Full);
        let mut batch = VecDeque::new();
        o.take(&mut batch);
        assert_eq!(batch.len(), 1);
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
        let mut batch = VecDeque::new();
        let b = o.take(&mut batch);
        assert_eq!(batch.len(), 1);
        assert_eq!(b.close.as_deref(), Some(&b"close"[..]));
        assert!(o.finished());
    }
}

//! The requests a connection's server side is waiting on: [`Acks`], made the first time the
//! server asks the socket something, and never for a socket it does not.
//!
//! An entry is a one-shot channel to whoever awaits the reply, under an id counted from 1.
//! The table is bounded ([`Limits::max_pending_requests`](crate::config::Limits)): a request
//! past the bound is refused at once, not queued. An entry leaves it when the reply comes,
//! when its caller stops waiting (a timeout, a dropped future), or when the connection
//! closes (every caller hears so at once). Replies that match no entry (late, duplicated,
//! never asked) are the caller's to count; this table only says so.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// What the other side answered: the reply's payload as JSON text, or its failure.
pub(crate) type Answered = Result<Box<str>, asena_protocol::ack::Failure>;

/// Why a request could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection closed (or is closing).
    Closed,
    /// As many requests as the limit allows are pending.
    Full,
}

/// A connection's pending requests.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// The last id handed out (0: none yet).
    last: u64,
    pending: HashMap<u64, oneshot::Sender<Answered>>,
    closed: bool,
}

/// How a reply matched the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matched {
    /// It was awaited, and handed over.
    Delivered,
    /// Its id was handed out but is not pending: it came after its caller stopped waiting,
    /// or a second time.
    Late,
    /// No request ever had its id.
    Unknown,
}

impl Acks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request: its id and where its reply will arrive.
    pub(crate) fn register(
        &self,
        limit: usize,
    ) -> Result<(u64, oneshot::Receiver<Answered>), Refused> {
        let mut table = self.lock();
        if table.closed {
            return Err(Refused::Closed);
        }
        if table.pending.len() >= limit {
            return Err(Refused::Full);
        }
        table.last += 1;
        let id = table.last;
        let (tx, rx) = oneshot::channel();
        table.pending.insert(id, tx);
        Ok((id, rx))
    }

    /// Forgets a request whose caller stopped waiting; whether it was still pending.
    pub(crate) fn forget(&self, id: u64) -> bool {
        self.lock().pending.remove(&id).is_some()
    }

    /// Hands a reply to the request `id` awaits.
    pub(crate) fn answer(&self, id: u64, answered: Answered) -> Matched {
        let mut table = self.lock();
        match table.pending.remove(&id) {
            Some(tx) => {
                drop(table);
                // The caller may have stopped waiting a moment ago: then nobody reads it.
                let _ = tx.send(answered);
                Matched::Delivered
            }
            None if id != 0 && id <= table.last => Matched::Late,
            None => Matched::Unknown,
        }
    }

    /// The connection closed: every pending caller hears it (its channel is dropped), and
    /// no request is registered any more.
    pub(crate) fn close(&self) {
        let pending = {
            let mut table = self.lock();
            table.closed = true;
            std::mem::take(&mut table.pending)
        };
        drop(pending);
    }

    /// How many requests are pending.
    pub(crate) fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_forgotten_late_unknown_closed() {
        let acks = Acks::default();
        let (one, _rx1) = acks.register(2).expect("room");
        let (two, rx2) = acks.register(2).expect("room");
        assert_eq!(acks.register(2).err(), Some(Refused::Full));
        assert!(acks.forget(one));
        assert_eq!(acks.answer(one, Ok("1".into())), Matched::Late);
        assert_eq!(acks.answer(99, Ok("1".into())), Matched::Unknown);
        assert_eq!(acks.answer(0, Ok("1".into())), Matched::Unknown);
        assert_eq!(acks.answer(two, Ok("2".into())), Matched::Delivered);
        assert_eq!(acks.answer(two, Ok("2".into())), Matched::Late);
        assert_eq!(
            rx2.blocking_recv().ok().and_then(Result::ok).as_deref(),
            Some("2")
        );
        let (_, rx3) = acks.register(2).expect("room");
        acks.close();
        assert!(rx3.blocking_recv().is_err());
        assert_eq!(acks.register(2).err(), Some(Refused::Closed));
        assert_eq!(acks.pending(), 0);
    }
}

//! [`Signal`]: how a connection's reader is woken (a close was asked for, the writer task
//! ended). One waiter, any number of notifiers; a notification that finds nobody waiting is
//! kept until the next wait, like `tokio::sync::Notify::notify_one`.
//!
//! The reader waits on it inside the same poll as its socket read, so an idle connection
//! keeps no wait future for it: a `Notify`'s `Notified` was 64 bytes of every idle reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Wakes the waiter, or the next one to wait.
    pub(crate) fn notify(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready (and consumed) once notified since the last time it was ready.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A notification between the check and the registration woke the old waker (or
        // none): look again.
        if self.set.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    async fn notified(s: &Signal) {
        std::future::poll_fn(|cx| s.poll(cx)).await;
    }

    #[tokio::test]
    async fn a_notification_before_the_wait_is_kept_once() {
        let s = Signal::default();
        s.notify();
        s.notify();
        tokio::time::timeout(Duration::from_secs(5), notified(&s))
            .await
            .expect("kept");
        let waker = futures_util::task::noop_waker();
        assert!(s.poll(&mut Context::from_waker(&waker)).is_pending());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_is_woken_from_another_thread() {
        let s = Arc::new(Signal::default());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { notified(&s).await }
        });
        let notifier = std::thread::spawn({
            let s = s.clone();
            move || s.notify()
        });
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        notifier.join().expect("no panic");
    }
}

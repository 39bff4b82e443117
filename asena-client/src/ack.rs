//! Requests that await the server's reply, and answers to the server's requests
//! (acknowledgements; the wire format is `asena_protocol::ack`'s, the managed protocol's
//! its envelope with an `id` and the event `ack`).
//!
//! The client's own requests wait in a table bounded by [`MAX_PENDING`]; an entry leaves it
//! when the reply comes, when the caller stops waiting (its timeout, a dropped future), or
//! when the connection is lost (the caller gets [`ClientError::Lost`]: a reply could only
//! come on the connection the request went out on). A reply that matches no entry is
//! dropped and logged at DEBUG with its id.
//!
//! The server's requests go to the handler given to the builder (`on_request`), each in a
//! task of its own, so a slow handler holds up neither the connection nor the next request;
//! its reply (or its [`Failure`]) goes back with the request's id. At most
//! [`MAX_ANSWERING`] run at once: past it a request is answered `busy` at once. Without a handler a
//! request is answered at once with the failure `not_answered`.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asena_protocol::ack::Failure;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::ClientError;

/// How many of the client's requests may await a reply at once; one more fails at once
/// with [`ClientError::TooManyPending`].
pub const MAX_PENDING: usize = 1024;

/// How many of the server's requests the handler answers at once; one more is answered at
/// once with the failure `busy`, so a server cannot make the client run handlers without
/// bound.
pub const MAX_ANSWERING: usize = 64;

/// How long a request waits for its reply unless `.timeout(d)` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

type Answered = Result<Box<str>, Failure>;

/// The client's requests awaiting replies, shared by its handles and its task.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    last: u64,
    waiting: HashMap<u64, oneshot::Sender<Answered>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self) -> Result<(u64, oneshot::Receiver<Answered>), ClientError> {
        let mut table = self.lock();
        if table.waiting.len() >= MAX_PENDING {
            return Err(ClientError::TooManyPending { limit: MAX_PENDING });
        }
        table.last += 1;
        let id = table.last;
        let (tx, rx) = oneshot::channel();
        table.waiting.insert(id, tx);
        Ok((id, rx))
    }

    fn forget(&self, id: u64) {
        self.lock().waiting.remove(&id);
    }

    /// Hands a reply to the request `id`; `false` when none awaits it.
    pub(crate) fn settle(&self, id: u64, answered: Answered) -> bool {
        let waiting = self.lock().waiting.remove(&id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(answered);
                true
            }
            None => {
                tracing::debug!(target: "asena::client", id, "reply to no pending request ignored");
                false
            }
        }
    }

    /// The connection was lost: every waiting caller gets [`ClientError::Lost`].
    pub(crate) fn lost(&self) {
        let waiting = std::mem::take(&mut self.lock().waiting);
        drop(waiting);
    }
}

/// Forgets a request's entry however its caller stops waiting.
struct Forget<'a>(&'a Pending, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// Queues a request with its id on the connection's task.
type Queue =
    Box<dyn FnOnce(u64) -> Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>> + Send>;

/// A request to the server, sent when awaited: `.timeout(d)` sets how long it waits for the
/// reply ([`DEFAULT_TIMEOUT`] otherwise), `.await` gives the reply as `R`.
///
/// Fails with [`ClientError::NoAnswer`] (no reply in time; a late one is ignored),
/// [`ClientError::Lost`] (the connection was lost first), [`ClientError::Server`] (the server
/// answered with a failure, e.g. `handler_failed`, or a decode error's code),
/// [`ClientError::Reply`] (the reply does not decode into `R`),
/// [`ClientError::TooManyPending`] or [`ClientError::Closed`].
#[must_use = "a request is sent when awaited"]
pub struct ClientRequest<R> {
    pending: Arc<Pending>,
    send: Result<Queue, ClientError>,
    timeout: Duration,
    reply: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for ClientRequest<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequest")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<R> ClientRequest<R> {
    /// A request that queues `frame(id)` on `tx`.
    pub(crate) fn new<O: Send + 'static>(
        tx: mpsc::Sender<O>,
        pending: Arc<Pending>,
        frame: Result<impl FnOnce(u64) -> O + Send + 'static, ClientError>,
    ) -> Self {
        let send = frame.map(|frame| -> Queue {
            Box::new(move |id| {
                Box::pin(async move { tx.send(frame(id)).await.map_err(|_| ClientError::Closed) })
            })
        });
        ClientRequest {
            pending,
            send,
            timeout: DEFAULT_TIMEOUT,
            reply: PhantomData,
        }
    }

    /// How long to wait for the reply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for ClientRequest<R> {
    type Output = Result<R, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let send = self.send?;
            let (id, reply) = self.pending.register()?;
            let _forget = Forget(&self.pending, id);
            send(id).await?;
            match tokio::time::timeout(self.timeout, reply).await {
                Err(_) => Err(ClientError::NoAnswer {
                    waiting_for: "reply",
                    after: self.timeout,
                }),
                Ok(Err(_)) => Err(ClientError::Lost {
                    waiting_for: "reply",
                }),
                Ok(Ok(Err(failure))) => Err(ClientError::Server {
                    message: failure.message,
                    code: Some(failure.code),
                }),
                Ok(Ok(Ok(json))) => asena_protocol::channel::decode_json(json.as_bytes())
                    .map_err(ClientError::Reply),
            }
        })
    }
}

/// The type-erased handler of the server's requests: the request decoded, the reply as JSON.
pub(crate) type Handler<T> =
    Arc<dyn Fn(T) -> Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send>> + Send + Sync>;

/// Erases a handler `f` of requests `T` answering `Rep`.
pub(crate) fn handler<T, F, Fut, Rep>(f: F) -> Handler<T>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Rep, Failure>> + Send + 'static,
    Rep: Serialize,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_ANSWERING));
    Arc::new(move |request| {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let busy = Failure::new(
                "busy",
                format!("the client is answering {MAX_ANSWERING} requests already"),
            );
            return Box::pin(std::future::ready(Err(busy)));
        };
        let answer = f(request);
        Box::pin(async move {
            let _permit = permit;
            let reply = answer.await?;
            serde_json::to_value(reply).map_err(|e| {
                Failure::new(
                    "handler_failed",
                    format!("the reply does not serialize: {e}"),
                )
            })
        })
    })
}

/// Answers one request of the server in a task of its own: `request` (its JSON) decoded
/// into `T` and handed to the handler, whose reply (or the failure `not_answered` without a
/// handler, or the decode error's for a request that does not decode) is framed by `reply`
/// and queued on `outlet` unless the client is gone.
pub(crate) fn answer<T, O>(
    handler: Option<&Handler<T>>,
    request: &[u8],
    outlet: Option<&mpsc::WeakSender<O>>,
    reply: impl FnOnce(Result<Value, Failure>) -> Option<O> + Send + 'static,
) where
    T: DeserializeOwned + Send + 'static,
    O: Send + 'static,
{
    let Some(outlet) = outlet.cloned() else {
        return;
    };
    let request = asena_protocol::channel::decode_json::<T>(request)
        .map_err(|e| Failure::new(e.kind().code(), e.to_string()));
    let answering = match (handler, request) {
        (_, Err(failure)) => Err(failure),
        (None, Ok(_)) => Err(Failure::new(
            "not_answered",
            "this client answers no requests",
        )),
        (Some(handler), Ok(request)) => Ok(handler(request)),
    };
    tokio::spawn(async move {
        let answered = match answering {
            Ok(running) => running.await,
            Err(failure) => Err(failure),
        };
        if let (Some(frame), Some(outlet)) = (reply(answered), outlet.upgrade()) {
            let _ = outlet.send(frame).await;
        }
    });
}

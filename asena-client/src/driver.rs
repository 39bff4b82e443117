//! The background task behind a [`Client`](crate::Client): it owns the WebSocket, writes the
//! queued messages, decodes what arrives into events, pings, and reconnects.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::{Backoff, ClientError, Event};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a close handshake (ours or the server's) may take before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Everything needed to (re)connect, fixed at [`connect`](crate::ClientBuilder::connect).
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) path: &'static str,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) reconnect: Option<Backoff>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    /// The TLS configuration of a `wss://` URL; `None` for `ws://`.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// Opens the WebSocket, turning an HTTP answer other than 101 into [`ClientError::Refused`].
pub(crate) async fn connect(config: &Config) -> Result<Ws, ClientError> {
    let mut request =
        config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::BadUrl {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
    for (name, value) in &config.headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    let connector = match &config.tls {
        Some(tls) => Connector::Rustls(Arc::clone(tls)),
        None => Connector::Plain,
    };
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector));
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Err(_) => Err(ClientError::Timeout {
            url: config.url.clone(),
            after: config.connect_timeout,
        }),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => Err(ClientError::Refused {
            url: config.url.clone(),
            status: response.status(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Ok(Err(e @ tungstenite::Error::Tls(_))) => Err(ClientError::Tls {
            url: config.url.clone(),
            source: Box::new(e),
        }),
        Ok(Err(tungstenite::Error::Io(e))) if is_tls_error(&e) => Err(ClientError::Tls {
            url: config.url.clone(),
            source: Box::new(e),
        }),
        Ok(Err(e)) => Err(ClientError::Connect {
            url: config.url.clone(),
            source: Box::new(e),
        }),
    }
}

/// How one connection ended.
enum Ended {
    /// Lost: reconnect if the policy says so.
    Lost { code: Option<u16>, reason: String },
    /// Closed by the user (or the client was dropped): the task ends.
    Closed,
}

/// The task's state. Field order matters: when the task ends, `outgoing` is dropped before
/// `events`, so once the event stream has ended every send fails with [`ClientError::Closed`].
pub(crate) struct Driver<T> {
    pub(crate) config: Config,
    pub(crate) outgoing: mpsc::Receiver<WsMessage>,
    pub(crate) events: mpsc::Sender<Event<T>>,
    /// Resolves when the client asks to close (`Ok`) or is dropped (`Err`); both close.
    pub(crate) close: oneshot::Receiver<()>,
}

impl<T: DeserializeOwned + Send + 'static> Driver<T> {
    /// Drives `ws`, and the connections that replace it, until the client closes or gives up.
    pub(crate) async fn run(mut self, mut ws: Ws) {
        loop {
            let (code, reason) = match self.drive(&mut ws).await {
                Ended::Closed => return,
                Ended::Lost { code, reason } => (code, reason),
            };
            drop(ws);
            tracing::info!(
                target: "asena::client",
                url = %self.config.url,
                ?code,
                %reason,
                "connection lost"
            );
            if !self.emit(Event::Disconnected { code, reason }).await {
                return;
            }
            let Some(next) = self.reconnect().await else {
                return;
            };
            ws = next;
            tracing::info!(target: "asena::client", url = %self.config.url, "reconnected");
            if !self.emit(Event::Reconnected).await {
                self.close_ws(&mut ws).await;
                return;
            }
        }
    }

    /// One connection: messages in and out, pings, the liveness deadline.
    async fn drive(&mut self, ws: &mut Ws) -> Ended {
        // Without a heartbeat the timers exist but their branches are disabled.
        let heartbeat = self.config.heartbeat;
        let every = heartbeat.unwrap_or(Duration::from_secs(3600));
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let silence = every.saturating_mul(2);
        let dead = tokio::time::sleep(silence);
        tokio::pin!(dead);
        loop {
            // Unbiased: a flood in one direction must not starve the other.
            tokio::select! {
                _ = &mut self.close => return self.close_ws(ws).await,
                frame = ws.next() => {
                    let message = match frame {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => return Ended::Lost { code: None, reason: e.to_string() },
                        None => {
                            return Ended::Lost {
                                code: None,
                                reason: "the connection ended without a close frame".to_owned(),
                            };
                        }
                    };
                    let event = match message {
                        WsMessage::Text(text) => decode(text.as_str()),
                        WsMessage::Binary(bytes) => decode_bytes(&bytes),
                        WsMessage::Close(frame) => {
                            // tungstenite queued the reply; reading on sends it.
                            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                                while let Some(Ok(_)) = ws.next().await {}
                            })
                            .await;
                            return match frame {
                                Some(frame) => Ended::Lost {
                                    code: Some(frame.code.into()),
                                    reason: frame.reason.to_string(),
                                },
                                None => Ended::Lost { code: None, reason: "closed by the server".to_owned() },
                            };
                        }
                        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => None,
                    };
                    if let Some(event) = event
                        && !self.emit(event).await
                    {
                        return self.close_ws(ws).await;
                    }
                    dead.as_mut().reset(Instant::now() + silence);
                }
                message = self.outgoing.recv() => {
                    let Some(message) = message else {
                        // Every sender is gone, so the client is too.
                        return self.close_ws(ws).await;
                    };
                    if let Err(reason) = write(ws, message, heartbeat.map(|d| d * 2)).await {
                        return Ended::Lost { code: None, reason };
                    }
                }
                _ = ping.tick(), if heartbeat.is_some() => {
                    if let Err(reason) = write(ws, WsMessage::Ping(Default::default()), heartbeat.map(|d| d * 2)).await {
                        return Ended::Lost { code: None, reason };
                    }
                }
                () = &mut dead, if heartbeat.is_some() => {
                    return Ended::Lost {
                        code: None,
                        reason: format!(
                            "no frame from the server for {silence:?} (2 heartbeat intervals); the connection is dead"
                        ),
                    };
                }
            }
        }
    }

    /// Sends what is queued, then closes with 1000 and waits (bounded) for the server's reply.
    async fn close_ws(&mut self, ws: &mut Ws) -> Ended {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Ok(message) = self.outgoing.try_recv() {
                ws.feed(message).await?;
            }
            ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await?;
            while let Some(Ok(_)) = ws.next().await {}
            Ok::<(), tungstenite::Error>(())
        })
        .await;
        Ended::Closed
    }

    /// Waits, connects, and again, as the backoff says; `None` when closed or out of attempts.
    async fn reconnect(&mut self) -> Option<Ws> {
        let mut delays = self.config.reconnect?.delays();
        let mut attempt = 0u32;
        let config = &self.config;
        loop {
            let delay = delays.next()?;
            attempt = attempt.saturating_add(1);
            let result = tokio::select! {
                biased;
                _ = &mut self.close => return None,
                result = async {
                    tokio::time::sleep(delay).await;
                    connect(config).await
                } => result,
            };
            let error = match result {
                Ok(ws) => return Some(ws),
                Err(error) => error,
            };
            tracing::debug!(
                target: "asena::client",
                url = %config.url,
                attempt,
                error = %error,
                "reconnect failed"
            );
            if config.reconnect?.attempts_limit() == Some(attempt) {
                tracing::warn!(
                    target: "asena::client",
                    url = %config.url,
                    attempts = attempt,
                    error = %error,
                    "giving up reconnecting"
                );
                self.emit(Event::GaveUp {
                    attempts: attempt,
                    error,
                })
                .await;
                return None;
            }
        }
    }

    /// Hands an event to the client; `false` when the client is gone.
    async fn emit(&self, event: Event<T>) -> bool {
        self.events.send(event).await.is_ok()
    }
}

/// Writes one message, bounded by `limit` when the heartbeat is on.
async fn write(ws: &mut Ws, message: WsMessage, limit: Option<Duration>) -> Result<(), String> {
    let send = ws.send(message);
    let result = match limit {
        Some(limit) => tokio::time::timeout(limit, send)
            .await
            .map_err(|_| format!("a write stalled for {limit:?}; the connection is dead"))?,
        None => send.await,
    };
    result.map_err(|e| e.to_string())
}

fn decode<T: DeserializeOwned>(text: &str) -> Option<Event<T>> {
    Some(match serde_json::from_str(text) {
        Ok(message) => Event::Message(message),
        Err(error) => Event::Undecodable {
            text: text.to_owned(),
            error,
        },
    })
}

fn decode_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Option<Event<T>> {
    Some(match serde_json::from_slice(bytes) {
        Ok(message) => Event::Message(message),
        Err(error) => Event::Undecodable {
            text: String::from_utf8_lossy(bytes).into_owned(),
            error,
        },
    })
}

/// Whether an I/O error from the handshake is rustls's (tokio-rustls reports a refused
/// certificate as an I/O error of kind `InvalidData` wrapping the `rustls::Error`).
fn is_tls_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

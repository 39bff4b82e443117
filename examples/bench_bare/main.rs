//! The fan-out benchmark protocol as a bare axum program (no framework), the baseline the
//! framework is compared with in `scripts/bench.sh`.
//!
//! Every client connects to `ws://127.0.0.1:$PORT/bench` (any path works; query ignored), is in
//! one room, and every text message it sends goes unchanged to the whole room, sender
//! included. Each connection has an unbounded mpsc queue and a writer task that drains
//! everything queued, feeds it to the socket and flushes once (batched writes). The read
//! buffer is 4 KiB (tungstenite's default 128 KiB would dominate idle memory).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

/// Largest number of queued messages taken per batch.
const BATCH: usize = 1024;

/// The one room: every connection's queue, by connection id.
#[derive(Debug, Default)]
struct Room {
    members: RwLock<HashMap<u64, mpsc::UnboundedSender<Message>>>,
    next_id: AtomicU64,
}

impl Room {
    fn join(&self, tx: mpsc::UnboundedSender<Message>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        id
    }

    fn leave(&self, id: u64) {
        self.members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn publish(&self, msg: &Message) {
        for tx in self
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = tx.send(msg.clone());
        }
    }
}

async fn upgrade(ws: WebSocketUpgrade, State(room): State<Arc<Room>>) -> Response {
    ws.read_buffer_size(4096)
        .on_upgrade(move |socket| connection(socket, room))
}

async fn connection(socket: WebSocket, room: Arc<Room>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let id = room.join(tx);
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(16);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            for msg in batch.drain(..) {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            if batch.capacity() > 64 {
                batch = Vec::with_capacity(16);
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(_) => room.publish(&msg),
            Message::Close(_) => break,
            _ => {}
        }
    }
    room.leave(id);
    writer.abort();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let app = Router::new()
        .fallback(any(upgrade))
        .with_state(Arc::new(Room::default()));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    eprintln!(
        "bench_bare pid {} listening ws://127.0.0.1:{port}/bench",
        std::process::id()
    );
    axum::serve(listener, app).await?;
    Ok(())
}

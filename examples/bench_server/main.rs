//! Fan-out benchmark server built with the framework (see `scripts/bench.sh`).
//!
//! Protocol: every client connects to `ws://127.0.0.1:$PORT/bench` (query ignored), is
//! subscribed to one room, and every text message it sends goes unchanged to the whole room,
//! sender included. `PORT` defaults to 3000; the runtime is multi-threaded (one worker per
//! core unless `TOKIO_WORKER_THREADS` says otherwise).

use asena_runtime::prelude::*;

/// The one room every socket joins.
const ROOM: &str = "room";

/// The benchmark service: one room, echo-to-everyone.
#[websocket(path = "/bench")]
struct BenchSocket;

impl WebSocketService for BenchSocket {
    type Data = ();

    async fn on_open(&self, ws: &Socket<()>) -> Result<()> {
        ws.subscribe(ROOM);
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<()>, msg: Message) -> Result<()> {
        if let Message::Text(_) = &msg {
            ws.namespace().to(ROOM, &msg)?;
        }
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let app = Asena::builder()
        // Idle benchmark connections must survive the whole run.
        .idle_timeout(None)
        .build()
        .await?;
    eprintln!(
        "bench_server pid {} listening ws://127.0.0.1:{port}/bench",
        std::process::id()
    );
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

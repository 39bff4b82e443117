//! `cargo run --example realtime`, then open http://127.0.0.1:3000 (sign in with
//! `alice-token` or `bob-token`).
//!
//! `cargo run --example realtime -- --asyncapi` prints the protocol as an AsyncAPI 3.0
//! document. `PORT` changes the port; `AUTH_TIMEOUT_MS` and `HEARTBEAT_TIMEOUT_MS` the
//! managed protocol's timeouts; `ASENA_TRANSPORT=redis://127.0.0.1:6379` lets several
//! instances share users, rooms, broadcasts and presence.

mod app;
#[path = "../launch.rs"]
mod launch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(port) = launch::start(app::builder, "info", "3000").await? else {
        return Ok(());
    };
    let options = app::Options::from_env()?;
    let app = app::build(app::builder().transport_from_env()?, options).await?;
    tracing::info!("realtime on http://127.0.0.1:{port}/ (managed WebSocket /ws)");
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

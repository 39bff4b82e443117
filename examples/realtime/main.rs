//! `cargo run --example realtime`, then open http://127.0.0.1:3000 (sign in with
//! `alice-token` or `bob-token`).
//!
//! `cargo run --example realtime -- --asyncapi` prints the protocol as an AsyncAPI 3.0
//! document. `PORT` changes the port; `AUTH_TIMEOUT_MS` and `HEARTBEAT_TIMEOUT_MS` the
//! managed protocol's timeouts; `ASENA_TRANSPORT=redis://127.0.0.1:6379` lets several
//! instances share users, rooms, broadcasts and presence.

use clap::Parser;

mod app;

/// Serves the example; `--asyncapi` prints its protocol instead.
#[derive(Parser)]
struct Cli {
    /// Print the protocol as an AsyncAPI 3.0 document on stdout instead of serving.
    #[arg(long)]
    asyncapi: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if Cli::parse().asyncapi {
        // The protocol as an AsyncAPI 3.0 document, on stdout.
        return Ok(app::builder().build().await?.print_asyncapi()?);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let options = app::Options::from_env()?;
    let app = app::build(app::builder().transport_from_env()?, options).await?;
    tracing::info!("realtime on http://127.0.0.1:{port}/ (managed WebSocket /ws)");
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

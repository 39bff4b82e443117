//! `cargo run --example auth`, then connect to
//! `ws://127.0.0.1:3000/private?token=valid-token` (or send `Authorization: Bearer valid-token`).
//!
//! `/secure` shows a chain of three middlewares: logging, auth and a per-IP rate limit.
//! `cargo run --example auth -- --asyncapi` prints the protocol as an AsyncAPI 3.0 document.
//! `PORT` changes the port; `ASENA_TRANSPORT=redis://127.0.0.1:6379` (or `nats://…`) lets
//! several instances share rooms.

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
    let app = app::builder().transport_from_env()?.build().await?;
    tracing::info!(
        "auth on ws://127.0.0.1:{port}/private?token=valid-token and ws://127.0.0.1:{port}/secure"
    );
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

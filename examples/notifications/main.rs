//! `cargo run --example notifications`, then connect to
//! `ws://127.0.0.1:3000/ws/notifications?userId=42` and, from another terminal:
//!
//! ```text
//! curl -X POST localhost:3000/admin/announcement -H 'content-type: application/json' -d '{"message":"hi"}'
//! curl -X PUT localhost:3000/users/42/profile -H 'content-type: application/json' -d '{"name":"Ada"}'
//! ```
//!
//! `cargo run --example notifications -- --asyncapi` prints the protocol as an AsyncAPI 3.0 document.
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
        "notifications on ws://127.0.0.1:{port}/ws/notifications?userId=X, \
         POST /admin/announcement, PUT /users/{{id}}/profile"
    );
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

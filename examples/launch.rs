//! How the example apps start, shared by their `main.rs`: `--asyncapi` prints the app's
//! protocol as an AsyncAPI 3.0 document on stdout instead of serving (with the server
//! `local`, `ws://127.0.0.1:$PORT`); otherwise the log goes
//! to stderr (`RUST_LOG`, else the example's default level) and the app serves on
//! `127.0.0.1:$PORT`.

use asena_runtime::AsenaBuilder;
use asena_runtime::asyncapi::ServerSpec;
use clap::Parser;

/// Serves the example; `--asyncapi` prints its protocol instead.
#[derive(Parser)]
struct Cli {
    /// Print the protocol as an AsyncAPI 3.0 document on stdout instead of serving.
    #[arg(long)]
    asyncapi: bool,
}

/// Reads the flags. With `--asyncapi`, prints the protocol of the app `builder` makes and
/// returns `None`; otherwise installs the log subscriber (`RUST_LOG`, else `default_log`)
/// and returns the port to serve on (`PORT`, else `default_port`).
pub async fn start(
    builder: impl FnOnce() -> AsenaBuilder,
    default_log: &str,
    default_port: &str,
) -> anyhow::Result<Option<String>> {
    let port = std::env::var("PORT").unwrap_or_else(|_| default_port.into());
    if Cli::parse().asyncapi {
        let local = ServerSpec::new("local", format!("127.0.0.1:{port}"), "ws");
        builder()
            .asyncapi_server(local)
            .build()
            .await?
            .print_asyncapi()?;
        return Ok(None);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_log.into()),
        )
        .init();
    Ok(Some(port))
}

/// The whole `main` of an example that serves its `builder` as it is, with the transport
/// `ASENA_TRANSPORT` names: [`start`] (log level `info`, port 3000 by default), then build and
/// serve, logging `banner(port)` once it listens.
#[allow(
    dead_code,
    reason = "each example includes this file; not all of them serve this way"
)]
pub async fn serve(
    builder: impl Fn() -> AsenaBuilder,
    banner: impl FnOnce(&str) -> String,
) -> anyhow::Result<()> {
    let Some(port) = start(&builder, "info", "3000").await? else {
        return Ok(());
    };
    let app = builder().transport_from_env()?.build().await?;
    tracing::info!("{}", banner(&port));
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

//! `cargo run`, then connect to `ws://127.0.0.1:3000/ws?name=ada` and, from another terminal,
//! `curl -d 'hello' 127.0.0.1:3000/announce`.
//!
//! `PORT` changes the port; `ASENA_TRANSPORT=redis://127.0.0.1:6379` (or `nats://…`) lets
//! several instances share rooms.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let app = my_app::app().transport_from_env()?.build().await?;
    tracing::info!("listening on ws://127.0.0.1:{port}/ws?name=NAME and POST /announce");
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

//! `cargo run --example chat`, then open http://127.0.0.1:3000 in two browser tabs.
//!
//! `cargo run --example chat -- --asyncapi` prints the protocol as an AsyncAPI 3.0 document.
//! `PORT` changes the port; `ASENA_TRANSPORT=redis://127.0.0.1:6379` (or `nats://…`) lets
//! several instances share rooms; `ASENA_HISTORY=redis://127.0.0.1:6379` makes every room
//! keep its last 100 messages there, and the page, when its connection drops, connects again
//! and gets what it missed.
//!
//! The live inspector is at `/_asena`, guarded by the token in `ASENA_INSPECTOR_TOKEN` (its
//! page asks for it); when it is unset a random token is made and printed at startup. Prometheus metrics are at `/metrics`.

mod app;
#[path = "../launch.rs"]
mod launch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(port) = launch::start(app::builder_with_presence, "info", "3000").await? else {
        return Ok(());
    };
    let (token, generated) = match std::env::var("ASENA_INSPECTOR_TOKEN") {
        Ok(token) if !token.trim().is_empty() => (token.trim().to_owned(), false),
        _ => (uuid::Uuid::new_v4().simple().to_string(), true),
    };
    let builder = app::builder_with_inspector(&token).transport_from_env()?;
    let builder = match std::env::var("ASENA_HISTORY") {
        Ok(url) if !url.trim().is_empty() => {
            builder.history(asena_runtime::history::HistoryOptions::redis(url.trim()))
        }
        _ => builder,
    };
    let app = builder.build().await?;
    tracing::info!("chat on http://127.0.0.1:{port}/ (WebSocket /chat)");
    if generated {
        tracing::info!(
            "inspector on http://127.0.0.1:{port}{}, sign in with the token {token} (set ASENA_INSPECTOR_TOKEN to choose it)",
            app::INSPECTOR_PATH
        );
    } else {
        tracing::info!(
            "inspector on http://127.0.0.1:{port}{}, sign in with ASENA_INSPECTOR_TOKEN",
            app::INSPECTOR_PATH
        );
    }
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}

//! `cargo run --example auth`, then connect to
//! `ws://127.0.0.1:3000/private?token=valid-token` (or send `Authorization: Bearer valid-token`).
//!
//! `/secure` shows a chain of three middlewares: logging, auth and a per-IP rate limit.
//! `cargo run --example auth -- --asyncapi` prints the protocol as an AsyncAPI 3.0 document.
//! `PORT` changes the port; `ASENA_TRANSPORT=redis://127.0.0.1:6379` (or `nats://…`) lets
//! several instances share rooms.

mod app;
#[path = "../launch.rs"]
mod launch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    launch::serve(app::builder, |port| {
        format!(
            "auth on ws://127.0.0.1:{port}/private?token=valid-token and ws://127.0.0.1:{port}/secure"
        )
    })
    .await
}

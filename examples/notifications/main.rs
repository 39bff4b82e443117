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

mod app;
#[path = "../launch.rs"]
mod launch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    launch::serve(app::builder, |port| {
        format!(
            "notifications on ws://127.0.0.1:{port}/ws/notifications?userId=X, \
             POST /admin/announcement, PUT /users/{{id}}/profile"
        )
    })
    .await
}

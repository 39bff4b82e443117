//! The client side of the `chat` example (`examples/chat/app.rs`), for the tests that run it.

use serde_json::{Value, json};

use crate::{Client, TestServer};

/// Connects to `/chat` as `user` in `room` and returns the client and its `welcome`.
pub async fn join(server: &TestServer, user: &str, room: &str) -> anyhow::Result<(Client, Value)> {
    let mut client = server
        .connect(&format!("/chat?username={user}&room={room}"))
        .await?;
    let welcome = client.recv_json().await?;
    Ok((client, welcome))
}

/// `from` sends `message` privately to the socket `to_id`; returns the next message `to`
/// (that socket's client) receives.
pub async fn private(
    from: &mut Client,
    to: &mut Client,
    to_id: &str,
    message: &str,
) -> anyhow::Result<Value> {
    from.send_json(&json!({"type": "private", "to": to_id, "message": message}))
        .await?;
    to.recv_json().await
}

/// The `private_message` a socket receives when `from` sends it `message`.
pub fn private_message(from: &str, message: &str) -> Value {
    json!({"type": "private_message", "from": from, "message": message})
}

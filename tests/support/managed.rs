//! Helpers for tests of managed services: the socket id a `connected` event carries, the
//! `U-token` admission and logins, the untyped sender of an app's managed service, and the
//! wait for one event of a managed connection.

use anyhow::Context as _;
use asena_runtime::managed::{Authenticated, Managed, ManagedService};
use serde_json::Value;

use crate::{Client, TestServer, WAIT, in_order, managed_login};

/// The socket id of a managed `connected` event (its `data.id`).
pub fn connected_id(connected: &Value) -> anyhow::Result<String> {
    connected["data"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no id in {connected}"))
}

/// The user a `{"token": "U-token"}` credential names: U, or nobody for any other
/// credential.
pub fn token_user(credentials: &Value) -> Option<Authenticated> {
    credentials["token"]
        .as_str()
        .and_then(|t| t.strip_suffix("-token"))
        .map(Authenticated::user)
}

/// The untyped managed sender ([`Managed::raw`]) of the service `S` of `server`'s app.
pub fn raw_sender<S: ManagedService>(server: &TestServer) -> anyhow::Result<Managed> {
    let ulak = server
        .app
        .ulak::<S>()
        .with_context(|| format!("{} is not registered", std::any::type_name::<S>()))?;
    Ok(ulak.managed().raw())
}

/// Logs in to the managed service at `path` once per token, in order, each with
/// `{"type": "token", "token": T}` ([`managed_login`]); returns the clients.
pub async fn token_logins<const N: usize>(
    server: &TestServer,
    path: &str,
    tokens: [&str; N],
) -> anyhow::Result<[Client; N]> {
    in_order(tokens, async |token| {
        let credentials = serde_json::json!({"type": "token", "token": token});
        Ok(managed_login(server, path, credentials).await?.0)
    })
    .await
}

/// `server` with each of `users` logged in, in order, to its managed service at `path` with
/// the token `U-token` ([`token_logins`]); returns the server and the clients.
pub async fn with_token_users<const N: usize>(
    server: TestServer,
    path: &str,
    users: [&str; N],
) -> anyhow::Result<(TestServer, [Client; N])> {
    let tokens = users.map(|user| format!("{user}-token"));
    let clients = token_logins(&server, path, tokens.each_ref().map(String::as_str)).await?;
    Ok((server, clients))
}

/// The next message of `client` whose event is `event`, skipping the others, within
/// [`WAIT`].
pub async fn next_event(client: &mut Client, event: &str) -> anyhow::Result<Value> {
    tokio::time::timeout(WAIT, async {
        loop {
            let message = client.recv_json().await?;
            if message["event"] == event {
                return Ok(message);
            }
        }
    })
    .await
    .with_context(|| format!("no {event:?} event"))?
}

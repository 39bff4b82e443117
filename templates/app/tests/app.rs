//! The app over real sockets: it runs on a free port and the tests talk to it as clients do.
//! Every wait has a timeout, so a broken app fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(5);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Builds the app as `main` does and serves it on `127.0.0.1:0`.
async fn start() -> anyhow::Result<SocketAddr> {
    let server = my_app::app().build().await?.listen("127.0.0.1:0").await?;
    let addr = server.local_addr();
    tokio::spawn(server.run());
    Ok(addr)
}

/// Connects as `name` and reads the welcome.
async fn join(addr: SocketAddr, name: &str) -> anyhow::Result<Client> {
    let (mut ws, _) = timeout(WAIT, connect_async(format!("ws://{addr}/ws?name={name}"))).await??;
    assert_eq!(
        recv(&mut ws).await?,
        json!({"type": "welcome", "name": name})
    );
    Ok(ws)
}

/// The next text message, as JSON.
async fn recv(ws: &mut Client) -> anyhow::Result<Value> {
    loop {
        match timeout(WAIT, ws.next()).await?.context("socket closed")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => bail!("expected text, got {other:?}"),
        }
    }
}

/// A plain HTTP/1.1 POST; returns the whole response.
async fn post(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<String> {
    let mut tcp = timeout(WAIT, TcpStream::connect(addr)).await??;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    timeout(WAIT, tcp.write_all(request.as_bytes())).await??;
    let mut response = String::new();
    timeout(WAIT, tcp.read_to_string(&mut response)).await??;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_without_a_name_is_refused() -> anyhow::Result<()> {
    let addr = start().await?;
    let refused = timeout(WAIT, connect_async(format!("ws://{addr}/ws"))).await?;
    let Err(WsError::Http(response)) = refused else {
        bail!("the upgrade was not refused over HTTP");
    };
    assert_eq!(response.status(), 401);
    Ok(())
}

/// Starts the app with ada and bob in the lobby.
async fn ada_and_bob() -> anyhow::Result<(SocketAddr, [Client; 2])> {
    let addr = start().await?;
    let ada = join(addr, "ada").await?;
    let bob = join(addr, "bob").await?;
    Ok((addr, [ada, bob]))
}

/// Checks that every client in `lobby` receives `expected` next.
async fn everyone_receives(lobby: &mut [Client], expected: Value) -> anyhow::Result<()> {
    for ws in lobby {
        assert_eq!(recv(ws).await?, expected);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_whole_lobby() -> anyhow::Result<()> {
    let (_, mut lobby) = ada_and_bob().await?;
    let [ada, _] = &mut lobby;
    timeout(WAIT, ada.send(Message::text("hi"))).await??;
    everyone_receives(
        &mut lobby,
        json!({"type": "message", "from": "ada", "text": "hi"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_reaches_the_whole_lobby() -> anyhow::Result<()> {
    let (addr, mut lobby) = ada_and_bob().await?;
    let response = post(addr, "/announce", "doors close at ten").await?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    everyone_receives(
        &mut lobby,
        json!({"type": "announcement", "text": "doors close at ten"}),
    )
    .await
}

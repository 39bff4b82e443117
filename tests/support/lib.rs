//! Shared fixture of the user's-eye test suite: start apps on `127.0.0.1:0`, connect real
//! WebSocket clients, and receive with a timeout on every wait.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use asena_runtime::{Asena, AsenaBuilder};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Installs a test log subscriber once (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running app on an ephemeral port.
#[derive(Debug)]
pub struct TestServer {
    pub app: Asena,
    pub addr: SocketAddr,
    handle: Option<JoinHandle<Result<(), asena_runtime::Error>>>,
}

/// Builds `builder` and serves it on `127.0.0.1:0`.
pub async fn start(builder: AsenaBuilder) -> anyhow::Result<TestServer> {
    init_tracing();
    let app = builder.build().await?;
    serve(app).await
}

/// Serves an already built app on `127.0.0.1:0`.
pub async fn serve(app: Asena) -> anyhow::Result<TestServer> {
    let server = app.listen("127.0.0.1:0").await?;
    let addr = server.local_addr();
    let handle = tokio::spawn(server.run());
    Ok(TestServer {
        app,
        addr,
        handle: Some(handle),
    })
}

impl TestServer {
    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Connects a client to `path` (which may carry a query).
    pub async fn connect(&self, path: &str) -> anyhow::Result<Client> {
        Client::connect(&self.ws_url(path)).await
    }

    /// Shuts the app down and waits for the server task.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(20), self.app.shutdown())
            .await
            .context("shutdown timed out")?;
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(WAIT, h)
                .await
                .context("server task did not end")???;
        }
        Ok(())
    }
}

/// A real WebSocket client (tokio-tungstenite).
#[derive(Debug)]
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> anyhow::Result<Client> {
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .context("connect timed out")??;
        Ok(Client { ws })
    }

    /// Connects with extra request headers.
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Client> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes())?,
                tungstenite::http::HeaderValue::from_str(v)?,
            );
        }
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .context("connect timed out")??;
        Ok(Client { ws })
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(WsMessage::text(text)).await?;
        Ok(())
    }

    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(WsMessage::binary(data)).await?;
        Ok(())
    }

    /// The next data message (pings and pongs skipped); fails on close or timeout.
    pub async fn recv(&mut self) -> anyhow::Result<WsMessage> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("timed out waiting for a message")?
                .context("stream ended")??;
            match msg {
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                WsMessage::Close(frame) => bail!("socket closed: {frame:?}"),
                other => return Ok(other),
            }
        }
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> anyhow::Result<String> {
        match self.recv().await? {
            WsMessage::Text(t) => Ok(t.to_string()),
            other => bail!("expected text, got {other:?}"),
        }
    }

    /// The next text message parsed as JSON.
    pub async fn recv_json(&mut self) -> anyhow::Result<Value> {
        let text = self.recv_text().await?;
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
    }

    /// Skips messages until one whose `type` is `ty`.
    pub async fn recv_type(&mut self, ty: &str) -> anyhow::Result<Value> {
        loop {
            let v = self.recv_json().await?;
            if v["type"] == ty {
                return Ok(v);
            }
        }
    }

    /// Waits for the server's close frame (skipping data) and returns its code and reason.
    pub async fn recv_close(&mut self) -> anyhow::Result<(u16, String)> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("timed out waiting for close")?;
            match next {
                Some(Ok(WsMessage::Close(Some(CloseFrame { code, reason })))) => {
                    return Ok((u16::from(code), reason.to_string()));
                }
                Some(Ok(WsMessage::Close(None))) => return Ok((1005, String::new())),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("error before close frame: {e}"),
                None => bail!("stream ended without close frame"),
            }
        }
    }

    /// Sends a close frame and waits for the server's answer.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.ws.close(None).await?;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        Ok(())
    }
}

/// Polls `check` until it holds (every 5 ms, at most [`WAIT`]); for state the server updates
/// after a socket event, such as namespace counts after a disconnect.
pub async fn eventually(mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            bail!("condition not reached within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// A raw HTTP/1.1 GET with WebSocket upgrade headers; returns status line, headers and body
/// (for requests the server rejects before upgrading).
pub async fn upgrade_request(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await??;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    // The server answers and keeps the connection open; read until the body is complete.
    let response = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if head.starts_with("HTTP/1.1 101") || body.len() >= len {
                    break;
                }
            }
        }
        anyhow::Ok(String::from_utf8_lossy(&buf).to_string())
    })
    .await
    .context("timed out reading HTTP response")??;
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((status, response))
}

/// The body of a raw HTTP response.
pub fn body_of(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

/// Values of a header in a raw HTTP response, in order.
pub fn header_values(response: &str, name: &str) -> Vec<String> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// The body of a raw HTTP response parsed as JSON (panics with the response when it is not).
pub fn json_body(response: &str) -> Value {
    serde_json::from_str(body_of(response))
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {response}"))
}

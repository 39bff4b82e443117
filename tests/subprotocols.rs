//! WebSocket subprotocols (`Sec-WebSocket-Protocol`, RFC 6455 §4.2.2) over real sockets: the
//! client's order decides among the protocols a service speaks, repeated headers and comma
//! lists are one offer, no offer or an unsupported one connects without a protocol unless the
//! service requires one (then 400 before any middleware, no socket), and middleware and
//! `on_open` see the choice that the 101 announces.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, ensure};
use asena_runtime::AsenaBuilder;
use asena_runtime::prelude::*;
use asena_tests::tungstenite::client::IntoClientRequest;
use asena_tests::{
    Client, TestServer, WAIT, header_values, isolated, json_body, start, upgrade_request,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Components

/// What `SeeProtocol` read from the request: the client's offer (every header value, in
/// order) and the protocol chosen before the chain ran.
#[derive(Debug, Clone, Default, Serialize)]
struct Seen {
    offer: Vec<String>,
    chosen: Option<String>,
}

/// Records the offer and the choice as the socket's values; counts its runs.
#[middleware]
struct SeeProtocol {
    runs: AtomicUsize,
}

impl Middleware for SeeProtocol {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let offer = ctx
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let chosen = ctx.protocol().map(str::to_owned);
        ctx.set_websocket_value(Seen { offer, chosen });
        next.run(ctx).await
    }
}

/// Tries to answer a protocol of its own; the framework's choice replaces it.
#[middleware]
struct Impostor;

impl Middleware for Impostor {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        ctx.response_headers_mut()
            .insert("sec-websocket-protocol", "rogue".parse().unwrap());
        next.run(ctx).await
    }
}

/// Sends what the socket and the middleware (`seen`, the socket's data) saw as the first
/// message.
fn hello(ws: &SocketRef, seen: &Seen) -> Result<()> {
    ws.send_json(&json!({"protocol": ws.protocol(), "seen": seen}))?;
    Ok(())
}

/// Declares a service `$name` at `$path` behind [`SeeProtocol`] and [`Impostor`] that counts
/// its opens and says [`hello`]; `$protocols` are the constants of its impl that declare its
/// subprotocols.
macro_rules! protocol_service {
    ($name:ident, $path:literal, { $($protocols:tt)* }) => {
        #[websocket(path = $path, middlewares = [SeeProtocol, Impostor])]
        struct $name {
            opened: AtomicUsize,
        }

        impl WebSocketService for $name {
            type Data = Seen;
            $($protocols)*

            async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
                self.opened.fetch_add(1, Ordering::SeqCst);
                hello(ws, &ws.data().values)
            }
            async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
                Ok(())
            }
        }
    };
}

// Speaks `chat.v2` (listed first) and `chat.v1`; lets other clients in without one.
protocol_service!(Chat, "/chat", {
    const PROTOCOLS: &'static [&'static str] = &["chat.v2", "chat.v1"];
});

// The same protocols, required.
protocol_service!(Strict, "/strict", {
    const PROTOCOLS: &'static [&'static str] = &["chat.v2", "chat.v1"];
    const REQUIRE_PROTOCOL: bool = true;
});

// Declares no protocols.
protocol_service!(Plain, "/plain", {});

fn base() -> AsenaBuilder {
    isolated()
        .middleware::<SeeProtocol>()
        .middleware::<Impostor>()
}

fn count<T: asena_runtime::di::Component>(
    s: &TestServer,
    get: impl Fn(&T) -> &AtomicUsize,
) -> usize {
    get(&s.app.get::<T>().expect("registered")).load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------
// Clients

/// Connects with tokio-tungstenite, offering `offer` as one `Sec-WebSocket-Protocol` header
/// when given; returns the client and the 101's `Sec-WebSocket-Protocol` values.
async fn connect(
    s: &TestServer,
    path: &str,
    offer: Option<&str>,
) -> anyhow::Result<(Client, Vec<String>)> {
    let mut req = s.ws_url(path).into_client_request()?;
    if let Some(offer) = offer {
        req.headers_mut()
            .insert("sec-websocket-protocol", offer.parse()?);
    }
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .context("connect timed out")??;
    let protocols = resp
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    Ok((Client { ws }, protocols))
}

/// A handshake written by hand, with one `Sec-WebSocket-Protocol` line per entry of
/// `offers`: tokio-tungstenite sends one line only, and refuses an answer without a protocol
/// once it offered some (RFC 6455 §4.1 allows it; browsers accept it). Expects a 101 and
/// returns its `Sec-WebSocket-Protocol` values and the first message, as JSON.
async fn raw_open(
    addr: SocketAddr,
    path: &str,
    offers: &[&str],
) -> anyhow::Result<(Vec<String>, Value)> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for offer in offers {
        request.push_str(&format!("Sec-WebSocket-Protocol: {offer}\r\n"));
    }
    request.push_str("\r\n");
    tokio::time::timeout(WAIT, async {
        let mut stream = BufReader::new(TcpStream::connect(addr).await?);
        stream.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        stream.read_line(&mut status).await?;
        ensure!(
            status.starts_with("HTTP/1.1 101 "),
            "not upgraded: {status}"
        );
        let mut protocols = Vec::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("sec-websocket-protocol")
            {
                protocols.push(value.trim().to_owned());
            }
        }
        // The first frame: unmasked text, short enough for at most a 16-bit length.
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        ensure!(head[0] == 0x81, "expected a final text frame, got {head:?}");
        let len = match head[1] {
            126 => usize::from(stream.read_u16().await?),
            n => {
                ensure!(n < 126, "unexpected frame length byte {n}");
                usize::from(n)
            }
        };
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await?;
        Ok((protocols, serde_json::from_slice(&payload)?))
    })
    .await
    .context("raw handshake timed out")?
}

// ---------------------------------------------------------------------------------------
// Selection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_first_supported_protocol_wins_over_the_services_order() -> anyhow::Result<()> {
    let s = start(base().websocket::<Chat>()).await?;
    let cases = [
        // The service lists chat.v2 first; the client's order decides.
        ("chat.v1, chat.v2", "chat.v1"),
        ("chat.v2, chat.v1", "chat.v2"),
        ("x.unknown, chat.v1", "chat.v1"),
        ("chat.v1,x.unknown,chat.v2", "chat.v1"),
        ("chat.v2", "chat.v2"),
    ];
    for (offer, expected) in cases {
        let (mut c, protocols) = connect(&s, "/chat", Some(offer)).await?;
        // Exactly the chosen one: Impostor's header was replaced.
        assert_eq!(protocols, [expected], "offer {offer:?}");
        let open = c.recv_json().await?;
        assert_eq!(open["protocol"], expected, "offer {offer:?}");
        assert_eq!(
            open["seen"],
            json!({"offer": [offer], "chosen": expected}),
            "offer {offer:?}"
        );
        c.close().await?;
    }
    assert_eq!(count::<Chat>(&s, |c| &c.opened), cases.len());
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_headers_and_comma_lists_are_one_offer_in_order() -> anyhow::Result<()> {
    let s = start(base().websocket::<Chat>()).await?;
    let cases: [(&[&str], &str); 4] = [
        (&["x.unknown", "chat.v1", "chat.v2"], "chat.v1"),
        (&["x.unknown,", ", chat.v2 ,", "chat.v1"], "chat.v2"),
        (&["x, y", "chat.v2,chat.v1"], "chat.v2"),
        (&["CHAT.V2, chat", "chat.v1"], "chat.v1"),
    ];
    for (offers, expected) in cases {
        let (protocols, open) = raw_open(s.addr, "/chat", offers).await?;
        assert_eq!(protocols, [expected], "offers {offers:?}");
        assert_eq!(open["protocol"], expected, "offers {offers:?}");
        assert_eq!(open["seen"]["chosen"], expected, "offers {offers:?}");
        // Middleware sees every header value (trimmed by the HTTP parser), in order.
        let sent: Vec<&str> = offers.iter().map(|o| o.trim()).collect();
        assert_eq!(open["seen"]["offer"], json!(sent), "offers {offers:?}");
    }
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// No agreement

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_offer_the_101_names_no_protocol() -> anyhow::Result<()> {
    let s = start(base().websocket::<Chat>().websocket::<Plain>()).await?;
    for path in ["/chat", "/plain"] {
        let (mut c, protocols) = connect(&s, path, None).await?;
        // No header at all, not even the one Impostor set.
        assert!(protocols.is_empty(), "{path}: {protocols:?}");
        let open = c.recv_json().await?;
        assert_eq!(
            open,
            json!({"protocol": null, "seen": {"offer": [], "chosen": null}}),
            "{path}"
        );
        c.close().await?;
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_offer_connects_without_a_protocol_when_none_is_required()
-> anyhow::Result<()> {
    let s = start(base().websocket::<Chat>().websocket::<Plain>()).await?;
    // Names compare exactly: no case folding, no prefixes.
    let (protocols, open) = raw_open(s.addr, "/chat", &["x.unknown, CHAT.V1, chat"]).await?;
    assert!(protocols.is_empty(), "{protocols:?}");
    assert_eq!(
        open,
        json!({"protocol": null, "seen": {"offer": ["x.unknown, CHAT.V1, chat"], "chosen": null}})
    );
    // A service that declares no protocols never answers one.
    let (protocols, open) = raw_open(s.addr, "/plain", &["chat.v1"]).await?;
    assert!(protocols.is_empty(), "{protocols:?}");
    assert_eq!(open["protocol"], Value::Null);
    assert_eq!(count::<Chat>(&s, |c| &c.opened), 1);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_protocol_refuses_other_clients_with_400_before_any_middleware()
-> anyhow::Result<()> {
    let s = start(base().websocket::<Strict>()).await?;
    let refused: [&[(&str, &str)]; 4] = [
        &[],
        &[("sec-websocket-protocol", "x.unknown")],
        &[("sec-websocket-protocol", "CHAT.V1, chat")],
        &[
            ("sec-websocket-protocol", "chat.v1x"),
            ("sec-websocket-protocol", "x, y"),
        ],
    ];
    for headers in refused {
        let (status, resp) = upgrade_request(s.addr, "/strict", headers).await?;
        assert_eq!(status, 400, "{headers:?}: {resp}");
        assert_eq!(
            json_body(&resp),
            json!({"error": "No supported WebSocket subprotocol offered; expected one of: chat.v2, chat.v1"})
        );
        assert_eq!(header_values(&resp, "content-type"), ["application/json"]);
        assert!(header_values(&resp, "sec-websocket-protocol").is_empty());
    }
    // A real client is refused too.
    assert!(s.connect("/strict").await.is_err());
    // Refused before the chain: no middleware ran, no socket, no on_open.
    let ns = s.app.namespace("/strict").expect("namespace");
    assert_eq!(ns.socket_count(), 0);
    assert_eq!(count::<SeeProtocol>(&s, |m| &m.runs), 0);
    assert_eq!(count::<Strict>(&s, |t| &t.opened), 0);

    // A client that offers one of them gets in, and the middleware saw the choice.
    let (mut c, protocols) = connect(&s, "/strict", Some("x.unknown, chat.v1")).await?;
    assert_eq!(protocols, ["chat.v1"]);
    let open = c.recv_json().await?;
    assert_eq!(
        open,
        json!({"protocol": "chat.v1", "seen": {"offer": ["x.unknown, chat.v1"], "chosen": "chat.v1"}})
    );
    assert_eq!(count::<SeeProtocol>(&s, |m| &m.runs), 1);
    assert_eq!(count::<Strict>(&s, |t| &t.opened), 1);
    assert_eq!(ns.socket_count(), 1);
    c.close().await?;
    s.stop().await
}

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

pub mod broker;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A name no other test or run uses, for rooms, channels, subjects and keys on the shared
/// brokers: `prefix`, the process id and a UUID v7.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}

/// Joins `socket` to each room of its comma-separated query parameter `key` (none when it is
/// absent), as the test services' `on_open` do with `?rooms=a,b`.
pub fn join_query_rooms<O>(
    socket: &asena_runtime::SocketRef<O>,
    key: &str,
) -> Result<(), asena_runtime::namespace::RoomError> {
    let rooms = socket.query(key).unwrap_or_default().to_owned();
    for room in rooms.split(',').filter(|room| !room.is_empty()) {
        socket.subscribe(room)?;
    }
    Ok(())
}

/// Installs a test log subscriber once (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Collects what a `tracing` subscriber writes, for a test to read.
#[derive(Debug, Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// A subscriber that writes here, without colours, the events `filter` (a `RUST_LOG`
    /// directive such as `"asena=debug"`) lets through.
    pub fn subscriber(&self, filter: &str) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running app on an ephemeral port.
#[derive(Debug)]
pub struct TestServer {
    pub app: Asena,
    pub addr: SocketAddr,
    handle: Option<JoinHandle<Result<(), asena_runtime::Error>>>,
}

/// An app builder that registers nothing automatically: the app has exactly the components
/// the test names, whatever else the test binary links.
pub fn isolated() -> AsenaBuilder {
    Asena::builder().without_auto_registration()
}

/// Builds `builder` and serves it on `127.0.0.1:0`.
pub async fn start(builder: AsenaBuilder) -> anyhow::Result<TestServer> {
    init_tracing();
    let app = builder.build().await?;
    serve(app).await
}

/// Serves an app of the one service `S` (nothing registered automatically) on
/// `127.0.0.1:0`.
pub async fn start_service<S>() -> anyhow::Result<TestServer>
where
    S: asena_runtime::di::Component + asena_runtime::protocol::Endpoint,
{
    start(isolated().websocket::<S>()).await
}

/// Serves an app of the one service `S` (nothing registered automatically) with
/// `transport` on `127.0.0.1:0`: one instance of a fleet.
pub async fn start_service_with<S>(
    transport: impl asena_runtime::transport::Transport,
) -> anyhow::Result<TestServer>
where
    S: asena_runtime::di::Component + asena_runtime::protocol::Endpoint,
{
    start(isolated().websocket::<S>().transport(transport)).await
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

    /// A GET of `path`, read whole by [`http_request`].
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        http_get(&self.http_url(path)).await
    }

    /// An [`upgrade_request`] for `path` (no extra headers) that must be answered with
    /// `status`; returns the answer.
    pub async fn upgrade_answered(&self, path: &str, status: u16) -> anyhow::Result<HttpResponse> {
        let (got, response) = upgrade_request(self.addr, path, &[]).await?;
        assert_eq!(got, status, "the upgrade to {path}: {response}");
        Ok(response)
    }

    /// Sends `method path`, with `json` as the body when given, and reads the whole response
    /// ([`http_request`]).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> anyhow::Result<HttpResponse> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(self.http_url(path));
        let req = match json {
            Some(v) => req
                .header("content-type", "application/json")
                .body(v.to_string().into())?,
            None => req.body(Default::default())?,
        };
        http_request(req).await
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

/// Stops each of `servers` in turn ([`TestServer::stop`]); the first that fails ends it.
pub async fn stop_all<const N: usize>(servers: [TestServer; N]) -> anyhow::Result<()> {
    for server in servers {
        server.stop().await?;
    }
    Ok(())
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

    /// Sends `value` as JSON and returns the next text message parsed as JSON: its answer.
    pub async fn ask(&mut self, value: &Value) -> anyhow::Result<Value> {
        self.send_json(value).await?;
        self.recv_json().await
    }

    /// Sends `value` as JSON and asserts that the answer is `value` itself.
    pub async fn assert_echoed(&mut self, value: &Value) -> anyhow::Result<()> {
        assert_eq!(self.ask(value).await?, *value);
        Ok(())
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

/// A managed protocol message: `{"event": name, "data": data}`.
pub fn event(name: &str, data: Value) -> Value {
    serde_json::json!({"event": name, "data": data})
}

/// The bytes of the base64 field `name` of `message`'s data (as in the managed protocol's
/// `encrypted` and `connected` events); an error names the field and shows the message.
pub fn base64_field(message: &Value, name: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let text = message["data"][name]
        .as_str()
        .with_context(|| format!("no {name}: {message}"))?;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

/// Declares a service `$name` at `$path` that sends every message back to its sender as it
/// came.
#[macro_export]
macro_rules! echo_service {
    ($name:ident, $path:literal) => {
        // The path alone, as Asena's `@WebSocket('/echo')`.
        #[::asena_runtime::websocket($path)]
        #[derive(Debug)]
        struct $name;

        $crate::impl_message_service!($name, |ws, msg| {
            ws.send(&msg)?;
            Ok(())
        });
    };
}

/// Implements `WebSocketService` for the service `$name` (declared by the caller), with no
/// data per socket: `|ws, msg| handler` handles each message (the handler a `Result<()>`);
/// without it, every message is ignored. With `open = |ws| opener` first, `opener` (a
/// `Result<()>` too) opens each socket.
#[macro_export]
macro_rules! impl_message_service {
    ($name:ident) => {
        $crate::impl_message_service!($name, |_ws, _msg| Ok(()));
    };
    ($name:ident, |$ws:pat_param, $msg:pat_param| $handler:expr) => {
        $crate::impl_message_service!($name, open = |_ws| Ok(()), |$ws, $msg| $handler);
    };
    ($name:ident, open = |$open_ws:pat_param| $opener:expr, |$ws:pat_param, $msg:pat_param| $handler:expr) => {
        impl ::asena_runtime::WebSocketService for $name {
            type Data = ();
            async fn on_open(
                &self,
                ws: &::asena_runtime::Socket<Self>,
            ) -> ::asena_runtime::Result<()> {
                let $open_ws = ws;
                $opener
            }
            async fn on_message(
                &self,
                ws: &::asena_runtime::Socket<Self>,
                msg: ::asena_runtime::Message,
            ) -> ::asena_runtime::Result<()> {
                let ($ws, $msg) = (ws, msg);
                $handler
            }
        }
    };
}

/// Declares a service `$name` at `$path` whose sockets join the rooms named in
/// `?rooms=a,b` and say `{"type": "ready", "id": ..}`; a text `to:<id>:<text>` goes to that
/// socket, `all:<text>` to everyone, anything else to each of the sender's rooms.
#[macro_export]
macro_rules! hall_service {
    ($name:ident, $path:literal) => {
        #[::asena_runtime::websocket(path = $path)]
        #[derive(Debug)]
        pub struct $name;

        impl ::asena_runtime::WebSocketService for $name {
            type Data = ();

            async fn on_open(&self, ws: &::asena_runtime::Socket<Self>) -> ::asena_runtime::Result<()> {
                for room in ws.query("rooms").unwrap_or("").split(',') {
                    if !room.is_empty() {
                        ws.subscribe(room)?;
                    }
                }
                ws.send_json(&::serde_json::json!({"type": "ready", "id": ws.id()}))?;
                Ok(())
            }

            async fn on_message(
                &self,
                ws: &::asena_runtime::Socket<Self>,
                msg: ::asena_runtime::Message,
            ) -> ::asena_runtime::Result<()> {
                let text = msg.as_text().unwrap_or_default().to_owned();
                if let Some(rest) = text.strip_prefix("to:") {
                    let (id, body) = rest.split_once(':').unwrap_or((rest, ""));
                    ws.namespace().to_socket(id, body)?;
                } else if let Some(body) = text.strip_prefix("all:") {
                    ws.namespace().broadcast(body)?;
                } else {
                    // Its joined rooms, not its own room (its id, listed first).
                    for room in ws.rooms().into_iter().skip(1) {
                        ws.namespace().to(&room, text.as_str())?;
                    }
                }
                Ok(())
            }
        }
    };
}

/// Sends untraced `probe`s from the instance `from` to `room` of its service `S` (a
/// [`hall_service!`]) until `client` hears one: the first message across a broker may race a
/// subscription the broker is still recording.
pub async fn until_probe_heard<S: asena_runtime::protocol::Endpoint<Out = asena_runtime::Raw>>(
    from: &TestServer,
    room: &str,
    client: &mut Client,
) -> anyhow::Result<()> {
    let ulak = from
        .app
        .ulak::<S>()
        .with_context(|| format!("{} is registered", std::any::type_name::<S>()))?;
    until_some(WAIT, "a probe crosses the broker", async || {
        ulak.to(room, "probe")?;
        let heard = tokio::time::timeout(Duration::from_millis(200), client.recv_text()).await;
        Ok(heard
            .ok()
            .and_then(Result::ok)
            .filter(|text| text == "probe"))
    })
    .await
    .map(drop)
}

/// Connects to the [`hall_service!`] at `/hall`, in the rooms `rooms` (`a,b`), and returns
/// the client, once it is ready, and its socket id.
pub async fn join_hall(server: &TestServer, rooms: &str) -> anyhow::Result<(Client, String)> {
    let mut client = server.connect(&format!("/hall?rooms={rooms}")).await?;
    let ready = client.recv_type("ready").await?;
    let id = ready["id"]
        .as_str()
        .with_context(|| format!("no id in {ready}"))?
        .to_owned();
    Ok((client, id))
}

/// Declares a managed service `$name` at `$path` that admits `{"user": U}` as U and lets
/// clients join any room they ask for. Its events are ignored, or handled by
/// `on_event = f` (an `async fn<S: ManagedService>(&Socket<S>, Message) -> Result<()>`); its channels
/// are under the default prefix, or under `$prefix` (any expression giving a `&str`).
#[macro_export]
macro_rules! managed_service {
    ($name:ident, $path:literal) => {
        $crate::managed_service!(@service $name, $path, [], []);
    };
    ($name:ident, $path:literal, on_event = $on_event:path) => {
        $crate::managed_service!(@service $name, $path, [], [$on_event]);
    };
    ($name:ident, $path:literal, $prefix:expr) => {
        $crate::managed_service!(@service $name, $path, [$prefix], []);
    };
    (@service $name:ident, $path:literal, [$($prefix:expr)?], [$($on_event:path)?]) => {
        #[::asena_runtime::websocket(path = $path, managed)]
        #[derive(Debug)]
        pub struct $name;

        impl ::asena_runtime::managed::ManagedService for $name {
            $(
                fn options(&self) -> ::asena_runtime::managed::ManagedOptions {
                    ::asena_runtime::managed::ManagedOptions::default().channel_prefix($prefix)
                }
            )?

            async fn authenticate(
                &self,
                _ws: &::asena_runtime::Socket<Self>,
                credentials: ::serde_json::Value,
            ) -> ::asena_runtime::Result<Option<::asena_runtime::managed::Authenticated>> {
                Ok(credentials["user"]
                    .as_str()
                    .map(::asena_runtime::managed::Authenticated::user))
            }

            async fn validate_rooms(
                &self,
                _ws: &::asena_runtime::Socket<Self>,
                rooms: Vec<String>,
            ) -> Vec<String> {
                rooms
            }

            async fn on_event(
                &self,
                ws: &::asena_runtime::Socket<Self>,
                event: ::asena_runtime::Message,
            ) -> ::asena_runtime::Result<()> {
                $crate::managed_service!(@on_event ws, event $(, $on_event)?)
            }
        }
    };
    (@on_event $ws:ident, $event:ident) => {{
        let _ = ($ws, $event);
        Ok(())
    }};
    (@on_event $ws:ident, $event:ident, $on_event:path) => {
        $on_event($ws, $event).await
    };
}

/// Implements `ManagedService` for the managed service `$name` (declared by the caller)
/// with `$options`: it admits `{"token": "U-token"}` as U ([`managed::token_user`]);
/// `on_event = |service, ws, event| handler` handles its events (the future `handler` gives);
/// `rooms = f` (an `fn(Vec<String>) -> Vec<String>`) filters the rooms a client may join,
/// where all are allowed without it.
#[macro_export]
macro_rules! impl_token_service {
    (
        $name:ident,
        $options:expr,
        on_event = |$this:ident, $ws:ident, $event:ident| $on_event:expr
        $(, rooms = $rooms:path)?
    ) => {
        impl ::asena_runtime::managed::ManagedService for $name {
            fn options(&self) -> ::asena_runtime::managed::ManagedOptions {
                $options
            }

            async fn authenticate(
                &self,
                _ws: &::asena_runtime::Socket<Self>,
                credentials: ::serde_json::Value,
            ) -> ::asena_runtime::Result<Option<::asena_runtime::managed::Authenticated>> {
                Ok($crate::managed::token_user(&credentials))
            }

            $(
                async fn validate_rooms(
                    &self,
                    _ws: &::asena_runtime::Socket<Self>,
                    rooms: Vec<String>,
                ) -> Vec<String> {
                    $rooms(rooms)
                }
            )?

            async fn on_event(
                &self,
                ws: &::asena_runtime::Socket<Self>,
                event: ::asena_runtime::Message,
            ) -> ::asena_runtime::Result<()> {
                let ($this, $ws, $event) = (self, ws, event);
                $on_event.await
            }
        }
    };
}

/// Declares each test twice, in the modules `over_redis` and `over_nats`: `name => body`
/// runs `body(url)` with the URL of that shared broker ([`broker::REDIS`],
/// [`broker::NATS`]), `name => body(Kind)` runs `body(kind)` with its [`broker::Kind`] (for
/// tests on a private broker). Every test gets the attribute given first, such as
/// `#[tokio::test]`. Once per module, as it declares the two.
#[macro_export]
macro_rules! on_each_broker {
    (#[$test:meta] $($name:ident => $body:ident $(($kind:ident))?;)+) => {
        mod over_redis {
            $(
                #[$test]
                async fn $name() -> ::anyhow::Result<()> {
                    super::$body($crate::on_each_broker!(@arg Redis, REDIS $(, $kind)?)).await
                }
            )+
        }
        mod over_nats {
            $(
                #[$test]
                async fn $name() -> ::anyhow::Result<()> {
                    super::$body($crate::on_each_broker!(@arg Nats, NATS $(, $kind)?)).await
                }
            )+
        }
    };
    (@arg $kind:ident, $url:ident) => {
        $crate::broker::$url
    };
    (@arg $kind:ident, $url:ident, Kind) => {
        $crate::broker::Kind::$kind
    };
}

/// Opens a socket to the managed service at `path` and authenticates with `credentials`
/// (the `authenticate` event's data); returns the client and the `connected` event, or an
/// error with whatever came instead.
pub async fn managed_login(
    server: &TestServer,
    path: &str,
    credentials: Value,
) -> anyhow::Result<(Client, Value)> {
    let mut client = authenticating(server, path, credentials).await?;
    let connected = client.recv_json().await?;
    anyhow::ensure!(connected["event"] == "connected", "{connected}");
    Ok((client, connected))
}

/// Opens a socket to the managed service at `path`, authenticates with `credentials` (which
/// the service is to refuse) and returns the code and reason of the close that answers.
pub async fn managed_login_closed(
    server: &TestServer,
    path: &str,
    credentials: Value,
) -> anyhow::Result<(u16, String)> {
    authenticating(server, path, credentials)
        .await?
        .recv_close()
        .await
}

/// A socket to the managed service at `path` that has sent `authenticate` with
/// `credentials`.
async fn authenticating(
    server: &TestServer,
    path: &str,
    credentials: Value,
) -> anyhow::Result<Client> {
    let mut client = server.connect(path).await?;
    client
        .send_json(&event("authenticate", credentials))
        .await?;
    Ok(client)
}

/// Runs `f` on each of `items` in turn (one connection after the other, say) and returns the
/// results in their order.
pub async fn in_order<I, T, const N: usize>(
    items: [I; N],
    mut f: impl AsyncFnMut(I) -> anyhow::Result<T>,
) -> anyhow::Result<[T; N]> {
    let mut results = Vec::with_capacity(N);
    for item in items {
        results.push(f(item).await?);
    }
    Ok(results
        .try_into()
        .unwrap_or_else(|_| unreachable!("one result per item")))
}

/// Polls `check` until it holds (every 5 ms, at most [`WAIT`]); for state the server updates
/// after a socket event, such as namespace counts after a disconnect.
pub async fn eventually(mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    within(WAIT, "condition", async || check()).await
}

/// Polls the async `check` until it holds (every 10 ms, at most `limit`); the error says
/// `what` was not reached.
pub async fn within(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    until_some(limit, what, async || Ok(check().await.then_some(()))).await
}

/// Polls the async `check` until it returns `Some` (every 10 ms, at most `limit`) and returns
/// that; an error from `check` ends the wait. The error says `what` was not reached, with the
/// last `None`'s context where `check` gives none.
pub async fn until_some<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not reached within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (at most [`WAIT`]) until the instance's transport is subscribed to every room its
/// sockets are in, when it routes by interest (NATS): a room's first member joins at once,
/// but messages other instances publish to the room reach this instance only once the broker
/// has its subscription. Returns at once for a transport that does not route by interest.
pub async fn subscribed(server: &TestServer) -> anyhow::Result<()> {
    if !server.app.transport_routes_by_interest() {
        return Ok(());
    }
    let app = &server.app;
    eventually(|| {
        let rooms = app
            .namespaces()
            .iter()
            .flat_map(|ns| ns.rooms())
            .filter(|r| asena_runtime::wire::routes_by_interest(&r.name))
            .count() as u64;
        app.transport_stats()
            .is_some_and(|s| s.subscriptions >= rooms)
    })
    .await
    .context("the transport did not subscribe to its rooms")
}

/// A response read whole by [`http_request`]: status, every header (repeated ones in the
/// order sent) and the body. Displays as status, headers and body, for assertion messages.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

impl std::fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// Sends `req` (an absolute `http://` URI) with hyper's client and reads the whole response,
/// within [`WAIT`]. Every request has a connection of its own, closed once the response is
/// read (no idle pool), so a test's server sees the client hang up as it did with a one-shot
/// socket; a `101 Switching Protocols` answer has an empty body and its upgraded connection
/// is dropped unused.
pub async fn http_request(
    req: hyper::Request<http_body_util::Full<hyper::body::Bytes>>,
) -> anyhow::Result<HttpResponse> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    tokio::time::timeout(WAIT, async move {
        let (parts, body) = client.request(req).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).context("body is not UTF-8")?,
        })
    })
    .await
    .with_context(|| format!("{method} {uri} timed out"))?
    .with_context(|| format!("{method} {uri}"))
}

/// A GET of `url` (an absolute `http://` URI), read whole by [`http_request`].
pub async fn http_get(url: &str) -> anyhow::Result<HttpResponse> {
    http_request(hyper::Request::get(url).body(Default::default())?).await
}

/// A GET with WebSocket upgrade headers (a fixed key, `extra_headers` after them); returns
/// the status and the response, whether the server upgrades (101, empty body) or refuses
/// before upgrading (status, headers and body of the refusal).
pub async fn upgrade_request(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> anyhow::Result<(u16, HttpResponse)> {
    let mut req = hyper::Request::get(format!("http://{addr}{path}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in extra_headers {
        req = req.header(*k, *v);
    }
    let resp = http_request(req.body(Default::default())?).await?;
    Ok((resp.status, resp))
}

/// The body of a response.
pub fn body_of(response: &HttpResponse) -> &str {
    &response.body
}

/// Values of a header in a response, in order (non-UTF-8 bytes replaced).
pub fn header_values(response: &HttpResponse, name: &str) -> Vec<String> {
    response
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The body of a response parsed as JSON (panics with the response when it is not).
pub fn json_body(response: &HttpResponse) -> Value {
    serde_json::from_str(body_of(response))
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {response}"))
}

/// A raw WebSocket connection to `path`, the handshake written by hand (with
/// `extra_headers`, each ending in `\r\n`), for tests that send what a proper client would
/// not. `recv_buffer` shrinks the kernel's receive buffer first. Returns the stream after the
/// `101` and the response head.
pub async fn raw_upgrade(
    addr: SocketAddr,
    path: &str,
    extra_headers: &str,
    recv_buffer: Option<u32>,
) -> anyhow::Result<(TcpStream, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let mut stream = tokio::time::timeout(WAIT, socket.connect(addr)).await??;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte)).await??;
        head.push(byte[0]);
    }
    let head = String::from_utf8(head)?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
    Ok((stream, head))
}

/// A masked client frame (payloads of any length; `rsv1` marks a compressed message).
pub fn masked_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else if payload.len() <= 65535 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A whole, unfragmented, masked client frame.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked_frame(true, false, opcode, payload)
}

/// The next frame the server sent on a raw connection: its first byte (FIN, RSV1, opcode)
/// and its payload, within [`WAIT`].
pub async fn read_frame(stream: &mut TcpStream) -> anyhow::Result<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        let mut h = [0u8; 2];
        stream.read_exact(&mut h).await?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).await?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).await?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await?;
        anyhow::Ok((h[0], payload))
    })
    .await
    .context("no frame from the server")?
}

/// Validates AsyncAPI documents with the official parser (`@asyncapi/parser`, run by
/// `scripts/asyncapi/validate.mjs`): each `(name, document)` is written to a temporary
/// `<name>.asyncapi.json` and parsed. Fails with the parser's diagnostics when a document has
/// an error, and, never skipping, when the parser is not installed (`bash scripts/asyncapi.sh`
/// installs it). Warnings are shown on stderr.
pub fn validate_asyncapi(docs: &[(&str, Value)]) -> anyhow::Result<()> {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUN: AtomicUsize = AtomicUsize::new(0);

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/asyncapi");
    if !dir.join("node_modules/@asyncapi/parser").is_dir() {
        bail!(
            "the AsyncAPI parser is not installed in {}: run `bash scripts/asyncapi.sh` \
             (it needs node and npm)",
            dir.join("node_modules").display()
        );
    }
    let out = std::env::temp_dir().join(format!(
        "asena-asyncapi-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let mut files = Vec::new();
    for (name, doc) in docs {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = out.join(format!("{name}.asyncapi.json"));
        std::fs::write(&file, serde_json::to_string_pretty(doc)?)
            .with_context(|| format!("write {}", file.display()))?;
        files.push(file);
    }
    let output = std::process::Command::new("node")
        .arg(dir.join("validate.mjs"))
        .args(&files)
        .output()
        .context("run `node scripts/asyncapi/validate.mjs` (is node installed?)");
    let _ = std::fs::remove_dir_all(&out);
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "the AsyncAPI parser rejected a document ({}):\n{stderr}{stdout}",
            output.status
        );
    }
    // Warnings are worth a look; infos (such as "3.1.0 is out") are not.
    for line in stderr.lines().filter(|l| !l.contains(": info [")) {
        eprintln!("{line}");
    }
    Ok(())
}
/// Modules of code `build.rs` generated from AsyncAPI documents: `generated!(chat_app =>
/// "codegen_chat.rs")` is `pub mod chat_app { include!(<OUT_DIR>/codegen_chat.rs) }`.
#[macro_export]
macro_rules! generated {
    ($($module:ident => $file:literal),* $(,)?) => {
        $(
            pub mod $module {
                include!(concat!(env!("OUT_DIR"), "/", $file));
            }
        )*
    };
}

/// Declares a middleware `$name` that refuses an upgrade without `?name=` with 401, after a
/// warning `no name; refusing` (target `asena::middleware`), and lets any other through.
/// A macro, not a type of this crate: the crate registers no component of its own in the
/// apps of the test binaries that link it.
#[macro_export]
macro_rules! needs_name_middleware {
    ($name:ident) => {
        #[::asena_runtime::middleware]
        #[derive(Debug)]
        pub struct $name;

        impl ::asena_runtime::Middleware for $name {
            async fn handle(
                &self,
                ctx: &mut ::asena_runtime::Context,
                next: ::asena_runtime::Next<'_>,
            ) -> Result<(), ::asena_runtime::Refusal> {
                if ctx.query("name").is_none() {
                    ::tracing::warn!(target: "asena::middleware", "no name; refusing");
                    return Err(::asena_runtime::Refusal::new(401));
                }
                next.run(ctx).await
            }
        }
    };
}

pub mod chat;
pub mod interop;
pub mod managed;

/// The porting guide from Asena (TypeScript), compiled as doctests so its Rust stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/porting-from-asena.md")]
pub struct PortingFromAsena;

/// The porting guide from Ignis (TypeScript), compiled as doctests so its Rust stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/porting-from-ignis.md")]
pub struct PortingFromIgnis;

/// Each socket's result of a request to a room, named and sorted: `answered` for a reply
/// `is_answer` accepts, the failure's code, or `timeout` (anything else fails the test).
pub fn ack_outcomes<R: std::fmt::Debug>(
    replies: &[asena_runtime::ack::SocketReply<R>],
    answered: &str,
    is_answer: impl Fn(&R) -> bool,
) -> Vec<String> {
    use asena_runtime::ack::AckError;
    let mut outcomes: Vec<String> = replies
        .iter()
        .map(|r| match &r.reply {
            Ok(reply) if is_answer(reply) => answered.to_owned(),
            Err(AckError::Failed(failure)) => failure.code.clone(),
            Err(AckError::Timeout(_)) => "timeout".to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    outcomes.sort_unstable();
    outcomes
}

//! Typed channels over real sockets: path parameters into a serde type (and the 400 when they
//! do not deserialize) reaching middleware and `Socket<Self>`, typed messages in and out, each
//! decode error's answer with the socket staying open, garde constraints, a custom answer
//! shape, typed `Ulak` (sends, and sockets listed with their parameters and data), and the
//! room of a concrete path.

use asena_runtime::prelude::*;
use asena_runtime::{DecodeError, DecodeErrorKind};
use asena_tests::broker::REDIS;
use asena_tests::{
    Client, TestServer, in_order, isolated, start, stop_all, unique, upgrade_request,
};
use serde_json::json;

/// The path parameters of [`Events`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventsPath {
    pub user_id: u64,
}

/// What clients send to [`Events`].
#[derive(Debug, Deserialize, Serialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
pub enum EventsIn {
    Say {
        #[garde(length(chars, min = 1, max = 10))]
        text: String,
    },
    Move {
        #[garde(dive)]
        to: Point,
    },
    Whoami,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Validate)]
pub struct Point {
    #[garde(range(min = 0, max = 9))]
    pub x: i32,
    #[garde(range(min = 0, max = 9))]
    pub y: i32,
}

/// What [`Events`] sends.
#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventsOut {
    Said { user_id: u64, text: String },
    Moved { x: i32, y: i32 },
    You { user_id: u64, from_context: u64 },
}

/// The user id middleware read from the typed parameters.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub user_id: u64,
}

/// Middleware sees the typed parameters before the upgrade.
#[middleware]
#[derive(Debug)]
pub struct ReadParams;

impl Middleware for ReadParams {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let user_id = ctx
            .params::<EventsPath>()
            .map(|p| p.user_id)
            .ok_or_else(|| Refusal::new(500))?;
        ctx.set_websocket_value(Seen { user_id });
        next.run(ctx).await
    }
}

#[websocket(
    path = "/user/events/{user_id}",
    params = EventsPath,
    receives = EventsIn,
    sends = EventsOut,
    middlewares = [ReadParams]
)]
#[derive(Debug)]
pub struct Events;

impl WebSocketService for Events {
    type Data = Seen;

    async fn on_message(&self, ws: &Socket<Self>, msg: EventsIn) -> Result<()> {
        let user_id = ws.params().user_id;
        match msg {
            EventsIn::Say { text } => {
                // To everyone at this concrete path, sender included.
                ws.namespace()
                    .to(ws.path(), &EventsOut::Said { user_id, text })?;
            }
            EventsIn::Move { to } => ws.send(EventsOut::Moved { x: to.x, y: to.y })?,
            EventsIn::Whoami => ws.send(&EventsOut::You {
                user_id,
                from_context: ws.data().values.user_id,
            })?,
        }
        Ok(())
    }
}

/// The same messages, answered in a shape of the service's own choosing.
#[websocket(path = "/custom", receives = EventsIn, sends = EventsOut)]
#[derive(Debug)]
pub struct Custom;

impl WebSocketService for Custom {
    type Data = ();

    async fn on_message(&self, ws: &Socket<Self>, _msg: EventsIn) -> Result<()> {
        // A service without `params` has `()`, which the upgrade stored like any other type.
        let &() = ws.params();
        ws.send(EventsOut::Moved { x: 0, y: 0 })?;
        Ok(())
    }

    async fn on_invalid(&self, ws: &Socket<Self>, error: DecodeError) -> Result<()> {
        let text = match error.kind() {
            DecodeErrorKind::UnknownVariant { value } => format!("Unknown message type: {value}"),
            _ => error.to_string(),
        };
        ws.raw().send_json(&json!({"error": text}))?;
        Ok(())
    }
}

/// Sends typed messages from outside a handler.
#[service]
#[derive(Debug)]
pub struct Announcer {
    #[inject]
    events: Ulak<Events>,
}

impl Announcer {
    fn announce(&self, user_id: u64, text: &str) -> Result<usize, asena_runtime::SendError> {
        let said = EventsOut::Said {
            user_id,
            text: text.to_owned(),
        };
        self.events.to(&format!("/user/events/{user_id}"), &said)
    }
}

async fn server() -> anyhow::Result<TestServer> {
    start(
        isolated()
            .websocket::<Events>()
            .websocket::<Custom>()
            .middleware::<ReadParams>()
            .service::<Announcer>(),
    )
    .await
}

/// A [`server`] and a client connected to each of `paths`, in order.
async fn connected<const N: usize>(paths: [&str; N]) -> anyhow::Result<(TestServer, [Client; N])> {
    let s = server().await?;
    let clients = in_order(paths, async |path| s.connect(path).await).await?;
    Ok((s, clients))
}

/// Sends each request in turn and asserts that the answer to it is the one paired with it.
async fn assert_answers<const N: usize>(
    c: &mut Client,
    exchanges: [(serde_json::Value, serde_json::Value); N],
) -> anyhow::Result<()> {
    for (request, answer) in exchanges {
        assert_eq!(c.ask(&request).await?, answer, "answer to {request}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_reach_middleware_and_socket() -> anyhow::Result<()> {
    let (s, [mut c]) = connected(["/user/events/42"]).await?;
    assert_eq!(
        c.ask(&json!({"type": "whoami"})).await?,
        json!({"type": "you", "user_id": 42, "from_context": 42})
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_does_not_deserialize_is_refused_with_400() -> anyhow::Result<()> {
    let s = server().await?;
    let (status, response) = upgrade_request(s.addr, "/user/events/abc", &[]).await?;
    assert_eq!(status, 400);
    assert_eq!(
        response.json()?,
        json!({
            "error": "Invalid path parameter `user_id`: cannot parse `abc` as `u64`",
            "parameter": "user_id",
        })
    );
    // No socket was created, and the service still serves good paths.
    assert_eq!(
        s.app
            .namespace("/user/events/{user_id}")
            .map(|n| n.socket_count()),
        Some(0)
    );
    let mut c = s.connect("/user/events/7").await?;
    assert_eq!(c.ask(&json!({"type": "whoami"})).await?["user_id"], 7);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decode_error_is_answered_and_the_socket_stays_open() -> anyhow::Result<()> {
    let (s, [mut c]) = connected(["/user/events/1"]).await?;

    c.send_text("{not json").await?;
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "error", "code": "syntax", "message": "key must be a string", "path": "."})
    );
    assert_answers(
        &mut c,
        [
            (
                json!({"type": "dance"}),
                json!({
                    "type": "error",
                    "code": "unknown_variant",
                    "message": "unknown variant `dance`, expected one of `say`, `move`, `whoami`",
                    "path": "type",
                }),
            ),
            (
                json!({"text": "hi"}),
                json!({"type": "error", "code": "missing_field", "message": "missing field `type`", "path": "."}),
            ),
            (
                json!({"type": "say"}),
                json!({"type": "error", "code": "missing_field", "message": "missing field `text`", "path": "."}),
            ),
            (
                json!({"type": "say", "text": 5}),
                json!({
                    "type": "error",
                    "code": "invalid_value",
                    "message": "invalid type: integer `5`, expected a string",
                    "path": "text",
                }),
            ),
        ],
    )
    .await?;
    assert_eq!(
        c.ask(&json!({"type": "move", "to": {"x": 1, "y": "2"}}))
            .await?["path"],
        "to.y"
    );

    // Still open, and still served.
    assert_eq!(
        c.ask(&json!({"type": "move", "to": {"x": 1, "y": 2}}))
            .await?,
        json!({"type": "moved", "x": 1, "y": 2})
    );
    let stats = s
        .app
        .namespace("/user/events/{user_id}")
        .expect("registered");
    assert_eq!(stats.stats().invalid_messages(), 6);
    assert_eq!(stats.stats().handler_errors(), 0);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_are_enforced_on_receive() -> anyhow::Result<()> {
    let (s, [mut c]) = connected(["/user/events/1"]).await?;
    assert_eq!(
        c.ask(&json!({"type": "say", "text": ""})).await?,
        json!({
            "type": "error",
            "code": "constraint",
            "message": "text: length is lower than 1",
            "path": "text",
        })
    );
    assert_eq!(
        c.ask(&json!({"type": "say", "text": "far too long"}))
            .await?["message"],
        "text: length is greater than 10"
    );
    assert_eq!(
        c.ask(&json!({"type": "move", "to": {"x": -1, "y": 10}}))
            .await?,
        json!({
            "type": "error",
            "code": "constraint",
            "message": "to.x: lower than 0; to.y: greater than 9",
            "path": "to.x",
        })
    );
    // Counted in characters, not bytes: ten of them pass.
    assert_eq!(
        c.ask(&json!({"type": "say", "text": "éééééééééé"})).await?,
        json!({"type": "said", "user_id": 1, "text": "éééééééééé"})
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_shape_is_the_services_choice() -> anyhow::Result<()> {
    let (s, [mut c]) = connected(["/custom"]).await?;
    assert_answers(
        &mut c,
        [
            (
                json!({"type": "dance"}),
                json!({"error": "Unknown message type: dance"}),
            ),
            (
                json!({"type": "say", "text": 5}),
                json!({"error": "text: invalid type: integer `5`, expected a string"}),
            ),
            (
                json!({"type": "whoami"}),
                json!({"type": "moved", "x": 0, "y": 0}),
            ),
        ],
    )
    .await?;
    assert_eq!(
        s.app
            .namespace("/custom")
            .map(|n| n.stats().invalid_messages()),
        Some(2)
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concrete_path_is_a_room_for_handlers_and_ulak() -> anyhow::Result<()> {
    let (s, [mut a, mut b, mut other]) =
        connected(["/user/events/5", "/user/events/5", "/user/events/6"]).await?;
    // Both sockets of /user/events/5 joined before their first message is answered.
    a.send_json(&json!({"type": "whoami"})).await?;
    a.recv_json().await?;
    b.send_json(&json!({"type": "whoami"})).await?;
    b.recv_json().await?;

    a.send_json(&json!({"type": "say", "text": "hi"})).await?;
    let said = json!({"type": "said", "user_id": 5, "text": "hi"});
    assert_eq!(a.recv_json().await?, said);
    assert_eq!(b.recv_json().await?, said);

    let announcer = s.app.get::<Announcer>().expect("registered");
    assert_eq!(announcer.announce(5, "news")?, 2);
    let news = json!({"type": "said", "user_id": 5, "text": "news"});
    assert_eq!(a.recv_json().await?, news);
    assert_eq!(b.recv_json().await?, news);

    // /user/events/6 got neither: its next message is the answer to its own request.
    assert_eq!(other.ask(&json!({"type": "whoami"})).await?["user_id"], 6);
    s.stop().await
}

/// `Ulak<Events>` lists `Socket<Events>`s: each with its own typed parameters and the data
/// middleware stored for it, read without naming a type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ulak_lists_sockets_with_their_params_and_data() -> anyhow::Result<()> {
    let (s, [mut a, mut b]) = connected(["/user/events/5", "/user/events/6"]).await?;
    // Both are registered once they answer.
    assert_eq!(a.ask(&json!({"type": "whoami"})).await?["user_id"], 5);
    assert_eq!(b.ask(&json!({"type": "whoami"})).await?["user_id"], 6);

    let events = s.app.ulak::<Events>().expect("registered");
    let mut seen: Vec<(u64, u64)> = events
        .sockets()
        .iter()
        .map(|socket| (socket.params().user_id, socket.data().values.user_id))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [(5, 5), (6, 6)]);

    let in_five = events.sockets_in("/user/events/5");
    assert_eq!(in_five.len(), 1);
    let five = events
        .socket(in_five[0].id())
        .expect("listed, so connected");
    assert_eq!(five.params().user_id, 5);
    assert_eq!(five.data().values.user_id, 5);
    assert!(events.socket("no-such-socket").is_none());
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concrete_path_room_spans_instances() -> anyhow::Result<()> {
    // Two instances on a real Redis, on a channel of their own.
    let channel = unique("asena:typed-test");
    let app = |channel: &str| {
        isolated()
            .websocket::<Events>()
            .middleware::<ReadParams>()
            .service::<Announcer>()
            .transport(asena_runtime::transport::RedisTransport::new(REDIS).channel(channel))
    };
    let a = start(app(&channel)).await?;
    let b = start(app(&channel)).await?;
    let mut client = a.connect("/user/events/9").await?;
    assert_eq!(client.ask(&json!({"type": "whoami"})).await?["user_id"], 9);

    // B has no socket at /user/events/9; its Ulak reaches A's through the transport. The
    // room's subscription reaches Redis asynchronously, so B announces until A delivers.
    let announcer = b.app.get::<Announcer>().expect("registered");
    let news = json!({"type": "said", "user_id": 9, "text": "from b"});
    let delivered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            announcer.announce(9, "from b")?;
            if let Ok(Ok(got)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), client.recv_json())
                    .await
            {
                return anyhow::Ok(got);
            }
        }
    })
    .await??;
    assert_eq!(delivered, news);
    stop_all([a, b]).await
}

//! Ulak, sending from anywhere: every `Ulak<N>` and `UlakBroker` method, every error code that
//! is produced, the no-cycle guarantee, and HTTP → WebSocket delivery through a merged router.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use asena_runtime::namespace::SendErrorCode;
use asena_runtime::prelude::*;
use asena_runtime::{AsenaBuilder, BulkOp, FromApp, SendError, UlakBroker};
use asena_tests::{
    Client, TestServer, eventually, in_order, isolated, start, stop_all, tungstenite,
};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Components

/// Sends to `Alpha`'s clients through an `Ulak<Alpha>` while `Alpha` injects it back.
#[service]
struct Notifier {
    #[inject]
    alpha: Ulak<Alpha>,
    #[inject]
    broker: UlakBroker,
    /// What the last send from inside a handler returned (for `SendFailed`).
    last: Mutex<Option<SendErrorCode>>,
}

impl Notifier {
    fn notify(&self, room: &str) -> Result<usize, SendError> {
        self.alpha
            .to(room, Json(json!({"type": "notice", "room": room})))
    }
}

/// Joins the comma-separated rooms of `?rooms=`, says hello with its id, echoes `echo:<text>`.
#[websocket(path = "/alpha", name = "Alpha")]
struct Alpha {
    #[inject]
    notifier: Arc<Notifier>,
}

impl WebSocketService for Alpha {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        asena_tests::join_query_rooms(ws, "rooms")?;
        ws.send_json(&json!({"type": "open", "id": ws.id()}))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let text = msg.as_text().unwrap_or_default();
        if text == "close-then-send" {
            ws.close_with(1000, "bye");
            // The socket is still registered but closing: the send fails with SendFailed.
            let code = self
                .notifier
                .alpha
                .to_socket(ws.id(), "too late")
                .err()
                .map(|e| e.code);
            *self.notifier.last.lock().unwrap() = code;
            return Ok(());
        }
        ws.send(format!("echo:{text}"))?;
        Ok(())
    }
}

#[websocket(path = "/beta", name = "Beta")]
struct Beta;

impl WebSocketService for Beta {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        ws.send(format!("echo:{}", msg.as_text().unwrap_or_default()))?;
        Ok(())
    }
}

/// Never registered: `Ulak<Gamma>` is absent from apps.
#[websocket(path = "/gamma", name = "Gamma")]
struct Gamma;

asena_tests::impl_message_service!(Gamma);

/// Never registered either (for `FromApp<T>` of a missing component).
#[service]
struct Unregistered;

/// A real cycle through `Arc<T>` fields: must fail at startup.
#[allow(dead_code)]
#[service]
struct CyclicService {
    #[inject]
    socket: Arc<CyclicSocket>,
}

#[allow(dead_code)]
#[websocket(path = "/cyclic", name = "CyclicSocket")]
struct CyclicSocket {
    #[inject]
    service: Arc<CyclicService>,
}

asena_tests::impl_message_service!(CyclicSocket);

/// Injects `Ulak<Beta>` without `Beta` registered.
#[allow(dead_code)]
#[service]
struct NeedsBeta {
    #[inject]
    beta: Ulak<Beta>,
}

/// JSON serialisation fails for maps with non-string keys.
fn unencodable() -> Json<BTreeMap<(u8, u8), u8>> {
    Json(BTreeMap::from([((1, 2), 3)]))
}

// ---------------------------------------------------------------------------------------
// Helpers

fn app() -> AsenaBuilder {
    isolated()
        .service::<Notifier>()
        .websocket::<Alpha>()
        .websocket::<Beta>()
}

/// A server of [`app`] and its `Ulak<Alpha>`.
async fn with_ulak() -> anyhow::Result<(TestServer, Ulak<Alpha>)> {
    let s = start(app()).await?;
    let ulak = s.app.ulak::<Alpha>().expect("Ulak<Alpha>");
    Ok((s, ulak))
}

/// A server of [`app`] and its `UlakBroker`.
async fn with_broker() -> anyhow::Result<(TestServer, UlakBroker)> {
    let s = start(app()).await?;
    let broker = s.app.broker().clone();
    Ok((s, broker))
}

/// A server of [`app`], its `UlakBroker`, an [`alpha`] client in each of `rooms` and a
/// `/beta` client.
async fn broker_and_clients(
    rooms: [&str; 2],
) -> anyhow::Result<(TestServer, UlakBroker, [(Client, String); 2], Client)> {
    let (s, broker) = with_broker().await?;
    let alphas = alphas(&s, rooms).await?;
    let b = s.connect("/beta").await?;
    Ok((s, broker, alphas, b))
}

async fn alpha(s: &TestServer, rooms: &str) -> anyhow::Result<(Client, String)> {
    let mut c = s.connect(&format!("/alpha?rooms={rooms}")).await?;
    let open = c.recv_json().await?;
    Ok((c, open["id"].as_str().unwrap().to_owned()))
}

/// An [`alpha`] client in each of `rooms` (`a,b` each), connected in order.
async fn alphas<const N: usize>(
    s: &TestServer,
    rooms: [&str; N],
) -> anyhow::Result<[(Client, String); N]> {
    in_order(rooms, async |rooms| alpha(s, rooms).await).await
}

/// Proves nothing else is queued for `c`: its next message is the echo of a fresh probe.
async fn assert_quiet(c: &mut Client) -> anyhow::Result<()> {
    c.send_text("probe").await?;
    assert_eq!(c.recv_text().await?, "echo:probe");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Ulak<N>

#[tokio::test]
async fn broadcast_reaches_the_namespace_only_and_sends_messages_as_given() -> anyhow::Result<()> {
    let (s, ulak) = with_ulak().await?;
    let [(mut a1, _), (mut a2, _)] = alphas(&s, ["", ""]).await?;
    let mut b = s.connect("/beta").await?;

    // A string goes out as-is (not JSON-quoted).
    assert_eq!(ulak.broadcast("hello")?, 2);
    // A Serialize value goes out as JSON; bytes as a binary frame.
    assert_eq!(ulak.broadcast(Json(json!({"k": 1})))?, 2);
    assert_eq!(ulak.broadcast(vec![1u8, 2, 3])?, 2);
    for c in [&mut a1, &mut a2] {
        assert_eq!(c.recv_text().await?, "hello");
        assert_eq!(c.recv_json().await?, json!({"k": 1}));
        assert_eq!(
            c.recv().await?,
            tungstenite::Message::binary(vec![1u8, 2, 3])
        );
    }
    assert_quiet(&mut b).await?;
    s.stop().await
}

#[tokio::test]
async fn to_and_to_many_reach_room_members() -> anyhow::Result<()> {
    let (s, ulak) = with_ulak().await?;
    let [
        (mut in_a, _),
        (mut in_b, _),
        (mut in_both, _),
        (mut in_none, _),
    ] = alphas(&s, ["a", "b", "a,b", ""]).await?;

    assert_eq!(ulak.to("a", "to-a")?, 2);
    assert_eq!(in_a.recv_text().await?, "to-a");
    assert_eq!(in_both.recv_text().await?, "to-a");
    assert_quiet(&mut in_b).await?;

    // Like `to` for each room: a member of both rooms gets it once per room.
    assert_eq!(ulak.to_many(["a", "b"], "many")?, 4);
    assert_eq!(in_a.recv_text().await?, "many");
    assert_eq!(in_b.recv_text().await?, "many");
    assert_eq!(in_both.recv_text().await?, "many");
    assert_eq!(in_both.recv_text().await?, "many");
    assert_eq!(ulak.to("empty-room", "nobody")?, 0);
    for c in [&mut in_a, &mut in_b, &mut in_both, &mut in_none] {
        assert_quiet(c).await?;
    }
    s.stop().await
}

#[tokio::test]
async fn to_socket_delivers_or_reports_socket_not_found() -> anyhow::Result<()> {
    let (s, ulak) = with_ulak().await?;
    let [(mut target, id), (mut other, _)] = alphas(&s, ["", ""]).await?;
    ulak.to_socket(&id, "just you")?;
    assert_eq!(target.recv_text().await?, "just you");
    assert_quiet(&mut other).await?;

    // Only the local transport: an unknown id cannot be forwarded anywhere.
    let err = ulak.to_socket("no-such-socket", "x").unwrap_err();
    assert_eq!(err.code, SendErrorCode::SocketNotFound);
    assert_eq!(err.code.as_str(), "SOCKET_NOT_FOUND");
    assert_eq!(err.namespace.as_deref(), Some("/alpha"));
    assert!(err.to_string().contains("no-such-socket"), "{err}");
    s.stop().await
}

#[tokio::test]
async fn to_socket_on_a_closing_socket_is_send_failed() -> anyhow::Result<()> {
    let s = start(app()).await?;
    let (mut c, _) = alpha(&s, "").await?;
    c.send_text("close-then-send").await?;
    assert_eq!(c.recv_close().await?, (1000, "bye".to_owned()));
    drop(c); // hang up instead of leaving the closing handshake half done
    let notifier = s.app.get::<Notifier>().expect("Notifier");
    assert_eq!(
        *notifier.last.lock().unwrap(),
        Some(SendErrorCode::SendFailed)
    );
    s.stop().await
}

#[tokio::test]
async fn socket_count_follows_connections() -> anyhow::Result<()> {
    let (s, ulak) = with_ulak().await?;
    assert_eq!(ulak.socket_count(), 0);
    let [(c1, _), (_c2, _)] = alphas(&s, ["", ""]).await?;
    assert_eq!(ulak.socket_count(), 2);
    c1.close().await?;
    eventually(|| ulak.socket_count() == 1).await?;
    // Clones are the same handle.
    let clone = ulak.clone();
    assert_eq!(clone.socket_count(), 1);
    assert_eq!(clone.path(), "/alpha");
    s.stop().await
}

#[tokio::test]
async fn unencodable_messages_are_invalid_message() -> anyhow::Result<()> {
    let (s, ulak) = with_ulak().await?;
    let (mut c, id) = alpha(&s, "a").await?;
    let errors = [
        ulak.broadcast(unencodable()).unwrap_err(),
        ulak.to("a", unencodable()).unwrap_err(),
        ulak.to_socket(&id, unencodable()).unwrap_err(),
        ulak.to_many(["a"], unencodable()).unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.code, SendErrorCode::InvalidMessage);
        assert_eq!(err.namespace.as_deref(), Some("/alpha"));
        assert!(
            std::error::Error::source(&err).is_some(),
            "the JSON error is kept"
        );
    }
    assert_quiet(&mut c).await?;
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// UlakBroker

#[tokio::test]
async fn broker_finds_namespaces_by_type_and_path() -> anyhow::Result<()> {
    let (s, broker) = with_broker().await?;
    assert!(broker.ulak::<Alpha>().is_some());
    assert!(
        broker.ulak::<Gamma>().is_none(),
        "Gamma is not registered in this app"
    );
    assert_eq!(broker.namespaces(), ["/alpha", "/beta"]);
    assert!(broker.has_namespace("/beta"));
    assert!(!broker.has_namespace("/gamma"));

    let (mut a, _) = alpha(&s, "r").await?;
    let ns = broker.namespace("/alpha")?;
    assert_eq!(ns.path(), "/alpha");
    assert_eq!(ns.to("r", "by path")?, 1);
    assert_eq!(a.recv_text().await?, "by path");

    let err = broker.namespace("/nope").unwrap_err();
    assert_eq!(err.code, SendErrorCode::NamespaceNotFound);
    assert_eq!(err.namespace.as_deref(), Some("/nope"));
    let err = broker.namespace("alpha").unwrap_err();
    assert_eq!(err.code, SendErrorCode::InvalidNamespace);
    assert_eq!(err.code.to_string(), "INVALID_NAMESPACE");
    s.stop().await
}

#[tokio::test]
async fn broker_sends_by_path_as_asenas_string_keyed_ulak() -> anyhow::Result<()> {
    let (s, broker, [(mut a1, a1_id), (mut a2, _)], mut b) = broker_and_clients(["r", ""]).await?;

    assert_eq!(broker.to("/alpha", "r", "to r")?, 1);
    assert_eq!(a1.recv_text().await?, "to r");
    assert_eq!(broker.broadcast("/alpha", "to alpha")?, 2);
    for c in [&mut a1, &mut a2] {
        assert_eq!(c.recv_text().await?, "to alpha");
    }
    broker.to_socket("/alpha", &a1_id, "to a1")?;
    assert_eq!(a1.recv_text().await?, "to a1");
    // Nothing reached the other namespace, nor a2 beyond the broadcast.
    assert_quiet(&mut a2).await?;
    b.send_text("probe").await?;
    assert_eq!(b.recv_text().await?, "echo:probe");

    let err = broker.broadcast("/nope", "x").unwrap_err();
    assert_eq!(err.code, SendErrorCode::NamespaceNotFound);
    let err = broker.to("alpha", "r", "x").unwrap_err();
    assert_eq!(err.code, SendErrorCode::InvalidNamespace);
    s.stop().await
}

#[tokio::test]
async fn broadcast_all_reaches_every_namespace_with_per_namespace_results() -> anyhow::Result<()> {
    let (s, broker, [(mut a1, _), (mut a2, _)], mut b) = broker_and_clients(["", ""]).await?;

    let result = broker.broadcast_all("everyone");
    assert_eq!((result.total, result.succeeded, result.failed), (2, 2, 0));
    let counts: Vec<usize> = result.results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(counts, [2, 1], "in path order: /alpha, /beta");
    for c in [&mut a1, &mut a2, &mut b] {
        assert_eq!(c.recv_text().await?, "everyone");
    }

    let result = broker.broadcast_all(unencodable());
    assert_eq!((result.total, result.succeeded, result.failed), (2, 0, 2));
    for r in &result.results {
        assert_eq!(r.as_ref().unwrap_err().code, SendErrorCode::InvalidMessage);
    }
    for c in [&mut a1, &mut a2, &mut b] {
        assert_quiet(c).await?;
    }
    s.stop().await
}

#[tokio::test]
async fn bulk_send_reports_each_item_and_never_fails_the_batch() -> anyhow::Result<()> {
    let (s, broker) = with_broker().await?;
    let (mut a, a_id) = alpha(&s, "room").await?;
    let mut b = s.connect("/beta").await?;

    let result = broker.bulk_send([
        BulkOp::to("/alpha", "room", "one"),
        BulkOp::to_socket("/alpha", "ghost", "lost"),
        BulkOp::broadcast("/nope", "lost"),
        BulkOp::to("beta", "room", "lost"),
        BulkOp::broadcast("/beta", unencodable()),
        BulkOp::broadcast("/beta", "two"),
        BulkOp::to_socket("/alpha", &a_id, "three"),
    ]);
    assert_eq!(result.total, 7);
    assert_eq!(result.succeeded, 3);
    assert_eq!(result.failed, 4);
    let outcome: Vec<Result<usize, SendErrorCode>> = result
        .results
        .iter()
        .map(|r| r.as_ref().map(|n| *n).map_err(|e| e.code))
        .collect();
    assert_eq!(
        outcome,
        [
            Ok(1),
            Err(SendErrorCode::SocketNotFound),
            Err(SendErrorCode::NamespaceNotFound),
            Err(SendErrorCode::InvalidNamespace),
            Err(SendErrorCode::InvalidMessage),
            Ok(1),
            Ok(1),
        ]
    );
    // Items after failures were still delivered, in order.
    assert_eq!(a.recv_text().await?, "one");
    assert_eq!(a.recv_text().await?, "three");
    assert_eq!(b.recv_text().await?, "two");
    assert_quiet(&mut a).await?;
    assert_quiet(&mut b).await?;

    let empty = broker.bulk_send(Vec::new());
    assert_eq!((empty.total, empty.succeeded, empty.failed), (0, 0, 0));
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// Dependency injection

#[tokio::test]
async fn ulak_injection_adds_no_edge_so_service_and_socket_may_inject_each_other()
-> anyhow::Result<()> {
    // Notifier injects Ulak<Alpha> while Alpha injects Arc<Notifier>: builds fine.
    let s = start(app()).await?;
    let notifier = s.app.get::<Notifier>().expect("Notifier");
    let socket = s.app.get::<Alpha>().expect("Alpha");
    assert!(Arc::ptr_eq(&notifier, &socket.notifier), "one singleton");
    assert_eq!(notifier.broker.namespaces(), ["/alpha", "/beta"]);

    let (mut c, _) = alpha(&s, "news").await?;
    assert_eq!(notifier.notify("news")?, 1);
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "notice", "room": "news"})
    );
    s.stop().await
}

/// Building `builder` fails, with an error that names each of `needles`.
async fn assert_startup_error(builder: AsenaBuilder, needles: &[&str]) {
    let err = builder.build().await.unwrap_err().to_string();
    for needle in needles {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[tokio::test]
async fn a_real_cycle_through_arc_fields_still_fails() {
    assert_startup_error(
        isolated()
            .service::<CyclicService>()
            .websocket::<CyclicSocket>(),
        &[
            "Circular dependency detected",
            "CyclicService",
            "CyclicSocket",
        ],
    )
    .await;
}

#[tokio::test]
async fn ulak_of_an_unregistered_socket_is_a_startup_error() {
    assert_startup_error(
        isolated()
            .service::<NeedsBeta>()
            .websocket::<Alpha>()
            .service::<Notifier>(),
        &["Ulak<Beta>", "not a registered websocket service"],
    )
    .await;
}

#[tokio::test]
async fn apps_in_one_process_do_not_share_namespaces() -> anyhow::Result<()> {
    let one = start(app()).await?;
    let two = start(app()).await?;
    let (mut c1, _) = alpha(&one, "").await?;
    let (mut c2, _) = alpha(&two, "").await?;
    assert_eq!(
        one.app
            .ulak::<Alpha>()
            .expect("ulak")
            .broadcast("only one")?,
        1
    );
    assert_eq!(c1.recv_text().await?, "only one");
    assert_quiet(&mut c2).await?;
    stop_all([one, two]).await
}

// ---------------------------------------------------------------------------------------
// HTTP → WebSocket

async fn via_ulak(FromApp(ulak): FromApp<Ulak<Alpha>>, Path(room): Path<String>) -> String {
    ulak.to(&room, format!("http:{room}"))
        .map(|n| n.to_string())
        .unwrap_or_default()
}

async fn via_broker(FromApp(broker): FromApp<UlakBroker>) -> axum::Json<Value> {
    let result = broker.broadcast_all("http:all");
    axum::Json(json!({"total": result.total, "succeeded": result.succeeded}))
}

async fn via_service(FromApp(notifier): FromApp<Notifier>, Path(room): Path<String>) -> StatusCode {
    match notifier.notify(&room) {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn via_missing(FromApp(_missing): FromApp<Unregistered>) -> StatusCode {
    StatusCode::OK
}

fn http_app() -> AsenaBuilder {
    app().router(
        axum::Router::new()
            .route("/ulak/{room}", post(via_ulak))
            .route("/broker", post(via_broker))
            .route("/service/{room}", post(via_service))
            .route("/missing", post(via_missing)),
    )
}

#[tokio::test]
async fn http_handlers_send_to_sockets_through_inject() -> anyhow::Result<()> {
    let s = start(http_app()).await?;
    let (mut a, _) = alpha(&s, "r1").await?;
    let mut b = s.connect("/beta").await?;

    let resp = s.request("POST", "/ulak/r1", None).await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "1"));
    assert_eq!(a.recv_text().await?, "http:r1");

    let resp = s.request("POST", "/broker", None).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()?, json!({"total": 2, "succeeded": 2}));
    assert_eq!(a.recv_text().await?, "http:all");
    assert_eq!(b.recv_text().await?, "http:all");

    let resp = s.request("POST", "/service/r1", None).await?;
    assert_eq!(resp.status, 204);
    assert_eq!(
        a.recv_json().await?,
        json!({"type": "notice", "room": "r1"})
    );

    // A component the app does not have: 500, and the server keeps serving.
    let resp = s.request("POST", "/missing", None).await?;
    assert_eq!(resp.status, 500);
    assert_quiet(&mut a).await?;
    assert_quiet(&mut b).await?;
    s.stop().await
}

/// Asena's service-level `this.to(room, data)`, `this.in(data)` and `this.sockets`: the
/// service injects its own namespace as `Ulak<Self>` (no edge, so no cycle) and sends from
/// its own methods, which other code calls on the service value.
#[websocket("/announce")]
struct Announcer {
    #[inject]
    this: Ulak<Announcer>,
}

impl Announcer {
    fn notify_room(&self, room: &str, text: &str) -> Result<usize, SendError> {
        self.this
            .to(room, Json(json!({"type": "announcement", "text": text})))
    }

    fn broadcast_notification(&self, text: &str) -> Result<usize, SendError> {
        self.this
            .broadcast(Json(json!({"type": "notification", "text": text})))
    }

    fn connected(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .this
            .sockets()
            .iter()
            .map(|s| s.id().to_owned())
            .collect();
        ids.sort();
        ids
    }
}

impl WebSocketService for Announcer {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        if let Some(room) = ws.query("room") {
            ws.subscribe(room)?;
        }
        ws.send(ws.id())?;
        Ok(())
    }

    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_sends_to_its_own_rooms_and_sockets_from_its_methods() -> anyhow::Result<()> {
    let s = start(isolated().websocket::<Announcer>()).await?;
    let announcer = s.app.get::<Announcer>().expect("Announcer");
    let mut lobby = s.connect("/announce?room=lobby").await?;
    let mut other = s.connect("/announce").await?;
    let lobby_id = lobby.recv_text().await?;
    let other_id = other.recv_text().await?;

    assert_eq!(announcer.notify_room("lobby", "doors open")?, 1);
    assert_eq!(
        lobby.recv_json().await?,
        json!({"type": "announcement", "text": "doors open"})
    );
    assert_eq!(announcer.broadcast_notification("hello all")?, 2);
    for c in [&mut lobby, &mut other] {
        assert_eq!(
            c.recv_json().await?,
            json!({"type": "notification", "text": "hello all"})
        );
    }
    let mut expected = vec![lobby_id, other_id];
    expected.sort();
    assert_eq!(announcer.connected(), expected);
    s.stop().await
}

//! The live inspector: its page, JSON API and WebSocket feed refuse what the guard refuses,
//! and the guard sees the path the client asked for; it lists a namespace's sockets and rooms
//! a page at a time, each socket with its data as its service shows it (a managed one with its
//! user) and its pending requests, each room with who is present in it; it serves the last
//! samples of every instance for its charts; its actions disconnect a socket and take one out
//! of a room; and over a
//! real Redis (127.0.0.1:6379) and a real NATS (127.0.0.1:4222), both started by the test
//! command, two instances see each other in the fleet view, with their counts, until one
//! stops or goes silent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::prelude::*;
use asena_runtime::transport::{NatsTransport, RedisTransport};
use asena_runtime::wire::{self, Envelope};
use asena_runtime::{AsenaBuilder, InspectorToken};
use asena_tests::broker::REDIS;
use asena_tests::{
    Client, TestServer, WAIT, eventually, http_request, isolated, join_hall, start, unique,
    until_some, upgrade_request,
};
use serde_json::Value;

const TOKEN: &str = "test-token-1234";

/// A guard that would accept the token from anywhere, the URL included: the inspector must
/// still refuse a token in the URL before it runs.
struct Lenient(&'static str);

impl Middleware for Lenient {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let given = ctx.bearer_token().or_else(|| ctx.query("token"));
        if !given.is_some_and(|g| asena_runtime::secret_eq(g, self.0)) {
            return Err(Refusal::json(401, json!({"error": "Unauthorized"})));
        }
        next.run(ctx).await
    }
}

/// Admits every request, recording the URI it was asked for.
struct Recording(Arc<Mutex<Vec<String>>>);

impl Middleware for Recording {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        self.0
            .lock()
            .expect("not poisoned")
            .push(ctx.uri().to_string());
        next.run(ctx).await
    }
}

asena_tests::hall_service!(Hall, "/hall");
asena_tests::managed_service!(Users, "/users");

/// Who a desk socket is, as [`Badge`] stores it: the inspector is shown its name and notes,
/// never its secret.
#[derive(Debug, Clone, Default)]
pub struct Staff {
    name: String,
    /// Held and never shown: the test checks the inspector does not see it.
    #[allow(dead_code)]
    secret: String,
    notes: String,
}

/// Stores `?name=` and `?notes=` (repeated `?size=` times) as the socket's [`Staff`].
#[middleware]
#[derive(Debug)]
pub struct Badge;

impl Middleware for Badge {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let size = ctx.query("size").and_then(|n| n.parse().ok()).unwrap_or(1);
        let staff = Staff {
            name: ctx.query("name").unwrap_or("nobody").to_owned(),
            secret: "s3cret".to_owned(),
            notes: ctx.query("notes").unwrap_or("").repeat(size),
        };
        ctx.set_websocket_value(staff);
        next.run(ctx).await
    }
}

/// Joins room `desk` and, when the app has presence, is present in it under its name; on
/// `ask`, asks its client something and waits (the request stays pending until the client
/// answers, which the tests' clients never do).
#[websocket(path = "/desk", middlewares = [Badge])]
#[derive(Debug)]
pub struct Desk;

impl WebSocketService for Desk {
    type Data = Staff;

    fn inspect(staff: &Staff) -> Option<Value> {
        Some(json!({"name": staff.name, "notes": staff.notes}))
    }

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.subscribe("desk")?;
        if ws.namespace().presence().is_enabled() {
            let name = ws.data().values.name.clone();
            ws.presence()
                .track_as("desk", &name, &json!({"role": "staff"}))?;
        }
        ws.send_json(&json!({"type": "ready", "id": ws.id()}))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        if msg.as_text() == Some("ask") {
            let request = ws.request::<Value>(json!("anyone there?")).timeout(WAIT);
            tokio::spawn(async move {
                let _ = request.await;
            });
        }
        Ok(())
    }
}

fn app() -> AsenaBuilder {
    isolated()
        .websocket::<Hall>()
        .inspector("/_asena", InspectorToken::new(TOKEN))
        .announce_every(Duration::from_millis(100))
}

async fn get(server: &TestServer, path: &str, auth: bool) -> anyhow::Result<(u16, Value)> {
    let mut req = hyper::Request::get(server.http_url(path));
    if auth {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    let resp = http_request(req.body(Default::default())?).await?;
    let body = serde_json::from_str(&resp.body).unwrap_or(Value::String(resp.body.clone()));
    Ok((resp.status, body))
}

async fn post(server: &TestServer, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let req = hyper::Request::post(server.http_url(path))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_string().into())?;
    let resp = http_request(req).await?;
    Ok((resp.status, resp.json()?))
}

/// The `name` of each object of the JSON array `list`, with its number under `count` (an
/// empty name or 0 where one is missing).
fn names_with(list: &Value, count: &str) -> Vec<(String, u64)> {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let name = item["name"].as_str().unwrap_or("").to_owned();
            (name, item[count].as_u64().unwrap_or(0))
        })
        .collect()
}

/// The status of an upgrade to the inspector's feed (`/_asena/ws`) with `headers`.
async fn feed_upgrade(server: &TestServer, headers: &[(&str, &str)]) -> anyhow::Result<u16> {
    Ok(upgrade_request(server.addr, "/_asena/ws", headers).await?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_refuses_requests_the_guard_refuses() -> anyhow::Result<()> {
    let server = start(app()).await?;
    for path in [
        "/_asena/api/fleet",
        "/_asena/api/namespaces",
        "/_asena/api/sockets",
        "/_asena/api/rooms",
        "/_asena/api/nothing-here",
    ] {
        let (status, body) = get(&server, path, false).await?;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"], "Unauthorized", "{path}");
    }
    // The page without credentials: the login form, with the guard's 401.
    for path in ["/_asena", "/_asena/"] {
        let (status, body) = get(&server, path, false).await?;
        assert_eq!(status, 401, "{path}");
        let body = body.as_str().unwrap_or_default();
        assert!(body.contains(r#"action="/_asena/login""#), "{path}: {body}");
        assert!(
            !body.contains("Fleet"),
            "{path}: the login form shows no data"
        );
    }
    for path in ["/_asena/api/disconnect", "/_asena/api/leave"] {
        let req = hyper::Request::post(server.http_url(path))
            .body(json!({"socket": "x"}).to_string().into())?;
        assert_eq!(http_request(req).await?.status, 401, "{path}");
    }
    // The WebSocket: refused before the upgrade, without and with a wrong token.
    let (status, resp) = upgrade_request(server.addr, "/_asena/ws", &[]).await?;
    assert_eq!(status, 401, "{resp}");
    assert_eq!(
        feed_upgrade(&server, &[("authorization", "Bearer nope")]).await?,
        401
    );
    assert!(Client::connect(&server.ws_url("/_asena/ws")).await.is_err());

    // With the token: the page, the API, the feed.
    let page = http_request(
        hyper::Request::get(server.http_url("/_asena"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Default::default())?,
    )
    .await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Asena inspector"), "{page}");
    assert_eq!(
        asena_tests::header_values(&page, "content-type"),
        ["text/html; charset=utf-8"]
    );
    let (status, namespaces) = get(&server, "/_asena/api/namespaces", true).await?;
    assert_eq!(status, 200);
    assert_eq!(namespaces[0]["path"], "/hall");
    let (status, missing) = get(&server, "/_asena/api/nothing-here", true).await?;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(
        missing["error"],
        "No inspector resource at /_asena/api/nothing-here"
    );
    // Actions are POSTs, reads are GETs.
    let (status, wrong) = get(&server, "/_asena/api/disconnect", true).await?;
    assert_eq!((status, wrong["error"].as_str()), (405, Some("Use POST")));
    let (status, wrong) = post(&server, "/_asena/api/fleet", json!({})).await?;
    assert_eq!((status, wrong["error"].as_str()), (405, Some("Use GET")));
    let mut bearer = Client::connect_with_headers(
        &server.ws_url("/_asena/ws"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await?;
    let first = bearer.recv_type("fleet").await?;
    assert!(first["self"].is_string(), "{first}");
    // The inspector's own sockets are not one of the app's namespaces.
    assert_eq!(server.app.namespaces().len(), 1);
    assert_eq!(
        server.app.namespace("/hall").map(|n| n.socket_count()),
        Some(0)
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guard_sees_the_path_the_client_asked_for() -> anyhow::Result<()> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = start(
        isolated()
            .websocket::<Hall>()
            .inspector("/_asena", Recording(seen.clone())),
    )
    .await?;
    let (status, page) = get(&server, "/_asena/api/sockets?ns=/hall", false).await?;
    assert_eq!(status, 200, "{page}");
    let (status, missing) = get(&server, "/_asena/api/nothing-here", false).await?;
    assert_eq!(status, 404, "{missing}");
    let mut feed = Client::connect(&server.ws_url("/_asena/ws")).await?;
    feed.recv_type("fleet").await?;
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        [
            "/_asena/api/sockets?ns=/hall",
            "/_asena/api/nothing-here",
            "/_asena/ws"
        ]
    );
    server.stop().await
}

/// A login: the form posted from the inspector's own origin; returns the response.
async fn login(
    server: &TestServer,
    form: &str,
    origin: Option<&str>,
) -> anyhow::Result<asena_tests::HttpResponse> {
    let mut req = hyper::Request::post(server.http_url("/_asena/login"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    http_request(req.body(form.to_owned().into())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_never_authenticates_in_the_url() -> anyhow::Result<()> {
    // Even a guard that reads `?token=` never sees one: the inspector refuses it first.
    let server = start(
        isolated()
            .websocket::<Hall>()
            .inspector("/_asena", Lenient(TOKEN)),
    )
    .await?;
    for path in [
        format!("/_asena?token={TOKEN}"),
        format!("/_asena/?token={TOKEN}"),
        format!("/_asena/api/fleet?token={TOKEN}"),
        format!("/_asena/api/sockets?ns=/hall&token={TOKEN}"),
        "/_asena?token=wrong".to_owned(),
    ] {
        let (status, body) = get(&server, &path, false).await?;
        assert_eq!(status, 400, "{path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("never in the URL"), "{path}: {body}");
    }
    let (status, resp) =
        upgrade_request(server.addr, &format!("/_asena/ws?token={TOKEN}"), &[]).await?;
    assert_eq!(status, 400, "{resp}");
    assert!(
        Client::connect(&server.ws_url(&format!("/_asena/ws?token={TOKEN}")))
            .await
            .is_err()
    );
    // The same guard admits the header.
    let (status, _) = get(&server, "/_asena/api/fleet", true).await?;
    assert_eq!(status, 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_signs_in_with_a_cookie() -> anyhow::Result<()> {
    let server = start(app()).await?;
    let own_origin = format!("http://{}", server.addr);
    // A wrong token: the login form again, with the guard's status, and no cookie.
    let wrong = login(&server, "token=nope", Some(&own_origin)).await?;
    assert_eq!(wrong.status, 401, "{wrong}");
    assert!(wrong.body.contains("refused"), "{wrong}");
    assert!(asena_tests::header_values(&wrong, "set-cookie").is_empty());
    // Another site's page cannot log a browser in.
    let forged = login(
        &server,
        &format!("token={TOKEN}"),
        Some("https://evil.example"),
    )
    .await?;
    assert_eq!(forged.status, 403, "{forged}");
    assert!(asena_tests::header_values(&forged, "set-cookie").is_empty());
    // Only POST logs in.
    let (status, _) = get(&server, "/_asena/login", false).await?;
    assert_eq!(status, 405);
    // A body past 16 KiB is not read: 413, no cookie.
    let huge = login(
        &server,
        &format!("token={TOKEN}&pad={}", "x".repeat(16 * 1024)),
        Some(&own_origin),
    )
    .await?;
    assert_eq!(huge.status, 413, "{huge}");
    assert!(asena_tests::header_values(&huge, "set-cookie").is_empty());

    let ok = login(&server, &format!("token={TOKEN}"), Some(&own_origin)).await?;
    assert_eq!(ok.status, 303, "{ok}");
    assert_eq!(asena_tests::header_values(&ok, "location"), ["/_asena/"]);
    let cookies = asena_tests::header_values(&ok, "set-cookie");
    let [cookie] = cookies.as_slice() else {
        anyhow::bail!("one cookie expected: {cookies:?}");
    };
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/_asena"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains(TOKEN),
        "the cookie encodes the token: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();

    // The cookie authenticates the page, the API and the feed's upgrade.
    let with_cookie = |path: &str| {
        hyper::Request::get(server.http_url(path))
            .header("cookie", format!("theme=dark; {pair}"))
            .body(Default::default())
    };
    let page = http_request(with_cookie("/_asena/")?).await?;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.body.contains("Fleet"), "the page itself");
    let api = http_request(with_cookie("/_asena/api/namespaces")?).await?;
    assert_eq!(api.status, 200, "{api}");
    assert_eq!(api.json()?[0]["path"], "/hall");
    let mut feed =
        Client::connect_with_headers(&server.ws_url("/_asena/ws"), &[("cookie", &pair)]).await?;
    feed.recv_type("fleet").await?;
    // A forged cookie does not.
    assert_eq!(
        feed_upgrade(&server, &[("cookie", "asena_inspector=bm9wZQ")]).await?,
        401
    );

    // Signing out clears the cookie.
    let out = http_request(
        hyper::Request::post(server.http_url("/_asena/logout"))
            .header("origin", &own_origin)
            .body(Default::default())?,
    )
    .await?;
    assert_eq!(out.status, 303, "{out}");
    let cleared = asena_tests::header_values(&out, "set-cookie");
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("asena_inspector=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_and_rooms_are_listed_a_page_at_a_time() -> anyhow::Result<()> {
    let server = start(app()).await?;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..120 {
        let rooms = if i % 2 == 0 { "even,all" } else { "odd,all" };
        let rooms = if i == 7 { "seven,odd,all" } else { rooms };
        let (client, id) = join_hall(&server, rooms).await?;
        clients.push(client);
        ids.push(id);
    }
    // Oldest first, 50 a page, every socket once.
    let mut seen = Vec::new();
    for offset in [0, 50, 100] {
        let (status, page) = get(
            &server,
            &format!("/_asena/api/sockets?ns=/hall&offset={offset}&limit=50"),
            true,
        )
        .await?;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 120);
        assert_eq!(page["matched"], 120);
        let rows = page["sockets"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), if offset == 100 { 20 } else { 50 });
        for row in rows {
            assert_eq!(row["path"], "/hall");
            assert!(
                row["addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("127.0.0.1:"))
            );
            assert!(
                row["connectedAt"]
                    .as_u64()
                    .is_some_and(|t| t > 1_700_000_000_000)
            );
            assert!(row["queuedBytes"].is_u64());
            seen.push(row["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(seen, ids, "pages hold every socket once, oldest first");

    // Search: by room, by id.
    let (_, sevens) = get(&server, "/_asena/api/sockets?q=seven", true).await?;
    assert_eq!(sevens["matched"], 1, "{sevens}");
    assert_eq!(sevens["sockets"][0]["id"], ids[7].as_str());
    let mut rooms: Vec<String> = serde_json::from_value(sevens["sockets"][0]["rooms"].clone())?;
    rooms.sort();
    assert_eq!(rooms, ["all", "odd", "seven"]);
    let (_, by_id) = get(
        &server,
        &format!("/_asena/api/sockets?q={}", &ids[42][24..]),
        true,
    )
    .await?;
    assert_eq!(by_id["matched"], 1, "{by_id}");

    // Rooms, by name, with sizes.
    let (_, all_rooms) = get(&server, "/_asena/api/rooms?ns=/hall", true).await?;
    assert_eq!(all_rooms["total"], 4);
    let sizes = names_with(&all_rooms["rooms"], "size");
    assert_eq!(
        sizes,
        [
            ("all".to_owned(), 120),
            ("even".to_owned(), 60),
            ("odd".to_owned(), 60),
            ("seven".to_owned(), 1)
        ]
    );
    let (_, paged) = get(&server, "/_asena/api/rooms?q=e&offset=1&limit=1", true).await?;
    assert_eq!(paged["matched"], 2, "{paged}");
    assert_eq!(paged["rooms"][0]["name"], "seven");
    let (status, unknown) = get(&server, "/_asena/api/sockets?ns=/nowhere", true).await?;
    assert_eq!(status, 404);
    assert_eq!(unknown["error"], "No namespace at /nowhere");
    for client in clients {
        client.close().await?;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_disconnect_a_socket_and_take_one_out_of_a_room() -> anyhow::Result<()> {
    let server = start(app()).await?;
    let (mut alice, alice_id) = join_hall(&server, "lobby,games").await?;
    let (mut bob, bob_id) = join_hall(&server, "lobby").await?;

    // Take alice out of `games`: she stays connected and in `lobby`.
    let out_of_games = json!({"socket": alice_id, "room": "games"});
    let (status, left) = post(&server, "/_asena/api/leave", out_of_games.clone()).await?;
    assert_eq!(status, 200, "{left}");
    assert_eq!(left["left"], true);
    let hall = server.app.namespace("/hall").expect("hall");
    let alice_socket = hall.socket(&alice_id).expect("alice");
    assert_eq!(alice_socket.rooms()[1..], ["lobby"]);
    let (status, again) = post(&server, "/_asena/api/leave", out_of_games).await?;
    assert_eq!(status, 404, "{again}");
    assert_eq!(
        again["error"],
        format!("Socket {alice_id} is not in room games")
    );
    bob.send_text("hello lobby").await?;
    assert_eq!(alice.recv_text().await?, "hello lobby");

    // Disconnect bob: he gets the close, alice goes on being served.
    let (status, done) = post(&server, "/_asena/api/disconnect", json!({"socket": bob_id})).await?;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["namespace"], "/hall");
    let (code, reason) = bob.recv_close().await?;
    assert_eq!(
        (code, reason.as_str()),
        (1000, "Disconnected by an operator")
    );
    eventually(|| hall.socket_count() == 1).await?;
    let (status, gone) = post(&server, "/_asena/api/disconnect", json!({"socket": bob_id})).await?;
    assert_eq!(status, 404, "{gone}");

    // A chosen code and reason; a code that may not be sent and a bad body are refused.
    let (status, bad) = post(
        &server,
        "/_asena/api/disconnect",
        json!({"socket": alice_id, "code": 1006}),
    )
    .await?;
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = post(&server, "/_asena/api/disconnect", json!({"sock": 1})).await?;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Invalid body")),
        "{bad}"
    );
    let (status, _) = post(
        &server,
        "/_asena/api/disconnect",
        json!({"socket": alice_id, "code": 4000, "reason": "bye alice"}),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(alice.recv_close().await?, (4000, "bye alice".to_owned()));
    eventually(|| hall.socket_count() == 0).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_pushes_counts_and_rates_as_they_move() -> anyhow::Result<()> {
    let server = start(app()).await?;
    let mut feed = Client::connect_with_headers(
        &server.ws_url("/_asena/ws"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await?;
    let (mut a, _) = join_hall(&server, "room").await?;
    let (mut b, _) = join_hall(&server, "room").await?;
    // Keep traffic flowing while the feed reports: 2 sockets, messages in and deliveries.
    let deadline = tokio::time::Instant::now() + WAIT;
    let snapshot = loop {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the feed never showed traffic"
        );
        a.send_text("ping").await?;
        b.recv_text().await?;
        a.recv_text().await?;
        let msg = feed.recv_type("fleet").await?;
        let this = msg["instances"]
            .as_array()
            .and_then(|list| list.iter().find(|i| i["self"] == true).cloned())
            .unwrap_or(Value::Null);
        if this["sockets"] == 2 && this["rates"]["received"].as_f64().unwrap_or(0.0) > 0.0 {
            break this;
        }
    };
    let hall = &snapshot["namespaces"][0];
    assert_eq!(hall["path"], "/hall");
    assert_eq!(hall["rooms"], 1);
    assert!(
        hall["rates"]["deliveries"].as_f64().unwrap_or(0.0) > 0.0,
        "{snapshot}"
    );
    assert!(
        snapshot["addr"]
            .as_str()
            .is_some_and(|a| a == server.addr.to_string()),
        "{snapshot}"
    );
    server.stop().await
}

/// An instance on a Redis channel or a NATS subject, announcing every 100 ms.
async fn instance(broker: &str, channel: &str, name: &str) -> anyhow::Result<TestServer> {
    let builder = app().instance_name(name);
    let builder = if broker.starts_with("nats://") {
        builder.transport(NatsTransport::new(broker).subject(channel))
    } else {
        builder.transport(RedisTransport::new(broker).channel(channel))
    };
    start(builder).await
}

async fn fleet_names(server: &TestServer) -> anyhow::Result<Vec<(String, u64)>> {
    let (status, fleet) = get(server, "/_asena/api/fleet", true).await?;
    anyhow::ensure!(status == 200, "fleet: {status} {fleet}");
    Ok(names_with(&fleet["instances"], "sockets"))
}

/// Polls the fleet view of `server` until `check` holds, within [`WAIT`].
async fn fleet_until(
    server: &TestServer,
    check: impl Fn(&[(String, u64)]) -> bool,
) -> anyhow::Result<Vec<(String, u64)>> {
    let mut last = Vec::new();
    until_some(WAIT, "the fleet view to match", async || {
        let names = fleet_names(server).await?;
        if check(&names) {
            return Ok(Some(names));
        }
        last = names;
        Ok(None)
    })
    .await
    .with_context(|| format!("last fleet view: {last:?}"))
}

asena_tests::on_each_broker! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    two_instances_see_each_other_until_one_stops => two_instances_see_each_other_until_one_stops;
}

async fn two_instances_see_each_other_until_one_stops(broker: &str) -> anyhow::Result<()> {
    let channel = unique("inspector");
    let a = instance(broker, &channel, "alpha").await?;
    let b = instance(broker, &channel, "beta").await?;
    let (_c1, _) = join_hall(&b, "x").await?;
    let (_c2, _) = join_hall(&b, "y").await?;
    // alpha sees itself first, then beta with its two sockets; beta sees alpha.
    let seen = fleet_until(&a, |f| f.iter().any(|(n, s)| n == "beta" && *s == 2)).await?;
    assert_eq!(seen, [("alpha".to_owned(), 0), ("beta".to_owned(), 2)]);
    fleet_until(&b, |f| f.len() == 2 && f[0].0 == "beta").await?;
    // beta's broker traffic shows once an announcement of beta's was made after it heard
    // alpha (its first one may come before).
    let fleet = until_some(WAIT, "beta's broker traffic to show", async || {
        let (_, fleet) = get(&a, "/_asena/api/fleet", true).await?;
        let received = fleet["instances"][1]["transport"]["received"].as_u64();
        Ok(received.is_some_and(|n| n > 0).then_some(fleet))
    })
    .await?;
    let beta = &fleet["instances"][1];
    assert_eq!(beta["self"], false);
    assert_eq!(beta["addr"], b.addr.to_string());
    assert_eq!(beta["namespaces"][0]["rooms"], 2);
    // Its broker traffic: it announced itself (published), and heard alpha (received).
    let broker = &beta["transport"];
    assert!(
        broker["published"].as_u64().is_some_and(|n| n > 0),
        "{beta}"
    );
    assert!(broker["received"].as_u64().is_some_and(|n| n > 0), "{beta}");
    assert_eq!(broker["dropped"], 0, "{beta}");
    assert!(broker["publishedRate"].is_f64(), "{beta}");

    // beta stops: it says goodbye, and alpha drops it.
    b.stop().await?;
    let left = fleet_until(&a, |f| f.len() == 1).await?;
    assert_eq!(left, [("alpha".to_owned(), 0)]);
    a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_instance_drops_off_the_fleet_view() -> anyhow::Result<()> {
    let channel = unique("inspector-silent");
    let a = instance(REDIS, &channel, "alpha").await?;
    // An instance that announces once through Redis, then never again (as if it were killed).
    let announcement = json!({
        "v": 1, "id": "ghost-1", "name": "ghost", "addr": "10.0.0.9:3000",
        "startedAt": 1, "at": 2, "everyMs": 200,
        "namespaces": [{"path": "/hall", "sockets": 7, "rooms": 1, "received": 0, "sent": 0, "deliveries": 0}]
    });
    let envelope = Envelope::encode(
        wire::FLEET_TOPIC,
        announcement.to_string().as_bytes(),
        false,
        "ghost-pod",
        None,
    );
    let redis = redis::Client::open(REDIS)?;
    let mut conn = tokio::time::timeout(WAIT, redis.get_multiplexed_async_connection()).await??;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(envelope)
        .query_async(&mut conn)
        .await?;
    let seen = fleet_until(&a, |f| f.len() == 2).await?;
    assert_eq!(seen[1], ("ghost".to_owned(), 7));
    // Silent for three of its 200 ms intervals: gone.
    fleet_until(&a, |f| f.len() == 1).await?;
    // Malformed announcements are dropped; the view stays as it was.
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(Envelope::encode(
            wire::FLEET_TOPIC,
            b"{not json",
            false,
            "ghost-pod",
            None,
        ))
        .query_async(&mut conn)
        .await?;
    assert_eq!(fleet_names(&a).await?, [("alpha".to_owned(), 0)]);
    a.stop().await
}

/// The rows of one page of `list` (`sockets`, `rooms`, `entries`) at `path`.
async fn rows(server: &TestServer, path: &str, list: &str) -> anyhow::Result<Vec<Value>> {
    let (status, page) = get(server, path, true).await?;
    anyhow::ensure!(status == 200, "{path}: {status} {page}");
    Ok(page[list].as_array().cloned().unwrap_or_default())
}

/// A socket of the desk as `name`, with `notes` repeated `size` times; its id.
async fn join_desk(
    server: &TestServer,
    name: &str,
    notes: &str,
    size: usize,
) -> anyhow::Result<(Client, String)> {
    let mut client = server
        .connect(&format!("/desk?name={name}&notes={notes}&size={size}"))
        .await?;
    let ready = client.recv_type("ready").await?;
    let id = ready["id"].as_str().context("no id")?.to_owned();
    Ok((client, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_show_their_data_as_their_service_shows_it_and_their_pending_requests()
-> anyhow::Result<()> {
    let server = start(
        app()
            .websocket::<Desk>()
            .middleware::<Badge>()
            .websocket::<Users>(),
    )
    .await?;
    let (mut ada, ada_id) = join_desk(&server, "ada", "on-call", 1).await?;
    // Values over 2 KiB as JSON are left out, with their size.
    let (_big, big_id) = join_desk(&server, "big", "x", 3000).await?;
    let (_hall, _) = join_hall(&server, "").await?;
    let (_bob, _) = asena_tests::managed_login(&server, "/users", json!({"user": "bob"})).await?;

    let desk = rows(&server, "/_asena/api/sockets?ns=/desk", "sockets").await?;
    let row = |id: &str| {
        desk.iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let ada_row = row(&ada_id);
    assert_eq!(
        ada_row["data"]["values"],
        json!({"name": "ada", "notes": "on-call"})
    );
    assert!(
        ada_row["data"]["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("Staff")),
        "{ada_row}"
    );
    assert!(
        !ada_row.to_string().contains("s3cret"),
        "only what inspect shows"
    );
    assert_eq!(ada_row["acksPending"], 0);
    let big_row = row(&big_id);
    assert_eq!(big_row["data"]["values"], Value::Null, "{big_row}");
    assert!(
        big_row["data"]["valuesBytes"]
            .as_u64()
            .is_some_and(|n| n > 3000)
    );

    // A service that does not opt in shows its data's type alone.
    let hall = rows(&server, "/_asena/api/sockets?ns=/hall", "sockets").await?;
    assert_eq!(hall[0]["data"], json!({"type": "()"}));

    // A managed socket shows its user and state; the user is searchable.
    let users = rows(&server, "/_asena/api/sockets?ns=/users&q=BOB", "sockets").await?;
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["data"]["user"], "bob");
    assert_eq!(users[0]["data"]["state"], "Authenticated");

    // A request the client has not answered is pending.
    ada.send_text("ask").await?;
    assert_eq!(ada.recv_json().await?["data"], "anyone there?");
    until_some(WAIT, "a pending request", async || {
        let desk = rows(
            &server,
            &format!("/_asena/api/sockets?ns=/desk&q={ada_id}"),
            "sockets",
        )
        .await?;
        Ok((desk[0]["acksPending"] == 1).then_some(()))
    })
    .await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rooms_show_who_is_present_on_every_instance() -> anyhow::Result<()> {
    let server = start(
        app()
            .websocket::<Desk>()
            .middleware::<Badge>()
            .presence(asena_runtime::presence::PresenceOptions::default()),
    )
    .await?;
    let (_ada, _) = join_desk(&server, "ada", "", 1).await?;
    let (_ada_again, _) = join_desk(&server, "ada", "", 1).await?;
    let (grace, _) = join_desk(&server, "grace", "", 1).await?;

    let rooms = rows(&server, "/_asena/api/rooms?ns=/desk", "rooms").await?;
    assert_eq!(
        names_with(&Value::Array(rooms), "present"),
        [("desk".to_owned(), 2)]
    );
    let entries = rows(
        &server,
        "/_asena/api/presence?ns=/desk&room=desk",
        "entries",
    )
    .await?;
    let keys: Vec<(&str, usize)> = entries
        .iter()
        .map(|e| {
            let metas = e["metas"].as_array().map_or(0, Vec::len);
            (e["key"].as_str().unwrap_or_default(), metas)
        })
        .collect();
    assert_eq!(keys, [("ada", 2), ("grace", 1)], "two sessions of ada");
    assert_eq!(entries[1]["metas"][0]["role"], "staff");
    // Paged and searchable.
    let (_, page) = get(
        &server,
        "/_asena/api/presence?ns=/desk&room=desk&q=GRA&limit=1",
        true,
    )
    .await?;
    assert_eq!(
        (page["total"].clone(), page["matched"].clone()),
        (json!(2), json!(1)),
        "{page}"
    );
    assert_eq!(page["entries"][0]["key"], "grace");

    grace.close().await?;
    until_some(WAIT, "grace gone", async || {
        let entries = rows(
            &server,
            "/_asena/api/presence?ns=/desk&room=desk",
            "entries",
        )
        .await?;
        Ok((entries.len() == 1).then_some(()))
    })
    .await?;
    let (status, missing) = get(&server, "/_asena/api/presence?ns=/desk", true).await?;
    assert_eq!(
        (status, missing["error"].clone()),
        (400, json!("Name a room: ?room="))
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_presence_rooms_have_no_present_count() -> anyhow::Result<()> {
    let server = start(app()).await?;
    let (_client, _) = join_hall(&server, "lobby").await?;
    let rooms = rows(&server, "/_asena/api/rooms?ns=/hall", "rooms").await?;
    assert_eq!(rooms, [json!({"name": "lobby", "size": 1})]);
    let (_, page) = get(&server, "/_asena/api/presence?ns=/hall&room=lobby", true).await?;
    assert_eq!(page["total"], 0, "{page}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_history_serves_the_last_samples_of_every_instance() -> anyhow::Result<()> {
    let server = start(app()).await?;
    let (mut client, _) = join_hall(&server, "lobby").await?;
    client.send_text("hello").await?;
    // Samples come at every interval (100 ms here), from the second announcement on.
    let last = until_some(
        WAIT,
        "a sample with the socket and its message",
        async || {
            let (status, body) = get(&server, "/_asena/api/history", true).await?;
            anyhow::ensure!(status == 200, "{body}");
            assert_eq!(body["limit"], 300);
            let me = &body["instances"][0];
            assert_eq!(
                (me["self"].clone(), me["id"].clone()),
                (json!(true), body["self"].clone())
            );
            let samples = me["samples"].as_array().cloned().unwrap_or_default();
            let received: f64 = samples.iter().filter_map(|s| s["received"].as_f64()).sum();
            let last = samples.last().cloned();
            Ok(last.filter(|l| l["sockets"] == 1 && received > 0.0))
        },
    )
    .await?;
    assert_eq!(last["namespaces"][0]["path"], "/hall", "{last}");
    assert_eq!(last["broker"], Value::Null, "no transport");
    assert!(last["at"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
    // `since` answers the newer samples only.
    let at = last["at"].as_u64().unwrap_or_default();
    let (_, newer) = get(&server, &format!("/_asena/api/history?since={at}"), true).await?;
    let samples = newer["instances"][0]["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        samples.iter().all(|s| s["at"].as_u64() > Some(at)),
        "{newer}"
    );
    let (status, _) = get(&server, "/_asena/api/history", false).await?;
    assert_eq!(status, 401);
    server.stop().await
}

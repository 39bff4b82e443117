//! Middleware before the upgrade: every outcome of the chain, ordering, global scopes, typed
//! values, the Origin allow-list, tower layers on the websocket routes, and that refused
//! requests create no socket. Over real sockets and HTTP.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use asena_runtime::Scope;
use asena_runtime::prelude::*;
use asena_tests::{
    Client, HttpResponse, TestServer, body_of, eventually, header_values, isolated, json_body,
    start, upgrade_request,
};

// ---------------------------------------------------------------------------------------
// Components

/// What `Collect` read from the request.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
struct Seen {
    method: String,
    path: String,
    q: Option<String>,
    header: Option<String>,
    bearer: Option<String>,
    cookie: Option<String>,
    peer_ip: Option<String>,
    greeting: String,
}

#[service]
struct Greeter;

impl Greeter {
    fn greeting(&self) -> &'static str {
        "hello from an injected service"
    }
}

/// Reads every `Context` accessor into the socket's values; uses an injected service.
#[middleware]
struct Collect {
    #[inject]
    greeter: Arc<Greeter>,
}

impl Middleware for Collect {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let seen = Seen {
            method: ctx.method().as_str().to_owned(),
            path: ctx.path().to_owned(),
            q: ctx.query("q").map(str::to_owned),
            header: ctx.header("x-test").map(str::to_owned),
            bearer: ctx.bearer_token().map(str::to_owned),
            cookie: ctx.cookie("session").map(str::to_owned),
            peer_ip: ctx.remote_addr().map(|a| a.ip().to_string()),
            greeting: self.greeter.greeting().to_owned(),
        };
        ctx.set_websocket_value(seen);
        next.run(ctx).await
    }
}

/// 401 with a JSON body unless `?pass=yes`.
#[middleware]
struct Deny401;

impl Middleware for Deny401 {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        if ctx.query("pass") != Some("yes") {
            return Err(Refusal::json(401, json!({"error": "Unauthorized"})));
        }
        next.run(ctx).await
    }
}

/// Neither continues nor rejects.
#[middleware]
struct Silent;

impl Middleware for Silent {
    async fn handle(&self, _ctx: &mut Context, _next: Next<'_>) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Always 429 with `Retry-After`.
#[middleware]
struct TooMany;

impl Middleware for TooMany {
    async fn handle(&self, _ctx: &mut Context, _next: Next<'_>) -> Result<(), Refusal> {
        Err(Refusal::json(429, json!({"error": "Too Many Requests"}))
            .with_header("retry-after", "7"))
    }
}

/// Always 418 with a text body.
#[middleware]
struct Teapot;

impl Middleware for Teapot {
    async fn handle(&self, _ctx: &mut Context, _next: Next<'_>) -> Result<(), Refusal> {
        Err(Refusal::text(418, "short and stout"))
    }
}

/// Panics with a message that must never reach the client.
#[middleware]
struct Panicker;

impl Middleware for Panicker {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        if ctx.query("boom").is_some() {
            panic!("secret-internal-detail: db password is hunter2");
        }
        next.run(ctx).await
    }
}

/// Order markers: each appends its name to `x-order` before continuing and to `x-after`
/// once the rest of the chain returned.
macro_rules! marker {
    ($name:ident, $label:literal) => {
        #[middleware]
        struct $name;

        impl Middleware for $name {
            async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
                ctx.response_headers_mut()
                    .append("x-order", $label.parse().unwrap());
                let outcome = next.run(ctx).await;
                ctx.response_headers_mut()
                    .append("x-after", $label.parse().unwrap());
                outcome
            }
        }
    };
}
marker!(First, "first");
marker!(Second, "second");
marker!(Third, "third");
marker!(GlobalTag, "global");

/// A global gate: 401 everywhere it applies.
#[middleware]
struct GlobalGate;

impl Middleware for GlobalGate {
    async fn handle(&self, _ctx: &mut Context, _next: Next<'_>) -> Result<(), Refusal> {
        Err(Refusal::json(401, json!({"error": "gate"})))
    }
}

#[derive(Debug, Clone, Default, Serialize)]
struct Values {
    who: String,
    trace: Option<String>,
}

#[derive(Debug, Clone)]
struct Trace(String);

/// Passes data to the next middleware through the extensions, and sets a first value.
#[middleware]
struct SetA;

impl Middleware for SetA {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        ctx.extensions_mut().insert(Trace("from-a".into()));
        ctx.set_websocket_value(Values {
            who: "a".into(),
            trace: None,
        });
        next.run(ctx).await
    }
}

/// Reads what `SetA` left and replaces the value (last one wins).
#[middleware]
struct SetB;

impl Middleware for SetB {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        assert_eq!(
            ctx.websocket_value::<Values>().map(|v| v.who.as_str()),
            Some("a")
        );
        let trace = ctx.extensions().get::<Trace>().map(|t| t.0.clone());
        ctx.set_websocket_value(Values {
            who: "b".into(),
            trace,
        });
        next.run(ctx).await
    }
}

/// Stores a `String` where the service expects `Values`.
#[middleware]
struct SetString;

impl Middleware for SetString {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        ctx.set_websocket_value(String::from("not the right type"));
        next.run(ctx).await
    }
}

/// Reads the `{id}` path parameter.
#[middleware]
struct ParamReader;

impl Middleware for ParamReader {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let id = ctx
            .param("id")
            .ok_or_else(|| Refusal::json(400, json!({"error": "no id"})))?
            .to_owned();
        ctx.set_websocket_value(Values {
            who: id,
            trace: None,
        });
        next.run(ctx).await
    }
}

/// A websocket service that counts `on_open` calls and sends its values, its id and its `id`
/// path parameter on open; `app()` is an isolated app of it and the middlewares it lists,
/// `opened(&s)` how often it opened on `s`.
macro_rules! socket {
    ($name:ident, $data:ty, path = $path:literal $(, middlewares = [$($mw:ident),+])?) => {
        #[websocket(path = $path $(, middlewares = [$($mw),+])?)]
        struct $name {
            opened: AtomicUsize,
        }

        // Not every test starts an app of every socket.
        #[allow(dead_code)]
        impl $name {
            fn app() -> asena_runtime::AsenaBuilder {
                isolated().websocket::<Self>()$($(.middleware::<$mw>())+)?
            }

            fn opened(s: &TestServer) -> usize {
                let socket = s.app.get::<Self>().expect("registered");
                socket.opened.load(Ordering::SeqCst)
            }

            /// Asserts that the app of `s` has no socket at this path, and never opened one.
            fn assert_none_opened(s: &TestServer) {
                let ns = s.app.namespace($path).expect("namespace");
                assert_eq!((ns.socket_count(), Self::opened(s)), (0, 0), "{}", $path);
            }

            /// Starts its `app()`, whose answer to an upgrade of `path` (this path, with a
            /// query) must be `status` and leave no socket; returns the server and the answer.
            async fn refused(path: &str, status: u16) -> anyhow::Result<(TestServer, HttpResponse)> {
                let s = start(Self::app()).await?;
                let resp = s.upgrade_answered(path, status).await?;
                Self::assert_none_opened(&s);
                Ok((s, resp))
            }
        }

        impl WebSocketService for $name {
            type Data = $data;
            async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
                self.opened.fetch_add(1, Ordering::SeqCst);
                ws.send_json(&json!({
                    "values": ws.data().values,
                    "param": ws.param("id"),
                    "id": ws.id(),
                }))?;
                Ok(())
            }
            async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
                Ok(())
            }
        }
    };
}

socket!(
    CollectSocket,
    Seen,
    path = "/collect",
    middlewares = [Collect]
);
socket!(Plain, (), path = "/plain");
socket!(PlainB, (), path = "/plain-b");
socket!(Reject401, (), path = "/reject/401", middlewares = [Deny401]);
socket!(Reject403, (), path = "/reject/403", middlewares = [Silent]);
socket!(Reject429, (), path = "/reject/429", middlewares = [TooMany]);
socket!(Reject418, (), path = "/reject/418", middlewares = [Teapot]);
socket!(
    Reject500,
    (),
    path = "/reject/500",
    middlewares = [Panicker]
);
socket!(
    Ordered,
    (),
    path = "/ordered",
    middlewares = [First, Second, Third]
);
socket!(AdminPanel, (), path = "/admin/panel", middlewares = [First]);
socket!(AdminPublic, (), path = "/admin/public");
socket!(Valued, Values, path = "/values", middlewares = [SetA, SetB]);
socket!(Unvalued, Values, path = "/unvalued");
socket!(
    Mismatch,
    Values,
    path = "/mismatch",
    middlewares = [SetString]
);
socket!(
    UserEvents,
    Values,
    path = "/user/{id}",
    middlewares = [ParamReader]
);

// ---------------------------------------------------------------------------------------
// Outcomes

#[tokio::test]
async fn continue_reaches_on_open_with_context_values() -> anyhow::Result<()> {
    let s = start(CollectSocket::app().service::<Greeter>()).await?;
    let mut c = Client::connect_with_headers(
        &s.ws_url("/collect?q=a%20b&q=second"),
        &[
            ("x-test", "hello"),
            ("authorization", "Bearer tok-1"),
            ("cookie", "a=1; session=abc"),
        ],
    )
    .await?;
    let open = c.recv_json().await?;
    assert_eq!(
        open["values"],
        json!({
            "method": "GET",
            "path": "/collect",
            "q": "a b",
            "header": "hello",
            "bearer": "tok-1",
            "cookie": "abc",
            "peer_ip": "127.0.0.1",
            "greeting": "hello from an injected service",
        })
    );
    assert_eq!(CollectSocket::opened(&s), 1);
    s.stop().await
}

#[tokio::test]
async fn rejection_401_answers_json_and_creates_no_socket() -> anyhow::Result<()> {
    let s = start(Reject401::app()).await?;
    for _ in 0..3 {
        let resp = s.upgrade_answered("/reject/401", 401).await?;
        assert_eq!(json_body(&resp), json!({"error": "Unauthorized"}));
        assert_eq!(header_values(&resp, "content-type"), ["application/json"]);
    }
    Reject401::assert_none_opened(&s);
    let ns = s.app.namespace("/reject/401").expect("namespace");

    // The same route lets a good request through: exactly one socket, one on_open.
    let mut c = s.connect("/reject/401?pass=yes").await?;
    c.recv_json().await?;
    eventually(|| ns.socket_count() == 1).await?;
    assert_eq!(Reject401::opened(&s), 1);
    c.close().await?;
    eventually(|| ns.socket_count() == 0).await?;
    s.stop().await
}

#[tokio::test]
async fn neither_continue_nor_reject_is_403() -> anyhow::Result<()> {
    let (s, resp) = Reject403::refused("/reject/403", 403).await?;
    assert_eq!(json_body(&resp), json!({"error": "Forbidden"}));
    // A real client is refused too.
    assert!(s.connect("/reject/403").await.is_err());
    s.stop().await
}

#[tokio::test]
async fn rejection_429_keeps_status_headers_and_body() -> anyhow::Result<()> {
    let (s, resp) = Reject429::refused("/reject/429", 429).await?;
    assert_eq!(header_values(&resp, "retry-after"), ["7"]);
    assert_eq!(json_body(&resp), json!({"error": "Too Many Requests"}));
    s.stop().await
}

#[tokio::test]
async fn rejection_with_any_status_and_text_body() -> anyhow::Result<()> {
    let s = start(Reject418::app()).await?;
    let resp = s.upgrade_answered("/reject/418", 418).await?;
    assert_eq!(body_of(&resp), "short and stout");
    assert_eq!(
        header_values(&resp, "content-type"),
        ["text/plain; charset=utf-8"]
    );
    s.stop().await
}

#[tokio::test]
async fn panic_is_500_without_leaking_and_server_keeps_running() -> anyhow::Result<()> {
    let (s, resp) = Reject500::refused("/reject/500?boom=1", 500).await?;
    assert_eq!(json_body(&resp), json!({"error": "Internal Server Error"}));
    // Neither a header nor the body carries it (the response rendered whole).
    let whole = resp.to_string();
    assert!(
        !whole.contains("secret") && !whole.contains("hunter2"),
        "leaked: {resp}"
    );
    // The same middleware serves the next request normally.
    let mut c = s.connect("/reject/500").await?;
    c.recv_json().await?;
    assert_eq!(Reject500::opened(&s), 1);
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// Order and scopes

#[tokio::test]
async fn three_middlewares_run_in_declared_order_and_unwind_in_reverse() -> anyhow::Result<()> {
    let s = start(Ordered::app()).await?;
    let resp = s.upgrade_answered("/ordered", 101).await?;
    assert_eq!(
        header_values(&resp, "x-order"),
        ["first", "second", "third"]
    );
    assert_eq!(
        header_values(&resp, "x-after"),
        ["third", "second", "first"]
    );
    s.stop().await
}

/// `/admin/panel` (with its own middleware), `/admin/public` and `/plain`, and the global
/// middleware `G` where `scope` matches.
fn admin_app<G: asena_runtime::di::Component + Middleware>(
    scope: Scope,
) -> asena_runtime::AsenaBuilder {
    AdminPanel::app()
        .websocket::<AdminPublic>()
        .websocket::<Plain>()
        .with_middleware::<G>(scope)
}

#[tokio::test]
async fn global_middleware_include_exclude_patterns() -> anyhow::Result<()> {
    let scope = Scope::all().include("/admin/*").exclude("/admin/public");
    let s = start(admin_app::<GlobalTag>(scope)).await?;
    // Included: the global runs first, then the service's own list.
    let resp = s.upgrade_answered("/admin/panel", 101).await?;
    assert_eq!(header_values(&resp, "x-order"), ["global", "first"]);
    // Excluded, and outside the include pattern: the global does not run.
    for path in ["/admin/public", "/plain"] {
        let resp = s.upgrade_answered(path, 101).await?;
        assert!(header_values(&resp, "x-order").is_empty(), "{path}: {resp}");
    }
    s.stop().await
}

#[tokio::test]
async fn global_rejection_applies_only_where_its_scope_matches() -> anyhow::Result<()> {
    let s = start(admin_app::<GlobalGate>(Scope::all().include("/admin/*"))).await?;
    let resp = s.upgrade_answered("/admin/panel", 401).await?;
    assert_eq!(json_body(&resp), json!({"error": "gate"}));
    // The service's own middleware never ran: the global rejected first.
    assert!(header_values(&resp, "x-order").is_empty());
    assert_eq!(AdminPanel::opened(&s), 0);
    let mut c = s.connect("/plain").await?;
    c.recv_json().await?;
    s.stop().await
}

#[test]
fn scope_patterns_match_the_path_with_its_leading_slash() {
    let scope = Scope::all().include("/admin/*").exclude("/admin/health");
    assert!(scope.matches("/admin/users"));
    assert!(scope.matches("/admin/a/b"));
    assert!(!scope.matches("/admin/health"));
    assert!(!scope.matches("/admin"));
    assert!(!scope.matches("/chat"));
    assert!(Scope::all().matches("/anything"));
    assert!(!Scope::all().exclude("*").matches("/anything"));
    assert!(Scope::all().include("/a/*/c").matches("/a/b/c"));
}

// ---------------------------------------------------------------------------------------
// Typed values

#[tokio::test]
async fn last_value_wins_and_extensions_pass_between_middlewares() -> anyhow::Result<()> {
    let s = start(Valued::app().websocket::<Unvalued>()).await?;
    let mut c = s.connect("/values").await?;
    assert_eq!(
        c.recv_json().await?["values"],
        json!({"who": "b", "trace": "from-a"})
    );
    // No middleware: Data::default().
    let mut d = s.connect("/unvalued").await?;
    assert_eq!(
        d.recv_json().await?["values"],
        json!({"who": "", "trace": null})
    );
    s.stop().await
}

#[tokio::test]
async fn value_type_mismatch_is_500_and_no_socket() -> anyhow::Result<()> {
    let (s, resp) = Mismatch::refused("/mismatch", 500).await?;
    assert_eq!(json_body(&resp), json!({"error": "Internal Server Error"}));
    s.stop().await
}

#[tokio::test]
async fn path_parameters_reach_middleware_and_socket() -> anyhow::Result<()> {
    let s = start(UserEvents::app()).await?;
    let mut c = s.connect("/user/42").await?;
    let open = c.recv_json().await?;
    assert_eq!(open["values"]["who"], "42");
    assert_eq!(open["param"], "42");
    // Parameters are percent-decoded, like query values.
    let mut c = s.connect("/user/a%20b").await?;
    let open = c.recv_json().await?;
    assert_eq!(open["values"]["who"], "a b");
    assert_eq!(open["param"], "a b");
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// Origin allow-list

#[tokio::test]
async fn origin_allow_list_global_and_per_service() -> anyhow::Result<()> {
    let s = start(
        Plain::app()
            .websocket::<PlainB>()
            .allowed_origins(["https://good.example"])
            .allowed_origins_for("/plain-b", ["https://b.example"]),
    )
    .await?;
    let cases = [
        ("/plain", Some("https://good.example"), 101),
        ("/plain", Some("https://evil.example"), 403),
        ("/plain", Some("https://b.example"), 403),
        ("/plain", None, 101),
        ("/plain-b", Some("https://b.example"), 101),
        ("/plain-b", Some("https://good.example"), 403),
    ];
    for (path, origin, expected) in cases {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let (status, resp) = upgrade_request(s.addr, path, &headers).await?;
        assert_eq!(status, expected, "{path} from {origin:?}: {resp}");
        if expected == 403 {
            assert_eq!(json_body(&resp), json!({"error": "Origin not allowed"}));
        }
    }
    // Exactly the accepted requests opened sockets (on_open runs after the 101 is sent, so
    // wait for it), and all of them are gone once the raw clients hung up.
    let count = |s: &TestServer| (Plain::opened(s), PlainB::opened(s));
    eventually(|| count(&s) == (2, 1)).await?;
    let plain = s.app.namespace("/plain").expect("ns");
    eventually(|| plain.socket_count() == 0).await?;
    assert_eq!(count(&s), (2, 1));
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// Tower layers on the websocket routes

/// Upgrade requests a tower layer saw: (path, upgrade header).
static LAYER_SAW: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

async fn record_upgrade(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let upgrade = request
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    LAYER_SAW
        .lock()
        .unwrap()
        .push((request.uri().path().to_owned(), upgrade));
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("x-layer", axum::http::HeaderValue::from_static("outer"));
    response
}

async fn require_ticket(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, axum::http::StatusCode> {
    if request
        .uri()
        .query()
        .is_some_and(|q| q.contains("ticket=1"))
    {
        Ok(next.run(request).await)
    } else {
        Err(axum::http::StatusCode::PAYMENT_REQUIRED)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tower_layer_sees_every_upgrade_request_and_may_refuse_it() -> anyhow::Result<()> {
    let s = start(
        Plain::app()
            .layer(axum::middleware::from_fn(require_ticket))
            .layer(axum::middleware::from_fn(record_upgrade)),
    )
    .await?;

    // The outer layer sees the refused request too, and its response.
    let resp = s.upgrade_answered("/plain", 402).await?;
    assert_eq!(header_values(&resp, "x-layer"), ["outer"]);
    Plain::assert_none_opened(&s);

    // Let through, the upgrade completes and the layer's header is on the 101.
    let resp = s.upgrade_answered("/plain?ticket=1", 101).await?;
    assert_eq!(header_values(&resp, "x-layer"), ["outer"]);
    let mut c = s.connect("/plain?ticket=1").await?;
    c.recv_json().await?;

    let saw = LAYER_SAW.lock().unwrap().clone();
    assert_eq!(
        saw,
        [
            ("/plain".to_owned(), "websocket".to_owned()),
            ("/plain".to_owned(), "websocket".to_owned()),
            ("/plain".to_owned(), "websocket".to_owned()),
        ]
    );
    c.close().await?;
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// Middlewares guarding HTTP routes

/// `/api/trace` answers what `SetA` left in the extensions; `/api/panic` is reached only
/// through `Panicker`; `/open` is not guarded.
fn guarded_app() -> asena_runtime::AsenaBuilder {
    use axum::routing::get;
    let api = axum::Router::new()
        .route(
            "/api/trace",
            get(|axum::Extension(Trace(t)): axum::Extension<Trace>| async move { t }),
        )
        .route("/api/ordered", get(|| async { "handler" }));
    let panicky = axum::Router::new().route("/api/panic", get(|| async { "calm" }));
    let open = axum::Router::new().route("/open", get(|| async { "open" }));
    isolated()
        .guarded_router::<(Deny401, SetA, First, Second)>(api)
        .guarded_router::<Panicker>(panicky)
        .guarded_router::<Silent>(axum::Router::new().route("/silent", get(|| async { "no" })))
        .router(open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_router_runs_the_chain_before_its_handlers() -> anyhow::Result<()> {
    let s = start(guarded_app()).await?;
    // Refused by the first middleware, as an upgrade would be; the handler never ran.
    let resp = s.get("/api/trace").await?;
    assert_eq!(resp.status, 401, "{resp}");
    assert_eq!(json_body(&resp), json!({"error": "Unauthorized"}));
    // Admitted: the extensions reach the handler, the response headers its answer, in order.
    let resp = s.get("/api/trace?pass=yes").await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "from-a"), "{resp}");
    let resp = s.get("/api/ordered?pass=yes").await?;
    assert_eq!(resp.body, "handler");
    assert_eq!(header_values(&resp, "x-order"), ["first", "second"]);
    assert_eq!(header_values(&resp, "x-after"), ["second", "first"]);
    // Neither continuing nor refusing is 403; a panic is 500 and leaks nothing.
    let resp = s.get("/silent").await?;
    assert_eq!(resp.status, 403, "{resp}");
    let resp = s.get("/api/panic?boom=1").await?;
    assert_eq!(resp.status, 500, "{resp}");
    assert!(!resp.to_string().contains("hunter2"), "leaked: {resp}");
    assert_eq!(s.get("/api/panic").await?.body, "calm");
    // Routes merged without middlewares stay open.
    let resp = s.get("/open").await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "open"));
    s.stop().await
}

#[tokio::test]
async fn a_guarded_router_refuses_a_query_of_too_many_pairs() -> anyhow::Result<()> {
    let s = start(guarded_app()).await?;
    let query = vec!["a=1"; 65].join("&");
    let resp = s.get(&format!("/api/trace?pass=yes&{query}")).await?;
    assert_eq!(resp.status, 400, "{resp}");
    s.stop().await
}

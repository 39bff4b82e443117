//! `TokenGuard` over real sockets: as a route layer on the app's own routes and as the
//! inspector's guard, the right token passes in the header or the cookie, a wrong or missing
//! one gets 401.

use asena_runtime::TokenGuard;
use asena_tests::{HttpResponse, TestServer, http_request, isolated, start};
use axum::Router;
use axum::routing::get;

const TOKEN: &str = "s3cret-token";

// The inspector lists this socket's namespace.
asena_tests::echo_service!(Echo, "/echo");

async fn app() -> anyhow::Result<TestServer> {
    let guard = TokenGuard::new(TOKEN).cookie("session");
    let admin = Router::new()
        .route("/admin", get(|| async { "admin page" }))
        .route_layer(guard.clone());
    let open = Router::new().route("/open", get(|| async { "open page" }));
    start(
        isolated()
            .websocket::<Echo>()
            .router(admin)
            .router(open)
            .inspector("/_asena", guard),
    )
    .await
}

async fn get_with(
    server: &TestServer,
    path: &str,
    header: Option<(&str, &str)>,
) -> anyhow::Result<HttpResponse> {
    let mut req = hyper::Request::get(server.http_url(path));
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    http_request(req.body(Default::default())?).await
}

fn assert_refused(resp: &HttpResponse) {
    assert_eq!(resp.status, 401, "{resp}");
    assert_eq!(resp.headers["www-authenticate"], "Bearer", "{resp}");
    let body: serde_json::Value = serde_json::from_str(&resp.body).expect("a JSON refusal");
    assert_eq!(body, serde_json::json!({"error": "Unauthorized"}));
}

#[tokio::test]
async fn a_guarded_route_admits_the_token_in_the_header_or_the_cookie() -> anyhow::Result<()> {
    let s = app().await?;
    let bearer = format!("Bearer {TOKEN}");
    let resp = get_with(&s, "/admin", Some(("authorization", &bearer))).await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "admin page"));
    let cookie = format!("theme=dark; session={TOKEN}");
    let resp = get_with(&s, "/admin", Some(("cookie", &cookie))).await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "admin page"));
    // The guard is a route layer: the other routes stay open.
    let resp = get_with(&s, "/open", None).await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "open page"));
    s.stop().await
}

#[tokio::test]
async fn a_guarded_route_refuses_a_wrong_or_missing_token() -> anyhow::Result<()> {
    let s = app().await?;
    assert_refused(&get_with(&s, "/admin", None).await?);
    assert_refused(&get_with(&s, "/admin", Some(("authorization", "Bearer wrong"))).await?);
    assert_refused(&get_with(&s, "/admin", Some(("authorization", TOKEN))).await?);
    assert_refused(&get_with(&s, "/admin", Some(("cookie", "session=wrong"))).await?);
    // Only the named cookie counts.
    let other = format!("other={TOKEN}");
    assert_refused(&get_with(&s, "/admin", Some(("cookie", &other))).await?);
    s.stop().await
}

#[tokio::test]
async fn as_the_inspector_guard_it_admits_only_the_token() -> anyhow::Result<()> {
    let s = app().await?;
    let bearer = format!("Bearer {TOKEN}");
    let resp = get_with(
        &s,
        "/_asena/api/namespaces",
        Some(("authorization", &bearer)),
    )
    .await?;
    assert_eq!(resp.status, 200, "{resp}");
    assert_refused(&get_with(&s, "/_asena/api/namespaces", None).await?);
    assert_refused(
        &get_with(
            &s,
            "/_asena/api/namespaces",
            Some(("authorization", "Bearer wrong")),
        )
        .await?,
    );
    s.stop().await
}

#[test]
fn an_empty_token_admits_nobody() {
    let guard = TokenGuard::new("");
    assert!(!guard.admits_token(""));
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", "Bearer x".parse().expect("a header value"));
    assert!(!guard.admits(&headers));
    assert!(TokenGuard::new("x").admits(&headers));
}

//! The HTTP side of the tests: one request through [`asena_tests::http_request`] (hyper's
//! client, every wait bounded by [`asena_tests::WAIT`]).

use std::net::SocketAddr;

use asena_tests::HttpResponse;

/// Sends `method path` with an optional JSON body and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&serde_json::Value>,
) -> anyhow::Result<HttpResponse> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    let req = match json {
        Some(v) => req
            .header("content-type", "application/json")
            .body(v.to_string().into())?,
        None => req.body(Default::default())?,
    };
    asena_tests::http_request(req).await
}

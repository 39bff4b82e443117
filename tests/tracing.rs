//! Every log line of a connection carries its span (socket id, path, peer), the middleware
//! chain logs inside a span of the upgrade, and the closing event has the code and reason.

use asena_runtime::prelude::*;
use asena_tests::{Captured, isolated, serve, upgrade_request};
use tracing_subscriber::util::SubscriberInitExt as _;

asena_tests::needs_name_middleware!(NeedsName);

#[websocket(path = "/fails", middlewares = [NeedsName])]
#[derive(Debug)]
pub struct Fails;

asena_tests::impl_message_service!(Fails, |_ws, _msg| Err("the database is down".into()));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_connection_span() -> anyhow::Result<()> {
    let captured = Captured::default();
    captured.subscriber("asena=debug").init();

    let app = isolated()
        .websocket::<Fails>()
        .middleware::<NeedsName>()
        .build()
        .await?;
    let s = serve(app).await?;

    // Refused by the middleware: its line is inside the upgrade span.
    let (status, _) = upgrade_request(s.addr, "/fails", &[]).await?;
    assert_eq!(status, 401);

    let mut c = s.connect("/fails?name=ada").await?;
    c.send_text("boom").await?;
    assert_eq!(c.recv_json().await?["message"], "Server error occurred");
    assert_eq!(c.recv_close().await?.0, 1011);
    let id = s
        .app
        .namespace("/fails")
        .map(|n| n.stats().handler_errors())
        .unwrap_or_default();
    assert_eq!(id, 1);
    s.stop().await?;

    let logs = captured.text();
    let refused = logs
        .lines()
        .find(|l| l.contains("no name; refusing"))
        .unwrap_or_else(|| panic!("no refusal line in:\n{logs}"));
    assert!(refused.contains("upgrade{path=/fails"), "{refused}");

    let failed = logs
        .lines()
        .find(|l| l.contains("handler failed"))
        .unwrap_or_else(|| panic!("no handler failure in:\n{logs}"));
    assert!(failed.contains("connection{socket_id="), "{failed}");
    assert!(
        failed.contains("path=/fails?name=ada") || failed.contains("path=/fails"),
        "{failed}"
    );
    assert!(failed.contains("remote=Some(127.0.0.1:"), "{failed}");
    assert!(failed.contains("the database is down"), "{failed}");

    // The same span on the closing line, with the code and reason.
    let socket_id = failed
        .split("socket_id=")
        .nth(1)
        .and_then(|rest| rest.split([' ', '}']).next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(socket_id.len(), 36, "{failed}");
    let closed = logs
        .lines()
        .find(|l| l.contains(" closed") && l.contains(&socket_id))
        .unwrap_or_else(|| panic!("no closing line for {socket_id} in:\n{logs}"));
    assert!(closed.contains("code=1011"), "{closed}");
    assert!(closed.contains("reason=Server error"), "{closed}");
    Ok(())
}

//! An app built without `.without_auto_registration()` finds every component linked into the
//! binary. This binary declares only the components below, so the registry is valid.

use std::sync::Arc;

use anyhow::Context as _;
use asena_runtime::Asena;
use asena_runtime::prelude::*;
use asena_tests::serve;

#[service]
struct Clock {
    ticks: std::sync::atomic::AtomicU64,
}

#[websocket(path = "/auto", name = "AutoSocket")]
struct Auto {
    #[inject]
    clock: Arc<Clock>,
}

impl WebSocketService for Auto {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
        let tick = self
            .clock
            .ticks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ws.send(format!("tick {tick}"))?;
        Ok(())
    }
}

#[tokio::test]
async fn auto_registration_finds_the_binarys_components() -> anyhow::Result<()> {
    let app = Asena::builder().build().await?;
    let clock = app.get::<Clock>().context("Clock registered itself")?;
    let auto = app.get::<Auto>().context("Auto registered itself")?;
    assert!(Arc::ptr_eq(&auto.clock, &clock));
    let paths: Vec<&str> = app.namespaces().iter().map(|n| n.path()).collect();
    assert_eq!(
        paths,
        ["/auto"],
        "only this binary's components, nothing else"
    );
    assert_eq!(
        app.namespace("/auto").expect("registered").name(),
        "AutoSocket"
    );

    let server = serve(app).await?;
    let mut client = server.connect("/auto").await?;
    client.send_text("x").await?;
    assert_eq!(client.recv_text().await?, "tick 0");
    client.send_text("x").await?;
    assert_eq!(client.recv_text().await?, "tick 1");
    server.stop().await
}

#[tokio::test]
async fn explicit_registration_adds_to_auto_registration_without_duplicates() -> anyhow::Result<()>
{
    // Registering an auto-registered type again is not a duplicate.
    let app = Asena::builder().service::<Clock>().build().await?;
    assert!(app.get::<Clock>().is_some());
    assert_eq!(app.namespaces().len(), 1);
    app.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn auto_registered_apps_are_still_isolated() -> anyhow::Result<()> {
    let first = Asena::builder().build().await?;
    let second = Asena::builder().build().await?;
    let a = first.get::<Clock>().context("first Clock")?;
    let b = second.get::<Clock>().context("second Clock")?;
    assert!(!Arc::ptr_eq(&a, &b));
    first.shutdown().await;
    second.shutdown().await;
    Ok(())
}

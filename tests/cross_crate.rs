//! Components declared in another crate of the workspace (`asena-test-components`) are found
//! by auto-registration once the binary links that crate.
//!
//! This file never names a type of that crate: `use asena_test_components as _;` alone is what
//! links it. Remove that line and the app has no components (the registry is empty and
//! `build()` fails with the linking caveat) — a library crate the binary never references is
//! dropped by the linker, and its `inventory` registrations with it.

use asena_runtime::Asena;
use asena_test_components as _;
use asena_tests::serve;

#[tokio::test]
async fn components_of_a_linked_library_crate_are_auto_registered() -> anyhow::Result<()> {
    let app = Asena::builder().build().await?;
    let paths: Vec<&str> = app.namespaces().iter().map(|n| n.path()).collect();
    assert_eq!(paths, ["/fixture"]);
    assert_eq!(
        app.namespace("/fixture").expect("registered").name(),
        "FixtureSocket"
    );

    // The socket greets with the text of its injected service: both were found and wired.
    let server = serve(app).await?;
    let mut client = server.connect("/fixture").await?;
    assert_eq!(client.recv_text().await?, "hello from the fixture crate");
    client.send_text("ping").await?;
    assert_eq!(client.recv_text().await?, "ping");
    server.stop().await
}

// Builds the app of every registered component on a current-thread runtime, runs `check` on
// it, and shuts it down: the `main` of a pass fixture that checks what the macros built.
fn run_app(check: impl AsyncFnOnce(&Asena)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let app = Asena::builder().build().await.expect("valid graph");
        check(&app).await;
        app.shutdown().await;
    });
}

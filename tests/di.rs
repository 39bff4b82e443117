//! Dependency injection from the user's side: components declared with the macros, apps
//! built from explicitly registered components (`.without_auto_registration()`, so every
//! test sees only its own graph even though the whole binary's components are registered).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use asena_runtime::di::{ContainerError, Problem};
use asena_runtime::prelude::*;
use asena_runtime::{Asena, Error};
use asena_tests::{Captured, Client, WAIT, isolated, serve, stop_all};

/// Builds and expects the graph to be rejected; returns the container error.
async fn container_error(builder: asena_runtime::AsenaBuilder) -> anyhow::Result<ContainerError> {
    match builder.build().await {
        Ok(_) => bail!("the app was built, but the graph is invalid"),
        Err(Error::Container(e)) => Ok(e),
        Err(other) => bail!("expected a container error, got: {other}"),
    }
}

/// Builds and expects the graph to be rejected with exactly `message`.
async fn assert_container_error(
    builder: asena_runtime::AsenaBuilder,
    message: &str,
) -> anyhow::Result<()> {
    assert_eq!(container_error(builder).await?.to_string(), message);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Injection across levels: Config <- Repo <- Users <- LevelSocket (4 levels).

mod levels {
    use asena_runtime::prelude::*;

    #[service]
    pub struct Config {
        pub port: u16,
    }

    #[service]
    pub struct Repo {
        #[inject]
        pub config: Arc<Config>,
    }

    #[service(name = "Users")]
    pub struct UserService {
        #[inject]
        pub repo: Arc<Repo>,
        #[inject]
        pub config: Arc<Config>,
    }

    #[websocket(path = "/levels")]
    pub struct LevelSocket {
        #[inject]
        pub users: Arc<UserService>,
        #[inject]
        pub repo: Arc<Repo>,
    }

    impl WebSocketService for LevelSocket {
        type Data = ();
        async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
            // Answers with something only the injected chain can know.
            ws.send(format!("port={}", self.users.repo.config.port))?;
            Ok(())
        }
    }

    pub fn builder() -> asena_runtime::AsenaBuilder {
        asena_tests::isolated()
            .websocket::<LevelSocket>()
            .service::<UserService>()
            .service::<Repo>()
            .service::<Config>()
    }
}

#[tokio::test]
async fn injection_across_four_levels_shares_singletons() -> anyhow::Result<()> {
    use levels::*;
    let app = builder().build().await?;
    let config = app.get::<Config>().context("Config built")?;
    let repo = app.get::<Repo>().context("Repo built")?;
    let users = app.get::<UserService>().context("UserService built")?;
    let socket = app.get::<LevelSocket>().context("LevelSocket built")?;

    assert!(Arc::ptr_eq(&socket.users, &users));
    assert!(Arc::ptr_eq(&socket.repo, &repo));
    assert!(Arc::ptr_eq(&users.repo, &repo));
    assert!(Arc::ptr_eq(&users.config, &config));
    assert!(Arc::ptr_eq(&repo.config, &config));
    assert!(Arc::ptr_eq(&socket.users.repo.config, &config));
    assert_eq!(config.port, 0, "a plain field is built with Default");
    app.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn injected_components_serve_real_sockets() -> anyhow::Result<()> {
    let app = levels::builder().build().await?;
    let server = serve(app).await?;
    let mut client = server.connect("/levels").await?;
    client.send_text("hi").await?;
    assert_eq!(client.recv_text().await?, "port=0");
    server.stop().await
}

#[tokio::test]
async fn get_returns_none_for_unregistered_components() -> anyhow::Result<()> {
    let app = isolated().service::<levels::Config>().build().await?;
    assert!(app.get::<levels::Config>().is_some());
    assert!(app.get::<levels::Repo>().is_none());
    app.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_apps_in_one_process_are_isolated() -> anyhow::Result<()> {
    use levels::*;
    let first = builder().build().await?;
    let second = builder().build().await?;
    let a = first.get::<UserService>().context("first UserService")?;
    let b = second.get::<UserService>().context("second UserService")?;
    assert!(!Arc::ptr_eq(&a, &b), "each app has its own singletons");
    assert!(!Arc::ptr_eq(&a.repo.config, &b.repo.config));
    // Within one app, repeated lookups give the same instance.
    let again = first
        .get::<UserService>()
        .context("first UserService again")?;
    assert!(Arc::ptr_eq(&a, &again));

    // Sockets of one app are not visible in the other.
    let first = serve(first).await?;
    let second = serve(second).await?;
    let _client = first.connect("/levels").await?;
    let ns1 = first.app.namespace("/levels").context("first namespace")?;
    let ns2 = second
        .app
        .namespace("/levels")
        .context("second namespace")?;
    tokio::time::timeout(WAIT, async {
        while ns1.sockets().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .context("socket never registered in the first app")?;
    assert_eq!(ns1.sockets().len(), 1);
    assert_eq!(ns2.sockets().len(), 0);
    stop_all([first, second]).await
}

// ---------------------------------------------------------------------------------------
// Option<Arc<T>> and Default fields.

mod optional {
    use asena_runtime::prelude::*;

    #[service]
    pub struct Present;

    #[service]
    pub struct Absent;

    #[service]
    pub struct Holder {
        #[inject]
        pub present: Option<Arc<Present>>,
        #[inject]
        pub absent: Option<Arc<Absent>>,
    }
}

#[tokio::test]
async fn option_injection_is_some_when_registered_and_none_otherwise() -> anyhow::Result<()> {
    use optional::*;
    let app = isolated()
        .service::<Holder>()
        .service::<Present>()
        .build()
        .await?;
    let holder = app.get::<Holder>().context("Holder built")?;
    let present = app.get::<Present>().context("Present built")?;
    let injected = holder.present.as_ref().context("Present was injected")?;
    assert!(Arc::ptr_eq(injected, &present));
    assert!(
        holder.absent.is_none(),
        "an absent optional provider is None"
    );
    app.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn optional_dependency_registered_later_is_built_first() -> anyhow::Result<()> {
    use optional::*;
    // Registration order puts Holder first; the optional edge still orders Absent before it.
    let app = isolated()
        .service::<Holder>()
        .service::<Absent>()
        .build()
        .await?;
    let holder = app.get::<Holder>().context("Holder built")?;
    let absent = app.get::<Absent>().context("Absent built")?;
    assert!(holder.present.is_none());
    assert!(Arc::ptr_eq(
        holder.absent.as_ref().context("injected")?,
        &absent
    ));
    app.shutdown().await;
    Ok(())
}

mod defaults {
    use asena_runtime::prelude::*;

    #[derive(Debug, PartialEq)]
    pub struct Retries(pub u32);

    impl Default for Retries {
        fn default() -> Self {
            Retries(3)
        }
    }

    #[service]
    pub struct Leaf;

    #[service]
    pub struct Defaults {
        pub label: String,
        pub count: u64,
        pub retries: Retries,
        pub cache: std::sync::Mutex<Vec<String>>,
        #[inject]
        pub leaf: Arc<Leaf>,
    }

    #[service]
    pub struct Tuple(#[inject] pub Arc<Leaf>, pub Retries);
}

#[tokio::test]
async fn fields_without_inject_use_default() -> anyhow::Result<()> {
    use defaults::*;
    let app = isolated()
        .service::<Defaults>()
        .service::<Tuple>()
        .service::<Leaf>()
        .build()
        .await?;
    let d = app.get::<Defaults>().context("Defaults built")?;
    assert_eq!(d.label, "");
    assert_eq!(d.count, 0);
    assert_eq!(d.retries, Retries(3), "the type's own Default impl is used");
    assert!(d.cache.lock().expect("not poisoned").is_empty());

    let t = app.get::<Tuple>().context("Tuple built")?;
    let leaf = app.get::<Leaf>().context("Leaf built")?;
    assert!(
        Arc::ptr_eq(&t.0, &leaf),
        "tuple struct fields are injected too"
    );
    assert!(Arc::ptr_eq(&d.leaf, &leaf));
    assert_eq!(t.1, Retries(3));
    app.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Validation errors.

// Some fields exist only to create dependency edges.
#[allow(dead_code)]
mod cycle {
    use asena_runtime::prelude::*;

    #[service]
    pub struct A {
        #[inject]
        pub b: Arc<B>,
    }

    #[service]
    pub struct B {
        #[inject]
        pub a: Arc<A>,
    }
}

// Some fields exist only to create dependency edges.
#[allow(dead_code)]
mod missing {
    use asena_runtime::prelude::*;

    #[service]
    pub struct TokenService;

    #[service]
    pub struct UserService {
        #[inject]
        pub tokens: Arc<TokenService>,
    }
}

mod duplicates {
    use asena_runtime::prelude::*;

    #[websocket(path = "/dup")]
    pub struct DupOne;

    #[websocket(path = "/dup")]
    pub struct DupTwo;

    asena_tests::impl_message_service!(DupOne);

    asena_tests::impl_message_service!(DupTwo);

    #[service(name = "Same")]
    pub struct SameA;

    #[service(name = "Same")]
    pub struct SameB;
}

#[tokio::test]
async fn cycle_error_names_the_loop() -> anyhow::Result<()> {
    let err = container_error(isolated().service::<cycle::B>().service::<cycle::A>()).await?;
    assert_eq!(err.to_string(), "Circular dependency detected: A -> B -> A");
    assert_eq!(
        err.problems,
        vec![Problem::Cycle(vec!["A".into(), "B".into(), "A".into()])]
    );
    Ok(())
}

#[tokio::test]
async fn missing_provider_error_names_who_needs_what() -> anyhow::Result<()> {
    let err = container_error(isolated().service::<missing::UserService>()).await?;
    assert_eq!(
        err.to_string(),
        "UserService needs TokenService, which is not registered"
    );
    // With the provider registered the same graph is fine.
    let app = isolated()
        .service::<missing::UserService>()
        .service::<missing::TokenService>()
        .build()
        .await?;
    assert!(app.get::<missing::UserService>().is_some());
    app.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn duplicate_websocket_path_is_an_error() -> anyhow::Result<()> {
    assert_container_error(
        isolated()
            .websocket::<duplicates::DupTwo>()
            .websocket::<duplicates::DupOne>(),
        "duplicate websocket path `/dup`: `DupOne` and `DupTwo`",
    )
    .await
}

#[tokio::test]
async fn duplicate_component_name_is_an_error() -> anyhow::Result<()> {
    let err = container_error(
        isolated()
            .service::<duplicates::SameA>()
            .service::<duplicates::SameB>(),
    )
    .await?;
    let text = err.to_string();
    assert!(
        text.starts_with("duplicate component name `Same`: "),
        "{text}"
    );
    assert!(text.contains("duplicates::SameA"), "{text}");
    assert!(text.contains("duplicates::SameB"), "{text}");
    assert!(
        text.ends_with("give one of them `name = \"...\"`"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn registering_the_same_type_twice_is_not_a_duplicate() -> anyhow::Result<()> {
    let app = isolated()
        .service::<levels::Config>()
        .service::<levels::Config>()
        .build()
        .await?;
    assert!(app.get::<levels::Config>().is_some());
    app.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn every_problem_is_reported_at_once() -> anyhow::Result<()> {
    let err = container_error(
        isolated()
            .service::<cycle::A>()
            .service::<cycle::B>()
            .service::<missing::UserService>()
            .websocket::<duplicates::DupOne>()
            .websocket::<duplicates::DupTwo>()
            .service::<duplicates::SameA>()
            .service::<duplicates::SameB>(),
    )
    .await?;
    assert_eq!(err.problems.len(), 4, "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("4 problems with the registered components:\n  - "),
        "{text}"
    );
    for line in [
        "UserService needs TokenService, which is not registered",
        "Circular dependency detected: A -> B -> A",
        "duplicate websocket path `/dup`: `DupOne` and `DupTwo`",
        "duplicate component name `Same`",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(err.problems.contains(&Problem::MissingProvider {
        component: "UserService".into(),
        needs: "TokenService".into(),
    }));
    Ok(())
}

#[tokio::test]
async fn empty_registry_explains_the_linker_caveat() -> anyhow::Result<()> {
    let err = container_error(Asena::builder().without_auto_registration()).await?;
    assert_eq!(err.problems, vec![Problem::EmptyRegistry]);
    let text = err.to_string();
    assert!(text.contains("not linked"), "{text}");
    assert!(text.contains("use my_crate as _;"), "{text}");
    assert!(text.contains(".websocket::<MySocket>()"), "{text}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Middleware dependencies.

mod gated {
    use asena_runtime::prelude::*;

    #[middleware]
    pub struct Gate {
        #[inject]
        pub config: Arc<super::levels::Config>,
    }

    impl Middleware for Gate {
        async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
            if ctx.query("pass").is_some() {
                next.run(ctx).await
            } else {
                Err(Refusal::json(401, json!({"error": "no pass"})))
            }
        }
    }

    #[websocket(path = "/gated", middlewares = [Gate])]
    pub struct Gated {
        #[inject]
        pub config: Arc<super::levels::Config>,
    }

    impl WebSocketService for Gated {
        type Data = ();
        async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
            ws.send(&msg)?;
            Ok(())
        }
    }
}

#[tokio::test]
async fn listed_middleware_must_be_registered() -> anyhow::Result<()> {
    assert_container_error(
        isolated()
            .websocket::<gated::Gated>()
            .service::<levels::Config>(),
        "Gated needs Gate, which is not registered",
    )
    .await
}

#[tokio::test]
async fn middleware_components_are_injected_and_run() -> anyhow::Result<()> {
    let app = isolated()
        .websocket::<gated::Gated>()
        .middleware::<gated::Gate>()
        .service::<levels::Config>()
        .build()
        .await?;
    let gate = app.get::<gated::Gate>().context("Gate built")?;
    let socket = app.get::<gated::Gated>().context("Gated built")?;
    let config = app.get::<levels::Config>().context("Config built")?;
    assert!(Arc::ptr_eq(&socket.config, &config));
    assert!(Arc::ptr_eq(&gate.config, &config));

    let server = serve(app).await?;
    assert!(
        Client::connect(&server.ws_url("/gated")).await.is_err(),
        "the middleware rejects a request without ?pass"
    );
    let mut client = server.connect("/gated?pass=1").await?;
    client.send_text("echo").await?;
    assert_eq!(client.recv_text().await?, "echo");
    server.stop().await
}

#[tokio::test(flavor = "current_thread")]
async fn startup_logs_how_many_components_registered() -> anyhow::Result<()> {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber("info"));
    let app = isolated()
        .websocket::<gated::Gated>()
        .middleware::<gated::Gate>()
        .service::<levels::Config>()
        .service::<levels::Repo>()
        .build()
        .await?;
    let text = logs.text();
    assert!(
        text.contains("registered 2 services, 1 websockets, 1 middlewares"),
        "{text}"
    );
    app.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Ulak<N> breaks Service <-> WebSocket cycles; Arc<N> does not.

// Some fields exist only to create dependency edges.
#[allow(dead_code)]
mod ulak {
    use asena_runtime::UlakBroker;
    use asena_runtime::prelude::*;

    #[service]
    pub struct Notifier {
        #[inject]
        pub socket: Ulak<NotifySocket>,
        #[inject]
        pub broker: UlakBroker,
    }

    #[websocket(path = "/notify")]
    pub struct NotifySocket {
        #[inject]
        pub notifier: Arc<Notifier>,
    }

    impl WebSocketService for NotifySocket {
        type Data = ();
        async fn on_message(&self, _ws: &Socket<Self>, msg: Message) -> Result<()> {
            // Sends through the service, which sends through its Ulak handle.
            self.notifier.socket.broadcast(&msg)?;
            Ok(())
        }
    }

    #[service]
    pub struct LoopService {
        #[inject]
        pub socket: Arc<LoopSocket>,
    }

    #[websocket(path = "/loop")]
    pub struct LoopSocket {
        #[inject]
        pub service: Arc<LoopService>,
    }

    asena_tests::impl_message_service!(LoopSocket);
}

#[tokio::test]
async fn ulak_injection_is_not_a_dependency_edge() -> anyhow::Result<()> {
    use ulak::*;
    let app = isolated()
        .service::<Notifier>()
        .websocket::<NotifySocket>()
        .build()
        .await?;
    let notifier = app.get::<Notifier>().context("Notifier built")?;
    let socket = app.get::<NotifySocket>().context("NotifySocket built")?;
    assert!(Arc::ptr_eq(&socket.notifier, &notifier));
    assert_eq!(notifier.socket.path(), "/notify");
    assert!(notifier.broker.has_namespace("/notify"));

    // The handle reaches this app's sockets.
    let server = serve(app).await?;
    let mut a = server.connect("/notify").await?;
    let mut b = server.connect("/notify").await?;
    tokio::time::timeout(WAIT, async {
        while notifier.socket.socket_count() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .context("both sockets never registered")?;
    assert_eq!(notifier.socket.broadcast("from the service")?, 2);
    assert_eq!(a.recv_text().await?, "from the service");
    assert_eq!(b.recv_text().await?, "from the service");
    a.send_text("relayed").await?;
    assert_eq!(a.recv_text().await?, "relayed");
    assert_eq!(b.recv_text().await?, "relayed");
    server.stop().await
}

#[tokio::test]
async fn arc_injection_between_service_and_socket_is_a_cycle() -> anyhow::Result<()> {
    assert_container_error(
        isolated()
            .websocket::<ulak::LoopSocket>()
            .service::<ulak::LoopService>(),
        "Circular dependency detected: LoopService -> LoopSocket -> LoopService",
    )
    .await
}

#[tokio::test]
async fn ulak_of_an_unregistered_socket_is_an_error() -> anyhow::Result<()> {
    assert_container_error(
        isolated().service::<ulak::Notifier>(),
        "Notifier injects Ulak<NotifySocket>, but NotifySocket is not a registered websocket service",
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Lifecycle hooks.

// Some fields exist only to create dependency edges.
#[allow(dead_code)]
mod lifecycle {
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    use asena_runtime::prelude::*;

    /// Per-app event log (injected, so two apps never share it).
    #[service]
    pub struct Events {
        pub list: Mutex<Vec<String>>,
    }

    impl Events {
        pub fn push(&self, event: &str) {
            self.list
                .lock()
                .expect("not poisoned")
                .push(event.to_owned());
        }
        pub fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.list.lock().expect("not poisoned"))
        }
    }

    #[service]
    pub struct Db {
        #[inject]
        pub events: Arc<Events>,
    }

    impl Lifecycle for Db {
        async fn on_start(&self) -> Result<()> {
            self.events.push("start Db");
            Ok(())
        }
        async fn on_stop(&self) {
            self.events.push("stop Db");
        }
    }

    #[service]
    pub struct Cache {
        #[inject]
        pub events: Arc<Events>,
        #[inject]
        pub db: Arc<Db>,
    }

    impl Lifecycle for Cache {
        async fn on_start(&self) -> Result<()> {
            self.events.push("start Cache");
            Ok(())
        }
        async fn on_stop(&self) {
            self.events.push("stop Cache");
        }
    }

    /// Only on_start; the default on_stop does nothing.
    #[websocket(path = "/lifecycle")]
    pub struct Front {
        #[inject]
        pub events: Arc<Events>,
        #[inject]
        pub cache: Arc<Cache>,
    }

    impl Lifecycle for Front {
        async fn on_start(&self) -> Result<()> {
            self.events.push("start Front");
            Ok(())
        }
    }

    asena_tests::impl_message_service!(Front);

    #[service]
    pub struct Failing {
        #[inject]
        pub db: Arc<Db>,
    }

    impl Lifecycle for Failing {
        async fn on_start(&self) -> Result<()> {
            Err("database unreachable".into())
        }
    }

    pub static AFTER_FAILING_STARTED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    #[service]
    pub struct AfterFailing {
        #[inject]
        pub failing: Arc<Failing>,
    }

    impl Lifecycle for AfterFailing {
        async fn on_start(&self) -> Result<()> {
            AFTER_FAILING_STARTED.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    #[service]
    pub struct Hangs {
        #[inject]
        pub events: Arc<Events>,
        #[inject]
        pub db: Arc<Db>,
    }

    impl Lifecycle for Hangs {
        async fn on_stop(&self) {
            self.events.push("stop Hangs (begun)");
            std::future::pending::<()>().await;
        }
    }

    #[service]
    pub struct Panics {
        #[inject]
        pub events: Arc<Events>,
        #[inject]
        pub hangs: Arc<Hangs>,
    }

    impl Lifecycle for Panics {
        async fn on_stop(&self) {
            self.events.push("stop Panics (begun)");
            panic!("on_stop blew up");
        }
    }
}

#[tokio::test]
async fn on_start_runs_dependencies_first_and_on_stop_in_reverse() -> anyhow::Result<()> {
    use lifecycle::*;
    let app = isolated()
        .websocket::<Front>()
        .service::<Cache>()
        .service::<Db>()
        .service::<Events>()
        .build()
        .await?;
    let events = app.get::<Events>().context("Events built")?;
    assert_eq!(events.take(), ["start Db", "start Cache", "start Front"]);
    tokio::time::timeout(WAIT, app.shutdown())
        .await
        .context("shutdown timed out")?;
    assert_eq!(events.take(), ["stop Cache", "stop Db"]);
    // A second shutdown does not run the hooks again.
    tokio::time::timeout(WAIT, app.shutdown())
        .await
        .context("second shutdown timed out")?;
    assert!(events.take().is_empty());
    Ok(())
}

#[tokio::test]
async fn on_start_failure_aborts_build_with_the_component_name() -> anyhow::Result<()> {
    use lifecycle::*;
    let result = isolated()
        .service::<AfterFailing>()
        .service::<Failing>()
        .service::<Db>()
        .service::<Events>()
        .build()
        .await;
    match result {
        Ok(_) => bail!("build succeeded although Failing::on_start failed"),
        Err(Error::Start { component, source }) => {
            assert_eq!(component, "Failing");
            assert_eq!(source.to_string(), "database unreachable");
        }
        Err(other) => bail!("expected Error::Start, got: {other}"),
    }
    assert!(
        !AFTER_FAILING_STARTED.load(Ordering::SeqCst),
        "components after the failing one do not start"
    );
    let err = isolated()
        .service::<Failing>()
        .service::<Db>()
        .service::<Events>()
        .build()
        .await
        .err()
        .context("build must fail")?;
    assert_eq!(
        err.to_string(),
        "Failing failed to start: database unreachable"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn on_stop_timeout_and_panic_are_logged_and_the_rest_still_stop() -> anyhow::Result<()> {
    use lifecycle::*;
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber("info"));
    let app = isolated()
        .service::<Panics>()
        .service::<Hangs>()
        .service::<Db>()
        .service::<Events>()
        .stop_timeout(Duration::from_millis(200))
        .build()
        .await?;
    let events = app.get::<Events>().context("Events built")?;
    assert_eq!(events.take(), ["start Db"]);
    tokio::time::timeout(WAIT, app.shutdown())
        .await
        .context("shutdown hung on a stuck on_stop")?;
    assert_eq!(
        events.take(),
        ["stop Panics (begun)", "stop Hangs (begun)", "stop Db"]
    );
    let text = logs.text();
    let panicked = text
        .lines()
        .find(|l| l.contains("on_stop panicked"))
        .context(format!("no panic logged in:\n{text}"))?;
    assert!(
        panicked.contains("ERROR") && panicked.contains("component=\"Panics\""),
        "{panicked}"
    );
    let timed_out = text
        .lines()
        .find(|l| l.contains("on_stop timed out"))
        .context(format!("no timeout logged in:\n{text}"))?;
    assert!(
        timed_out.contains("ERROR") && timed_out.contains("component=\"Hangs\""),
        "{timed_out}"
    );
    Ok(())
}

#[tokio::test]
async fn lifecycle_state_is_per_app() -> anyhow::Result<()> {
    use lifecycle::*;
    let build = || {
        isolated()
            .service::<Cache>()
            .service::<Db>()
            .service::<Events>()
            .build()
    };
    let first = build().await?;
    let second = build().await?;
    let e1 = first.get::<Events>().context("first Events")?;
    let e2 = second.get::<Events>().context("second Events")?;
    assert!(!Arc::ptr_eq(&e1, &e2));
    assert_eq!(e1.take(), ["start Db", "start Cache"]);
    assert_eq!(e2.take(), ["start Db", "start Cache"]);
    tokio::time::timeout(WAIT, first.shutdown())
        .await
        .context("shutdown timed out")?;
    assert_eq!(e1.take(), ["stop Cache", "stop Db"]);
    assert!(
        e2.take().is_empty(),
        "stopping one app leaves the other running"
    );
    tokio::time::timeout(WAIT, second.shutdown())
        .await
        .context("shutdown timed out")?;
    assert_eq!(e2.take(), ["stop Cache", "stop Db"]);
    Ok(())
}

#[allow(dead_code)] // fields exist to create dependency edges
mod failed_start {
    use super::*;

    pub static EARLY_STOPPED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    #[service]
    pub struct Early;

    impl Lifecycle for Early {
        async fn on_stop(&self) {
            EARLY_STOPPED.store(true, Ordering::SeqCst);
        }
    }

    #[service]
    pub struct FailsAfterEarly {
        #[inject]
        pub early: Arc<Early>,
    }

    impl Lifecycle for FailsAfterEarly {
        async fn on_start(&self) -> Result<()> {
            Err("cannot start".into())
        }
    }
}

#[tokio::test]
async fn a_failed_start_stops_the_components_that_already_started() -> anyhow::Result<()> {
    use failed_start::*;
    let result = isolated()
        .service::<FailsAfterEarly>()
        .service::<Early>()
        .build()
        .await;
    assert!(matches!(
        result,
        Err(Error::Start {
            component: "FailsAfterEarly",
            ..
        })
    ));
    assert!(
        EARLY_STOPPED.load(Ordering::SeqCst),
        "Early started before the failure, so its on_stop must run"
    );
    Ok(())
}

use asena_runtime::prelude::*;
use asena_runtime::Asena;

#[service(name = "Accounts")]
struct UserService;

#[middleware(name = "Authentication")]
struct Auth;

impl Middleware for Auth {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        next.run(ctx).await
    }
}

#[websocket(name = "ChatSocket", path = "/chat", middlewares = [Auth],)]
struct Chat {
    #[inject]
    users: Arc<UserService>,
}

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        let _ = &self.users;
        Ok(())
    }
}

include!("../common/run_app.rs");

fn main() {
    run_app(async |app| {
        let ns = app.namespace("/chat").expect("namespace");
        assert_eq!(ns.name(), "ChatSocket");
    });
}

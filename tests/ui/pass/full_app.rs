//! A complete set: services, a middleware and a websocket service with every field form.
use asena_runtime::prelude::*;
use asena_runtime::{Asena, UlakBroker};

#[derive(Clone, Default, Serialize, Deserialize)]
struct UserData {
    user_id: String,
}

#[service]
struct TokenService;

impl TokenService {
    fn verify(&self, token: &str) -> Option<String> {
        (token == "valid").then(|| "123".to_owned())
    }
}

#[service]
struct Audit;

#[middleware]
struct WsAuth {
    #[inject]
    tokens: Arc<TokenService>,
}

impl Middleware for WsAuth {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let token = ctx
            .query("token")
            .ok_or_else(|| Refusal::json(401, json!({"error": "Unauthorized"})))?;
        let user_id = self
            .tokens
            .verify(token)
            .ok_or_else(|| Refusal::json(401, json!({"error": "Invalid token"})))?;
        ctx.set_websocket_value(UserData { user_id });
        next.run(ctx).await
    }
}

#[service]
struct UserService {
    #[inject]
    notifications: Ulak<PrivateSocket>,
    #[inject]
    broker: UlakBroker,
    #[inject]
    audit: Option<Arc<Audit>>,
    greeting: String,
}

impl Lifecycle for UserService {
    async fn on_start(&self) -> Result<()> {
        let _ = (&self.notifications, &self.broker, &self.audit, &self.greeting);
        Ok(())
    }
    async fn on_stop(&self) {}
}

#[websocket(path = "/private/{room}", name = "PrivateSocket", middlewares = [WsAuth])]
struct PrivateSocket {
    #[inject]
    users: Arc<UserService>,
}

impl WebSocketService for PrivateSocket {
    type Data = UserData;
    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        let _ = &self.users;
        ws.send_json(&json!({"type": "authenticated", "userId": ws.data().values.user_id}))?;
        Ok(())
    }
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
    async fn on_close(&self, _ws: &Socket<Self>, _code: u16, _reason: &str) {}
}

include!("../common/run_app.rs");

fn main() {
    run_app(async |app| {
        let users = app.get::<UserService>().expect("UserService");
        let socket = app.get::<PrivateSocket>().expect("PrivateSocket");
        assert!(Arc::ptr_eq(&socket.users, &users));
        assert!(users.audit.is_some());
        assert_eq!(users.notifications.path(), "/private/{room}");
    });
}

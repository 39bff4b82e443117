use asena_runtime::prelude::*;

#[middleware]
struct Auth;

impl Middleware for Auth {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        next.run(ctx).await
    }
}

#[websocket(path = "/chat", middlewares = Auth)]
struct Chat;

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

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

include!("../common/chat_service.rs");

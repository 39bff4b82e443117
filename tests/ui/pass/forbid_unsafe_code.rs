//! The expansion compiles in a crate that forbids unsafe code and denies common lints.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms, unused_qualifications)]

use asena_runtime::prelude::*;

/// A service.
#[service]
#[derive(Debug)]
pub struct Tokens;

/// A middleware.
#[middleware]
#[derive(Debug)]
pub struct Auth {
    #[inject]
    tokens: Arc<Tokens>,
}

impl Middleware for Auth {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let _ = &self.tokens;
        next.run(ctx).await
    }
}

/// A websocket service.
#[websocket(path = "/chat", middlewares = [Auth])]
#[derive(Debug)]
pub struct Chat {
    #[inject]
    tokens: Arc<Tokens>,
}

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let _ = &self.tokens;
        ws.send(&msg)?;
        Ok(())
    }
}

fn main() {}

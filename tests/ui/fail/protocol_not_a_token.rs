use asena_runtime::prelude::*;

#[websocket(path = "/chat")]
struct Chat;

impl WebSocketService for Chat {
    type Data = ();
    // A space is a separator: no client can offer this name.
    const PROTOCOLS: &'static [&'static str] = &["chat.v2", "chat v1"];

    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

use asena_runtime::prelude::*;

#[websocket(path = "/chat.v2")]
struct Chat;

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

use asena_runtime::prelude::*;

#[websocket(path = "chat")]
struct Chat;

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

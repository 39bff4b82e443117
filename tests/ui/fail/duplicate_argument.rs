use asena_runtime::prelude::*;

#[websocket(path = "/a", name = "A", path = "/b")]
struct Chat;

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

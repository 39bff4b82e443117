// The rest of a fixture whose `#[websocket]` attribute on `struct Chat` is what it tests: a
// complete service, so the attribute's mistake is the fixture's only error.

impl WebSocketService for Chat {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

// Only a managed service's socket has the managed protocol's sender.
use asena_runtime::prelude::*;

#[websocket(path = "/plain")]
struct Plain;

impl WebSocketService for Plain {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
        ws.managed().to_user("alice", ("hello", 1))?;
        Ok(())
    }
}

fn main() {}

use asena_runtime::prelude::*;

// Declared `managed`, but implements the plain service trait instead of `ManagedService`.
#[websocket(path = "/live", managed)]
struct Live;

impl WebSocketService for Live {
    type Data = ();
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn main() {}

// A typed service's socket sends only its `sends` type.
use asena_runtime::prelude::*;

#[derive(Deserialize, JsonSchema, Validate)]
#[serde(tag = "type")]
#[garde(allow_unvalidated)]
enum In {
    Ping,
}

#[derive(Serialize, JsonSchema)]
#[serde(tag = "type")]
enum Out {
    Pong,
}

#[derive(Serialize, JsonSchema)]
struct Other {
    n: u32,
}

#[websocket(path = "/typed", receives = In, sends = Out)]
struct Typed;

impl WebSocketService for Typed {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: In) -> Result<()> {
        ws.send(&Other { n: 1 })?;
        Ok(())
    }
}

fn main() {}

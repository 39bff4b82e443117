// A typed service's namespace sends only its `sends` type, not any JSON.
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

#[websocket(path = "/typed", receives = In, sends = Out)]
struct Typed;

impl WebSocketService for Typed {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: In) -> Result<()> {
        ws.namespace().broadcast(json!({"type": "Pong"}))?;
        Ok(())
    }
}

fn main() {}

// A typed service's Ulak sends only its `sends` type.
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
    async fn on_message(&self, _ws: &Socket<Self>, _msg: In) -> Result<()> {
        Ok(())
    }
}

fn from_a_service(ulak: Ulak<Typed>) {
    let _ = ulak.to("room", Other { n: 2 });
}

fn main() {}

// A typed service, `Typed`, whose handler calls the fixture's `handle`: the fixture holds
// only the wrong send it tests.

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

/// Not the service's `sends` type.
#[derive(Serialize, JsonSchema)]
struct Other {
    n: u32,
}

#[websocket(path = "/typed", receives = In, sends = Out)]
struct Typed;

impl WebSocketService for Typed {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: In) -> Result<()> {
        handle(ws)
    }
}

fn main() {}

// A socket's parameters are its service's `params` type, and no other.
use asena_runtime::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Room {
    id: u32,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct User {
    name: String,
}

#[websocket(path = "/rooms/{id}", params = Room)]
struct Rooms;

impl WebSocketService for Rooms {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
        let user: &User = ws.params();
        ws.send(user.name.as_str())?;
        Ok(())
    }
}

fn main() {}

// A socket's data is what its service declares as `Data`, and no other type.
use asena_runtime::prelude::*;

#[derive(Default)]
struct User {
    name: String,
}

#[derive(Default)]
struct Admin {
    level: u8,
}

#[websocket(path = "/users")]
struct Users;

impl WebSocketService for Users {
    type Data = User;
    async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
        let admin: &Admin = &ws.data().values;
        ws.send(format!("level {}", admin.level))?;
        Ok(())
    }
}

fn main() {}

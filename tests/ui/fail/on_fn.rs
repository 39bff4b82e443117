use asena_runtime::prelude::*;

#[websocket(path = "/chat")]
fn chat() {}

fn main() {
    chat();
}

use asena_runtime::prelude::*;

#[websocket(path = "/chat")]
struct Chat;

fn main() {}

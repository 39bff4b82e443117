use asena_runtime::prelude::*;

#[websocket(path = "/chat", room = "lobby")]
struct Chat;

include!("../common/chat_service.rs");

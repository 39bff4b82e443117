use asena_runtime::prelude::*;

#[websocket(name = "Chat")]
struct Chat;

include!("../common/chat_service.rs");

use asena_runtime::prelude::*;

#[websocket(path = "/chat.v2")]
struct Chat;

include!("../common/chat_service.rs");

use asena_runtime::prelude::*;

#[websocket(path = "/chat?room=1")]
struct Chat;

include!("../common/chat_service.rs");

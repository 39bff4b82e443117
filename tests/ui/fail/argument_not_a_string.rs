use asena_runtime::prelude::*;

#[websocket(path = chat)]
struct Chat;

include!("../common/chat_service.rs");

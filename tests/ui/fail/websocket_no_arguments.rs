use asena_runtime::prelude::*;

#[websocket]
struct Chat;

include!("../common/chat_service.rs");

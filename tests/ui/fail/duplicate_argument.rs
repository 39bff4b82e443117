use asena_runtime::prelude::*;

#[websocket(path = "/a", name = "A", path = "/b")]
struct Chat;

include!("../common/chat_service.rs");

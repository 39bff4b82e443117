use asena_runtime::prelude::*;

#[service]
struct NotAMiddleware;

#[websocket(path = "/chat", middlewares = [NotAMiddleware])]
struct Chat;

include!("../common/chat_service.rs");

//! JavaScript the example pages share, served as it is: `/presence.js` keeps who is online
//! from the runtime's presence frames (the chat and realtime pages use it).

use axum::response::IntoResponse;

/// Who is online in a room, kept from `presence_state` and `presence_diff` frames.
pub const PRESENCE_JS: &str = include_str!("presence.js");

/// A script as an HTTP answer.
pub fn javascript(body: &'static str) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        body,
    )
}

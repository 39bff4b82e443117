//! The presence service the presence tests run, in the test process (`tests/presence.rs`) and
//! as a process of its own (`tests/bin/presence_instance.rs`, killed with SIGKILL). Not in
//! the support crate: a `#[websocket]` there would register itself in every test binary.

use asena_runtime::prelude::*;
use serde_json::Value;

/// Tracks itself on open in `?room=` under `?key=` (its id by default) with `{"name": key}`;
/// commands: `{"op":"track","room","key","meta"}`, `{"op":"update","room","key","meta"}`,
/// `{"op":"untrack","room","key"}`, `{"op":"leave","room"}`, `{"op":"list","room"}`, each
/// answered with `{"type":"ok"|"error", ..}`.
#[websocket(path = "/presence")]
#[derive(Debug)]
pub struct Lobby;

impl WebSocketService for Lobby {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        if let Some(room) = ws.query("room") {
            let key = ws.query("key").unwrap_or(ws.id()).to_owned();
            ws.presence()
                .track_as(room, &key, &json!({ "name": key }))?;
        }
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let cmd: Value = serde_json::from_str(msg.as_text().unwrap_or("{}"))?;
        let room = cmd["room"].as_str().unwrap_or_default();
        let key = cmd["key"].as_str().unwrap_or(ws.id());
        let presence = ws.presence();
        let answer = match cmd["op"].as_str() {
            Some("track") => presence.track_as(room, key, &cmd["meta"]).map(Value::from),
            Some("update") => presence.update(room, key, &cmd["meta"]).map(Value::from),
            Some("untrack") => Ok(Value::from(presence.untrack(room, key))),
            Some("leave") => Ok(Value::from(ws.unsubscribe(room))),
            Some("list") => Ok(serde_json::to_value(presence.list(room))?),
            _ => Ok(Value::Null),
        };
        match answer {
            Ok(value) => ws.send_json(&json!({"type": "ok", "value": value}))?,
            Err(e) => ws.send_json(&json!({"type": "error", "message": e.to_string()}))?,
        }
        Ok(())
    }
}

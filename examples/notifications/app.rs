//! The notifications app: HTTP endpoints push to WebSocket clients through a service.
//!
//! Contract (kept by `tests/notifications.rs`):
//! - WebSocket `/ws/notifications?userId=X` joins the rooms `user:X` and `announcements` and
//!   receives `{"type":"connected","message":"Connected to notification system"}`;
//!   `{"type":"ping"}` → `{"type":"pong"}`.
//! - `POST /admin/announcement` with `{"message":M}` → every socket receives
//!   `{"type":"announcement","message":M,"timestamp":…}`; the response is `{"success":true}`.
//! - `PUT /users/{id}/profile` → the sockets of user `id` receive
//!   `{"type":"profile_updated","message":…,"timestamp":…}`.
//!
//! Why no dependency cycle: [`NotificationSocket`] injects [`UserService`] (to answer
//! `{"type":"profile"}`), and [`UserService`] sends to the socket's clients through an
//! [`Ulak<NotificationSocket>`] handle. The handle finds the namespace by path when it sends,
//! so it adds no dependency edge; injecting `Arc<NotificationSocket>` there instead would be
//! rejected at startup as `Circular dependency detected`.

use std::collections::HashMap;
use std::sync::Mutex;

use asena_runtime::prelude::*;
use asena_runtime::{Asena, FromApp};
use axum::extract::Path;
use axum::routing::{post, put};

/// The room every socket joins.
pub const ANNOUNCEMENTS: &str = "announcements";

/// The room of one user's sockets.
pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// User profiles, and the notifications that go with changing them.
#[service]
pub struct UserService {
    #[inject]
    notifications: Ulak<NotificationSocket>,
    profiles: Mutex<HashMap<String, serde_json::Value>>,
}

impl UserService {
    /// Sends an announcement to every connected socket; returns local recipients.
    pub fn announce(&self, message: &str) -> Result<usize, asena_runtime::SendError> {
        self.notifications.to(
            ANNOUNCEMENTS,
            Json(json!({"type": "announcement", "message": message, "timestamp": now()})),
        )
    }

    /// Stores a user's profile and tells that user's sockets; returns local recipients.
    pub fn update_profile(
        &self,
        user_id: &str,
        profile: serde_json::Value,
    ) -> Result<usize, asena_runtime::SendError> {
        self.profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user_id.to_owned(), profile);
        self.notifications.to(
            &user_room(user_id),
            Json(json!({
                "type": "profile_updated",
                "message": "Your profile has been updated",
                "timestamp": now(),
            })),
        )
    }

    /// The stored profile of a user (`null` when none).
    pub fn profile(&self, user_id: &str) -> serde_json::Value {
        self.profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

/// `/ws/notifications?userId=X`.
#[websocket(path = "/ws/notifications", name = "NotificationSocket")]
pub struct NotificationSocket {
    #[inject]
    users: Arc<UserService>,
}

impl WebSocketService for NotificationSocket {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        if let Some(user_id) = ws.query("userId").filter(|u| !u.is_empty()) {
            ws.subscribe(&user_room(user_id))?;
        }
        ws.subscribe(ANNOUNCEMENTS)?;
        ws.send_json(&json!({"type": "connected", "message": "Connected to notification system"}))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let kind = msg
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned));
        match kind.as_deref() {
            Some("ping") => ws.send_json(&json!({"type": "pong"}))?,
            Some("profile") => {
                let user_id = ws.query("userId").unwrap_or_default();
                ws.send_json(&json!({"type": "profile", "profile": self.users.profile(user_id)}))?;
            }
            _ => ws.send_json(&json!({"type": "error", "message": "Unknown message type"}))?,
        }
        Ok(())
    }
}

/// Body of `POST /admin/announcement`.
#[derive(Debug, Deserialize)]
pub struct Announcement {
    pub message: String,
}

async fn announce(
    FromApp(users): FromApp<UserService>,
    axum::Json(body): axum::Json<Announcement>,
) -> axum::Json<serde_json::Value> {
    let result = users.announce(&body.message);
    axum::Json(json!({"success": result.is_ok()}))
}

async fn update_profile(
    FromApp(users): FromApp<UserService>,
    Path(id): Path<String>,
    body: Option<axum::Json<serde_json::Value>>,
) -> axum::Json<serde_json::Value> {
    let profile = body.map(|b| b.0).unwrap_or_else(|| json!({}));
    let result = users.update_profile(&id, profile);
    axum::Json(json!({"success": result.is_ok(), "userId": id}))
}

/// The HTTP routes next to the socket.
pub fn routes() -> axum::Router {
    axum::Router::new()
        .route("/admin/announcement", post(announce))
        .route("/users/{id}/profile", put(update_profile))
}

/// The app builder as the example runs it (tests add `.without_auto_registration()`).
pub fn builder() -> asena_runtime::AsenaBuilder {
    Asena::builder()
        .service::<UserService>()
        .websocket::<NotificationSocket>()
        .router(routes())
}

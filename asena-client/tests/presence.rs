//! Presence frames through the typed client, against a real server with presence on: a
//! socket's `presence_state` and the room's `presence_diff`s arrive as `Event::Presence`
//! (they are not the channel's `Out`), the channel's own messages still as
//! `Event::Message`, and `Presences` keeps the room's list from them as others join and leave;
//! a managed connection gets the same as `ManagedEvent::Presence` from the presence events.
#![allow(clippy::unwrap_used)]

use asena_client::managed::{ManagedConnection, ManagedEvent};
use asena_client::presence::{PresenceFrame, Presences};
use asena_client::{Client, Event};
use asena_runtime::Asena;
use asena_runtime::managed::{Authenticated, ManagedService};
use asena_runtime::prelude::*;
use asena_runtime::presence::PresenceOptions;
use serde_json::Value;
use tokio::time::timeout;

mod support;

use support::{Server, WAIT};

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LobbyOut {
    Welcome { key: String },
}

/// Welcomes each socket, then tracks it in `lobby` under `?key=` with `{"name": key}`.
#[websocket(path = "/lobby", sends = LobbyOut)]
struct Lobby;

impl WebSocketService for Lobby {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        let key = ws.query("key").unwrap_or("anonymous").to_owned();
        ws.send(LobbyOut::Welcome { key: key.clone() })?;
        ws.presence()
            .track_as("lobby", &key, &json!({ "name": key }))?;
        Ok(())
    }

    async fn on_message(&self, _: &Socket<Self>, _: Message) -> Result<()> {
        Ok(())
    }
}

async fn connect(server: &Server, key: &str) -> Client<Lobby> {
    Client::<Lobby>::builder(server.base())
        .query("key", key)
        .without_reconnect()
        .connect()
        .await
        .unwrap()
}

/// The next presence frame, failing on anything but the channel's messages.
async fn next_presence(client: &mut Client<Lobby>) -> PresenceFrame {
    timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Event::Presence(frame)) => return frame,
                Some(Event::Message(_)) => {}
                other => panic!("expected a presence frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a presence frame in time")
}

/// The keys present in `room`, as `rooms` keeps it.
fn keys_in<'a>(rooms: &'a Presences, room: &str) -> Vec<&'a str> {
    rooms
        .room(room)
        .map(|list| list.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Applies frames to `rooms` until the lobby's keys are `keys`.
async fn until(client: &mut Client<Lobby>, rooms: &mut Presences, keys: &[&str]) {
    loop {
        if keys_in(rooms, "lobby") == keys {
            return;
        }
        rooms.apply(next_presence(client).await);
    }
}

/// Serves `app` (nothing registered automatically) with presence on `127.0.0.1:0`.
async fn with_presence(app: asena_runtime::AsenaBuilder) -> Server {
    let app = app
        .without_auto_registration()
        .presence(PresenceOptions::default());
    Server::serve(app, "127.0.0.1:0").await
}

#[tokio::test]
async fn presence_frames_keep_the_rooms_list() {
    let server = with_presence(Asena::builder().websocket::<Lobby>()).await;

    // Ada: her welcome decodes as the channel's message, then her state.
    let mut ada = connect(&server, "ada").await;
    let welcome = timeout(WAIT, ada.next()).await.unwrap();
    assert!(
        matches!(&welcome, Some(Event::Message(LobbyOut::Welcome { key })) if key == "ada"),
        "{welcome:?}"
    );
    let state = next_presence(&mut ada).await;
    assert!(
        matches!(&state, PresenceFrame::PresenceState(s) if s.room == "lobby" && s.state.contains_key("ada")),
        "{state:?}"
    );
    let mut on_ada = Presences::default();
    on_ada.apply(state);

    // Bob joins: Ada gets the diff, Bob's state holds both, with their metadata.
    let mut bob = connect(&server, "bob").await;
    until(&mut ada, &mut on_ada, &["ada", "bob"]).await;
    let mut on_bob = Presences::default();
    until(&mut bob, &mut on_bob, &["ada", "bob"]).await;
    assert_eq!(on_bob, on_ada, "the same list from a state and from diffs");
    let lobby = on_ada.room("lobby").unwrap();
    assert_eq!(lobby["bob"].metas.len(), 1);
    assert_eq!(lobby["bob"].metas[0].meta["name"], "bob");

    // Bob leaves: Ada gets the leave.
    bob.close().await.unwrap();
    until(&mut ada, &mut on_ada, &["ada"]).await;
    ada.close().await.unwrap();
    server.stop().await;
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum DeskIn {
    /// Tracks the client in `room` under its user id.
    Here { room: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
enum DeskOut {
    Noted,
}

/// A managed service: the token is the user id; `here` tracks the client in a room.
#[websocket(path = "/desk", receives = DeskIn, sends = DeskOut, managed)]
struct Desk;

impl ManagedService for Desk {
    async fn authenticate(
        &self,
        _: &Socket<Self>,
        credentials: Value,
    ) -> Result<Option<Authenticated>> {
        Ok(credentials["token"].as_str().map(Authenticated::user))
    }

    async fn on_event(&self, ws: &Socket<Self>, event: DeskIn) -> Result<()> {
        let DeskIn::Here { room } = event;
        let me = ws.data().values.user_id().unwrap_or_default();
        ws.presence().track_as(&room, &me, &json!({ "name": me }))?;
        Ok(())
    }
}

async fn desk(server: &Server, token: &str) -> ManagedConnection<DeskOut> {
    ManagedConnection::<DeskOut>::builder(format!("{}/desk", server.base()))
        .token(token)
        .without_reconnect()
        .connect()
        .await
        .unwrap()
}

/// Applies presence events to `rooms` until the room's keys are `keys`.
async fn desk_until(conn: &mut ManagedConnection<DeskOut>, rooms: &mut Presences, keys: &[&str]) {
    loop {
        if keys_in(rooms, "desk") == keys {
            return;
        }
        match timeout(WAIT, conn.next()).await.expect("an event in time") {
            Some(ManagedEvent::Presence(frame)) => rooms.apply(frame),
            other => panic!("expected a presence event, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn managed_presence_events_keep_the_rooms_list() {
    let server = with_presence(Asena::builder().websocket::<Desk>()).await;
    let mut ada = desk(&server, "ada").await;
    let mut bob = desk(&server, "bob").await;
    let (mut on_ada, mut on_bob) = (Presences::default(), Presences::default());

    let here = DeskIn::Here {
        room: "desk".into(),
    };
    ada.send(&here).await.unwrap();
    desk_until(&mut ada, &mut on_ada, &["ada"]).await;
    bob.send(&here).await.unwrap();
    desk_until(&mut bob, &mut on_bob, &["ada", "bob"]).await;
    desk_until(&mut ada, &mut on_ada, &["ada", "bob"]).await;
    assert_eq!(on_ada, on_bob, "the same list from a state and from diffs");
    assert_eq!(
        on_ada.room("desk").unwrap()["bob"].metas[0].meta["name"],
        "bob"
    );

    bob.close().await.unwrap();
    desk_until(&mut ada, &mut on_ada, &["ada"]).await;
    ada.close().await.unwrap();
    server.stop().await;
}

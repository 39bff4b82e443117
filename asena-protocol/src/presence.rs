//! Presence frames (Phoenix.Presence's shapes): who is in a room, as a plain service's
//! sockets receive it, and a client's view of a room kept from those frames.
//!
//! ```json
//! {"type":"presence_state","room":"lobby","state":{"ada":{"metas":[{"typing":false,"phx_ref":"…"}]}}}
//! {"type":"presence_diff","room":"lobby","joins":{"bob":{"metas":[…]}},"leaves":{}}
//! ```
//!
//! A socket that tracks itself in a room gets the room's [`PresenceState`]; the room's
//! members get a [`PresenceDiff`] for every change, on any instance. A client keeps the
//! room's list as Phoenix's does: the state replaces it, each diff removes the entries that
//! left (by `phx_ref`) and adds the ones that joined ([`Presences::apply`]). A managed
//! service's clients get the same objects as the `data` of
//! `{"event":"presence_state"|"presence_diff","data":..}`
//! ([`PresenceFrame::from_event`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One entry's metadata, with its `phx_ref` (unique to this track or update); serializes as
/// the metadata's object with `phx_ref` added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceMeta {
    /// The metadata the service gave.
    #[serde(flatten)]
    pub meta: Map<String, Value>,
    /// The entry's reference.
    pub phx_ref: String,
}

/// The entries of one key: `{"metas": [..]}`, Phoenix's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceMetas {
    /// One per tracked socket (tab, device).
    pub metas: Vec<PresenceMeta>,
}

/// A room's presence: key → its entries.
pub type PresenceList = BTreeMap<String, PresenceMetas>;

/// What changed in a room: the entries that joined and left, keyed like Phoenix's
/// `presence_diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// The room.
    pub room: String,
    /// Entries that joined, by key.
    #[serde(default)]
    pub joins: PresenceList,
    /// Entries that left, by key.
    #[serde(default)]
    pub leaves: PresenceList,
}

/// Who is in a room on every instance, sent to a socket that tracks itself in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceState {
    /// The room.
    pub room: String,
    /// Its entries, by key.
    pub state: PresenceList,
}

/// A presence frame: `{"type":"presence_state",..}` or `{"type":"presence_diff",..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PresenceFrame {
    /// The room's whole list.
    PresenceState(PresenceState),
    /// A change of the room's list.
    PresenceDiff(PresenceDiff),
}

impl PresenceFrame {
    /// The frame a plain service sent as `text`, or `None` when `text` is not one.
    pub fn parse(text: &[u8]) -> Option<PresenceFrame> {
        serde_json::from_slice(text).ok()
    }

    /// The frame a managed service sent as the event `event` with `data`, or `None` when
    /// it is not one.
    pub fn from_event(event: &str, data: Value) -> Option<PresenceFrame> {
        match event {
            "presence_state" => serde_json::from_value(data)
                .ok()
                .map(PresenceFrame::PresenceState),
            "presence_diff" => serde_json::from_value(data)
                .ok()
                .map(PresenceFrame::PresenceDiff),
            _ => None,
        }
    }

    /// The room the frame is about.
    pub fn room(&self) -> &str {
        match self {
            PresenceFrame::PresenceState(state) => &state.room,
            PresenceFrame::PresenceDiff(diff) => &diff.room,
        }
    }
}

/// The presence of the rooms a client hears about, kept from their frames as Phoenix's
/// client keeps it (`syncState`, `syncDiff`).
///
/// ```
/// use asena_protocol::presence::{PresenceFrame, Presences};
///
/// let mut rooms = Presences::default();
/// for text in [
///     r#"{"type":"presence_state","room":"lobby","state":{"ada":{"metas":[{"phx_ref":"1"}]}}}"#,
///     r#"{"type":"presence_diff","room":"lobby","joins":{"bob":{"metas":[{"phx_ref":"2"}]}},"leaves":{"ada":{"metas":[{"phx_ref":"1"}]}}}"#,
/// ] {
///     let frame = PresenceFrame::parse(text.as_bytes()).expect("a presence frame");
///     rooms.apply(frame);
/// }
/// let lobby = rooms.room("lobby").expect("heard of");
/// assert_eq!(lobby.keys().collect::<Vec<_>>(), ["bob"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presences {
    rooms: BTreeMap<String, PresenceList>,
}

impl Presences {
    /// Applies one frame: a state replaces its room's list; a diff removes the entries
    /// that left (by `phx_ref`; a key left with none goes) and then adds the ones that
    /// joined (an entry whose `phx_ref` is held already is replaced).
    pub fn apply(&mut self, frame: PresenceFrame) {
        match frame {
            PresenceFrame::PresenceState(state) => {
                self.rooms.insert(state.room, state.state);
            }
            PresenceFrame::PresenceDiff(diff) => {
                let list = self.rooms.entry(diff.room).or_default();
                for (key, left) in diff.leaves {
                    if let Some(held) = list.get_mut(&key) {
                        held.metas
                            .retain(|m| !left.metas.iter().any(|l| l.phx_ref == m.phx_ref));
                        if held.metas.is_empty() {
                            list.remove(&key);
                        }
                    }
                }
                for (key, joined) in diff.joins {
                    let held = list.entry(key).or_default();
                    held.metas
                        .retain(|m| !joined.metas.iter().any(|j| j.phx_ref == m.phx_ref));
                    held.metas.extend(joined.metas);
                }
            }
        }
    }

    /// A room's list: key → its entries; `None` for a room no frame named.
    pub fn room(&self, room: &str) -> Option<&PresenceList> {
        self.rooms.get(room)
    }

    /// Forgets a room (the client left it).
    pub fn forget(&mut self, room: &str) -> Option<PresenceList> {
        self.rooms.remove(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(phx_ref: &str, name: &str) -> PresenceMeta {
        let Value::Object(meta) = json!({ "name": name }) else {
            unreachable!()
        };
        PresenceMeta {
            meta,
            phx_ref: phx_ref.to_owned(),
        }
    }

    fn list(entries: &[(&str, &str)]) -> PresenceList {
        let mut out = PresenceList::new();
        for (key, phx_ref) in entries {
            out.entry((*key).to_owned())
                .or_default()
                .metas
                .push(meta(phx_ref, key));
        }
        out
    }

    fn refs(rooms: &Presences, room: &str) -> Vec<(String, String)> {
        rooms
            .room(room)
            .into_iter()
            .flatten()
            .flat_map(|(key, metas)| {
                metas
                    .metas
                    .iter()
                    .map(move |m| (key.clone(), m.phx_ref.clone()))
            })
            .collect()
    }

    #[test]
    fn frames_read_as_the_server_writes_them() {
        let state = PresenceFrame::parse(
            br#"{"room":"lobby","state":{"ada":{"metas":[{"name":"ada","phx_ref":"r1"}]}},"type":"presence_state"}"#,
        );
        assert_eq!(
            state,
            Some(PresenceFrame::PresenceState(PresenceState {
                room: "lobby".into(),
                state: list(&[("ada", "r1")]),
            }))
        );
        let diff = PresenceFrame::parse(
            br#"{"type":"presence_diff","room":"lobby","joins":{},"leaves":{"ada":{"metas":[{"name":"ada","phx_ref":"r1"}]}}}"#,
        )
        .expect("a diff");
        assert_eq!(diff.room(), "lobby");
        // What the server writes is what is read back.
        let written = serde_json::to_vec(&diff).expect("serializes");
        assert_eq!(PresenceFrame::parse(&written), Some(diff));
        for other in [
            &br#"{"type":"said","text":"hi"}"#[..],
            br#"{"type":"presence_diff"}"#,
            br#"{"type":"presence_state","room":"lobby","state":{"ada":{"metas":[{}]}}}"#,
            b"not json",
        ] {
            assert_eq!(PresenceFrame::parse(other), None, "{other:?}");
        }
        let event = PresenceFrame::from_event(
            "presence_diff",
            json!({"room": "r", "joins": {"bob": {"metas": [{"phx_ref": "r2"}]}}, "leaves": {}}),
        );
        assert!(
            matches!(event, Some(PresenceFrame::PresenceDiff(d)) if d.joins.contains_key("bob"))
        );
        assert_eq!(PresenceFrame::from_event("said", json!({})), None);
    }

    #[test]
    fn state_then_diffs_keep_the_list() {
        let mut rooms = Presences::default();
        assert_eq!(rooms.room("lobby"), None);
        rooms.apply(PresenceFrame::PresenceState(PresenceState {
            room: "lobby".into(),
            state: list(&[("ada", "r1"), ("bob", "r2")]),
        }));
        // A second tab of ada joins; bob leaves; an update of ada's first tab (leave r1,
        // join r4).
        rooms.apply(PresenceFrame::PresenceDiff(PresenceDiff {
            room: "lobby".into(),
            joins: list(&[("ada", "r3")]),
            leaves: list(&[("bob", "r2")]),
        }));
        rooms.apply(PresenceFrame::PresenceDiff(PresenceDiff {
            room: "lobby".into(),
            joins: list(&[("ada", "r4")]),
            leaves: list(&[("ada", "r1")]),
        }));
        assert_eq!(
            refs(&rooms, "lobby"),
            [("ada".into(), "r3".into()), ("ada".into(), "r4".into())]
        );
        // A join repeated is held once; a leave of a ref not held changes nothing.
        rooms.apply(PresenceFrame::PresenceDiff(PresenceDiff {
            room: "lobby".into(),
            joins: list(&[("ada", "r4")]),
            leaves: list(&[("cy", "r9")]),
        }));
        assert_eq!(refs(&rooms, "lobby").len(), 2);
        // A new state replaces the list; another room is apart.
        rooms.apply(PresenceFrame::PresenceState(PresenceState {
            room: "lobby".into(),
            state: list(&[("cy", "r5")]),
        }));
        rooms.apply(PresenceFrame::PresenceDiff(PresenceDiff {
            room: "other".into(),
            joins: list(&[("dan", "r6")]),
            leaves: PresenceList::new(),
        }));
        assert_eq!(refs(&rooms, "lobby"), [("cy".into(), "r5".into())]);
        assert_eq!(refs(&rooms, "other"), [("dan".into(), "r6".into())]);
        assert!(rooms.forget("other").is_some());
        assert_eq!(rooms.room("other"), None);
    }
}

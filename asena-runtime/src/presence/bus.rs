//! Presence's messages between instances: one JSON object per message on the named channel
//! `<prefix>:fleet` ([`Route::Channel`](crate::transport::Route::Channel)), defined, encoded
//! and decoded here only.
//!
//! ```json
//! {"v":1,"from":"<instance>","kind":"diff","seq":7,"everyMs":2000,
//!  "entries":[{"ns":"/chat","room":"lobby","key":"ada","ref":"<ref>","meta":{"typing":false}}],
//!  "leaves":["<ref>"]}
//! ```
//!
//! | `kind` | meaning | fields used |
//! |---|---|---|
//! | `diff` | the sender's entries changed: `entries` joined, `leaves` (refs) left; `seq` is one more than its previous diff's | `seq`, `everyMs`, `entries`, `leaves` |
//! | `beat` | the sender is alive and its last diff was `seq` | `seq`, `everyMs` |
//! | `ask` | the sender wants the state of `to` (every instance when absent) | `to` |
//! | `state` | part `part` of the sender's full state at `seq`; `last` on the final part | `seq`, `everyMs`, `part`, `last`, `entries` |
//! | `bye` | the sender shuts down: drop its entries now | — |

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The format version.
pub(super) const VERSION: u8 = 1;

/// The longest instance id or ref accepted from the bus.
pub(super) const MAX_ID: usize = 64;

/// What a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    Diff,
    Beat,
    Ask,
    State,
    Bye,
}

/// One entry as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The namespace's path.
    pub(super) ns: Arc<str>,
    pub(super) room: Arc<str>,
    pub(super) key: Arc<str>,
    #[serde(rename = "ref")]
    pub(super) phx_ref: Arc<str>,
    pub(super) meta: Arc<Map<String, Value>>,
}

/// One message on the presence channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Message {
    pub(super) v: u8,
    pub(super) from: String,
    pub(super) kind: Kind,
    #[serde(default)]
    pub(super) seq: u64,
    #[serde(default)]
    pub(super) every_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) to: Option<String>,
    #[serde(default)]
    pub(super) part: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) last: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) entries: Vec<Entry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) leaves: Vec<String>,
}

impl Message {
    /// A message of `kind` from `from`, every other field empty.
    pub(super) fn new(from: &str, kind: Kind) -> Message {
        Message {
            v: VERSION,
            from: from.to_owned(),
            kind,
            seq: 0,
            every_ms: 0,
            to: None,
            part: 0,
            last: false,
            entries: Vec::new(),
            leaves: Vec::new(),
        }
    }

    /// The JSON bytes.
    pub(super) fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("invariant: a presence message is JSON-serializable")
            .into()
    }
}

/// A decoding error as a log line: at most 120 characters, whatever the message held.
pub(super) fn bounded(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

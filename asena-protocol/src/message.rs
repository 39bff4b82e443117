//! [`Message`]: one complete WebSocket message, text or binary, as a service receives it
//! and as a client sends it.

use bytes::Bytes;

/// A complete message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// The raw bytes of either kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Parses the message (text or binary) as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_read_as_bytes_and_json() {
        let text = Message::Text("[1,2]".into());
        let binary = Message::Binary(Bytes::from_static(b"[1,2]"));
        assert_eq!(text.as_text(), Some("[1,2]"));
        assert_eq!(binary.as_text(), None);
        assert_eq!(text.as_bytes(), binary.as_bytes());
        assert_eq!(binary.json::<Vec<u8>>().ok(), Some(vec![1, 2]));
    }
}

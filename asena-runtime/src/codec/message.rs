//! What can be sent to sockets ([`IntoFrame`], [`Json`]); the messages handlers receive
//! ([`Message`]) are `asena-protocol`'s.

use bytes::Bytes;

use super::{Frame, Message};

/// Something that can be sent to sockets. One rule everywhere: strings go out as text frames
/// exactly as given (never re-quoted), bytes go out as binary frames, and anything
/// `Serialize` goes out as JSON text through [`Json`] (or the `*_json` helpers).
///
/// ```
/// use asena_runtime::{Frame, IntoFrame, Json};
/// assert_eq!("hi".into_frame().unwrap(), Frame::text("hi"));
/// assert_eq!(Json(&[1, 2]).into_frame().unwrap(), Frame::text("[1,2]"));
/// assert!(!vec![1u8, 2].into_frame().unwrap().is_text());
/// ```
pub trait IntoFrame {
    /// Encodes the message; fails only for JSON that cannot be serialised.
    fn into_frame(self) -> Result<Frame, serde_json::Error>;
}

/// Sends a value as JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoFrame for Json<T> {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Frame::json(&self.0)
    }
}

impl IntoFrame for Frame {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(self)
    }
}

impl IntoFrame for &Frame {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(self.clone())
    }
}

impl IntoFrame for &str {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(Frame::text(self))
    }
}

impl IntoFrame for String {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(Frame::text(&self))
    }
}

impl IntoFrame for &String {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(Frame::text(self))
    }
}

impl IntoFrame for &[u8] {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(Frame::binary(self))
    }
}

impl IntoFrame for Vec<u8> {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(Frame::binary(&self))
    }
}

impl IntoFrame for Bytes {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(Frame::binary(&self))
    }
}

impl IntoFrame for Message {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        (&self).into_frame()
    }
}

impl IntoFrame for &Message {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Ok(match self {
            Message::Text(t) => Frame::text(t),
            Message::Binary(b) => Frame::binary(b),
        })
    }
}

impl IntoFrame for serde_json::Value {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Frame::json(&self)
    }
}

impl IntoFrame for &serde_json::Value {
    fn into_frame(self) -> Result<Frame, serde_json::Error> {
        Frame::json(self)
    }
}

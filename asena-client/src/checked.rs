//! Publish and subscribe with the channel's constraints checked: over a [`Client`], or over
//! a WebSocket the application connected itself (any tokio-tungstenite socket, so connect,
//! authentication and reconnect stay the application's). Code generated from an AsyncAPI
//! document (`asena-codegen`) calls these; so can any typed client.
//!
//! Each direction is checked by default: a message to publish that breaks a constraint is
//! not sent ([`ClientError::Invalid`]), and a received one that does not decode or breaks a
//! constraint goes to the callback as an `Err` instead of a message. With
//! [`MessageOptions::skip_message_validation`] only the JSON shape is checked.

use asena_protocol::channel::decode_json;
use asena_protocol::{Channel, Checked, DecodeError};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::{Client, ClientError, Event};

/// How the checked functions treat messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageOptions {
    /// Do not check constraints (required fields and types are still enforced by decoding).
    pub skip_message_validation: bool,
}

impl MessageOptions {
    fn check<T: Checked>(self, message: &T) -> Result<(), DecodeError> {
        if self.skip_message_validation {
            Ok(())
        } else {
            message.check()
        }
    }

    fn decode<T: DeserializeOwned + Checked>(self, bytes: &[u8]) -> Result<T, DecodeError> {
        let message: T = decode_json(bytes)?;
        self.check(&message)?;
        Ok(message)
    }
}

/// Checks `message`, then sends it on `client` (queued as [`Client::send`] does).
pub async fn publish<C>(
    client: &Client<C>,
    message: &C::In,
    options: MessageOptions,
) -> Result<(), ClientError>
where
    C: Channel,
    C::In: Serialize + Checked,
{
    options.check(message).map_err(ClientError::Invalid)?;
    client.send(message).await
}

/// Hands every message `client` receives to `on_data`, checked, until the client's stream
/// ends (closed, or reconnecting gave up). Connection events and presence frames that are
/// not `C::Out`s are left out; read the client itself to see them.
pub async fn subscribe<C>(
    client: &mut Client<C>,
    options: MessageOptions,
    mut on_data: impl FnMut(Result<C::Out, DecodeError>),
) where
    C: Channel,
    C::Out: DeserializeOwned + Checked,
{
    while let Some(event) = client.next().await {
        match event {
            Event::Message(message) => on_data(options.check(&message).map(|()| message)),
            // serde's error has no path; decoding again gives the one with it.
            Event::Undecodable { text, .. } => on_data(options.decode(text.as_bytes())),
            _ => {}
        }
    }
}

/// Checks `message`, then sends it as JSON text on `ws`, a socket the application owns.
pub async fn publish_on<C: Channel, S>(
    ws: &mut S,
    message: &C::In,
    options: MessageOptions,
) -> Result<(), ClientError>
where
    C::In: Serialize + Checked,
    S: Sink<WsMessage, Error = tungstenite::Error> + Unpin,
{
    options.check(message).map_err(ClientError::Invalid)?;
    let text = serde_json::to_string(message).map_err(ClientError::Encode)?;
    ws.send(WsMessage::text(text))
        .await
        .map_err(|e| ClientError::Socket {
            source: Box::new(e),
        })
}

/// Reads `ws`, a socket the application owns, handing every text or binary message to
/// `on_data`, checked, until the peer closes (its close frame is returned) or the stream
/// ends (`None`). Pings are answered by tungstenite as the socket is read.
pub async fn subscribe_on<C, S>(
    ws: &mut S,
    options: MessageOptions,
    mut on_data: impl FnMut(Result<C::Out, DecodeError>),
) -> Result<Option<tungstenite::protocol::CloseFrame>, ClientError>
where
    C: Channel,
    C::Out: DeserializeOwned + Checked,
    S: Stream<Item = Result<WsMessage, tungstenite::Error>> + Unpin,
{
    while let Some(frame) = ws.next().await {
        match frame.map_err(|e| ClientError::Socket {
            source: Box::new(e),
        })? {
            WsMessage::Text(text) => on_data(options.decode(text.as_bytes())),
            WsMessage::Binary(bytes) => on_data(options.decode(&bytes)),
            WsMessage::Close(frame) => return Ok(frame),
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
        }
    }
    Ok(None)
}

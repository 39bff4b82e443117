//! How a Redis transport publishes: pipelined batches of `PUBLISH` on a multiplexed
//! connection, made again when lost. The task around it (batches, reconnection, the
//! re-subscribe grace, the flush on shutdown) is the transports' one publisher task.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use super::source::Source;
use crate::error::BoxError;
use crate::transport::broker::{CONNECT_TIMEOUT, encode_outbound};
use crate::transport::counters::Counters;
use crate::transport::publisher::{Lost, Publish};
use crate::transport::{Outbound, Route};
use crate::wire;
use std::sync::Arc;

/// A multiplexed connection for publishing, within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The publisher of one Redis server.
pub(crate) struct Publisher {
    pub(crate) source: Source,
    pub(crate) conn: MultiplexedConnection,
    /// The fleet channel.
    pub(crate) channel: String,
    pub(crate) pod_id: String,
    /// Whether room messages go on their rooms' channels.
    pub(crate) by_interest: bool,
    pub(crate) counters: Arc<Counters>,
}

impl Publish for Publisher {
    const NAME: &'static str = "redis";

    /// Sends `batch` as one pipeline of `PUBLISH`es (their replies ignored).
    async fn send(&mut self, batch: &[Outbound]) -> Result<(), Lost> {
        let mut pipe = redis::pipe();
        for msg in batch {
            let cmd = pipe.cmd("PUBLISH");
            match &msg.route {
                Route::Topic {
                    topic,
                    interest: true,
                } if self.by_interest => cmd.arg(wire::redis_room_channel(&self.channel, topic)),
                Route::Topic { .. } => cmd.arg(&self.channel),
                Route::Channel(named) => cmd.arg(named),
            };
            cmd.arg(encode_outbound(msg, &self.pod_id)).ignore();
        }
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(|error| Lost(error.into()))?;
        Counters::add(&self.counters.published, batch.len() as u64);
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<(), BoxError> {
        self.conn = connect(&self.source.client().await?).await?;
        Ok(())
    }
}

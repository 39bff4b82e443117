//! Where a Redis transport's connections come from: one client, or the master that Redis
//! Sentinel names, asked again at every (re)connection so that a failover is followed.

use std::sync::Arc;

use redis::Client;
use redis::sentinel::SentinelClient;
use tokio::sync::Mutex;

use crate::error::BoxError;
use crate::transport::broker::CONNECT_TIMEOUT;

/// The client a connection is opened from.
#[derive(Clone)]
pub(crate) enum Source {
    /// One server, always the same.
    Client(Client),
    /// The current master of a Sentinel-monitored service.
    Sentinel(Arc<Mutex<SentinelClient>>),
}

impl Source {
    /// The client to connect with now; for Sentinel, the master the sentinels name, within
    /// [`CONNECT_TIMEOUT`].
    pub(crate) async fn client(&self) -> Result<Client, BoxError> {
        match self {
            Source::Client(client) => Ok(client.clone()),
            Source::Sentinel(sentinel) => {
                let ask = async { sentinel.lock().await.async_get_client().await };
                Ok(tokio::time::timeout(CONNECT_TIMEOUT, ask)
                    .await
                    .map_err(|_| "no sentinel named the master in time")??)
            }
        }
    }
}

//! The history of each room in Redis: a stream of its last messages and a small hash of its
//! epoch and last offset, changed only by two Lua scripts so an append is atomic.
//!
//! Keys, for the room `general` of `/chat` (topic `chat.general`):
//! - `asena:history:{chat.general}:m`, a hash: `e` the epoch (random, set when the hash is
//!   made), `o` the last offset given;
//! - `asena:history:{chat.general}:s`, a stream whose entry `<offset>-0` holds the message
//!   in its field `d`, trimmed to the last `size` entries.
//!
//! Both keys share a hash tag, so they live on one node of a cluster. The stream expires
//! `ttl` after its last message; the hash lives at least a day longer, so a client that comes
//! back after a quiet hour still finds its epoch and recovers nothing missed rather than
//! being told to resync. When the hash is gone (expired, evicted, a server restart without
//! persistence) the next append makes a new epoch and drops the old stream: a client holding
//! a position of the old epoch is told to resync.

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::error::BoxError;

/// Appends `ARGV[1]` and answers `{epoch, offset}`.
const APPEND: &str = r"
local e = redis.call('HGET', KEYS[2], 'e')
if not e then
  e = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', e)
end
local o = redis.call('HINCRBY', KEYS[2], 'o', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], o .. '-0', 'd', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {e, o}
";

/// Answers `{epoch, last offset, entries from offset ARGV[1] on (at most ARGV[2])}`; a room
/// with no history gets its epoch (`ARGV[3]`) and offset 0 here, so the first position a
/// client is given already names the epoch its messages will have.
const READ: &str = r"
local m = redis.call('HMGET', KEYS[2], 'e', 'o')
if not m[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', ARGV[3], 'o', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return {ARGV[3], 0, {}}
end
local top = tonumber(m[2])
local entries = {}
if tonumber(ARGV[1]) <= top then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {m[1], top, entries}
";

/// How long the hash of a room outlives its stream, at least.
const META_EXTRA_MS: u64 = 24 * 60 * 60 * 1000;

/// A room's history as read: its epoch, its last offset, and the
/// messages asked for, oldest first.
#[derive(Debug, Default)]
pub(super) struct Read {
    pub(super) epoch: String,
    pub(super) top: u64,
    pub(super) entries: Vec<(u64, Bytes)>,
}

/// A connection to the Redis server holding the histories, with the scripts loaded.
struct Loaded {
    conn: MultiplexedConnection,
    /// The SHA-1 of [`APPEND`] and of [`READ`] in the server's script cache: an append sends
    /// its hash, not the script (`EVALSHA`).
    append: String,
    read: String,
}

/// The Redis server holding the histories.
pub(super) struct Store {
    client: Client,
    conn: Option<Loaded>,
    /// Entries a stream keeps.
    size: u64,
    stream_ttl_ms: u64,
}

/// The key prefix of a room's history (`topic` is `<namespace topic>.<room>`).
fn keys(topic: &str) -> [String; 2] {
    [
        format!("asena:history:{{{topic}}}:s"),
        format!("asena:history:{{{topic}}}:m"),
    ]
}

impl Store {
    pub(super) fn new(url: &str, size: u64, stream_ttl_ms: u64) -> Result<Store, BoxError> {
        Ok(Store {
            client: Client::open(url)?,
            conn: None,
            size,
            stream_ttl_ms,
        })
    }

    /// The connection with the scripts loaded, made again when lost (within 2 s). A failed
    /// call drops it, so a server that lost its script cache gets them again.
    async fn conn(&mut self) -> Result<&mut Loaded, BoxError> {
        if self.conn.is_none() {
            let timeout = std::time::Duration::from_secs(2);
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let (append, read): (String, String) = redis::pipe()
                .cmd("SCRIPT")
                .arg("LOAD")
                .arg(APPEND)
                .cmd("SCRIPT")
                .arg("LOAD")
                .arg(READ)
                .query_async(&mut conn)
                .await?;
            self.conn = Some(Loaded { conn, append, read });
        }
        Ok(self.conn.as_mut().expect("invariant: just connected"))
    }

    /// Forgets a connection that failed, so the next call makes a new one.
    fn failed<T>(&mut self, error: redis::RedisError) -> Result<T, BoxError> {
        self.conn = None;
        Err(error.into())
    }

    /// Appends each `(topic, message)` in one round trip; answers each one's epoch and
    /// offset, in order.
    pub(super) async fn append(
        &mut self,
        batch: &[(String, Bytes)],
        new_epoch: &str,
    ) -> Result<Vec<(String, u64)>, BoxError> {
        let (size, stream_ttl) = (self.size, self.stream_ttl_ms);
        let meta_ttl = stream_ttl.saturating_add(META_EXTRA_MS);
        let loaded = self.conn().await?;
        let mut pipe = redis::pipe();
        for (topic, message) in batch {
            let [stream, meta] = keys(topic);
            pipe.cmd("EVALSHA")
                .arg(&loaded.append)
                .arg(2)
                .arg(stream)
                .arg(meta)
                .arg(message.as_ref())
                .arg(size)
                .arg(stream_ttl)
                .arg(meta_ttl)
                .arg(new_epoch);
        }
        match pipe
            .query_async::<Vec<(String, u64)>>(&mut loaded.conn)
            .await
        {
            Ok(positions) => Ok(positions),
            Err(e) => self.failed(e),
        }
    }

    /// The history of `topic` from offset `from` on (at most `size` entries), made with
    /// `new_epoch` when it has none.
    pub(super) async fn read(
        &mut self,
        topic: &str,
        from: u64,
        new_epoch: &str,
    ) -> Result<Read, BoxError> {
        let [stream, meta] = keys(topic);
        let size = self.size;
        let meta_ttl = self.stream_ttl_ms.saturating_add(META_EXTRA_MS);
        let loaded = self.conn().await?;
        let answer = redis::cmd("EVALSHA")
            .arg(&loaded.read)
            .arg(2)
            .arg(stream)
            .arg(meta)
            .arg(from)
            .arg(size)
            .arg(new_epoch)
            .arg(meta_ttl)
            .query_async::<(String, u64, Vec<(String, Vec<Vec<u8>>)>)>(&mut loaded.conn)
            .await;
        let (epoch, top, raw) = match answer {
            Ok(answer) => answer,
            Err(e) => return self.failed(e),
        };
        let mut entries = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            let offset = id
                .split_once('-')
                .and_then(|(offset, _)| offset.parse::<u64>().ok())
                .ok_or_else(|| format!("history entry id {id:?} is not <offset>-0"))?;
            let data = fields
                .chunks(2)
                .find(|pair| pair.first().is_some_and(|f| f == b"d"))
                .and_then(|pair| pair.get(1))
                .ok_or_else(|| format!("history entry {id} has no field d"))?;
            entries.push((offset, Bytes::copy_from_slice(data)));
        }
        Ok(Read {
            epoch,
            top,
            entries,
        })
    }
}

//! Rooms: which names a client may use, and the index of which sockets are in which room.
//!
//! # Names
//! One address space holds three kinds of name, and they must never be confused:
//! - **rooms** that clients join and publish to (`general`, `match-17`, `a.b`);
//! - **socket ids** (UUIDs): a private send goes to the socket with that id, on whichever
//!   instance holds it (a managed client is also in the room of its own id, Ignis's
//!   convention, so server code reaching it through a room reaches only it);
//! - **the framework's own names**: the broadcast room `__` (every socket of the namespace),
//!   anything else starting with `__`, and the room of a socket's concrete path
//!   (`/user/events/42`, which only the framework puts sockets in).
//!
//! [`validate_room`] is the one check a name from a client goes through: every join
//! (`Socket::subscribe`, the managed protocol's `join`) and every publish on a socket's behalf
//! (`Socket::publish`) calls it, so no client can join, publish to or otherwise name a room
//! that is another socket's id or a reserved name. Server-side sends to a room
//! (`Namespace::to`) may name a socket id (that reaches the socket) but no reserved name.
//!
//! # The index
//! Each room keeps its members in a dense `Vec` (fan-out is a linear walk with no hashing)
//! plus a slot map for O(1) removal. Rooms disappear when their last member leaves.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 256;

/// Why a room name was refused ([`validate_room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoomError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_ROOM_NAME`] bytes.
    TooLong,
    /// The name is the framework's: `__` (the broadcast room) or another name starting with
    /// `__`; for a client also a path (starting with `/`: the room of the sockets connected
    /// at a parametrised service's concrete path, which only the framework fills).
    Reserved,
    /// The name is a socket id (any UUID): joining it would receive that socket's private
    /// messages.
    SocketId,
    /// The name holds a control character (U+0000–U+001F, U+007F).
    ControlCharacter,
}

impl RoomError {
    /// A short stable name: `empty`, `too_long`, `reserved`, `socket_id`,
    /// `control_character`.
    pub fn code(self) -> &'static str {
        match self {
            RoomError::Empty => "empty",
            RoomError::TooLong => "too_long",
            RoomError::Reserved => "reserved",
            RoomError::SocketId => "socket_id",
            RoomError::ControlCharacter => "control_character",
        }
    }
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoomError::Empty => "a room name must not be empty",
            RoomError::TooLong => "a room name must be at most 256 bytes long",
            RoomError::Reserved => {
                "room names starting with `__` or `/` are reserved for the framework"
            }
            RoomError::SocketId => "a room name must not be a socket id (a UUID)",
            RoomError::ControlCharacter => "a room name must not hold control characters",
        })
    }
}

impl std::error::Error for RoomError {}

/// Checks a room name that a client chose: not empty, at most
/// [`MAX_ROOM_NAME`] bytes, no control characters, not reserved (`__`, `__…`, `/…`) and not a
/// socket id (any UUID). Linear in the name's length.
///
/// ```
/// use asena_runtime::namespace::{RoomError, validate_room};
///
/// assert_eq!(validate_room("general"), Ok(()));
/// assert_eq!(validate_room("a.b"), Ok(()));
/// assert_eq!(validate_room("__"), Err(RoomError::Reserved));
/// assert_eq!(validate_room("/user/events/42"), Err(RoomError::Reserved));
/// assert_eq!(validate_room("019af3c2-7b1e-7c3d-9a4f-2b6c8d0e1f23"), Err(RoomError::SocketId));
/// ```
pub fn validate_room(name: &str) -> Result<(), RoomError> {
    validate_target(name)?;
    if name.starts_with('/') {
        return Err(RoomError::Reserved);
    }
    if uuid::Uuid::try_parse(name).is_ok() {
        return Err(RoomError::SocketId);
    }
    Ok(())
}

/// The check for a room that server code sends to: [`validate_room`]'s rules except that a
/// socket id (a send to it reaches that socket) and a concrete path (the room of the sockets
/// connected at that path) are allowed.
pub(crate) fn validate_target(name: &str) -> Result<(), RoomError> {
    if name.is_empty() {
        return Err(RoomError::Empty);
    }
    if name.len() > MAX_ROOM_NAME {
        return Err(RoomError::TooLong);
    }
    if name.starts_with("__") {
        return Err(RoomError::Reserved);
    }
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(RoomError::ControlCharacter);
    }
    Ok(())
}

/// Anything that can be a room member: it needs a stable, unique key.
pub trait Member {
    /// A key unique among the members of one index.
    fn key(&self) -> u64;
}

impl<T: Member + ?Sized> Member for Arc<T> {
    fn key(&self) -> u64 {
        (**self).key()
    }
}

/// One room.
#[derive(Debug)]
pub struct Room<M> {
    members: Vec<M>,
    slots: HashMap<u64, usize>,
}

impl<M: Member> Room<M> {
    fn new() -> Self {
        Room {
            members: Vec::new(),
            slots: HashMap::new(),
        }
    }

    /// The members, in no particular order.
    pub fn members(&self) -> &[M] {
        &self.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }
}

/// Rooms by name.
#[derive(Debug)]
pub struct RoomIndex<M> {
    rooms: HashMap<Arc<str>, Room<M>>,
}

impl<M> Default for RoomIndex<M> {
    fn default() -> Self {
        RoomIndex {
            rooms: HashMap::new(),
        }
    }
}

/// Result of a join or leave, for interest hints to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing changed (already a member / not a member).
    None,
    /// Membership changed; the room existed before and still exists.
    Member,
    /// The room was created by this join, or removed by this leave.
    Room,
}

impl<M: Member> RoomIndex<M> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `member` to `room`.
    pub fn join(&mut self, room: &str, member: M) -> Change {
        let key = member.key();
        let (room, created) = match self.rooms.get_mut(room) {
            Some(r) => (r, false),
            None => (
                self.rooms.entry(Arc::from(room)).or_insert_with(Room::new),
                true,
            ),
        };
        if room.slots.contains_key(&key) {
            return Change::None;
        }
        room.slots.insert(key, room.members.len());
        room.members.push(member);
        if created {
            Change::Room
        } else {
            Change::Member
        }
    }

    /// Removes the member with `key` from `room`.
    pub fn leave(&mut self, room: &str, key: u64) -> Change {
        let Some(r) = self.rooms.get_mut(room) else {
            return Change::None;
        };
        let Some(slot) = r.slots.remove(&key) else {
            return Change::None;
        };
        r.members.swap_remove(slot);
        if let Some(moved) = r.members.get(slot) {
            r.slots.insert(moved.key(), slot);
        }
        if r.members.is_empty() {
            self.rooms.remove(room);
            Change::Room
        } else {
            Change::Member
        }
    }

    /// The room's name as the index holds it (one allocation shared by whoever keeps it).
    pub fn name(&self, room: &str) -> Option<Arc<str>> {
        self.rooms.get_key_value(room).map(|(name, _)| name.clone())
    }

    /// The room, if it has members.
    pub fn get<Q: Borrow<str> + ?Sized>(&self, room: &Q) -> Option<&Room<M>> {
        self.rooms.get(room.borrow())
    }

    /// Whether `key` is in `room`.
    pub fn contains(&self, room: &str, key: u64) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.slots.contains_key(&key))
    }

    /// Every room with its member count.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Room<M>)> {
        self.rooms.iter()
    }

    /// Number of rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether there are no rooms.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct M(u64);
    impl Member for M {
        fn key(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn names_clients_may_not_use() {
        assert_eq!(validate_room(""), Err(RoomError::Empty));
        assert_eq!(validate_room(&"x".repeat(257)), Err(RoomError::TooLong));
        assert_eq!(validate_room(&"x".repeat(256)), Ok(()));
        for reserved in ["__", "__x", "/chat", "/user/events/42"] {
            assert_eq!(
                validate_room(reserved),
                Err(RoomError::Reserved),
                "{reserved}"
            );
        }
        assert_eq!(validate_target("/user/events/42"), Ok(()));
        assert_eq!(validate_target("__"), Err(RoomError::Reserved));
        let id = uuid::Uuid::now_v7();
        for form in [
            id.to_string(),
            id.simple().to_string(),
            id.to_string().to_uppercase(),
        ] {
            assert_eq!(validate_room(&form), Err(RoomError::SocketId), "{form}");
            assert_eq!(validate_target(&form), Ok(()), "{form}");
        }
        assert_eq!(validate_room("a\nb"), Err(RoomError::ControlCharacter));
        for fine in ["general", "a.b", "ws-1", "_x", "é", "a/b"] {
            assert_eq!(validate_room(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn join_leave_and_cleanup() {
        let mut idx = RoomIndex::new();
        assert_eq!(idx.join("a", M(1)), Change::Room);
        assert_eq!(idx.join("a", M(2)), Change::Member);
        assert_eq!(idx.join("a", M(2)), Change::None);
        assert_eq!(idx.join("a", M(3)), Change::Member);
        assert_eq!(idx.leave("a", 1), Change::Member);
        // the swapped-in member keeps a valid slot
        assert!(idx.contains("a", 3));
        assert_eq!(idx.leave("a", 3), Change::Member);
        assert_eq!(idx.get("a").map(|r| r.members().to_vec()), Some(vec![M(2)]));
        assert_eq!(idx.leave("a", 2), Change::Room);
        assert!(idx.is_empty());
        assert_eq!(idx.leave("a", 2), Change::None);
    }
}

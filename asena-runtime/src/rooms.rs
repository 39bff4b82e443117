//! The room index: which sockets are in which room.
//!
//! Each room keeps its members in a dense `Vec` (fan-out is a linear walk with no hashing)
//! plus a slot map for O(1) removal. Rooms disappear when their last member leaves.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::Arc;

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
    #[cfg(test)]
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

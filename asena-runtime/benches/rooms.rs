//! Room index micro-benchmark: subscribe, unsubscribe and fan-out lookup at 100k sockets and
//! 10k rooms (`cargo bench -p asena-runtime --bench rooms`; CI only compiles it).
//!
//! The room index is private to the runtime; the benchmark compiles its source file on its
//! own (it depends on nothing else in the crate).

use std::hint::black_box;

#[path = "../src/rooms.rs"]
#[allow(dead_code, unreachable_pub)]
mod rooms;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rooms::{Member, RoomIndex};

const SOCKETS: u64 = 100_000;
const ROOMS: usize = 10_000;
/// Rooms each socket is in (its own personal room is not modelled here).
const ROOMS_PER_SOCKET: u64 = 3;

#[derive(Debug, Clone)]
struct Sock(u64);

impl Member for Sock {
    fn key(&self) -> u64 {
        self.0
    }
}

fn room_names() -> Vec<String> {
    (0..ROOMS).map(|i| format!("room:{i}")).collect()
}

/// Room of the `k`-th membership of socket `s`: spread so every room gets ~30 members.
fn room_of(s: u64, k: u64) -> usize {
    ((s.wrapping_mul(2_654_435_761) + k * 7_919) % ROOMS as u64) as usize
}

/// 100k sockets, each in 3 of 10k rooms (300k memberships).
fn populated(names: &[String]) -> RoomIndex<Sock> {
    let mut idx = RoomIndex::new();
    for s in 0..SOCKETS {
        for k in 0..ROOMS_PER_SOCKET {
            idx.join(&names[room_of(s, k)], Sock(s));
        }
    }
    idx
}

fn rooms(c: &mut Criterion) {
    let names = room_names();
    let mut group = c.benchmark_group("rooms_100k_sockets_10k_rooms");
    group.sample_size(20);

    group.bench_function("build_300k_memberships", |b| {
        b.iter(|| black_box(populated(&names)).len())
    });

    let mut idx = populated(&names);
    let mut next = SOCKETS;
    group.bench_function("subscribe_then_unsubscribe", |b| {
        b.iter(|| {
            let key = next;
            next += 1;
            let room = &names[(key as usize) % ROOMS];
            black_box(idx.join(room, Sock(key)));
            black_box(idx.leave(room, key));
        })
    });

    group.bench_function("unsubscribe_all_rooms_of_socket", |b| {
        b.iter_batched(
            || {
                let s = fastrand(next);
                next += 1;
                s % SOCKETS
            },
            |s| {
                for k in 0..ROOMS_PER_SOCKET {
                    black_box(idx.leave(&names[room_of(s, k)], s));
                }
                for k in 0..ROOMS_PER_SOCKET {
                    idx.join(&names[room_of(s, k)], Sock(s));
                }
            },
            BatchSize::SmallInput,
        )
    });

    let mut i = 0usize;
    group.bench_function("fanout_lookup_small_room", |b| {
        b.iter(|| {
            i = (i + 1) % ROOMS;
            let room = idx.get(names[i].as_str()).expect("room exists");
            black_box(
                room.members()
                    .iter()
                    .map(|m| m.key())
                    .fold(0, u64::wrapping_add),
            )
        })
    });

    // One big room with every socket (the fan-out benchmark's shape).
    let mut big = RoomIndex::new();
    for s in 0..SOCKETS {
        big.join("all", Sock(s));
    }
    group.bench_function("fanout_walk_100k_members", |b| {
        b.iter(|| {
            let room = big.get("all").expect("room exists");
            black_box(
                room.members()
                    .iter()
                    .map(|m| m.key())
                    .fold(0, u64::wrapping_add),
            )
        })
    });

    group.bench_function("lookup_missing_room", |b| {
        b.iter(|| black_box(idx.get("no-such-room").is_none()))
    });
    group.finish();
}

/// A cheap deterministic scramble (no rand dependency).
fn fastrand(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

criterion_group!(benches, rooms);
criterion_main!(benches);

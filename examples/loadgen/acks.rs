//! `loadgen acks`: the acknowledgement round trip on the channel protocol, against
//! bench_server's `/bench-ack`.
//!
//! - `--from server` (the default): a socket sends the text `ask`; the server requests
//!   `{"$req":id,"data":null}` of it with `SocketRef::request`, the socket replies
//!   `{"$ack":id,"data":null}` as soon as it reads the request, and the server sends back
//!   `{"took_ns":N}`: the time from its request to the reply, on the server's clock (what a
//!   handler awaiting `request` waits). That N is the sample.
//! - `--from client`: a socket sends `{"$req":id,"data":null}`, the server's `Answer`
//!   replies `{"$ack":id,"data":true}`; the sample is the time from the send to the reply,
//!   on the client's clock.
//!
//! Each socket has at most one request outstanding; `--in-flight N` lets N sockets ask at
//! once (a fair semaphore: with 1, the sockets take turns, one request at a time). The
//! first second is a warm-up, not recorded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::{
    Conn, Hist, Opts, Seconds, frame_at, new_hist, now_ns, open_counted, push_header, quantiles,
};

/// Who asks, and so whose clock times the round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// The server asks (`SocketRef::request`) and reports the time it waited.
    Server,
    /// The client asks (`{"$req":..}` to the service's `Answer`) and times the reply.
    Client,
}

impl std::str::FromStr for Asker {
    type Err = String;
    fn from_str(s: &str) -> Result<Asker, String> {
        match s {
            "server" => Ok(Asker::Server),
            "client" => Ok(Asker::Client),
            other => Err(format!("{other:?} is neither server nor client")),
        }
    }
}

impl std::fmt::Display for Asker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Asker::Server => "server",
            Asker::Client => "client",
        })
    }
}

/// What the askers share with the coordinator.
#[derive(Debug)]
struct Shared {
    /// Round trips completed.
    done: AtomicU64,
    /// Requests that failed (the server's `{"error":..}`, a reply that did not parse, a
    /// connection that closed).
    errors: AtomicU64,
    /// Samples are recorded only while this is set (after the warm-up second).
    measuring: AtomicBool,
    /// Round trips in nanoseconds.
    hist: Mutex<Hist>,
}

/// What one text message from the server means to an asker.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// The server's request, to be answered with this id.
    Request(u64),
    /// The server's report of its round trip (`--from server`), in nanoseconds.
    Took(u64),
    /// The reply to the client's request with this id (`--from client`).
    Reply(u64),
    /// The server could not complete the round trip.
    Failed,
    /// Anything else.
    Other,
}

fn heard(text: &[u8]) -> Heard {
    let Ok(v) = serde_json::from_slice::<Value>(text) else {
        return Heard::Other;
    };
    if let Some(id) = v["$req"].as_u64() {
        Heard::Request(id)
    } else if let Some(ns) = v["took_ns"].as_u64() {
        Heard::Took(ns)
    } else if let Some(id) = v["$ack"].as_u64() {
        if v.get("error").is_some() {
            Heard::Failed
        } else {
            Heard::Reply(id)
        }
    } else if v.get("error").is_some() {
        Heard::Failed
    } else {
        Heard::Other
    }
}

/// Appends one masked text frame holding `payload`.
fn push_text(out: &mut Vec<u8>, payload: &[u8]) {
    push_header(out, payload.len());
    out.extend_from_slice(payload);
}

/// One socket: asks (holding a permit) and awaits the round trip, again and again, until
/// `stop` fires or the connection fails.
async fn asker(
    conn: Conn,
    from: Asker,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut r, mut w) = conn.stream.into_split();
    let mut buf = conn.rest;
    let mut chunk = vec![0u8; 4096];
    let mut out = Vec::with_capacity(64);
    let mut id = 0u64;
    'asking: loop {
        let permit = tokio::select! {
            permit = permits.acquire() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        id += 1;
        out.clear();
        match from {
            Asker::Server => push_text(&mut out, b"ask"),
            Asker::Client => {
                push_text(
                    &mut out,
                    format!(r#"{{"$req":{id},"data":null}}"#).as_bytes(),
                );
            }
        }
        let sent = now_ns();
        if w.write_all(&out).await.is_err() {
            break;
        }
        // Reads until this request's round trip is over.
        let took = 'waiting: loop {
            while let Some((b0, hl, len)) = frame_at(&buf) {
                let text = (b0 & 0x0f == 1).then(|| heard(&buf[hl..hl + len]));
                let close = b0 & 0x0f == 8;
                buf.drain(..hl + len);
                if close {
                    break 'asking;
                }
                match text {
                    Some(Heard::Request(asked)) => {
                        out.clear();
                        push_text(
                            &mut out,
                            format!(r#"{{"$ack":{asked},"data":null}}"#).as_bytes(),
                        );
                        if w.write_all(&out).await.is_err() {
                            break 'asking;
                        }
                    }
                    Some(Heard::Took(ns)) if from == Asker::Server => break 'waiting Some(ns),
                    Some(Heard::Reply(replied)) if from == Asker::Client && replied == id => {
                        break 'waiting Some(now_ns().saturating_sub(sent));
                    }
                    Some(Heard::Failed) => break 'waiting None,
                    _ => {}
                }
            }
            tokio::select! {
                read = r.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break 'asking,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                _ = stop.changed() => break 'asking,
            }
        };
        drop(permit);
        match took {
            Some(ns) => {
                shared.done.fetch_add(1, Ordering::Relaxed);
                if shared.measuring.load(Ordering::Relaxed) {
                    shared
                        .hist
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .saturating_record(ns);
                }
            }
            None => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // A connection that failed mid-run.
    if !*stop.borrow() {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `loadgen acks` (see the module docs); the exit code: 0, 2 when it stalled or not
/// every connection opened, 3 when none could.
pub(crate) async fn run(o: Opts) -> i32 {
    let Some((conns, open_count)) = open_counted(&o).await else {
        return 3;
    };
    if open_count < o.conns {
        eprintln!("only {open_count} of {} connections open", o.conns);
    }
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        hist: Mutex::new(new_hist()),
    });
    let permits = Arc::new(Semaphore::new(o.in_flight));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut askers = JoinSet::new();
    for conn in conns.into_iter().flatten() {
        askers.spawn(asker(
            conn,
            o.from,
            permits.clone(),
            shared.clone(),
            stop_rx.clone(),
        ));
    }
    println!(
        "acks: from={} conns={} in_flight={}, {} s",
        o.from, o.conns, o.in_flight, o.secs
    );

    let mut seconds = Seconds::new();
    let stalled = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let count = shared.done.load(Ordering::Relaxed);
        let line = |t, rate| format!("t={t:2} requests/s={rate:10.0}");
        if let Some(stall) = seconds.step(count, o.secs, &shared.measuring, "round trip", line) {
            break stall;
        }
    };
    shared.measuring.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while askers.join_next().await.is_some() {}
    })
    .await;
    askers.abort_all();

    let (mean, _, _) = seconds.summary();
    let errors = shared.errors.load(Ordering::Relaxed);
    println!(
        "SUMMARY acks from={} conns={} in_flight={} mean_requests/s={mean:.0} {} errors={errors} \
         open={open_count}",
        o.from,
        o.conns,
        o.in_flight,
        quantiles("rtt", &shared.hist),
    );
    if stalled || open_count < o.conns {
        2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_messages_are_told_apart() {
        assert_eq!(heard(br#"{"$req":7,"data":null}"#), Heard::Request(7));
        assert_eq!(heard(br#"{"took_ns":12345}"#), Heard::Took(12345));
        assert_eq!(heard(br#"{"$ack":3,"data":true}"#), Heard::Reply(3));
        assert_eq!(
            heard(br#"{"$ack":3,"error":{"code":"x","message":"y"}}"#),
            Heard::Failed
        );
        assert_eq!(heard(br#"{"error":"timed out"}"#), Heard::Failed);
        assert_eq!(heard(br#"{"$req":"7"}"#), Heard::Other);
        assert_eq!(heard(b"not json"), Heard::Other);
    }

    #[test]
    fn requests_are_whole_masked_text_frames() {
        let mut out = Vec::new();
        push_text(&mut out, b"ask");
        assert_eq!(out, [0x81, 0x80 | 3, 0, 0, 0, 0, b'a', b's', b'k']);
        assert_eq!(frame_at(&out), Some((0x81, 6, 3)));
        assert_eq!(frame_at(&out[..8]), None, "a frame still arriving");
    }

    #[test]
    fn who_asks_parses() {
        assert_eq!("server".parse::<Asker>(), Ok(Asker::Server));
        assert_eq!("client".parse::<Asker>(), Ok(Asker::Client));
        assert!("both".parse::<Asker>().is_err());
    }
}

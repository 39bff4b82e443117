//! The subscriber task every broker transport runs: it hands what the broker sends to local
//! delivery, keeps the rooms this instance has members in subscribed (interest-based
//! routing), and reconnects with [`Backoff`] when its connection is lost.
//!
//! A broker implements [`Subscription`]: what one message or change of its connection is
//! ([`Event`]), how rooms are subscribed and unsubscribed, and how a lost connection is made
//! again. Everything else is here, once: the order of a room's life (joins batched, a leave
//! waiting out [`LINGER`], a failed subscription tried again at the next sweep), the
//! counters, the logs, and the re-subscription of every room after a reconnection.
//!
//! | broker | its connection | a lost connection |
//! |---|---|---|
//! | Redis | one pub/sub connection, rooms in one `SUBSCRIBE` | [`Event::Lost`], then [`Subscription::reconnect`] and every room again |
//! | Redis Cluster | the cluster client's, one `SSUBSCRIBE` per room | the client reconnects a node and subscribes it again ([`Event::Interrupted`], [`Event::Resumed`]) |
//! | NATS | the client's, one subscription per room | the client reconnects and subscribes again (its events are counted where it is built) |

// With only some broker features enabled, parts of the shared code go unused.
#![cfg_attr(
    not(all(feature = "redis", feature = "nats")),
    allow(dead_code, unused_imports)
)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::{Backoff, Shutdown};
use super::counters::Counters;
use super::{Heard, Inbound};
use crate::error::BoxError;
use crate::wire::Envelope;

/// How long a room's subscription outlives its last local member; a join within it keeps
/// the subscription.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// A change of interest in a room's subject or channel, from `Transport::subscribe` and
/// `unsubscribe`.
#[derive(Debug)]
pub(crate) enum Interest {
    Add(String),
    Remove(String),
}

/// What a broker's subscription produced.
#[derive(Debug)]
pub(crate) enum Event<P> {
    /// A message in the [`wire`](crate::wire) envelope: on the fleet channel or a room's.
    Envelope(P),
    /// A message on the named channel `<prefix>:<rest>`, for a protocol's listener.
    Channel(String, P),
    /// The connection is gone: the task calls [`Subscription::reconnect`].
    Lost,
    /// The client lost one of its connections and makes it again itself.
    Interrupted,
    /// The client made a lost connection again and subscribed it to what it had.
    Resumed,
    /// Nothing for the task (a subscription's confirmation, for instance).
    Other,
}

/// Why a subscription change did not happen.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The connection is gone (the task reconnects, then subscribes every room again).
    Connection,
    /// These rooms were not subscribed; the task tries again at its next sweep.
    Rooms(Vec<String>),
}

/// What differs between brokers' subscriptions; the task around it is [`SubscriberTask`].
pub(crate) trait Subscription: Send + 'static {
    /// A message's bytes, as the broker's client hands them over.
    type Payload: AsRef<[u8]> + Send;

    /// The transport's name in logs.
    const NAME: &'static str;

    /// The next message or change of the connection.
    fn next(&mut self) -> impl Future<Output = Event<Self::Payload>> + Send;

    /// Subscribes the rooms' channels or subjects (never an empty list).
    fn subscribe(&mut self, rooms: Vec<String>) -> impl Future<Output = Result<(), Failed>> + Send;

    /// Unsubscribes the rooms' channels or subjects (never an empty list).
    fn unsubscribe(
        &mut self,
        rooms: Vec<String>,
    ) -> impl Future<Output = Result<(), Failed>> + Send;

    /// Connects again after [`Event::Lost`] (or a [`Failed::Connection`]), subscribed to the
    /// fleet's channels; the task then subscribes the rooms. Only a subscription that can be
    /// lost is asked; one whose client reconnects by itself keeps this default.
    fn reconnect(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Err("this client reconnects by itself".into()) }
    }
}

/// The rooms (their subjects or channels) an instance routing by interest wants, and those
/// whose last member left, waiting out their [`LINGER`].
#[derive(Debug, Default)]
struct Rooms {
    wanted: HashSet<String>,
    leaving: HashMap<String, Instant>,
    /// Wanted rooms whose subscription failed, tried again at the next sweep.
    retry: HashSet<String>,
}

impl Rooms {
    /// Applies a change; returns the subject or channel to subscribe to now, if any.
    fn apply(&mut self, change: Interest) -> Option<String> {
        match change {
            Interest::Add(channel) => {
                self.leaving.remove(&channel);
                self.wanted.insert(channel.clone()).then_some(channel)
            }
            Interest::Remove(channel) => {
                if self.wanted.contains(&channel) {
                    self.leaving.insert(channel, Instant::now() + LINGER);
                }
                None
            }
        }
    }

    /// The subjects or channels whose linger is over, no longer wanted.
    fn expired(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut out = Vec::new();
        self.leaving.retain(|channel, at| {
            if *at > now {
                return true;
            }
            out.push(channel.clone());
            false
        });
        for channel in &out {
            self.wanted.remove(channel);
            self.retry.remove(channel);
        }
        out
    }

    /// How many wanted rooms the broker confirmed.
    fn subscribed(&self) -> u64 {
        self.wanted.len().saturating_sub(self.retry.len()) as u64
    }
}

/// The task that receives for a transport: see the [module docs](self).
pub(crate) struct SubscriberTask<S> {
    pub(crate) subscription: S,
    pub(crate) pod_id: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) inbound: Inbound,
    /// Joins and leaves (interest-based routing only; never sent to otherwise).
    pub(crate) changes: mpsc::UnboundedReceiver<Interest>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl<S: Subscription> SubscriberTask<S> {
    /// Runs until shutdown.
    pub(crate) async fn run(mut self) {
        let mut rooms = Rooms::default();
        loop {
            if self.receive(&mut rooms).await.is_err() {
                return;
            }
            self.counters.subscriptions.store(0, Ordering::Relaxed);
            Counters::add(&self.counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = S::NAME, "subscriber lost its connection; reconnecting");
            if self.reconnect(&mut rooms).await.is_err() {
                return;
            }
        }
    }

    /// Receives and follows joins and leaves while the connection lasts. `Ok` when it is
    /// lost, `Err` on shutdown.
    async fn receive(&mut self, rooms: &mut Rooms) -> Result<(), Shutdown> {
        let mut sweep = tokio::time::interval(LINGER / 2);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let lost = tokio::select! {
                _ = self.shutdown.changed() => return Err(Shutdown),
                event = self.subscription.next() => match event {
                    Event::Envelope(payload) => {
                        self.envelope(payload.as_ref());
                        false
                    }
                    Event::Channel(channel, payload) => {
                        self.channel(&channel, payload.as_ref());
                        false
                    }
                    Event::Lost => true,
                    Event::Interrupted => {
                        Counters::add(&self.counters.errors, 1);
                        tracing::warn!(target: "asena::transport", transport = S::NAME, "lost a connection; the client reconnects and subscribes again");
                        false
                    }
                    Event::Resumed => {
                        Counters::add(&self.counters.reconnects, 1);
                        tracing::info!(target: "asena::transport", transport = S::NAME, "subscribed again after a reconnection");
                        false
                    }
                    Event::Other => false,
                },
                Some(change) = self.changes.recv() => {
                    let mut add: Vec<String> = rooms.apply(change).into_iter().collect();
                    while let Ok(change) = self.changes.try_recv() {
                        add.extend(rooms.apply(change));
                    }
                    self.subscribe(rooms, add).await
                }
                _ = sweep.tick() => {
                    let gone = rooms.expired();
                    let lost = !gone.is_empty()
                        && matches!(self.subscription.unsubscribe(gone).await, Err(Failed::Connection));
                    let again: Vec<String> = rooms.retry.drain().collect();
                    lost || self.subscribe(rooms, again).await
                }
            };
            if lost {
                return Ok(());
            }
        }
    }

    /// Subscribes `add` (if any) and counts the rooms subscribed; whether the connection was
    /// lost doing so.
    async fn subscribe(&mut self, rooms: &mut Rooms, add: Vec<String>) -> bool {
        let result = match add.is_empty() {
            true => Ok(()),
            false => self.subscription.subscribe(add).await,
        };
        match result {
            Ok(()) => {}
            Err(Failed::Connection) => return true,
            Err(Failed::Rooms(failed)) => {
                Counters::add(&self.counters.errors, failed.len() as u64);
                let first: String = failed[0].chars().take(64).collect();
                tracing::warn!(target: "asena::transport", transport = S::NAME, rooms = failed.len(), first, "room subscriptions failed; trying again");
                rooms
                    .retry
                    .extend(failed.into_iter().filter(|c| rooms.wanted.contains(c)));
            }
        }
        self.counters
            .subscriptions
            .store(rooms.subscribed(), Ordering::Relaxed);
        false
    }

    /// Connects again, waiting [`Backoff`] delays between attempts (following joins and
    /// leaves meanwhile), and subscribes every room. `Err` on shutdown.
    async fn reconnect(&mut self, rooms: &mut Rooms) -> Result<(), Shutdown> {
        let mut backoff = Backoff::new();
        loop {
            let changes = futures_util::stream::poll_fn(|cx| self.changes.poll_recv(cx));
            let follow = |change| {
                rooms.apply(change);
                Ok(())
            };
            backoff.wait(&mut self.shutdown, changes, follow).await?;
            if let Err(error) = self.subscription.reconnect().await {
                Counters::add(&self.counters.errors, 1);
                tracing::warn!(target: "asena::transport", transport = S::NAME, %error, "subscriber reconnect failed");
                continue;
            }
            Counters::add(&self.counters.reconnects, 1);
            tracing::info!(target: "asena::transport", transport = S::NAME, "subscriber reconnected");
            rooms.retry.clear();
            let every: Vec<String> = rooms.wanted.iter().cloned().collect();
            if !self.subscribe(rooms, every).await {
                return Ok(());
            }
            backoff.reset();
        }
    }

    /// Delivers one message in the wire envelope, dropping this instance's own.
    fn envelope(&self, raw: &[u8]) {
        match Envelope::decode(raw) {
            Ok(msg) if msg.origin == self.pod_id => {}
            Ok(msg) => {
                Counters::add(&self.counters.received, 1);
                let delivering = crate::trace::delivering(msg.trace, &msg.topic, &self.pod_id);
                let recipients = self.inbound.deliver(&msg.topic, &msg.payload, msg.binary);
                delivering.done(recipients, &msg.topic, Some(&self.counters.traces));
            }
            Err(error) => {
                Counters::add(&self.counters.errors, 1);
                tracing::warn!(target: "asena::transport", transport = S::NAME, %error, "dropping message from broker");
            }
        }
    }

    /// Hands a message on a named channel to its listener, and counts what it made of it; a
    /// refusal is logged for the first ten errors and then once in a thousand.
    fn channel(&self, channel: &str, payload: &[u8]) {
        let heard = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.inbound.deliver_channel(channel, payload)
        }));
        let why = match heard {
            Ok(Heard::Delivered) => {
                Counters::add(&self.counters.received, 1);
                return;
            }
            Ok(Heard::Own) => return,
            Ok(Heard::Refused(why)) => why,
            Err(_) => "its listener panicked".to_owned(),
        };
        let errors = self.counters.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let channel: String = channel.chars().take(64).collect();
        if errors <= 10 || errors.is_multiple_of(1000) {
            tracing::warn!(target: "asena::transport", transport = S::NAME, channel, error = %why, errors, "dropping a message");
        } else {
            tracing::debug!(target: "asena::transport", transport = S::NAME, channel, error = %why, "dropping a message");
        }
    }
}

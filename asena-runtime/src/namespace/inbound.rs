//! Messages from other instances: the app's namespaces as the transport's local delivery.

use std::sync::Arc;

use super::Namespace;
use crate::codec::Frame;
use crate::transport::Deliver;
use crate::wire::{self, Target};

/// Every namespace of an app, as a transport delivers to them.
#[derive(Debug)]
pub(crate) struct Namespaces(pub(crate) Arc<[Namespace]>);

impl Deliver for Namespaces {
    fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize {
        let frame = if binary {
            Frame::binary(payload)
        } else {
            match std::str::from_utf8(payload) {
                Ok(text) => Frame::text(text),
                Err(_) => {
                    tracing::warn!(target: "asena::transport", topic, "dropping remote text message that is not UTF-8");
                    return 0;
                }
            }
        };
        // The longest matching namespace prefix wins (`/a` and `/a.b` may both exist).
        let mut best: Option<(&Namespace, Target<'_>)> = None;
        for ns in self.0.iter() {
            if let Some(target) = wire::target(topic, ns.topic())
                && best.is_none_or(|(b, _)| b.topic().len() < ns.topic().len())
            {
                best = Some((ns, target));
            }
        }
        let Some((ns, target)) = best else {
            return 0;
        };
        let n = match target {
            Target::Room(room) => ns.deliver_room(room, &frame, None),
            Target::Broadcast => ns.deliver_all(&frame, None),
        };
        ns.stats().record_deliveries(n);
        n
    }

    fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|n| n.path()).collect()
    }
}

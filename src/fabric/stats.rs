//! Per-link-end counters. Every packet the fabric does not deliver is counted under exactly
//! one reason at exactly one link end, so a test can tell "lost on the link" from "nobody
//! owns that address" from "too big", and nothing is ever dropped silently.

use std::fmt;

use super::spec::IfaceId;

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The link's loss impairment (independent or burst).
    Loss,
    /// The rate-limit queue was full (tail drop).
    QueueOverflow,
    /// Larger than the MTU of the interface it was to be sent from or delivered to, or a
    /// router could not forward it (DF set, or too small an MTU to fragment).
    Mtu,
    /// No route: no gateway on the segment, no matching route in a router, or IPv6 where
    /// the fabric has no path for it.
    NoRoute,
    /// The destination (or next hop) lies in the segment's subnet but no interface has it.
    NoHost,
    /// TTL expired in a router.
    Ttl,
    /// Not a well-formed IPv4 or IPv6 packet (or a bad IPv4 header checksum at a router).
    Malformed,
    /// The I/O shell could not write it into the TUN device.
    Io,
    /// A NAT node refused it (no mapping, filtered, ports exhausted, down).
    Nat,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Loss => "loss",
            DropReason::QueueOverflow => "queue-overflow",
            DropReason::Mtu => "mtu",
            DropReason::NoRoute => "no-route",
            DropReason::NoHost => "no-host",
            DropReason::Ttl => "ttl",
            DropReason::Malformed => "malformed",
            DropReason::Io => "io",
            DropReason::Nat => "nat",
        })
    }
}

/// Drop counters, one per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    pub loss: u64,
    pub queue_overflow: u64,
    pub mtu: u64,
    pub no_route: u64,
    pub no_host: u64,
    pub ttl: u64,
    pub malformed: u64,
    pub io: u64,
    pub nat: u64,
}

impl Drops {
    /// The counter for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Loss => self.loss,
            DropReason::QueueOverflow => self.queue_overflow,
            DropReason::Mtu => self.mtu,
            DropReason::NoRoute => self.no_route,
            DropReason::NoHost => self.no_host,
            DropReason::Ttl => self.ttl,
            DropReason::Malformed => self.malformed,
            DropReason::Io => self.io,
            DropReason::Nat => self.nat,
        }
    }

    /// Adds one drop for `reason` (wrapping never happens in practice; saturating anyway).
    pub fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Loss => &mut self.loss,
            DropReason::QueueOverflow => &mut self.queue_overflow,
            DropReason::Mtu => &mut self.mtu,
            DropReason::NoRoute => &mut self.no_route,
            DropReason::NoHost => &mut self.no_host,
            DropReason::Ttl => &mut self.ttl,
            DropReason::Malformed => &mut self.malformed,
            DropReason::Io => &mut self.io,
            DropReason::Nat => &mut self.nat,
        };
        *c = c.saturating_add(1);
    }

    /// All drops together.
    pub fn total(&self) -> u64 {
        self.loss
            + self.queue_overflow
            + self.mtu
            + self.no_route
            + self.no_host
            + self.ttl
            + self.malformed
            + self.io
            + self.nat
    }
}

/// Counters of one link end, from the node's point of view.
///
/// `sent_*` counts what the node handed to the link (its `Out` captures), `delivered_*` what
/// the link handed to the node (its `In` captures). A drop is counted where it happened:
/// egress loss and routing failures at the sender's end, ingress loss and an MTU too small
/// for the packet at the receiver's end, TTL expiry at the router's incoming end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    /// Extra copies made by the duplication impairment (in either direction of this link).
    pub duplicated: u64,
    pub dropped: Drops,
}

/// One link end's counters with its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatsEntry {
    pub id: IfaceId,
    /// `node/iface`.
    pub name: String,
    pub stats: LinkStats,
}

/// A snapshot of every link end's counters, in node and interface order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub links: Vec<LinkStatsEntry>,
}

impl Stats {
    /// The counters of the link end named `node/iface`.
    pub fn link(&self, name: &str) -> Option<&LinkStats> {
        self.links.iter().find(|l| l.name == name).map(|l| &l.stats)
    }

    /// The counters of one interface.
    pub fn get(&self, id: IfaceId) -> Option<&LinkStats> {
        self.links.iter().find(|l| l.id == id).map(|l| &l.stats)
    }

    /// Drops for `reason` summed over all link ends.
    pub fn total_dropped(&self, reason: DropReason) -> u64 {
        self.links.iter().map(|l| l.stats.dropped.get(reason)).sum()
    }
}

//! The fabric's own description of a network: segments, nodes, interfaces and impairments.
//!
//! These types are deliberately separate from the TOML model in [`crate::topology`]: the
//! model is about what a user writes (names, defaults, file positions for errors), this is
//! about what the fabric needs to move packets (indices, resolved addresses). The lab
//! converts one into the other, so either can change without dragging the other along.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A whole fabric: every segment and every node with its interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct FabricSpec {
    /// Seeds every random decision (loss, jitter, duplication, reordering), so a run with the
    /// same seed and the same input makes the same decisions.
    pub seed: u64,
    /// The IPv4 subnets; interfaces name them by index.
    pub segments: Vec<SegmentSpec>,
    /// Hosts (namespaces, reached through TUN uplinks) and fabric nodes (routers, NATs).
    pub nodes: Vec<NodeSpec>,
}

/// One layer-3 segment: an IPv4 subnet on which interfaces reach each other directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    /// For errors and logs only.
    pub name: String,
    /// Network address and prefix length; host bits are ignored.
    pub subnet: (Ipv4Addr, u8),
    /// The native IPv6 subnet of a dual-stack segment: IPv6 inside it goes to the interface
    /// owning the destination, anything else to the sender's `gateway6`.
    pub subnet6: Option<(Ipv6Addr, u8)>,
}

/// What a node is, which decides who handles the packets its interfaces receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A network namespace: its interfaces are TUN devices the I/O shell owns, so what they
    /// receive is handed out by [`super::Fabric::poll_delivery`] and what they send comes in
    /// through [`super::Fabric::ingress`].
    External,
    /// A router inside the fabric: longest-prefix match over its connected subnets and these
    /// static routes (prefix, next hop; the next hop must lie on a connected segment).
    Router { routes: Vec<((Ipv4Addr, u8), Ipv4Addr)> },
}

/// A node and its interfaces (in order: [`IfaceId::iface`] indexes this list).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Unique among nodes; the first half of every link name (`peer-a/eth0`).
    pub name: String,
    pub kind: NodeKind,
    pub interfaces: Vec<IfaceSpec>,
}

/// One interface: where it attaches, its address, and the impairments of its link.
#[derive(Debug, Clone, PartialEq)]
pub struct IfaceSpec {
    /// Unique within the node; the second half of the link name.
    pub name: String,
    /// Index into [`FabricSpec::segments`].
    pub segment: usize,
    /// Must lie inside the segment's subnet and be unique on it.
    pub address: Ipv4Addr,
    /// Where packets for destinations outside the segment go; must be another interface's
    /// address on the same segment.
    pub gateway: Option<Ipv4Addr>,
    /// Larger packets are not carried to or from this interface (68..=65535).
    pub mtu: u32,
    /// Applied to what this interface sends, before the segment.
    pub egress: Impairment,
    /// Applied to what this interface receives, after the segment.
    pub ingress: Impairment,
    /// Further addresses this interface owns on its segment (a NAT's external address
    /// pool): the segment delivers packets for them here too.
    pub aliases: Vec<Ipv4Addr>,
    /// Its native IPv6 address, inside the segment's `subnet6`.
    pub address6: Option<Ipv6Addr>,
    /// Where IPv6 for destinations outside `subnet6` goes: another interface's `address6`.
    pub gateway6: Option<Ipv6Addr>,
}

/// How one direction of a link mistreats packets. [`Impairment::default`] is a perfect link.
///
/// Stages run in this order: loss, duplication, rate limit (serialisation and a tail-drop
/// queue), delay with jitter, reordering.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Each packet's delay is uniform in `delay ± jitter` (never below zero). Unless
    /// `reorder` is above zero, a packet is never scheduled before the one sent ahead of it,
    /// so jitter alone does not reorder (like a real FIFO link, unlike netem's default).
    pub jitter: Duration,
    /// Probability (0..=1) that a packet is lost.
    pub loss: f64,
    /// Mean length of a loss burst. At or below 1 losses are independent; above 1 a
    /// Gilbert-Elliott chain gives bursts of this mean length at the long-run rate `loss`
    /// (when `loss` is too high for the burst length the burst length wins).
    pub loss_burst: f64,
    /// Probability (0..=1) that a packet is sent twice; the copy goes through the rate limit
    /// and delay on its own.
    pub duplicate: f64,
    /// Probability (0..=1) that a packet is held back by an extra
    /// `max(delay + jitter, 10 ms)` so that later packets overtake it. Above zero, jitter
    /// may reorder too.
    pub reorder: f64,
    /// Link speed in bits per second: each packet occupies the link for `8 * len / rate`
    /// and waits in a FIFO queue while it is busy. `None`: infinitely fast.
    pub rate_bps: Option<u64>,
    /// Most packets the rate-limit queue holds (including the one being sent); more are
    /// tail-dropped. 0 means [`DEFAULT_QUEUE_LIMIT`]. Unused without `rate_bps`.
    pub queue_limit: u32,
    /// How long a reordered packet is held back; `None`: `max(delay + jitter, 10 ms)`.
    pub reorder_gap: Option<Duration>,
}

/// The queue limit used when [`Impairment::queue_limit`] is 0: Linux's default
/// `txqueuelen`, so an unconfigured rate-limited link queues like a real interface.
pub const DEFAULT_QUEUE_LIMIT: u32 = 1000;

/// Longest delay or jitter accepted: an hour is far beyond any useful test, and the bound
/// keeps every `Instant + Duration` far from overflowing.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

impl Impairment {
    /// True if this direction does nothing to packets, so they pass without any scheduling.
    pub fn is_none(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss <= 0.0
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
            && self.rate_bps.is_none()
    }

    /// Checks the values are usable (probabilities in 0..=1, finite numbers, delays up to
    /// [`MAX_DELAY`], no zero rate); the message says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability between 0 and 1, not {p}"));
            }
        }
        if !self.loss_burst.is_finite() || self.loss_burst < 0.0 {
            return Err(format!(
                "loss_burst must be a finite mean burst length of at least 0, not {}",
                self.loss_burst
            ));
        }
        if self.delay > MAX_DELAY || self.jitter > MAX_DELAY {
            return Err(format!("delay and jitter must be at most {MAX_DELAY:?}"));
        }
        if self.rate_bps == Some(0) {
            return Err("rate_bps must be above 0 (use None for no rate limit)".into());
        }
        Ok(())
    }
}

/// An interface by position: node index in [`FabricSpec::nodes`], interface index in that
/// node's [`NodeSpec::interfaces`]. Small and `Copy`, so the shell can tag every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceId {
    pub node: usize,
    pub iface: usize,
}

impl IfaceId {
    pub const fn new(node: usize, iface: usize) -> IfaceId {
        IfaceId { node, iface }
    }
}

impl fmt::Display for IfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}/#{}", self.node, self.iface)
    }
}

/// A link end by name, `node/iface`: how captures, stats and users refer to a link.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkEnd {
    pub node: String,
    pub iface: String,
}

impl fmt::Display for LinkEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.iface)
    }
}

/// A direction relative to a node's interface: what the node sends, or what it receives.
/// Names both the two halves of a link (egress = `Out`, ingress = `In`) and capture records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The node sent it (recorded at send time, before the link's impairments).
    Out,
    /// The node received it (recorded at delivery time, after the link's impairments).
    In,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Out => "egress",
            Direction::In => "ingress",
        })
    }
}

//! The fabric: the userspace network that carries IP packets between the lab's namespaces.
//!
//! The kernels the lab runs on may have neither netem nor NFQUEUE, so every impairment lives
//! here, in userspace, where it is also deterministic and testable without privileges.
//!
//! Two layers, as everywhere in this project:
//!
//! - [`Fabric`], a **sans-IO core**: packets in ([`Fabric::ingress`]), packets out
//!   ([`Fabric::poll_delivery`]), an injected clock (`now: Instant` on every call) and a
//!   [`Fabric::poll_timeout`] saying when to call again. Given the same [`FabricSpec::seed`]
//!   and the same calls it makes the same decisions, so a 300 s scenario with loss bursts is
//!   a unit test that runs in milliseconds.
//! - [`FabricRunner`], the **I/O shell**: one thread with an epoll loop over the TUN devices
//!   of the External interfaces, a timerfd for [`Fabric::poll_timeout`], and an eventfd for
//!   control from a [`FabricHandle`].
//!
//! # The model
//!
//! Everything is layer 3. A *segment* is an IPv4 subnet. Every interface of a node attaches
//! to one segment through a *link* with two independently impaired directions: *egress*
//! ([`Direction::Out`], what the node sends) and *ingress* ([`Direction::In`], what it
//! receives). A packet from `a/eth0` to `b/eth0` goes through `a/eth0`'s egress, then the
//! segment's forwarding decision, then `b/eth0`'s ingress.
//!
//! A TUN gives a packet but no next hop, so the segment decides: a destination inside the
//! subnet goes to the interface that owns it (none: dropped as [`DropReason::NoHost`]),
//! anything else to the sender's gateway (none: [`DropReason::NoRoute`]). Fabric nodes such
//! as [`Router`] name their next hop explicitly. On a dual-stack segment
//! ([`SegmentSpec::subnet6`]) IPv6 is resolved the same way, by `address6` owner on-link and
//! `gateway6` off-link (multicast has no owner); elsewhere IPv6 goes to the other External
//! interface on a segment with exactly two, otherwise to the gateway. Fabric routers do not
//! route IPv6.
//!
//! The shell can also hand what it records to live [`Tap`]s (bounded rings of packet
//! heads), for steps that react to packets while a scenario runs.
//!
//! *Nodes* are External (namespaces: their interfaces are TUN devices owned by the shell) or
//! fabric nodes implementing [`Node`] (routers now, NATs later): they receive packets on one
//! interface and send on any.
//!
//! Every interface is a capture point: it records what its node sends (at send time, before
//! egress impairments) and receives (at delivery time, after ingress impairments), so a
//! router or NAT is seen on both sides.
//!
//! # Fragmentation
//!
//! A router fragments a DF-clear IPv4 packet that exceeds the outgoing interface's MTU (as
//! Linux does), and answers a DF-set one with ICMP "fragmentation needed" carrying that MTU.
//! 6bed4 sends its UDP without DF, so fragments are exactly what a real path would show.
//! A packet larger than the MTU of the interface that would receive it is dropped
//! ([`DropReason::Mtu`]): a mismatched MTU on a segment is a black hole, as on a real LAN.

mod core;
mod link;
mod nat_node;
mod node;
pub mod packet;
mod runner;
mod spec;
mod stats;
mod tap;

#[cfg(test)]
mod shell_tests;
#[cfg(test)]
mod tests;

pub use self::core::{CaptureEvent, Delivery, Fabric};
pub use self::link::REORDER_MIN_EXTRA;
pub use self::nat_node::{NatEventSink, NatNode};
pub use self::node::{in_subnet, mask, Node, NodeControl, NodeIface, NodeSend, Outbox, Router};
pub use self::runner::{CaptureSink, FabricHandle, FabricRunner, Stopped};
pub use self::spec::{
    Direction, FabricSpec, IfaceId, IfaceSpec, Impairment, LinkEnd, NodeKind, NodeSpec, SegmentSpec,
    DEFAULT_QUEUE_LIMIT, MAX_DELAY,
};
pub use self::stats::{DropReason, Drops, LinkStats, LinkStatsEntry, Stats};
pub use self::tap::{Tap, TapPacket, TapSpec};

/// Why a fabric could not be built or changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FabricError {
    /// The spec is inconsistent; the message names the segment, node or interface.
    #[error("fabric spec: {0}")]
    Spec(String),
    /// No such interface.
    #[error("no interface {0} in the fabric")]
    UnknownIface(IfaceId),
    /// An impairment has an unusable value.
    #[error("{direction} impairment of {link}: {reason}")]
    Impairment {
        link: String,
        direction: Direction,
        reason: String,
    },
}

//! What the NAT tells its caller: verdicts, drop reasons, counters and the decision log.
//!
//! The log exists so that a reader can line up a capture with the NAT's decisions: every
//! event carries the time (nanoseconds since [`crate::nat::Nat::epoch`]) and the endpoints
//! involved, and serialises to one JSON object per line.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::Serialize;

/// What to do with a packet after [`crate::nat::Nat::outbound`] or
/// [`crate::nat::Nat::inbound`]. Translation happens in place; the packet keeps its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Translated: send it on (outbound: out of the outside interface; inbound: into the
    /// inside towards its new destination).
    Forward,
    /// Outbound packet to one of the NAT's own external endpoints, translated in both
    /// addresses: deliver it back into the inside.
    Hairpin,
    /// Not forwarded; counted in [`Stats::drops`].
    Drop(DropReason),
}

/// Why a packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Inbound (or hairpinned, or an ICMP error) for an external endpoint with no live mapping.
    NoMapping,
    /// A mapping exists, but its filtering behaviour does not admit this remote.
    Filtered,
    /// No external port is free for a new mapping (counted as a refused mapping).
    PortsExhausted,
    /// Not a well-formed IPv4 packet with a complete transport header, or a bad IPv4 header
    /// checksum.
    Malformed,
    /// A non-first fragment, or a first fragment without the full transport header: without
    /// ports it cannot be translated (there is no reassembly).
    Fragment,
    /// Hairpinning is switched off.
    HairpinOff,
    /// An ICMP error, and ICMP error translation is switched off.
    IcmpErrorsOff,
    /// A protocol or ICMP type that has no translation (e.g. GRE, an inbound echo request,
    /// an ICMP error about an ICMP error).
    NotTranslatable,
    /// Outbound packet whose source lies outside `inside_net`.
    SourceNotInside,
    /// Inbound packet not addressed to one of the external addresses.
    NotExternalAddress,
    /// The NAT is down ([`crate::nat::Nat::set_up`]).
    Down,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 11] = [
        DropReason::NoMapping,
        DropReason::Filtered,
        DropReason::PortsExhausted,
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::HairpinOff,
        DropReason::IcmpErrorsOff,
        DropReason::NotTranslatable,
        DropReason::SourceNotInside,
        DropReason::NotExternalAddress,
        DropReason::Down,
    ];
}

/// Which way a packet crossed the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Inside to outside (including the first half of a hairpin).
    Outbound,
    /// Outside to inside (including the second half of a hairpin).
    Inbound,
}

/// The translated protocols. ICMP means query (echo) mappings keyed by identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// UDP (RFC 4787).
    Udp,
    /// TCP (RFC 5382).
    Tcp,
    /// ICMP echo (RFC 5508); "ports" are echo identifiers.
    Icmp,
}

impl Proto {
    pub(crate) fn number(self) -> u8 {
        match self {
            Proto::Icmp => 1,
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub(crate) fn from_number(n: u8) -> Option<Proto> {
        match n {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Proto::Udp => 0,
            Proto::Tcp => 1,
            Proto::Icmp => 2,
        }
    }
}

/// A packet's addresses as the NAT saw them before translating (ICMP: ports are identifiers,
/// 0 for the side that has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Protocol, or `None` for a protocol the NAT does not translate.
    pub proto: Option<Proto>,
    /// IP protocol number.
    pub ip_proto: u8,
    /// Source endpoint.
    pub src: SocketAddrV4,
    /// Destination endpoint.
    pub dst: SocketAddrV4,
}

/// Why many mappings went away at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushCause {
    /// [`crate::nat::Nat::flush`].
    Flush,
    /// [`crate::nat::Nat::set_external_addresses`].
    Rebind,
    /// [`crate::nat::Nat::set_up`]`(false)`.
    Down,
}

/// One decision of the NAT, at a virtual time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NatEvent {
    /// Nanoseconds since [`crate::nat::Nat::epoch`].
    pub t_ns: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: NatEventKind,
}

impl NatEvent {
    /// The event as one line of JSON (without the newline), e.g.
    /// `{"t_ns":0,"event":"mapping_created","proto":"udp",...}`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"error\":{:?}}}", e.to_string()))
    }
}

/// The kinds of [`NatEvent`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NatEventKind {
    /// A new mapping, made for a packet from `inside` to `remote`.
    MappingCreated {
        /// Protocol.
        proto: Proto,
        /// Inside endpoint.
        inside: SocketAddrV4,
        /// External endpoint allocated.
        external: SocketAddrV4,
        /// The remote endpoint of the packet that created it.
        remote: SocketAddrV4,
    },
    /// A mapping's lifetime restarted. Rate-limited: logged for the first refresh after
    /// creation and then at most once per quarter lifetime; `refreshes` counts them all.
    MappingRefreshed {
        /// Protocol.
        proto: Proto,
        /// Inside endpoint.
        inside: SocketAddrV4,
        /// External endpoint.
        external: SocketAddrV4,
        /// Direction of the refreshing packet.
        direction: Direction,
        /// Refreshes since the mapping was created, including this one.
        refreshes: u32,
    },
    /// A mapping reached its lifetime; `t_ns` is the exact expiry time, which may be earlier
    /// than the moment the engine noticed.
    MappingExpired {
        /// Protocol.
        proto: Proto,
        /// Inside endpoint.
        inside: SocketAddrV4,
        /// External endpoint (now free again).
        external: SocketAddrV4,
    },
    /// No mapping could be made for a packet.
    MappingRefused {
        /// Protocol.
        proto: Proto,
        /// Inside endpoint.
        inside: SocketAddrV4,
        /// Where the packet was going.
        remote: SocketAddrV4,
        /// Why (currently always `ports_exhausted`).
        reason: DropReason,
    },
    /// A packet was dropped (only with `Config::log_drops`).
    PacketDropped {
        /// Which interface it arrived on.
        direction: Direction,
        /// Why.
        reason: DropReason,
        /// Its endpoints, when it parsed far enough.
        #[serde(skip_serializing_if = "Option::is_none")]
        flow: Option<Flow>,
    },
    /// All mappings were removed at once.
    MappingsFlushed {
        /// How many.
        count: usize,
        /// Why.
        cause: FlushCause,
    },
    /// New external addresses are in use.
    ExternalAddressesChanged {
        /// The new pool.
        addresses: Vec<Ipv4Addr>,
    },
    /// The NAT went up or down.
    AdminState {
        /// `true` when up.
        up: bool,
    },
    /// The UDP lifetime changed; existing mappings now expire that long after their last
    /// refresh.
    UdpTimeoutChanged {
        /// New lifetime in nanoseconds.
        timeout_ns: u64,
    },
}

/// Counters of packets dropped, per [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    /// [`DropReason::NoMapping`].
    pub no_mapping: u64,
    /// [`DropReason::Filtered`].
    pub filtered: u64,
    /// [`DropReason::PortsExhausted`].
    pub ports_exhausted: u64,
    /// [`DropReason::Malformed`].
    pub malformed: u64,
    /// [`DropReason::Fragment`].
    pub fragment: u64,
    /// [`DropReason::HairpinOff`].
    pub hairpin_off: u64,
    /// [`DropReason::IcmpErrorsOff`].
    pub icmp_errors_off: u64,
    /// [`DropReason::NotTranslatable`].
    pub not_translatable: u64,
    /// [`DropReason::SourceNotInside`].
    pub source_not_inside: u64,
    /// [`DropReason::NotExternalAddress`].
    pub not_external_address: u64,
    /// [`DropReason::Down`].
    pub down: u64,
}

impl DropCounts {
    /// The counter for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::NoMapping => self.no_mapping,
            DropReason::Filtered => self.filtered,
            DropReason::PortsExhausted => self.ports_exhausted,
            DropReason::Malformed => self.malformed,
            DropReason::Fragment => self.fragment,
            DropReason::HairpinOff => self.hairpin_off,
            DropReason::IcmpErrorsOff => self.icmp_errors_off,
            DropReason::NotTranslatable => self.not_translatable,
            DropReason::SourceNotInside => self.source_not_inside,
            DropReason::NotExternalAddress => self.not_external_address,
            DropReason::Down => self.down,
        }
    }

    pub(crate) fn bump(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::NoMapping => &mut self.no_mapping,
            DropReason::Filtered => &mut self.filtered,
            DropReason::PortsExhausted => &mut self.ports_exhausted,
            DropReason::Malformed => &mut self.malformed,
            DropReason::Fragment => &mut self.fragment,
            DropReason::HairpinOff => &mut self.hairpin_off,
            DropReason::IcmpErrorsOff => &mut self.icmp_errors_off,
            DropReason::NotTranslatable => &mut self.not_translatable,
            DropReason::SourceNotInside => &mut self.source_not_inside,
            DropReason::NotExternalAddress => &mut self.not_external_address,
            DropReason::Down => &mut self.down,
        };
        *c = c.saturating_add(1);
    }

    /// All drops together.
    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.get(r)).sum()
    }
}

/// Cumulative counters of a [`crate::nat::Nat`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Packets translated inside → outside.
    pub outbound: u64,
    /// Packets translated outside → inside (ICMP errors included).
    pub inbound: u64,
    /// Packets hairpinned.
    pub hairpinned: u64,
    /// ICMP errors translated (in either direction; also counted in `outbound`/`inbound`).
    pub icmp_errors: u64,
    /// Mappings created.
    pub mappings_created: u64,
    /// Mappings that reached their lifetime.
    pub mappings_expired: u64,
    /// Mappings refused (ports exhausted).
    pub mappings_refused: u64,
    /// Mappings removed by flush, rebinding or going down.
    pub mappings_flushed: u64,
    /// Mapping refreshes (every one, logged or not).
    pub refreshes: u64,
    /// Events not recorded because `max_pending_events` were waiting.
    pub events_lost: u64,
    /// Dropped packets per reason.
    pub drops: DropCounts,
}

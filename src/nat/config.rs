//! NAT configuration: the RFC 4787 / RFC 5382 knobs and the named presets on top of them.
//!
//! Every knob is a plain field so that a topology file can name a preset and override any
//! single behaviour (`preset = "symmetric"`, `hairpinning = false`). Durations are written as
//! seconds (integer or fractional) in serde formats, because that is how NAT timeouts are
//! quoted everywhere (sysctls, RFCs, vendor manuals).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the NAT chooses whether two outbound flows from one inside endpoint share an external
/// endpoint (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingBehavior {
    /// EIM: one mapping per inside endpoint, whatever the remote (REQ-1). Cone NATs.
    EndpointIndependent,
    /// ADM: one mapping per inside endpoint and remote address.
    AddressDependent,
    /// APDM: one mapping per inside endpoint and remote address and port. Symmetric NATs.
    AddressAndPortDependent,
}

/// Which remote endpoints may send in through an existing mapping (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilteringBehavior {
    /// EIF: anyone who knows the external endpoint.
    EndpointIndependent,
    /// ADF: only remote addresses the inside endpoint has sent to through this mapping.
    AddressDependent,
    /// APDF: only remote address-and-port pairs the inside endpoint has sent to.
    AddressAndPortDependent,
}

/// How an external port (or ICMP query identifier) is chosen for a new mapping
/// (RFC 4787 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortAllocation {
    /// Keep the inside port when it is free on the chosen external address; otherwise take
    /// the next free port upwards from it (wrapping inside `port_range`).
    Preserve,
    /// The next free port after the one handed out last (per protocol).
    Sequential,
    /// A uniformly random free port, from a ChaCha RNG seeded with [`Config::seed`] so that
    /// runs are reproducible.
    Random,
}

/// How an external address is picked from a pool (RFC 4787 §4.1, REQ-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// "Paired": every mapping of one inside host uses the same external address. The host is
    /// refused (rather than moved to another address) when that address runs out of ports.
    Paired,
    /// "Arbitrary": each new mapping takes the next address in turn.
    RoundRobin,
}

/// Which traffic restarts a UDP or ICMP mapping's lifetime (RFC 4787 §4.3, REQ-6).
/// TCP mappings are refreshed by both directions regardless (RFC 5382 tracks the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshDirection {
    /// Only packets from the inside (REQ-6 "MUST").
    Outbound,
    /// Packets from the inside and admitted packets from the outside (REQ-6 "MAY").
    Both,
}

/// Everything the NAT engine needs; see the field docs for what each knob models.
///
/// `Default` is a port-restricted cone NAT (EIM + APDF, port preservation, hairpinning on,
/// 120 s UDP lifetime refreshed by outbound traffic) on `192.168.1.0/24` behind
/// `203.0.113.1`, which is what most home routers are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Mapping behaviour (RFC 4787 §4.1).
    pub mapping: MappingBehavior,
    /// Filtering behaviour (RFC 4787 §5).
    pub filtering: FilteringBehavior,
    /// Port allocation (RFC 4787 §4.2.1).
    pub port_allocation: PortAllocation,
    /// Keep the parity (odd/even) of the inside port, RFC 4787 §4.2.2; applies to UDP and
    /// TCP ports, not to ICMP identifiers.
    pub parity: bool,
    /// Inclusive range of external ports (and ICMP identifiers) handed out. Port 0 is never
    /// valid. A tiny range is how port exhaustion is tested.
    pub port_range: (u16, u16),
    /// The NAT's own address on the inside segment (the hosts' gateway). The engine does not
    /// translate to or from it; the fabric uses it for packets addressed to the node.
    pub inside_addr: Ipv4Addr,
    /// The inside subnet: only packets whose source lies in it are translated outbound.
    pub inside_net: (Ipv4Addr, u8),
    /// The NAT's own address on the outside segment; the external address when
    /// `external_addrs` is empty.
    pub outside_addr: Ipv4Addr,
    /// A pool of external addresses; empty means `[outside_addr]`. The fabric must deliver
    /// packets for every one of them to this node's outside interface.
    pub external_addrs: Vec<Ipv4Addr>,
    /// How a pool address is chosen (REQ-2).
    pub pooling: Pooling,
    /// Hairpinning (RFC 4787 §6): inside hosts reach each other through external endpoints.
    pub hairpinning: bool,
    /// UDP mapping lifetime after the last refresh (REQ-5: at least 120 s by default).
    #[serde(with = "secs")]
    pub udp_timeout: Duration,
    /// Which direction refreshes UDP and ICMP mappings.
    pub refresh: RefreshDirection,
    /// Idle timeout of an established TCP connection (RFC 5382 REQ-5: at least 2 h 4 min).
    #[serde(with = "secs")]
    pub tcp_established_timeout: Duration,
    /// Idle timeout of a TCP mapping that is opening or closing (RFC 5382: 4 min).
    #[serde(with = "secs")]
    pub tcp_transitory_timeout: Duration,
    /// Translate ICMP errors (destination unreachable, time exceeded, parameter problem)
    /// for existing mappings, in both directions (RFC 4787 REQ-14, RFC 5508); when off they
    /// are dropped and counted as [`crate::nat::DropReason::IcmpErrorsOff`]. Echo is
    /// translated either way.
    pub icmp_errors: bool,
    /// Lifetime of an ICMP query (echo) mapping (RFC 5508 REQ-1: at least 60 s).
    #[serde(with = "secs")]
    pub icmp_timeout: Duration,
    /// Seed of the RNG behind random port allocation (and the hash seed), so that a lab run
    /// can be replayed exactly.
    pub seed: u64,
    /// Record a [`crate::nat::NatEvent`] for every dropped packet, not only count it.
    pub log_drops: bool,
    /// At most this many events wait for [`crate::nat::Nat::take_events`]; further events
    /// are counted in `Stats::events_lost` instead of growing memory without bound.
    pub max_pending_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mapping: MappingBehavior::EndpointIndependent,
            filtering: FilteringBehavior::AddressAndPortDependent,
            port_allocation: PortAllocation::Preserve,
            parity: false,
            port_range: (1024, 65535),
            inside_addr: Ipv4Addr::new(192, 168, 1, 1),
            inside_net: (Ipv4Addr::new(192, 168, 1, 0), 24),
            outside_addr: Ipv4Addr::new(203, 0, 113, 1),
            external_addrs: Vec::new(),
            pooling: Pooling::Paired,
            hairpinning: true,
            udp_timeout: Duration::from_secs(120),
            refresh: RefreshDirection::Outbound,
            tcp_established_timeout: Duration::from_secs(7440),
            tcp_transitory_timeout: Duration::from_secs(240),
            icmp_errors: true,
            icmp_timeout: Duration::from_secs(60),
            seed: 0x6bed4,
            log_drops: true,
            max_pending_events: 65536,
        }
    }
}

/// Why a [`Config`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The port range is empty, reversed or contains port 0.
    #[error("port_range {0}..={1} is empty or contains port 0")]
    BadPortRange(u16, u16),
    /// The inside prefix length is above 32.
    #[error("inside_net prefix length /{0} is longer than 32")]
    BadPrefix(u8),
    /// No external address: `external_addrs` is empty and `outside_addr` is unspecified.
    #[error("no external address: external_addrs is empty and outside_addr is 0.0.0.0")]
    NoExternalAddress,
    /// An external address is unusable (unspecified, broadcast, multicast) or listed twice.
    #[error("external address {0} is unusable or listed twice")]
    BadExternalAddress(Ipv4Addr),
    /// An external address lies in the inside subnet, which would make hairpin detection
    /// and outbound filtering ambiguous.
    #[error("external address {0} lies inside inside_net")]
    ExternalInsideNet(Ipv4Addr),
    /// More external addresses than the engine indexes (65535).
    #[error("too many external addresses ({0})")]
    PoolTooLarge(usize),
}

impl Config {
    /// Full cone: EIM + EIF, port preservation.
    pub fn full_cone() -> Self {
        Config {
            mapping: MappingBehavior::EndpointIndependent,
            filtering: FilteringBehavior::EndpointIndependent,
            ..Config::default()
        }
    }

    /// Restricted cone: EIM + ADF, port preservation.
    pub fn restricted_cone() -> Self {
        Config {
            mapping: MappingBehavior::EndpointIndependent,
            filtering: FilteringBehavior::AddressDependent,
            ..Config::default()
        }
    }

    /// Port-restricted cone: EIM + APDF, port preservation (the default).
    pub fn port_restricted_cone() -> Self {
        Config::default()
    }

    /// Symmetric: APDM + APDF with random ports, like carrier-grade NATs and Linux
    /// `masquerade fully-random`.
    pub fn symmetric() -> Self {
        Config {
            mapping: MappingBehavior::AddressAndPortDependent,
            filtering: FilteringBehavior::AddressAndPortDependent,
            port_allocation: PortAllocation::Random,
            ..Config::default()
        }
    }

    /// The external address pool in effect (`external_addrs`, or `outside_addr` alone).
    pub fn pool(&self) -> Vec<Ipv4Addr> {
        if self.external_addrs.is_empty() {
            vec![self.outside_addr]
        } else {
            self.external_addrs.clone()
        }
    }

    /// Whether `addr` lies in `inside_net`.
    pub fn is_inside(&self, addr: Ipv4Addr) -> bool {
        let (net, len) = self.inside_net;
        let mask = prefix_mask(len);
        u32::from(addr) & mask == u32::from(net) & mask
    }

    /// Checks everything [`crate::nat::Nat::new`] relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (lo, hi) = self.port_range;
        if lo == 0 || lo > hi {
            return Err(ConfigError::BadPortRange(lo, hi));
        }
        if self.inside_net.1 > 32 {
            return Err(ConfigError::BadPrefix(self.inside_net.1));
        }
        validate_pool(self, &self.pool())
    }
}

/// Checks a pool of external addresses against the rest of the configuration.
pub(crate) fn validate_pool(cfg: &Config, pool: &[Ipv4Addr]) -> Result<(), ConfigError> {
    if pool.is_empty() || (pool.len() == 1 && pool[0].is_unspecified()) {
        return Err(ConfigError::NoExternalAddress);
    }
    if pool.len() > usize::from(u16::MAX) {
        return Err(ConfigError::PoolTooLarge(pool.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for &a in pool {
        if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || !seen.insert(a) {
            return Err(ConfigError::BadExternalAddress(a));
        }
        if cfg.is_inside(a) && cfg.inside_net.1 > 0 {
            return Err(ConfigError::ExternalInsideNet(a));
        }
    }
    Ok(())
}

/// The netmask of a prefix length (lengths above 32 act as 32).
pub(crate) fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - u32::from(l)),
    }
}

/// The common NAT names, each meaning exactly one mapping/filtering pair (see `nat.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// EIM + EIF.
    FullCone,
    /// EIM + ADF.
    RestrictedCone,
    /// EIM + APDF.
    PortRestrictedCone,
    /// APDM + APDF, random ports.
    Symmetric,
}

impl Preset {
    /// Every preset, for tests and CLI help.
    pub const ALL: [Preset; 4] = [
        Preset::FullCone,
        Preset::RestrictedCone,
        Preset::PortRestrictedCone,
        Preset::Symmetric,
    ];

    /// The name used in topology files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::FullCone => "full-cone",
            Preset::RestrictedCone => "restricted-cone",
            Preset::PortRestrictedCone => "port-restricted-cone",
            Preset::Symmetric => "symmetric",
        }
    }

    /// The configuration this preset stands for.
    pub fn config(self) -> Config {
        match self {
            Preset::FullCone => Config::full_cone(),
            Preset::RestrictedCone => Config::restricted_cone(),
            Preset::PortRestrictedCone => Config::port_restricted_cone(),
            Preset::Symmetric => Config::symmetric(),
        }
    }
}

impl From<Preset> for Config {
    fn from(p: Preset) -> Config {
        p.config()
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown preset name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown NAT preset {0:?} (expected full-cone, restricted-cone, port-restricted-cone or symmetric)")]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPreset(s.to_string()))
    }
}

/// Serde for durations as seconds (integer or fractional), the unit NAT timeouts are quoted in.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

//! NAT descriptions: RFC 4787 / RFC 5382 behaviour knobs, named presets on top of them, and
//! the two kernel NAT kinds (see `shared/spec/nat.md`).
//!
//! A userspace NAT is described by *overrides* ([`NatKnobs`], every knob optional) on top of a
//! preset (or of [`NatBehaviour::default`]); [`NatSpec::effective_knobs`] resolves them. The
//! overrides, not the resolved values, are what the model stores, so that a topology file
//! reads back exactly as it was written.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

use super::values::PortRange;

/// How a NAT maps an inside endpoint to an outside one (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// Endpoint-independent: one external endpoint per inside endpoint, whatever the peer.
    Eim,
    /// Address-dependent: a new external endpoint per remote address.
    Adm,
    /// Address-and-port-dependent: a new external endpoint per remote address and port.
    Apdm,
}

/// Which inbound packets a mapping lets through (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filtering {
    /// Endpoint-independent: anyone may send to a mapping.
    Eif,
    /// Address-dependent: only addresses the inside endpoint has sent to.
    Adf,
    /// Address-and-port-dependent: only address:port pairs the inside endpoint has sent to.
    Apdf,
}

/// How external ports are chosen (RFC 4787 §4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortAllocation {
    /// Keep the inside port when it is free, otherwise fall back to another one.
    Preserve,
    /// The next free port after the last one allocated.
    Sequential,
    /// A random free port (from the topology's seed).
    Random,
}

/// Which traffic refreshes a mapping's lifetime (RFC 4787 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refresh {
    /// Only packets from the inside (REQ-6's minimum).
    Outbound,
    /// Packets in both directions.
    Both,
}

/// What happens to ICMP errors that belong to a mapping (RFC 4787 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IcmpPolicy {
    /// Translate and forward them (REQ-14).
    Translate,
    /// Drop them.
    Drop,
}

/// `as_str` (the TOML spelling) and `Display` for the knob enums.
macro_rules! knob_names {
    ($($ty:ident { $($variant:ident => $name:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The value's spelling in topology files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

knob_names! {
    Mapping { Eim => "eim", Adm => "adm", Apdm => "apdm" }
    Filtering { Eif => "eif", Adf => "adf", Apdf => "apdf" }
    PortAllocation { Preserve => "preserve", Sequential => "sequential", Random => "random" }
    Refresh { Outbound => "outbound", Both => "both" }
    IcmpPolicy { Translate => "translate", Drop => "drop" }
}

/// The common names for NAT behaviour, as `shared/spec/nat.md` defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatPreset {
    /// EIM, EIF.
    FullCone,
    /// EIM, ADF.
    RestrictedCone,
    /// EIM, APDF: most home routers.
    PortRestrictedCone,
    /// APDM, APDF, random ports: enterprise and carrier-grade NATs.
    Symmetric,
}

impl NatPreset {
    /// Every preset, in the order of the spec's table.
    pub const ALL: [NatPreset; 4] = [
        NatPreset::FullCone,
        NatPreset::RestrictedCone,
        NatPreset::PortRestrictedCone,
        NatPreset::Symmetric,
    ];

    /// The name used in topology files (`type = "..."`).
    pub fn as_str(self) -> &'static str {
        match self {
            NatPreset::FullCone => "full-cone",
            NatPreset::RestrictedCone => "restricted-cone",
            NatPreset::PortRestrictedCone => "port-restricted-cone",
            NatPreset::Symmetric => "symmetric",
        }
    }

    /// The behaviour the preset names; knobs the name says nothing about keep
    /// [`NatBehaviour::default`]'s values.
    pub fn behaviour(self) -> NatBehaviour {
        let base = NatBehaviour::default();
        match self {
            NatPreset::FullCone => NatBehaviour {
                mapping: Mapping::Eim,
                filtering: Filtering::Eif,
                ..base
            },
            NatPreset::RestrictedCone => NatBehaviour {
                mapping: Mapping::Eim,
                filtering: Filtering::Adf,
                ..base
            },
            NatPreset::PortRestrictedCone => NatBehaviour {
                mapping: Mapping::Eim,
                filtering: Filtering::Apdf,
                ..base
            },
            // A symmetric NAT that preserved ports would hand the first destination the inside
            // port and so look port-preserving to a naive probe; real ones (and Linux's
            // fully-random masquerade) pick ports at random.
            NatPreset::Symmetric => NatBehaviour {
                mapping: Mapping::Apdm,
                filtering: Filtering::Apdf,
                port_allocation: PortAllocation::Random,
                ..base
            },
        }
    }
}

impl fmt::Display for NatPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which engine performs the translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// The lab's sans-IO NAT engine inside the fabric: every knob applies. `preset: None`
    /// (`type = "userspace"`) starts from [`NatBehaviour::default`].
    Userspace {
        /// The preset the knobs override, if any.
        preset: Option<NatPreset>,
    },
    /// Linux `masquerade` (nftables) in a namespace of its own: port-preserving, in practice
    /// a port-restricted cone. Only `udp_timeout` applies (as a conntrack sysctl).
    LinuxMasquerade,
    /// Linux `masquerade fully-random`: a new random port per destination, i.e. symmetric.
    /// Only `udp_timeout` applies.
    LinuxMasqueradeRandom,
}

impl NatKind {
    /// The `type = "..."` name in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::Userspace { preset: Some(p) } => p.as_str(),
            NatKind::Userspace { preset: None } => "userspace",
            NatKind::LinuxMasquerade => "linux-masquerade",
            NatKind::LinuxMasqueradeRandom => "linux-masquerade-random",
        }
    }

    /// Whether the kernel does the translation (the NAT is a namespace, not a fabric node).
    pub fn is_linux(self) -> bool {
        matches!(self, NatKind::LinuxMasquerade | NatKind::LinuxMasqueradeRandom)
    }
}

impl Default for NatKind {
    fn default() -> Self {
        NatKind::Userspace { preset: None }
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type` key of `[router.nat]`: presets and kinds in one namespace of names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NatType {
    FullCone,
    RestrictedCone,
    PortRestrictedCone,
    Symmetric,
    Userspace,
    LinuxMasquerade,
    LinuxMasqueradeRandom,
}

impl From<NatType> for NatKind {
    fn from(t: NatType) -> Self {
        let preset = |p| NatKind::Userspace { preset: Some(p) };
        match t {
            NatType::FullCone => preset(NatPreset::FullCone),
            NatType::RestrictedCone => preset(NatPreset::RestrictedCone),
            NatType::PortRestrictedCone => preset(NatPreset::PortRestrictedCone),
            NatType::Symmetric => preset(NatPreset::Symmetric),
            NatType::Userspace => NatKind::Userspace { preset: None },
            NatType::LinuxMasquerade => NatKind::LinuxMasquerade,
            NatType::LinuxMasqueradeRandom => NatKind::LinuxMasqueradeRandom,
        }
    }
}

/// Explicit knobs of a NAT: each one set here overrides the preset's value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NatKnobs {
    /// Mapping behaviour.
    pub mapping: Option<Mapping>,
    /// Filtering behaviour.
    pub filtering: Option<Filtering>,
    /// Port allocation.
    pub port_allocation: Option<PortAllocation>,
    /// Keep the parity (odd/even) of the inside port (RFC 4787 §4.2.3).
    pub port_parity: Option<bool>,
    /// External address pool. Each address is owned by the outside interface on its segment.
    /// Unset: the outside interface's own address.
    pub external_addresses: Option<Vec<Ipv4Addr>>,
    /// With a pool: the same inside host always gets the same external address (REQ-2).
    pub pairing: Option<bool>,
    /// Inside hosts reach each other through their external address:port (§6).
    pub hairpinning: Option<bool>,
    /// Idle lifetime of a UDP mapping; for Linux NATs, `nf_conntrack_udp_timeout`.
    pub udp_timeout: Option<Duration>,
    /// Idle lifetime of an established TCP mapping (RFC 5382 REQ-5).
    pub tcp_established_timeout: Option<Duration>,
    /// Lifetime of a TCP mapping while opening or closing (RFC 5382 REQ-5).
    pub tcp_transitory_timeout: Option<Duration>,
    /// Which direction refreshes a mapping.
    pub refresh: Option<Refresh>,
    /// External ports the NAT allocates from.
    pub port_range: Option<PortRange>,
    /// ICMP errors for a mapping.
    pub icmp: Option<IcmpPolicy>,
    /// Linux NATs only: drop new connections arriving on the outside interface (forward and
    /// input), as home routers do. Default on; without it a peer's probe reaching the NAT's
    /// own stack leaves a conntrack entry that makes masquerade pick a new port for the
    /// next mapping toward that peer (symmetric behaviour for hole punching).
    pub firewall: Option<bool>,
}

impl NatKnobs {
    /// The TOML names of the knobs that are set, in declaration order (used to tell a Linux
    /// NAT which knobs it cannot honour, and by `to_toml`).
    pub fn set_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        let mut push = |set: bool, name| {
            if set {
                names.push(name)
            }
        };
        push(self.mapping.is_some(), "mapping");
        push(self.filtering.is_some(), "filtering");
        push(self.port_allocation.is_some(), "port_allocation");
        push(self.port_parity.is_some(), "port_parity");
        push(self.external_addresses.is_some(), "external_addresses");
        push(self.pairing.is_some(), "pairing");
        push(self.hairpinning.is_some(), "hairpinning");
        push(self.udp_timeout.is_some(), "udp_timeout");
        push(self.tcp_established_timeout.is_some(), "tcp_established_timeout");
        push(self.tcp_transitory_timeout.is_some(), "tcp_transitory_timeout");
        push(self.refresh.is_some(), "refresh");
        push(self.port_range.is_some(), "port_range");
        push(self.icmp.is_some(), "icmp");
        push(self.firewall.is_some(), "firewall");
        names
    }

    /// `base` with every knob that is set here replacing its value.
    pub fn apply(&self, base: NatBehaviour) -> NatBehaviour {
        NatBehaviour {
            mapping: self.mapping.unwrap_or(base.mapping),
            filtering: self.filtering.unwrap_or(base.filtering),
            port_allocation: self.port_allocation.unwrap_or(base.port_allocation),
            port_parity: self.port_parity.unwrap_or(base.port_parity),
            external_addresses: self.external_addresses.clone().unwrap_or(base.external_addresses),
            pairing: self.pairing.unwrap_or(base.pairing),
            hairpinning: self.hairpinning.unwrap_or(base.hairpinning),
            udp_timeout: self.udp_timeout.unwrap_or(base.udp_timeout),
            tcp_established_timeout: self
                .tcp_established_timeout
                .unwrap_or(base.tcp_established_timeout),
            tcp_transitory_timeout: self.tcp_transitory_timeout.unwrap_or(base.tcp_transitory_timeout),
            refresh: self.refresh.unwrap_or(base.refresh),
            port_range: self.port_range.unwrap_or(base.port_range),
            icmp: self.icmp.unwrap_or(base.icmp),
        }
    }
}

/// A userspace NAT's complete behaviour, every knob resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct NatBehaviour {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Port allocation.
    pub port_allocation: PortAllocation,
    /// Preserve port parity.
    pub port_parity: bool,
    /// The external pool; empty means the outside interface's own address (see
    /// [`super::Router::external_addresses`] for the resolved list).
    pub external_addresses: Vec<Ipv4Addr>,
    /// Paired pool allocation.
    pub pairing: bool,
    /// Hairpinning.
    pub hairpinning: bool,
    /// UDP mapping lifetime.
    pub udp_timeout: Duration,
    /// Established TCP mapping lifetime.
    pub tcp_established_timeout: Duration,
    /// Transitory TCP mapping lifetime.
    pub tcp_transitory_timeout: Duration,
    /// What refreshes a mapping.
    pub refresh: Refresh,
    /// External port range.
    pub port_range: PortRange,
    /// ICMP error handling.
    pub icmp: IcmpPolicy,
}

impl Default for NatBehaviour {
    /// A port-restricted cone that follows RFC 4787's requirements and recommendations:
    /// port preservation, paired pools, no hairpinning (the common home router; turn it on
    /// per NAT), a 5-minute UDP lifetime (REQ-5 recommends >= 5 min), RFC 5382's TCP timers
    /// (2 h 4 min established, 4 min transitory), refresh by outbound traffic, ICMP translated.
    fn default() -> Self {
        Self {
            mapping: Mapping::Eim,
            filtering: Filtering::Apdf,
            port_allocation: PortAllocation::Preserve,
            port_parity: false,
            external_addresses: Vec::new(),
            pairing: true,
            hairpinning: false,
            udp_timeout: Duration::from_secs(300),
            tcp_established_timeout: Duration::from_secs(7440),
            tcp_transitory_timeout: Duration::from_secs(240),
            refresh: Refresh::Outbound,
            port_range: PortRange::default(),
            icmp: IcmpPolicy::Translate,
        }
    }
}

/// A router's NAT: which interface faces outside, which engine, and the explicit knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct NatSpec {
    /// Name of the router's outside interface; everything else is inside.
    pub outside: String,
    /// The engine (and preset).
    pub kind: NatKind,
    /// Explicit knobs overriding the preset.
    pub knobs: NatKnobs,
}

impl NatSpec {
    /// A NAT of `kind` with its outside on `outside` and no explicit knobs.
    pub fn new(outside: impl Into<String>, kind: NatKind) -> Self {
        Self {
            outside: outside.into(),
            kind,
            knobs: NatKnobs::default(),
        }
    }

    /// A userspace NAT with a preset.
    pub fn preset(outside: impl Into<String>, preset: NatPreset) -> Self {
        Self::new(outside, NatKind::Userspace { preset: Some(preset) })
    }

    /// Replaces the explicit knobs.
    pub fn knobs(mut self, knobs: NatKnobs) -> Self {
        self.knobs = knobs;
        self
    }

    /// The resolved behaviour of a userspace NAT: its preset (or the default) with the
    /// explicit knobs applied. `None` for Linux NATs, whose behaviour is the kernel's.
    pub fn effective_knobs(&self) -> Option<NatBehaviour> {
        match self.kind {
            NatKind::Userspace { preset } => Some(
                self.knobs
                    .apply(preset.map(NatPreset::behaviour).unwrap_or_default()),
            ),
            NatKind::LinuxMasquerade | NatKind::LinuxMasqueradeRandom => None,
        }
    }
}

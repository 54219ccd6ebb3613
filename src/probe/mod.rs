//! `bedlab nat-probe`: what a NAT really does, found by probing it (RFC 5780 style), not by
//! reading its configuration (`shared/spec/nat.md`: "every preset must be proved by probing").
//!
//! The probe copies the topology, adds two client hosts on the NAT's inside segment and two
//! server hosts on its outside segment ([`plan()`]), builds the lab and runs small agents
//! inside those namespaces: `bedlab probe-agent server` on each server (two ports each) and
//! `bedlab probe-agent client ...` on the clients ([`agent`]), exchanging the UDP messages of
//! [`wire`]. From what the clients observe it classifies ([`run::probe`]):
//!
//! - **mapping** (RFC 4787 §4.1): the external endpoint one socket gets toward S1:P1, S1:P2,
//!   S2:P1 and S2:P2: all equal = EIM, equal per server address = ADM, all different = APDM;
//! - **filtering** (§5): after a socket sent only to S1:P1, can S1:P2, S2:P1 and S2:P2 reach
//!   it? all = EIF, only S1:P2 = ADF, none = APDF (each with its own fresh socket, and a
//!   reply from S1:P1 in the same exchange proving the request got through);
//! - **port allocation** (§4.2): the external port of several fresh sockets: the inside port
//!   kept = preserve, small steps = sequential, otherwise random (and whether parity is kept);
//! - **hairpinning** (§6): client 2 sends to client 1's external endpoint after client 1 sent
//!   to client 2's (so that any filtering lets it in); decidable only when the mapping is
//!   endpoint-independent or the filtering is (otherwise the hole punch itself cannot work);
//! - **mapping lifetime** (§4.3): fresh mappings, each asked to be answered after a different
//!   idle time; the boundary between answered and unanswered is narrowed round after round
//!   (parallel trials per round, so the total time stays near twice the lifetime).
//!
//! The classification functions here are pure and unit-tested; the agents and the
//! orchestration need root and a kernel.

pub mod agent;
mod plan;
mod run;
pub mod wire;

#[cfg(test)]
mod tests;

pub use plan::{plan, ProbePlan};
pub use run::{parse_duration_arg, probe, ProbeError, ProbeOptions};

use crate::topology::{self, NatKind, NatSpec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddrV4;
use wire::Answer;

/// The mapping behaviour a probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingClass {
    /// Endpoint-independent.
    Eim,
    /// Address-dependent.
    Adm,
    /// Address-and-port-dependent.
    Apdm,
    /// None of the three (a mapping changed under the probe, or a pool without pairing).
    Inconsistent,
}

/// The filtering behaviour a probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilteringClass {
    /// Endpoint-independent.
    Eif,
    /// Address-dependent.
    Adf,
    /// Address-and-port-dependent.
    Apdf,
    /// None of the three (say S2 got through but not S1:P2).
    Inconsistent,
}

/// How external ports were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortClass {
    /// The inside port, every time.
    Preserve,
    /// Each new port a small step after the previous one.
    Sequential,
    /// Neither.
    Random,
}

/// Whether the NAT hairpins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HairpinClass {
    /// An inside client reached another through its external endpoint.
    Yes,
    /// It did not, though the NAT's filtering would have let it in.
    No,
    /// Undecidable: with address-dependent mapping and filtering the hole punch that would
    /// open the filter cannot target the mapping the hairpinned packet uses.
    Unknown,
}

macro_rules! names {
    ($($ty:ident { $($v:ident => $s:literal),+ })+) => {$(
        impl $ty {
            /// The lowercase name used in reports.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s,)+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

names! {
    MappingClass { Eim => "EIM", Adm => "ADM", Apdm => "APDM", Inconsistent => "inconsistent" }
    FilteringClass { Eif => "EIF", Adf => "ADF", Apdf => "APDF", Inconsistent => "inconsistent" }
    PortClass { Preserve => "preserve", Sequential => "sequential", Random => "random" }
    HairpinClass { Yes => "yes", No => "no", Unknown => "unknown" }
}

impl From<topology::Mapping> for MappingClass {
    fn from(m: topology::Mapping) -> Self {
        match m {
            topology::Mapping::Eim => MappingClass::Eim,
            topology::Mapping::Adm => MappingClass::Adm,
            topology::Mapping::Apdm => MappingClass::Apdm,
        }
    }
}

impl From<topology::Filtering> for FilteringClass {
    fn from(f: topology::Filtering) -> Self {
        match f {
            topology::Filtering::Eif => FilteringClass::Eif,
            topology::Filtering::Adf => FilteringClass::Adf,
            topology::Filtering::Apdf => FilteringClass::Apdf,
        }
    }
}

impl From<topology::PortAllocation> for PortClass {
    fn from(p: topology::PortAllocation) -> Self {
        match p {
            topology::PortAllocation::Preserve => PortClass::Preserve,
            topology::PortAllocation::Sequential => PortClass::Sequential,
            topology::PortAllocation::Random => PortClass::Random,
        }
    }
}

// ----- what the client agents observe (their JSON output) --------------------------------

/// The external endpoint seen by one server endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSample {
    /// The server endpoint the socket sent to.
    pub server: SocketAddrV4,
    /// The source it saw.
    pub mapped: SocketAddrV4,
}

/// Whether one changed reply reached a socket that had sent only to S1:P1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSample {
    /// Where the reply was asked to come from.
    pub answer: Answer,
    /// Whether it arrived.
    pub received: bool,
    /// Its source, when it arrived.
    pub source: Option<SocketAddrV4>,
}

/// The external endpoint of one fresh socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSample {
    /// The socket's (inside) port.
    pub local: u16,
    /// Its external endpoint.
    pub mapped: SocketAddrV4,
}

/// What `probe-agent client basic` prints: mapping, filtering and port samples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicObservation {
    /// The inside port of the mapping test's socket.
    pub local_port: u16,
    /// Toward S1:P1, S1:P2, S2:P1, S2:P2, in that order.
    pub mapping: Vec<MappingSample>,
    /// Replies from S1:P2, S2:P1, S2:P2 (each to its own fresh socket).
    pub filtering: Vec<FilterSample>,
    /// Fresh sockets, in creation order.
    pub ports: Vec<PortSample>,
}

/// What `probe-agent client hairpin` prints, for either role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HairpinObservation {
    /// This client's external endpoint (as S1:P1 saw it).
    pub mapped: SocketAddrV4,
    /// The other client's.
    pub peer_mapped: Option<SocketAddrV4>,
    /// Role a: a `Hairpin` from the other client arrived; role b: its `HairpinAck` did.
    pub received: bool,
    /// The source of what arrived (the other client's external endpoint if the NAT
    /// translates hairpinned sources, as RFC 4787 REQ-9 requires).
    pub source: Option<SocketAddrV4>,
    /// Role b: the other client's hole punch arrived (hairpinned, and let in).
    pub punch_received: bool,
}

/// One lifetime trial: a fresh mapping answered after `delay_ms` of silence, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeTrial {
    /// Idle time before the server's answer.
    pub delay_ms: u64,
    /// Whether the answer got in.
    pub alive: bool,
}

/// What `probe-agent client lifetime` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeObservation {
    /// The longest idle time tried.
    pub max_ms: u64,
    /// Every trial, in order.
    pub trials: Vec<LifetimeTrial>,
}

// ----- classification -------------------------------------------------------------------

/// Mapping behaviour from the samples toward S1:P1, S1:P2, S2:P1, S2:P2 (in that order).
pub fn classify_mapping(samples: &[MappingSample]) -> MappingClass {
    let [a, b, c, d] = match samples {
        [a, b, c, d] => [a.mapped, b.mapped, c.mapped, d.mapped],
        _ => return MappingClass::Inconsistent,
    };
    let all = [a, b, c, d];
    let distinct = (0..4).all(|i| (i + 1..4).all(|j| all[i] != all[j]));
    if a == b && b == c && c == d {
        MappingClass::Eim
    } else if a == b && c == d {
        MappingClass::Adm
    } else if distinct {
        MappingClass::Apdm
    } else {
        MappingClass::Inconsistent
    }
}

/// Filtering behaviour from which changed replies arrived.
pub fn classify_filtering(samples: &[FilterSample]) -> FilteringClass {
    let got = |a: Answer| samples.iter().find(|s| s.answer == a).map(|s| s.received);
    match (
        got(Answer::OtherPort),
        got(Answer::OtherAddress),
        got(Answer::OtherBoth),
    ) {
        (Some(true), Some(true), Some(true)) => FilteringClass::Eif,
        (Some(true), Some(false), Some(false)) => FilteringClass::Adf,
        (Some(false), Some(false), Some(false)) => FilteringClass::Apdf,
        _ => FilteringClass::Inconsistent,
    }
}

/// Largest step between consecutive external ports still called sequential (room for
/// parity preservation and the odd port another host took meanwhile).
pub const SEQUENTIAL_MAX_STEP: u16 = 8;

/// Port allocation from fresh sockets' samples, and whether parity was kept.
pub fn classify_ports(samples: &[PortSample]) -> (PortClass, bool) {
    let parity = samples.iter().all(|s| s.local % 2 == s.mapped.port() % 2);
    if samples.iter().all(|s| s.local == s.mapped.port()) {
        return (PortClass::Preserve, parity);
    }
    let sequential = samples.len() >= 3
        && samples.windows(2).all(|w| {
            let step = w[1].mapped.port().wrapping_sub(w[0].mapped.port());
            (1..=SEQUENTIAL_MAX_STEP).contains(&step)
        });
    if sequential {
        (PortClass::Sequential, parity)
    } else {
        (PortClass::Random, parity)
    }
}

/// Hairpinning from both clients' observations, given the measured mapping and filtering.
pub fn classify_hairpin(
    a: &HairpinObservation,
    b: &HairpinObservation,
    mapping: MappingClass,
    filtering: FilteringClass,
) -> HairpinClass {
    if a.received || b.punch_received {
        HairpinClass::Yes
    } else if mapping == MappingClass::Eim || filtering == FilteringClass::Eif {
        HairpinClass::No
    } else {
        HairpinClass::Unknown
    }
}

/// The bracket around the lifetime: the longest answered idle time below the shortest
/// unanswered one, and that shortest unanswered one (milliseconds); plus whether some
/// answered trial was longer than an unanswered one (loss, or a lifetime that moves).
pub fn lifetime_bracket(trials: &[LifetimeTrial]) -> (Option<u64>, Option<u64>, bool) {
    let upper = trials.iter().filter(|t| !t.alive).map(|t| t.delay_ms).min();
    let lower = trials
        .iter()
        .filter(|t| t.alive && upper.is_none_or(|u| t.delay_ms < u))
        .map(|t| t.delay_ms)
        .max();
    let inconsistent = trials
        .iter()
        .any(|t| t.alive && upper.is_some_and(|u| t.delay_ms >= u));
    (lower, upper, inconsistent)
}

/// The RFC 3489 name of a mapping/filtering pair, where there is one.
pub fn nat_type(mapping: MappingClass, filtering: FilteringClass) -> Option<&'static str> {
    use FilteringClass as F;
    use MappingClass as M;
    match (mapping, filtering) {
        (M::Eim, F::Eif) => Some("full-cone"),
        (M::Eim, F::Adf) => Some("restricted-cone"),
        (M::Eim, F::Apdf) => Some("port-restricted-cone"),
        (M::Adm | M::Apdm, F::Apdf) => Some("symmetric"),
        _ => None,
    }
}

// ----- the report -----------------------------------------------------------------------

/// What a topology says about a NAT.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claimed {
    /// `type` in the topology file.
    pub kind: String,
    /// Mapping behaviour (the kernel's, for Linux NATs).
    pub mapping: MappingClass,
    /// Filtering behaviour.
    pub filtering: FilteringClass,
    /// Port allocation.
    pub port_allocation: PortClass,
    /// Hairpinning.
    pub hairpinning: bool,
    /// UDP mapping lifetime in seconds; `None` for a Linux NAT left at the kernel's default.
    pub udp_timeout_s: Option<f64>,
}

/// What the topology claims for `nat`: a userspace NAT's resolved knobs, or what the kernel
/// does for the Linux kinds (`masquerade`: EIM, APDF with the stateful firewall of a
/// conntrack NAT, inside port kept; `fully-random`: a random port per destination; neither
/// hairpins without DNAT rules).
pub fn claimed(nat: &NatSpec) -> Claimed {
    let timeout = nat.knobs.udp_timeout.map(|d| d.as_secs_f64());
    match (nat.kind, nat.effective_knobs()) {
        (NatKind::Userspace { .. }, Some(k)) => Claimed {
            kind: nat.kind.to_string(),
            mapping: k.mapping.into(),
            filtering: k.filtering.into(),
            port_allocation: k.port_allocation.into(),
            hairpinning: k.hairpinning,
            udp_timeout_s: Some(k.udp_timeout.as_secs_f64()),
        },
        (kind, _) => {
            let random = kind == NatKind::LinuxMasqueradeRandom;
            Claimed {
                kind: kind.to_string(),
                mapping: if random {
                    MappingClass::Apdm
                } else {
                    MappingClass::Eim
                },
                filtering: FilteringClass::Apdf,
                port_allocation: if random {
                    PortClass::Random
                } else {
                    PortClass::Preserve
                },
                hairpinning: false,
                udp_timeout_s: timeout,
            }
        }
    }
}

/// The mapping result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MappingResult {
    /// The classification.
    pub behaviour: MappingClass,
    /// The inside port of the socket used.
    pub local_port: u16,
    /// External endpoint per server endpoint.
    pub samples: Vec<MappingSample>,
}

/// The filtering result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilteringResult {
    /// The classification.
    pub behaviour: FilteringClass,
    /// Which changed replies got in.
    pub samples: Vec<FilterSample>,
}

/// The port allocation result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortResult {
    /// The classification.
    pub allocation: PortClass,
    /// Whether every external port had its inside port's parity.
    pub parity_preserved: bool,
    /// The samples.
    pub samples: Vec<PortSample>,
}

/// The hairpinning result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HairpinResult {
    /// The classification.
    pub behaviour: HairpinClass,
    /// The source client 1 saw on a hairpinned packet: client 2's external endpoint when
    /// the NAT translates it (REQ-9), its inside address otherwise.
    pub source: Option<SocketAddrV4>,
    /// Whether `source` is client 2's external endpoint.
    pub external_source: Option<bool>,
}

/// The lifetime result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifetimeResult {
    /// Longest idle time after which a mapping still let the answer in (seconds).
    pub alive_s: Option<f64>,
    /// Shortest idle time after which it did not (seconds).
    pub expired_s: Option<f64>,
    /// Midpoint of the two, when both are known.
    pub estimate_s: Option<f64>,
    /// Longest idle time tried (seconds); all alive means "longer than this".
    pub max_s: f64,
    /// Some answer came after a longer idle time than a missing one.
    pub inconsistent: bool,
    /// Every trial.
    pub trials: Vec<LifetimeTrial>,
}

impl LifetimeResult {
    /// The result of a set of trials.
    pub fn from_observation(o: &LifetimeObservation) -> LifetimeResult {
        let (lower, upper, inconsistent) = lifetime_bracket(&o.trials);
        let s = |ms: u64| ms as f64 / 1000.0;
        let alive_s = lower.map(s).or(upper.map(|_| 0.0));
        let expired_s = upper.map(s);
        LifetimeResult {
            alive_s,
            expired_s,
            estimate_s: match (alive_s, expired_s) {
                (Some(a), Some(e)) => Some((a + e) / 2.0),
                _ => None,
            },
            max_s: s(o.max_ms),
            inconsistent,
            trials: o.trials.clone(),
        }
    }

    /// For the table: `4.98 s (4.95-5.01)`, `> 40 s`.
    pub fn summary(&self) -> String {
        match (self.alive_s, self.expired_s) {
            (Some(a), Some(e)) => format!("{:.2} s ({a:.2}-{e:.2})", (a + e) / 2.0),
            (Some(_), None) => format!("> {} s", self.max_s),
            (None, Some(e)) => format!("< {e:.2} s"),
            (None, None) => "not measured".into(),
        }
    }
}

/// A finished probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeReport {
    /// Topology name.
    pub topology: String,
    /// The NAT node probed.
    pub nat: String,
    /// The lab run that carried the probe.
    pub run_id: String,
    /// Client 1 (and 2), inside.
    pub clients: [std::net::Ipv4Addr; 2],
    /// S1 and S2, outside.
    pub servers: [std::net::Ipv4Addr; 2],
    /// The two ports each server listens on.
    pub ports: [u16; 2],
    /// What the topology says.
    pub claimed: Claimed,
    /// Mapping behaviour.
    pub mapping: MappingResult,
    /// Filtering behaviour.
    pub filtering: FilteringResult,
    /// Port allocation.
    pub port_allocation: PortResult,
    /// Hairpinning.
    pub hairpinning: HairpinResult,
    /// Mapping lifetime; `None` when not measured (`--lifetime-max 0`).
    pub lifetime: Option<LifetimeResult>,
    /// The RFC 3489 name of what was measured, where there is one.
    pub nat_type: Option<String>,
    /// Where the measurement contradicts the topology (empty: it agrees).
    pub mismatches: Vec<String>,
}

/// Tolerance of a lifetime comparison: half a second or 5 %, plus the probe's bracket.
pub fn lifetime_tolerance(claimed_s: f64, bracket_s: f64) -> f64 {
    0.5f64.max(claimed_s * 0.05) + bracket_s
}

impl ProbeReport {
    /// Fills `mismatches` and `nat_type` from the measured and claimed values.
    pub fn conclude(&mut self) {
        let c = &self.claimed;
        let mut m = Vec::new();
        if self.mapping.behaviour != c.mapping {
            m.push(format!(
                "mapping: measured {}, configured {}",
                self.mapping.behaviour, c.mapping
            ));
        }
        if self.filtering.behaviour != c.filtering {
            m.push(format!(
                "filtering: measured {}, configured {}",
                self.filtering.behaviour, c.filtering
            ));
        }
        if self.port_allocation.allocation != c.port_allocation {
            m.push(format!(
                "port allocation: measured {}, configured {}",
                self.port_allocation.allocation, c.port_allocation
            ));
        }
        let hp = self.hairpinning.behaviour;
        if (hp == HairpinClass::Yes) != c.hairpinning && hp != HairpinClass::Unknown {
            m.push(format!(
                "hairpinning: measured {hp}, configured {}",
                if c.hairpinning { "on" } else { "off" }
            ));
        }
        if let (Some(l), Some(claimed)) = (&self.lifetime, c.udp_timeout_s) {
            match (l.alive_s, l.expired_s) {
                (Some(a), Some(e)) => {
                    let est = (a + e) / 2.0;
                    if (est - claimed).abs() > lifetime_tolerance(claimed, e - a) {
                        m.push(format!(
                            "lifetime: measured {}, configured {claimed} s",
                            l.summary()
                        ));
                    }
                }
                (Some(_), None) if claimed <= l.max_s => m.push(format!(
                    "lifetime: measured {}, configured {claimed} s",
                    l.summary()
                )),
                (None, Some(e)) if claimed > e => m.push(format!(
                    "lifetime: measured {}, configured {claimed} s",
                    l.summary()
                )),
                _ => {}
            }
        }
        self.mismatches = m;
        self.nat_type = nat_type(self.mapping.behaviour, self.filtering.behaviour).map(String::from);
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.claimed;
        writeln!(
            f,
            "NAT {} ({}) in topology {}, run {}",
            self.nat, c.kind, self.topology, self.run_id
        )?;
        writeln!(
            f,
            "clients {} and {} inside; servers {} and {} outside, ports {} and {}",
            self.clients[0], self.clients[1], self.servers[0], self.servers[1], self.ports[0], self.ports[1]
        )?;
        writeln!(f)?;
        writeln!(f, "  {:<16} {:<28} configured", "", "measured")?;
        let row =
            |f: &mut fmt::Formatter<'_>, name: &str, measured: String, configured: String, same: bool| {
                let flag = if same { "" } else { "  <- differs" };
                writeln!(f, "  {name:<16} {measured:<28} {configured}{flag}")
            };
        row(
            f,
            "mapping",
            self.mapping.behaviour.to_string(),
            c.mapping.to_string(),
            self.mapping.behaviour == c.mapping,
        )?;
        row(
            f,
            "filtering",
            self.filtering.behaviour.to_string(),
            c.filtering.to_string(),
            self.filtering.behaviour == c.filtering,
        )?;
        let parity = if self.port_allocation.parity_preserved {
            ", parity kept"
        } else {
            ""
        };
        row(
            f,
            "port allocation",
            format!("{}{parity}", self.port_allocation.allocation),
            c.port_allocation.to_string(),
            self.port_allocation.allocation == c.port_allocation,
        )?;
        let hp = match (self.hairpinning.behaviour, self.hairpinning.external_source) {
            (HairpinClass::Yes, Some(false)) => "yes (inside source!)".to_string(),
            (HairpinClass::Unknown, _) => "unknown (filtering)".to_string(),
            (b, _) => b.to_string(),
        };
        let hp_same = match self.hairpinning.behaviour {
            HairpinClass::Yes => c.hairpinning,
            HairpinClass::No => !c.hairpinning,
            HairpinClass::Unknown => true,
        };
        let hp_claimed = if c.hairpinning { "yes" } else { "no" };
        row(f, "hairpinning", hp, hp_claimed.into(), hp_same)?;
        let lifetime = self
            .lifetime
            .as_ref()
            .map_or("not measured".to_string(), LifetimeResult::summary);
        let claimed_lifetime = c
            .udp_timeout_s
            .map_or("kernel default".to_string(), |s| format!("{s} s"));
        writeln!(f, "  {:<16} {lifetime:<28} {claimed_lifetime}", "lifetime")?;
        let ty = self
            .nat_type
            .clone()
            .unwrap_or_else(|| "(no classic name)".into());
        writeln!(f, "  {:<16} {ty:<28} {}", "type", c.kind)?;
        writeln!(f)?;
        writeln!(f, "mapping samples (inside port {}):", self.mapping.local_port)?;
        for s in &self.mapping.samples {
            writeln!(f, "  to {:<22} seen as {}", s.server, s.mapped)?;
        }
        writeln!(f, "filtering (after sending only to S1:P1):")?;
        for s in &self.filtering.samples {
            let what = match s.answer {
                Answer::Same => "S1:P1",
                Answer::OtherPort => "S1:P2",
                Answer::OtherAddress => "S2:P1",
                Answer::OtherBoth => "S2:P2",
            };
            writeln!(
                f,
                "  from {what}: {}",
                if s.received { "got in" } else { "filtered" }
            )?;
        }
        let ports: Vec<String> = self
            .port_allocation
            .samples
            .iter()
            .map(|s| format!("{}->{}", s.local, s.mapped.port()))
            .collect();
        writeln!(f, "ports (inside->external): {}", ports.join(" "))?;
        if self.mismatches.is_empty() {
            writeln!(f, "\nthe measurement agrees with the topology")
        } else {
            writeln!(f, "\nthe measurement contradicts the topology:")?;
            for m in &self.mismatches {
                writeln!(f, "  - {m}")?;
            }
            Ok(())
        }
    }
}

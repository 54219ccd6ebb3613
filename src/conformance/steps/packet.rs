//! Running `wait = "packet"`: a cell-long [`Watch`] over the links the scenario's packet
//! waits name, fed by a fabric tap, and the identities filters need.
//!
//! The watch opens before the first step (only in cells whose scenario has packet waits, so
//! other cells cost the fabric nothing) and keeps a classified history of what it saw, so a
//! wait can count packets from an anchor in the past: the previous step's end, the cell's
//! start, or a named step.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::classify::{classify, embedded_endpoint, Facts};
use super::filter::Identities;
use super::{judge, Judgement, PacketWait, Presence};
use crate::fabric::{IfaceId, Tap};
use crate::lab::{Lab, LabError};
use crate::topology::Topology;

/// Packets the tap holds before dropping the oldest (a reader drains it at every wait).
const TAP_CAPACITY: usize = 65_536;
/// Bytes kept per packet: outer IPv4/UDP, the inner IPv6 header and an ND message.
const TAP_SNAP: usize = 512;
/// Classified packets kept per cell; beyond this the oldest go (and are counted as lost).
const HISTORY_MAX: usize = 1_000_000;
/// How long after a deadline a record may still be on its way from the fabric thread.
const GRACE: Duration = Duration::from_millis(30);

/// The live view of some links for one cell.
pub struct Watch {
    tap: Tap,
    names: BTreeMap<IfaceId, String>,
    history: VecDeque<Facts>,
    /// Records lost to a full tap or history.
    lost: u64,
}

impl Watch {
    /// Opens a tap on `links` (`node/interface`).
    pub fn open(lab: &Lab, links: &[String]) -> Result<Watch, LabError> {
        let refs: Vec<&str> = links.iter().map(String::as_str).collect();
        let tap = lab.tap(&refs, TAP_CAPACITY, TAP_SNAP)?;
        let names = tap
            .spec()
            .links
            .iter()
            .filter_map(|id| lab.link_name(*id).map(|n| (*id, n.to_string())))
            .collect();
        Ok(Watch {
            tap,
            names,
            history: VecDeque::new(),
            lost: 0,
        })
    }

    /// Classifies and keeps one tapped packet; returns it.
    fn keep(&mut self, p: crate::fabric::TapPacket) -> &Facts {
        let link = self.names.get(&p.iface).map_or("?", String::as_str);
        let f = classify(link, p.direction, p.at, p.len, &p.data);
        if self.history.len() >= HISTORY_MAX {
            self.history.pop_front();
            self.lost += 1;
        }
        self.history.push_back(f);
        &self.history[self.history.len() - 1]
    }

    /// Packets lost so far (a full tap or history): a wait that may have missed its packet
    /// says so instead of judging.
    pub fn lost(&self) -> u64 {
        self.lost + self.tap.overflowed()
    }

    /// Waits as `wait` says, counting packets after `baseline`; `window` is absolute.
    /// Returns the judgement and the time of the awaited packet (when one was seen).
    pub fn run(
        &mut self,
        wait: &PacketWait,
        ids: &Identities,
        baseline: Instant,
        window: Option<(Instant, Instant)>,
        started: Instant,
    ) -> (Judgement, Option<Instant>) {
        let deadline = match window {
            Some((_, hi)) => hi,
            None => started + wait.timeout,
        };
        let n = wait.count.max(1) as usize;
        let wanted = |f: &Facts| f.at > baseline && wait.on.contains(&f.link) && wait.filter.matches(f, ids);
        // What is already here (an anchor may reach back), then each new packet once.
        for p in self.tap.drain() {
            self.keep(p);
        }
        let mut found: Vec<Instant> = self.history.iter().filter(|f| wanted(f)).map(|f| f.at).collect();
        found.sort();
        loop {
            let decided = match (wait.expect, window) {
                // The n-th packet decides, early, in time or late.
                (Presence::Seen, _) => found.len() >= n,
                (Presence::Absent, Some((lo, hi))) => found.iter().any(|&t| t >= lo && t <= hi),
                (Presence::Absent, None) => !found.is_empty(),
            };
            if decided || Instant::now() >= deadline + GRACE {
                let event = match wait.expect {
                    Presence::Seen => found.get(n - 1).copied(),
                    Presence::Absent => None,
                };
                return (judge(wait, baseline, &found, window, deadline), event);
            }
            if let Some(p) = self.tap.next(deadline + GRACE) {
                let f = self.keep(p);
                if wanted(f) {
                    found.push(f.at);
                }
            }
        }
    }
}

/// Who is who in the cell: every node's IPv4 and native IPv6 addresses from the topology,
/// the 6bed4 addresses the runner knows (`v6`), the external endpoints those name, and for a
/// host alone behind its NAT that NAT's external addresses (its traffic carries them before
/// its address is known).
pub fn identities(
    topology: &Topology,
    router: SocketAddrV4,
    v01: bool,
    v6: &BTreeMap<String, Vec<Ipv6Addr>>,
) -> Identities {
    let mut ids = Identities {
        router: Some(router),
        ..Default::default()
    };
    let mut behind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in topology.nodes() {
        let name = n.name().to_string();
        let mut v4: Vec<Ipv4Addr> = n.interfaces().iter().map(|i| i.address).collect();
        if let crate::topology::Node::Router(r) = n {
            v4.extend(r.external_addresses());
        }
        ids.v4.insert(name.clone(), v4);
        let mut six: Vec<Ipv6Addr> = n.interfaces().iter().filter_map(|i| i.address6).collect();
        six.extend(v6.get(&name).into_iter().flatten().copied());
        let eps: Vec<SocketAddrV4> = v6
            .get(&name)
            .into_iter()
            .flatten()
            .filter_map(|a| embedded_endpoint(a, v01))
            .collect();
        ids.endpoints.insert(name.clone(), eps);
        ids.v6.insert(name.clone(), six);
        if let Some(nat) = nat_of(topology, &name) {
            behind.entry(nat).or_default().push(name);
        }
    }
    for (nat, hosts) in behind {
        if let [only] = hosts.as_slice() {
            let ext = topology
                .routers
                .iter()
                .find(|r| r.name == nat)
                .map(|r| r.external_addresses())
                .unwrap_or_default();
            ids.v4.entry(only.clone()).or_default().extend(ext);
        }
    }
    // The router is known by its endpoint too (its own address names it).
    if let Some(name) = topology
        .nodes_with_role("6bed4-router")
        .next()
        .map(|n| n.name().to_string())
    {
        ids.endpoints.entry(name).or_default().push(router);
    }
    ids
}

/// The NAT a host's first interface sits behind, if any.
fn nat_of(t: &Topology, node: &str) -> Option<String> {
    let n = t.node(node)?;
    if n.is_router() {
        return None;
    }
    let iface = n.interfaces().first()?;
    let gw = t.gateway_of(node, &iface.name)?;
    let owner = t.owner_of(gw)?;
    let r = t.routers.iter().find(|r| r.name == owner.node.name())?;
    r.nat.as_ref().map(|_| r.name.clone())
}

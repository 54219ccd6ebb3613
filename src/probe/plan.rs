//! Where the probe's hosts go: a copy of the topology with two clients on the NAT's inside
//! segment and two servers on its outside segment, each at a free address.

use super::ProbeError;
use crate::topology::{Host, Interface, NatSpec, Node, Topology};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Ports every probe server listens on (STUN's, and the next one).
pub const SERVER_PORTS: [u16; 2] = [3478, 3479];

/// A topology ready to be probed.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePlan {
    /// The topology with the probe's hosts added.
    pub topology: Topology,
    /// The NAT node.
    pub nat: String,
    /// Its NAT description.
    pub spec: NatSpec,
    /// Client host names (inside).
    pub clients: [String; 2],
    /// Their addresses.
    pub client_addrs: [Ipv4Addr; 2],
    /// Server host names (outside).
    pub servers: [String; 2],
    /// Their addresses.
    pub server_addrs: [Ipv4Addr; 2],
}

/// A node name no node of `t` has, starting from `base`.
fn free_name(t: &Topology, base: &str, taken: &BTreeSet<String>) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|name| t.node(name).is_none() && !taken.contains(name))
        .unwrap_or_else(|| base.to_string())
}

/// `count` free host addresses on `segment`, from the top of its subnet down (lab
/// topologies number from the bottom).
fn free_addresses(t: &Topology, segment: &str, count: usize) -> Result<Vec<Ipv4Addr>, ProbeError> {
    let seg = t
        .segment(segment)
        .ok_or_else(|| ProbeError::Plan(format!("no segment {segment:?}")))?;
    let net = seg.subnet;
    let first = u32::from(net.addr());
    let last = u32::from(net.broadcast());
    let mut found = Vec::new();
    let mut a = last;
    while found.len() < count {
        let addr = Ipv4Addr::from(a);
        if net.is_host_address(addr) && t.owner_of(addr).is_none() {
            found.push(addr);
        }
        if a == first {
            break;
        }
        a -= 1;
    }
    if found.len() < count {
        return Err(ProbeError::Plan(format!(
            "segment {segment} ({net}) has fewer than {count} free addresses for the probe's hosts"
        )));
    }
    Ok(found)
}

/// The topology `t` with the probe's four hosts added around NAT `nat`. The clients get the
/// NAT's inside address as their gateway; the servers sit on the outside segment, on-link
/// with the NAT's external address.
pub fn plan(t: &Topology, nat: &str) -> Result<ProbePlan, ProbeError> {
    let router = match t.node(nat) {
        Some(Node::Router(r)) => r,
        Some(Node::Host(_)) => return Err(ProbeError::Plan(format!("{nat} is a host, not a NAT"))),
        None => {
            let nats: Vec<&str> = t
                .routers
                .iter()
                .filter(|r| r.nat.is_some())
                .map(|r| r.name.as_str())
                .collect();
            return Err(ProbeError::Plan(format!(
                "no node {nat:?} in topology {} (its NATs: {})",
                t.name,
                if nats.is_empty() {
                    "none".to_string()
                } else {
                    nats.join(", ")
                }
            )));
        }
    };
    let spec = router
        .nat
        .clone()
        .ok_or_else(|| ProbeError::Plan(format!("{nat} is a router without NAT")))?;
    let outside = router
        .outside_interface()
        .ok_or_else(|| ProbeError::Plan(format!("{nat}: no outside interface {}", spec.outside)))?;
    let inside = router
        .interfaces
        .iter()
        .find(|i| i.name != spec.outside)
        .ok_or_else(|| ProbeError::Plan(format!("{nat}: no inside interface")))?;
    let client_addrs = free_addresses(t, &inside.segment, 2)?;
    let server_addrs = free_addresses(t, &outside.segment, 2)?;
    let mut taken = BTreeSet::new();
    let mut name = |base: &str| {
        let n = free_name(t, base, &taken);
        taken.insert(n.clone());
        n
    };
    let clients = [name("probe-c1"), name("probe-c2")];
    let servers = [name("probe-s1"), name("probe-s2")];
    let mut topology = t.clone();
    for (n, a) in clients.iter().zip(&client_addrs) {
        topology.hosts.push(
            Host::new(n.clone())
                .role("nat-probe-client")
                .interface(Interface::new("eth0", inside.segment.clone(), *a).gateway(inside.address)),
        );
    }
    // The servers need no gateway (the NAT's external address is on-link), but a segment
    // with several routers makes every host choose one.
    let server_gateway = match t.gateway_candidates(&outside.segment).as_slice() {
        [first, _, ..] => Some(first.interface.address),
        _ => None,
    };
    for (n, a) in servers.iter().zip(&server_addrs) {
        let mut iface = Interface::new("eth0", outside.segment.clone(), *a);
        iface.gateway = server_gateway;
        topology
            .hosts
            .push(Host::new(n.clone()).role("nat-probe-server").interface(iface));
    }
    topology.validate()?;
    Ok(ProbePlan {
        topology,
        nat: nat.to_string(),
        spec,
        clients,
        client_addrs: [client_addrs[0], client_addrs[1]],
        servers,
        server_addrs: [server_addrs[0], server_addrs[1]],
    })
}

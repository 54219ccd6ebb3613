//! Nodes inside the fabric: what happens to a packet that reaches a router's or NAT's
//! interface.
//!
//! The fabric knows nodes only through [`Node`]: a packet in on one interface, any number of
//! packets out on any interfaces, and optional timers. Segments and links never look inside a
//! node, so a NAT (or anything else) is one more implementation of the trait.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::packet::{self, icmp, IpInfo, Ipv4Info};
use super::stats::DropReason;

/// A packet a node sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSend {
    /// Index of the node's interface it leaves through.
    pub iface: usize,
    /// The neighbour on that segment to hand it to (a router's next hop). `None` applies the
    /// host rules: the owner of the destination if it is on the segment, else the gateway.
    pub next_hop: Option<Ipv4Addr>,
    pub packet: Vec<u8>,
}

/// Where a node puts its output: packets to send and packets it dropped (with the interface
/// to count the drop on). The fabric drains it after each call.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(crate) sends: Vec<NodeSend>,
    pub(crate) drops: Vec<(usize, DropReason)>,
}

impl Outbox {
    /// Sends `packet` out of interface `iface`, to `next_hop` on its segment.
    pub fn send(&mut self, iface: usize, next_hop: Option<Ipv4Addr>, packet: Vec<u8>) {
        self.sends.push(NodeSend {
            iface,
            next_hop,
            packet,
        });
    }

    /// Records that a packet was dropped, counted at the node's interface `iface`.
    pub fn drop_packet(&mut self, iface: usize, reason: DropReason) {
        self.drops.push((iface, reason));
    }

    /// What was sent so far (for tests of a node on its own).
    pub fn sends(&self) -> &[NodeSend] {
        &self.sends
    }

    /// What was dropped so far.
    pub fn drops(&self) -> &[(usize, DropReason)] {
        &self.drops
    }

    /// Empties both lists.
    pub fn clear(&mut self) {
        self.sends.clear();
        self.drops.clear();
    }
}

/// Behaviour of a fabric node (router, NAT): sans-IO, the time is passed in.
pub trait Node: Send + std::fmt::Debug {
    /// A packet arrived on interface `in_iface` at `now` (after the link's impairments).
    fn handle(&mut self, now: Instant, in_iface: usize, packet: Vec<u8>, out: &mut Outbox);

    /// When [`Node::handle_timeout`] wants to run next (a NAT expiring mappings); `None` if
    /// never.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Runs timers due at `now`. Must move [`Node::poll_timeout`] past `now`.
    fn handle_timeout(&mut self, _now: Instant, _out: &mut Outbox) {}

    /// A run-time command from a scenario or the Rust API. Nodes refuse what they do not
    /// support, with a sentence saying so.
    fn control(&mut self, _now: Instant, ctl: &NodeControl) -> Result<(), String> {
        Err(format!("{ctl:?} is not supported by this node"))
    }
}

/// Run-time commands for fabric nodes (what scenarios do to NATs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeControl {
    /// Forget every mapping.
    Flush,
    /// Move to other external addresses (a "rebinding"): existing mappings are gone.
    Rebind(Vec<Ipv4Addr>),
    /// Change the UDP mapping lifetime.
    SetUdpTimeout(std::time::Duration),
    /// Take the node down (it drops everything) or bring it back up.
    SetUp(bool),
}

/// What a node knows about one of its interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIface {
    pub address: Ipv4Addr,
    /// The attached segment's subnet (network, prefix length).
    pub subnet: (Ipv4Addr, u8),
    pub mtu: u32,
}

/// The netmask of a prefix length (0..=32; longer is treated as 32).
pub fn mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - u32::from(l)),
    }
}

/// True if `addr` lies in `net/len`.
pub fn in_subnet(addr: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    (u32::from(addr) ^ u32::from(net)) & mask(len) == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    net: u32,
    len: u8,
    out: usize,
    /// `None` for a connected subnet: the destination itself is the next hop.
    via: Option<Ipv4Addr>,
}

/// An IPv4 router: longest-prefix match over connected subnets and static routes, TTL
/// decrement, ICMP time exceeded / fragmentation needed / net unreachable, fragmentation of
/// DF-clear packets, and echo replies for its own addresses. IPv6 is not routed (counted as
/// no-route): the lab's underlay is IPv4.
#[derive(Debug, Clone)]
pub struct Router {
    ifaces: Vec<NodeIface>,
    /// Sorted longest prefix first, connected before static at equal length.
    routes: Vec<Route>,
    /// IP identification for originated packets; a counter, so runs are reproducible.
    next_ident: u16,
}

impl Router {
    /// A router with these interfaces and static routes `(prefix, via)`. Fails if a `via`
    /// is not on a connected subnet or a prefix length is over 32.
    pub fn new(ifaces: Vec<NodeIface>, routes: &[((Ipv4Addr, u8), Ipv4Addr)]) -> Result<Router, String> {
        let mut table: Vec<Route> = Vec::new();
        for (i, iface) in ifaces.iter().enumerate() {
            if iface.subnet.1 > 32 {
                return Err(format!("interface {i}: prefix length {} over 32", iface.subnet.1));
            }
            table.push(Route {
                net: u32::from(iface.subnet.0) & mask(iface.subnet.1),
                len: iface.subnet.1,
                out: i,
                via: None,
            });
        }
        for &((net, len), via) in routes {
            if len > 32 {
                return Err(format!("route {net}/{len}: prefix length over 32"));
            }
            let out = ifaces
                .iter()
                .position(|i| in_subnet(via, i.subnet))
                .ok_or_else(|| format!("route {net}/{len} via {via}: {via} is not on a connected subnet"))?;
            table.push(Route {
                net: u32::from(net) & mask(len),
                len,
                out,
                via: Some(via),
            });
        }
        table.sort_by_key(|r| std::cmp::Reverse(r.len));
        Ok(Router {
            ifaces,
            routes: table,
            next_ident: 0,
        })
    }

    /// The outgoing interface and next hop for `dst`, by longest prefix match.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
        let d = u32::from(dst);
        self.routes
            .iter()
            .find(|r| d & mask(r.len) == r.net)
            .map(|r| (r.out, r.via.unwrap_or(dst)))
    }

    fn ident(&mut self) -> u16 {
        self.next_ident = self.next_ident.wrapping_add(1);
        self.next_ident
    }

    /// Sends a packet the router made itself (an ICMP message) towards its destination,
    /// counting a failure at `blame`.
    fn originate(&mut self, pkt: Vec<u8>, dst: Ipv4Addr, blame: usize, out: &mut Outbox) {
        match self.lookup(dst) {
            Some((iface, hop)) => out.send(iface, Some(hop), pkt),
            None => out.drop_packet(blame, DropReason::NoRoute),
        }
    }

    /// Sends an ICMP error about `pkt` back to its source, from the address of the interface
    /// it came in on (as Linux does by default), if the rules allow an error about it.
    fn icmp_error(
        &mut self,
        pkt: &[u8],
        info: &Ipv4Info,
        in_iface: usize,
        (icmp_type, code, rest): (u8, u8, [u8; 4]),
        out: &mut Outbox,
    ) {
        if !packet::may_send_icmp_error(pkt, info) {
            return;
        }
        let Some(me) = self.ifaces.get(in_iface).map(|i| i.address) else {
            return;
        };
        let Some((back, hop)) = self.lookup(info.src) else {
            return out.drop_packet(in_iface, DropReason::NoRoute);
        };
        // The quote shrinks to fit the way back, so an error is never lost to a small MTU
        // (the MTU is at least 68, which leaves 40 bytes: the header and 8 more).
        let back_mtu = self.ifaces.get(back).map_or(576, |i| i.mtu as usize);
        let room = back_mtu.min(576) - packet::IPV4_HEADER_LEN - 8;
        let quote = packet::icmp_error_quote(pkt);
        let quote = &quote[..quote.len().min(room)];
        let ident = self.ident();
        let err = packet::build_icmpv4(me, info.src, ident, icmp_type, code, rest, quote);
        out.send(back, Some(hop), err);
    }
}

impl Node for Router {
    fn handle(&mut self, _now: Instant, in_iface: usize, mut pkt: Vec<u8>, out: &mut Outbox) {
        let info = match packet::parse_ip(&pkt) {
            Some(IpInfo::V4(info)) => info,
            Some(IpInfo::V6(_)) => return out.drop_packet(in_iface, DropReason::NoRoute),
            None => return out.drop_packet(in_iface, DropReason::Malformed),
        };
        if !packet::ipv4_checksum_ok(&pkt, &info) {
            return out.drop_packet(in_iface, DropReason::Malformed);
        }
        pkt.truncate(info.total_len);

        if self.ifaces.iter().any(|i| i.address == info.dst) {
            // For us: answer pings, ignore the rest (there are no services on a router).
            let ident = self.ident();
            if let Some(reply) = packet::echo_reply(&pkt, &info, ident) {
                self.originate(reply, info.src, in_iface, out);
            }
            return;
        }

        if info.ttl <= 1 {
            out.drop_packet(in_iface, DropReason::Ttl);
            let te = (icmp::TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED, [0; 4]);
            return self.icmp_error(&pkt, &info, in_iface, te, out);
        }

        let Some((out_iface, hop)) = self.lookup(info.dst) else {
            out.drop_packet(in_iface, DropReason::NoRoute);
            let unreach = (icmp::DEST_UNREACHABLE, icmp::CODE_NET_UNREACHABLE, [0; 4]);
            return self.icmp_error(&pkt, &info, in_iface, unreach, out);
        };
        packet::decrement_ttl(&mut pkt);

        let mtu = self.ifaces.get(out_iface).map_or(0, |i| i.mtu as usize);
        if pkt.len() <= mtu {
            return out.send(out_iface, Some(hop), pkt);
        }
        if info.dont_fragment {
            out.drop_packet(out_iface, DropReason::Mtu);
            let [_, _, hi, lo] = (mtu.min(0xffff) as u32).to_be_bytes();
            let needed = (icmp::DEST_UNREACHABLE, icmp::CODE_FRAG_NEEDED, [0, 0, hi, lo]);
            // Quote the packet as it arrived, TTL not yet decremented, like Linux.
            let mut original = pkt.clone();
            original[8] = info.ttl;
            packet::set_ipv4_checksum(&mut original, info.header_len);
            return self.icmp_error(&original, &info, in_iface, needed, out);
        }
        // Refresh the view: the TTL changed, the rest did not.
        let Some(info) = packet::parse_ipv4(&pkt) else {
            return out.drop_packet(in_iface, DropReason::Malformed);
        };
        match packet::fragment_ipv4(&pkt, &info, mtu) {
            Some(frags) => {
                for f in frags {
                    out.send(out_iface, Some(hop), f);
                }
            }
            None => out.drop_packet(out_iface, DropReason::Mtu),
        }
    }
}

//! A NAT as a fabric node: the sans-IO NAT engine ([`crate::nat::Nat`]) in front of a
//! [`Router`].
//!
//! Packets from the inside are translated, then routed (TTL, ICMP errors, MTU) like any
//! router's; packets from the outside are matched against the mappings and filtering
//! rules, then routed inside. Packets for the NAT's own addresses (ping the gateway) go
//! straight to the router. Every mapping decision is handed to an event sink, which the
//! lab writes next to the capture so a reader can line the two up.

use super::node::{Node, NodeControl, NodeIface, Outbox, Router};
use super::packet::{self, IpInfo};
use super::stats::DropReason;
use crate::nat::{Config, Nat, NatEvent, Verdict};
use std::net::Ipv4Addr;
use std::time::Instant;

/// Where a NAT node's decisions go.
pub type NatEventSink = Box<dyn FnMut(&NatEvent) + Send>;

/// A userspace NAT between an inside and an outside interface.
pub struct NatNode {
    nat: Nat,
    router: Router,
    inside: usize,
    outside: usize,
    own: Vec<Ipv4Addr>,
    drop_icmp: bool,
    sink: Option<NatEventSink>,
}

impl std::fmt::Debug for NatNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatNode")
            .field("inside", &self.inside)
            .field("outside", &self.outside)
            .finish()
    }
}

impl NatNode {
    /// `ifaces` and `routes` as for a [`Router`]; `config` carries the inside/outside
    /// addresses and the behaviour. `drop_icmp` drops ICMP instead of translating it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ifaces: Vec<NodeIface>,
        routes: &[((Ipv4Addr, u8), Ipv4Addr)],
        inside: usize,
        outside: usize,
        config: Config,
        drop_icmp: bool,
        now: Instant,
        sink: Option<NatEventSink>,
    ) -> Result<NatNode, String> {
        if inside >= ifaces.len() || outside >= ifaces.len() || inside == outside {
            return Err(format!(
                "inside #{inside} and outside #{outside} must be two of the {} interfaces",
                ifaces.len()
            ));
        }
        let own = ifaces.iter().map(|i| i.address).collect();
        let router = Router::new(ifaces, routes)?;
        let nat = Nat::new(config, now).map_err(|e| e.to_string())?;
        Ok(NatNode {
            nat,
            router,
            inside,
            outside,
            own,
            drop_icmp,
            sink,
        })
    }

    fn drain_events(&mut self) {
        let events = self.nat.take_events();
        if let Some(sink) = self.sink.as_mut() {
            for e in &events {
                sink(e);
            }
        }
    }

    fn is_icmp(pkt: &[u8]) -> bool {
        matches!(packet::parse_ip(pkt), Some(IpInfo::V4(info)) if info.protocol == 1)
    }

    fn dst_v4(pkt: &[u8]) -> Option<Ipv4Addr> {
        match packet::parse_ip(pkt) {
            Some(IpInfo::V4(info)) => Some(info.dst),
            _ => None,
        }
    }
}

impl Node for NatNode {
    fn handle(&mut self, now: Instant, in_iface: usize, mut pkt: Vec<u8>, out: &mut Outbox) {
        let for_me = Self::dst_v4(&pkt).is_some_and(|d| self.own.contains(&d));
        if self.drop_icmp && Self::is_icmp(&pkt) && !for_me {
            return out.drop_packet(in_iface, DropReason::Nat);
        }
        if in_iface == self.inside {
            // The engine first: a packet for the NAT's own external address may be a
            // hairpin to another inside host's mapping.
            // Only a packet for the NAT's own address may need its untranslated form back.
            let original = for_me.then(|| pkt.clone());
            match self.nat.outbound(now, &mut pkt) {
                Verdict::Forward | Verdict::Hairpin => self.router.handle(now, in_iface, pkt, out),
                Verdict::Drop(_) if for_me => self.router.handle(now, in_iface, original.unwrap_or(pkt), out),
                Verdict::Drop(_) => out.drop_packet(in_iface, DropReason::Nat),
            }
        } else if in_iface == self.outside {
            match self.nat.inbound(now, &mut pkt) {
                Verdict::Forward | Verdict::Hairpin => self.router.handle(now, in_iface, pkt, out),
                // Nothing mapped: it may be for the NAT itself (a ping of its WAN address).
                Verdict::Drop(_) if for_me => self.router.handle(now, in_iface, pkt, out),
                Verdict::Drop(_) => out.drop_packet(in_iface, DropReason::Nat),
            }
        } else {
            self.router.handle(now, in_iface, pkt, out);
        }
        self.drain_events();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.nat.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant, _out: &mut Outbox) {
        self.nat.handle_timeout(now);
        self.drain_events();
    }

    fn control(&mut self, now: Instant, ctl: &NodeControl) -> Result<(), String> {
        match ctl {
            NodeControl::Flush => self.nat.flush(now),
            NodeControl::Rebind(addrs) => {
                self.nat
                    .set_external_addresses(now, addrs.clone())
                    .map_err(|e| e.to_string())?;
            }
            NodeControl::SetUdpTimeout(d) => self.nat.set_udp_timeout(now, *d),
            NodeControl::SetUp(up) => self.nat.set_up(now, *up),
        }
        self.drain_events();
        Ok(())
    }
}

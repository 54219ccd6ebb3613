//! The 6bed4 router as a sans-IO state machine (spec §5).
//!
//! The router is stateless towards peers: everything it needs to answer or relay a datagram
//! is in the datagram (the peer's address embeds its IPv4:port). The only state is a
//! fixed-size table that rate-limits "your mapping changed" advertisements, so memory does
//! not grow with the number of peers.

use crate::addr::{self, AddrError};
use crate::counters::Counters;
use crate::events::Event;
use crate::io::Output;
use crate::profile::{prefix_to_string, Profile};
use crate::wire::icmpv6::{self, MIN_MTU};
use crate::wire::nd::{
    NA_FLAG_OVERRIDE, NA_FLAG_ROUTER, NA_FLAG_SOLICITED, PIO_FLAG_AUTONOMOUS, PIO_FLAG_ON_LINK,
};
use crate::wire::{Datagram, Ipv6Packet, NdRepr, PrefixInfo};
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The link-local address the router speaks ND from (router IID 0).
pub const ROUTER_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Lifetimes the router advertises. The defaults stay inside RFC 4861 §6.2.1 limits (the C
/// reference's all-ones values do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaParams {
    pub router_lifetime: u16,
    pub reachable_time_ms: u32,
    pub retrans_time_ms: u32,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub cur_hop_limit: u8,
}

impl Default for RaParams {
    fn default() -> Self {
        RaParams {
            router_lifetime: 1800,
            reachable_time_ms: 30_000,
            retrans_time_ms: 1_000,
            valid_lifetime: 86_400,
            preferred_lifetime: 14_400,
            cur_hop_limit: 64,
        }
    }
}

/// How a router is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub profile: Profile,
    /// The public IPv4 address and UDP port peers send to.
    pub listen: SocketAddrV4,
    /// The router's /64.
    pub prefix: [u8; 8],
    /// Further prefixes reachable through the router, announced with L=0 A=0.
    pub routes: Vec<(Ipv6Addr, u8)>,
    pub ra: RaParams,
    /// At most one unsolicited RA per peer endpoint in this interval.
    pub mapping_change_interval: Duration,
}

impl RouterConfig {
    pub fn new(profile: Profile, listen: SocketAddrV4) -> Self {
        RouterConfig {
            profile,
            listen,
            prefix: profile.default_prefix(*listen.ip()),
            routes: Vec::new(),
            ra: RaParams::default(),
            mapping_change_interval: Duration::from_millis(500),
        }
    }
}

/// Slots in the unsolicited-RA rate limiter (a fixed size: the router stays stateless).
const RATE_SLOTS: usize = 1024;

/// A 6bed4 router.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    address: Ipv6Addr,
    lla: [u8; 6],
    counters: Counters,
    recent_mapping_changes: Box<[Option<(SocketAddrV4, Instant)>]>,
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Result<Router, AddrError> {
        let address = addr::encode(cfg.profile, cfg.prefix, cfg.listen, 0)?;
        Ok(Router {
            lla: addr::link_layer(cfg.listen),
            address,
            cfg,
            counters: Counters::default(),
            recent_mapping_changes: vec![None; RATE_SLOTS].into_boxed_slice(),
        })
    }

    /// The router's own 6bed4 address (its endpoint, local id 0).
    pub fn address(&self) -> Ipv6Addr {
        self.address
    }
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// The event a shell reports once the router is up.
    pub fn ready_event(&self) -> Event {
        Event::RouterReady {
            listen: self.cfg.listen,
            prefix: prefix_to_string(self.cfg.prefix),
            address: self.address,
        }
    }

    fn drop_with(&mut self, reason: &'static str) {
        self.counters.bump(reason);
    }

    fn in_prefix(&self, a: &Ipv6Addr) -> bool {
        a.octets()[..8] == self.cfg.prefix
    }

    /// One datagram from a peer.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8], out: &mut Vec<Output>) {
        self.counters.bump("rx_datagrams");
        let packet = match Datagram::parse(payload) {
            Ok(Datagram::Keepalive) => return self.counters.bump("rx_keepalives"),
            Ok(Datagram::Ipv6(p)) => p,
            Err(e) => return self.drop_with(e.reason()),
        };
        let (src, dst) = (packet.src_addr(), packet.dst_addr());

        if packet.next_header() == 58 {
            if let Some(&ty) = packet.payload().first() {
                if NdRepr::is_nd_type(ty) {
                    return self.handle_nd(now, from, &packet, out);
                }
            }
        }
        if !self.originator_ok(now, from, &src, &packet, out) {
            return;
        }
        if dst.is_multicast() {
            return self.drop_with("drop_multicast");
        }
        if packet.as_bytes().len() > MIN_MTU {
            self.counters.bump("packet_too_big_sent");
            let ptb = icmpv6::packet_too_big(self.address, src, MIN_MTU as u32, packet.as_bytes());
            out.push(Output::Udp {
                to: from,
                payload: ptb,
                ttl: None,
            });
            return;
        }
        if !self.in_prefix(&dst) {
            // Native IPv6: leaving the tunnel is a 6bed4 hop like a relay (spec §4: the router
            // decrements, then hands it to its native side); the kernel's forwarding beyond
            // the TUN is the next hop and decrements again.
            return self.hand_to_native(from, packet.as_bytes(), out);
        }
        let target = match addr::decode(self.cfg.profile, &dst) {
            Ok(d) => d,
            Err(_) => return self.drop_with("drop_undecodable_destination"),
        };
        if target.endpoint == self.cfg.listen && target.lanip == 0 {
            // For the router itself: its kernel answers.
            self.counters.bump("to_self");
            out.push(Output::Tun(packet.as_bytes().to_vec()));
            return;
        }
        if target.endpoint == from {
            return self.drop_with("drop_reflection");
        }
        self.relay(from, target.endpoint, packet.as_bytes(), out);
    }

    /// Hands a data packet to the native side: one 6bed4 hop, so the hop limit drops by one
    /// (and a packet at 1 earns a Time Exceeded instead).
    fn hand_to_native(&mut self, from: SocketAddrV4, bytes: &[u8], out: &mut Vec<Output>) {
        let Some(packet) = self.forwarded(from, bytes, out) else {
            return;
        };
        self.counters.bump("to_native");
        out.push(Output::Tun(packet.into_inner()));
    }

    /// The packet with its hop limit one lower, for forwarding; or, at hop limit 1 or
    /// less, `None` and a Time Exceeded back to `from` (RFC 8200 §3).
    fn forwarded(
        &mut self,
        from: SocketAddrV4,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) -> Option<Ipv6Packet<Vec<u8>>> {
        let mut packet = Ipv6Packet::new_unchecked(bytes.to_vec());
        let hop_limit = packet.hop_limit();
        if hop_limit <= 1 {
            self.counters.bump("time_exceeded_sent");
            let te = icmpv6::time_exceeded(self.address, packet.src_addr(), bytes);
            out.push(Output::Udp {
                to: from,
                payload: te,
                ttl: None,
            });
            return None;
        }
        packet.set_hop_limit(hop_limit - 1);
        Some(packet)
    }

    /// Relays a data packet peer to peer: one 6bed4 hop, so the hop limit drops by one.
    fn relay(&mut self, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8], out: &mut Vec<Output>) {
        let Some(packet) = self.forwarded(from, bytes, out) else {
            return;
        };
        self.counters.bump("relayed");
        out.push(Output::Udp {
            to,
            payload: packet.into_inner(),
            ttl: None,
        });
    }

    /// The originator check: a packet's inner source must be the sender's own 6bed4 address
    /// (router /64 or link-local, identifier decoding to the outer IPv4:port). A mismatch
    /// inside the /64 means the peer's NAT mapping changed: it gets an unsolicited RA.
    fn originator_ok(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        src: &Ipv6Addr,
        packet: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) -> bool {
        let in_prefix = self.in_prefix(src);
        if !in_prefix && !addr::is_link_local(src) {
            self.drop_with("drop_foreign_source");
            return false;
        }
        let matches = addr::decode(self.cfg.profile, src).is_ok_and(|d| d.endpoint == from);
        if matches {
            return true;
        }
        if in_prefix {
            self.mapping_changed(now, from, *src, out);
            // An ICMPv6 error about the stale packet would only confuse; the RA says it all.
            let _ = packet;
        } else {
            self.drop_with("drop_spoofed_link_local");
        }
        false
    }

    fn mapping_changed(&mut self, now: Instant, from: SocketAddrV4, stale: Ipv6Addr, out: &mut Vec<Output>) {
        self.counters.bump("drop_originator_mismatch");
        let slot = slot_of(from);
        if let Some((ep, at)) = self.recent_mapping_changes[slot] {
            if ep == from && now.saturating_duration_since(at) < self.cfg.mapping_change_interval {
                return self.counters.bump("mapping_change_rate_limited");
            }
        }
        let Some(ra) = self.advertisement(from, stale) else {
            return;
        };
        self.recent_mapping_changes[slot] = Some((from, now));
        self.counters.bump("unsolicited_ra_sent");
        out.push(Output::Udp {
            to: from,
            payload: ra,
            ttl: None,
        });
        out.push(Output::Event(Event::MappingChanged { stale, peer: from }));
    }

    /// A Router Advertisement for the peer seen at `peer`, sent to inner destination `dst`.
    /// `None` when `peer` cannot appear in an address of this profile (odd port in v01).
    fn advertisement(&mut self, peer: SocketAddrV4, dst: Ipv6Addr) -> Option<Vec<u8>> {
        let p = &self.cfg.ra;
        let own = match self.cfg.profile {
            Profile::Current => addr::layout_c_iid(peer, 0).map(|iid| addr::join(self.cfg.prefix, iid)),
            Profile::V01 => addr::layout_v_iid(peer).map(|_| crate::profile::prefix_addr(self.cfg.prefix)),
        };
        let Ok(own) = own else {
            self.counters.bump("drop_unaddressable_peer");
            return None;
        };
        let mut prefixes = vec![PrefixInfo {
            prefix_len: self.cfg.profile.pio_prefix_len(),
            flags: PIO_FLAG_ON_LINK | PIO_FLAG_AUTONOMOUS,
            valid_lifetime: p.valid_lifetime,
            preferred_lifetime: p.preferred_lifetime,
            prefix: own,
        }];
        prefixes.extend(self.cfg.routes.iter().map(|&(prefix, prefix_len)| PrefixInfo {
            prefix_len,
            flags: 0,
            valid_lifetime: p.valid_lifetime,
            preferred_lifetime: p.preferred_lifetime,
            prefix,
        }));
        let ra = NdRepr::RouterAdvert {
            cur_hop_limit: p.cur_hop_limit,
            flags: 0,
            router_lifetime: p.router_lifetime,
            reachable_time: p.reachable_time_ms,
            retrans_time: p.retrans_time_ms,
            source_lla: Some(self.lla),
            mtu: Some(MIN_MTU as u32),
            prefixes,
        };
        Some(ra.emit(ROUTER_LINK_LOCAL, dst))
    }

    fn handle_nd(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        packet: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) {
        let nd = match NdRepr::parse(packet) {
            Ok(nd) => nd,
            Err(e) => return self.drop_with(e.reason()),
        };
        let src = packet.src_addr();
        match nd {
            NdRepr::RouterSolicit { .. } => {
                let dst = packet.dst_addr();
                if !(dst == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2) || dst == ROUTER_LINK_LOCAL) {
                    return self.drop_with("drop_rs_bad_destination");
                }
                if !(src.is_unspecified() || addr::is_link_local(&src) || self.in_prefix(&src)) {
                    return self.drop_with("drop_rs_bad_source");
                }
                let reply_to = match self.cfg.profile {
                    Profile::Current if src.is_unspecified() => ALL_NODES,
                    Profile::Current => src,
                    Profile::V01 => match addr::layout_v_iid(from) {
                        Ok(iid) => addr::join([0xfe, 0x80, 0, 0, 0, 0, 0, 0], iid),
                        Err(_) => return self.drop_with("drop_unaddressable_peer"),
                    },
                };
                if let Some(ra) = self.advertisement(from, reply_to) {
                    self.counters.bump("ra_sent");
                    out.push(Output::Udp {
                        to: from,
                        payload: ra,
                        ttl: None,
                    });
                    out.push(Output::Event(Event::RsAnswered { peer: from }));
                }
            }
            NdRepr::NeighborSolicit { target, .. } => {
                if src.is_unspecified() {
                    return self.drop_with("drop_ns_from_unspecified");
                }
                if !self.originator_ok(now, from, &src, packet, out) {
                    return;
                }
                if target != self.address && target != ROUTER_LINK_LOCAL {
                    return self.drop_with("drop_ns_not_for_router");
                }
                self.counters.bump("na_sent");
                let na = NdRepr::NeighborAdvert {
                    flags: NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
                    target,
                    target_lla: Some(self.lla),
                };
                out.push(Output::Udp {
                    to: from,
                    payload: na.emit(ROUTER_LINK_LOCAL, src),
                    ttl: None,
                });
            }
            NdRepr::RouterAdvert { .. } | NdRepr::NeighborAdvert { .. } => {
                self.drop_with("drop_nd_not_for_router")
            }
        }
    }

    /// One packet from the native side (the TUN): unicast to a peer in the /64 goes out over
    /// UDP to the endpoint its address names.
    pub fn handle_tun(&mut self, packet: &[u8], out: &mut Vec<Output>) {
        let packet = match Ipv6Packet::new_checked(packet) {
            Ok(p) => p,
            Err(e) => return self.drop_with(e.reason()),
        };
        let dst = packet.dst_addr();
        if dst.is_multicast() {
            return self.drop_with("tun_drop_multicast");
        }
        if !self.in_prefix(&dst) {
            return self.drop_with("tun_drop_not_6bed4");
        }
        let target = match addr::decode(self.cfg.profile, &dst) {
            Ok(d) if d.endpoint == self.cfg.listen => return self.drop_with("tun_drop_loop"),
            Ok(d) => d,
            Err(_) => return self.drop_with("tun_drop_undecodable_destination"),
        };
        if packet.as_bytes().len() > MIN_MTU {
            self.counters.bump("packet_too_big_sent");
            let ptb =
                icmpv6::packet_too_big(self.address, packet.src_addr(), MIN_MTU as u32, packet.as_bytes());
            out.push(Output::Tun(ptb));
            return;
        }
        self.counters.bump("from_native");
        out.push(Output::Udp {
            to: target.endpoint,
            payload: packet.as_bytes().to_vec(),
            ttl: None,
        });
    }
}

fn slot_of(ep: SocketAddrV4) -> usize {
    // A cheap, fixed mix of the endpoint; collisions only weaken the rate limit.
    let x = u64::from(u32::from(*ep.ip())) << 16 | u64::from(ep.port());
    let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 54) as usize % RATE_SLOTS
}

#[cfg(test)]
mod tests;

//! The 6bed4 peer as a sans-IO state machine (spec §4).
//!
//! The peer solicits an address from its router, configures it, keeps its NAT mapping open
//! with keepalives, and finds direct paths ("bypass") to other peers with Neighbor
//! Solicitations sent straight to the IPv4:port their addresses name. Both sides probe: a
//! peer probes when it first sends to a neighbour and when it first hears from one via the
//! router, which is what opens port-restricted NATs. Every timer is a field of
//! [`PeerConfig`], so a lab can compress a 30 s keepalive into a second and a unit test can
//! run an hour of protocol in microseconds.

mod neighbours;

use crate::addr;
use crate::counters::Counters;
use crate::events::Event;
use crate::io::{ConfigChange, Output};
use crate::profile::{prefix_to_string, Profile};
use crate::wire::nd::{NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED};
use crate::wire::{Datagram, Ipv6Packet, NdRepr};
pub use neighbours::PathState;
use neighbours::{Neighbours, ProbeOutcome};
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ROUTER_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0);

/// Keepalive settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub period: Duration,
    /// IPv4 TTL of keepalives: enough to reach the local NATs, not the router.
    pub ttl: u8,
}

/// How a peer is set up. [`PeerConfig::new`] gives the spec's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub profile: Profile,
    /// The router's IPv4:port; Router Advertisements are accepted from here only.
    pub router: SocketAddrV4,
    /// The 14-bit local id appended to the advertised prefix (layout C).
    pub lanip: u16,
    /// First gap between Router Solicitations; each next gap is twice the last plus this.
    pub rs_initial: Duration,
    /// Largest gap between Router Solicitations.
    pub rs_max: Duration,
    /// `None` turns keepalives off.
    pub keepalive: Option<Keepalive>,
    /// Re-solicit this long after the last accepted RA, to refresh the address and notice a
    /// changed mapping even when no data flows.
    pub refresh: Duration,
    pub bypass: bool,
    /// Bypass probes per attempt.
    pub probes: u32,
    /// Gap between bypass probes; an attempt fails one gap after its last probe.
    pub probe_interval: Duration,
    /// A confirmed direct path is re-confirmed after this long.
    pub reachable: Duration,
    /// A failed path is not probed again for this long.
    pub holddown: Duration,
    /// Install a default route through the tunnel.
    pub default_route: bool,
}

impl PeerConfig {
    pub fn new(profile: Profile, router: SocketAddrV4) -> Self {
        PeerConfig {
            profile,
            router,
            lanip: 1,
            rs_initial: Duration::from_secs(1),
            rs_max: Duration::from_secs(30),
            keepalive: Some(Keepalive {
                period: Duration::from_secs(30),
                ttl: 3,
            }),
            refresh: Duration::from_secs(900),
            bypass: true,
            probes: 3,
            probe_interval: Duration::from_millis(200),
            reachable: Duration::from_secs(30),
            holddown: Duration::from_secs(30),
            default_route: false,
        }
    }
}

/// What the peer holds once the router has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv6Addr,
    /// The external IPv4:port the router saw (the NAT mapping).
    pub external: SocketAddrV4,
    /// The router's /64.
    pub prefix: [u8; 8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Solicit {
    attempt: u32,
    next_at: Instant,
    gap: Duration,
}

/// A 6bed4 peer.
#[derive(Debug)]
pub struct Peer {
    cfg: PeerConfig,
    lease: Option<Lease>,
    /// `Some` while soliciting: at start, and again when a refresh or a mapping change asks.
    solicit: Option<Solicit>,
    next_keepalive: Option<Instant>,
    next_refresh: Option<Instant>,
    routes_installed: Vec<(Ipv6Addr, u8)>,
    neighbours: Neighbours,
    counters: Counters,
}

impl Peer {
    pub fn new(cfg: PeerConfig, now: Instant) -> Peer {
        Peer {
            solicit: Some(Solicit {
                attempt: 0,
                next_at: now,
                gap: cfg.rs_initial,
            }),
            neighbours: Neighbours::new(),
            cfg,
            lease: None,
            next_keepalive: None,
            next_refresh: None,
            routes_installed: Vec::new(),
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }
    pub fn lease(&self) -> Option<Lease> {
        self.lease
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
    /// The path traffic to `neighbour` takes now.
    pub fn path(&self, neighbour: &Ipv6Addr) -> PathState {
        self.neighbours.state(neighbour)
    }

    /// When [`Peer::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.solicit.map(|s| s.next_at),
            self.next_keepalive,
            self.next_refresh,
            self.neighbours.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Some(s) = self.solicit {
            if now >= s.next_at {
                self.send_rs(now, s, out);
            }
        }
        if let (Some(at), Some(ka)) = (self.next_keepalive, self.cfg.keepalive) {
            if now >= at && self.lease.is_some() {
                self.counters.bump("keepalives_sent");
                out.push(Output::Udp {
                    to: self.cfg.router,
                    payload: Vec::new(),
                    ttl: Some(ka.ttl),
                });
                out.push(Output::Event(Event::KeepaliveSent { ttl: ka.ttl }));
                self.next_keepalive = Some(now + ka.period);
            }
        }
        if let Some(at) = self.next_refresh {
            if now >= at {
                self.next_refresh = None;
                self.start_soliciting(now);
                if let Some(s) = self.solicit {
                    self.send_rs(now, s, out);
                }
            }
        }
        if let Some(lease) = self.lease {
            self.neighbours
                .handle_timeout(now, &self.cfg, &lease, &mut self.counters, out);
        }
    }

    fn start_soliciting(&mut self, now: Instant) {
        if self.solicit.is_none() {
            self.solicit = Some(Solicit {
                attempt: 0,
                next_at: now,
                gap: self.cfg.rs_initial,
            });
        }
    }

    fn send_rs(&mut self, now: Instant, s: Solicit, out: &mut Vec<Output>) {
        let rs = NdRepr::RouterSolicit { source_lla: None }.emit(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS);
        self.counters.bump("rs_sent");
        out.push(Output::Udp {
            to: self.cfg.router,
            payload: rs,
            ttl: None,
        });
        out.push(Output::Event(Event::RsSent {
            attempt: s.attempt + 1,
        }));
        // The first gap is rs_initial; each next one doubles and adds it: 1, 3, 7, 15, 30 s.
        let next_gap = (s.gap * 2 + self.cfg.rs_initial).min(self.cfg.rs_max);
        self.solicit = Some(Solicit {
            attempt: s.attempt + 1,
            next_at: now + s.gap,
            gap: next_gap,
        });
    }

    fn drop_with(&mut self, reason: &'static str) {
        self.counters.bump(reason);
    }

    /// One packet the kernel sent into the tunnel interface.
    pub fn handle_tun(&mut self, now: Instant, packet: &[u8], out: &mut Vec<Output>) {
        let Some(lease) = self.lease else {
            return self.drop_with("tun_drop_no_address");
        };
        let packet = match Ipv6Packet::new_checked(packet) {
            Ok(p) => p,
            Err(e) => return self.drop_with(e.reason()),
        };
        let dst = packet.dst_addr();
        if dst.is_multicast() {
            // The kernel's own MLD reports and solicitations: the tunnel has no multicast.
            return self.drop_with("tun_drop_multicast");
        }
        if packet.src_addr() != lease.address {
            return self.drop_with("tun_drop_foreign_source");
        }
        if self.cfg.bypass {
            if let Some(endpoint) = self.neighbour_endpoint(&lease, &dst) {
                if let Some(direct) =
                    self.neighbours
                        .on_send(now, dst, endpoint, &self.cfg, &lease, &mut self.counters, out)
                {
                    self.counters.bump("tx_direct");
                    out.push(Output::Udp {
                        to: direct,
                        payload: packet.as_bytes().to_vec(),
                        ttl: None,
                    });
                    return;
                }
            }
        }
        self.counters.bump("tx_via_router");
        out.push(Output::Udp {
            to: self.cfg.router,
            payload: packet.as_bytes().to_vec(),
            ttl: None,
        });
    }

    /// The endpoint of `dst` if it is another peer under the same router prefix.
    fn neighbour_endpoint(&self, lease: &Lease, dst: &Ipv6Addr) -> Option<SocketAddrV4> {
        if dst.octets()[..8] != lease.prefix || *dst == lease.address {
            return None;
        }
        let d = addr::decode(self.cfg.profile, dst).ok()?;
        let is_router = d.endpoint == self.cfg.router && (d.lanip == 0 || self.cfg.profile == Profile::V01);
        (!is_router).then_some(d.endpoint)
    }

    /// One datagram from the tunnel socket.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8], out: &mut Vec<Output>) {
        self.counters.bump("rx_datagrams");
        let packet = match Datagram::parse(payload) {
            Ok(Datagram::Keepalive) => return self.drop_with("drop_keepalive"),
            Ok(Datagram::Ipv6(p)) => p,
            Err(e) => return self.drop_with(e.reason()),
        };
        let nd_type = (packet.next_header() == 58)
            .then(|| packet.payload().first().copied())
            .flatten()
            .filter(|&t| NdRepr::is_nd_type(t));
        if from == self.cfg.router {
            match nd_type {
                Some(_) => self.handle_nd_from_router(now, from, &packet, out),
                None => self.handle_data_from_router(now, &packet, out),
            }
        } else {
            self.handle_direct(now, from, &packet, nd_type.is_some(), out);
        }
    }

    fn handle_nd_from_router(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        packet: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) {
        let reject = |peer: &mut Peer, reason: &'static str, out: &mut Vec<Output>| {
            peer.counters.bump("ra_rejected");
            peer.counters.bump(reason);
            out.push(Output::Event(Event::RaRejected {
                reason: reason.to_string(),
                from,
            }));
        };
        let nd = match NdRepr::parse(packet) {
            Ok(nd) => nd,
            Err(e) => {
                if packet.payload().first() == Some(&134) {
                    return reject(self, e.reason(), out);
                }
                return self.drop_with(e.reason());
            }
        };
        let NdRepr::RouterAdvert { prefixes, .. } = nd else {
            // The router answers our NSs only if we send any; nothing else is expected.
            return self.drop_with("drop_unexpected_nd_from_router");
        };
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        if !addr::is_link_local(&src) {
            return reject(self, "ra_source_not_link_local", out);
        }
        let held = self.lease.map(|l| l.address);
        let dst_ok = dst == ALL_NODES || addr::is_link_local(&dst) || Some(dst) == held;
        if !dst_ok {
            return reject(self, "ra_bad_destination", out);
        }
        let Some(pio) = prefixes.iter().find(|p| p.on_link() && p.autonomous()) else {
            return reject(self, "ra_no_usable_prefix", out);
        };
        if pio.prefix_len != self.cfg.profile.pio_prefix_len() {
            return reject(self, "ra_prefix_length", out);
        }
        if pio.preferred_lifetime > pio.valid_lifetime {
            return reject(self, "ra_lifetimes", out);
        }
        let (prefix, pio_iid) = addr::split(&pio.prefix);
        let lease = match self.cfg.profile {
            Profile::Current => {
                // Bits past the 114 must be zero, and the rest must name an endpoint.
                if pio_iid[6] & 0x3F != 0 || pio_iid[7] != 0 {
                    return reject(self, "ra_prefix_bits_past_length", out);
                }
                let Ok((external, _)) = addr::layout_c_decode(pio_iid) else {
                    return reject(self, "ra_prefix_without_endpoint", out);
                };
                let Ok(address) = addr::encode(Profile::Current, prefix, external, self.cfg.lanip) else {
                    return reject(self, "ra_unaddressable", out);
                };
                Lease {
                    address,
                    external,
                    prefix,
                }
            }
            Profile::V01 => {
                if pio_iid != [0; 8] {
                    return reject(self, "ra_prefix_bits_past_length", out);
                }
                if !addr::is_link_local(&dst) {
                    // Sent to our stale address: the mapping changed, but only a fresh RS
                    // tells a v01 peer its new identifier.
                    self.counters.bump("ra_mapping_changed");
                    self.start_soliciting(now);
                    return;
                }
                let (_, iid) = addr::split(&dst);
                let Ok(external) = addr::layout_v_decode(iid) else {
                    return reject(self, "ra_destination_not_eui64", out);
                };
                Lease {
                    address: addr::join(prefix, iid),
                    external,
                    prefix,
                }
            }
        };
        self.counters.bump("ra_accepted");
        out.push(Output::Event(Event::RaAccepted {
            prefix: prefix_to_string(prefix),
            external: lease.external,
        }));
        self.solicit = None;
        self.next_refresh = Some(now + self.cfg.refresh);
        let routes: Vec<_> = prefixes
            .iter()
            .filter(|p| !p.on_link() && !p.autonomous())
            .map(|p| (p.prefix, p.prefix_len))
            .collect();
        self.apply_lease(now, lease, out);
        for route in routes {
            if !self.routes_installed.contains(&route) {
                self.routes_installed.push(route);
                out.push(Output::Config(ConfigChange::AddRoute {
                    prefix: route.0,
                    prefix_len: route.1,
                    via: Some(ROUTER_LINK_LOCAL),
                }));
            }
        }
    }

    fn apply_lease(&mut self, now: Instant, lease: Lease, out: &mut Vec<Output>) {
        match self.lease {
            Some(old) if old == lease => {}
            Some(old) => {
                self.counters.bump("address_changes");
                out.push(Output::Config(ConfigChange::AddAddress {
                    address: lease.address,
                    prefix_len: 64,
                }));
                out.push(Output::Config(ConfigChange::RemoveAddress {
                    address: old.address,
                    prefix_len: 64,
                }));
                out.push(Output::Event(Event::AddressChanged {
                    old: old.address,
                    address: lease.address,
                    external: lease.external,
                }));
                // Our endpoint changed, so every direct path was built on a dead mapping.
                self.neighbours.clear("address changed", out);
                self.lease = Some(lease);
            }
            None => {
                out.push(Output::Config(ConfigChange::AddAddress {
                    address: lease.address,
                    prefix_len: 64,
                }));
                if self.cfg.default_route {
                    out.push(Output::Config(ConfigChange::AddRoute {
                        prefix: Ipv6Addr::UNSPECIFIED,
                        prefix_len: 0,
                        via: Some(ROUTER_LINK_LOCAL),
                    }));
                }
                out.push(Output::Event(Event::AddressConfigured {
                    address: lease.address,
                    external: lease.external,
                }));
                self.lease = Some(lease);
                self.next_keepalive = self.cfg.keepalive.map(|k| now + k.period);
            }
        }
    }

    fn handle_data_from_router(&mut self, now: Instant, packet: &Ipv6Packet<&[u8]>, out: &mut Vec<Output>) {
        let Some(lease) = self.lease else {
            return self.drop_with("drop_data_before_address");
        };
        if packet.dst_addr() != lease.address {
            return self.drop_with("drop_not_for_us");
        }
        let src = packet.src_addr();
        if self.cfg.bypass {
            if let Some(endpoint) = self.neighbour_endpoint(&lease, &src) {
                // Heard from a neighbour via the router: probe back, so both NATs open.
                self.neighbours
                    .on_heard(now, src, endpoint, &self.cfg, &lease, &mut self.counters, out);
            }
        }
        self.counters.bump("rx_via_router");
        out.push(Output::Tun(packet.as_bytes().to_vec()));
    }

    fn handle_direct(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        packet: &Ipv6Packet<&[u8]>,
        is_nd: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(lease) = self.lease else {
            return self.drop_with("drop_direct_before_address");
        };
        let src = packet.src_addr();
        // Originator check: the inner source must be a peer under our prefix whose address
        // names exactly the IPv4:port this came from.
        if self.neighbour_endpoint(&lease, &src) != Some(from) {
            return self.drop_with("drop_originator_mismatch");
        }
        if !self.cfg.bypass {
            return self.drop_with("drop_direct_bypass_off");
        }
        if !is_nd {
            if packet.dst_addr() != lease.address {
                return self.drop_with("drop_not_for_us");
            }
            self.counters.bump("rx_direct");
            self.neighbours
                .on_heard(now, src, from, &self.cfg, &lease, &mut self.counters, out);
            out.push(Output::Tun(packet.as_bytes().to_vec()));
            return;
        }
        let nd = match NdRepr::parse(packet) {
            Ok(nd) => nd,
            Err(e) => return self.drop_with(e.reason()),
        };
        match nd {
            NdRepr::NeighborSolicit { target, .. } => {
                if target != lease.address {
                    return self.drop_with("drop_ns_not_for_us");
                }
                self.counters.bump("na_sent");
                let na = NdRepr::NeighborAdvert {
                    flags: NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
                    target,
                    target_lla: Some(addr::link_layer(lease.external)),
                };
                out.push(Output::Udp {
                    to: from,
                    payload: na.emit(lease.address, src),
                    ttl: None,
                });
                self.neighbours
                    .on_heard(now, src, from, &self.cfg, &lease, &mut self.counters, out);
            }
            NdRepr::NeighborAdvert { target, flags, .. } => {
                if packet.dst_addr() != lease.address || flags & NA_FLAG_SOLICITED == 0 {
                    return self.drop_with("drop_na_unsolicited");
                }
                match self.neighbours.on_advert(now, target, from, &self.cfg, out) {
                    ProbeOutcome::Confirmed => self.counters.bump("direct_confirmed"),
                    ProbeOutcome::Unmatched => self.counters.bump("drop_na_unmatched"),
                }
            }
            NdRepr::RouterSolicit { .. } | NdRepr::RouterAdvert { .. } => {
                self.drop_with("drop_router_nd_not_from_router")
            }
        }
    }
}

#[cfg(test)]
mod tests;

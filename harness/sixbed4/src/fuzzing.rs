//! Entry points for fuzzing the datagram paths of both roles.
//!
//! The cargo-fuzz targets in `fuzz/` call these; so do ordinary tests, so the same bodies
//! run on machines without a nightly toolchain. Each feeds arbitrary bytes to a core from
//! the network and from the TUN and checks invariants a broken core would violate.

use crate::addr;
use crate::io::Output;
use crate::peer::{Peer, PeerConfig};
use crate::profile::Profile;
use crate::router::{Router, RouterConfig};
use crate::wire::{Ipv6Packet, NdRepr};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const ROUTER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 25790);
const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000);

fn profile_of(byte: u8) -> Profile {
    if byte & 1 == 0 {
        Profile::Current
    } else {
        Profile::V01
    }
}

/// Sender endpoint chosen by the first bytes of the input (the router's, or another).
fn sender(data: &[u8]) -> SocketAddrV4 {
    match data.get(1) {
        Some(b) if b & 0x80 != 0 => ROUTER,
        Some(&b) => SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, b), 40000 + u16::from(b) * 2),
        None => ROUTER,
    }
}

/// The router never panics, never sends to multicast/broadcast, never reflects a datagram
/// to its sender unless it is an answer it generated itself (RA, NA, ICMPv6 error).
pub fn router_datagram(data: &[u8]) {
    let profile = profile_of(data.first().copied().unwrap_or(0));
    let listen = SocketAddrV4::new(*ROUTER.ip(), profile.router_port());
    let Ok(mut router) = Router::new(RouterConfig::new(profile, listen)) else {
        return;
    };
    let from = sender(data);
    let payload = data.get(2..).unwrap_or(&[]);
    let mut out = Vec::new();
    router.handle_udp(Instant::now(), from, payload, &mut out);
    router.handle_tun(payload, &mut out);
    for o in &out {
        if let Output::Udp {
            to, payload: sent, ..
        } = o
        {
            assert!(!to.ip().is_multicast() && !to.ip().is_broadcast(), "sent to {to}");
            if *to == from && sent.as_slice() == payload {
                panic!("reflected a datagram unchanged to its sender");
            }
        }
    }
}

/// A configured peer never panics, never loses its lease to anything but a valid RA from
/// its router, and never sends data from an address other than its own.
pub fn peer_datagram(data: &[u8]) {
    let profile = profile_of(data.first().copied().unwrap_or(0));
    let router_ep = SocketAddrV4::new(*ROUTER.ip(), profile.router_port());
    let t0 = Instant::now();
    let mut peer = Peer::new(PeerConfig::new(profile, router_ep), t0);
    let Ok(mut router) = Router::new(RouterConfig::new(profile, router_ep)) else {
        return;
    };
    let mut out = Vec::new();
    peer.handle_timeout(t0, &mut out);
    let rs = out.iter().find_map(|o| match o {
        Output::Udp { payload, .. } => Some(payload.clone()),
        _ => None,
    });
    let Some(rs) = rs else { return };
    let mut rout = Vec::new();
    router.handle_udp(t0, ME, &rs, &mut rout);
    for o in rout {
        if let Output::Udp { payload, .. } = o {
            peer.handle_udp(t0, router_ep, &payload, &mut out);
        }
    }
    let Some(lease) = peer.lease() else { return };
    out.clear();
    let from = if sender(data) == ROUTER {
        router_ep
    } else {
        sender(data)
    };
    let payload = data.get(2..).unwrap_or(&[]);
    let now = t0 + Duration::from_millis(u64::from(data.get(1).copied().unwrap_or(0)));
    peer.handle_udp(now, from, payload, &mut out);
    peer.handle_tun(now, payload, &mut out);
    peer.handle_timeout(now + Duration::from_secs(1), &mut out);
    if from != router_ep {
        assert_eq!(
            peer.lease(),
            Some(lease),
            "lease changed by a datagram not from the router"
        );
    }
    let current = peer.lease().map(|l| l.address);
    for o in &out {
        if let Output::Udp { payload: sent, .. } = o {
            if let Ok(p) = Ipv6Packet::new_checked(sent.as_slice()) {
                let is_rs = matches!(NdRepr::parse(&p), Ok(NdRepr::RouterSolicit { .. }));
                assert!(
                    is_rs || Some(p.src_addr()) == current || Some(p.src_addr()) == Some(lease.address),
                    "sent from a foreign source {}",
                    p.src_addr()
                );
            }
        }
    }
    let _ = addr::decode(profile, &lease.address);
}

/// The ND parser on arbitrary bytes.
pub fn nd_parse(data: &[u8]) {
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        if let Ok(nd) = NdRepr::parse(&p) {
            // Whatever parses must re-emit to something that parses to the same message.
            let again = nd.emit(p.src_addr(), p.dst_addr());
            let reparsed = Ipv6Packet::new_checked(again.as_slice())
                .ok()
                .and_then(|q| NdRepr::parse(&q).ok());
            assert_eq!(reparsed, Some(nd));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn router_survives(data in proptest::collection::vec(any::<u8>(), 0..1400)) { router_datagram(&data) }
        #[test]
        fn peer_survives(data in proptest::collection::vec(any::<u8>(), 0..1400)) { peer_datagram(&data) }
        #[test]
        fn nd_reemits(data in proptest::collection::vec(any::<u8>(), 0..300)) { nd_parse(&data) }
    }

    /// Structured inputs reach deeper than random bytes: valid ND messages with one byte
    /// flipped, from the router and from others.
    #[test]
    fn mutated_valid_messages() {
        let rs = NdRepr::RouterSolicit { source_lla: None }
            .emit(std::net::Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap());
        for i in 0..rs.len() {
            for bit in 0..8 {
                let mut m = rs.clone();
                m[i] ^= 1 << bit;
                let mut data = vec![0u8, 0x80];
                data.extend_from_slice(&m);
                router_datagram(&data);
                peer_datagram(&data);
                data[1] = 7;
                peer_datagram(&data);
            }
        }
    }
}

use super::*;
use crate::wire::icmpv6::{TYPE_PACKET_TOO_BIG, TYPE_TIME_EXCEEDED};
use crate::wire::{Icmpv6Packet, Ipv6Repr};
use proptest::prelude::*;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn ep(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

const ROUTER: &str = "145.136.0.1:25790";
const PEER_A: &str = "145.136.0.2:55796";
const PEER_B: &str = "203.0.113.7:40000";

fn router(profile: Profile, listen: &str) -> Router {
    Router::new(RouterConfig::new(profile, ep(listen))).unwrap()
}

fn rs(source_lla: Option<[u8; 6]>) -> Vec<u8> {
    NdRepr::RouterSolicit { source_lla }.emit(Ipv6Addr::UNSPECIFIED, v6("ff02::2"))
}

/// The only UDP datagram in `out`.
fn sole_udp(out: &[Output]) -> (SocketAddrV4, Vec<u8>) {
    let udp: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Udp { to, payload, .. } => Some((*to, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(udp.len(), 1, "expected one datagram, got {out:?}");
    udp.into_iter().next().unwrap()
}

fn parse_ra(bytes: &[u8]) -> (Ipv6Repr, NdRepr) {
    let p = Ipv6Packet::new_checked(bytes).unwrap();
    (Ipv6Repr::parse(&p), NdRepr::parse(&p).unwrap())
}

fn pio(nd: &NdRepr) -> PrefixInfo {
    match nd {
        NdRepr::RouterAdvert { prefixes, .. } => prefixes[0],
        other => panic!("not an RA: {other:?}"),
    }
}

/// A data packet (an echo request) from `src` to `dst`.
fn data(src: &str, dst: &str, hop_limit: u8, len: usize) -> Vec<u8> {
    let body = vec![0u8; len.saturating_sub(48)];
    icmpv6::build(v6(src), v6(dst), hop_limit, 128, 0, &body)
}

fn addr_of(r: &Router, peer: &str, lanip: u16) -> String {
    addr::encode(r.config().profile, r.config().prefix, ep(peer), lanip)
        .unwrap()
        .to_string()
}

#[test]
fn rs_of_48_and_56_bytes_get_an_ra_back_to_the_exact_mapping() {
    let mut r = router(Profile::Current, ROUTER);
    for source_lla in [None, Some([0, 0, 0, 0, 0, 1])] {
        let mut out = vec![];
        r.handle_udp(Instant::now(), ep(PEER_A), &rs(source_lla), &mut out);
        let (to, ra) = sole_udp(&out);
        assert_eq!(to, ep(PEER_A));
        let (ip, nd) = parse_ra(&ra);
        assert_eq!((ip.src, ip.dst, ip.hop_limit), (v6("fe80::"), v6("ff02::1"), 255));
        let p = pio(&nd);
        // Spec §9: the captured RA for this very peer.
        assert_eq!(p.prefix, v6("fc64:bed:9188:1:9088:2:d9f4:4000"));
        assert_eq!(p.prefix_len, 114);
        assert!(p.on_link() && p.autonomous() && p.preferred_lifetime <= p.valid_lifetime);
        let NdRepr::RouterAdvert {
            router_lifetime,
            reachable_time,
            ..
        } = nd
        else {
            unreachable!()
        };
        assert!(
            router_lifetime <= 9000 && reachable_time <= 3_600_000,
            "RFC 4861 §6.2.1 limits"
        );
    }
    assert_eq!(r.counters().get("ra_sent"), 2);
}

#[test]
fn v01_ra_goes_to_the_link_local_iid_with_a_64_prefix() {
    let mut r = router(Profile::V01, "145.136.0.1:25788");
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_B), &rs(None), &mut out);
    let (_, ra) = sole_udp(&out);
    let (ip, nd) = parse_ra(&ra);
    assert_eq!(ip.dst, v6("fe80::429c:cbff:fe00:7107"));
    assert_eq!(
        (pio(&nd).prefix, pio(&nd).prefix_len),
        (v6("2001:67c:127c::"), 64)
    );
    // An odd port cannot be addressed in v01: no RA.
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep("203.0.113.7:40001"), &rs(None), &mut out);
    assert!(out.is_empty());
    assert_eq!(r.counters().get("drop_unaddressable_peer"), 1);
}

#[test]
fn extra_routes_are_announced_without_l_and_a() {
    let mut cfg = RouterConfig::new(Profile::Current, ep(ROUTER));
    cfg.routes.push((v6("2001:db8:1::"), 48));
    let mut r = Router::new(cfg).unwrap();
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &rs(None), &mut out);
    let (_, nd) = parse_ra(&sole_udp(&out).1);
    let NdRepr::RouterAdvert { prefixes, .. } = nd else {
        unreachable!()
    };
    assert_eq!(prefixes.len(), 2);
    assert_eq!(
        (prefixes[1].prefix, prefixes[1].prefix_len, prefixes[1].flags),
        (v6("2001:db8:1::"), 48, 0)
    );
}

#[test]
fn invalid_solicitations_get_nothing_and_are_counted() {
    let mut r = router(Profile::Current, ROUTER);
    let good = rs(None);
    let mut hop = good.clone();
    hop[7] = 254;
    let mut sum = good.clone();
    sum[42] ^= 0xff;
    let code = icmpv6::build(Ipv6Addr::UNSPECIFIED, v6("ff02::2"), 255, 133, 1, &[0; 4]);
    let zero = icmpv6::build(
        Ipv6Addr::UNSPECIFIED,
        v6("ff02::2"),
        255,
        133,
        0,
        &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    );
    let truncated = good[..44].to_vec();
    for bad in [hop, sum, code, zero, truncated, vec![0xff; 7], vec![0x45; 100]] {
        let mut out = vec![];
        r.handle_udp(Instant::now(), ep(PEER_A), &bad, &mut out);
        assert!(out.is_empty(), "answered {bad:?}");
    }
    for name in [
        "bad_hop_limit",
        "bad_checksum",
        "bad_code",
        "zero_length_option",
        "length_mismatch",
        "truncated",
        "bad_version",
    ] {
        assert!(
            r.counters().get(name) >= 1,
            "{name} not counted: {:?}",
            r.counters()
        );
    }
    // And it still serves a valid one afterwards.
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &good, &mut out);
    assert_eq!(sole_udp(&out).0, ep(PEER_A));
}

#[test]
fn relays_between_peers_decrementing_the_hop_limit() {
    let mut r = router(Profile::Current, ROUTER);
    let (a, b) = (addr_of(&r, PEER_A, 1), addr_of(&r, PEER_B, 1));
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &data(&a, &b, 64, 100), &mut out);
    let (to, bytes) = sole_udp(&out);
    assert_eq!(to, ep(PEER_B));
    assert_eq!(Ipv6Packet::new_checked(&bytes[..]).unwrap().hop_limit(), 63);
}

#[test]
fn hop_limit_one_gets_time_exceeded_back() {
    let mut r = router(Profile::Current, ROUTER);
    let (a, b) = (addr_of(&r, PEER_A, 1), addr_of(&r, PEER_B, 1));
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &data(&a, &b, 1, 100), &mut out);
    let (to, bytes) = sole_udp(&out);
    assert_eq!(to, ep(PEER_A));
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!((p.src_addr(), p.dst_addr()), (r.address(), v6(&a)));
    assert_eq!(
        Icmpv6Packet::new_checked(p.payload()).unwrap().msg_type(),
        TYPE_TIME_EXCEEDED
    );
}

#[test]
fn oversized_packets_get_packet_too_big_not_truncation() {
    let mut r = router(Profile::Current, ROUTER);
    let (a, b) = (addr_of(&r, PEER_A, 1), addr_of(&r, PEER_B, 1));
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &data(&a, &b, 64, 1280), &mut out);
    assert_eq!(sole_udp(&out).0, ep(PEER_B), "1280 bytes pass");
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &data(&a, &b, 64, 1400), &mut out);
    let (to, bytes) = sole_udp(&out);
    assert_eq!(to, ep(PEER_A));
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
    assert_eq!(icmp.msg_type(), TYPE_PACKET_TOO_BIG);
    assert_eq!(&icmp.body()[..4], &1280u32.to_be_bytes());
}

#[test]
fn mismatched_source_in_prefix_gets_an_unsolicited_ra_with_the_new_mapping() {
    let mut r = router(Profile::Current, ROUTER);
    let stale = addr_of(&r, PEER_A, 1);
    let b = addr_of(&r, PEER_B, 1);
    let moved = ep("145.136.0.2:60000");
    let t0 = Instant::now();
    let mut out = vec![];
    r.handle_udp(t0, moved, &data(&stale, &b, 64, 100), &mut out);
    let (to, ra) = sole_udp(&out);
    assert_eq!(to, moved, "goes to the new mapping");
    let (ip, nd) = parse_ra(&ra);
    assert_eq!(ip.dst, v6(&stale), "inner destination is the stale address");
    let new_prefix = addr::join(r.config().prefix, addr::layout_c_iid(moved, 0).unwrap());
    assert_eq!(pio(&nd).prefix, new_prefix);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::MappingChanged { .. }))));
    // Rate-limited per endpoint, then allowed again.
    let mut out = vec![];
    r.handle_udp(
        t0 + Duration::from_millis(100),
        moved,
        &data(&stale, &b, 64, 100),
        &mut out,
    );
    assert!(out.is_empty());
    r.handle_udp(
        t0 + Duration::from_secs(1),
        moved,
        &data(&stale, &b, 64, 100),
        &mut out,
    );
    assert_eq!(sole_udp(&out).0, moved);
}

#[test]
fn foreign_spoofed_multicast_and_reflected_packets_are_dropped() {
    let mut r = router(Profile::Current, ROUTER);
    let a = addr_of(&r, PEER_A, 1);
    let b = addr_of(&r, PEER_B, 1);
    let cases = [
        (data("2001:db8::1", &b, 64, 100), "drop_foreign_source"),
        (data("fe80::1", &b, 64, 100), "drop_spoofed_link_local"),
        (data(&a, "ff02::1", 64, 100), "drop_multicast"),
        (data(&a, &addr_of(&r, PEER_A, 2), 64, 100), "drop_reflection"),
    ];
    for (packet, reason) in cases {
        let mut out = vec![];
        r.handle_udp(Instant::now(), ep(PEER_A), &packet, &mut out);
        assert!(out.is_empty(), "{reason}: {out:?}");
        assert_eq!(r.counters().get(reason), 1, "{reason}");
    }
}

#[test]
fn packets_for_the_router_or_native_hosts_go_to_the_tun() {
    let mut r = router(Profile::Current, ROUTER);
    let a = addr_of(&r, PEER_A, 1);
    // For the router itself: delivered as it came.
    let own = r.address().to_string();
    let packet = data(&a, &own, 64, 100);
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &packet, &mut out);
    assert_eq!(out, vec![Output::Tun(packet)]);
    // For a native host: one 6bed4 hop, the hop limit drops by one (spec §4).
    let packet = data(&a, "2001:db8:ffff::1", 64, 100);
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &packet, &mut out);
    assert_eq!(out, vec![Output::Tun(data(&a, "2001:db8:ffff::1", 63, 100))]);
    assert_eq!(r.counters().get("to_native"), 1);
    // At hop limit 1 it goes no further: Time Exceeded back to the sender.
    let packet = data(&a, "2001:db8:ffff::1", 1, 100);
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &packet, &mut out);
    assert!(
        matches!(out.as_slice(), [Output::Udp { to, .. }] if *to == ep(PEER_A)),
        "{out:?}"
    );
    assert_eq!(r.counters().get("time_exceeded_sent"), 1);
}

#[test]
fn native_packets_go_to_the_endpoint_in_the_destination() {
    let mut r = router(Profile::Current, ROUTER);
    let a = addr_of(&r, PEER_A, 1);
    let packet = data("2001:db8:ffff::1", &a, 63, 200);
    let mut out = vec![];
    r.handle_tun(&packet, &mut out);
    assert_eq!(
        out,
        vec![Output::Udp {
            to: ep(PEER_A),
            payload: packet,
            ttl: None
        }]
    );
    let mut out = vec![];
    r.handle_tun(&data("2001:db8:ffff::1", "ff02::16", 1, 100), &mut out);
    r.handle_tun(
        &data("2001:db8:ffff::1", &r.address().to_string(), 1, 100),
        &mut out,
    );
    r.handle_tun(&data("2001:db8:ffff::1", "2001:db8:ffff::2", 1, 100), &mut out);
    assert!(out.is_empty());
}

#[test]
fn neighbor_solicitation_for_the_router_gets_a_router_na() {
    let mut r = router(Profile::Current, ROUTER);
    let a = addr_of(&r, PEER_A, 1);
    let ns = NdRepr::NeighborSolicit {
        target: r.address(),
        source_lla: Some(addr::link_layer(ep(PEER_A))),
    }
    .emit(v6(&a), r.address());
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(PEER_A), &ns, &mut out);
    let (to, na) = sole_udp(&out);
    assert_eq!(to, ep(PEER_A));
    let (ip, nd) = parse_ra(&na);
    assert_eq!((ip.src, ip.dst), (ROUTER_LINK_LOCAL, v6(&a)));
    assert_eq!(
        nd,
        NdRepr::NeighborAdvert {
            flags: NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
            target: r.address(),
            target_lla: Some([0xbe, 0x64, 0x91, 0x88, 0x00, 0x01]),
        }
    );
}

#[test]
fn memory_does_not_grow_with_peers() {
    let mut r = router(Profile::Current, ROUTER);
    let b = addr_of(&r, PEER_B, 1);
    let mut out = vec![];
    for i in 0..20_000u32 {
        let peer = SocketAddrV4::new(
            std::net::Ipv4Addr::from(0x0a00_0000 + i),
            1000 + (i % 50_000) as u16,
        );
        r.handle_udp(Instant::now(), peer, &rs(None), &mut out);
        // A stale source from each: the only path that writes state.
        r.handle_udp(Instant::now(), peer, &data(&b, &b, 64, 60), &mut out);
        out.clear();
    }
    assert_eq!(r.recent_mapping_changes.len(), RATE_SLOTS);
}

proptest! {
    #[test]
    fn garbage_never_panics_and_never_reaches_multicast(bytes in proptest::collection::vec(any::<u8>(), 0..1500), port in 1u16..) {
        let mut r = router(Profile::Current, ROUTER);
        let mut out = vec![];
        r.handle_udp(Instant::now(), SocketAddrV4::new("198.51.100.9".parse().unwrap(), port), &bytes, &mut out);
        r.handle_tun(&bytes, &mut out);
        for o in &out {
            if let Output::Udp { to, .. } = o {
                prop_assert!(!to.ip().is_multicast() && !to.ip().is_broadcast());
            }
        }
    }
}

//! Tests of the sans-IO core: no privileges, virtual time, deterministic.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::packet::{self, icmp};
use super::*;

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn iface(name: &str, segment: usize, address: &str, gateway: Option<&str>) -> IfaceSpec {
    IfaceSpec {
        aliases: Vec::new(),
        address6: None,
        gateway6: None,
        name: name.into(),
        segment,
        address: a(address),
        gateway: gateway.map(a),
        mtu: 1500,
        egress: Impairment::default(),
        ingress: Impairment::default(),
    }
}

fn host(name: &str, ifaces: Vec<IfaceSpec>) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        kind: NodeKind::External,
        interfaces: ifaces,
    }
}

fn segment(name: &str, net: &str, len: u8) -> SegmentSpec {
    SegmentSpec {
        name: name.into(),
        subnet: (a(net), len),
        subnet6: None,
    }
}

/// `a` (10.0.0.1) and `b` (10.0.0.2) on one /24.
fn two_hosts() -> FabricSpec {
    FabricSpec {
        seed: 1,
        segments: vec![segment("lan", "10.0.0.0", 24)],
        nodes: vec![
            host("a", vec![iface("eth0", 0, "10.0.0.1", None)]),
            host("b", vec![iface("eth0", 0, "10.0.0.2", None)]),
        ],
    }
}

const A: IfaceId = IfaceId::new(0, 0);
const B_LAN: IfaceId = IfaceId::new(1, 0);
/// In [`routed`]: the router's interfaces and host b.
const R_L: IfaceId = IfaceId::new(1, 0);
const R_R: IfaceId = IfaceId::new(1, 1);
const B: IfaceId = IfaceId::new(2, 0);

/// `a` 10.1.0.2 -- router `r` (10.1.0.1 | 10.2.0.1) -- `b` 10.2.0.2.
fn routed() -> FabricSpec {
    FabricSpec {
        seed: 7,
        segments: vec![segment("left", "10.1.0.0", 24), segment("right", "10.2.0.0", 24)],
        nodes: vec![
            host("a", vec![iface("eth0", 0, "10.1.0.2", Some("10.1.0.1"))]),
            NodeSpec {
                name: "r".into(),
                kind: NodeKind::Router { routes: vec![] },
                interfaces: vec![iface("l", 0, "10.1.0.1", None), iface("r", 1, "10.2.0.1", None)],
            },
            host("b", vec![iface("eth0", 1, "10.2.0.2", Some("10.2.0.1"))]),
        ],
    }
}

fn udp(src: &str, dst: &str, ttl: u8, payload: &[u8]) -> Vec<u8> {
    packet::build_udpv4(a(src), 4000, a(dst), 5000, ttl, payload)
}

/// A UDP packet whose payload carries a sequence number.
fn numbered(src: &str, dst: &str, seq: u32, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len.saturating_sub(28).max(4)];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    udp(src, dst, 64, &payload)
}

fn seq_of(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[28], p[29], p[30], p[31]])
}

/// Runs the fabric until nothing is pending or `end` is reached, collecting deliveries.
fn run_until(f: &mut Fabric, mut now: Instant, end: Instant) -> Vec<Delivery> {
    let mut out = Vec::new();
    loop {
        while let Some(d) = f.poll_delivery(now) {
            out.push(d);
        }
        match f.poll_timeout() {
            Some(t) if t <= end => now = t.max(now),
            _ => return out,
        }
    }
}

fn run_all(f: &mut Fabric, now: Instant) -> Vec<Delivery> {
    run_until(f, now, now + Duration::from_secs(100_000))
}

#[test]
fn hosts_on_one_segment_reach_each_other() {
    let mut f = Fabric::new(two_hosts()).unwrap();
    let t0 = Instant::now();
    let p = udp("10.0.0.1", "10.0.0.2", 64, b"hello");
    f.ingress(t0, A, p.clone());
    let d = f.poll_delivery(t0).expect("delivered at once on a perfect link");
    assert_eq!(d.iface, B_LAN);
    assert_eq!(d.packet, p);
    assert_eq!(d.at, t0);
    assert!(f.poll_delivery(t0).is_none());
    assert_eq!(f.poll_timeout(), None);
    let s = f.stats();
    let sa = s.link("a/eth0").unwrap();
    let sb = s.link("b/eth0").unwrap();
    assert_eq!((sa.sent_packets, sa.sent_bytes), (1, p.len() as u64));
    assert_eq!((sb.delivered_packets, sb.delivered_bytes), (1, p.len() as u64));
    assert_eq!(sa.dropped.total() + sb.dropped.total(), 0);
}

#[test]
fn routed_across_a_router_with_ttl_decremented() {
    let mut f = Fabric::new(routed()).unwrap();
    let t0 = Instant::now();
    f.ingress(t0, A, udp("10.1.0.2", "10.2.0.2", 64, b"across"));
    let d = f.poll_delivery(t0).expect("delivered");
    assert_eq!(d.iface, B);
    let info = packet::parse_ipv4(&d.packet).unwrap();
    assert_eq!(info.ttl, 63);
    assert!(packet::ipv4_checksum_ok(&d.packet, &info));
    assert_eq!(&d.packet[28..], b"across");
    // And back.
    f.ingress(t0, B, udp("10.2.0.2", "10.1.0.2", 5, b"back"));
    let d = f.poll_delivery(t0).expect("delivered back");
    assert_eq!(d.iface, A);
    assert_eq!(packet::parse_ipv4(&d.packet).unwrap().ttl, 4);
    let s = f.stats();
    assert_eq!(s.link("r/l").unwrap().delivered_packets, 1);
    assert_eq!(s.link("r/r").unwrap().sent_packets, 1);
}

#[test]
fn ttl_one_earns_time_exceeded_from_the_incoming_interface() {
    let mut f = Fabric::new(routed()).unwrap();
    let t0 = Instant::now();
    let original = udp("10.1.0.2", "10.2.0.2", 1, b"expiring");
    f.ingress(t0, A, original.clone());
    let d = f.poll_delivery(t0).expect("an ICMP error comes back");
    assert_eq!(d.iface, A);
    let info = packet::parse_ipv4(&d.packet).unwrap();
    assert_eq!((info.src, info.dst), (a("10.1.0.1"), a("10.1.0.2")));
    assert_eq!(info.protocol, packet::PROTO_ICMP);
    assert!(packet::ipv4_checksum_ok(&d.packet, &info));
    let icmp_msg = &d.packet[20..];
    assert_eq!((icmp_msg[0], icmp_msg[1]), (icmp::TIME_EXCEEDED, 0));
    assert_eq!(packet::internet_checksum(icmp_msg), 0);
    assert_eq!(&icmp_msg[8..], &original[..], "quotes the whole (short) original");
    assert!(f.poll_delivery(t0).is_none(), "nothing reaches b");
    assert_eq!(f.stats().link("r/l").unwrap().dropped.ttl, 1);
}

#[test]
fn no_host_and_no_route_are_counted() {
    let mut f = Fabric::new(two_hosts()).unwrap();
    let t0 = Instant::now();
    f.ingress(t0, A, udp("10.0.0.1", "10.0.0.99", 64, b"?"));
    f.ingress(t0, A, udp("10.0.0.1", "192.0.2.1", 64, b"?"));
    assert!(f.poll_delivery(t0).is_none());
    let s = f.stats();
    let d = s.link("a/eth0").unwrap().dropped;
    assert_eq!((d.no_host, d.no_route), (1, 1));

    // A router without a route counts it and answers with net unreachable.
    let mut f = Fabric::new(routed()).unwrap();
    f.ingress(t0, A, udp("10.1.0.2", "192.0.2.1", 64, b"?"));
    let d = f.poll_delivery(t0).expect("net unreachable");
    assert_eq!(d.iface, A);
    assert_eq!(
        (d.packet[20], d.packet[21]),
        (icmp::DEST_UNREACHABLE, icmp::CODE_NET_UNREACHABLE)
    );
    assert_eq!(f.stats().link("r/l").unwrap().dropped.no_route, 1);
}

#[test]
fn garbage_and_unroutable_ipv6_are_counted_not_delivered() {
    let mut f = Fabric::new(two_hosts()).unwrap();
    let t0 = Instant::now();
    f.ingress(t0, A, vec![]);
    f.ingress(t0, A, vec![0x45; 10]);
    f.ingress(t0, A, vec![0x11; 100]);
    assert!(f.poll_delivery(t0).is_none());
    assert_eq!(f.stats().link("a/eth0").unwrap().dropped.malformed, 3);
}

fn ipv6_packet() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 4, 59, 64];
    p.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"fe80::2".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(b"six!");
    p
}

#[test]
fn ipv6_goes_to_the_other_of_two_hosts_else_to_the_gateway_else_nowhere() {
    let mut f = Fabric::new(two_hosts()).unwrap();
    let t0 = Instant::now();
    f.ingress(t0, A, ipv6_packet());
    assert_eq!(f.poll_delivery(t0).unwrap().iface, B_LAN);

    let mut spec = two_hosts();
    spec.nodes
        .push(host("c", vec![iface("eth0", 0, "10.0.0.3", None)]));
    let mut f = Fabric::new(spec).unwrap();
    f.ingress(t0, A, ipv6_packet());
    assert!(f.poll_delivery(t0).is_none());
    assert_eq!(f.stats().link("a/eth0").unwrap().dropped.no_route, 1);

    // With a gateway it goes there; a fabric router does not route IPv6 and counts it.
    let mut f = Fabric::new(routed()).unwrap();
    f.ingress(t0, A, ipv6_packet());
    assert!(f.poll_delivery(t0).is_none());
    assert_eq!(f.stats().link("r/l").unwrap().delivered_packets, 1);
    assert_eq!(f.stats().link("r/l").unwrap().dropped.no_route, 1);
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn ipv6_to(src: &str, dst: &str) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 4, 59, 64];
    p.extend_from_slice(&v6(src).octets());
    p.extend_from_slice(&v6(dst).octets());
    p.extend_from_slice(b"six!");
    p
}

/// A dual-stack segment: `gw` 2001:db8:6::1, `srv` ::2 (default route via `gw`), `c` ::3,
/// and `v4only` without IPv6 (so the two-hosts rule cannot be what delivers).
fn dual_stack() -> FabricSpec {
    let mut seg = segment("native", "192.0.2.0", 24);
    seg.subnet6 = Some((v6("2001:db8:6::"), 64));
    let six = |name: &str, a4: &str, a6: &str, gw6: Option<&str>| {
        let mut i = iface(name, 0, a4, None);
        i.address6 = Some(v6(a6));
        i.gateway6 = gw6.map(v6);
        i
    };
    FabricSpec {
        seed: 1,
        segments: vec![seg],
        nodes: vec![
            host("gw", vec![six("eth1", "192.0.2.1", "2001:db8:6::1", None)]),
            host(
                "srv",
                vec![six("eth0", "192.0.2.2", "2001:db8:6::2", Some("2001:db8:6::1"))],
            ),
            host("c", vec![six("eth0", "192.0.2.3", "2001:db8:6::3", None)]),
            host("v4only", vec![iface("eth0", 0, "192.0.2.4", None)]),
        ],
    }
}

#[test]
fn dual_stack_segments_route_ipv6_by_owner_and_gateway() {
    let (gw, srv, c) = (IfaceId::new(0, 0), IfaceId::new(1, 0), IfaceId::new(2, 0));
    let mut f = Fabric::new(dual_stack()).unwrap();
    let t0 = Instant::now();
    // On-link: to the owner of the destination, whoever else is on the segment.
    f.ingress(t0, srv, ipv6_to("2001:db8:6::2", "2001:db8:6::3"));
    assert_eq!(f.poll_delivery(t0).map(|d| d.iface), Some(c));
    // Off-link: to the sender's gateway6 (a 6bed4 address behind the router).
    let out = ipv6_to("2001:db8:6::2", "fc64:bed:c633:6401::1");
    f.ingress(t0, srv, out.clone());
    let d = f.poll_delivery(t0).expect("to the gateway");
    assert_eq!((d.iface, d.packet), (gw, out));
    // The router answers back on-link.
    f.ingress(t0, gw, ipv6_to("fc64:bed:c633:6401::1", "2001:db8:6::2"));
    assert_eq!(f.poll_delivery(t0).map(|d| d.iface), Some(srv));
    // No gateway6: no route. Nobody owns ::9: no host. Multicast (MLD): no host.
    f.ingress(t0, c, ipv6_to("2001:db8:6::3", "2001:db8:99::1"));
    f.ingress(t0, c, ipv6_to("2001:db8:6::3", "2001:db8:6::9"));
    f.ingress(t0, c, ipv6_to("::", "ff02::16"));
    assert!(f.poll_delivery(t0).is_none());
    let drops = f.stats().link("c/eth0").unwrap().dropped;
    assert_eq!((drops.no_route, drops.no_host), (1, 2));
    // IPv4 on the same segment is untouched.
    f.ingress(t0, srv, udp("192.0.2.2", "192.0.2.4", 64, b"v4"));
    assert_eq!(f.poll_delivery(t0).map(|d| d.iface), Some(IfaceId::new(3, 0)));
}

#[test]
fn dual_stack_spec_errors_are_reported() {
    let mut spec = dual_stack();
    spec.nodes[2].interfaces[0].address6 = Some(v6("2001:db8:7::3"));
    assert!(Fabric::new(spec).unwrap_err().to_string().contains("outside"));
    let mut spec = dual_stack();
    spec.nodes[2].interfaces[0].address6 = Some(v6("2001:db8:6::2"));
    assert!(Fabric::new(spec).unwrap_err().to_string().contains("used twice"));
    let mut spec = dual_stack();
    spec.nodes[1].interfaces[0].gateway6 = Some(v6("2001:db8:6::7"));
    assert!(Fabric::new(spec)
        .unwrap_err()
        .to_string()
        .contains("IPv6 gateway"));
}

#[test]
fn router_answers_pings_to_its_own_addresses() {
    let mut f = Fabric::new(routed()).unwrap();
    let t0 = Instant::now();
    for dst in ["10.1.0.1", "10.2.0.1"] {
        let req = packet::build_icmpv4(
            a("10.1.0.2"),
            a(dst),
            3,
            icmp::ECHO_REQUEST,
            0,
            [0, 1, 0, 2],
            b"abc",
        );
        f.ingress(t0, A, req);
        let d = f.poll_delivery(t0).expect("echo reply");
        assert_eq!(d.iface, A);
        let info = packet::parse_ipv4(&d.packet).unwrap();
        assert_eq!((info.src, info.dst), (a(dst), a("10.1.0.2")));
        assert_eq!(d.packet[20], icmp::ECHO_REPLY);
        assert_eq!(&d.packet[24..], &[0, 1, 0, 2, b'a', b'b', b'c']);
    }
}

#[test]
fn mtu_drops_and_fragmentation_needed() {
    let t0 = Instant::now();
    // On a segment: too big for the receiver, and too big for the sender's own MTU.
    let mut spec = two_hosts();
    spec.nodes[1].interfaces[0].mtu = 1000;
    let mut f = Fabric::new(spec).unwrap();
    f.ingress(t0, A, numbered("10.0.0.1", "10.0.0.2", 0, 1200));
    f.ingress(t0, A, numbered("10.0.0.1", "10.0.0.2", 0, 1600));
    assert!(f.poll_delivery(t0).is_none());
    let s = f.stats();
    assert_eq!(s.link("b/eth0").unwrap().dropped.mtu, 1);
    assert_eq!(s.link("a/eth0").unwrap().dropped.mtu, 1);

    // Across a router whose outgoing MTU is 1000: DF set -> fragmentation needed with 1000.
    let mut spec = routed();
    spec.nodes[1].interfaces[1].mtu = 1000;
    let mut f = Fabric::new(spec).unwrap();
    let big = numbered("10.1.0.2", "10.2.0.2", 0, 1200);
    assert!(packet::parse_ipv4(&big).unwrap().dont_fragment);
    f.ingress(t0, A, big.clone());
    let d = f.poll_delivery(t0).expect("frag needed");
    assert_eq!(d.iface, A);
    assert_eq!(
        (d.packet[20], d.packet[21]),
        (icmp::DEST_UNREACHABLE, icmp::CODE_FRAG_NEEDED)
    );
    assert_eq!(u16::from_be_bytes([d.packet[26], d.packet[27]]), 1000);
    assert_eq!(
        &d.packet[28..48],
        &big[..20],
        "quotes the original header, TTL intact"
    );
    assert_eq!(packet::internet_checksum(&d.packet[20..]), 0);
    assert_eq!(f.stats().link("r/r").unwrap().dropped.mtu, 1);

    // DF clear -> fragmented, and the fragments reassemble.
    let mut nodf = big.clone();
    nodf[6] = 0;
    packet::set_ipv4_checksum(&mut nodf, 20);
    f.ingress(t0, A, nodf.clone());
    let frags: Vec<Delivery> = std::iter::from_fn(|| f.poll_delivery(t0)).collect();
    assert_eq!(frags.len(), 2);
    let mut whole = vec![0u8; 1200 - 20];
    for fr in &frags {
        assert_eq!(fr.iface, B);
        assert!(fr.packet.len() <= 1000);
        let i = packet::parse_ipv4(&fr.packet).unwrap();
        assert_eq!(i.ttl, 63);
        whole[i.fragment_offset..i.fragment_offset + fr.packet.len() - 20].copy_from_slice(&fr.packet[20..]);
    }
    assert_eq!(&whole[..], &nodf[20..]);
}

#[test]
fn icmp_errors_fit_a_small_mtu_on_the_way_back() {
    let mut spec = routed();
    spec.nodes[0].interfaces[0].mtu = 100;
    spec.nodes[1].interfaces[0].mtu = 100;
    let mut f = Fabric::new(spec).unwrap();
    let t0 = Instant::now();
    // Expiring at the router: from b (back through r/r, MTU 1500) and from a (back
    // through r/l, MTU 100).
    let mut expiring = numbered("10.2.0.2", "10.1.0.2", 1, 600);
    expiring[8] = 1;
    packet::set_ipv4_checksum(&mut expiring, 20);
    f.ingress(t0, B, expiring);
    let d = f.poll_delivery(t0).expect("time exceeded back to b");
    assert_eq!(d.packet.len(), 576, "full quote on a 1500-byte MTU");
    let mut to_b = numbered("10.1.0.2", "10.2.0.2", 2, 100);
    to_b[8] = 1;
    packet::set_ipv4_checksum(&mut to_b, 20);
    f.ingress(t0, A, to_b);
    let d = f.poll_delivery(t0).expect("time exceeded back to a");
    assert_eq!(d.iface, A);
    assert_eq!(d.packet.len(), 100, "quote cut to a's 100-byte MTU");
    assert_eq!(packet::internet_checksum(&d.packet[20..]), 0);
}

fn impaired(egress: Impairment) -> Fabric {
    let mut spec = two_hosts();
    spec.nodes[0].interfaces[0].egress = egress;
    Fabric::new(spec).unwrap()
}

/// Sends `n` numbered packets from a to b, one per `gap`, and runs the fabric to the end.
fn send_numbered(f: &mut Fabric, t0: Instant, n: u32, gap: Duration, len: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    for i in 0..n {
        let now = t0 + gap * i;
        out.extend(run_until(f, now, now));
        f.ingress(now, A, numbered("10.0.0.1", "10.0.0.2", i, len));
        while let Some(d) = f.poll_delivery(now) {
            out.push(d);
        }
    }
    out.extend(run_all(f, t0 + gap * n));
    out
}

#[test]
fn independent_loss_rate_matches() {
    let mut f = impaired(Impairment {
        loss: 0.3,
        ..Default::default()
    });
    let got = send_numbered(&mut f, Instant::now(), 20_000, ms(1), 100);
    let lost = 20_000 - got.len();
    let rate = lost as f64 / 20_000.0;
    assert!((rate - 0.3).abs() < 0.02, "loss rate {rate}");
    assert_eq!(f.stats().link("a/eth0").unwrap().dropped.loss, lost as u64);
}

#[test]
fn gilbert_elliott_bursts_have_the_mean_length() {
    let mut f = impaired(Impairment {
        loss: 0.1,
        loss_burst: 4.0,
        ..Default::default()
    });
    let n = 100_000u32;
    let got = send_numbered(&mut f, Instant::now(), n, Duration::from_micros(100), 100);
    let mut delivered = vec![false; n as usize];
    for d in &got {
        delivered[seq_of(&d.packet) as usize] = true;
    }
    let mut bursts = Vec::new();
    let mut run = 0;
    for &ok in &delivered {
        if ok {
            if run > 0 {
                bursts.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    let mean = bursts.iter().sum::<u32>() as f64 / bursts.len() as f64;
    let rate = delivered.iter().filter(|&&d| !d).count() as f64 / n as f64;
    assert!((mean - 4.0).abs() < 0.4, "mean burst {mean}");
    assert!((rate - 0.1).abs() < 0.02, "loss rate {rate}");
}

#[test]
fn delay_with_jitter_stays_in_bounds_and_in_order() {
    let mut f = impaired(Impairment {
        delay: ms(50),
        jitter: ms(10),
        ..Default::default()
    });
    let t0 = Instant::now();
    let gap = ms(1);
    let got = send_numbered(&mut f, t0, 2000, gap, 100);
    assert_eq!(got.len(), 2000);
    let mut spread = std::collections::HashSet::new();
    for (i, d) in got.iter().enumerate() {
        let seq = seq_of(&d.packet);
        assert_eq!(seq as usize, i, "reordered without reorder > 0");
        let latency = d.at - (t0 + gap * seq);
        assert!(latency >= ms(40) && latency <= ms(60), "latency {latency:?}");
        spread.insert(latency.as_millis());
    }
    assert!(spread.len() > 10, "jitter should vary latency: {spread:?}");
}

fn reordered(got: &[Delivery]) -> usize {
    got.windows(2)
        .filter(|w| seq_of(&w[1].packet) < seq_of(&w[0].packet))
        .count()
}

#[test]
fn reorder_probability_produces_reordering() {
    let mut f = impaired(Impairment {
        reorder: 0.2,
        ..Default::default()
    });
    let got = send_numbered(&mut f, Instant::now(), 1000, ms(1), 100);
    assert_eq!(got.len(), 1000);
    let r = reordered(&got);
    // About 200 packets are held back 10 ms and each is overtaken (one inversion each).
    assert!((150..=250).contains(&r), "inversions {r}");
}

#[test]
fn reorder_gap_sets_how_long_a_reordered_packet_is_held() {
    let t0 = Instant::now();
    let mut f = impaired(Impairment {
        reorder: 1.0,
        reorder_gap: Some(ms(40)),
        ..Default::default()
    });
    let got = send_numbered(&mut f, t0, 20, ms(1), 100);
    assert_eq!(got.len(), 20);
    for d in &got {
        let sent = t0 + ms(1) * seq_of(&d.packet);
        let held = d.at.saturating_duration_since(sent);
        assert!(
            held >= ms(40) && held <= ms(41),
            "held {held:?}, not the 40 ms gap"
        );
    }
}

#[test]
fn duplication_rate_matches() {
    let mut f = impaired(Impairment {
        duplicate: 0.1,
        ..Default::default()
    });
    let got = send_numbered(&mut f, Instant::now(), 20_000, ms(1), 100);
    let extra = got.len() - 20_000;
    let rate = extra as f64 / 20_000.0;
    assert!((rate - 0.1).abs() < 0.02, "duplication rate {rate}");
    assert_eq!(f.stats().link("a/eth0").unwrap().duplicated, extra as u64);
}

#[test]
fn rate_limit_serialises_and_overflows() {
    let t0 = Instant::now();
    let mut f = impaired(Impairment {
        rate_bps: Some(1_000_000),
        ..Default::default()
    });
    for i in 0..100 {
        f.ingress(t0, A, numbered("10.0.0.1", "10.0.0.2", i, 1250));
    }
    let got = run_all(&mut f, t0);
    assert_eq!(got.len(), 100);
    // 1250 bytes at 1 Mbit/s is 10 ms each.
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.at - t0, ms(10) * (i as u32 + 1));
    }
    assert_eq!(got.last().unwrap().at - t0, Duration::from_secs(1));

    let mut f = impaired(Impairment {
        rate_bps: Some(1_000_000),
        queue_limit: 10,
        ..Default::default()
    });
    for i in 0..100 {
        f.ingress(t0, A, numbered("10.0.0.1", "10.0.0.2", i, 1250));
    }
    // Halfway through, the queue has drained enough for 5 more.
    for i in 100..105 {
        f.ingress(t0 + ms(50), A, numbered("10.0.0.1", "10.0.0.2", i, 1250));
    }
    let got = run_all(&mut f, t0);
    assert_eq!(got.len(), 15);
    assert_eq!(f.stats().link("a/eth0").unwrap().dropped.queue_overflow, 90);
    assert_eq!(got.last().unwrap().at - t0, ms(150));
}

#[test]
fn changed_impairment_applies_to_later_packets_only() {
    let t0 = Instant::now();
    let mut f = impaired(Impairment {
        delay: ms(10),
        ..Default::default()
    });
    f.ingress(t0, A, numbered("10.0.0.1", "10.0.0.2", 0, 100));
    let slow = Impairment {
        delay: ms(100),
        ..Default::default()
    };
    f.set_impairment(A, Direction::Out, slow.clone()).unwrap();
    assert_eq!(f.impairment(A, Direction::Out), Some(&slow));
    f.ingress(t0 + ms(1), A, numbered("10.0.0.1", "10.0.0.2", 1, 100));
    let got = run_all(&mut f, t0);
    assert_eq!(got[0].at - t0, ms(10));
    assert_eq!(got[1].at - t0, ms(101));
    // Back to a perfect link: delivered at once, but never ahead of the slow packet.
    f.set_impairment(A, Direction::Out, Impairment::default())
        .unwrap();
    f.ingress(t0 + ms(200), A, numbered("10.0.0.1", "10.0.0.2", 2, 100));
    assert_eq!(f.poll_delivery(t0 + ms(200)).unwrap().at, t0 + ms(200));

    assert!(f
        .set_impairment(
            A,
            Direction::In,
            Impairment {
                loss: 2.0,
                ..Default::default()
            }
        )
        .is_err());
    assert!(f
        .set_impairment(IfaceId::new(9, 0), Direction::In, Impairment::default())
        .is_err());
}

#[test]
fn captures_follow_a_packet_through_a_router() {
    let mut spec = routed();
    let d = |n| Impairment {
        delay: ms(n),
        ..Default::default()
    };
    spec.nodes[0].interfaces[0].egress = d(5);
    spec.nodes[1].interfaces[0].ingress = d(3);
    spec.nodes[1].interfaces[1].egress = d(2);
    spec.nodes[2].interfaces[0].ingress = d(1);
    let mut f = Fabric::new(spec).unwrap();
    f.set_capture(true);
    let t0 = Instant::now();
    f.ingress(t0, A, udp("10.1.0.2", "10.2.0.2", 64, b"watch me"));
    let got = run_all(&mut f, t0);
    assert_eq!(got.len(), 1);
    let caps: Vec<CaptureEvent> = f.take_captures().collect();
    let seen: Vec<(IfaceId, Direction, Duration, u8)> = caps
        .iter()
        .map(|c| (c.iface, c.direction, c.at - t0, c.packet[8]))
        .collect();
    assert_eq!(
        seen,
        vec![
            (A, Direction::Out, ms(0), 64),
            (R_L, Direction::In, ms(8), 64),
            (R_R, Direction::Out, ms(8), 63),
            (B, Direction::In, ms(11), 63),
        ]
    );
    assert_eq!(f.take_captures().count(), 0);
    f.set_capture(false);
    f.ingress(t0 + ms(20), A, udp("10.1.0.2", "10.2.0.2", 64, b"unseen"));
    run_all(&mut f, t0 + ms(20));
    assert_eq!(f.take_captures().count(), 0);
}

fn schedule_of(seed: u64) -> Vec<(Duration, Vec<u8>)> {
    let mut spec = routed();
    spec.seed = seed;
    spec.nodes[0].interfaces[0].egress = Impairment {
        delay: ms(20),
        jitter: ms(15),
        loss: 0.1,
        loss_burst: 2.0,
        duplicate: 0.05,
        reorder: 0.1,
        ..Default::default()
    };
    spec.nodes[2].interfaces[0].ingress = Impairment {
        rate_bps: Some(5_000_000),
        loss: 0.05,
        ..Default::default()
    };
    let mut f = Fabric::new(spec).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..500u32 {
        let now = t0 + Duration::from_micros(700) * i;
        out.extend(run_until(&mut f, now, now));
        f.ingress(now, A, numbered("10.1.0.2", "10.2.0.2", i, 600));
    }
    out.extend(run_all(&mut f, t0));
    out.into_iter().map(|d| (d.at - t0, d.packet)).collect()
}

#[test]
fn same_seed_same_schedule() {
    let first = schedule_of(42);
    assert_eq!(first, schedule_of(42));
    assert_ne!(first, schedule_of(43));
}

#[test]
fn spec_errors_are_reported() {
    let bad = |f: fn(&mut FabricSpec)| {
        let mut s = routed();
        f(&mut s);
        Fabric::new(s).unwrap_err().to_string()
    };
    assert!(bad(|s| s.nodes[0].interfaces[0].address = a("10.9.0.1")).contains("not in segment"));
    assert!(bad(|s| s.nodes[0].interfaces[0].segment = 5).contains("no segment"));
    assert!(bad(|s| s.nodes[2].interfaces[0].address = a("10.2.0.1")).contains("used twice"));
    assert!(bad(|s| s.nodes[0].interfaces[0].gateway = Some(a("10.1.0.77"))).contains("gateway"));
    assert!(bad(|s| s.nodes[0].interfaces[0].mtu = 20).contains("mtu"));
    assert!(bad(|s| s.nodes[2].name = "a".into()).contains("twice"));
    assert!(bad(|s| s.nodes[0].interfaces[0].egress.jitter = Duration::from_secs(7200)).contains("egress"));
    assert!(bad(|s| s.nodes[1].kind = NodeKind::Router {
        routes: vec![((a("0.0.0.0"), 0), a("10.7.0.1"))]
    })
    .contains("not on a connected subnet"));
}

#[test]
fn static_routes_and_longest_prefix_match() {
    // a -- r1 -- transit -- r2 -- b, r1 has a default route via r2.
    let spec = FabricSpec {
        seed: 0,
        segments: vec![
            segment("left", "10.1.0.0", 24),
            segment("transit", "192.0.2.0", 30),
            segment("right", "10.2.0.0", 24),
        ],
        nodes: vec![
            host("a", vec![iface("eth0", 0, "10.1.0.2", Some("10.1.0.1"))]),
            NodeSpec {
                name: "r1".into(),
                kind: NodeKind::Router {
                    routes: vec![((a("0.0.0.0"), 0), a("192.0.2.2"))],
                },
                interfaces: vec![iface("l", 0, "10.1.0.1", None), iface("t", 1, "192.0.2.1", None)],
            },
            NodeSpec {
                name: "r2".into(),
                kind: NodeKind::Router {
                    routes: vec![((a("10.1.0.0"), 24), a("192.0.2.1"))],
                },
                interfaces: vec![iface("t", 1, "192.0.2.2", None), iface("r", 2, "10.2.0.1", None)],
            },
            host("b", vec![iface("eth0", 2, "10.2.0.2", Some("10.2.0.1"))]),
        ],
    };
    let mut f = Fabric::new(spec).unwrap();
    let t0 = Instant::now();
    f.ingress(t0, A, udp("10.1.0.2", "10.2.0.2", 64, b"two hops"));
    let d = f.poll_delivery(t0).unwrap();
    assert_eq!(d.iface, IfaceId::new(3, 0));
    assert_eq!(packet::parse_ipv4(&d.packet).unwrap().ttl, 62);
    // TTL 2 expires at the second router, which answers from its transit address.
    f.ingress(t0, A, udp("10.1.0.2", "10.2.0.2", 2, b"short"));
    let d = f.poll_delivery(t0).unwrap();
    assert_eq!(d.iface, A);
    assert_eq!(packet::parse_ipv4(&d.packet).unwrap().src, a("192.0.2.2"));
}

/// A node with a timer, standing in for a NAT: forwards between its two interfaces after
/// holding each packet until its next tick.
#[derive(Debug, Default)]
struct Ticker {
    next: Option<Instant>,
    held: Vec<(usize, Vec<u8>)>,
}

impl Node for Ticker {
    fn handle(&mut self, now: Instant, in_iface: usize, packet: Vec<u8>, _out: &mut Outbox) {
        self.held.push((1 - in_iface, packet));
        self.next.get_or_insert(now + ms(30));
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
    fn handle_timeout(&mut self, _now: Instant, out: &mut Outbox) {
        self.next = None;
        for (iface, p) in self.held.drain(..) {
            out.send(iface, None, p);
        }
    }
}

#[test]
fn node_timers_drive_output() {
    // The Router in the spec is replaced by a custom node through the public trait.
    let mut f = Fabric::new(routed()).unwrap();
    f.replace_node(1, Box::new(Ticker::default())).unwrap();
    let t0 = Instant::now();
    f.ingress(t0, A, udp("10.1.0.2", "10.2.0.2", 64, b"held"));
    assert!(f.poll_delivery(t0).is_none());
    assert_eq!(f.poll_timeout(), Some(t0 + ms(30)));
    let got = run_all(&mut f, t0);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].iface, got[0].at), (B, t0 + ms(30)));
    assert!(
        f.replace_node(0, Box::new(Ticker::default())).is_err(),
        "External stays External"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_never_panics(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1600), 1..20),
        header in proptest::collection::vec(any::<u8>(), 20..60),
        from_b in any::<bool>(),
    ) {
        let mut spec = routed();
        spec.nodes[1].interfaces[1].mtu = 576;
        spec.nodes[0].interfaces[0].egress = Impairment { duplicate: 0.5, reorder: 0.5, jitter: ms(3), ..Default::default() };
        let mut f = Fabric::new(spec).unwrap();
        f.set_capture(true);
        let t0 = Instant::now();
        let from = if from_b { B } else { A };
        for (i, mut p) in packets.into_iter().enumerate() {
            // Every other packet gets a plausible IPv4 start so the deeper paths run too.
            if i % 2 == 1 {
                let n = header.len().min(p.len());
                p[..n].copy_from_slice(&header[..n]);
                if let Some(b) = p.first_mut() { *b = 0x40 | (*b & 0x0f); }
                if p.len() >= 20 {
                    let len = p.len() as u16;
                    p[2..4].copy_from_slice(&len.to_be_bytes());
                    let hl = usize::from(p[0] & 0x0f) * 4;
                    if hl >= 20 && hl <= p.len() { packet::set_ipv4_checksum(&mut p, hl); }
                }
            }
            f.ingress(t0 + ms(i as u64), from, p);
        }
        let _ = run_all(&mut f, t0);
        let _ = f.take_captures().count();
        let _ = f.stats();
    }
}

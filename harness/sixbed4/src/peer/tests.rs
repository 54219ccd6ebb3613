use super::*;
use crate::router::{Router, RouterConfig};
use crate::wire::icmpv6;
use proptest::prelude::*;
use std::collections::{HashSet, VecDeque};

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn ep(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}
const ROUTER: &str = "145.136.0.1:25790";
const ME: &str = "145.136.0.2:55796";
const OTHER: &str = "203.0.113.7:40000";

fn cfg() -> PeerConfig {
    PeerConfig::new(Profile::Current, ep(ROUTER))
}

fn router_for(profile: Profile, listen: &str) -> Router {
    Router::new(RouterConfig::new(profile, ep(listen))).unwrap()
}

/// The RA a router at ROUTER sends to a peer seen at `seen`.
fn ra_for(seen: &str) -> Vec<u8> {
    let mut r = router_for(Profile::Current, ROUTER);
    let rs = NdRepr::RouterSolicit { source_lla: None }.emit(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS);
    let mut out = vec![];
    r.handle_udp(Instant::now(), ep(seen), &rs, &mut out);
    udp(&out).remove(0).1
}

fn udp(out: &[Output]) -> Vec<(SocketAddrV4, Vec<u8>, Option<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Udp { to, payload, ttl } => Some((*to, payload.clone(), *ttl)),
            _ => None,
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| {
            if let Output::Event(e) = o {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect()
}

fn is_rs(payload: &[u8]) -> bool {
    payload.len() >= 48 && payload[40] == 133
}
fn is_ns(payload: &[u8]) -> bool {
    payload.len() >= 64 && payload[6] == 58 && payload[40] == 135
}

/// Runs the peer's timers from `from` to `until` in `step`s, collecting what it sends.
fn run(peer: &mut Peer, from: Instant, until: Instant, out: &mut Vec<(Instant, Output)>) {
    let mut now = from;
    while now <= until {
        let mut o = vec![];
        peer.handle_timeout(now, &mut o);
        out.extend(o.into_iter().map(|x| (now, x)));
        now = match peer.poll_timeout() {
            Some(t) if t > now => t,
            _ => now + Duration::from_millis(1),
        };
    }
}

fn configured(t0: Instant, c: PeerConfig) -> Peer {
    let mut p = Peer::new(c, t0);
    let mut out = vec![];
    p.handle_timeout(t0, &mut out);
    p.handle_udp(t0, ep(ROUTER), &ra_for(ME), &mut out);
    assert!(p.lease().is_some(), "{out:?}");
    p
}

#[test]
fn solicitations_back_off_0_1_4_11_26_56_then_every_30s() {
    let t0 = Instant::now();
    let mut p = Peer::new(cfg(), t0);
    let mut out = vec![];
    run(&mut p, t0, t0 + Duration::from_secs(120), &mut out);
    let at: Vec<u64> = out
        .iter()
        .filter(|(_, o)| matches!(o, Output::Udp { payload, .. } if is_rs(payload)))
        .map(|(t, _)| (*t - t0).as_secs())
        .collect();
    assert_eq!(at, vec![0, 1, 4, 11, 26, 56, 86, 116]);
    // No keepalive without an address.
    assert!(!out
        .iter()
        .any(|(_, o)| matches!(o, Output::Udp { payload, .. } if payload.is_empty())));
}

#[test]
fn an_ra_configures_the_spec_address_and_stops_solicitation() {
    let t0 = Instant::now();
    let mut p = Peer::new(cfg(), t0);
    let mut out = vec![];
    p.handle_timeout(t0, &mut out);
    out.clear();
    p.handle_udp(t0, ep(ROUTER), &ra_for(ME), &mut out);
    let lease = p.lease().unwrap();
    assert_eq!(lease.address, v6("fc64:bed:9188:1:9088:2:d9f4:4001"));
    assert_eq!(lease.external, ep(ME));
    assert!(out.contains(&Output::Config(ConfigChange::AddAddress {
        address: lease.address,
        prefix_len: 64
    })));
    assert!(events(&out).contains(&Event::AddressConfigured {
        address: lease.address,
        external: ep(ME)
    }));
    let mut later = vec![];
    run(
        &mut p,
        t0 + Duration::from_millis(1),
        t0 + Duration::from_secs(100),
        &mut later,
    );
    assert!(
        !later
            .iter()
            .any(|(_, o)| matches!(o, Output::Udp { payload, .. } if is_rs(payload))),
        "still soliciting"
    );
}

#[test]
fn keepalives_are_empty_with_ttl_3_every_period_from_the_address_on() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let mut out = vec![];
    run(
        &mut p,
        t0 + Duration::from_millis(1),
        t0 + Duration::from_secs(95),
        &mut out,
    );
    let ka: Vec<(u64, Option<u8>, SocketAddrV4)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Udp { to, payload, ttl } if payload.is_empty() => Some(((*t - t0).as_secs(), *ttl, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ka,
        vec![
            (30, Some(3), ep(ROUTER)),
            (60, Some(3), ep(ROUTER)),
            (90, Some(3), ep(ROUTER))
        ]
    );
}

#[test]
fn keepalive_period_and_ttl_are_configurable_and_can_be_off() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.keepalive = Some(Keepalive {
        period: Duration::from_millis(250),
        ttl: 7,
    });
    let mut p = configured(t0, c);
    let mut out = vec![];
    run(
        &mut p,
        t0 + Duration::from_millis(1),
        t0 + Duration::from_millis(1010),
        &mut out,
    );
    let n = out
        .iter()
        .filter(|(_, o)| matches!(o, Output::Udp { payload, ttl: Some(7), .. } if payload.is_empty()))
        .count();
    assert_eq!(n, 4);
    let mut c = cfg();
    c.keepalive = None;
    let mut p = configured(t0, c);
    let mut out = vec![];
    run(
        &mut p,
        t0 + Duration::from_millis(1),
        t0 + Duration::from_secs(200),
        &mut out,
    );
    assert!(!out
        .iter()
        .any(|(_, o)| matches!(o, Output::Udp { payload, .. } if payload.is_empty())));
}

#[test]
fn invalid_ras_change_nothing() {
    let good = ra_for(ME);
    let mut hop = good.clone();
    hop[7] = 254;
    let mut sum = good.clone();
    sum[60] ^= 0x55;
    let mut code = good.clone();
    code[41] = 1;
    let zero_opt = {
        let mut b = good[40..].to_vec();
        b[16 + 1] = 0; // first option's length
        b[2] = 0;
        b[3] = 0;
        let s = icmpv6::checksum(&v6("fe80::"), &v6("ff02::1"), &b);
        b[2..4].copy_from_slice(&s.to_be_bytes());
        crate::wire::Ipv6Repr {
            src: v6("fe80::"),
            dst: v6("ff02::1"),
            next_header: 58,
            payload_len: 0,
            hop_limit: 255,
        }
        .to_packet(&b)
    };
    let global_src = {
        let p = Ipv6Packet::new_checked(&good[..]).unwrap();
        let nd = NdRepr::parse(&p).unwrap();
        nd.emit(v6("2001:db8::1"), v6("ff02::1"))
    };
    let truncated = good[..60].to_vec();
    let t0 = Instant::now();
    let cases: Vec<(Vec<u8>, SocketAddrV4)> = vec![
        (hop, ep(ROUTER)),
        (sum, ep(ROUTER)),
        (code, ep(ROUTER)),
        (zero_opt, ep(ROUTER)),
        (global_src, ep(ROUTER)),
        (truncated, ep(ROUTER)),
        (good.clone(), ep("145.136.0.1:25791")), // wrong outer source
        (good.clone(), ep("145.136.0.9:25790")),
    ];
    for (bytes, from) in cases {
        let mut p = Peer::new(cfg(), t0);
        let mut out = vec![];
        p.handle_udp(t0, from, &bytes, &mut out);
        assert_eq!(p.lease(), None, "accepted a bad RA from {from}");
        assert!(!out.iter().any(|o| matches!(o, Output::Config(_))));
    }
    // After an address is held, a bad RA naming another mapping does not move it.
    let mut p = configured(t0, cfg());
    let mut out = vec![];
    let mut other = ra_for(OTHER);
    other[7] = 254;
    p.handle_udp(t0, ep(ROUTER), &other, &mut out);
    assert_eq!(p.lease().unwrap().external, ep(ME));
    assert!(p.counters().get("ra_rejected") >= 1);
}

fn other_peer_address() -> Ipv6Addr {
    addr::encode(
        Profile::Current,
        [0xfc, 0x64, 0x0b, 0xed, 0x91, 0x88, 0, 1],
        ep(OTHER),
        1,
    )
    .unwrap()
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    icmpv6::build(src, dst, 64, 128, 0, &[0, 1, 0, 1, 9, 9, 9, 9])
}

fn na_from(target: Ipv6Addr, to: Ipv6Addr) -> Vec<u8> {
    NdRepr::NeighborAdvert {
        flags: NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
        target,
        target_lla: Some(addr::link_layer(ep(OTHER))),
    }
    .emit(target, to)
}

#[test]
fn first_send_goes_via_router_and_probes_three_times_200ms_apart() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut out = vec![];
    p.handle_tun(t0, &echo(me, b), &mut out);
    let sent = udp(&out);
    assert_eq!(sent.len(), 2);
    assert!(
        is_ns(&sent[0].1) && sent[0].0 == ep(OTHER),
        "probe goes straight to the decoded endpoint"
    );
    assert_eq!(sent[1].0, ep(ROUTER), "data via the router meanwhile");
    // The probe: src = own address, dst = target = remote, SLLA = own link-layer address.
    let ns = Ipv6Packet::new_checked(&sent[0].1[..]).unwrap();
    assert_eq!((ns.src_addr(), ns.dst_addr(), ns.hop_limit()), (me, b, 255));
    assert_eq!(
        NdRepr::parse(&ns).unwrap(),
        NdRepr::NeighborSolicit {
            target: b,
            source_lla: Some(addr::link_layer(ep(ME)))
        }
    );
    let mut later = vec![];
    run(
        &mut p,
        t0 + Duration::from_millis(1),
        t0 + Duration::from_secs(5),
        &mut later,
    );
    let probes: Vec<u128> = later
        .iter()
        .filter(|(_, o)| matches!(o, Output::Udp { payload, .. } if is_ns(payload)))
        .map(|(t, _)| (*t - t0).as_millis())
        .collect();
    assert_eq!(probes, vec![200, 400], "three probes in all, 200 ms apart");
    assert_eq!(p.path(&b), PathState::HeldDown);
}

#[test]
fn matching_na_makes_the_path_direct_both_for_sending_and_receiving() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut out = vec![];
    p.handle_tun(t0, &echo(me, b), &mut out);
    // An NA from the wrong endpoint, or unsolicited-flagged, is not enough.
    let mut o = vec![];
    p.handle_udp(t0, ep("203.0.113.7:40002"), &na_from(b, me), &mut o);
    assert_eq!(p.path(&b), PathState::Probing);
    p.handle_udp(t0 + Duration::from_millis(30), ep(OTHER), &na_from(b, me), &mut o);
    assert_eq!(p.path(&b), PathState::Direct);
    assert!(events(&o).contains(&Event::DirectUp {
        neighbour: b,
        endpoint: ep(OTHER)
    }));
    let mut o = vec![];
    p.handle_tun(t0 + Duration::from_millis(40), &echo(me, b), &mut o);
    assert_eq!(
        udp(&o).iter().map(|u| u.0).collect::<Vec<_>>(),
        vec![ep(OTHER)],
        "data goes direct"
    );
    // Direct data from the neighbour is accepted and handed to the kernel.
    let mut o = vec![];
    p.handle_udp(t0 + Duration::from_millis(50), ep(OTHER), &echo(b, me), &mut o);
    assert_eq!(o, vec![Output::Tun(echo(b, me))]);
}

#[test]
fn unmatched_na_is_ignored() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut o = vec![];
    p.handle_udp(t0, ep(OTHER), &na_from(b, me), &mut o);
    assert_eq!(p.path(&b), PathState::ViaRouter);
    assert_eq!(p.counters().get("drop_na_unmatched"), 1);
}

#[test]
fn failed_paths_are_held_down_then_probed_again() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut all = vec![];
    // Send every 100 ms for 65 s; nobody ever answers.
    let mut now = t0;
    while now < t0 + Duration::from_secs(65) {
        let mut o = vec![];
        p.handle_timeout(now, &mut o);
        p.handle_tun(now, &echo(me, b), &mut o);
        all.extend(o.into_iter().map(|x| (now, x)));
        now += Duration::from_millis(100);
    }
    let probes: Vec<u128> = all
        .iter()
        .filter(|(_, o)| matches!(o, Output::Udp { payload, .. } if is_ns(payload)))
        .map(|(t, _)| (*t - t0).as_millis())
        .collect();
    // Attempt 1 at 0/200/400 ms, fails at 600 ms; hold-down 30 s; attempt 2 at 30.6 s, ...
    assert_eq!(
        probes,
        vec![0, 200, 400, 30600, 30800, 31000, 61200, 61400, 61600]
    );
    assert!(
        all.iter()
            .filter(
                |(_, o)| matches!(o, Output::Udp { to, payload, .. } if *to == ep(ROUTER) && !is_ns(payload))
            )
            .count()
            >= 600
    );
}

#[test]
fn used_direct_paths_are_reconfirmed_and_dropped_when_unanswered() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut o = vec![];
    p.handle_tun(t0, &echo(me, b), &mut o);
    p.handle_udp(t0, ep(OTHER), &na_from(b, me), &mut o);
    // Keep using it; at 30 s re-confirmation probes go out while traffic stays direct.
    let mut now = t0;
    let mut seen = vec![];
    while now <= t0 + Duration::from_millis(30_300) {
        let mut o = vec![];
        p.handle_timeout(now, &mut o);
        p.handle_tun(now, &echo(me, b), &mut o);
        seen.extend(o.into_iter().map(|x| (now, x)));
        now += Duration::from_millis(100);
    }
    assert_eq!(p.path(&b), PathState::Direct, "still direct while re-confirming");
    assert!(seen.iter().any(|(t, o)| *t >= t0 + Duration::from_secs(30)
        && matches!(o, Output::Udp { payload, .. } if is_ns(payload))));
    // Answered: stays direct with no new DirectUp.
    let mut o = vec![];
    p.handle_udp(now, ep(OTHER), &na_from(b, me), &mut o);
    assert_eq!(p.path(&b), PathState::Direct);
    assert!(events(&o).is_empty());
    // Next round unanswered: falls back to the router with DirectDown.
    let mut o = vec![];
    let mut t = now;
    while t <= now + Duration::from_secs(32) {
        p.handle_timeout(t, &mut o);
        p.handle_tun(t, &echo(me, b), &mut o);
        t += Duration::from_millis(100);
    }
    assert!(events(&o)
        .iter()
        .any(|e| matches!(e, Event::DirectDown { neighbour, .. } if *neighbour == b)));
    assert_eq!(p.path(&b), PathState::HeldDown);
}

#[test]
fn hearing_a_neighbour_via_the_router_starts_probes_back() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut o = vec![];
    p.handle_udp(t0, ep(ROUTER), &echo(b, me), &mut o);
    assert_eq!(o.last(), Some(&Output::Tun(echo(b, me))));
    let probes = udp(&o);
    assert_eq!(probes.len(), 1);
    assert!(is_ns(&probes[0].1) && probes[0].0 == ep(OTHER));
}

#[test]
fn direct_ns_is_answered_directly_and_spoofs_are_dropped() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let me = p.lease().unwrap().address;
    let b = other_peer_address();
    let ns = NdRepr::NeighborSolicit {
        target: me,
        source_lla: Some(addr::link_layer(ep(OTHER))),
    }
    .emit(b, me);
    let mut o = vec![];
    p.handle_udp(t0, ep(OTHER), &ns, &mut o);
    let sent = udp(&o);
    let (to, na, _) = &sent[0];
    assert_eq!(*to, ep(OTHER));
    let na = Ipv6Packet::new_checked(&na[..]).unwrap();
    assert_eq!((na.src_addr(), na.dst_addr()), (me, b));
    assert_eq!(
        NdRepr::parse(&na).unwrap(),
        NdRepr::NeighborAdvert {
            flags: NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
            target: me,
            target_lla: Some(addr::link_layer(ep(ME)))
        }
    );
    // The same NS from another endpoint (spoofed originator), or with hop limit 254.
    let mut o = vec![];
    p.handle_udp(t0, ep("198.51.100.66:40000"), &ns, &mut o);
    let mut hop = ns.clone();
    hop[7] = 254;
    p.handle_udp(t0, ep(OTHER), &hop, &mut o);
    p.handle_udp(t0, ep("198.51.100.66:40000"), &echo(b, me), &mut o);
    assert!(o.is_empty(), "{o:?}");
    assert_eq!(p.counters().get("drop_originator_mismatch"), 2);
    assert_eq!(p.counters().get("bad_hop_limit"), 1);
}

#[test]
fn unsolicited_ra_moves_the_peer_to_its_new_mapping() {
    let t0 = Instant::now();
    let mut p = configured(t0, cfg());
    let old = p.lease().unwrap().address;
    let b = other_peer_address();
    let mut o = vec![];
    p.handle_tun(t0, &echo(old, b), &mut o);
    p.handle_udp(t0, ep(OTHER), &na_from(b, old), &mut o);
    assert_eq!(p.path(&b), PathState::Direct);
    // The router saw our stale source from a new mapping and answered there.
    let mut r = router_for(Profile::Current, ROUTER);
    let moved = ep("145.136.0.2:61000");
    let mut ro = vec![];
    r.handle_udp(t0, moved, &echo(old, b), &mut ro);
    let unsolicited = udp(&ro).remove(0).1;
    let mut o = vec![];
    p.handle_udp(t0 + Duration::from_secs(1), ep(ROUTER), &unsolicited, &mut o);
    let lease = p.lease().unwrap();
    assert_eq!(lease.external, moved);
    assert_ne!(lease.address, old);
    assert!(o.contains(&Output::Config(ConfigChange::RemoveAddress {
        address: old,
        prefix_len: 64
    })));
    assert!(events(&o).contains(&Event::AddressChanged {
        old,
        address: lease.address,
        external: moved
    }));
    assert_eq!(
        p.path(&b),
        PathState::ViaRouter,
        "paths built on the old mapping are gone"
    );
    // Packets from the stale source are no longer sent.
    let mut o = vec![];
    p.handle_tun(t0 + Duration::from_secs(2), &echo(old, b), &mut o);
    assert!(o.is_empty());
}

#[test]
fn v01_peer_takes_its_identifier_from_the_ra_destination() {
    let t0 = Instant::now();
    let router = "145.136.0.1:25788";
    let mut r = router_for(Profile::V01, router);
    let mut p = Peer::new(PeerConfig::new(Profile::V01, ep(router)), t0);
    let mut o = vec![];
    p.handle_timeout(t0, &mut o);
    let rs = udp(&o).remove(0).1;
    let mut ro = vec![];
    r.handle_udp(t0, ep(OTHER), &rs, &mut ro);
    let mut o = vec![];
    p.handle_udp(t0, ep(router), &udp(&ro).remove(0).1, &mut o);
    assert_eq!(
        p.lease().unwrap().address,
        v6("2001:67c:127c:0:429c:cbff:fe00:7107")
    );
}

proptest! {
    #[test]
    fn garbage_from_anyone_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400), from_router: bool, port in 1u16..) {
        let t0 = Instant::now();
        let mut p = configured(t0, cfg());
        let from = if from_router { ep(ROUTER) } else { SocketAddrV4::new("203.0.113.7".parse().unwrap(), port) };
        let mut o = vec![];
        p.handle_udp(t0, from, &bytes, &mut o);
        p.handle_tun(t0, &bytes, &mut o);
        prop_assert_eq!(p.lease().unwrap().external, ep(ME));
    }
}

/// A tiny simulated network: a router on a public address and two peers, each behind a
/// port-restricted filter (inbound only from endpoints the inside has sent to). Direct paths
/// can only open when both sides probe.
struct Net {
    t: Instant,
    router: Router,
    peers: [Peer; 2],
    public: [SocketAddrV4; 2],
    opened: [HashSet<SocketAddrV4>; 2],
    queue: VecDeque<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    direct_data: usize,
    to_tun: [Vec<Vec<u8>>; 2],
}

impl Net {
    fn new(t: Instant) -> Net {
        let mut c = cfg();
        c.keepalive = None;
        Net {
            t,
            router: router_for(Profile::Current, ROUTER),
            peers: [Peer::new(c.clone(), t), Peer::new(c, t)],
            public: [ep(ME), ep(OTHER)],
            opened: [HashSet::new(), HashSet::new()],
            queue: VecDeque::new(),
            direct_data: 0,
            to_tun: [vec![], vec![]],
        }
    }

    fn outputs(&mut self, from: SocketAddrV4, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Udp { to, payload, .. } => {
                    if let Some(i) = self.public.iter().position(|p| *p == from) {
                        self.opened[i].insert(to);
                    }
                    self.queue.push_back((from, to, payload));
                }
                Output::Tun(p) => {
                    if let Some(i) = self.public.iter().position(|x| *x == from) {
                        self.to_tun[i].push(p);
                    }
                }
                _ => {}
            }
        }
    }

    fn settle(&mut self) {
        while let Some((from, to, payload)) = self.queue.pop_front() {
            let mut out = vec![];
            if to == ep(ROUTER) {
                self.router.handle_udp(self.t, from, &payload, &mut out);
                self.outputs(ep(ROUTER), out);
            } else if let Some(i) = self.public.iter().position(|p| *p == to) {
                if !self.opened[i].contains(&from) {
                    continue; // filtered by the NAT
                }
                if from != ep(ROUTER) && payload.get(40) != Some(&135) && payload.get(40) != Some(&136) {
                    self.direct_data += 1;
                }
                self.peers[i].handle_udp(self.t, from, &payload, &mut out);
                self.outputs(to, out);
            }
        }
    }

    fn tick(&mut self, dt: Duration) {
        self.t += dt;
        for i in 0..2 {
            let mut out = vec![];
            self.peers[i].handle_timeout(self.t, &mut out);
            self.outputs(self.public[i], out);
        }
        self.settle();
    }

    fn send(&mut self, i: usize, packet: Vec<u8>) {
        let mut out = vec![];
        self.peers[i].handle_tun(self.t, &packet, &mut out);
        self.outputs(self.public[i], out);
        self.settle();
    }
}

#[test]
fn two_peers_behind_port_restricted_filters_end_up_direct_both_ways() {
    let mut net = Net::new(Instant::now());
    for _ in 0..5 {
        net.tick(Duration::from_millis(100));
    }
    let a = net.peers[0].lease().unwrap().address;
    let b = net.peers[1].lease().unwrap().address;
    for _ in 0..20 {
        net.send(0, echo(a, b));
        net.send(1, echo(b, a));
        net.tick(Duration::from_millis(100));
    }
    assert_eq!(net.peers[0].path(&b), PathState::Direct);
    assert_eq!(net.peers[1].path(&a), PathState::Direct);
    net.direct_data = 0;
    net.send(0, echo(a, b));
    net.send(1, echo(b, a));
    assert_eq!(net.direct_data, 2, "both directions direct");
    assert!(
        net.to_tun[1].contains(&echo(a, b)) && net.to_tun[0].contains(&echo(b, a)),
        "data arrives both ways"
    );
}

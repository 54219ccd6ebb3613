//! Multi-point lab captures across NATs: one datagram is seen at the sender's uplink, at both
//! sides of each NAT (with private addresses on the LAN side, the mapping on the WAN side)
//! and at the receiver. The checks must judge the right sighting: a hairpin's LAN legs, a
//! symmetric NAT's per-destination mapping and packets lost before the router are correct
//! traffic; the broken variants must still fail.

use std::time::Duration;

use super::build::*;
use crate::conformance::checks::{Expectations, Inputs, PathExpectation};
use crate::conformance::decode::{addr, Endpoint, PathKind, Profile};
use crate::conformance::model::{CheckResult, Verdict::*};

const ROUTER: &str = "router/eth0";

fn run(c: &Cap) -> Vec<CheckResult> {
    c.run(false, Expectations::default())
}

/// RS through the NAT, RA back to the mapping.
fn solicit(c: &mut Cap, t: u64, p: &Natted, id: u16) {
    let r = router();
    c.hops(t, id, &rs(None), &p.out(r, ROUTER));
    c.hops(t + 10, id + 1, &ra_for(p.wan), &p.inn(r, ROUTER));
}

fn probe(from: &Natted, to: Endpoint) -> Vec<u8> {
    ns(a6(from.wan), a6(to), a6(to), Some(addr::link_layer(from.wan)))
}

fn answer(from: &Natted, to: &Natted) -> Vec<u8> {
    na(
        a6(from.wan),
        a6(to.wan),
        0x60,
        a6(from.wan),
        Some(addr::link_layer(from.wan)),
    )
}

// --- Two peers behind one NAT -----------------------------------------------------------

fn lan_a() -> Natted {
    Natted {
        node: "peer-a",
        nat: "nat",
        lan: ep([10, 0, 1, 2], 5000),
        wan: ep([198, 51, 100, 10], 5000),
    }
}

fn lan_b() -> Natted {
    Natted {
        node: "peer-b",
        nat: "nat",
        lan: ep([10, 0, 1, 3], 6000),
        wan: ep([198, 51, 100, 10], 6000),
    }
}

/// Both peers get addresses, A pings B via the router, then both probe each other through
/// the hairpinning NAT, answer, and ping each other directly (hairpinned too).
fn hairpin_exchange() -> Cap {
    let (r, a, b) = (router(), lan_a(), lan_b());
    let mut c = Cap::new();
    solicit(&mut c, 0, &a, 1);
    solicit(&mut c, 100, &b, 3);
    c.hops(1000, 10, &ping(a6(a.wan), a6(b.wan), 64, 1, 0), &a.out(r, ROUTER));
    c.hops(1010, 11, &ping(a6(a.wan), a6(b.wan), 63, 1, 0), &b.inn(r, ROUTER));
    c.hops(1100, 20, &probe(&a, b.wan), &a.hairpin(&b));
    c.hops(1200, 21, &answer(&b, &a), &b.hairpin(&a));
    c.hops(1300, 22, &probe(&b, a.wan), &b.hairpin(&a));
    c.hops(1400, 23, &answer(&a, &b), &a.hairpin(&b));
    c.hops(1500, 24, &ping(a6(a.wan), a6(b.wan), 64, 2, 0), &a.hairpin(&b));
    c.hops(1600, 25, &ping(a6(b.wan), a6(a.wan), 64, 2, 0), &b.hairpin(&a));
    c
}

#[test]
fn hairpin_legs_are_one_packet_and_pass() {
    let c = hairpin_exchange();
    let cap = c.decode();
    // The hairpinned NS: four sightings of one packet, the NAT's LAN side seen twice.
    let ns: Vec<_> = cap.records.iter().filter(|r| r.kind.label() == "NS").collect();
    assert_eq!(ns.len(), 8, "two probes, four sightings each");
    assert!(ns.iter().all(|r| r.sightings == 4), "{ns:?}");
    assert_eq!(ns[0].packet, ns[3].packet);
    let want_direct = Expectations {
        paths: vec![PathExpectation {
            a: "peer-a".into(),
            b: "peer-b".into(),
            path: PathKind::Direct,
        }],
        ..Expectations::default()
    };
    let res = c.run(false, want_direct);
    expect(
        &res,
        &[
            ("RA-02", Pass),
            ("RA-05", Pass),
            ("AF-01", Pass),
            ("AF-03", Pass),
            ("ND-01", Pass),
            ("ND-02", Pass),
            ("ND-03", Pass),
            ("ND-04", Pass),
            ("ND-05", Pass),
            ("ND-08", NotApplicable),
            ("EN-03", Pass),
        ],
    );
    // The trace shows the hairpin as one message between the peers.
    let trace = crate::conformance::trace::render_trace(
        &crate::conformance::trace::trace(&cap, &Default::default()),
        None,
    );
    assert!(
        trace.contains("peer-a -> peer-b: NS [peer-b@nat:P2] [direct]\n") && !trace.contains("(!)"),
        "{trace}"
    );
}

/// Without hairpinning, probes die at the NAT's LAN side: their sightings carry only
/// private sources, which cannot show the mapping the address names. Nothing to judge.
#[test]
fn probes_dropped_at_the_nat_are_not_judged() {
    let (r, a, b) = (router(), lan_a(), lan_b());
    let mut c = Cap::new();
    solicit(&mut c, 0, &a, 1);
    solicit(&mut c, 100, &b, 3);
    c.hops(1000, 10, &ping(a6(a.wan), a6(b.wan), 64, 1, 0), &a.out(r, ROUTER));
    c.hops(1010, 11, &ping(a6(a.wan), a6(b.wan), 63, 1, 0), &b.inn(r, ROUTER));
    c.hops(1100, 20, &probe(&a, b.wan), &a.hairpin(&b)[..2]);
    c.hops(1200, 21, &probe(&b, a.wan), &b.hairpin(&a)[..2]);
    let res = run(&c);
    expect(
        &res,
        &[("AF-03", Pass), ("ND-02", Pass), ("ND-08", NotApplicable)],
    );
}

#[test]
fn hairpin_faults_still_fail() {
    let (a, b) = (lan_a(), lan_b());
    let wrong = ep([198, 51, 100, 10], 5999);
    // AF-03: a probe whose source names no sighting's source (nor the sender's mapping).
    let mut src = hairpin_exchange();
    let bad = ns(a6(wrong), a6(b.wan), a6(b.wan), Some(addr::link_layer(a.wan)));
    src.hops(2000, 30, &bad, &a.hairpin(&b));
    let res = run(&src);
    expect(&res, &[("AF-03", Fail)]);
    assert!(get(&res, "AF-03").message.contains("198.51.100.10:5999"));
    // ND-02: a probe sent to a port the target does not name (dropped by the NAT).
    let mut dst = hairpin_exchange();
    let off = ep([198, 51, 100, 10], 6001);
    let mut hops = a.hairpin(&b);
    hops.truncate(2);
    for h in &mut hops {
        h.3 = off;
    }
    dst.hops(2000, 31, &probe(&a, b.wan), &hops);
    let res = run(&dst);
    expect(&res, &[("ND-02", Fail)]);
    assert!(
        get(&res, "ND-02").message.contains("sent to 198.51.100.10:6001"),
        "{}",
        get(&res, "ND-02").message
    );
    // ND-08: a LAN host claims to be peer-a; peer-b answers it.
    let evil = Natted {
        node: "evil",
        nat: "nat",
        lan: ep([10, 0, 1, 9], 7000),
        wan: ep([198, 51, 100, 10], 7000),
    };
    let spoof = ns(a6(a.wan), a6(b.wan), a6(b.wan), Some(addr::link_layer(a.wan)));
    let mut ignored = hairpin_exchange();
    ignored.hops(2000, 32, &spoof, &evil.hairpin(&b));
    expect(&run(&ignored), &[("ND-08", Pass), ("ND-03", Pass)]);
    let mut answered = ignored.clone();
    answered.hops(2100, 33, &answer(&b, &a), &b.hairpin(&evil));
    let res = run(&answered);
    expect(&res, &[("ND-08", Fail)]);
    assert!(
        get(&res, "ND-08").message.contains("198.51.100.10:7000"),
        "{}",
        get(&res, "ND-08").message
    );
}

// --- Symmetric NATs ----------------------------------------------------------------------

fn sym_a() -> Natted {
    Natted {
        node: "peer-a",
        nat: "nat-a",
        lan: ep([10, 0, 1, 2], 5000),
        wan: ep([198, 51, 100, 10], 13507),
    }
}

fn sym_b() -> Natted {
    Natted {
        node: "peer-b",
        nat: "nat-b",
        lan: ep([10, 0, 2, 2], 6000),
        wan: ep([198, 51, 100, 20], 14475),
    }
}

/// Peers behind symmetric NATs: traffic via the router, and direct probes that leave each
/// NAT from a mapping of their own (and die at the other NAT's filter).
fn symmetric_exchange() -> Cap {
    let (r, a, b) = (router(), sym_a(), sym_b());
    let mut c = Cap::new();
    solicit(&mut c, 0, &a, 1);
    solicit(&mut c, 100, &b, 3);
    c.hops(1000, 10, &ping(a6(a.wan), a6(b.wan), 64, 1, 0), &a.out(r, ROUTER));
    c.hops(1010, 11, &ping(a6(a.wan), a6(b.wan), 63, 1, 0), &b.inn(r, ROUTER));
    c.hops(1100, 12, &ping(a6(b.wan), a6(a.wan), 64, 1, 0), &b.out(r, ROUTER));
    c.hops(1110, 13, &ping(a6(b.wan), a6(a.wan), 63, 1, 0), &a.inn(r, ROUTER));
    let a_to_b = ep([198, 51, 100, 10], 57881);
    let b_to_a = ep([198, 51, 100, 20], 14007);
    c.hops(1200, 20, &probe(&a, b.wan), &a.out_as(b.wan, "nat-b/wan", a_to_b));
    c.hops(1300, 21, &probe(&b, a.wan), &b.out_as(a.wan, "nat-a/wan", b_to_a));
    c
}

#[test]
fn symmetric_mapping_towards_a_peer_warns() {
    let res = run(&symmetric_exchange());
    expect(
        &res,
        &[
            ("AF-03", Warn),
            ("AF-01", Pass),
            ("RA-05", Pass),
            ("RA-09", NotApplicable),
            ("ND-02", Pass),
            ("EN-02", NotApplicable),
        ],
    );
    let m = &get(&res, "AF-03").message;
    assert!(
        m.contains("came from 198.51.100.10:57881") && m.contains("symmetric/address-dependent mapping"),
        "{m}"
    );
}

#[test]
fn symmetric_faults_still_fail() {
    let (r, a, b) = (router(), sym_a(), sym_b());
    // Sent to the router with a source that does not name the mapping the router sees.
    let mut to_router = symmetric_exchange();
    let wrong = a6(ep([198, 51, 100, 10], 13999));
    to_router.hops(2000, 30, &ping(wrong, a6(b.wan), 64, 2, 0), &a.out(r, ROUTER));
    let res = run(&to_router);
    expect(&res, &[("AF-03", Fail)]);
    assert!(
        get(&res, "AF-03")
            .message
            .contains("came from 198.51.100.10:13507"),
        "{}",
        get(&res, "AF-03").message
    );
    // Towards a peer, with a source that is not the sender's mapping at all.
    let mut to_peer = symmetric_exchange();
    let other = ep([198, 51, 100, 10], 9999);
    let bad = ns(a6(other), a6(b.wan), a6(b.wan), Some(addr::link_layer(other)));
    to_peer.hops(
        2000,
        31,
        &bad,
        &a.out_as(b.wan, "nat-b/wan", ep([198, 51, 100, 10], 57881)),
    );
    expect(&run(&to_peer), &[("AF-03", Fail)]);
}

// --- Loss before the router --------------------------------------------------------------

fn lossy_a() -> Natted {
    Natted {
        node: "peer-a",
        nat: "nat-a",
        lan: ep([10, 0, 1, 2], 5000),
        wan: ep([198, 51, 100, 10], 5000),
    }
}

/// A peer on a lossy uplink: its first RA is lost on the NAT's WAN side, and keepalives and
/// a ping are lost at the peer's uplink, on the NAT's LAN side and between the NAT and the
/// router. The mapping never changes.
fn lossy_exchange() -> Cap {
    let (r, a) = (router(), lossy_a());
    let mut c = Cap::new();
    c.hops(0, 1, &rs(None), &a.out(r, ROUTER));
    c.hops(10, 2, &ra_for(a.wan), &a.inn(r, ROUTER)[..2]);
    solicit(&mut c, 1000, &a, 3);
    for i in 0..8u16 {
        let t = 2000 + u64::from(i) * 1000;
        let path = a.out(r, ROUTER);
        let seen = match i {
            1 => 1,
            3 => 2,
            5 => 3,
            _ => 4,
        };
        c.hops(t, 100 + i, &[], &path[..seen]);
    }
    let to = a6(pb());
    c.hops(2500, 20, &ping(a6(a.wan), to, 64, 1, 0), &a.out(r, ROUTER)[..1]);
    c.hops(3500, 21, &ping(a6(a.wan), to, 64, 2, 0), &a.out(r, ROUTER));
    c
}

fn ka_expect() -> Expectations {
    Expectations {
        keepalive_period: Some(Duration::from_secs(1)),
        nat_udp_timeout: Some(Duration::from_secs(2)),
        ..Expectations::default()
    }
}

#[test]
fn packets_lost_before_the_router_say_nothing_about_the_mapping() {
    let c = lossy_exchange();
    let res = c.run(false, ka_expect());
    expect(
        &res,
        &[
            ("RA-09", NotApplicable),
            ("KA-05", Pass),
            ("KA-03", Pass),
            ("RS-04", Pass),
            ("RA-02", Pass),
            ("AF-03", Pass),
            ("EN-02", NotApplicable),
        ],
    );
    let inputs = Inputs::new(vec![c.decode()], Profile::Current, false, ka_expect());
    let v = inputs.views().next().expect("one capture");
    assert_eq!(v.router_node(), Some("router"));
    let peer = &v.peers()[0];
    let mappings: Vec<Endpoint> = peer.mappings.iter().map(|m| m.1).collect();
    assert_eq!(mappings, [lossy_a().wan]);
    assert!(v.rebindings().is_empty());
    // The lost RA reached no one: the peer's address dates from the second.
    assert_eq!(peer.ras.len(), 1);
}

/// A real rebinding on the same lossy link is still found, and named by public mappings.
#[test]
fn a_real_rebinding_behind_loss_still_fails_without_an_ra() {
    let r = router();
    let mut c = lossy_exchange();
    let moved = Natted {
        wan: ep([198, 51, 100, 10], 6000),
        ..lossy_a()
    };
    let stale = a6(lossy_a().wan);
    c.hops(10_000, 200, &[], &moved.out(r, ROUTER)[..1]);
    c.hops(
        10_500,
        201,
        &ping(stale, a6(pb()), 64, 3, 0),
        &moved.out(r, ROUTER),
    );
    c.hops(11_000, 202, &[], &moved.out(r, ROUTER));
    let res = c.run(false, ka_expect());
    expect(&res, &[("RA-09", Fail), ("KA-05", Fail)]);
    let m = &get(&res, "RA-09").message;
    assert!(
        m.contains("no RA to the new mapping 198.51.100.10:6000") && !m.contains("10.0.1.2"),
        "{m}"
    );
    // With the router's RA and the peer moving, it passes.
    let mut ok = c.clone();
    let new = a6(moved.wan);
    ok.hops(
        10_510,
        203,
        &ra_with(moved.wan, 1800, 30_000, stale),
        &moved.inn(r, ROUTER),
    );
    ok.hops(12_000, 204, &ping(new, a6(pb()), 64, 4, 0), &moved.out(r, ROUTER));
    expect(&ok.run(false, ka_expect()), &[("RA-09", Pass), ("AF-03", Warn)]);
}

// --- The router's own address; injection through a NAT --------------------------------

/// A ping to the router's own 6bed4 address (lanip 0) is delivered on its TUN, not
/// forwarded: the hop limit stays. A relay to another peer must still decrement it.
#[test]
fn pings_to_the_router_itself_are_not_relays() {
    use crate::capture::Direction::{Inbound as In, Outbound as Out};
    let (r, a) = (router(), lossy_a());
    let me = addr::encode_c(&prefix(), r, 0);
    let mut c = Cap::new();
    solicit(&mut c, 0, &a, 1);
    let req = ping(a6(a.wan), me, 64, 1, 0);
    c.hops(1000, 10, &req, &a.out(r, ROUTER));
    c.at_if(1005, "router/6bed4", Some(Out), req.clone());
    let rep = icmp6(me, a6(a.wan), 64, 129, 0, &[0, 1, 0, 1]);
    c.at_if(1006, "router/6bed4", Some(In), rep.clone());
    c.hops(1007, 11, &rep, &a.inn(r, ROUTER));
    let res = run(&c);
    expect(&res, &[("EN-03", NotApplicable)]);
    // Relayed to another peer without a decrement: FAIL.
    let b = pb();
    let mut relay = c.clone();
    let data = ping(a6(a.wan), a6(b), 64, 2, 0);
    relay.hops(2000, 12, &data, &a.out(r, ROUTER));
    relay.at_if(2005, ROUTER, Some(Out), udp_id(r, b, 64, &data, 13));
    relay.at_if(2006, "peer-b/eth0", Some(In), udp_id(r, b, 64, &data, 13));
    expect(&run(&relay), &[("EN-03", Fail)]);
}

/// The negative corpus injected from a node behind a NAT: the runner names the NAT's public
/// address, which only the WAN-side sightings carry. The injected datagrams are recognised
/// (and not held against the implementation); the peer on the same node, behind the same
/// address, is judged as usual, inside the window and after it.
#[test]
fn injection_through_a_nat_is_recognised_at_any_sighting() {
    let (r, a, b) = (router(), lossy_a(), sym_b());
    let injector = Natted {
        lan: ep([10, 0, 2, 2], 7777),
        wan: ep([198, 51, 100, 20], 7777),
        ..sym_b()
    };
    let t0 = T0_S * 1_000_000_000;
    let inj = Expectations {
        injection: Some(crate::conformance::checks::Injection {
            at_ns: t0 + 1_000_000_000,
            until_ns: Some(t0 + 2_000_000_000),
            source: Some(*b.wan.ip()),
        }),
        ..Expectations::default()
    };
    let mut c = Cap::new();
    solicit(&mut c, 0, &a, 1);
    // Garbage and an invalid RS (hop limit 254) from peer-b's node, through nat-b.
    c.hops(1000, 50, &[0xde, 0xad], &injector.out(r, ROUTER));
    c.hops(1100, 51, &with_hop(rs(None), 254), &injector.out(r, ROUTER));
    // peer-b itself, behind the same address, during the window and after it.
    solicit(&mut c, 1500, &b, 3);
    c.hops(4000, 60, &ping(a6(b.wan), a6(a.wan), 64, 1, 0), &b.out(r, ROUTER));
    c.hops(4010, 61, &ping(a6(b.wan), a6(a.wan), 63, 1, 0), &a.inn(r, ROUTER));
    let res = c.run(false, inj.clone());
    expect(
        &res,
        &[
            ("EN-01", Pass),
            ("KA-01", NotApplicable),
            ("RS-01", Pass),
            ("RA-08", Pass),
            ("RA-02", Pass),
            ("EN-06", Pass),
        ],
    );
    assert!(
        get(&res, "RS-01").message.starts_with("2 RS"),
        "peer-b's own RS is judged: {}",
        get(&res, "RS-01").message
    );
    // A window that covers the rest of the capture (peer-b lives only inside it): peer-b's
    // socket sends no junk, so it is still judged.
    let mut wide = inj.clone();
    if let Some(i) = wide.injection.as_mut() {
        i.until_ns = Some(t0 + 60_000_000_000);
    }
    let res = c.run(false, wide);
    expect(&res, &[("EN-01", Pass), ("RA-02", Pass), ("RA-08", Pass)]);
    assert!(
        get(&res, "RS-01").message.starts_with("2 RS"),
        "{}",
        get(&res, "RS-01").message
    );
    // Garbage from a peer's own socket is the implementation's, even inside the window.
    let mut own = c.clone();
    own.hops(1200, 70, &[0xde, 0xad], &b.out(r, ROUTER));
    expect(&own.run(false, inj.clone()), &[("EN-01", Fail)]);
    // So is garbage outside the window.
    let mut late = c.clone();
    late.hops(5000, 71, &[0xde, 0xad], &injector.out(r, ROUTER));
    expect(&late.run(false, inj), &[("EN-01", Fail)]);
}

// --- Several peers behind one NAT probing the same neighbour ------------------------------

/// From one NATed peer to another behind a different NAT: out through the sender's NAT,
/// in through the receiver's.
fn across(from: &Natted, to: &Natted) -> Vec<Hop> {
    let mut hops = from.out(to.wan, "unused")[..3].to_vec();
    hops.extend_from_slice(&to.inn(from.wan, "unused")[1..]);
    hops
}

/// A and B share a NAT and both probe C; C answers A, then B. Every NA goes to the NS
/// source it answers, although both NSs reached C from the same outer address and the last
/// NS before the first NA is B's: ND-03 must pair each NA with its asker's NS.
#[test]
fn two_peers_behind_one_nat_probing_one_neighbour_pass_nd03() {
    let (a, b) = (lan_a(), lan_b());
    let c = Natted {
        node: "peer-c",
        nat: "nat-c",
        lan: ep([10, 0, 2, 2], 7000),
        wan: ep([198, 51, 100, 20], 7000),
    };
    let mut cap = Cap::new();
    solicit(&mut cap, 0, &a, 1);
    solicit(&mut cap, 100, &b, 3);
    solicit(&mut cap, 200, &c, 5);
    cap.hops(1000, 10, &probe(&a, c.wan), &across(&a, &c));
    cap.hops(1010, 11, &probe(&b, c.wan), &across(&b, &c));
    cap.hops(1100, 12, &answer(&c, &a), &across(&c, &a));
    cap.hops(1110, 13, &answer(&c, &b), &across(&c, &b));
    expect(&run(&cap), &[("ND-03", Pass)]);

    // The broken variant still fails: C answers A's NS to B.
    let mut bad = Cap::new();
    solicit(&mut bad, 0, &a, 1);
    solicit(&mut bad, 100, &b, 3);
    solicit(&mut bad, 200, &c, 5);
    bad.hops(1000, 10, &probe(&a, c.wan), &across(&a, &c));
    bad.hops(1100, 12, &answer(&c, &b), &across(&c, &b));
    expect(&run(&bad), &[("ND-03", Fail)]);
}

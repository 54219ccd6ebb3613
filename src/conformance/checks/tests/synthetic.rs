//! Each check's PASS and FAIL (or WARN) side on hand-made exchanges.

use std::time::Duration;

use super::build::*;
use crate::capture::Direction;
use crate::conformance::checks::{Expectations, Injection, PathExpectation, REGISTRY};
use crate::conformance::decode::{addr, Endpoint, PathKind};
use crate::conformance::model::Verdict::{self, *};

fn run(c: &Cap) -> Vec<crate::conformance::model::CheckResult> {
    c.run(false, Expectations::default())
}

#[test]
fn registry_has_every_check_once() {
    let ids: Vec<&str> = REGISTRY.iter().map(|d| d.id).collect();
    let mut want = Vec::new();
    for (p, n) in [("RS", 4), ("RA", 9), ("AF", 3), ("KA", 5), ("ND", 8), ("EN", 6)] {
        for i in 1..=n {
            want.push(format!("{p}-{i:02}"));
        }
    }
    assert_eq!(ids, want);
    for d in REGISTRY {
        assert!(!d.title.is_empty() && !d.source.is_empty(), "{}", d.id);
    }
    let injecting: Vec<&str> = REGISTRY.iter().filter(|d| d.injects).map(|d| d.id).collect();
    assert_eq!(injecting, ["RA-07", "RA-08", "ND-08", "EN-06"]);
}

#[test]
fn a_good_exchange_passes_everything_that_applies() {
    let c = good_exchange();
    let expect = Expectations {
        keepalive_period: Some(Duration::from_secs(1)),
        paths: vec![PathExpectation {
            a: "peer-1".into(),
            b: "peer-2".into(),
            path: PathKind::Direct,
        }],
        max_probes: Some(3),
        probe_holddown: Some(Duration::from_secs(3)),
        ..Expectations::default()
    };
    let results = c.run(false, expect);
    expect_verdicts(
        &results,
        &[
            ("RS-01", Pass),
            ("RS-02", Pass),
            ("RS-03", Pass),
            ("RS-04", Pass),
            ("RA-01", Pass),
            ("RA-02", Pass),
            ("RA-03", Pass),
            ("RA-04", Pass),
            ("RA-05", Pass),
            ("RA-06", Pass),
            ("RA-07", NotApplicable),
            ("RA-08", NotApplicable),
            ("RA-09", NotApplicable),
            ("AF-01", Pass),
            ("AF-02", Pass),
            ("AF-03", Pass),
            ("KA-01", Pass),
            ("KA-02", Pass),
            ("KA-03", Pass),
            ("KA-04", Pass),
            ("KA-05", NotApplicable),
            ("ND-01", Pass),
            ("ND-02", Pass),
            ("ND-03", Pass),
            ("ND-04", Pass),
            ("ND-05", Pass),
            ("ND-06", Pass),
            ("ND-07", Pass),
            ("ND-08", NotApplicable),
            ("EN-01", Pass),
            ("EN-02", NotApplicable),
            ("EN-03", Pass),
            ("EN-04", Pass),
            ("EN-05", Pass),
            ("EN-06", NotApplicable),
        ],
    );
    for r in &results {
        assert_eq!(
            r.evidence.first().map(|e| e.capture.as_str()),
            Some("test.pcapng"),
            "{}",
            r.id
        );
    }
}

fn expect_verdicts(results: &[crate::conformance::model::CheckResult], want: &[(&str, Verdict)]) {
    expect(results, want);
}

/// Without expectations, checks that need them say N/A (or INFO for a recorded parameter).
#[test]
fn absent_expectations_give_na_not_pass() {
    let results = run(&good_exchange());
    expect(
        &results,
        &[
            ("KA-03", Info),
            ("KA-05", NotApplicable),
            ("ND-05", NotApplicable),
            ("ND-07", NotApplicable),
        ],
    );
    assert!(get(&results, "ND-07").message.contains("needs"));
}

#[test]
fn rs_checks_fail_on_bad_solicitations() {
    let (r, a) = (router(), pa());
    let mut c = Cap::new();
    c.dg(0, a, r, with_hop(rs(None), 64));
    let mut bad_sum = rs(None);
    bad_sum[43] ^= 0xff;
    c.dg(1000, a, r, bad_sum);
    c.dg(
        2000,
        a,
        r,
        icmp6(
            addr::encode_c(&prefix(), a, 1),
            "ff02::5".parse().unwrap(),
            255,
            133,
            0,
            &[0; 4],
        ),
    );
    c.dg(
        3000,
        a,
        r,
        icmp6(
            "::".parse().unwrap(),
            all_routers(),
            255,
            133,
            0,
            &[0, 0, 0, 0, 1, 0, 0, 0],
        ),
    );
    let results = run(&c);
    expect(&results, &[("RS-01", Fail), ("RS-02", Fail)]);
    let ev = &get(&results, "RS-01").evidence[0];
    assert_eq!(ev.frames, vec![1, 2, 4], "{}", ev.note);
    assert_eq!(get(&results, "RS-02").evidence[0].frames, vec![3]);
}

#[test]
fn rs03_slla_from_unspecified_warns_and_fails_strict() {
    let mut c = Cap::new();
    c.dg(0, pa(), router(), rs(Some([0, 0, 0, 0, 0, 1])));
    assert_eq!(verdict(&run(&c), "RS-03"), Warn);
    assert_eq!(verdict(&c.run(true, Expectations::default()), "RS-03"), Fail);
    let mut ok = Cap::new();
    ok.dg(0, pa(), router(), rs(None));
    assert_eq!(verdict(&run(&ok), "RS-03"), Pass);
}

#[test]
fn rs04_schedule_and_stopping() {
    let (r, a) = (router(), pa());
    // Backoff 1, 3, 7 s, then an RA, then it keeps soliciting.
    let mut c = Cap::new();
    for t in [0, 1000, 4000, 11_000] {
        c.dg(t, a, r, rs(None));
    }
    c.dg(11_010, r, a, ra_for(a));
    for t in [12_000, 13_000, 15_000] {
        c.dg(t, a, r, rs(None));
    }
    let sched = Expectations {
        rs_schedule: Some(vec![
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(7),
        ]),
        ..Expectations::default()
    };
    assert_eq!(verdict(&c.run(false, sched.clone()), "RS-04"), Fail);
    // Stops: PASS with the schedule, and WARN when the schedule differs.
    let mut ok = Cap::new();
    for t in [0, 1000, 4000, 11_000] {
        ok.dg(t, a, r, rs(None));
    }
    ok.dg(11_010, r, a, ra_for(a));
    assert_eq!(verdict(&ok.run(false, sched), "RS-04"), Pass);
    let other = Expectations {
        rs_schedule: Some(vec![Duration::from_secs(2)]),
        ..Expectations::default()
    };
    assert_eq!(verdict(&ok.run(false, other), "RS-04"), Warn);
}

#[test]
fn ra01_invalid_router_advertisements() {
    let (r, a) = (router(), pa());
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.dg(10, r, a, with_hop(ra_for(a), 254));
    let mut ok = Cap::new();
    ok.dg(0, a, r, rs(None));
    ok.dg(10, r, a, ra_for(a));
    assert_eq!(verdict(&run(&c), "RA-01"), Fail);
    assert_eq!(verdict(&run(&ok), "RA-01"), Pass);
    // A global source.
    let mut g = Cap::new();
    let mut body = vec![64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0];
    body.extend(pio(addr::encode_c(&prefix(), a, 0), 114, 0xC0, 10, 5));
    g.dg(10, r, a, icmp6(a6(r), all_nodes(), 255, 134, 0, &body));
    assert_eq!(verdict(&run(&g), "RA-01"), Fail);
}

#[test]
fn ra02_ra03_ra05_destination_delay_and_mapping() {
    let (r, a, b) = (router(), pa(), pb());
    // RA to the wrong endpoint.
    let mut wrong = Cap::new();
    wrong.dg(0, a, r, rs(None));
    wrong.dg(10, r, b, ra_for(b));
    assert_eq!(verdict(&run(&wrong), "RA-02"), Fail);
    // RA to the right endpoint with the wrong inner destination.
    let mut dst = Cap::new();
    dst.dg(0, a, r, rs(None));
    dst.dg(10, r, a, ra_with(a, 1800, 30_000, a6(a)));
    assert_eq!(verdict(&run(&dst), "RA-02"), Fail);
    // Slow RA.
    let mut slow = Cap::new();
    slow.dg(0, a, r, rs(None));
    slow.dg(900, r, a, ra_for(a));
    let res = run(&slow);
    expect(&res, &[("RA-02", Pass), ("RA-03", Warn)]);
    // The PIO names someone else.
    let mut pio_wrong = Cap::new();
    pio_wrong.dg(0, a, r, rs(None));
    pio_wrong.dg(10, r, a, ra_for(b));
    expect(&run(&pio_wrong), &[("RA-02", Pass), ("RA-05", Fail)]);
}

#[test]
fn ra04_prefix_information() {
    let (r, a) = (router(), pa());
    let mk = |len: u8, flags: u8, valid: u32, pref: u32, prefix_bits: bool| {
        let mut body = vec![64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut p = addr::encode_c(&prefix(), a, 0).octets();
        if prefix_bits {
            p[15] = 1;
        }
        body.extend(pio(p.into(), len, flags, valid, pref));
        let mut c = Cap::new();
        c.dg(0, a, r, rs(None));
        c.dg(10, r, a, icmp6(ll6(), all_nodes(), 255, 134, 0, &body));
        verdict(&run(&c), "RA-04")
    };
    assert_eq!(mk(114, 0xC0, 100, 50, false), Pass);
    assert_eq!(mk(64, 0xC0, 100, 50, false), Fail, "length per profile");
    assert_eq!(mk(114, 0x80, 100, 50, false), Fail, "A not set");
    assert_eq!(mk(114, 0xC0, 50, 100, false), Fail, "preferred > valid");
    assert_eq!(mk(114, 0xC0, 100, 50, true), Fail, "bits past the length");
}

#[test]
fn ra06_lifetimes() {
    let (r, a) = (router(), pa());
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.dg(10, r, a, ra_with(a, 0xffff, u32::MAX, all_nodes()));
    assert_eq!(verdict(&run(&c), "RA-06"), Warn);
    assert_eq!(verdict(&c.run(true, Expectations::default()), "RA-06"), Fail);
}

#[test]
fn ra07_peer_ignores_invalid_ras() {
    let (r, a) = (router(), pa());
    let evil = ep([203, 0, 113, 66], 5555);
    let fake_prefix: std::net::Ipv6Addr = "2001:db8:bad::".parse().unwrap();
    let mut body = vec![64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0];
    body.extend(pio(addr::encode_c(&fake_prefix, a, 0), 114, 0xC0, 100, 50));
    let forged = icmp6(ll6(), all_nodes(), 255, 134, 0, &body);
    let base = |c: &mut Cap| {
        c.dg(0, a, r, rs(None));
        c.dg(10, r, a, ra_for(a));
        c.dg(1000, evil, a, forged.clone());
    };
    // Keeps its address: PASS.
    let mut ok = Cap::new();
    base(&mut ok);
    ok.dg(2000, a, r, ping(a6(a), a6(pb()), 64, 1, 0));
    assert_eq!(verdict(&run(&ok), "RA-07"), Pass);
    // Moves to the forged prefix: FAIL.
    let mut bad = Cap::new();
    base(&mut bad);
    bad.dg(
        2000,
        a,
        r,
        ping(addr::encode_c(&fake_prefix, a, 1), a6(pb()), 64, 1, 0),
    );
    assert_eq!(verdict(&run(&bad), "RA-07"), Fail);
    // No invalid RA at all: N/A.
    let mut none = Cap::new();
    none.dg(0, a, r, rs(None));
    assert_eq!(verdict(&run(&none), "RA-07"), NotApplicable);
    // Without an address, acting on a hop-limit-254 RA (keepalives, no more RS) fails.
    let mut early = Cap::new();
    early.dg(0, a, r, rs(None));
    early.dg(10, r, a, with_hop(ra_for(a), 254));
    early.at(1000, udp(a, r, 3, &[]));
    assert_eq!(verdict(&run(&early), "RA-07"), Fail);
}

/// An invalid RA is held against the peer it reached only: another peer without an
/// address that sends keepalives in the meantime did not act on it.
#[test]
fn ra07_judges_only_the_peer_the_invalid_ra_reached() {
    let (r, a, b) = (router(), pa(), pb());
    let forged = || with_hop(ra_for(a), 254);
    let mut others = Cap::new();
    others.dg(0, a, r, rs(None));
    others.dg(10, r, a, forged());
    others.at(1000, udp(b, r, 3, &[]));
    assert_eq!(verdict(&run(&others), "RA-07"), Pass);
    let mut own = Cap::new();
    own.dg(0, a, r, rs(None));
    own.dg(10, r, a, forged());
    own.at(1000, udp(b, r, 3, &[]));
    own.at(1100, udp(a, r, 3, &[]));
    let res = run(&own);
    assert_eq!(verdict(&res, "RA-07"), Fail);
    let m = &get(&res, "RA-07").message;
    assert!(m.starts_with("frame 4: ") && !m.contains("more"), "{m}");
}

#[test]
fn ra08_router_ignores_invalid_rs() {
    let (r, a) = (router(), pa());
    let mut ok = Cap::new();
    ok.dg(0, a, r, with_hop(rs(None), 254));
    ok.dg(3000, a, r, rs(None));
    ok.dg(3010, r, a, ra_for(a));
    assert_eq!(verdict(&run(&ok), "RA-08"), Pass);
    let mut bad = Cap::new();
    bad.dg(0, a, r, with_hop(rs(None), 254));
    bad.dg(10, r, a, ra_for(a));
    assert_eq!(verdict(&run(&bad), "RA-08"), Fail);
    let mut deaf = Cap::new();
    deaf.dg(0, a, r, with_hop(rs(None), 254));
    deaf.dg(3000, a, r, rs(None));
    deaf.dg(9000, a, r, udp(a, r, 3, &[]));
    assert_eq!(verdict(&run(&deaf), "RA-08"), Fail);
    // An invalid RS, then a spoofed data packet from the same socket: the router's
    // "mapping changed" RA to the stale (global) address answers the data, not the RS.
    let mut spoof = Cap::new();
    spoof.dg(0, a, r, with_hop(rs(None), 254));
    spoof.dg(5, a, r, ping(a6(pb()), a6(router()), 64, 1, 0));
    spoof.dg(10, r, a, ra_with(a, 1800, 30_000, a6(pb())));
    spoof.dg(3000, a, r, rs(None));
    spoof.dg(3010, r, a, ra_for(a));
    assert_eq!(
        verdict(&run(&spoof), "RA-08"),
        Pass,
        "{:?}",
        get(&run(&spoof), "RA-08")
    );
}

/// A NAT rebinding seen at the router: A's mapping moves from `a` to `a2`; the router sends
/// an RA with the new mapping; then `moves` decides whether A uses its new address.
fn rebinding(moves: bool) -> Cap {
    let (r, a, b) = (router(), pa(), pb());
    let a2 = ep([198, 51, 100, 7], 41000);
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.dg(10, r, a, ra_for(a));
    c.dg(1000, a, r, ping(a6(a), a6(b), 64, 1, 0));
    c.dg(1001, r, b, ping(a6(a), a6(b), 63, 1, 0));
    // The NAT rebinds: the stale address arrives from a2.
    c.dg(5000, a2, r, ping(a6(a), a6(b), 64, 2, 0));
    c.dg(5001, r, a2, ra_with(a2, 1800, 30_000, a6(a)));
    let src = if moves { a6(a2) } else { a6(a) };
    c.dg(7000, a2, r, ping(src, a6(b), 64, 3, 0));
    if moves {
        c.dg(7001, r, b, ping(src, a6(b), 63, 3, 0));
    }
    c
}

#[test]
fn ra09_rebinding() {
    let good = run(&rebinding(true));
    expect(&good, &[("RA-09", Pass), ("AF-03", Warn), ("EN-02", Pass)]);
    // The C reference's behaviour (spec §8): it drops the unsolicited RA and keeps its stale
    // address, so the router drops its traffic for good.
    let bad = run(&rebinding(false));
    expect(&bad, &[("RA-09", Fail), ("EN-02", Pass)]);
    assert!(
        get(&bad, "RA-09").message.contains("old address"),
        "{}",
        get(&bad, "RA-09").message
    );
    // Expected but absent.
    let none = good_exchange().run(
        false,
        Expectations {
            rebinding_at_ns: Some(T0_S * 1_000_000_000 + 3_000_000_000),
            ..Expectations::default()
        },
    );
    assert_eq!(verdict(&none, "RA-09"), NotApplicable);
    assert!(get(&none, "RA-09").message.contains("expected"));
}

#[test]
fn af_checks() {
    let (r, a, b) = (router(), pa(), pb());
    // Uses an address that is not the advertised one (other lanip is fine, other prefix not).
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.dg(10, r, a, ra_for(a));
    let other: std::net::Ipv6Addr = "2001:db8:6bed:5::".parse().unwrap();
    c.dg(1000, a, r, ping(addr::encode_c(&other, a, 1), a6(b), 64, 1, 0));
    c.dg(1500, a, r, ping(a6(b), a6(a), 64, 1, 0));
    expect(&run(&c), &[("AF-01", Fail), ("AF-03", Fail)]);
    // lanip 0.
    let mut z = Cap::new();
    z.dg(0, a, r, ping(addr::encode_c(&prefix(), a, 0), a6(b), 64, 1, 0));
    expect(&run(&z), &[("AF-02", Fail), ("AF-03", Pass)]);
}

#[test]
fn ka_checks() {
    let (r, a) = (router(), pa());
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.at(500, udp(a, r, 64, &[])); // before the RA, wrong TTL
    c.dg(1000, a, r, rs(None));
    c.dg(1010, r, a, ra_for(a));
    c.at(2000, udp(a, r, 3, &[]));
    c.at(2300, udp(a, r, 3, &[])); // too soon
    c.at(2400, udp(a, ep([203, 0, 113, 50], 9), 3, &[])); // not to the router
    let e = Expectations {
        keepalive_period: Some(Duration::from_secs(1)),
        ..Expectations::default()
    };
    let res = c.run(false, e);
    expect(
        &res,
        &[("KA-01", Fail), ("KA-02", Fail), ("KA-03", Fail), ("KA-04", Warn)],
    );
    assert_eq!(get(&res, "KA-02").evidence[0].frames, vec![2]);
    // A one-byte "keepalive" is not empty.
    let mut one = Cap::new();
    one.dg(0, a, r, rs(None));
    one.dg(10, r, a, ra_for(a));
    one.at(1000, udp(a, r, 3, &[0]));
    assert_eq!(verdict(&run(&one), "KA-01"), Fail);
}

#[test]
fn ka05_mapping_stability() {
    let (r, a, b) = (router(), pa(), pb());
    let e = Expectations {
        keepalive_period: Some(Duration::from_secs(1)),
        nat_udp_timeout: Some(Duration::from_secs(2)),
        ..Expectations::default()
    };
    let mut stable = Cap::new();
    stable.dg(0, a, r, rs(None));
    stable.dg(10, r, a, ra_for(a));
    for i in 1..=8u16 {
        stable.at(u64::from(i) * 1000, udp_id(a, r, 3, &[], i));
    }
    assert_eq!(verdict(&stable.run(false, e.clone()), "KA-05"), Pass);
    let mut moved = stable.clone();
    moved.at(8500, udp(ep([198, 51, 100, 7], 41000), r, 3, &[]));
    moved.dg(
        8600,
        ep([198, 51, 100, 7], 41000),
        r,
        ping(a6(a), a6(b), 64, 1, 0),
    );
    assert_eq!(verdict(&moved.run(false, e.clone()), "KA-05"), Fail);
    // Too short a capture to say.
    let mut short = Cap::new();
    short.dg(0, a, r, rs(None));
    short.at(1000, udp(a, r, 3, &[]));
    assert_eq!(verdict(&short.run(false, e), "KA-05"), NotApplicable);
}

/// Spec §8: the C peer's bypass NS decodes the target with the v01 layout and carries 10
/// stray bytes; its router's NA has flags 0xC0.
#[test]
fn c_reference_nd_facts() {
    let r = ep([145, 136, 0, 1], 25790);
    let p: std::net::Ipv6Addr = "fc64:bed:9188:1::".parse().unwrap();
    let me = ep([145, 136, 0, 2], 55796);
    let other = ep([145, 136, 0, 3], 50000);
    let (mine, theirs) = (addr::encode_c(&p, me, 1), addr::encode_c(&p, other, 1));
    // The C peer reads the target with layout V's byte positions (no ff:fe check).
    let garbage = addr::decode_v_raw(&theirs);
    assert_eq!(garbage.port(), 34962, "{garbage}");
    let mut c = Cap::new();
    let mut probe = ns(mine, theirs, theirs, Some(addr::link_layer(me)));
    probe.extend_from_slice(&[0; 10]);
    c.dg(0, me, garbage, probe);
    // NS for the router's address, NA with flags 0xC0 (R, S, no O).
    let router_addr = addr::encode_c(&p, r, 0);
    c.dg(
        100,
        me,
        r,
        ns(mine, router_addr, router_addr, Some(addr::link_layer(me))),
    );
    c.dg(
        101,
        r,
        me,
        na(ll6(), mine, 0xC0, router_addr, Some(addr::link_layer(r))),
    );
    let res = run(&c);
    expect(
        &res,
        &[("ND-01", Fail), ("ND-02", Fail), ("ND-03", Warn), ("EN-01", Fail)],
    );
    assert!(
        get(&res, "ND-01").message.contains("10 bytes after"),
        "{}",
        get(&res, "ND-01").message
    );
    assert!(get(&res, "ND-03").message.contains("Override"));
    assert_eq!(get(&res, "ND-02").evidence[0].frames, vec![1]);
    assert!(
        get(&res, "ND-02").message.contains("v01 layout"),
        "{}",
        get(&res, "ND-02").message
    );
}

#[test]
fn nd02_to_nd04_failures() {
    let (a, b) = (pa(), pb());
    // NS sent to the wrong endpoint, with a wrong SLLA.
    let mut c = Cap::new();
    c.dg(
        0,
        a,
        ep([203, 0, 113, 9], 1),
        ns(a6(a), a6(b), a6(b), Some(addr::link_layer(b))),
    );
    assert_eq!(verdict(&run(&c), "ND-02"), Fail);
    // NA with the wrong target, not solicited, not sent back.
    let mut n = Cap::new();
    n.dg(0, a, b, ns(a6(a), a6(b), a6(b), Some(addr::link_layer(a))));
    n.dg(10, b, a, na(a6(b), a6(a), 0x20, a6(a), None));
    assert_eq!(verdict(&run(&n), "ND-03"), Fail);
    // Direct data with no NA at all.
    let mut d = Cap::new();
    d.dg(0, a, b, ping(a6(a), a6(b), 64, 1, 0));
    assert_eq!(verdict(&run(&d), "ND-04"), Fail);
    // Direct data after an NA that answers no probe of ours.
    let mut u = Cap::new();
    u.dg(0, b, a, na(a6(b), a6(a), 0x60, a6(b), None));
    u.dg(10, a, b, ping(a6(a), a6(b), 64, 1, 0));
    assert_eq!(verdict(&run(&u), "ND-04"), Fail);
}

#[test]
fn nd05_nd06_paths() {
    let (r, a, b) = (router(), pa(), pb());
    let want_direct = Expectations {
        paths: vec![PathExpectation {
            a: "peer-1".into(),
            b: "peer-2".into(),
            path: PathKind::Direct,
        }],
        ..Expectations::default()
    };
    // Only via the router, and only one way.
    let mut c = Cap::new();
    c.dg(0, b, r, rs(None));
    c.dg(1, r, b, ra_for(b));
    c.dg(1000, a, r, ping(a6(a), a6(b), 64, 1, 0));
    c.dg(1001, r, b, ping(a6(a), a6(b), 63, 1, 0));
    let res = c.run(false, want_direct.clone());
    assert_eq!(verdict(&res, "ND-05"), Fail);
    // Asymmetric: A→B direct, B→A still via the router long after.
    let mut s = good_exchange();
    s.dg(9000, b, r, ping(a6(b), a6(a), 64, 9, 0));
    assert_eq!(verdict(&run(&s), "ND-06"), Warn);
    let via = Expectations {
        paths: vec![PathExpectation {
            a: "peer-1".into(),
            b: "peer-2".into(),
            path: PathKind::ViaRouter,
        }],
        ..Expectations::default()
    };
    assert_eq!(verdict(&good_exchange().run(false, via), "ND-05"), Fail);
}

#[test]
fn nd07_probe_rate() {
    let (a, b) = (pa(), pb());
    let e = Expectations {
        max_probes: Some(3),
        probe_holddown: Some(Duration::from_secs(30)),
        ..Expectations::default()
    };
    let mut c = Cap::new();
    for (i, t) in [0u64, 100, 200, 300].iter().enumerate() {
        c.at(
            *t,
            udp_id(
                a,
                b,
                64,
                &ns(a6(a), a6(b), a6(b), Some(addr::link_layer(a))),
                i as u16,
            ),
        );
    }
    assert_eq!(verdict(&c.run(false, e.clone()), "ND-07"), Fail);
    let mut re = Cap::new();
    for (i, t) in [0u64, 100, 200, 20_000].iter().enumerate() {
        re.at(
            *t,
            udp_id(
                a,
                b,
                64,
                &ns(a6(a), a6(b), a6(b), Some(addr::link_layer(a))),
                i as u16,
            ),
        );
    }
    assert_eq!(
        verdict(&re.run(false, e.clone()), "ND-07"),
        Fail,
        "re-probed inside the hold-down"
    );
    let mut ok = Cap::new();
    for (i, t) in [0u64, 100, 200, 31_000].iter().enumerate() {
        ok.at(
            *t,
            udp_id(
                a,
                b,
                64,
                &ns(a6(a), a6(b), a6(b), Some(addr::link_layer(a))),
                i as u16,
            ),
        );
    }
    assert_eq!(verdict(&ok.run(false, e), "ND-07"), Pass);
}

/// The negative corpus injected from `evil` since the capture's start, its end unknown.
fn injected_by(evil: Endpoint) -> Expectations {
    Expectations {
        injection: Some(Injection {
            at_ns: T0_S * 1_000_000_000,
            until_ns: None,
            source: Some(*evil.ip()),
        }),
        ..Expectations::default()
    }
}

#[test]
fn nd08_spoofed_nd_changes_nothing() {
    let (a, b) = (pa(), pb());
    let evil = ep([203, 0, 113, 66], 5555);
    let inj = injected_by(evil);
    // A spoofed NS (source names b, but it comes from evil) and a spoofed NA.
    let base = |c: &mut Cap| {
        c.dg(0, evil, a, ns(a6(b), a6(a), a6(a), Some(addr::link_layer(b))));
        c.dg(100, evil, a, na(a6(b), a6(a), 0x60, a6(b), None));
    };
    let mut ok = Cap::new();
    base(&mut ok);
    let res = ok.run(false, inj.clone());
    assert_eq!(verdict(&res, "ND-08"), Pass);
    // Answering the spoofed NS, or sending data to the NA's sender, fails.
    let mut bad = Cap::new();
    base(&mut bad);
    bad.dg(10, a, evil, na(a6(a), a6(b), 0x60, a6(a), None));
    assert_eq!(verdict(&bad.run(false, inj.clone()), "ND-08"), Fail);
    let mut used = Cap::new();
    base(&mut used);
    used.dg(200, a, evil, ping(a6(a), a6(b), 64, 1, 0));
    assert_eq!(verdict(&used.run(false, inj), "ND-08"), Fail);
}

/// ND-08 holds against a spoofed NA the first data packet after it from its destination to
/// its source for its target: not one before it, not one for another address.
#[test]
fn nd08_names_the_first_data_after_the_spoofed_na() {
    let (a, b) = (pa(), pb());
    let evil = ep([203, 0, 113, 66], 5555);
    let inj = injected_by(evil);
    let mut c = Cap::new();
    c.dg(0, a, evil, ping(a6(a), a6(b), 64, 1, 0));
    c.dg(100, evil, a, na(a6(b), a6(a), 0x60, a6(b), None));
    c.dg(150, a, evil, ping(a6(a), a6(evil), 64, 2, 0));
    c.dg(200, a, evil, ping(a6(a), a6(b), 64, 3, 0));
    c.dg(300, a, evil, ping(a6(a), a6(b), 64, 4, 0));
    let res = c.run(false, inj);
    assert_eq!(verdict(&res, "ND-08"), Fail);
    let m = &get(&res, "ND-08").message;
    assert!(
        m.starts_with("frame 4: direct data after the NA of frame 2"),
        "{m}"
    );
    assert!(!m.contains("more"), "{m}");
}

#[test]
fn en01_en04_lengths_and_truncation() {
    let (r, a, b) = (router(), pa(), pb());
    let mut c = Cap::new();
    c.dg(0, a, r, vec![0x45, 1, 2, 3, 4, 5]);
    let big = ping(a6(a), a6(b), 64, 1, 1400);
    c.dg(10, a, r, big[..1280].to_vec());
    let res = run(&c);
    expect(&res, &[("EN-01", Fail), ("EN-04", Fail)]);
    assert_eq!(get(&res, "EN-04").evidence[0].frames, vec![2]);
    let mut ok = Cap::new();
    ok.dg(10, a, r, ping(a6(a), a6(b), 64, 1, 1232));
    expect(&run(&ok), &[("EN-01", Pass), ("EN-04", Pass)]);
}

#[test]
fn en02_en03_en05_router_forwarding() {
    let (r, a, b) = (router(), pa(), pb());
    // Relays a spoofed source; does not decrement; reflects; relays multicast.
    let mut c = Cap::new();
    c.dg(0, a, r, ping(a6(b), a6(pb()), 64, 1, 0));
    c.dg(1, r, b, ping(a6(b), a6(pb()), 63, 1, 0));
    c.dg(100, a, r, ping(a6(a), a6(b), 64, 2, 0));
    c.dg(101, r, b, ping(a6(a), a6(b), 64, 2, 0));
    c.dg(200, a, r, ping(a6(a), a6(a), 64, 3, 0));
    c.dg(201, r, a, ping(a6(a), a6(a), 63, 3, 0));
    c.dg(300, a, r, ping(a6(a), "ff02::1".parse().unwrap(), 64, 4, 0));
    c.dg(301, r, b, ping(a6(a), "ff02::1".parse().unwrap(), 63, 4, 0));
    c.dg(400, a, r, ping(a6(a), a6(b), 1, 5, 0));
    c.dg(401, r, b, ping(a6(a), a6(b), 0, 5, 0));
    let res = run(&c);
    expect(&res, &[("EN-02", Fail), ("EN-03", Fail), ("EN-05", Fail)]);
    let en03 = &get(&res, "EN-03").message;
    assert!(
        en03.contains("hop limit 64 in, 64 out") && en03.contains("hop limit 1"),
        "{en03}"
    );
}

#[test]
fn en06_survives_the_corpus() {
    let (r, a, b) = (router(), pa(), pb());
    let evil = ep([203, 0, 113, 66], 5555);
    let inj = Expectations {
        injection: Some(Injection {
            at_ns: T0_S * 1_000_000_000 + 1_000_000_000,
            until_ns: Some(T0_S * 1_000_000_000 + 2_000_000_000),
            source: Some(*evil.ip()),
        }),
        ..Expectations::default()
    };
    let base = |c: &mut Cap| {
        c.dg(0, a, r, rs(None));
        c.dg(10, r, a, ra_for(a));
        c.dg(1000, evil, r, vec![0xde, 0xad]);
        c.dg(1100, evil, r, vec![0x60; 45]);
        c.dg(3000, b, r, rs(None));
    };
    let mut ok = Cap::new();
    base(&mut ok);
    ok.dg(3010, r, b, ra_for(b));
    ok.dg(6000, a, r, udp(a, r, 3, &[])[28..].to_vec());
    let res = ok.run(false, inj.clone());
    assert_eq!(verdict(&res, "EN-06"), Pass, "{}", get(&res, "EN-06").message);
    // The injected garbage is not held against the implementation.
    assert_eq!(verdict(&res, "EN-01"), Pass);
    let mut dead = Cap::new();
    base(&mut dead);
    dead.dg(9000, b, r, rs(None));
    assert_eq!(verdict(&dead.run(false, inj.clone()), "EN-06"), Fail);
    assert_eq!(
        verdict(&good_exchange().run(false, Expectations::default()), "EN-06"),
        NotApplicable
    );
}

/// A lab capture: every packet seen at the peer's uplink, both NAT sides and the router.
/// The checks judge the router's view where it matters (RA-05) and count each packet once.
#[test]
fn multi_point_capture_of_one_exchange() {
    use Direction::{Inbound as In, Outbound as Out};
    let lan = ep([10, 0, 1, 2], 5000);
    let wan = ep([203, 0, 113, 1], 61000);
    let r = router();
    let mut c = Cap::new();
    let rs_b = rs(None);
    c.at_if(0, "peer-a/eth0", Some(Out), udp_id(lan, r, 64, &rs_b, 7));
    c.at_if(1, "nat-a/lan", Some(In), udp_id(lan, r, 64, &rs_b, 7));
    c.at_if(1, "nat-a/wan", Some(Out), udp_id(wan, r, 63, &rs_b, 7));
    c.at_if(2, "router/eth0", Some(In), udp_id(wan, r, 63, &rs_b, 7));
    let ra_b = ra_for(wan);
    c.at_if(5, "router/eth0", Some(Out), udp_id(r, wan, 64, &ra_b, 9));
    c.at_if(6, "nat-a/wan", Some(In), udp_id(r, wan, 64, &ra_b, 9));
    c.at_if(6, "nat-a/lan", Some(Out), udp_id(r, lan, 63, &ra_b, 9));
    c.at_if(7, "peer-a/eth0", Some(In), udp_id(r, lan, 63, &ra_b, 9));
    for i in 0..3u16 {
        let t = 1000 + u64::from(i) * 1000;
        c.at_if(t, "peer-a/eth0", Some(Out), udp_id(lan, r, 3, &[], 100 + i));
        c.at_if(t + 1, "nat-a/lan", Some(In), udp_id(lan, r, 3, &[], 100 + i));
        c.at_if(t + 1, "nat-a/wan", Some(Out), udp_id(wan, r, 2, &[], 100 + i));
        c.at_if(t + 2, "router/eth0", Some(In), udp_id(wan, r, 2, &[], 100 + i));
    }
    let cap = c.decode();
    assert_eq!(cap.packets, 5);
    assert_eq!(crate::conformance::decode::kind_counts(&cap).get("KA"), Some(&3));
    let res = c.run(false, Expectations::default());
    expect(
        &res,
        &[
            ("RA-02", Pass),
            ("RA-05", Pass),
            ("KA-01", Pass),
            ("KA-02", Pass),
            ("KA-04", Pass),
            ("RS-04", Pass),
        ],
    );
    let trace = crate::conformance::trace::render_trace(
        &crate::conformance::trace::trace(&cap, &Default::default()),
        None,
    );
    assert_eq!(
        trace,
        "peer-a -> router: RS\nrouter -> peer-a: RA peer-a@nat-a:P1/114\npeer-a -> router: KA ×3 every 1.0 s\n"
    );
    // The single-point view at the peer's LAN side: RA-05 cannot see the router's view.
    let mut lan_only = Cap::new();
    for f in c.frames.iter().filter(|f| f.iface == "peer-a/eth0") {
        lan_only.at(f.t_ms, f.bytes.clone());
    }
    let res = lan_only.run(false, Expectations::default());
    expect(
        &res,
        &[("RA-02", Pass), ("RA-05", NotApplicable), ("KA-02", Pass)],
    );
}

#[test]
fn unknown_ports_are_found_by_consistency_only() {
    let (a, b) = (ep([198, 51, 100, 7], 40000), ep([203, 0, 113, 9], 40002));
    // IPv6-looking payloads whose addresses name nothing: not 6bed4.
    let mut noise = Cap::new();
    noise.dg(
        0,
        a,
        b,
        ping(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            64,
            1,
            0,
        ),
    );
    noise.dg(5, a, b, vec![1, 2, 3]);
    assert!(noise.decode().records.is_empty());
    // The same flow with a consistent address is found, and so is its other traffic.
    let mut six = noise.clone();
    six.dg(10, a, b, ping(a6(a), a6(b), 64, 2, 0));
    let cap = six.decode();
    assert_eq!(cap.records.len(), 3);
    assert!(cap.routers.is_empty());
    // A port override makes a router out of any port.
    let r = ep([192, 0, 2, 1], 4444);
    let mut ov = Cap::new();
    ov.dg(0, a, r, rs(None));
    let opts = crate::conformance::decode::DecodeOptions {
        port: Some(4444),
        ..Default::default()
    };
    let cap = crate::conformance::decode::decode_bytes(&ov.pcapng(), opts).expect("decode");
    assert_eq!(cap.routers.iter().copied().collect::<Vec<_>>(), vec![r]);
    assert!(cap.records[0].towards_router);
}

#[test]
fn tun_side_and_noise() {
    use Direction::{Inbound as In, Outbound as Out};
    let (r, a, b) = (router(), pa(), pb());
    let mut c = Cap::new();
    // Kernel noise on the TUN: an MLD report and the kernel's own RS.
    c.at_if(
        0,
        "peer-a/6bed4",
        Some(Out),
        icmp6(
            "fe80::1".parse().unwrap(),
            "ff02::16".parse().unwrap(),
            1,
            143,
            0,
            &[0; 4],
        ),
    );
    c.at_if(
        1,
        "peer-a/6bed4",
        Some(Out),
        icmp6("fe80::1".parse().unwrap(), all_routers(), 255, 133, 0, &[0; 4]),
    );
    let p = ping(a6(a), a6(b), 64, 1, 8);
    c.at_if(10, "peer-a/6bed4", Some(Out), p.clone());
    c.at_if(11, "peer-a/eth0", Some(Out), udp(a, r, 64, &p));
    c.at_if(12, "router/eth0", Some(In), udp(a, r, 64, &p));
    c.at_if(
        13,
        "router/eth0",
        Some(Out),
        udp(r, b, 64, &with_hop(p.clone(), 63)),
    );
    c.at_if(
        14,
        "peer-b/eth0",
        Some(In),
        udp(r, b, 64, &with_hop(p.clone(), 63)),
    );
    c.at_if(15, "peer-b/6bed4", Some(In), with_hop(p, 63));
    let cap = c.decode();
    assert_eq!(cap.records.iter().filter(|r| r.noise).count(), 2);
    let text = crate::conformance::trace::render_trace(
        &crate::conformance::trace::trace(&cap, &Default::default()),
        None,
    );
    assert!(!text.contains("RS") && !text.contains("icmpv6-143"), "{text}");
    let res = c.run(false, Expectations::default());
    expect(&res, &[("EN-03", Pass), ("EN-04", Pass), ("EN-05", Pass)]);
    assert!(get(&res, "EN-04").message.contains("intact"));
}

#[test]
fn traces_are_symbolic_and_deterministic() {
    use crate::conformance::trace::{render_trace, trace, Roles};
    let one = good_exchange().decode();
    let other = good_exchange_with(ep([198, 51, 100, 99], 1234), ep([203, 0, 113, 77], 4321), 30).decode();
    let (t1, t2) = (trace(&one, &Roles::default()), trace(&other, &Roles::default()));
    assert_eq!(
        render_trace(&t1, None),
        render_trace(&t2, None),
        "same exchange, same text"
    );
    assert_eq!(
        render_trace(&t1, None),
        render_trace(&trace(&one, &Roles::default()), None)
    );
    let text = render_trace(&t1, None);
    assert_eq!(
        text,
        "peer-1 -> router: RS\n\
         router -> peer-1: RA peer-1:P1/114\n\
         peer-2 -> router: RS\n\
         router -> peer-2: RA peer-2:P1/114\n\
         peer-1 -> router: echo-request [peer-1:P1] → [peer-2:P1] [via-router]\n\
         router -> peer-2: echo-request [peer-1:P1] → [peer-2:P1] [via-router]\n\
         peer-1 -> peer-2: NS [peer-2:P1] [direct]\n\
         peer-2 -> peer-1: NA [peer-2:P1] [SO] [direct]\n\
         peer-2 -> peer-1: NS [peer-1:P1] [direct]\n\
         peer-1 -> peer-2: NA [peer-1:P1] [SO] [direct]\n\
         peer-1 -> peer-2: echo-request [peer-1:P1] → [peer-2:P1] [direct]\n\
         peer-2 -> peer-1: echo-request [peer-2:P1] → [peer-1:P1] [direct]\n\
         peer-1 -> router: KA ×4 every 1.0 s\n\
         peer-2 -> router: KA ×4 every 1.0 s\n"
    );
    // Jitter shows in the bucketed interval range, and times only when asked for.
    let jittery = good_exchange_with(pa(), pb(), 300).decode();
    let j = render_trace(&trace(&jittery, &Roles::default()), Some(100));
    assert!(
        j.contains("KA ×4 every 0.7–1.3 s") && j.starts_with("[+0.0s] "),
        "{j}"
    );
    // Roles name lanes.
    let roles = Roles::from_pairs([(*pa().ip(), "alice".to_string()), (*pb().ip(), "bob".to_string())]);
    let named = render_trace(&trace(&one, &roles), None);
    assert!(
        named.starts_with("alice -> router: RS\nrouter -> alice: RA alice:P1/114\n"),
        "{named}"
    );
    let inputs = crate::conformance::checks::Inputs::with_roles(
        vec![one],
        crate::conformance::decode::Profile::Current,
        false,
        Expectations::default(),
        roles,
    );
    let names: Vec<String> = inputs
        .views()
        .flat_map(|v| v.peers().iter().map(|p| p.name.clone()).collect::<Vec<_>>())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
}

/// A router that also announces a native prefix reachable through it (a PIO with neither
/// L nor A, as `--route` does): only the 6bed4 prefix is a 6bed4 prefix, so a native host
/// behind the router is not read as a 6bed4 address.
#[test]
fn a_route_only_pio_is_not_a_6bed4_prefix() {
    let (r, a) = (router(), pa());
    let native: std::net::Ipv6Addr = "2001:db8:6::".parse().unwrap();
    let mut body = vec![64, 0];
    body.extend_from_slice(&1800u16.to_be_bytes());
    body.extend_from_slice(&30_000u32.to_be_bytes());
    body.extend_from_slice(&1000u32.to_be_bytes());
    body.extend(pio(addr::encode_c(&prefix(), a, 0), 114, 0xC0, 86_400, 14_400));
    body.extend(pio(native, 48, 0x00, 86_400, 14_400));
    let mut c = Cap::new();
    c.dg(0, a, r, rs(None));
    c.dg(10, r, a, icmp6(ll6(), all_nodes(), 255, 134, 0, &body));
    let cap = c.decode();
    assert!(cap
        .prefixes
        .contains(&addr::prefix64(&addr::encode_c(&prefix(), a, 0))));
    assert!(!cap.prefixes.contains(&native), "{:?}", cap.prefixes);
    assert_eq!(cap.prefixes.len(), 1, "{:?}", cap.prefixes);
}

//! The real captures of `shared/captures/` (C reference runs, hand-made pcaps): what the
//! decoder finds and the verdicts, each fact checked against tshark's view of the file (and
//! cross-checked with tshark at test time when it is installed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use super::build::{expect, get};
use crate::conformance::checks::{run_passive, Expectations, Inputs};
use crate::conformance::decode::{decode_file, kind_counts, DecodeOptions, DecodedCapture, Profile};
use crate::conformance::model::{CheckResult, Verdict::*};
use crate::conformance::trace::{render_trace, trace, Roles};

fn dir() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/captures"));
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("SKIP real captures: {} does not exist", d.display());
        None
    }
}

fn load(name: &str) -> Option<DecodedCapture> {
    let path = dir()?.join(name);
    if !path.exists() {
        eprintln!("SKIP {name}: not found");
        return None;
    }
    Some(decode_file(&path, DecodeOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn checks(cap: &DecodedCapture, strict: bool, e: Expectations) -> Vec<CheckResult> {
    run_passive(&Inputs::new(vec![cap.clone()], Profile::Current, strict, e))
}

fn counts(cap: &DecodedCapture) -> BTreeMap<&'static str, usize> {
    kind_counts(cap)
}

/// Frame numbers tshark lists for a display filter, decoding `port` as 6bed4; None
/// without tshark.
fn tshark_frames(name: &str, port: u16, filter: &str) -> Option<Vec<u64>> {
    let path = dir()?.join(name);
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args([
            "-d",
            &format!("udp.port=={port},ipv6"),
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

fn frames_of(cap: &DecodedCapture, label: &str) -> Vec<u64> {
    cap.sent()
        .filter(|r| r.kind.label() == label)
        .map(|r| r.frame)
        .collect()
}

#[test]
fn c_reference_solicit_and_keepalive() {
    let name = "refimpl-c-direct-solicit-keepalive.pcap";
    let Some(cap) = load(name) else { return };
    // tshark: RS in UDP at 3 6 10 13 17 21 (each answered by ICMP port unreachable until the
    // router was up), the RA at 22, keepalives (UDP length 8, TTL 3, DF) at 24 26 28; the
    // rest is the veth's own link-local chatter (native IPv6, not tunnelled).
    let c = counts(&cap);
    assert_eq!(
        c,
        [("RS", 6), ("RA", 1), ("KA", 3), ("ICMP", 5)]
            .into_iter()
            .collect(),
        "{c:?}"
    );
    assert_eq!(frames_of(&cap, "RS"), vec![3, 6, 10, 13, 17, 21]);
    assert_eq!(frames_of(&cap, "RA"), vec![22]);
    assert_eq!(frames_of(&cap, "KA"), vec![24, 26, 28]);
    assert_eq!(cap.stats.native_ipv6, 13);
    assert_eq!(
        cap.routers.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        ["145.136.0.1:25790"]
    );
    let ka = cap
        .records
        .iter()
        .find(|r| r.frame == 24)
        .and_then(|r| r.outer.clone())
        .expect("KA");
    assert_eq!((ka.ttl, ka.df, ka.udp_payload_len), (3, true, 0));
    if let Some(t) = tshark_frames(name, 25790, "udp && !icmp && icmpv6.type == 133") {
        assert_eq!(t, frames_of(&cap, "RS"), "tshark disagrees on the RSs");
    }
    if let Some(t) = tshark_frames(name, 25790, "udp.length == 8") {
        assert_eq!(t, frames_of(&cap, "KA"), "tshark disagrees on the keepalives");
    }

    let inputs = Inputs::new(
        vec![cap.clone()],
        Profile::Current,
        false,
        Expectations::default(),
    );
    let view = inputs.views().next().expect("view");
    assert_eq!(view.peers().len(), 1);
    let peer = &view.peers()[0];
    assert_eq!(
        peer.sockets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["145.136.0.2:55796"]
    );
    assert_eq!(peer.mappings[0].1.to_string(), "145.136.0.2:55796");
    assert_eq!(peer.ras.len(), 1);

    let res = checks(&cap, false, Expectations::default());
    expect(
        &res,
        &[
            ("RS-01", Pass),
            ("RS-02", Pass),
            ("RS-03", Warn),
            ("RS-04", Pass),
            ("RA-01", Pass),
            ("RA-02", Pass),
            ("RA-03", Pass),
            ("RA-04", Pass),
            ("RA-05", Pass),
            ("RA-06", Warn),
            ("KA-01", Pass),
            ("KA-02", Pass),
            ("KA-03", Info),
            ("KA-04", Pass),
            ("EN-01", Pass),
            ("AF-01", NotApplicable),
            ("ND-01", NotApplicable),
            ("ND-02", NotApplicable),
            ("EN-05", NotApplicable),
        ],
    );
    assert_eq!(get(&res, "RS-03").evidence[0].frames, vec![3, 6, 10, 13, 17, 21]);
    assert!(get(&res, "RS-03").message.contains("00:00:00:00:00:01"));
    assert!(
        get(&res, "RS-04").message.contains("1.0, 3.0, 7.0, 15.0, 30.0"),
        "{}",
        get(&res, "RS-04").message
    );
    assert!(get(&res, "RA-06").message.contains("65535"));
    let strict = checks(&cap, true, Expectations::default());
    expect(&strict, &[("RS-03", Fail), ("RA-06", Fail)]);
    let with_period = checks(
        &cap,
        false,
        Expectations {
            keepalive_period: Some(std::time::Duration::from_secs(30)),
            ..Expectations::default()
        },
    );
    expect(&with_period, &[("KA-03", Pass)]);

    let text = render_trace(&trace(&cap, &Roles::default()), None);
    assert_eq!(
        text,
        "peer-1 -> router: RS (SLLA)\nrouter -> peer-1: ICMPv4 error 3/3\n".repeat(5)
            + "peer-1 -> router: RS (SLLA)\nrouter -> peer-1: RA peer-1:P1/114\npeer-1 -> router: KA ×3 every 30.0 s\n"
    );
}

#[test]
fn c_reference_router_tun() {
    let Some(cap) = load("refimpl-c-router-tun.pcap") else {
        return;
    };
    // tshark: four RSs from fe80:: to ff02::2 on the router's TUN (raw IP): the kernel's own.
    assert_eq!(cap.records.len(), 4);
    assert!(cap
        .records
        .iter()
        .all(|r| !r.is_tunnel() && r.noise && r.kind.label() == "RS"));
    assert!(cap.routers.is_empty());
    assert!(trace(&cap, &Roles::default()).is_empty());
    let res = checks(&cap, false, Expectations::default());
    assert!(res.iter().all(|r| r.verdict == NotApplicable), "{res:?}");
}

/// synthetic-6bed4.pcap and annotated.pcapng hold the same three packets (RS, RA 30 s later,
/// keepalive 30 s after that; router 192.0.2.1:25790, peer 198.51.100.7:40000). Their RA's
/// PIO 2001:db8:6bed:4:c633:6407:9c40:0/114 puts the IPv4 octets verbatim in bytes 8..11;
/// layout C (spec §2.1) reads 196.51.100.7:40000 from it, so RA-05 fails.
#[test]
fn hand_made_rs_ra_keepalive() {
    for name in ["synthetic-6bed4.pcap", "annotated.pcapng"] {
        let Some(cap) = load(name) else { continue };
        let c = counts(&cap);
        assert_eq!(
            c,
            [("RS", 1), ("RA", 1), ("KA", 1)].into_iter().collect(),
            "{name}"
        );
        assert_eq!(
            cap.routers.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ["192.0.2.1:25790"]
        );
        if let Some(t) = tshark_frames(name, 25790, "udp && !icmp && icmpv6.type == 134") {
            assert_eq!(t, vec![2], "{name}");
        }
        let res = checks(&cap, false, Expectations::default());
        expect(
            &res,
            &[
                ("RS-01", Pass),
                ("RS-03", Warn),
                ("RS-04", Pass),
                ("RA-01", Pass),
                ("RA-02", Pass),
                ("RA-03", Warn),
                ("RA-04", Pass),
                ("RA-05", Fail),
                ("RA-06", Warn),
                ("KA-01", Pass),
                ("KA-02", Pass),
                ("KA-03", NotApplicable),
                ("KA-04", Pass),
                ("EN-01", Pass),
            ],
        );
        let m = &get(&res, "RA-05").message;
        assert!(
            m.contains("196.51.100.7:40000") && m.contains("198.51.100.7:40000"),
            "{m}"
        );
    }
}

/// invalid-nd.pcap: NS / NA / NS between 198.51.100.7:40000 and 203.0.113.9:40001 (ports no
/// profile uses: found by the addresses alone). tshark (with udp.port 40001 decoded as
/// IPv6): frame 1 NS hop limit 64; frame 2 NA to ff02::1 with S and O set; frame 3 NS with
/// a zero-length SLLA option. The addresses use the naive layout too.
#[test]
fn invalid_nd_is_flagged() {
    let name = "invalid-nd.pcap";
    let Some(cap) = load(name) else { return };
    let c = counts(&cap);
    assert_eq!(c, [("NS", 2), ("NA", 1)].into_iter().collect(), "{c:?}");
    assert!(cap.routers.is_empty());
    if let Some(t) = tshark_frames(name, 40001, "ipv6.hlim != 255 && icmpv6.type == 135") {
        assert_eq!(t, vec![1]);
    }
    if let Some(t) = tshark_frames(name, 40001, "icmpv6.nd.na.flag.s == 1 && ipv6.dst == ff02::1") {
        assert_eq!(t, vec![2]);
    }
    let res = checks(&cap, false, Expectations::default());
    expect(
        &res,
        &[
            ("ND-01", Fail),
            ("ND-02", Fail),
            ("ND-03", Fail),
            ("ND-08", Fail),
            ("AF-02", Pass),
            ("AF-03", Fail),
            ("EN-01", Pass),
            ("RS-01", NotApplicable),
        ],
    );
    assert_eq!(get(&res, "ND-01").evidence[0].frames, vec![1, 2, 3]);
    let m = &get(&res, "ND-01").message;
    assert!(
        m.contains("hop limit 64") && m.contains("Solicited") && m.contains("length 0"),
        "{m}"
    );
    assert_eq!(get(&res, "ND-03").evidence[0].frames, vec![2]);
    let view_peers = Inputs::new(vec![cap], Profile::Current, false, Expectations::default())
        .views()
        .map(|v| v.peers().len())
        .sum::<usize>();
    assert_eq!(view_peers, 2);
}

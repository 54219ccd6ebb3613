//! `bedlab check` and `bedlab decode` on the fixtures: what each report must say (every
//! fact below is visible with tshark, and checked against it where tshark is installed),
//! the exit codes, and the decode lines of the RS, RA and keepalives.

#[path = "field_support.rs"]
mod support;

use std::process::Command;

use support::*;

fn check(name: &str, extra: &[&str]) -> (String, Option<i32>) {
    let path = fixture(name);
    let mut args = vec!["check", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = bedlab(&args);
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
    (text(&o.stdout), o.status.code())
}

fn has(report: &str, needle: &str) {
    assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
}

/// Frame numbers (and relative times) tshark lists for a filter, decoding 25790 as IPv6.
fn tshark_frames(name: &str, filter: &str) -> Option<Vec<(u64, String)>> {
    if !have_tshark() {
        return None;
    }
    let o = Command::new("tshark")
        .args([
            "-n",
            "-r",
            fixture(name).to_str().unwrap(),
            "-d",
            "udp.port==25790,ipv6",
        ])
        .args([
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "frame.time_relative",
        ])
        .output()
        .ok()?;
    Some(
        text(&o.stdout)
            .lines()
            .filter_map(|l| {
                let (n, t) = l.split_once('\t')?;
                Some((n.parse().ok()?, t.to_string()))
            })
            .collect(),
    )
}

#[test]
fn c_reference_solicit_and_keepalive() {
    let name = "refimpl-c-direct-solicit-keepalive.pcap";
    let (r, code) = check(name, &[]);
    assert_eq!(code, Some(0), "no FAIL: {r}");
    has(&r, "28 frames, 15 6bed4 datagrams (5 ICMP, 3 KA, 1 RA, 6 RS)");
    has(&r, "router: 145.136.0.1:25790 (profile current)");
    has(&r, "peer peer-1: socket 145.136.0.2:55796");
    has(&r, "external mapping (as the router saw it): 145.136.0.2:55796");
    has(
        &r,
        "RA at 56.114s (frame 22) after 6 RS(s) from 0.059s: \"you are 145.136.0.2:55796\"",
    );
    has(
        &r,
        "keepalives: 3 sent, period 30.0 s (min 30.0, max 30.0), TTL 3",
    );
    has(&r, "none: fewer than two peers");
    has(&r, "none (no peer's external mapping changed)");
    has(&r, "RS-03  WARN");
    has(&r, "RA-05  PASS");
    has(&r, "RA-06  WARN");
    has(&r, "KA-02  PASS");
    has(&r, "KA-03  INFO");
    if let Some(t) = tshark_frames(name, "udp && !icmp && icmpv6.type == 133") {
        assert_eq!(t.len(), 6, "tshark's RSs");
        assert!(t[0].1.starts_with("0.059"));
    }
    if let Some(t) = tshark_frames(name, "udp && icmpv6.type == 134") {
        assert_eq!(t.iter().map(|f| f.0).collect::<Vec<_>>(), [22]);
        assert!(t[0].1.starts_with("56.114"), "{t:?}");
    }
    if let Some(t) = tshark_frames(name, "udp.length == 8 && ip.ttl == 3") {
        assert_eq!(t.iter().map(|f| f.0).collect::<Vec<_>>(), [24, 26, 28]);
    }
    // The strict profile turns the documented deviations into FAILs.
    let (r, code) = check(name, &["--strict"]);
    assert_eq!(code, Some(1));
    has(&r, "RS-03  FAIL");
    has(&r, "RA-06  FAIL");
}

#[test]
fn mis_encoded_prefix_fails_ra05() {
    for name in ["synthetic-6bed4.pcap", "annotated.pcapng"] {
        let (r, code) = check(name, &[]);
        assert_eq!(code, Some(1), "{name}: RA-05 FAILs");
        has(&r, "router: 192.0.2.1:25790");
        has(&r, "peer peer-1: socket 198.51.100.7:40000");
        has(&r, "\"you are 196.51.100.7:40000\"");
        has(&r, "RA-05  FAIL");
        has(&r, "the IPv4 octets stand verbatim in bytes 8..11");
        has(&r, "RA-03  WARN");
        has(&r, "keepalives: 1 sent, one only, TTL 3");
    }
}

#[test]
fn invalid_bypass_nd() {
    let (r, code) = check("invalid-nd.pcap", &[]);
    assert_eq!(code, Some(1));
    has(&r, "router: none seen");
    has(&r, "peer peer-1: socket 198.51.100.7:40000");
    has(&r, "peer peer-2: socket 203.0.113.9:40001");
    has(
        &r,
        "peer-1 ↔ peer-2: no data between them: 2 NS and 1 NA exchanged directly, yet no data went direct",
    );
    has(&r, "ND-01  FAIL");
    has(&r, "hop limit 64");
    has(&r, "[frames 1, 2, 3]");
    has(&r, "AF-03  FAIL");
}

#[test]
fn tun_only_capture_has_nothing_to_judge() {
    let (r, code) = check("refimpl-c-router-tun.pcap", &[]);
    assert_eq!(code, Some(0));
    has(&r, "4 packets on a 6bed4 TUN (4 of them the kernel's own");
    has(&r, "35 N/A");
}

#[test]
fn json_carries_every_result() {
    let o = bedlab(&[
        "check",
        "--json",
        fixture("synthetic-6bed4.pcap").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 35);
    assert_eq!(v["failed"], true);
    assert_eq!(v["routers"][0], "192.0.2.1:25790 (profile current)");
    let ra05 = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "RA-05")
        .unwrap();
    assert_eq!(ra05["verdict"], "FAIL");
    assert_eq!(ra05["evidence"][0]["frames"][0], 2);
}

#[test]
fn rebinding_and_direct_paths_in_a_generated_capture() {
    let dir = tempfile::tempdir().unwrap();
    let gen = dir.path().join("gen.pcapng");
    let o = bedlab(&[
        "gen-traffic",
        gen.to_str().unwrap(),
        "--size",
        "400K",
        "--peers",
        "4",
    ]);
    assert!(o.status.success());
    let o = bedlab(&["check", gen.to_str().unwrap()]);
    let r = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{r}");
    has(&r, "peer-1 ↔ peer-3: direct (");
    has(&r, "peer-1 ↔ peer-2: via the router only (");
    has(&r, "no bypass NS was sent");
    has(&r, "peer-2: 198.18.0.3:20001 → 198.18.0.3:21001");
    has(&r, "recovered: RA with the new mapping (frame");
    has(&r, "RA-09  PASS");
    has(&r, "ND-04  PASS");
}

#[test]
fn decode_lines_for_rs_ra_and_keepalives() {
    let o = bedlab(&[
        "decode",
        fixture("refimpl-c-direct-solicit-keepalive.pcap")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    let line = |frame: u64| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(&frame.to_string()))
            .unwrap_or_else(|| panic!("no line for frame {frame}:\n{out}"))
            .to_string()
    };
    let rs = line(3);
    assert!(
        rs.contains("0.059086  145.136.0.2:55796 → 145.136.0.1:25790"),
        "{rs}"
    );
    assert!(rs.contains("RS from :: (SLLA 00:00:00:00:00:01)"), "{rs}");
    let ra = line(22);
    assert!(ra.contains("56.114354"), "tshark's relative time: {ra}");
    assert!(
        ra.contains("RA prefix=fc64:bed:9188:1:9088:2:d9f4:4000/114 → you are 145.136.0.2:55796"),
        "{ra}"
    );
    for ka in [24, 26, 28] {
        assert!(line(ka).ends_with("KA ttl=3"), "{}", line(ka));
    }
    assert!(line(4).contains("ICMP port unreachable about 145.136.0.2:55796 → 145.136.0.1:25790"));
    // Native IPv6 of the veth is not 6bed4: no line.
    assert!(out.lines().all(|l| l.split_whitespace().next() != Some("1")));

    let o = bedlab(&["decode", fixture("invalid-nd.pcap").to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(
        out.contains("NS direct target=2001:db8:6bed:4:cb00:7109:9c40:1 (= 200.0.113.9:40000)"),
        "{out}"
    );
    assert!(out.contains("NA direct target=2001:db8:6bed:4:cb00:7109:9c40:1 (= 200.0.113.9:40000) flags=S,O"));
    assert!(out.contains("[! NS with hop limit 64"));
}

#[test]
fn decode_trace_is_the_normalised_trace() {
    let o = bedlab(&[
        "decode",
        "--trace",
        fixture("refimpl-c-direct-solicit-keepalive.pcap")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(out.starts_with("peer-1 -> router: RS (SLLA)\n"), "{out}");
    assert!(out.contains("router -> peer-1: RA peer-1:P1/114\n"), "{out}");
    assert!(out.ends_with("peer-1 -> router: KA ×3 every 30.0 s\n"), "{out}");
}

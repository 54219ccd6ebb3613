//! `bedlab wireshark-plugin`: the Lua dissector loaded into tshark on the project's
//! captures. Keepalives are labelled, the endpoints embedded in addresses (both layouts),
//! link-layer options and RA prefixes are shown, mismatches with the outer header raise
//! expert info, and Lua reports no error.

#[path = "field_support.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// tshark with the plugin: one line per frame, the given fields tab-separated.
fn fields(plugin: &Path, capture: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{}", plugin.display()))
        .arg("-r")
        .arg(capture)
        .args(["-T", "fields", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let o = cmd.output().expect("tshark");
    let err = tshark_stderr(&o);
    assert!(
        err.trim().is_empty(),
        "tshark/Lua errors on {}: {err}",
        capture.display()
    );
    assert!(o.status.success());
    text(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// tshark prints booleans as 1/0 (4.0) or True/False (4.2 and later).
fn is_true(s: &str) -> bool {
    matches!(s, "1" | "True")
}

fn plugin(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("6bed4.lua");
    let o = bedlab(&["wireshark-plugin", "--out", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    p
}

#[test]
fn writes_the_plugin_to_stdout_or_a_file() {
    let o = bedlab(&["wireshark-plugin"]);
    assert!(o.status.success());
    let lua = text(&o.stdout);
    assert!(lua.contains("Proto(\"sixbed4\""));
    assert!(
        lua.contains(env!("CARGO_PKG_VERSION")),
        "stamped with the version"
    );
    assert!(!lua.contains("@VERSION@"));
}

#[test]
fn labels_keepalives_and_shows_the_embedded_endpoints() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lua = plugin(dir.path());
    let cap = fixture("refimpl-c-direct-solicit-keepalive.pcap");
    let rows = fields(
        &lua,
        &cap,
        &[
            "frame.number",
            "sixbed4.kind",
            "sixbed4.pio",
            "sixbed4.ll",
            "_ws.col.Protocol",
            "_ws.col.Info",
        ],
    );
    let row = |n: usize| rows[n - 1].clone();
    for ka in [24, 26, 28] {
        assert_eq!(row(ka)[1], "keepalive", "frame {ka}: {:?}", row(ka));
        assert_eq!(row(ka)[4], "6bed4");
        assert!(row(ka)[5].starts_with("Keepalive TTL 3"), "{:?}", row(ka));
    }
    // The RA tells the peer its mapping; every RS and RA is 6bed4.
    assert_eq!(row(22)[2], "145.136.0.2:55796");
    assert!(row(22)[5].contains("you are 145.136.0.2:55796"), "{:?}", row(22));
    for rs in [3, 6, 10, 13, 17, 21] {
        assert_eq!(row(rs)[1], "ipv6");
        assert_eq!(row(rs)[3], "0.0.0.1:0", "the C peer's SLLA 00:00:00:00:00:01");
    }
    // The veth's own IPv6 is not 6bed4.
    assert_eq!(row(1)[1], "");
}

#[test]
fn shows_both_layouts_and_flags_mismatches() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lua = plugin(dir.path());
    // Heuristic ports 40000/40001: the octets-verbatim addresses are found, read as layout C
    // and flagged.
    let rows = fields(
        &lua,
        &fixture("invalid-nd.pcap"),
        &[
            "sixbed4.src",
            "sixbed4.src.layout",
            "sixbed4.src.match",
            "sixbed4.target",
            "_ws.expert.message",
        ],
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "196.51.100.7:40000");
    assert_eq!(rows[0][1], "C-verbatim");
    assert!(!is_true(&rows[0][2]) && !rows[0][2].is_empty(), "{:?}", rows[0]);
    assert_eq!(rows[0][3], "200.0.113.9:40000");
    assert!(
        rows[0][4].contains("Inner source embeds 196.51.100.7:40000, outer source is 198.51.100.7:40000"),
        "{:?}",
        rows[0]
    );
    // The NA comes from another port of the same flow: recognised by the flow.
    assert_eq!(rows[1][0], "200.0.113.9:40000");

    // Layout V on the v01 port, consistent: matches, profile v01.
    let v01 = dir.path().join("v01.pcap");
    v01_capture(&v01);
    let rows = fields(
        &lua,
        &v01,
        &[
            "sixbed4.profile",
            "sixbed4.kind",
            "sixbed4.src",
            "sixbed4.src.layout",
            "sixbed4.src.match",
            "sixbed4.dst",
            "sixbed4.ll",
        ],
    );
    let r = &rows[4];
    assert_eq!(r[..4], ["v01", "ipv6", "203.0.113.7:40000", "V"], "{r:?}");
    assert!(is_true(&r[4]), "{r:?}");
    assert_eq!(r[5], "198.51.100.10:50000");
    assert_eq!(rows[1][6], "192.0.2.1:25788", "the RA's SLLA");
    assert_eq!(
        rows[1][5], "203.0.113.7:40000",
        "the RA's destination fe80::<IID> in layout V"
    );
    assert_eq!(rows[8][1], "keepalive");
}

#[test]
fn direct_traffic_on_other_ports_is_found_by_the_heuristic() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lua = plugin(dir.path());
    let gen = dir.path().join("gen.pcapng");
    let o = bedlab(&[
        "gen-traffic",
        gen.to_str().unwrap(),
        "--size",
        "100K",
        "--peers",
        "4",
    ]);
    assert!(o.status.success());
    let rows = fields(
        &lua,
        &gen,
        &[
            "udp.srcport",
            "udp.dstport",
            "sixbed4.kind",
            "sixbed4.src.match",
            "_ws.expert.message",
        ],
    );
    // Between peers: neither port is the router's.
    let direct: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0] != "25790" && r[1] != "25790" && r[2] == "ipv6")
        .collect();
    assert!(!direct.is_empty(), "direct datagrams between peers");
    for r in direct {
        assert!(is_true(&r[3]), "consistent sources match: {r:?}");
    }
    // The rebinding's stale packet is flagged.
    assert!(
        rows.iter().any(|r| r[4].contains("Inner source embeds")),
        "the stale source after the rebinding"
    );
}

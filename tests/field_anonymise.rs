//! `bedlab anonymise` on every fixture, a generated multi-peer capture and a hand-made
//! `v01` one: (a) no original IPv4 address survives in any encoding the original used, (b)
//! the checks give the same verdict per id afterwards (which an outer-header-only anonymiser
//! does not), (c) tshark opens the result without complaint and sees the same problems, (d)
//! the output is a function of the key, (e) Crypto-PAn is prefix-preserving (proptest).

#[path = "field_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bedlab::field::cryptopan::{CryptoPan, KeyedMap, CLASS_RANGES};
use proptest::prelude::*;
use support::*;

/// Every capture the properties run on, written into `dir` when generated.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let generated = dir.join("generated.pcapng");
    let o = bedlab(&[
        "gen-traffic",
        generated.to_str().unwrap(),
        "--size",
        "600K",
        "--peers",
        "6",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    v.push(generated);
    let v01 = dir.join("v01.pcap");
    v01_capture(&v01);
    v.push(v01);
    v
}

/// The byte strings under which an IPv4 address may appear in a 6bed4 capture: as is
/// (outer headers, link-layer options, the router prefix, verbatim mis-encodings), in
/// layout C (first octet's low bits moved out), in layout V (split by ff:fe), and as text.
fn encodings(a: Ipv4Addr) -> Vec<Vec<u8>> {
    let v = a.octets();
    vec![
        v.to_vec(),
        vec![v[0] & 0xFC, v[1], v[2], v[3]],
        vec![v[0], 0xFF, 0xFE, v[1], v[2], v[3]],
        a.to_string().into_bytes(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_original_address_survives_in_any_encoding() {
    let dir = tempfile::tempdir().unwrap();
    for input in corpus(dir.path()) {
        let original = std::fs::read(&input).unwrap();
        let out = dir.path().join("out.pcapng");
        for extra in [
            &["--key", "field-test"][..],
            &["--key", "field-test", "--ports"][..],
        ] {
            anonymise(&input, &out, extra);
            let anon = std::fs::read(&out).unwrap();
            let addrs: Vec<Ipv4Addr> = outer_ipv4(&input)
                .into_iter()
                .filter(|a| a.octets()[0] != 0)
                .collect();
            for a in &addrs {
                for enc in encodings(*a) {
                    if contains(&original, &enc) {
                        assert!(
                            !contains(&anon, &enc),
                            "{}: {a} survives as {enc:02x?} ({extra:?})",
                            input.display()
                        );
                    }
                }
            }
            // And something was rewritten at all.
            if !addrs.is_empty() {
                assert_ne!(outer_ipv4(&out), outer_ipv4(&input), "{}", input.display());
            }
        }
    }
}

#[test]
fn verdicts_are_the_same_after_anonymising() {
    let dir = tempfile::tempdir().unwrap();
    for input in corpus(dir.path()) {
        let (before, code) = verdicts(&input);
        assert_eq!(before.len(), 35, "every registry check reports");
        for extra in [
            &["--key", "k1"][..],
            &["--key", "k2", "--ports"][..],
            &["--key", "k3", "--zero-payloads"][..],
            &[
                "--key",
                "k4",
                "--ports",
                "--zero-payloads",
                "--no-class-preserving",
            ][..],
        ] {
            let out = dir.path().join("out.pcapng");
            anonymise(&input, &out, extra);
            let (after, code_after) = verdicts(&out);
            assert_eq!(before, after, "{} with {extra:?}", input.display());
            assert_eq!(code, code_after, "{} exit code with {extra:?}", input.display());
        }
    }
}

/// What a generic anonymiser does: rewrite the outer IPv4 header only (checksums mended).
/// The embedded copies then disagree with the outer header, and the verdicts change.
fn outer_only(input: &Path, out: &Path) {
    let mut r = bedlab::capture::Reader::open(input).unwrap();
    let mut frames = Vec::new();
    let t0 = 1_700_000_000.0;
    while let Ok(Some(mut p)) = r.next_packet() {
        if p.linktype == 1 && p.data.len() >= 34 && p.data[12..14] == [8, 0] {
            let ip = &mut p.data[14..];
            let ihl = usize::from(ip[0] & 0xF) * 4;
            let before_h = bedlab::field::checksum::fold(bedlab::field::checksum::sum(&ip[..ihl]));
            let before_u = bedlab::field::checksum::fold(bedlab::field::checksum::sum(&ip[12..]));
            ip[12] ^= 0x40;
            ip[16] ^= 0x40;
            let after_h = bedlab::field::checksum::fold(bedlab::field::checksum::sum(&ip[..ihl]));
            let after_u = bedlab::field::checksum::fold(bedlab::field::checksum::sum(&ip[12..]));
            let (h, rest) = ip.split_at_mut(ihl);
            bedlab::field::checksum::update(
                &mut h[10..12],
                before_h,
                after_h,
                bedlab::field::checksum::Zero::Ordinary,
            );
            if h[9] == 17 && rest.len() >= 8 {
                bedlab::field::checksum::update(
                    &mut rest[6..8],
                    before_u,
                    after_u,
                    bedlab::field::checksum::Zero::Udp,
                );
            }
        }
        let t = p.ts.0 as f64 + f64::from(p.ts.1) / 1e9 - t0;
        frames.push((t, p.data));
    }
    write_pcap(out, &frames);
}

#[test]
fn an_outer_header_only_anonymiser_changes_the_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("refimpl-c-direct-solicit-keepalive.pcap");
    let naive = dir.path().join("naive.pcap");
    outer_only(&input, &naive);
    let (before, _) = verdicts(&input);
    let (naive_v, code) = verdicts(&naive);
    assert_eq!(before["RA-05"], "PASS");
    assert_eq!(
        naive_v["RA-05"], "FAIL",
        "the RA's embedded mapping no longer matches"
    );
    assert_eq!(code, Some(1));
    let good = dir.path().join("good.pcapng");
    anonymise(&input, &good, &["--key", "x"]);
    assert_eq!(verdicts(&good).0["RA-05"], "PASS");
}

#[test]
fn opens_in_tshark_without_warnings_and_shows_the_same_problems() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Expert infos (severity and group per frame), with every checksum verified and the
    // fixtures' ports decoded as IPv6.
    let experts = |p: &Path| -> (String, String) {
        let o = Command::new("tshark")
            .args(["-n", "-r", p.to_str().unwrap()])
            .args(["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
            .args([
                "-d",
                "udp.port==25790,ipv6",
                "-d",
                "udp.port==25788,ipv6",
                "-d",
                "udp.port==40000,ipv6",
            ])
            .args([
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "_ws.expert.severity",
                "-e",
                "_ws.expert.group",
            ])
            .args([
                "-e",
                "ip.checksum.status",
                "-e",
                "udp.checksum.status",
                "-e",
                "icmpv6.checksum.status",
            ])
            .output()
            .unwrap();
        (text(&o.stdout), tshark_stderr(&o))
    };
    for input in corpus(dir.path()) {
        let out = dir.path().join("out.pcapng");
        anonymise(&input, &out, &["--key", "tshark"]);
        let (want, err0) = experts(&input);
        let (got, err) = experts(&out);
        assert!(err0.trim().is_empty(), "{}: {err0}", input.display());
        assert!(
            err.trim().is_empty(),
            "tshark complains about {}: {err}",
            input.display()
        );
        assert_eq!(
            want,
            got,
            "{}: expert infos or checksum statuses differ",
            input.display()
        );
    }
}

#[test]
fn the_key_decides_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("refimpl-c-direct-solicit-keepalive.pcap");
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    anonymise(&input, &a, &["--key", "one"]);
    anonymise(&input, &b, &["--key", "one"]);
    anonymise(&input, &c, &["--key", "two"]);
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(read(&a), read(&b), "same key, same bytes");
    assert_ne!(outer_ipv4(&a), outer_ipv4(&c), "another key, other addresses");
    // --key-file reads the first line.
    let key = dir.path().join("key");
    std::fs::write(&key, "one\nignored\n").unwrap();
    let d = dir.path().join("d");
    anonymise(&input, &d, &["--key-file", key.to_str().unwrap()]);
    assert_eq!(read(&a), read(&d));
}

#[test]
fn comments_and_time_survive_with_addresses_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcapng");
    anonymise(&fixture("annotated.pcapng"), &out, &["--key", "c"]);
    let mut r = bedlab::capture::Reader::open(&out).unwrap();
    let first = r.next_packet().unwrap().unwrap();
    assert_eq!(first.comment.as_deref(), Some("RS sent by peer behind NAT A"));
    assert_eq!(first.ts, (1_700_000_000, 0));
    let mut map = KeyedMap::new(b"c", true, None);
    let t = bedlab::field::anonymise::rewrite_text(
        &mut map,
        "peer 198.51.100.7:40000, tshark 4.0.17, 1.2.3.4.5.",
    );
    let want = map.v4(Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(t, format!("peer {want}:40000, tshark 4.0.17, 1.2.3.4.5."));
}

#[test]
fn a_bad_checksum_stays_bad() {
    let dir = tempfile::tempdir().unwrap();
    // The synthetic RS with its ICMPv6 checksum broken (the UDP checksum mended, so only
    // the inner one is wrong).
    let mut r = bedlab::capture::Reader::open(&fixture("synthetic-6bed4.pcap")).unwrap();
    let mut frames = Vec::new();
    while let Ok(Some(mut p)) = r.next_packet() {
        if frames.is_empty() {
            let udp_ck = 14 + 20 + 6;
            let icmp_ck = 14 + 20 + 8 + 40 + 2;
            p.data[icmp_ck] ^= 0x55;
            let v = u16::from_be_bytes([p.data[udp_ck], p.data[udp_ck + 1]]);
            let fixed = fold(u64::from(v) + u64::from(!0x5500u16));
            p.data[udp_ck..udp_ck + 2].copy_from_slice(&fixed.to_be_bytes());
        }
        let t = (p.ts.0 - 1_700_000_000) as f64;
        frames.push((t, p.data));
    }
    let bad = dir.path().join("bad.pcap");
    write_pcap(&bad, &frames);
    let out = dir.path().join("out.pcapng");
    anonymise(&bad, &out, &["--key", "b", "--ports"]);
    let ok = |p: &Path| -> Vec<bool> {
        let cap = bedlab::conformance::decode::decode_file(p, Default::default()).unwrap();
        cap.records
            .iter()
            .filter_map(|r| r.icmp.as_ref().map(|i| i.checksum_ok))
            .collect()
    };
    assert_eq!(ok(&bad), vec![false, true]);
    assert_eq!(
        ok(&out),
        vec![false, true],
        "the broken ICMPv6 checksum is still broken, the other still right"
    );
    assert_eq!(verdicts(&bad).0["RS-01"], "FAIL");
    assert_eq!(verdicts(&out).0["RS-01"], "FAIL");
}

#[test]
fn refuses_to_overwrite_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.pcap");
    std::fs::copy(fixture("synthetic-6bed4.pcap"), &f).unwrap();
    let o = bedlab(&[
        "anonymise",
        f.to_str().unwrap(),
        f.to_str().unwrap(),
        "--key",
        "k",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is the input"), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read(&f).unwrap(),
        std::fs::read(fixture("synthetic-6bed4.pcap")).unwrap()
    );
}

/// The number of leading bits two addresses share.
fn common_prefix(a: u32, b: u32) -> u32 {
    (a ^ b).leading_zeros()
}

fn pans() -> Vec<CryptoPan> {
    vec![
        CryptoPan::from_secret(b"proptest"),
        CryptoPan::from_secret(b"proptest").with_pinned(CLASS_RANGES),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Two addresses sharing exactly a k-bit prefix map to addresses sharing exactly a
    /// k-bit prefix, with and without the pinned ranges.
    #[test]
    fn cryptopan_preserves_prefixes_exactly(a: u32, b: u32, k in 0u32..=32) {
        // Make b share exactly k bits with a (all 32 when k = 32).
        let b = if k == 32 { a } else {
            let keep = if k == 0 { 0 } else { u32::MAX << (32 - k) };
            let flip = 1u32 << (31 - k);
            (a & keep) | ((a ^ flip) & flip) | (b & (flip - 1))
        };
        prop_assert_eq!(common_prefix(a, b), k);
        for pan in pans() {
            let (x, y) = (pan.permute(a, 32), pan.permute(b, 32));
            prop_assert_eq!(common_prefix(x, y), k);
        }
    }

    /// The pinned ranges (private, loopback, multicast...) map onto themselves, and
    /// nothing else maps into them.
    #[test]
    fn pinned_ranges_map_onto_themselves(a: u32) {
        let pan = CryptoPan::from_secret(b"proptest").with_pinned(CLASS_RANGES);
        let inside = |x: u32| CLASS_RANGES.iter().any(|(net, len)| {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
            x & mask == u32::from(*net) & mask
        });
        prop_assert_eq!(inside(a), inside(pan.permute(a, 32)));
    }

    /// Ports: a permutation that keeps parity (layout V needs even ports), keeps 0 and the
    /// router ports, and never maps another port onto them.
    #[test]
    fn ports_keep_parity_and_the_router_ports(p: u16) {
        let m = KeyedMap::new(b"proptest", true, Some(&[25790, 25788]));
        let q = m.port(p);
        prop_assert_eq!(p & 1, q & 1);
        if [0, 25790, 25788].contains(&p) {
            prop_assert_eq!(p, q);
        } else {
            prop_assert!(![0, 25790, 25788].contains(&q));
        }
    }
}

#[test]
fn the_port_map_is_a_bijection() {
    let m = KeyedMap::new(b"bijection", true, Some(&[25790, 25788]));
    let mut seen: BTreeMap<u16, u16> = BTreeMap::new();
    for p in 0..=u16::MAX {
        if let Some(prev) = seen.insert(m.port(p), p) {
            panic!("{prev} and {p} both map to {}", m.port(p));
        }
    }
}

#[test]
fn v01_is_judged_and_rewritten_in_layout_v() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("v01.pcap");
    v01_capture(&input);
    let (v, _) = verdicts(&input);
    for id in [
        "RS-01", "RA-01", "RA-02", "RA-04", "AF-01", "AF-03", "KA-01", "KA-02", "EN-03",
    ] {
        assert_eq!(v[id], "PASS", "{id}: {v:?}");
    }
    let out = dir.path().join("out.pcapng");
    let o = bedlab(&[
        "anonymise",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--key",
        "v",
    ]);
    let summary = text(&o.stderr);
    // Two RA destinations (fe80::<IID>) and eight data addresses; the SLLA of each RA.
    assert!(summary.contains(" 0 layout C, 10 layout V"), "{summary}");
    assert!(summary.contains(" 2 link-layer options"), "{summary}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The rewriter takes any bytes under any link type without panicking, and never
    /// changes a frame's length.
    #[test]
    fn rewriting_garbage_never_panics(lt in prop::sample::select(vec![0u16, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999]),
                                      data in prop::collection::vec(any::<u8>(), 0..400),
                                      ports: bool, zero: bool) {
        let map = KeyedMap::new(b"fuzz", true, ports.then_some(&[25790u16, 25788][..]));
        let mut learned = bedlab::field::rewrite::Learned::new(&[]);
        learned.learn_frame(lt, &data);
        let mut rw = bedlab::field::rewrite::Rewriter::new(map, learned, bedlab::field::rewrite::Flags { zero_payloads: zero });
        let mut d = data.clone();
        rw.rewrite_frame(lt, &mut d);
        prop_assert_eq!(d.len(), data.len());
    }

    /// Real frames with a few bytes changed (lengths, versions, option lengths broken).
    #[test]
    fn rewriting_damaged_real_frames_never_panics(which in 0usize..28, edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut r = bedlab::capture::Reader::open(&fixture("refimpl-c-direct-solicit-keepalive.pcap")).unwrap();
        let mut frames = Vec::new();
        while let Ok(Some(p)) = r.next_packet() {
            frames.push(p.data);
        }
        let mut d = frames[which % frames.len()].clone();
        for (at, v) in edits {
            let n = d.len();
            d[at % n] = v;
        }
        let map = KeyedMap::new(b"fuzz", true, Some(&[25790u16]));
        let mut learned = bedlab::field::rewrite::Learned::new(&[]);
        learned.learn_frame(1, &d);
        let mut rw = bedlab::field::rewrite::Rewriter::new(map, learned, bedlab::field::rewrite::Flags { zero_payloads: true });
        rw.rewrite_frame(1, &mut d);
    }
}

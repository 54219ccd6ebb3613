//! Bad input for `anonymise`, `check` and `decode`: empty and tiny files, bad magic,
//! absurd lengths, captures cut short, garbage after a valid header. Always a clear message
//! naming the file and the byte offset, exit code 2 for unusable input, never a panic; a
//! capture that merely ends early is used up to where it ends, with a warning.

#[path = "field_support.rs"]
mod support;

use std::path::{Path, PathBuf};

use support::*;

/// A pcap file header with the given snaplen (Ethernet).
fn pcap_header(snaplen: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&snaplen.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

struct Run {
    code: Option<i32>,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let o = bedlab(args);
    let stderr = text(&o.stderr);
    assert!(!stderr.contains("panicked"), "bedlab {args:?} panicked: {stderr}");
    Run {
        code: o.status.code(),
        stderr,
    }
}

/// Every command on a file that is not a usable capture: exit 2, a message naming the file
/// and the offset, and no output file left behind by anonymise.
fn rejected_everywhere(path: &Path, offset: &str) {
    let p = path.to_str().unwrap();
    for args in [
        vec!["check", p],
        vec!["check", "--json", p],
        vec!["decode", p],
        vec!["decode", "--trace", p],
    ] {
        let r = run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(p), "names the file: {}", r.stderr);
        assert!(r.stderr.contains(offset), "names {offset}: {}", r.stderr);
    }
    let out = path.with_extension("anon.pcapng");
    let r = run(&["anonymise", p, out.to_str().unwrap(), "--key", "k"]);
    assert_eq!(r.code, Some(2), "anonymise: {}", r.stderr);
    assert!(r.stderr.contains(offset), "{}", r.stderr);
    assert!(!out.exists(), "no output for unusable input");
    assert!(!path.with_extension("anon.pcapng.partial").exists());
}

#[test]
fn files_that_are_not_captures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rejected_everywhere(&write(d, "empty.pcap", b""), "offset 0");
    rejected_everywhere(&write(d, "tiny.pcap", b"abc"), "offset 0");
    rejected_everywhere(
        &write(d, "text.pcap", b"this is not a capture file at all, just text\n"),
        "offset 0",
    );
    // A pcap header cut short.
    rejected_everywhere(
        &write(d, "short-header.pcap", &pcap_header(65535)[..10]),
        "offset 0",
    );
    // An unsupported pcap version.
    let mut v = pcap_header(65535);
    v[4] = 9;
    rejected_everywhere(&write(d, "version.pcap", &v), "offset 0");
    // A pcapng section header whose length is absurd.
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
    shb.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&[0; 20]);
    rejected_everywhere(&write(d, "absurd-shb.pcapng", &shb), "offset 0");
    // A missing file.
    let missing = d.join("missing.pcap");
    let r = run(&["check", missing.to_str().unwrap()]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("missing.pcap"), "{}", r.stderr);
}

#[test]
fn an_absurd_record_length_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    // A valid first packet (the RS of the synthetic fixture), then a record claiming 2 GB.
    let good = std::fs::read(fixture("synthetic-6bed4.pcap")).unwrap();
    let first_len = u32::from_le_bytes(good[32..36].try_into().unwrap()) as usize;
    let mut b = good[..24 + 16 + first_len].to_vec();
    let bad_at = b.len();
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    b.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    b.extend_from_slice(&[0xAB; 100]);
    let p = write(dir.path(), "absurd-record.pcap", &b);
    let ps = p.to_str().unwrap();
    let offset = format!("offset {bad_at}");
    let r = run(&["check", ps]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&offset) && r.stderr.contains("captured length"),
        "{}",
        r.stderr
    );
    let r = run(&["decode", ps]);
    assert!(r.stderr.contains(&offset), "{}", r.stderr);
    let out = dir.path().join("out.pcapng");
    let r = run(&["anonymise", ps, out.to_str().unwrap(), "--key", "k"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains(&offset), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn an_absurd_snaplen_in_the_header_is_only_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = std::fs::read(fixture("synthetic-6bed4.pcap")).unwrap();
    b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = write(dir.path(), "snaplen.pcap", &b);
    let ps = p.to_str().unwrap();
    let (v, code) = verdicts(&p);
    assert_eq!(
        (v["RA-05"].as_str(), code),
        ("FAIL", Some(1)),
        "checked like the original"
    );
    let out = dir.path().join("out.pcapng");
    let r = run(&["anonymise", ps, out.to_str().unwrap(), "--key", "k"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    if have_tshark() {
        let o = std::process::Command::new("tshark")
            .args(["-r", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(tshark_stderr(&o).trim().is_empty(), "{}", tshark_stderr(&o));
    }
}

#[test]
fn captures_cut_short_are_used_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    for (name, keep_packets) in [
        ("refimpl-c-direct-solicit-keepalive.pcap", 27u64),
        ("annotated.pcapng", 2),
    ] {
        let full = std::fs::read(fixture(name)).unwrap();
        // Cut 5 bytes into the last packet's record or block.
        let cut = &full[..full.len() - 30];
        let p = write(dir.path(), &format!("cut-{name}"), cut);
        let ps = p.to_str().unwrap();
        for args in [vec!["check", ps], vec!["decode", ps]] {
            let r = run(&args);
            assert!(matches!(r.code, Some(0 | 1)), "{args:?}: {}", r.stderr);
            assert!(
                r.stderr.contains("warning") && r.stderr.contains("truncated") && r.stderr.contains("offset"),
                "{args:?}: {}",
                r.stderr
            );
        }
        let out = dir.path().join(format!("cut-{name}.anon.pcapng"));
        let r = run(&["anonymise", ps, out.to_str().unwrap(), "--key", "k"]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(
            r.stderr.contains("truncated") && r.stderr.contains("offset"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!(
                "the {keep_packets} whole packets before it were written"
            )),
            "{}",
            r.stderr
        );
        let mut n = 0;
        let mut rd = bedlab::capture::Reader::open(&out).unwrap();
        while let Ok(Some(_)) = rd.next_packet() {
            n += 1;
        }
        assert_eq!(n, keep_packets);
    }
}

#[test]
fn garbage_after_a_valid_header_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic pseudo-random garbage of several lengths after pcap and pcapng headers.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    let pcapng_head = std::fs::read(fixture("annotated.pcapng")).unwrap()[..28 + 4].to_vec();
    for (i, len) in [1usize, 7, 16, 64, 300, 4096].iter().enumerate() {
        for head in [pcap_header(65535), pcapng_head.clone()] {
            let mut b = head.clone();
            b.extend((0..*len).map(|_| next()));
            let p = write(dir.path(), &format!("garbage-{i}-{}.cap", head.len()), &b);
            let ps = p.to_str().unwrap();
            for args in [
                vec!["check", ps],
                vec!["decode", ps],
                vec!["decode", "--trace", ps],
            ] {
                let r = run(&args);
                assert!(
                    matches!(r.code, Some(0..=2)),
                    "{args:?}: {:?} {}",
                    r.code,
                    r.stderr
                );
            }
            let out = dir.path().join("g.pcapng");
            let r = run(&["anonymise", ps, out.to_str().unwrap(), "--key", "k"]);
            assert!(matches!(r.code, Some(0 | 2)), "{}", r.stderr);
            if r.code == Some(2) {
                assert!(r.stderr.contains("offset"), "{}", r.stderr);
            }
        }
    }
}

#[test]
fn bad_arguments() {
    let r = run(&["anonymise", "a", "b"]);
    assert_eq!(r.code, Some(2), "the key is required: {}", r.stderr);
    let r = run(&["anonymise", "a", "b", "--key", ""]);
    assert_eq!(r.code, Some(2));
    let r = run(&[
        "check",
        fixture("annotated.pcapng").to_str().unwrap(),
        "--profile",
        "v99",
    ]);
    assert_eq!(r.code, Some(2));
}

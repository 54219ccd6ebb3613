//! The view's shortcuts give what the long way gives: walking a record's own inner-key
//! run from the record, and the list of packets that are not plain data.

use std::path::PathBuf;

use crate::conformance::checks::{Expectations, Inputs};
use crate::conformance::decode::{decode_file, DecodeOptions, Decoded, Kind, Profile};

fn fixtures() -> Vec<PathBuf> {
    let d = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    v.sort();
    v
}

fn ptrs<'a>(it: impl Iterator<Item = crate::conformance::checks::Rec<'a>>) -> Vec<*const Decoded> {
    it.map(|r| match r {
        crate::conformance::checks::Rec::Borrowed(r) => r as *const Decoded,
        crate::conformance::checks::Rec::Shared(_) => std::ptr::null(),
    })
    .collect()
}

#[test]
fn own_key_walk_matches_the_key_look_up() {
    let mut runs = 0;
    for path in fixtures() {
        let cap = decode_file(&path, DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let inputs = Inputs::new(vec![cap], Profile::Current, false, Expectations::default());
        for v in inputs.views() {
            for r in v.records() {
                let t = r.ts_ns;
                for (lo, hi) in [
                    (t, t.saturating_add(2_000_000_000)),
                    (t.saturating_sub(2_000_000_000), t),
                    (0, u64::MAX),
                    (t.saturating_add(1), t.saturating_add(10_000_000_000)),
                ] {
                    let own = ptrs(v.with_own_key_between(r, lo, hi));
                    let look_up = ptrs(v.with_key_between(r.inner_key, lo, hi));
                    assert_eq!(
                        own,
                        look_up,
                        "{} frame {} window {lo}..={hi}",
                        path.display(),
                        r.frame
                    );
                    if own.len() > 1 {
                        runs += 1;
                    }
                }
            }
        }
    }
    assert!(
        runs > 0,
        "no fixture has an inner packet seen twice: the test proves nothing"
    );
}

#[test]
fn control_packets_are_the_packets_not_plain_data() {
    let mut some = 0;
    for path in fixtures() {
        let cap = decode_file(&path, DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let inputs = Inputs::new(vec![cap], Profile::Current, false, Expectations::default());
        for v in inputs.views() {
            let plain = |r: &Decoded| matches!(r.kind, Kind::Data { .. }) && r.icmp_type().is_none();
            let long: Vec<_> = v
                .packets()
                .filter(|(f, _)| !plain(f))
                .map(|(f, l)| (f as *const Decoded, l as *const Decoded))
                .collect();
            let short: Vec<_> = v
                .control_packets()
                .map(|(f, l)| (f as *const Decoded, l as *const Decoded))
                .collect();
            assert_eq!(short, long, "{}", path.display());
            some += short.len();
        }
    }
    assert!(
        some > 0,
        "no fixture has a control packet: the test proves nothing"
    );
}

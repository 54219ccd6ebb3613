//! Arbitrary bytes never panic the decoder or a check.

use proptest::prelude::*;

use super::build::{ep, router, udp, Cap};
use crate::conformance::checks::{fuzz_decode, run_passive, Expectations, Inputs};
use crate::conformance::decode::{decode_bytes, DecodeOptions, Profile};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_payloads_on_the_router_port(
        payloads in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..120), any::<bool>(), 0u64..5000, any::<u8>()),
            1..12,
        ),
        strict in any::<bool>(),
    ) {
        let peer = ep([198, 51, 100, 7], 40000);
        let mut c = Cap::new();
        for (mut p, up, t, first) in payloads {
            // Half the time make it look like IPv6, so the ND parser gets exercised.
            if first % 2 == 0 && !p.is_empty() {
                p[0] = 0x60;
            }
            let (s, d) = if up { (peer, router()) } else { (router(), peer) };
            c.at(t, udp(s, d, first, &p));
        }
        let e = Expectations {
            keepalive_period: Some(std::time::Duration::from_millis(300)),
            nat_udp_timeout: Some(std::time::Duration::from_millis(900)),
            max_probes: Some(1),
            probe_holddown: Some(std::time::Duration::from_millis(100)),
            rs_schedule: Some(vec![std::time::Duration::from_millis(10)]),
            ..Expectations::default()
        };
        // `run` also streams the capture (one capture point) and holds the results equal.
        let results = c.run(strict, e);
        prop_assert_eq!(results.len(), 35);
    }

    /// Mutated captures: wherever the streaming analysis takes one, it finds what the
    /// in-memory one finds.
    #[test]
    fn mutated_captures_stream_as_in_memory(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        strict in any::<bool>(),
    ) {
        let mut bytes = super::build::good_exchange().pcapng();
        for (i, x) in flips {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.pcapng");
        std::fs::write(&path, &bytes).expect("write");
        let opts = DecodeOptions { name: "m".into(), ..DecodeOptions::default() };
        let Ok(cap) = decode_bytes(&bytes, opts.clone()) else { return Ok(()) };
        let memory = run_passive(&Inputs::new(vec![cap], Profile::Current, strict, Expectations::default()));
        let inputs_of = |c| Inputs::new(vec![c], Profile::Current, strict, Expectations::default());
        if let Ok(Ok(s)) = crate::conformance::stream::check_file(&path, &opts, inputs_of, &mut |_, _| {}) {
            for (m, s) in memory.iter().zip(&s.results) {
                prop_assert_eq!(
                    (m.verdict, &m.message, &m.evidence),
                    (s.verdict, &s.message, &s.evidence),
                    "{}",
                    m.id
                );
            }
        }
    }

    #[test]
    fn fuzz_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz_decode(&data);
    }

    #[test]
    fn mutated_captures_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..20)) {
        let mut bytes = super::build::good_exchange().pcapng();
        for (i, x) in flips {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        fuzz_decode(&bytes);
    }
}

//! Property tests: no input panics, and inbound traffic only ever reaches the inside
//! endpoint that owns the mapping, from remotes that endpoint has talked to.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::nat::{Config, FilteringBehavior, MappingBehavior, PortAllocation, Preset, RefreshDirection};

fn any_config() -> impl Strategy<Value = Config> {
    (
        prop::sample::select(Preset::ALL.to_vec()),
        prop::sample::select(vec![
            MappingBehavior::EndpointIndependent,
            MappingBehavior::AddressDependent,
            MappingBehavior::AddressAndPortDependent,
        ]),
        prop::sample::select(vec![
            PortAllocation::Preserve,
            PortAllocation::Sequential,
            PortAllocation::Random,
        ]),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![(1024u16, 65535u16), (5000, 5007), (40000, 40000)]),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(preset, mapping, alloc, parity, hairpin, range, seed, both)| Config {
                mapping,
                port_allocation: alloc,
                parity,
                hairpinning: hairpin,
                port_range: range,
                seed,
                refresh: if both {
                    RefreshDirection::Both
                } else {
                    RefreshDirection::Outbound
                },
                udp_timeout: Duration::from_secs(10),
                ..preset.config()
            },
        )
}

/// Fixes the IPv4 header fields that would otherwise stop nearly every random packet at the
/// first check, so that the random bytes reach the deeper parsers.
fn plausible(mut b: Vec<u8>, proto: u8, src: [u8; 4], dst: [u8; 4], ihl_words: u8) -> Vec<u8> {
    let ihl = usize::from(ihl_words) * 4;
    if b.len() < ihl {
        return b;
    }
    b[0] = 0x40 | ihl_words;
    let total = b.len() as u16;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[6] &= 0x3f; // mostly unfragmented, sometimes a first fragment
    b[7] = 0;
    b[9] = proto;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b[10..12].copy_from_slice(&[0, 0]);
    let c = finish(ones(&b[..ihl], 0));
    b[10..12].copy_from_slice(&c.to_be_bytes());
    b
}

proptest! {
    // 512 cases by default; PROPTEST_CASES overrides it for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        .. ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(
        cfg in any_config(),
        packets in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..120)), 1..40),
    ) {
        let mut lab = Lab::new(cfg);
        for (dir, mut p) in packets {
            let v = if dir { lab.nat.outbound(lab.now, &mut p) } else { lab.nat.inbound(lab.now, &mut p) };
            prop_assert!(matches!(v, Verdict::Drop(_)) || p.len() >= 20);
            lab.advance(Duration::from_millis(700));
            lab.nat.handle_timeout(lab.now);
        }
    }

    #[test]
    fn plausible_headers_with_random_bodies_never_panic(
        cfg in any_config(),
        packets in prop::collection::vec(
            (
                any::<bool>(),
                prop::sample::select(vec![1u8, 6, 17, 47]),
                prop::collection::vec(any::<u8>(), 20..100),
                0u8..4,
                prop::sample::select(vec![5u8, 6, 15]),
            ),
            1..60,
        ),
    ) {
        let mut lab = Lab::new(cfg);
        for (dir, proto, body, which, ihl) in packets {
            let inside = [192, 168, 1, 10 + which];
            let remote = [198, 51, 100, 1 + which % 2];
            let ext = EXT.octets();
            let mut p = if dir {
                plausible(body, proto, inside, if which == 3 { ext } else { remote }, ihl)
            } else {
                plausible(body, proto, remote, ext, ihl)
            };
            let v = if dir { lab.nat.outbound(lab.now, &mut p) } else { lab.nat.inbound(lab.now, &mut p) };
            if matches!(v, Verdict::Forward | Verdict::Hairpin) {
                // The IPv4 header checksum is always right after translation; transport
                // checksums of random bodies were wrong before and stay so.
                let hl = usize::from(p[0] & 15) * 4;
                prop_assert_eq!(finish(ones(&p[..hl], 0)), 0);
            }
            lab.advance(Duration::from_millis(300));
        }
    }

    /// Random UDP flows between a few inside endpoints (several sharing a port) and a few
    /// remotes, with inbound probes at every external endpoint seen, under every
    /// configuration. Whatever gets in must go to the endpoint that owns the mapping, from a
    /// remote it has sent to (unless filtering is endpoint-independent), with valid checksums.
    #[test]
    fn inbound_only_reaches_the_mapping_owner(
        cfg in any_config(),
        ops in prop::collection::vec((0u8..3, 0usize..6, 0usize..4, 0usize..64, 0u64..4000), 1..200),
    ) {
        let filtering = cfg.filtering;
        let mut lab = Lab::new(cfg);
        let inside: Vec<SocketAddrV4> = vec![
            ep(C1, 5000), ep(C2, 5000), ep(C1, 5001),
            ep(Ipv4Addr::new(192, 168, 1, 30), 5000), ep(C2, 40000), ep(C1, 5002),
        ];
        let remotes: Vec<SocketAddrV4> = vec![ep(S1, P1), ep(S1, P2), ep(S2, P1), ep(S2, P2)];
        // Model: who last got each external endpoint, and the remotes it sent to through it.
        let mut owner: HashMap<SocketAddrV4, SocketAddrV4> = HashMap::new();
        let mut sent: HashMap<SocketAddrV4, HashSet<SocketAddrV4>> = HashMap::new();
        let mut seen: Vec<SocketAddrV4> = Vec::new();
        for (op, i, r, x, dt) in ops {
            lab.advance(Duration::from_millis(dt));
            match op {
                0 => {
                    let (v, p) = lab.out(udp(inside[i], remotes[r]));
                    if v == Verdict::Forward {
                        let e = src_of(&p);
                        prop_assert_eq!(dst_of(&p), remotes[r]);
                        if owner.insert(e, inside[i]) != Some(inside[i]) {
                            sent.insert(e, HashSet::new());
                        }
                        sent.entry(e).or_default().insert(remotes[r]);
                        if !seen.contains(&e) {
                            seen.push(e);
                        }
                    } else {
                        prop_assert_eq!(v, Verdict::Drop(crate::nat::DropReason::PortsExhausted));
                    }
                }
                1 if !seen.is_empty() => {
                    let e = seen[x % seen.len()];
                    if let Ok(to) = lab.udp_in(remotes[r], e) {
                        prop_assert_eq!(Some(&to), owner.get(&e), "delivered to a non-owner");
                        let from = remotes[r];
                        let talked = &sent[&e];
                        let ok = match filtering {
                            FilteringBehavior::EndpointIndependent => true,
                            FilteringBehavior::AddressDependent => talked.iter().any(|t| t.ip() == from.ip()),
                            FilteringBehavior::AddressAndPortDependent => talked.contains(&from),
                        };
                        prop_assert!(ok, "admitted {} never sent to via {}", from, e);
                    }
                }
                _ => lab.nat.handle_timeout(lab.now),
            }
        }
    }
}

proptest! {
    /// The bitmap port scan agrees with a port-by-port search.
    #[test]
    fn port_scan_matches_naive(
        used in prop::collection::vec(any::<u16>(), 0..300),
        dense in 0u16..2000,
        lo in 1u16..65535,
        len in 0u16..3000,
        start in any::<u16>(),
        parity in prop::option::of(0u16..2),
    ) {
        use crate::nat::table::PortSet;
        let hi = lo.saturating_add(len);
        let mut t = PortSet::default();
        for &p in used.iter().chain(&(lo..lo.saturating_add(dense)).collect::<Vec<_>>()) {
            t.set(p, true);
        }
        let s = if (lo..=hi).contains(&start) { start } else { lo };
        let naive = (s..=hi)
            .chain(lo..s)
            .find(|&p| parity.is_none_or(|par| p % 2 == par) && t.is_free(p));
        prop_assert_eq!(t.scan(lo, hi, start, parity), naive);
    }
}

proptest! {
    /// ICMP errors quoting a real translated packet, truncated anywhere and with random bytes
    /// changed in the quote: never a panic, and whatever is forwarded has valid outer IPv4
    /// and ICMP checksums.
    #[test]
    fn mangled_icmp_errors_never_panic(
        cut in 0usize..60,
        flips in prop::collection::vec((0usize..60, any::<u8>()), 0..4),
        tcp_quote in any::<bool>(),
    ) {
        let mut lab = Lab::new(Config::default());
        let (v, outside) = if tcp_quote {
            lab.out(tcp(ep(C1, 4000), ep(S1, 80), SYN))
        } else {
            lab.out(udp(ep(C1, 4000), ep(S1, P1)))
        };
        prop_assert_eq!(v, Verdict::Forward);
        let mut quote = outside[..cut.min(outside.len())].to_vec();
        if flips.is_empty() {
            // Only truncated: `inb` verifies every checksum, the quoted ones included.
            let _ = lab.inb(icmp_error(S1, EXT, 3, 3, 0, &quote));
        }
        for (i, x) in flips {
            if let Some(b) = quote.get_mut(i) {
                *b ^= x;
            }
        }
        // Mangled quotes keep whatever quoted checksums they had (the NAT updates them
        // incrementally and does not judge them); the outer ones must be right.
        let mut p = icmp_error(S1, EXT, 3, 3, 0, &quote);
        if lab.nat.inbound(lab.now, &mut p) == Verdict::Forward {
            prop_assert_eq!(finish(ones(&p[..20], 0)), 0);
            prop_assert_eq!(finish(ones(&p[20..], 0)), 0);
        }
        let mut p = icmp_error(C1, S1, 3, 3, 0, &quote);
        if lab.nat.outbound(lab.now, &mut p) == Verdict::Forward {
            prop_assert_eq!(finish(ones(&p[..20], 0)), 0);
            prop_assert_eq!(finish(ones(&p[20..], 0)), 0);
        }
    }
}

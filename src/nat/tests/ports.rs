//! Port allocation, pooling, collisions between inside hosts, and port exhaustion.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::nat::{Config, DropReason, MappingBehavior, NatEventKind, Pooling, PortAllocation, Proto};

#[test]
fn preserve_keeps_the_port_and_falls_back_when_another_host_has_it() {
    let mut lab = Lab::new(Config::full_cone());
    let a = lab.udp_out(ep(C1, 5000), ep(S1, P1));
    assert_eq!(a, ep(EXT, 5000), "port preserved");
    // Another inside host with the same source port: must not collide (n0 patchbay's bug).
    let b = lab.udp_out(ep(C2, 5000), ep(S1, P1));
    assert_eq!(b, ep(EXT, 5001), "falls back to the next free port");
    // Both mappings stay distinct and each answer reaches its own host.
    assert_eq!(lab.udp_in(ep(S1, P1), a), Ok(ep(C1, 5000)));
    assert_eq!(lab.udp_in(ep(S2, P2), b), Ok(ep(C2, 5000)));
    assert_eq!(lab.nat.len(), 2);
    // Repeated sends reuse the mappings.
    assert_eq!(lab.udp_out(ep(C2, 5000), ep(S2, P1)), b);
    assert_eq!(lab.udp_out(ep(C1, 5000), ep(S2, P1)), a);
    // A port below the range falls back into the range.
    let c = lab.udp_out(ep(C1, 53), ep(S1, P1));
    assert_eq!(c.port(), 1024);
    // The same inside port on another protocol is independent.
    let (v, p) = lab.out(tcp(ep(C2, 5000), ep(S1, 80), SYN));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(src_of(&p), ep(EXT, 5000), "TCP port space is separate from UDP");
}

#[test]
fn same_port_hosts_never_collide_under_any_mapping() {
    for mapping in [
        MappingBehavior::EndpointIndependent,
        MappingBehavior::AddressDependent,
        MappingBehavior::AddressAndPortDependent,
    ] {
        for alloc in [
            PortAllocation::Preserve,
            PortAllocation::Sequential,
            PortAllocation::Random,
        ] {
            let cfg = Config {
                mapping,
                port_allocation: alloc,
                ..Config::full_cone()
            };
            let mut lab = Lab::new(cfg);
            let hosts: Vec<_> = (10..60)
                .map(|i| ep(Ipv4Addr::new(192, 168, 1, i), 4444))
                .collect();
            let mut exts = HashSet::new();
            for &h in &hosts {
                assert!(
                    exts.insert(lab.udp_out(h, ep(S1, P1))),
                    "{mapping:?}/{alloc:?}: collision"
                );
            }
            for &h in &hosts {
                let e = lab.udp_out(h, ep(S1, P1));
                assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(h), "{mapping:?}/{alloc:?}");
            }
        }
    }
}

#[test]
fn sequential_hands_out_consecutive_ports() {
    let cfg = Config {
        port_allocation: PortAllocation::Sequential,
        port_range: (20000, 20009),
        ..Config::default()
    };
    let mut lab = Lab::new(cfg);
    let ports: Vec<u16> = (0..10)
        .map(|i| lab.udp_out(ep(C1, 6000 + i), ep(S1, P1)).port())
        .collect();
    assert_eq!(ports, (20000..20010).collect::<Vec<_>>());
}

#[test]
fn random_ports_spread_over_the_range() {
    let cfg = Config {
        port_allocation: PortAllocation::Random,
        ..Config::default()
    };
    let mut lab = Lab::new(cfg);
    let ports: Vec<u16> = (0..400)
        .map(|i| lab.udp_out(ep(C1, 6000 + i), ep(S1, P1)).port())
        .collect();
    let distinct: HashSet<_> = ports.iter().collect();
    assert_eq!(distinct.len(), ports.len());
    assert!(ports.iter().all(|&p| p >= 1024));
    // Every eighth of the range gets some ports; none gets a third of them.
    let width = (65536 - 1024) / 8;
    let mut buckets = [0usize; 8];
    for &p in &ports {
        buckets[(usize::from(p) - 1024) / width] += 1;
    }
    assert!(buckets.iter().all(|&n| n > 10 && n < 400 / 3), "{buckets:?}");
    let increasing = ports.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        increasing > 100 && increasing < 300,
        "not sequential: {increasing}"
    );
    // Same seed, same ports: runs replay exactly.
    let mut again = Lab::new(Config {
        port_allocation: PortAllocation::Random,
        ..Config::default()
    });
    let first: Vec<u16> = (0..10)
        .map(|i| again.udp_out(ep(C1, 6000 + i), ep(S1, P1)).port())
        .collect();
    assert_eq!(first, ports[..10]);
}

#[test]
fn parity_is_kept_when_asked() {
    for alloc in [
        PortAllocation::Preserve,
        PortAllocation::Sequential,
        PortAllocation::Random,
    ] {
        let cfg = Config {
            port_allocation: alloc,
            parity: true,
            ..Config::full_cone()
        };
        let mut lab = Lab::new(cfg);
        for i in 0..100u8 {
            let inside = ep(Ipv4Addr::new(192, 168, 1, 10 + i), 5000 + u16::from(i % 2));
            let e = lab.udp_out(inside, ep(S1, P1));
            assert_eq!(
                e.port() % 2,
                inside.port() % 2,
                "{alloc:?}: parity of {inside} -> {e}"
            );
        }
    }
    // Preserve with parity: 5000 taken -> 5002, not 5001.
    let mut lab = Lab::new(Config {
        parity: true,
        ..Config::full_cone()
    });
    assert_eq!(lab.udp_out(ep(C1, 5000), ep(S1, P1)).port(), 5000);
    assert_eq!(lab.udp_out(ep(C2, 5000), ep(S1, P1)).port(), 5002);
    // Without parity: 5001.
    let mut lab = Lab::new(Config::full_cone());
    lab.udp_out(ep(C1, 5000), ep(S1, P1));
    assert_eq!(lab.udp_out(ep(C2, 5000), ep(S1, P1)).port(), 5001);
}

const POOL: [Ipv4Addr; 4] = [
    Ipv4Addr::new(203, 0, 113, 10),
    Ipv4Addr::new(203, 0, 113, 11),
    Ipv4Addr::new(203, 0, 113, 12),
    Ipv4Addr::new(203, 0, 113, 13),
];

#[test]
fn pool_with_pairing_keeps_each_host_on_one_address() {
    let cfg = Config {
        external_addrs: POOL.to_vec(),
        mapping: MappingBehavior::AddressAndPortDependent,
        ..Config::symmetric()
    };
    let mut lab = Lab::new(cfg);
    let mut per_host = Vec::new();
    for h in 0..8u8 {
        let host = Ipv4Addr::new(192, 168, 1, 100 + h);
        let mut addrs = HashSet::new();
        for i in 0..50u16 {
            let e = lab.udp_out(
                ep(host, 7000 + i % 5),
                ep(Ipv4Addr::new(198, 51, 100, (i % 7) as u8 + 1), 1000 + i),
            );
            addrs.insert(*e.ip());
        }
        assert_eq!(
            addrs.len(),
            1,
            "host {host} must keep one external address (REQ-2)"
        );
        per_host.push(addrs.into_iter().next().expect("one address"));
    }
    // Hosts are spread over the pool.
    let used: HashSet<_> = per_host.iter().collect();
    assert_eq!(used.len(), 4, "{per_host:?}");
    // And inbound to each external address works.
    let e = lab.udp_out(ep(Ipv4Addr::new(192, 168, 1, 103), 7000), ep(S1, P1));
    assert_eq!(
        lab.udp_in(ep(S1, P1), e),
        Ok(ep(Ipv4Addr::new(192, 168, 1, 103), 7000))
    );
}

#[test]
fn pool_round_robin_spreads_one_host() {
    let cfg = Config {
        external_addrs: POOL.to_vec(),
        pooling: Pooling::RoundRobin,
        ..Config::full_cone()
    };
    let mut lab = Lab::new(cfg);
    let addrs: Vec<_> = (0..8)
        .map(|i| *lab.udp_out(ep(C1, 7000 + i), ep(S1, P1)).ip())
        .collect();
    assert_eq!(addrs[..4], POOL);
    assert_eq!(addrs[4..], POOL);
}

#[test]
fn exhaustion_is_a_counted_refusal_and_expiry_frees_ports() {
    let cfg = Config {
        port_range: (2000, 2003),
        ..Config::full_cone()
    };
    let mut lab = Lab::new(cfg);
    let hosts: Vec<_> = (10..15)
        .map(|i| ep(Ipv4Addr::new(192, 168, 1, i), 5555))
        .collect();
    let mut ports = HashSet::new();
    for &h in &hosts[..4] {
        ports.insert(lab.udp_out(h, ep(S1, P1)).port());
    }
    assert_eq!(ports, (2000..=2003).collect());
    lab.nat.take_events();
    let (v, _) = lab.out(udp(hosts[4], ep(S1, P1)));
    assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted));
    assert_eq!(lab.nat.stats().mappings_refused, 1);
    assert_eq!(lab.nat.stats().drops.ports_exhausted, 1);
    let ev = lab.nat.take_events();
    assert!(ev.iter().any(|e| matches!(
        e.kind,
        NatEventKind::MappingRefused { inside, reason: DropReason::PortsExhausted, proto: Proto::Udp, .. }
            if inside == hosts[4]
    )));
    // Other protocols have their own ports; existing mappings keep working.
    let (v, _) = lab.out(tcp(hosts[4], ep(S1, 80), SYN));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(lab.udp_out(hosts[0], ep(S2, P2)).port(), 2000);
    // Refusal again, then after the lifetime the ports are reusable.
    let (v, _) = lab.out(udp(hosts[4], ep(S1, P1)));
    assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted));
    lab.advance(Duration::from_secs(121));
    lab.nat.handle_timeout(lab.now);
    let e = lab.udp_out(hosts[4], ep(S1, P1));
    assert!((2000..=2003).contains(&e.port()));
    assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(hosts[4]));
    // Without the timer running: expiry is noticed on lookup too.
    for &h in &hosts[..3] {
        lab.udp_out(h, ep(S1, P1));
    }
    lab.advance(Duration::from_secs(120));
    for &h in &hosts[..4] {
        lab.udp_out(h, ep(S1, P1));
    }
    assert_eq!(lab.nat.len(), 4);
}

#[test]
fn exhaustion_with_every_allocator_and_pool_terminates() {
    for alloc in [
        PortAllocation::Preserve,
        PortAllocation::Sequential,
        PortAllocation::Random,
    ] {
        for parity in [false, true] {
            let cfg = Config {
                port_range: (3000, 3003),
                port_allocation: alloc,
                parity,
                external_addrs: POOL[..2].to_vec(),
                pooling: Pooling::RoundRobin,
                ..Config::full_cone()
            };
            let mut lab = Lab::new(cfg);
            let mut ok = 0;
            for i in 0..20u8 {
                let (v, _) = lab.out(udp(ep(Ipv4Addr::new(192, 168, 1, 10 + i), 3001), ep(S1, P1)));
                if v == Verdict::Forward {
                    ok += 1;
                } else {
                    assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted));
                }
            }
            // Two addresses x four ports, or x two odd ports with parity.
            assert_eq!(ok, if parity { 4 } else { 8 }, "{alloc:?} parity={parity}");
        }
    }
}

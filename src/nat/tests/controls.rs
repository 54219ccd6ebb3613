//! Runtime controls: flush, rebinding, up/down; configuration validation; memory.

use std::time::Duration;

use super::*;
use crate::nat::{Config, ConfigError, DropReason, FlushCause, Nat, NatEventKind, Proto};

#[test]
fn flush_drops_every_mapping() {
    let mut lab = Lab::new(Config::full_cone());
    let e = lab.udp_out(ep(C1, 4000), ep(S1, P1));
    lab.out(echo(C1, S1, true, 5, 1));
    assert_eq!(lab.nat.len(), 2);
    lab.nat.take_events();
    lab.nat.flush(lab.now);
    assert!(lab.nat.is_empty());
    assert_eq!(lab.nat.poll_timeout(), None);
    assert_eq!(
        lab.udp_in(ep(S1, P1), e),
        Err(Verdict::Drop(DropReason::NoMapping))
    );
    assert!(matches!(
        lab.nat.take_events()[0].kind,
        NatEventKind::MappingsFlushed {
            count: 2,
            cause: FlushCause::Flush
        }
    ));
    assert_eq!(lab.nat.stats().mappings_flushed, 2);
    // Works again afterwards, with the port free.
    assert_eq!(lab.udp_out(ep(C2, 4000), ep(S1, P1)), e);
}

#[test]
fn rebinding_moves_to_the_new_address() {
    let mut lab = Lab::new(Config::default());
    let c = ep(C1, 4000);
    let old = lab.udp_out(c, ep(S1, P1));
    assert_eq!(*old.ip(), EXT);
    let new_addr = Ipv4Addr::new(203, 0, 113, 77);
    lab.nat
        .set_external_addresses(lab.now, vec![new_addr])
        .expect("valid pool");
    assert!(lab.nat.is_empty(), "old mappings are gone");
    assert_eq!(
        lab.udp_in(ep(S1, P1), old),
        Err(Verdict::Drop(DropReason::NotExternalAddress))
    );
    let new = lab.udp_out(c, ep(S1, P1));
    assert_eq!(*new.ip(), new_addr);
    assert_eq!(lab.udp_in(ep(S1, P1), new), Ok(c));
    let events = lab.nat.take_events();
    assert!(events.iter().any(|e| matches!(
        e.kind,
        NatEventKind::MappingsFlushed {
            count: 1,
            cause: FlushCause::Rebind
        }
    )));
    assert!(events.iter().any(|e| matches!(&e.kind, NatEventKind::ExternalAddressesChanged { addresses } if addresses == &[new_addr])));
    // Bad pools are refused and change nothing.
    assert_eq!(
        lab.nat.set_external_addresses(lab.now, vec![]),
        Err(ConfigError::NoExternalAddress)
    );
    assert_eq!(
        lab.nat.set_external_addresses(lab.now, vec![C2]),
        Err(ConfigError::ExternalInsideNet(C2))
    );
    assert_eq!(lab.nat.len(), 1);
}

#[test]
fn down_drops_everything_and_counts() {
    let mut lab = Lab::new(Config::full_cone());
    let e = lab.udp_out(ep(C1, 4000), ep(S1, P1));
    lab.nat.set_up(lab.now, false);
    assert!(!lab.nat.is_up());
    assert!(lab.nat.is_empty());
    let (v, _) = lab.out(udp(ep(C1, 4000), ep(S1, P1)));
    assert_eq!(v, Verdict::Drop(DropReason::Down));
    assert_eq!(lab.udp_in(ep(S1, P1), e), Err(Verdict::Drop(DropReason::Down)));
    let (v, _) = lab.inb(vec![1, 2, 3]);
    assert_eq!(v, Verdict::Drop(DropReason::Down));
    assert_eq!(lab.nat.stats().drops.down, 3);
    lab.nat.set_up(lab.now, true);
    assert_eq!(lab.udp_out(ep(C1, 4000), ep(S1, P1)), e);
    let kinds: Vec<_> = lab.nat.take_events().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&NatEventKind::AdminState { up: false }));
    assert!(kinds.contains(&NatEventKind::AdminState { up: true }));
}

#[test]
fn config_validation() {
    let t = std::time::Instant::now();
    let bad = |c: Config| Nat::new(c, t).err();
    assert_eq!(
        bad(Config {
            port_range: (0, 10),
            ..Config::default()
        }),
        Some(ConfigError::BadPortRange(0, 10))
    );
    assert_eq!(
        bad(Config {
            port_range: (10, 9),
            ..Config::default()
        }),
        Some(ConfigError::BadPortRange(10, 9))
    );
    assert_eq!(
        bad(Config {
            inside_net: (Ipv4Addr::new(10, 0, 0, 0), 33),
            ..Config::default()
        }),
        Some(ConfigError::BadPrefix(33))
    );
    assert_eq!(
        bad(Config {
            outside_addr: Ipv4Addr::UNSPECIFIED,
            ..Config::default()
        }),
        Some(ConfigError::NoExternalAddress)
    );
    assert_eq!(
        bad(Config {
            external_addrs: vec![EXT, EXT],
            ..Config::default()
        }),
        Some(ConfigError::BadExternalAddress(EXT))
    );
    assert!(Nat::new(
        Config {
            port_range: (65535, 65535),
            ..Config::default()
        },
        t
    )
    .is_ok());
}

#[test]
fn config_serde_round_trip() {
    let cfg = Config {
        udp_timeout: Duration::from_millis(1500),
        ..Config::symmetric()
    };
    let json = serde_json::to_string(&cfg).expect("serialises");
    assert!(
        json.contains(r#""mapping":"address-and-port-dependent""#),
        "{json}"
    );
    assert!(json.contains(r#""udp_timeout":1.5"#), "{json}");
    let back: Config = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, cfg);
    // Partial configs fill in defaults; integer seconds work.
    let c: Config =
        serde_json::from_str(r#"{"filtering":"endpoint-independent","udp_timeout":30}"#).expect("ok");
    assert_eq!(
        c,
        Config {
            udp_timeout: Duration::from_secs(30),
            ..Config::full_cone()
        }
    );
    assert!(serde_json::from_str::<Config>(r#"{"udp_timeout":-1}"#).is_err());
    assert!(serde_json::from_str::<Config>(r#"{"mapping":"cone"}"#).is_err());
}

#[test]
fn mappings_are_listed() {
    let mut lab = Lab::new(Config::symmetric());
    let e = lab.udp_out(ep(C1, 4000), ep(S1, P1));
    let all: Vec<_> = lab.nat.mappings().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].inside, ep(C1, 4000));
    assert_eq!(all[0].external, e);
    assert_eq!(all[0].bound_remote, Some(ep(S1, P1)));
    assert_eq!(all[0].proto, Proto::Udp);
    assert_eq!(all[0].expires, lab.now + Duration::from_secs(120));
}

/// Heap bytes per mapping with 100 000 live EIM/APDF UDP mappings (one remote each). The
/// bench prints the same for 10 k and 1 M.
#[test]
fn memory_per_mapping_is_under_200_bytes() {
    assert!(std::mem::size_of::<Option<crate::nat::table::Mapping>>() <= 64);
    let pool: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let cfg = Config {
        inside_net: (Ipv4Addr::new(10, 0, 0, 0), 8),
        external_addrs: pool,
        pooling: crate::nat::Pooling::RoundRobin,
        ..Config::default()
    };
    let t = std::time::Instant::now();
    let mut nat = Nat::new(cfg, t).expect("valid");
    let n = 100_000u32;
    for i in 0..n {
        let inside = Ipv4Addr::from(0x0a00_0000 + i / 16);
        let mut p = udp(ep(inside, 10000 + (i % 16) as u16), ep(S1, P1));
        assert_eq!(nat.outbound(t, &mut p), Verdict::Forward);
    }
    assert_eq!(nat.len(), n as usize);
    let per = nat.heap_bytes() as f64 / f64::from(n);
    eprintln!("heap bytes per mapping at {n}: {per:.1}");
    assert!(per < 200.0, "{per} bytes per mapping");
}

//! Mapping lifetime: exact expiry after the last refresh, refresh direction, the timer API,
//! and the decision log.

use std::time::Duration;

use super::*;
use crate::nat::{Config, Direction, DropReason, NatEventKind, RefreshDirection};

const MS: Duration = Duration::from_millis(1);
const LIFE: Duration = Duration::from_secs(120);

fn lab(refresh: RefreshDirection) -> Lab {
    Lab::new(Config {
        refresh,
        ..Config::full_cone()
    })
}

#[test]
fn expiry_is_exactly_the_lifetime_after_the_last_outbound_refresh() {
    let mut lab = lab(RefreshDirection::Outbound);
    let c = ep(C1, 4000);
    let e = lab.udp_out(c, ep(S1, P1));
    lab.at(Duration::from_secs(60));
    assert_eq!(lab.udp_out(c, ep(S1, P1)), e, "refresh keeps the mapping");
    // Inbound traffic does not refresh with RefreshDirection::Outbound.
    lab.at(Duration::from_secs(170));
    assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(c));
    lab.at(Duration::from_secs(180) - MS);
    assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(c), "alive 1 ms before the lifetime");
    lab.at(Duration::from_secs(180));
    assert_eq!(
        lab.udp_in(ep(S1, P1), e),
        Err(Verdict::Drop(DropReason::NoMapping)),
        "gone at the lifetime"
    );
    assert_eq!(lab.nat.len(), 0);
    assert_eq!(lab.nat.stats().mappings_expired, 1);
    let expired: Vec<_> = lab
        .nat
        .take_events()
        .into_iter()
        .filter(|e| matches!(e.kind, NatEventKind::MappingExpired { .. }))
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        expired[0].t_ns, 180_000_000_000,
        "logged at the exact expiry time"
    );
}

#[test]
fn inbound_refreshes_only_with_both() {
    let mut lab = lab(RefreshDirection::Both);
    let c = ep(C1, 4000);
    let e = lab.udp_out(c, ep(S1, P1));
    lab.at(Duration::from_secs(100));
    assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(c));
    lab.at(Duration::from_secs(220) - MS);
    assert_eq!(
        lab.udp_in(ep(S1, P1), e),
        Ok(c),
        "inbound at 100 s moved the expiry to 220 s"
    );
    // That packet refreshed it again: expiry at 340 s - 1 ms.
    lab.at(Duration::from_secs(340) - 2 * MS);
    lab.nat.handle_timeout(lab.now);
    assert_eq!(lab.nat.len(), 1);
    lab.at(Duration::from_secs(340) - MS);
    lab.nat.handle_timeout(lab.now);
    assert_eq!(lab.nat.len(), 0);

    // Filtered inbound traffic never refreshes, even with Both.
    let mut lab = Lab::new(Config {
        refresh: RefreshDirection::Both,
        ..Config::default()
    });
    let e = lab.udp_out(c, ep(S1, P1));
    lab.at(Duration::from_secs(100));
    assert_eq!(
        lab.udp_in(ep(S2, P1), e),
        Err(Verdict::Drop(DropReason::Filtered))
    );
    lab.at(LIFE);
    assert_eq!(
        lab.udp_in(ep(S1, P1), e),
        Err(Verdict::Drop(DropReason::NoMapping))
    );

    // And with Outbound, the same inbound at 100 s does not.
    let mut lab = lab_outbound();
    let e = lab.udp_out(c, ep(S1, P1));
    lab.at(Duration::from_secs(100));
    assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(c));
    lab.at(LIFE);
    assert_eq!(
        lab.udp_in(ep(S1, P1), e),
        Err(Verdict::Drop(DropReason::NoMapping))
    );
}

fn lab_outbound() -> Lab {
    lab(RefreshDirection::Outbound)
}

#[test]
fn timer_fires_at_the_expiry_and_not_before() {
    let mut lab = lab_outbound();
    let c = ep(C1, 4000);
    assert_eq!(lab.nat.poll_timeout(), None);
    lab.udp_out(c, ep(S1, P1));
    assert_eq!(lab.nat.poll_timeout(), Some(lab.t0 + LIFE));
    lab.at(Duration::from_secs(30));
    lab.udp_out(c, ep(S1, P1));
    // The stale entry wakes us at 120 s; the mapping survives and the timer moves to 150 s.
    let mut wakeups = 0;
    while let Some(due) = lab.nat.poll_timeout() {
        wakeups += 1;
        assert!(wakeups < 5, "timer loop must converge");
        if lab.nat.len() == 1 {
            // Just before the due time nothing happens.
            lab.nat.handle_timeout(due - MS);
            assert_eq!(lab.nat.len(), 1);
        }
        lab.nat.handle_timeout(due);
        if lab.nat.is_empty() {
            assert_eq!(
                due,
                lab.t0 + Duration::from_secs(150),
                "expired exactly at last refresh + lifetime"
            );
        }
    }
    assert_eq!(wakeups, 2);
    assert!(lab.nat.is_empty());
}

#[test]
fn expired_port_is_reused() {
    let mut lab = Lab::new(Config::full_cone());
    let e = lab.udp_out(ep(C1, 5000), ep(S1, P1));
    lab.at(LIFE);
    // Another host asking for the same port gets it now: the old mapping is gone.
    assert_eq!(lab.udp_out(ep(C2, 5000), ep(S1, P1)), e);
    assert_eq!(lab.udp_in(ep(S1, P1), e), Ok(ep(C2, 5000)));
}

#[test]
fn many_mappings_expire_in_order_through_the_timer() {
    let mut lab = lab_outbound();
    for i in 0..1000u16 {
        lab.at(Duration::from_millis(u64::from(i)));
        lab.udp_out(ep(C1, 10000 + i), ep(S1, P1));
    }
    for i in 0..1000u16 {
        lab.at(LIFE + Duration::from_millis(u64::from(i)));
        lab.nat.handle_timeout(lab.now);
        assert_eq!(lab.nat.len(), 999 - usize::from(i));
    }
}

#[test]
fn set_udp_timeout_applies_to_existing_mappings() {
    let mut lab = lab_outbound();
    let e = lab.udp_out(ep(C1, 4000), ep(S1, P1));
    lab.at(Duration::from_secs(10));
    lab.nat.set_udp_timeout(lab.now, Duration::from_secs(30));
    assert_eq!(lab.nat.poll_timeout(), Some(lab.t0 + Duration::from_secs(30)));
    lab.at(Duration::from_secs(30) - MS);
    assert!(lab.udp_in(ep(S1, P1), e).is_ok());
    lab.at(Duration::from_secs(30));
    lab.nat.handle_timeout(lab.now);
    assert!(lab.nat.is_empty());
    assert_eq!(lab.nat.config().udp_timeout, Duration::from_secs(30));
}

#[test]
fn refresh_log_is_rate_limited_and_events_serialise() {
    let mut lab = Lab::new(Config {
        refresh: RefreshDirection::Both,
        ..Config::full_cone()
    });
    let c = ep(C1, 4000);
    let e = lab.udp_out(c, ep(S1, P1));
    // One packet per second each way for 100 s: 200 refreshes.
    for s in 1..=100 {
        lab.at(Duration::from_secs(s));
        lab.udp_out(c, ep(S1, P1));
        lab.udp_in(ep(S1, P1), e).expect("admitted");
    }
    let events = lab.nat.take_events();
    let refreshed: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, NatEventKind::MappingRefreshed { .. }))
        .collect();
    // First refresh, then one per 30 s (lifetime / 4): at 1, 31, 61, 91 s.
    let times: Vec<u64> = refreshed.iter().map(|e| e.t_ns / 1_000_000_000).collect();
    assert_eq!(times, [1, 31, 61, 91]);
    assert!(matches!(
        refreshed[3].kind,
        NatEventKind::MappingRefreshed {
            refreshes: 181,
            direction: Direction::Outbound,
            ..
        }
    ));
    assert_eq!(lab.nat.stats().refreshes, 200);
    let created = &events[0];
    let line = created.to_json_line();
    assert_eq!(
        line,
        r#"{"t_ns":0,"event":"mapping_created","proto":"udp","inside":"192.168.1.10:4000","external":"203.0.113.1:4000","remote":"198.51.100.1:3478"}"#
    );
    for e in &events {
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).expect("valid JSON");
        assert!(v["event"].is_string() && v["t_ns"].is_u64());
    }
    // Drops are logged with their flow.
    let (v, _) = lab.inb(udp(ep(S2, 1), ep(EXT, 9999)));
    assert_eq!(v, Verdict::Drop(DropReason::NoMapping));
    let line = lab.nat.take_events()[0].to_json_line();
    assert!(
        line.contains(r#""event":"packet_dropped","direction":"inbound","reason":"no_mapping""#),
        "{line}"
    );
    assert!(line.contains(r#""dst":"203.0.113.1:9999""#), "{line}");
}

#[test]
fn pending_events_are_bounded() {
    let mut lab = Lab::new(Config {
        max_pending_events: 10,
        ..Config::default()
    });
    for i in 0..50 {
        lab.udp_out(ep(C1, 5000 + i), ep(S1, P1));
    }
    assert_eq!(lab.nat.take_events().len(), 10);
    assert_eq!(lab.nat.stats().events_lost, 40);
}

//! Every preset proved by probing (RFC 5780 style), not trusted from its config: a client
//! behind the NAT, servers on two addresses with two ports each. Mapping behaviour is read
//! from the external ports, filtering from which servers get an unsolicited packet in,
//! hairpinning from a second client, and the lifetime by bisection on the idle time.

use std::time::Duration;

use super::*;
use crate::nat::{Config, FilteringBehavior, MappingBehavior, PortAllocation, Preset};

const CLIENT: SocketAddrV4 = SocketAddrV4::new(C1, 40000);

fn classify_mapping(cfg: &Config) -> MappingBehavior {
    let mut lab = Lab::new(cfg.clone());
    let a = lab.udp_out(CLIENT, ep(S1, P1));
    let b = lab.udp_out(CLIENT, ep(S1, P2));
    let c = lab.udp_out(CLIENT, ep(S2, P1));
    if a == b && b == c {
        MappingBehavior::EndpointIndependent
    } else if a == b {
        MappingBehavior::AddressDependent
    } else {
        MappingBehavior::AddressAndPortDependent
    }
}

fn classify_filtering(cfg: &Config) -> FilteringBehavior {
    // A fresh NAT per probe, so that one admitted probe cannot influence the next.
    let admitted = |from: SocketAddrV4| {
        let mut lab = Lab::new(cfg.clone());
        let mapped = lab.udp_out(CLIENT, ep(S1, P1));
        match lab.udp_in(from, mapped) {
            Ok(to) => {
                assert_eq!(to, CLIENT, "admitted packet must reach the client");
                true
            }
            Err(v) => {
                assert_eq!(v, Verdict::Drop(crate::nat::DropReason::Filtered));
                false
            }
        }
    };
    assert!(
        admitted(ep(S1, P1)),
        "the server the client talked to must get through"
    );
    let port_change = admitted(ep(S1, P2));
    let addr_change = admitted(ep(S2, P1));
    let both_change = admitted(ep(S2, P2));
    match (port_change, addr_change, both_change) {
        (true, true, true) => FilteringBehavior::EndpointIndependent,
        (true, false, false) => FilteringBehavior::AddressDependent,
        (false, false, false) => FilteringBehavior::AddressAndPortDependent,
        other => panic!("inconsistent filtering {other:?}"),
    }
}

/// RFC 5780 §4.5: the client sends to its own mapped address; hairpinning works if the
/// packet comes back to it with the mapped address as source. Hairpinned packets pass the
/// destination mapping's filter as if they came from outside, so under APDM (a new mapping
/// towards the mapped address) + APDF this fails although hairpinning is on, as RFC 5780
/// describes for symmetric NATs.
fn classify_hairpin(cfg: &Config) -> Verdict {
    let mut lab = Lab::new(cfg.clone());
    let a = lab.udp_out(CLIENT, ep(S1, P1));
    let (v, p) = lab.out(udp(CLIENT, a));
    if v == Verdict::Hairpin {
        assert_eq!(
            src_of(&p),
            a,
            "hairpinned source must be the sender's external endpoint"
        );
        assert_eq!(dst_of(&p), CLIENT);
    }
    v
}

/// The UDP mapping lifetime, by bisection on the idle time (1 ms resolution): the mapping is
/// alive if a packet from the server still gets in.
fn measure_lifetime(cfg: &Config) -> Duration {
    let alive_after = |idle: Duration| {
        let mut lab = Lab::new(cfg.clone());
        let mapped = lab.udp_out(CLIENT, ep(S1, P1));
        lab.advance(idle);
        lab.udp_in(ep(S1, P1), mapped).is_ok()
    };
    let (mut lo, mut hi) = (0u64, 3_600_000u64); // ms: alive at lo, dead at hi
    assert!(alive_after(Duration::ZERO));
    assert!(!alive_after(Duration::from_millis(hi)));
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if alive_after(Duration::from_millis(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Duration::from_millis(hi)
}

#[test]
fn presets_classify_as_named() {
    let expected = [
        (
            Preset::FullCone,
            MappingBehavior::EndpointIndependent,
            FilteringBehavior::EndpointIndependent,
        ),
        (
            Preset::RestrictedCone,
            MappingBehavior::EndpointIndependent,
            FilteringBehavior::AddressDependent,
        ),
        (
            Preset::PortRestrictedCone,
            MappingBehavior::EndpointIndependent,
            FilteringBehavior::AddressAndPortDependent,
        ),
        (
            Preset::Symmetric,
            MappingBehavior::AddressAndPortDependent,
            FilteringBehavior::AddressAndPortDependent,
        ),
    ];
    for (preset, mapping, filtering) in expected {
        let name = preset.to_string();
        let cfg: Config = name.parse::<Preset>().expect("preset name parses").into();
        assert_eq!(classify_mapping(&cfg), mapping, "{name}: mapping");
        assert_eq!(classify_filtering(&cfg), filtering, "{name}: filtering");
        let hairpin = if preset == Preset::Symmetric {
            Verdict::Drop(crate::nat::DropReason::Filtered)
        } else {
            Verdict::Hairpin
        };
        assert_eq!(
            classify_hairpin(&cfg),
            hairpin,
            "{name}: hairpinning (on by default)"
        );
        assert_eq!(
            measure_lifetime(&cfg),
            Duration::from_secs(120),
            "{name}: lifetime"
        );
    }
    assert_eq!(Config::default(), Config::port_restricted_cone());
    assert_eq!(Config::symmetric().port_allocation, PortAllocation::Random);
    assert!("cone".parse::<Preset>().is_err());
}

/// The classifier itself must tell all nine combinations apart, or the preset test proves
/// nothing.
#[test]
fn classifier_distinguishes_every_combination() {
    use FilteringBehavior as F;
    use MappingBehavior as M;
    for mapping in [
        M::EndpointIndependent,
        M::AddressDependent,
        M::AddressAndPortDependent,
    ] {
        for filtering in [
            F::EndpointIndependent,
            F::AddressDependent,
            F::AddressAndPortDependent,
        ] {
            for alloc in [
                PortAllocation::Preserve,
                PortAllocation::Sequential,
                PortAllocation::Random,
            ] {
                let cfg = Config {
                    mapping,
                    filtering,
                    port_allocation: alloc,
                    ..Config::default()
                };
                assert_eq!(
                    classify_mapping(&cfg),
                    mapping,
                    "{mapping:?}/{filtering:?}/{alloc:?}"
                );
                assert_eq!(
                    classify_filtering(&cfg),
                    filtering,
                    "{mapping:?}/{filtering:?}/{alloc:?}"
                );
            }
        }
    }
}

#[test]
fn probes_see_hairpin_off_and_a_custom_lifetime() {
    let cfg = Config {
        hairpinning: false,
        udp_timeout: Duration::from_millis(30_500),
        ..Config::full_cone()
    };
    assert_eq!(
        classify_hairpin(&cfg),
        Verdict::Drop(crate::nat::DropReason::HairpinOff)
    );
    assert_eq!(measure_lifetime(&cfg), Duration::from_millis(30_500));
}

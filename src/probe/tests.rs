//! The probe's classification and planning, without a kernel.

use super::wire::Answer;
use super::*;
use crate::topology::{Host, Interface, NatKnobs, NatPreset, NatSpec, Router, Segment, Topology};
use std::net::Ipv4Addr;
use std::time::Duration;

fn ep(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn mapping(mapped: [&str; 4]) -> Vec<MappingSample> {
    let servers = [
        "203.0.113.1:3478",
        "203.0.113.1:3479",
        "203.0.113.2:3478",
        "203.0.113.2:3479",
    ];
    servers
        .iter()
        .zip(mapped)
        .map(|(s, m)| MappingSample {
            server: ep(s),
            mapped: ep(m),
        })
        .collect()
}

#[test]
fn mapping_classes() {
    let x = "198.51.100.10:5000";
    assert_eq!(classify_mapping(&mapping([x, x, x, x])), MappingClass::Eim);
    let y = "198.51.100.10:5001";
    assert_eq!(classify_mapping(&mapping([x, x, y, y])), MappingClass::Adm);
    let (z, w) = ("198.51.100.10:5002", "198.51.100.10:5003");
    assert_eq!(classify_mapping(&mapping([x, y, z, w])), MappingClass::Apdm);
    // A NAT that keeps the mapping per port but not per address is none of the three.
    assert_eq!(
        classify_mapping(&mapping([x, y, x, y])),
        MappingClass::Inconsistent
    );
    assert_eq!(
        classify_mapping(&mapping([x, x, x, y])),
        MappingClass::Inconsistent
    );
    assert_eq!(classify_mapping(&[]), MappingClass::Inconsistent);
}

fn filter(port: bool, addr: bool, both: bool) -> Vec<FilterSample> {
    [
        (Answer::OtherPort, port),
        (Answer::OtherAddress, addr),
        (Answer::OtherBoth, both),
    ]
    .into_iter()
    .map(|(answer, received)| FilterSample {
        answer,
        received,
        source: None,
    })
    .collect()
}

#[test]
fn filtering_classes() {
    assert_eq!(classify_filtering(&filter(true, true, true)), FilteringClass::Eif);
    assert_eq!(
        classify_filtering(&filter(true, false, false)),
        FilteringClass::Adf
    );
    assert_eq!(
        classify_filtering(&filter(false, false, false)),
        FilteringClass::Apdf
    );
    assert_eq!(
        classify_filtering(&filter(false, true, false)),
        FilteringClass::Inconsistent
    );
    assert_eq!(classify_filtering(&[]), FilteringClass::Inconsistent);
}

fn ports(pairs: &[(u16, u16)]) -> Vec<PortSample> {
    pairs
        .iter()
        .map(|&(local, mapped)| PortSample {
            local,
            mapped: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), mapped),
        })
        .collect()
}

#[test]
fn port_classes() {
    assert_eq!(
        classify_ports(&ports(&[(40001, 40001), (51234, 51234), (33333, 33333)])),
        (PortClass::Preserve, true)
    );
    assert_eq!(
        classify_ports(&ports(&[(40001, 1024), (51234, 1025), (33333, 1026)])),
        (PortClass::Sequential, false)
    );
    // Parity-preserving sequential allocation steps by two at times; wrapping is a step.
    assert_eq!(
        classify_ports(&ports(&[(41, 65533), (42, 65534), (44, 0), (45, 3)])),
        (PortClass::Sequential, true)
    );
    assert_eq!(
        classify_ports(&ports(&[(40001, 12001), (51234, 60003), (33333, 2003)])),
        (PortClass::Random, false)
    );
    // Two samples say nothing about a sequence.
    assert_eq!(
        classify_ports(&ports(&[(40001, 1024), (51234, 1025)])).0,
        PortClass::Random
    );
}

fn hp(received: bool, punch: bool) -> HairpinObservation {
    HairpinObservation {
        mapped: ep("198.51.100.10:5000"),
        peer_mapped: Some(ep("198.51.100.10:5001")),
        received,
        source: None,
        punch_received: punch,
    }
}

#[test]
fn hairpin_is_decided_only_when_the_hole_punch_can_work() {
    use FilteringClass as F;
    use MappingClass as M;
    let (no, yes) = (hp(false, false), hp(true, false));
    assert_eq!(classify_hairpin(&yes, &no, M::Apdm, F::Apdf), HairpinClass::Yes);
    assert_eq!(
        classify_hairpin(&no, &hp(false, true), M::Eim, F::Eif),
        HairpinClass::Yes
    );
    assert_eq!(classify_hairpin(&no, &no, M::Eim, F::Apdf), HairpinClass::No);
    assert_eq!(classify_hairpin(&no, &no, M::Apdm, F::Eif), HairpinClass::No);
    assert_eq!(
        classify_hairpin(&no, &no, M::Apdm, F::Apdf),
        HairpinClass::Unknown
    );
    assert_eq!(classify_hairpin(&no, &no, M::Adm, F::Adf), HairpinClass::Unknown);
}

fn trials(t: &[(u64, bool)]) -> Vec<LifetimeTrial> {
    t.iter()
        .map(|&(delay_ms, alive)| LifetimeTrial { delay_ms, alive })
        .collect()
}

#[test]
fn lifetime_brackets() {
    assert_eq!(
        lifetime_bracket(&trials(&[
            (1000, true),
            (2000, true),
            (3000, false),
            (4000, false)
        ])),
        (Some(2000), Some(3000), false)
    );
    assert_eq!(
        lifetime_bracket(&trials(&[(1000, true), (2000, true)])),
        (Some(2000), None, false)
    );
    assert_eq!(
        lifetime_bracket(&trials(&[(1000, false)])),
        (None, Some(1000), false)
    );
    // A lost answer at 2 s below an answered 2.5 s: the bracket uses the shortest miss.
    assert_eq!(
        lifetime_bracket(&trials(&[
            (1000, true),
            (2000, false),
            (2500, true),
            (3000, false)
        ])),
        (Some(1000), Some(2000), true)
    );
    let r = LifetimeResult::from_observation(&LifetimeObservation {
        max_ms: 8000,
        trials: trials(&[(2400, true), (2950, true), (3020, false), (3200, false)]),
    });
    assert_eq!((r.alive_s, r.expired_s), (Some(2.95), Some(3.02)));
    assert!((r.estimate_s.unwrap() - 2.985).abs() < 1e-9);
    assert_eq!(r.summary(), "2.99 s (2.95-3.02)");
    let all_alive = LifetimeResult::from_observation(&LifetimeObservation {
        max_ms: 8000,
        trials: trials(&[(4000, true), (8000, true)]),
    });
    assert_eq!(all_alive.summary(), "> 8 s");
}

#[test]
fn classic_names() {
    use FilteringClass as F;
    use MappingClass as M;
    assert_eq!(nat_type(M::Eim, F::Eif), Some("full-cone"));
    assert_eq!(nat_type(M::Eim, F::Adf), Some("restricted-cone"));
    assert_eq!(nat_type(M::Eim, F::Apdf), Some("port-restricted-cone"));
    assert_eq!(nat_type(M::Apdm, F::Apdf), Some("symmetric"));
    assert_eq!(nat_type(M::Adm, F::Apdf), Some("symmetric"));
    assert_eq!(nat_type(M::Apdm, F::Eif), None);
    for p in NatPreset::ALL {
        let b = p.behaviour();
        assert_eq!(nat_type(b.mapping.into(), b.filtering.into()), Some(p.as_str()));
    }
}

#[test]
fn claims_of_linux_nats_are_the_kernels() {
    let c = claimed(&NatSpec::new("wan", NatKind::LinuxMasquerade));
    assert_eq!(
        (
            c.mapping,
            c.filtering,
            c.port_allocation,
            c.hairpinning,
            c.udp_timeout_s
        ),
        (
            MappingClass::Eim,
            FilteringClass::Apdf,
            PortClass::Preserve,
            false,
            None
        )
    );
    let c = claimed(
        &NatSpec::new("wan", NatKind::LinuxMasqueradeRandom).knobs(NatKnobs {
            udp_timeout: Some(Duration::from_secs(4)),
            ..NatKnobs::default()
        }),
    );
    assert_eq!(
        (c.mapping, c.port_allocation, c.udp_timeout_s),
        (MappingClass::Apdm, PortClass::Random, Some(4.0))
    );
    let c = claimed(&NatSpec::preset("wan", NatPreset::Symmetric));
    assert_eq!(c.kind, "symmetric");
    assert_eq!(c.udp_timeout_s, Some(300.0));
}

fn topology() -> Topology {
    Topology::builder("t")
        .segment(Segment::new("internet", "198.51.100.0/24".parse().unwrap()))
        .segment(Segment::new("lan", "10.0.1.0/29".parse().unwrap()))
        .host(Host::new("peer").interface(Interface::new("eth0", "lan", Ipv4Addr::new(10, 0, 1, 6))))
        .host(Host::new("probe-c1").interface(Interface::new(
            "eth0",
            "internet",
            Ipv4Addr::new(198, 51, 100, 254),
        )))
        .router(
            Router::new("nat")
                .interface(Interface::new("lan", "lan", Ipv4Addr::new(10, 0, 1, 1)))
                .interface(Interface::new("wan", "internet", Ipv4Addr::new(198, 51, 100, 10)))
                .nat(NatSpec::preset("wan", NatPreset::FullCone).knobs(NatKnobs {
                    external_addresses: Some(vec![Ipv4Addr::new(198, 51, 100, 253)]),
                    ..NatKnobs::default()
                })),
        )
        .build()
        .unwrap()
}

#[test]
fn plan_adds_hosts_at_free_addresses_with_free_names() {
    let p = plan(&topology(), "nat").unwrap();
    // .6 is taken and .7 is the /29's broadcast address.
    assert_eq!(
        p.client_addrs,
        [Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 4)]
    );
    // .255 is broadcast, .254 taken by a host, .253 by the NAT's pool.
    assert_eq!(
        p.server_addrs,
        [Ipv4Addr::new(198, 51, 100, 252), Ipv4Addr::new(198, 51, 100, 251)]
    );
    assert_eq!(p.clients, ["probe-c1-1".to_string(), "probe-c2".to_string()]);
    let c1 = p.topology.node("probe-c1-1").unwrap();
    assert_eq!(c1.interfaces()[0].gateway, Some(Ipv4Addr::new(10, 0, 1, 1)));
    assert_eq!(p.topology.hosts.len(), 2 + 4);
    p.topology.validate().unwrap();
}

#[test]
fn plan_refuses_what_it_cannot_probe() {
    let t = topology();
    assert!(matches!(plan(&t, "peer"), Err(ProbeError::Plan(m)) if m.contains("host")));
    assert!(matches!(plan(&t, "nope"), Err(ProbeError::Plan(m)) if m.contains("its NATs: nat")));
    let mut small = t.clone();
    small.segments[1].subnet = "10.0.1.0/30".parse().unwrap();
    small.hosts[0].interfaces[0].address = Ipv4Addr::new(10, 0, 1, 2);
    small.validate().unwrap();
    assert!(matches!(plan(&small, "nat"), Err(ProbeError::Plan(m)) if m.contains("free addresses")));
}

#[test]
fn reports_flag_what_contradicts_the_topology() {
    let spec = NatSpec::preset("wan", NatPreset::PortRestrictedCone).knobs(NatKnobs {
        udp_timeout: Some(Duration::from_secs(4)),
        ..NatKnobs::default()
    });
    let x = "198.51.100.10:5000";
    let mut r = ProbeReport {
        topology: "t".into(),
        nat: "nat".into(),
        run_id: "r".into(),
        clients: [Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 4)],
        servers: [Ipv4Addr::new(198, 51, 100, 252), Ipv4Addr::new(198, 51, 100, 251)],
        ports: [3478, 3479],
        claimed: claimed(&spec),
        mapping: MappingResult {
            behaviour: MappingClass::Eim,
            local_port: 5000,
            samples: mapping([x, x, x, x]),
        },
        filtering: FilteringResult {
            behaviour: FilteringClass::Apdf,
            samples: filter(false, false, false),
        },
        port_allocation: PortResult {
            allocation: PortClass::Preserve,
            parity_preserved: true,
            samples: ports(&[(5000, 5000)]),
        },
        hairpinning: HairpinResult {
            behaviour: HairpinClass::No,
            source: None,
            external_source: None,
        },
        lifetime: Some(LifetimeResult::from_observation(&LifetimeObservation {
            max_ms: 8000,
            trials: trials(&[(3900, true), (4000, false)]),
        })),
        nat_type: None,
        mismatches: Vec::new(),
    };
    r.conclude();
    assert_eq!(r.mismatches, Vec::<String>::new());
    assert_eq!(r.nat_type.as_deref(), Some("port-restricted-cone"));
    let text = r.to_string();
    assert!(text.contains("agrees with the topology"), "{text}");

    r.filtering.behaviour = FilteringClass::Eif;
    r.hairpinning.behaviour = HairpinClass::Yes;
    r.lifetime = Some(LifetimeResult::from_observation(&LifetimeObservation {
        max_ms: 8000,
        trials: trials(&[(2000, true), (2100, false)]),
    }));
    r.conclude();
    assert_eq!(r.mismatches.len(), 3, "{:?}", r.mismatches);
    assert_eq!(r.nat_type.as_deref(), Some("full-cone"));
    assert!(r.to_string().contains("contradicts"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["filtering"]["behaviour"], "eif");
    assert_eq!(json["hairpinning"]["behaviour"], "yes");
    assert_eq!(json["claimed"]["kind"], "port-restricted-cone");
}

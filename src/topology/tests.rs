//! Tests of the topology model: the shipped files, every error class with its exact position
//! and message, builder/TOML equality, round trips, and no-panic properties of the parser.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn topologies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies")
}

/// Every shipped topology: name and path.
fn shipped() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(topologies_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Topology {
    Topology::from_file(topologies_dir().join(format!("{name}.toml"))).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// The error message for `text` read as `t.toml`.
fn error(text: &str) -> String {
    match Topology::from_str(text, "t.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn error_kinds(text: &str) -> Vec<ErrorKind> {
    match Topology::from_str(text, "t.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.diagnostics().iter().map(|d| d.kind).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Shipped topologies
// ---------------------------------------------------------------------------------------------

#[test]
fn every_shipped_topology_parses_validates_and_round_trips() {
    let files = shipped();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "no-nat",
        "two-nats",
        "same-nat",
        "double-nat",
        "mesh-50",
        "one-hop",
    ] {
        assert!(names.contains(&wanted), "topologies/{wanted}.toml is missing");
    }
    for (name, path) in files {
        let topology = Topology::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            topology.name,
            name,
            "{}: `name` should match the file name",
            path.display()
        );
        topology.validate().unwrap();
        let text = topology.to_toml();
        let again = Topology::from_str(&text, "round-trip").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, topology, "{name} does not round-trip through to_toml");
        assert_eq!(again.to_toml(), text, "{name}: to_toml is not stable");
    }
}

#[test]
fn every_shipped_topology_has_the_6bed4_router_at_its_public_address() {
    for (name, path) in shipped() {
        let topology = Topology::from_file(&path).unwrap();
        let routers: Vec<Node<'_>> = topology.nodes_with_role("6bed4-router").collect();
        assert_eq!(routers.len(), 1, "{name}: one 6bed4-router");
        let Node::Host(host) = routers[0] else {
            panic!("{name}: the 6bed4 router is a host")
        };
        // The first interface is the public one (a second may lead to a native network).
        assert_eq!(host.interfaces[0].address, ip("198.51.100.1"), "{name}");
        assert_eq!(host.interfaces[0].segment, "internet", "{name}");
        assert_eq!(
            topology.segment("internet").unwrap().subnet,
            net("198.51.100.0/24"),
            "{name}"
        );
    }
}

#[test]
fn shipped_topologies_have_the_promised_shapes() {
    let no_nat = load("no-nat");
    assert!(no_nat.routers.is_empty());
    assert_eq!(no_nat.nodes_with_role("server").count(), 1);
    assert_eq!(no_nat.gateway_of("peer-a", "eth0"), None, "on-link only");

    let two = load("two-nats");
    assert_eq!(two.gateway_of("peer-a", "eth0"), Some(ip("10.0.1.1")));
    assert_eq!(two.gateway_of("peer-b", "eth0"), Some(ip("10.0.2.1")));
    assert_eq!(
        two.gateway_of("router", "eth0"),
        None,
        "NAT outsides are not gateways"
    );
    for nat in ["nat-a", "nat-b"] {
        let Some(Node::Router(r)) = two.node(nat) else {
            panic!("{nat}")
        };
        let nat_spec = r.nat.as_ref().unwrap();
        assert_eq!(
            nat_spec.kind,
            NatKind::Userspace {
                preset: Some(NatPreset::PortRestrictedCone)
            }
        );
        let b = nat_spec.effective_knobs().unwrap();
        assert_eq!((b.mapping, b.filtering), (Mapping::Eim, Filtering::Apdf));
    }

    let same = load("same-nat");
    let Some(Node::Router(nat)) = same.node("nat") else {
        panic!()
    };
    assert!(!nat.nat.as_ref().unwrap().effective_knobs().unwrap().hairpinning);
    assert_eq!(
        same.segment_of("peer-a", "eth0"),
        same.segment_of("peer-b", "eth0")
    );

    let double = load("double-nat");
    let Some(Node::Router(cgn)) = double.node("cgn") else {
        panic!()
    };
    let b = cgn.nat.as_ref().unwrap().effective_knobs().unwrap();
    assert_eq!((b.mapping, b.filtering), (Mapping::Apdm, Filtering::Apdf));
    assert_eq!(
        double.segment_of("nat-a", "wan").unwrap().subnet,
        net("100.64.0.0/24")
    );
    let Some(Node::Router(home)) = double.node("nat-a") else {
        panic!()
    };
    assert_eq!(
        home.routes,
        vec![Route {
            prefix: net("0.0.0.0/0"),
            via: ip("100.64.0.1")
        }]
    );

    let mesh = load("mesh-50");
    assert_eq!(mesh.nodes_with_role("peer").count(), 50);
    assert_eq!(mesh.routers.iter().filter(|r| r.nat.is_some()).count(), 10);
    let kinds: std::collections::HashSet<NatKind> = mesh
        .routers
        .iter()
        .filter_map(|r| r.nat.as_ref().map(|n| n.kind))
        .collect();
    assert_eq!(kinds.len(), 4, "all four presets");

    let one = load("one-hop");
    assert_eq!(
        (one.hosts.len(), one.routers.len(), one.segments.len()),
        (2, 0, 1)
    );
    assert!(one
        .interfaces()
        .all(|i| i.interface.egress.is_none() && i.interface.ingress.is_none()));
}

#[test]
fn the_readme_example_is_a_valid_topology() {
    let readme = std::fs::read_to_string(topologies_dir().join("README.md")).unwrap();
    let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let t = Topology::from_str(&readme[start..end], "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.gateway_of("peer-a", "eth0"), Some(ip("10.0.1.1")));
    assert_eq!(t.gateway_of("router", "eth0"), None);
    let b = t.routers[0].nat.as_ref().unwrap().effective_knobs().unwrap();
    assert_eq!(
        (b.udp_timeout, b.hairpinning, b.filtering),
        (Duration::from_secs(120), true, Filtering::Apdf)
    );
    let egress = &t.hosts[0].interfaces[0].egress;
    assert_eq!((egress.loss_burst, egress.rate_bps), (3.0, Some(10_000_000)));
    assert_eq!(Topology::from_str(&t.to_toml(), "again").unwrap(), t);
}

/// The committed `mesh-50.toml` is this generator's output;
/// `BEDLAB_WRITE_TOPOLOGIES=1 cargo test -p bedlab mesh_50` rewrites it.
#[test]
fn mesh_50_is_generated() {
    let text = format!("{MESH_HEADER}{}", mesh_50().to_toml());
    let path = topologies_dir().join("mesh-50.toml");
    if std::env::var_os("BEDLAB_WRITE_TOPOLOGIES").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        committed, text,
        "topologies/mesh-50.toml is stale; regenerate it (see this test's doc)"
    );
}

const MESH_HEADER: &str = "\
# Generated by `mesh_50` in src/topology/tests.rs; edit the generator, not this file, and
# regenerate with `BEDLAB_WRITE_TOPOLOGIES=1 cargo test -p bedlab mesh_50`.
#
# The 6bed4 router and 50 peers: 10 home NATs (nat-01..nat-10, cycling through the four
# presets; nat-05 and nat-10 hairpin), 5 peers behind each (peer-01..peer-50), access links
# of 1..10 ms each way.
";

fn mesh_50() -> Topology {
    let mut b = Topology::builder("mesh-50")
        .description("the 6bed4 router and 50 peers behind 10 NATs of varied presets")
        .seed(50)
        .segment(Segment::new("internet", net("198.51.100.0/24")).description("the public internet core"))
        .host(Host::new("router").role("6bed4-router").interface(Interface::new(
            "eth0",
            "internet",
            ip("198.51.100.1"),
        )));
    for n in 1..=10u8 {
        b = b.segment(Segment::new(
            format!("lan-{n:02}"),
            Ipv4Net::new(Ipv4Addr::new(10, 0, n, 0), 24).unwrap(),
        ));
    }
    for n in 1..=10u8 {
        for k in 1..=5u8 {
            let p = (n - 1) * 5 + k;
            b = b.host(
                Host::new(format!("peer-{p:02}"))
                    .role("peer")
                    .interface(Interface::new(
                        "eth0",
                        format!("lan-{n:02}"),
                        Ipv4Addr::new(10, 0, n, 1 + k),
                    )),
            );
        }
    }
    for n in 1..=10u8 {
        let access = Impairment::delay(Duration::from_millis(u64::from(n)));
        let preset = NatPreset::ALL[usize::from(n - 1) % NatPreset::ALL.len()];
        let knobs = NatKnobs {
            hairpinning: (n % 5 == 0).then_some(true),
            ..NatKnobs::default()
        };
        b = b.router(
            Router::new(format!("nat-{n:02}"))
                .role("nat")
                .interface(Interface::new(
                    "lan",
                    format!("lan-{n:02}"),
                    Ipv4Addr::new(10, 0, n, 1),
                ))
                .interface(
                    Interface::new("wan", "internet", Ipv4Addr::new(198, 51, 100, 10 + n))
                        .egress(access.clone())
                        .ingress(access),
                )
                .nat(NatSpec::preset("wan", preset).knobs(knobs)),
        );
    }
    b.build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Builder and model helpers
// ---------------------------------------------------------------------------------------------

fn two_nats_built() -> Result<Topology, TopologyError> {
    let access = Impairment::delay(Duration::from_millis(5));
    let nat = |name: &str, lan: &str, lan_addr: &str, wan_addr: &str| {
        Router::new(name)
            .role("nat")
            .interface(Interface::new("lan", lan, ip(lan_addr)))
            .interface(
                Interface::new("wan", "internet", ip(wan_addr))
                    .egress(access.clone())
                    .ingress(access.clone()),
            )
            .nat(NatSpec::preset("wan", NatPreset::PortRestrictedCone))
    };
    Topology::builder("two-nats")
        .description("two peers, each behind its own port-restricted NAT")
        .seed(1)
        .segment(
            Segment::new("internet", net("198.51.100.0/24"))
                .description("the public internet core (TEST-NET-2, RFC 5737)"),
        )
        .segment(Segment::new("lan-a", net("10.0.1.0/24")).description("peer-a's home network"))
        .segment(Segment::new("lan-b", net("10.0.2.0/24")).description("peer-b's home network"))
        .host(Host::new("router").role("6bed4-router").interface(Interface::new(
            "eth0",
            "internet",
            ip("198.51.100.1"),
        )))
        .host(
            Host::new("peer-a")
                .role("peer")
                .interface(Interface::new("eth0", "lan-a", ip("10.0.1.2"))),
        )
        .host(
            Host::new("peer-b")
                .role("peer")
                .interface(Interface::new("eth0", "lan-b", ip("10.0.2.2"))),
        )
        .router(nat("nat-a", "lan-a", "10.0.1.1", "198.51.100.10"))
        .router(nat("nat-b", "lan-b", "10.0.2.1", "198.51.100.20"))
        .build()
}

#[test]
fn builder_and_toml_give_equal_models() {
    assert_eq!(two_nats_built().unwrap(), load("two-nats"));
}

#[test]
fn builder_reports_errors_by_model_path() {
    let err = Topology::builder("bad")
        .segment(Segment::new("lan", net("10.0.1.0/24")))
        .host(
            Host::new("a").interface(Interface::new("eth0", "lan", ip("10.0.2.5")).egress(Impairment {
                loss: 1.5,
                ..Impairment::default()
            })),
        )
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "<topology>: host[0].interface[0].egress.loss: expected a probability in 0..=1, found 1.5\n\
         <topology>: host[0].interface[0].address: expected an address inside segment `lan` (10.0.1.0/24), \
         found 10.0.2.5"
    );
    assert_eq!(err.diagnostics()[0].kind, ErrorKind::BadImpairment);
    assert_eq!(
        err.diagnostics()[1].path.as_deref(),
        Some("host[0].interface[0].address")
    );
}

#[test]
fn helpers_find_nodes_links_segments_and_owners() {
    let t = load("two-nats");
    assert_eq!(t.node("nat-a").map(|n| n.name()), Some("nat-a"));
    assert!(t.node("nobody").is_none());
    let links: Vec<String> = t.links().map(|l| l.to_string()).collect();
    assert_eq!(
        links,
        [
            "router/eth0",
            "peer-a/eth0",
            "peer-b/eth0",
            "nat-a/lan",
            "nat-a/wan",
            "nat-b/lan",
            "nat-b/wan"
        ]
    );
    let link: LinkName = "nat-a/wan".parse().unwrap();
    assert_eq!(t.link(&link).unwrap().interface.address, ip("198.51.100.10"));
    assert!("nat-a".parse::<LinkName>().is_err());
    assert_eq!(t.segment_of("nat-a", "wan").unwrap().name, "internet");
    assert_eq!(t.attached_to("internet").count(), 3);
    assert_eq!(
        t.owner_of(ip("10.0.2.2")).unwrap().link().to_string(),
        "peer-b/eth0"
    );
    assert!(t.owner_of(ip("10.0.9.9")).is_none());
    assert!(t.node("peer-a").unwrap().is_namespace());
    assert!(!t.node("nat-a").unwrap().is_namespace());
    let Some(Node::Router(r)) = t.node("nat-a") else {
        panic!()
    };
    assert_eq!(r.external_addresses(), vec![ip("198.51.100.10")]);
    assert_eq!(t.interfaces().count(), 7);
}

#[test]
fn nat_pools_are_owned_by_the_outside_interface() {
    let text = r#"
name = "pool"
[[segment]]
name = "internet"
subnet = "198.51.100.0/24"
[[segment]]
name = "lan"
subnet = "10.0.1.0/24"
[[host]]
name = "h"
[[host.interface]]
name = "eth0"
segment = "lan"
address = "10.0.1.2"
[[router]]
name = "nat"
[[router.interface]]
name = "lan"
segment = "lan"
address = "10.0.1.1"
[[router.interface]]
name = "wan"
segment = "internet"
address = "198.51.100.10"
[router.nat]
outside = "wan"
type = "linux-masquerade"
udp_timeout = "30s"
"#;
    let t = Topology::from_str(text, "t.toml").unwrap();
    assert!(
        t.node("nat").unwrap().is_namespace(),
        "a Linux NAT is a namespace"
    );
    assert_eq!(t.routers[0].nat.as_ref().unwrap().effective_knobs(), None);
    let pooled = text.replace(
        "type = \"linux-masquerade\"",
        "external_addresses = [\"198.51.100.11\", \"198.51.100.12\"]",
    );
    let t = Topology::from_str(&pooled, "t.toml").unwrap();
    assert_eq!(
        t.owner_of(ip("198.51.100.12")).unwrap().link().to_string(),
        "nat/wan"
    );
    assert_eq!(
        t.routers[0].external_addresses(),
        vec![ip("198.51.100.11"), ip("198.51.100.12")]
    );
    assert_eq!(t.to_toml().matches("external_addresses").count(), 1);
}

#[test]
fn presets_expand_and_knobs_override_them() {
    let spec = NatSpec::preset("wan", NatPreset::FullCone).knobs(NatKnobs {
        filtering: Some(Filtering::Adf),
        udp_timeout: Some(Duration::from_secs(30)),
        ..NatKnobs::default()
    });
    let b = spec.effective_knobs().unwrap();
    assert_eq!(b.mapping, Mapping::Eim, "from the preset");
    assert_eq!(b.filtering, Filtering::Adf, "overridden");
    assert_eq!(b.udp_timeout, Duration::from_secs(30));
    assert_eq!(b.port_allocation, PortAllocation::Preserve);
    let table = [
        (NatPreset::FullCone, Mapping::Eim, Filtering::Eif),
        (NatPreset::RestrictedCone, Mapping::Eim, Filtering::Adf),
        (NatPreset::PortRestrictedCone, Mapping::Eim, Filtering::Apdf),
        (NatPreset::Symmetric, Mapping::Apdm, Filtering::Apdf),
    ];
    for (preset, mapping, filtering) in table {
        let b = preset.behaviour();
        assert_eq!((b.mapping, b.filtering), (mapping, filtering), "{preset}");
    }
    let plain = NatSpec::new("wan", NatKind::Userspace { preset: None });
    assert_eq!(plain.effective_knobs(), Some(NatBehaviour::default()));
}

#[test]
fn nat_knobs_in_toml() {
    let text = r#"
name = "knobs"
[[segment]]
name = "internet"
subnet = "198.51.100.0/24"
[[segment]]
name = "lan"
subnet = "10.0.1.0/24"
[[router]]
name = "nat"
[[router.interface]]
name = "lan"
segment = "lan"
address = "10.0.1.1"
[[router.interface]]
name = "wan"
segment = "internet"
address = "198.51.100.10"
mtu = 1400
[router.interface.egress]
delay = "20ms"
jitter = "30ms"
loss = 0.01
loss_burst = 3
duplicate = 0.001
reorder = 0.05
reorder_gap = "2ms"
rate = "10mbit"
queue_limit = 64
[router.nat]
outside = "wan"
type = "symmetric"
mapping = "adm"
filtering = "eif"
port_allocation = "sequential"
port_parity = true
pairing = false
hairpinning = true
udp_timeout = "1.5m"
tcp_established_timeout = "2h"
tcp_transitory_timeout = "4m"
refresh = "both"
port_range = "20000-29999"
icmp = "drop"
"#;
    let t = Topology::from_str(text, "t.toml").unwrap();
    let wan = &t.routers[0].interfaces[1];
    assert_eq!(wan.mtu, 1400);
    let e = &wan.egress;
    assert_eq!(
        (e.delay, e.jitter),
        (Duration::from_millis(20), Duration::from_millis(30))
    );
    assert_eq!(
        (e.loss, e.loss_burst, e.duplicate, e.reorder),
        (0.01, 3.0, 0.001, 0.05)
    );
    assert_eq!(
        (e.reorder_gap, e.rate_bps, e.queue_limit),
        (Some(Duration::from_millis(2)), Some(10_000_000), 64)
    );
    let b = t.routers[0].nat.as_ref().unwrap().effective_knobs().unwrap();
    assert_eq!(
        b,
        NatBehaviour {
            mapping: Mapping::Adm,
            filtering: Filtering::Eif,
            port_allocation: PortAllocation::Sequential,
            port_parity: true,
            external_addresses: vec![],
            pairing: false,
            hairpinning: true,
            udp_timeout: Duration::from_secs(90),
            tcp_established_timeout: Duration::from_secs(7200),
            tcp_transitory_timeout: Duration::from_secs(240),
            refresh: Refresh::Both,
            port_range: PortRange::new(20000, 29999).unwrap(),
            icmp: IcmpPolicy::Drop,
        }
    );
    assert_eq!(Topology::from_str(&t.to_toml(), "again").unwrap(), t);
}

// ---------------------------------------------------------------------------------------------
// Errors: one test per class, exact position and message
// ---------------------------------------------------------------------------------------------

/// A valid topology; the error tests change one line of it. Line numbers:
///  1 name, 3 [[segment]] 4 name 5 subnet, 6 [[segment]] 7 name 8 subnet,
/// 10 [[host]] 11 name, 12 [[host.interface]] 13 name 14 segment 15 address,
/// 16 [host.interface.egress] 17 delay, 19 [[router]] 20 name,
/// 21 [[router.interface]] 22 name 23 segment 24 address,
/// 25 [[router.interface]] 26 name 27 segment 28 address.
const BASE: &str = r#"name = "t"

[[segment]]
name = "lan"
subnet = "10.0.1.0/24"
[[segment]]
name = "wan"
subnet = "192.0.2.0/24"

[[host]]
name = "a"
[[host.interface]]
name = "eth0"
segment = "lan"
address = "10.0.1.2"
[host.interface.egress]
delay = "5ms"

[[router]]
name = "r"
[[router.interface]]
name = "lan"
segment = "lan"
address = "10.0.1.1"
[[router.interface]]
name = "up"
segment = "wan"
address = "192.0.2.1"
"#;

/// BASE with line `line` (1-based) replaced by `with`.
fn base_with(line: usize, with: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    lines[line - 1] = with;
    lines.join("\n") + "\n"
}

#[test]
fn base_is_valid() {
    let t = Topology::from_str(BASE, "t.toml").unwrap();
    assert_eq!(
        t.gateway_of("a", "eth0"),
        Some(ip("10.0.1.1")),
        "derived: the only router on `lan`"
    );
    assert_eq!(
        t.gateway_of("r", "lan"),
        None,
        "routers have routes, not gateways"
    );
}

#[test]
fn error_unknown_key() {
    // The brief's example: `dealy` on line 7, column 1.
    let text = "name = \"x\"\n[[host]]\nname = \"a\"\n[[host.interface]]\nname = \"eth0\"\n\
                [host.interface.egress]\ndealy = \"5ms\"\n";
    assert_eq!(
        error(text),
        "t.toml:7:1: expected one of the known keys `delay`, `jitter`, `loss`, `loss_burst`, `duplicate`, \
         `reorder`, `reorder_gap`, `rate`, `queue_limit`, found `dealy` (did you mean `delay`?)"
    );
    assert_eq!(error_kinds(text), [ErrorKind::UnknownKey]);
    assert_eq!(
        error(&base_with(2, "sed = 3")),
        "t.toml:2:1: expected one of the known keys `name`, `description`, `seed`, `segment`, `host`, \
         `router`, found `sed` (did you mean `seed`?)"
    );
}

#[test]
fn error_wrong_type() {
    assert_eq!(
        error(&base_with(17, "delay = 5")),
        "t.toml:17:9: expected a duration such as \"20ms\", \"1.5s\" or \"2m\" (units ns, us, ms, s, m, h), \
         found integer `5`"
    );
    assert_eq!(
        error(&base_with(10, "[host]")),
        "t.toml:10:1: expected an array (`[[...]]` tables or `[...]`), found a table"
    );
    assert_eq!(error_kinds(&base_with(20, "name = 3")), [ErrorKind::WrongType]);
    assert_eq!(
        error(&format!("{BASE}[router.nat]\noutside = \"up\"\ntype = 3\n")),
        "t.toml:31:8: expected a string, found `3`"
    );
    assert_eq!(
        error(&base_with(2, "seed = 99999999999999999999")),
        "t.toml:2:8: expected an integer in the signed 64-bit range of TOML, found `99999999999999999999`"
    );
}

#[test]
fn error_bad_value_text() {
    assert_eq!(
        error(&base_with(17, "delay = \"5 ms\"")),
        "t.toml:17:9: expected a duration such as \"20ms\", \"1.5s\" or \"2m\" (units ns, us, ms, s, m, h), \
         found \"5 ms\""
    );
    assert_eq!(
        error(&base_with(17, "delay = \"-5ms\"")),
        "t.toml:17:9: expected a duration that is not negative, found \"-5ms\""
    );
    assert_eq!(
        error(&base_with(5, "subnet = \"10.0.1.1/24\"")),
        "t.toml:5:10: expected a network address with the host bits zero (10.0.1.0/24), found 10.0.1.1/24"
    );
    assert_eq!(
        error(&base_with(15, "address = \"10.0.1\"")),
        "t.toml:15:11: expected an IPv4 address such as \"198.51.100.1\", found \"10.0.1\""
    );
    assert_eq!(
        error(&base_with(17, "rate = \"10mbps\"")),
        "t.toml:17:8: expected a rate such as \"512kbit\", \"10mbit\" or \"1gbit\" (units bit, kbit, mbit, gbit, \
         tbit), found \"10mbps\""
    );
    assert_eq!(
        error(&base_with(2, "seed = -1")),
        "t.toml:2:8: expected an integer in 0..=18446744073709551615, found integer `-1`"
    );
}

#[test]
fn error_missing_key() {
    assert_eq!(
        error(&base_with(15, "")),
        "t.toml:12:1: expected the key `address`, found a table without it"
    );
}

#[test]
fn error_syntax() {
    assert_eq!(
        error(&base_with(10, "[[host]")),
        "t.toml:10:7: expected `.`, `]]` (invalid table header), found `]`"
    );
    assert_eq!(
        error(&base_with(11, "name = \"a")),
        "t.toml:11:10: expected valid TOML (invalid basic string), found end of line"
    );
    assert_eq!(error_kinds(&base_with(11, "name = ")), [ErrorKind::Syntax]);
    assert_eq!(error_kinds("\u{0}"), [ErrorKind::Syntax]);
}

#[test]
fn error_duplicate_key() {
    assert_eq!(
        error(&base_with(2, "name = \"u\"")),
        "t.toml:2:1: expected `name` at most once in its table, found `name` again"
    );
    assert_eq!(
        error_kinds(&base_with(2, "name = \"u\"")),
        [ErrorKind::DuplicateKey]
    );
}

#[test]
fn error_dangling_segment_reference() {
    assert_eq!(
        error(&base_with(14, "segment = \"lam\"")),
        "t.toml:14:11: expected the name of a declared segment (`lan`, `wan`), found `lam` (did you mean `lan`?)"
    );
    assert_eq!(
        error_kinds(&base_with(14, "segment = \"lam\"")),
        [ErrorKind::DanglingReference]
    );
}

#[test]
fn error_overlapping_subnets() {
    let text = BASE.replace(
        "[[host]]",
        "[[segment]]\nname = \"big\"\nsubnet = \"10.0.0.0/16\"\n\n[[host]]",
    );
    assert_eq!(
        error(&text),
        "t.toml:12:10: expected a subnet that overlaps no other segment's, found 10.0.0.0/16, which overlaps \
         segment `lan` (10.0.1.0/24) (first at 5:10)"
    );
    assert_eq!(
        error(&base_with(8, "subnet = \"127.0.0.0/24\"")),
        "t.toml:8:10: expected a unicast subnet (clear of 0.0.0.0/8, 127.0.0.0/8 and 224.0.0.0/3), found \
         127.0.0.0/24\n\
         t.toml:28:11: expected an address inside segment `wan` (127.0.0.0/24), found 192.0.2.1"
    );
}

#[test]
fn error_probability_out_of_range() {
    assert_eq!(
        error(&base_with(17, "loss = 1.5")),
        "t.toml:17:8: expected a probability in 0..=1, found 1.5"
    );
    assert_eq!(
        error(&base_with(17, "reorder = -0.1")),
        "t.toml:17:11: expected a probability in 0..=1, found -0.1"
    );
    assert_eq!(
        error(&base_with(17, "duplicate = nan")),
        "t.toml:17:13: expected a probability in 0..=1, found NaN"
    );
    assert_eq!(
        error_kinds(&base_with(17, "loss = 1.5")),
        [ErrorKind::BadImpairment]
    );
}

#[test]
fn error_impossible_impairments() {
    assert_eq!(
        error(&base_with(17, "loss_burst = 0.5")),
        "t.toml:17:14: expected a mean loss burst length of at least 1 packet (1 = independent losses), \
         found 0.5"
    );
    assert_eq!(
        error(&base_with(17, "rate = \"0kbit\"")),
        "t.toml:17:8: expected a rate above 0 (leave `rate` out for an unlimited link), found 0bit"
    );
    assert_eq!(
        error(&base_with(17, "queue_limit = 0")),
        "t.toml:17:15: expected a queue limit of at least 1 packet, found 0"
    );
    assert_eq!(
        error_kinds(&base_with(17, "jitter = \"-1ms\"")),
        [ErrorKind::BadValue]
    );
    // Jitter above the delay is fine.
    Topology::from_str(&base_with(17, "jitter = \"50ms\""), "t.toml").unwrap();
}

#[test]
fn error_mtu() {
    assert_eq!(
        error(&base_with(16, "mtu = 100\n[host.interface.egress]")),
        "t.toml:16:7: expected an MTU in 576..=65535, found 100"
    );
    assert_eq!(
        error(&base_with(16, "mtu = 65536\n[host.interface.egress]")),
        "t.toml:16:7: expected an MTU in 576..=65535, found 65536"
    );
}

#[test]
fn error_duplicate_node_names() {
    assert_eq!(
        error(&base_with(20, "name = \"a\"")),
        "t.toml:20:8: expected a node name no other host or router has, found `a` again (first at 11:8)"
    );
}

#[test]
fn error_duplicate_interface_names() {
    assert_eq!(
        error(&base_with(26, "name = \"lan\"")),
        "t.toml:26:8: expected an interface name no other interface of `r` has, found `lan` again \
         (first at 22:8)"
    );
}

#[test]
fn error_bad_names() {
    assert_eq!(
        error(&base_with(13, "name = \"averyverylongname\"")),
        "t.toml:13:8: expected an interface name of 1 to 15 characters from `a-z`, `0-9` and `-`, not \
         starting with `-`, found \"averyverylongname\""
    );
    assert_eq!(
        error_kinds(&base_with(11, "name = \"Peer\"")),
        [ErrorKind::BadName]
    );
    assert_eq!(error_kinds(&base_with(13, "name = \"lo\"")), [ErrorKind::BadName]);
}

#[test]
fn error_address_outside_subnet_and_reserved() {
    assert_eq!(
        error(&base_with(15, "address = \"10.0.2.2\"")),
        "t.toml:15:11: expected an address inside segment `lan` (10.0.1.0/24), found 10.0.2.2"
    );
    assert_eq!(
        error(&base_with(15, "address = \"10.0.1.255\"")),
        "t.toml:15:11: expected a host address of 10.0.1.0/24 (not its network or broadcast address), \
         found 10.0.1.255, its broadcast address"
    );
}

#[test]
fn error_duplicate_address() {
    assert_eq!(
        error(&base_with(24, "address = \"10.0.1.2\"")),
        "t.toml:24:11: expected an address no other interface on segment `lan` has, found 10.0.1.2 again \
         (owned by a/eth0) (first at 15:11)"
    );
}

const DUAL: &str = r#"name = "dual"
[[segment]]
name = "native"
subnet = "192.0.2.0/24"
subnet6 = "2001:db8:6::/64"
[[host]]
name = "gw"
[[host.interface]]
name = "eth1"
segment = "native"
address = "192.0.2.1"
address6 = "2001:db8:6::1"
[[host]]
name = "srv"
[[host.interface]]
name = "eth0"
segment = "native"
address = "192.0.2.2"
address6 = "2001:db8:6::2"
gateway6 = "2001:db8:6::1"
"#;

#[test]
fn native_ipv6_parses_builds_and_round_trips() {
    let t = Topology::from_str(DUAL, "t.toml").unwrap();
    let six: Ipv6Net = "2001:db8:6::/64".parse().unwrap();
    assert_eq!(t.segment("native").unwrap().subnet6, Some(six));
    let srv = t.interface("srv", "eth0").unwrap().interface;
    assert_eq!(srv.address6, Some("2001:db8:6::2".parse().unwrap()));
    assert_eq!(srv.gateway6, Some("2001:db8:6::1".parse().unwrap()));
    assert_eq!(Topology::from_str(&t.to_toml(), "again").unwrap(), t);
    let built = Topology::builder("dual")
        .segment(Segment::new("native", net("192.0.2.0/24")).subnet6(six))
        .host(Host::new("gw").interface(
            Interface::new("eth1", "native", ip("192.0.2.1")).address6("2001:db8:6::1".parse().unwrap()),
        ))
        .host(
            Host::new("srv").interface(
                Interface::new("eth0", "native", ip("192.0.2.2"))
                    .address6("2001:db8:6::2".parse().unwrap())
                    .gateway6("2001:db8:6::1".parse().unwrap()),
            ),
        )
        .build()
        .unwrap();
    assert_eq!(built, t);
    let native = load("native-v6");
    assert_eq!(
        native.interface("server", "eth0").unwrap().interface.gateway6,
        Some("2001:db8:6::1".parse().unwrap())
    );
}

#[test]
fn error_native_ipv6() {
    let cases = [
        (
            DUAL.replace("2001:db8:6::2\"\ngateway6", "2001:db8:7::2\"\ngateway6"),
            "t.toml:19:12: expected a host address inside segment `native`'s 2001:db8:6::/64, found 2001:db8:7::2",
        ),
        (
            DUAL.replace("2001:db8:6::2\"\ngateway6", "2001:db8:6::1\"\ngateway6"),
            "t.toml:19:12: expected an IPv6 address no other interface on `native` has, found 2001:db8:6::1 again",
        ),
        (
            DUAL.replace("gateway6 = \"2001:db8:6::1\"", "gateway6 = \"2001:db8:6::9\""),
            "t.toml:20:12: expected the `address6` of another interface on segment `native`",
        ),
        (
            DUAL.replace("subnet6 = \"2001:db8:6::/64\"\n", ""),
            "t.toml:11:12: expected a segment with `subnet6` (`native` has none), found 2001:db8:6::1",
        ),
        (
            DUAL.replace("subnet6 = \"2001:db8:6::/64\"", "subnet6 = \"2001:db8:6::1/64\""),
            "t.toml:5:11: expected a network address with the host bits zero",
        ),
        (
            DUAL.replace("subnet6 = \"2001:db8:6::/64\"", "subnet6 = \"fe80::/64\""),
            "t.toml:5:11: expected a unicast, non-link-local IPv6 subnet, found fe80::/64",
        ),
        (
            DUAL.replace("address6 = \"2001:db8:6::2\"", "address6 = \"2001:db8:6::zz\""),
            "t.toml:19:12: expected an IPv6 address such as",
        ),
    ];
    for (text, want) in cases {
        let got = error(&text);
        assert!(got.starts_with(want), "wanted {want}\n   got {got}");
    }
}

#[test]
fn error_gateway_not_on_segment() {
    assert_eq!(
        error(&base_with(16, "gateway = \"10.0.2.1\"\n[host.interface.egress]")),
        "t.toml:16:11: expected a gateway inside segment `lan` (10.0.1.0/24), found 10.0.2.1"
    );
    assert_eq!(
        error(&base_with(16, "gateway = \"10.0.1.9\"\n[host.interface.egress]")),
        "t.toml:16:11: expected the address of a router interface on segment `lan` (10.0.1.1 r/lan), found \
         10.0.1.9, which no router has"
    );
    assert_eq!(
        error(&base_with(16, "gateway = \"10.0.1.2\"\n[host.interface.egress]")),
        "t.toml:16:11: expected a gateway other than the interface's own address, found 10.0.1.2"
    );
    let explicit = base_with(16, "gateway = \"10.0.1.1\"\n[host.interface.egress]");
    assert_eq!(
        Topology::from_str(&explicit, "t.toml")
            .unwrap()
            .gateway_of("a", "eth0"),
        Some(ip("10.0.1.1"))
    );
    assert_eq!(
        error(&BASE.replace(
            "address = \"10.0.1.1\"",
            "address = \"10.0.1.1\"\ngateway = \"10.0.1.2\""
        )),
        "t.toml:25:11: expected no `gateway` on a router interface (give the router a `[[router.route]]`, \
         e.g. prefix \"0.0.0.0/0\"), found 10.0.1.2"
    );
}

#[test]
fn error_gateway_needed_when_ambiguous() {
    let two_routers_on_lan = base_with(27, "segment = \"lan\"").replace("192.0.2.1", "10.0.1.3");
    assert_eq!(
        error(&two_routers_on_lan),
        "t.toml:12:1: expected a `gateway` (segment `lan` has several routers: 10.0.1.1 r/lan, 10.0.1.3 r/up), \
         found none"
    );
    assert_eq!(error_kinds(&two_routers_on_lan), [ErrorKind::MissingGateway]);
    // With an explicit choice it is fine.
    let chosen = two_routers_on_lan.replace(
        "[host.interface.egress]",
        "gateway = \"10.0.1.3\"\n[host.interface.egress]",
    );
    Topology::from_str(&chosen, "t.toml").unwrap();
    // A NAT's outside interface is not a candidate, so no choice is needed.
    let with_nat = format!("{two_routers_on_lan}[router.nat]\noutside = \"up\"\n");
    let t = Topology::from_str(&with_nat, "t.toml").unwrap();
    assert_eq!(t.gateway_of("a", "eth0"), Some(ip("10.0.1.1")));
}

#[test]
fn error_route_via_not_connected() {
    let route = |via: &str| format!("{BASE}[[router.route]]\nprefix = \"0.0.0.0/0\"\nvia = \"{via}\"\n");
    assert_eq!(
        error(&route("10.9.9.9")),
        "t.toml:31:7: expected a next hop on a segment `r` is attached to (`lan` 10.0.1.0/24, `wan` \
         192.0.2.0/24), found 10.9.9.9"
    );
    assert_eq!(
        error(&route("192.0.2.9")),
        "t.toml:31:7: expected the address of an interface on segment `wan`, found 192.0.2.9, which no \
         interface has"
    );
    assert_eq!(
        error(&route("192.0.2.1")),
        "t.toml:31:7: expected a next hop other than the router's own address, found 192.0.2.1"
    );
    let twice = format!(
        "{}[[router.route]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.0.1.2\"\n",
        route("10.0.1.2")
    );
    assert_eq!(
        error(&twice),
        "t.toml:33:10: expected each prefix at most once in the routes of `r`, found 0.0.0.0/0 again \
         (first at 30:10)"
    );
    Topology::from_str(&route("10.0.1.2"), "t.toml").unwrap();
}

#[test]
fn linux_nat_firewall_knob_parses_round_trips_and_is_linux_only() {
    let nat = |rest: &str| format!("{BASE}[router.nat]\n{rest}");
    let t = Topology::from_str(
        &nat("outside = \"up\"\ntype = \"linux-masquerade\"\nfirewall = false\n"),
        "t",
    )
    .unwrap();
    let spec = t.routers[0].nat.as_ref().unwrap();
    assert_eq!(spec.knobs.firewall, Some(false));
    assert_eq!(spec.knobs.set_names(), ["firewall"]);
    assert_eq!(Topology::from_str(&t.to_toml(), "again").unwrap(), t);
    // Unset means on; the model keeps it unset so the file reads back as written.
    let t = Topology::from_str(&nat("outside = \"up\"\ntype = \"linux-masquerade\"\n"), "t").unwrap();
    assert_eq!(t.routers[0].nat.as_ref().unwrap().knobs.firewall, None);
    assert!(!t.to_toml().contains("firewall"));
    assert_eq!(
        error(&nat("outside = \"up\"\ntype = \"full-cone\"\nfirewall = true\n")),
        "t.toml:32:12: expected `firewall` only on a Linux NAT (a `full-cone` NAT's `filtering` decides what \
         comes in), found `firewall`"
    );
}

#[test]
fn error_nat_outside_unknown_and_linux_knobs() {
    let nat = |rest: &str| format!("{BASE}[router.nat]\n{rest}");
    assert_eq!(
        error(&nat("outside = \"pu\"\n")),
        "t.toml:30:11: expected the name of an interface of `r` (`lan`, `up`), found `pu` (did you mean `up`?)"
    );
    assert_eq!(
        error_kinds(&nat("outside = \"pu\"\n")),
        [ErrorKind::DanglingReference]
    );
    assert_eq!(
        error(&nat(
            "outside = \"up\"\ntype = \"linux-masquerade\"\nmapping = \"eim\"\n"
        )),
        "t.toml:32:11: expected only `udp_timeout` and `firewall` on a `linux-masquerade` NAT (the kernel \
         decides the rest), found `mapping`"
    );
    Topology::from_str(
        &nat("outside = \"up\"\ntype = \"linux-masquerade-random\"\nudp_timeout = \"30s\"\n"),
        "t",
    )
    .unwrap();
    assert_eq!(
        error(&nat("outside = \"up\"\ntype = \"full-cône\"\n")),
        "t.toml:31:8: expected one of `full-cone`, `restricted-cone`, `port-restricted-cone`, `symmetric`, \
         `userspace`, `linux-masquerade`, `linux-masquerade-random`, found `full-cône` (did you mean \
         `full-cone`?)"
    );
    assert_eq!(
        error(&nat("outside = \"up\"\nudp_timeout = \"0s\"\n")),
        "t.toml:31:15: expected a timeout above 0, found 0s"
    );
    assert_eq!(
        error(&nat(
            "outside = \"up\"\nexternal_addresses = [\"192.0.2.2\", \"10.0.1.2\"]\n"
        )),
        "t.toml:31:36: expected an address inside segment `wan` (192.0.2.0/24), found 10.0.1.2"
    );
    assert_eq!(
        error(&nat("outside = \"up\"\nport_range = \"9-8\"\n")),
        "t.toml:31:14: expected a port range such as \"1024-65535\" (first <= last, ports 1..=65535), found \
         \"9-8\""
    );
}

#[test]
fn all_semantic_errors_are_reported_sorted_by_position() {
    let text = base_with(17, "loss = 2").replace("192.0.2.1", "192.0.3.1");
    let text = text.replacen("segment = \"lan\"", "segment = \"nowhere\"", 1);
    let err = Topology::from_str(&text, "t.toml").unwrap_err();
    let lines: Vec<String> = err.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "t.toml:14:11: expected the name of a declared segment (`lan`, `wan`), found `nowhere`",
            "t.toml:17:8: expected a probability in 0..=1, found 2",
            "t.toml:28:11: expected an address inside segment `wan` (192.0.2.0/24), found 192.0.3.1",
        ]
    );
    assert_eq!(err.to_string(), lines.join("\n"));
}

#[test]
fn error_reading_a_file() {
    let err = Topology::from_file("/nonexistent/x.toml").unwrap_err();
    assert!(err
        .to_string()
        .starts_with("/nonexistent/x.toml: expected a readable topology file, found "));
}

// ---------------------------------------------------------------------------------------------
// Fuzzing and properties
// ---------------------------------------------------------------------------------------------

#[test]
fn fuzz_parse_accepts_the_shipped_files_and_garbage() {
    for (_, path) in shipped() {
        fuzz_parse(&std::fs::read(path).unwrap());
    }
    for input in [&b""[..], b"\xff\xfe", b"name = 1", b"[[host]]\n[[host]]", b"a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1"] {
        fuzz_parse(input);
    }
}

/// Snippets a mutation may insert: keys and values of the schema, and TOML punctuation.
const TOKENS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "[",
    "]",
    "[[",
    "]]",
    ".",
    ",",
    "{",
    "}",
    "#",
    " ",
    "name",
    "segment",
    "host",
    "router",
    "interface",
    "nat",
    "route",
    "egress",
    "ingress",
    "delay",
    "loss",
    "1.5",
    "-1",
    "0",
    "\"0s\"",
    "\"eth0\"",
    "\"10.0.1.1\"",
    "\"10.0.1.0/24\"",
    "gateway",
    "mtu",
    "outside",
    "type",
    "\"symmetric\"",
    "true",
    "nan",
    "inf",
    "9999999999999999999",
    "\u{e9}",
    "\u{0}",
    "\r\n",
    "'''",
    "\"\"\"",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Flip { at: usize, byte: u8 },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Insert { at, token } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, TOKENS[token].bytes());
            }
            Mutation::Flip { at, byte } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            Mutation::Duplicate { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                if at < end {
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(end..end, copy);
                }
            }
        }
    }
    bytes
}

proptest! {
    #[test]
    fn fuzz_random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz_parse(&data);
    }

    #[test]
    fn fuzz_mutated_topologies_never_panic(
        file in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let files = shipped();
        let (_, path) = &files[file % files.len()];
        let original = std::fs::read(path).unwrap();
        fuzz_parse(&mutate(original, &mutations));
    }

    #[test]
    fn mutated_base_errors_always_have_a_position(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let data = mutate(BASE.as_bytes().to_vec(), &mutations);
        let text = String::from_utf8_lossy(&data);
        if let Err(e) = Topology::from_str(&text, "t.toml") {
            for d in e.diagnostics() {
                let p = d.position.expect("file errors have positions");
                prop_assert!(p.line >= 1 && p.col >= 1 && p.offset <= text.len());
                let prefix = format!("t.toml:{}:{}: expected ", p.line, p.col);
                prop_assert!(d.to_string().starts_with(&prefix));
            }
        }
    }

    #[test]
    fn impairments_round_trip(
        delay in 0u64..10_000_000_000,
        loss in 0.0f64..=1.0,
        burst in 1.0f64..100.0,
        rate in proptest::option::of(1u64..u64::MAX),
        queue in 1u32..,
    ) {
        let imp = Impairment {
            delay: Duration::from_nanos(delay),
            loss,
            loss_burst: burst,
            rate_bps: rate,
            queue_limit: queue,
            ..Impairment::default()
        };
        let t = Topology::builder("p")
            .segment(Segment::new("s", net("10.0.0.0/24")))
            .host(Host::new("h").interface(Interface::new("eth0", "s", ip("10.0.0.1")).egress(imp)))
            .build()
            .unwrap();
        prop_assert_eq!(Topology::from_str(&t.to_toml(), "p").unwrap(), t);
    }
}

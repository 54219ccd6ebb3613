//! Linux NAT nodes: a namespace with the router's routes, nftables masquerade and a home
//! router's stateful firewall, conntrack timeouts per namespace, run-time controls through
//! `Lab::nat_control`, and why the firewall is there.
//!
//! Needs root (namespaces, TUN, nftables, conntrack); skipped with a message otherwise.

use bedlab::fabric::NodeControl;
use bedlab::lab::{Lab, LabOptions};
use bedlab::topology::{Host, Interface, NatKind, NatKnobs, NatSpec, Router, Segment, Topology};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !root() {
            eprintln!("skipped: needs root (namespaces, TUN, nftables)");
            return;
        }
    };
}

const S1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const S2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const NAT_WAN: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

/// `peer` behind the Linux NAT `nat`, whose outside is on a carrier network that reaches
/// the internet only through the plain router `core` (so the NAT needs its default route).
fn topology(name: &str, kind: NatKind, knobs: NatKnobs) -> Topology {
    Topology::builder(name)
        .segment(Segment::new("lan", "10.0.1.0/24".parse().unwrap()))
        .segment(Segment::new("carrier", "100.64.0.0/24".parse().unwrap()))
        .segment(Segment::new("internet", "198.51.100.0/24".parse().unwrap()))
        .host(Host::new("peer").interface(Interface::new("eth0", "lan", Ipv4Addr::new(10, 0, 1, 2))))
        .host(Host::new("s1").interface(Interface::new("eth0", "internet", S1)))
        .host(Host::new("s2").interface(Interface::new("eth0", "internet", S2)))
        .router(
            Router::new("nat")
                .interface(Interface::new("lan", "lan", Ipv4Addr::new(10, 0, 1, 1)))
                .interface(Interface::new("wan", "carrier", NAT_WAN))
                .route("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(100, 64, 0, 1))
                .nat(NatSpec::new("wan", kind).knobs(knobs)),
        )
        .router(
            Router::new("core")
                .interface(Interface::new("carrier", "carrier", Ipv4Addr::new(100, 64, 0, 1)))
                .interface(Interface::new(
                    "internet",
                    "internet",
                    Ipv4Addr::new(198, 51, 100, 254),
                )),
        )
        .build()
        .expect("a valid test topology")
}

fn build(t: Topology, dir: &std::path::Path) -> Lab {
    let options = LabOptions {
        out_dir: dir.join("out"),
        state_root: dir.join("state"),
        capture: false,
        run_id: None,
    };
    Lab::build(t, options).expect("building the lab")
}

fn run(lab: &Lab, node: &str, cmd: &str) -> (bool, String) {
    let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
    let out = lab.exec(node, &argv).expect("running a command in the lab");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ping(lab: &Lab) -> bool {
    run(lab, "peer", "ping -c 1 -W 1 198.51.100.1").0
}

fn sysctl(lab: &Lab, node: &str, name: &str) -> String {
    let path = format!("/proc/sys/net/netfilter/{name}");
    lab.netns(node)
        .expect("a namespace")
        .run(move || std::fs::read_to_string(path))
        .expect("a thread in the namespace")
        .expect("reading the sysctl")
        .trim()
        .to_string()
}

/// Conntrack entries in the NAT's namespace.
fn conntrack_entries(lab: &Lab) -> usize {
    let (ok, out) = run(lab, "nat", "conntrack -L");
    assert!(ok, "conntrack -L: {out}");
    out.lines().filter(|l| l.contains("src=")).count()
}

/// A UDP socket made inside `node` (it stays in that namespace whatever thread uses it).
fn socket(lab: &Lab, node: &str, addr: SocketAddrV4) -> UdpSocket {
    let s = lab
        .netns(node)
        .expect("a namespace")
        .run(move || UdpSocket::bind(addr))
        .expect("a thread in the namespace")
        .expect("binding");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s
}

fn recv_from(s: &UdpSocket) -> Option<SocketAddrV4> {
    let mut buf = [0u8; 64];
    match s.recv_from(&mut buf) {
        Ok((_, SocketAddr::V4(a))) => Some(a),
        _ => None,
    }
}

#[test]
fn linux_nat_namespace_has_routes_ruleset_and_its_own_conntrack_timeouts() {
    need_root!();
    let dir = tempfile::tempdir().expect("temporary directory");
    let knobs = NatKnobs {
        udp_timeout: Some(Duration::from_secs(7)),
        ..NatKnobs::default()
    };
    let root_timeout = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")
        .expect("the root namespace's conntrack sysctl")
        .trim()
        .to_string();
    let lab = build(topology("linux-nat", NatKind::LinuxMasquerade, knobs), dir.path());

    let (_, routes) = run(&lab, "nat", "ip -4 route show default");
    assert!(routes.contains("via 100.64.0.1 dev wan"), "{routes}");
    let (ok, rules) = run(&lab, "nat", "nft list ruleset");
    assert!(ok, "{rules}");
    assert!(rules.contains("oifname \"wan\" masquerade"), "{rules}");
    assert!(!rules.contains("fully-random"), "{rules}");
    assert!(rules.contains("iifname \"wan\" ct state new drop"), "{rules}");
    assert!(
        ping(&lab),
        "peer reaches the internet through the NAT's default route"
    );

    assert_eq!(sysctl(&lab, "nat", "nf_conntrack_udp_timeout"), "7");
    assert_eq!(sysctl(&lab, "nat", "nf_conntrack_udp_timeout_stream"), "7");
    // Per namespace: the machine's own value is untouched.
    let now = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")
        .expect("the root namespace's conntrack sysctl");
    assert_eq!(now.trim(), root_timeout);
    drop(lab);

    // fully-random, and the firewall turned off.
    let knobs = NatKnobs {
        firewall: Some(false),
        ..NatKnobs::default()
    };
    let lab = build(
        topology("linux-nat-random", NatKind::LinuxMasqueradeRandom, knobs),
        dir.path(),
    );
    let (_, rules) = run(&lab, "nat", "nft list ruleset");
    assert!(rules.contains("masquerade fully-random"), "{rules}");
    assert!(!rules.contains("ct state new drop"), "{rules}");
    assert!(ping(&lab));
}

#[test]
fn linux_nat_controls_flush_timeout_down_up_and_refuse_rebind() {
    need_root!();
    let dir = tempfile::tempdir().expect("temporary directory");
    let lab = build(
        topology("linux-nat-ctl", NatKind::LinuxMasquerade, NatKnobs::default()),
        dir.path(),
    );
    let server = socket(&lab, "s1", SocketAddrV4::new(S1, 3478));
    let client = socket(&lab, "peer", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    client.send_to(b"x", SocketAddrV4::new(S1, 3478)).expect("send");
    let mapped = recv_from(&server).expect("the datagram crossed the NAT");
    assert_eq!(*mapped.ip(), NAT_WAN);
    assert!(conntrack_entries(&lab) >= 1);

    lab.nat_control("nat", NodeControl::Flush).expect("flush");
    assert_eq!(conntrack_entries(&lab), 0);

    lab.nat_control("nat", NodeControl::SetUdpTimeout(Duration::from_secs(9)))
        .expect("timeout");
    assert_eq!(sysctl(&lab, "nat", "nf_conntrack_udp_timeout"), "9");
    assert_eq!(sysctl(&lab, "nat", "nf_conntrack_udp_timeout_stream"), "9");
    assert!(lab
        .nat_control("nat", NodeControl::SetUdpTimeout(Duration::ZERO))
        .is_err());

    assert!(ping(&lab));
    lab.nat_control("nat", NodeControl::SetUp(false)).expect("down");
    assert!(!ping(&lab), "a NAT that is down passes nothing");
    lab.nat_control("nat", NodeControl::SetUp(false))
        .expect("down twice is fine");
    lab.nat_control("nat", NodeControl::SetUp(true)).expect("up");
    assert!(ping(&lab));
    lab.nat_control("nat", NodeControl::SetUp(true))
        .expect("up twice is fine");

    let err = lab
        .nat_control("nat", NodeControl::Rebind(vec![Ipv4Addr::new(100, 64, 0, 3)]))
        .expect_err("no rebinding for Linux NATs")
        .to_string();
    assert!(err.contains("not supported for Linux NATs"), "{err}");
    // A plain router is neither kind of NAT.
    assert!(lab.nat_control("core", NodeControl::Flush).is_err());
}

/// The external port a fresh inside socket keeps toward S2 after S2 sent to its mapping
/// unsolicited (as a peer's hole-punching probe does before the inside host sends to it).
fn port_toward_s2_after_unsolicited_probe(firewall: bool) -> (SocketAddrV4, SocketAddrV4) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let knobs = NatKnobs {
        firewall: Some(firewall),
        ..NatKnobs::default()
    };
    let lab = build(
        topology(&format!("fw-{firewall}"), NatKind::LinuxMasquerade, knobs),
        dir.path(),
    );
    let s1 = socket(&lab, "s1", SocketAddrV4::new(S1, 3478));
    let s2 = socket(&lab, "s2", SocketAddrV4::new(S2, 3478));
    let client = socket(&lab, "peer", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    client.send_to(b"1", SocketAddrV4::new(S1, 3478)).expect("send");
    let first = recv_from(&s1).expect("S1 heard the client");
    s2.send_to(b"probe", first).expect("send");
    std::thread::sleep(Duration::from_millis(200));
    client.send_to(b"2", SocketAddrV4::new(S2, 3478)).expect("send");
    let second = recv_from(&s2).expect("S2 heard the client");
    (first, second)
}

#[test]
fn the_firewall_keeps_masquerade_a_cone_for_hole_punching() {
    need_root!();
    let with = std::thread::spawn(|| port_toward_s2_after_unsolicited_probe(true));
    let without = port_toward_s2_after_unsolicited_probe(false);
    let with = with.join().expect("thread");
    eprintln!(
        "firewall on: {} then {}; off: {} then {}",
        with.0, with.1, without.0, without.1
    );
    assert_eq!(
        with.0, with.1,
        "with the firewall the unsolicited probe is dropped before conntrack keeps it: same mapping"
    );
    assert_ne!(
        without.0.port(),
        without.1.port(),
        "without it the probe reaches the NAT's own stack and its conntrack entry takes the port"
    );
}

//! Every shipped topology, built for real: who can reach whom, over ICMP (`ping` inside the
//! namespaces) and UDP (sockets inside the namespaces talking to an echo server in every
//! host), and whether the fabric's per-link counters show each packet on exactly the link
//! ends the topology says it crosses, and on no other.
//!
//! What is checked without NAT (runs now):
//! - every public host (not behind a NAT) reaches every other public host;
//! - every host reaches every other host on its own segment (LAN), directly;
//! - every host behind a NAT can ping its gateway router's addresses, inside and outside
//!   (the outside one through its default route);
//! - no public host reaches a private LAN address behind a NAT (nothing is delivered there).
//!
//! Through the NAT engine (the `*_through_nat` tests): every host behind a NAT reaches the
//! 6bed4 router and every public host, the reply comes back, and the far side sees the
//! outermost NAT's external address as the source.

mod common;

use bedlab::lab::Lab;
use bedlab::topology::Topology;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The topologies this file covers; a new file in topologies/ must be added here.
const COVERED: &[&str] = &[
    "double-nat",
    "mesh-50",
    "native-v6",
    "no-nat",
    "one-hop",
    "same-nat",
    "two-nats",
];

#[test]
fn every_shipped_topology_is_covered() {
    let shipped = shipped_topologies();
    assert_eq!(shipped, COVERED, "add a test for each new topology file");
}

/// A built lab of a shipped topology with its hosts sorted by kind.
struct Fixture {
    _dir: tempfile::TempDir,
    t: Topology,
    lab: Lab,
    hosts: Vec<String>,
    public: Vec<String>,
    nated: Vec<String>,
}

fn fixture(name: &str) -> Fixture {
    let t = Topology::from_file(topology_file(name)).expect("shipped topology parses");
    let dir = tempfile::tempdir().unwrap();
    let lab =
        Lab::build(t.clone(), opts(dir.path(), false)).unwrap_or_else(|e| panic!("building {name}: {e}"));
    let hosts: Vec<String> = t.hosts.iter().map(|h| h.name.clone()).collect();
    let (nated, public): (Vec<String>, Vec<String>) = hosts.iter().cloned().partition(|h| behind_nat(&t, h));
    assert!(
        public.iter().any(|h| addr_of(&t, h) == ROUTER_ADDR),
        "{name}: the 6bed4 router is a public host"
    );
    Fixture {
        _dir: dir,
        t,
        lab,
        hosts,
        public,
        nated,
    }
}

fn same_segment(t: &Topology, a: &str, b: &str) -> bool {
    let seg = |n: &str| t.node(n).unwrap().interfaces()[0].segment.clone();
    seg(a) == seg(b)
}

/// One UDP client socket per host, bound to the host's address.
fn clients(f: &Fixture) -> BTreeMap<String, UdpSocket> {
    f.hosts
        .iter()
        .map(|h| {
            (
                h.clone(),
                udp_in(&f.lab, h, SocketAddrV4::new(addr_of(&f.t, h), 0)),
            )
        })
        .collect()
}

static PROBE: AtomicUsize = AtomicUsize::new(0);

/// One UDP echo from `src` to `dst`, alone in the lab: it must succeed, the far side must see
/// `expect_source` (the client itself without NAT), and exactly the link ends on the path
/// (both ways) may move.
fn udp_probe_ok(f: &Fixture, sock: &UdpSocket, src: &str, dst: Ipv4Addr, expect_source: Option<Ipv4Addr>) {
    let payload = format!("probe-{}-{src}->{dst}", PROBE.fetch_add(1, Ordering::Relaxed));
    let before = counts(&f.lab.stats().unwrap());
    let seen = echo(sock, dst, &payload, 3, Duration::from_secs(1));
    let after = counts(&f.lab.stats().unwrap());
    let name = &f.t.name;
    let seen = seen.unwrap_or_else(|| panic!("{name}: UDP {src} -> {dst}: no echo"));
    let local = sock.local_addr().unwrap();
    match expect_source {
        None => assert_eq!(
            seen, local,
            "{name}: UDP {src} -> {dst}: the server saw another source"
        ),
        Some(ext) => assert_eq!(
            seen.ip(),
            std::net::IpAddr::V4(ext),
            "{name}: UDP {src} -> {dst}: the server should see the NAT's external address"
        ),
    }
    let path = path(&f.t, src, dst).unwrap_or_else(|| panic!("{name}: no path {src} -> {dst}"));
    let d = delta(&before, &after);
    for (link, &(sent, delivered)) in &d {
        if path.contains(link) {
            assert!(
                sent >= 1 && delivered >= 1,
                "{name}: UDP {src} -> {dst} (path {path:?}): {link} sent {sent}, delivered {delivered}; \
                 each link end on the path must carry the request one way and the echo the other"
            );
        } else {
            assert_eq!(
                (sent, delivered),
                (0, 0),
                "{name}: UDP {src} -> {dst} (path {path:?}): {link} is not on the path but moved"
            );
        }
    }
}

/// Runs `ping -c 2` for every pair, 32 at a time; returns the failures' outputs.
fn ping_all(lab: &Lab, pairs: &[(String, Ipv4Addr)], count: u32) -> Vec<(String, Ipv4Addr, bool, String)> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..32.min(pairs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((src, dst)) = pairs.get(i) else { break };
                let (ok, out) = ping(lab, src, *dst, count, &[]);
                results.lock().unwrap().push((src.clone(), *dst, ok, out));
            });
        }
    });
    results.into_inner().unwrap()
}

/// Pings that must succeed, then the counters: every link end on each ping's path carried at
/// least `count` packets each way per ping.
fn pings_ok(f: &Fixture, pairs: &[(String, Ipv4Addr)]) {
    let count = 2;
    let before = counts(&f.lab.stats().unwrap());
    let results = ping_all(&f.lab, pairs, count);
    let after = counts(&f.lab.stats().unwrap());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.2)
        .map(|(s, d, _, out)| format!("ping {s} -> {d}:\n{out}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{}: {} of {} pings failed:\n{}",
        f.t.name,
        failed.len(),
        pairs.len(),
        failed.join("\n")
    );
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (src, dst) in pairs {
        for link in path(&f.t, src, *dst).unwrap() {
            *expected.entry(link).or_default() += u64::from(count);
        }
    }
    let d = delta(&before, &after);
    for (link, min) in expected {
        let (sent, delivered) = d[&link];
        assert!(
            sent >= min && delivered >= min,
            "{}: {link} sent {sent}, delivered {delivered}, expected at least {min} each way",
            f.t.name
        );
    }
}

/// The checks that need no NAT; see the module documentation.
fn reachability(name: &str) {
    let f = fixture(name);
    let _echo = EchoServers::start(&f.lab, &f.hosts);
    let socks = clients(&f);
    let mut ok_pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for a in &f.public {
        for b in f.public.iter().filter(|b| *b != a) {
            ok_pairs.insert((a.clone(), b.clone()));
        }
    }
    for a in &f.hosts {
        for b in f.hosts.iter().filter(|b| *b != a && same_segment(&f.t, a, b)) {
            ok_pairs.insert((a.clone(), b.clone()));
        }
    }
    eprintln!(
        "{name}: {} hosts ({} behind NAT), {} UDP + ICMP pairs",
        f.hosts.len(),
        f.nated.len(),
        ok_pairs.len()
    );

    // UDP, one probe at a time so the counters can be attributed exactly.
    for (a, b) in &ok_pairs {
        udp_probe_ok(&f, &socks[a], a, addr_of(&f.t, b), None);
    }

    // Private addresses behind a NAT are not reachable from the internet: every public host
    // sends to every NATed host at once, and nothing reaches any NATed host.
    if !f.nated.is_empty() {
        let before = counts(&f.lab.stats().unwrap());
        let mut sent: BTreeMap<&str, u64> = BTreeMap::new();
        for p in &f.public {
            for n in &f.nated {
                // A public host without a default route cannot even send (ENETUNREACH).
                if socks[p]
                    .send_to(b"from-outside", SocketAddrV4::new(addr_of(&f.t, n), ECHO_PORT))
                    .is_ok()
                {
                    *sent.entry(p).or_default() += 1;
                }
            }
        }
        let mut buf = [0u8; 2048];
        for p in &f.public {
            socks[p]
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            assert_eq!(
                recv_timeout(&socks[p], &mut buf).unwrap(),
                None,
                "{name}: {p} got an answer from a private address"
            );
        }
        let d = delta(&before, &counts(&f.lab.stats().unwrap()));
        for p in &f.public {
            let link = format!("{p}/{}", f.t.node(p).unwrap().interfaces()[0].name);
            let n = sent.get(p.as_str()).copied().unwrap_or(0);
            assert_eq!(
                d[&link].0, n,
                "{name}: {link} sent one datagram per private address it had a route for"
            );
        }
        for n in &f.nated {
            let link = format!("{n}/{}", f.t.node(n).unwrap().interfaces()[0].name);
            assert_eq!(
                d[&link].1, 0,
                "{name}: {link} received a datagram sent from the internet to its private address"
            );
        }
    }

    // ICMP: the same pairs, plus every NATed host to each address of its gateway router: the
    // inside one on-link, the others through the default route.
    let mut pairs: Vec<(String, Ipv4Addr)> = ok_pairs
        .iter()
        .map(|(a, b)| (a.clone(), addr_of(&f.t, b)))
        .collect();
    for n in &f.nated {
        let gw =
            f.t.gateway_of(n, &f.t.node(n).unwrap().interfaces()[0].name)
                .expect("a NATed host has a gateway");
        let router = f.t.owner_of(gw).unwrap().node;
        pairs.extend(router.interfaces().iter().map(|i| (n.clone(), i.address)));
    }
    pings_ok(&f, &pairs);

    // And ICMP from the internet to private addresses fails.
    let outside: Vec<(String, Ipv4Addr)> = f
        .public
        .iter()
        .flat_map(|p| f.nated.iter().map(move |n| (p.clone(), n)))
        .map(|(p, n)| (p, addr_of(&f.t, n)))
        .collect();
    for (src, dst, ok, out) in ping_all(&f.lab, &outside, 1) {
        assert!(!ok, "{name}: {src} pinged the private address {dst}:\n{out}");
    }
    drop(_echo);
    f.lab.teardown().unwrap();
}

/// The external address the far side sees: the outside address of the last NAT on the path.
fn outermost_nat_address(t: &Topology, src: &str, dst: Ipv4Addr) -> Ipv4Addr {
    let p = path(t, src, dst).unwrap();
    p.iter()
        .rev()
        .filter_map(|hop| {
            t.routers
                .iter()
                .find(|r| r.nat.is_some() && hop.split('/').next() == Some(r.name.as_str()))
        })
        .map(|r| r.external_addresses()[0])
        .next()
        .expect("a NAT on the path")
}

/// Hosts behind NATs reach every public host (the 6bed4 router included), over UDP and ICMP,
/// and the replies come back through the NATs.
fn nat_reachability(name: &str) {
    let f = fixture(name);
    assert!(!f.nated.is_empty());
    let _echo = EchoServers::start(&f.lab, &f.hosts);
    let socks = clients(&f);
    let mut pairs = Vec::new();
    for n in &f.nated {
        for p in &f.public {
            let dst = addr_of(&f.t, p);
            let ext = outermost_nat_address(&f.t, n, dst);
            udp_probe_ok(&f, &socks[n], n, dst, Some(ext));
            pairs.push((n.clone(), dst));
        }
    }
    pings_ok(&f, &pairs);
    drop(_echo);
    f.lab.teardown().unwrap();
}

#[test]
fn one_hop() {
    require_root!();
    reachability("one-hop");
}

#[test]
fn no_nat() {
    require_root!();
    reachability("no-nat");
}

#[test]
fn two_nats() {
    require_root!();
    reachability("two-nats");
}

#[test]
fn same_nat() {
    require_root!();
    reachability("same-nat");
}

#[test]
fn double_nat() {
    require_root!();
    reachability("double-nat");
}

#[test]
fn mesh_50() {
    require_root!();
    reachability("mesh-50");
}

#[test]
fn two_nats_through_nat() {
    require_root!();
    nat_reachability("two-nats");
}

#[test]
fn same_nat_through_nat() {
    require_root!();
    nat_reachability("same-nat");
}

#[test]
fn double_nat_through_nat() {
    require_root!();
    nat_reachability("double-nat");
}

#[test]
fn mesh_50_through_nat() {
    require_root!();
    nat_reachability("mesh-50");
}

/// The native IPv6 network behind the router: IPv4 as in `two-nats` for the peers (through
/// their NATs to the router) and on-link on the dual-stack segment; native IPv6 between the
/// router's second interface and the server, both ways; IPv6 on no other uplink.
#[test]
fn native_v6() {
    require_root!();
    let f = fixture("native-v6");
    assert_eq!(f.nated, ["peer-a", "peer-b"]);
    let pairs = vec![
        ("peer-a".to_string(), ROUTER_ADDR),
        ("peer-b".to_string(), ROUTER_ADDR),
        ("server".to_string(), Ipv4Addr::new(192, 0, 2, 1)),
        ("router".to_string(), Ipv4Addr::new(192, 0, 2, 2)),
    ];
    pings_ok(&f, &pairs);
    for (node, dst) in [("server", "2001:db8:6::1"), ("router", "2001:db8:6::2")] {
        let out = f
            .lab
            .exec(
                node,
                &sv(&["ping", "-6", "-n", "-c", "2", "-i", "0.05", "-W", "2", dst]),
            )
            .unwrap();
        assert!(out.status.success(), "ping6 {node} -> {dst}:\n{}", text(&out));
    }
    let d = f.lab.stats().unwrap();
    assert!(d.link("router/eth1").unwrap().delivered_packets >= 4);
    assert!(d.link("server/eth0").unwrap().delivered_packets >= 4);
    for (node, ifname, off) in [
        ("peer-a", "eth0", "1"),
        ("router", "eth0", "1"),
        ("router", "eth1", "0"),
        ("server", "eth0", "0"),
    ] {
        let out = f
            .lab
            .exec(
                node,
                &sv(&["cat", &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")]),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            off,
            "{node}/{ifname} disable_ipv6"
        );
    }
    f.lab.teardown().unwrap();
}

/// The path helper itself, against a topology whose paths are known by heart, so the tests
/// above cannot pass by computing the same wrong path the fabric takes.
#[test]
fn path_helper_knows_double_nat() {
    let t = Topology::from_file(topology_file("double-nat")).unwrap();
    let p = path(&t, "peer-a", ROUTER_ADDR).unwrap();
    assert_eq!(
        p,
        [
            "peer-a/eth0",
            "nat-a/lan",
            "nat-a/wan",
            "cgn/inside",
            "cgn/wan",
            "router/eth0"
        ]
    );
    assert_eq!(
        outermost_nat_address(&t, "peer-a", ROUTER_ADDR),
        Ipv4Addr::new(198, 51, 100, 30)
    );
    assert_eq!(
        path(&t, "router", Ipv4Addr::new(198, 51, 100, 20)).unwrap(),
        ["router/eth0", "nat-b/wan"]
    );
    assert!(behind_nat(&t, "peer-a") && behind_nat(&t, "peer-b") && !behind_nat(&t, "router"));
    let _: SocketAddr = "198.51.100.1:7".parse().unwrap();
}

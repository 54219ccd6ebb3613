//! A lab is sealed: no link into the root namespace, nothing left in it afterwards.
//!
//! From inside the lab's nodes, the machine's own addresses (read from the root namespace
//! first) and 8.8.8.8 are unreachable over ICMP, UDP and TCP, and a listener in the root
//! namespace hears nothing. The root namespace's interfaces and routes are the same during
//! and after the lab as before, and no TUN device ever appears in it.

mod common;

use bedlab::fabric::DropReason;
use bedlab::lab::Lab;
use common::*;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// The root namespace's IPv4 addresses, loopback excluded.
fn root_addresses() -> Vec<Ipv4Addr> {
    host_cmd(&["ip", "-4", "-o", "addr", "show"])
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|cidr| cidr.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

#[test]
fn no_way_out_of_the_lab_and_nothing_left_behind() {
    require_root!();
    let before = root_network_state();
    let tuns_before = root_tuns();
    let mut targets = root_addresses();
    eprintln!("root namespace addresses: {targets:?}");
    targets.push(Ipv4Addr::new(8, 8, 8, 8));

    // Listeners in the root namespace, on every address.
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    let tcp = TcpListener::bind("0.0.0.0:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let (udp_port, tcp_port) = (udp.local_addr().unwrap().port(), tcp.local_addr().unwrap().port());

    let dir = tempfile::tempdir().unwrap();
    // two-nats: peer-a has a default route (via its NAT), the router host has none.
    let lab = Lab::from_file(&topology_file("two-nats"), opts(dir.path(), false)).unwrap();
    assert_eq!(root_tuns(), tuns_before, "a TUN appeared in the root namespace");
    assert_eq!(
        root_network_state().0,
        before.0,
        "the root namespace's interfaces changed while the lab is up"
    );
    let dropped = |lab: &Lab| {
        lab.stats()
            .unwrap()
            .links
            .iter()
            .map(|l| l.stats.dropped.total())
            .sum::<u64>()
    };
    let dropped_before = dropped(&lab);

    let nodes = ["peer-a", "router"];
    let pings: Vec<(String, Ipv4Addr)> = nodes
        .iter()
        .flat_map(|n| targets.iter().map(move |t| (n.to_string(), *t)))
        .collect();
    std::thread::scope(|s| {
        for (node, dst) in &pings {
            let lab = &lab;
            s.spawn(move || {
                let (ok, out) = ping(lab, node, *dst, 1, &[]);
                assert!(!ok, "{node} pinged {dst} outside the lab:\n{out}");
            });
        }
        for node in nodes {
            for dst in &targets {
                let lab = &lab;
                s.spawn(move || {
                    let to = SocketAddr::V4(SocketAddrV4::new(*dst, tcp_port));
                    let r = lab
                        .netns(node)
                        .unwrap()
                        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(1)))
                        .unwrap();
                    assert!(r.is_err(), "{node} connected to {to} in the root namespace");
                    let sock = udp_in(lab, node, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                    let _ = sock.send_to(b"escape", SocketAddrV4::new(*dst, udp_port));
                });
            }
        }
    });
    udp.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a datagram from inside the lab reached the root namespace"
    );
    assert!(
        tcp.accept().is_err(),
        "a TCP connection from inside the lab reached the root namespace"
    );
    // peer-a's attempts did leave peer-a, and died in the fabric (no route out of the lab).
    let stats = lab.stats().unwrap();
    assert!(
        dropped(&lab) > dropped_before,
        "peer-a's packets to outside addresses should be dropped in the fabric"
    );
    eprintln!(
        "dropped as no-route: {}",
        stats.total_dropped(DropReason::NoRoute)
    );

    assert_eq!(root_tuns(), tuns_before, "a TUN appeared in the root namespace");
    lab.teardown().unwrap();
    let after = root_network_state();
    assert_eq!(after.0, before.0, "the root namespace's interfaces changed");
    assert_eq!(after.1, before.1, "the root namespace's IPv4 routes changed");
    assert_eq!(after.2, before.2, "the root namespace's IPv6 routes changed");
    assert_eq!(root_tuns(), tuns_before);
}

/// Inside a node there is exactly `lo` and the topology's uplinks: nothing of the host's.
#[test]
fn a_node_sees_only_its_own_interfaces() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::from_file(&topology_file("two-nats"), opts(dir.path(), false)).unwrap();
    for node in ["peer-a", "peer-b", "router"] {
        let out = lab.exec(node, &sv(&["ip", "-o", "link", "show"])).unwrap();
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .collect();
        assert_eq!(names, ["lo", "eth0"], "{node}'s interfaces");
        let routes = lab.exec(node, &sv(&["ip", "-4", "route", "show"])).unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        let gw = lab.topology().gateway_of(node, "eth0");
        match gw {
            Some(gw) => assert!(
                routes.contains(&format!("default via {gw} dev eth0")),
                "{node}: {routes}"
            ),
            None => assert!(
                !routes.contains("default"),
                "{node} has no gateway, so no default route: {routes}"
            ),
        }
    }
    lab.teardown().unwrap();
}

//! Native IPv6 in a real lab: a dual-stack segment (`subnet6`) whose hosts get their
//! `address6` inside their namespaces and reach each other through the fabric, which routes
//! IPv6 by owner on the segment and by `gateway6` off it; what nobody owns is dropped and
//! counted; every packet is in the capture on both link ends.

mod common;

use bedlab::capture::Reader;
use bedlab::lab::Lab;
use bedlab::topology::{Host, Interface, Segment, Topology};
use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// `gw` 2001:db8:6::1 (a stand-in for the 6bed4 router), `srv` ::2 with its default IPv6
/// route via `gw`, `v4only` without IPv6, all on one dual-stack segment.
fn dual_stack() -> Topology {
    Topology::builder("lab-ipv6")
        .segment(
            Segment::new("native", "192.0.2.0/24".parse().unwrap())
                .subnet6("2001:db8:6::/64".parse().unwrap()),
        )
        .host(
            Host::new("gw")
                .interface(Interface::new("eth1", "native", v4("192.0.2.1")).address6(v6("2001:db8:6::1"))),
        )
        .host(
            Host::new("srv").interface(
                Interface::new("eth0", "native", v4("192.0.2.2"))
                    .address6(v6("2001:db8:6::2"))
                    .gateway6(v6("2001:db8:6::1")),
            ),
        )
        .host(Host::new("v4only").interface(Interface::new("eth0", "native", v4("192.0.2.3"))))
        .build()
        .expect("valid topology")
}

fn ping6(lab: &Lab, node: &str, dst: &str) -> (bool, String) {
    let out = lab
        .exec(
            node,
            &sv(&["ping", "-6", "-n", "-c", "2", "-i", "0.05", "-W", "1", dst]),
        )
        .expect("ping runs");
    (out.status.success(), text(&out))
}

#[test]
fn native_ipv6_on_a_dual_stack_segment() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::build(dual_stack(), opts(dir.path(), true)).expect("lab builds");

    // On-link, both ways.
    let (ok, out) = ping6(&lab, "srv", "2001:db8:6::1");
    assert!(ok, "srv -> gw on-link: {out}");
    let (ok, out) = ping6(&lab, "gw", "2001:db8:6::2");
    assert!(ok, "gw -> srv on-link: {out}");

    // Off-link: srv's default route sends it to gw, which owns the address (as the 6bed4
    // router owns its tunnel's /64); the answer comes back on-link.
    let add = lab
        .exec(
            "gw",
            &sv(&[
                "ip",
                "-6",
                "addr",
                "add",
                "fc64:bed:c633:6401::1/128",
                "dev",
                "lo",
            ]),
        )
        .expect("ip runs");
    assert!(add.status.success(), "{}", text(&add));
    let (ok, out) = ping6(&lab, "srv", "fc64:bed:c633:6401::1");
    assert!(ok, "srv -> beyond gw: {out}");

    // Nobody owns ::9 on the segment: dropped by the fabric, counted, never delivered.
    let before = lab.stats().unwrap().link("srv/eth0").unwrap().dropped.no_host;
    let (ok, _) = ping6(&lab, "srv", "2001:db8:6::9");
    assert!(!ok, "a ping to nobody got an answer");
    let after = lab.stats().unwrap().link("srv/eth0").unwrap().dropped.no_host;
    assert!(after >= before + 2, "no-host drops {before} -> {after}");
    // The IPv4-only host on the same segment has no IPv6 at all.
    let (ok, _) = ping6(&lab, "v4only", "2001:db8:6::1");
    assert!(!ok);
    // IPv4 still works on the dual-stack segment.
    let (ok, out) = ping(&lab, "v4only", v4("192.0.2.2"), 1, &[]);
    assert!(ok, "IPv4 on the dual-stack segment: {out}");

    let capture = lab.capture_path().unwrap().to_path_buf();
    lab.teardown().unwrap();

    // Every echo request srv sent to gw's extra address is on both link ends, hop limit
    // untouched by the fabric (it is a segment, not a router).
    let mut r = Reader::open(&capture).unwrap();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    while let Some(p) = r.next_packet().unwrap() {
        let ip = p.ip().unwrap_or(&[]);
        if ip.len() >= 41
            && ip[0] >> 4 == 6
            && ip[6] == 58
            && ip[40] == 128
            && ip[24..40] == v6("fc64:bed:c633:6401::1").octets()
        {
            assert_eq!(ip[7], 64, "hop limit");
            *seen
                .entry(p.interface_name.as_deref().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.get("srv/eth0"), Some(&2), "{seen:?}");
    assert_eq!(seen.get("gw/eth1"), Some(&2), "{seen:?}");
}

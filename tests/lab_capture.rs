//! The run's pcapng, read back with `bedlab::capture::Reader` after teardown and opened with
//! tshark: every packet on the link ends it crossed, in order, with the direction and a
//! sensible timestamp; the section header names the run, the topology and the roles; a TUN
//! a process creates inside a node after bring-up is captured too (as `node/6bed4`); and the
//! file opens in tshark without a single warning, with the same number of frames.

mod common;

use bedlab::capture::{Direction, Packet, Reader};
use bedlab::lab::Lab;
use bedlab::topology::{Host, Interface, Router, Segment, Topology};
use common::*;
use sixbed4::sys::tun::Tun;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Every packet of a capture file, and the section comments.
fn read_all(path: &Path) -> (Vec<String>, Vec<Packet>) {
    let mut r = Reader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let comments = r.comments().to_vec();
    let mut packets = Vec::new();
    while let Some(p) = r
        .next_packet()
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    {
        packets.push(p);
    }
    (comments, packets)
}

/// An ICMP echo as seen in a captured packet: (type, id, seq, ttl, src, dst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Echo {
    kind: u8,
    id: u16,
    seq: u16,
    ttl: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

fn echo_of(p: &Packet) -> Option<Echo> {
    let ip = p.ip()?;
    if ip.len() < 28 || ip[0] >> 4 != 4 || ip[9] != 1 {
        return None;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let icmp = ip.get(hl..hl + 8)?;
    if icmp[0] != 0 && icmp[0] != 8 {
        return None;
    }
    Some(Echo {
        kind: icmp[0],
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        ttl: ip[8],
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    })
}

/// The (interface, direction, time, echo) of every ICMP echo packet, in file order.
fn echoes(packets: &[Packet]) -> Vec<(String, Direction, SystemTime, Echo)> {
    packets
        .iter()
        .filter_map(|p| {
            let e = echo_of(p)?;
            Some((
                p.interface_name.as_deref().unwrap_or_default().to_string(),
                p.direction?,
                p.time()?,
                e,
            ))
        })
        .collect()
}

/// The hops of one echo (request or reply), as (interface, direction), and their times.
fn hops_of(
    all: &[(String, Direction, SystemTime, Echo)],
    kind: u8,
    seq: u16,
) -> (Vec<(String, Direction)>, Vec<SystemTime>) {
    let hops: Vec<_> = all
        .iter()
        .filter(|e| e.3.kind == kind && e.3.seq == seq)
        .collect();
    (
        hops.iter().map(|e| (e.0.clone(), e.1)).collect(),
        hops.iter().map(|e| e.2).collect(),
    )
}

fn assert_non_decreasing(times: &[SystemTime], what: &str) {
    for w in times.windows(2) {
        assert!(w[0] <= w[1], "{what}: timestamps go backwards: {times:?}");
    }
}

/// tshark opens the file without any warning (stderr empty apart from its notice about
/// running as root) and counts the same frames as the reader.
fn tshark_agrees(path: &Path, frames: usize) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping the tshark check: {e}");
            return;
        }
    };
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\""))
        .map(String::from)
        .collect();
    assert!(
        out.status.success(),
        "tshark -r {} failed: {stderr:?}",
        path.display()
    );
    assert!(
        stderr.is_empty(),
        "tshark -r {} warned: {stderr:?}",
        path.display()
    );
    let counted = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(
        counted, frames,
        "tshark and bedlab's reader disagree on the number of frames"
    );
    // The plain invocation the brief names, too.
    let out = Command::new("tshark").arg("-r").arg(path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(
        "Running as user \"root\" and group \"root\". This could be dangerous.",
        "",
    );
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "tshark -r: {stderr}"
    );
}

/// A ping across one segment: request out of peer-a/eth0 then into router/eth0, the reply
/// out of router/eth0 then into peer-a/eth0, times in that order; the section comments carry
/// the run id, the topology and every node's role.
#[test]
fn ping_on_one_segment_and_section_comments() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::from_file(&topology_file("one-hop"), opts(dir.path(), true)).unwrap();
    let run_id = lab.run_id().to_string();
    let path = lab.capture_path().expect("capturing").to_path_buf();
    assert!(
        path.starts_with(dir.path().join("out").join(&run_id)),
        "the capture lives under <out>/<run-id>/"
    );
    let (ok, out) = ping(&lab, "peer-a", ROUTER_ADDR, 2, &[]);
    assert!(ok, "{out}");
    lab.teardown().unwrap();

    let (comments, packets) = read_all(&path);
    for expected in [
        format!("bedlab run {run_id}"),
        "topology one-hop: two hosts on one segment, no router, no impairment".to_string(),
        "node router role 6bed4-router".to_string(),
        "node peer-a role peer".to_string(),
    ] {
        assert!(
            comments.contains(&expected),
            "section comments {comments:?} lack {expected:?}"
        );
    }
    let all = echoes(&packets);
    assert_eq!(
        all.len(),
        8,
        "2 requests and 2 replies, each seen at both link ends: {all:#?}"
    );
    let peer = Ipv4Addr::new(198, 51, 100, 2);
    for seq in 1..=2 {
        let (req, t_req) = hops_of(&all, 8, seq);
        let (rep, t_rep) = hops_of(&all, 0, seq);
        assert_eq!(
            req,
            [
                ("peer-a/eth0".to_string(), Direction::Outbound),
                ("router/eth0".to_string(), Direction::Inbound)
            ],
            "request {seq}"
        );
        assert_eq!(
            rep,
            [
                ("router/eth0".to_string(), Direction::Outbound),
                ("peer-a/eth0".to_string(), Direction::Inbound)
            ],
            "reply {seq}"
        );
        let times: Vec<SystemTime> = t_req.iter().chain(&t_rep).copied().collect();
        assert_non_decreasing(&times, &format!("echo {seq}"));
        assert!(times[0] < times[3], "the reply arrives after the request left");
        let e = all.iter().find(|e| e.3.kind == 8 && e.3.seq == seq).unwrap().3;
        assert_eq!((e.src, e.dst), (peer, ROUTER_ADDR));
    }
    // Timestamps are wall-clock times of this run.
    let first = all[0].2;
    let age = SystemTime::now()
        .duration_since(first)
        .expect("not in the future");
    assert!(age < Duration::from_secs(60), "first packet {age:?} ago");
    tshark_agrees(&path, packets.len());
}

/// Through a fabric router both of its link ends see the packet, in order, and the TTL is
/// one less after it.
#[test]
fn ping_through_a_router_is_seen_on_both_of_its_interfaces() {
    require_root!();
    let a = Ipv4Addr::new(10, 1, 0, 2);
    let b = Ipv4Addr::new(10, 2, 0, 2);
    let t = Topology::builder("routed")
        .description("a - r - b")
        .segment(Segment::new("left", "10.1.0.0/24".parse().unwrap()))
        .segment(Segment::new("right", "10.2.0.0/24".parse().unwrap()))
        .host(
            Host::new("a")
                .role("peer")
                .interface(Interface::new("eth0", "left", a)),
        )
        .host(
            Host::new("b")
                .role("server")
                .interface(Interface::new("eth0", "right", b)),
        )
        .router(
            Router::new("r")
                .interface(Interface::new("l", "left", Ipv4Addr::new(10, 1, 0, 1)))
                .interface(Interface::new("r", "right", Ipv4Addr::new(10, 2, 0, 1))),
        )
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::build(t, opts(dir.path(), true)).unwrap();
    let path = lab.capture_path().unwrap().to_path_buf();
    let (ok, out) = ping(&lab, "a", b, 1, &[]);
    assert!(ok, "{out}");
    lab.teardown().unwrap();

    let (comments, packets) = read_all(&path);
    assert!(
        comments.contains(&"node r role router".to_string()),
        "{comments:?}"
    );
    assert!(
        comments.contains(&"topology routed: a - r - b".to_string()),
        "{comments:?}"
    );
    let all = echoes(&packets);
    let (req, t_req) = hops_of(&all, 8, 1);
    let (rep, t_rep) = hops_of(&all, 0, 1);
    let hop = |s: &str, d| (s.to_string(), d);
    assert_eq!(
        req,
        [
            hop("a/eth0", Direction::Outbound),
            hop("r/l", Direction::Inbound),
            hop("r/r", Direction::Outbound),
            hop("b/eth0", Direction::Inbound)
        ]
    );
    assert_eq!(
        rep,
        [
            hop("b/eth0", Direction::Outbound),
            hop("r/r", Direction::Inbound),
            hop("r/l", Direction::Outbound),
            hop("a/eth0", Direction::Inbound)
        ]
    );
    assert_non_decreasing(&[t_req, t_rep].concat(), "echo through r");
    let ttl = |iface: &str, kind: u8| {
        all.iter()
            .find(|e| e.0 == iface && e.3.kind == kind)
            .unwrap()
            .3
            .ttl
    };
    assert_eq!(
        ttl("a/eth0", 8),
        ttl("r/r", 8) + 1,
        "the router decrements the TTL of the request"
    );
    assert_eq!(ttl("b/eth0", 0), ttl("r/l", 0) + 1, "and of the reply");
    tshark_agrees(&path, packets.len());
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Answers IPv4 echo requests that come out of `tun` (as if a host behind it replied).
fn responder(tun: Arc<Tun>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        tun.set_nonblocking(true).unwrap();
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let n = match tun.read(&mut buf) {
                Ok(n) => n,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            };
            let p = &buf[..n];
            if n < 28 || p[0] >> 4 != 4 || p[9] != 1 {
                continue;
            }
            let hl = usize::from(p[0] & 0x0f) * 4;
            if p[hl] != 8 {
                continue;
            }
            let mut r = p.to_vec();
            r[12..16].copy_from_slice(&p[16..20]);
            r[16..20].copy_from_slice(&p[12..16]);
            r[hl] = 0;
            r[hl + 2..hl + 4].copy_from_slice(&[0, 0]);
            let c = checksum(&r[hl..]);
            r[hl + 2..hl + 4].copy_from_slice(&c.to_be_bytes());
            if tun.write(&r).is_ok() {
                answered += 1;
            }
        }
        answered
    })
}

/// A TUN named `6bed4` made inside a node after the lab is up (as a 6bed4 peer would) is
/// captured by the node's host capture, under `node/6bed4`, in both directions; the uplink
/// is not captured twice.
#[test]
fn a_tun_created_inside_a_node_is_captured() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::from_file(&topology_file("one-hop"), opts(dir.path(), true)).unwrap();
    let path = lab.capture_path().unwrap().to_path_buf();
    let tun = Arc::new(
        lab.netns("peer-a")
            .unwrap()
            .run(|| Tun::create("6bed4"))
            .unwrap()
            .expect("create 6bed4 in peer-a"),
    );
    for argv in [
        &["ip", "link", "set", "6bed4", "up"][..],
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "6bed4"],
    ] {
        let out = lab.exec("peer-a", &sv(argv)).unwrap();
        assert!(out.status.success(), "{argv:?}: {}", text(&out));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answering = responder(Arc::clone(&tun), Arc::clone(&stop));
    let (ok, out) = ping(&lab, "peer-a", Ipv4Addr::new(10, 99, 0, 2), 2, &[]);
    stop.store(true, Ordering::Relaxed);
    let answered = answering.join().unwrap();
    assert!(ok, "ping through the test's TUN responder: {out}");
    assert!(answered >= 2);
    // The TUN's descriptor keeps peer-a's namespace alive: close it before teardown.
    drop(tun);
    // Uplink traffic too, so the file has both kinds.
    let (ok, out) = ping(&lab, "peer-a", ROUTER_ADDR, 1, &[]);
    assert!(ok, "{out}");
    lab.teardown().unwrap();

    let (_, packets) = read_all(&path);
    let all = echoes(&packets);
    let on_tun: Vec<_> = all.iter().filter(|e| e.0 == "peer-a/6bed4").collect();
    let dirs: Vec<(u8, Direction)> = on_tun.iter().map(|e| (e.3.kind, e.1)).collect();
    assert!(
        dirs.contains(&(8, Direction::Outbound)) && dirs.contains(&(0, Direction::Inbound)),
        "peer-a/6bed4 has requests out and replies in: {on_tun:#?}"
    );
    assert_eq!(
        on_tun.iter().filter(|e| e.3.kind == 8).count(),
        2,
        "each request once"
    );
    assert!(on_tun
        .iter()
        .all(|e| e.3.dst == Ipv4Addr::new(10, 99, 0, 2) || e.3.src == Ipv4Addr::new(10, 99, 0, 2)));
    let tun_packet = packets
        .iter()
        .find(|p| p.interface_name.as_deref() == Some("peer-a/6bed4"))
        .unwrap();
    assert_eq!(tun_packet.linktype, bedlab::capture::linktype::RAW);
    // The uplink eth0 is recorded by the fabric only, never by the host capture.
    let uplink = all
        .iter()
        .filter(|e| e.3.dst == ROUTER_ADDR && e.3.kind == 8)
        .count();
    assert_eq!(
        uplink, 2,
        "the ping to the router: once at peer-a/eth0, once at router/eth0"
    );
    let names: std::collections::BTreeSet<String> = packets
        .iter()
        .filter_map(|p| p.interface_name.as_deref().map(str::to_string))
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("peer-a/") && n != "peer-a/eth0" && n != "peer-a/6bed4"),
        "{names:?}"
    );
    tshark_agrees(&path, packets.len());
}

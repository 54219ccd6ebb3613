//! Host capture in a throwaway network namespace (needs root): a `6bed4` TUN created after
//! the capture started is recorded from its first packets, in both directions, and the
//! excluded interfaces are not.

use std::fs::File;
use std::net::{Ipv6Addr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sixbed4::sys::netlink::Netlink;
use sixbed4::sys::sysctl;
use sixbed4::sys::tun::Tun;

use crate::capture::host::{pcapng_sink, HostCapture, HostCaptureOptions, HostPacket};
use crate::capture::linktype;
use crate::capture::pcapng::{CaptureFile, Direction, ShbInfo};
use crate::capture::reader::Reader;

/// Runs `f` on a fresh thread moved into a new, empty network namespace with `lo` up, and
/// hands it an fd of that namespace. Returns None (after saying why) without privileges.
fn in_netns<R: Send + 'static>(test: &str, f: impl FnOnce(File) -> R + Send + 'static) -> Option<R> {
    let test = test.to_string();
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare takes a flag word and touches no memory of ours; CLONE_NEWNET
        // moves only this thread, which is ours alone.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "SKIP {test}: cannot create a network namespace (needs root): {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Netlink::open()
            .expect("netlink")
            .set_link_up(1, None)
            .expect("lo up");
        // /proc/thread-self: this thread's namespace, not the process's main thread's.
        let ns = File::open("/proc/thread-self/ns/net").expect("open ns fd");
        Some(f(ns))
    });
    match handle.join() {
        Ok(r) => r,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    interface: String,
    direction: Direction,
    protocol: u16,
    data: Vec<u8>,
    ts: SystemTime,
}

fn collecting_sink(into: Arc<Mutex<Vec<Seen>>>) -> impl FnMut(&HostPacket<'_>) -> std::io::Result<()> + Send {
    move |p: &HostPacket<'_>| {
        into.lock().expect("lock").push(Seen {
            interface: p.interface.to_string(),
            direction: p.direction,
            protocol: p.protocol,
            data: p.data.to_vec(),
            ts: p.ts,
        });
        Ok(())
    }
}

/// An ICMPv6 echo request from `src` to `dst` with the checksum filled in.
fn echo_request(src: Ipv6Addr, dst: Ipv6Addr, seq: u16) -> Vec<u8> {
    let mut icmp = vec![128u8, 0, 0, 0, 0xbe, 0xd4];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"bedlab capture");
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(&icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// Waits until `pred` holds for the collected packets, up to 5 s.
fn wait_for(seen: &Arc<Mutex<Vec<Seen>>>, what: &str, pred: impl Fn(&[Seen]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if pred(&seen.lock().expect("lock")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "timed out waiting for {what}; saw {:#?}",
        seen.lock().expect("lock")
    );
}

#[test]
fn tun_created_after_start_is_captured_both_ways() {
    in_netns("tun_created_after_start_is_captured_both_ways", |ns| {
        // An uplink that exists before the capture and is excluded by index, as the lab's are.
        let uplink = Tun::create("eth0").expect("uplink");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let options = HostCaptureOptions {
            exclude_ifindexes: [uplink.ifindex()].into(),
            ..HostCaptureOptions::default()
        };
        let before = SystemTime::now();
        let cap = HostCapture::start(ns.as_fd(), options, collecting_sink(Arc::clone(&seen))).expect("start");
        assert!(cap.is_running());

        // Now the implementation under test would create its TUN.
        let tun = Tun::create("6bed4").expect("tun");
        sysctl::quiet_autoconf("6bed4").expect("sysctls");
        let mut nl = Netlink::open().expect("netlink");
        nl.set_link_up(tun.ifindex(), Some(1280)).expect("up");
        nl.set_link_up(uplink.ifindex(), None).expect("uplink up");
        let me: Ipv6Addr = "fc64::1".parse().expect("addr");
        let peer: Ipv6Addr = "fc64::2".parse().expect("addr");
        nl.add_address_v6(tun.ifindex(), me, 64).expect("addr");
        nl.add_address_v6(uplink.ifindex(), "fd00::1".parse().expect("addr"), 64)
            .expect("addr");

        // Inbound: a packet injected into the TUN (as a 6bed4 daemon delivers one).
        let req = echo_request(peer, me, 1);
        tun.write(&req).expect("write tun");
        // Outbound: the kernel's echo reply, and a UDP datagram sent to the peer.
        let sock = UdpSocket::bind("[fc64::1]:0").expect("bind");
        sock.send_to(b"out", "[fc64::2]:9").expect("send");
        // Excluded: the uplink and loopback.
        sock.send_to(b"lo", "[::1]:9").expect("send lo");
        uplink
            .write(&echo_request(
                "fd00::2".parse().expect("addr"),
                "fd00::1".parse().expect("addr"),
                2,
            ))
            .expect("write uplink");

        wait_for(&seen, "the echo request, the reply and the datagram", |s| {
            let on_6bed4 = |dir, icmp_or_udp: &dyn Fn(&[u8]) -> bool| {
                s.iter()
                    .any(|p| p.interface == "6bed4" && p.direction == dir && icmp_or_udp(&p.data))
            };
            on_6bed4(Direction::Inbound, &|d| d == &req[..])
                && on_6bed4(Direction::Outbound, &|d| {
                    d.len() > 40 && d[6] == 58 && d[40] == 129
                })
                && on_6bed4(Direction::Outbound, &|d| {
                    d.len() > 40 && d[6] == 17 && d.ends_with(b"out")
                })
        });
        let stats = cap.stop().expect("stop");
        let seen = seen.lock().expect("lock").clone();
        assert!(seen.iter().all(|p| p.interface == "6bed4"), "{seen:#?}");
        assert!(seen.iter().all(|p| p.protocol == 0x86DD));
        assert!(seen.iter().all(|p| p.ts >= before && p.ts <= SystemTime::now()));
        assert_eq!(stats.packets, seen.len() as u64);
        assert!(stats.excluded >= 2, "{stats:?}");
        assert_eq!(stats.kernel_drops, 0);
    });
}

#[test]
fn host_capture_into_a_pcapng_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("host.pcapng");
    let path2 = path.clone();
    let ran = in_netns("host_capture_into_a_pcapng_file", move |ns| {
        let file =
            CaptureFile::create(&path2, ShbInfo::bedlab(vec!["host capture test".into()])).expect("create");
        let options = HostCaptureOptions {
            include_loopback: true,
            ..HostCaptureOptions::default()
        };
        let cap =
            HostCapture::start(ns.as_fd(), options, pcapng_sink(file.clone(), "peer-a")).expect("start");
        let tun = Tun::create("6bed4").expect("tun");
        sysctl::quiet_autoconf("6bed4").expect("sysctls");
        let mut nl = Netlink::open().expect("netlink");
        nl.set_link_up(tun.ifindex(), Some(1280)).expect("up");
        let me: Ipv6Addr = "fc64::1".parse().expect("addr");
        nl.add_address_v6(tun.ifindex(), me, 64).expect("addr");
        tun.write(&echo_request("fc64::2".parse().expect("addr"), me, 7))
            .expect("write");
        let sock = UdpSocket::bind("[::1]:0").expect("bind");
        sock.send_to(b"via lo", "[::1]:9").expect("send lo");
        std::thread::sleep(Duration::from_millis(300));
        cap.stop().expect("stop")
    });
    let Some(stats) = ran else { return };
    let mut r = Reader::open(&path).expect("open");
    let packets: Vec<_> = r.by_ref().map(|p| p.expect("packet")).collect();
    assert_eq!(packets.len() as u64, stats.packets);
    assert_eq!(r.comments(), ["host capture test"]);
    let names: std::collections::BTreeSet<_> =
        packets.iter().filter_map(|p| p.interface_name.clone()).collect();
    assert!(names.contains("peer-a/6bed4"), "{names:?}");
    assert!(names.contains("peer-a/lo"), "{names:?}");
    assert!(packets.iter().all(|p| p.linktype == linktype::RAW));
    let tun: Vec<_> = packets
        .iter()
        .filter(|p| p.interface_name.as_deref() == Some("peer-a/6bed4"))
        .collect();
    assert!(tun.iter().any(|p| p.direction == Some(Direction::Inbound)));
    assert!(tun.iter().any(|p| p.direction == Some(Direction::Outbound)));
    // Loopback shows each packet twice, once per direction (so does the ICMPv6 port
    // unreachable that quotes it, hence the check for UDP).
    let lo = packets
        .iter()
        .filter(|p| {
            p.interface_name.as_deref() == Some("peer-a/lo") && p.data[6] == 17 && p.data.ends_with(b"via lo")
        })
        .count();
    assert_eq!(lo, 2);

    if super::have_tool("tshark", "host_capture_into_a_pcapng_file (tshark part)") {
        let (run, rows) = super::tshark_fields(&path, &["frame.interface_name", "ipv6.src"]);
        assert!(run.status.success(), "{}", run.stderr);
        assert_eq!(run.stderr, "");
        assert_eq!(rows.len(), packets.len());
    }
}

#[test]
fn start_fails_cleanly_on_a_bad_namespace_fd() {
    let f = File::open("/dev/null").expect("open");
    let err = HostCapture::start(f.as_fd(), HostCaptureOptions::default(), |_: &HostPacket<'_>| {
        Ok(())
    })
    .expect_err("not a namespace");
    assert!(err.to_string().contains("setns"), "{err}");
}

#[test]
fn sink_error_ends_the_capture_and_is_reported() {
    in_netns("sink_error_ends_the_capture_and_is_reported", |ns| {
        let options = HostCaptureOptions {
            include_loopback: true,
            ..HostCaptureOptions::default()
        };
        let cap = HostCapture::start(ns.as_fd(), options, |_: &HostPacket<'_>| {
            Err(std::io::Error::other("disk full"))
        })
        .expect("start");
        let sock = UdpSocket::bind("[::1]:0").expect("bind");
        sock.send_to(b"x", "[::1]:9").expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        while cap.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!cap.is_running());
        let err = cap.stop().expect_err("sink error");
        assert_eq!(err.to_string(), "disk full");
    });
}

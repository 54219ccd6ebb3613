//! The NAT's share of fabric throughput: 1280-byte UDP packets per second through the same
//! lab shape with a plain fabric router and with a userspace NAT in its place, plus the
//! direct one-segment path, in one run. A measurement, not a check:
//!
//! `cargo test --release -p bedlab --test nat_throughput -- --ignored --nocapture`
//!
//! Target: a NAT hop costs under 20 % of the fabric's throughput (NAT / router >= 0.8). Best
//! and median of interleaved rounds are printed: this machine's load
//! varies.

use bedlab::lab::{Lab, LabOptions};
use bedlab::topology::{Host, Interface, NatPreset, NatSpec, Router, Segment, Topology};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const RX: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// `tx` on a LAN, `rx` on the internet, and between them `hop`: a router, a NAT, or nothing
/// (then `tx` sits on the internet segment too).
fn topology(hop: Option<Option<NatSpec>>) -> Topology {
    let b = Topology::builder("throughput")
        .segment(Segment::new("internet", "198.51.100.0/24".parse().unwrap()))
        .segment(Segment::new("lan", "10.0.1.0/24".parse().unwrap()))
        .host(Host::new("rx").interface(Interface::new("eth0", "internet", RX)));
    let b = match hop {
        None => b.host(Host::new("tx").interface(Interface::new(
            "eth0",
            "internet",
            Ipv4Addr::new(198, 51, 100, 2),
        ))),
        Some(nat) => {
            let mut r = Router::new("hop")
                .interface(Interface::new("lan", "lan", Ipv4Addr::new(10, 0, 1, 1)))
                .interface(Interface::new("wan", "internet", Ipv4Addr::new(198, 51, 100, 10)));
            r.nat = nat;
            let b =
                b.host(Host::new("tx").interface(Interface::new("eth0", "lan", Ipv4Addr::new(10, 0, 1, 2))));
            b.router(r)
        }
    };
    b.build().expect("a valid topology")
}

fn set_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: SO_RCVBUFFORCE reads an int; we pass a pointer to one and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Packets per second sent and received over `secs` through a fresh lab of `t`.
fn measure(t: Topology, secs: f64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let lab = Lab::build(
        t,
        LabOptions {
            out_dir: dir.path().join("out"),
            state_root: dir.path().join("state"),
            capture: false,
            run_id: None,
        },
    )
    .expect("building the lab");
    let rx = lab
        .netns("rx")
        .expect("rx")
        .run(|| UdpSocket::bind(SocketAddrV4::new(RX, 5000)))
        .expect("thread")
        .expect("bind");
    let tx = lab
        .netns("tx")
        .expect("tx")
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("thread")
        .expect("bind");
    set_rcvbuf(&rx, 8 << 20);
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let counter = {
        let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // 1252 bytes of payload: 1280-byte IPv4 packets.
    let payload = [0x5au8; 1252];
    let dst = SocketAddrV4::new(RX, 5000);
    // Warm up (ARP-free TUNs, but the NAT's mapping and the caches).
    for _ in 0..100 {
        let _ = tx.send_to(&payload, dst);
    }
    std::thread::sleep(Duration::from_millis(200));
    received.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            if tx.send_to(&payload, dst).is_ok() {
                sent += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    counter.join().expect("counter thread");
    let got = received.load(Ordering::Relaxed);
    drop(lab);
    (sent as f64 / elapsed, got as f64 / elapsed)
}

#[test]
#[ignore = "a measurement, not a check: run by hand in release mode"]
fn nat_share_of_fabric_throughput() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let secs = 3.0;
    let rounds = 5;
    let mut all: [Vec<f64>; 3] = Default::default();
    let names = [
        "direct (one segment)",
        "via a fabric router",
        "via a userspace NAT",
    ];
    for round in 0..rounds {
        // Interleaved, so that a busy moment of the machine hits every variant alike.
        let variants = [
            topology(None),
            topology(Some(None)),
            topology(Some(Some(NatSpec::preset("wan", NatPreset::PortRestrictedCone)))),
        ];
        for (i, t) in variants.into_iter().enumerate() {
            let (sent, recv) = measure(t, secs);
            println!(
                "round {round}: {:<22} sent {sent:>9.0} pps, received {recv:>9.0} pps ({:.0} Mbit/s)",
                names[i],
                recv * 1280.0 * 8.0 / 1e6
            );
            all[i].push(recv);
        }
    }
    let best = all.clone().map(|v| v.into_iter().fold(0f64, f64::max));
    let median = all.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    println!("1280-byte UDP, {rounds} rounds x {secs} s, received pps (best / median):");
    for i in 0..3 {
        println!("  {:<22} {:>9.0} / {:>9.0}", names[i], best[i], median[i]);
    }
    for (label, v) in [("best", best), ("median", median)] {
        println!(
            "  {label:<6} NAT / router: {:.2}   NAT / direct: {:.2}   router / direct: {:.2}",
            v[2] / v[1],
            v[2] / v[0],
            v[1] / v[0]
        );
    }
    assert!(best.iter().all(|&p| p > 0.0));
}

//! Lab benchmarks (root only; a plain `harness = false` main that prints tables):
//!
//! - `bringup`: `Lab::build` and `Lab::teardown` wall time for 10, 100 and 1000 hosts (N hosts
//!   on four /16 segments joined by one fabric router), with and without capture, plus the
//!   bench process's RSS per node and the machine's memory per node (MemAvailable).
//! - `breakdown`: the same steps `Lab::build` and teardown take, timed one by one with the
//!   same public building blocks (namespace creation, TUN + sysctl + rtnetlink inside, host
//!   capture threads, fabric start; then capture stop, fabric stop, closing the TUNs,
//!   dropping the namespaces), and two alternatives for the slowest step.
//! - `fabric`: 1280-byte UDP packets/s and throughput over one fabric hop next to a veth pair
//!   between two namespaces in the same run, and the latency one hop adds (UDP ping-pong,
//!   median and p99).
//!
//! `cargo bench --bench lab` runs everything; name sections to run only those
//! (`cargo bench --bench lab -- fabric`); `BENCH_SIZES=10,100` overrides the node counts.
//! Every row shows the 1-minute load average when it was taken.

use bedlab::capture::host::pcapng_sink;
use bedlab::capture::{CaptureFile, HostCapture, HostCaptureOptions, ShbInfo};
use bedlab::fabric::{self, Fabric, FabricRunner, IfaceId};
use bedlab::lab::{Lab, LabOptions};
use bedlab::netns::NetNs;
use bedlab::topology::{Host, Interface, Router, Segment, Topology};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "?".into())
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mem_available_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemAvailable:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// N hosts spread over four /16 segments, one fabric router joining the segments.
fn topology(n: usize) -> Topology {
    let segs = 4u8;
    let mut b = Topology::builder(format!("bench-{n}"))
        .seed(1)
        .description(format!("{n} hosts on 4 segments"));
    let mut core = Router::new("core");
    for s in 0..segs {
        b = b.segment(Segment::new(
            format!("seg{s}"),
            format!("10.{s}.0.0/16").parse().unwrap(),
        ));
        core = core.interface(Interface::new(
            format!("r{s}"),
            format!("seg{s}"),
            Ipv4Addr::new(10, s, 255, 254),
        ));
    }
    b = b.router(core);
    for i in 0..n {
        let s = (i % segs as usize) as u8;
        let j = i / segs as usize;
        let addr = Ipv4Addr::new(10, s, (j / 250) as u8, (j % 250 + 1) as u8);
        b = b.host(Host::new(format!("h{i}")).interface(Interface::new("eth0", format!("seg{s}"), addr)));
    }
    b.build().expect("bench topology")
}

fn options(dir: &std::path::Path, capture: bool) -> LabOptions {
    LabOptions {
        out_dir: dir.join("out"),
        state_root: dir.join("state"),
        capture,
        run_id: None,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000])
}

fn bench_bringup() {
    println!("\n## bring-up and teardown (Lab::build / Lab::teardown), median of the runs");
    println!(
        "| hosts | capture | runs | up ms | down ms | up+down ms | RSS/node KiB | machine mem/node KiB | threads | load |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes() {
        let t = topology(n);
        for capture in [false, true] {
            let runs = if n >= 1000 { 1 } else { 3 };
            let (mut ups, mut downs, mut rss, mut machine, mut threads) = (vec![], vec![], vec![], vec![], 0);
            for _ in 0..runs {
                let dir = tempfile::tempdir().unwrap();
                let (rss0, avail0) = (status_kb("VmRSS:"), mem_available_kb());
                let t0 = Instant::now();
                let lab = Lab::build(t.clone(), options(dir.path(), capture)).expect("build");
                ups.push(ms(t0.elapsed()));
                rss.push((status_kb("VmRSS:").saturating_sub(rss0)) as f64 / n as f64);
                machine.push(avail0.saturating_sub(mem_available_kb()) as f64 / n as f64);
                threads = status_kb("Threads:");
                let t1 = Instant::now();
                lab.teardown().expect("teardown");
                downs.push(ms(t1.elapsed()));
            }
            let (u, d) = (median(ups), median(downs));
            println!(
                "| {n} | {} | {runs} | {u:.0} | {d:.0} | {:.0} | {:.1} | {:.0} | {threads} | {} |",
                if capture { "on" } else { "off" },
                u + d,
                median(rss),
                median(machine),
                load()
            );
        }
    }
}

/// One uplink as `Lab::build` makes it (TUN, IPv6 off, up with MTU, address, default route),
/// inside the calling thread's namespace, timing each step into `t`.
fn uplink(addr: Ipv4Addr, gw: Ipv4Addr, persist: bool, t: &mut [Duration; 5]) -> io::Result<OwnedFd> {
    use sixbed4::sys::{netlink::Netlink, sysctl, tun::Tun};
    let s = Instant::now();
    let mut nl = Netlink::open()?;
    let tun = Tun::create("eth0")?;
    if persist {
        // SAFETY: TUNSETPERSIST takes an int argument on an open TUN descriptor.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    t[0] += s.elapsed();
    let s = Instant::now();
    sysctl::disable_ipv6(tun.name(), true)?;
    t[1] += s.elapsed();
    let s = Instant::now();
    nl.set_link_up(tun.ifindex(), Some(1500))?;
    t[2] += s.elapsed();
    let s = Instant::now();
    nl.add_address_v4(tun.ifindex(), addr, 16)?;
    t[3] += s.elapsed();
    let s = Instant::now();
    nl.add_route_v4(tun.ifindex(), Ipv4Addr::UNSPECIFIED, 0, Some(gw))?;
    t[4] += s.elapsed();
    Ok(tun.into())
}

fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Namespaces with one uplink each; returns them with the TUN descriptors and the time of
/// namespace creation and of the uplink steps.
#[allow(clippy::type_complexity)]
fn make_hosts(n: usize, persist: bool) -> (Vec<NetNs>, Vec<OwnedFd>, Duration, Duration, [Duration; 5]) {
    let t0 = Instant::now();
    let nss: Vec<NetNs> = (0..n).map(|_| NetNs::create().expect("namespace")).collect();
    let create = t0.elapsed();
    let mut steps = [Duration::ZERO; 5];
    let t1 = Instant::now();
    let gw = Ipv4Addr::new(10, 0, 255, 254);
    let tuns: Vec<OwnedFd> = nss
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let (fd, t) = ns
                .run(|| {
                    let mut t = [Duration::ZERO; 5];
                    (uplink(host_addr(i), gw, persist, &mut t).expect("uplink"), t)
                })
                .expect("thread");
            for (a, b) in steps.iter_mut().zip(t) {
                *a += b;
            }
            fd
        })
        .collect();
    (nss, tuns, create, t1.elapsed(), steps)
}

fn fabric_for(n: usize) -> Fabric {
    let spec = fabric::FabricSpec {
        seed: 1,
        segments: vec![fabric::SegmentSpec {
            name: "seg".into(),
            subnet: (Ipv4Addr::new(10, 0, 0, 0), 16),
            subnet6: None,
        }],
        nodes: (0..n)
            .map(|i| fabric::NodeSpec {
                name: format!("h{i}"),
                kind: fabric::NodeKind::External,
                interfaces: vec![fabric::IfaceSpec {
                    name: "eth0".into(),
                    segment: 0,
                    address: host_addr(i),
                    gateway: None,
                    mtu: 1500,
                    egress: fabric::Impairment::default(),
                    ingress: fabric::Impairment::default(),
                    aliases: Vec::new(),
                    address6: None,
                    gateway6: None,
                }],
            })
            .collect(),
    };
    Fabric::new(spec).expect("fabric")
}

fn bench_breakdown() {
    println!("\n## where bring-up and teardown time goes (ms for all hosts; per host in parentheses)");
    for n in sizes().into_iter().filter(|&n| n >= 100) {
        let dir = tempfile::tempdir().unwrap();
        let load0 = load();
        let (nss, tuns, create, uplinks, steps) = make_hosts(n, false);
        let file = CaptureFile::create(&dir.path().join("c.pcapng"), ShbInfo::bedlab(vec![])).unwrap();
        let t = Instant::now();
        let caps: Vec<HostCapture> = nss
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                HostCapture::start(
                    ns.as_fd(),
                    HostCaptureOptions::default(),
                    pcapng_sink(file.clone(), &format!("h{i}")),
                )
                .expect("capture")
            })
            .collect();
        let captures = t.elapsed();
        let t = Instant::now();
        let handle = FabricRunner::new(fabric_for(n))
            .tuns(
                tuns.into_iter()
                    .enumerate()
                    .map(|(i, fd)| (IfaceId::new(i, 0), fd)),
            )
            .spawn()
            .expect("fabric");
        let fabric_start = t.elapsed();

        let t = Instant::now();
        for c in caps {
            let _ = c.stop();
        }
        let capture_stop = t.elapsed();
        let t = Instant::now();
        let stopped = handle.stop().expect("stop");
        let fabric_stop = t.elapsed();
        let t = Instant::now();
        drop(stopped);
        let close_tuns = t.elapsed();
        let t = Instant::now();
        drop(nss);
        let drop_ns = t.elapsed();

        let row = |what: &str, d: Duration| {
            println!("| {n} | {what} | {:.1} | ({:.3}) |", ms(d), ms(d) / n as f64);
        };
        println!("\n| hosts | step | ms | ms/host |\n|---:|---|---:|---:|");
        row("create namespaces (thread + unshare + lo up)", create);
        row("uplinks, total (thread + setns + the steps below)", uplinks);
        row("  - open netlink + TUN create", steps[0]);
        row("  - sysctl disable_ipv6", steps[1]);
        row("  - link up + MTU", steps[2]);
        row("  - address", steps[3]);
        row("  - default route", steps[4]);
        row("start host capture threads", captures);
        row("start fabric (spec + epoll + thread)", fabric_start);
        row("stop host captures", capture_stop);
        row("stop fabric thread", fabric_stop);
        row("close the TUN descriptors (one by one)", close_tuns);
        row("drop the namespace descriptors", drop_ns);
        println!("(load {load0} before, {} after)", load());

        // Alternatives for closing the TUNs.
        let (nss, tuns, ..) = make_hosts(n, false);
        let t = Instant::now();
        let chunks: Vec<Vec<OwnedFd>> = {
            let mut v: Vec<Vec<OwnedFd>> = (0..16).map(|_| Vec::new()).collect();
            for (i, fd) in tuns.into_iter().enumerate() {
                v[i % 16].push(fd);
            }
            v
        };
        std::thread::scope(|s| {
            for c in chunks {
                s.spawn(move || drop(c));
            }
        });
        let parallel = t.elapsed();
        drop(nss);
        let (nss, tuns, ..) = make_hosts(n, true);
        let t = Instant::now();
        drop(tuns);
        let persist_close = t.elapsed();
        let t = Instant::now();
        drop(nss);
        let persist_drop = t.elapsed();
        // Host captures stopped from 16 threads at once.
        let (nss, tuns, ..) = make_hosts(n, true);
        let caps: Vec<HostCapture> = nss
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                HostCapture::start(
                    ns.as_fd(),
                    HostCaptureOptions::default(),
                    pcapng_sink(file.clone(), &format!("h{i}")),
                )
                .expect("capture")
            })
            .collect();
        let t = Instant::now();
        let mut chunks: Vec<Vec<HostCapture>> = (0..16).map(|_| Vec::new()).collect();
        for (i, c) in caps.into_iter().enumerate() {
            chunks[i % 16].push(c);
        }
        std::thread::scope(|s| {
            for c in chunks {
                s.spawn(move || {
                    for cap in c {
                        let _ = cap.stop();
                    }
                });
            }
        });
        let captures_parallel = t.elapsed();
        drop(tuns);
        drop(nss);
        println!("\n| hosts | alternative teardown | ms | ms/host |\n|---:|---|---:|---:|");
        row("stop the host captures from 16 threads", captures_parallel);
        row("close the TUNs from 16 threads", parallel);
        row("persistent TUNs: close descriptors", persist_close);
        row(
            "persistent TUNs: then drop the namespaces (kernel destroys in the background)",
            persist_drop,
        );
        println!("(load {})", load());
        let tuns_in_root = Command::new("ip")
            .args(["-o", "link", "show", "type", "tun"])
            .output()
            .unwrap();
        assert!(
            tuns_in_root.stdout.is_empty(),
            "no TUN may end up in the root namespace"
        );
    }
}

/// A UDP blast of 1252-byte payloads (1280-byte IPv4 packets) from `tx` to `dst` for `secs`;
/// (sent pps, received pps).
fn blast(tx: &UdpSocket, rx: UdpSocket, dst: SocketAddrV4, secs: f64) -> (f64, f64) {
    set_rcvbuf(&rx);
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    rx.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
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
    let payload = [0x5au8; 1252];
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
    counter.join().unwrap();
    (
        sent as f64 / elapsed,
        received.load(Ordering::Relaxed) as f64 / elapsed,
    )
}

fn set_rcvbuf(s: &UdpSocket) {
    let bytes: libc::c_int = 8 << 20;
    // SAFETY: SO_RCVBUFFORCE reads one int from the pointer we pass with its size.
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

/// UDP ping-pong RTTs in µs (64-byte payload), after a warm-up.
fn pingpong(client: UdpSocket, server: UdpSocket, dst: SocketAddrV4, rounds: usize) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    server.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let echo = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..n], from);
                }
            }
        })
    };
    client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 256];
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..rounds + 1000 {
        let t = Instant::now();
        client.send_to(&[7u8; 64], dst).unwrap();
        if client.recv(&mut buf).is_ok() && i >= 1000 {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rtts
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn in_ns<R: Send>(ns: &NetNs, f: impl FnOnce() -> R + Send) -> R {
    ns.run(f).expect("thread in namespace")
}

fn run_in(ns: &NetNs, argv: &[&str]) {
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: only setns between fork and exec.
    unsafe {
        cmd.pre_exec(move || bedlab::netns::setns(fd));
    }
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair, 10.9.0.1 and 10.9.0.2.
fn veth_pair() -> (NetNs, NetNs) {
    let (va, vb) = (NetNs::create().unwrap(), NetNs::create().unwrap());
    // `ip link ... netns` wants a pid: a short-lived process inside vb.
    let fd = vb.as_raw_fd();
    let mut holder = Command::new("sleep");
    holder.arg("30");
    // SAFETY: only setns and prctl between fork and exec.
    unsafe {
        holder.pre_exec(move || {
            bedlab::netns::setns(fd)?;
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut holder = holder.spawn().unwrap();
    let pid = holder.id().to_string();
    run_in(
        &va,
        &[
            "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &pid,
        ],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    run_in(&va, &["ip", "addr", "add", "10.9.0.1/24", "dev", "va"]);
    run_in(&va, &["ip", "link", "set", "va", "up"]);
    run_in(&vb, &["ip", "addr", "add", "10.9.0.2/24", "dev", "vb"]);
    run_in(&vb, &["ip", "link", "set", "vb", "up"]);
    (va, vb)
}

fn bench_fabric() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rounds = 20_000;
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let one_hop = Topology::builder("hop")
        .segment(Segment::new("net", "10.0.0.0/24".parse().unwrap()))
        .host(Host::new("a").interface(Interface::new("eth0", "net", a)))
        .host(Host::new("b").interface(Interface::new("eth0", "net", b)))
        .build()
        .unwrap();
    println!("\n## one hop: fabric (Lab, two TUNs and the epoll loop) next to a veth pair");
    println!("1280-byte UDP packets, {secs} s per row; ping-pong: 64-byte UDP, {rounds} round trips\n");
    println!("| path | sent pps | received pps | received Mbit/s | RTT median µs | RTT p99 µs | load |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for (label, capture, tapped, secs) in [
        ("fabric", false, false, secs),
        ("fabric, capture on", true, false, secs.min(1.0)),
        ("fabric, tap on b/eth0, read", false, true, secs),
        ("fabric, capture on, tap on b/eth0", true, true, secs.min(1.0)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::build(one_hop.clone(), options(dir.path(), capture)).unwrap();
        // A live tap (what packet waits use) with a reader draining it.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = tapped.then(|| {
            let tap = lab.tap(&["b/eth0"], 65_536, 512).unwrap();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if tap
                        .next(std::time::Instant::now() + Duration::from_millis(50))
                        .is_some()
                    {
                        n += 1;
                    }
                }
                (n, tap.overflowed())
            })
        });
        let rx = in_ns(lab.netns("b").unwrap(), || {
            UdpSocket::bind(SocketAddrV4::new(b, 5000))
        })
        .unwrap();
        let tx = in_ns(lab.netns("a").unwrap(), || {
            UdpSocket::bind(SocketAddrV4::new(a, 0))
        })
        .unwrap();
        let (s, r) = blast(&tx, rx, SocketAddrV4::new(b, 5000), secs);
        let server = in_ns(lab.netns("b").unwrap(), || {
            UdpSocket::bind(SocketAddrV4::new(b, 5001))
        })
        .unwrap();
        let rtts = pingpong(tx, server, SocketAddrV4::new(b, 5001), rounds);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some((n, lost)) = reader.and_then(|r| r.join().ok()) {
            eprintln!("{label}: the tap's reader took {n} packets, {lost} overflowed");
        }
        lab.teardown().unwrap();
        let row = (s, r, pct(&rtts, 0.5), pct(&rtts, 0.99));
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            row.0,
            row.1,
            row.1 * 1280.0 * 8.0 / 1e6,
            row.2,
            row.3,
            load()
        );
        results.push(row);
    }
    let (va, vb) = veth_pair();
    let rx = in_ns(&vb, || UdpSocket::bind("10.9.0.2:5000")).unwrap();
    let tx = in_ns(&va, || UdpSocket::bind("10.9.0.1:0")).unwrap();
    let (s, r) = blast(&tx, rx, "10.9.0.2:5000".parse().unwrap(), secs);
    let server = in_ns(&vb, || UdpSocket::bind("10.9.0.2:5001")).unwrap();
    let rtts = pingpong(tx, server, "10.9.0.2:5001".parse().unwrap(), rounds);
    let veth = (s, r, pct(&rtts, 0.5), pct(&rtts, 0.99));
    println!(
        "| veth | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
        veth.0,
        veth.1,
        veth.1 * 1280.0 * 8.0 / 1e6,
        veth.2,
        veth.3,
        load()
    );
    drop((va, vb));
    let f = results[0];
    println!("\nfabric / veth, received packets: {:.2}", f.1 / veth.1);
    println!(
        "latency the fabric adds per round trip (two crossings of the hop): median {:.1} µs, p99 {:.1} µs; per crossing: median {:.1} µs",
        f.2 - veth.2,
        f.3 - veth.3,
        (f.2 - veth.2) / 2.0
    );
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("lab benchmarks need root (namespaces and TUN devices): skipped");
        return;
    }
    raise_nofile();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| wanted.is_empty() || wanted.iter().any(|w| w == s);
    println!(
        "# bedlab lab benchmarks ({} CPUs, load {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    );
    if want("bringup") {
        bench_bringup();
    }
    if want("breakdown") {
        bench_breakdown();
    }
    if want("fabric") {
        bench_fabric();
    }
}

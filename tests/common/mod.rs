//! Helpers shared by the lab integration tests (`tests/lab_*.rs`).
//!
//! Every lab a test builds lives under its own temporary directory (artifacts and run
//! records), so tests run in parallel and never touch `/run/bedlab`. UDP traffic is sent and
//! received by sockets opened *inside* the lab's namespaces (`NetNs::run`), so no helper
//! program (socat, nc, python) is needed; ICMP uses the system `ping` through `Lab::exec`.
#![allow(dead_code)]

use bedlab::fabric::Stats;
use bedlab::lab::{Lab, LabOptions};
use bedlab::topology::{Node, Topology};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether the tests can build labs (root). Tests that need it print why they skip and pass.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `return`s from the calling test (passing it) with a reason unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            eprintln!("skipped: building a lab needs root (network namespaces and TUN devices)");
            return;
        }
    };
}

/// Options for a lab living entirely under `dir`.
pub fn opts(dir: &Path, capture: bool) -> LabOptions {
    LabOptions {
        out_dir: dir.join("out"),
        state_root: dir.join("state"),
        capture,
        run_id: None,
    }
}

/// A shipped topology file.
pub fn topology_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(format!("{name}.toml"))
}

/// Every shipped topology file name (without `.toml`), sorted.
pub fn shipped_topologies() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("topologies/ exists")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(String::from))
        .collect();
    names.sort();
    names
}

pub fn sv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ping -c <count> -i 0.2 -W 1 <extra...> <dst>` inside `node`: (success, output).
pub fn ping(lab: &Lab, node: &str, dst: Ipv4Addr, count: u32, extra: &[&str]) -> (bool, String) {
    let mut argv = sv(&["ping", "-n", "-c", &count.to_string(), "-i", "0.2", "-W", "1"]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push(dst.to_string());
    let out = lab.exec(node, &argv).expect("run ping");
    (out.status.success(), text(&out))
}

/// The `time=` values (ms) of ping's reply lines.
pub fn ping_times(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

/// A UDP socket bound to `addr` inside `node`'s namespace.
pub fn udp_in(lab: &Lab, node: &str, addr: SocketAddrV4) -> UdpSocket {
    lab.netns(node)
        .expect("a namespace node")
        .run(move || UdpSocket::bind(addr))
        .expect("thread in the namespace")
        .unwrap_or_else(|e| panic!("bind {addr} in {node}: {e}"))
}

/// Asks the kernel for a big receive buffer (root may exceed rmem_max), so bursts in the
/// measurements are not lost in the socket rather than in the fabric.
pub fn big_rcvbuf(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
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

/// The port of every [`EchoServers`] socket.
pub const ECHO_PORT: u16 = 7;

/// A UDP echo server in each of a lab's namespaces, on [`ECHO_PORT`]. Each reply is the
/// request followed by `|from=<source address the server saw>`, so a client learns how it
/// looked from the far side (its NAT's external address, behind a NAT).
pub struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    pub fn start(lab: &Lab, nodes: &[String]) -> EchoServers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for node in nodes {
            let sock = udp_in(lab, node, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ECHO_PORT));
            sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let mut reply = buf[..n].to_vec();
                        reply.extend_from_slice(format!("|from={from}").as_bytes());
                        let _ = sock.send_to(&reply, from);
                    }
                }
            }));
        }
        EchoServers { stop, threads }
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends `payload` to `dst`'s echo server from `sock` up to `tries` times (waiting `wait` for
/// each reply); returns the source address the server saw, or `None` if no reply came.
pub fn echo(
    sock: &UdpSocket,
    dst: Ipv4Addr,
    payload: &str,
    tries: u32,
    wait: Duration,
) -> Option<SocketAddr> {
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..tries {
        sock.send_to(payload.as_bytes(), SocketAddrV4::new(dst, ECHO_PORT))
            .ok()?;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let reply = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Some(seen) = reply.strip_prefix(payload).and_then(|r| r.strip_prefix("|from=")) {
                    return seen.parse().ok();
                }
            }
        }
    }
    None
}

/// Per link end: (packets sent, packets delivered).
pub type Counts = BTreeMap<String, (u64, u64)>;

pub fn counts(stats: &Stats) -> Counts {
    stats
        .links
        .iter()
        .map(|l| (l.name.clone(), (l.stats.sent_packets, l.stats.delivered_packets)))
        .collect()
}

/// `after - before` per link end.
pub fn delta(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, &(s, d))| {
            let (s0, d0) = before.get(k).copied().unwrap_or((0, 0));
            (k.clone(), (s - s0, d - d0))
        })
        .collect()
}

/// The link ends (`node/iface`) a packet from `src` (a host) to `dst` crosses, in order,
/// following the topology's own rules: on-link destinations go to their owner, others to
/// the host's gateway; routers (NATs included) forward by longest prefix over their connected
/// subnets and routes. Stops at the owner of `dst` (a host, or a router's own address, or a
/// NAT's external address). `None` if there is no path.
pub fn path(t: &Topology, src: &str, dst: Ipv4Addr) -> Option<Vec<String>> {
    let node = t.node(src)?;
    let iface = node
        .interfaces()
        .iter()
        .find(|i| t.segment(&i.segment).is_some_and(|s| s.subnet.contains(dst)))
        .or_else(|| {
            node.interfaces()
                .iter()
                .find(|i| t.gateway_of(src, &i.name).is_some())
        })?;
    let mut hops = vec![format!("{src}/{}", iface.name)];
    let mut seg = iface.segment.clone();
    let mut target = if t.segment(&seg)?.subnet.contains(dst) {
        dst
    } else {
        t.gateway_of(src, &iface.name)?
    };
    for _ in 0..16 {
        let owner = t
            .attached_to(&seg)
            .find(|i| i.interface.address == target)
            .or_else(|| {
                let o = t.owner_of(target)?;
                (o.interface.segment == seg).then_some(o)
            })?;
        hops.push(format!("{}/{}", owner.node.name(), owner.interface.name));
        let Node::Router(r) = owner.node else {
            return Some(hops);
        };
        if owner.interface.address == dst || r.external_addresses().contains(&dst) {
            return Some(hops);
        }
        // Longest prefix: connected subnets first at equal length, then routes.
        let mut best: Option<(u8, &bedlab::topology::Interface, Ipv4Addr)> = None;
        for i in &r.interfaces {
            let net = t.segment(&i.segment)?.subnet;
            if net.contains(dst) && best.is_none_or(|b| net.prefix_len() > b.0) {
                best = Some((net.prefix_len(), i, dst));
            }
        }
        for rt in &r.routes {
            if rt.prefix.contains(dst) && best.is_none_or(|b| rt.prefix.prefix_len() > b.0) {
                let out = r
                    .interfaces
                    .iter()
                    .find(|i| t.segment(&i.segment).is_some_and(|s| s.subnet.contains(rt.via)))?;
                best = Some((rt.prefix.prefix_len(), out, rt.via));
            }
        }
        let (_, out, hop) = best?;
        hops.push(format!("{}/{}", r.name, out.name));
        seg = out.segment.clone();
        target = hop;
    }
    None
}

/// Whether a host reaches the internet only through a NAT: some router on its path to the
/// 6bed4 router (198.51.100.1) translates.
pub fn behind_nat(t: &Topology, host: &str) -> bool {
    let Some(p) = path(t, host, ROUTER_ADDR) else {
        return false;
    };
    p.iter().any(|hop| {
        let node = hop.split('/').next().unwrap_or("");
        t.routers.iter().any(|r| r.name == node && r.nat.is_some())
    })
}

/// The 6bed4 router host's address in every shipped topology.
pub const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The address of a host's first interface.
pub fn addr_of(t: &Topology, node: &str) -> Ipv4Addr {
    t.node(node).expect("node").interfaces()[0].address
}

/// Every network namespace alive on the machine, as inodes: those of every task
/// (`/proc/*/task/*/ns/net`: threads may sit in other namespaces than their process), of
/// every open namespace descriptor (`/proc/*/fd/*` -> `net:[N]`), and of every bind mount
/// under `/run/netns` (`ip netns`).
pub fn netns_inodes() -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return set;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(m) = std::fs::metadata(t.path().join("ns/net")) {
                    set.insert(m.ino());
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    if let Some(ino) = target
                        .to_str()
                        .and_then(|s| s.strip_prefix("net:["))
                        .and_then(|s| s.strip_suffix(']'))
                    {
                        if let Ok(ino) = ino.parse() {
                            set.insert(ino);
                        }
                    }
                }
            }
        }
    }
    if let Ok(named) = std::fs::read_dir("/run/netns") {
        for n in named.flatten() {
            if let Ok(m) = std::fs::metadata(n.path()) {
                set.insert(m.ino());
            }
        }
    }
    set
}

/// Pids holding any of `inodes` as a namespace of kind `kind` (`net`, `user`): as a
/// thread's namespace or through an open descriptor (zombies included).
pub fn ns_holders(kind: &str, inodes: &BTreeSet<u64>) -> Vec<u32> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let mut held = false;
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            held |=
                std::fs::metadata(t.path().join("ns").join(kind)).is_ok_and(|m| inodes.contains(&m.ino()));
        }
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            held |= std::fs::read_link(fd.path()).is_ok_and(|l| {
                l.to_str()
                    .and_then(|s| s.strip_prefix(&format!("{kind}:[")))
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse().ok())
                    .is_some_and(|ino: u64| inodes.contains(&ino))
            });
        }
        if held {
            out.push(pid);
        }
    }
    out
}

/// Pids of processes whose network namespace is one of `inodes`.
pub fn pids_in(inodes: &BTreeSet<u64>) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
            if inodes.contains(&m.ino()) && !is_zombie(pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3))
                .map(|st| st == "Z" || st == "X")
        })
        .unwrap_or(false)
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Runs a command in the root namespace and returns its stdout (panics on failure).
pub fn host_cmd(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The root namespace's interfaces (`ip -o link`, names and indexes only) and routes (all
/// tables, both families): what a lab must never change.
pub fn root_network_state() -> (BTreeSet<String>, String, String) {
    let links = host_cmd(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let index = f.next()?;
            let name = f.next()?;
            Some(format!("{index}:{name}"))
        })
        .collect();
    let v4 = host_cmd(&["ip", "-4", "route", "show", "table", "all"]);
    let v6 = host_cmd(&["ip", "-6", "route", "show", "table", "all"]);
    (links, v4, v6)
}

/// TUN devices in the root namespace.
pub fn root_tuns() -> String {
    host_cmd(&["ip", "-o", "link", "show", "type", "tun"])
}

/// Waits for `cond` with a deadline (polling); the condition's last value.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    Lab::wait_for(timeout, cond)
}

/// Seed for randomised tests: `BEDLAB_TEST_SEED` if set, else from the clock. Printed, so a
/// failure can be reproduced.
pub fn test_seed(what: &str) -> u64 {
    let seed = std::env::var("BEDLAB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{what}: seed {seed} (rerun with BEDLAB_TEST_SEED={seed})");
    seed
}

/// Ignores `io::Error`s of kind `WouldBlock`/`TimedOut` (a read timeout) as `None`.
pub fn recv_timeout(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match sock.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Kills what a test leaves on the way out (above all when an assertion fails): the
/// children it started, then every process still in the namespaces it recorded, so even a
/// failing test leaves nothing behind.
pub struct Cleanup {
    pub children: Vec<std::process::Child>,
    pub inodes: BTreeSet<u64>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..5 {
            let pids = pids_in(&self.inodes);
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill has no memory-safety preconditions; p is in a run we made.
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

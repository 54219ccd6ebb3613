//! End-to-end: the project's own 6bed4 router and peers in Linux network namespaces.
//!
//! The test builds this topology itself (every namespace name carries a per-run prefix
//! `bl-e2e-<pid>-<n>-`, and a guard deletes them and stops every process, even on a panic):
//!
//! ```text
//!                          inet  (plain IPv4 forwarding: "the internet")
//!         198.51.100.254 /  203.0.113.1 |      203.0.113.17 |     \ 192.0.2.254
//!  router 198.51.100.1     nat-a .10/28 (wan)   nat-b .20/28 (wan)  peer-c 192.0.2.30
//!  `sixbed4 router`        10.0.1.1/24 (lan)    10.0.2.1/24 (lan)   (no NAT)
//!                          peer-a 10.0.1.2      peer-b 10.0.2.2
//! ```
//!
//! Both NATs are Linux masquerade (nftables, postrouting) with an explicit port range, so the
//! external port always differs from the peer's local port: an address that embeds the local
//! port instead of the one the NAT really used cannot pass. nat-a maps into 20000-29999, nat-b
//! into 30000-32767 (the kernel's ephemeral ports start at 32768).
//!
//! Checks, per the first milestone: (a) every peer's address decodes (layout C, decoded here
//! independently of the sixbed4 library) to its external IPv4 and the port the NAT used,
//! cross-checked against `conntrack -L` in the NAT (or `ss` for the peer without NAT); (b) ping6
//! works between every pair of peers and between each peer and the router; (c) once both NATed
//! peers report `direct_up`, their echoes never cross the router (tcpdump on the router's
//! interface, pcap parsed here) but do cross the internet directly between the two NATs;
//! (d) after nat-a forgets its mappings (short UDP timeouts, `conntrack -F`, and a new port
//! range so the new mapping must differ), peer-a reports `address_changed` to an address that
//! decodes to its new mapping, and ping6 works again.
//!
//! Needs root (namespaces, nftables, TUN). Without root the namespace tests print why they
//! are skipped and pass. The tools come from Debian: `make deps` installs them.

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const SIXBED4: &str = env!("CARGO_BIN_EXE_sixbed4");
const ROUTER_PORT: u16 = 25790;
const NS_ROOT: &str = "bl-e2e-";

const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER_C_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
const NAT_A_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const NAT_B_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const PEER_A_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const PEER_B_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// External port ranges of the two NATs, and nat-a's range after its "reboot" in check (d).
const NAT_A_PORTS: (u16, u16) = (20000, 29999);
const NAT_A_PORTS_AFTER: (u16, u16) = (10000, 19999);
const NAT_B_PORTS: (u16, u16) = (30000, 32767);

/// Per-process counter so that two tests of one run get different namespace names.
static RUN: AtomicUsize = AtomicUsize::new(0);

// ------------------------------------------------------------------------------------------
// Running commands

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns false (after saying why) when the namespace tests cannot run here.
fn can_run_namespace_tests(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces, nftables, TUN); CI runs as root");
    false
}

/// Full path of a tool, looking in PATH and in the sbin directories a non-login PATH lacks.
fn tool(name: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
    for dir in dirs.filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate.to_string_lossy().into_owned();
        }
    }
    panic!(
        "`{name}` not found; `make deps` installs iproute2 nftables tcpdump conntrack \
         iputils-ping procps"
    );
}

/// Runs a command to completion. Ok(stdout) on exit 0, else Err with status and output.
fn run_with_input(argv: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(tool(argv[0]));
    cmd.args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {argv:?}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{argv:?}: stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{argv:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{}` failed ({}):\n{stdout}{stderr}",
            argv.join(" "),
            out.status
        ))
    }
}

fn run(argv: &[&str]) -> Result<String, String> {
    run_with_input(argv, None)
}

fn must(argv: &[&str]) -> String {
    run(argv).unwrap_or_else(|e| panic!("{e}"))
}

fn ns_run(ns: &str, argv: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(argv);
    run(&full)
}

fn ns_must(ns: &str, argv: &[&str]) -> String {
    ns_run(ns, argv).unwrap_or_else(|e| panic!("{e}"))
}

fn sysctl(ns: &str, key: &str, value: &str) {
    ns_must(ns, &["sysctl", "-qw", &format!("{key}={value}")]);
}

fn nft(ns: &str, script: &str) {
    run_with_input(&["ip", "netns", "exec", ns, "nft", "-f", "-"], Some(script))
        .unwrap_or_else(|e| panic!("nft in {ns}: {e}\nscript:\n{script}"));
}

/// Polls `check` every 50 ms until it returns Some or the deadline passes.
fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may contain spaces.
    match stat.rsplit_once(')') {
        Some((_, rest)) => !rest.trim_start().starts_with('Z'),
        None => false,
    }
}

/// SIGTERM, up to 3 s of grace, then SIGKILL; always reaps.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Deletes a namespace after killing whatever still runs inside it.
fn delete_namespace(ns: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<libc::pid_t>().ok())
        {
            // SAFETY: kill(2); the process lives in a namespace this test run created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = run(&["ip", "netns", "del", ns]);
}

fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    run(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Removes namespaces left by an earlier test process that was killed (its pid is gone), and
/// the logs that failed earlier runs kept.
fn reap_stale_namespaces() {
    if let Ok(entries) = fs::read_dir(env!("CARGO_TARGET_TMPDIR")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .strip_prefix(NS_ROOT)
                .and_then(|rest| rest.split('-').next()?.parse().ok());
            if owner.is_some_and(|pid: u32| !pid_alive(pid)) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    for ns in namespaces_with_prefix(NS_ROOT) {
        let owner = ns[NS_ROOT.len()..]
            .split('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|pid| !pid_alive(pid)) {
            eprintln!("reaping namespace {ns} left by a killed earlier run");
            delete_namespace(&ns);
        }
    }
}

// ------------------------------------------------------------------------------------------
// The lab guard: namespaces and processes, always cleaned up

/// Owns every namespace and process of one test. Dropping it (also while panicking) stops
/// the processes, then deletes the namespaces; veth and TUN devices go with them.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        reap_stale_namespaces();
        let n = RUN.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{NS_ROOT}{}-{n}-", std::process::id());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(prefix.trim_end_matches('-'));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        }
    }

    /// Creates namespace `<prefix><role>` with loopback up.
    fn namespace(&mut self, role: &str) -> String {
        let ns = format!("{}{role}", self.prefix);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Starts `argv` inside `ns`; stderr goes to `<dir>/<name>.stderr`.
    fn spawn(&mut self, ns: &str, name: &str, argv: &[&str], stdout: Stdio) -> Child {
        let log = self.dir.join(format!("{name}.stderr"));
        let err = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(err);
        // If this test process is killed outright, its daemons die with it (`ip netns exec`
        // execs the command, which keeps the parent-death signal).
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({argv:?}): {e}"))
    }

    /// Starts a sixbed4 daemon with `--events json` and collects its events.
    fn daemon(&mut self, ns: &str, name: &str, args: &[&str]) -> Daemon {
        let mut argv = vec![SIXBED4];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--events", "json"]);
        eprintln!("[{name}] starting: {}", argv.join(" "));
        let mut child = self.spawn(ns, name, &argv, Stdio::piped());
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.push((name.to_owned(), child));
        let daemon = Daemon {
            name: name.to_owned(),
            log: Arc::new((Mutex::new(EventLog::default()), Condvar::new())),
        };
        let reader = daemon.clone();
        std::thread::spawn(move || reader.read_events(BufReader::new(stdout)));
        daemon
    }

    /// Starts tcpdump inside `ns` on `iface`, writing `<dir>/<name>.pcap`; returns once
    /// tcpdump says it is listening.
    fn capture(&mut self, ns: &str, iface: &str, name: &str, filter: &str) -> Capture {
        let file = self.dir.join(format!("{name}.pcap"));
        let path = file.to_string_lossy().into_owned();
        let tcpdump = tool("tcpdump");
        let argv = [
            &tcpdump, "-i", iface, "-n", "-U", "-Z", "root", "-w", &path, filter,
        ];
        let child = self.spawn(ns, name, &argv, Stdio::null());
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        let log = self.dir.join(format!("{name}.stderr"));
        poll(
            &format!("tcpdump {name} to listen"),
            Duration::from_secs(10),
            || {
                let text = fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    pid_alive(pid) || text.contains("listening"),
                    "tcpdump {name} died: {text}"
                );
                text.contains("listening on").then_some(())
            },
        );
        Capture { pid, file }
    }

    /// Stops a capture and returns its packets.
    fn stop_capture(&mut self, capture: &Capture) -> Vec<Datagram> {
        if let Some(index) = self.children.iter().position(|(_, c)| c.id() == capture.pid) {
            let (_, mut child) = self.children.remove(index);
            terminate(&mut child);
        }
        capture.datagrams()
    }

    fn dump_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "stderr") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("----- {} (last {} lines) -----", path.display(), tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for (_, child) in &mut self.children {
            terminate(child);
        }
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
        // Logs and captures stay for a failed run only.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Daemon events

#[derive(Default)]
struct EventLog {
    events: Vec<Value>,
    closed: bool,
}

/// A handle on one daemon's `--events json` stream.
#[derive(Clone)]
struct Daemon {
    name: String,
    log: Arc<(Mutex<EventLog>, Condvar)>,
}

impl Daemon {
    fn read_events(&self, stdout: impl BufRead) {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let parsed = serde_json::from_str::<Value>(&line);
            let (lock, cv) = &*self.log;
            let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
            match parsed {
                Ok(value) if value.get("event").is_some() => {
                    eprintln!("[{}] {line}", self.name);
                    log.events.push(value);
                }
                _ => eprintln!("[{}] not an event line on stdout: {line}", self.name),
            }
            cv.notify_all();
        }
        let (lock, cv) = &*self.log;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_all();
    }

    /// Waits for the first event that satisfies `pred`.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_driving(what, timeout, pred, || {})
    }

    /// Waits for an event that satisfies `pred`, calling `drive` (which makes traffic) about
    /// once a second while nothing matches.
    fn wait_driving(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
        mut drive: impl FnMut(),
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let (lock, cv) = &*self.log;
                let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
                let slice_end = (Instant::now() + Duration::from_secs(1)).min(deadline);
                loop {
                    if let Some(event) = log.events.iter().find(|e| pred(e)) {
                        return event.clone();
                    }
                    assert!(!log.closed, "{} exited while we waited for {what}", self.name);
                    let now = Instant::now();
                    assert!(
                        now < deadline,
                        "{}: no {what} within {timeout:?}; its events: {:?}",
                        self.name,
                        log.events
                    );
                    if now >= slice_end {
                        break;
                    }
                    log = cv
                        .wait_timeout(log, slice_end - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            drive();
        }
    }

    fn events_named(&self, name: &str) -> Vec<Value> {
        let log = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
        log.events
            .iter()
            .filter(|e| e["event"] == name)
            .cloned()
            .collect()
    }
}

fn is_event(event: &Value, name: &str) -> bool {
    event["event"] == name
}

fn field<T: std::str::FromStr>(event: &Value, key: &str) -> T {
    event[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("event {event} lacks a valid `{key}`"))
}

// ------------------------------------------------------------------------------------------
// Layout C (spec §2.1), decoded here on purpose without the sixbed4 library

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LayoutC {
    prefix: [u8; 8],
    ipv4: Ipv4Addr,
    port: u16,
    lanip: u16,
}

fn decode_layout_c(address: Ipv6Addr) -> LayoutC {
    let b = address.octets();
    let mut prefix = [0; 8];
    prefix.copy_from_slice(&b[..8]);
    LayoutC {
        prefix,
        ipv4: Ipv4Addr::new((b[8] & 0xFC) | (b[14] >> 6), b[9], b[10], b[11]),
        port: u16::from_be_bytes([b[12], b[13]]),
        lanip: (u16::from(b[14] & 0x3F) << 8) | u16::from(b[15]),
    }
}

fn prefix_of(prefix: &str) -> [u8; 8] {
    let (net, len) = prefix.split_once('/').unwrap_or((prefix, "64"));
    assert_eq!(len, "64", "router prefix {prefix} is not a /64");
    let net: Ipv6Addr = net
        .parse()
        .unwrap_or_else(|e| panic!("router prefix {prefix}: {e}"));
    let mut out = [0; 8];
    out.copy_from_slice(&net.octets()[..8]);
    out
}

#[test]
fn layout_c_decoder_matches_the_spec_vectors() {
    let cases = [
        ("fc64:bed:9188:1:9088:2:d9f4:4001", "145.136.0.2", 55796, 1),
        ("fc64:bed:9188:1:9088:1:64be:4000", "145.136.0.1", 25790, 0),
        ("2001:db8:6bed:4:c800:7107:9c40:c001", "203.0.113.7", 40000, 1),
        (
            "2001:db8:6bed:4:c433:64fe:ffff:bfff",
            "198.51.100.254",
            65535,
            16383,
        ),
        ("2001:db8:6bed:4:c000:201:1:2", "192.0.2.1", 1, 2),
    ];
    for (address, ipv4, port, lanip) in cases {
        let decoded = decode_layout_c(address.parse().expect("vector address"));
        assert_eq!(
            decoded.ipv4,
            ipv4.parse::<Ipv4Addr>().expect("vector ipv4"),
            "{address}"
        );
        assert_eq!((decoded.port, decoded.lanip), (port, lanip), "{address}");
    }
    assert_eq!(
        prefix_of("fc64:bed:9188:1::/64"),
        [0xfc, 0x64, 0x0b, 0xed, 0x91, 0x88, 0, 1]
    );
}

// ------------------------------------------------------------------------------------------
// Captures: pcap files parsed down to the IPv6 packets inside UDP

/// One UDP/IPv4 datagram from a capture, with what its payload says as IPv6.
#[derive(Debug, Clone)]
struct Datagram {
    from: SocketAddrV4,
    to: SocketAddrV4,
    /// (source, destination, ICMPv6 type if the packet is ICMPv6) of the inner IPv6 packet.
    inner: Option<(Ipv6Addr, Ipv6Addr, Option<u8>)>,
}

impl Datagram {
    /// An ICMPv6 echo request or reply between `a` and `b` (either direction).
    fn is_echo_between(&self, a: Ipv6Addr, b: Ipv6Addr) -> bool {
        matches!(self.inner, Some((s, d, Some(128 | 129))) if (s, d) == (a, b) || (s, d) == (b, a))
    }
}

struct Capture {
    pid: u32,
    file: PathBuf,
}

impl Capture {
    fn datagrams(&self) -> Vec<Datagram> {
        let bytes = fs::read(&self.file).unwrap_or_default();
        parse_pcap(&bytes)
    }
}

/// Parses a classic pcap file of Ethernet frames (what `tcpdump -w` writes on a veth).
/// Frames that are not UDP/IPv4 are skipped; a truncated file ends the list.
fn parse_pcap(bytes: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    if bytes.len() < 24 {
        return out;
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file (magic {magic:02x?})"),
    };
    let u32_at = |at: usize| {
        let four = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(four)
        } else {
            u32::from_be_bytes(four)
        }
    };
    assert_eq!(u32_at(20), 1, "expected Ethernet link type in the capture");
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32_at(at + 8) as usize;
        let start = at + 16;
        let Some(frame) = bytes.get(start..start + caplen) else {
            break;
        };
        if let Some(datagram) = parse_ethernet_udp(frame) {
            out.push(datagram);
        }
        at = start + caplen;
    }
    out
}

fn parse_ethernet_udp(frame: &[u8]) -> Option<Datagram> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0F) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 || ihl < 20 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = ip.get(ihl..)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let payload = udp.get(8..)?;
    let inner = (payload.len() >= 40 && payload[0] >> 4 == 6).then(|| {
        let mut s = [0; 16];
        let mut d = [0; 16];
        s.copy_from_slice(&payload[8..24]);
        d.copy_from_slice(&payload[24..40]);
        let icmp_type = if payload[6] == 58 {
            payload.get(40).copied()
        } else {
            None
        };
        (Ipv6Addr::from(s), Ipv6Addr::from(d), icmp_type)
    });
    Some(Datagram {
        from: SocketAddrV4::new(src, sport),
        to: SocketAddrV4::new(dst, dport),
        inner,
    })
}

// ------------------------------------------------------------------------------------------
// Topology

/// nftables for a NAT namespace: masquerade out of `wan`, TCP/UDP into `ports`, and the
/// usual home-router firewall that drops unsolicited TCP/UDP arriving on `wan`.
///
/// The drop matters for hole punching: a datagram that reaches the NAT's own stack (no mapping
/// matched) would otherwise get a confirmed conntrack entry, and that entry's tuple would then
/// keep the NAT from reusing the peer's external port for the peer's own packet back to the
/// same remote: the NAT would turn symmetric. Dropped in `input`, the entry is never confirmed.
fn nat_ruleset(ports: (u16, u16)) -> String {
    format!(
        "table ip bedlab_nat {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"wan\" meta l4proto {{ tcp, udp }} masquerade to :{}-{}\n\
         \t\toifname \"wan\" masquerade\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"wan\" ct state new meta l4proto {{ tcp, udp }} drop\n\
         \t}}\n\
         }}\n",
        ports.0, ports.1
    )
}

struct Topology {
    lab: Lab,
    inet: String,
    router: String,
    nat_a: String,
    peer_a: String,
    nat_b: String,
    peer_b: String,
    peer_c: String,
}

impl Topology {
    fn build() -> Topology {
        let mut lab = Lab::new();
        let inet = lab.namespace("inet");
        let router = lab.namespace("router");
        let nat_a = lab.namespace("nat-a");
        let peer_a = lab.namespace("peer-a");
        let nat_b = lab.namespace("nat-b");
        let peer_b = lab.namespace("peer-b");
        let peer_c = lab.namespace("peer-c");

        sysctl(&inet, "net.ipv4.ip_forward", "1");
        sysctl(&inet, "net.ipv4.conf.all.send_redirects", "0");
        // Public hosts hang off `inet`, each on its own link.
        link(
            &inet,
            "to-router",
            "198.51.100.254/24",
            &router,
            "eth0",
            "198.51.100.1/24",
        );
        link(
            &inet,
            "to-nat-a",
            "203.0.113.1/28",
            &nat_a,
            "wan",
            "203.0.113.10/28",
        );
        link(
            &inet,
            "to-nat-b",
            "203.0.113.17/28",
            &nat_b,
            "wan",
            "203.0.113.20/28",
        );
        link(
            &inet,
            "to-peer-c",
            "192.0.2.254/24",
            &peer_c,
            "eth0",
            "192.0.2.30/24",
        );
        default_route(&router, "198.51.100.254");
        default_route(&nat_a, "203.0.113.1");
        default_route(&nat_b, "203.0.113.17");
        default_route(&peer_c, "192.0.2.254");
        // Each NATed peer on its own LAN behind its NAT.
        link(&nat_a, "lan", "10.0.1.1/24", &peer_a, "eth0", "10.0.1.2/24");
        link(&nat_b, "lan", "10.0.2.1/24", &peer_b, "eth0", "10.0.2.2/24");
        default_route(&peer_a, "10.0.1.1");
        default_route(&peer_b, "10.0.2.1");
        for (nat, ports) in [(&nat_a, NAT_A_PORTS), (&nat_b, NAT_B_PORTS)] {
            sysctl(nat, "net.ipv4.ip_forward", "1");
            nft(nat, &nat_ruleset(ports));
        }
        Topology {
            lab,
            inet,
            router,
            nat_a,
            peer_a,
            nat_b,
            peer_b,
            peer_c,
        }
    }
}

/// A veth pair between two namespaces, both ends addressed and up.
fn link(ns1: &str, if1: &str, addr1: &str, ns2: &str, if2: &str, addr2: &str) {
    must(&[
        "ip", "-n", ns1, "link", "add", if1, "type", "veth", "peer", "name", if2, "netns", ns2,
    ]);
    for (ns, iface, addr) in [(ns1, if1, addr1), (ns2, if2, addr2)] {
        must(&["ip", "-n", ns, "addr", "add", addr, "dev", iface]);
        must(&["ip", "-n", ns, "link", "set", iface, "up"]);
    }
}

fn default_route(ns: &str, via: &str) {
    must(&["ip", "-n", ns, "route", "add", "default", "via", via]);
}

/// The external address nat `ns` gives to the UDP flow lan_ip:* → dst (from `conntrack -L`:
/// the reply direction's destination).
fn conntrack_mapping(ns: &str, lan_ip: Ipv4Addr, dst: SocketAddrV4) -> Option<SocketAddrV4> {
    let (src, dip, dport) = (lan_ip.to_string(), dst.ip().to_string(), dst.port().to_string());
    let args = [
        "conntrack",
        "-L",
        "-p",
        "udp",
        "--orig-src",
        &src,
        "--orig-dst",
        &dip,
        "--orig-port-dst",
        &dport,
    ];
    let out = ns_run(ns, &args).ok()?;
    out.lines().find_map(|line| {
        let values = |key: &str| -> Vec<String> {
            line.split_whitespace()
                .filter_map(|t| t.strip_prefix(key))
                .map(str::to_owned)
                .collect()
        };
        let (dsts, dports) = (values("dst="), values("dport="));
        let ip = dsts.get(1)?.parse().ok()?;
        let port = dports.get(1)?.parse().ok()?;
        Some(SocketAddrV4::new(ip, port))
    })
}

/// UDP ports of sockets that `process` holds in namespace `ns` (from `ss`).
fn udp_ports_of(ns: &str, process: &str) -> BTreeSet<u16> {
    let out = ns_must(ns, &["ss", "-Hunap"]);
    out.lines()
        .filter(|line| line.contains(&format!("\"{process}\"")))
        .filter_map(|line| line.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit(':').next()?.parse().ok())
        .collect()
}

/// `ping -6` from `ns`; Ok(summary) when at least one reply came back.
fn ping6(ns: &str, to: Ipv6Addr, count: u32) -> Result<String, String> {
    let (to, count) = (to.to_string(), count.to_string());
    let out = ns_run(
        ns,
        &["ping", "-6", "-n", "-c", &count, "-i", "0.2", "-W", "2", &to],
    )?;
    Ok(out
        .lines()
        .find(|l| l.contains("transmitted"))
        .unwrap_or_default()
        .to_owned())
}

fn assert_ping(from_name: &str, ns: &str, to_name: &str, to: Ipv6Addr) {
    match ping6(ns, to, 3) {
        Ok(summary) => eprintln!("ping {from_name} -> {to_name} ({to}): {summary}"),
        Err(e) => panic!("ping {from_name} -> {to_name} ({to}) failed: {e}"),
    }
}

/// Sends one echo and ignores the result: traffic that makes peers probe or re-map.
fn nudge(ns: &str, to: Ipv6Addr) {
    let _ = ns_run(ns, &["ping", "-6", "-n", "-c", "1", "-W", "1", &to.to_string()]);
}

/// Runs `f` on a new thread inside namespace `ns`; sockets it opens stay in `ns`.
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) with a valid namespace fd; it changes only this thread.
        let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Bytes no two of whose 1280-byte slices are alike (xorshift), so a segment that is lost,
/// repeated, reordered or mis-cut is a mismatch.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `len` pattern bytes over TCP from `ns_from` to `to` (port 5001 in `ns_to`) and
/// returns what arrived.
fn tcp_transfer(ns_from: &str, ns_to: &str, to: Ipv6Addr, len: usize) -> Vec<u8> {
    use std::io::{Read, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let listener = in_namespace(ns_to, || TcpListener::bind("[::]:5001"))
        .join()
        .expect("listener thread")
        .expect("listen on [::]:5001");
    let server = std::thread::spawn(move || {
        let (mut conn, from) = listener.accept().expect("accept");
        // A guard against a stalled tunnel hanging the test, not a speed limit.
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut got = Vec::new();
        conn.read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("receiving from {from}: {e}"));
        got
    });
    let client = in_namespace(ns_from, move || {
        let mut conn = TcpStream::connect_timeout(&SocketAddr::new(to.into(), 5001), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to [{to}]:5001: {e}"));
        conn.set_write_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        conn.write_all(&pattern(len)).expect("send");
    });
    client.join().expect("client thread");
    server.join().expect("server thread")
}

fn counter(event: &Value, name: &str) -> u64 {
    event["counters"][name].as_u64().unwrap_or(0)
}

/// TCP crosses the tunnel intact via the router and directly, with the offloads (TSO on the
/// sending peer's TUN, UDP GSO/GRO, coalesced TUN writes) and with `--no-offload`. The
/// router still decides datagram by datagram: its relay counter covers every segment.
#[test]
fn tcp_crosses_the_tunnel_intact_with_and_without_offloads() {
    if !can_run_namespace_tests("tcp_crosses_the_tunnel_intact_with_and_without_offloads") {
        return;
    }
    const LEN: usize = 16 << 20;
    let expected = pattern(LEN);
    for (case, offload, bypass) in [
        ("via the router, offloads", true, false),
        ("direct, offloads", true, true),
        ("via the router, --no-offload", false, false),
    ] {
        eprintln!("== {case}");
        let mut topo = Topology::build();
        let mut common = vec!["--counters-interval", "100ms"];
        if !offload {
            common.push("--no-offload");
        }
        let router_ns = topo.router.clone();
        let mut args = vec!["router", "--listen", "198.51.100.1"];
        args.extend(&common);
        let router = topo.lab.daemon(&router_ns, "router", &args);
        router.wait_for("router_ready", Duration::from_secs(10), |e| {
            is_event(e, "router_ready")
        });
        let mut args = vec![
            "peer",
            "--router",
            "198.51.100.1",
            "--keepalive",
            "1s,3",
            "--holddown",
            "2s",
        ];
        args.extend(&common);
        if !bypass {
            args.push("--no-bypass");
        }
        let (ns_a, ns_b) = (topo.peer_a.clone(), topo.peer_b.clone());
        let peer_a = topo.lab.daemon(&ns_a, "peer-a", &args);
        let peer_b = topo.lab.daemon(&ns_b, "peer-b", &args);
        let configured = |p: &Daemon| {
            let e = p.wait_for("address_configured", Duration::from_secs(20), |e| {
                is_event(e, "address_configured")
            });
            field::<Ipv6Addr>(&e, "address")
        };
        let (addr_a, addr_b) = (configured(&peer_a), configured(&peer_b));
        if bypass {
            let direct_to =
                |n: Ipv6Addr| move |e: &Value| is_event(e, "direct_up") && e["neighbour"] == n.to_string();
            peer_a.wait_driving("direct_up", Duration::from_secs(45), direct_to(addr_b), || {
                nudge(&ns_a, addr_b)
            });
            peer_b.wait_driving("direct_up", Duration::from_secs(45), direct_to(addr_a), || {
                nudge(&ns_b, addr_a)
            });
        }

        let got = tcp_transfer(&ns_a, &ns_b, addr_b, LEN);
        assert_eq!(got.len(), LEN, "{case}: bytes received");
        if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!("{case}: received data differs from byte {at} on");
        }

        // Every full segment (at most 1208 bytes of payload in a 1280-byte packet) crossed
        // the tunnel as its own datagram and met the per-packet rules there.
        let segments = (LEN / 1208) as u64;
        let path = if bypass { "rx_direct" } else { "rx_via_router" };
        let seen_b = peer_b.wait_for("peer-b counters", Duration::from_secs(10), |e| {
            is_event(e, "counters") && counter(e, path) >= segments
        });
        if !bypass {
            router.wait_for("router relay counter", Duration::from_secs(10), |e| {
                is_event(e, "counters") && counter(e, "relayed") >= segments
            });
        }
        let seen_a = peer_a.wait_for("peer-a counters", Duration::from_secs(10), |e| {
            is_event(e, "counters") && counter(e, "tx_via_router") + counter(e, "tx_direct") >= segments
        });
        for (who, event, name) in [
            ("peer-a", &seen_a, "tun_tso_reads"),
            ("peer-a", &seen_a, "udp_gso_sends"),
            ("peer-b", &seen_b, "udp_gro_receives"),
            ("peer-b", &seen_b, "tun_coalesced_writes"),
        ] {
            let n = counter(event, name);
            eprintln!("{case}: {who} {name} = {n}");
            if offload {
                assert!(n > 0, "{case}: {who} never used {name}: {event}");
            } else {
                assert_eq!(n, 0, "{case}: {who} used {name} with --no-offload: {event}");
            }
        }
    }
}

/// A UDP socket created inside namespace `ns` (it stays there after the helper thread ends).
fn udp_socket_in(ns: &str, bind: SocketAddrV4) -> UdpSocket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) with a valid namespace fd, on a thread that is about to end.
        let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind} in {path}: {e}"))
    })
    .join()
    .unwrap_or_else(|_| panic!("could not make a socket in {ns}"))
}

// ------------------------------------------------------------------------------------------
// The tests

/// The plumbing alone, without any 6bed4 daemon: the topology builds, the NATs translate as
/// the end-to-end test assumes (port from the range, one external port per source socket
/// whatever the destination, unsolicited inbound filtered), and nothing is left behind.
#[test]
fn namespace_topology_builds_nats_and_tears_down() {
    if !can_run_namespace_tests("namespace_topology_builds_nats_and_tears_down") {
        return;
    }
    let prefix;
    {
        let topo = Topology::build();
        prefix = topo.lab.prefix.clone();
        assert_eq!(namespaces_with_prefix(&prefix).len(), 7);

        ns_must(
            &topo.peer_a,
            &["ping", "-4", "-n", "-c", "1", "-W", "2", "198.51.100.1"],
        );
        ns_must(
            &topo.peer_b,
            &["ping", "-4", "-n", "-c", "1", "-W", "2", "192.0.2.30"],
        );
        ns_must(
            &topo.peer_c,
            &["ping", "-4", "-n", "-c", "1", "-W", "2", "203.0.113.20"],
        );

        let timeout = Some(Duration::from_secs(3));
        let server = udp_socket_in(&topo.router, SocketAddrV4::new(ROUTER_IP, ROUTER_PORT));
        let other = udp_socket_in(&topo.peer_c, SocketAddrV4::new(PEER_C_IP, 4000));
        let client = udp_socket_in(&topo.peer_a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        for socket in [&server, &other, &client] {
            socket.set_read_timeout(timeout).expect("read timeout");
        }
        let local_port = client.local_addr().expect("local addr").port();

        client.send_to(b"hello", (ROUTER_IP, ROUTER_PORT)).expect("send");
        let mut buf = [0u8; 64];
        let (_, seen) = server.recv_from(&mut buf).expect("router side receives");
        let std::net::SocketAddr::V4(seen) = seen else {
            panic!("not IPv4: {seen}")
        };
        assert_eq!(*seen.ip(), NAT_A_WAN);
        assert!((NAT_A_PORTS.0..=NAT_A_PORTS.1).contains(&seen.port()), "{seen}");
        assert_ne!(seen.port(), local_port, "the NAT must translate the port");
        let ct = conntrack_mapping(&topo.nat_a, PEER_A_LAN, SocketAddrV4::new(ROUTER_IP, ROUTER_PORT));
        assert_eq!(ct, Some(seen), "conntrack agrees with what the far side saw");

        server.send_to(b"back", seen).expect("reply");
        let (n, _) = client.recv_from(&mut buf).expect("reply passes the NAT");
        assert_eq!(&buf[..n], b"back");

        // Endpoint-independent mapping: the same socket to another host keeps the port.
        client.send_to(b"again", (PEER_C_IP, 4000)).expect("send");
        let (_, seen_other) = other.recv_from(&mut buf).expect("second host receives");
        assert_eq!(
            seen_other,
            std::net::SocketAddr::V4(seen),
            "one mapping per socket"
        );

        // Filtering: a third party cannot use the mapping before the peer sent to it.
        let intruder = udp_socket_in(&topo.peer_c, SocketAddrV4::new(PEER_C_IP, 4001));
        intruder.send_to(b"intrude", seen).expect("send");
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        assert!(
            client.recv_from(&mut buf).is_err(),
            "unsolicited inbound must be dropped"
        );

        // nat-b is a separate NAT with its own range.
        let client_b = udp_socket_in(&topo.peer_b, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        client_b
            .send_to(b"hello", (ROUTER_IP, ROUTER_PORT))
            .expect("send");
        let (_, seen_b) = server.recv_from(&mut buf).expect("router side receives from B");
        let std::net::SocketAddr::V4(seen_b) = seen_b else {
            panic!("not IPv4: {seen_b}")
        };
        assert_eq!(*seen_b.ip(), NAT_B_WAN);
        assert!(
            (NAT_B_PORTS.0..=NAT_B_PORTS.1).contains(&seen_b.port()),
            "{seen_b}"
        );

        // Hole punching between the NATs: a's first datagram to b's mapping is dropped by
        // nat-b, but opens nat-a; b's datagram to a's mapping then passes, from b's mapping
        // (not from a new port), and after that both directions pass.
        client.send_to(b"punch", seen_b).expect("send");
        client_b
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        assert!(
            client_b.recv_from(&mut buf).is_err(),
            "nat-b must drop the first datagram"
        );
        client.set_read_timeout(timeout).expect("read timeout");
        client_b.set_read_timeout(timeout).expect("read timeout");
        client_b.send_to(b"punch back", seen).expect("send");
        let (_, from_b) = client.recv_from(&mut buf).expect("b reaches a through the hole");
        assert_eq!(from_b, std::net::SocketAddr::V4(seen_b), "nat-b kept b's mapping");
        client.send_to(b"through", seen_b).expect("send");
        let (_, from_a) = client_b.recv_from(&mut buf).expect("a now reaches b");
        assert_eq!(from_a, std::net::SocketAddr::V4(seen), "nat-a kept a's mapping");

        // A "rebooted" nat-a (flushed table, new range) gives the same socket a new port.
        nft(
            &topo.nat_a,
            &format!("delete table ip bedlab_nat\n{}", nat_ruleset(NAT_A_PORTS_AFTER)),
        );
        ns_must(&topo.nat_a, &["conntrack", "-F"]);
        client.send_to(b"after", (ROUTER_IP, ROUTER_PORT)).expect("send");
        let (_, moved) = server.recv_from(&mut buf).expect("router side receives");
        let std::net::SocketAddr::V4(moved) = moved else {
            panic!("not IPv4: {moved}")
        };
        assert!(
            (NAT_A_PORTS_AFTER.0..=NAT_A_PORTS_AFTER.1).contains(&moved.port()),
            "{moved}"
        );
    }
    assert!(
        namespaces_with_prefix(&prefix).is_empty(),
        "namespaces left behind"
    );
}

/// The milestone: router on a public address, peers behind two masquerade NATs and one
/// without NAT; addresses, reachability, direct path, and recovery from a NAT rebinding.
#[test]
fn sixbed4_peers_across_nats_end_to_end() {
    if !can_run_namespace_tests("sixbed4_peers_across_nats_end_to_end") {
        return;
    }
    let mut topo = Topology::build();
    let started = Instant::now();
    let router_endpoint = SocketAddrV4::new(ROUTER_IP, ROUTER_PORT);

    // Router on the public address.
    let router_ns = topo.router.clone();
    let router = topo
        .lab
        .daemon(&router_ns, "router", &["router", "--listen", "198.51.100.1"]);
    let ready = router.wait_for("router_ready", Duration::from_secs(10), |e| {
        is_event(e, "router_ready")
    });
    assert_eq!(field::<SocketAddrV4>(&ready, "listen"), router_endpoint);
    let router_prefix = prefix_of(ready["prefix"].as_str().unwrap_or_default());
    let router_addr: Ipv6Addr = field(&ready, "address");

    // Peers. peer-a's keepalive (20 s) is shorter than the NATs' default UDP timeouts (30 s
    // unreplied, 120 s for streams) but longer than the 3 s nat-a gets in check (d).
    // --holddown 2s: a probe that failed before the other side opened its NAT is retried soon.
    let peer_args = |keepalive: &'static str| {
        [
            "peer",
            "--router",
            "198.51.100.1",
            "--keepalive",
            keepalive,
            "--holddown",
            "2s",
        ]
    };
    let (ns_a, ns_b, ns_c) = (topo.peer_a.clone(), topo.peer_b.clone(), topo.peer_c.clone());
    let peer_a = topo.lab.daemon(&ns_a, "peer-a", &peer_args("20s"));
    let peer_b = topo.lab.daemon(&ns_b, "peer-b", &peer_args("1s,3"));
    let peer_c = topo.lab.daemon(&ns_c, "peer-c", &peer_args("1s,3"));

    // (a) Addresses decode to the external IPv4:port the NAT really used.
    let configured = |peer: &Daemon| {
        peer.wait_for("address_configured", Duration::from_secs(20), |e| {
            is_event(e, "address_configured")
        })
    };
    let mut addr = Vec::new();
    for (name, peer, nat, lan, wan, ports) in [
        (
            "peer-a",
            &peer_a,
            Some(&topo.nat_a),
            PEER_A_LAN,
            NAT_A_WAN,
            NAT_A_PORTS,
        ),
        (
            "peer-b",
            &peer_b,
            Some(&topo.nat_b),
            PEER_B_LAN,
            NAT_B_WAN,
            NAT_B_PORTS,
        ),
        ("peer-c", &peer_c, None, PEER_C_IP, PEER_C_IP, (1, u16::MAX)),
    ] {
        let event = configured(peer);
        let address: Ipv6Addr = field(&event, "address");
        let external: SocketAddrV4 = field(&event, "external");
        let decoded = decode_layout_c(address);
        eprintln!(
            "(a) {name}: {address} decodes to {}:{} lanip {}",
            decoded.ipv4, decoded.port, decoded.lanip
        );
        assert_eq!(
            decoded.prefix, router_prefix,
            "{name}: address outside the router's /64"
        );
        assert_eq!(
            decoded.ipv4, wan,
            "{name}: decoded IPv4 is not its external address"
        );
        assert_ne!(decoded.lanip, 0, "{name}: lanip 0 is the router's");
        assert_eq!(
            SocketAddrV4::new(decoded.ipv4, decoded.port),
            external,
            "{name}: event"
        );
        assert!(
            (ports.0..=ports.1).contains(&decoded.port),
            "{name}: port outside NAT range"
        );
        match nat {
            Some(nat) => {
                let mapping = conntrack_mapping(nat, lan, router_endpoint);
                assert_eq!(mapping, Some(external), "{name}: conntrack in its NAT disagrees");
            }
            None => {
                let ports = udp_ports_of(&ns_c, "sixbed4");
                assert!(ports.contains(&decoded.port), "{name}: port not among {ports:?}");
            }
        }
        addr.push(address);
    }
    let (addr_a, addr_b, addr_c) = (addr[0], addr[1], addr[2]);

    // (b) ping6 between every pair of peers and between each peer and the router.
    let hosts = [
        ("peer-a", ns_a.as_str(), addr_a),
        ("peer-b", ns_b.as_str(), addr_b),
        ("peer-c", ns_c.as_str(), addr_c),
    ];
    for (from_name, from_ns, _) in hosts {
        for (to_name, _, to) in hosts {
            if from_name != to_name {
                assert_ping(from_name, from_ns, to_name, to);
            }
        }
        assert_ping(from_name, from_ns, "router", router_addr);
    }
    for (to_name, _, to) in hosts {
        assert_ping("router", &router_ns, to_name, to);
    }

    // (c) Between the two NATed peers the echo goes directly once both confirm the path.
    let direct_to = |neighbour: Ipv6Addr| {
        move |e: &Value| is_event(e, "direct_up") && e["neighbour"] == neighbour.to_string()
    };
    let up_a = peer_a.wait_driving(
        "direct_up to peer-b",
        Duration::from_secs(45),
        direct_to(addr_b),
        || nudge(&ns_a, addr_b),
    );
    let up_b = peer_b.wait_driving(
        "direct_up to peer-a",
        Duration::from_secs(45),
        direct_to(addr_a),
        || nudge(&ns_b, addr_a),
    );
    let (decoded_a, decoded_b) = (decode_layout_c(addr_a), decode_layout_c(addr_b));
    let endpoint_a = SocketAddrV4::new(decoded_a.ipv4, decoded_a.port);
    let endpoint_b = SocketAddrV4::new(decoded_b.ipv4, decoded_b.port);
    assert_eq!(field::<SocketAddrV4>(&up_a, "endpoint"), endpoint_b);
    assert_eq!(field::<SocketAddrV4>(&up_b, "endpoint"), endpoint_a);

    let inet_ns = topo.inet.clone();
    let at_router = topo
        .lab
        .capture(&router_ns, "eth0", "capture-router", "udp port 25790");
    let at_nat_a = topo.lab.capture(&inet_ns, "to-nat-a", "capture-nat-a", "udp");
    let echo_ab = ping6(&ns_a, addr_b, 5).unwrap_or_else(|e| panic!("(c) ping a -> b: {e}"));
    let echo_ar = ping6(&ns_a, router_addr, 2).unwrap_or_else(|e| panic!("(c) ping a -> router: {e}"));
    eprintln!("(c) during capture: a -> b {echo_ab}; a -> router {echo_ar}");
    // Wait until both captures have seen what must be there before stopping them.
    poll("captures to hold the echoes", Duration::from_secs(5), || {
        let router_control = at_router
            .datagrams()
            .iter()
            .filter(|d| d.is_echo_between(addr_a, router_addr))
            .count();
        let direct = at_nat_a
            .datagrams()
            .iter()
            .filter(|d| d.is_echo_between(addr_a, addr_b))
            .count();
        (router_control >= 2 && direct >= 2).then_some(())
    });
    let router_side = topo.lab.stop_capture(&at_router);
    let internet_side = topo.lab.stop_capture(&at_nat_a);
    let via_router: Vec<&Datagram> = router_side
        .iter()
        .filter(|d| d.is_echo_between(addr_a, addr_b))
        .collect();
    assert!(
        via_router.is_empty(),
        "(c) echoes between peer-a and peer-b crossed the router: {via_router:?}"
    );
    let direct: Vec<&Datagram> = internet_side
        .iter()
        .filter(|d| d.is_echo_between(addr_a, addr_b))
        .collect();
    let requests = direct
        .iter()
        .filter(|d| d.from.ip() == &NAT_A_WAN && d.to == endpoint_b)
        .count();
    let replies = direct
        .iter()
        .filter(|d| d.from == endpoint_b && d.to.ip() == &NAT_A_WAN)
        .count();
    assert!(
        requests >= 1 && replies >= 1,
        "(c) no direct echo between the NATs: {direct:?}"
    );
    assert!(direct
        .iter()
        .all(|d| d.from != router_endpoint && d.to != router_endpoint));
    eprintln!(
        "(c) router saw {} tunnel datagrams, none an echo a<->b; {} direct echoes between the NATs",
        router_side.len(),
        direct.len()
    );

    // (d) nat-a forgets its mappings and would hand out the old port no more.
    let old_port = decoded_a.port;
    sysctl(&topo.nat_a, "net.netfilter.nf_conntrack_udp_timeout", "3");
    sysctl(&topo.nat_a, "net.netfilter.nf_conntrack_udp_timeout_stream", "3");
    nft(
        &topo.nat_a,
        &format!("delete table ip bedlab_nat\n{}", nat_ruleset(NAT_A_PORTS_AFTER)),
    );
    ns_must(&topo.nat_a, &["conntrack", "-F"]);
    let changed = peer_a.wait_driving(
        "address_changed",
        Duration::from_secs(30),
        |e| is_event(e, "address_changed"),
        || nudge(&ns_a, router_addr),
    );
    // Back to the default timeouts so the new mapping cannot lapse during the pings below.
    sysctl(&topo.nat_a, "net.netfilter.nf_conntrack_udp_timeout", "30");
    sysctl(
        &topo.nat_a,
        "net.netfilter.nf_conntrack_udp_timeout_stream",
        "120",
    );
    let new_a: Ipv6Addr = field(&changed, "address");
    let old_a: Ipv6Addr = field(&changed, "old");
    let new_external: SocketAddrV4 = field(&changed, "external");
    let moved = decode_layout_c(new_a);
    eprintln!(
        "(d) peer-a moved {old_a} -> {new_a} ({}:{})",
        moved.ipv4, moved.port
    );
    assert_eq!(old_a, addr_a);
    assert_eq!(moved.prefix, router_prefix);
    assert_eq!(moved.ipv4, NAT_A_WAN);
    assert_ne!(moved.port, old_port, "the new mapping must differ");
    assert!((NAT_A_PORTS_AFTER.0..=NAT_A_PORTS_AFTER.1).contains(&moved.port));
    assert_eq!(SocketAddrV4::new(moved.ipv4, moved.port), new_external);
    let mapping = conntrack_mapping(&topo.nat_a, PEER_A_LAN, router_endpoint);
    assert_eq!(mapping, Some(new_external), "(d) conntrack in nat-a disagrees");
    assert_ping("peer-a", &ns_a, "router", router_addr);
    assert_ping("peer-a", &ns_a, "peer-b", addr_b);
    assert_ping("peer-b", &ns_b, "peer-a", new_a);
    assert_ping("peer-c", &ns_c, "peer-a", new_a);
    assert_ping("router", &router_ns, "peer-a", new_a);
    assert_eq!(
        peer_a.events_named("address_changed").len(),
        1,
        "exactly one move"
    );
    eprintln!("end-to-end passed in {:?}", started.elapsed());
}

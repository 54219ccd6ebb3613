//! The event loop that joins a sans-IO core to the Linux shell.
//!
//! One thread, two file descriptors (the TUN and the UDP socket) and `poll(2)`: the core
//! decides, this module carries out its [`Output`]s in order. Events go to stdout as JSON
//! lines when asked for; human logs go to stderr through `tracing`.

use crate::events::{to_json_line, Event};
use crate::io::{ConfigChange, Output};
use crate::peer::{Peer, PeerConfig};
use crate::profile::{prefix_addr, Profile};
use crate::router::{Router, RouterConfig};
use crate::sys::{netlink::Netlink, poll, sysctl, tun::Tun, udp::RecvBatch, udp::TunnelSocket};
use anyhow::{Context, Result};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Options common to both roles.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub ifname: String,
    pub events_json: bool,
    /// How often a changed counter set is reported as an event.
    pub counters_interval: Duration,
}

/// Largest datagram or packet read at once: anything larger than a UDP datagram can be is
/// impossible, and reading the whole thing lets the core see oversize instead of truncation.
const BUF_LEN: usize = 65_536;
/// Packets drained per descriptor per wake-up, so neither side starves the other.
const BURST: usize = 64;
/// Datagrams received per `recvmmsg`.
const BATCH: usize = 16;

/// Receive and send buffer of the tunnel socket: some 3000 full-size datagrams, so a relay
/// that is off the CPU for a scheduler tick or two does not drop a burst.
const SOCKET_BUFFER: usize = 4 << 20;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM end the loop cleanly (counters are reported, the TUN goes away with
/// its descriptor). No SA_RESTART, so a blocked `poll` returns at once.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an atomic is valid.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Where events go.
struct EventSink {
    json: bool,
    start: Instant,
}

impl EventSink {
    fn emit(&self, event: &Event) {
        tracing::info!(?event);
        if self.json {
            let t_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut out = std::io::stdout().lock();
            // A closed stdout must not kill the daemon.
            let _ = writeln!(out, "{}", to_json_line(t_ms, event));
            let _ = out.flush();
        }
    }
}

/// The interface and socket a daemon works through.
struct Shell {
    tun: Tun,
    sock: TunnelSocket,
    netlink: Netlink,
    sink: EventSink,
}

impl Shell {
    fn open(ifname: &str, sock: TunnelSocket, events_json: bool) -> Result<Shell> {
        let tun = Tun::create(ifname).with_context(|| {
            format!("creating TUN device {ifname:?} (needs CAP_NET_ADMIN and /dev/net/tun)")
        })?;
        // The tunnel has no multicast and no router of its own: keep the kernel from
        // soliciting or autoconfiguring on it.
        if let Err(e) = sysctl::quiet_autoconf(tun.name()) {
            tracing::warn!("could not quiet IPv6 autoconf on {}: {e}", tun.name());
        }
        let mut netlink = Netlink::open().context("opening rtnetlink")?;
        netlink
            .set_link_up(tun.ifindex(), Some(1280))
            .context("bringing the TUN up")?;
        tun.set_nonblocking(true).context("TUN non-blocking")?;
        sock.set_nonblocking(true).context("socket non-blocking")?;
        match sock.set_buffer_sizes(SOCKET_BUFFER) {
            Ok((rcv, snd)) => tracing::debug!("socket buffers: receive {rcv} B, send {snd} B"),
            Err(e) => tracing::warn!("could not enlarge the socket buffers: {e}"),
        }
        Ok(Shell {
            tun,
            sock,
            netlink,
            sink: EventSink {
                json: events_json,
                start: Instant::now(),
            },
        })
    }

    /// Carries out outputs in order. Consecutive plain UDP sends go out together in one
    /// `sendmmsg`; anything else first flushes them, so the order is kept.
    fn apply(&mut self, outputs: &mut Vec<Output>, counters: &mut crate::counters::Counters) {
        let mut pending: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
        for o in outputs.drain(..) {
            match o {
                Output::Udp {
                    to,
                    payload,
                    ttl: None,
                } => pending.push((to, payload)),
                Output::Udp {
                    to,
                    payload,
                    ttl: Some(ttl),
                } => {
                    self.flush_udp(&mut pending, counters);
                    if let Err(e) = self.sock.send_to_with_ttl(&payload, to, ttl) {
                        counters.bump("tx_udp_errors");
                        tracing::debug!("send to {to}: {e}");
                    }
                }
                Output::Tun(packet) => {
                    self.flush_udp(&mut pending, counters);
                    if let Err(e) = self.tun.write(&packet) {
                        counters.bump("tx_tun_errors");
                        tracing::debug!("write to TUN: {e}");
                    }
                }
                Output::Config(change) => {
                    self.flush_udp(&mut pending, counters);
                    if let Err(e) = self.configure(&change) {
                        counters.bump("config_errors");
                        tracing::error!("{e:#}");
                    }
                }
                Output::Event(event) => self.sink.emit(&event),
            }
        }
        self.flush_udp(&mut pending, counters);
    }

    fn flush_udp(
        &mut self,
        pending: &mut Vec<(SocketAddrV4, Vec<u8>)>,
        counters: &mut crate::counters::Counters,
    ) {
        let mut start = 0;
        while start < pending.len() {
            let batch: Vec<(SocketAddrV4, &[u8])> = pending[start..]
                .iter()
                .map(|(to, p)| (*to, p.as_slice()))
                .collect();
            match self.sock.send_batch(&batch) {
                Ok(0) => break,
                Ok(n) => start += n,
                Err(e) => {
                    // The first datagram failed (e.g. an unreachable destination): count it
                    // and go on with the rest.
                    counters.bump("tx_udp_errors");
                    tracing::debug!("send to {}: {e}", pending[start].0);
                    start += 1;
                }
            }
        }
        pending.clear();
    }

    fn configure(&mut self, change: &ConfigChange) -> Result<()> {
        let ifindex = self.tun.ifindex();
        match *change {
            ConfigChange::AddAddress { address, prefix_len } => {
                self.netlink.add_address_v6(ifindex, address, prefix_len)?;
            }
            ConfigChange::RemoveAddress { address, prefix_len } => {
                self.netlink.remove_address_v6(ifindex, address, prefix_len)?;
            }
            ConfigChange::AddRoute {
                prefix,
                prefix_len,
                via,
            } => {
                if let Err(e) = self.netlink.add_route_v6(ifindex, prefix, prefix_len, via) {
                    // A point-to-point TUN needs no next hop; a device route does the same.
                    tracing::warn!("{e}; installing a device route instead");
                    self.netlink.add_route_v6(ifindex, prefix, prefix_len, None)?;
                }
            }
        }
        Ok(())
    }

    fn report_counters(&self, counters: &mut crate::counters::Counters) {
        if counters.take_changed() {
            self.sink.emit(&Event::Counters {
                counters: counters.snapshot(),
            });
        }
    }
}

/// What the shell needs from a core to feed it.
trait Core {
    fn udp(&mut self, now: Instant, from: SocketAddrV4, data: &[u8], out: &mut Vec<Output>);
    fn tun(&mut self, now: Instant, packet: &[u8], out: &mut Vec<Output>);
    fn counters(&mut self) -> &mut crate::counters::Counters;
}

impl Core for Router {
    fn udp(&mut self, now: Instant, from: SocketAddrV4, data: &[u8], out: &mut Vec<Output>) {
        self.handle_udp(now, from, data, out);
    }
    fn tun(&mut self, _now: Instant, packet: &[u8], out: &mut Vec<Output>) {
        self.handle_tun(packet, out);
    }
    fn counters(&mut self) -> &mut crate::counters::Counters {
        self.counters_mut()
    }
}

impl Core for Peer {
    fn udp(&mut self, now: Instant, from: SocketAddrV4, data: &[u8], out: &mut Vec<Output>) {
        self.handle_udp(now, from, data, out);
    }
    fn tun(&mut self, now: Instant, packet: &[u8], out: &mut Vec<Output>) {
        self.handle_tun(now, packet, out);
    }
    fn counters(&mut self) -> &mut crate::counters::Counters {
        self.counters_mut()
    }
}

impl Shell {
    /// Feeds queued datagrams to the core, a `recvmmsg` batch at a time, and carries out
    /// what it asks after each batch.
    fn drain_udp(
        &mut self,
        batch: &mut RecvBatch,
        core: &mut impl Core,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        for _ in 0..BURST / BATCH {
            let n = match self.sock.recv_batch(batch) {
                Ok(n) => n,
                Err(e) => {
                    core.counters().bump("rx_udp_errors");
                    tracing::debug!("recv: {e}");
                    break;
                }
            };
            for i in 0..n {
                match batch.get(i) {
                    Some((_, from, true)) => {
                        core.counters().bump("drop_oversized_datagram");
                        tracing::debug!("oversized datagram from {from}");
                    }
                    Some((data, from, false)) => core.udp(now, from, data, out),
                    None => core.counters().bump("drop_non_ipv4_sender"),
                }
            }
            self.apply(out, core.counters());
            if n < batch.capacity() {
                break;
            }
        }
    }

    /// Feeds a burst of packets from the kernel to the core; what it sends goes out in one
    /// `sendmmsg`.
    fn drain_tun(
        &mut self,
        buf: &mut [u8],
        core: &mut impl Core,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<()> {
        for _ in 0..BURST {
            match self.tun.read(buf) {
                Ok(n) => core.tun(now, &buf[..n], out),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("reading the TUN"),
            }
        }
        self.apply(out, core.counters());
        Ok(())
    }
}

/// Waits until a descriptor is readable, the deadline passes, or a signal arrives.
fn wait(shell: &Shell, deadline: Option<Instant>) -> Result<(bool, bool)> {
    use std::os::fd::AsRawFd;
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let ready =
        poll::wait_readable(&[shell.sock.as_raw_fd(), shell.tun.as_raw_fd()], timeout).context("poll")?;
    Ok((
        ready.first().copied().unwrap_or(false),
        ready.get(1).copied().unwrap_or(false),
    ))
}

/// Runs a router until SIGINT or SIGTERM.
pub fn run_router(cfg: RouterConfig, opts: &DaemonOptions) -> Result<()> {
    install_signal_handlers();
    let mut router = Router::new(cfg.clone())
        .context("the listen address cannot appear in a 6bed4 address of this profile")?;
    let sock = TunnelSocket::bind(cfg.listen).with_context(|| format!("binding UDP {}", cfg.listen))?;
    let mut shell = Shell::open(&opts.ifname, sock, opts.events_json)?;
    let ifindex = shell.tun.ifindex();
    shell
        .netlink
        .add_address_v6(ifindex, router.address(), 64)
        .context("adding the router's address")?;
    shell
        .netlink
        .add_route_v6(ifindex, prefix_addr(cfg.prefix), 64, None)
        .context("adding the route for the router /64")?;
    if let Err(e) = sysctl::set_ipv6_forwarding(true) {
        tracing::warn!("IPv6 forwarding could not be enabled ({e}): native hosts will not be reachable");
    }
    shell.sink.emit(&router.ready_event());
    tracing::info!(
        "router on {} for {}",
        cfg.listen,
        crate::profile::prefix_to_string(cfg.prefix)
    );

    let mut buf = vec![0u8; BUF_LEN];
    let mut batch = RecvBatch::new(BATCH, BUF_LEN);
    let mut out = Vec::new();
    let mut next_report = Instant::now() + opts.counters_interval;
    while !STOP.load(Ordering::SeqCst) {
        let (udp_ready, tun_ready) = wait(&shell, Some(next_report))?;
        let now = Instant::now();
        if udp_ready {
            shell.drain_udp(&mut batch, &mut router, now, &mut out);
        }
        if tun_ready {
            shell.drain_tun(&mut buf, &mut router, now, &mut out)?;
        }
        if Instant::now() >= next_report {
            shell.report_counters(router.counters_mut());
            next_report = Instant::now() + opts.counters_interval;
        }
    }
    router.counters_mut().bump("shutdown");
    shell.report_counters(router.counters_mut());
    Ok(())
}

/// Runs a peer until SIGINT or SIGTERM.
pub fn run_peer(cfg: PeerConfig, bind: SocketAddrV4, opts: &DaemonOptions) -> Result<()> {
    install_signal_handlers();
    let sock = if cfg.profile == Profile::V01 && bind.port() == 0 {
        TunnelSocket::bind_even_port(*bind.ip())
    } else {
        TunnelSocket::bind(bind)
    }
    .with_context(|| format!("binding the tunnel socket on {bind}"))?;
    let local = sock.local_addr().context("reading the tunnel socket address")?;
    let mut shell = Shell::open(&opts.ifname, sock, opts.events_json)?;
    tracing::info!("peer on {local} soliciting {}", cfg.router);

    let mut peer = Peer::new(cfg, Instant::now());
    let mut buf = vec![0u8; BUF_LEN];
    let mut batch = RecvBatch::new(BATCH, BUF_LEN);
    let mut out = Vec::new();
    let mut next_report = Instant::now() + opts.counters_interval;
    while !STOP.load(Ordering::SeqCst) {
        let now = Instant::now();
        peer.handle_timeout(now, &mut out);
        shell.apply(&mut out, peer.counters_mut());
        let deadline = peer.poll_timeout().map_or(next_report, |t| t.min(next_report));
        let (udp_ready, tun_ready) = wait(&shell, Some(deadline))?;
        let now = Instant::now();
        if udp_ready {
            shell.drain_udp(&mut batch, &mut peer, now, &mut out);
        }
        if tun_ready {
            shell.drain_tun(&mut buf, &mut peer, now, &mut out)?;
        }
        if Instant::now() >= next_report {
            shell.report_counters(peer.counters_mut());
            next_report = Instant::now() + opts.counters_interval;
        }
    }
    peer.counters_mut().bump("shutdown");
    shell.report_counters(peer.counters_mut());
    Ok(())
}

/// The unspecified bind address with a random port.
pub const ANY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

//! The event loop that joins a sans-IO core to the Linux shell.
//!
//! One thread, two file descriptors (the TUN and the UDP socket) and `poll(2)`: the core
//! decides, this module carries out its [`Output`]s in order. Events go to stdout as JSON
//! lines when asked for; human logs go to stderr through `tracing`.
//!
//! The kernel's cost per packet, not the cores', bounds throughput, so the shell moves
//! packets in bulk wherever the kernel lets it, and falls back to one packet per call where
//! it does not (or with `--no-offload`):
//! - UDP in: `recvmmsg`, and with `UDP_GRO` a whole burst from one sender per slot, cut
//!   back into datagrams before the core sees them;
//! - UDP out: `sendmmsg`, with runs of equal-size datagrams to one destination as one
//!   `UDP_SEGMENT` (GSO) message;
//! - TUN in (peer): TCP super-segments (TSO6) cut into the segments the kernel would have
//!   sent ([`crate::offload::segment`]), each fed to the core on its own;
//! - TUN out (peer): consecutive segments of one TCP flow joined into one write
//!   ([`crate::offload::Coalescer`]).
//!
//! The cores still see and decide every datagram and packet one by one.

use crate::events::{to_json_line, Event};
use crate::io::{ConfigChange, Output};
use crate::offload::{self, Coalescer, VnetHdr, VNET_HDR_LEN};
use crate::peer::{Peer, PeerConfig};
use crate::profile::{prefix_addr, Profile};
use crate::router::{Router, RouterConfig};
use crate::sys::tun::{Offload, Tun};
use crate::sys::udp::{is_gso_refusal, Message, RecvBatch, TunnelSocket};
use crate::sys::{netlink::Netlink, poll, sysctl};
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
    /// Use the kernel's segmentation and coalescing offloads where it offers them.
    pub offload: bool,
}

/// Largest datagram or packet read at once: anything larger than a UDP datagram can be is
/// impossible, and reading the whole thing lets the core see oversize instead of truncation.
const BUF_LEN: usize = 65_536;
/// A TUN read: a `virtio_net_hdr` and an IPv6 packet of up to 65535 payload bytes.
const TUN_BUF_LEN: usize = VNET_HDR_LEN + 40 + 65_535;
/// Outputs gathered before they are carried out while draining the TUN: a burst of TSO
/// reads stands for thousands of segments.
const APPLY_AT: usize = 256;
/// At most this many datagrams in one UDP GSO message (the kernel's UDP_MAX_SEGMENTS is
/// 64 on older kernels) and at most this many bytes (a UDP/IPv4 datagram's limit).
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65_507;
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
    /// UDP datagrams waiting for the next `sendmmsg`.
    pending: Vec<(SocketAddrV4, Vec<u8>)>,
    /// Runs of equal-size datagrams go out as one GSO message.
    udp_gso: bool,
    /// Set when the TUN carries a `virtio_net_hdr`: TUN writes are joined here.
    coalescer: Option<Coalescer>,
    /// Where one segment of a TSO read is built.
    scratch: Vec<u8>,
}

impl Shell {
    /// `tun_offload` asks for TSO6 and coalescing on the TUN (the peer: its TUN faces a
    /// local TCP stack); `udp_offload` for UDP GSO and GRO on the socket.
    fn open(
        ifname: &str,
        sock: TunnelSocket,
        events_json: bool,
        tun_offload: bool,
        udp_offload: bool,
    ) -> Result<Shell> {
        let context = || format!("creating TUN device {ifname:?} (needs CAP_NET_ADMIN and /dev/net/tun)");
        let tun = if tun_offload {
            let (tun, got) = Tun::create_offloaded(ifname).with_context(context)?;
            if got != Offload::Tso6 {
                tracing::warn!("the kernel refused TUN offloads ({got:?}): one packet per read");
            }
            tun
        } else {
            Tun::create(ifname).with_context(context)?
        };
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
        let mut udp_gso = false;
        if udp_offload {
            if let Err(e) = sock.enable_gro() {
                tracing::warn!("UDP_GRO refused ({e}): one datagram per receive slot");
            }
            udp_gso = sock.gso_supported();
            if !udp_gso {
                tracing::warn!("no UDP_SEGMENT in this kernel: one datagram per send");
            }
        }
        tracing::debug!("offloads: TUN header {}, UDP GSO {udp_gso}", tun.vnet_hdr());
        Ok(Shell {
            coalescer: tun.vnet_hdr().then(Coalescer::new),
            tun,
            sock,
            pending: Vec::new(),
            udp_gso,
            scratch: Vec::new(),
            netlink,
            sink: EventSink {
                json: events_json,
                start: Instant::now(),
            },
        })
    }

    /// Carries out outputs in order: UDP sends keep their order among themselves (runs
    /// of them go out together in one `sendmmsg`), TUN writes theirs (consecutive TCP
    /// segments may be joined into one write); a configuration change waits for both.
    fn apply(&mut self, outputs: &mut Vec<Output>, counters: &mut crate::counters::Counters) {
        for o in outputs.drain(..) {
            match o {
                Output::Udp {
                    to,
                    payload,
                    ttl: None,
                } => self.pending.push((to, payload)),
                Output::Udp {
                    to,
                    payload,
                    ttl: Some(ttl),
                } => {
                    self.flush_udp(counters);
                    if let Err(e) = self.sock.send_to_with_ttl(&payload, to, ttl) {
                        counters.bump("tx_udp_errors");
                        tracing::debug!("send to {to}: {e}");
                    }
                }
                Output::Tun(packet) => self.write_tun(&packet, counters),
                Output::Config(change) => {
                    self.flush_udp(counters);
                    self.flush_tun(counters);
                    if let Err(e) = self.configure(&change) {
                        counters.bump("config_errors");
                        tracing::error!("{e:#}");
                    }
                }
                Output::Event(event) => self.sink.emit(&event),
            }
        }
        self.flush_udp(counters);
        self.flush_tun(counters);
    }

    fn write_tun(&mut self, packet: &[u8], counters: &mut crate::counters::Counters) {
        let Some(c) = self.coalescer.as_mut() else {
            write_tun_or_count(&self.tun, packet, false, counters);
            return;
        };
        let mut refused = false;
        c.push(packet, &mut |bytes| {
            refused |= write_tun_or_count(&self.tun, bytes, true, counters);
        });
        if refused {
            Self::stop_joining(c, counters);
        }
    }

    fn flush_tun(&mut self, counters: &mut crate::counters::Counters) {
        if let Some(c) = self.coalescer.as_mut() {
            let mut refused = false;
            c.flush(&mut |bytes| {
                refused |= write_tun_or_count(&self.tun, bytes, true, counters);
            });
            if refused {
                Self::stop_joining(c, counters);
            }
        }
    }

    fn stop_joining(c: &mut Coalescer, counters: &mut crate::counters::Counters) {
        tracing::warn!("the TUN refused a coalesced write: one packet per write from now on");
        counters.bump("tun_coalescing_refused");
        c.set_joining(false);
    }

    fn flush_udp(&mut self, counters: &mut crate::counters::Counters) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let slices: Vec<std::io::IoSlice<'_>> =
            pending.iter().map(|(_, p)| std::io::IoSlice::new(p)).collect();
        let lens: Vec<usize> = pending.iter().map(|(_, p)| p.len()).collect();
        let tos: Vec<SocketAddrV4> = pending.iter().map(|(to, _)| *to).collect();
        let mut msgs: Vec<Message<'_>> = gso_runs(&tos, &lens, self.udp_gso)
            .into_iter()
            .map(|(a, b)| Message {
                to: tos[a],
                payloads: &slices[a..b],
                segment: (b - a > 1).then_some(lens[a] as u16),
            })
            .collect();
        let mut start = 0;
        while start < msgs.len() {
            match self.sock.send_batch(&msgs[start..]) {
                Ok(0) => break,
                Ok(n) => {
                    for m in &msgs[start..start + n] {
                        if m.segment.is_some() {
                            counters.bump("udp_gso_sends");
                        }
                    }
                    start += n;
                }
                Err(e) => {
                    let m = msgs[start];
                    if m.segment.is_some() && is_gso_refusal(&e) {
                        // The kernel or this route cannot segment: send this run, and from
                        // now on everything, one datagram per message.
                        tracing::warn!("UDP GSO refused ({e}): one datagram per send from now on");
                        counters.bump("udp_gso_refused");
                        self.udp_gso = false;
                        let singles: Vec<Message<'_>> = m
                            .payloads
                            .chunks(1)
                            .map(|p| Message {
                                to: m.to,
                                payloads: p,
                                segment: None,
                            })
                            .collect();
                        msgs.splice(start..=start, singles);
                        continue;
                    }
                    // The first message failed (e.g. an unreachable destination): count its
                    // datagrams and go on with the rest.
                    for _ in m.payloads {
                        counters.bump("tx_udp_errors");
                    }
                    tracing::debug!("send to {}: {e}", m.to);
                    start += 1;
                }
            }
        }
        drop(msgs);
        drop(slices);
        self.pending = pending;
        self.pending.clear();
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
                    Some((data, from, false)) => match batch.segment_size(i) {
                        // A coalesced run (UDP_GRO): the datagrams back to back.
                        Some(size) => {
                            core.counters().bump("udp_gro_receives");
                            for datagram in data.chunks(size) {
                                core.udp(now, from, datagram, out);
                            }
                        }
                        None => core.udp(now, from, data, out),
                    },
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
            let n = match self.tun.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("reading the TUN"),
            };
            if !self.tun.vnet_hdr() {
                core.tun(now, &buf[..n], out);
                continue;
            }
            let hdr = match VnetHdr::parse(&buf[..n]) {
                Ok((hdr, _)) => hdr,
                Err(e) => {
                    core.counters().bump(e.reason());
                    continue;
                }
            };
            if hdr.gso_type != offload::GSO_NONE {
                core.counters().bump("tun_tso_reads");
            }
            let packet = &mut buf[VNET_HDR_LEN..n];
            if let Err(e) = offload::segment(&hdr, packet, &mut self.scratch, |p| core.tun(now, p, out)) {
                core.counters().bump(e.reason());
                tracing::debug!("TUN read: {e}");
            }
            if out.len() >= APPLY_AT {
                self.apply(out, core.counters());
            }
        }
        self.apply(out, core.counters());
        Ok(())
    }
}

/// One TUN write; `vnet` says `bytes` starts with a `virtio_net_hdr`, whose GSO type tells
/// a coalesced write (counted, so a run shows whether coalescing happens). A coalesced
/// write the kernel rejects as invalid is cut back into its segments, written one by one,
/// and reported (`true`) so the caller stops joining.
fn write_tun_or_count(tun: &Tun, bytes: &[u8], vnet: bool, counters: &mut crate::counters::Counters) -> bool {
    let coalesced = vnet && bytes.get(1).is_some_and(|&gso| gso != offload::GSO_NONE);
    match tun.write(bytes) {
        Ok(_) => {
            if coalesced {
                counters.bump("tun_coalesced_writes");
            }
            false
        }
        Err(e) if coalesced && e.raw_os_error() == Some(libc::EINVAL) => {
            let result = offload::split_write(bytes, &mut Vec::new(), |one| {
                if tun.write(one).is_err() {
                    counters.bump("tx_tun_errors");
                }
            });
            if result.is_err() {
                counters.bump("tx_tun_errors");
            }
            true
        }
        Err(e) => {
            counters.bump("tx_tun_errors");
            tracing::debug!("write to TUN: {e}");
            false
        }
    }
}

/// Splits queued datagrams into messages `[start, end)`: with `gso`, a run of datagrams to
/// one destination, all of the first one's size but the last (which may be shorter and then
/// ends the run), becomes one message; everything else is a message of its own.
fn gso_runs(tos: &[SocketAddrV4], lens: &[usize], gso: bool) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut a = 0;
    while a < lens.len() {
        let mut b = a + 1;
        if gso && lens[a] > 0 {
            let mut bytes = lens[a];
            while b < lens.len()
                && b - a < GSO_MAX_SEGMENTS
                && tos[b] == tos[a]
                && lens[b] > 0
                && lens[b] <= lens[a]
                && bytes + lens[b] <= GSO_MAX_BYTES
            {
                bytes += lens[b];
                b += 1;
                if lens[b - 1] < lens[a] {
                    break;
                }
            }
        }
        runs.push((a, b));
        a = b;
    }
    runs
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
    // The router's TUN stays plain: it faces forwarded traffic, whose sizes it must judge
    // packet by packet (Packet Too Big above 1280 bytes).
    let mut shell = Shell::open(&opts.ifname, sock, opts.events_json, false, opts.offload)?;
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

    let mut buf = vec![0u8; TUN_BUF_LEN];
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
    let mut shell = Shell::open(&opts.ifname, sock, opts.events_json, opts.offload, opts.offload)?;
    tracing::info!("peer on {local} soliciting {}", cfg.router);

    let mut peer = Peer::new(cfg, Instant::now());
    let mut buf = vec![0u8; TUN_BUF_LEN];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counters;
    use crate::offload::{Checksum, F_NEEDS_CSUM, GSO_TCPV6};
    use crate::sys::{poll::wait_readable, testns::in_netns};
    use std::net::Ipv6Addr;
    use std::os::fd::AsRawFd;

    /// A TUN write holding one IPv6 + TCP segment (ACK|PSH, 200 bytes of data, to the
    /// discard port) behind a TSO6 header with `gso_size`, its checksum left partial as in
    /// a coalesced write.
    fn tso_write(src: Ipv6Addr, dst: Ipv6Addr, ack: u32, gso_size: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 220, 6, 64];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&9u16.to_be_bytes());
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(&[7; 200]);
        let mut ph = Checksum::default();
        ph.add(&p[8..40]).add(&220u32.to_be_bytes()).add(&[0, 0, 0, 6]);
        let sum = ph.sum();
        p[56..58].copy_from_slice(&sum);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 60,
            gso_size,
            csum_start: 40,
            csum_offset: 16,
        };
        [&hdr.emit()[..], &p[..]].concat()
    }

    /// Waits for the RST the kernel sends back for a segment to a closed port whose
    /// acknowledgment number was `ack`: proof the segment arrived with a valid checksum.
    fn await_rst(tun: &Tun, ack: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if !wait_readable(&[tun.as_raw_fd()], Some(left)).expect("poll")[0] {
                continue;
            }
            let Ok(n) = tun.read(&mut buf) else { continue };
            let Ok((_, p)) = VnetHdr::parse(&buf[..n]) else {
                continue;
            };
            if p.len() >= 60 && p[6] == 6 && p[40..44] == [0, 9, 0x9c, 0x40] && p[53] & 0x04 != 0 {
                return p[44..48] == ack.to_be_bytes();
            }
        }
        false
    }

    /// The fallback for a refused coalesced write, against a real TUN: the kernel refuses a
    /// TSO6 write whose GSO size is GSO_BY_FRAGS (0xffff) with EINVAL, and the write must
    /// then reach the kernel split into plain packets and tell the caller to stop joining.
    /// A well-formed coalesced write is taken as it is. (The coalescer itself never writes
    /// such a GSO size, and this kernel takes everything it does write: a refusal of a
    /// real coalesced write can only come from a kernel without TUN GSO support.)
    #[test]
    fn refused_coalesced_write_is_split_and_still_delivered() {
        in_netns(|| {
            let (tun, _) = Tun::create_offloaded("bedref%d").expect("create tun");
            assert!(tun.vnet_hdr());
            tun.set_nonblocking(true).expect("nonblocking");
            sysctl::quiet_autoconf(tun.name()).expect("sysctls");
            let mut nl = Netlink::open().expect("netlink");
            nl.set_link_up(tun.ifindex(), Some(1280)).expect("link up");
            let me: Ipv6Addr = "fc64::1".parse().expect("addr");
            let peer: Ipv6Addr = "fc64::2".parse().expect("addr");
            nl.add_address_v6(tun.ifindex(), me, 64).expect("add address");

            let mut counters = Counters::default();
            let accepted = tso_write(peer, me, 0x0bed_0001, 100);
            assert!(!write_tun_or_count(&tun, &accepted, true, &mut counters));
            assert_eq!(counters.get("tun_coalesced_writes"), 1);
            assert!(await_rst(&tun, 0x0bed_0001), "no RST for the accepted write");

            let refused = tso_write(peer, me, 0x0bed_0002, 0xffff);
            assert_eq!(
                tun.write(&refused).map_err(|e| e.raw_os_error()),
                Err(Some(libc::EINVAL)),
                "this kernel takes GSO_BY_FRAGS from a TUN"
            );
            assert!(
                write_tun_or_count(&tun, &refused, true, &mut counters),
                "a refusal must stop the joining"
            );
            assert_eq!(counters.get("tun_coalesced_writes"), 1);
            assert_eq!(counters.get("tx_tun_errors"), 0);
            assert!(await_rst(&tun, 0x0bed_0002), "the split write never reached TCP");
        });
    }

    #[test]
    fn gso_runs_join_equal_sizes_to_one_destination_only() {
        let a = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 1000);
        let b = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 20), 2000);
        let tos = [a, a, a, a, b, b, a, a, a];
        let lens = [100, 100, 60, 100, 100, 100, 0, 100, 120];
        assert_eq!(
            gso_runs(&tos, &lens, true),
            // A shorter datagram ends a run; another destination, an empty datagram (a
            // keepalive) or a longer one starts a new message.
            vec![(0, 3), (3, 4), (4, 6), (6, 7), (7, 8), (8, 9)]
        );
        assert_eq!(gso_runs(&tos, &lens, false).len(), tos.len());

        let many = vec![a; 200];
        let runs = gso_runs(&many, &[1280; 200], true);
        assert!(runs
            .iter()
            .all(|(s, e)| e - s <= GSO_MAX_SEGMENTS && (e - s) * 1280 <= GSO_MAX_BYTES));
        assert_eq!(
            runs.first(),
            Some(&(0, 51)),
            "65507 bytes hold 51 datagrams of 1280"
        );
        assert_eq!(runs.last().map(|r| r.1), Some(200));
    }
}

//! Capturing a host's own interfaces from inside its network namespace.
//!
//! The fabric records everything that crosses a lab link, but not what happens on the
//! interfaces a host makes for itself: above all the `6bed4` TUN that the implementation
//! under test creates some time after it starts, whose packets are the IPv6 side of the
//! tunnel. [`HostCapture`] records those.
//!
//! How: a thread enters the namespace (`setns`) and opens one `AF_PACKET` socket of type
//! `SOCK_DGRAM` for `ETH_P_ALL`, *not bound to any interface*. Unbound, it sees every
//! interface of the namespace, including interfaces created after it was opened, from their
//! very first packet; `SOCK_DGRAM` ("cooked") strips any link-layer header, so a TUN's
//! packets and an Ethernet interface's alike arrive as the network-layer packet, with the
//! interface index, packet type (which gives the direction) and EtherType in the
//! `sockaddr_ll` that `recvmsg` fills in. The kernel timestamps each packet
//! (`SO_TIMESTAMPNS`) when it passes the tap, so the time is right even when the thread is
//! scheduled late.
//!
//! Interfaces are named on first sight (`if_indextoname` inside the namespace) and the name
//! is cached by index; the lab's own uplinks (and `lo`, unless asked for) are excluded so
//! nothing is recorded twice.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CStr;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::linktype;
use super::pcapng::{CaptureFile, Direction};

/// The receive buffer: big enough for any packet a TUN or a GSO-capable interface hands
/// the tap (64 KiB plus headroom). Longer packets are cut and reported with their length.
const RECV_BUF: usize = 256 * 1024;

/// The socket receive queue asked for, so a burst does not overflow while the sink writes.
const SOCKET_RCVBUF: libc::c_int = 8 * 1024 * 1024;

/// `ARPHRD_LOOPBACK` from `<linux/if_arp.h>`: how `lo` is recognised (its index is 1 in
/// every namespace, but the hardware type says so explicitly).
const ARPHRD_LOOPBACK: u16 = 772;

/// What to leave out of a host capture.
#[derive(Debug, Clone, Default)]
pub struct HostCaptureOptions {
    /// Interface indexes not to record: the lab's uplinks, whose traffic the fabric records
    /// already. Indexes are stable for the life of an interface.
    pub exclude_ifindexes: BTreeSet<u32>,
    /// Interface names not to record, checked when an index is first seen.
    pub exclude_names: BTreeSet<String>,
    /// Record `lo` too (off by default: loopback traffic is seldom part of a 6bed4 story
    /// and every packet shows up twice, once per direction).
    pub include_loopback: bool,
}

/// One captured packet as the sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct HostPacket<'a> {
    /// The interface's name inside the namespace, e.g. `6bed4`.
    pub interface: &'a str,
    pub ifindex: u32,
    /// Outbound when the host sent it out of the interface (`PACKET_OUTGOING`), inbound for
    /// everything the interface received (host, broadcast, multicast, other host).
    pub direction: Direction,
    /// The kernel's receive timestamp, or the time the thread read it if the kernel gave
    /// none.
    pub ts: SystemTime,
    /// The EtherType of `data` (`0x86dd` for IPv6, `0x0800` for IPv4), host byte order.
    pub protocol: u16,
    /// The interface's `ARPHRD_*` hardware type (`0xfffe`, `ARPHRD_NONE`, for a TUN).
    pub hatype: u16,
    /// The raw `PACKET_*` packet type.
    pub pkttype: u8,
    /// The link-layer source address as the kernel reports it (empty for a TUN).
    pub link_addr: &'a [u8],
    /// The network-layer packet (possibly cut at the receive buffer's size).
    pub data: &'a [u8],
    /// The packet's full length.
    pub orig_len: u32,
}

/// Counters a capture returns when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCaptureStats {
    /// Packets handed to the sink.
    pub packets: u64,
    /// Packets on excluded interfaces.
    pub excluded: u64,
    /// Packets longer than the receive buffer, handed over cut.
    pub truncated: u64,
    /// Packets the kernel dropped because the socket's queue was full
    /// (`PACKET_STATISTICS`).
    pub kernel_drops: u64,
}

/// The sink a capture calls for every packet; an error ends the capture and is returned by
/// [`HostCapture::stop`].
pub trait HostSink: FnMut(&HostPacket<'_>) -> io::Result<()> + Send + 'static {}
impl<T: FnMut(&HostPacket<'_>) -> io::Result<()> + Send + 'static> HostSink for T {}

/// A running capture in one namespace; stop it with [`HostCapture::stop`] (dropping it
/// stops it too, discarding the result).
///
/// The capture thread's socket keeps the namespace alive, so the namespace cannot "go away"
/// under a running capture: whoever tears a namespace down must stop its capture as part
/// of that (keep the `HostCapture` next to the namespace's fd, and drop it first).
#[derive(Debug)]
pub struct HostCapture {
    stop: Arc<OwnedFd>,
    thread: Option<JoinHandle<io::Result<HostCaptureStats>>>,
}

impl HostCapture {
    /// Starts capturing in the namespace `netns` (an fd of `/proc/<pid>/ns/net` or a held
    /// namespace fd) and returns once the socket is open: every packet from then on, on any
    /// interface not excluded, reaches `sink`.
    ///
    /// Needs `CAP_SYS_ADMIN` (setns) and `CAP_NET_RAW` (packet socket).
    pub fn start(
        netns: BorrowedFd<'_>,
        options: HostCaptureOptions,
        sink: impl HostSink,
    ) -> io::Result<Self> {
        // The thread outlives the borrow, so it gets its own descriptor.
        let netns = netns
            .try_clone_to_owned()
            .map_err(|e| annotate(e, "duplicate the namespace fd"))?;
        // SAFETY: eventfd takes an initial value and flags and touches no memory of ours.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(annotate(io::Error::last_os_error(), "eventfd"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("bedlab-hostcap".into())
            .spawn(move || capture_thread(netns, options, sink, thread_stop, ready_tx))
            .map_err(|e| annotate(e, "spawn the capture thread"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(HostCapture {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread died before reporting (it panicked).
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(io::Error::other("host capture thread died while starting")),
            },
        }
    }

    /// Stops the capture and returns its counters, or the error that ended it early.
    pub fn stop(mut self) -> io::Result<HostCaptureStats> {
        self.stop_and_join()
    }

    /// Whether the capture thread is still running (false after a sink or socket error).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn stop_and_join(&mut self) -> io::Result<HostCaptureStats> {
        let Some(thread) = self.thread.take() else {
            return Err(io::Error::other("host capture already stopped"));
        };
        signal(self.stop.as_raw_fd());
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(io::Error::other("host capture thread panicked")),
        }
    }
}

impl Drop for HostCapture {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_and_join();
        }
    }
}

/// Wakes the capture thread by adding 1 to its eventfd.
fn signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; the result is ignored
    // because the only failure (counter overflow) still leaves the fd readable.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), mem::size_of::<u64>()) };
}

/// A sink that writes into a [`CaptureFile`]: each interface becomes `prefix/name` (or just
/// `name` if `prefix` is empty). IPv4 and IPv6 packets are written as `LINKTYPE_RAW`, the
/// same as the fabric's uplink captures; anything else (ARP on a veth, say) as
/// `LINKTYPE_LINUX_SLL2` with the header rebuilt from the socket address, so nothing is lost
/// or mislabelled.
pub fn pcapng_sink(file: CaptureFile, prefix: &str) -> impl HostSink {
    let prefix = prefix.to_string();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut frame = Vec::with_capacity(RECV_BUF + 20);
    move |p: &HostPacket<'_>| {
        let name = names.entry(p.ifindex).or_insert_with(|| {
            if prefix.is_empty() {
                p.interface.to_string()
            } else {
                format!("{prefix}/{}", p.interface)
            }
        });
        if matches!(p.protocol, 0x0800 | 0x86DD) {
            let id = file.interface_id(name, linktype::RAW)?;
            return file.write_packet(
                id,
                p.ts,
                p.data,
                p.orig_len.max(p.data.len() as u32),
                Some(p.direction),
                None,
            );
        }
        frame.clear();
        frame.extend_from_slice(&p.protocol.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&p.ifindex.to_be_bytes());
        frame.extend_from_slice(&p.hatype.to_be_bytes());
        frame.push(p.pkttype);
        let addr = &p.link_addr[..p.link_addr.len().min(8)];
        frame.push(addr.len() as u8);
        let mut addr8 = [0u8; 8];
        addr8[..addr.len()].copy_from_slice(addr);
        frame.extend_from_slice(&addr8);
        frame.extend_from_slice(p.data);
        let id = file.interface_id(name, linktype::LINUX_SLL2)?;
        let orig = p.orig_len.max(p.data.len() as u32).saturating_add(20);
        file.write_packet(id, p.ts, &frame, orig, Some(p.direction), None)
    }
}

/// The body of the capture thread: enter the namespace, open the socket, report readiness,
/// then read until stopped.
fn capture_thread(
    netns: OwnedFd,
    options: HostCaptureOptions,
    mut sink: impl HostSink,
    stop: Arc<OwnedFd>,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<HostCaptureStats> {
    let sock = match open_in_namespace(netns) {
        Ok(sock) => sock,
        Err(e) => {
            // The starter returns this error; the thread's own result is then unused.
            let copy = io::Error::new(e.kind(), e.to_string());
            let _ = ready.send(Err(e));
            return Err(copy);
        }
    };
    let _ = ready.send(Ok(()));
    let result = read_loop(&sock, &options, &mut sink, stop.as_raw_fd());
    let drops = kernel_drops(&sock).unwrap_or(0);
    result.map(|mut stats| {
        stats.kernel_drops += drops;
        stats
    })
}

/// Moves this thread into `netns` and opens the unbound cooked packet socket there.
fn open_in_namespace(netns: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: setns takes a descriptor we own (open for the call's duration) and a flag;
    // CLONE_NEWNET moves only this thread, which does nothing else afterwards.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(annotate(
            io::Error::last_os_error(),
            "setns into the host's namespace",
        ));
    }
    drop(netns);
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::c_int::from(proto),
        )
    };
    if raw < 0 {
        return Err(annotate(io::Error::last_os_error(), "open AF_PACKET socket"));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // Kernel timestamps are best-effort: without them the read time is used.
    let _ = set_int_opt(&sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    // RCVBUFFORCE goes past rmem_max with CAP_NET_ADMIN; otherwise take what rmem_max allows.
    if set_int_opt(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_RCVBUF).is_err() {
        let _ = set_int_opt(&sock, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_RCVBUF);
    }
    Ok(sock)
}

/// Cached knowledge about one interface index.
struct Seen {
    name: String,
    excluded: bool,
}

/// Polls the socket and the stop eventfd; drains the socket whenever it is readable.
fn read_loop(
    sock: &OwnedFd,
    options: &HostCaptureOptions,
    sink: &mut impl HostSink,
    stop: RawFd,
) -> io::Result<HostCaptureStats> {
    let mut stats = HostCaptureStats::default();
    let mut seen: HashMap<u32, Seen> = HashMap::new();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd and the count passed is its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(annotate(e, "poll"));
        }
        if fds[1].revents != 0 {
            return Ok(stats);
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 && fds[0].revents & libc::POLLIN == 0 {
            return Err(io::Error::other(format!(
                "packet socket reported poll events {:#x}",
                fds[0].revents
            )));
        }
        // Drain what is queued.
        while let Some(rx) = receive(sock, &mut buf)? {
            let entry = seen.entry(rx.ifindex).or_insert_with(|| {
                let name = index_to_name(rx.ifindex);
                let excluded = options.exclude_ifindexes.contains(&rx.ifindex)
                    || options.exclude_names.contains(&name)
                    || (!options.include_loopback && rx.hatype == ARPHRD_LOOPBACK);
                Seen { name, excluded }
            });
            if entry.excluded {
                stats.excluded += 1;
                continue;
            }
            let len = rx.len.min(buf.len());
            if rx.len > buf.len() {
                stats.truncated += 1;
            }
            let packet = HostPacket {
                interface: &entry.name,
                ifindex: rx.ifindex,
                direction: if rx.pkttype == libc::PACKET_OUTGOING {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                ts: rx.ts,
                protocol: rx.protocol,
                hatype: rx.hatype,
                pkttype: rx.pkttype,
                link_addr: &rx.addr[..usize::from(rx.addr_len)],
                data: &buf[..len],
                orig_len: u32::try_from(rx.len).unwrap_or(u32::MAX),
            };
            sink(&packet)?;
            stats.packets += 1;
        }
    }
}

/// What `recvmsg` told about one packet (the bytes are in the caller's buffer).
struct Received {
    /// The packet's full length (may exceed the buffer: `MSG_TRUNC`).
    len: usize,
    ifindex: u32,
    pkttype: u8,
    protocol: u16,
    hatype: u16,
    addr: [u8; 8],
    addr_len: u8,
    ts: SystemTime,
}

/// One non-blocking `recvmsg`; `Ok(None)` when nothing is queued.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<Received>> {
    // SAFETY: sockaddr_ll is plain old data for which all-zero is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    // u64 elements give the control buffer the alignment cmsghdr needs.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    loop {
        // SAFETY: every pointer in `msg` refers to a live local or to `buf`, each with the
        // length recorded next to it; the kernel writes only within those bounds.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n >= 0 {
            // SAFETY: `msg` was filled by a successful recvmsg, so its control fields
            // describe a valid cmsg chain inside `control`.
            let ts = unsafe { kernel_timestamp(&msg) }.unwrap_or_else(SystemTime::now);
            return Ok(Some(Received {
                len: n as usize,
                ifindex: u32::try_from(from.sll_ifindex).unwrap_or(0),
                pkttype: from.sll_pkttype,
                protocol: u16::from_be(from.sll_protocol),
                hatype: from.sll_hatype,
                addr: from.sll_addr,
                addr_len: from.sll_halen.min(8),
                ts,
            }));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            // An interface that vanished while its packet was queued: skip the packet.
            _ if e.raw_os_error() == Some(libc::ENETDOWN) => continue,
            _ => return Err(annotate(e, "recvmsg on the packet socket")),
        }
    }
}

/// The `SCM_TIMESTAMPNS` control message of a received packet, if there is one.
///
/// # Safety
/// `msg` must have been filled in by a successful `recvmsg`.
unsafe fn kernel_timestamp(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: the caller guarantees a valid control area; CMSG_FIRSTHDR/NXTHDR only walk it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points into the control buffer the kernel filled.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries one `timespec`; the data may be
            // unaligned relative to it, hence read_unaligned.
            let ts: libc::timespec = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            let secs = u64::try_from(ts.tv_sec).ok()?;
            let nanos = u32::try_from(ts.tv_nsec).ok()?;
            return UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
        }
        // SAFETY: as above, the walk stays inside the control area described by `msg`.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// The name of interface `ifindex` in this thread's namespace, or `if<index>` if it is
/// already gone.
fn index_to_name(ifindex: u32) -> String {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `name`.
    unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `PACKET_STATISTICS`: packets the kernel dropped since the last call.
fn kernel_drops(sock: &OwnedFd) -> io::Result<u64> {
    // SAFETY: tpacket_stats is plain old data for which all-zero is a valid value.
    let mut st: libc::tpacket_stats = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `st`, a live tpacket_stats.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(st.tp_drops))
}

fn set_int_opt(sock: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads an int from a live local whose exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("host capture: {what}: {e}"))
}

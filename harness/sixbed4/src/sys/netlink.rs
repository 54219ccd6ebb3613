//! A small synchronous rtnetlink client: exactly the link, address and route operations the
//! 6bed4 daemon needs, spoken directly over a `NETLINK_ROUTE` socket.
//!
//! Why by hand: the daemon configures one interface a handful of times per session, so an
//! async netlink stack would be far more code than the problem; and shelling out to `ip`
//! would lose the kernel's errno, depend on a binary's output format, and fork from a daemon.
//!
//! Every request carries `NLM_F_ACK` and waits for the kernel's answer, so a call returns only
//! once the kernel has made the change (for a new address, once it accepts packets for it;
//! see [`Netlink::add_address_v6`]), and a refusal comes back as an [`io::Error`] whose message
//! names the operation and whose [`NetlinkError`] payload keeps the errno (see [`errno_of`]).
//!
//! Messages are built as plain byte vectors by small functions (header, fixed part, attributes)
//! so their layout — 4-byte alignment, attribute padding, lengths — is unit-tested without
//! privileges. All multi-byte fields of netlink headers are in host byte order; addresses are
//! in network order, as the kernel stores them.

use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

// Constants from the kernel's UAPI headers (stable ABI), kept here rather than taken from
// `libc`, which exports only some of them and not for every target libc.

// <linux/netlink.h>
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
#[cfg(test)]
const NLM_F_MULTI: u16 = 0x02;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
/// In an error message: the echoed request was cut to its header (we ask for that).
const NLM_F_CAPPED: u16 = 0x100;
/// In an error message: extended-ack TLVs follow the echoed request.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

// <linux/rtnetlink.h>
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

// <linux/if_link.h>, <linux/if_addr.h>
const IFLA_MTU: u16 = 4;
const IFF_UP: u32 = libc::IFF_UP as u32;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
/// Skip duplicate address detection: the address never sits "tentative" for a second while
/// the kernel probes a link on which a 6bed4 address, derived from our own external IPv4
/// address and port, cannot collide. (The kernel still completes even a NODAD address
/// asynchronously; [`Netlink::add_address_v6`] waits for that.)
const IFA_F_NODAD: u32 = 0x02;

const AF_INET6: u8 = libc::AF_INET6 as u8;
const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;

/// How long to wait for the kernel's answer before giving up. The kernel always answers an
/// `NLM_F_ACK` request, so this only trips if the answer was dropped (receive buffer overrun),
/// and then failing beats hanging the daemon forever.
const REPLY_TIMEOUT_SECS: libc::time_t = 5;
/// How long [`Netlink::add_address_v6`] waits for a new address to become usable. The kernel
/// normally needs well under a millisecond; a loaded machine may need a few.
pub const USABLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a dump that the kernel marks inconsistent (`NLM_F_DUMP_INTR`) is retried.
const DUMP_TRIES: u32 = 4;
/// Large enough for any single rtnetlink datagram: the kernel sizes dump batches to at most
/// 32 KiB, and a truncated datagram is reported as an error rather than misparsed.
const RECV_BUF: usize = 64 * 1024;

/// The kernel refused an rtnetlink request (or a system call on the socket failed).
///
/// Carried inside the [`io::Error`] that the [`Netlink`] methods return; the error's kind is
/// the one the errno maps to, and [`errno_of`] recovers the errno itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkError {
    /// What we were doing, for example `add address fc64::1/64 on ifindex 5`.
    pub operation: String,
    /// The positive errno the kernel answered with.
    pub errno: i32,
    /// The kernel's extended-ack explanation, when it gave one.
    pub kernel_message: Option<String>,
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.operation,
            io::Error::from_raw_os_error(self.errno)
        )?;
        if let Some(msg) = &self.kernel_message {
            write!(f, " (kernel: {msg})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NetlinkError {}

impl NetlinkError {
    fn into_io(self) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(self.errno).kind(), self)
    }
}

/// The errno behind an error returned by this module: the kernel's answer for a refused
/// request, or the system call's errno for a failed send or receive.
pub fn errno_of(err: &io::Error) -> Option<i32> {
    err.raw_os_error()
        .or_else(|| err.get_ref()?.downcast_ref::<NetlinkError>().map(|e| e.errno))
}

/// A `NETLINK_ROUTE` socket with a request counter.
///
/// Methods take `&mut self`: a request and the reading of its answer form one exchange, and
/// the borrow makes it impossible to interleave two on the same socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens a route-netlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(annotate(io::Error::last_os_error(), "open rtnetlink socket"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // Extended acks give a human-readable reason with the errno ("Nexthop device is not
        // up" is far better than ENETDOWN alone); capped acks keep the kernel from echoing our
        // whole request back. Both are best-effort: older kernels without them still work.
        let _ = set_int_opt(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = set_int_opt(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let timeout = libc::timeval {
            tv_sec: REPLY_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO reads a `timeval`; we pass a pointer to one and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(annotate(
                io::Error::last_os_error(),
                "set rtnetlink receive timeout",
            ));
        }

        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (pid 0 asks the
        // kernel to assign our port id, groups 0 subscribes to nothing).
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(annotate(io::Error::last_os_error(), "bind rtnetlink socket"));
        }

        // Sequence numbers only need to be unique on this socket (its port id is unique
        // already); they let us skip a late answer to a request that timed out.
        Ok(Netlink { fd, seq: 0 })
    }

    /// Brings the interface up and, if `mtu` is given, sets its MTU in the same request.
    pub fn set_link_up(&mut self, ifindex: u32, mtu: Option<u32>) -> io::Result<()> {
        let op = match mtu {
            Some(m) => format!("set link up with mtu {m} on ifindex {ifindex}"),
            None => format!("set link up on ifindex {ifindex}"),
        };
        let seq = self.next_seq();
        self.request(&link_up_request(seq, ifindex, mtu), seq, &op)
    }

    /// Adds an IPv6 address without duplicate address detection, so it is usable at once.
    /// Adding an address that is already there replaces it (`NLM_F_REPLACE`) and succeeds.
    ///
    /// "At once" needs help from us: even with `IFA_F_NODAD` the kernel acks the request
    /// before the address works. It finishes the job (installing the address's route in the
    /// `local` table, which is what makes it accept packets for it) from its DAD work queue a
    /// moment later — with NODAD whether or not the link is up — and a packet arriving in
    /// between is dropped as not ours (`Ip6InAddrErrors`). So this waits, up to
    /// [`USABLE_TIMEOUT`], until a route lookup says the address is local.
    pub fn add_address_v6(&mut self, ifindex: u32, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
        let op = format!("add address {addr}/{prefix_len} on ifindex {ifindex}");
        check_prefix_len(prefix_len, &op)?;
        let seq = self.next_seq();
        let msg = address_request(AddrOp::Add, seq, ifindex, addr, prefix_len);
        self.request(&msg, seq, &op)?;
        self.wait_address_usable(addr, USABLE_TIMEOUT)
            .map_err(|e| io::Error::new(e.kind(), format!("{op}: {e}")))
    }

    /// Waits until the kernel treats `addr` as one of its own (a route lookup for it yields a
    /// `local` route), polling every few milliseconds; a `TimedOut` error after `timeout`.
    pub fn wait_address_usable(&mut self, addr: Ipv6Addr, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(200);
        loop {
            if self.route_type_v6(addr)? == Some(RTN_LOCAL) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("address {addr} not usable (no local route) after {timeout:?}"),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The type (`RTN_LOCAL`, `RTN_UNICAST`, ...) of the route the kernel would use for
    /// `addr`, or `None` if it has none (the lookup's `ENETUNREACH` and kin).
    fn route_type_v6(&mut self, addr: Ipv6Addr) -> io::Result<Option<u8>> {
        let op = format!("look up route to {addr}");
        let seq = self.next_seq();
        let mut body = rtmsg_get_v6();
        push_attr(&mut body, RTA_DST, &addr.octets());
        self.send(&nlmsg(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, &body), &op)?;
        let mut route_type = None;
        let answer = self.read_replies(seq, &op, |t, payload| {
            if t == RTM_NEWROUTE {
                route_type = payload.get(7).copied();
            }
        });
        match answer {
            Ok(()) => Ok(route_type),
            Err(e) => match errno_of(&e) {
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => Ok(None),
                _ => Err(e),
            },
        }
    }

    /// Removes an IPv6 address; an address that is not there is not an error, so removal
    /// can be retried and is idempotent.
    pub fn remove_address_v6(&mut self, ifindex: u32, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
        let op = format!("remove address {addr}/{prefix_len} on ifindex {ifindex}");
        check_prefix_len(prefix_len, &op)?;
        let seq = self.next_seq();
        let msg = address_request(AddrOp::Remove, seq, ifindex, addr, prefix_len);
        match self.request(&msg, seq, &op) {
            Err(e) if errno_of(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    /// Lists the IPv6 addresses (with prefix lengths) on one interface, including the
    /// kernel's own link-local ones.
    pub fn addresses_v6(&mut self, ifindex: u32) -> io::Result<Vec<(Ipv6Addr, u8)>> {
        let op = format!("list IPv6 addresses on ifindex {ifindex}");
        let mut tries = 0;
        loop {
            tries += 1;
            match self.dump_addresses_v6(ifindex, &op) {
                // An address changed during the dump: ask again for a consistent list.
                Err(e) if errno_of(&e) == Some(libc::EINTR) && tries < DUMP_TRIES => continue,
                other => return other,
            }
        }
    }

    fn dump_addresses_v6(&mut self, ifindex: u32, op: &str) -> io::Result<Vec<(Ipv6Addr, u8)>> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        self.send(&getaddr_dump_request(seq, ifindex), op)?;
        self.read_replies(seq, op, |msg_type, payload| {
            if msg_type == RTM_NEWADDR {
                if let Some((index, addr, plen)) = parse_ifaddr_v6(payload) {
                    if index == ifindex {
                        out.push((addr, plen));
                    }
                }
            }
        })?;
        Ok(out)
    }

    /// Installs (or replaces) a route in the main table through the interface, optionally via
    /// a next hop. Host bits of `prefix` beyond `prefix_len` are cleared, as `ip` would insist.
    pub fn add_route_v6(
        &mut self,
        ifindex: u32,
        prefix: Ipv6Addr,
        prefix_len: u8,
        via: Option<Ipv6Addr>,
    ) -> io::Result<()> {
        let op = route_op_name("add", ifindex, prefix, prefix_len, via);
        check_prefix_len(prefix_len, &op)?;
        let seq = self.next_seq();
        let msg = route_request(RouteOp::Add, seq, ifindex, prefix, prefix_len, via);
        self.request(&msg, seq, &op)
    }

    /// Removes a route installed by [`Netlink::add_route_v6`] with the same arguments; a route
    /// that is not there is not an error, mirroring [`Netlink::remove_address_v6`].
    pub fn remove_route_v6(
        &mut self,
        ifindex: u32,
        prefix: Ipv6Addr,
        prefix_len: u8,
        via: Option<Ipv6Addr>,
    ) -> io::Result<()> {
        let op = route_op_name("remove", ifindex, prefix, prefix_len, via);
        check_prefix_len(prefix_len, &op)?;
        let seq = self.next_seq();
        let msg = route_request(RouteOp::Remove, seq, ifindex, prefix, prefix_len, via);
        match self.request(&msg, seq, &op) {
            Err(e) if errno_of(&e) == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// Adds an IPv4 address (the kernel adds the connected route for its subnet).
    pub fn add_address_v4(&mut self, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let op = format!("add address {addr}/{prefix_len} on ifindex {ifindex}");
        if prefix_len > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{op}: prefix length over 32"),
            ));
        }
        let seq = self.next_seq();
        self.request(&address_request_v4(seq, ifindex, addr, prefix_len), seq, &op)
    }

    /// Adds (or replaces) an IPv4 route out of `ifindex`, through `via` when given.
    pub fn add_route_v4(
        &mut self,
        ifindex: u32,
        prefix: Ipv4Addr,
        prefix_len: u8,
        via: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let op = match via {
            Some(gw) => format!("add route {prefix}/{prefix_len} via {gw} on ifindex {ifindex}"),
            None => format!("add route {prefix}/{prefix_len} on ifindex {ifindex}"),
        };
        if prefix_len > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{op}: prefix length over 32"),
            ));
        }
        let seq = self.next_seq();
        self.request(&route_request_v4(seq, ifindex, prefix, prefix_len, via), seq, &op)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request that expects only an ack and waits for it.
    fn request(&mut self, msg: &[u8], seq: u32, op: &str) -> io::Result<()> {
        self.send(msg, op)?;
        self.read_replies(seq, op, |_, _| {})
    }

    fn send(&self, msg: &[u8], op: &str) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; zero pid addresses the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `msg` is a valid buffer of `msg.len()` bytes and `sa` a valid address of
            // the size passed; the kernel only reads both.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&sa as *const libc::sockaddr_nl).cast(),
                    mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(annotate(e, op));
            }
            return Ok(());
        }
    }

    /// Reads the kernel's answers to request `seq` until its ack (for a plain request) or
    /// `NLMSG_DONE` (for a dump), handing every data message to `on_msg`. Messages with another
    /// sequence number are stale answers to an abandoned request and are skipped.
    fn read_replies(&mut self, seq: u32, op: &str, mut on_msg: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; RECV_BUF];
        let mut interrupted = false;
        loop {
            let n = self.recv(&mut buf, op)?;
            for msg in messages(&buf[..n]) {
                let msg = msg.map_err(|e| annotate(e, op))?;
                if msg.seq != seq {
                    continue;
                }
                // The kernel marks the part of a dump during which its table changed.
                interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
                match msg.msg_type {
                    NLMSG_ERROR => {
                        let (errno, text) = parse_error(msg.flags, msg.payload)
                            .ok_or_else(|| malformed(op, "short NLMSG_ERROR"))?;
                        if errno == 0 {
                            return Ok(());
                        }
                        return Err(NetlinkError {
                            operation: op.to_owned(),
                            errno,
                            kernel_message: text,
                        }
                        .into_io());
                    }
                    NLMSG_DONE => {
                        if interrupted {
                            // The table changed mid-dump; the caller may retry, but silently
                            // returning a possibly inconsistent list would be worse.
                            return Err(NetlinkError {
                                operation: op.to_owned(),
                                errno: libc::EINTR,
                                kernel_message: Some("dump interrupted by a change".into()),
                            }
                            .into_io());
                        }
                        // The end of a dump; its payload is the dump's final status.
                        let status = msg
                            .payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        if status < 0 {
                            return Err(NetlinkError {
                                operation: op.to_owned(),
                                errno: -status,
                                kernel_message: None,
                            }
                            .into_io());
                        }
                        return Ok(());
                    }
                    // A data message, possibly one NLM_F_MULTI part of a dump: keep reading.
                    t => on_msg(t, msg.payload),
                }
            }
        }
    }

    /// Receives one datagram from the kernel, refusing truncated ones and anything not sent
    /// by the kernel itself (port id 0).
    fn recv(&self, buf: &mut [u8], op: &str) -> io::Result<usize> {
        loop {
            // SAFETY: sockaddr_nl is plain old data; the kernel overwrites it.
            let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain old data; all-zero means no name, no control data.
            let mut mh: libc::msghdr = unsafe { mem::zeroed() };
            mh.msg_name = (&mut sa as *mut libc::sockaddr_nl).cast();
            mh.msg_namelen = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            // SAFETY: `mh` points at `sa` and at `iov`, which points at `buf`; all three live
            // across the call and their sizes are the ones given.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut mh, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{op}: no answer from the kernel within {REPLY_TIMEOUT_SECS} s"),
                        ))
                    }
                    _ => return Err(annotate(e, op)),
                }
            }
            if mh.msg_flags & libc::MSG_TRUNC != 0 {
                return Err(malformed(op, "netlink reply truncated"));
            }
            if sa.nl_pid != 0 {
                continue;
            }
            return Ok(n as usize);
        }
    }
}

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn set_int_opt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is an int; we pass a pointer to one and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
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

/// Prefixes a system-call error with the operation, keeping its errno for [`errno_of`].
fn annotate(e: io::Error, op: &str) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => NetlinkError {
            operation: op.to_owned(),
            errno,
            kernel_message: None,
        }
        .into_io(),
        None => io::Error::new(e.kind(), format!("{op}: {e}")),
    }
}

fn malformed(op: &str, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{op}: {what}"))
}

fn check_prefix_len(prefix_len: u8, op: &str) -> io::Result<()> {
    if prefix_len > 128 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{op}: prefix length {prefix_len} exceeds 128"),
        ));
    }
    Ok(())
}

fn route_op_name(verb: &str, ifindex: u32, prefix: Ipv6Addr, len: u8, via: Option<Ipv6Addr>) -> String {
    match via {
        Some(gw) => format!("{verb} route {prefix}/{len} via {gw} on ifindex {ifindex}"),
        None => format!("{verb} route {prefix}/{len} on ifindex {ifindex}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Message building. Pure functions over byte vectors, unit-tested below.

/// Rounds up to the 4-byte boundary that netlink headers and attributes are aligned to.
const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Frames `body` (fixed header plus attributes) as one netlink message: a 16-byte `nlmsghdr`
/// whose length covers the header and the body, the body, then padding to 4 bytes.
fn nlmsg(msg_type: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut out = Vec::with_capacity(align4(len));
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0, the kernel fills in ours
    out.extend_from_slice(body);
    out.resize(align4(len), 0);
    out
}

/// Appends one `rtattr`: a 4-byte header whose length covers header and data (but not the
/// padding), the data, then zero padding so the next attribute starts 4-byte aligned.
fn push_attr(buf: &mut Vec<u8>, attr_type: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&attr_type.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (align4(len) - len), 0);
}

/// `struct ifinfomsg` (16 bytes): family, pad, type, index, flags, change mask.
fn ifinfomsg(family: u8, ifindex: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![family, 0];
    b.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    b.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&change.to_ne_bytes());
    b
}

/// `struct ifaddrmsg` (8 bytes): family, prefix length, flags (low 8 bits), scope, index.
fn ifaddrmsg(family: u8, prefix_len: u8, flags: u8, scope: u8, ifindex: u32) -> Vec<u8> {
    let mut b = vec![family, prefix_len, flags, scope];
    b.extend_from_slice(&ifindex.to_ne_bytes());
    b
}

/// `struct rtmsg` (12 bytes) for an IPv6 unicast route in the main table, protocol static.
fn rtmsg_v6(dst_len: u8) -> Vec<u8> {
    let mut b = vec![
        AF_INET6,
        dst_len,
        0, // rtm_src_len
        0, // rtm_tos
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    b
}

/// `struct rtmsg` for a route lookup (`RTM_GETROUTE` without `NLM_F_DUMP`): only the family
/// and a full-length destination; table, protocol, scope and type are left to the kernel.
fn rtmsg_get_v6() -> Vec<u8> {
    let mut b = vec![AF_INET6, 128, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

fn link_up_request(seq: u32, ifindex: u32, mtu: Option<u32>) -> Vec<u8> {
    let mut body = ifinfomsg(AF_UNSPEC, ifindex, IFF_UP, IFF_UP);
    if let Some(mtu) = mtu {
        push_attr(&mut body, IFLA_MTU, &mtu.to_ne_bytes());
    }
    nlmsg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, &body)
}

#[derive(Clone, Copy)]
enum AddrOp {
    Add,
    Remove,
}

fn address_request(op: AddrOp, seq: u32, ifindex: u32, addr: Ipv6Addr, prefix_len: u8) -> Vec<u8> {
    let (msg_type, flags, ifa_flags) = match op {
        AddrOp::Add => (
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            IFA_F_NODAD,
        ),
        AddrOp::Remove => (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, 0),
    };
    let mut body = ifaddrmsg(AF_INET6, prefix_len, ifa_flags as u8, RT_SCOPE_UNIVERSE, ifindex);
    // Both IFA_LOCAL and IFA_ADDRESS, equal, as `ip` sends them: for IPv6 a differing
    // IFA_ADDRESS would mean a point-to-point peer.
    push_attr(&mut body, IFA_LOCAL, &addr.octets());
    push_attr(&mut body, IFA_ADDRESS, &addr.octets());
    if let AddrOp::Add = op {
        // The 32-bit flags attribute supersedes the 8-bit header field on current kernels.
        push_attr(&mut body, IFA_FLAGS, &ifa_flags.to_ne_bytes());
    }
    nlmsg(msg_type, flags, seq, &body)
}

fn getaddr_dump_request(seq: u32, ifindex: u32) -> Vec<u8> {
    // The kernel only filters by index under strict checking, which we do not enable; the
    // index is set anyway for readability in traces and the reply is filtered here.
    let body = ifaddrmsg(AF_INET6, 0, 0, 0, ifindex);
    nlmsg(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, &body)
}

#[derive(Clone, Copy)]
enum RouteOp {
    Add,
    Remove,
}

/// Clears the bits of `addr` beyond the first `len`.
fn mask_prefix(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let masked = match len {
        0 => 0,
        l if l >= 128 => bits,
        l => bits & (u128::MAX << (128 - u32::from(l))),
    };
    Ipv6Addr::from(masked)
}

fn route_request(
    op: RouteOp,
    seq: u32,
    ifindex: u32,
    prefix: Ipv6Addr,
    prefix_len: u8,
    via: Option<Ipv6Addr>,
) -> Vec<u8> {
    let (msg_type, flags) = match op {
        RouteOp::Add => (
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        ),
        RouteOp::Remove => (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK),
    };
    let mut body = rtmsg_v6(prefix_len);
    push_attr(&mut body, RTA_DST, &mask_prefix(prefix, prefix_len).octets());
    push_attr(&mut body, RTA_OIF, &ifindex.to_ne_bytes());
    if let Some(gw) = via {
        push_attr(&mut body, RTA_GATEWAY, &gw.octets());
    }
    nlmsg(msg_type, flags, seq, &body)
}

fn address_request_v4(seq: u32, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> Vec<u8> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut body = ifaddrmsg(libc::AF_INET as u8, prefix_len, 0, RT_SCOPE_UNIVERSE, ifindex);
    push_attr(&mut body, IFA_LOCAL, &addr.octets());
    push_attr(&mut body, IFA_ADDRESS, &addr.octets());
    nlmsg(RTM_NEWADDR, flags, seq, &body)
}

fn route_request_v4(
    seq: u32,
    ifindex: u32,
    prefix: Ipv4Addr,
    prefix_len: u8,
    via: Option<Ipv4Addr>,
) -> Vec<u8> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut body = rtmsg_v6(prefix_len);
    body[0] = libc::AF_INET as u8;
    if via.is_none() {
        // A device route: the destination is on the link.
        body[6] = RT_SCOPE_LINK;
    }
    let mask = match prefix_len {
        0 => 0,
        l => u32::MAX << (32 - u32::from(l.min(32))),
    };
    let dst = Ipv4Addr::from(u32::from(prefix) & mask);
    if prefix_len > 0 {
        push_attr(&mut body, RTA_DST, &dst.octets());
    }
    push_attr(&mut body, RTA_OIF, &ifindex.to_ne_bytes());
    if let Some(gw) = via {
        push_attr(&mut body, RTA_GATEWAY, &gw.octets());
    }
    nlmsg(RTM_NEWROUTE, flags, seq, &body)
}

// ---------------------------------------------------------------------------------------------
// Message parsing.

/// One netlink message inside a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Msg<'a> {
    msg_type: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a datagram into its netlink messages; a length field that does not fit is an error
/// rather than a silent stop, since it means we would miss an ack.
fn messages(buf: &[u8]) -> impl Iterator<Item = io::Result<Msg<'_>>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message");
        let len = match u32_at(rest, 0) {
            Some(l) if (l as usize) >= NLMSG_HDRLEN && (l as usize) <= rest.len() => l as usize,
            _ => {
                rest = &[];
                return Some(Err(bad()));
            }
        };
        let msg = Msg {
            msg_type: u16_at(rest, 4).unwrap_or(0),
            flags: u16_at(rest, 6).unwrap_or(0),
            seq: u32_at(rest, 8).unwrap_or(0),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    })
}

/// Iterates over the `rtattr`s in `buf` as (type, data); stops at the first malformed one.
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, 0)?);
        let attr_type = u16_at(rest, 2)?;
        if len < 4 || len > rest.len() {
            return None;
        }
        let data = &rest[4..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        // NLA_F_NESTED / NLA_F_NET_BYTEORDER live in the top two bits of the type.
        Some((attr_type & 0x3fff, data))
    })
}

/// Decodes an `NLMSG_ERROR` payload: the positive errno (0 for an ack) and the kernel's
/// extended-ack message, if any.
fn parse_error(flags: u16, payload: &[u8]) -> Option<(i32, Option<String>)> {
    let error = u32_at(payload, 0)? as i32;
    let mut text = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request follows the error code: only its header if capped.
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32_at(payload, 4)? as usize
        };
        if let Some(tlvs) = payload.get(4 + align4(echoed)..) {
            text = attrs(tlvs).find(|(t, _)| *t == NLMSGERR_ATTR_MSG).map(|(_, d)| {
                let d = d.split(|&c| c == 0).next().unwrap_or(d);
                String::from_utf8_lossy(d).into_owned()
            });
        }
    }
    Some((-error, text))
}

/// Decodes an `RTM_NEWADDR` payload into (ifindex, address, prefix length) if it is IPv6.
fn parse_ifaddr_v6(payload: &[u8]) -> Option<(u32, Ipv6Addr, u8)> {
    let header = payload.get(..8)?;
    if header[0] != AF_INET6 {
        return None;
    }
    let prefix_len = header[1];
    let ifindex = u32_at(header, 4)?;
    let mut local = None;
    let mut address = None;
    for (t, data) in attrs(&payload[8..]) {
        let Ok(octets) = <[u8; 16]>::try_from(data) else {
            continue;
        };
        match t {
            IFA_LOCAL => local = Some(Ipv6Addr::from(octets)),
            IFA_ADDRESS => address = Some(Ipv6Addr::from(octets)),
            _ => {}
        }
    }
    // With a point-to-point peer IFA_ADDRESS is the peer and IFA_LOCAL ours; otherwise only
    // IFA_ADDRESS is present.
    Some((ifindex, local.or(address)?, prefix_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testns::in_netns;

    fn ne16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }

    #[test]
    fn attribute_padding_and_length() {
        let mut b = Vec::new();
        push_attr(&mut b, 7, &[0xaa]); // 5 bytes, padded to 8
        assert_eq!(b.len(), 8);
        assert_eq!(b[..2], ne16(5));
        assert_eq!(b[2..4], ne16(7));
        assert_eq!(b[4..], [0xaa, 0, 0, 0]);

        push_attr(&mut b, 1, &[1, 2, 3, 4]); // exactly aligned: no padding
        assert_eq!(b.len(), 16);
        assert_eq!(b[8..10], ne16(8));

        push_attr(&mut b, 2, &[]); // header only
        assert_eq!(b.len(), 20);
        assert_eq!(b[16..18], ne16(4));

        let parsed: Vec<_> = attrs(&b).collect();
        assert_eq!(
            parsed,
            vec![(7, &[0xaa][..]), (1, &[1, 2, 3, 4][..]), (2, &[][..])]
        );
    }

    #[test]
    fn message_header_layout() {
        let m = nlmsg(0x1234, 0x0105, 0xdead_beef, &[9, 9, 9]);
        assert_eq!(m.len(), 20, "19 bytes padded to 20");
        assert_eq!(u32_at(&m, 0), Some(19), "length excludes trailing padding");
        assert_eq!(u16_at(&m, 4), Some(0x1234));
        assert_eq!(u16_at(&m, 6), Some(0x0105));
        assert_eq!(u32_at(&m, 8), Some(0xdead_beef));
        assert_eq!(u32_at(&m, 12), Some(0));
        assert_eq!(m[16..], [9, 9, 9, 0]);
    }

    #[test]
    fn link_up_layout() {
        let m = link_up_request(1, 5, Some(1280));
        // 16 header + 16 ifinfomsg + 8 IFLA_MTU
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 0), Some(40));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWLINK));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(m[16], AF_UNSPEC);
        assert_eq!(u32_at(&m, 20), Some(5), "ifi_index");
        assert_eq!(u32_at(&m, 24), Some(1), "ifi_flags = IFF_UP");
        assert_eq!(u32_at(&m, 28), Some(1), "ifi_change = IFF_UP");
        assert_eq!(u16_at(&m, 32), Some(8));
        assert_eq!(u16_at(&m, 34), Some(IFLA_MTU));
        assert_eq!(u32_at(&m, 36), Some(1280));

        assert_eq!(link_up_request(1, 5, None).len(), 32);
    }

    #[test]
    fn add_address_layout() {
        let addr: Ipv6Addr = "fc64::1".parse().expect("addr");
        let m = address_request(AddrOp::Add, 42, 5, addr, 64);
        // 16 header + 8 ifaddrmsg + 20 IFA_LOCAL + 20 IFA_ADDRESS + 8 IFA_FLAGS
        assert_eq!(m.len(), 72);
        assert_eq!(u32_at(&m, 0), Some(72));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWADDR));
        assert_eq!(
            u16_at(&m, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
        );
        assert_eq!(u32_at(&m, 8), Some(42));
        assert_eq!(m[16..20], [AF_INET6, 64, IFA_F_NODAD as u8, 0]);
        assert_eq!(u32_at(&m, 20), Some(5));
        let a: Vec<_> = attrs(&m[24..]).collect();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0], (IFA_LOCAL, &addr.octets()[..]));
        assert_eq!(a[1], (IFA_ADDRESS, &addr.octets()[..]));
        assert_eq!(a[2], (IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes()[..]));

        let d = address_request(AddrOp::Remove, 43, 5, addr, 64);
        assert_eq!(d.len(), 64);
        assert_eq!(u16_at(&d, 4), Some(RTM_DELADDR));
        assert_eq!(u16_at(&d, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
    }

    #[test]
    fn route_layout_with_and_without_gateway() {
        let prefix: Ipv6Addr = "2001:db8:64::ff".parse().expect("addr");
        let gw: Ipv6Addr = "fe80::".parse().expect("addr");
        let m = route_request(RouteOp::Add, 1, 9, prefix, 48, Some(gw));
        // 16 header + 12 rtmsg + 20 RTA_DST + 8 RTA_OIF + 20 RTA_GATEWAY
        assert_eq!(m.len(), 76);
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWROUTE));
        assert_eq!(
            u16_at(&m, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
        );
        assert_eq!(
            m[16..24],
            [
                AF_INET6,
                48,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_STATIC,
                RT_SCOPE_UNIVERSE,
                RTN_UNICAST
            ]
        );
        let a: Vec<_> = attrs(&m[28..]).collect();
        let want: Ipv6Addr = "2001:db8:64::".parse().expect("addr");
        assert_eq!(a[0], (RTA_DST, &want.octets()[..]), "host bits cleared");
        assert_eq!(a[1], (RTA_OIF, &9u32.to_ne_bytes()[..]));
        assert_eq!(a[2], (RTA_GATEWAY, &gw.octets()[..]));

        let m = route_request(RouteOp::Remove, 2, 9, prefix, 48, None);
        assert_eq!(m.len(), 56);
        assert_eq!(u16_at(&m, 4), Some(RTM_DELROUTE));
    }

    #[test]
    fn prefix_masking() {
        let a: Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().expect("addr");
        assert_eq!(mask_prefix(a, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(mask_prefix(a, 128), a);
        assert_eq!(mask_prefix(a, 17).to_string(), "ffff:8000::");
    }

    #[test]
    fn parses_errors_acks_and_extended_messages() {
        // A capped error with an extended-ack message: errno, echoed header, TLV.
        let mut body = (-libc::EEXIST).to_ne_bytes().to_vec();
        body.extend_from_slice(&[0u8; 16]);
        push_attr(&mut body, NLMSGERR_ATTR_MSG, b"Address already assigned\0");
        let dgram = nlmsg(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 7, &body);
        let msgs: Vec<_> = messages(&dgram).collect::<io::Result<_>>().expect("parse");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].seq, 7);
        let (errno, text) = parse_error(msgs[0].flags, msgs[0].payload).expect("error");
        assert_eq!(errno, libc::EEXIST);
        assert_eq!(text.as_deref(), Some("Address already assigned"));

        let ack = nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 8, &[0u8; 20]);
        let m = messages(&ack).next();
        let Some(Ok(m)) = m else { panic!("no message") };
        assert_eq!(parse_error(m.flags, m.payload), Some((0, None)));

        // Two messages in one datagram, then a truncated third is an error.
        let mut two = nlmsg(RTM_NEWADDR, NLM_F_MULTI, 1, &[1, 2, 3]);
        two.extend(nlmsg(NLMSG_DONE, NLM_F_MULTI, 1, &0i32.to_ne_bytes()));
        let parsed: Vec<_> = messages(&two).collect::<io::Result<_>>().expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].payload, &[1, 2, 3]);
        assert_eq!(parsed[1].msg_type, NLMSG_DONE);
        two.extend_from_slice(&100u32.to_ne_bytes());
        assert!(messages(&two).any(|m| m.is_err()));
    }

    #[test]
    fn parses_address_dump_entries() {
        let addr: Ipv6Addr = "fc64::1".parse().expect("addr");
        let mut body = ifaddrmsg(AF_INET6, 64, 0, 0, 5);
        push_attr(&mut body, IFA_ADDRESS, &addr.octets());
        push_attr(&mut body, 6 /* IFA_CACHEINFO */, &[0; 16]);
        assert_eq!(parse_ifaddr_v6(&body), Some((5, addr, 64)));
        let v4 = ifaddrmsg(libc::AF_INET as u8, 24, 0, 0, 5);
        assert_eq!(parse_ifaddr_v6(&v4), None);
    }

    #[test]
    fn error_message_names_the_operation() {
        let e = NetlinkError {
            operation: "add address fc64::1/64 on ifindex 5".into(),
            errno: libc::EEXIST,
            kernel_message: None,
        }
        .into_io();
        assert!(e
            .to_string()
            .starts_with("add address fc64::1/64 on ifindex 5: File exists"));
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(errno_of(&e), Some(libc::EEXIST));
    }

    #[test]
    fn kernel_errors_are_errors_not_panics() {
        in_netns(|| {
            let mut nl = Netlink::open().expect("netlink");
            let addr: Ipv6Addr = "fc64::1".parse().expect("addr");
            let err = nl
                .add_address_v6(999_999, addr, 64)
                .expect_err("no such interface");
            let text = err.to_string();
            assert!(
                text.starts_with("add address fc64::1/64 on ifindex 999999: "),
                "{text}"
            );
            assert_eq!(errno_of(&err), Some(libc::ENODEV), "{text}");

            let err = nl
                .set_link_up(999_999, Some(1280))
                .expect_err("no such interface");
            assert!(err
                .to_string()
                .starts_with("set link up with mtu 1280 on ifindex 999999"));
            assert_eq!(errno_of(&err), Some(libc::ENODEV));

            // An MTU below the TUN driver's minimum (68) is refused with EINVAL, and the
            // kernel's extended-ack reason is carried in the message.
            let tun = crate::sys::tun::Tun::create("bederr").expect("tun");
            let err = nl
                .set_link_up(tun.ifindex(), Some(10))
                .expect_err("mtu too small");
            assert_eq!(errno_of(&err), Some(libc::EINVAL), "{err}");
            assert!(err.to_string().contains("(kernel: "), "{err}");
            eprintln!("example error: {err}");

            let err = nl
                .add_route_v6(999_999, "fc65::".parse().expect("addr"), 48, None)
                .expect_err("no such interface");
            assert!(
                err.to_string()
                    .starts_with("add route fc65::/48 on ifindex 999999"),
                "{err}"
            );

            let err = nl.add_address_v6(1, addr, 129).expect_err("bad prefix");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

            // The socket is still usable after errors: sequence numbers keep answers apart.
            let lo = nl.addresses_v6(1).expect("list lo");
            assert_eq!(lo, vec![(Ipv6Addr::LOCALHOST, 128)]);
        });
    }

    #[test]
    fn address_is_local_when_add_returns() {
        in_netns(|| {
            let mut nl = Netlink::open().expect("netlink");
            let tun = crate::sys::tun::Tun::create("bedlocal").expect("tun");
            crate::sys::sysctl::quiet_autoconf(tun.name()).expect("sysctl");

            // Added while the link is down: the kernel completes a NODAD address regardless.
            let early = Ipv6Addr::new(0xfc64, 0, 0, 0, 0, 0, 0, 0xe);
            nl.add_address_v6(tun.ifindex(), early, 64)
                .expect("add on down link");
            assert_eq!(nl.route_type_v6(early).expect("lookup"), Some(RTN_LOCAL));
            nl.set_link_up(tun.ifindex(), Some(1280)).expect("up");
            nl.wait_address_usable(early, USABLE_TIMEOUT)
                .expect("usable after up");

            // add_address_v6 returns only once the kernel accepts packets for the address.
            for i in 1..=50u16 {
                let a = Ipv6Addr::new(0xfc64, 0, 0, 1, 0, 0, 0, i);
                nl.add_address_v6(tun.ifindex(), a, 64).expect("add");
                assert_eq!(nl.route_type_v6(a).expect("lookup"), Some(RTN_LOCAL), "{a}");
            }
            // A non-local address in the on-link prefix resolves to the prefix route.
            let other = Ipv6Addr::new(0xfc64, 0, 0, 1, 0, 0, 0, 0xffff);
            assert_eq!(nl.route_type_v6(other).expect("lookup"), Some(RTN_UNICAST));
            let err = nl
                .wait_address_usable(other, Duration::from_millis(20))
                .expect_err("never local");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            // No route at all is "none", not an error.
            assert_eq!(
                nl.route_type_v6("2001:db8::1".parse().expect("addr"))
                    .expect("lookup"),
                None
            );
        });
    }

    #[test]
    fn dump_spanning_many_datagrams() {
        in_netns(|| {
            let mut nl = Netlink::open().expect("netlink");
            // Enough addresses that the dump needs several datagrams (NLM_F_MULTI parts).
            let mut want = Vec::new();
            for i in 0..400u16 {
                let a = Ipv6Addr::new(0xfc64, 0, 0, 0, 0, 0, 1, i);
                nl.add_address_v6(1, a, 128).expect("add");
                want.push((a, 128));
            }
            let got = nl.addresses_v6(1).expect("list");
            for w in &want {
                assert!(got.contains(w), "missing {w:?}");
            }
            assert_eq!(got.len(), want.len() + 1, "plus ::1");
        });
    }
}

//! The tunnel's UDP/IPv4 socket.
//!
//! `std::net::UdpSocket` does the binding and plain sends; this wrapper adds the three things
//! 6bed4 needs that std cannot express:
//! - a per-datagram IPv4 TTL (`sendmsg` with an `IP_TTL` control message), so keepalives can
//!   use a TTL just large enough to refresh the local NAT mapping without the socket's
//!   default changing for concurrent traffic;
//! - truncation detection on receive (`recvmsg` and `MSG_TRUNC`), so an oversized datagram is
//!   reported and dropped on purpose instead of being forwarded as a silently cut IPv6 packet;
//! - even-port binding for the v01 wire profile.
//!
//! Outgoing datagrams never carry the Don't Fragment bit (`IP_PMTUDISC_DONT`). A 6bed4 tunnel
//! promises its IPv6 side the minimum IPv6 MTU of 1280 bytes, so with UDP and IPv4 headers the
//! outer datagram reaches 1308 bytes, which some IPv4 paths (PPPoE, other tunnels) cannot carry
//! whole. With DF set such a datagram is dropped, and the ICMP "fragmentation needed" that
//! should report it is routinely filtered or, behind NAT, never reaches us — a black hole for
//! every large packet. Letting IPv4 routers fragment keeps the 1280-byte promise on any path.
//! The C reference implementation sets DF on everything, and this is one of its faults.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// How many random binds [`TunnelSocket::bind_even_port`] tries before giving up. The kernel
/// picks ephemeral UDP ports uniformly, so each try is even with probability about ½ and 64
/// failures in a row mean something other than bad luck (for example an exhausted range).
const EVEN_PORT_TRIES: usize = 64;

/// A UDP/IPv4 socket carrying 6bed4 datagrams.
#[derive(Debug)]
pub struct TunnelSocket {
    sock: UdpSocket,
    local: SocketAddrV4,
}

impl TunnelSocket {
    /// Binds to `addr`; port 0 lets the kernel choose a random free port.
    pub fn bind(addr: SocketAddrV4) -> io::Result<Self> {
        let sock = UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("bind UDP socket to {addr}: {e}")))?;
        set_int_opt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("clear DF on UDP socket {addr}: {e}")))?;
        let local = match sock.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => a,
            Ok(other) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("UDP socket for {addr} reports non-IPv4 address {other}"),
                ))
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("local address of UDP socket {addr}: {e}"),
                ))
            }
        };
        Ok(TunnelSocket { sock, local })
    }

    /// Binds to `ip` on a kernel-chosen even port, as the v01 wire profile requires, retrying
    /// random binds a bounded number of times.
    pub fn bind_even_port(ip: Ipv4Addr) -> io::Result<Self> {
        for _ in 0..EVEN_PORT_TRIES {
            let sock = Self::bind(SocketAddrV4::new(ip, 0))?;
            if sock.local.port() % 2 == 0 {
                return Ok(sock);
            }
            // Dropping `sock` frees the odd port before the next try.
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("bind UDP socket to {ip}: no even port after {EVEN_PORT_TRIES} tries"),
        ))
    }

    /// The address the socket is bound to, with the port the kernel chose. Recorded at bind
    /// time (an unconnected UDP socket's local address never changes afterwards), so this
    /// never fails; it returns `io::Result` to read like `std::net::UdpSocket::local_addr`.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        Ok(self.local)
    }

    /// Asks for `bytes` of receive and send buffer. A relay that falls behind for a moment
    /// drops whatever does not fit its receive queue, and every such drop costs a TCP flow
    /// inside the tunnel a retransmission and a halved window, so the default (about 200
    /// KB, some 90 full-size datagrams) is far too small. `SO_RCVBUFFORCE` (root or
    /// CAP_NET_ADMIN) goes past `net.core.rmem_max`; without the privilege the plain option
    /// still gets what the limit allows. Returns the sizes in force afterwards (the kernel
    /// doubles the request for its bookkeeping).
    pub fn set_buffer_sizes(&self, bytes: usize) -> io::Result<(usize, usize)> {
        let fd = self.sock.as_raw_fd();
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if set_int_opt(fd, libc::SOL_SOCKET, force, v).is_err() {
                set_int_opt(fd, libc::SOL_SOCKET, plain, v)?;
            }
        }
        Ok((
            get_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?,
            get_int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?,
        ))
    }

    /// Asks the kernel to hand over runs of datagrams that arrived as one GSO/GRO packet
    /// from one sender in one receive (`UDP_GRO`), their size in a control message
    /// ([`RecvBatch::segment_size`]). A relay receives a peer's whole burst in one
    /// `recvmmsg` slot instead of one datagram per slot.
    pub fn enable_gro(&self) -> io::Result<()> {
        set_int_opt(self.sock.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
    }

    /// Whether the kernel knows UDP segmentation offload (`UDP_SEGMENT`, Linux 4.18): the
    /// option can be read back only where it exists.
    pub fn gso_supported(&self) -> bool {
        get_int_opt(self.sock.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
    }

    /// Sends one datagram with the socket's default TTL.
    pub fn send_to(&self, payload: &[u8], to: SocketAddrV4) -> io::Result<usize> {
        self.sock.send_to(payload, to)
    }

    /// Sends one datagram with IPv4 TTL `ttl`, for this datagram only: the TTL travels as an
    /// `IP_TTL` control message, so the socket's default stays untouched for all other sends.
    pub fn send_to_with_ttl(&self, payload: &[u8], to: SocketAddrV4, ttl: u8) -> io::Result<usize> {
        if ttl == 0 {
            // The kernel rejects TTL 0 with EINVAL; say why.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv4 TTL must be 1..=255",
            ));
        }
        let mut dst = sockaddr_v4(to);
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let mut cbuf = CmsgBuf::new();
        let ttl_value = libc::c_int::from(ttl);
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) } as usize;

        // SAFETY: msghdr is plain old data; all-zero means no name, data or control.
        let mut mh: libc::msghdr = unsafe { mem::zeroed() };
        mh.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
        mh.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.0.as_mut_ptr().cast();
        mh.msg_controllen = space as _;
        // SAFETY: `mh.msg_control` points at `cbuf`, which is aligned for cmsghdr and at
        // least `space` bytes long, so CMSG_FIRSTHDR returns a valid, writable header and
        // CMSG_DATA points inside the buffer with room for one c_int.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&mh);
            if cmsg.is_null() {
                return Err(io::Error::other("no room for the IP_TTL control message"));
            }
            (*cmsg).cmsg_level = libc::IPPROTO_IP;
            (*cmsg).cmsg_type = libc::IP_TTL;
            (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), ttl_value);
        }
        loop {
            // SAFETY: every pointer in `mh` (destination, iovec over `payload`, control
            // buffer) refers to live memory of the length recorded next to it.
            let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &mh, 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf`, returning its length (at most `buf.len()`), its
    /// sender, and whether it was longer than `buf` and so got truncated — the caller must
    /// then drop it, as the tail is gone.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, bool)> {
        let (n, from, truncated, _) = recv_msg(self.sock.as_raw_fd(), buf, false)?;
        Ok((n, from, truncated))
    }

    /// Receives up to `batch.capacity()` datagrams with one `recvmmsg` call, without
    /// waiting. Returns how many arrived (0 when none is queued); read them with
    /// [`RecvBatch::get`]. Under load this is one system call per burst instead of one per
    /// datagram.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.prepare();
        loop {
            // SAFETY: `prepare` pointed every header at its own live buffer, iovec and
            // address slot, each with its length recorded; the vector outlives the call.
            let n = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    batch.hdrs.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                batch.filled = n as usize;
                return Ok(batch.filled);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Sends several messages with one `sendmmsg` call; returns how many messages the
    /// kernel took (the caller retries or drops the rest). A message with a segment size
    /// is one UDP GSO send (`UDP_SEGMENT`): its payloads are glued and the kernel cuts them
    /// into datagrams of that size, which leave exactly as separate sends would.
    pub fn send_batch(&self, msgs: &[Message<'_>]) -> io::Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        let mut addrs: Vec<libc::sockaddr_in> = msgs.iter().map(|m| sockaddr_v4(m.to)).collect();
        let mut cmsgs: Vec<CmsgBuf> = msgs.iter().map(|_| CmsgBuf::new()).collect();
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
        let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            // SAFETY: msghdr is plain old data; all-zero means no name, data or control.
            let mut mh: libc::msghdr = unsafe { mem::zeroed() };
            mh.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            mh.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // IoSlice is ABI-compatible with iovec on Unix; the kernel only reads through it.
            mh.msg_iov = m.payloads.as_ptr() as *mut libc::iovec;
            mh.msg_iovlen = m.payloads.len() as _;
            if let Some(size) = m.segment {
                mh.msg_control = cmsgs[i].0.as_mut_ptr().cast();
                mh.msg_controllen = space as _;
                // SAFETY: the control buffer is aligned for cmsghdr and `space` bytes long,
                // so the first header and its u16 of data lie inside it.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&mh);
                    if cmsg.is_null() {
                        return Err(io::Error::other("no room for the UDP_SEGMENT control message"));
                    }
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
                }
            }
            hdrs.push(libc::mmsghdr {
                msg_hdr: mh,
                msg_len: 0,
            });
        }
        loop {
            // SAFETY: each header points at its address, its caller's iovecs and its control
            // buffer above; all outlive the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Switches `O_NONBLOCK` on or off; the daemon's `poll` loop wants it on.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.sock.set_nonblocking(nonblocking)
    }
}

impl AsRawFd for TunnelSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for TunnelSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// One message for [`TunnelSocket::send_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub to: SocketAddrV4,
    /// One datagram, or with `segment` a run of datagrams glued by the kernel.
    pub payloads: &'a [io::IoSlice<'a>],
    /// UDP GSO segment size: every payload but the last is exactly this long, the last at
    /// most. `None` sends the payloads as one datagram.
    pub segment: Option<u16>,
}

/// Whether an error from a UDP GSO send means the kernel or the route cannot do GSO at all
/// (unknown option, no checksum offload on the way out, segment larger than the route's
/// MTU) rather than a passing condition; the sender then goes back to one datagram per
/// message for good.
pub fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

/// A control-message buffer aligned for `cmsghdr`, large enough for one int-sized message.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

impl CmsgBuf {
    fn new() -> Self {
        CmsgBuf([0; 64])
    }
}

fn sockaddr_v4(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is valid (and zeroes sin_zero).
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = a.port().to_be();
    sa.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(a.ip().octets()),
    };
    sa
}

/// `recvmsg` on a UDP/IPv4 socket: (length, sender, truncated, received TTL if `IP_RECVTTL`
/// is on and `want_ttl` asked for it). Shared with the tests, which read the TTL back.
fn recv_msg(
    fd: RawFd,
    buf: &mut [u8],
    want_ttl: bool,
) -> io::Result<(usize, SocketAddrV4, bool, Option<u8>)> {
    // SAFETY: sockaddr_in is plain old data; the kernel overwrites it.
    let mut from: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf::new();
    // SAFETY: msghdr is plain old data; all-zero means no name, data or control.
    let mut mh: libc::msghdr = unsafe { mem::zeroed() };
    mh.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
    mh.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if want_ttl {
        mh.msg_control = cbuf.0.as_mut_ptr().cast();
        mh.msg_controllen = cbuf.0.len() as _;
    }
    let n = loop {
        // SAFETY: `mh` points at `from`, at `iov` (over `buf`) and at `cbuf`, all alive for the
        // call and of the sizes recorded in `mh`.
        let n = unsafe { libc::recvmsg(fd, &mut mh, 0) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let truncated = mh.msg_flags & libc::MSG_TRUNC != 0;
    let ip = Ipv4Addr::from(from.sin_addr.s_addr.to_ne_bytes());
    let sender = SocketAddrV4::new(ip, u16::from_be(from.sin_port));

    let mut ttl = None;
    if want_ttl {
        // SAFETY: the kernel filled `cbuf` and set `msg_controllen`; the CMSG macros walk it
        // within those bounds, and an IP_TTL message carries one c_int (read unaligned).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&mh);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_TTL {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    ttl = u8::try_from(v).ok();
                }
                cmsg = libc::CMSG_NXTHDR(&mh, cmsg);
            }
        }
    }
    Ok((n, sender, truncated, ttl))
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is an int; we pass a pointer to one and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
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

fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(v).unwrap_or(0))
}

/// Reusable buffers for [`TunnelSocket::recv_batch`].
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    cmsgs: Vec<CmsgBuf>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

// SAFETY: the raw pointers inside only ever point into the batch's own buffers; nothing is
// shared between threads through them.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.bufs.len())
            .field("filled", &self.filled)
            .finish()
    }
}

impl RecvBatch {
    /// `count` buffers of `buf_len` bytes each.
    pub fn new(count: usize, buf_len: usize) -> RecvBatch {
        let count = count.max(1);
        RecvBatch {
            bufs: (0..count)
                .map(|_| vec![0u8; buf_len].into_boxed_slice())
                .collect(),
            cmsgs: (0..count).map(|_| CmsgBuf::new()).collect(),
            // SAFETY: sockaddr_in and mmsghdr are plain old data; zero is a valid value.
            addrs: vec![unsafe { mem::zeroed() }; count],
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
            filled: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    fn prepare(&mut self) {
        self.filled = 0;
        self.iovs.clear();
        for b in &mut self.bufs {
            self.iovs.push(libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            });
        }
        self.hdrs.clear();
        for i in 0..self.bufs.len() {
            // SAFETY: msghdr is plain old data; all-zero means no name, data or control.
            let mut mh: libc::msghdr = unsafe { mem::zeroed() };
            mh.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            mh.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            mh.msg_iov = &mut self.iovs[i];
            mh.msg_iovlen = 1;
            mh.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            mh.msg_controllen = self.cmsgs[i].0.len() as _;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: mh,
                msg_len: 0,
            });
        }
    }

    /// Datagram `i` of the last receive: (payload, sender, truncated). `None` past the end
    /// or for a sender that is not IPv4.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddrV4, bool)> {
        if i >= self.filled {
            return None;
        }
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.bufs[i].len());
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let sa = &self.addrs[i];
        if i32::from(sa.sin_family) != libc::AF_INET {
            return None;
        }
        let from = SocketAddrV4::new(
            std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
            u16::from_be(sa.sin_port),
        );
        Some((&self.bufs[i][..len], from, truncated))
    }

    /// The size of each datagram in slot `i` when it holds a coalesced run (`UDP_GRO`): the
    /// payload is then back-to-back datagrams of this size, the last one possibly shorter.
    /// `None` for a single datagram.
    pub fn segment_size(&self, i: usize) -> Option<usize> {
        if i >= self.filled {
            return None;
        }
        let mh = &self.hdrs[i].msg_hdr;
        let mut size = None;
        // SAFETY: the kernel filled this slot's control buffer and set `msg_controllen`;
        // the CMSG macros walk it within those bounds, and UDP_GRO carries one c_int.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(mh);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    size = usize::try_from(v).ok().filter(|&v| v > 0);
                }
                cmsg = libc::CMSG_NXTHDR(mh, cmsg);
            }
        }
        size
    }

    /// How many datagrams the last receive filled.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testns::in_netns;

    fn loopback_pair() -> (TunnelSocket, TunnelSocket) {
        let a = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind a");
        let b = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind b");
        (a, b)
    }

    #[test]
    fn per_datagram_ttl_is_seen_by_the_receiver() {
        in_netns(|| {
            let (tx, rx) = loopback_pair();
            set_int_opt(rx.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1).expect("IP_RECVTTL");
            let to = rx.local_addr().expect("addr");
            let mut buf = [0u8; 64];

            assert_eq!(tx.send_to_with_ttl(b"keepalive", to, 3).expect("send ttl 3"), 9);
            let (n, from, trunc, ttl) = recv_msg(rx.as_raw_fd(), &mut buf, true).expect("recv");
            assert_eq!(
                (&buf[..n], from, trunc),
                (&b"keepalive"[..], tx.local_addr().expect("addr"), false)
            );
            assert_eq!(ttl, Some(3));

            // The next plain send is back to the default: the TTL applied to one datagram.
            tx.send_to(b"normal", to).expect("send");
            let (n, _, _, ttl) = recv_msg(rx.as_raw_fd(), &mut buf, true).expect("recv");
            assert_eq!(&buf[..n], b"normal");
            assert_eq!(ttl, Some(64));

            assert!(tx.send_to_with_ttl(b"x", to, 0).is_err());
        });
    }

    #[test]
    fn batches_send_and_receive_in_order_with_senders_and_truncation() {
        in_netns(|| {
            let (tx, rx) = loopback_pair();
            let to = rx.local_addr().expect("addr");
            let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
            let slices: Vec<io::IoSlice<'_>> = payloads.iter().map(|p| io::IoSlice::new(p)).collect();
            let msgs: Vec<Message<'_>> = (0..5)
                .map(|i| Message {
                    to,
                    payloads: &slices[i..i + 1],
                    segment: None,
                })
                .collect();
            assert_eq!(tx.send_batch(&msgs).expect("sendmmsg"), 5);
            tx.send_to(&[7u8; 3000], to).expect("send big");
            rx.set_nonblocking(true).expect("nonblocking");
            let mut batch = RecvBatch::new(8, 2048);
            let n = rx.recv_batch(&mut batch).expect("recvmmsg");
            assert_eq!(n, 6);
            for (i, p) in payloads.iter().enumerate() {
                let (data, from, truncated) = batch.get(i).expect("datagram");
                assert_eq!(
                    (data, from, truncated),
                    (p.as_slice(), tx.local_addr().expect("addr"), false)
                );
            }
            let (data, _, truncated) = batch.get(5).expect("big one");
            assert_eq!((data.len(), truncated), (2048, true));
            assert!(batch.get(6).is_none());
            assert_eq!(
                rx.recv_batch(&mut batch).expect("empty"),
                0,
                "nothing queued: 0, not an error"
            );
        });
    }

    /// A GSO send arrives as separate datagrams at a plain socket, and as one coalesced run
    /// with its segment size at a socket with `UDP_GRO` (loopback keeps GSO packets whole).
    #[test]
    fn gso_sends_split_or_coalesce_at_the_receiver() {
        in_netns(|| {
            let (tx, plain) = loopback_pair();
            assert!(tx.gso_supported());
            let gro = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
            gro.enable_gro().expect("UDP_GRO");
            let payloads: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; if i == 5 { 40 } else { 100 }]).collect();
            let slices: Vec<io::IoSlice<'_>> = payloads.iter().map(|p| io::IoSlice::new(p)).collect();
            let msgs = [plain.local_addr().expect("a"), gro.local_addr().expect("a")].map(|to| Message {
                to,
                payloads: &slices,
                segment: Some(100),
            });
            assert_eq!(tx.send_batch(&msgs).expect("gso sendmmsg"), 2);

            let mut batch = RecvBatch::new(8, 2048);
            plain.set_nonblocking(true).expect("nonblocking");
            assert_eq!(plain.recv_batch(&mut batch).expect("recv"), 6);
            for (i, p) in payloads.iter().enumerate() {
                assert_eq!(batch.get(i).expect("datagram").0, p.as_slice());
                assert_eq!(batch.segment_size(i), None);
            }

            gro.set_nonblocking(true).expect("nonblocking");
            assert_eq!(gro.recv_batch(&mut batch).expect("recv"), 1);
            assert_eq!(batch.get(0).expect("run").0, payloads.concat().as_slice());
            assert_eq!(batch.segment_size(0), Some(100));

            // A segment size the route cannot carry is refused, and recognised as such.
            crate::sys::netlink::Netlink::open()
                .expect("netlink")
                .set_link_up(1, Some(1000))
                .expect("loopback MTU 1000");
            let big = [vec![1u8; 1200], vec![2u8; 1200]];
            let big_slices = big.each_ref().map(|p| io::IoSlice::new(p));
            let err = tx
                .send_batch(&[Message {
                    to: plain.local_addr().expect("a"),
                    payloads: &big_slices,
                    segment: Some(1200),
                }])
                .expect_err("segment beyond the MTU");
            assert!(is_gso_refusal(&err), "{err}");
        });
    }

    #[test]
    fn oversized_datagram_is_reported_truncated() {
        in_netns(|| {
            let (tx, rx) = loopback_pair();
            let to = rx.local_addr().expect("addr");
            let big = vec![0x5a; 2000];
            tx.send_to(&big, to).expect("send");
            let mut buf = [0u8; 1500];
            let (n, _, truncated) = rx.recv_from(&mut buf).expect("recv");
            assert_eq!(n, 1500);
            assert!(truncated);

            tx.send_to(&big[..1500], to).expect("send");
            let (n, _, truncated) = rx.recv_from(&mut buf).expect("recv");
            assert_eq!((n, truncated), (1500, false), "exactly fitting is not truncated");
        });
    }

    #[test]
    fn even_port_and_no_df() {
        in_netns(|| {
            for _ in 0..20 {
                let s = TunnelSocket::bind_even_port(Ipv4Addr::LOCALHOST).expect("even bind");
                let port = s.local_addr().expect("addr").port();
                assert_eq!(port % 2, 0, "port {port}");
                assert_ne!(port, 0);
                assert_eq!(
                    get_int_opt(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).expect("getsockopt"),
                    libc::IP_PMTUDISC_DONT as usize
                );
            }
        });
    }

    #[test]
    fn buffer_sizes_go_past_the_default() {
        in_netns(|| {
            let (s, _) = loopback_pair();
            let fd = s.as_raw_fd();
            let before = get_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).expect("rcvbuf");
            let (rcv, snd) = s.set_buffer_sizes(4 << 20).expect("set");
            // As root the forced size applies (doubled by the kernel for its bookkeeping).
            assert!(rcv >= 4 << 20 && rcv > before, "rcvbuf {before} -> {rcv}");
            assert!(snd >= 4 << 20, "sndbuf {snd}");
        });
    }

    #[test]
    fn nonblocking_receive_would_block() {
        in_netns(|| {
            let (_, rx) = loopback_pair();
            rx.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0u8; 16];
            let err = rx.recv_from(&mut buf).expect_err("nothing to read");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        });
    }

    #[test]
    fn bind_error_names_the_address() {
        in_netns(|| {
            // 192.0.2.1 (TEST-NET-1) is not on any interface in the namespace.
            let addr = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 0);
            let err = TunnelSocket::bind(addr).expect_err("not a local address");
            assert!(err.to_string().contains("192.0.2.1"), "{err}");
        });
    }
}

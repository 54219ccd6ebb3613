//! A Linux TUN device carrying raw IPv6 packets.
//!
//! The device is opened with `IFF_TUN | IFF_NO_PI`: every `read` returns exactly one IP packet
//! and every `write` injects one, with no 4-byte packet-information header in front. 6bed4
//! only ever carries IPv6, and the UDP payload of a 6bed4 datagram *is* the IPv6 packet, so
//! without the header a packet can move between the TUN and the socket without copying or
//! reframing.
//!
//! The device is not made persistent: it exists exactly as long as the [`Tun`] (its file
//! descriptor) does, so a crashed daemon never leaves a stale interface behind.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// `IFNAMSIZ` from `<net/if.h>`: interface names are at most 15 bytes plus a NUL.
const IFNAMSIZ: usize = 16;

/// The part of `struct ifreq` that `TUNSETIFF` reads and writes: the name, then the flags in
/// the union, padded to the full 40-byte `ifreq` so the kernel's copy stays inside our memory.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device; dropping it closes the fd, which removes the interface.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    ifindex: u32,
    vnet_hdr: bool,
}

/// What [`Tun::create_offloaded`] got from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// No `virtio_net_hdr`: one plain packet per read and write.
    None,
    /// Every read and write starts with a `virtio_net_hdr`, but the kernel refused TSO6 and
    /// checksum offload, so reads are single packets with complete checksums.
    HeaderOnly,
    /// Reads may be TCP super-segments (TSO6) or carry partial checksums.
    Tso6,
}

impl Tun {
    /// Creates a TUN device called `name` (for example `"6bed4"`, or `"tun%d"` to let the
    /// kernel number it, or `""` for the kernel's default pattern) in the calling thread's
    /// network namespace.
    ///
    /// The name and index the kernel actually chose are recorded at creation; they describe
    /// the interface as it was created (a later rename by someone else is not followed, but
    /// the index of a live interface never changes).
    pub fn create(name: &str) -> io::Result<Tun> {
        Self::create_with_flags(name, libc::IFF_TUN | libc::IFF_NO_PI)
    }

    /// Like [`Tun::create`], but with a `virtio_net_hdr` in front of every packet
    /// (`IFF_VNET_HDR`) and, where the kernel allows, TCP segmentation and checksum offload
    /// (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO6`): the kernel then hands over TCP
    /// super-segments of up to 64 KB for the reader to cut ([`crate::offload::segment`])
    /// and takes coalesced ones ([`crate::offload::Coalescer`]). A kernel that refuses the
    /// header gets a plain device ([`Offload::None`]); one that refuses the offloads keeps
    /// the header, which still lets coalesced writes through.
    pub fn create_offloaded(name: &str) -> io::Result<(Tun, Offload)> {
        let tun = match Self::create_with_flags(name, libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) {
            Ok(tun) => tun,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Ok((Self::create(name)?, Offload::None))
            }
            Err(e) => return Err(e),
        };
        let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes its flags by value and touches no memory.
        let rc = unsafe {
            libc::ioctl(
                tun.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if rc < 0 {
            return Ok((tun, Offload::HeaderOnly));
        }
        Ok((tun, Offload::Tso6))
    }

    fn create_with_flags(name: &str, flags: libc::c_int) -> io::Result<Tun> {
        if name.len() >= IFNAMSIZ || name.contains('\0') || name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?}: at most 15 bytes, no NUL or '/'"),
            ));
        }
        // std opens with O_CLOEXEC, so the device does not leak into child processes.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;

        let mut req = IfReqFlags {
            name: [0; IFNAMSIZ],
            // IFF_TUN | IFF_NO_PI | IFF_VNET_HDR is 0x5001 and fits a c_short.
            flags: flags as libc::c_short,
            _pad: [0; 22],
        };
        for (dst, &src) in req.name.iter_mut().zip(name.as_bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: `file` is an open /dev/net/tun descriptor; TUNSETIFF reads and writes a
        // `struct ifreq`, and `req` is a live, properly aligned, 40-byte `#[repr(C)]` value of
        // the same layout (name[16] then the flags member of the union).
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("create TUN device {name:?} (TUNSETIFF): {e}"),
            ));
        }
        let len = req.name.iter().position(|&c| c == 0).unwrap_or(IFNAMSIZ);
        let actual: String = req.name[..len].iter().map(|&c| c as u8 as char).collect();

        let ifindex = name_to_index(&actual)?;
        Ok(Tun {
            file,
            name: actual,
            ifindex,
            vnet_hdr: flags & libc::IFF_VNET_HDR != 0,
        })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, which rtnetlink requests address the device by.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether every read and write starts with a `virtio_net_hdr`.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Reads one IPv6 packet (after its `virtio_net_hdr` if [`Tun::vnet_hdr`]). A buffer shorter than the packet gets its head and the rest is
    /// dropped by the kernel, so size it to at least the interface MTU.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Injects one IPv6 packet into the kernel as if it had arrived on the interface.
    pub fn write(&self, pkt: &[u8]) -> io::Result<usize> {
        (&self.file).write(pkt)
    }

    /// Switches `O_NONBLOCK` on or off; the daemon's `poll` loop wants it on so a spurious
    /// wake-up can never block the whole loop in `read`.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        set_fd_nonblocking(self.file.as_raw_fd(), nonblocking)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// `if_nametoindex(3)`, with the error naming the interface.
fn name_to_index(name: &str) -> io::Result<u32> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("if_nametoindex({name}): {e}")));
    }
    Ok(index)
}

/// Sets or clears `O_NONBLOCK` on `fd`, keeping its other status flags.
pub(crate) fn set_fd_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: F_GETFL only reads the status flags of `fd`, which the caller keeps open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: F_SETFL with an int argument only changes the status flags of `fd`.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Tun {
    /// Makes the device outlive its descriptor (`TUNSETPERSIST`). Closing a non-persistent
    /// TUN waits for the kernel to unregister the device (tens of milliseconds); a persistent
    /// one inside a namespace is instead removed with the namespace, in one batch, in the
    /// background. Never set it on a TUN in a namespace that outlives its user.
    pub fn set_persistent(&self, persistent: bool) -> io::Result<()> {
        const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
        // SAFETY: TUNSETPERSIST takes an integer argument by value and touches no memory.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETPERSIST as _,
                libc::c_ulong::from(persistent),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl From<Tun> for std::os::fd::OwnedFd {
    /// Hands the descriptor over (the interface lives as long as the descriptor does).
    fn from(tun: Tun) -> Self {
        tun.file.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::Netlink;
    use crate::sys::poll::wait_readable;
    use crate::sys::sysctl;
    use crate::sys::testns::in_netns;
    use std::net::Ipv6Addr;
    use std::time::{Duration, Instant};

    #[test]
    fn rejects_bad_names_without_privileges() {
        assert!(Tun::create("this-name-is-far-too-long").is_err());
        assert!(Tun::create("a/b").is_err());
    }

    /// Internet checksum over the IPv6 pseudo-header and an upper-layer payload.
    fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for chunk in bytes.chunks(2) {
                let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
                sum += u32::from(word);
            }
        };
        add(&src.octets());
        add(&dst.octets());
        add(&(payload.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(payload);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn echo_request(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut icmp = vec![128u8, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(data);
        let ck = icmpv6_checksum(src, dst, &icmp);
        icmp[2..4].copy_from_slice(&ck.to_be_bytes());

        let mut pkt = vec![0x60, 0, 0, 0];
        pkt.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        pkt.push(58); // next header: ICMPv6
        pkt.push(64); // hop limit
        pkt.extend_from_slice(&src.octets());
        pkt.extend_from_slice(&dst.octets());
        pkt.extend_from_slice(&icmp);
        pkt
    }

    /// Reads packets from the TUN until one is an echo reply matching `id`/`seq`, skipping the
    /// router solicitations and MLD reports the kernel may emit on its own.
    fn await_echo_reply(tun: &Tun, id: u16, seq: u16, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let ready = wait_readable(&[tun.as_raw_fd()], Some(left)).ok()?;
            if !ready[0] {
                continue;
            }
            let n = match tun.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return None,
            };
            let p = &buf[..n];
            if n >= 48
                && p[0] >> 4 == 6
                && p[6] == 58
                && p[40] == 129
                && p[44..46] == id.to_be_bytes()
                && p[46..48] == seq.to_be_bytes()
            {
                return Some(p.to_vec());
            }
        }
        None
    }

    /// The IPv6 routing table of *this thread's* namespace. `/proc/net` is a link to
    /// `/proc/self/net`, which shows the namespace of the process's main thread, not ours.
    fn read_routes() -> io::Result<String> {
        std::fs::read_to_string("/proc/thread-self/net/ipv6_route")
    }

    #[test]
    fn tun_address_route_and_echo_end_to_end() {
        in_netns(|| {
            let tun = Tun::create("bedtest%d").expect("create tun");
            assert!(tun.name().starts_with("bedtest"), "name {}", tun.name());
            assert_eq!(tun.ifindex(), name_to_index(tun.name()).expect("index"));
            tun.set_nonblocking(true).expect("nonblocking");

            sysctl::quiet_autoconf(tun.name()).expect("sysctls");
            let mut nl = Netlink::open().expect("netlink");
            nl.set_link_up(tun.ifindex(), Some(1280)).expect("link up");
            let mtu = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{}/mtu", tun.name()))
                .expect("read mtu");
            assert_eq!(mtu.trim(), "1280");

            let me: Ipv6Addr = "fc64::1".parse().expect("addr");
            nl.add_address_v6(tun.ifindex(), me, 64).expect("add address");
            // Adding the identical address again replaces it rather than failing.
            nl.add_address_v6(tun.ifindex(), me, 64).expect("re-add address");
            let addrs = nl.addresses_v6(tun.ifindex()).expect("list");
            assert!(addrs.contains(&(me, 64)), "{addrs:?}");
            // Loopback's ::1 belongs to another interface and must be filtered out.
            assert!(!addrs.iter().any(|(a, _)| *a == Ipv6Addr::LOCALHOST), "{addrs:?}");

            let other: Ipv6Addr = "2001:db8:64::".parse().expect("addr");
            let ll: Ipv6Addr = "fe80::".parse().expect("addr");
            nl.add_route_v6(tun.ifindex(), "fc65::".parse().expect("addr"), 48, None)
                .expect("route without gateway");
            nl.add_route_v6(tun.ifindex(), other, 48, Some(ll))
                .expect("route via fe80::");
            // NLM_F_REPLACE: installing the same route again is not an error.
            nl.add_route_v6(tun.ifindex(), other, 48, Some(ll))
                .expect("route again");
            let routes = read_routes().expect("routes");
            assert!(routes.contains("20010db8006400000000000000000000 30"), "{routes}");
            assert!(routes.contains("fc650000000000000000000000000000 30"), "{routes}");

            // An echo request from an on-link neighbour to our own address, injected into the
            // TUN, must come back out of the TUN as the kernel's echo reply.
            let peer: Ipv6Addr = "fc64::2".parse().expect("addr");
            let req = echo_request(peer, me, 0xbed4, 7, b"6bed4 says hello");
            assert_eq!(tun.write(&req).expect("write"), req.len());
            let reply = await_echo_reply(&tun, 0xbed4, 7, Duration::from_secs(5))
                .expect("no echo reply from the kernel");
            assert_eq!(reply[8..24], me.octets(), "reply source");
            assert_eq!(reply[24..40], peer.octets(), "reply destination");
            assert_eq!(&reply[48..], b"6bed4 says hello");

            nl.remove_route_v6(tun.ifindex(), other, 48, Some(ll))
                .expect("remove route");
            nl.remove_route_v6(tun.ifindex(), other, 48, Some(ll))
                .expect("remove route twice");
            let routes = read_routes().expect("routes");
            assert!(
                !routes.contains("20010db8006400000000000000000000 30"),
                "{routes}"
            );

            nl.remove_address_v6(tun.ifindex(), me, 64)
                .expect("remove address");
            let addrs = nl.addresses_v6(tun.ifindex()).expect("list");
            assert!(!addrs.iter().any(|(a, _)| *a == me), "{addrs:?}");
            // Removing a missing address is not an error.
            nl.remove_address_v6(tun.ifindex(), me, 64)
                .expect("remove missing address");
        });
    }

    /// With offloads every packet carries a `virtio_net_hdr` both ways: an echo request
    /// written behind an all-zero header is answered, and the reply comes back behind one.
    #[test]
    fn offloaded_tun_carries_a_virtio_header_both_ways() {
        use crate::offload::{VnetHdr, VNET_HDR_LEN};
        in_netns(|| {
            let (tun, got) = Tun::create_offloaded("bedoff%d").expect("create tun");
            assert_eq!(got, Offload::Tso6, "this kernel offers TSO6 on a TUN");
            assert!(tun.vnet_hdr());
            tun.set_nonblocking(true).expect("nonblocking");
            sysctl::quiet_autoconf(tun.name()).expect("sysctls");
            let mut nl = Netlink::open().expect("netlink");
            nl.set_link_up(tun.ifindex(), Some(1280)).expect("link up");
            let me: Ipv6Addr = "fc64::1".parse().expect("addr");
            nl.add_address_v6(tun.ifindex(), me, 64).expect("add address");
            let peer: Ipv6Addr = "fc64::2".parse().expect("addr");
            let mut frame = VnetHdr::default().emit().to_vec();
            frame.extend_from_slice(&echo_request(peer, me, 0xbed5, 1, b"with a header"));
            assert_eq!(tun.write(&frame).expect("write"), frame.len());
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut buf = [0u8; 4096];
            loop {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .expect("no echo reply behind a virtio_net_hdr");
                if !wait_readable(&[tun.as_raw_fd()], Some(left)).expect("poll")[0] {
                    continue;
                }
                let n = match tun.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("read: {e}"),
                };
                let (hdr, p) = VnetHdr::parse(&buf[..n]).expect("header");
                if p.len() >= 48 && p[6] == 58 && p[40] == 129 && p[44..46] == [0xbe, 0xd5] {
                    assert_eq!(hdr.gso_type, 0, "an echo reply is never a super-segment");
                    assert_eq!(&p[48..], b"with a header");
                    assert_eq!(n, VNET_HDR_LEN + p.len());
                    break;
                }
            }
        });
    }

    #[test]
    fn dropping_the_tun_removes_the_interface() {
        in_netns(|| {
            let tun = Tun::create("bedgone").expect("create tun");
            assert!(name_to_index("bedgone").is_ok());
            drop(tun);
            let err = name_to_index("bedgone").expect_err("interface should be gone");
            assert!(err.to_string().contains("bedgone"), "{err}");
        });
    }
}

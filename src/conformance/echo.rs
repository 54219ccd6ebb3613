//! `bedlab echo6` (hidden): ICMPv6 echo with the accounting a conformance step needs, run
//! inside a lab node by `ping` and `mesh` steps.
//!
//! Why not iputils `ping`: once one reply has come back, `ping -c N` waits only twice the
//! slowest round trip after its last echo, so a reply that is merely late (a path being
//! set up, 51 daemons on two cores) counts as lost; and `-w` makes it stop at the first N
//! replies of any sequence numbers, so a late reply is replaced by an extra echo. Here
//! exactly `count` echoes are sent, `interval` apart, and each is waited for until `timeout`
//! after the last one was sent.
//!
//! Prints one JSON line: `{"sent":N,"received":M,"duplicates":D,"rtt_us":[...]}` (round
//! trips of the answered echoes in sequence order).

use serde::{Deserialize, Serialize};
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `bedlab echo6 <target> [--count N] [--interval-ms I] [--timeout-ms T] [--size S]`.
#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// Where to send the echoes.
    pub target: Ipv6Addr,
    /// Echo requests to send.
    #[arg(long, default_value_t = 3)]
    pub count: u32,
    /// Milliseconds between two requests.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
    /// Milliseconds to wait for replies after the last request.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Bytes of echo data after the 8-byte ICMPv6 header (like `ping -s`).
    #[arg(long, default_value_t = 56)]
    pub size: usize,
}

/// What one `echo6` run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReport {
    pub sent: u32,
    /// Distinct requests answered.
    pub received: u32,
    /// Replies to a request already answered.
    pub duplicates: u32,
    /// Round trips of the answered requests, in sequence order (µs).
    pub rtt_us: Vec<u64>,
    /// Requests the kernel refused to send (`seq N: reason`): a missing route or address
    /// is a different failure from a lost packet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub send_errors: Vec<String>,
}

const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;

/// Builds an echo request: the kernel fills in the checksum of ICMPv6 raw sockets.
fn request(id: u16, seq: u16, size: usize) -> Vec<u8> {
    let mut p = vec![0u8; 8 + size];
    p[0] = ECHO_REQUEST;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// `(id, seq)` of an echo reply, or `None` for any other ICMPv6 message.
fn reply_of(msg: &[u8]) -> Option<(u16, u16)> {
    if msg.len() < 8 || msg[0] != ECHO_REPLY || msg[1] != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([msg[4], msg[5]]),
        u16::from_be_bytes([msg[6], msg[7]]),
    ))
}

fn raw_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(addr: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_addr.s6_addr = addr.octets();
    sa
}

fn send_to(fd: &OwnedFd, to: Ipv6Addr, msg: &[u8]) -> io::Result<()> {
    let sa = sockaddr(to);
    // SAFETY: msg and sa outlive the call; the lengths are theirs.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `wait` for one message; `Ok(None)` on timeout.
fn recv_from(fd: &OwnedFd, buf: &mut [u8], wait: Duration) -> io::Result<Option<(usize, Ipv6Addr)>> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if r == 0 {
        return Ok(None);
    }
    // SAFETY: as above; all-zero sockaddr_in6 is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: buf, sa and len outlive the call.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sa as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some((n as usize, Ipv6Addr::from(sa.sin6_addr.s6_addr))))
}

/// Runs the echoes and returns what came back.
pub fn run(args: &EchoArgs) -> io::Result<EchoReport> {
    if args.count == 0 || args.count > u32::from(u16::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--count must be 1..=65535, found {}", args.count),
        ));
    }
    if args.size > 65_000 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--size must be at most 65000, found {}", args.size),
        ));
    }
    let fd = raw_socket()?;
    let id = (std::process::id() & 0xffff) as u16;
    let interval = Duration::from_millis(args.interval_ms);
    let timeout = Duration::from_millis(args.timeout_ms);
    let count = args.count as usize;
    let mut sent_at: Vec<Option<Instant>> = vec![None; count];
    let mut rtt: Vec<Option<u64>> = vec![None; count];
    let mut report = EchoReport::default();
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    let mut next = 0usize;
    loop {
        let now = Instant::now();
        if next < count && now >= start + interval * next as u32 {
            let seq = (next + 1) as u16;
            // A send error (no route yet, a full queue) is a lost echo, as for ping.
            match send_to(&fd, args.target, &request(id, seq, args.size)) {
                Ok(()) => sent_at[next] = Some(Instant::now()),
                Err(e) => report.send_errors.push(format!("seq {seq}: {e}")),
            }
            report.sent += 1;
            next += 1;
            continue;
        }
        let answered = rtt.iter().filter(|r| r.is_some()).count();
        let deadline = if next < count {
            start + interval * next as u32
        } else {
            if answered == count {
                break;
            }
            let last = sent_at.iter().flatten().max().copied().unwrap_or(start);
            let end = last.max(start + interval * (count as u32 - 1)) + timeout;
            if now >= end {
                break;
            }
            end
        };
        let Some((n, from)) = recv_from(&fd, &mut buf, deadline.saturating_duration_since(now))? else {
            continue;
        };
        let Some((rid, seq)) = reply_of(&buf[..n]) else {
            continue;
        };
        let i = usize::from(seq).wrapping_sub(1);
        if rid != id || from != args.target || i >= count {
            continue;
        }
        match (rtt[i], sent_at[i]) {
            (Some(_), _) => report.duplicates += 1,
            (None, Some(t)) => rtt[i] = Some(t.elapsed().as_micros() as u64),
            (None, None) => {}
        }
    }
    report.rtt_us = rtt.iter().flatten().copied().collect();
    report.received = report.rtt_us.len() as u32;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_id_seq_and_size() {
        let p = request(0x1234, 7, 56);
        assert_eq!(p.len(), 64);
        assert_eq!(p[0], ECHO_REQUEST);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn only_echo_replies_are_matched() {
        let mut p = request(9, 3, 0);
        assert_eq!(reply_of(&p), None, "a request is not a reply");
        p[0] = ECHO_REPLY;
        assert_eq!(reply_of(&p), Some((9, 3)));
        p[1] = 1;
        assert_eq!(reply_of(&p), None, "code must be 0");
        assert_eq!(reply_of(&[ECHO_REPLY, 0, 0]), None, "truncated");
    }

    #[test]
    fn count_and_size_are_bounded() {
        let bad = EchoArgs {
            target: Ipv6Addr::LOCALHOST,
            count: 0,
            interval_ms: 1,
            timeout_ms: 1,
            size: 0,
        };
        assert!(run(&bad).is_err());
    }

    /// Against the loopback of this namespace (needs CAP_NET_RAW): every echo answered,
    /// none twice, one round trip each.
    #[test]
    fn loopback_answers_every_echo() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: raw ICMPv6 sockets need root");
            return;
        }
        let r = run(&EchoArgs {
            target: Ipv6Addr::LOCALHOST,
            count: 4,
            interval_ms: 5,
            timeout_ms: 1000,
            size: 100,
        });
        let Ok(r) = r else {
            eprintln!("skipped: no IPv6 loopback here: {r:?}");
            return;
        };
        assert_eq!((r.sent, r.received, r.duplicates, r.rtt_us.len()), (4, 4, 0, 4));
    }
}

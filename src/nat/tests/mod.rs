//! Tests of the NAT engine, all on a virtual clock.
//!
//! Packets are built and checked with code written here independently of `wire.rs` (its own
//! checksum, its own parsing), so a checksum bug in the engine cannot hide behind the same
//! bug in the test.

mod classify;
mod controls;
mod hairpin;
mod icmp;
mod lifetime;
mod ports;
mod props;
mod tcp;
mod wire;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::{Config, Nat, Verdict};

pub(crate) const C1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
pub(crate) const C2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);
pub(crate) const S1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub(crate) const S2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub(crate) const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub(crate) const P1: u16 = 3478;
pub(crate) const P2: u16 = 3479;

pub(crate) fn ep(a: Ipv4Addr, p: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a, p)
}

// ----- independent packet building and checking -----------------------------------------

/// One's complement sum, written differently from the engine's (byte pairs, u32, fold at end).
pub(crate) fn ones(data: &[u8], mut acc: u32) -> u32 {
    let mut i = 0;
    while i + 1 < data.len() {
        acc += (u32::from(data[i]) << 8) | u32::from(data[i + 1]);
        i += 2;
    }
    if i < data.len() {
        acc += u32::from(data[i]) << 8;
    }
    acc
}

pub(crate) fn finish(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut acc = ones(&src, 0);
    acc = ones(&dst, acc);
    acc + u32::from(proto) + len as u32
}

fn ip_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0,
        0,
        64,
        proto,
        0,
        0,
    ];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = finish(ones(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A UDP datagram with a correct checksum (or 0 when `zero_csum`).
pub(crate) fn udp_with(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], zero_csum: bool) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    if !zero_csum {
        let mut c = finish(ones(&u, pseudo(src.ip().octets(), dst.ip().octets(), 17, len)));
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = ip_header(*src.ip(), *dst.ip(), 17, len);
    p.extend_from_slice(&u);
    p
}

pub(crate) fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    udp_with(src, dst, b"bedlab nat test", false)
}

pub(crate) const SYN: u8 = 0x02;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const FIN: u8 = 0x01;
pub(crate) const RST: u8 = 0x04;

/// A TCP segment with the given flags and a correct checksum.
pub(crate) fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(b"data");
    let c = finish(ones(&t, pseudo(src.ip().octets(), dst.ip().octets(), 6, t.len())));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    let mut p = ip_header(*src.ip(), *dst.ip(), 6, t.len());
    p.extend_from_slice(&t);
    p
}

/// An ICMP echo request (type 8) or reply (type 0).
pub(crate) fn echo(src: Ipv4Addr, dst: Ipv4Addr, request: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![if request { 8 } else { 0 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"ping payload");
    let c = finish(ones(&m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ip_header(src, dst, 1, m.len());
    p.extend_from_slice(&m);
    p
}

/// An ICMP error quoting `quoted` (the offending packet, possibly truncated by the caller).
pub(crate) fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(quoted);
    let c = finish(ones(&m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ip_header(src, dst, 1, m.len());
    p.extend_from_slice(&m);
    p
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

fn addr(b: &[u8], o: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3])
}

/// Source endpoint (ICMP: the identifier as port).
pub(crate) fn src_of(p: &[u8]) -> SocketAddrV4 {
    let ihl = usize::from(p[0] & 15) * 4;
    let port = if p[9] == 1 { be16(p, ihl + 4) } else { be16(p, ihl) };
    ep(addr(p, 12), port)
}

/// Destination endpoint (ICMP: the identifier as port).
pub(crate) fn dst_of(p: &[u8]) -> SocketAddrV4 {
    let ihl = usize::from(p[0] & 15) * 4;
    let port = if p[9] == 1 {
        be16(p, ihl + 4)
    } else {
        be16(p, ihl + 2)
    };
    ep(addr(p, 16), port)
}

/// Checks every checksum of an IPv4 packet: header, UDP/TCP (with pseudo-header; UDP 0 is
/// "none"), ICMP, and for an ICMP error the quoted IPv4 header and, when the quote holds the
/// whole original datagram, its transport checksum.
pub(crate) fn verify(p: &[u8]) -> Result<(), String> {
    if p.len() < 20 {
        return Err("short".into());
    }
    let ihl = usize::from(p[0] & 15) * 4;
    let total = usize::from(be16(p, 2));
    if finish(ones(&p[..ihl], 0)) != 0 {
        return Err("IPv4 header checksum".into());
    }
    let body = &p[ihl..total];
    verify_l4(p[9], addr(p, 12), addr(p, 16), body, true)
}

fn verify_l4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, body: &[u8], outer: bool) -> Result<(), String> {
    match proto {
        17 => {
            if be16(body, 6) == 0 {
                return Ok(());
            }
            let acc = ones(body, pseudo(src.octets(), dst.octets(), 17, body.len()));
            (finish(acc) == 0)
                .then_some(())
                .ok_or_else(|| "UDP checksum".into())
        }
        6 => {
            let acc = ones(body, pseudo(src.octets(), dst.octets(), 6, body.len()));
            (finish(acc) == 0)
                .then_some(())
                .ok_or_else(|| "TCP checksum".into())
        }
        1 => {
            if finish(ones(body, 0)) != 0 {
                return Err(format!("ICMP checksum (outer: {outer})"));
            }
            if outer && matches!(body[0], 3 | 11 | 12) {
                let q = &body[8..];
                let qihl = usize::from(q[0] & 15) * 4;
                if finish(ones(&q[..qihl], 0)) != 0 {
                    return Err("quoted IPv4 header checksum".into());
                }
                let qtotal = usize::from(be16(q, 2));
                if qtotal <= q.len() {
                    verify_l4(q[9], addr(q, 12), addr(q, 16), &q[qihl..qtotal], false)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

// ----- a NAT on a virtual clock ----------------------------------------------------------

pub(crate) struct Lab {
    pub nat: Nat,
    pub t0: Instant,
    pub now: Instant,
}

impl Lab {
    pub fn new(cfg: Config) -> Lab {
        let t0 = Instant::now();
        Lab {
            nat: Nat::new(cfg, t0).expect("valid test config"),
            t0,
            now: t0,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn at(&mut self, since_t0: Duration) {
        self.now = self.t0 + since_t0;
    }

    /// Outbound; on Forward/Hairpin checks all checksums and returns the translated packet.
    pub fn out(&mut self, mut p: Vec<u8>) -> (Verdict, Vec<u8>) {
        let v = self.nat.outbound(self.now, &mut p);
        if matches!(v, Verdict::Forward | Verdict::Hairpin) {
            verify(&p).unwrap_or_else(|e| panic!("bad checksum after outbound: {e}"));
        }
        (v, p)
    }

    /// Inbound; on Forward checks all checksums and returns the translated packet.
    pub fn inb(&mut self, mut p: Vec<u8>) -> (Verdict, Vec<u8>) {
        let v = self.nat.inbound(self.now, &mut p);
        if v == Verdict::Forward {
            verify(&p).unwrap_or_else(|e| panic!("bad checksum after inbound: {e}"));
        }
        (v, p)
    }

    /// Sends UDP out and returns the external endpoint it got (panics if not forwarded).
    pub fn udp_out(&mut self, from: SocketAddrV4, to: SocketAddrV4) -> SocketAddrV4 {
        let (v, p) = self.out(udp(from, to));
        assert_eq!(v, Verdict::Forward, "outbound {from} -> {to}");
        assert_eq!(dst_of(&p), to, "destination must not change");
        src_of(&p)
    }

    /// Sends UDP in; returns the inside endpoint it reached, or the verdict.
    pub fn udp_in(&mut self, from: SocketAddrV4, to: SocketAddrV4) -> Result<SocketAddrV4, Verdict> {
        let (v, p) = self.inb(udp(from, to));
        if v == Verdict::Forward {
            assert_eq!(src_of(&p), from, "source must not change inbound");
            Ok(dst_of(&p))
        } else {
            Err(v)
        }
    }
}

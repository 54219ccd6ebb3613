//! What a packet on a link is, in the terms a packet filter asks about: from the raw bytes of
//! one fabric capture record (an IPv4 or IPv6 packet, possibly cut to the tap's snap length).
//!
//! The outer IPv4/UDP and a native IPv6 header are read here byte by byte; what the inner
//! IPv6 packet of a tunnelled datagram is (RS, RA, NS, NA, data, an ICMPv6 error, malformed)
//! is asked of the conformance decoder through [`decode_inner`], the one function that calls
//! it, so a change of the decoder's interface is a change here only. Nothing comes from the
//! `sixbed4` codecs: the checker must not share a misreading with the implementation.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

use crate::fabric::Direction;

/// What a datagram of the tunnel carries, or what a packet is when it is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rs,
    Ra,
    Ns,
    Na,
    /// A UDP datagram with an empty payload.
    Keepalive,
    /// Any other IPv6 packet inside the tunnel.
    Data,
    /// An ICMPv6 error inside the tunnel.
    IcmpError,
    /// A UDP payload that starts like IPv6 but is not a valid packet.
    Malformed,
    /// Not tunnelled 6bed4: a native IPv6 packet, or IPv4 that is not a 6bed4 datagram.
    Other,
}

/// The IPv6 header of interest: the inner packet of a datagram, or a native IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The upper-layer protocol (after the fixed header; extension headers not followed).
    pub next_header: u8,
    /// ICMPv6 type, when the next header is ICMPv6 and the byte is there.
    pub icmp_type: Option<u8>,
    /// TCP/UDP ports, when the next header is one of them and the bytes are there.
    pub ports: Option<(u16, u16)>,
}

/// One packet seen at one link end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The link (`node/interface`).
    pub link: String,
    pub direction: Direction,
    pub at: Instant,
    /// Length on the link.
    pub len: usize,
    /// The IPv4 header: source, destination, TTL, protocol.
    pub v4: Option<(Ipv4Addr, Ipv4Addr, u8, u8)>,
    /// Outer UDP source and destination (IPv4 packets only).
    pub udp: Option<(SocketAddrV4, SocketAddrV4)>,
    pub kind: Kind,
    /// The inner IPv6 header of a datagram, or the header of a native IPv6 packet.
    pub v6: Option<V6>,
    /// True for an IPv6 packet on the link itself (not inside UDP).
    pub native: bool,
}

impl Facts {
    /// Whether this is a 6bed4 datagram (anything but [`Kind::Other`]).
    pub fn is_tunnel(&self) -> bool {
        self.kind != Kind::Other
    }
}

/// The decoder's reading of an inner IPv6 packet, reduced to what filters use.
struct Inner {
    kind: Kind,
    v6: Option<V6>,
}

/// The adapter to the conformance decoder (`conformance::decode`): the only call into it.
fn decode_inner(payload: &[u8], complete: bool) -> Inner {
    use crate::conformance::decode::{inner, Kind as D};
    let parsed = inner::parse_ipv6(payload, complete);
    let kind = match parsed.kind {
        D::Rs { .. } => Kind::Rs,
        D::Ra { .. } => Kind::Ra,
        D::Ns { .. } => Kind::Ns,
        D::Na { .. } => Kind::Na,
        D::Keepalive => Kind::Keepalive,
        D::Data { .. } => Kind::Data,
        D::IcmpError { .. } => Kind::IcmpError,
        D::Malformed { .. } => Kind::Malformed,
    };
    let v6 = parsed.inner.map(|h| V6 {
        src: h.src,
        dst: h.dst,
        hop_limit: h.hop_limit,
        next_header: h.next_header,
        icmp_type: parsed.icmp.as_ref().map(|i| i.ty),
        ports: None,
    });
    Inner { kind, v6 }
}

const UDP: u8 = 17;
const TCP: u8 = 6;
const ICMPV6: u8 = 58;

/// Reads a native IPv6 header (and the ports or ICMPv6 type right after it).
fn native_v6(p: &[u8]) -> Option<V6> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return None;
    }
    let addr = |at: usize| -> Option<Ipv6Addr> {
        let b: [u8; 16] = p.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(b))
    };
    let next_header = p[6];
    let body = &p[40..];
    Some(V6 {
        src: addr(8)?,
        dst: addr(24)?,
        hop_limit: p[7],
        next_header,
        icmp_type: (next_header == ICMPV6).then(|| body.first().copied()).flatten(),
        ports: ports(next_header, body),
    })
}

fn ports(proto: u8, body: &[u8]) -> Option<(u16, u16)> {
    if proto != TCP && proto != UDP {
        return None;
    }
    let b = body.get(..4)?;
    Some((u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]])))
}

/// Classifies one packet. `len` is its full length (the bytes may be cut shorter).
pub fn classify(link: &str, direction: Direction, at: Instant, len: usize, p: &[u8]) -> Facts {
    let mut f = Facts {
        link: link.to_string(),
        direction,
        at,
        len,
        v4: None,
        udp: None,
        kind: Kind::Other,
        v6: None,
        native: false,
    };
    match p.first().map(|b| b >> 4) {
        Some(6) => {
            f.native = true;
            f.v6 = native_v6(p);
        }
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            let proto = p[9];
            f.v4 = Some((src, dst, p[8], proto));
            let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            if proto != UDP || ihl < 20 || fragment_offset != 0 {
                return f;
            }
            let Some(udp) = p.get(ihl..ihl + 8) else { return f };
            let sport = u16::from_be_bytes([udp[0], udp[1]]);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            f.udp = Some((SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport)));
            let payload_len = udp_len.saturating_sub(8);
            let payload = p.get(ihl + 8..).unwrap_or(&[]);
            let payload = &payload[..payload.len().min(payload_len)];
            if udp_len == 8 {
                f.kind = Kind::Keepalive;
            } else if payload.first().is_some_and(|b| b >> 4 == 6) {
                let complete = payload.len() >= payload_len;
                let inner = decode_inner(payload, complete);
                f.kind = inner.kind;
                f.v6 = inner.v6.map(|mut v| {
                    v.ports = ports(v.next_header, payload.get(40..).unwrap_or(&[]));
                    v
                });
            }
        }
        _ => {}
    }
    f
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4/UDP datagram carrying `payload`.
    pub(crate) fn udp4(src: SocketAddrV4, dst: SocketAddrV4, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            ttl,
            UDP,
            0,
            0,
        ];
        p.extend(src.ip().octets());
        p.extend(dst.ip().octets());
        p.extend(src.port().to_be_bytes());
        p.extend(dst.port().to_be_bytes());
        p.extend(((8 + payload.len()) as u16).to_be_bytes());
        p.extend([0, 0]);
        p.extend(payload);
        p
    }

    /// An IPv6 packet with `body` after the fixed header.
    pub(crate) fn ip6(src: Ipv6Addr, dst: Ipv6Addr, hlim: u8, nh: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((body.len() as u16).to_be_bytes());
        p.push(nh);
        p.push(hlim);
        p.extend(src.octets());
        p.extend(dst.octets());
        p.extend(body);
        p
    }

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn keepalives_data_and_native_packets() {
        let now = Instant::now();
        let ka = udp4(ep("10.0.1.2:25790"), ep("198.51.100.1:25790"), 3, &[]);
        let f = classify("peer-a/eth0", Direction::Out, now, ka.len(), &ka);
        assert_eq!(f.kind, Kind::Keepalive);
        assert_eq!(f.v4.map(|v| v.2), Some(3));
        assert_eq!(f.udp.map(|u| u.1.port()), Some(25790));

        let a: Ipv6Addr = "fc64:bed:c633:6401:c633:640a:64ed:1".parse().unwrap();
        let b: Ipv6Addr = "fc64:bed:c633:6401:c633:6414:64ed:1".parse().unwrap();
        let inner = ip6(a, b, 64, TCP, &[0x13, 0x89, 0x30, 0x39, 0, 0, 0, 0]);
        let d = udp4(ep("198.51.100.10:25790"), ep("198.51.100.1:25790"), 64, &inner);
        let f = classify("nat-a/wan", Direction::Out, now, d.len(), &d);
        assert_eq!(f.kind, Kind::Data);
        let v6 = f.v6.expect("inner header");
        assert_eq!((v6.src, v6.dst, v6.hop_limit, v6.next_header), (a, b, 64, TCP));
        assert_eq!(v6.ports, Some((5001, 12345)));
        assert!(!f.native);

        let native = ip6(b, a, 63, UDP, &[0, 53, 0, 54, 0, 8, 0, 0]);
        let f = classify("server/eth0", Direction::In, now, native.len(), &native);
        assert!(f.native && f.kind == Kind::Other);
        assert_eq!(f.v6.and_then(|v| v.ports), Some((53, 54)));
    }

    #[test]
    fn garbage_and_short_packets_are_never_a_panic() {
        let now = Instant::now();
        for p in [
            &[][..],
            &[0x45][..],
            &[0x60, 0, 0][..],
            &[0x45; 30][..],
            &[0xff; 100][..],
        ] {
            let f = classify("x/y", Direction::In, now, p.len(), p);
            assert!(matches!(
                f.kind,
                Kind::Other | Kind::Malformed | Kind::Keepalive | Kind::Data
            ));
        }
        // A payload that starts like IPv6 but is cut short: malformed, not data.
        let d = udp4(ep("10.0.1.2:1"), ep("10.0.1.3:2"), 64, &[0x60, 0, 0]);
        let f = classify("x/y", Direction::In, now, d.len(), &d);
        assert_eq!(f.kind, Kind::Malformed);
    }
}

/// The external IPv4:port a 6bed4 address embeds (spec §2: layout C for the `current`
/// profile, layout V, with `ff:fe` in the middle of the IID, for `v01`); read here from the
/// spec so filters can name a peer by the mapping its address carries.
pub fn embedded_endpoint(addr: &Ipv6Addr, v01: bool) -> Option<SocketAddrV4> {
    let b = addr.octets();
    if v01 {
        if b[11] != 0xff || b[12] != 0xfe {
            return None;
        }
        let port = u16::from_be_bytes([b[9], b[8] ^ 0x02]);
        return Some(SocketAddrV4::new(Ipv4Addr::new(b[10], b[13], b[14], b[15]), port));
    }
    let ip = Ipv4Addr::new((b[8] & 0xfc) | (b[14] >> 6), b[9], b[10], b[11]);
    Some(SocketAddrV4::new(ip, u16::from_be_bytes([b[12], b[13]])))
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn addresses_name_their_mapping() {
        // 198.51.100.10:25790 in layout C, local id 1.
        let c: Ipv6Addr = "fc64:bed:c633:6401:c433:640a:64be:8001".parse().unwrap();
        assert_eq!(
            embedded_endpoint(&c, false),
            Some("198.51.100.10:25790".parse().unwrap())
        );
        assert_eq!(embedded_endpoint(&c, true), None);
    }
}

//! Just enough IPv4 and IPv6 for a layer-3 fabric: header views with bounds checks, the
//! Internet checksum, and builders for the packets the fabric makes itself (ICMP errors, echo
//! replies, fragments) plus a UDP builder for tests.
//!
//! Hand-written rather than taken from a crate because the fabric needs a handful of fields
//! and one rule above all: whatever the bytes, parsing returns `None` instead of panicking,
//! since every packet comes from a kernel or a process under test.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Smallest IPv4 header (no options).
pub const IPV4_HEADER_LEN: usize = 20;
/// The fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// TTL of packets the fabric originates (ICMP errors, echo replies): Linux's default.
pub const ORIGINATED_TTL: u8 = 64;

/// ICMP types the fabric sends or must recognise.
pub mod icmp {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Destination unreachable code: no route to the network.
    pub const CODE_NET_UNREACHABLE: u8 = 0;
    /// Destination unreachable code: fragmentation needed and DF set (RFC 1191).
    pub const CODE_FRAG_NEEDED: u8 = 4;
    /// Time exceeded code: TTL reached zero in transit.
    pub const CODE_TTL_EXCEEDED: u8 = 0;
}

/// The IPv4 header fields the fabric uses, from a packet that passed the bounds checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    /// Header length in bytes (20..=60).
    pub header_len: usize,
    /// The total length field; the packet's bytes beyond it are padding.
    pub total_len: usize,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in bytes (the field times 8).
    pub fragment_offset: usize,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Info {
    /// True for a fragment of a larger datagram (not the whole datagram).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.fragment_offset != 0
    }
}

/// The IPv6 header fields the fabric uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Info {
    pub payload_len: usize,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// A parsed IP header of either version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpInfo {
    V4(Ipv4Info),
    V6(Ipv6Info),
}

/// Parses either version by the version nibble; `None` for anything that is not a
/// well-formed IPv4 or IPv6 header fully inside `buf`.
pub fn parse_ip(buf: &[u8]) -> Option<IpInfo> {
    match buf.first()? >> 4 {
        4 => parse_ipv4(buf).map(IpInfo::V4),
        6 => parse_ipv6(buf).map(IpInfo::V6),
        _ => None,
    }
}

/// Parses an IPv4 header. Checks version, header length (at least 20 and inside `buf`) and
/// total length (at least the header, at most `buf`). The header checksum is *not* checked
/// here (see [`ipv4_checksum_ok`]): the segment forwards what a host sent, like a switch.
pub fn parse_ipv4(buf: &[u8]) -> Option<Ipv4Info> {
    let first = *buf.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN || buf.len() < header_len {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total_len < header_len || total_len > buf.len() {
        return None;
    }
    let flags_frag = u16::from_be_bytes([buf[6], buf[7]]);
    Some(Ipv4Info {
        header_len,
        total_len,
        ident: u16::from_be_bytes([buf[4], buf[5]]),
        dont_fragment: flags_frag & 0x4000 != 0,
        more_fragments: flags_frag & 0x2000 != 0,
        fragment_offset: usize::from(flags_frag & 0x1fff) * 8,
        ttl: buf[8],
        protocol: buf[9],
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
    })
}

/// Parses the fixed IPv6 header; the payload length must fit inside `buf`.
pub fn parse_ipv6(buf: &[u8]) -> Option<Ipv6Info> {
    if buf.len() < IPV6_HEADER_LEN || buf[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if IPV6_HEADER_LEN + payload_len > buf.len() {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&buf[8..24]);
    dst.copy_from_slice(&buf[24..40]);
    Some(Ipv6Info {
        payload_len,
        next_header: buf[6],
        hop_limit: buf[7],
        src: Ipv6Addr::from(src),
        dst: Ipv6Addr::from(dst),
    })
}

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd last byte padded
/// with zero), added to `initial`, not yet folded.
fn sum_words(data: &[u8], initial: u32) -> u32 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// Folds a 32-bit sum into the 16-bit one's-complement checksum.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum (RFC 1071) of `data`. Over data that includes a correct checksum
/// field the result is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    fold(sum_words(data, 0))
}

/// True if the IPv4 header checksum is correct. Routers check it so a corrupted header is
/// never forwarded with a fresh, valid checksum.
pub fn ipv4_checksum_ok(buf: &[u8], info: &Ipv4Info) -> bool {
    buf.get(..info.header_len)
        .is_some_and(|h| internet_checksum(h) == 0)
}

/// Recomputes the IPv4 header checksum in place (header is `buf[..header_len]`).
pub fn set_ipv4_checksum(buf: &mut [u8], header_len: usize) {
    if buf.len() < header_len || header_len < IPV4_HEADER_LEN {
        return;
    }
    buf[10] = 0;
    buf[11] = 0;
    let ck = internet_checksum(&buf[..header_len]);
    buf[10..12].copy_from_slice(&ck.to_be_bytes());
}

/// Builds an IPv4 packet with a 20-byte header around `payload`. Payloads too long for the
/// 16-bit total length are cut, which never happens for what the fabric builds.
pub fn build_ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ttl: u8,
    ident: u16,
    dont_fragment: bool,
    payload: &[u8],
) -> Vec<u8> {
    let payload = &payload[..payload.len().min(usize::from(u16::MAX) - IPV4_HEADER_LEN)];
    let total = IPV4_HEADER_LEN + payload.len();
    let mut p = Vec::with_capacity(total);
    p.push(0x45);
    p.push(0);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&(if dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
    p.push(ttl);
    p.push(protocol);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    set_ipv4_checksum(&mut p, IPV4_HEADER_LEN);
    p
}

/// Builds an ICMP message (type, code, the 4 bytes after the checksum, body) with its
/// checksum, inside an IPv4 packet with TTL [`ORIGINATED_TTL`].
pub fn build_icmpv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    icmp_type: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(8 + body.len());
    icmp.extend_from_slice(&[icmp_type, code, 0, 0]);
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(body);
    let ck = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    build_ipv4(src, dst, PROTO_ICMP, ORIGINATED_TTL, ident, false, &icmp)
}

/// How much of an offending datagram an ICMP error quotes: as much as keeps the error within
/// 576 bytes (RFC 1812 4.3.2.3), which is more than RFC 792's header + 8 and is what Linux
/// does; tools such as tracepath and 6bed4's own checks like seeing the inner headers.
pub fn icmp_error_quote(original: &[u8]) -> &[u8] {
    let limit = 576 - IPV4_HEADER_LEN - 8;
    let len = parse_ipv4(original).map_or(original.len(), |i| i.total_len);
    &original[..len.min(limit).min(original.len())]
}

/// True if an ICMP error may be sent about this packet (RFC 1812 4.3.2.7): not about an ICMP
/// error, not about a non-first fragment, not about packets from or to addresses that do not
/// name one host.
pub fn may_send_icmp_error(pkt: &[u8], info: &Ipv4Info) -> bool {
    if info.fragment_offset != 0 {
        return false;
    }
    let odd = |a: Ipv4Addr| a.is_unspecified() || a.is_broadcast() || a.is_multicast();
    if odd(info.src) || odd(info.dst) || info.src.is_loopback() {
        return false;
    }
    if info.protocol == PROTO_ICMP {
        let Some(&t) = pkt.get(info.header_len) else {
            return false;
        };
        // Errors are not answered with errors; unknown types are treated as errors too.
        return matches!(t, icmp::ECHO_REPLY | icmp::ECHO_REQUEST | 13..=18);
    }
    true
}

/// The echo reply to an ICMP echo request (from its destination back to its source), or
/// `None` if `pkt` is not an unfragmented echo request with a correct ICMP checksum.
pub fn echo_reply(pkt: &[u8], info: &Ipv4Info, ident: u16) -> Option<Vec<u8>> {
    if info.protocol != PROTO_ICMP || info.is_fragment() {
        return None;
    }
    let icmp_msg = pkt.get(info.header_len..info.total_len)?;
    if icmp_msg.len() < 8 || icmp_msg[0] != icmp::ECHO_REQUEST || icmp_msg[1] != 0 {
        return None;
    }
    if internet_checksum(icmp_msg) != 0 {
        return None;
    }
    let rest = [icmp_msg[4], icmp_msg[5], icmp_msg[6], icmp_msg[7]];
    Some(build_icmpv4(
        info.dst,
        info.src,
        ident,
        icmp::ECHO_REPLY,
        0,
        rest,
        &icmp_msg[8..],
    ))
}

/// Decrements the TTL and fixes the header checksum incrementally (RFC 1624), which is what
/// routers do and keeps a (deliberately) bad checksum bad. The caller has checked TTL > 1.
pub fn decrement_ttl(buf: &mut [u8]) {
    if buf.len() < IPV4_HEADER_LEN || buf[8] == 0 {
        return;
    }
    let old = u16::from_be_bytes([buf[8], buf[9]]);
    buf[8] -= 1;
    let new = u16::from_be_bytes([buf[8], buf[9]]);
    let ck = u16::from_be_bytes([buf[10], buf[11]]);
    // HC' = ~(~HC + ~m + m')
    let sum = u32::from(!ck) + u32::from(!old) + u32::from(new);
    let ck = fold(sum);
    buf[10..12].copy_from_slice(&ck.to_be_bytes());
}

/// The options of an IPv4 header that every fragment carries (copy bit set), padded to a
/// multiple of 4 bytes. Malformed option lists end the copy where they go wrong.
fn copied_options(options: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < options.len() {
        let kind = options[i];
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(&len) = options.get(i + 1) else {
                    break;
                };
                let len = usize::from(len);
                if len < 2 || i + len > options.len() {
                    break;
                }
                if kind & 0x80 != 0 {
                    out.extend_from_slice(&options[i..i + len]);
                }
                i += len;
            }
        }
    }
    // Pad with end-of-options bytes to whole 32-bit words.
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// Splits an IPv4 packet (DF clear) into fragments that each fit `mtu`, as a router does
/// (RFC 791): the first keeps all options, later ones only the copied ones; offsets build on
/// the packet's own offset so fragments of fragments reassemble correctly. `None` when the
/// MTU is too small to carry 8 bytes of payload per fragment.
pub fn fragment_ipv4(pkt: &[u8], info: &Ipv4Info, mtu: usize) -> Option<Vec<Vec<u8>>> {
    let header = pkt.get(..info.header_len)?;
    let payload = pkt.get(info.header_len..info.total_len)?;
    let later_options = copied_options(&header[IPV4_HEADER_LEN..]);
    let later_header_len = IPV4_HEADER_LEN + later_options.len();
    let first_max = (mtu.checked_sub(info.header_len)? / 8) * 8;
    let later_max = (mtu.checked_sub(later_header_len)? / 8) * 8;
    if first_max == 0 || later_max == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let first = pos == 0;
        let max = if first { first_max } else { later_max };
        let end = (pos + max).min(payload.len());
        let last = end == payload.len();
        let hlen = if first { info.header_len } else { later_header_len };
        let mut f = Vec::with_capacity(hlen + end - pos);
        f.extend_from_slice(&header[..IPV4_HEADER_LEN]);
        if first {
            f.extend_from_slice(&header[IPV4_HEADER_LEN..]);
        } else {
            f.extend_from_slice(&later_options);
        }
        f.extend_from_slice(&payload[pos..end]);
        f[0] = 0x40 | (hlen / 4) as u8;
        let flen = f.len() as u16;
        f[2..4].copy_from_slice(&flen.to_be_bytes());
        let offset = (info.fragment_offset + pos) / 8;
        let mf = !last || info.more_fragments;
        let flags = (if mf { 0x2000u16 } else { 0 }) | (offset as u16 & 0x1fff);
        f[6..8].copy_from_slice(&flags.to_be_bytes());
        set_ipv4_checksum(&mut f, hlen);
        out.push(f);
        pos = end;
    }
    if out.is_empty() {
        // No payload at all: the header alone fits (it is at most 60 bytes, the MTU at
        // least 68), so the packet goes unchanged.
        out.push(pkt[..info.total_len].to_vec());
    }
    Some(out)
}

/// Builds a UDP/IPv4 packet with a correct UDP checksum: for tests and tools that need real
/// traffic without a socket.
pub fn build_udpv4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(usize::from(u16::MAX) - IPV4_HEADER_LEN - 8)];
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, PROTO_UDP]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let mut ck = fold(sum_words(&udp, sum_words(&pseudo, 0)));
    if ck == 0 {
        ck = 0xffff;
    }
    udp[6..8].copy_from_slice(&ck.to_be_bytes());
    let mut p = build_ipv4(src, dst, PROTO_UDP, ttl, 0, false, &udp);
    p[6] = 0x40; // DF, as Linux sets it on UDP with path MTU discovery
    set_ipv4_checksum(&mut p, IPV4_HEADER_LEN);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2, the checksum its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        // An odd length pads with a zero byte.
        assert_eq!(internet_checksum(&[0xab]), !0xab00);
    }

    #[test]
    fn built_packets_parse_and_have_valid_checksums() {
        let p = build_udpv4(a("10.0.0.1"), 1000, a("10.0.0.2"), 2000, 7, b"hello");
        let info = parse_ipv4(&p).unwrap();
        assert_eq!(info.total_len, 20 + 8 + 5);
        assert_eq!(info.ttl, 7);
        assert!(info.dont_fragment);
        assert!(ipv4_checksum_ok(&p, &info));
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(internet_checksum(&pseudo), 0);
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        let mut p = build_udpv4(a("10.0.0.1"), 1, a("10.9.0.2"), 2, 64, b"x");
        for ttl in (1..64).rev() {
            decrement_ttl(&mut p);
            let info = parse_ipv4(&p).unwrap();
            assert_eq!(info.ttl, ttl);
            assert!(ipv4_checksum_ok(&p, &info));
        }
    }

    #[test]
    fn echo_reply_swaps_addresses_and_keeps_payload() {
        let req = build_icmpv4(
            a("10.0.0.1"),
            a("10.0.0.254"),
            9,
            icmp::ECHO_REQUEST,
            0,
            [0xbe, 0xd4, 0, 7],
            b"ping!",
        );
        let info = parse_ipv4(&req).unwrap();
        let rep = echo_reply(&req, &info, 1).unwrap();
        let ri = parse_ipv4(&rep).unwrap();
        assert_eq!((ri.src, ri.dst), (info.dst, info.src));
        assert_eq!(rep[20], icmp::ECHO_REPLY);
        assert_eq!(&rep[24..28], &[0xbe, 0xd4, 0, 7]);
        assert_eq!(&rep[28..], b"ping!");
        assert_eq!(internet_checksum(&rep[20..]), 0);
        assert!(ipv4_checksum_ok(&rep, &ri));
        // A corrupted request gets no answer.
        let mut bad = req.clone();
        bad[30] ^= 1;
        assert!(echo_reply(&bad, &info, 1).is_none());
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let payload: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        let mut p = build_udpv4(a("10.0.0.1"), 1, a("10.0.0.2"), 2, 64, &payload);
        p[6] = 0; // clear DF
        set_ipv4_checksum(&mut p, 20);
        let info = parse_ipv4(&p).unwrap();
        let frags = fragment_ipv4(&p, &info, 576).unwrap();
        assert_eq!(frags.len(), 3);
        let mut whole = vec![0u8; info.total_len - 20];
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 576);
            let fi = parse_ipv4(f).unwrap();
            assert!(ipv4_checksum_ok(f, &fi));
            assert_eq!(fi.more_fragments, i + 1 < frags.len());
            assert_eq!(fi.ident, info.ident);
            whole[fi.fragment_offset..fi.fragment_offset + f.len() - 20].copy_from_slice(&f[20..]);
        }
        assert_eq!(&whole[..], &p[20..]);
    }

    #[test]
    fn fragmenting_keeps_only_copied_options_after_the_first() {
        // Header with 8 bytes of options: a copied option (type 0x94 router alert, len 4)
        // and a non-copied one (type 0x07 record route, len 3) plus EOL.
        let mut p = build_udpv4(a("10.0.0.1"), 1, a("10.0.0.2"), 2, 64, &[7u8; 200]);
        p[6] = 0;
        let opts = [0x94, 4, 0, 0, 0x07, 3, 4, 0];
        p.splice(20..20, opts);
        p[0] = 0x47;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        set_ipv4_checksum(&mut p, 28);
        let info = parse_ipv4(&p).unwrap();
        let frags = fragment_ipv4(&p, &info, 100).unwrap();
        assert_eq!(parse_ipv4(&frags[0]).unwrap().header_len, 28);
        for f in &frags[1..] {
            let fi = parse_ipv4(f).unwrap();
            assert_eq!(fi.header_len, 24);
            assert_eq!(&f[20..24], &[0x94, 4, 0, 0]);
            assert!(ipv4_checksum_ok(f, &fi));
        }
    }

    #[test]
    fn icmp_errors_are_not_sent_about_icmp_errors() {
        let err = build_icmpv4(
            a("10.0.0.1"),
            a("10.0.0.2"),
            0,
            icmp::TIME_EXCEEDED,
            0,
            [0; 4],
            &[],
        );
        let info = parse_ipv4(&err).unwrap();
        assert!(!may_send_icmp_error(&err, &info));
        let ping = build_icmpv4(
            a("10.0.0.1"),
            a("10.0.0.2"),
            0,
            icmp::ECHO_REQUEST,
            0,
            [0; 4],
            &[],
        );
        assert!(may_send_icmp_error(&ping, &parse_ipv4(&ping).unwrap()));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_ip(&bytes);
            if let Some(info) = parse_ipv4(&bytes) {
                let _ = ipv4_checksum_ok(&bytes, &info);
                let _ = may_send_icmp_error(&bytes, &info);
                let _ = echo_reply(&bytes, &info, 0);
                let _ = icmp_error_quote(&bytes);
                for mtu in [68, 100, 576] {
                    if let Some(frags) = fragment_ipv4(&bytes, &info, mtu) {
                        for f in frags {
                            prop_assert!(f.len() <= mtu.max(info.total_len.min(60)));
                        }
                    }
                }
                let mut b = bytes.clone();
                decrement_ttl(&mut b);
            }
        }
    }
}

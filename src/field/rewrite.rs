//! The packet walker of `bedlab anonymise`: finds every copy of an IPv4 address (and,
//! with `--ports`, of a port) in a frame and rewrites it with the [`KeyedMap`], then
//! mends the checksums that cover it (see [`super::checksum`]).
//!
//! Where IPv4 addresses hide in 6bed4 traffic, and why each matters to the checks:
//! - outer IPv4 headers (and ARP, and the IPv4 header quoted in ICMP errors);
//! - inner addresses in layout C (V0 split over IID bytes 0 and 6) and layout V (EUI-64 with
//!   the port bytes): AF-03 compares them to the outer header, so a copy left behind turns
//!   consistent traffic into a FAIL;
//! - link-layer options `[port_lo, port_hi, V0..V3]` (ND-02 compares them to the sender);
//! - the RA's Prefix Information, which in layout C embeds the requester's IPv4:port (RA-05);
//! - the `current` profile's default router prefix `fc64:0bed:<router IPv4>::/64`, whose
//!   top 64 bits are the router's address;
//! - IPv6 forms that embed IPv4 by design (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4, Teredo).
//!
//! An interface identifier is read in the layout that makes it name an IPv4 address the
//! capture actually carries in an outer header (learned in a first pass over the file), so
//! a sender that mis-encoded its address (octets verbatim in bytes 8..11, the "loose"
//! reading) is still mis-encoded in the same way afterwards, and one that encoded it right
//! is still right. Which identifiers are 6bed4 at all is learned in the same pass: /64s
//! advertised in RAs or used by tunnel traffic that names its own endpoints, plus
//! `fc64:0bed::/32` and, inside the tunnel, `fe80::/64`.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::checksum::{self, fold, sum, Zero};
use super::cryptopan::KeyedMap;
use crate::capture::linktype;

/// How deep ICMP errors quoting packets quoting packets are followed.
const MAX_DEPTH: u8 = 3;

/// Learned sets stop growing here, which bounds the first pass's memory on any file.
pub const MAX_KNOWN_V4: usize = 1 << 20;
/// The most /64s remembered as 6bed4 prefixes.
pub const MAX_PREFIXES: usize = 1 << 16;

/// What the first pass learns about a capture.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// IPv4 addresses seen in outer (and quoted, and ARP) headers.
    pub known_v4: HashSet<u32>,
    /// /64s whose interface identifiers embed IPv4:port.
    pub prefixes: HashSet<[u8; 8]>,
    /// Set when a set hit its cap (reported; later addresses fall back to the defaults).
    pub saturated: bool,
    /// UDP ports that mark a router (25790, 25788 and `--keep-port`s).
    pub router_ports: HashSet<u16>,
}

/// Counters for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames: u64,
    pub ipv4_headers: u64,
    pub ipv6_packets: u64,
    pub iid_layout_c: u64,
    pub iid_layout_v: u64,
    pub iid_loose: u64,
    pub link_layer_options: u64,
    pub router_prefixes: u64,
    pub other_embedded: u64,
    pub arp: u64,
    /// Checksums that did not verify before and were kept wrong by the same amount.
    pub bad_checksums_kept: u64,
    pub payloads_zeroed: u64,
}

/// What the network layer of a frame is, and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L3 {
    Ip,
    Arp,
}

/// The offset of the network layer in a frame, what it is, and whether the link has no
/// hardware addresses of its own (TUN, loopback, raw IP), where link-local addresses and
/// link-layer options are 6bed4's rather than a real MAC's.
fn network_layer(lt: u16, data: &[u8]) -> Option<(L3, usize, bool)> {
    let be16 = |o: usize| Some(u16::from_be_bytes([*data.get(o)?, *data.get(o + 1)?]));
    let by_type = |t: u16| match t {
        0x0800 | 0x86DD => Some(L3::Ip),
        0x0806 => Some(L3::Arp),
        _ => None,
    };
    match lt {
        linktype::RAW | linktype::IPV4 | linktype::IPV6 | 12 | 14 => Some((L3::Ip, 0, true)),
        linktype::ETHERNET => {
            let mut off = 12;
            let mut t = be16(off)?;
            while matches!(t, 0x8100 | 0x88A8 | 0x9100) {
                off += 4;
                t = be16(off)?;
            }
            Some((by_type(t)?, off + 2, false))
        }
        linktype::LINUX_SLL => Some((by_type(be16(14)?)?, 16, be16(2)? != 1)),
        linktype::LINUX_SLL2 => Some((by_type(be16(0)?)?, 20, be16(8)? != 1)),
        linktype::NULL | linktype::LOOP => (data.len() >= 4).then_some((L3::Ip, 4, true)),
        _ => None,
    }
}

/// The three ways an interface identifier may carry IPv4:port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Layout C (spec §2.1).
    C,
    /// Layout V (spec §2.2): `ff:fe` in the middle.
    V,
    /// Layout C's positions with the IPv4 octets verbatim in bytes 8..11: a common
    /// mis-encoding that the checks report, so it must survive as it is.
    Loose,
}

fn be16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(o)?, *b.get(o + 1)?]))
}

fn v4_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The IPv4 address layout C decodes from an interface identifier, and the port.
fn read_c(iid: &[u8; 8]) -> (u32, u16) {
    let v = [(iid[0] & 0xFC) | (iid[6] >> 6), iid[1], iid[2], iid[3]];
    (u32::from_be_bytes(v), u16::from_be_bytes([iid[4], iid[5]]))
}

/// Layout V, if the identifier has the `ff:fe` marker.
fn read_v(iid: &[u8; 8]) -> Option<(u32, u16)> {
    (iid[3] == 0xFF && iid[4] == 0xFE).then(|| {
        (
            u32::from_be_bytes([iid[2], iid[5], iid[6], iid[7]]),
            u16::from_be_bytes([iid[1], iid[0] ^ 0x02]),
        )
    })
}

/// Whether the identifier names `ep` (IPv4, port) in any reading.
fn names(iid: &[u8; 8], ip: u32, port: u16) -> bool {
    read_c(iid) == (ip, port)
        || read_v(iid) == Some((ip, port))
        || (v4_at(iid, 0) == Some(ip) && u16::from_be_bytes([iid[4], iid[5]]) == port)
}

fn is_fc64_bed(a: &[u8]) -> bool {
    a.get(..4) == Some(&[0xFC, 0x64, 0x0B, 0xED][..])
}

fn is_link_local64(a: &[u8]) -> bool {
    a.get(..8) == Some(&[0xFE, 0x80, 0, 0, 0, 0, 0, 0][..])
}

/// An address that names a host whose identifier might embed something: not multicast,
/// not `::`, not link-local.
fn is_global_unicast(a: &[u8]) -> bool {
    a.len() == 16 && a[0] != 0xFF && a.iter().any(|&b| b != 0) && !(a[0] == 0xFE && a[1] & 0xC0 == 0x80)
}

impl Learned {
    /// An empty set with the profile ports (and `extra`) as router ports.
    pub fn new(extra_ports: &[u16]) -> Learned {
        Learned {
            router_ports: [25790u16, 25788]
                .into_iter()
                .chain(extra_ports.iter().copied())
                .collect(),
            ..Learned::default()
        }
    }

    fn add_v4(&mut self, a: u32) {
        if a == 0 || self.known_v4.contains(&a) {
            return;
        }
        if self.known_v4.len() >= MAX_KNOWN_V4 {
            self.saturated = true;
            return;
        }
        self.known_v4.insert(a);
    }

    fn add_prefix(&mut self, a: &[u8]) {
        let Some(p) = a.get(..8).and_then(|p| <[u8; 8]>::try_from(p).ok()) else {
            return;
        };
        if self.prefixes.contains(&p) {
            return;
        }
        if self.prefixes.len() >= MAX_PREFIXES {
            self.saturated = true;
            return;
        }
        self.prefixes.insert(p);
    }

    /// First pass: learns from one frame.
    pub fn learn_frame(&mut self, lt: u16, data: &[u8]) {
        let Some((l3, off, tunnel_like)) = network_layer(lt, data) else {
            return;
        };
        let Some(pkt) = data.get(off..) else { return };
        match (l3, pkt.first().map(|b| b >> 4)) {
            (L3::Arp, _) => {
                if let (Some(hlen), Some(plen)) = (pkt.get(4), pkt.get(5)) {
                    if *plen == 4 {
                        let h = usize::from(*hlen);
                        for o in [8 + h, 8 + 2 * h + 4] {
                            if let Some(a) = v4_at(pkt, o) {
                                self.add_v4(a);
                            }
                        }
                    }
                }
            }
            (L3::Ip, Some(4)) => self.learn_ipv4(pkt, 0),
            (L3::Ip, Some(6)) => self.learn_ipv6(pkt, None, tunnel_like),
            _ => {}
        }
    }

    fn learn_ipv4(&mut self, pkt: &[u8], depth: u8) {
        let (Some(src), Some(dst)) = (v4_at(pkt, 12), v4_at(pkt, 16)) else {
            return;
        };
        self.add_v4(src);
        self.add_v4(dst);
        let ihl = usize::from(pkt[0] & 0x0F) * 4;
        let frag = be16(pkt, 6).unwrap_or(0) & 0x1FFF;
        if ihl < 20 || frag != 0 || depth >= MAX_DEPTH {
            return;
        }
        let Some(body) = pkt.get(ihl..) else { return };
        match pkt[9] {
            17 if body.len() >= 8 => {
                let (sp, dp) = (be16(body, 0).unwrap_or(0), be16(body, 2).unwrap_or(0));
                let payload = &body[8..];
                if payload.first().map(|b| b >> 4) == Some(6) {
                    self.learn_ipv6(payload, Some(((src, sp), (dst, dp))), true);
                }
            }
            1 if matches!(body.first(), Some(3 | 4 | 5 | 11 | 12)) => {
                if let Some(q) = body.get(8..) {
                    if q.first().map(|b| b >> 4) == Some(4) {
                        self.learn_ipv4(q, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// Learns 6bed4 prefixes from an IPv6 packet: inside a datagram between `outer`
    /// endpoints, or (None) seen natively.
    #[allow(clippy::type_complexity)]
    fn learn_ipv6(&mut self, p: &[u8], outer: Option<((u32, u16), (u32, u16))>, tunnel_like: bool) {
        if p.len() < 40 {
            return;
        }
        let (src, dst) = (&p[8..24], &p[24..40]);
        let mut addrs: Vec<&[u8]> = vec![src, dst];
        let icmp = (p[6] == 58).then(|| &p[40..]);
        if let Some(m) = icmp {
            if matches!(m.first(), Some(135 | 136)) {
                if let Some(t) = m.get(8..24) {
                    addrs.push(t);
                }
            }
        }
        if let Some(((sip, sp), (dip, dp))) = outer {
            for a in &addrs {
                if !is_global_unicast(a) {
                    continue;
                }
                let Ok(iid) = <[u8; 8]>::try_from(&a[8..16]) else {
                    continue;
                };
                if names(&iid, sip, sp) || names(&iid, dip, dp) {
                    self.add_prefix(a);
                }
            }
            if self.router_ports.contains(&dp) && is_global_unicast(src) {
                self.add_prefix(src);
            }
            if self.router_ports.contains(&sp) && is_global_unicast(dst) {
                self.add_prefix(dst);
            }
        }
        // Prefixes an RA hands out (in the tunnel, or on a 6bed4 TUN).
        if let (Some(m), true) = (icmp, tunnel_like) {
            if m.first() == Some(&134) {
                let mut off = 16;
                while let (Some(&t), Some(&l)) = (m.get(off), m.get(off + 1)) {
                    let len = usize::from(l) * 8;
                    if len == 0 {
                        break;
                    }
                    if t == 3 && len == 32 {
                        if let (Some(&flags), Some(prefix)) = (m.get(off + 3), m.get(off + 16..off + 32)) {
                            if flags & 0xC0 != 0 {
                                self.add_prefix(prefix);
                            }
                        }
                    }
                    off += len;
                }
            }
        }
    }
}

/// What `anonymise` was asked to do beyond addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub zero_payloads: bool,
}

/// The second pass: rewrites frames in place.
#[derive(Debug)]
pub struct Rewriter {
    pub map: KeyedMap,
    pub learned: Learned,
    pub flags: Flags,
    pub stats: Stats,
}

/// Zeroes a payload (counting it) when asked to.
fn zero(flag: bool, stats: &mut Stats, b: &mut [u8]) {
    if flag && b.iter().any(|&x| x != 0) {
        b.fill(0);
        stats.payloads_zeroed += 1;
    }
}

impl Rewriter {
    pub fn new(map: KeyedMap, learned: Learned, flags: Flags) -> Rewriter {
        Rewriter {
            map,
            learned,
            flags,
            stats: Stats::default(),
        }
    }

    /// Rewrites one frame of link type `lt` in place. Frames it does not understand pass
    /// unchanged; nothing here can fail or panic on any input.
    pub fn rewrite_frame(&mut self, lt: u16, data: &mut [u8]) {
        self.stats.frames += 1;
        let Some((l3, off, tunnel_like)) = network_layer(lt, data) else {
            return;
        };
        let Some(pkt) = data.get_mut(off..) else { return };
        match (l3, pkt.first().map(|b| b >> 4)) {
            (L3::Arp, _) => self.arp(pkt),
            (L3::Ip, Some(4)) => {
                // Ethernet padding after the IP packet is left alone (it is zeros).
                let end =
                    be16(pkt, 2).map_or(pkt.len(), |t| usize::from(t).clamp(20.min(pkt.len()), pkt.len()));
                self.ipv4(&mut pkt[..end], 0);
            }
            (L3::Ip, Some(6)) => {
                self.ipv6(pkt, tunnel_like, 0);
            }
            _ => {}
        }
    }

    fn arp(&mut self, pkt: &mut [u8]) {
        let (Some(&hlen), Some(&plen)) = (pkt.get(4), pkt.get(5)) else {
            return;
        };
        if plen != 4 || be16(pkt, 2) != Some(0x0800) {
            return;
        }
        let h = usize::from(hlen);
        for o in [8 + h, 8 + 2 * h + 4] {
            if let Some(b) = pkt.get_mut(o..o + 4) {
                self.map.v4_bytes(b);
            }
        }
        self.stats.arp += 1;
    }

    /// An IPv4 packet (possibly cut short, possibly quoted in an ICMP error).
    fn ipv4(&mut self, pkt: &mut [u8], depth: u8) {
        self.stats.ipv4_headers += 1;
        if pkt.len() < 20 {
            // A quoted header cut short: rewrite what is there.
            if let Some(b) = pkt.get_mut(12..16) {
                self.map.v4_bytes(b);
            }
            return;
        }
        let ihl = (usize::from(pkt[0] & 0x0F) * 4).min(pkt.len());
        let old = [
            pkt[12], pkt[13], pkt[14], pkt[15], pkt[16], pkt[17], pkt[18], pkt[19],
        ];
        let mut new = old;
        self.map.v4_bytes(&mut new[..4]);
        self.map.v4_bytes(&mut new[4..]);
        let frag = be16(pkt, 6).unwrap_or(0) & 0x1FFF;
        let proto = pkt[9];
        let hdr_before = fold(sum(&pkt[..ihl]));
        if ihl >= 20 {
            let (_, body) = pkt.split_at_mut(ihl);
            if frag != 0 || depth > MAX_DEPTH {
                zero(self.flags.zero_payloads, &mut self.stats, body);
            } else {
                match proto {
                    17 => self.udp4(&old, &new, body, depth),
                    6 => self.tcp(&old, &new, body, Zero::Ordinary),
                    1 => self.icmp4(body, depth),
                    _ => zero(self.flags.zero_payloads, &mut self.stats, body),
                }
            }
        }
        pkt[12..20].copy_from_slice(&new);
        if ihl >= 12 {
            let hdr_after = fold(sum(&pkt[..ihl]));
            self.note_bad(hdr_before);
            let (head, rest) = pkt.split_at_mut(12);
            let _ = rest;
            checksum::update(&mut head[10..12], hdr_before, hdr_after, Zero::Ordinary);
        }
    }

    /// Counts a checksum that did not verify before the rewrite (kept wrong afterwards).
    fn note_bad(&mut self, covered_before: u16) {
        if !checksum::verifies(covered_before) {
            self.stats.bad_checksums_kept += 1;
        }
    }

    /// UDP over IPv4: ports, the 6bed4 payload, the checksum.
    fn udp4(&mut self, old: &[u8; 8], new: &[u8; 8], body: &mut [u8], depth: u8) {
        if body.len() < 8 {
            if self.map.ports_enabled() {
                self.ports(body);
            }
            return;
        }
        let ulen = usize::from(be16(body, 4).unwrap_or(0));
        let seg_end = if ulen >= 8 {
            ulen.min(body.len())
        } else {
            body.len()
        };
        let (seg, after_seg) = body.split_at_mut(seg_end);
        zero(self.flags.zero_payloads, &mut self.stats, after_seg);
        let before = fold(sum(old) + sum(seg));
        let complete = ulen >= 8 && ulen <= seg.len();
        self.ports(seg);
        let payload = &mut seg[8..];
        if payload.first().map(|b| b >> 4) == Some(6) && payload.len() >= 40 {
            let end = self.ipv6(payload, true, depth);
            if let Some(trailing) = payload.get_mut(end..) {
                zero(self.flags.zero_payloads, &mut self.stats, trailing);
            }
        } else {
            zero(self.flags.zero_payloads, &mut self.stats, payload);
        }
        let after = fold(sum(new) + sum(seg));
        if complete && u16::from_be_bytes([seg[6], seg[7]]) != 0 {
            self.note_bad(fold(u64::from(before) + 17 + ulen as u64));
        }
        checksum::update(&mut seg[6..8], before, after, Zero::Udp);
    }

    /// Source and destination ports at the start of a transport header.
    fn ports(&mut self, seg: &mut [u8]) {
        if !self.map.ports_enabled() {
            return;
        }
        for o in [0, 2] {
            if let Some(p) = be16(seg, o) {
                let q = self.map.port(p);
                seg[o..o + 2].copy_from_slice(&q.to_be_bytes());
            }
        }
    }

    /// TCP (over IPv4 or IPv6): ports, payload, checksum. `old`/`new` are the addresses of
    /// the pseudo-header, in any length.
    fn tcp(&mut self, old: &[u8], new: &[u8], seg: &mut [u8], z: Zero) {
        let before = fold(sum(old) + sum(seg));
        self.ports(seg);
        let doff = seg.get(12).map_or(20, |b| usize::from(b >> 4) * 4).max(20);
        if let Some(data) = seg.get_mut(doff..) {
            zero(self.flags.zero_payloads, &mut self.stats, data);
        }
        let after = fold(sum(new) + sum(seg));
        if let Some(f) = seg.get_mut(16..18) {
            checksum::update(f, before, after, z);
        }
    }

    /// ICMPv4: errors quote a packet whose addresses are rewritten too.
    fn icmp4(&mut self, body: &mut [u8], depth: u8) {
        if body.len() < 4 {
            return;
        }
        let before = fold(sum(body));
        match body[0] {
            3 | 4 | 11 | 12 => {
                if let Some(q) = body.get_mut(8..) {
                    if q.first().map(|b| b >> 4) == Some(4) && depth < MAX_DEPTH {
                        self.ipv4(q, depth + 1);
                    }
                }
            }
            5 => {
                if let Some(gw) = body.get_mut(4..8) {
                    self.map.v4_bytes(gw);
                }
                if let Some(q) = body.get_mut(8..) {
                    if q.first().map(|b| b >> 4) == Some(4) && depth < MAX_DEPTH {
                        self.ipv4(q, depth + 1);
                    }
                }
            }
            _ => {
                if let Some(data) = body.get_mut(8..) {
                    zero(self.flags.zero_payloads, &mut self.stats, data);
                }
            }
        }
        let after = fold(sum(body));
        let (head, _) = body.split_at_mut(4);
        checksum::update(&mut head[2..4], before, after, Zero::Ordinary);
    }

    /// An IPv6 packet (inside the tunnel when `tunnel`, else native or on a TUN); returns
    /// where the packet ends (40 + payload length, within `pkt`).
    fn ipv6(&mut self, pkt: &mut [u8], tunnel: bool, depth: u8) -> usize {
        self.stats.ipv6_packets += 1;
        let plen = usize::from(be16(pkt, 4).unwrap_or(0));
        let end = if plen == 0 {
            pkt.len()
        } else {
            (40 + plen).min(pkt.len())
        };
        let complete = plen != 0 && 40 + plen <= pkt.len();
        if pkt.len() < 40 {
            for range in [8..24, 24..40] {
                if let Some(a) = pkt.get_mut(range) {
                    if a.len() == 16 {
                        self.v6(a, tunnel);
                    }
                }
            }
            return end;
        }
        let old: [u8; 32] = pkt[8..40].try_into().unwrap_or([0; 32]);
        let mut new = old;
        self.v6(&mut new[..16], tunnel);
        self.v6(&mut new[16..], tunnel);
        // Walk extension headers to the upper layer.
        let mut nh = pkt[6];
        let mut off = 40usize;
        let mut upper = true;
        loop {
            match nh {
                0 | 43 | 60 => {
                    let (Some(&n), Some(&l)) = (pkt.get(off), pkt.get(off + 1)) else {
                        upper = false;
                        break;
                    };
                    nh = n;
                    off += (usize::from(l) + 1) * 8;
                }
                44 => {
                    let (Some(&n), Some(fo)) = (pkt.get(off), be16(pkt, off + 2)) else {
                        upper = false;
                        break;
                    };
                    nh = n;
                    off += 8;
                    if fo & 0xFFF8 != 0 {
                        upper = false;
                        break;
                    }
                }
                51 => {
                    let (Some(&n), Some(&l)) = (pkt.get(off), pkt.get(off + 1)) else {
                        upper = false;
                        break;
                    };
                    nh = n;
                    off += (usize::from(l) + 2) * 4;
                }
                _ => break,
            }
            if off >= end {
                upper = off == end && nh == 59;
                break;
            }
        }
        if off < end && depth <= MAX_DEPTH {
            let (_, rest) = pkt.split_at_mut(off);
            let body = &mut rest[..end - off];
            if !upper {
                zero(self.flags.zero_payloads, &mut self.stats, body);
            } else {
                match nh {
                    58 => {
                        let before = fold(sum(&old) + sum(body));
                        self.icmp6(body, tunnel, depth);
                        let after = fold(sum(&new) + sum(body));
                        if complete && body.len() >= 4 {
                            // The pseudo-header's next header and upper-layer length.
                            self.note_bad(fold(u64::from(before) + 58 + body.len() as u64));
                        }
                        if let Some(f) = body.get_mut(2..4) {
                            checksum::update(f, before, after, Zero::Ordinary);
                        }
                    }
                    17 => {
                        let before = fold(sum(&old) + sum(body));
                        if let Some(data) = body.get_mut(8..) {
                            zero(self.flags.zero_payloads, &mut self.stats, data);
                        }
                        let after = fold(sum(&new) + sum(body));
                        if let Some(f) = body.get_mut(6..8) {
                            // A zero UDP checksum is invalid over IPv6; it stays zero.
                            checksum::update(f, before, after, Zero::Udp);
                        }
                    }
                    6 => self.tcp(&old, &new, body, Zero::Ordinary),
                    _ => zero(self.flags.zero_payloads, &mut self.stats, body),
                }
            }
        }
        pkt[8..40].copy_from_slice(&new);
        end
    }

    /// The ICMPv6 message body (type onwards): ND targets and options, quoted packets.
    fn icmp6(&mut self, m: &mut [u8], tunnel: bool, depth: u8) {
        let Some(&ty) = m.first() else { return };
        match ty {
            1..=4 => {
                if let Some(q) = m.get_mut(8..) {
                    if q.first().map(|b| b >> 4) == Some(6) && depth < MAX_DEPTH {
                        self.ipv6(q, tunnel, depth + 1);
                    }
                }
            }
            133 => self.nd_options(m, 8, tunnel, depth),
            134 => self.nd_options(m, 16, tunnel, depth),
            135 | 136 => {
                if let Some(t) = m.get_mut(8..24) {
                    self.v6(t, tunnel);
                }
                self.nd_options(m, 24, tunnel, depth);
            }
            137 => {
                for r in [8..24, 24..40] {
                    if let Some(t) = m.get_mut(r) {
                        self.v6(t, tunnel);
                    }
                }
                self.nd_options(m, 40, tunnel, depth);
            }
            128 | 129 => {
                if let Some(data) = m.get_mut(8..) {
                    zero(self.flags.zero_payloads, &mut self.stats, data);
                }
            }
            _ => {}
        }
    }

    /// ND options from `start`; stops at a zero-length option (RFC 4861 says the packet
    /// is invalid; the bytes after it stay as they are).
    fn nd_options(&mut self, m: &mut [u8], start: usize, tunnel: bool, depth: u8) {
        let mut off = start;
        while let (Some(&t), Some(&l)) = (m.get(off), m.get(off + 1)) {
            let len = usize::from(l) * 8;
            if len == 0 {
                break;
            }
            let stop = (off + len).min(m.len());
            let o = &mut m[off..stop];
            match t {
                1 | 2 if len == 8 && o.len() == 8 && tunnel => {
                    self.link_layer(&mut o[2..8]);
                }
                3 if o.len() >= 32 => self.v6(&mut o[16..32], tunnel),
                24 if o.len() >= 24 => self.v6(&mut o[8..24], tunnel),
                25 => {
                    let mut k = 8;
                    while k + 16 <= o.len() {
                        self.v6(&mut o[k..k + 16], tunnel);
                        k += 16;
                    }
                }
                4 if o.len() > 8 && depth < MAX_DEPTH => {
                    self.ipv6(&mut o[8..], tunnel, depth + 1);
                }
                _ => {}
            }
            off += len;
        }
    }

    /// A 6bed4 link-layer address `[port_lo, port_hi, V0, V1, V2, V3]`.
    fn link_layer(&mut self, ll: &mut [u8]) {
        if ll.len() != 6 {
            return;
        }
        let port = u16::from_le_bytes([ll[0], ll[1]]);
        ll[..2].copy_from_slice(&self.map.port(port).to_le_bytes());
        self.map.v4_bytes(&mut ll[2..6]);
        self.stats.link_layer_options += 1;
    }

    /// One IPv6 address in place (16 bytes).
    fn v6(&mut self, a: &mut [u8], tunnel: bool) {
        if a.len() != 16 || a[0] == 0xFF || a.iter().all(|&b| b == 0) {
            return;
        }
        let sixbed4 = is_fc64_bed(a)
            || a.get(..8)
                .and_then(|p| <[u8; 8]>::try_from(p).ok())
                .is_some_and(|p| self.learned.prefixes.contains(&p))
            || (tunnel && is_link_local64(a));
        if is_fc64_bed(a) {
            self.map.v4_bytes(&mut a[4..8]);
            self.stats.router_prefixes += 1;
        }
        if sixbed4 {
            self.iid(&mut a[8..16]);
            return;
        }
        // IPv6 forms that embed IPv4 by design.
        let rest_zero = |r: std::ops::Range<usize>, a: &[u8]| a[r].iter().all(|&b| b == 0);
        if rest_zero(0..10, a) && a[10] == 0xFF && a[11] == 0xFF {
            self.map.v4_bytes(&mut a[12..16]); // ::ffff:a.b.c.d
            self.stats.other_embedded += 1;
        } else if a[..4] == [0x00, 0x64, 0xFF, 0x9B] && rest_zero(4..12, a) {
            self.map.v4_bytes(&mut a[12..16]); // NAT64 64:ff9b::/96
            self.stats.other_embedded += 1;
        } else if a[..2] == [0x20, 0x02] {
            self.map.v4_bytes(&mut a[2..6]); // 6to4
            self.stats.other_embedded += 1;
        } else if a[..4] == [0x20, 0x01, 0x00, 0x00] {
            // Teredo: server IPv4, then the client's port and IPv4 inverted.
            self.map.v4_bytes(&mut a[4..8]);
            let mut client = [!a[12], !a[13], !a[14], !a[15]];
            self.map.v4_bytes(&mut client);
            for (i, b) in client.iter().enumerate() {
                a[12 + i] = !b;
            }
            let port = !u16::from_be_bytes([a[10], a[11]]);
            a[10..12].copy_from_slice(&(!self.map.port(port)).to_be_bytes());
            self.stats.other_embedded += 1;
        }
    }

    /// An interface identifier (8 bytes) that may embed IPv4:port.
    fn iid(&mut self, b: &mut [u8]) {
        let Ok(iid) = <[u8; 8]>::try_from(&*b) else { return };
        if iid == [0; 8] {
            return;
        }
        let known = |a: u32| self.learned.known_v4.contains(&a);
        let (cv, cport) = read_c(&iid);
        let v = read_v(&iid);
        let w = v4_at(&iid, 0).unwrap_or(0);
        let reading = if cport != 0 && known(cv) {
            Some(Reading::C)
        } else if v.is_some_and(|(ip, _)| known(ip)) {
            Some(Reading::V)
        } else if w != 0 && known(w) {
            Some(Reading::Loose)
        } else if v.is_some() {
            Some(Reading::V)
        } else if cport != 0 {
            Some(Reading::C)
        } else {
            None
        };
        match reading {
            Some(Reading::C) => {
                let nv = self.map.v4(Ipv4Addr::from(cv)).octets();
                let np = self.map.port(cport).to_be_bytes();
                b[0] = nv[0] & 0xFC;
                b[1..4].copy_from_slice(&nv[1..4]);
                b[4..6].copy_from_slice(&np);
                b[6] = ((nv[0] & 0x03) << 6) | (iid[6] & 0x3F);
                self.stats.iid_layout_c += 1;
            }
            Some(Reading::V) => {
                let Some((ip, port)) = v else { return };
                let nv = self.map.v4(Ipv4Addr::from(ip)).octets();
                let [hi, lo] = self.map.port(port).to_be_bytes();
                b.copy_from_slice(&[lo ^ 0x02, hi, nv[0], 0xFF, 0xFE, nv[1], nv[2], nv[3]]);
                self.stats.iid_layout_v += 1;
            }
            Some(Reading::Loose) => {
                let nw = self.map.v4(Ipv4Addr::from(w)).octets();
                // Keep how far layout C's reading was off: the low bits of V0 against the
                // top bits of byte 14.
                let delta = (iid[0] & 0x03) ^ (iid[6] >> 6);
                b[..4].copy_from_slice(&nw);
                b[4..6].copy_from_slice(&self.map.port(cport).to_be_bytes());
                b[6] = (((nw[0] & 0x03) ^ delta) << 6) | (iid[6] & 0x3F);
                self.stats.iid_loose += 1;
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::decode::addr;
    use std::net::{Ipv6Addr, SocketAddrV4};

    fn rewriter(known: &[Ipv4Addr], prefixes: &[&str]) -> Rewriter {
        let mut l = Learned::new(&[]);
        for a in known {
            l.add_v4(u32::from(*a));
        }
        for p in prefixes {
            l.add_prefix(&p.parse::<Ipv6Addr>().unwrap().octets());
        }
        Rewriter::new(KeyedMap::new(b"unit", true, None), l, Flags::default())
    }

    fn rewrite_addr(rw: &mut Rewriter, a: Ipv6Addr, tunnel: bool) -> Ipv6Addr {
        let mut b = a.octets();
        rw.v6(&mut b, tunnel);
        Ipv6Addr::from(b)
    }

    #[test]
    fn both_layouts_stay_consistent_with_the_rewritten_endpoint() {
        let ep = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 40000);
        let mut rw = rewriter(&[*ep.ip()], &["2001:db8:6bed:4::"]);
        let want = SocketAddrV4::new(rw.map.v4(*ep.ip()), 40000);
        let prefix: Ipv6Addr = "2001:db8:6bed:4::".parse().unwrap();
        let c = rewrite_addr(&mut rw, addr::encode_c(&prefix, ep, 5), false);
        assert_eq!(addr::decode_c(&c), (want, 5), "layout C, lanip kept");
        let v = rewrite_addr(&mut rw, addr::encode_v(&prefix, ep), false);
        assert_eq!(addr::decode_v(&v), Some(want), "layout V");
        // The link-local form of layout V, only inside the tunnel.
        let ll: Ipv6Addr = addr::encode_v(&"fe80::".parse().unwrap(), ep);
        assert_eq!(addr::decode_v(&rewrite_addr(&mut rw, ll, true)), Some(want));
        assert_eq!(
            rewrite_addr(&mut rw, ll, false),
            ll,
            "a native link-local is a MAC's"
        );
        let mut lla = addr::link_layer(ep);
        rw.link_layer(&mut lla);
        assert_eq!(addr::from_link_layer(lla), want);
    }

    #[test]
    fn a_mis_encoded_identifier_stays_mis_encoded_the_same_way() {
        // Octets verbatim (198 = 0xC6 in byte 8, byte 14's top bits 0): layout C reads 196.
        let outer = Ipv4Addr::new(198, 51, 100, 7);
        let mut rw = rewriter(&[outer], &["2001:db8:6bed:4::"]);
        let a: Ipv6Addr = "2001:db8:6bed:4:c633:6407:9c40:1".parse().unwrap();
        let b = rewrite_addr(&mut rw, a, false);
        let new_outer = SocketAddrV4::new(rw.map.v4(outer), 40000);
        assert!(
            addr::loosely_names(&b, new_outer),
            "still names the outer endpoint loosely"
        );
        assert_ne!(addr::decode_c(&b).0, new_outer, "and still not in layout C");
        assert_eq!(addr::decode_c(&b).1, 1);
    }

    #[test]
    fn router_prefix_and_other_embeddings() {
        let router = Ipv4Addr::new(145, 136, 0, 1);
        let mut rw = rewriter(&[router], &[]);
        let r2 = rw.map.v4(router).octets();
        let a = rewrite_addr(&mut rw, "fc64:bed:9188:1::".parse().unwrap(), false);
        assert_eq!(a.octets()[4..8], r2, "fc64:0bed:<router IPv4>");
        for (text, at) in [
            ("::ffff:145.136.0.1", 12usize),
            ("64:ff9b::145.136.0.1", 12),
            ("2002:9188:1::1", 2),
        ] {
            let a = rewrite_addr(&mut rw, text.parse().unwrap(), false);
            assert_eq!(a.octets()[at..at + 4], r2, "{text}");
        }
        // Teredo: the client's address is stored inverted.
        let t = rewrite_addr(&mut rw, "2001:0:9188:1::6e77:fffe".parse().unwrap(), false);
        assert_eq!(t.octets()[4..8], r2);
        let client = [!t.octets()[12], !t.octets()[13], !t.octets()[14], !t.octets()[15]];
        assert_eq!(client, rw.map.v4(Ipv4Addr::new(145, 136, 0, 1)).octets());
        // Nothing to do: multicast, unspecified, the router's fe80::, a native address.
        for text in ["ff02::2", "::", "fe80::", "2a00:1450:4001:82a::200e"] {
            let a: Ipv6Addr = text.parse().unwrap();
            assert_eq!(rewrite_addr(&mut rw, a, true), a, "{text}");
        }
    }

    /// An ICMPv6 Time Exceeded from the router quoting a 6bed4 data packet, in the tunnel:
    /// the quoted addresses get the same rewriting as everywhere else and the checksums
    /// stay valid.
    #[test]
    fn quoted_packets_in_icmpv6_errors() {
        use crate::conformance::decode::inner::icmpv6_checksum;
        let peer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 40000);
        let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 50000);
        let prefix: Ipv6Addr = "2001:db8:6bed:4::".parse().unwrap();
        let (a, b) = (
            addr::encode_c(&prefix, peer, 1),
            addr::encode_c(&prefix, other, 1),
        );
        let mut quoted = vec![0x60, 0, 0, 0, 0, 8, 17, 1];
        quoted.extend_from_slice(&a.octets());
        quoted.extend_from_slice(&b.octets());
        quoted.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89, 0, 8, 0, 0]);
        let router_ll: Ipv6Addr = "fe80::".parse().unwrap();
        let mut msg = vec![3, 0, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&quoted);
        let c = icmpv6_checksum(&router_ll, &a, &msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(icmpv6_checksum(&router_ll, &a, &msg), 0);
        let mut pkt = vec![0x60, 0, 0, 0];
        pkt.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        pkt.extend_from_slice(&[58, 255]);
        pkt.extend_from_slice(&router_ll.octets());
        pkt.extend_from_slice(&a.octets());
        pkt.extend_from_slice(&msg);
        let mut rw = rewriter(&[*peer.ip(), *other.ip()], &["2001:db8:6bed:4::"]);
        let end = rw.ipv6(&mut pkt, true, 0);
        assert_eq!(end, pkt.len());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap());
        let q_src = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[48 + 8..48 + 24]).unwrap());
        let q_dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[48 + 24..48 + 40]).unwrap());
        assert_eq!(
            dst, q_src,
            "the quoted source is the error's destination, rewritten alike"
        );
        assert_eq!(
            addr::decode_c(&q_dst).0,
            SocketAddrV4::new(rw.map.v4(*other.ip()), 50000)
        );
        assert_eq!(
            icmpv6_checksum(&router_ll, &dst, &pkt[40..]),
            0,
            "checksum still valid"
        );
    }
}

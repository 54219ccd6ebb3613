//! Entry points for fuzzing the datagram paths of both roles and the TUN offloads.
//!
//! The cargo-fuzz targets in `fuzz/` call these; so do ordinary tests, so the same bodies
//! run on machines without a nightly toolchain. Each feeds arbitrary bytes to a core from
//! the network and from the TUN and checks invariants a broken core would violate.

use crate::addr;
use crate::io::Output;
use crate::offload::{self, segment, Coalescer, OffloadError, VnetHdr, VNET_HDR_LEN};
use crate::peer::{Peer, PeerConfig};
use crate::profile::Profile;
use crate::router::{Router, RouterConfig};
use crate::wire::{Ipv6Packet, NdRepr};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const ROUTER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 25790);
const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 40000);

fn profile_of(byte: u8) -> Profile {
    if byte & 1 == 0 {
        Profile::Current
    } else {
        Profile::V01
    }
}

/// Sender endpoint chosen by the first bytes of the input (the router's, or another).
fn sender(data: &[u8]) -> SocketAddrV4 {
    match data.get(1) {
        Some(b) if b & 0x80 != 0 => ROUTER,
        Some(&b) => SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, b), 40000 + u16::from(b) * 2),
        None => ROUTER,
    }
}

/// The router never panics, never sends to multicast/broadcast, never reflects a datagram
/// to its sender unless it is an answer it generated itself (RA, NA, ICMPv6 error).
pub fn router_datagram(data: &[u8]) {
    let profile = profile_of(data.first().copied().unwrap_or(0));
    let listen = SocketAddrV4::new(*ROUTER.ip(), profile.router_port());
    let Ok(mut router) = Router::new(RouterConfig::new(profile, listen)) else {
        return;
    };
    let from = sender(data);
    let payload = data.get(2..).unwrap_or(&[]);
    let mut out = Vec::new();
    router.handle_udp(Instant::now(), from, payload, &mut out);
    router.handle_tun(payload, &mut out);
    for o in &out {
        if let Output::Udp {
            to, payload: sent, ..
        } = o
        {
            assert!(!to.ip().is_multicast() && !to.ip().is_broadcast(), "sent to {to}");
            if *to == from && sent.as_slice() == payload {
                panic!("reflected a datagram unchanged to its sender");
            }
        }
    }
}

/// A configured peer never panics, never loses its lease to anything but a valid RA from
/// its router, and never sends data from an address other than its own.
pub fn peer_datagram(data: &[u8]) {
    let profile = profile_of(data.first().copied().unwrap_or(0));
    let router_ep = SocketAddrV4::new(*ROUTER.ip(), profile.router_port());
    let t0 = Instant::now();
    let mut peer = Peer::new(PeerConfig::new(profile, router_ep), t0);
    let Ok(mut router) = Router::new(RouterConfig::new(profile, router_ep)) else {
        return;
    };
    let mut out = Vec::new();
    peer.handle_timeout(t0, &mut out);
    let rs = out.iter().find_map(|o| match o {
        Output::Udp { payload, .. } => Some(payload.clone()),
        _ => None,
    });
    let Some(rs) = rs else { return };
    let mut rout = Vec::new();
    router.handle_udp(t0, ME, &rs, &mut rout);
    for o in rout {
        if let Output::Udp { payload, .. } = o {
            peer.handle_udp(t0, router_ep, &payload, &mut out);
        }
    }
    let Some(lease) = peer.lease() else { return };
    out.clear();
    let from = if sender(data) == ROUTER {
        router_ep
    } else {
        sender(data)
    };
    let payload = data.get(2..).unwrap_or(&[]);
    let now = t0 + Duration::from_millis(u64::from(data.get(1).copied().unwrap_or(0)));
    peer.handle_udp(now, from, payload, &mut out);
    peer.handle_tun(now, payload, &mut out);
    peer.handle_timeout(now + Duration::from_secs(1), &mut out);
    if from != router_ep {
        assert_eq!(
            peer.lease(),
            Some(lease),
            "lease changed by a datagram not from the router"
        );
    }
    let current = peer.lease().map(|l| l.address);
    for o in &out {
        if let Output::Udp { payload: sent, .. } = o {
            if let Ok(p) = Ipv6Packet::new_checked(sent.as_slice()) {
                let is_rs = matches!(NdRepr::parse(&p), Ok(NdRepr::RouterSolicit { .. }));
                assert!(
                    is_rs || Some(p.src_addr()) == current || Some(p.src_addr()) == Some(lease.address),
                    "sent from a foreign source {}",
                    p.src_addr()
                );
            }
        }
    }
    let _ = addr::decode(profile, &lease.address);
}

/// The ND parser on arbitrary bytes.
pub fn nd_parse(data: &[u8]) {
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        if let Ok(nd) = NdRepr::parse(&p) {
            // Whatever parses must re-emit to something that parses to the same message.
            let again = nd.emit(p.src_addr(), p.dst_addr());
            let reparsed = Ipv6Packet::new_checked(again.as_slice())
                .ok()
                .and_then(|q| NdRepr::parse(&q).ok());
            assert_eq!(reparsed, Some(nd));
        }
    }
}

/// Control bits of an [`offload`] input (its first byte).
mod ctl {
    /// Make the packet look like IPv6 + TCP (version, next header, lengths, data offset).
    pub const PLAUSIBLE: u8 = 0x01;
    /// Replace the arbitrary header by the one the kernel writes for TSO6 over the
    /// tunnel's 1280-byte MTU.
    pub const KERNEL_LIKE: u8 = 0x02;
    /// Flip bits of one byte of one segment before coalescing...
    pub const EDIT: u8 = 0x04;
    /// ...and give it a valid checksum again, so the coalescer's header comparison decides.
    pub const FIX_CHECKSUM: u8 = 0x08;
    /// Swap one segment with the next (out of order).
    pub const SWAP: u8 = 0x10;
    /// Push the read's raw bytes among the segments.
    pub const RAW: u8 = 0x20;
    /// Push one segment twice.
    pub const DUPLICATE: u8 = 0x40;
    /// A coalescer that does not join (after the kernel refused a coalesced write).
    pub const NOT_JOINING: u8 = 0x80;
}

/// MTU of the tunnel interface, which the kernel's TSO6 segments must respect.
const TUNNEL_MTU: usize = 1280;
const TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;

/// The TUN offload paths on arbitrary bytes: the `virtio_net_hdr` parser, [`segment`]
/// with whatever header fields the input holds, and a [`Coalescer`] fed the segments (with
/// edits the input chooses) and flushed.
///
/// Layout: control bits ([`ctl`]), a segment index (top bit: also resize it), a 16-bit byte
/// offset and an XOR mask for the edits, then what a TUN read returns (`virtio_net_hdr`,
/// packet).
///
/// Invariants: the header re-emits to its bytes; cutting is all or nothing; every segment
/// fits the size the header asks for (and 1280 bytes under a kernel-like header), carries
/// its share of the payload with the right sequence number, flags and a valid checksum,
/// and the payloads join back to the original; every coalescer write is either one pushed
/// packet unchanged or a TSO6 write whose checksum completes to a valid one and which
/// [`split_write`] (the daemon's fallback) cuts back into exactly the packets it joined,
/// in order, with the same payload bytes, and no packet is lost, repeated or reordered.
pub fn offload(data: &[u8]) {
    let Some((&[bits, index, off_hi, off_lo, xor], read)) = data.split_first_chunk::<5>() else {
        return;
    };
    let (mut hdr, body) = match VnetHdr::parse(read) {
        Ok((hdr, body)) => {
            assert_eq!(hdr.emit()[..], read[..VNET_HDR_LEN], "header does not re-emit");
            assert_eq!(body, &read[VNET_HDR_LEN..]);
            (hdr, body)
        }
        Err(e) => {
            assert_eq!(e, OffloadError::ShortHeader(read.len()));
            assert!(read.len() < VNET_HDR_LEN);
            return;
        }
    };
    let mut packet = body.to_vec();
    if bits & ctl::PLAUSIBLE != 0 {
        make_plausible(&mut packet);
    }
    let mut mtu = None;
    if bits & ctl::KERNEL_LIKE != 0 {
        if let Some(thlen) = tcp_header_len(&packet, 40) {
            hdr = VnetHdr {
                flags: offload::F_NEEDS_CSUM,
                gso_type: offload::GSO_TCPV6 | (hdr.gso_type & offload::GSO_ECN),
                hdr_len: (40 + thlen) as u16,
                gso_size: (TUNNEL_MTU - 40 - thlen) as u16,
                csum_start: 40,
                csum_offset: 16,
            };
            mtu = Some(TUNNEL_MTU);
        }
    }
    let mut inputs = checked_segments(&hdr, &packet, mtu);

    let n = inputs.len();
    let k = usize::from(index & 0x7f) % n.max(1);
    if bits & ctl::EDIT != 0 && n > 0 {
        let seg = &mut inputs[k];
        // With the offset's top bit clear, the flip lands in the headers, where the
        // coalescer's comparisons are.
        let off = usize::from(u16::from_be_bytes([off_hi, off_lo]));
        let at = if off_hi & 0x80 == 0 { off % 64 } else { off } % seg.len().max(1);
        if let Some(b) = seg.get_mut(at) {
            *b ^= xor;
        }
        if index & 0x80 != 0 {
            // Resize the segment: a payload longer or shorter than its neighbours'.
            let by = 1 + usize::from(xor >> 5);
            if xor & 1 != 0 {
                seg.extend((0..by).map(|i| i as u8));
            } else if seg.len() >= 60 + by {
                seg.truncate(seg.len() - by);
            }
            if seg.len() >= 40 {
                let len = (seg.len() - 40) as u16;
                seg[4..6].copy_from_slice(&len.to_be_bytes());
            }
        }
        if bits & ctl::FIX_CHECKSUM != 0 {
            fix_tcp_checksum(seg);
        }
    }
    if bits & ctl::SWAP != 0 && n > 1 {
        inputs.swap(k, (k + 1) % n);
    }
    if bits & ctl::DUPLICATE != 0 && n > 0 {
        let again = inputs[k].clone();
        inputs.insert(k + 1, again);
    }
    if bits & ctl::RAW != 0 {
        inputs.insert(k.min(inputs.len()), body.to_vec());
    }
    check_coalescer(&inputs, bits & ctl::NOT_JOINING == 0);
}

/// Makes `packet` pass for IPv6 + TCP without extension headers, if it is long enough.
fn make_plausible(packet: &mut Vec<u8>) {
    if packet.len() < 60 {
        return;
    }
    packet.truncate(40 + 65_535);
    packet[0] = 0x60 | (packet[0] & 0x0f);
    packet[6] = TCP;
    let len = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&len.to_be_bytes());
    if tcp_header_len(packet, 40).is_none() {
        packet[52] = 0x50 | (packet[52] & 0x0f);
    }
}

/// The TCP header length at `l4`, if it is sane and fits.
fn tcp_header_len(packet: &[u8], l4: usize) -> Option<usize> {
    let thlen = usize::from(packet.get(l4 + 12)? >> 4) * 4;
    (thlen >= 20 && l4 + thlen <= packet.len()).then_some(thlen)
}

/// The textbook Internet checksum sum: big-endian 16-bit words, end-around carry.
fn reference_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for part in parts {
        for c in part.chunks(2) {
            s += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The IPv6 pseudo-header of the upper-layer message at `l4` (next header TCP).
fn pseudo_header(packet: &[u8], l4: usize) -> Vec<u8> {
    let mut ph = packet[8..40].to_vec();
    ph.extend_from_slice(&((packet.len() - l4) as u32).to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, TCP]);
    ph
}

fn tcp_checksum_ok(packet: &[u8], l4: usize) -> bool {
    reference_sum(&[&pseudo_header(packet, l4), &packet[l4..]]) == 0xffff
}

/// Gives a plain IPv6 + TCP packet a valid checksum; leaves anything else alone.
fn fix_tcp_checksum(packet: &mut [u8]) {
    if packet.len() < 60 || packet[6] != TCP {
        return;
    }
    packet[56..58].copy_from_slice(&[0, 0]);
    let ck = !reference_sum(&[&pseudo_header(packet, 40), &packet[40..]]);
    packet[56..58].copy_from_slice(&ck.to_be_bytes());
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Runs [`segment`] on a copy of `packet` and checks what it yields against the header;
/// returns the segments (none when the read was refused).
fn checked_segments(hdr: &VnetHdr, packet: &[u8], mtu: Option<usize>) -> Vec<Vec<u8>> {
    let mut work = packet.to_vec();
    let mut out = Vec::new();
    if segment(hdr, &mut work, &mut Vec::new(), |s| out.push(s.to_vec())).is_err() {
        assert!(
            out.is_empty(),
            "a refused read still yielded {} packets",
            out.len()
        );
        return out;
    }
    let gso = hdr.gso_type & !offload::GSO_ECN;
    if gso == offload::GSO_NONE {
        assert_eq!(out.len(), 1, "a plain read is one packet");
        let s = &out[0];
        assert_eq!(s.len(), packet.len());
        if hdr.flags & offload::F_NEEDS_CSUM == 0 {
            assert_eq!(s, packet, "a complete packet changed");
            return out;
        }
        let start = usize::from(hdr.csum_start);
        let place = start + usize::from(hdr.csum_offset);
        for (i, (a, b)) in s.iter().zip(packet).enumerate() {
            assert!(a == b || (place..place + 2).contains(&i), "byte {i} changed");
        }
        if hdr.csum_offset.is_multiple_of(2) {
            // The field held the sum still to be added: with the stored checksum, the
            // message from `start` on now sums to that sum's complement.
            let partial = u32::from(be16(&packet[place..]));
            let mut total = u32::from(reference_sum(&[&s[start..]])) + partial;
            total = (total & 0xffff) + (total >> 16);
            assert_eq!(total, 0xffff, "completed checksum is wrong");
        }
        return out;
    }
    assert_eq!(
        gso,
        offload::GSO_TCPV6,
        "cut a packet of GSO type {:#x}",
        hdr.gso_type
    );
    let l4 = if hdr.flags & offload::F_NEEDS_CSUM != 0 {
        usize::from(hdr.csum_start)
    } else {
        40
    };
    let thlen = tcp_header_len(packet, l4).expect("cut a packet without a TCP header");
    let hlen = l4 + thlen;
    let mss = usize::from(hdr.gso_size);
    let payload = &packet[hlen..];
    assert_eq!(out.len(), payload.len().div_ceil(mss).max(1), "segment count");
    let seq0 = be32(&packet[l4 + 4..]);
    let flags0 = packet[l4 + 13];
    let mut joined = Vec::with_capacity(payload.len());
    for (i, s) in out.iter().enumerate() {
        assert!(
            s.len() <= hlen + mss,
            "segment {i} of {} bytes exceeds headers + gso_size",
            s.len()
        );
        if let Some(mtu) = mtu {
            assert!(
                s.len() <= mtu,
                "segment {i} of {} bytes exceeds the MTU {mtu}",
                s.len()
            );
        }
        assert!(s.len() >= hlen);
        assert_eq!(
            usize::from(be16(&s[4..])),
            s.len() - 40,
            "payload length of segment {i}"
        );
        assert_eq!(s[..4], packet[..4]);
        assert_eq!(
            s[6..l4 + 4],
            packet[6..l4 + 4],
            "addresses, extension headers, ports"
        );
        assert_eq!(
            be32(&s[l4 + 4..]),
            seq0.wrapping_add((i * mss) as u32),
            "sequence number of segment {i}"
        );
        assert_eq!(
            s[l4 + 8..l4 + 13],
            packet[l4 + 8..l4 + 13],
            "acknowledgment, data offset"
        );
        let mut flags = flags0;
        if i + 1 < out.len() {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        assert_eq!(s[l4 + 13], flags, "flags of segment {i}");
        assert_eq!(s[l4 + 14..l4 + 16], packet[l4 + 14..l4 + 16], "window");
        assert_eq!(s[l4 + 18..hlen], packet[l4 + 18..hlen], "urgent pointer, options");
        assert!(tcp_checksum_ok(s, l4), "checksum of segment {i}");
        joined.extend_from_slice(&s[hlen..]);
    }
    assert!(
        joined == payload,
        "the segments' payloads do not join to the packet's"
    );
    out
}

/// Whether `again` (cut from a coalesced write) is the pushed packet `pushed`: the same
/// bytes but for the checksum, and both checksums valid. The urgent pointer counts only
/// with URG set (RFC 9293); neither the kernel's GRO nor the coalescer compare it
/// otherwise, so the first joined segment's stands for all (and the checksums then differ).
/// Equal bytes can still differ in the checksum field: 0x0000 and 0xffff encode one sum.
fn same_segment(again: &[u8], pushed: &[u8]) -> bool {
    if again.len() != pushed.len() || again.len() < 60 {
        return false;
    }
    let urg = pushed[53] & TCP_URG != 0;
    again[..56] == pushed[..56]
        && (!urg || again[58..60] == pushed[58..60])
        && again[60..] == pushed[60..]
        && tcp_checksum_ok(again, 40)
        && tcp_checksum_ok(pushed, 40)
}

/// Pushes `inputs` through a coalescer, flushes it, and checks that its writes stand for
/// exactly the inputs, in order.
fn check_coalescer(inputs: &[Vec<u8>], joining: bool) {
    let mut writes = Vec::new();
    let mut c = Coalescer::new();
    c.set_joining(joining);
    for p in inputs {
        c.push(p, &mut |w: &[u8]| writes.push(w.to_vec()));
    }
    c.flush(&mut |w: &[u8]| writes.push(w.to_vec()));
    assert!(c.is_empty(), "flushed coalescer still holds a packet");
    let mut next = 0;
    for w in &writes {
        let (h, p) = VnetHdr::parse(w).expect("a coalescer write starts with a virtio_net_hdr");
        if h == VnetHdr::default() {
            let pushed = inputs.get(next).expect("more packets written than pushed");
            assert!(p == pushed.as_slice(), "packet {next} written changed");
            next += 1;
            continue;
        }
        assert!(joining, "joined packets while told not to");
        assert_eq!(
            (h.flags, h.gso_type, h.csum_start, h.csum_offset),
            (offload::F_NEEDS_CSUM, offload::GSO_TCPV6, 40, 16)
        );
        assert!(p.len() <= 40 + 65_535, "coalesced packet of {} bytes", p.len());
        let thlen = tcp_header_len(p, 40).expect("coalesced write without a TCP header");
        assert_eq!(usize::from(h.hdr_len), 40 + thlen);
        // What the kernel does when it forwards the packet: complete the checksum.
        let mut completed = p.to_vec();
        offload::complete_checksum(&mut completed, 40, 16).expect("checksum place");
        assert!(
            tcp_checksum_ok(&completed, 40),
            "coalesced checksum does not complete"
        );
        // The daemon's fallback for a refused write must give back what was pushed.
        let mut pieces = Vec::new();
        offload::split_write(w, &mut Vec::new(), |one| pieces.push(one.to_vec()))
            .expect("split a coalesced write");
        let resegmented = checked_segments(&h, p, None);
        assert!(
            (2..=64).contains(&pieces.len()),
            "coalesced write of {} segments",
            pieces.len()
        );
        let mut payload = 0;
        assert_eq!(pieces.len(), resegmented.len());
        for (one, again) in pieces.iter().zip(&resegmented) {
            let (plain, seg) = VnetHdr::parse(one).expect("split write");
            assert_eq!(plain, VnetHdr::default());
            assert!(seg == again.as_slice());
            let pushed = inputs
                .get(next)
                .expect("coalesced write stands for more than was pushed");
            assert!(
                same_segment(seg, pushed),
                "segment {next} comes back changed from the coalesced write"
            );
            payload += pushed.len() - 40 - thlen;
            next += 1;
        }
        assert_eq!(
            p.len() - 40 - thlen,
            payload,
            "payload bytes of a coalesced write"
        );
    }
    assert_eq!(next, inputs.len(), "packets lost in the coalescer");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2000 cases unless PROPTEST_CASES asks for another number (longer runs).
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    }

    /// An IPv6 + TCP packet with a valid checksum, its fields from `f`, `options` 32-bit
    /// words of options and `payload_len` bytes of payload.
    fn tcp_packet(f: [u8; 16], seq: u32, flags: u8, options: usize, payload_len: usize) -> Vec<u8> {
        let thlen = 20 + 4 * options;
        let mut p = vec![0x60 | (f[0] & 0x0f), f[1], f[2], f[3], 0, 0, TCP, f[4]];
        p.extend_from_slice(&[0xfc, 0x64, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, f[5]]);
        p.extend_from_slice(&[0xfc, 0x64, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, f[6]]);
        p.extend_from_slice(&[f[7], f[8], 0x14, 0x51]);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[f[9], f[10], f[11], f[12]]);
        p.extend_from_slice(&[(thlen as u8 / 4) << 4, flags, f[13], f[14], 0, 0, 0, f[15] & 1]);
        p.extend((0..options * 4).map(|i| if i % 4 == 0 { 1 } else { f[i % 16] }));
        p.extend((0..payload_len).map(|i| (i * 31 + usize::from(f[0])) as u8));
        let len = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        fix_tcp_checksum(&mut p);
        p
    }

    /// Inputs for [`offload`]: control bytes, a header, then either random bytes or a
    /// valid TCP packet (which the kernel-like header cuts and the coalescer joins).
    fn offload_input() -> impl Strategy<Value = Vec<u8>> {
        let flags = prop_oneof![Just(0x10u8), Just(0x18), Just(0x90), Just(0x11), any::<u8>()];
        let valid = (
            any::<[u8; 16]>(),
            any::<u32>(),
            flags,
            0usize..=10,
            0usize..20_000,
        )
            .prop_map(|(f, seq, flags, options, len)| tcp_packet(f, seq, flags, options, len));
        let body = prop_oneof![proptest::collection::vec(any::<u8>(), 0..2000), valid];
        (any::<[u8; 5]>(), any::<[u8; 10]>(), body)
            .prop_map(|(c, h, body)| [&c[..], &h[..], &body[..]].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]
        #[test]
        fn router_survives(data in proptest::collection::vec(any::<u8>(), 0..1400)) { router_datagram(&data) }
        #[test]
        fn peer_survives(data in proptest::collection::vec(any::<u8>(), 0..1400)) { peer_datagram(&data) }
        #[test]
        fn nd_reemits(data in proptest::collection::vec(any::<u8>(), 0..300)) { nd_parse(&data) }
        #[test]
        fn offload_fuzz_body(data in offload_input()) { offload(&data) }
        #[test]
        fn offload_fuzz_body_on_raw_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) { offload(&data) }
    }

    /// Structured inputs reach deeper than random bytes: valid ND messages with one byte
    /// flipped, from the router and from others.
    #[test]
    fn mutated_valid_messages() {
        let rs = NdRepr::RouterSolicit { source_lla: None }
            .emit(std::net::Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap());
        for i in 0..rs.len() {
            for bit in 0..8 {
                let mut m = rs.clone();
                m[i] ^= 1 << bit;
                let mut data = vec![0u8, 0x80];
                data.extend_from_slice(&m);
                router_datagram(&data);
                peer_datagram(&data);
                data[1] = 7;
                peer_datagram(&data);
            }
        }
    }
}

//! Segmentation and coalescing of TCP over the TUN device (sans-IO).
//!
//! Every packet a 6bed4 tunnel carries costs the kernel a full trip through its stack, and
//! on the way out of a peer that trip is repeated per 1280-byte segment: the sending TCP
//! builds each one, the TUN queues each one, and the daemon reads each one with a system
//! call. A TUN opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD` (TSO6 and checksum offload)
//! lets the kernel hand over one TCP "super-segment" of up to 64 KB instead, described by a
//! `virtio_net_hdr` in front of it; [`segment`] cuts it into the very segments the kernel
//! would have made (same sequence numbers, flags and checksums), each of which then meets
//! the peer's per-packet rules as before. On the way in, [`Coalescer`] joins consecutive
//! in-order segments of one TCP flow back into one packet that the kernel takes in a
//! single write and hands to TCP as one, exactly as its own GRO does for a network card.
//!
//! Nothing here changes what crosses the tunnel: the wire carries the same 1280-byte
//! packets with valid checksums; only the number of trips through the local kernel drops.

/// Length of `struct virtio_net_hdr` (no `num_buffers`), the TUN's default header size.
pub const VNET_HDR_LEN: usize = 10;

/// `virtio_net_hdr.flags`: the checksum at `csum_start + csum_offset` still has to be
/// completed over the bytes from `csum_start` on (the field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV6: u8 = 4;
/// Added to a GSO type when the segments carry ECN (CWR on the first only).
pub const GSO_ECN: u8 = 0x80;

const IPV6_HDR: usize = 40;
const TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
/// Largest IPv6 payload a single (non-jumbo) packet can declare.
const MAX_PAYLOAD: usize = 65_535;
/// Segments joined into one write at most, as the kernel's own GRO does.
const MAX_SEGMENTS: usize = 64;

/// Why a packet from the TUN could not be taken apart; `reason()` names the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    #[error("TUN read of {0} bytes is shorter than its virtio_net_hdr")]
    ShortHeader(usize),
    #[error("checksum start {start} + offset {offset} lies outside the {len}-byte packet")]
    BadChecksumPlace { start: usize, offset: usize, len: usize },
    #[error("GSO type {0:#x} is not TCP over IPv6 (only TSO6 is enabled)")]
    UnsupportedGso(u8),
    #[error("TSO6 packet is not a plain IPv6 + TCP packet: {0}")]
    NotTcp6(&'static str),
}

impl OffloadError {
    pub const fn reason(&self) -> &'static str {
        match self {
            OffloadError::ShortHeader(_) => "tun_drop_short_vnet_header",
            OffloadError::BadChecksumPlace { .. } => "tun_drop_bad_checksum_place",
            OffloadError::UnsupportedGso(_) => "tun_drop_unsupported_gso",
            OffloadError::NotTcp6(_) => "tun_drop_bad_tso_packet",
        }
    }
}

/// `struct virtio_net_hdr` as the TUN reads and writes it (host byte order: the legacy
/// virtio layout, which is what a TUN uses unless told otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Splits a TUN read into its header and the packet behind it.
    pub fn parse(bytes: &[u8]) -> Result<(VnetHdr, &[u8]), OffloadError> {
        let (h, rest) = bytes
            .split_at_checked(VNET_HDR_LEN)
            .ok_or(OffloadError::ShortHeader(bytes.len()))?;
        let u16_at = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        Ok((
            VnetHdr {
                flags: h[0],
                gso_type: h[1],
                hdr_len: u16_at(2),
                gso_size: u16_at(4),
                csum_start: u16_at(6),
                csum_offset: u16_at(8),
            },
            rest,
        ))
    }

    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut h = [0u8; VNET_HDR_LEN];
        h[0] = self.flags;
        h[1] = self.gso_type;
        h[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        h[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        h[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        h[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        h
    }
}

/// The Internet checksum's one's-complement sum, in host byte order: summing native 32-bit
/// words into 64 bits and folding gives the same 16 bits as summing big-endian 16-bit words,
/// byte-swapped on a little-endian host (RFC 1071 §2(B)), so bytes go in and come out in
/// memory order and nothing is swapped per word.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    acc: u64,
}

impl Checksum {
    /// Adds `bytes`, which must start at an even offset of the summed message (only the last
    /// slice of a message may have an odd length).
    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        let mut chunks = bytes.chunks_exact(4);
        let mut acc = self.acc;
        for c in &mut chunks {
            acc += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
        }
        let rest = chunks.remainder();
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(tail));
        self.acc = acc;
        self
    }

    /// The folded 16-bit sum, as two bytes in memory order.
    pub fn sum(&self) -> [u8; 2] {
        let mut s = self.acc;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        (s as u16).to_ne_bytes()
    }

    /// The checksum to store: the complement of the folded sum.
    pub fn finish(&self) -> [u8; 2] {
        let [a, b] = self.sum();
        [!a, !b]
    }
}

/// The sum of the IPv6 pseudo-header for an upper-layer message of `len` bytes.
fn pseudo_header(packet: &[u8], len: usize, next_header: u8) -> Checksum {
    let mut c = Checksum::default();
    c.add(&packet[8..40])
        .add(&(len as u32).to_be_bytes())
        .add(&[0, 0, 0, next_header]);
    c
}

/// Completes a checksum the kernel left partial (`F_NEEDS_CSUM`): the field already holds
/// the pseudo-header sum, so the checksum is the complement of the sum from `start` on.
pub fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let len = packet.len();
    if start.checked_add(offset).is_none_or(|end| end + 2 > len) {
        return Err(OffloadError::BadChecksumPlace { start, offset, len });
    }
    let ck = Checksum::default().add(&packet[start..]).finish();
    packet[start + offset..start + offset + 2].copy_from_slice(&ck);
    Ok(())
}

/// Offsets of a plain IPv6 + TCP packet: (TCP header length). Extension headers are not
/// looked into: TSO and coalescing both stay off for such packets.
fn tcp6_header_len(packet: &[u8]) -> Result<usize, &'static str> {
    if packet.len() < IPV6_HDR + 20 {
        return Err("shorter than IPv6 + TCP headers");
    }
    if packet[0] >> 4 != 6 {
        return Err("not IPv6");
    }
    if packet[6] != TCP {
        return Err("next header is not TCP");
    }
    let declared = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if declared + IPV6_HDR != packet.len() {
        return Err("IPv6 payload length does not match the packet");
    }
    let thlen = usize::from(packet[IPV6_HDR + 12] >> 4) * 4;
    if thlen < 20 || IPV6_HDR + thlen > packet.len() {
        return Err("bad TCP data offset");
    }
    Ok(thlen)
}

/// Calls `each` with every packet a TUN read stands for, in order: the packet itself
/// (with a partial checksum completed) or, for a TSO6 super-segment, each segment the kernel
/// would have sent, built in `scratch`. `packet` is modified in place.
pub fn segment(
    hdr: &VnetHdr,
    packet: &mut [u8],
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_checksum(packet, usize::from(hdr.csum_start), usize::from(hdr.csum_offset))?;
            }
            each(packet);
            return Ok(());
        }
        GSO_TCPV6 => {}
        other => return Err(OffloadError::UnsupportedGso(other)),
    }
    let (l4, thlen) = tso_layout(hdr, packet).map_err(OffloadError::NotTcp6)?;
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::NotTcp6("GSO size 0"));
    }
    let hlen = l4 + thlen;
    let (head, payload) = packet.split_at(hlen);
    let seq_at = l4 + 4;
    let seq0 = u32::from_be_bytes([head[seq_at], head[seq_at + 1], head[seq_at + 2], head[seq_at + 3]]);
    let flags0 = head[l4 + 13];
    let count = payload.len().div_ceil(mss).max(1);
    for (i, offset) in (0..count).map(|i| (i, i * mss)) {
        let end = (offset + mss).min(payload.len());
        let data = &payload[offset..end];
        scratch.clear();
        scratch.extend_from_slice(head);
        scratch.extend_from_slice(data);
        let tcp_len = thlen + data.len();
        // Extension headers, if any, sit between the fixed header and TCP and count too.
        let ip_payload = (l4 - IPV6_HDR + tcp_len) as u16;
        scratch[4..6].copy_from_slice(&ip_payload.to_be_bytes());
        let seq = seq0.wrapping_add(offset as u32);
        scratch[seq_at..seq_at + 4].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        scratch[l4 + 13] = flags;
        scratch[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
        let mut c = pseudo_header(scratch, tcp_len, TCP);
        let ck = c.add(&scratch[l4..]).finish();
        scratch[l4 + 16..l4 + 18].copy_from_slice(&ck);
        each(scratch);
    }
    Ok(())
}

/// Cuts a TUN write (`virtio_net_hdr` then a packet, as [`Coalescer`] hands them over) into
/// the writes it stands for, each behind an all-zero header: the segments a coalesced write
/// joined, or a plain write as it is. The daemon falls back to this when the kernel refuses
/// a coalesced write, so what arrived still reaches the kernel, one packet per write.
pub fn split_write(
    write: &[u8],
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    let (hdr, packet) = VnetHdr::parse(write)?;
    let mut packet = packet.to_vec();
    let mut one = Vec::new();
    segment(&hdr, &mut packet, scratch, |p| {
        one.clear();
        one.extend_from_slice(&VnetHdr::default().emit());
        one.extend_from_slice(p);
        each(&one);
    })
}

/// Where TCP starts in a TSO6 packet, and its header length. The kernel says where
/// (`csum_start`), which also steps over any extension headers without parsing them.
fn tso_layout(hdr: &VnetHdr, packet: &[u8]) -> Result<(usize, usize), &'static str> {
    let l4 = if hdr.flags & F_NEEDS_CSUM != 0 {
        if hdr.csum_offset != 16 {
            return Err("checksum offset is not TCP's");
        }
        usize::from(hdr.csum_start)
    } else {
        IPV6_HDR
    };
    if l4 < IPV6_HDR || packet.len() < l4 + 20 {
        return Err("shorter than IPv6 + TCP headers");
    }
    if packet[0] >> 4 != 6 {
        return Err("not IPv6");
    }
    if l4 == IPV6_HDR && packet[6] != TCP {
        return Err("next header is not TCP");
    }
    let declared = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if declared + IPV6_HDR != packet.len() {
        return Err("IPv6 payload length does not match the packet");
    }
    let thlen = usize::from(packet[l4 + 12] >> 4) * 4;
    if thlen < 20 || l4 + thlen > packet.len() {
        return Err("bad TCP data offset");
    }
    Ok((l4, thlen))
}

/// Whether the TCP checksum of a plain IPv6 + TCP packet is right.
fn tcp6_checksum_ok(packet: &[u8]) -> bool {
    let mut c = pseudo_header(packet, packet.len() - IPV6_HDR, TCP);
    c.add(&packet[IPV6_HDR..]).sum() == [0xff, 0xff]
}

/// The run of segments being joined.
#[derive(Debug, Clone, Copy)]
struct Train {
    /// Payload bytes per segment (the first segment's).
    mss: usize,
    thlen: usize,
    segments: usize,
    next_seq: u32,
    /// A short or PSH segment ends a train, as in the kernel's GRO.
    closed: bool,
}

/// Joins consecutive in-order segments of one TCP flow into one TUN write (receive-side
/// coalescing, what the kernel's GRO does for a network card).
///
/// A segment joins the pending one when everything but the sequence number, the payload and
/// PSH is identical (IPv6 header but the length, ports, acknowledgment, window, options),
/// its sequence number follows on, and it carries only ACK (and PSH, which closes the run).
/// Every segment's checksum is verified before it joins; a bad one is written alone, so the
/// kernel drops and counts it as it would have. Anything else (ICMPv6, ND, SYN, FIN, UDP)
/// is written alone, in order.
#[derive(Debug)]
pub struct Coalescer {
    /// `virtio_net_hdr` space, then the packet being built.
    buf: Vec<u8>,
    train: Option<Train>,
    joining: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            buf: Vec::new(),
            train: None,
            joining: true,
        }
    }
}

impl Coalescer {
    pub fn new() -> Self {
        Coalescer::default()
    }

    /// With `false`, every packet is written alone (still behind a `virtio_net_hdr`): for a
    /// kernel that refuses coalesced writes.
    pub fn set_joining(&mut self, joining: bool) {
        self.joining = joining;
    }

    /// Whether a packet waits to be written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Adds `packet`; when it cannot join what is pending, the pending write goes to `write`
    /// first (one buffer: `virtio_net_hdr` then the packet).
    pub fn push(&mut self, packet: &[u8], write: &mut impl FnMut(&[u8])) {
        if self.joining && self.try_join(packet) {
            return;
        }
        self.flush(write);
        self.buf.resize(VNET_HDR_LEN, 0);
        self.buf.extend_from_slice(packet);
        self.train = if self.joining { Self::start(packet) } else { None };
    }

    /// Writes whatever is pending.
    pub fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        if self.buf.is_empty() {
            return;
        }
        let mut hdr = VnetHdr::default();
        if let Some(t) = self.train.filter(|t| t.segments > 1) {
            let pkt = &mut self.buf[VNET_HDR_LEN..];
            let tcp_len = pkt.len() - IPV6_HDR;
            pkt[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            // The kernel finishes the checksum (or, delivering locally, trusts it: every
            // joined segment's own checksum was verified above).
            let sum = pseudo_header(pkt, tcp_len, TCP).sum();
            pkt[IPV6_HDR + 16..IPV6_HDR + 18].copy_from_slice(&sum);
            hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV6,
                hdr_len: (IPV6_HDR + t.thlen) as u16,
                gso_size: t.mss as u16,
                csum_start: IPV6_HDR as u16,
                csum_offset: 16,
            };
        }
        self.buf[..VNET_HDR_LEN].copy_from_slice(&hdr.emit());
        write(&self.buf);
        self.buf.clear();
        self.train = None;
    }

    /// A train that `packet` can start, if it is a data segment that may be joined.
    fn start(packet: &[u8]) -> Option<Train> {
        let thlen = tcp6_header_len(packet).ok()?;
        let payload = packet.len() - IPV6_HDR - thlen;
        let flags = packet[IPV6_HDR + 13];
        if payload == 0 || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) || !tcp6_checksum_ok(packet) {
            return None;
        }
        let seq = u32::from_be_bytes([packet[44], packet[45], packet[46], packet[47]]);
        Some(Train {
            mss: payload,
            thlen,
            segments: 1,
            next_seq: seq.wrapping_add(payload as u32),
            closed: flags & TCP_PSH != 0,
        })
    }

    fn try_join(&mut self, packet: &[u8]) -> bool {
        let Some(t) = self.train.as_mut() else {
            return false;
        };
        let p = &self.buf[VNET_HDR_LEN..];
        let hlen = IPV6_HDR + t.thlen;
        if t.closed
            || t.segments >= MAX_SEGMENTS
            || packet.len() <= hlen
            || p.len() + packet.len() - hlen > IPV6_HDR + MAX_PAYLOAD
            // Version, traffic class, flow label; then next header, hop limit, addresses.
            || packet[..4] != p[..4]
            || packet[6..IPV6_HDR] != p[6..IPV6_HDR]
            // Ports; acknowledgment, data offset; window; options.
            || packet[IPV6_HDR..IPV6_HDR + 4] != p[IPV6_HDR..IPV6_HDR + 4]
            || packet[IPV6_HDR + 8..IPV6_HDR + 13] != p[IPV6_HDR + 8..IPV6_HDR + 13]
            || packet[IPV6_HDR + 14..IPV6_HDR + 16] != p[IPV6_HDR + 14..IPV6_HDR + 16]
            || packet[IPV6_HDR + 20..hlen] != p[IPV6_HDR + 20..hlen]
        {
            return false;
        }
        let flags = packet[IPV6_HDR + 13];
        let seq = u32::from_be_bytes([packet[44], packet[45], packet[46], packet[47]]);
        let payload = packet.len() - hlen;
        if (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH)
            || seq != t.next_seq
            || payload > t.mss
            || tcp6_header_len(packet) != Ok(t.thlen)
            || !tcp6_checksum_ok(packet)
        {
            return false;
        }
        t.segments += 1;
        t.next_seq = seq.wrapping_add(payload as u32);
        t.closed = payload < t.mss || flags & TCP_PSH != 0;
        if flags & TCP_PSH != 0 {
            self.buf[VNET_HDR_LEN + IPV6_HDR + 13] |= TCP_PSH;
        }
        self.buf.extend_from_slice(&packet[hlen..]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook checksum: big-endian 16-bit words, end-around carry.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    const SRC: [u8; 16] = [
        0xfc, 0x64, 0x0b, 0xed, 0xc6, 0x33, 0x64, 1, 0xcb, 0, 0x71, 10, 0x80, 0, 0, 1,
    ];
    const DST: [u8; 16] = [
        0xfc, 0x64, 0x0b, 0xed, 0xc6, 0x33, 0x64, 1, 0xcb, 0, 0x71, 20, 0x80, 0, 0, 1,
    ];

    /// An IPv6 + TCP packet (with a 12-byte timestamp option) and a valid checksum.
    fn tcp_packet(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let thlen = 32;
        let mut p = vec![0x60, 0x01, 0x23, 0x45];
        p.extend_from_slice(&((thlen + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[TCP, 64]);
        p.extend_from_slice(&SRC);
        p.extend_from_slice(&DST);
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&5201u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[(thlen as u8 / 4) << 4, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        p.extend_from_slice(payload);
        let ck = tcp_checksum(&p);
        p[56..58].copy_from_slice(&ck.to_be_bytes());
        p
    }

    fn tcp_checksum(p: &[u8]) -> u16 {
        let mut m = p[8..40].to_vec();
        m.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, TCP]);
        let mut tcp = p[40..].to_vec();
        tcp[16] = 0;
        tcp[17] = 0;
        m.extend_from_slice(&tcp);
        !reference_sum(&m)
    }

    proptest! {
        #[test]
        fn checksum_matches_the_textbook(data in proptest::collection::vec(any::<u8>(), 0..3000), split in 0usize..1500) {
            let split = (split.min(data.len())) & !1;
            let mut c = Checksum::default();
            c.add(&data[..split]).add(&data[split..]);
            prop_assert_eq!(u16::from_be_bytes(c.sum()), reference_sum(&data));
        }

        /// Whatever a TUN read holds, cutting it fails cleanly or yields packets no longer
        /// than the read, never a panic.
        #[test]
        fn segment_takes_any_bytes(
            flags in 0u8..4, gso_type in prop_oneof![Just(0u8), Just(4), Just(0x84), any::<u8>()],
            gso_size in 0u16..2000, csum_start in 0u16..200, csum_offset in 0u16..40,
            mut packet in proptest::collection::vec(any::<u8>(), 0..1500),
            tcp in any::<bool>(),
        ) {
            if tcp && packet.len() >= 60 {
                // Often enough a plausible IPv6 + TCP header, so the cutting itself runs.
                packet[0] = 0x60;
                packet[6] = TCP;
                let len = (packet.len() - 40) as u16;
                packet[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let hdr = VnetHdr { flags, gso_type, hdr_len: 0, gso_size, csum_start, csum_offset };
            let len = packet.len();
            let _ = segment(&hdr, &mut packet, &mut Vec::new(), |p| assert!(p.len() <= len));
        }

        /// Any sequence of packets goes through the coalescer without a panic, and every
        /// byte that is not a joined segment's repeated header comes out.
        #[test]
        fn coalescer_takes_any_bytes(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut out = 0usize;
            let mut c = Coalescer::new();
            for p in &packets {
                c.push(p, &mut |w: &[u8]| out += w.len() - VNET_HDR_LEN);
            }
            c.flush(&mut |w: &[u8]| out += w.len() - VNET_HDR_LEN);
            // Random bytes are never valid TCP with a right checksum, so nothing is joined.
            prop_assert_eq!(out, packets.iter().map(Vec::len).sum::<usize>());
        }

        /// Cutting a super-segment and joining the pieces gives back the super-segment's
        /// bytes, and every piece is what the kernel would have sent on its own.
        #[test]
        fn segment_then_coalesce_round_trips(len in 1usize..100_000, mss in 1usize..1300, seq in any::<u32>(), psh in any::<bool>()) {
            let len = len.min(mss * 100).min(MAX_PAYLOAD - 32);
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let flags = TCP_ACK | if psh { TCP_PSH } else { 0 };
            let whole = tcp_packet(seq, flags, &payload);
            let hdr = VnetHdr { gso_type: GSO_TCPV6, gso_size: mss as u16, flags: F_NEEDS_CSUM,
                csum_start: 40, csum_offset: 16, hdr_len: 72 };
            let mut input = whole.clone();
            let mut pieces = Vec::new();
            segment(&hdr, &mut input, &mut Vec::new(), |s| pieces.push(s.to_vec())).expect("segment");
            prop_assert_eq!(pieces.len(), len.div_ceil(mss));
            for (i, s) in pieces.iter().enumerate() {
                let data = &payload[i * mss..((i + 1) * mss).min(len)];
                let last = i + 1 == pieces.len();
                let expect = tcp_packet(seq.wrapping_add((i * mss) as u32), if last { flags } else { TCP_ACK }, data);
                prop_assert_eq!(s, &expect);
            }
            let mut writes = Vec::new();
            let mut c = Coalescer::new();
            for s in &pieces {
                c.push(s, &mut |w: &[u8]| writes.push(w.to_vec()));
            }
            c.flush(&mut |w: &[u8]| writes.push(w.to_vec()));
            // The whole payload fits one IPv6 packet, so only the segment count splits it.
            let per_write = MAX_SEGMENTS;
            let expect_writes = pieces.len().div_ceil(per_write);
            prop_assert_eq!(writes.len(), expect_writes);
            let (h, first) = VnetHdr::parse(&writes[0]).expect("hdr");
            if pieces.len() == 1 {
                prop_assert_eq!(h, VnetHdr::default());
                prop_assert_eq!(first, &whole[..]);
            } else {
                prop_assert_eq!((h.gso_type, h.gso_size, h.flags), (GSO_TCPV6, mss as u16, F_NEEDS_CSUM));
                let n = pieces.len().min(per_write);
                let joined_len = (n * mss).min(len);
                let mut expect = tcp_packet(seq, if n == pieces.len() { flags } else { TCP_ACK }, &payload[..joined_len]);
                // The kernel completes the checksum: the field holds the pseudo-header sum.
                let mut ph = expect[8..40].to_vec();
                ph.extend_from_slice(&((expect.len() - 40) as u32).to_be_bytes());
                ph.extend_from_slice(&[0, 0, 0, TCP]);
                expect[56..58].copy_from_slice(&reference_sum(&ph).to_be_bytes());
                prop_assert_eq!(first, &expect[..]);
            }
        }
    }

    /// A TSO6 packet with a hop-by-hop header in front of TCP is cut at the place the
    /// kernel names, and the extension header counts in every segment's payload length.
    #[test]
    fn tso_steps_over_extension_headers() {
        let plain = tcp_packet(77, TCP_ACK | TCP_PSH, &[9; 250]);
        let mut with_ext = plain[..40].to_vec();
        with_ext[6] = 0; // hop-by-hop options
        with_ext.extend_from_slice(&[TCP, 0, 1, 4, 0, 0, 0, 0]); // next TCP, 8 bytes, PadN
        with_ext.extend_from_slice(&plain[40..]);
        let len = (with_ext.len() - 40) as u16;
        with_ext[4..6].copy_from_slice(&len.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            gso_size: 100,
            csum_start: 48,
            csum_offset: 16,
            hdr_len: 80,
        };
        let mut pieces = Vec::new();
        segment(&hdr, &mut with_ext, &mut Vec::new(), |s| pieces.push(s.to_vec())).expect("segment");
        assert_eq!(pieces.len(), 3);
        for (i, p) in pieces.iter().enumerate() {
            let size = if i == 2 { 50 } else { 100 };
            let flags = if i == 2 { TCP_ACK | TCP_PSH } else { TCP_ACK };
            let expect = tcp_packet(77 + 100 * i as u32, flags, &[9; 250][..size]);
            assert_eq!(&p[..4], &expect[..4]);
            assert_eq!(
                usize::from(u16::from_be_bytes([p[4], p[5]])),
                8 + expect.len() - 40
            );
            assert_eq!(&p[6..8], &[0, 64]);
            assert_eq!(
                &p[48..],
                &expect[40..],
                "segment {i}: TCP header, checksum and data"
            );
        }
    }

    fn written(pkts: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut c = Coalescer::new();
        for p in pkts {
            c.push(p, &mut |w: &[u8]| {
                let (h, p) = VnetHdr::parse(w).expect("hdr");
                out.push((h, p.to_vec()));
            });
        }
        c.flush(&mut |w: &[u8]| {
            let (h, p) = VnetHdr::parse(w).expect("hdr");
            out.push((h, p.to_vec()));
        });
        out
    }

    #[test]
    fn only_in_order_clean_segments_are_joined() {
        let a = tcp_packet(1000, TCP_ACK, &[1; 100]);
        let b = tcp_packet(1100, TCP_ACK, &[2; 100]);
        let gap = tcp_packet(1300, TCP_ACK, &[3; 100]);
        let w = written(&[a.clone(), b.clone(), gap.clone()]);
        assert_eq!(w.len(), 2, "the out-of-order segment starts a new write");
        assert_eq!(w[0].0.gso_type, GSO_TCPV6);
        assert_eq!(w[1], (VnetHdr::default(), gap.clone()));

        let mut bad = b.clone();
        bad[80] ^= 0xff;
        let w = written(&[a.clone(), bad.clone()]);
        assert_eq!(
            w.len(),
            2,
            "a corrupt segment is written alone, for the kernel to drop"
        );
        assert_eq!(w[1].1, bad);

        let fin = tcp_packet(1100, TCP_ACK | TCP_FIN, &[2; 100]);
        assert_eq!(written(&[a.clone(), fin]).len(), 2);

        let mut other_hop = b.clone();
        other_hop[7] = 63;
        assert_eq!(written(&[a.clone(), other_hop]).len(), 2, "hop limits differ");

        let short = tcp_packet(1100, TCP_ACK, &[2; 50]);
        let after = tcp_packet(1150, TCP_ACK, &[2; 50]);
        let w = written(&[a.clone(), short, after]);
        assert_eq!(w.len(), 2, "a short segment ends the train");
        assert_eq!(w[0].1.len(), a.len() + 50);

        let push = tcp_packet(1100, TCP_ACK | TCP_PSH, &[2; 100]);
        let w = written(&[a.clone(), push, gap.clone()]);
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].1[53] & TCP_PSH,
            TCP_PSH,
            "PSH of the last joined segment is kept"
        );

        let icmp = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        let w = written(std::slice::from_ref(&icmp));
        assert_eq!(w, vec![(VnetHdr::default(), icmp)]);

        let mut c = Coalescer::new();
        c.set_joining(false);
        let mut n = 0;
        for p in [&a, &b] {
            c.push(p, &mut |w: &[u8]| {
                assert_eq!(VnetHdr::parse(w).expect("hdr").0, VnetHdr::default());
                n += 1;
            });
        }
        c.flush(&mut |_: &[u8]| n += 1);
        assert_eq!(n, 2, "not joining: one write per packet");
    }

    #[test]
    fn partial_checksums_are_completed_and_bad_headers_refused() {
        let good = tcp_packet(5, TCP_ACK, b"hello");
        let mut partial = good.clone();
        let mut ph = partial[8..40].to_vec();
        ph.extend_from_slice(&((partial.len() - 40) as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, TCP]);
        partial[56..58].copy_from_slice(&reference_sum(&ph).to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 40,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut seen = Vec::new();
        segment(&hdr, &mut partial, &mut Vec::new(), |p| seen.push(p.to_vec())).expect("ok");
        assert_eq!(seen, vec![good.clone()]);

        let far = VnetHdr {
            csum_start: 60,
            csum_offset: 400,
            ..hdr
        };
        assert!(matches!(
            segment(&far, &mut good.clone(), &mut Vec::new(), |_| {}),
            Err(OffloadError::BadChecksumPlace { .. })
        ));
        let udp = VnetHdr {
            gso_type: 5,
            gso_size: 1000,
            ..hdr
        };
        assert_eq!(
            segment(&udp, &mut good.clone(), &mut Vec::new(), |_| {}),
            Err(OffloadError::UnsupportedGso(5))
        );
        let tso = VnetHdr {
            gso_type: GSO_TCPV6,
            gso_size: 1000,
            ..hdr
        };
        let mut icmp = good.clone();
        icmp[6] = 58;
        assert!(matches!(
            segment(&tso, &mut icmp, &mut Vec::new(), |_| {}),
            Err(OffloadError::NotTcp6(_))
        ));
        assert_eq!(VnetHdr::parse(&[0; 9]), Err(OffloadError::ShortHeader(9)));
    }
}

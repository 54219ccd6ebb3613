//! IPv4, UDP, TCP and ICMP as far as a NAT needs them: parsing with bounds checks and
//! in-place rewriting with checksum fixes.
//!
//! [`parse`] checks every length the rewriting functions later index with, so that those
//! can index directly: everything they touch lies inside `..Packet::end`, which is inside
//! the buffer. Rewrites keep checksums right incrementally (RFC 1624), so a packet that
//! arrived with a wrong transport checksum leaves with an equally wrong one, as through a
//! real NAT; only the ICMP error checksum is recomputed, because half its payload changes.

use super::event::DropReason;

pub(crate) const ICMP: u8 = 1;
pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAM_PROBLEM: u8 = 12;

/// TCP flag bits (byte 13 of the header).
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

/// A parsed IPv4 packet; offsets index the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packet {
    /// IPv4 header length (options included).
    pub ihl: usize,
    /// End of the packet (IPv4 total length); bytes after it are ignored.
    pub end: usize,
    /// IP protocol number.
    pub proto: u8,
    /// Addresses as parsed (rewriting reads the buffer, not these).
    pub src: u32,
    pub dst: u32,
    pub l4: L4,
}

/// The transport part of a packet the NAT can translate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum L4 {
    /// UDP or TCP ports; `tcp_flags` is 0 for UDP.
    Ports { sport: u16, dport: u16, tcp_flags: u8 },
    /// ICMP echo request (`request`) or reply, with its identifier.
    Echo { request: bool, id: u16 },
    /// ICMP error with the embedded original packet's header.
    Error(Inner),
    /// A protocol or ICMP type without translation; the addresses are still known for logs.
    Other { sport: u16, dport: u16 },
}

/// The header embedded in an ICMP error: the packet that caused it, as it was sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inner {
    /// Offset of the embedded IPv4 header in the buffer.
    pub off: usize,
    pub ihl: usize,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    /// Source port, or the echo identifier.
    pub sport: u16,
    /// Destination port, or the echo identifier.
    pub dport: u16,
}

pub(crate) fn rd16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

pub(crate) fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn wr16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

fn wr32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// One's complement sum of `data` (big-endian 16-bit words, odd byte padded), not folded.
pub(crate) fn sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut s: u64 = chunks
        .by_ref()
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The Internet checksum of `data`.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changes from `old` to `new`.
fn adjust16(hc: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!hc) + u64::from(!old) + u64::from(new))
}

fn adjust32(hc: u16, old: u32, new: u32) -> u16 {
    let hc = adjust16(hc, (old >> 16) as u16, (new >> 16) as u16);
    adjust16(hc, old as u16, new as u16)
}

/// Where a transport checksum lives and whether it covers the IP pseudo-header.
struct CsumField {
    off: usize,
    pseudo: bool,
    /// UDP: 0 means "no checksum" and must stay 0; a computed 0 is sent as 0xffff.
    udp: bool,
}

/// Locates the transport checksum of a header at `l4`, if it lies before `end`.
fn csum_field(proto: u8, l4: usize, end: usize) -> Option<CsumField> {
    let (off, pseudo, udp) = match proto {
        UDP => (l4 + 6, true, true),
        TCP => (l4 + 16, true, false),
        ICMP => (l4 + 2, false, false),
        _ => return None,
    };
    (off + 2 <= end).then_some(CsumField { off, pseudo, udp })
}

/// Which endpoint of a header is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Src,
    Dst,
}

impl Side {
    fn opposite(self) -> Side {
        match self {
            Side::Src => Side::Dst,
            Side::Dst => Side::Src,
        }
    }

    fn addr_off(self) -> usize {
        match self {
            Side::Src => 12,
            Side::Dst => 16,
        }
    }

    /// Offset of the port (or echo identifier) field within the transport header.
    fn port_off(self, proto: u8) -> usize {
        match (proto, self) {
            (ICMP, _) => 4,
            (_, Side::Src) => 0,
            (_, Side::Dst) => 2,
        }
    }
}

/// An IPv4 header in the buffer: the packet itself or the one quoted in an ICMP error.
#[derive(Clone, Copy)]
struct Hdr {
    /// Offset of the IPv4 header.
    ip: usize,
    ihl: usize,
    proto: u8,
    /// End of the available bytes (a quote may stop before its transport checksum).
    end: usize,
}

/// Changes the address and port (or identifier) of one side of a header, fixing the IPv4
/// header checksum and the transport checksum (if present before `end`).
fn rewrite(b: &mut [u8], h: Hdr, side: Side, new_addr: u32, new_port: u16) {
    let l4 = h.ip + h.ihl;
    let addr_off = h.ip + side.addr_off();
    let port_off = l4 + side.port_off(h.proto);
    let old_addr = rd32(b, addr_off);
    let old_port = rd16(b, port_off);
    wr32(b, addr_off, new_addr);
    let ip_csum = adjust32(rd16(b, h.ip + 10), old_addr, new_addr);
    wr16(b, h.ip + 10, ip_csum);
    wr16(b, port_off, new_port);
    if let Some(f) = csum_field(h.proto, l4, h.end) {
        let mut c = rd16(b, f.off);
        if f.udp && c == 0 {
            return;
        }
        if f.pseudo {
            c = adjust32(c, old_addr, new_addr);
        }
        c = adjust16(c, old_port, new_port);
        if f.udp && c == 0 {
            c = 0xffff;
        }
        wr16(b, f.off, c);
    }
}

/// Rewrites one side (address and port or identifier) of a translatable packet.
pub(crate) fn set(b: &mut [u8], p: &Packet, side: Side, addr: u32, port: u16) {
    rewrite(
        b,
        Hdr {
            ip: 0,
            ihl: p.ihl,
            proto: p.proto,
            end: p.end,
        },
        side,
        addr,
        port,
    );
}

/// Translates an ICMP error: the outer `side` address becomes `addr`, and the quoted
/// header's opposite side becomes `addr:port` (the quote is the packet going the other
/// way). All four checksums end up right: outer IPv4, ICMP (recomputed over the whole
/// message), quoted IPv4, quoted transport (incrementally, when it is within the quote).
pub(crate) fn translate_error(b: &mut [u8], p: &Packet, inner: &Inner, side: Side, addr: u32, port: u16) {
    let quoted = Hdr {
        ip: inner.off,
        ihl: inner.ihl,
        proto: inner.proto,
        end: p.end,
    };
    rewrite(b, quoted, side.opposite(), addr, port);
    let off = side.addr_off();
    let old = rd32(b, off);
    wr32(b, off, addr);
    let c = adjust32(rd16(b, 10), old, addr);
    wr16(b, 10, c);
    let icmp = p.ihl;
    wr16(b, icmp + 2, 0);
    let c = checksum(&b[icmp..p.end]);
    wr16(b, icmp + 2, c);
}

/// Parses an IPv4 packet far enough to translate it, or says why it cannot be.
///
/// Accepts IP options; rejects a bad header checksum (as a router would), non-first fragments
/// and first fragments too short for the transport header (`Fragment`), and fragmented ICMP
/// errors (their checksum could not be recomputed).
pub(crate) fn parse(b: &[u8]) -> Result<Packet, (DropReason, Option<Packet>)> {
    let bad = |r| Err((r, None));
    if b.len() < 20 || b[0] >> 4 != 4 {
        return bad(DropReason::Malformed);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let end = usize::from(rd16(b, 2));
    if ihl < 20 || end < ihl || end > b.len() {
        return bad(DropReason::Malformed);
    }
    if checksum(&b[..ihl]) != 0 {
        return bad(DropReason::Malformed);
    }
    let frag = rd16(b, 6);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    let proto = b[9];
    let src = rd32(b, 12);
    let dst = rd32(b, 16);
    let mut p = Packet {
        ihl,
        end,
        proto,
        src,
        dst,
        l4: L4::Other { sport: 0, dport: 0 },
    };
    if offset != 0 {
        return Err((DropReason::Fragment, Some(p)));
    }
    let avail = end - ihl;
    let short = |p: Packet| {
        let r = if more {
            DropReason::Fragment
        } else {
            DropReason::Malformed
        };
        Err((r, Some(p)))
    };
    match proto {
        UDP | TCP => {
            let need = if proto == UDP { 8 } else { 20 };
            if avail < need {
                return short(p);
            }
            let sport = rd16(b, ihl);
            let dport = rd16(b, ihl + 2);
            let tcp_flags = if proto == TCP { b[ihl + 13] } else { 0 };
            p.l4 = L4::Ports {
                sport,
                dport,
                tcp_flags,
            };
            if proto == TCP && usize::from(b[ihl + 12] >> 4) * 4 < 20 {
                return Err((DropReason::Malformed, Some(p)));
            }
            Ok(p)
        }
        ICMP => {
            if avail < 8 {
                return short(p);
            }
            let ty = b[ihl];
            match ty {
                ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                    let id = rd16(b, ihl + 4);
                    p.l4 = L4::Echo {
                        request: ty == ICMP_ECHO_REQUEST,
                        id,
                    };
                    Ok(p)
                }
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM => {
                    if more {
                        return Err((DropReason::Fragment, Some(p)));
                    }
                    match parse_inner(b, ihl + 8, end) {
                        Some(inner) => {
                            p.l4 = L4::Error(inner);
                            Ok(p)
                        }
                        None => Err((DropReason::NotTranslatable, Some(p))),
                    }
                }
                _ => Err((DropReason::NotTranslatable, Some(p))),
            }
        }
        _ => Err((DropReason::NotTranslatable, Some(p))),
    }
}

/// Parses the packet quoted in an ICMP error: an IPv4 header (options allowed) and at least
/// the 8 transport bytes that carry the ports (RFC 792 guarantees 8). The quote may be
/// truncated anywhere after that. Only UDP, TCP and echo messages are translatable; an error
/// about an error is not.
fn parse_inner(b: &[u8], off: usize, end: usize) -> Option<Inner> {
    if off + 20 > end || b[off] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(b[off] & 0x0f) * 4;
    if ihl < 20 || off + ihl + 8 > end {
        return None;
    }
    if rd16(b, off + 6) & 0x1fff != 0 {
        return None;
    }
    let proto = b[off + 9];
    let l4 = off + ihl;
    let (sport, dport) = match proto {
        UDP | TCP => (rd16(b, l4), rd16(b, l4 + 2)),
        ICMP if matches!(b[l4], ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
            let id = rd16(b, l4 + 4);
            (id, id)
        }
        _ => return None,
    };
    Some(Inner {
        off,
        ihl,
        proto,
        src: rd32(b, off + 12),
        dst: rd32(b, off + 16),
        sport,
        dport,
    })
}

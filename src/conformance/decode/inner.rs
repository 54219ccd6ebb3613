//! The inner IPv6 packet: header (through etherparse), ICMPv6 checksum and the ND messages
//! and options (read here from RFC 4861 §4 and spec §3, not from `sixbed4::wire`).

use std::net::Ipv6Addr;

use etherparse::Ipv6HeaderSlice;

use super::{fnv1a, IcmpInfo, InnerHeader, Kind, NdOption, Pio, RaLifetimes};

/// ICMPv6 types the decoder names.
pub const RS: u8 = 133;
pub const RA: u8 = 134;
pub const NS: u8 = 135;
pub const NA: u8 = 136;
/// Next header value of ICMPv6.
pub const ICMPV6: u8 = 58;

/// Everything read from one IPv6 packet.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub inner: Option<InnerHeader>,
    pub icmp: Option<IcmpInfo>,
    pub kind: Kind,
    /// Bytes after the packet's own length (IPv6 payload length + 40).
    pub trailing: usize,
    pub issues: Vec<String>,
    /// Hash of the packet with the hop limit zeroed: the same packet before and after a
    /// relay (which decrements it), or on a TUN and inside UDP.
    pub inner_key: Option<u64>,
}

impl Parsed {
    fn malformed(why: String) -> Parsed {
        Parsed {
            inner: None,
            icmp: None,
            kind: Kind::Malformed { why },
            trailing: 0,
            issues: Vec::new(),
            inner_key: None,
        }
    }
}

/// Reads `pkt` as one IPv6 packet. `complete` is false when the capture cut the packet
/// (snaplen): a short packet is then not the sender's fault and is not called truncated.
pub fn parse_ipv6(pkt: &[u8], complete: bool) -> Parsed {
    parse_ipv6_keyed(pkt, complete, true)
}

/// [`parse_ipv6`]; without `data_key`, plain data (no ICMPv6) gets no inner key (its hash
/// over the whole packet is most of the cost of reading it).
pub fn parse_ipv6_keyed(pkt: &[u8], complete: bool, data_key: bool) -> Parsed {
    let hdr = match Ipv6HeaderSlice::from_slice(pkt) {
        Ok(h) => h,
        Err(e) => {
            let why = match pkt.first() {
                Some(b) if b >> 4 != 6 => format!("not IPv6 (version nibble {})", b >> 4),
                _ if pkt.len() < 40 => format!("{} bytes: shorter than an IPv6 header", pkt.len()),
                _ => format!("bad IPv6 header: {e}"),
            };
            return Parsed::malformed(why);
        }
    };
    let src = hdr.source_addr();
    let dst = hdr.destination_addr();
    let payload_len = hdr.payload_length();
    let next_header = hdr.next_header().0;
    let hop_limit = hdr.hop_limit();
    let inner = InnerHeader {
        src,
        dst,
        hop_limit,
        next_header,
        payload_len,
    };
    let declared = 40 + usize::from(payload_len);
    let mut issues = Vec::new();
    let mut key_bytes_end = pkt.len().min(declared);
    let truncated = declared > pkt.len();
    let trailing = pkt.len().saturating_sub(declared);
    if trailing > 0 {
        issues.push(format!(
            "{trailing} bytes after the IPv6 packet (payload length {payload_len}, {} bytes in the datagram)",
            pkt.len()
        ));
    }
    if truncated {
        key_bytes_end = pkt.len();
        if complete {
            let why = format!(
                "IPv6 payload length {payload_len} but only {} bytes follow the header: truncated",
                pkt.len() - 40
            );
            let mut p = Parsed::malformed(why);
            p.inner = Some(inner);
            p.inner_key = Some(key(pkt, key_bytes_end));
            return p;
        }
        issues.push("packet cut by the capture's snaplen".into());
    }
    let inner_key = (data_key || next_header == ICMPV6).then(|| key(pkt, key_bytes_end));
    let body = &pkt[40..key_bytes_end];
    let mut parsed = Parsed {
        inner: Some(inner),
        icmp: None,
        kind: Kind::Data {
            src,
            dst,
            hop_limit,
            next_header,
            icmp_type: None,
        },
        trailing,
        issues,
        inner_key,
    };
    if next_header != ICMPV6 {
        return parsed;
    }
    let Some(&ty) = body.first() else {
        parsed.kind = Kind::Malformed {
            why: "ICMPv6 message of 0 bytes".into(),
        };
        return parsed;
    };
    let code = body.get(1).copied().unwrap_or(0);
    let checksum_ok = !truncated && body.len() >= 4 && icmpv6_checksum(&src, &dst, body) == 0;
    let mut icmp = IcmpInfo {
        ty,
        code,
        checksum_ok,
        len: body.len(),
        options: Vec::new(),
        zero_len_option: false,
        option_overrun: false,
    };
    if body.len() >= 4 && !checksum_ok && !truncated {
        parsed.issues.push("ICMPv6 checksum invalid".into());
    }
    let fixed = match ty {
        RS => 8,
        RA => 16,
        NS | NA => 24,
        _ => {
            parsed.kind = match ty {
                1..=4 => Kind::IcmpError {
                    v6: true,
                    icmp_type: ty,
                    code,
                    about: None,
                },
                _ => Kind::Data {
                    src,
                    dst,
                    hop_limit,
                    next_header,
                    icmp_type: Some(ty),
                },
            };
            parsed.icmp = Some(icmp);
            return parsed;
        }
    };
    let name = nd_name(ty);
    if hop_limit != 255 {
        parsed
            .issues
            .push(format!("{name} with hop limit {hop_limit} (must be 255)"));
    }
    if code != 0 {
        parsed.issues.push(format!("{name} with code {code} (must be 0)"));
    }
    if body.len() < fixed {
        parsed.kind = Kind::Malformed {
            why: format!("{name}: ICMPv6 length {} < {fixed}", body.len()),
        };
        parsed.icmp = Some(icmp);
        return parsed;
    }
    read_options(&body[fixed..], &mut icmp, &mut parsed.issues, name);
    let ll = |want: u8| -> Option<[u8; 6]> {
        icmp.options
            .iter()
            .find(|o| o.kind == want && o.len == 1)
            .and_then(|o| o.link_layer)
    };
    parsed.kind = match ty {
        RS => Kind::Rs { slla: ll(1) },
        RA => {
            let u32_at = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            Kind::Ra {
                prefixes: Box::new(icmp.options.iter().filter_map(|o| o.pio.clone()).collect()),
                lifetimes: Box::new(RaLifetimes {
                    router: u16::from_be_bytes([body[6], body[7]]),
                    reachable_ms: u32_at(8),
                    retrans_ms: u32_at(12),
                }),
                dst,
                cur_hop_limit: body[4],
                flags: body[5],
                slla: ll(1),
            }
        }
        NS => Kind::Ns {
            target: addr_at(body, 8),
            slla: ll(1),
        },
        _ => Kind::Na {
            target: addr_at(body, 8),
            flags: body[4],
            tlla: ll(2),
        },
    };
    if let Kind::Na { flags, .. } = parsed.kind {
        if flags & 0x40 != 0 && super::addr::is_multicast(&dst) {
            parsed
                .issues
                .push("NA to a multicast destination with the Solicited flag set".into());
        }
    }
    if let Kind::Ns { target, .. } | Kind::Na { target, .. } = parsed.kind {
        if super::addr::is_multicast(&target) {
            parsed
                .issues
                .push(format!("{name} for a multicast target {target}"));
        }
    }
    parsed.icmp = Some(icmp);
    parsed
}

/// The ND message's name for messages.
pub fn nd_name(ty: u8) -> &'static str {
    match ty {
        RS => "RS",
        RA => "RA",
        NS => "NS",
        NA => "NA",
        _ => "ICMPv6",
    }
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    Ipv6Addr::from(a)
}

/// Walks the option area: type, length in units of 8 bytes. A zero length makes the rest
/// unreadable (RFC 4861 §4.6: the message must be discarded); so does an option running past
/// the end.
fn read_options(mut area: &[u8], icmp: &mut IcmpInfo, issues: &mut Vec<String>, name: &str) {
    while !area.is_empty() {
        let kind = area[0];
        let Some(&len) = area.get(1) else {
            icmp.option_overrun = true;
            issues.push(format!("{name}: one stray byte where an option should start"));
            return;
        };
        if len == 0 {
            icmp.zero_len_option = true;
            icmp.options.push(NdOption {
                kind,
                len,
                link_layer: None,
                pio: None,
            });
            issues.push(format!("{name}: option type {kind} with length 0"));
            return;
        }
        let bytes = usize::from(len) * 8;
        let Some(opt) = area.get(..bytes) else {
            icmp.option_overrun = true;
            issues.push(format!(
                "{name}: option type {kind} of {bytes} bytes runs past the message ({} left)",
                area.len()
            ));
            return;
        };
        let mut o = NdOption {
            kind,
            len,
            link_layer: None,
            pio: None,
        };
        if matches!(kind, 1 | 2) && len == 1 {
            let mut ll = [0u8; 6];
            ll.copy_from_slice(&opt[2..8]);
            o.link_layer = Some(ll);
        }
        if kind == 3 {
            if len == 4 {
                let u32_at = |i: usize| u32::from_be_bytes([opt[i], opt[i + 1], opt[i + 2], opt[i + 3]]);
                o.pio = Some(Pio {
                    len: opt[2],
                    on_link: opt[3] & 0x80 != 0,
                    autonomous: opt[3] & 0x40 != 0,
                    valid: u32_at(4),
                    preferred: u32_at(8),
                    prefix: addr_at(opt, 16),
                });
            } else {
                issues.push(format!("{name}: Prefix Information of length {len} (must be 4)"));
            }
        }
        icmp.options.push(o);
        area = &area[bytes..];
    }
}

/// The ones' complement sum over the IPv6 pseudo-header and `msg`; 0 when `msg`'s checksum
/// field is right (RFC 8200 §8.1).
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u64::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(msg);
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The packet's hash with the hop limit zeroed, over its first `end` bytes.
fn key(pkt: &[u8], end: usize) -> u64 {
    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, &pkt[..7.min(end)]);
    h = fnv1a(h, &[0]);
    if end > 8 {
        h = fnv1a(h, &pkt[8..end]);
    }
    h
}

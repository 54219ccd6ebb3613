//! ICMPv6 (RFC 4443): the checksum, a view over a message, and the two error messages a
//! 6bed4 router sends itself (Time Exceeded, Packet Too Big).

use super::ipv6::{Ipv6Repr, HEADER_LEN, NEXT_HEADER_ICMPV6};
use super::{Result, WireError};
use std::net::Ipv6Addr;

pub const TYPE_DEST_UNREACHABLE: u8 = 1;
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
pub const TYPE_TIME_EXCEEDED: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 128;
pub const TYPE_ECHO_REPLY: u8 = 129;
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
pub const TYPE_ROUTER_ADVERT: u8 = 134;
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;

/// The minimum IPv6 MTU, which is also the 6bed4 tunnel's MTU.
pub const MIN_MTU: usize = 1280;

/// The ICMPv6 checksum over the IPv6 pseudo-header and `message` (with its checksum field
/// as it stands: zero it before computing, leave it to verify).
pub fn checksum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// A view of an ICMPv6 message (the IPv6 payload).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a message of at least the 4-byte ICMPv6 header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let have = buffer.as_ref().len();
        if have < 4 {
            return Err(WireError::Truncated {
                what: "ICMPv6 header",
                need: 4,
                have,
            });
        }
        Ok(Icmpv6Packet { buffer })
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    pub fn checksum_field(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }
    /// Whether the checksum is right for this source and destination.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        checksum(src, dst, self.buffer.as_ref()) == 0
    }
    /// The bytes after the type, code and checksum.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[4..]
    }
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Builds a whole IPv6 packet carrying an ICMPv6 message with a correct checksum.
/// `body` is everything after the 4-byte ICMPv6 header.
pub fn build(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(4 + body.len());
    message.extend_from_slice(&[ty, code, 0, 0]);
    message.extend_from_slice(body);
    let sum = checksum(&src, &dst, &message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    Ipv6Repr {
        src,
        dst,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: 0,
        hop_limit,
    }
    .to_packet(&message)
}

/// How much of the offending packet an error message quotes: as much as fits in the
/// minimum MTU (RFC 4443 §2.4 (c)).
fn quote(invoking: &[u8]) -> &[u8] {
    let room = MIN_MTU - HEADER_LEN - 8;
    &invoking[..invoking.len().min(room)]
}

/// ICMPv6 Time Exceeded, code 0 (hop limit exceeded in transit).
pub fn time_exceeded(src: Ipv6Addr, dst: Ipv6Addr, invoking: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; 4];
    body.extend_from_slice(quote(invoking));
    build(src, dst, 64, TYPE_TIME_EXCEEDED, 0, &body)
}

/// ICMPv6 Packet Too Big with the given MTU.
pub fn packet_too_big(src: Ipv6Addr, dst: Ipv6Addr, mtu: u32, invoking: &[u8]) -> Vec<u8> {
    let mut body = mtu.to_be_bytes().to_vec();
    body.extend_from_slice(quote(invoking));
    build(src, dst, 64, TYPE_PACKET_TOO_BIG, 0, &body)
}

/// Whether an ICMPv6 type is an error message (RFC 4443 §2.1: types below 128). A router
/// never answers an error with an error.
pub const fn is_error(ty: u8) -> bool {
    ty < 128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv6Packet;

    /// The captured RS of spec §9 carries checksum 0x7aae.
    #[test]
    fn checksum_matches_captured_rs() {
        let msg = [0x85, 0x00, 0x7a, 0xae, 0, 0, 0, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 1];
        let src = Ipv6Addr::UNSPECIFIED;
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        assert_eq!(checksum(&src, &dst, &msg), 0);
        let mut zeroed = msg;
        zeroed[2] = 0;
        zeroed[3] = 0;
        assert_eq!(checksum(&src, &dst, &zeroed), 0x7aae);
    }

    #[test]
    fn error_messages_quote_at_most_the_minimum_mtu() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let big = vec![0xAB; 3000];
        let ptb = packet_too_big(src, dst, 1280, &big);
        assert_eq!(ptb.len(), MIN_MTU);
        let p = Ipv6Packet::new_checked(&ptb[..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(p.payload()).unwrap();
        assert_eq!(icmp.msg_type(), TYPE_PACKET_TOO_BIG);
        assert!(icmp.verify_checksum(&src, &dst));
        assert_eq!(&icmp.body()[..4], &1280u32.to_be_bytes());
        let te = time_exceeded(src, dst, &[1, 2, 3]);
        assert_eq!(te.len(), 40 + 8 + 3);
    }
}

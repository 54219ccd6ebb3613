//! The fixed IPv6 header (RFC 8200 §3).

use super::{Result, WireError};
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// ICMPv6's next-header value.
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// A read-only or read-write view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps bytes without checking them; accessors may panic on short input, so use
    /// [`Ipv6Packet::new_checked`] on anything from outside.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps bytes that hold exactly one IPv6 packet: at least a header, version 6, and a
    /// payload length that accounts for every byte (6bed4 carries one packet per datagram,
    /// so trailing bytes are an error, not padding).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "IPv6 header",
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        if self.version() != 6 {
            return Err(WireError::BadVersion(self.version()));
        }
        let declared = usize::from(self.payload_len());
        if declared + HEADER_LEN != b.len() {
            return Err(WireError::LengthMismatch {
                declared,
                actual: b.len(),
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        (u32::from(b[1] & 0x0F) << 16) | (u32::from(b[2]) << 8) | u32::from(b[3])
    }
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }
    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), 8)
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), 24)
    }
    /// The bytes after the fixed header, as far as the payload length says.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(b.len());
        &b[HEADER_LEN..end]
    }
    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[7] = hop_limit;
    }
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The fields of a fixed IPv6 header that 6bed4 cares about (traffic class and flow label
/// are carried as zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: u16,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Ipv6Repr {
        Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
        }
    }

    /// Writes the header into the first 40 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = 0x60;
        buf[1..4].fill(0);
        buf[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        buf[6] = self.next_header;
        buf[7] = self.hop_limit;
        buf[8..24].copy_from_slice(&self.src.octets());
        buf[24..40].copy_from_slice(&self.dst.octets());
    }

    /// A whole packet: this header followed by `payload` (whose length it takes).
    pub fn to_packet(mut self, payload: &[u8]) -> Vec<u8> {
        self.payload_len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        let mut out = vec![0u8; HEADER_LEN + payload.len()];
        self.emit(&mut out);
        out[HEADER_LEN..].copy_from_slice(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_short_wrong_version_and_bad_length() {
        assert!(matches!(
            Ipv6Packet::new_checked(&[0x60u8; 39][..]),
            Err(WireError::Truncated { .. })
        ));
        let mut p = [0u8; 40];
        p[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&p[..]).unwrap_err(),
            WireError::BadVersion(4)
        );
        p[0] = 0x60;
        p[5] = 1; // declares one byte of payload, carries none
        assert!(matches!(
            Ipv6Packet::new_checked(&p[..]),
            Err(WireError::LengthMismatch { .. })
        ));
        p[5] = 0;
        assert!(Ipv6Packet::new_checked(&p[..]).is_ok());
    }

    proptest! {
        #[test]
        fn repr_round_trips(src: [u8; 16], dst: [u8; 16], nh: u8, hl: u8, payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let repr = Ipv6Repr { src: src.into(), dst: dst.into(), next_header: nh, payload_len: 0, hop_limit: hl };
            let bytes = repr.to_packet(&payload);
            let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            let back = Ipv6Repr::parse(&packet);
            prop_assert_eq!(back, Ipv6Repr { payload_len: payload.len() as u16, ..repr });
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(p) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = Ipv6Repr::parse(&p);
                let _ = p.payload();
            }
        }
    }
}

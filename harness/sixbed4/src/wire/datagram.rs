//! What one UDP payload of a 6bed4 tunnel is: a keepalive (empty) or exactly one IPv6 packet.

use super::ipv6::Ipv6Packet;
use super::Result;

/// A classified tunnel datagram.
#[derive(Debug, Clone)]
pub enum Datagram<'a> {
    /// An empty payload: holds the NAT mapping open, carries nothing.
    Keepalive,
    /// One whole IPv6 packet.
    Ipv6(Ipv6Packet<&'a [u8]>),
}

impl<'a> Datagram<'a> {
    /// Classifies a UDP payload; anything that is neither empty nor exactly one IPv6 packet
    /// is an error.
    pub fn parse(payload: &'a [u8]) -> Result<Datagram<'a>> {
        if payload.is_empty() {
            return Ok(Datagram::Keepalive);
        }
        Ok(Datagram::Ipv6(Ipv6Packet::new_checked(payload)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_keepalive_and_junk_is_an_error() {
        assert!(matches!(Datagram::parse(&[]), Ok(Datagram::Keepalive)));
        assert!(Datagram::parse(&[0x60]).is_err());
        assert!(Datagram::parse(&[0x45; 60]).is_err());
    }
}

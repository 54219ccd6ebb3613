//! The checker's own reading of the 6bed4 address layouts (spec §2), written from the spec
//! text and never shared with the `sixbed4` crate: if one side misreads the layout, the
//! other still disagrees and a check fails instead of both agreeing on the same mistake.
//!
//! - Layout C (`current`): `prefix/64 | V0&0xFC V1 V2 V3 | port(be) | (V0&3)<<6 | lanip(14 bits)`.
//! - Layout V (`v01`): IID `[(port&0xFF)^0x02, port>>8, V0, 0xFF, 0xFE, V1, V2, V3]`.
//! - Link-layer address (both): `[port&0xFF, port>>8, V0, V1, V2, V3]`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// The two wire profiles of spec §1. Every decision that depends on the profile takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Profile {
    /// Port 25790, layout C, PIO length 114.
    #[default]
    Current,
    /// The 2012 text: port 25788, layout V, PIO length 64, even ports only.
    V01,
}

impl Profile {
    /// The router's UDP port.
    pub fn port(self) -> u16 {
        match self {
            Profile::Current => 25790,
            Profile::V01 => 25788,
        }
    }

    /// The Prefix Information length the router advertises.
    pub fn pio_len(self) -> u8 {
        match self {
            Profile::Current => 114,
            Profile::V01 => 64,
        }
    }

    /// The profile whose router port this is.
    pub fn from_port(port: u16) -> Option<Profile> {
        match port {
            25790 => Some(Profile::Current),
            25788 => Some(Profile::V01),
            _ => None,
        }
    }

    /// The name used in the spec and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Current => "current",
            Profile::V01 => "v01",
        }
    }

    /// Whether `port` may appear in an address of this profile (port 0 never; odd ports
    /// not in `v01`, whose layout puts the port's low bit on the group bit).
    pub fn port_valid(self, port: u16) -> bool {
        port != 0 && (self == Profile::Current || port.is_multiple_of(2))
    }

    /// Decodes an address in this profile's layout; None when the layout cannot hold it
    /// (layout V needs `ff:fe` in the middle of the IID).
    pub fn decode(self, addr: &Ipv6Addr) -> Option<SocketAddrV4> {
        match self {
            Profile::Current => Some(decode_c(addr).0),
            Profile::V01 => decode_v(addr),
        }
    }
}

/// Layout C: the address of `ep` with local id `lanip` (14 bits; higher bits are dropped)
/// under the /64 `prefix` (its last 8 bytes are ignored).
pub fn encode_c(prefix: &Ipv6Addr, ep: SocketAddrV4, lanip: u16) -> Ipv6Addr {
    let mut b = prefix.octets();
    let v = ep.ip().octets();
    let port = ep.port().to_be_bytes();
    b[8] = v[0] & 0xFC;
    b[9] = v[1];
    b[10] = v[2];
    b[11] = v[3];
    b[12] = port[0];
    b[13] = port[1];
    let lanip = lanip & 0x3FFF;
    b[14] = ((v[0] & 0x03) << 6) | (lanip >> 8) as u8;
    b[15] = (lanip & 0xFF) as u8;
    Ipv6Addr::from(b)
}

/// Layout C backwards: the embedded IPv4:port and the 14-bit local id. Every address
/// decodes (the layout has no redundancy), so consistency is judged by the caller.
pub fn decode_c(addr: &Ipv6Addr) -> (SocketAddrV4, u16) {
    let b = addr.octets();
    let v0 = (b[8] & 0xFC) | (b[14] >> 6);
    let ip = Ipv4Addr::new(v0, b[9], b[10], b[11]);
    let port = u16::from_be_bytes([b[12], b[13]]);
    let lanip = (u16::from(b[14] & 0x3F) << 8) | u16::from(b[15]);
    (SocketAddrV4::new(ip, port), lanip)
}

/// Layout V: the address of `ep` under the /64 `prefix`.
pub fn encode_v(prefix: &Ipv6Addr, ep: SocketAddrV4) -> Ipv6Addr {
    let mut b = prefix.octets();
    let v = ep.ip().octets();
    let [hi, lo] = ep.port().to_be_bytes();
    b[8..16].copy_from_slice(&[lo ^ 0x02, hi, v[0], 0xFF, 0xFE, v[1], v[2], v[3]]);
    Ipv6Addr::from(b)
}

/// Layout V backwards; None unless the IID has the `ff:fe` marker.
pub fn decode_v(addr: &Ipv6Addr) -> Option<SocketAddrV4> {
    let b = addr.octets();
    if b[11] != 0xFF || b[12] != 0xFE {
        return None;
    }
    let port = u16::from_be_bytes([b[9], b[8] ^ 0x02]);
    Some(SocketAddrV4::new(Ipv4Addr::new(b[10], b[13], b[14], b[15]), port))
}

/// Layout V's byte positions read without checking the `ff:fe` marker: what an
/// implementation that applies the v01 layout to a `current` address gets (spec §8: the
/// C reference's garbage bypass endpoints such as `0.64.64.1:34962`).
pub fn decode_v_raw(addr: &Ipv6Addr) -> SocketAddrV4 {
    let b = addr.octets();
    SocketAddrV4::new(
        Ipv4Addr::new(b[10], b[13], b[14], b[15]),
        u16::from_be_bytes([b[9], b[8] ^ 0x02]),
    )
}

/// The six-byte link-layer address of an endpoint (spec §2.3).
pub fn link_layer(ep: SocketAddrV4) -> [u8; 6] {
    let v = ep.ip().octets();
    let [hi, lo] = ep.port().to_be_bytes();
    [lo, hi, v[0], v[1], v[2], v[3]]
}

/// The endpoint a link-layer address names.
pub fn from_link_layer(ll: [u8; 6]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(ll[2], ll[3], ll[4], ll[5]),
        u16::from_le_bytes([ll[0], ll[1]]),
    )
}

/// A link-layer address as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_ll(ll: &[u8; 6]) -> String {
    ll.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The top 64 bits of an address, as an address with a zero IID (the /64 it lives in).
pub fn prefix64(addr: &Ipv6Addr) -> Ipv6Addr {
    let mut b = addr.octets();
    b[8..].fill(0);
    Ipv6Addr::from(b)
}

/// `fe80::/64` (the tunnel link's link-local prefix; the router is `fe80::`).
pub fn is_link_local(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xFFC0 == 0xFE80
}

/// Whether the address is multicast (`ff00::/8`).
pub fn is_multicast(addr: &Ipv6Addr) -> bool {
    addr.octets()[0] == 0xFF
}

/// Which layout (if any) makes `addr` name `ep`: used to find 6bed4 flows on unknown ports
/// and to say which layout a sender used. Returns the profile whose layout matched exactly.
pub fn layout_naming(addr: &Ipv6Addr, ep: SocketAddrV4) -> Option<Profile> {
    if decode_c(addr).0 == ep {
        return Some(Profile::Current);
    }
    if decode_v(addr) == Some(ep) {
        return Some(Profile::V01);
    }
    None
}

/// A loose match for discovery only: the IID carries `ep`'s IPv4 address and port in
/// layout C's positions, ignoring where the first octet's two low bits went. This finds
/// 6bed4 traffic written with a naive layout (IPv4 octets verbatim in bytes 8..11), which
/// the checks then report as inconsistent instead of never seeing it. 46 matching bits keep
/// false positives out.
pub fn loosely_names(addr: &Ipv6Addr, ep: SocketAddrV4) -> bool {
    let b = addr.octets();
    let v = ep.ip().octets();
    b[8] & 0xFC == v[0] & 0xFC && b[9..12] == v[1..4] && b[12..14] == ep.port().to_be_bytes()
}

/// Private, shared, loopback and link-local IPv4 space: an outer address there sits behind
/// a NAT (or in a lab LAN), so it never equals the mapping embedded in a 6bed4 address.
pub fn is_private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || (o[0] == 100 && (o[1] & 0xC0) == 64)
}

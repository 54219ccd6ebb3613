//! 6bed4 address layouts: where a peer's external IPv4 address and UDP port sit inside its
//! IPv6 address and inside its link-layer address.
//!
//! Every 6bed4 address says where its owner can be reached over IPv4; these functions are
//! the two directions of that statement for both profiles (spec §2).

use crate::profile::Profile;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// The largest local identifier ("lanip") layout C can hold: 14 bits.
pub const MAX_LANIP: u16 = 0x3FFF;

/// Why an address cannot be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("UDP port 0 cannot appear in a 6bed4 address")]
    PortZero,
    #[error("odd UDP port {0} cannot appear in a v01 address")]
    OddPort(u16),
    #[error("local id {0} does not fit in 14 bits")]
    LanipTooLarge(u16),
    #[error("interface identifier is not a Modified EUI-64 (no ff:fe in the middle)")]
    NotEui64,
}

/// What a 6bed4 address says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// The top 64 bits (the router's prefix).
    pub prefix: [u8; 8],
    /// The external IPv4 address and UDP port of the address's owner.
    pub endpoint: SocketAddrV4,
    /// The local id (layout C; 0 in layout V, which has none).
    pub lanip: u16,
}

/// Layout C interface identifier (`current`).
pub fn layout_c_iid(endpoint: SocketAddrV4, lanip: u16) -> Result<[u8; 8], AddrError> {
    if endpoint.port() == 0 {
        return Err(AddrError::PortZero);
    }
    if lanip > MAX_LANIP {
        return Err(AddrError::LanipTooLarge(lanip));
    }
    let v = endpoint.ip().octets();
    let p = endpoint.port().to_be_bytes();
    Ok([
        v[0] & 0xFC,
        v[1],
        v[2],
        v[3],
        p[0],
        p[1],
        ((v[0] & 0x03) << 6) | (lanip >> 8) as u8,
        (lanip & 0xFF) as u8,
    ])
}

/// Reads a layout C interface identifier: `(endpoint, lanip)`.
pub fn layout_c_decode(iid: [u8; 8]) -> Result<(SocketAddrV4, u16), AddrError> {
    let v0 = (iid[0] & 0xFC) | (iid[6] >> 6);
    let ip = Ipv4Addr::new(v0, iid[1], iid[2], iid[3]);
    let port = u16::from_be_bytes([iid[4], iid[5]]);
    if port == 0 {
        return Err(AddrError::PortZero);
    }
    let lanip = (u16::from(iid[6] & 0x3F) << 8) | u16::from(iid[7]);
    Ok((SocketAddrV4::new(ip, port), lanip))
}

/// Layout V interface identifier (`v01`): the Modified EUI-64 of the link-layer address.
pub fn layout_v_iid(endpoint: SocketAddrV4) -> Result<[u8; 8], AddrError> {
    check_port(Profile::V01, endpoint.port())?;
    let v = endpoint.ip().octets();
    let p = endpoint.port();
    Ok([
        ((p & 0xFF) as u8) ^ 0x02,
        (p >> 8) as u8,
        v[0],
        0xFF,
        0xFE,
        v[1],
        v[2],
        v[3],
    ])
}

/// Reads a layout V interface identifier.
pub fn layout_v_decode(iid: [u8; 8]) -> Result<SocketAddrV4, AddrError> {
    if iid[3] != 0xFF || iid[4] != 0xFE {
        return Err(AddrError::NotEui64);
    }
    let port = u16::from(iid[0] ^ 0x02) | (u16::from(iid[1]) << 8);
    check_port(Profile::V01, port)?;
    Ok(SocketAddrV4::new(
        Ipv4Addr::new(iid[2], iid[5], iid[6], iid[7]),
        port,
    ))
}

fn check_port(profile: Profile, port: u16) -> Result<(), AddrError> {
    match profile {
        _ if port == 0 => Err(AddrError::PortZero),
        Profile::V01 if port % 2 == 1 => Err(AddrError::OddPort(port)),
        _ => Ok(()),
    }
}

/// The interface identifier of `endpoint` in `profile` (lanip is ignored by `v01`).
pub fn iid(profile: Profile, endpoint: SocketAddrV4, lanip: u16) -> Result<[u8; 8], AddrError> {
    match profile {
        Profile::Current => layout_c_iid(endpoint, lanip),
        Profile::V01 => layout_v_iid(endpoint),
    }
}

/// Builds the 6bed4 address `prefix` + identifier of `endpoint`.
pub fn encode(
    profile: Profile,
    prefix: [u8; 8],
    endpoint: SocketAddrV4,
    lanip: u16,
) -> Result<Ipv6Addr, AddrError> {
    Ok(join(prefix, iid(profile, endpoint, lanip)?))
}

/// Reads a 6bed4 address of `profile`.
pub fn decode(profile: Profile, address: &Ipv6Addr) -> Result<Decoded, AddrError> {
    let (prefix, iid) = split(address);
    let (endpoint, lanip) = match profile {
        Profile::Current => layout_c_decode(iid)?,
        Profile::V01 => (layout_v_decode(iid)?, 0),
    };
    Ok(Decoded {
        prefix,
        endpoint,
        lanip,
    })
}

/// Joins a /64 prefix and an interface identifier.
pub fn join(prefix: [u8; 8], iid: [u8; 8]) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&prefix);
    b[8..].copy_from_slice(&iid);
    Ipv6Addr::from(b)
}

/// Splits an address into its /64 prefix and interface identifier.
pub fn split(address: &Ipv6Addr) -> ([u8; 8], [u8; 8]) {
    let o = address.octets();
    let mut prefix = [0u8; 8];
    let mut iid = [0u8; 8];
    prefix.copy_from_slice(&o[..8]);
    iid.copy_from_slice(&o[8..]);
    (prefix, iid)
}

/// The six-byte link-layer address of an endpoint (both profiles).
pub fn link_layer(endpoint: SocketAddrV4) -> [u8; 6] {
    let v = endpoint.ip().octets();
    let p = endpoint.port();
    [(p & 0xFF) as u8, (p >> 8) as u8, v[0], v[1], v[2], v[3]]
}

/// The endpoint a link-layer address stands for.
pub fn from_link_layer(lla: [u8; 6]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(lla[2], lla[3], lla[4], lla[5]),
        u16::from(lla[0]) | (u16::from(lla[1]) << 8),
    )
}

/// Whether the top 64 bits of `address` are `fe80::/64`.
pub fn is_link_local(address: &Ipv6Addr) -> bool {
    address.octets()[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::parse_prefix64;
    use proptest::prelude::*;

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// Spec §2.4, every row.
    #[test]
    fn test_vectors() {
        type Row = (Profile, &'static str, &'static str, u16, &'static str, [u8; 6]);
        let rows: &[Row] = &[
            (
                Profile::Current,
                "fc64:bed:9188:1::/64",
                "145.136.0.2:55796",
                1,
                "fc64:bed:9188:1:9088:2:d9f4:4001",
                [0xf4, 0xd9, 0x91, 0x88, 0x00, 0x02],
            ),
            (
                Profile::Current,
                "fc64:bed:9188:1::/64",
                "145.136.0.1:25790",
                0,
                "fc64:bed:9188:1:9088:1:64be:4000",
                [0xbe, 0x64, 0x91, 0x88, 0x00, 0x01],
            ),
            (
                Profile::Current,
                "2001:db8:6bed:4::/64",
                "203.0.113.7:40000",
                1,
                "2001:db8:6bed:4:c800:7107:9c40:c001",
                [0x40, 0x9c, 0xcb, 0x00, 0x71, 0x07],
            ),
            (
                Profile::Current,
                "2001:db8:6bed:4::/64",
                "198.51.100.254:65535",
                16383,
                "2001:db8:6bed:4:c433:64fe:ffff:bfff",
                [0xff, 0xff, 0xc6, 0x33, 0x64, 0xfe],
            ),
            (
                Profile::Current,
                "2001:db8:6bed:4::/64",
                "192.0.2.1:1",
                2,
                "2001:db8:6bed:4:c000:201:1:2",
                [0x01, 0x00, 0xc0, 0x00, 0x02, 0x01],
            ),
            (
                Profile::V01,
                "2001:67c:127c::/64",
                "145.136.0.1:25788",
                0,
                "2001:67c:127c:0:be64:91ff:fe88:1",
                [0xbc, 0x64, 0x91, 0x88, 0x00, 0x01],
            ),
            (
                Profile::V01,
                "2001:67c:127c::/64",
                "203.0.113.7:40000",
                0,
                "2001:67c:127c:0:429c:cbff:fe00:7107",
                [0x40, 0x9c, 0xcb, 0x00, 0x71, 0x07],
            ),
            (
                Profile::V01,
                "fe80::/64",
                "198.51.100.10:50000",
                0,
                "fe80::52c3:c6ff:fe33:640a",
                [0x50, 0xc3, 0xc6, 0x33, 0x64, 0x0a],
            ),
        ];
        for &(profile, prefix, endpoint, lanip, address, lla) in rows {
            let prefix = parse_prefix64(prefix).unwrap();
            let endpoint = ep(endpoint);
            let address: Ipv6Addr = address.parse().unwrap();
            assert_eq!(
                encode(profile, prefix, endpoint, lanip).unwrap(),
                address,
                "{endpoint}"
            );
            let d = decode(profile, &address).unwrap();
            assert_eq!((d.prefix, d.endpoint, d.lanip), (prefix, endpoint, lanip));
            assert_eq!(link_layer(endpoint), lla);
            assert_eq!(from_link_layer(lla), endpoint);
        }
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert_eq!(layout_c_iid(ep("1.2.3.4:0"), 1), Err(AddrError::PortZero));
        assert_eq!(
            layout_c_iid(ep("1.2.3.4:1"), 16384),
            Err(AddrError::LanipTooLarge(16384))
        );
        assert_eq!(layout_v_iid(ep("1.2.3.4:3")), Err(AddrError::OddPort(3)));
        assert_eq!(layout_v_iid(ep("1.2.3.4:0")), Err(AddrError::PortZero));
        assert_eq!(
            layout_v_decode([0, 0, 1, 0, 0, 1, 2, 3]),
            Err(AddrError::NotEui64)
        );
        // A layout C identifier with a zero port field.
        assert_eq!(layout_c_decode([0; 8]), Err(AddrError::PortZero));
    }

    proptest! {
        #[test]
        fn layout_c_round_trips(ip: u32, port in 1u16.., lanip in 0u16..=MAX_LANIP, prefix: [u8; 8]) {
            let e = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            let a = encode(Profile::Current, prefix, e, lanip).unwrap();
            let d = decode(Profile::Current, &a).unwrap();
            prop_assert_eq!((d.prefix, d.endpoint, d.lanip), (prefix, e, lanip));
            // U/L and group bits of the identifier stay clear in layout C.
            prop_assert_eq!(a.octets()[8] & 0x03, 0);
        }

        #[test]
        fn layout_v_round_trips(ip: u32, half in 1u16..=32767, prefix: [u8; 8]) {
            let e = SocketAddrV4::new(Ipv4Addr::from(ip), half * 2);
            let a = encode(Profile::V01, prefix, e, 0).unwrap();
            prop_assert_eq!(decode(Profile::V01, &a).unwrap().endpoint, e);
        }

        #[test]
        fn link_layer_round_trips(ip: u32, port: u16) {
            let e = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            prop_assert_eq!(from_link_layer(link_layer(e)), e);
        }
    }

    /// The edge cases the spec names: all four values of V0's low bits, ports 1 and 65535,
    /// lanip 0 and 16383, in both layouts.
    #[test]
    fn edge_cases_round_trip_exactly() {
        for low in 0u8..4 {
            for port in [1u16, 2, 65534, 65535] {
                for lanip in [0u16, 1, 16383] {
                    let e = SocketAddrV4::new(Ipv4Addr::new(0xC8 | low, 0, 113, 7), port);
                    let a = encode(Profile::Current, [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0], e, lanip).unwrap();
                    let d = decode(Profile::Current, &a).unwrap();
                    assert_eq!((d.endpoint, d.lanip), (e, lanip));
                    if port % 2 == 0 {
                        let a = encode(Profile::V01, [0; 8], e, 0).unwrap();
                        assert_eq!(decode(Profile::V01, &a).unwrap().endpoint, e);
                    }
                }
            }
        }
    }
}

//! The two 6bed4 wire profiles seen in the wild.
//!
//! Every codec, daemon and check takes the profile as a parameter; nothing hard-codes one.
//! `current` is what the public C reference speaks today; `v01` is the 2012 text of the spec.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A 6bed4 wire profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Router port 25790, address layout C, RA prefixes of length 114.
    #[default]
    Current,
    /// Router port 25788, address layout V (Modified EUI-64 of the link-layer address),
    /// RA prefixes of length 64, even UDP ports only.
    V01,
}

impl Profile {
    /// The router's well-known UDP port.
    pub const fn router_port(self) -> u16 {
        match self {
            Profile::Current => 25790,
            Profile::V01 => 25788,
        }
    }

    /// The prefix length the router puts in the on-link Prefix Information option.
    pub const fn pio_prefix_len(self) -> u8 {
        match self {
            // 64 bits of router prefix + 32 of IPv4 + 16 of port + the 2 moved low bits of V0.
            Profile::Current => 114,
            Profile::V01 => 64,
        }
    }

    /// Whether a UDP port may appear in a 6bed4 address of this profile.
    pub const fn port_valid(self, port: u16) -> bool {
        match self {
            Profile::Current => port != 0,
            // The port's low bit lands on the EUI-64 group bit, so it must be 0.
            Profile::V01 => port != 0 && port.is_multiple_of(2),
        }
    }

    /// The router /64 used when none is configured.
    ///
    /// `current`: `fc64:0bed:<router IPv4 as two groups>::/64`. `v01`: the former public
    /// prefix `2001:67c:127c::/64`.
    pub fn default_prefix(self, router: Ipv4Addr) -> [u8; 8] {
        match self {
            Profile::Current => {
                let o = router.octets();
                [0xfc, 0x64, 0x0b, 0xed, o[0], o[1], o[2], o[3]]
            }
            Profile::V01 => [0x20, 0x01, 0x06, 0x7c, 0x12, 0x7c, 0, 0],
        }
    }

    /// The name used on command lines and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Current => "current",
            Profile::V01 => "v01",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A profile name that is neither `current` nor `v01`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?}: expected \"current\" or \"v01\"")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "current" => Ok(Profile::Current),
            "v01" => Ok(Profile::V01),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

/// Renders the top 64 bits of an address as `p:p:p:p::/64`.
pub fn prefix_to_string(prefix: [u8; 8]) -> String {
    format!("{}/64", prefix_addr(prefix))
}

/// The address whose top 64 bits are `prefix` and whose bottom 64 bits are zero.
pub fn prefix_addr(prefix: [u8; 8]) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&prefix);
    Ipv6Addr::from(b)
}

/// A `/64` given on a command line: `2001:db8:6bed:4::/64`.
pub fn parse_prefix64(s: &str) -> Result<[u8; 8], String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("expected <ipv6-prefix>/64, found {s:?}"))?;
    if len != "64" {
        return Err(format!("the router prefix must be a /64, found /{len}"));
    }
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| format!("expected an IPv6 prefix, found {addr:?}"))?;
    let o = addr.octets();
    if o[8..].iter().any(|&b| b != 0) {
        return Err(format!("bits past /64 must be zero in {s:?}"));
    }
    let mut p = [0u8; 8];
    p.copy_from_slice(&o[..8]);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_prefix_lengths_per_profile() {
        assert_eq!(Profile::Current.router_port(), 25790);
        assert_eq!(Profile::V01.router_port(), 25788);
        assert_eq!(Profile::Current.pio_prefix_len(), 114);
        assert_eq!(Profile::V01.pio_prefix_len(), 64);
        assert!(Profile::Current.port_valid(1) && Profile::Current.port_valid(65535));
        assert!(!Profile::Current.port_valid(0));
        assert!(!Profile::V01.port_valid(25789) && Profile::V01.port_valid(25788));
    }

    #[test]
    fn default_prefix_embeds_router_ipv4() {
        let p = Profile::Current.default_prefix(Ipv4Addr::new(145, 136, 0, 1));
        assert_eq!(prefix_to_string(p), "fc64:bed:9188:1::/64");
    }

    #[test]
    fn prefix_parsing_rejects_non_64() {
        assert!(parse_prefix64("2001:db8::/48").is_err());
        assert!(parse_prefix64("2001:db8::1/64").is_err());
        assert!(parse_prefix64("nonsense").is_err());
        assert_eq!(
            parse_prefix64("2001:db8:6bed:4::/64").unwrap(),
            [0x20, 0x01, 0x0d, 0xb8, 0x6b, 0xed, 0, 4]
        );
        assert_eq!("v01".parse::<Profile>().unwrap(), Profile::V01);
        assert!("v02".parse::<Profile>().is_err());
    }
}

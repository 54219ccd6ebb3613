//! Wire formats, in the smoltcp style: a zero-copy view over bytes (`Ipv6Packet`,
//! `Icmpv6Packet`) plus a parsed representation (`Ipv6Repr`, `NdRepr`) with `parse` and
//! `emit` that round-trip exactly.
//!
//! Everything here reads untrusted bytes from the network: every length is checked before
//! it is used, and every failure is a [`WireError`] the daemons count, never a panic.

pub mod datagram;
pub mod icmpv6;
pub mod ipv6;
pub mod nd;

pub use datagram::Datagram;
pub use icmpv6::Icmpv6Packet;
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use nd::{NdRepr, PrefixInfo};

/// Why bytes were not accepted. `reason()` names the counter a daemon bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("IP version {0}, expected 6")]
    BadVersion(u8),
    #[error("IPv6 payload length {declared} + 40 does not match the {actual} bytes carried")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("next header {0}, expected ICMPv6 (58)")]
    NotIcmpv6(u8),
    #[error("ICMPv6 checksum invalid")]
    BadChecksum,
    #[error("Neighbor Discovery with hop limit {0}, expected 255")]
    BadHopLimit(u8),
    #[error("ICMPv6 type {ty} with code {code}, expected 0")]
    BadCode { ty: u8, code: u8 },
    #[error("ICMPv6 type {0} is not Neighbor Discovery")]
    NotNd(u8),
    #[error("option with length 0")]
    ZeroLengthOption,
    #[error("option runs past the end of the message")]
    OptionOverflow,
    #[error("option type {kind} with length {len} (in 8-byte units) is malformed")]
    BadOptionLength { kind: u8, len: u8 },
    #[error("prefix length {0} is larger than 128")]
    BadPrefixLength(u8),
    #[error("Neighbor Discovery message is invalid: {0}")]
    InvalidNd(&'static str),
}

impl WireError {
    /// A short, stable name for counters and events.
    pub const fn reason(&self) -> &'static str {
        match self {
            WireError::Truncated { .. } => "truncated",
            WireError::BadVersion(_) => "bad_version",
            WireError::LengthMismatch { .. } => "length_mismatch",
            WireError::NotIcmpv6(_) => "not_icmpv6",
            WireError::BadChecksum => "bad_checksum",
            WireError::BadHopLimit(_) => "bad_hop_limit",
            WireError::BadCode { .. } => "bad_code",
            WireError::NotNd(_) => "not_nd",
            WireError::ZeroLengthOption => "zero_length_option",
            WireError::OptionOverflow => "option_overflow",
            WireError::BadOptionLength { .. } => "bad_option_length",
            WireError::BadPrefixLength(_) => "bad_prefix_length",
            WireError::InvalidNd(_) => "invalid_nd",
        }
    }
}

pub type Result<T> = core::result::Result<T, WireError>;

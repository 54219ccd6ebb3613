//! Scalar values of the topology language and their text forms: IPv4 subnets, durations,
//! rates and port ranges.
//!
//! Each type parses exactly what its `Display` writes, so that `Topology::to_toml` round-trips
//! without loss: durations and rates are kept as integers (nanoseconds, bits per second) and
//! written in the largest unit that represents them exactly.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Why a value's text could not be parsed, in the lab's "expected X, found Y" form.
///
/// Kept as two parts so that the parser can place them in a `file:line:col` diagnostic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    /// What a valid value looks like.
    pub expected: String,
    /// What the text contained instead.
    pub found: String,
}

impl ValueError {
    fn new(expected: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

impl std::error::Error for ValueError {}

/// Reads a value through its `FromStr` from a TOML string, so that a bad value is reported
/// at its own position with the parser's own "expected, found" message.
fn deserialize_text<'de, D, T>(deserializer: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ValueError>,
{
    struct TextVisitor<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = ValueError>> Visitor<'_> for TextVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(|e: ValueError| E::custom(e))
        }
    }
    deserializer.deserialize_str(TextVisitor(expecting, std::marker::PhantomData))
}

// ---------------------------------------------------------------------------------------------
// IPv4 addresses and subnets
// ---------------------------------------------------------------------------------------------

const ADDR_EXPECTED: &str = "an IPv4 address such as \"198.51.100.1\"";

/// Parses an IPv4 address with the lab's error message (std's says only "invalid IPv4 address
/// syntax", without showing the text).
pub fn parse_ipv4(text: &str) -> Result<Ipv4Addr, ValueError> {
    text.parse()
        .map_err(|_| ValueError::new(ADDR_EXPECTED, format!("{text:?}")))
}

/// An IPv4 address read from a TOML string (std's `Ipv4Addr` deserializer has no position-
/// friendly message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrText(pub Ipv4Addr);

impl FromStr for AddrText {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        parse_ipv4(s).map(AddrText)
    }
}

impl<'de> Deserialize<'de> for AddrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, ADDR_EXPECTED)
    }
}

/// An IPv4 network: a network address and a prefix length, host bits zero.
///
/// Host bits are rejected rather than silently cleared: `10.0.1.1/24` in a topology is far
/// more often a typo for an address than a deliberate way to write `10.0.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

const NET_EXPECTED: &str = "an IPv4 subnet such as \"10.0.1.0/24\"";

impl Ipv4Net {
    /// The network `addr/len`; fails when `len > 32` or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, ValueError> {
        if len > 32 {
            return Err(ValueError::new("a prefix length in 0..=32", format!("/{len}")));
        }
        let net = Self::truncating(addr, len);
        if net.addr != addr {
            return Err(ValueError::new(
                format!("a network address with the host bits zero ({net})"),
                format!("{addr}/{len}"),
            ));
        }
        Ok(net)
    }

    /// The network of length `len` (clamped to 32) that contains `addr`.
    pub fn truncating(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The netmask as an address (`255.255.255.0` for a /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.len))
    }

    /// The broadcast address (the last address of the network).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.len))
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.len) == u32::from(self.addr)
    }

    /// Whether the two networks share at least one address (one contains the other).
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let len = self.len.min(other.len);
        u32::from(self.addr) & mask(len) == u32::from(other.addr) & mask(len)
    }

    /// Whether `addr` may be given to an interface: inside the network and, for networks
    /// with room for it (/30 and shorter), neither the network nor the broadcast address.
    /// /31 (RFC 3021) and /32 networks use every address.
    pub fn is_host_address(&self, addr: Ipv4Addr) -> bool {
        self.contains(addr) && (self.len >= 31 || (addr != self.addr && addr != self.broadcast()))
    }
}

fn mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - l),
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::new(NET_EXPECTED, format!("{s:?}"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let len: u8 = len.parse().map_err(|_| bad())?;
        Ipv4Net::new(addr, len)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, NET_EXPECTED)
    }
}

// ---------------------------------------------------------------------------------------------
// IPv6 addresses and subnets (native IPv6 on dual-stack segments)
// ---------------------------------------------------------------------------------------------

const ADDR6_EXPECTED: &str = "an IPv6 address such as \"2001:db8:6::1\"";
const NET6_EXPECTED: &str = "an IPv6 subnet such as \"2001:db8:6::/64\"";

/// An IPv6 address read from a TOML string, with a position-friendly message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Addr6Text(pub Ipv6Addr);

impl FromStr for Addr6Text {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        s.parse()
            .map(Addr6Text)
            .map_err(|_| ValueError::new(ADDR6_EXPECTED, format!("{s:?}")))
    }
}

impl<'de> Deserialize<'de> for Addr6Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, ADDR6_EXPECTED)
    }
}

/// An IPv6 network: a network address and a prefix length, host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Net {
    addr: Ipv6Addr,
    len: u8,
}

fn mask6(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

impl Ipv6Net {
    /// The network `addr/len`; fails when `len > 128` or `addr` has host bits set.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, ValueError> {
        if len > 128 {
            return Err(ValueError::new("a prefix length in 0..=128", format!("/{len}")));
        }
        let net = Ipv6Addr::from(u128::from(addr) & mask6(len));
        if net != addr {
            return Err(ValueError::new(
                format!("a network address with the host bits zero ({net}/{len})"),
                format!("{addr}/{len}"),
            ));
        }
        Ok(Self { addr, len })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        u128::from(addr) & mask6(self.len) == u128::from(self.addr)
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Ipv6Net) -> bool {
        let m = mask6(self.len.min(other.len));
        u128::from(self.addr) & m == u128::from(other.addr) & m
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Net {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::new(NET6_EXPECTED, format!("{s:?}"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let len: u8 = len.parse().map_err(|_| bad())?;
        Ipv6Net::new(addr, len)
    }
}

impl<'de> Deserialize<'de> for Ipv6Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, NET6_EXPECTED)
    }
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

const DURATION_EXPECTED: &str = "a duration such as \"20ms\", \"1.5s\" or \"2m\" (units ns, us, ms, s, m, h)";

const NANOS_PER_UNIT: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses `"20ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"250us"`, `"10ns"` (and `"0"`), exactly: the
/// decimal is evaluated in integers, so `"0.1s"` is 100 ms to the nanosecond.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let bad = |expected: &str| ValueError::new(expected, format!("{text:?}"));
    if text.starts_with('-') {
        return Err(bad("a duration that is not negative"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = if unit == "µs" { "us" } else { unit };
    let per_unit = NANOS_PER_UNIT
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, n)| *n)
        .ok_or_else(|| bad(DURATION_EXPECTED))?;
    let nanos = decimal_times(number, per_unit).map_err(|why| match why {
        DecimalError::Syntax => bad(DURATION_EXPECTED),
        DecimalError::TooFine => bad("a duration in whole nanoseconds"),
        DecimalError::TooLarge => bad("a duration below 2^64 seconds"),
    })?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("a duration below 2^64 seconds"))?;
    // The remainder is below 10^9, so it fits.
    let sub = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// Writes a duration in the largest unit that represents it exactly (`1500ms`, `2m`, `0s`);
/// [`parse_duration`] reads it back to the same value.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (unit, per) in NANOS_PER_UNIT {
        if divides(per, nanos) {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{nanos}ns")
}

/// A duration read from a TOML string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationText(pub Duration);

impl FromStr for DurationText {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        parse_duration(s).map(DurationText)
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, DURATION_EXPECTED)
    }
}

/// Whether `d` divides `n` (`d > 0`); spelled out because `u128::is_multiple_of` needs a newer
/// Rust than the workspace's minimum.
fn divides(d: u128, n: u128) -> bool {
    n / d * d == n
}

enum DecimalError {
    Syntax,
    TooFine,
    TooLarge,
}

/// `number * per_unit` for a decimal `number` (digits, optionally `.` and more digits),
/// exactly, in integers; fails if the product is not a whole number.
fn decimal_times(number: &str, per_unit: u128) -> Result<u128, DecimalError> {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::Syntax);
    }
    let int_value: u128 = int.trim_start_matches('0').parse().or_else(|_| {
        if int.bytes().all(|b| b == b'0') {
            Ok(0)
        } else {
            Err(DecimalError::TooLarge)
        }
    })?;
    let mut total = int_value.checked_mul(per_unit).ok_or(DecimalError::TooLarge)?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecimalError::Syntax);
        }
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            if frac.len() > 30 {
                return Err(DecimalError::TooFine);
            }
            let digits: u128 = frac.parse().map_err(|_| DecimalError::Syntax)?;
            let scale = 10u128.pow(frac.len() as u32);
            let scaled = digits.checked_mul(per_unit).ok_or(DecimalError::TooFine)?;
            if !divides(scale, scaled) {
                return Err(DecimalError::TooFine);
            }
            total = total.checked_add(scaled / scale).ok_or(DecimalError::TooLarge)?;
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Rates
// ---------------------------------------------------------------------------------------------

const RATE_EXPECTED: &str =
    "a rate such as \"512kbit\", \"10mbit\" or \"1gbit\" (units bit, kbit, mbit, gbit, tbit)";

const BITS_PER_UNIT: [(&str, u128); 5] = [
    ("tbit", 1_000_000_000_000),
    ("gbit", 1_000_000_000),
    ("mbit", 1_000_000),
    ("kbit", 1_000),
    ("bit", 1),
];

/// Parses a rate in bits per second: `"10mbit"`, `"512kbit"`, `"1.5gbit"` (decimal units,
/// as `tc` uses them; there is deliberately no byte unit, since `tc`'s `bps` means bytes).
pub fn parse_rate(text: &str) -> Result<u64, ValueError> {
    let bad = |expected: &str| ValueError::new(expected, format!("{text:?}"));
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.to_ascii_lowercase();
    let per_unit = BITS_PER_UNIT
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, n)| *n)
        .ok_or_else(|| bad(RATE_EXPECTED))?;
    let bits = decimal_times(number, per_unit).map_err(|why| match why {
        DecimalError::Syntax => bad(RATE_EXPECTED),
        DecimalError::TooFine => bad("a rate in whole bits per second"),
        DecimalError::TooLarge => bad("a rate below 2^64 bit/s"),
    })?;
    u64::try_from(bits).map_err(|_| bad("a rate below 2^64 bit/s"))
}

/// Writes a rate in the largest unit that represents it exactly (`10mbit`, `1500kbit`).
pub fn format_rate(bits_per_second: u64) -> String {
    let bits = u128::from(bits_per_second);
    if bits == 0 {
        return "0bit".to_string();
    }
    for (unit, per) in BITS_PER_UNIT {
        if divides(per, bits) {
            return format!("{}{unit}", bits / per);
        }
    }
    format!("{bits}bit")
}

/// A rate read from a TOML string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateText(pub u64);

impl FromStr for RateText {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        parse_rate(s).map(RateText)
    }
}

impl<'de> Deserialize<'de> for RateText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, RATE_EXPECTED)
    }
}

// ---------------------------------------------------------------------------------------------
// Port ranges
// ---------------------------------------------------------------------------------------------

/// An inclusive range of UDP/TCP ports, `"1024-65535"`; port 0 is never part of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

const PORTS_EXPECTED: &str = "a port range such as \"1024-65535\" (first <= last, ports 1..=65535)";

impl PortRange {
    /// The ports `first..=last`; fails on port 0 or `first > last`.
    pub fn new(first: u16, last: u16) -> Result<Self, ValueError> {
        if first == 0 || first > last {
            return Err(ValueError::new(PORTS_EXPECTED, format!("\"{first}-{last}\"")));
        }
        Ok(Self { first, last })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port (inclusive).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least one port. (Here for clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Default for PortRange {
    /// The non-privileged ports, 1024-65535.
    fn default() -> Self {
        Self {
            first: 1024,
            last: 65535,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::new(PORTS_EXPECTED, format!("{s:?}"));
        let port = |p: &str| -> Result<u16, ValueError> {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        PortRange::new(port(first)?, port(last)?).map_err(|_| bad())
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_text(d, PORTS_EXPECTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("20ms"), Ok(ms(20)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.1s"), Ok(ms(100)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007ms"), Ok(ms(7)));
        assert_eq!(parse_duration("1.50000s"), Ok(ms(1500)));
        for bad in [
            "",
            "ms",
            "5",
            "5 ms",
            "-5ms",
            "1.s",
            ".5s",
            "1.5.5s",
            "5sec",
            "1.0000000001s",
            "5MS",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            parse_duration("-5ms").map_err(|e| e.to_string()),
            Err("expected a duration that is not negative, found \"-5ms\"".to_string())
        );
        assert!(parse_duration("99999999999999999999999999999999999999999h").is_err());
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7440), "124m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_nanos(1_000_001), "1000001ns"),
            (Duration::MAX, "18446744073709551615999999999ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("512kbit"), Ok(512_000));
        assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("1.5Mbit"), Ok(1_500_000));
        assert_eq!(parse_rate("0bit"), Ok(0));
        for bad in ["10", "10mbps", "mbit", "1.0001bit", "-1kbit", "99999999999tbit"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} should not parse");
        }
        for bits in [0, 1, 1_500_000, 10_000_000, u64::MAX] {
            assert_eq!(parse_rate(&format_rate(bits)), Ok(bits));
        }
    }

    #[test]
    fn subnets() {
        let net: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.1.0/24");
        assert!(net.contains("10.0.1.255".parse().unwrap()));
        assert!(!net.contains("10.0.2.0".parse().unwrap()));
        assert_eq!(net.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(net.is_host_address(Ipv4Addr::new(10, 0, 1, 1)));
        assert!(!net.is_host_address(Ipv4Addr::new(10, 0, 1, 0)));
        assert!(!net.is_host_address(Ipv4Addr::new(10, 0, 1, 255)));
        let wide: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        assert!(wide.overlaps(&net) && net.overlaps(&wide));
        assert!(!net.overlaps(&"10.0.2.0/24".parse().unwrap()));
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.overlaps(&net) && all.contains(Ipv4Addr::BROADCAST));
        let p2p: Ipv4Net = "10.9.9.0/31".parse().unwrap();
        assert!(p2p.is_host_address(Ipv4Addr::new(10, 9, 9, 0)));
        assert_eq!(
            "10.0.1.1/24".parse::<Ipv4Net>().map_err(|e| e.to_string()),
            Err(
                "expected a network address with the host bits zero (10.0.1.0/24), found 10.0.1.1/24"
                    .to_string()
            )
        );
        for bad in [
            "10.0.1.0",
            "10.0.1.0/33",
            "10.0.1/24",
            "10.0.1.0/+4",
            "10.0.1.0/",
            "/24",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn port_ranges() {
        let r: PortRange = "1024-65535".parse().unwrap();
        assert_eq!((r.first(), r.last(), r.len()), (1024, 65535, 64512));
        assert_eq!(r, PortRange::default());
        assert_eq!(r.to_string(), "1024-65535");
        for bad in ["0-10", "10-9", "10", "1-65536", "a-b", "-5"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} should not parse");
        }
    }
}

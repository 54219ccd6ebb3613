//! Crypto-PAn (Xu, Fan, Ammar, Moon, "Prefix-preserving IP address anonymization", 2002):
//! a keyed permutation of IPv4 addresses under which two addresses sharing exactly a k-bit
//! prefix map to two addresses sharing exactly a k-bit prefix.
//!
//! Why this construction: a 6bed4 capture carries the same IPv4 address in many places
//! (outer headers, addresses in layouts C and V, link-layer options, the RA's prefix), and
//! the checks compare those copies. Any deterministic bijection keeps equal things equal;
//! Crypto-PAn also keeps subnet structure (two hosts of one /24 stay in one /24), which a
//! reader of an anonymised capture needs to see NATs and pools.
//!
//! The construction: output bit `i` is input bit `i` XOR the first bit of
//! `AES_K(input[0..i] || pad[i..128])`. Here the 32-byte Crypto-PAn key is the SHA-256 of
//! the user's secret: its first 16 bytes are the AES key, its last 16 bytes encrypted under
//! that key are the pad (as in the reference implementation).
//!
//! [`CryptoPan::with_pinned`] adds one refinement: the flip bit is forced to 0 on every node
//! of the binary prefix tree that lies on the path to a pinned prefix, so each pinned range
//! (private, loopback, multicast...) maps onto itself. Any choice of flip bits per tree
//! node is still prefix-preserving; this one keeps "behind a NAT" visible, which the checks
//! read (an outer private address may legitimately differ from the public mapping its 6bed4
//! address embeds).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use sha2::{Digest, Sha256};

/// Ranges [`CryptoPan::with_pinned`] keeps in place by default: everything the decoder's
/// private-address test looks at, plus "this network", multicast, reserved and broadcast.
pub const CLASS_RANGES: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(0, 0, 0, 0), 32),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
    (Ipv4Addr::new(255, 255, 255, 255), 32),
];

/// A keyed prefix-preserving permutation of 32-bit (or shorter) values.
#[derive(Clone)]
pub struct CryptoPan {
    aes: Aes128,
    pad: [u8; 16],
    /// Tree nodes whose flip bit is forced to 0: (depth, the first `depth` bits).
    pinned: HashSet<(u8, u32)>,
}

impl std::fmt::Debug for CryptoPan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CryptoPan")
            .field("pinned_nodes", &self.pinned.len())
            .finish_non_exhaustive()
    }
}

impl CryptoPan {
    /// From a 32-byte Crypto-PAn key, exactly as the reference implementation takes it:
    /// bytes 0..16 the AES key, bytes 16..32 encrypted to give the pad.
    pub fn from_key(key: &[u8; 32]) -> CryptoPan {
        let mut k = [0u8; 16];
        k.copy_from_slice(&key[..16]);
        let aes = Aes128::new(&k.into());
        let mut pad = [0u8; 16];
        pad.copy_from_slice(&key[16..]);
        let mut block = pad.into();
        aes.encrypt_block(&mut block);
        CryptoPan {
            aes,
            pad: block.into(),
            pinned: HashSet::new(),
        }
    }

    /// From a secret of any length: the key is its SHA-256, so any passphrase works and
    /// the same passphrase always gives the same mapping.
    pub fn from_secret(secret: &[u8]) -> CryptoPan {
        CryptoPan::from_key(&derive(b"", secret))
    }

    /// The same permutation with the ranges `pinned` mapped onto themselves.
    pub fn with_pinned(mut self, pinned: &[(Ipv4Addr, u8)]) -> CryptoPan {
        for &(net, len) in pinned {
            let net = u32::from(net);
            for depth in 0..len.min(32) {
                self.pinned.insert((depth, prefix_bits(net, depth)));
            }
        }
        self
    }

    /// The anonymised IPv4 address.
    pub fn anonymise(&self, addr: Ipv4Addr) -> Ipv4Addr {
        Ipv4Addr::from(self.permute(u32::from(addr), 32))
    }

    /// Prefix-preserving permutation of the `bits` low bits of `value` (1..=32), the others
    /// being 0. Used with 32 for addresses and with 15 for ports (their low bit kept).
    pub fn permute(&self, value: u32, bits: u8) -> u32 {
        let bits = bits.clamp(1, 32);
        let shift = 32 - u32::from(bits);
        // Work on the value left-aligned in 32 bits, as the reference does.
        let v = value << shift;
        let pad_word = u32::from_be_bytes([self.pad[0], self.pad[1], self.pad[2], self.pad[3]]);
        let mut flips = 0u32;
        let mut block = self.pad;
        for pos in 0..bits {
            if self.pinned.contains(&(pos, prefix_bits(v, pos))) {
                continue;
            }
            let p = u32::from(pos);
            let head = if p == 0 { 0 } else { (v >> (32 - p)) << (32 - p) };
            let tail = if p == 0 { pad_word } else { (pad_word << p) >> p };
            block[..4].copy_from_slice(&(head | tail).to_be_bytes());
            let mut b = block.into();
            self.aes.encrypt_block(&mut b);
            let out: [u8; 16] = b.into();
            flips |= u32::from(out[0] >> 7) << (31 - p);
        }
        (v ^ flips) >> shift
    }
}

/// The first `depth` bits of `v` (0 for depth 0).
fn prefix_bits(v: u32, depth: u8) -> u32 {
    if depth == 0 {
        0
    } else {
        v >> (32 - u32::from(depth))
    }
}

/// SHA-256 of a domain label and the secret: independent keys from one secret.
fn derive(label: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(secret);
    h.finalize().into()
}

/// The whole keyed mapping `bedlab anonymise` applies: IPv4 addresses through class-
/// preserving Crypto-PAn (cached), and optionally ports through a parity-preserving
/// permutation that leaves port 0 and the router ports alone.
#[derive(Debug, Clone)]
pub struct KeyedMap {
    addrs: CryptoPan,
    ports: Option<PortMap>,
    cache: HashMap<u32, u32>,
}

/// Entries kept in the address cache before it is emptied: bounds memory on captures with
/// millions of distinct addresses while keeping the common case (a few hosts) at one
/// lookup per address.
const CACHE_LIMIT: usize = 1 << 20;

impl KeyedMap {
    /// `ports`: `None` keeps ports, else the ports to keep fixed (0 is always kept).
    pub fn new(secret: &[u8], preserve_classes: bool, ports: Option<&[u16]>) -> KeyedMap {
        let mut addrs = CryptoPan::from_secret(secret);
        if preserve_classes {
            addrs = addrs.with_pinned(CLASS_RANGES);
        }
        let ports = ports.map(|keep| PortMap {
            pan: CryptoPan::from_key(&derive(b"bedlab anonymise ports\0", secret)),
            keep: keep.iter().copied().chain([0]).collect(),
        });
        KeyedMap {
            addrs,
            ports,
            cache: HashMap::new(),
        }
    }

    /// The anonymised form of an IPv4 address.
    pub fn v4(&mut self, a: Ipv4Addr) -> Ipv4Addr {
        let k = u32::from(a);
        if let Some(&v) = self.cache.get(&k) {
            return Ipv4Addr::from(v);
        }
        let v = self.addrs.permute(k, 32);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(k, v);
        Ipv4Addr::from(v)
    }

    /// Four address bytes in place.
    pub fn v4_bytes(&mut self, b: &mut [u8]) {
        if let Ok(a) = <[u8; 4]>::try_from(&b[..b.len().min(4)]) {
            b[..4].copy_from_slice(&self.v4(Ipv4Addr::from(a)).octets());
        }
    }

    /// The anonymised form of a port (itself unless ports are anonymised).
    pub fn port(&self, p: u16) -> u16 {
        match &self.ports {
            Some(m) => m.map(p),
            None => p,
        }
    }

    /// Whether ports are anonymised.
    pub fn ports_enabled(&self) -> bool {
        self.ports.is_some()
    }
}

/// Ports: a prefix-preserving permutation of the top 15 bits (the low bit kept, so even
/// ports stay even as layout V requires), cycle-walked so that no port maps onto a kept
/// one. Cycle walking over a permutation gives a permutation of the remaining ports.
#[derive(Debug, Clone)]
struct PortMap {
    pan: CryptoPan,
    keep: HashSet<u16>,
}

impl PortMap {
    fn map(&self, p: u16) -> u16 {
        if self.keep.contains(&p) {
            return p;
        }
        let step = |x: u16| ((self.pan.permute(u32::from(x >> 1), 15) as u16) << 1) | (x & 1);
        let mut y = step(p);
        // Terminates: the cycle of the permutation through p contains p itself, not kept.
        while self.keep.contains(&y) {
            y = step(y);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference implementation's sample key and lines of its sample trace
    /// (`sample_trace_raw.txt` → `sample_trace_sanitized.txt`), as other implementations
    /// (yacryptopan, Go cryptopan) test against them.
    const REF_KEY: &[u8; 32] = &[
        21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16, 216, 152, 143, 131, 121, 121,
        101, 39, 98, 87, 76, 45, 42, 132, 34, 2,
    ];
    const REF_VECTORS: &[(&str, &str)] = &[
        ("128.11.68.132", "135.242.180.132"),
        ("129.118.74.4", "134.136.186.123"),
        ("130.132.252.244", "133.68.164.234"),
        ("141.223.7.43", "141.167.8.160"),
        ("141.233.145.108", "141.129.237.235"),
        ("152.163.225.39", "151.140.114.167"),
        ("156.29.3.236", "147.225.12.42"),
        ("165.247.96.84", "162.9.99.234"),
        ("166.107.77.190", "160.132.178.185"),
        ("192.102.249.13", "252.138.62.131"),
        ("192.215.32.125", "252.43.47.189"),
        ("192.233.80.103", "252.25.108.8"),
        ("192.41.57.43", "252.222.221.184"),
        ("193.150.244.223", "253.169.52.216"),
        ("195.205.63.100", "255.186.223.5"),
        ("198.200.171.101", "249.199.68.213"),
        ("198.26.132.101", "249.36.123.202"),
        ("198.36.213.5", "249.7.21.132"),
        ("198.51.77.238", "249.18.186.254"),
        ("199.217.79.101", "248.38.184.213"),
        ("202.49.198.20", "245.206.7.234"),
        ("203.12.160.252", "244.248.163.4"),
        ("204.184.162.189", "243.192.77.90"),
        ("204.202.136.230", "243.178.4.198"),
        ("204.29.20.4", "243.33.20.123"),
        ("205.178.38.67", "242.108.198.51"),
        ("205.188.147.153", "242.96.16.101"),
        ("205.188.248.25", "242.96.88.27"),
        ("205.245.121.43", "242.21.121.163"),
        ("207.105.49.5", "241.118.205.138"),
        ("207.135.65.238", "241.202.129.222"),
        ("207.155.9.214", "241.220.250.22"),
        ("207.188.7.45", "241.255.249.220"),
        ("207.25.71.27", "241.33.119.156"),
        ("207.33.151.131", "241.1.233.131"),
        ("208.147.89.59", "227.237.98.191"),
        ("208.234.120.210", "227.154.67.17"),
        ("208.28.185.184", "227.39.94.90"),
        ("208.52.56.122", "227.8.63.165"),
        ("209.12.231.7", "226.243.167.8"),
        ("209.238.72.3", "226.6.119.243"),
        ("209.246.74.109", "226.22.124.76"),
        ("209.68.60.238", "226.184.220.233"),
        ("209.85.249.6", "226.170.70.6"),
        ("212.120.124.31", "228.135.163.231"),
        ("212.146.8.236", "228.19.4.234"),
        ("212.186.227.154", "228.59.98.98"),
        ("212.204.172.118", "228.71.195.169"),
        ("212.206.130.201", "228.69.242.193"),
        ("216.148.237.145", "235.84.194.111"),
        ("216.157.30.252", "235.89.31.26"),
        ("216.184.159.48", "235.96.225.78"),
        ("216.227.10.221", "235.28.253.36"),
        ("216.254.18.172", "235.7.16.162"),
        ("216.32.132.250", "235.192.139.38"),
        ("216.35.217.178", "235.195.157.81"),
        ("24.0.250.221", "100.15.198.226"),
        ("24.13.62.231", "100.2.192.247"),
        ("24.14.213.138", "100.1.42.141"),
        ("24.5.0.80", "100.9.15.210"),
        ("24.7.198.88", "100.10.6.25"),
        ("24.94.26.44", "100.88.228.35"),
        ("38.15.67.68", "64.3.66.187"),
        ("4.3.88.225", "124.60.155.63"),
        ("63.14.55.111", "95.9.215.7"),
        ("63.195.241.44", "95.179.238.44"),
        ("63.97.7.140", "95.97.9.123"),
        ("64.14.118.196", "0.255.183.58"),
        ("64.34.154.117", "0.221.154.117"),
        ("64.39.15.238", "0.219.7.41"),
    ];

    #[test]
    fn matches_the_reference_implementation() {
        let pan = CryptoPan::from_key(REF_KEY);
        let mut wrong = Vec::new();
        for (raw, sanitized) in REF_VECTORS {
            let got = pan.anonymise(raw.parse().unwrap());
            if got.to_string() != *sanitized {
                wrong.push(format!("{raw} -> {got}, reference {sanitized}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        // yacryptopan's documented example.
        let pan = CryptoPan::from_key(b"32-char-str-for-AES-key-and-pad.");
        assert_eq!(
            pan.anonymise(Ipv4Addr::new(192, 0, 2, 1)),
            Ipv4Addr::new(192, 0, 125, 244)
        );
    }
}

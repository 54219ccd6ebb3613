//! The mapping table: compact per-mapping records in a slab, hash indexes from the inside
//! and from the outside, port bitmaps, and a timer heap.
//!
//! Sizes matter because the lab is benchmarked with a million live mappings:
//! - [`Mapping`] is 56 bytes; remotes beyond the first spill into a boxed set only for
//!   mappings that actually talk to several remotes (EIM with ADF/APDF).
//! - The inside index is a hash map of 16-byte keys to a 4-byte slot number (20-byte entries).
//! - The slab and the heap grow by a quarter, not by doubling, to bound spare capacity.
//! - The outside index is one hash map per protocol from (pool index, port) packed in a u32
//!   to the slot number: 8-byte entries. Which ports are free is a separate bitmap per
//!   external address and protocol (8 KiB) with a summary level, so allocation stays fast
//!   however crowded the range is.
//! - Timers are one 16-byte heap entry per mapping with lazy deletion: a refresh only
//!   updates the mapping; when the old entry pops it is re-pushed at the real expiry.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};

/// The key of the inside index: what a mapping is "for", per the mapping behaviour. Remote
/// fields are 0 when the behaviour ignores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InsideKey {
    pub in_addr: u32,
    pub r_addr: u32,
    pub in_port: u16,
    pub r_port: u16,
    pub proto: u8,
}

impl Hash for InsideKey {
    // Two words instead of five field writes: one multiply per word in `FoldHasher`.
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(
            (u64::from(self.proto) << 48) | (u64::from(self.in_addr) << 16) | u64::from(self.in_port),
        );
        h.write_u64((u64::from(self.r_addr) << 16) | u64::from(self.r_port));
    }
}

/// A small, seeded multiply-fold hasher for fixed-size integer keys (the std SipHash costs
/// more than the rest of a translation). Hash flooding is not a concern in a lab, and the
/// seed comes from the configured seed anyway.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FoldBuild {
    seed: u64,
}

impl FoldBuild {
    pub fn new(seed: u64) -> Self {
        FoldBuild {
            seed: seed ^ 0x243f_6a88_85a3_08d3,
        }
    }
}

impl BuildHasher for FoldBuild {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher { state: self.seed }
    }
}

pub(crate) struct FoldHasher {
    state: u64,
}

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xd6e8_feb8_6659_fd93;

fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.state = fold_mul(self.state ^ x, K1);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn finish(&self) -> u64 {
        fold_mul(self.state, K2)
    }
}

/// A remote endpoint as recorded for filtering: `addr << 16 | port` (port 0 under ADF).
pub(crate) type RemoteKey = u64;

pub(crate) fn remote_key(addr: u32, port: u16) -> RemoteKey {
    (u64::from(addr) << 16) | u64::from(port)
}

/// The remotes a mapping has sent to, for address(-and-port)-dependent filtering. Nearly
/// every mapping has exactly one, stored inline.
#[derive(Debug)]
pub(crate) enum Remotes {
    Empty,
    One(RemoteKey),
    // Boxed so that the common inline cases keep `Mapping` at 56 bytes (a bare set is 40).
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<RemoteKey, FoldBuild>>),
}

impl Remotes {
    pub fn insert(&mut self, k: RemoteKey, hasher: FoldBuild) {
        match self {
            Remotes::Empty => *self = Remotes::One(k),
            Remotes::One(x) if *x == k => {}
            Remotes::One(x) => {
                let mut s = HashSet::with_capacity_and_hasher(2, hasher);
                s.insert(*x);
                s.insert(k);
                *self = Remotes::Many(Box::new(s));
            }
            Remotes::Many(s) => {
                s.insert(k);
            }
        }
    }

    pub fn contains(&self, k: RemoteKey) -> bool {
        match self {
            Remotes::Empty => false,
            Remotes::One(x) => *x == k,
            Remotes::Many(s) => s.contains(&k),
        }
    }

    /// Heap bytes owned (approximate for the set: buckets × (entry + control byte)).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Remotes::Many(s) => {
                std::mem::size_of::<HashSet<RemoteKey, FoldBuild>>() + hashset_bytes(s.capacity(), 8)
            }
            _ => 0,
        }
    }
}

/// Approximate heap bytes of a hashbrown table with `capacity` usable entries of `entry`
/// bytes: buckets are a power of two with 7/8 usable, each with one control byte.
pub(crate) fn hashset_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

/// TCP tracking bits (RFC 5382 without sequence numbers).
pub(crate) mod tcp {
    pub const SYN_OUT: u8 = 0x01;
    pub const SYN_IN: u8 = 0x02;
    pub const FIN_OUT: u8 = 0x04;
    pub const FIN_IN: u8 = 0x08;
    pub const ACK_OUT: u8 = 0x10;
    pub const ACK_IN: u8 = 0x20;
    pub const ESTABLISHED: u8 = 0x40;
    pub const CLOSING: u8 = 0x80;
}

/// One mapping. Endpoints are stored as raw integers; the external address is an index into
/// the pool (all mappings go when the pool changes).
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Last refresh, nanoseconds since the epoch. Expiry = `last` + the current timeout, so
    /// a changed UDP timeout applies to existing mappings at once.
    pub last: u64,
    pub remotes: Remotes,
    /// When the last refresh event was logged (milliseconds since the epoch, wrapping).
    pub log_mark: u32,
    pub refreshes: u32,
    /// Identifies this mapping's current heap entry (lazy deletion).
    pub gen: u32,
    pub in_addr: u32,
    /// Remote part of the inside key (0 under EIM).
    pub key_r_addr: u32,
    pub in_port: u16,
    pub ext_port: u16,
    pub key_r_port: u16,
    pub ext_idx: u16,
    pub proto: u8,
    /// `tcp::*` bits.
    pub tcp: u8,
}

impl Mapping {
    pub fn inside_key(&self) -> InsideKey {
        InsideKey {
            in_addr: self.in_addr,
            r_addr: self.key_r_addr,
            in_port: self.in_port,
            r_port: self.key_r_port,
            proto: self.proto,
        }
    }
}

/// Applies one TCP segment's flags to the tracking bits. Established once SYNs went both
/// ways (simultaneous open included) or, for a connection picked up mid-stream, once
/// SYN-less ACKs went both ways; closing (transitory again) after FINs both ways or a RST;
/// a SYN on a closing mapping starts a new connection.
pub(crate) fn tcp_update(state: u8, outbound: bool, flags: u8) -> u8 {
    use super::wire::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    use tcp::*;
    let mut s = state;
    if flags & TCP_RST != 0 {
        return (s | CLOSING) & !ESTABLISHED;
    }
    let (syn, fin, ack) = if outbound {
        (SYN_OUT, FIN_OUT, ACK_OUT)
    } else {
        (SYN_IN, FIN_IN, ACK_IN)
    };
    if flags & TCP_SYN != 0 {
        if s & CLOSING != 0 {
            s = 0;
        }
        s |= syn;
    } else if flags & TCP_ACK != 0 {
        s |= ack;
    }
    if flags & TCP_FIN != 0 {
        s |= fin;
    }
    if s & CLOSING == 0 {
        let syns = s & (SYN_OUT | SYN_IN);
        if syns == SYN_OUT | SYN_IN || (syns == 0 && s & (ACK_OUT | ACK_IN) == ACK_OUT | ACK_IN) {
            s |= ESTABLISHED;
        }
        if s & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN {
            s = (s | CLOSING) & !ESTABLISHED;
        }
    }
    s
}

/// A timer heap entry: the mapping in `slot` may expire at `at` if its `gen` still matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timer {
    pub at: u64,
    pub slot: u32,
    pub gen: u32,
}

/// The ports in use on one external address for one protocol: a bitmap (allocated on first
/// use, 8 KiB) with a summary of full words, so that finding a free port tests at most the
/// 16 summary words plus the few words it points at, however crowded the range is. (Port
/// preservation makes crowding normal: every host uses the same few source ports.)
#[derive(Debug, Default)]
pub(crate) struct PortSet {
    bits: Option<Box<[u64]>>,
    /// Bit `w` set when `bits[w]` is all ones.
    full: [u64; 16],
    pub used: u32,
}

/// Bits of even (`0`) or odd (`1`) positions in a word; word starts are even ports.
const PARITY_MASK: [u64; 2] = [0x5555_5555_5555_5555, 0xaaaa_aaaa_aaaa_aaaa];

impl PortSet {
    pub fn is_free(&self, port: u16) -> bool {
        self.bits
            .as_ref()
            .is_none_or(|b| b[usize::from(port / 64)] & (1 << (port % 64)) == 0)
    }

    /// Marks `port` used or free.
    pub fn set(&mut self, port: u16, used: bool) {
        let bits = self
            .bits
            .get_or_insert_with(|| vec![0u64; 1024].into_boxed_slice());
        let w = usize::from(port / 64);
        let bit = 1u64 << (port % 64);
        if (bits[w] & bit != 0) == used {
            return;
        }
        if used {
            bits[w] |= bit;
            self.used += 1;
        } else {
            bits[w] &= !bit;
            self.used -= 1;
        }
        let fbit = 1u64 << (w % 64);
        if bits[w] == u64::MAX {
            self.full[w / 64] |= fbit;
        } else {
            self.full[w / 64] &= !fbit;
        }
    }

    /// The first free port at or after `start` (wrapping within `lo..=hi`) whose parity is
    /// `parity` (if given).
    pub fn scan(&self, lo: u16, hi: u16, start: u16, parity: Option<u16>) -> Option<u16> {
        let start = if (lo..=hi).contains(&start) { start } else { lo };
        self.first_free(start, hi, parity).or_else(|| {
            if start > lo {
                self.first_free(lo, start - 1, parity)
            } else {
                None
            }
        })
    }

    /// The lowest free port in `a..=b` with the given parity.
    fn first_free(&self, a: u16, b: u16, parity: Option<u16>) -> Option<u16> {
        let Some(bits) = &self.bits else {
            // Nothing used yet: the first port of the right parity.
            let p = match parity {
                Some(par) if a % 2 != par => a.checked_add(1)?,
                _ => a,
            };
            return (p <= b).then_some(p);
        };
        let par = parity.map_or(u64::MAX, |p| PARITY_MASK[usize::from(p & 1)]);
        let (wa, wb) = (usize::from(a / 64), usize::from(b / 64));
        let mut w = wa;
        while w <= wb {
            // Skip words that are entirely used, 64 at a time.
            let nonfull = !self.full[w / 64] & (u64::MAX << (w % 64));
            if nonfull == 0 {
                w = (w / 64 + 1) * 64;
                continue;
            }
            w = (w / 64) * 64 + nonfull.trailing_zeros() as usize;
            if w > wb {
                break;
            }
            let mut free = !bits[w] & par;
            if w == wa {
                free &= u64::MAX << (a % 64);
            }
            if w == wb {
                free &= u64::MAX >> (63 - b % 64);
            }
            if free != 0 {
                return Some((w * 64) as u16 + free.trailing_zeros() as u16);
            }
            w += 1;
        }
        None
    }

    pub fn clear(&mut self) {
        if let Some(b) = &mut self.bits {
            b.fill(0);
        }
        self.full = [0; 16];
        self.used = 0;
    }

    pub fn heap_bytes(&self) -> usize {
        self.bits.as_ref().map_or(0, |b| b.len() * 8)
    }
}

/// Key of the outside index (one map per protocol): pool index and external port.
pub(crate) fn outside_key(idx: u16, port: u16) -> u32 {
    (u32::from(idx) << 16) | u32::from(port)
}

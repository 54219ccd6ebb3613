//! One analysis of a decoded capture shared by all checks: which sighting of each packet is
//! the sender's and which the receiver's, who the peers are (their sockets, their external
//! mappings as the router saw them, the addresses they use), which RAs gave them addresses,
//! and where a mapping changed (a NAT rebinding).
//!
//! A lab capture shows one datagram at every link end it crossed; NATs rewrite its outer
//! addresses on the way, so the sightings disagree. Three rules follow:
//! - **the router's view** ([`View::router_view`]) is the sighting at the router's own
//!   interface (the node that sends from the router's endpoint), and a datagram not seen
//!   there never reached the router: it says nothing about mappings and is no evidence about
//!   what the router did. Without the router's interface in the capture, the last sighting on
//!   a public address stands in for it; a lone sighting stands for itself (field captures);
//! - **an inner source is consistent** when any sighting's outer source is the endpoint it
//!   names ([`View::source_check`]): only the public side of a NAT carries the mapping;
//! - **a datagram that never left its sender's private side** (every source private, the
//!   name public, delivered to no peer and not to the router) cannot be judged at all.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::capture::Direction;
use crate::conformance::decode::{self, addr, inner, Decoded, DecodedCapture, Endpoint, Kind, Layer};
use crate::conformance::trace::Roles;

use super::{Expectations, Inputs};

/// A peer: one tunnel socket (or, in a capture taken only at the router, the sockets
/// linked by the 6bed4 address they keep using across a rebinding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The lane name: the node whose uplink its packets left by, a role, or `peer-N`.
    pub name: String,
    /// Source endpoints of its packets at their first sighting.
    pub sockets: Vec<Endpoint>,
    /// Its external mapping as the router saw it, each time it changed: (ns, endpoint, frame).
    pub mappings: Vec<(u64, Endpoint, u64)>,
    /// Inner source addresses it used (6bed4 prefixes only), in order of first use.
    pub addresses: Vec<Ipv6Addr>,
    /// Valid RAs from the router that reached it: (arrival ns, record index).
    pub ras: Vec<(u64, usize)>,
}

impl Peer {
    /// When it first held an address (the first valid RA's arrival), if seen.
    pub fn address_since(&self) -> Option<u64> {
        self.ras.first().map(|r| r.0)
    }
}

/// A change of a peer's external mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebinding {
    pub peer: usize,
    pub at_ns: u64,
    pub old: Endpoint,
    pub new: Endpoint,
    /// The first frame from the new mapping.
    pub frame: u64,
}

/// The analysis, stored by index so that [`Inputs`] can own it next to the captures.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewData {
    /// Number of packets.
    n: usize,
    /// Every record is its own packet (one capture point, as in a field capture): a packet's
    /// first, last, only sighting and router view are its record, so the five per-packet
    /// arrays below stay empty (40 bytes per datagram less).
    identity: bool,
    /// Per packet: record index of the first and last tunnel sighting (usize::MAX if none).
    first: Vec<usize>,
    last: Vec<usize>,
    /// Per packet `p`: record indices of every tunnel sighting, in capture order, are
    /// `all_idx[all_start[p]..all_start[p + 1]]` (one flat list, no allocation per packet).
    all_start: Vec<usize>,
    all_idx: Vec<usize>,
    /// Per packet: the record index of the router's view (usize::MAX if none).
    at_router: Vec<usize>,
    /// The node whose interface the router's datagrams leave by, when the capture names it.
    router_node: Option<String>,
    injected: Vec<bool>,
    peers: Vec<Peer>,
    /// Looked up for nearly every packet by several checks: a fast hash map (never iterated).
    socket_peer: decode::FastMap<Endpoint, usize>,
    rebindings: Vec<Rebinding>,
    /// Record indices per inner key (the same inner packet, hop limit aside), in time
    /// order: relays and TUN copies are found without scanning the capture.
    /// (inner key, record index), sorted: one key's records are a contiguous run, found
    /// through `key_slots`.
    by_key: Vec<(u64, usize)>,
    /// An open-addressed table (linear probing, a power of two at least twice the number
    /// of keys) of where each key's run starts in `by_key`, `u32::MAX` for an empty slot:
    /// 4 bytes a slot where a hash map of runs took ~50 bytes a key. Empty when there are
    /// no keys or too many records for `u32`; a key's run is then found by binary search.
    key_slots: Vec<u32>,
    /// Per record, the index of the previous and next record with the same inner key
    /// (`u32::MAX`: none): a check that starts from a record walks its key's run from
    /// there, reading its neighbours in the capture (in cache already) instead of a hash
    /// probe and a random read into `by_key`. Empty under the same conditions as
    /// `key_slots`.
    key_prev: Vec<u32>,
    key_next: Vec<u32>,
    /// The packets whose first sighting is not plain data (see `View::control_packets`),
    /// injected ones too, in packet order.
    control: Vec<usize>,
}

/// The slot a key's probe starts at, in a table of `1 << bits` slots (keys are hashes
/// already; the multiply spreads their high bits).
fn key_slot(k: u64, bits: u32) -> usize {
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// A packet's sightings as record indices: a slice of the per-packet arrays, or the one
/// record itself when every record is its own packet.
#[derive(Debug, Clone, Copy)]
enum Sightings<'a> {
    Many(&'a [usize]),
    One([usize; 1]),
}

impl Sightings<'_> {
    fn as_slice(&self) -> &[usize] {
        match self {
            Sightings::Many(s) => s,
            Sightings::One(a) => a,
        }
    }
}

/// A capture and its analysis.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub cap: &'a DecodedCapture,
    data: &'a ViewData,
    pub inputs: &'a Inputs,
    /// The data records around the packet being walked, when the capture's data is
    /// streamed past instead of held (`cap.records` then holds the control packets and a
    /// few data records the peers were found from).
    window: Option<&'a Window>,
}

/// A record found by a look-up: one of the capture's (borrowed) or one streamed past
/// (shared with the streaming window). Reads as a [`Decoded`].
#[derive(Debug, Clone)]
pub enum Rec<'a> {
    Borrowed(&'a Decoded),
    Shared(Arc<Decoded>),
}

impl std::ops::Deref for Rec<'_> {
    type Target = Decoded;
    fn deref(&self) -> &Decoded {
        match self {
            Rec::Borrowed(r) => r,
            Rec::Shared(r) => r,
        }
    }
}

/// Records of one inner key in a time range: a run of the capture's records (borrowed), or
/// copies out of a streamed [`Window`].
#[derive(Debug)]
pub enum KeyRecords<'a> {
    Run {
        run: &'a [(u64, usize)],
        recs: &'a [Decoded],
        hi: u64,
    },
    Chain {
        next: Option<usize>,
        links: &'a [u32],
        recs: &'a [Decoded],
        lo: u64,
        hi: u64,
    },
    Copied(std::vec::IntoIter<Rec<'a>>),
}

impl<'a> Iterator for KeyRecords<'a> {
    type Item = Rec<'a>;
    fn next(&mut self) -> Option<Rec<'a>> {
        match self {
            KeyRecords::Run { run, recs, hi } => loop {
                let (&(_, i), rest) = run.split_first()?;
                *run = rest;
                let Some(r) = recs.get(i) else { continue };
                if r.ts_ns > *hi {
                    *run = &[];
                    return None;
                }
                return Some(Rec::Borrowed(r));
            },
            KeyRecords::Chain {
                next,
                links,
                recs,
                lo,
                hi,
            } => loop {
                let i = (*next)?;
                *next = links.get(i).filter(|&&n| n != u32::MAX).map(|&n| n as usize);
                let Some(r) = recs.get(i) else {
                    *next = None;
                    return None;
                };
                if r.ts_ns < *lo {
                    continue;
                }
                if r.ts_ns > *hi {
                    *next = None;
                    return None;
                }
                return Some(Rec::Borrowed(r));
            },
            KeyRecords::Copied(it) => it.next(),
        }
    }
}

/// The records near the packet a streamed walk is at: the records of the last and next
/// [`super::WALK_WINDOW_NS`] (data records shared, kept ones by index), each linked to the
/// previous one with its inner key. The streaming driver fills it and takes the records to
/// show from it, one at a time, once the stream is a window ahead of them; walks read it
/// through [`View::with_key_between`].
#[derive(Debug, Default)]
pub struct Window {
    inner: Mutex<WindowInner>,
}

#[derive(Debug, Default)]
struct WindowInner {
    /// Records in stream order; `slots[0]` has sequence number `base`.
    slots: VecDeque<Slot>,
    base: u64,
    /// The sequence number of the next record to show.
    cur: u64,
    /// Inner key → the sequence number of its latest record.
    latest: decode::FastMap<u64, u64>,
}

/// No earlier record with the same key.
const NO_SEQ: u64 = u64::MAX;

#[derive(Debug)]
struct Slot {
    ts: u64,
    key: Option<u64>,
    /// The previous and next record with the same key (`NO_SEQ`: none).
    prev: u64,
    next: u64,
    rec: SlotRec,
}

impl SlotRec {
    /// The record it holds.
    fn rec<'a>(&self, cap: &'a DecodedCapture) -> Option<Rec<'a>> {
        match self {
            SlotRec::Kept(k) => cap.records.get(*k).map(Rec::Borrowed),
            SlotRec::Data(r) => Some(Rec::Shared(Arc::clone(r))),
        }
    }
}

impl WindowInner {
    /// The slot of sequence number `seq`, if it is still held.
    fn slot(&self, seq: u64) -> Option<&Slot> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get(i)
    }

    /// Moves to `ready` the records `newest` is more than a window past (all of them at
    /// the end, `None`), dropping before each the records more than a window behind it.
    fn take_ready<'a>(&mut self, cap: &'a DecodedCapture, newest: Option<u64>, ready: &mut Vec<Rec<'a>>) {
        loop {
            let Some(ts) = self.slot(self.cur).map(|s| s.ts) else {
                return;
            };
            if newest.is_some_and(|n| ts.saturating_add(super::WALK_WINDOW_NS) >= n) {
                return;
            }
            while self
                .slots
                .front()
                .is_some_and(|f| f.ts.saturating_add(super::WALK_WINDOW_NS) < ts)
            {
                let seq = self.base;
                if let Some(k) = self.slots.pop_front().and_then(|f| f.key) {
                    if self.latest.get(&k) == Some(&seq) {
                        self.latest.remove(&k);
                    }
                }
                self.base += 1;
            }
            ready.extend(self.slot(self.cur).and_then(|s| s.rec.rec(cap)));
            self.cur += 1;
        }
    }
}

#[derive(Debug)]
enum SlotRec {
    /// A record kept in the capture (`cap.records[i]`).
    Kept(usize),
    /// A data record streamed past.
    Data(Arc<Decoded>),
}

impl Window {
    /// Only the streaming driver's thread uses it: the lock is never contended (and a
    /// panic elsewhere leaves nothing half-done worth refusing).
    fn lock(&self) -> MutexGuard<'_, WindowInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record (in stream order): the kept record `kept`, else `rec`, which then
    /// gets packet number `cap.packets` + its sequence number (so that a look-up from it
    /// finds its place). Then moves to `ready` the records the stream is now a window past,
    /// in order, dropping those more than a window behind the last of them.
    pub(crate) fn push_ready<'a>(
        &self,
        cap: &'a DecodedCapture,
        kept: Option<usize>,
        mut rec: Arc<Decoded>,
        ready: &mut Vec<Rec<'a>>,
    ) {
        let mut w = self.lock();
        let seq = w.base + w.slots.len() as u64;
        let newest = rec.ts_ns;
        let key = match kept {
            Some(i) => cap.records.get(i).and_then(|r| r.inner_key),
            None => rec.inner_key,
        };
        let slot_rec = match kept {
            Some(i) => SlotRec::Kept(i),
            None => {
                // Unique when it comes from the decoder: no copy.
                Arc::make_mut(&mut rec).packet = cap
                    .packets
                    .saturating_add(usize::try_from(seq).unwrap_or(usize::MAX));
                SlotRec::Data(rec)
            }
        };
        let prev = match key {
            Some(k) => w.latest.insert(k, seq).unwrap_or(NO_SEQ),
            None => NO_SEQ,
        };
        if prev != NO_SEQ && prev >= w.base {
            let base = w.base;
            if let Some(p) = usize::try_from(prev - base).ok().and_then(|i| w.slots.get_mut(i)) {
                p.next = seq;
            }
        }
        w.slots.push_back(Slot {
            ts: newest,
            key,
            prev,
            next: NO_SEQ,
            rec: slot_rec,
        });
        w.take_ready(cap, Some(newest), ready);
    }

    /// How many records it holds now.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At the end of the stream: every record not shown yet, to `ready`.
    pub(crate) fn finish<'a>(&self, cap: &'a DecodedCapture, ready: &mut Vec<Rec<'a>>) {
        self.lock().take_ready(cap, None, ready);
    }

    /// The records of `r`'s own key (`r` streamed past, at its place in the window) in
    /// `lo..=hi`, in stream order; `None` when `r` is not a streamed record in the window.
    fn own_between<'a>(
        &self,
        cap: &'a DecodedCapture,
        r: &Decoded,
        lo: u64,
        hi: u64,
    ) -> Option<Vec<Rec<'a>>> {
        let seq = u64::try_from(r.packet.checked_sub(cap.packets)?).ok()?;
        let w = self.lock();
        let slot = |seq: u64| w.slot(seq);
        // The slot must hold `r` itself.
        slot(seq).filter(|s| matches!(&s.rec, SlotRec::Data(d) if std::ptr::eq(Arc::as_ptr(d), r)))?;
        let mut first = seq;
        while let Some(p) = slot(first).map(|s| s.prev).and_then(slot) {
            if p.ts < lo {
                break;
            }
            first = slot(first).map_or(NO_SEQ, |s| s.prev);
        }
        let mut out = Vec::new();
        let mut at = first;
        while let Some(s) = slot(at) {
            if s.ts > hi {
                break;
            }
            if s.ts >= lo {
                out.extend(s.rec.rec(cap));
            }
            at = s.next;
        }
        Some(out)
    }

    /// The records with inner key `key` and a time in `lo..=hi`, in stream order.
    fn between<'a>(&self, cap: &'a DecodedCapture, key: Option<u64>, lo: u64, hi: u64) -> Vec<Rec<'a>> {
        let w = self.lock();
        let mut out = Vec::new();
        let mut seq = key.and_then(|k| w.latest.get(&k).copied()).unwrap_or(NO_SEQ);
        while let Some(slot) = w.slot(seq) {
            if slot.ts < lo {
                break;
            }
            if slot.ts <= hi {
                out.extend(slot.rec.rec(cap));
            }
            seq = slot.prev;
        }
        out.reverse();
        out
    }
}

/// How an inner source fits the outer sources of its datagram (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// No 6bed4 source (unspecified, link-local, outside the capture's prefixes).
    NotJudged,
    /// A sighting's outer source is the endpoint the source names.
    Consistent,
    /// The datagram never left its sender's private side: nothing to compare with.
    Untranslated,
    /// No sighting fits. `from` is the most public source seen (the router's view, else the
    /// last public sighting, else the last).
    Inconsistent { named: Option<Endpoint>, from: Endpoint },
}

/// Whether a packet is a control packet (by its first sighting): not plain data, i.e. not
/// `Kind::Data`, or data carrying ICMPv6 (an RS or RA that failed validation decodes as
/// data with its ICMPv6 type). Control packets grow with peers and time, not with bytes.
pub fn is_control(r: &Decoded) -> bool {
    !matches!(r.kind, Kind::Data { .. }) || r.icmp_type().is_some()
}

/// Whether an RA is one a peer may accept (RFC 4861 §6.1.2 plus the 6bed4 outer source).
pub fn ra_valid(r: &Decoded) -> bool {
    let Some(ih) = &r.inner else { return false };
    let Some(icmp) = &r.icmp else { return false };
    matches!(r.kind, Kind::Ra { .. })
        && r.from_router
        && ih.hop_limit == 255
        && icmp.code == 0
        && icmp.checksum_ok
        && icmp.len >= 16
        && !icmp.zero_len_option
        && !icmp.option_overrun
        && addr::is_link_local(&ih.src)
}

/// Whether an RS is one a router must answer (RFC 4861 §6.1.1, less the SLLA-from-`::` rule
/// that 6bed4 waives: spec §3 says a router must accept the 56-byte RS).
pub fn rs_valid(r: &Decoded) -> bool {
    let (Some(ih), Some(icmp)) = (&r.inner, &r.icmp) else {
        return false;
    };
    matches!(r.kind, Kind::Rs { .. })
        && ih.hop_limit == 255
        && icmp.code == 0
        && icmp.checksum_ok
        && icmp.len >= 8
        && !icmp.zero_len_option
        && !icmp.option_overrun
}

/// Whether an NS or NA passes RFC 4861 §7.1 validation.
pub fn nd_valid(r: &Decoded) -> bool {
    let (Some(ih), Some(icmp)) = (&r.inner, &r.icmp) else {
        return false;
    };
    matches!(r.kind, Kind::Ns { .. } | Kind::Na { .. })
        && ih.hop_limit == 255
        && icmp.code == 0
        && icmp.checksum_ok
        && icmp.len >= 24
        && !icmp.zero_len_option
        && !icmp.option_overrun
        && match r.kind {
            Kind::Na { flags, target, .. } => {
                !(addr::is_multicast(&target) || flags & 0x40 != 0 && addr::is_multicast(&ih.dst))
            }
            Kind::Ns { target, .. } => !addr::is_multicast(&target),
            _ => true,
        }
}

impl ViewData {
    pub(crate) fn build(cap: &DecodedCapture, roles: &Roles, expect: &Expectations) -> ViewData {
        // The inner-key index is independent of the rest: on a second thread when there
        // is a second core (a large capture's index sorts a million keys).
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if threads < 2 || cap.records.len() < 100_000 {
            let mut d = ViewData::build_rest(cap, roles, expect);
            (d.by_key, d.key_slots, d.key_prev, d.key_next) = key_index(&cap.records);
            d.control = d.control_of(cap);
            return d;
        }
        std::thread::scope(|s| {
            let index = s.spawn(|| key_index(&cap.records));
            let mut d = ViewData::build_rest(cap, roles, expect);
            d.control = d.control_of(cap);
            (d.by_key, d.key_slots, d.key_prev, d.key_next) =
                index.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            d
        })
    }

    /// The packets (injected ones too) whose first sighting is not plain data: not
    /// `Kind::Data`, or data carrying ICMPv6 (an RS or RA that failed validation decodes
    /// as data with its ICMPv6 type).
    fn control_of(&self, cap: &DecodedCapture) -> Vec<usize> {
        (0..self.n)
            .filter(|&p| cap.records.get(self.first(cap, p)).is_some_and(is_control))
            .collect()
    }

    /// Everything but the inner-key index.
    fn build_rest(cap: &DecodedCapture, roles: &Roles, expect: &Expectations) -> ViewData {
        let n = cap.packets;
        let identity = n == cap.records.len() && cap.records.iter().enumerate().all(|(i, r)| r.packet == i);
        let mut d = ViewData {
            n,
            identity,
            injected: vec![false; n],
            ..ViewData::default()
        };
        if !identity {
            d.first = vec![usize::MAX; n];
            d.last = vec![usize::MAX; n];
        }
        let mut counts = if identity { Vec::new() } else { vec![0usize; n + 1] };
        for (i, r) in cap.records.iter().enumerate() {
            if identity || r.layer != Layer::Tunnel || r.packet >= n {
                continue;
            }
            if d.first[r.packet] == usize::MAX {
                d.first[r.packet] = i;
            }
            d.last[r.packet] = i;
            counts[r.packet + 1] += 1;
        }
        d.router_node = router_node(cap);
        if !identity {
            for p in 0..n {
                counts[p + 1] += counts[p];
            }
            let mut fill = counts.clone();
            d.all_idx = vec![0; counts[n]];
            for (i, r) in cap.records.iter().enumerate() {
                if r.layer == Layer::Tunnel && r.packet < n {
                    d.all_idx[fill[r.packet]] = i;
                    fill[r.packet] += 1;
                }
            }
            d.all_start = counts;
            d.at_router = (0..n)
                .map(|p| d.find_router_view(cap, p).unwrap_or(usize::MAX))
                .collect();
        }
        if let Some(inj) = &expect.injection {
            let until = inj.until_ns.unwrap_or(inj.at_ns.saturating_add(10_000_000_000));
            let during = |t: u64| t >= inj.at_ns && t <= until;
            let faulty = |r: &Decoded| !r.issues.is_empty() || matches!(r.kind, Kind::Malformed { .. });
            // The injector's sockets (sender's side) live only during the injection and send
            // junk; a peer sharing the injector's address (started on the injecting node,
            // behind the same NAT) uses its own socket, which is judged as usual.
            let mut lasting = std::collections::BTreeSet::new();
            let mut junk = std::collections::BTreeSet::new();
            for r in (0..n).filter_map(|p| cap.records.get(d.first(cap, p))) {
                let Some(s) = r.src() else { continue };
                if !during(r.ts_ns) {
                    lasting.insert(s);
                } else if faulty(r) {
                    junk.insert(s);
                }
            }
            for p in 0..n {
                let Some(r) = cap.records.get(d.first(cap, p)) else {
                    continue;
                };
                d.injected[p] = during(r.ts_ns)
                    && match inj.source {
                        // The injector's address may be its NAT's public one: any sighting.
                        Some(ip) => {
                            r.src()
                                .is_some_and(|s| junk.contains(&s) && !lasting.contains(&s))
                                && d.all_of(cap, p)
                                    .as_slice()
                                    .iter()
                                    .filter_map(|&i| cap.records.get(i)?.src())
                                    .any(|s| *s.ip() == ip)
                        }
                        None => faulty(r),
                    };
            }
        }
        d.find_peers(cap, roles);
        d
    }

    /// Record index of packet `p`'s first tunnel sighting (usize::MAX if none).
    fn first(&self, cap: &DecodedCapture, p: usize) -> usize {
        if self.identity {
            return self.own(cap, p);
        }
        self.first.get(p).copied().unwrap_or(usize::MAX)
    }

    /// Record index of packet `p`'s last tunnel sighting (usize::MAX if none).
    fn last(&self, cap: &DecodedCapture, p: usize) -> usize {
        if self.identity {
            return self.own(cap, p);
        }
        self.last.get(p).copied().unwrap_or(usize::MAX)
    }

    /// In identity mode: packet `p`'s record, if it is a tunnel one.
    fn own(&self, cap: &DecodedCapture, p: usize) -> usize {
        match cap.records.get(p) {
            Some(r) if r.layer == Layer::Tunnel => p,
            _ => usize::MAX,
        }
    }

    /// The record index of packet `p`'s router view (usize::MAX if none).
    fn at_router(&self, cap: &DecodedCapture, p: usize) -> usize {
        if self.identity {
            return self.find_router_view(cap, p).unwrap_or(usize::MAX);
        }
        self.at_router.get(p).copied().unwrap_or(usize::MAX)
    }

    /// Record indices of packet `p`'s tunnel sightings, in capture order.
    fn all_of(&self, cap: &DecodedCapture, p: usize) -> Sightings<'_> {
        if self.identity {
            return match self.own(cap, p) {
                usize::MAX => Sightings::Many(&[]),
                i => Sightings::One([i]),
            };
        }
        Sightings::Many(match (self.all_start.get(p), self.all_start.get(p + 1)) {
            (Some(&a), Some(&b)) => self.all_idx.get(a..b).unwrap_or(&[]),
            _ => &[],
        })
    }

    /// Records (indices) with inner key `k`, in time order.
    fn key_run(&self, k: u64) -> &[(u64, usize)] {
        let start = if self.key_slots.is_empty() {
            self.by_key.partition_point(|e| e.0 < k)
        } else {
            let mask = self.key_slots.len() - 1;
            let bits = self.key_slots.len().trailing_zeros();
            let mut i = key_slot(k, bits);
            loop {
                let s = self.key_slots[i];
                if s == u32::MAX {
                    return &[];
                }
                if self.by_key.get(s as usize).is_some_and(|e| e.0 == k) {
                    break s as usize;
                }
                i = (i + 1) & mask;
            }
        };
        let run = self.by_key.get(start..).unwrap_or(&[]);
        // Most runs are one or two records long: gallop before the binary search so that
        // a short run costs a probe or two, not a search over the rest of the index.
        let mut hi = 1;
        while run.get(hi).is_some_and(|e| e.0 == k) {
            hi *= 2;
        }
        let lo = hi / 2;
        let len = lo
            + run
                .get(lo..hi.min(run.len()))
                .map_or(0, |r| r.partition_point(|e| e.0 == k));
        run.get(..len).unwrap_or(&[])
    }

    /// The record index of packet `p`'s sighting that stands for what the router got.
    fn find_router_view(&self, cap: &DecodedCapture, p: usize) -> Option<usize> {
        let all = self.all_of(cap, p);
        let all = all.as_slice();
        if p >= self.n {
            return None;
        }
        let rec = |i: &usize| cap.records.get(*i);
        if let Some(node) = &self.router_node {
            return all.iter().copied().find(|i| {
                rec(i).is_some_and(|r| r.node() == Some(node) && r.direction != Some(Direction::Outbound))
            });
        }
        if all.len() == 1 {
            return all.first().copied();
        }
        let public = |i: &usize| {
            rec(i)
                .and_then(|r| r.src())
                .is_some_and(|s| !addr::is_private_v4(*s.ip()))
        };
        // All sources private: it reached a router in the same private realm, or none.
        all.iter().rev().copied().find(public).or_else(|| {
            all.last().copied().filter(|i| {
                rec(i)
                    .and_then(|r| r.dst())
                    .is_some_and(|d| addr::is_private_v4(*d.ip()))
            })
        })
    }

    /// A packet sent by a peer: (socket, endpoint the receiver saw, 6bed4 source).
    fn sent_by_peer(&self, cap: &DecodedCapture, p: usize) -> Option<(Endpoint, Endpoint, Option<Ipv6Addr>)> {
        let f = cap.records.get(self.first(cap, p))?;
        let l = cap.records.get(self.last(cap, p))?;
        if self.injected[p] || f.from_router || matches!(f.kind, Kind::IcmpError { v6: false, .. }) {
            return None;
        }
        let (socket, seen) = (f.src()?, l.src()?);
        if cap.routers.contains(&socket) {
            return None;
        }
        let src6 = f
            .inner
            .map(|h| h.src)
            .filter(|a| cap.prefixes.contains(&addr::prefix64(a)) && !a.is_unspecified());
        Some((socket, seen, src6))
    }

    /// Every packet sent by a peer, with [`ViewData::sent_by_peer`]'s facts.
    fn sent_packets<'s>(
        &'s self,
        cap: &'s DecodedCapture,
    ) -> impl Iterator<Item = (usize, (Endpoint, Endpoint, Option<Ipv6Addr>))> + 's {
        (0..self.n).filter_map(move |p| Some((p, self.sent_by_peer(cap, p)?)))
    }

    fn find_peers(&mut self, cap: &DecodedCapture, roles: &Roles) {
        // Packets sent by peers, walked three times rather than listed: a list would hold
        // ~40 bytes per packet of a large capture.
        // One peer per group of sockets that share a 6bed4 source address (a socket that
        // moved behind a rebinding NAT keeps using its address) or are one packet's ends.
        let mut uf = UnionFind::default();
        let mut owner: BTreeMap<Ipv6Addr, Endpoint> = BTreeMap::new();
        let known: decode::FastSet<Endpoint> =
            self.sent_packets(cap).flat_map(|s| [s.1 .0, s.1 .1]).collect();
        // A packet whose socket, receiver's endpoint, address and profile an earlier one
        // had joins nothing new (every union below is then a no-op): skipped.
        let mut done: decode::FastSet<(Endpoint, Endpoint, Option<Ipv6Addr>, decode::Profile)> =
            decode::FastSet::default();
        for (p, (socket, seen, src6)) in self.sent_packets(cap) {
            if !done.insert((socket, seen, src6, cap.records[self.first(cap, p)].profile)) {
                continue;
            }
            uf.union(socket, seen);
            if let Some(a) = src6 {
                let o = *owner.entry(a).or_insert(socket);
                uf.union(o, socket);
                // The address names the endpoint it was formed for: the same peer (its
                // mapping before a rebinding, or its NAT's side of the socket).
                let profile = cap.records[self.first(cap, p)].profile;
                if let Some(named) = profile.decode(&a).filter(|n| known.contains(n)) {
                    uf.union(named, socket);
                }
            }
        }
        let mut index: BTreeMap<Endpoint, usize> = BTreeMap::new();
        let mut unnamed = 0usize;
        for p in 0..self.n {
            let Some((socket, _, src6)) = self.sent_by_peer(cap, p) else {
                continue;
            };
            let root = uf.find(socket);
            let peer = match index.get(&root) {
                Some(&i) => i,
                None => {
                    let f = &cap.records[self.first(cap, p)];
                    let name = match (f.node(), f.direction) {
                        (Some(node), Some(Direction::Outbound)) => node.to_string(),
                        _ => match roles.by_ipv4.get(socket.ip()) {
                            Some(n) => n.clone(),
                            None => {
                                unnamed += 1;
                                format!("peer-{unnamed}")
                            }
                        },
                    };
                    self.peers.push(Peer {
                        name,
                        sockets: Vec::new(),
                        mappings: Vec::new(),
                        addresses: Vec::new(),
                        ras: Vec::new(),
                    });
                    index.insert(root, self.peers.len() - 1);
                    self.peers.len() - 1
                }
            };
            self.socket_peer.entry(socket).or_insert(peer);
            let at_router = self.at_router(cap, p);
            let pe = &mut self.peers[peer];
            if !pe.sockets.contains(&socket) {
                pe.sockets.push(socket);
            }
            if let Some(a) = src6 {
                if !pe.addresses.contains(&a) {
                    pe.addresses.push(a);
                }
            }
            // The mapping is what the router saw; a datagram that never reached it says
            // nothing (one lost on the LAN carries only the private socket).
            let Some(at) = cap.records.get(at_router) else {
                continue;
            };
            let Some(mapped) = at.src().filter(|_| at.towards_router) else {
                continue;
            };
            if pe.mappings.last().map(|m| m.1) != Some(mapped) {
                if let Some(&(_, old, _)) = pe.mappings.last() {
                    self.rebindings.push(Rebinding {
                        peer,
                        at_ns: at.ts_ns,
                        old,
                        new: mapped,
                        frame: at.frame,
                    });
                }
                pe.mappings.push((at.ts_ns, mapped, at.frame));
            }
        }
        // Valid RAs that reached each peer: by the socket they arrived at, or, when the
        // capture shows nothing arriving at the peer's sockets (taken at the router), the
        // mapping the router sent them to. An RA lost on the way reached no one.
        let delivered: decode::FastSet<Endpoint> = match &cap.streamed {
            Some(st) => st
                .destinations
                .iter()
                .copied()
                .filter(|d| self.socket_peer.contains_key(d))
                .collect(),
            None => cap
                .records
                .iter()
                .filter(|r| r.is_tunnel())
                .filter_map(|r| r.dst())
                .filter(|d| self.socket_peer.contains_key(d))
                .collect(),
        };
        for p in 0..self.n {
            let (Some(f), Some(l)) = (
                cap.records.get(self.first(cap, p)),
                cap.records.get(self.last(cap, p)),
            ) else {
                continue;
            };
            if !ra_valid(f) || self.injected[p] {
                continue;
            }
            let target = l
                .dst()
                .and_then(|d| self.socket_peer.get(&d).copied())
                .or_else(|| {
                    let sent_to = f.dst()?;
                    self.peers.iter().position(|pe| {
                        pe.mappings.iter().any(|m| m.1 == sent_to)
                            && !pe.sockets.iter().any(|s| delivered.contains(s))
                    })
                });
            if let Some(i) = target {
                let last = self.last(cap, p);
                self.peers[i].ras.push((l.ts_ns, last));
            }
        }
    }
}

impl<'a> View<'a> {
    pub(crate) fn new(cap: &'a DecodedCapture, data: &'a ViewData, inputs: &'a Inputs) -> View<'a> {
        View {
            cap,
            data,
            inputs,
            window: None,
        }
    }

    /// A view whose data records are streamed past: key look-ups read `window`.
    pub(crate) fn streamed(
        cap: &'a DecodedCapture,
        data: &'a ViewData,
        inputs: &'a Inputs,
        window: &'a Window,
    ) -> View<'a> {
        View {
            cap,
            data,
            inputs,
            window: Some(window),
        }
    }

    /// Tunnel packets as (sender's sighting, receiver's sighting), in time order, without
    /// the injected ones.
    pub fn packets(&self) -> impl Iterator<Item = (&'a Decoded, &'a Decoded)> + '_ {
        (0..self.data.n).filter_map(move |p| {
            if self.data.injected[p] {
                return None;
            }
            Some((
                self.cap.records.get(self.data.first(self.cap, p))?,
                self.cap.records.get(self.data.last(self.cap, p))?,
            ))
        })
    }

    /// The packets of [`View::packets`] whose first sighting is not plain data: RS, RA,
    /// NS, NA, keepalives, ICMP, malformed datagrams, data carrying ICMPv6. They grow with
    /// peers and time, not with bytes: a check that looks only at those (by the first
    /// sighting) skips the data instead of reading every record.
    pub fn control_packets(&self) -> impl Iterator<Item = (&'a Decoded, &'a Decoded)> + '_ {
        self.control_all_packets()
            .filter(move |(f, _)| !self.is_injected(f))
    }

    /// The control packets of [`View::all_packets`] (injected ones too).
    pub fn control_all_packets(&self) -> impl Iterator<Item = (&'a Decoded, &'a Decoded)> + '_ {
        self.data.control.iter().filter_map(move |&p| {
            Some((
                self.cap.records.get(self.data.first(self.cap, p))?,
                self.cap.records.get(self.data.last(self.cap, p))?,
            ))
        })
    }

    /// The router's view of every control packet that reached the router (not injected):
    /// [`View::at_router`] for control packets.
    pub fn control_at_router(&self) -> impl Iterator<Item = &'a Decoded> + '_ {
        self.control_packets()
            .filter_map(move |(f, _)| self.router_view(f))
            .filter(|r| r.towards_router)
    }

    /// Injected tunnel packets (per [`super::Injection`]), as (sender's, receiver's) sighting.
    pub fn injected_packets(&self) -> impl Iterator<Item = (&'a Decoded, &'a Decoded)> + '_ {
        (0..self.data.n).filter_map(move |p| {
            if !self.data.injected[p] {
                return None;
            }
            Some((
                self.cap.records.get(self.data.first(self.cap, p))?,
                self.cap.records.get(self.data.last(self.cap, p))?,
            ))
        })
    }

    /// Every tunnel packet, injected or not.
    pub fn all_packets(&self) -> impl Iterator<Item = (&'a Decoded, &'a Decoded)> + '_ {
        (0..self.data.n).filter_map(move |p| {
            Some((
                self.cap.records.get(self.data.first(self.cap, p))?,
                self.cap.records.get(self.data.last(self.cap, p))?,
            ))
        })
    }

    /// Whether the packet this record belongs to was injected.
    pub fn is_injected(&self, r: &Decoded) -> bool {
        r.is_tunnel() && self.data.injected.get(r.packet).copied().unwrap_or(false)
    }

    /// The sender's and receiver's sightings of the packet `r` belongs to (from one capture
    /// point, `r` itself: it may be a record streamed past, not kept in the capture).
    pub fn ends<'r>(&self, r: &'r Decoded) -> Option<(&'r Decoded, &'r Decoded)>
    where
        'a: 'r,
    {
        if self.data.identity {
            return r.is_tunnel().then_some((r, r));
        }
        Some((
            self.cap.records.get(self.data.first(self.cap, r.packet))?,
            self.cap.records.get(self.data.last(self.cap, r.packet))?,
        ))
    }

    /// Every tunnel sighting of the packet `r` belongs to, in capture order.
    pub fn sightings<'r>(&self, r: &'r Decoded) -> impl Iterator<Item = &'r Decoded> + 'r
    where
        'a: 'r,
    {
        let data: &'a ViewData = self.data;
        let cap: &'a DecodedCapture = self.cap;
        let one = (data.identity && r.is_tunnel()).then_some(r);
        let all: Sightings<'a> = if r.is_tunnel() && !data.identity {
            data.all_of(cap, r.packet)
        } else {
            Sightings::Many(&[])
        };
        one.into_iter()
            .chain((0..all.as_slice().len()).filter_map(move |k| cap.records.get(*all.as_slice().get(k)?)))
    }

    /// The sighting of `r`'s packet that stands for what the router got: at the router's
    /// interface when the capture has it (None if the datagram never got there), else the
    /// last sighting on a public address, or the lone sighting. See the module notes.
    pub fn router_view<'r>(&self, r: &'r Decoded) -> Option<&'r Decoded>
    where
        'a: 'r,
    {
        if !r.is_tunnel() {
            return None;
        }
        if self.data.identity {
            // The lone sighting stands for itself, unless the router's node is known and
            // this is not an arrival there.
            return match &self.data.router_node {
                Some(node) => {
                    (r.node() == Some(node.as_str()) && r.direction != Some(Direction::Outbound)).then_some(r)
                }
                None => Some(r),
            };
        }
        self.cap.records.get(self.data.at_router(self.cap, r.packet))
    }

    /// The router's view of every tunnel packet that reached the router (not injected).
    pub fn at_router(&self) -> impl Iterator<Item = &'a Decoded> + '_ {
        self.packets()
            .filter_map(move |(f, _)| self.router_view(f))
            .filter(|r| r.towards_router)
    }

    /// Whether `r` is its packet's router view.
    pub fn is_router_view(&self, r: &Decoded) -> bool {
        self.router_view(r).is_some_and(|x| std::ptr::eq(x, r))
    }

    /// The node the router's interface belongs to, when the capture names it.
    pub fn router_node(&self) -> Option<&'a str> {
        self.data.router_node.as_deref()
    }

    /// How the inner source of `r`'s datagram fits its outer sources (see [`SourceCheck`]).
    pub fn source_check(&self, r: &Decoded) -> SourceCheck {
        let Some(ih) = r.inner else {
            return SourceCheck::NotJudged;
        };
        if ih.src.is_unspecified() || !self.cap.prefixes.contains(&addr::prefix64(&ih.src)) {
            return SourceCheck::NotJudged;
        }
        let named = r.profile.decode(&ih.src);
        let seen: Vec<&Decoded> = self.sightings(r).collect();
        let seen = if seen.is_empty() { vec![r] } else { seen };
        let srcs: Vec<Endpoint> = seen.iter().filter_map(|s| s.src()).collect();
        if decode::source_fits(named, &srcs) {
            return SourceCheck::Consistent;
        }
        let lone_inbound = seen.len() == 1 && r.direction == Some(Direction::Inbound);
        // Several sightings show where it went: to the router, or delivered to a peer's
        // socket, it was judged there as it was. A lone sighting cannot show that.
        let judged_by_someone = seen.len() > 1
            && (self.router_view(r).is_some_and(|x| x.towards_router)
                || seen
                    .iter()
                    .any(|s| s.dst().is_some_and(|d| self.data.socket_peer.contains_key(&d))));
        if decode::never_translated(named, &srcs, lone_inbound) && !judged_by_someone {
            return SourceCheck::Untranslated;
        }
        let from = self
            .router_view(r)
            .and_then(|x| x.src())
            .or_else(|| srcs.iter().rev().find(|s| !addr::is_private_v4(*s.ip())).copied())
            .or_else(|| srcs.last().copied());
        match from {
            Some(from) => SourceCheck::Inconsistent { named, from },
            None => SourceCheck::NotJudged,
        }
    }

    /// Whether any sighting of `r`'s datagram went to `ep` (the sender's uplink shows the
    /// destination it chose; NATs may rewrite it later).
    pub fn sent_to(&self, r: &Decoded, ep: Endpoint) -> bool {
        r.dst() == Some(ep) || self.sightings(r).any(|s| s.dst() == Some(ep))
    }

    /// Every record (tunnel or TUN) carrying the same inner packet, hop limit aside.
    pub fn with_key(&self, key: Option<u64>) -> impl Iterator<Item = &'a Decoded> + '_ {
        let data: &'a ViewData = self.data;
        let run: &'a [(u64, usize)] = key.map_or(&[][..], |k| data.key_run(k));
        run.iter().filter_map(move |&(_, i)| self.cap.records.get(i))
    }

    /// The records of [`View::with_key`] with a timestamp in `lo..=hi`, in time order: a
    /// binary search in the key's run, so many copies of one packet stay cheap. When the
    /// capture's data is streamed past ([`Window`]), only records within
    /// [`super::WALK_WINDOW_NS`] of the packet being walked are there to find, copied out.
    pub fn with_key_between(&self, key: Option<u64>, lo: u64, hi: u64) -> KeyRecords<'a> {
        if let Some(w) = self.window {
            return KeyRecords::Copied(w.between(self.cap, key, lo, hi).into_iter());
        }
        let data: &'a ViewData = self.data;
        let run: &'a [(u64, usize)] = key.map_or(&[][..], |k| data.key_run(k));
        let recs: &'a [Decoded] = &self.cap.records;
        let start = run.partition_point(|&(_, i)| recs.get(i).is_some_and(|r| r.ts_ns < lo));
        KeyRecords::Run {
            run: &run[start..],
            recs,
            hi,
        }
    }

    /// The records of [`View::with_key`] for `r`'s own inner key with a timestamp in
    /// `lo..=hi`, in time order (the same records as `with_key_between(r.inner_key, lo,
    /// hi)`): walked from `r` itself along its key's run, no look-up of the key.
    pub fn with_own_key_between(&self, r: &Decoded, lo: u64, hi: u64) -> KeyRecords<'a> {
        let at = self
            .index_of(r)
            .filter(|&i| i < self.data.key_next.len() && r.inner_key.is_some());
        if let Some(w) = self.window {
            if let Some(found) = w.own_between(self.cap, r, lo, hi) {
                return KeyRecords::Copied(found.into_iter());
            }
        }
        let Some(at) = at.filter(|_| self.window.is_none()) else {
            // Without the chains (or for a record not in the capture), the key's run.
            return self.with_key_between(r.inner_key, lo, hi);
        };
        let recs: &'a [Decoded] = &self.cap.records;
        let prev: &'a [u32] = &self.data.key_prev;
        let step = |links: &'a [u32], i: usize| links.get(i).filter(|&&n| n != u32::MAX).map(|&n| n as usize);
        let mut i = at;
        while let Some(p) = step(prev, i).filter(|&p| recs.get(p).is_some_and(|x| x.ts_ns >= lo)) {
            i = p;
        }
        KeyRecords::Chain {
            next: Some(i),
            links: &self.data.key_next,
            recs,
            lo,
            hi,
        }
    }

    /// The index of a record of this capture (by its place in the records' slice).
    fn index_of(&self, r: &Decoded) -> Option<usize> {
        let size = std::mem::size_of::<Decoded>().max(1);
        let off = (r as *const Decoded as usize).checked_sub(self.cap.records.as_ptr() as usize)?;
        let i = off / size;
        (off % size == 0 && i < self.cap.records.len()).then_some(i)
    }

    pub fn peers(&self) -> &'a [Peer] {
        &self.data.peers
    }

    pub fn rebindings(&self) -> &'a [Rebinding] {
        &self.data.rebindings
    }

    /// The peer that sent from this socket (sender's side).
    pub fn peer_of_socket(&self, ep: Endpoint) -> Option<usize> {
        self.data.socket_peer.get(&ep).copied()
    }

    /// The peer a datagram's destination belongs to: its socket, or one of its mappings.
    pub fn peer_of_endpoint(&self, ep: Endpoint) -> Option<usize> {
        self.peer_of_socket(ep).or_else(|| {
            self.data
                .peers
                .iter()
                .position(|p| p.mappings.iter().any(|m| m.1 == ep))
        })
    }

    /// The peer that owns a 6bed4 address (used it as a source).
    pub fn peer_of_address(&self, a: &Ipv6Addr) -> Option<usize> {
        self.data.peers.iter().position(|p| p.addresses.contains(a))
    }

    /// The packets seen on a 6bed4 TUN (what went into or came out of the tunnel), kernel
    /// chatter included, in time order. Only in a [`super::Walk`]'s `finish` or a whole
    /// check: a capture that has them is analysed in memory.
    pub fn tun_records(&self) -> impl Iterator<Item = &'a Decoded> + 'a {
        self.cap.records.iter().filter(|r| r.layer == Layer::Inner)
    }

    /// Records of the capture (tunnel and TUN), in time order.
    pub fn records(&self) -> &'a [Decoded] {
        &self.cap.records
    }

    /// The capture's first timestamp.
    pub fn t0(&self) -> u64 {
        match &self.cap.streamed {
            Some(st) => st.span.0,
            None => self.cap.records.first().map_or(0, |r| r.ts_ns),
        }
    }

    /// The capture's last timestamp.
    pub fn t_end(&self) -> u64 {
        match &self.cap.streamed {
            Some(st) => st.span.1,
            None => self.cap.records.last().map_or(0, |r| r.ts_ns),
        }
    }

    /// Whether this tunnel record is an RS (whatever its validity).
    pub fn is_rs(r: &Decoded) -> bool {
        r.is_tunnel() && r.icmp_type() == Some(inner::RS) && r.inner.is_some()
    }

    /// Whether this tunnel record is an RA (whatever its validity).
    pub fn is_ra(r: &Decoded) -> bool {
        r.is_tunnel() && r.icmp_type() == Some(inner::RA) && r.inner.is_some()
    }
}

/// The inner-key index: (key, record index) sorted, the slot table of where each key's
/// run starts (see `ViewData::key_slots`), and each record's neighbours in its run.
type KeyIndex = (Vec<(u64, usize)>, Vec<u32>, Vec<u32>, Vec<u32>);

fn key_index(records: &[Decoded]) -> KeyIndex {
    let mut by_key: Vec<(u64, usize)> =
        Vec::with_capacity(records.iter().filter(|r| r.inner_key.is_some()).count());
    by_key.extend(
        records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.inner_key?, i))),
    );
    by_key.sort_unstable();
    let mut key_slots = Vec::new();
    let (mut key_prev, mut key_next) = (Vec::new(), Vec::new());
    let keys = by_key.chunk_by(|x, y| x.0 == y.0).count();
    if keys > 0 && records.len() < u32::MAX as usize {
        key_prev = vec![u32::MAX; records.len()];
        key_next = vec![u32::MAX; records.len()];
        for w in by_key.windows(2) {
            if let [(ka, a), (kb, b)] = *w {
                if ka == kb {
                    key_next[a] = b as u32;
                    key_prev[b] = a as u32;
                }
            }
        }
        let size = (2 * keys).next_power_of_two();
        let bits = size.trailing_zeros().max(1);
        key_slots = vec![u32::MAX; 1 << bits];
        let mask = key_slots.len() - 1;
        let mut a = 0;
        for run in by_key.chunk_by(|x, y| x.0 == y.0) {
            let mut i = key_slot(run[0].0, bits);
            while key_slots[i] != u32::MAX {
                i = (i + 1) & mask;
            }
            key_slots[i] = a as u32;
            a += run.len();
        }
    }
    (by_key, key_slots, key_prev, key_next)
}

/// The node that sends the router's datagrams (their first sighting leaves by its
/// interface); the busiest one if several claim the router's endpoint.
fn router_node(cap: &DecodedCapture) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &cap.records {
        if r.is_tunnel() && r.is_first() && r.from_router && r.direction == Some(Direction::Outbound) {
            if let Some(n) = r.node() {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(_, c)| c)
        .map(|(n, _)| n.to_string())
}

/// Union-find over endpoints (path halving), for grouping sockets into peers.
#[derive(Debug, Default)]
pub(crate) struct UnionFind {
    parent: decode::FastMap<Endpoint, Endpoint>,
}

impl UnionFind {
    pub(crate) fn find(&mut self, mut x: Endpoint) -> Endpoint {
        loop {
            let p = *self.parent.entry(x).or_insert(x);
            if p == x {
                return x;
            }
            let gp = *self.parent.entry(p).or_insert(p);
            self.parent.insert(x, gp);
            x = gp;
        }
    }

    /// Joins the groups; the older root (smaller insertion is not tracked, so the first
    /// argument's root) stays the root.
    pub(crate) fn union(&mut self, a: Endpoint, b: Endpoint) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(rb, ra);
        }
    }
}

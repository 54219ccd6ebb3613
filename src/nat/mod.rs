//! The userspace NAT engine: RFC 4787 (UDP), RFC 5382 basics (TCP) and RFC 5508 (ICMP), as a
//! sans-IO state machine with an injected clock.
//!
//! The lab needs NATs whose behaviour is exactly what the topology says, because the point
//! is to test 6bed4 against each kind; Linux `masquerade` cannot do address-dependent
//! mapping, pick a filtering behaviour or expire a mapping at an exact virtual time. So the
//! fabric hands every packet crossing a NAT node to a [`Nat`]:
//!
//! - [`Nat::outbound`] for a packet that arrived on the inside interface and leaves through
//!   the outside one: it gets a mapping (created, or refreshed) and its source rewritten;
//!   if it is addressed to one of the NAT's own external endpoints it is hairpinned
//!   ([`Verdict::Hairpin`]: deliver it back inside).
//! - [`Nat::inbound`] for a packet that arrived on the outside: it is matched to a mapping by
//!   external address, port and protocol, filtered, and its destination rewritten.
//! - [`Nat::handle_timeout`] at [`Nat::poll_timeout`] expires mappings. Expiry does not
//!   depend on it, though: a lookup that finds an expired mapping expires it on the spot, so
//!   a mapping is gone exactly at its lifetime whether or not the timer ran.
//!
//! Translation is in place (the length never changes) and keeps every checksum right: IPv4
//! header, UDP (a zero UDP checksum stays zero), TCP, ICMP, and for ICMP errors the embedded
//! header and its transport checksum too.
//!
//! What is not translated, and is dropped with a counted [`DropReason`]: non-first fragments
//! and first fragments without a full transport header ([`DropReason::Fragment`]; there is no
//! reassembly, so a fragmented datagram's first fragment is translated and the rest dropped),
//! packets with a bad IPv4 header checksum or truncated headers (`Malformed`), protocols
//! other than UDP, TCP and ICMP, inbound echo requests and ICMP errors quoting ICMP errors
//! (`NotTranslatable`). IP options are fine. The engine never decrements the TTL: routing is
//! the fabric's job.
//!
//! Every decision (mapping created, refreshed, expired, refused, packet dropped, flush) is a
//! [`NatEvent`] the caller drains with [`Nat::take_events`] and can write as JSON lines.
//!
//! Modelling choices where the RFCs leave room (each one is what the tests pin down):
//! - Mappings are keyed by inside address, inside port and protocol (plus the remote
//!   address, and port, under ADM / APDM), so inside hosts sharing a source port never
//!   collide; an external endpoint belongs to one mapping at a time.
//! - Filtering state is the set of remotes a mapping has sent to; it lives as long as the
//!   mapping. A hairpinned packet passes the destination mapping's filter as if it came
//!   from outside, from the sender's external endpoint.
//! - A mapping expires exactly its timeout after its last refresh (`now >= last + timeout`).
//!   UDP and ICMP echo mappings are refreshed per `Config::refresh`; TCP mappings by every
//!   admitted segment in either direction, with one connection state per mapping (exact for
//!   APDM, an approximation when EIM carries several connections from one inside port).
//! - ICMP echo identifiers are allocated like ports, from the same `port_range`.
//! - With a paired pool, a host whose address has no free port is refused, never moved.

mod config;
mod event;
mod table;
mod wire;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use config::{
    Config, ConfigError, FilteringBehavior, MappingBehavior, Pooling, PortAllocation, Preset,
    RefreshDirection, UnknownPreset,
};
pub use event::{
    Direction, DropCounts, DropReason, Flow, FlushCause, NatEvent, NatEventKind, Proto, Stats, Verdict,
};

use table::{outside_key, remote_key, tcp_update, FoldBuild, InsideKey, Mapping, PortSet, Remotes, Timer};
use wire::{Inner, Packet, Side, L4};

/// A live mapping, as [`Nat::mappings`] and [`Nat::mapping_at`] report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    /// Protocol.
    pub proto: Proto,
    /// Inside endpoint.
    pub inside: SocketAddrV4,
    /// External endpoint.
    pub external: SocketAddrV4,
    /// The remote the mapping is bound to, under address(-and-port)-dependent mapping.
    pub bound_remote: Option<SocketAddrV4>,
    /// When it expires unless refreshed.
    pub expires: Instant,
    /// Whether a tracked TCP connection is established (long timeout).
    pub tcp_established: bool,
}

/// The NAT engine. See the module documentation.
pub struct Nat {
    cfg: Config,
    /// External addresses, indexed by `Mapping::ext_idx`.
    pool: Vec<u32>,
    /// `(address, index)` sorted by address, to recognise external addresses in O(log n).
    pool_sorted: Vec<(u32, u16)>,
    inside_mask: u32,
    inside_net: u32,
    epoch: Instant,
    up: bool,
    slots: Vec<Option<Mapping>>,
    free: Vec<u32>,
    live: usize,
    hasher: FoldBuild,
    by_inside: HashMap<InsideKey, u32, FoldBuild>,
    /// Per protocol (`Proto::index`): `outside_key(pool index, port)` → slot.
    by_outside: [HashMap<u32, u32, FoldBuild>; 3],
    /// Ports in use, per external address, per protocol.
    ports: Vec<[PortSet; 3]>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_gen: u32,
    rng: ChaCha8Rng,
    /// Next port for sequential allocation, per protocol.
    cursor: [u16; 3],
    /// Next pool index for new pairings / round-robin.
    rr: usize,
    /// Pairing: inside host → (pool index, number of its mappings).
    paired: HashMap<u32, (u16, u32), FoldBuild>,
    events: Vec<NatEvent>,
    stats: Stats,
    /// Timeouts in nanoseconds, per protocol; TCP has two.
    udp_ns: u64,
    icmp_ns: u64,
    tcp_est_ns: u64,
    tcp_trans_ns: u64,
}

/// The flow a translatable packet belongs to, from the inside host's point of view.
#[derive(Clone, Copy, Debug)]
struct Fivetuple {
    proto: Proto,
    in_addr: u32,
    in_port: u16,
    r_addr: u32,
    r_port: u16,
}

fn sock(addr: u32, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(addr), port)
}

fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Nat {
    /// A NAT with `config`, whose clock starts at `now` (event times count from it).
    pub fn new(config: Config, now: Instant) -> Result<Nat, ConfigError> {
        config.validate()?;
        let hasher = FoldBuild::new(config.seed);
        let mask = config::prefix_mask(config.inside_net.1);
        let mut nat = Nat {
            inside_mask: mask,
            inside_net: u32::from(config.inside_net.0) & mask,
            epoch: now,
            up: true,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            hasher,
            by_inside: HashMap::with_hasher(hasher),
            by_outside: std::array::from_fn(|_| HashMap::with_hasher(hasher)),
            ports: Vec::new(),
            timers: BinaryHeap::new(),
            next_gen: 0,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            cursor: [config.port_range.0; 3],
            rr: 0,
            paired: HashMap::with_hasher(hasher),
            events: Vec::new(),
            stats: Stats::default(),
            udp_ns: dur_ns(config.udp_timeout),
            icmp_ns: dur_ns(config.icmp_timeout),
            tcp_est_ns: dur_ns(config.tcp_established_timeout),
            tcp_trans_ns: dur_ns(config.tcp_transitory_timeout),
            pool: Vec::new(),
            pool_sorted: Vec::new(),
            cfg: config,
        };
        nat.install_pool(nat.cfg.pool());
        Ok(nat)
    }

    /// The configuration in effect (runtime controls are reflected in it).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The instant event times count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Cumulative counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of live mappings (some may be past their lifetime until the next lookup or
    /// [`Nat::handle_timeout`] notices).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are no mappings.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether the NAT is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The events recorded since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<NatEvent> {
        std::mem::take(&mut self.events)
    }

    // ----- packets -------------------------------------------------------------------------

    /// A packet from the inside, heading out: translate its source (creating or refreshing a
    /// mapping), or hairpin it, or drop it. `packet` is one IPv4 packet (bytes after its total
    /// length are ignored and left alone).
    pub fn outbound(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        let t = self.ns(now);
        let v = self.outbound_inner(t, packet);
        self.account(t, Direction::Outbound, v, packet)
    }

    /// A packet from the outside: translate its destination back to the inside endpoint of
    /// the mapping it is for, if the mapping's filtering admits its source; otherwise drop.
    pub fn inbound(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        let t = self.ns(now);
        let v = self.inbound_inner(t, packet);
        self.account(t, Direction::Inbound, v, packet)
    }

    fn account(&mut self, t: u64, dir: Direction, v: Verdict, packet: &[u8]) -> Verdict {
        match v {
            Verdict::Forward if dir == Direction::Outbound => self.stats.outbound += 1,
            Verdict::Forward => self.stats.inbound += 1,
            Verdict::Hairpin => self.stats.hairpinned += 1,
            Verdict::Drop(reason) => {
                self.stats.drops.bump(reason);
                if self.cfg.log_drops {
                    let flow = flow_of(packet);
                    self.emit(
                        t,
                        NatEventKind::PacketDropped {
                            direction: dir,
                            reason,
                            flow,
                        },
                    );
                }
            }
        }
        v
    }

    fn outbound_inner(&mut self, t: u64, b: &mut [u8]) -> Verdict {
        if !self.up {
            return Verdict::Drop(DropReason::Down);
        }
        let p = match wire::parse(b) {
            Ok(p) => p,
            Err((r, _)) => return Verdict::Drop(r),
        };
        if p.src & self.inside_mask != self.inside_net {
            return Verdict::Drop(DropReason::SourceNotInside);
        }
        let flow = match p.l4 {
            L4::Ports { sport, dport, .. } => Fivetuple {
                proto: if p.proto == wire::UDP {
                    Proto::Udp
                } else {
                    Proto::Tcp
                },
                in_addr: p.src,
                in_port: sport,
                r_addr: p.dst,
                r_port: dport,
            },
            L4::Echo { request: true, id } => Fivetuple {
                proto: Proto::Icmp,
                in_addr: p.src,
                in_port: id,
                r_addr: p.dst,
                r_port: 0,
            },
            L4::Error(_) if !self.cfg.icmp_errors => return Verdict::Drop(DropReason::IcmpErrorsOff),
            L4::Error(inner) => return self.outbound_error(t, b, &p, &inner),
            L4::Echo { request: false, .. } | L4::Other { .. } => {
                return Verdict::Drop(DropReason::NotTranslatable)
            }
        };
        let hairpin_idx = self.pool_index(p.dst);
        if hairpin_idx.is_some() {
            if !self.cfg.hairpinning {
                return Verdict::Drop(DropReason::HairpinOff);
            }
            if flow.proto == Proto::Icmp {
                // An echo request to the NAT's own address names no mapping to hairpin to.
                return Verdict::Drop(DropReason::NotTranslatable);
            }
        }
        let (slot, created) = match self.mapping_for(t, &flow) {
            Ok(s) => s,
            Err(r) => return Verdict::Drop(r),
        };
        let tcp_flags = tcp_flags(&p);
        let Some((ext_addr, ext_port)) = self.touch_outbound(t, slot, &flow, tcp_flags, created) else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        let Some(idx) = hairpin_idx else {
            wire::set(b, &p, Side::Src, ext_addr, ext_port);
            return Verdict::Forward;
        };
        // Hairpin: to the NAT this is now an inbound packet from the sender's external
        // endpoint to another external endpoint (RFC 4787 REQ-9: the source is the sender's
        // external endpoint, so filtering sees that). Nothing is rewritten unless it passes.
        let Some(dslot) = self.lookup_external(t, flow.proto, idx, flow.r_port) else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        match self.admit_inbound(t, dslot, ext_addr, ext_port, tcp_flags) {
            Ok((in_addr, in_port)) => {
                wire::set(b, &p, Side::Src, ext_addr, ext_port);
                wire::set(b, &p, Side::Dst, in_addr, in_port);
                Verdict::Hairpin
            }
            Err(r) => Verdict::Drop(r),
        }
    }

    fn inbound_inner(&mut self, t: u64, b: &mut [u8]) -> Verdict {
        if !self.up {
            return Verdict::Drop(DropReason::Down);
        }
        let p = match wire::parse(b) {
            Ok(p) => p,
            Err((r, _)) => return Verdict::Drop(r),
        };
        let Some(idx) = self.pool_index(p.dst) else {
            return Verdict::Drop(DropReason::NotExternalAddress);
        };
        let (proto, port, r_port) = match p.l4 {
            L4::Ports { sport, dport, .. } => (
                if p.proto == wire::UDP {
                    Proto::Udp
                } else {
                    Proto::Tcp
                },
                dport,
                sport,
            ),
            L4::Echo { request: false, id } => (Proto::Icmp, id, 0),
            L4::Error(_) if !self.cfg.icmp_errors => return Verdict::Drop(DropReason::IcmpErrorsOff),
            L4::Error(inner) => return self.inbound_error(t, b, &p, idx, &inner),
            L4::Echo { request: true, .. } | L4::Other { .. } => {
                return Verdict::Drop(DropReason::NotTranslatable)
            }
        };
        let Some(slot) = self.lookup_external(t, proto, idx, port) else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        match self.admit_inbound(t, slot, p.src, r_port, tcp_flags(&p)) {
            Ok((in_addr, in_port)) => {
                wire::set(b, &p, Side::Dst, in_addr, in_port);
                Verdict::Forward
            }
            Err(r) => Verdict::Drop(r),
        }
    }

    /// An ICMP error from outside about a packet we translated outbound: the quoted packet's
    /// source is our external endpoint. It must name a live mapping, and its destination (the
    /// remote the original went to) must pass that mapping's filter (RFC 5508 REQ-3/REQ-4);
    /// the outer source may be any router on the path, so it is not filtered. Errors do not
    /// refresh mappings.
    fn inbound_error(&mut self, t: u64, b: &mut [u8], p: &Packet, idx: usize, inner: &Inner) -> Verdict {
        let Some(proto) = Proto::from_number(inner.proto) else {
            return Verdict::Drop(DropReason::NotTranslatable);
        };
        if self.pool_index(inner.src) != Some(idx) {
            return Verdict::Drop(DropReason::NoMapping);
        }
        let Some(slot) = self.lookup_external(t, proto, idx, inner.sport) else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        let Some(m) = self.slot(slot) else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        let r_port = if proto == Proto::Icmp { 0 } else { inner.dport };
        if !self.permits(m, inner.dst, r_port) {
            return Verdict::Drop(DropReason::Filtered);
        }
        let (in_addr, in_port) = (m.in_addr, m.in_port);
        wire::translate_error(b, p, inner, Side::Dst, in_addr, in_port);
        self.stats.icmp_errors += 1;
        Verdict::Forward
    }

    /// An ICMP error from inside about a packet we translated inbound: the quoted packet's
    /// destination is the inside endpoint of a mapping. The outer source (which may be an
    /// inside router rather than the host) and the quoted destination become the mapping's
    /// external address and endpoint.
    fn outbound_error(&mut self, t: u64, b: &mut [u8], p: &Packet, inner: &Inner) -> Verdict {
        let Some(proto) = Proto::from_number(inner.proto) else {
            return Verdict::Drop(DropReason::NotTranslatable);
        };
        let r_port = if proto == Proto::Icmp { 0 } else { inner.sport };
        let flow = Fivetuple {
            proto,
            in_addr: inner.dst,
            in_port: inner.dport,
            r_addr: inner.src,
            r_port,
        };
        let key = self.inside_key(&flow);
        let Some(slot) = self
            .by_inside
            .get(&key)
            .copied()
            .and_then(|s| self.live_slot(t, s))
        else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        let Some(m) = self.slot(slot) else {
            return Verdict::Drop(DropReason::NoMapping);
        };
        let ext = self.pool[usize::from(m.ext_idx)];
        let ext_port = m.ext_port;
        wire::translate_error(b, p, inner, Side::Src, ext, ext_port);
        self.stats.icmp_errors += 1;
        Verdict::Forward
    }

    // ----- mappings ------------------------------------------------------------------------

    fn inside_key(&self, f: &Fivetuple) -> InsideKey {
        let (r_addr, r_port) = match self.cfg.mapping {
            MappingBehavior::EndpointIndependent => (0, 0),
            MappingBehavior::AddressDependent => (f.r_addr, 0),
            MappingBehavior::AddressAndPortDependent => (f.r_addr, f.r_port),
        };
        InsideKey {
            in_addr: f.in_addr,
            r_addr,
            in_port: f.in_port,
            r_port,
            proto: f.proto.number(),
        }
    }

    fn slot(&self, slot: u32) -> Option<&Mapping> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut Mapping> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn timeout_ns(&self, m: &Mapping) -> u64 {
        match m.proto {
            wire::UDP => self.udp_ns,
            wire::TCP if m.tcp & table::tcp::ESTABLISHED != 0 => self.tcp_est_ns,
            wire::TCP => self.tcp_trans_ns,
            _ => self.icmp_ns,
        }
    }

    fn expiry(&self, m: &Mapping) -> u64 {
        m.last.saturating_add(self.timeout_ns(m))
    }

    /// The live mapping in `slot`, expiring it first if its lifetime is over at `t`.
    fn live_slot(&mut self, t: u64, slot: u32) -> Option<u32> {
        let m = self.slot(slot)?;
        let exp = self.expiry(m);
        if t >= exp {
            self.expire(slot, exp);
            None
        } else {
            Some(slot)
        }
    }

    /// The mapping for an outbound flow: the existing one, or a new one (`true`).
    fn mapping_for(&mut self, t: u64, f: &Fivetuple) -> Result<(u32, bool), DropReason> {
        let key = self.inside_key(f);
        if let Some(&slot) = self.by_inside.get(&key) {
            if let Some(s) = self.live_slot(t, slot) {
                return Ok((s, false));
            }
        }
        // Free the ports of mappings whose time is up before looking for one, so that reuse
        // after expiry does not depend on the caller running the timer. O(1) when none is due.
        self.expire_due(t);
        match self.allocate(f) {
            Some((idx, port)) => Ok((self.insert(t, key, f, idx, port), true)),
            None => {
                self.stats.mappings_refused += 1;
                self.emit(
                    t,
                    NatEventKind::MappingRefused {
                        proto: f.proto,
                        inside: sock(f.in_addr, f.in_port),
                        remote: sock(f.r_addr, f.r_port),
                        reason: DropReason::PortsExhausted,
                    },
                );
                Err(DropReason::PortsExhausted)
            }
        }
    }

    /// Chooses an external address and port for a new mapping, or `None` when none is free.
    fn allocate(&mut self, f: &Fivetuple) -> Option<(u16, u16)> {
        let n = self.pool.len();
        if self.cfg.pooling == Pooling::Paired {
            if let Some(&(idx, _)) = self.paired.get(&f.in_addr) {
                return self.allocate_port(usize::from(idx), f).map(|p| (idx, p));
            }
        }
        for i in 0..n {
            let idx = (self.rr + i) % n;
            if let Some(port) = self.allocate_port(idx, f) {
                self.rr = (idx + 1) % n;
                return Some((idx as u16, port));
            }
        }
        None
    }

    fn allocate_port(&mut self, idx: usize, f: &Fivetuple) -> Option<u16> {
        let (lo, hi) = self.cfg.port_range;
        let size = u32::from(hi) - u32::from(lo) + 1;
        let pi = f.proto.index();
        let table = &self.ports.get(idx)?[pi];
        if table.used >= size {
            return None;
        }
        let parity = (self.cfg.parity && f.proto != Proto::Icmp).then_some(f.in_port % 2);
        let fits = |p: u16| parity.is_none_or(|par| p % 2 == par);
        match self.cfg.port_allocation {
            PortAllocation::Preserve => table.scan(lo, hi, f.in_port, parity),
            PortAllocation::Sequential => {
                let p = table.scan(lo, hi, self.cursor[pi], parity);
                if let Some(p) = p {
                    self.cursor[pi] = if p >= hi { lo } else { p + 1 };
                }
                p
            }
            PortAllocation::Random => {
                // A few random probes find a free port unless the range is nearly full;
                // then one scan from a random start keeps the refusal bounded.
                let mut found = None;
                for _ in 0..16 {
                    let p = self.rng.gen_range(lo..=hi);
                    if fits(p) && table.is_free(p) {
                        found = Some(p);
                        break;
                    }
                }
                found.or_else(|| table.scan(lo, hi, self.rng.gen_range(lo..=hi), parity))
            }
        }
    }

    fn insert(&mut self, t: u64, key: InsideKey, f: &Fivetuple, idx: u16, port: u16) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        let m = Mapping {
            last: t,
            remotes: Remotes::Empty,
            log_mark: ms(t),
            refreshes: 0,
            gen: self.next_gen,
            in_addr: f.in_addr,
            key_r_addr: key.r_addr,
            in_port: f.in_port,
            ext_port: port,
            key_r_port: key.r_port,
            ext_idx: idx,
            proto: key.proto,
            tcp: 0,
        };
        let expiry = self.expiry(&m);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(m);
                s
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact(growth(self.slots.len()));
                }
                self.slots.push(Some(m));
                (self.slots.len() - 1) as u32
            }
        };
        self.live += 1;
        self.by_inside.insert(key, slot);
        if let Some(sets) = self.ports.get_mut(usize::from(idx)) {
            sets[f.proto.index()].set(port, true);
        }
        self.by_outside[f.proto.index()].insert(outside_key(idx, port), slot);
        if self.cfg.pooling == Pooling::Paired {
            self.paired.entry(f.in_addr).or_insert((idx, 0)).1 += 1;
        }
        self.push_timer_entry(Timer {
            at: expiry,
            slot,
            gen: self.next_gen,
        });
        self.stats.mappings_created += 1;
        let ext = self.pool[usize::from(idx)];
        self.emit(
            t,
            NatEventKind::MappingCreated {
                proto: f.proto,
                inside: sock(f.in_addr, f.in_port),
                external: sock(ext, port),
                remote: sock(f.r_addr, f.r_port),
            },
        );
        slot
    }

    /// Takes a mapping out of every index. The caller logs why.
    fn remove(&mut self, slot: u32) -> Option<Mapping> {
        let m = self.slots.get_mut(slot as usize)?.take()?;
        self.by_inside.remove(&m.inside_key());
        if let Some(pi) = Proto::from_number(m.proto).map(Proto::index) {
            self.by_outside[pi].remove(&outside_key(m.ext_idx, m.ext_port));
            if let Some(sets) = self.ports.get_mut(usize::from(m.ext_idx)) {
                sets[pi].set(m.ext_port, false);
            }
        }
        if let Some(e) = self.paired.get_mut(&m.in_addr) {
            e.1 -= 1;
            if e.1 == 0 {
                self.paired.remove(&m.in_addr);
            }
        }
        self.free.push(slot);
        self.live -= 1;
        Some(m)
    }

    /// Removes an expired mapping and logs it at its exact expiry time `at`.
    fn expire(&mut self, slot: u32, at: u64) {
        if let Some(m) = self.remove(slot) {
            self.stats.mappings_expired += 1;
            let proto = Proto::from_number(m.proto).unwrap_or(Proto::Udp);
            let ext = self.pool[usize::from(m.ext_idx)];
            self.emit(
                at,
                NatEventKind::MappingExpired {
                    proto,
                    inside: sock(m.in_addr, m.in_port),
                    external: sock(ext, m.ext_port),
                },
            );
        }
    }

    /// The live mapping owning an external endpoint.
    fn lookup_external(&mut self, t: u64, proto: Proto, idx: usize, port: u16) -> Option<u32> {
        let idx = u16::try_from(idx).ok()?;
        let slot = *self.by_outside[proto.index()].get(&outside_key(idx, port))?;
        self.live_slot(t, slot)
    }

    /// Records an outbound packet on its mapping: remote for filtering, TCP state, refresh.
    /// Returns the external endpoint.
    fn touch_outbound(
        &mut self,
        t: u64,
        slot: u32,
        f: &Fivetuple,
        tcp_flags: u8,
        created: bool,
    ) -> Option<(u32, u16)> {
        let filter_key = match self.cfg.filtering {
            FilteringBehavior::EndpointIndependent => None,
            FilteringBehavior::AddressDependent => Some(remote_key(f.r_addr, 0)),
            FilteringBehavior::AddressAndPortDependent => Some(remote_key(f.r_addr, f.r_port)),
        };
        let hasher = self.hasher;
        let m = self.slot_mut(slot)?;
        if let Some(k) = filter_key {
            m.remotes.insert(k, hasher);
        }
        if f.proto == Proto::Tcp {
            self.set_tcp(slot, tcp_update(self.slot(slot)?.tcp, true, tcp_flags));
        }
        if !created {
            self.refresh(t, slot, Direction::Outbound);
        }
        let m = self.slot(slot)?;
        Some((self.pool[usize::from(m.ext_idx)], m.ext_port))
    }

    /// Applies filtering to a packet from `r_addr:r_port` for the mapping in `slot`; on
    /// success records TCP state, refreshes (per configuration) and returns the inside
    /// endpoint.
    fn admit_inbound(
        &mut self,
        t: u64,
        slot: u32,
        r_addr: u32,
        r_port: u16,
        tcp_flags: u8,
    ) -> Result<(u32, u16), DropReason> {
        let m = self.slot(slot).ok_or(DropReason::NoMapping)?;
        if !self.permits(m, r_addr, r_port) {
            return Err(DropReason::Filtered);
        }
        let (in_addr, in_port, proto, state) = (m.in_addr, m.in_port, m.proto, m.tcp);
        if proto == wire::TCP {
            self.set_tcp(slot, tcp_update(state, false, tcp_flags));
            self.refresh(t, slot, Direction::Inbound);
        } else if self.cfg.refresh == RefreshDirection::Both {
            self.refresh(t, slot, Direction::Inbound);
        }
        Ok((in_addr, in_port))
    }

    fn permits(&self, m: &Mapping, r_addr: u32, r_port: u16) -> bool {
        match self.cfg.filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => m.remotes.contains(remote_key(r_addr, 0)),
            FilteringBehavior::AddressAndPortDependent => m.remotes.contains(remote_key(r_addr, r_port)),
        }
    }

    /// Sets TCP tracking bits; if that shortens the timeout, pushes an earlier timer (the
    /// later one becomes stale), so that `poll_timeout` never sleeps past an expiry.
    fn set_tcp(&mut self, slot: u32, state: u8) {
        let Some(m) = self.slot(slot) else { return };
        let before = self.expiry(m);
        let Some(m) = self.slot_mut(slot) else { return };
        m.tcp = state;
        let Some(m) = self.slot(slot) else { return };
        let after = self.expiry(m);
        if after < before {
            self.push_timer(slot, after);
        }
    }

    fn push_timer(&mut self, slot: u32, at: u64) {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        if let Some(m) = self.slot_mut(slot) {
            m.gen = gen;
            self.push_timer_entry(Timer { at, slot, gen });
        }
    }

    fn push_timer_entry(&mut self, timer: Timer) {
        if self.timers.len() == self.timers.capacity() {
            self.timers.reserve_exact(growth(self.timers.len()));
        }
        self.timers.push(Reverse(timer));
    }

    /// Restarts a mapping's lifetime at `t`, logging the first refresh and then at most one
    /// per quarter lifetime.
    fn refresh(&mut self, t: u64, slot: u32, dir: Direction) {
        let Some(m) = self.slot(slot) else { return };
        let quarter_ms = (self.timeout_ns(m) / 4 / 1_000_000).min(u64::from(u32::MAX)) as u32;
        let ext = self.pool[usize::from(m.ext_idx)];
        self.stats.refreshes += 1;
        let Some(m) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        m.last = t;
        m.refreshes = m.refreshes.saturating_add(1);
        let now_ms = ms(t);
        if m.refreshes == 1 || now_ms.wrapping_sub(m.log_mark) >= quarter_ms {
            m.log_mark = now_ms;
            let kind = NatEventKind::MappingRefreshed {
                proto: Proto::from_number(m.proto).unwrap_or(Proto::Udp),
                inside: sock(m.in_addr, m.in_port),
                external: sock(ext, m.ext_port),
                direction: dir,
                refreshes: m.refreshes,
            };
            self.emit(t, kind);
        }
    }

    fn pool_index(&self, addr: u32) -> Option<usize> {
        self.pool_sorted
            .binary_search_by_key(&addr, |&(a, _)| a)
            .ok()
            .map(|i| usize::from(self.pool_sorted[i].1))
    }

    fn install_pool(&mut self, pool: Vec<Ipv4Addr>) {
        self.pool = pool.iter().map(|&a| u32::from(a)).collect();
        self.pool_sorted = self
            .pool
            .iter()
            .enumerate()
            .map(|(i, &a)| (a, i as u16))
            .collect();
        self.pool_sorted.sort_unstable();
        self.ports.truncate(self.pool.len());
        for t in self.ports.iter_mut().flatten() {
            t.clear();
        }
        self.ports.resize_with(self.pool.len(), Default::default);
        self.rr = 0;
    }

    fn emit(&mut self, t: u64, kind: NatEventKind) {
        if self.events.len() >= self.cfg.max_pending_events {
            self.stats.events_lost += 1;
        } else {
            self.events.push(NatEvent { t_ns: t, kind });
        }
    }

    fn ns(&self, now: Instant) -> u64 {
        dur_ns(now.saturating_duration_since(self.epoch))
    }

    fn instant(&self, t: u64) -> Instant {
        // Beyond what an Instant holds (absurd timeouts): "far in the future" is enough.
        self.epoch
            .checked_add(Duration::from_nanos(t))
            .or_else(|| self.epoch.checked_add(Duration::from_secs(u32::MAX.into())))
            .unwrap_or(self.epoch)
    }

    // ----- timers --------------------------------------------------------------------------

    /// When [`Nat::handle_timeout`] next has work: the earliest pending expiry (possibly of a
    /// mapping refreshed since, which then costs one spurious wake-up per lifetime).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| self.instant(t.at))
    }

    /// Expires every mapping whose lifetime is over at `now`. Cost: O(log n) per timer due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_due(self.ns(now));
    }

    fn expire_due(&mut self, t: u64) {
        while let Some(&Reverse(timer)) = self.timers.peek() {
            if timer.at > t {
                break;
            }
            self.timers.pop();
            let Some(m) = self.slot(timer.slot) else { continue };
            if m.gen != timer.gen {
                continue;
            }
            let exp = self.expiry(m);
            if exp <= t {
                self.expire(timer.slot, exp);
            } else {
                self.timers.push(Reverse(Timer { at: exp, ..timer }));
            }
        }
    }

    /// Rebuilds the heap: one timer per mapping at its real expiry (after a timeout change).
    fn rebuild_timers(&mut self) {
        let mut timers = Vec::with_capacity(self.live);
        for (i, m) in self.slots.iter().enumerate() {
            if let Some(m) = m {
                timers.push(Reverse(Timer {
                    at: self.expiry(m),
                    slot: i as u32,
                    gen: m.gen,
                }));
            }
        }
        self.timers = BinaryHeap::from(timers);
    }

    // ----- runtime controls ----------------------------------------------------------------

    /// Drops every mapping (logged as one `mappings_flushed` event).
    pub fn flush(&mut self, now: Instant) {
        self.flush_all(self.ns(now), FlushCause::Flush);
    }

    fn flush_all(&mut self, t: u64, cause: FlushCause) {
        let count = self.live;
        self.slots.clear();
        self.free.clear();
        self.by_inside.clear();
        self.paired.clear();
        self.timers.clear();
        for set in self.ports.iter_mut().flatten() {
            set.clear();
        }
        for map in &mut self.by_outside {
            map.clear();
        }
        self.live = 0;
        self.stats.mappings_flushed += count as u64;
        self.emit(t, NatEventKind::MappingsFlushed { count, cause });
    }

    /// Rebinding: the NAT gets new external addresses (say its DHCP lease changed). All
    /// existing mappings are dropped, as a real NAT's would be; new ones use the new pool.
    pub fn set_external_addresses(&mut self, now: Instant, addrs: Vec<Ipv4Addr>) -> Result<(), ConfigError> {
        config::validate_pool(&self.cfg, &addrs)?;
        let t = self.ns(now);
        self.flush_all(t, FlushCause::Rebind);
        self.cfg.external_addrs = addrs.clone();
        self.install_pool(addrs.clone());
        self.emit(t, NatEventKind::ExternalAddressesChanged { addresses: addrs });
        Ok(())
    }

    /// Changes the UDP lifetime; existing mappings then expire `timeout` after their last
    /// refresh (which may be at once).
    pub fn set_udp_timeout(&mut self, now: Instant, timeout: Duration) {
        self.cfg.udp_timeout = timeout;
        self.udp_ns = dur_ns(timeout);
        self.rebuild_timers();
        self.emit(
            self.ns(now),
            NatEventKind::UdpTimeoutChanged {
                timeout_ns: self.udp_ns,
            },
        );
    }

    /// Up or down. Going down drops every mapping; while down, every packet is dropped
    /// (counted as [`DropReason::Down`]), as by a rebooting router.
    pub fn set_up(&mut self, now: Instant, up: bool) {
        if up == self.up {
            return;
        }
        let t = self.ns(now);
        self.up = up;
        if !up {
            self.flush_all(t, FlushCause::Down);
        }
        self.emit(t, NatEventKind::AdminState { up });
    }

    // ----- introspection -------------------------------------------------------------------

    /// Every live mapping, in no particular order.
    pub fn mappings(&self) -> impl Iterator<Item = MappingInfo> + '_ {
        self.slots.iter().flatten().map(|m| self.info(m))
    }

    /// The mapping owning an external endpoint, if live at `now` (read-only: does not expire).
    pub fn mapping_at(&self, now: Instant, proto: Proto, external: SocketAddrV4) -> Option<MappingInfo> {
        let idx = self.pool_index(u32::from(*external.ip()))?;
        let key = outside_key(u16::try_from(idx).ok()?, external.port());
        let m = self.slot(*self.by_outside[proto.index()].get(&key)?)?;
        (self.expiry(m) > self.ns(now)).then(|| self.info(m))
    }

    fn info(&self, m: &Mapping) -> MappingInfo {
        let bound_remote = match self.cfg.mapping {
            MappingBehavior::EndpointIndependent => None,
            _ => Some(sock(m.key_r_addr, m.key_r_port)),
        };
        MappingInfo {
            proto: Proto::from_number(m.proto).unwrap_or(Proto::Udp),
            inside: sock(m.in_addr, m.in_port),
            external: sock(self.pool[usize::from(m.ext_idx)], m.ext_port),
            bound_remote,
            expires: self.instant(self.expiry(m)),
            tcp_established: m.tcp & table::tcp::ESTABLISHED != 0,
        }
    }

    /// Heap bytes held by the mapping structures (slab, indexes, timers, port tables,
    /// filter sets), computed from capacities. Divide by [`Nat::len`] for bytes per mapping.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let slab = self.slots.capacity() * size_of::<Option<Mapping>>();
        let free = self.free.capacity() * 4;
        let inside = table::hashset_bytes(self.by_inside.capacity(), size_of::<(InsideKey, u32)>());
        let paired = table::hashset_bytes(self.paired.capacity(), size_of::<(u32, (u16, u32))>());
        let timers = self.timers.capacity() * size_of::<Reverse<Timer>>();
        let outside: usize = self
            .by_outside
            .iter()
            .map(|m| table::hashset_bytes(m.capacity(), size_of::<(u32, u32)>()))
            .sum();
        let ports: usize = self.ports.iter().flatten().map(PortSet::heap_bytes).sum();
        let remotes: usize = self.slots.iter().flatten().map(|m| m.remotes.heap_bytes()).sum();
        slab + free + inside + outside + paired + timers + ports + remotes
    }
}

/// How much to grow the slab and the timer heap when full: a quarter, not the default
/// doubling, so that spare capacity costs at most ~25 % of the per-mapping memory while
/// pushes stay amortised O(1).
fn growth(len: usize) -> usize {
    (len / 4).max(64)
}

/// Milliseconds since the epoch, wrapping (only differences are used).
fn ms(t: u64) -> u32 {
    (t / 1_000_000) as u32
}

fn tcp_flags(p: &Packet) -> u8 {
    match p.l4 {
        L4::Ports { tcp_flags, .. } => tcp_flags,
        _ => 0,
    }
}

/// The endpoints of a packet for the drop log, if it parses far enough.
fn flow_of(b: &[u8]) -> Option<Flow> {
    let p = match wire::parse(b) {
        Ok(p) => p,
        Err((_, p)) => p?,
    };
    let (sport, dport) = match p.l4 {
        L4::Ports { sport, dport, .. } | L4::Other { sport, dport } => (sport, dport),
        L4::Echo { id, request: true } => (id, 0),
        L4::Echo { id, request: false } => (0, id),
        L4::Error(_) => (0, 0),
    };
    Some(Flow {
        proto: Proto::from_number(p.proto),
        ip_proto: p.proto,
        src: sock(p.src, sport),
        dst: sock(p.dst, dport),
    })
}

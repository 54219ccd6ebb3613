//! Live taps: a bounded, in-memory view of the packets seen at some capture points while the
//! fabric runs, for scenario steps that wait for a packet (`wait = "packet"`).
//!
//! The capture file is written for people and for the checks after a cell; a step that must
//! react while the cell runs needs the packets as they happen, without re-reading a growing
//! pcapng. A [`Tap`] is that: the fabric thread copies each packet recorded at one of the
//! tap's links (its first [`TapSpec::snap`] bytes) into a ring of at most
//! [`TapSpec::capacity`] packets; the oldest are dropped when nobody reads, and counted.
//!
//! Cost: with no tap open the fabric does exactly what it did before (no lock, no copy).
//! With taps open, one mutex per tapped packet (uncontended unless a reader is draining) and
//! one copy of at most `snap` bytes; packets on links no tap watches are not copied.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::core::CaptureEvent;
use super::spec::{Direction, IfaceId};

/// What a tap watches and how much it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    /// The capture points to copy; empty: every one.
    pub links: BTreeSet<IfaceId>,
    /// Most packets held before the oldest is dropped (at least 1).
    pub capacity: usize,
    /// Bytes kept of each packet (headers are what steps look at).
    pub snap: usize,
}

impl Default for TapSpec {
    fn default() -> Self {
        TapSpec {
            links: BTreeSet::new(),
            capacity: 65_536,
            snap: 512,
        }
    }
}

/// One packet as a tap saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPacket {
    pub iface: IfaceId,
    pub direction: Direction,
    /// The fabric's time of the record (the same clock as [`Instant::now`]).
    pub at: Instant,
    /// The packet's full length.
    pub len: usize,
    /// Its first [`TapSpec::snap`] bytes.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Ring {
    packets: VecDeque<TapPacket>,
    /// Packets dropped because the ring was full.
    overflowed: u64,
    /// The fabric thread ended: nothing more will come.
    closed: bool,
}

/// The part the fabric thread and the reader share.
#[derive(Debug)]
pub(crate) struct TapShared {
    spec: TapSpec,
    ring: Mutex<Ring>,
    ready: Condvar,
}

impl TapShared {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A reader that panicked while holding the lock leaves a ring that is still valid.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the fabric thread for every capture record.
    pub(crate) fn offer(&self, ev: &CaptureEvent) {
        if !self.spec.links.is_empty() && !self.spec.links.contains(&ev.iface) {
            return;
        }
        let keep = ev.packet.len().min(self.spec.snap);
        let p = TapPacket {
            iface: ev.iface,
            direction: ev.direction,
            at: ev.at,
            len: ev.packet.len(),
            data: ev.packet[..keep].to_vec(),
        };
        let mut ring = self.lock();
        if ring.packets.len() >= self.spec.capacity.max(1) {
            ring.packets.pop_front();
            ring.overflowed += 1;
        }
        ring.packets.push_back(p);
        drop(ring);
        self.ready.notify_all();
    }

    /// The fabric thread stops: wake readers for good.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A reader's handle. Dropping it closes the tap (the fabric thread notices at its next
/// record and stops copying).
#[derive(Debug)]
pub struct Tap {
    shared: Arc<TapShared>,
}

impl Tap {
    /// A new tap and the half the fabric thread keeps.
    pub(crate) fn new(spec: TapSpec) -> (Tap, Arc<TapShared>) {
        let shared = Arc::new(TapShared {
            spec,
            ring: Mutex::new(Ring::default()),
            ready: Condvar::new(),
        });
        (
            Tap {
                shared: Arc::clone(&shared),
            },
            shared,
        )
    }

    /// The next packet, waiting until `deadline` at most; `None` when the deadline passed
    /// (or the fabric stopped) with nothing new.
    pub fn next(&self, deadline: Instant) -> Option<TapPacket> {
        let mut ring = self.shared.lock();
        loop {
            if let Some(p) = ring.packets.pop_front() {
                return Some(p);
            }
            let now = Instant::now();
            if ring.closed || now >= deadline {
                return None;
            }
            ring = match self.shared.ready.wait_timeout(ring, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Every packet held now, oldest first.
    pub fn drain(&self) -> Vec<TapPacket> {
        self.shared.lock().packets.drain(..).collect()
    }

    /// Packets lost because the ring was full (a reader that fell behind).
    pub fn overflowed(&self) -> u64 {
        self.shared.lock().overflowed
    }

    /// What the tap watches.
    pub fn spec(&self) -> &TapSpec {
        &self.shared.spec
    }
}

/// Whether the reader still holds its [`Tap`].
pub(crate) fn in_use(shared: &Arc<TapShared>) -> bool {
    Arc::strong_count(shared) > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(iface: IfaceId, len: usize) -> CaptureEvent {
        CaptureEvent {
            iface,
            direction: Direction::Out,
            at: Instant::now(),
            packet: vec![7; len],
        }
    }

    #[test]
    fn keeps_only_watched_links_snapped_and_bounded() {
        let watched = IfaceId::new(1, 0);
        let spec = TapSpec {
            links: [watched].into_iter().collect(),
            capacity: 3,
            snap: 10,
        };
        let (tap, shared) = Tap::new(spec);
        shared.offer(&ev(IfaceId::new(2, 0), 100));
        for len in [20, 21, 22, 23, 24] {
            shared.offer(&ev(watched, len));
        }
        let got = tap.drain();
        // The two oldest were pushed out; the unwatched link never got in.
        assert_eq!(got.iter().map(|p| p.len).collect::<Vec<_>>(), vec![22, 23, 24]);
        assert!(got.iter().all(|p| p.data.len() == 10 && p.iface == watched));
        assert_eq!(tap.overflowed(), 2);
        assert!(in_use(&shared));
        drop(tap);
        assert!(!in_use(&shared));
    }

    #[test]
    fn next_waits_for_a_packet_or_the_deadline() {
        let (tap, shared) = Tap::new(TapSpec::default());
        let offered = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            shared.offer(&ev(IfaceId::new(0, 0), 5));
            shared
        });
        let p = tap.next(Instant::now() + Duration::from_secs(10));
        assert_eq!(p.map(|p| p.len), Some(5));
        let shared = offered.join().expect("thread");
        assert_eq!(tap.next(Instant::now() + Duration::from_millis(5)), None);
        shared.close();
        assert_eq!(tap.next(Instant::now() + Duration::from_secs(10)), None);
    }
}

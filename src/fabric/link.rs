//! One direction of a link: the impairment pipeline and the state it keeps between packets.
//!
//! Every decision is a pure function of the packet's arrival time, its length, this state and
//! a ChaCha RNG seeded from the fabric seed and the link end's name, so the same inputs give
//! the same schedule on every machine and every run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::spec::{Direction, Impairment, DEFAULT_QUEUE_LIMIT};
use super::stats::LinkStats;

/// The smallest extra delay a reordered packet gets, so reordering shows even on links
/// without delay (where `delay + jitter` would be zero).
pub const REORDER_MIN_EXTRA: Duration = Duration::from_millis(10);

/// What happened to one packet in one direction: up to two copies (the second from
/// duplication), each with the time it leaves this direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Transit {
    pub copies: [Option<Instant>; 2],
}

/// The state of one direction of one link.
#[derive(Debug)]
pub(crate) struct LinkDir {
    imp: Impairment,
    /// The impairment is the default: skip every stage (and every random draw).
    passthrough: bool,
    rng: ChaCha8Rng,
    /// Gilbert-Elliott: currently in the lossy state.
    burst_bad: bool,
    /// When the rate-limited link finishes sending everything queued so far.
    busy_until: Option<Instant>,
    /// Finish times of packets in the rate stage (queued or being sent), oldest first.
    backlog: VecDeque<Instant>,
    /// The latest time a packet was scheduled to leave: without reordering nothing leaves
    /// earlier, which keeps a jittery link FIFO.
    last_out: Option<Instant>,
}

impl LinkDir {
    /// A direction with the given impairment and an RNG derived from the fabric's `seed`
    /// and the link end's name and direction (so adding a link does not change the random
    /// choices on the others).
    pub fn new(imp: Impairment, seed: u64, link_name: &str, dir: Direction) -> LinkDir {
        let mut key = [0u8; 32];
        let mut h = fnv1a(seed.to_le_bytes().iter().copied(), 0xcbf2_9ce4_8422_2325);
        h = fnv1a(link_name.bytes(), h);
        h = fnv1a([if dir == Direction::Out { b'o' } else { b'i' }].into_iter(), h);
        for chunk in key.chunks_exact_mut(8) {
            h = splitmix64(h);
            chunk.copy_from_slice(&h.to_le_bytes());
        }
        LinkDir {
            passthrough: imp.is_none(),
            imp,
            rng: ChaCha8Rng::from_seed(key),
            burst_bad: false,
            busy_until: None,
            backlog: VecDeque::new(),
            last_out: None,
        }
    }

    pub fn impairment(&self) -> &Impairment {
        &self.imp
    }

    /// Replaces the impairment for packets from now on. Queue, burst and ordering state are
    /// kept, so packets already in flight are not affected and later ones queue behind them.
    pub fn set_impairment(&mut self, imp: Impairment) {
        self.passthrough = imp.is_none();
        self.imp = imp;
    }

    /// Runs one packet of `len` bytes arriving at `now` through the pipeline, counting what
    /// it drops or duplicates in `stats`.
    pub fn transit(&mut self, now: Instant, len: usize, stats: &mut LinkStats) -> Transit {
        let mut out = Transit::default();
        if self.passthrough {
            // A perfect link still keeps FIFO order behind anything an earlier impairment
            // scheduled later than now.
            let at = self.last_out.map_or(now, |last| last.max(now));
            out.copies[0] = Some(at);
            return out;
        }
        if self.lose() {
            stats.dropped.loss += 1;
            return out;
        }
        let copies = if self.imp.duplicate > 0.0 && self.rng.gen::<f64>() < self.imp.duplicate {
            stats.duplicated += 1;
            2
        } else {
            1
        };
        for slot in out.copies.iter_mut().take(copies) {
            *slot = self.schedule(now, len, stats);
        }
        out
    }

    /// Loss stage: independent, or Gilbert-Elliott when a mean burst length above 1 is set.
    fn lose(&mut self) -> bool {
        let loss = self.imp.loss;
        if loss <= 0.0 {
            return false;
        }
        if loss >= 1.0 {
            return true;
        }
        if self.imp.loss_burst <= 1.0 {
            return self.rng.gen::<f64>() < loss;
        }
        // Two states, the bad one always losing. Leaving it with probability r makes bursts
        // geometric with mean 1/r; entering with p = loss*r/(1-loss) makes the long-run
        // share of bad packets p/(p+r) = loss.
        let r = 1.0 / self.imp.loss_burst;
        let p = (loss * r / (1.0 - loss)).min(1.0);
        let u = self.rng.gen::<f64>();
        if self.burst_bad {
            if u < r {
                self.burst_bad = false;
            }
        } else if u < p {
            self.burst_bad = true;
        }
        self.burst_bad
    }

    /// Rate limit, delay with jitter, reordering: when this copy leaves, or `None` if the
    /// queue is full.
    fn schedule(&mut self, now: Instant, len: usize, stats: &mut LinkStats) -> Option<Instant> {
        let mut at = now;
        if let Some(rate) = self.imp.rate_bps {
            while self.backlog.front().is_some_and(|&t| t <= now) {
                self.backlog.pop_front();
            }
            let limit = match self.imp.queue_limit {
                0 => DEFAULT_QUEUE_LIMIT,
                n => n,
            };
            if self.backlog.len() >= limit as usize {
                stats.dropped.queue_overflow += 1;
                return None;
            }
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(rate));
            let finish = u64::try_from(nanos)
                .ok()
                .and_then(|n| start.checked_add(Duration::from_nanos(n)));
            let Some(finish) = finish else {
                // Only reachable with absurd rates and queues: the clock cannot go that far.
                stats.dropped.queue_overflow += 1;
                return None;
            };
            self.busy_until = Some(finish);
            self.backlog.push_back(finish);
            at = finish;
        }
        // Delays are bounded by MAX_DELAY, so these additions cannot overflow in practice;
        // saturating at the current time keeps them panic-free regardless.
        let delay = self.delay_sample();
        at = at.checked_add(delay).unwrap_or(at);
        if self.imp.reorder > 0.0 {
            if self.rng.gen::<f64>() < self.imp.reorder {
                let extra = self
                    .imp
                    .reorder_gap
                    .unwrap_or((self.imp.delay + self.imp.jitter).max(REORDER_MIN_EXTRA));
                at = at.checked_add(extra).unwrap_or(at);
            }
        } else if let Some(last) = self.last_out {
            at = at.max(last);
        }
        self.last_out = Some(self.last_out.map_or(at, |l| l.max(at)));
        Some(at)
    }

    /// `delay` plus a uniform sample in `-jitter..=jitter`, never below zero.
    fn delay_sample(&mut self) -> Duration {
        let jitter = self.imp.jitter.as_nanos() as u64;
        if jitter == 0 {
            return self.imp.delay;
        }
        let delay = self.imp.delay.as_nanos() as i128;
        let offset = i128::from(self.rng.gen_range(0..=2 * jitter)) - i128::from(jitter);
        Duration::from_nanos((delay + offset).max(0) as u64)
    }
}

/// FNV-1a over `bytes`, continuing from `h`: a stable hash (unlike `std`'s, which may change
/// between Rust releases), used only to derive seeds.
fn fnv1a(bytes: impl Iterator<Item = u8>, mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One step of SplitMix64, to spread one 64-bit hash over a 32-byte ChaCha key.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

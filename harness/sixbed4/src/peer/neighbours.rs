//! The peer's table of neighbours and the direct paths to them.
//!
//! Each neighbour is another peer under the same router prefix. Its path moves through
//! probing (up to `probes` Neighbor Solicitations sent straight to its endpoint) to direct
//! (a matching Neighbor Advertisement came back from that endpoint), is re-confirmed after
//! the reachable time while in use, and falls back to the router, held down, when probes go
//! unanswered. The table is bounded, so spoofed traffic cannot grow it without limit.

use super::{Lease, PeerConfig};
use crate::addr;
use crate::counters::Counters;
use crate::events::Event;
use crate::io::Output;
use crate::wire::NdRepr;
use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Instant;

/// At most this many neighbours are tracked; the least recently used goes first.
pub const MAX_NEIGHBOURS: usize = 4096;

/// Where traffic to a neighbour goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing known: via the router.
    ViaRouter,
    /// Probes are out; via the router until one is answered.
    Probing,
    /// Confirmed: straight to the neighbour's endpoint (also while being re-confirmed).
    Direct,
    /// Probes failed: via the router, and no new probes until the hold-down ends.
    HeldDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Probing {
        sent: u32,
        next_at: Instant,
        reconfirm: bool,
    },
    Direct {
        reconfirm_at: Instant,
    },
    HeldDown {
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    endpoint: SocketAddrV4,
    state: State,
    last_used: Instant,
}

/// What a Neighbor Advertisement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Confirmed,
    Unmatched,
}

#[derive(Debug, Default)]
pub struct Neighbours {
    map: BTreeMap<Ipv6Addr, Entry>,
}

impl Neighbours {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self, neighbour: &Ipv6Addr) -> PathState {
        match self.map.get(neighbour).map(|e| e.state) {
            None => PathState::ViaRouter,
            Some(State::Probing { reconfirm: true, .. }) | Some(State::Direct { .. }) => PathState::Direct,
            Some(State::Probing { .. }) => PathState::Probing,
            Some(State::HeldDown { .. }) => PathState::HeldDown,
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.map
            .values()
            .map(|e| match e.state {
                State::Probing { next_at, .. } => next_at,
                State::Direct { reconfirm_at } => reconfirm_at,
                State::HeldDown { until } => until,
            })
            .min()
    }

    /// We are about to send to `neighbour`: returns its endpoint when the path is direct, and
    /// starts probing when nothing is known (or a hold-down has ended).
    #[allow(clippy::too_many_arguments)]
    pub fn on_send(
        &mut self,
        now: Instant,
        neighbour: Ipv6Addr,
        endpoint: SocketAddrV4,
        cfg: &PeerConfig,
        lease: &Lease,
        counters: &mut Counters,
        out: &mut Vec<Output>,
    ) -> Option<SocketAddrV4> {
        self.touch(now, neighbour, endpoint, cfg, lease, counters, out);
        match self.state(&neighbour) {
            PathState::Direct => Some(endpoint),
            _ => None,
        }
    }

    /// We heard from `neighbour` (via the router or directly): probe back if nothing is known.
    #[allow(clippy::too_many_arguments)]
    pub fn on_heard(
        &mut self,
        now: Instant,
        neighbour: Ipv6Addr,
        endpoint: SocketAddrV4,
        cfg: &PeerConfig,
        lease: &Lease,
        counters: &mut Counters,
        out: &mut Vec<Output>,
    ) {
        self.touch(now, neighbour, endpoint, cfg, lease, counters, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn touch(
        &mut self,
        now: Instant,
        neighbour: Ipv6Addr,
        endpoint: SocketAddrV4,
        cfg: &PeerConfig,
        lease: &Lease,
        counters: &mut Counters,
        out: &mut Vec<Output>,
    ) {
        let start = match self.map.get_mut(&neighbour) {
            Some(e) => {
                e.last_used = now;
                matches!(e.state, State::HeldDown { until } if now >= until)
            }
            None => {
                self.make_room();
                true
            }
        };
        if start {
            let state = State::Probing {
                sent: 0,
                next_at: now,
                reconfirm: false,
            };
            self.map.insert(
                neighbour,
                Entry {
                    endpoint,
                    state,
                    last_used: now,
                },
            );
            self.run(now, neighbour, cfg, lease, counters, out);
        }
    }

    fn make_room(&mut self) {
        if self.map.len() < MAX_NEIGHBOURS {
            return;
        }
        if let Some(oldest) = self.map.iter().min_by_key(|(_, e)| e.last_used).map(|(a, _)| *a) {
            self.map.remove(&oldest);
        }
    }

    /// A Neighbor Advertisement for `target` arrived from `from`. It confirms a path only
    /// if it answers a probe still out, and comes from the endpoint the probe went to.
    pub fn on_advert(
        &mut self,
        now: Instant,
        target: Ipv6Addr,
        from: SocketAddrV4,
        cfg: &PeerConfig,
        out: &mut Vec<Output>,
    ) -> ProbeOutcome {
        let Some(e) = self.map.get_mut(&target) else {
            return ProbeOutcome::Unmatched;
        };
        let State::Probing { reconfirm, .. } = e.state else {
            return ProbeOutcome::Unmatched;
        };
        if e.endpoint != from {
            return ProbeOutcome::Unmatched;
        }
        e.state = State::Direct {
            reconfirm_at: now + cfg.reachable,
        };
        if !reconfirm {
            out.push(Output::Event(Event::DirectUp {
                neighbour: target,
                endpoint: from,
            }));
        }
        ProbeOutcome::Confirmed
    }

    /// Runs every neighbour timer that is due.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        cfg: &PeerConfig,
        lease: &Lease,
        counters: &mut Counters,
        out: &mut Vec<Output>,
    ) {
        let due: Vec<Ipv6Addr> = self
            .map
            .iter()
            .filter(|(_, e)| match e.state {
                State::Probing { next_at, .. } => now >= next_at,
                State::Direct { reconfirm_at } => now >= reconfirm_at,
                State::HeldDown { until } => now >= until,
            })
            .map(|(a, _)| *a)
            .collect();
        for neighbour in due {
            self.run(now, neighbour, cfg, lease, counters, out);
        }
    }

    /// Advances one neighbour whose timer is due.
    fn run(
        &mut self,
        now: Instant,
        neighbour: Ipv6Addr,
        cfg: &PeerConfig,
        lease: &Lease,
        counters: &mut Counters,
        out: &mut Vec<Output>,
    ) {
        let Some(e) = self.map.get_mut(&neighbour) else {
            return;
        };
        match e.state {
            State::Probing { sent, reconfirm, .. } if sent < cfg.probes => {
                let ns = NdRepr::NeighborSolicit {
                    target: neighbour,
                    source_lla: Some(addr::link_layer(lease.external)),
                };
                counters.bump("probes_sent");
                out.push(Output::Udp {
                    to: e.endpoint,
                    payload: ns.emit(lease.address, neighbour),
                    ttl: None,
                });
                out.push(Output::Event(Event::ProbeSent {
                    neighbour,
                    endpoint: e.endpoint,
                    attempt: sent + 1,
                }));
                e.state = State::Probing {
                    sent: sent + 1,
                    next_at: now + cfg.probe_interval,
                    reconfirm,
                };
            }
            State::Probing { reconfirm, .. } => {
                counters.bump("probe_attempts_failed");
                e.state = State::HeldDown {
                    until: now + cfg.holddown,
                };
                if reconfirm {
                    out.push(Output::Event(Event::DirectDown {
                        neighbour,
                        endpoint: e.endpoint,
                        reason: "re-confirmation unanswered".into(),
                    }));
                }
            }
            State::Direct { reconfirm_at } => {
                if e.last_used + cfg.reachable > reconfirm_at {
                    // Used since it was confirmed: keep using it while re-confirming.
                    e.state = State::Probing {
                        sent: 0,
                        next_at: now,
                        reconfirm: true,
                    };
                    self.run(now, neighbour, cfg, lease, counters, out);
                } else {
                    let endpoint = e.endpoint;
                    self.map.remove(&neighbour);
                    out.push(Output::Event(Event::DirectDown {
                        neighbour,
                        endpoint,
                        reason: "idle".into(),
                    }));
                }
            }
            State::HeldDown { .. } => {
                // Forget it; the next packet to or from it starts afresh.
                self.map.remove(&neighbour);
            }
        }
    }

    /// Drops every path (our own mapping changed).
    pub fn clear(&mut self, reason: &str, out: &mut Vec<Output>) {
        for (neighbour, e) in std::mem::take(&mut self.map) {
            if matches!(
                e.state,
                State::Direct { .. } | State::Probing { reconfirm: true, .. }
            ) {
                out.push(Output::Event(Event::DirectDown {
                    neighbour,
                    endpoint: e.endpoint,
                    reason: reason.into(),
                }));
            }
        }
    }
}

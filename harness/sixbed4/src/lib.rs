//! `sixbed4`: a 6bed4 peer and router.
//!
//! 6bed4 carries IPv6 packets, unchanged, as the payload of UDP/IPv4 datagrams. A peer asks a
//! router for an address with a Router Solicitation; the Router Advertisement hands it a prefix
//! that embeds the peer's external IPv4 address and UDP port, so every 6bed4 address says where
//! its owner is reachable. Peers then find direct paths to each other with Neighbor Discovery.
//!
//! The crate is split the quinn-proto way:
//! - [`profile`], [`addr`] and [`wire`] are pure codecs (zero-copy views plus parsed
//!   representations, smoltcp style);
//! - [`router`] and [`peer`] are sans-IO state machines fed with datagrams, TUN packets and an
//!   injected clock, returning what to send;
//! - [`sys`] is the thin Linux shell (TUN, rtnetlink, UDP socket) and [`daemon`] the event loop
//!   that joins them.

pub mod addr;
pub mod cli;
pub mod counters;
pub mod events;
pub mod fuzzing;
pub mod io;
pub mod offload;
pub mod peer;
pub mod profile;
pub mod router;
pub mod wire;

#[cfg(target_os = "linux")]
pub mod daemon;
#[cfg(target_os = "linux")]
pub mod sys;

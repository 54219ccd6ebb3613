//! `bedlab`: a network lab and conformance harness for 6bed4.
//!
//! - [`topology`]: the lab model, read from TOML (`topologies/*.toml`) or built in Rust, and
//!   validated before anything is created.
//! - [`fabric`]: the userspace network between the lab's namespaces: links with impairments,
//!   segments, routers and NATs, as a sans-IO core plus an epoll shell over TUN devices.
//! - [`capture`]: pcapng writing (every link end, and the interfaces inside each host) and
//!   reading.
//! - [`probe`]: `bedlab nat-probe`, which classifies what a NAT really does (RFC 5780 style).
//! - [`userns`]: how a normal user builds a lab (inside a user namespace of its own).

pub mod capture;
pub mod conformance;
pub mod fabric;
pub mod field;
pub mod lab;
pub mod nat;
pub mod netns;
pub mod preflight;
pub mod probe;
pub mod process;
pub mod runs;
pub mod topology;
pub mod traffic;
pub mod userns;

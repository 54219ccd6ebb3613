//! What a sans-IO core asks its shell to do.
//!
//! [`crate::router::Router`] and [`crate::peer::Peer`] never touch a socket. They take
//! datagrams, TUN packets and the time, and push [`Output`]s that the shell in
//! [`crate::daemon`] carries out in order.

use crate::events::Event;
use std::net::{Ipv6Addr, SocketAddrV4};

/// One thing the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `payload` over the tunnel's UDP socket. `ttl` overrides the IPv4 TTL for this
    /// datagram only (keepalives use a small TTL).
    Udp {
        to: SocketAddrV4,
        payload: Vec<u8>,
        ttl: Option<u8>,
    },
    /// Hand an IPv6 packet to the kernel through the TUN device.
    Tun(Vec<u8>),
    /// Change the TUN interface's configuration.
    Config(ConfigChange),
    /// Report an event.
    Event(Event),
}

/// An interface change the shell performs over rtnetlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    AddAddress {
        address: Ipv6Addr,
        prefix_len: u8,
    },
    RemoveAddress {
        address: Ipv6Addr,
        prefix_len: u8,
    },
    /// A route through the TUN device; `via` is the next hop (for example `fe80::`).
    AddRoute {
        prefix: Ipv6Addr,
        prefix_len: u8,
        via: Option<Ipv6Addr>,
    },
}

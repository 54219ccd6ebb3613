//! Machine-readable events (`--events json`): one JSON object per line on stdout.
//!
//! A harness reads these to learn what the daemon did without scraping logs. Every object has
//! `"event"` (the variant name in snake_case) and `"t_ms"` (milliseconds since the daemon
//! started); the other fields depend on the event.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddrV4};

/// Something a harness may want to know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The router is listening and its native side is configured.
    RouterReady {
        listen: SocketAddrV4,
        prefix: String,
        address: Ipv6Addr,
    },
    /// The router answered a Router Solicitation.
    RsAnswered { peer: SocketAddrV4 },
    /// The router told a peer its mapping changed (unsolicited RA).
    MappingChanged { stale: Ipv6Addr, peer: SocketAddrV4 },
    /// The peer accepted a Router Advertisement.
    RaAccepted { prefix: String, external: SocketAddrV4 },
    /// The peer rejected a Router Advertisement, with the reason.
    RaRejected { reason: String, from: SocketAddrV4 },
    /// The peer configured its first address.
    AddressConfigured {
        address: Ipv6Addr,
        external: SocketAddrV4,
    },
    /// The peer moved to a new address (its NAT mapping changed).
    AddressChanged {
        old: Ipv6Addr,
        address: Ipv6Addr,
        external: SocketAddrV4,
    },
    /// The peer sent a Router Solicitation (attempt counts from 1).
    RsSent { attempt: u32 },
    /// The peer sent a keepalive.
    KeepaliveSent { ttl: u8 },
    /// The peer sent a bypass probe (Neighbor Solicitation) directly to a neighbour.
    ProbeSent {
        neighbour: Ipv6Addr,
        endpoint: SocketAddrV4,
        attempt: u32,
    },
    /// A direct path to a neighbour was confirmed.
    DirectUp {
        neighbour: Ipv6Addr,
        endpoint: SocketAddrV4,
    },
    /// A direct path was given up; traffic goes via the router again.
    DirectDown {
        neighbour: Ipv6Addr,
        endpoint: SocketAddrV4,
        reason: String,
    },
    /// A datagram or packet was dropped (see counters for totals).
    Dropped {
        reason: String,
        from: Option<SocketAddrV4>,
    },
    /// A snapshot of the drop and traffic counters.
    Counters { counters: BTreeMap<String, u64> },
}

/// Stamps an event with the time since start and renders it as one JSON line.
pub fn to_json_line(t_ms: u64, event: &Event) -> String {
    let mut value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("t_ms".into(), t_ms.into());
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_tag_time_and_fields() {
        let line = to_json_line(
            42,
            &Event::AddressConfigured {
                address: "2001:db8::1".parse().unwrap(),
                external: "203.0.113.7:40000".parse().unwrap(),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "address_configured");
        assert_eq!(v["t_ms"], 42);
        assert_eq!(v["external"], "203.0.113.7:40000");
        assert_eq!(v["address"], "2001:db8::1");
    }
}

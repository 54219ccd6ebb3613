//! The probe's UDP messages: one JSON object per datagram, small enough for any MTU.
//!
//! A STUN-like exchange: a client sends a [`Msg::Request`] to a server, which answers each of
//! its [`Reply`]s with a [`Msg::Response`] telling the client the source address it saw
//! (`mapped`, the NAT's external endpoint for the client). A reply may come from the port the
//! request reached, from the server's other port, or from its sibling server (the other
//! public address), on either port, and after a delay: RFC 5780's "change request", plus the
//! delayed answer the lifetime test needs. Servers also keep a tiny name → mapped-address
//! table ([`Msg::Register`], [`Msg::Lookup`]) so that two clients can find each other's
//! mappings for the hairpinning test, as peers do through a rendezvous server.

use serde::{Deserialize, Serialize};
use std::net::SocketAddrV4;

/// Largest datagram an agent reads.
pub const MAX_DATAGRAM: usize = 2048;

/// Where a server sends a reply from, relative to where the request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// The address and port the request reached.
    Same,
    /// The same address, the server's other port.
    OtherPort,
    /// The sibling server (the other address), the same port index.
    OtherAddress,
    /// The sibling server, the other port.
    OtherBoth,
}

impl Answer {
    /// Every way of answering, the unchanged one first.
    pub const ALL: [Answer; 4] = [
        Answer::Same,
        Answer::OtherPort,
        Answer::OtherAddress,
        Answer::OtherBoth,
    ];
}

/// One reply a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Where it comes from.
    pub from: Answer,
    /// How long the server waits before sending it.
    pub delay_ms: u64,
    /// Echoed in the response, so the client knows which reply it got.
    pub tag: u32,
}

impl Reply {
    /// An immediate reply.
    pub fn now(from: Answer, tag: u32) -> Reply {
        Reply {
            from,
            delay_ms: 0,
            tag,
        }
    }
}

/// A probe datagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Msg {
    /// Client → server: answer with each of `replies`.
    Request { id: u64, replies: Vec<Reply> },
    /// Server → client: the request `id` came from `mapped` and reached `reached`.
    Response {
        id: u64,
        tag: u32,
        mapped: SocketAddrV4,
        reached: SocketAddrV4,
    },
    /// Server → sibling server: send `body` to `to` from your socket `port` (0: primary,
    /// 1: other port) after `delay_ms`.
    Relay {
        to: SocketAddrV4,
        port: u8,
        delay_ms: u64,
        body: Box<Msg>,
    },
    /// Client → server: remember my mapped address under `name` (answered by a `Response`).
    Register { id: u64, name: String },
    /// Client → server: whose mapped address is registered under `name`?
    Lookup { id: u64, name: String },
    /// Server → client: the answer to a `Lookup`.
    Found { id: u64, addr: Option<SocketAddrV4> },
    /// Client → client: open my filter toward you (a hole punch).
    Punch { id: u64 },
    /// Client → client, through the NAT's external address: the hairpinning test.
    Hairpin { id: u64 },
    /// The answer to a `Hairpin`.
    HairpinAck { id: u64 },
}

impl Msg {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain types cannot fail; an empty datagram would be ignored.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a datagram; `None` for anything that is not a probe message.
    pub fn decode(bytes: &[u8]) -> Option<Msg> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_ignored() {
        let a: SocketAddrV4 = "198.51.100.10:40000".parse().unwrap();
        let b: SocketAddrV4 = "198.51.100.250:3478".parse().unwrap();
        let msgs = [
            Msg::Request {
                id: 7,
                replies: vec![Reply::now(Answer::OtherBoth, 1), Reply::now(Answer::Same, 0)],
            },
            Msg::Relay {
                to: a,
                port: 1,
                delay_ms: 5,
                body: Box::new(Msg::Response {
                    id: 7,
                    tag: 1,
                    mapped: a,
                    reached: b,
                }),
            },
            Msg::Found { id: 3, addr: None },
            Msg::HairpinAck { id: 9 },
        ];
        for m in msgs {
            let bytes = m.encode();
            assert!(bytes.len() < 512, "{}", String::from_utf8_lossy(&bytes));
            assert_eq!(Msg::decode(&bytes), Some(m));
        }
        assert_eq!(Msg::decode(b"\x00\x01garbage"), None);
        assert_eq!(Msg::decode(br#"{"t":"request","id":"x"}"#), None);
        let text = String::from_utf8(
            Msg::Request {
                id: 1,
                replies: vec![Reply::now(Answer::OtherPort, 0)],
            }
            .encode(),
        )
        .unwrap();
        assert!(text.contains(r#""t":"request""#) && text.contains(r#""from":"other-port""#));
    }
}

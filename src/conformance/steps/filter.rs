//! Packet filters for `wait = "packet"`: a small expression language about 6bed4 traffic,
//! in the spirit of tcpdump's, documented in `scenarios/README.md`.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary (["and"] unary)*          juxtaposition is "and": "ka from peer-a"
//! unary   := "not" unary | "(" expr ")" | primitive
//! primitive :=
//!     rs | ra | ns | na | ka | keepalive | data | icmp-error | malformed
//!   | 6bed4 | native | echo-request | echo-reply
//!   | direct | via-router | inbound | outbound
//!   | from NODE | to NODE
//!   | src ADDR[/LEN] | dst ADDR[/LEN] | host ADDR[/LEN]     IPv4: outer; IPv6: inner/native
//!   | sport N | dport N | port N                           outer UDP; TCP/UDP of native IPv6
//!   | proto (tcp | udp | icmp6 | N)                        the IPv6 next header
//!   | (ttl | hlim | len) [OP] N                            OP: = == != < <= > >=
//! ```
//!
//! Parsing is pure and reports the byte offset of the offending word, so a scenario error
//! points at the very column. Matching needs the cell's identities (which addresses are
//! which node's, where the router listens): [`Identities`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use super::classify::{Facts, Kind};
use crate::fabric::Direction;

/// A parse error: at byte `offset` of the filter text, what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub offset: usize,
    pub expected: String,
    pub found: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {}: expected {}, found {}",
            self.offset, self.expected, self.found
        )
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// A number a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The IPv4 TTL (outer header of a datagram).
    Ttl,
    /// The IPv6 hop limit (inner packet of a datagram, or a native packet).
    HopLimit,
    /// The packet's length on the link.
    Len,
}

/// An address or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub len: u8,
}

impl Net {
    fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let len = usize::from(len);
    let (bytes, bits) = (len / 8, len % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || {
        let mask = 0xffu8 << (8 - bits);
        a[bytes] & mask == b[bytes] & mask
    }
}

/// One test on a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prim {
    Kind(Kind),
    /// Any 6bed4 datagram.
    Tunnel,
    /// An IPv6 packet on the link itself.
    Native,
    /// ICMPv6 echo request (128) or reply (129), inside the tunnel or native.
    Icmp6Type(u8),
    Direct,
    ViaRouter,
    Dir(Direction),
    From(String),
    To(String),
    Src(Net),
    Dst(Net),
    Host(Net),
    Sport(u16),
    Dport(u16),
    Port(u16),
    Proto(u8),
    Cmp(Field, Op, u64),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Prim(Prim),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Who is who in a cell: each node's addresses and (for peers) the external endpoint its
/// 6bed4 address names, and where the router listens.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    pub v4: BTreeMap<String, Vec<Ipv4Addr>>,
    pub endpoints: BTreeMap<String, Vec<SocketAddrV4>>,
    pub v6: BTreeMap<String, Vec<Ipv6Addr>>,
    /// The 6bed4 router's IPv4:port.
    pub router: Option<SocketAddrV4>,
}

impl Identities {
    fn sender_is(&self, node: &str, f: &Facts) -> bool {
        let by_v4 =
            f.v4.is_some_and(|(src, ..)| self.v4.get(node).is_some_and(|v| v.contains(&src)));
        let by_ep = f
            .udp
            .is_some_and(|(src, _)| self.endpoints.get(node).is_some_and(|v| v.contains(&src)));
        let by_v6 =
            f.v6.is_some_and(|h| self.v6.get(node).is_some_and(|v| v.contains(&h.src)));
        by_v4 || by_ep || by_v6
    }

    fn receiver_is(&self, node: &str, f: &Facts) -> bool {
        let by_v4 =
            f.v4.is_some_and(|(_, dst, ..)| self.v4.get(node).is_some_and(|v| v.contains(&dst)));
        let by_ep = f
            .udp
            .is_some_and(|(_, dst)| self.endpoints.get(node).is_some_and(|v| v.contains(&dst)));
        let by_v6 =
            f.v6.is_some_and(|h| self.v6.get(node).is_some_and(|v| v.contains(&h.dst)));
        by_v4 || by_ep || by_v6
    }

    fn via_router(&self, f: &Facts) -> bool {
        match (self.router, f.udp) {
            (Some(r), Some((s, d))) => s == r || d == r,
            _ => false,
        }
    }
}

impl Expr {
    /// Parses `text`; `is_node` says which names `from`/`to` may take.
    pub fn parse(text: &str, is_node: &dyn Fn(&str) -> bool) -> Result<Expr, FilterError> {
        let tokens = tokenize(text);
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.len(),
            is_node,
        };
        if p.tokens.is_empty() {
            return Err(FilterError {
                offset: 0,
                expected: "a filter such as \"ka from peer-a\"".into(),
                found: "an empty filter".into(),
            });
        }
        let e = p.or()?;
        if let Some((off, t)) = p.peek() {
            return Err(FilterError {
                offset: off,
                expected: "\"and\", \"or\" or the end of the filter".into(),
                found: format!("{t:?}"),
            });
        }
        Ok(e)
    }

    /// Whether the packet matches.
    pub fn matches(&self, f: &Facts, ids: &Identities) -> bool {
        match self {
            Expr::Prim(p) => prim(p, f, ids),
            Expr::Not(e) => !e.matches(f, ids),
            Expr::And(a, b) => a.matches(f, ids) && b.matches(f, ids),
            Expr::Or(a, b) => a.matches(f, ids) || b.matches(f, ids),
        }
    }

    /// Node names the filter mentions (the runner resolves their addresses).
    pub fn nodes(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |p| {
            if let Prim::From(n) | Prim::To(n) = p {
                out.push(n.clone());
            }
        });
        out
    }

    fn walk(&self, f: &mut dyn FnMut(&Prim)) {
        match self {
            Expr::Prim(p) => f(p),
            Expr::Not(e) => e.walk(f),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
        }
    }
}

fn prim(p: &Prim, f: &Facts, ids: &Identities) -> bool {
    let v6 = f.v6.as_ref();
    match p {
        Prim::Kind(k) => f.kind == *k,
        Prim::Tunnel => f.is_tunnel(),
        Prim::Native => f.native,
        Prim::Icmp6Type(t) => v6.is_some_and(|h| h.next_header == 58 && h.icmp_type == Some(*t)),
        Prim::Direct => f.is_tunnel() && f.udp.is_some() && !ids.via_router(f),
        Prim::ViaRouter => f.is_tunnel() && ids.via_router(f),
        Prim::Dir(d) => f.direction == *d,
        Prim::From(n) => ids.sender_is(n, f),
        Prim::To(n) => ids.receiver_is(n, f),
        Prim::Src(net) => src_addr(f, net).is_some_and(|a| net.contains(a)),
        Prim::Dst(net) => dst_addr(f, net).is_some_and(|a| net.contains(a)),
        Prim::Host(net) => {
            src_addr(f, net).is_some_and(|a| net.contains(a))
                || dst_addr(f, net).is_some_and(|a| net.contains(a))
        }
        Prim::Sport(port) => ports(f).is_some_and(|(s, _)| s == *port),
        Prim::Dport(port) => ports(f).is_some_and(|(_, d)| d == *port),
        Prim::Port(port) => ports(f).is_some_and(|(s, d)| s == *port || d == *port),
        Prim::Proto(n) => v6.is_some_and(|h| h.next_header == *n),
        Prim::Cmp(field, op, n) => {
            let value = match field {
                Field::Ttl => f.v4.map(|v| u64::from(v.2)),
                Field::HopLimit => v6.map(|h| u64::from(h.hop_limit)),
                Field::Len => Some(f.len as u64),
            };
            value.is_some_and(|v| op.holds(v, *n))
        }
    }
}

fn src_addr(f: &Facts, net: &Net) -> Option<IpAddr> {
    match net.addr {
        IpAddr::V4(_) => f.v4.map(|v| IpAddr::V4(v.0)),
        IpAddr::V6(_) => f.v6.map(|h| IpAddr::V6(h.src)),
    }
}

fn dst_addr(f: &Facts, net: &Net) -> Option<IpAddr> {
    match net.addr {
        IpAddr::V4(_) => f.v4.map(|v| IpAddr::V4(v.1)),
        IpAddr::V6(_) => f.v6.map(|h| IpAddr::V6(h.dst)),
    }
}

/// Outer UDP ports of an IPv4 datagram; TCP/UDP ports of a native IPv6 packet.
fn ports(f: &Facts) -> Option<(u16, u16)> {
    match f.udp {
        Some((s, d)) => Some((s.port(), d.port())),
        None if f.native => f.v6.and_then(|h| h.ports),
        None => None,
    }
}

/// Words and parentheses with their byte offsets; comparison operators glued to a word
/// (`ttl<=3`) are split off.
fn tokenize(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < bytes.len() {
        let (off, c) = bytes[i];
        let op2 = bytes.get(i + 1).map(|&(_, n)| n);
        let op = match (c, op2) {
            ('<' | '>' | '!' | '=', Some('=')) => Some(2),
            ('<' | '>' | '=', _) => Some(1),
            _ => None,
        };
        if c.is_whitespace() || c == '(' || c == ')' || op.is_some() {
            if let Some(t) = cur.take() {
                out.push(t);
            }
            if c == '(' || c == ')' {
                out.push((off, c.to_string()));
            } else if let Some(n) = op {
                let s: String = bytes[i..i + n].iter().map(|&(_, c)| c).collect();
                out.push((off, s));
                i += n;
                continue;
            }
        } else {
            cur.get_or_insert_with(|| (off, String::new())).1.push(c);
        }
        i += 1;
    }
    if let Some(t) = cur {
        out.push(t);
    }
    out
}

struct Parser<'a> {
    tokens: Vec<(usize, String)>,
    at: usize,
    end: usize,
    is_node: &'a dyn Fn(&str) -> bool,
}

const PRIMITIVES: &str = "a kind (rs, ra, ns, na, ka, data, icmp-error, malformed, 6bed4, native, \
echo-request, echo-reply), a path (direct, via-router), inbound, outbound, from/to NODE, \
src/dst/host ADDR, sport/dport/port N, proto P, ttl/hlim/len [OP] N, not, or \"(\"";

impl Parser<'_> {
    fn peek(&self) -> Option<(usize, &str)> {
        self.tokens.get(self.at).map(|(o, t)| (*o, t.as_str()))
    }

    fn next(&mut self, expected: &str) -> Result<(usize, String), FilterError> {
        match self.tokens.get(self.at) {
            Some(t) => {
                self.at += 1;
                Ok(t.clone())
            }
            None => Err(FilterError {
                offset: self.end,
                expected: expected.into(),
                found: "the end of the filter".into(),
            }),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.and()?;
        while self.peek().is_some_and(|(_, t)| t.eq_ignore_ascii_case("or")) {
            self.at += 1;
            let r = self.and()?;
            e = Expr::Or(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.unary()?;
        loop {
            match self.peek() {
                Some((_, t)) if t.eq_ignore_ascii_case("and") => self.at += 1,
                Some((_, t)) if t.eq_ignore_ascii_case("or") || t == ")" => break,
                Some(_) => {}
                None => break,
            }
            let r = self.unary()?;
            e = Expr::And(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let (off, t) = self.next(PRIMITIVES)?;
        let word = t.to_ascii_lowercase();
        match word.as_str() {
            "not" | "!" => Ok(Expr::Not(Box::new(self.unary()?))),
            "(" => {
                let e = self.or()?;
                let (off, t) = self.next("\")\"")?;
                if t != ")" {
                    return Err(FilterError {
                        offset: off,
                        expected: "\")\"".into(),
                        found: format!("{t:?}"),
                    });
                }
                Ok(e)
            }
            _ => self.primitive(off, &word, &t).map(Expr::Prim),
        }
    }

    fn primitive(&mut self, off: usize, word: &str, raw: &str) -> Result<Prim, FilterError> {
        Ok(match word {
            "rs" => Prim::Kind(Kind::Rs),
            "ra" => Prim::Kind(Kind::Ra),
            "ns" => Prim::Kind(Kind::Ns),
            "na" => Prim::Kind(Kind::Na),
            "ka" | "keepalive" => Prim::Kind(Kind::Keepalive),
            "data" => Prim::Kind(Kind::Data),
            "icmp-error" => Prim::Kind(Kind::IcmpError),
            "malformed" => Prim::Kind(Kind::Malformed),
            "6bed4" => Prim::Tunnel,
            "native" => Prim::Native,
            "echo-request" => Prim::Icmp6Type(128),
            "echo-reply" => Prim::Icmp6Type(129),
            "direct" => Prim::Direct,
            "via-router" => Prim::ViaRouter,
            "inbound" => Prim::Dir(Direction::In),
            "outbound" => Prim::Dir(Direction::Out),
            "from" | "to" => {
                let (o, n) = self.next("a node name")?;
                if !(self.is_node)(&n) {
                    return Err(FilterError {
                        offset: o,
                        expected: "a node of the topology".into(),
                        found: format!("{n:?}"),
                    });
                }
                if word == "from" {
                    Prim::From(n)
                } else {
                    Prim::To(n)
                }
            }
            "src" | "dst" | "host" => {
                let net = self.net()?;
                match word {
                    "src" => Prim::Src(net),
                    "dst" => Prim::Dst(net),
                    _ => Prim::Host(net),
                }
            }
            "sport" | "dport" | "port" => {
                let p = u16::try_from(self.number("a port number")?).map_err(|_| FilterError {
                    offset: self.tokens[self.at - 1].0,
                    expected: "a port number (0..=65535)".into(),
                    found: format!("{:?}", self.tokens[self.at - 1].1),
                })?;
                match word {
                    "sport" => Prim::Sport(p),
                    "dport" => Prim::Dport(p),
                    _ => Prim::Port(p),
                }
            }
            "proto" => {
                let (o, t) = self.next("tcp, udp, icmp6 or a protocol number")?;
                let n = match t.to_ascii_lowercase().as_str() {
                    "tcp" => 6,
                    "udp" => 17,
                    "icmp6" | "icmpv6" => 58,
                    other => other.parse::<u8>().map_err(|_| FilterError {
                        offset: o,
                        expected: "tcp, udp, icmp6 or a protocol number (0..=255)".into(),
                        found: format!("{t:?}"),
                    })?,
                };
                Prim::Proto(n)
            }
            "ttl" | "hlim" | "len" => {
                let field = match word {
                    "ttl" => Field::Ttl,
                    "hlim" => Field::HopLimit,
                    _ => Field::Len,
                };
                let op = match self.peek().map(|(_, t)| t) {
                    Some("=" | "==") => Some(Op::Eq),
                    Some("!=") => Some(Op::Ne),
                    Some("<") => Some(Op::Lt),
                    Some("<=") => Some(Op::Le),
                    Some(">") => Some(Op::Gt),
                    Some(">=") => Some(Op::Ge),
                    _ => None,
                };
                if op.is_some() {
                    self.at += 1;
                }
                Prim::Cmp(field, op.unwrap_or(Op::Eq), self.number("a number")?)
            }
            _ => {
                return Err(FilterError {
                    offset: off,
                    expected: PRIMITIVES.into(),
                    found: format!("{raw:?}"),
                })
            }
        })
    }

    fn number(&mut self, what: &str) -> Result<u64, FilterError> {
        let (o, t) = self.next(what)?;
        t.parse().map_err(|_| FilterError {
            offset: o,
            expected: what.into(),
            found: format!("{t:?}"),
        })
    }

    fn net(&mut self) -> Result<Net, FilterError> {
        let (o, t) = self.next("an IPv4 or IPv6 address, optionally /LEN")?;
        let bad = || FilterError {
            offset: o,
            expected: "an IPv4 or IPv6 address, optionally /LEN".into(),
            found: format!("{t:?}"),
        };
        let (a, len) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (t.as_str(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        Ok(Net { addr, len })
    }
}

#[cfg(test)]
mod tests {
    use super::super::classify::{classify, tests as pk};
    use super::*;
    use std::time::Instant;

    fn nodes(n: &str) -> bool {
        ["peer-a", "peer-b", "router", "server"].contains(&n)
    }

    fn parse(s: &str) -> Result<Expr, FilterError> {
        Expr::parse(s, &nodes)
    }

    fn ids() -> Identities {
        let mut i = Identities {
            router: Some("198.51.100.1:25790".parse().unwrap()),
            ..Default::default()
        };
        i.v4.insert("peer-a".into(), vec!["10.0.1.2".parse().unwrap()]);
        i.endpoints
            .insert("peer-a".into(), vec!["198.51.100.10:25790".parse().unwrap()]);
        i.v4.insert("router".into(), vec!["198.51.100.1".parse().unwrap()]);
        i.v6.insert("peer-b".into(), vec![b6()]);
        i
    }

    fn b6() -> Ipv6Addr {
        "fc64:bed:c633:6401:c633:6414:64ed:1".parse().unwrap()
    }

    fn facts(p: &[u8]) -> Facts {
        classify("nat-a/wan", Direction::Out, Instant::now(), p.len(), p)
    }

    #[test]
    fn keepalives_by_sender_path_and_ttl() {
        let ka = pk::udp4(
            "198.51.100.10:25790".parse().unwrap(),
            "198.51.100.1:25790".parse().unwrap(),
            2,
            &[],
        );
        let f = facts(&ka);
        let yes = [
            "ka",
            "keepalive from peer-a",
            "ka and from peer-a and to router",
            "ka via-router outbound",
            "ttl < 3",
            "ttl<=2 and ttl>=2 and ttl = 2 and ttl != 3",
            "not data",
            "(ra or ka) and port 25790",
            "src 198.51.100.0/24 dst 198.51.100.1",
            "6bed4 and len 28",
        ];
        for s in yes {
            assert!(parse(s).unwrap().matches(&f, &ids()), "{s} should match");
        }
        let no = [
            "data",
            "from peer-b",
            "direct",
            "inbound",
            "ttl > 2",
            "native",
            "hlim 255",
            "sport 1",
            "src 10.0.0.0/8",
        ];
        for s in no {
            assert!(!parse(s).unwrap().matches(&f, &ids()), "{s} should not match");
        }
    }

    #[test]
    fn data_by_inner_header() {
        let a: Ipv6Addr = "fc64:bed:c633:6401:c633:640a:64ed:1".parse().unwrap();
        let echo = pk::ip6(a, b6(), 63, 58, &[128, 0, 0, 0, 0, 1, 0, 1]);
        let d = pk::udp4(
            "198.51.100.10:25790".parse().unwrap(),
            "198.51.100.20:25790".parse().unwrap(),
            64,
            &echo,
        );
        let f = facts(&d);
        for s in [
            "data direct to peer-b",
            "echo-request hlim 63 proto icmp6",
            "dst fc64:bed::/32",
            "host fc64:bed:c633:6401:c633:6414:64ed:1",
        ] {
            assert!(parse(s).unwrap().matches(&f, &ids()), "{s} should match");
        }
        assert!(!parse("echo-reply or via-router").unwrap().matches(&f, &ids()));
    }

    #[test]
    fn errors_point_at_the_word() {
        let e = parse("ka from peer-c").unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.found.contains("peer-c"));
        let e = parse("ka frm peer-a").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.expected.contains("from/to NODE"), "{e}");
        assert_eq!(parse("(ka or ra").unwrap_err().offset, 9);
        assert_eq!(parse("ttl <").unwrap_err().found, "the end of the filter");
        assert_eq!(parse("port 70000").unwrap_err().offset, 5);
        assert_eq!(parse("ka )").unwrap_err().offset, 3);
        assert!(parse("").is_err());
        assert!(parse("src 10.0.0.0/33").is_err());
        assert_eq!(parse("proto sctpx").unwrap_err().offset, 6);
    }
}

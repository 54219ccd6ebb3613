//! The lab's topology model: segments, hosts, routers, NATs, interfaces and the impairments
//! of their links; read from TOML (`topologies/*.toml`, schema in `topologies/README.md`) or
//! built in Rust with [`TopologyBuilder`], and validated by the same pure [`Topology::validate`]
//! before anything is created.
//!
//! One model serves both inputs so that a scenario written in Rust and one written in TOML
//! cannot drift apart: the builder produces the very same [`Topology`] value the parser does,
//! and [`Topology::to_toml`] writes any topology back as a file that parses to an equal model.
//!
//! Every error from a file is reported as `file:line:col: expected X, found Y`, pointing at the
//! offending value; see [`TopologyError`].
//!
//! The model is layer 3 only (see ARCHITECTURE.md, "The network model"): a [`Segment`] is an
//! IPv4 subnet, every [`Interface`] attaches its node to one segment through a link named
//! `node/interface` whose two directions carry independent [`Impairment`]s.

mod builder;
mod emit;
mod error;
mod nat;
mod parse;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use builder::TopologyBuilder;
pub(crate) use error::from_toml_error;
pub use error::{Diagnostic, ErrorKind, Position, TopologyError};
pub use nat::{
    Filtering, IcmpPolicy, Mapping, NatBehaviour, NatKind, NatKnobs, NatPreset, NatSpec, PortAllocation,
    Refresh,
};
pub use values::{
    format_duration, format_rate, parse_duration, parse_ipv4, parse_rate, Ipv4Net, Ipv6Net, PortRange,
    ValueError,
};

/// MTU of an interface that does not set one.
pub const DEFAULT_MTU: u32 = 1500;
/// Smallest MTU accepted: every IPv4 host must accept 576-byte datagrams (RFC 791).
pub const MIN_MTU: u32 = 576;
/// Largest MTU accepted: the IPv4 total-length field's limit.
pub const MAX_MTU: u32 = 65535;
/// Packets a link direction queues when it does not set `queue_limit` (netem's default).
pub const DEFAULT_QUEUE_LIMIT: u32 = 1000;
/// Longest node (and segment, and topology) name.
pub const MAX_NODE_NAME: usize = 32;
/// Longest interface name: Linux's `IFNAMSIZ` minus the terminating NUL, since interface names
/// become TUN device names.
pub const MAX_INTERFACE_NAME: usize = 15;
/// Role of a host that does not set one.
pub const DEFAULT_HOST_ROLE: &str = "host";
/// Role of a router that does not set one.
pub const DEFAULT_ROUTER_ROLE: &str = "router";

/// A complete lab topology.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// Short name (`[a-z0-9][a-z0-9-]*`, at most 32 characters); used in run ids.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Seed for everything random in the lab (impairments, NAT port choice), so that a run
    /// can be repeated.
    pub seed: u64,
    /// The L3 networks.
    pub segments: Vec<Segment>,
    /// Network namespaces.
    pub hosts: Vec<Host>,
    /// Fabric routers and NATs (Linux NATs are namespaces; see [`Node::is_namespace`]).
    pub routers: Vec<Router>,
}

/// An L3 network: a LAN, a carrier network, the internet core.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Name interfaces refer to.
    pub name: String,
    /// The subnet; every interface on the segment has an address inside it.
    pub subnet: Ipv4Net,
    /// The native IPv6 subnet of a dual-stack segment; interfaces with an `address6` take
    /// it from here, and the fabric routes IPv6 on the segment by it.
    pub subnet6: Option<Ipv6Net>,
    /// Free text.
    pub description: String,
}

impl Segment {
    /// A segment without description.
    pub fn new(name: impl Into<String>, subnet: Ipv4Net) -> Self {
        Self {
            name: name.into(),
            subnet,
            subnet6: None,
            description: String::new(),
        }
    }

    /// Makes the segment dual-stack with this native IPv6 subnet.
    pub fn subnet6(mut self, subnet: Ipv6Net) -> Self {
        self.subnet6 = Some(subnet);
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
}

/// What a link does to the packets of one direction. `Default` is a perfect link.
#[derive(Clone, Debug, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Random variation of `delay`: each packet waits a uniform `delay ± jitter` (never below
    /// zero). Without `reorder`, packets keep their order, so jitter only spreads them out.
    pub jitter: Duration,
    /// Probability a packet is lost, `0..=1`.
    pub loss: f64,
    /// Mean length of a loss burst in packets, `>= 1`. `1` = independent losses; above 1 the
    /// fabric uses a Gilbert-Elliott model with this mean burst length and `loss` as the
    /// long-run loss rate.
    pub loss_burst: f64,
    /// Probability a packet is delivered twice, `0..=1`.
    pub duplicate: f64,
    /// Probability a packet is held back behind later ones, `0..=1`.
    pub reorder: f64,
    /// How long a held-back packet waits; `None` leaves it to the fabric's default.
    pub reorder_gap: Option<Duration>,
    /// Bandwidth limit in bits per second; `None` = unlimited. Never 0.
    pub rate_bps: Option<u64>,
    /// Packets queued behind the rate limit (and delay line) before tail drop; at least 1.
    pub queue_limit: u32,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            loss_burst: 1.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_gap: None,
            rate_bps: None,
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }
}

impl Impairment {
    /// A perfect link (same as `Default`).
    pub fn none() -> Self {
        Self::default()
    }

    /// A link with only a fixed delay.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// Whether the link leaves packets untouched, so the fabric can take its fast path.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// One attachment of a node to a segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Interface {
    /// Interface name inside the node (`eth0`, `lan`, `wan`); becomes the TUN device name.
    pub name: String,
    /// Name of the segment it attaches to.
    pub segment: String,
    /// Its address, inside the segment's subnet.
    pub address: Ipv4Addr,
    /// Default gateway for a host interface. `None`: derived (see [`Topology::gateway_of`]).
    /// Routers use routes instead and must leave it unset.
    pub gateway: Option<Ipv4Addr>,
    /// A native IPv6 address inside the segment's `subnet6` (hosts only): the interface
    /// then carries IPv6 as well.
    pub address6: Option<Ipv6Addr>,
    /// The IPv6 default gateway of a host interface: another interface's `address6` on the
    /// same segment (for a native host behind the 6bed4 router, the router's).
    pub gateway6: Option<Ipv6Addr>,
    /// MTU, `576..=65535`.
    pub mtu: u32,
    /// Node → segment.
    pub egress: Impairment,
    /// Segment → node.
    pub ingress: Impairment,
}

impl Interface {
    /// An interface with the default MTU, no explicit gateway and perfect links.
    pub fn new(name: impl Into<String>, segment: impl Into<String>, address: Ipv4Addr) -> Self {
        Self {
            name: name.into(),
            segment: segment.into(),
            address,
            gateway: None,
            address6: None,
            gateway6: None,
            mtu: DEFAULT_MTU,
            egress: Impairment::default(),
            ingress: Impairment::default(),
        }
    }

    /// Sets an explicit gateway.
    pub fn gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Sets a native IPv6 address (the segment needs a `subnet6`).
    pub fn address6(mut self, address: Ipv6Addr) -> Self {
        self.address6 = Some(address);
        self
    }

    /// Sets the IPv6 default gateway.
    pub fn gateway6(mut self, gateway: Ipv6Addr) -> Self {
        self.gateway6 = Some(gateway);
        self
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    /// Sets the node → segment impairment.
    pub fn egress(mut self, impairment: Impairment) -> Self {
        self.egress = impairment;
        self
    }

    /// Sets the segment → node impairment.
    pub fn ingress(mut self, impairment: Impairment) -> Self {
        self.ingress = impairment;
        self
    }
}

/// A network namespace with real kernel networking inside.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Node name, unique across hosts and routers.
    pub name: String,
    /// Free label scenarios select hosts by (`6bed4-router`, `peer`, `server`, ...).
    pub role: String,
    /// Its interfaces (at least one).
    pub interfaces: Vec<Interface>,
}

impl Host {
    /// A host with role [`DEFAULT_HOST_ROLE`] and no interfaces yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: DEFAULT_HOST_ROLE.to_string(),
            interfaces: Vec::new(),
        }
    }

    /// Sets the role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = role.into();
        self
    }

    /// Adds an interface.
    pub fn interface(mut self, interface: Interface) -> Self {
        self.interfaces.push(interface);
        self
    }
}

/// A static route of a router.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Destination network (`0.0.0.0/0` for a default route).
    pub prefix: Ipv4Net,
    /// Next hop, on a segment the router is attached to.
    pub via: Ipv4Addr,
}

/// A router: a fabric node that forwards between its interfaces (longest prefix first:
/// connected segments, then `routes`), and translates when `nat` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Router {
    /// Node name, unique across hosts and routers.
    pub name: String,
    /// Free label.
    pub role: String,
    /// Its interfaces (at least two).
    pub interfaces: Vec<Interface>,
    /// Static routes beyond the connected segments.
    pub routes: Vec<Route>,
    /// NAT on the outside interface, if any.
    pub nat: Option<NatSpec>,
}

impl Router {
    /// A router with role [`DEFAULT_ROUTER_ROLE`], no interfaces, routes or NAT yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: DEFAULT_ROUTER_ROLE.to_string(),
            interfaces: Vec::new(),
            routes: Vec::new(),
            nat: None,
        }
    }

    /// Sets the role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = role.into();
        self
    }

    /// Adds an interface.
    pub fn interface(mut self, interface: Interface) -> Self {
        self.interfaces.push(interface);
        self
    }

    /// Adds a static route.
    pub fn route(mut self, prefix: Ipv4Net, via: Ipv4Addr) -> Self {
        self.routes.push(Route { prefix, via });
        self
    }

    /// Makes the router a NAT.
    pub fn nat(mut self, nat: NatSpec) -> Self {
        self.nat = Some(nat);
        self
    }

    /// The NAT's outside interface, if this is a NAT and the interface exists.
    pub fn outside_interface(&self) -> Option<&Interface> {
        let nat = self.nat.as_ref()?;
        self.interfaces.iter().find(|i| i.name == nat.outside)
    }

    /// The external addresses a NAT translates to: its pool if one is set, otherwise its
    /// outside interface's address. Empty for a router without NAT.
    pub fn external_addresses(&self) -> Vec<Ipv4Addr> {
        match (&self.nat, self.outside_interface()) {
            (Some(nat), _) if nat.knobs.external_addresses.is_some() => {
                nat.knobs.external_addresses.clone().unwrap_or_default()
            }
            (Some(_), Some(outside)) => vec![outside.address],
            _ => Vec::new(),
        }
    }
}

/// A host or a router, borrowed from a topology.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node<'a> {
    /// A network namespace.
    Host(&'a Host),
    /// A fabric router or NAT.
    Router(&'a Router),
}

impl<'a> Node<'a> {
    /// The node's name.
    pub fn name(&self) -> &'a str {
        match self {
            Node::Host(h) => &h.name,
            Node::Router(r) => &r.name,
        }
    }

    /// The node's role label.
    pub fn role(&self) -> &'a str {
        match self {
            Node::Host(h) => &h.role,
            Node::Router(r) => &r.role,
        }
    }

    /// The node's interfaces.
    pub fn interfaces(&self) -> &'a [Interface] {
        match self {
            Node::Host(h) => &h.interfaces,
            Node::Router(r) => &r.interfaces,
        }
    }

    /// The interface called `name`.
    pub fn interface(&self, name: &str) -> Option<&'a Interface> {
        self.interfaces().iter().find(|i| i.name == name)
    }

    /// Whether the lab makes this node a network namespace (hosts, and routers whose NAT is
    /// the kernel's) rather than a node inside the fabric.
    pub fn is_namespace(&self) -> bool {
        match self {
            Node::Host(_) => true,
            Node::Router(r) => r.nat.as_ref().is_some_and(|n| n.kind.is_linux()),
        }
    }

    /// Whether this node forwards packets (routers and NATs of either kind).
    pub fn is_router(&self) -> bool {
        matches!(self, Node::Router(_))
    }
}

/// An interface together with the node it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterfaceRef<'a> {
    /// The node.
    pub node: Node<'a>,
    /// The interface.
    pub interface: &'a Interface,
}

impl InterfaceRef<'_> {
    /// The link's name, `node/interface`.
    pub fn link(&self) -> LinkName {
        LinkName {
            node: self.node.name().to_string(),
            interface: self.interface.name.clone(),
        }
    }
}

/// The name of a link: its node end, `node/interface` (`peer-a/eth0`, `nat-a/wan`). Capture
/// points and impairment overrides use it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkName {
    /// Node name.
    pub node: String,
    /// Interface name.
    pub interface: String,
}

impl LinkName {
    /// `node/interface`.
    pub fn new(node: impl Into<String>, interface: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            interface: interface.into(),
        }
    }
}

impl fmt::Display for LinkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.interface)
    }
}

impl FromStr for LinkName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.split_once('/') {
            Some((node, iface)) if !node.is_empty() && !iface.is_empty() && !iface.contains('/') => {
                Ok(LinkName::new(node, iface))
            }
            _ => Err(ValueError {
                expected: "a link name such as \"peer-a/eth0\"".to_string(),
                found: format!("{s:?}"),
            }),
        }
    }
}

impl Topology {
    /// Reads and validates a topology file; errors name `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| TopologyError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Parses and validates topology TOML; errors are reported as `origin:line:col: ...`.
    pub fn from_str(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        parse::parse(text, origin)
    }

    /// Starts a [`TopologyBuilder`].
    pub fn builder(name: impl Into<String>) -> TopologyBuilder {
        TopologyBuilder::new(name)
    }

    /// Checks every semantic rule (names, references, addresses, subnets, gateways, routes,
    /// NATs, impairments) and reports every violation, located by model path
    /// (`host[1].interface[0].address`) since a model built in Rust has no file positions.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let issues = validate::check(self);
        if issues.is_empty() {
            return Ok(());
        }
        Err(TopologyError::Invalid(
            issues
                .into_iter()
                .map(|issue| issue.unlocated(error::MODEL_ORIGIN))
                .collect(),
        ))
    }

    /// Writes the topology as TOML that [`Topology::from_str`] reads back to an equal model.
    pub fn to_toml(&self) -> String {
        emit::to_toml(self)
    }

    /// Every node: hosts first, then routers, each in declaration order.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        self.hosts
            .iter()
            .map(Node::Host)
            .chain(self.routers.iter().map(Node::Router))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<Node<'_>> {
        self.nodes().find(|n| n.name() == name)
    }

    /// The segment called `name`.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Every interface with its node, in node order.
    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceRef<'_>> {
        self.nodes().flat_map(|node| {
            node.interfaces()
                .iter()
                .map(move |interface| InterfaceRef { node, interface })
        })
    }

    /// Every link name (`node/interface`), in node order.
    pub fn links(&self) -> impl Iterator<Item = LinkName> + '_ {
        self.interfaces().map(|i| i.link())
    }

    /// The interface `node/interface`.
    pub fn interface(&self, node: &str, interface: &str) -> Option<InterfaceRef<'_>> {
        let node = self.node(node)?;
        node.interface(interface)
            .map(|interface| InterfaceRef { node, interface })
    }

    /// The interface a link name designates.
    pub fn link(&self, link: &LinkName) -> Option<InterfaceRef<'_>> {
        self.interface(&link.node, &link.interface)
    }

    /// The segment the interface `node/interface` attaches to.
    pub fn segment_of(&self, node: &str, interface: &str) -> Option<&Segment> {
        self.segment(&self.interface(node, interface)?.interface.segment)
    }

    /// Every interface attached to the segment called `segment`.
    pub fn attached_to<'a>(&'a self, segment: &'a str) -> impl Iterator<Item = InterfaceRef<'a>> + 'a {
        self.interfaces().filter(move |i| i.interface.segment == segment)
    }

    /// The interface that receives packets for `addr`: the interface with that address, or
    /// the outside interface of the NAT whose external pool holds it.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<InterfaceRef<'_>> {
        if let Some(found) = self.interfaces().find(|i| i.interface.address == addr) {
            return Some(found);
        }
        self.routers.iter().find_map(|r| {
            let pool = r.nat.as_ref()?.knobs.external_addresses.as_ref()?;
            if !pool.contains(&addr) {
                return None;
            }
            Some(InterfaceRef {
                node: Node::Router(r),
                interface: r.outside_interface()?,
            })
        })
    }

    /// The default gateway of `node/interface`, for hosts: the explicit `gateway`, or else
    /// the one gateway candidate on its segment (see [`Topology::gateway_candidates`]).
    /// `None` when the interface is on-link only (no candidate), when the node or interface
    /// does not exist, and for routers, whose forwarding is their routes.
    pub fn gateway_of(&self, node: &str, interface: &str) -> Option<Ipv4Addr> {
        let found = self.interface(node, interface)?;
        if found.node.is_router() {
            return None;
        }
        if let Some(gateway) = found.interface.gateway {
            return Some(gateway);
        }
        match self.gateway_candidates(&found.interface.segment).as_slice() {
            [only] => Some(only.interface.address),
            _ => None,
        }
    }

    /// Router interfaces on `segment` that lead somewhere else: every router interface except
    /// a NAT's outside interface (what is behind a NAT is reachable only through its mappings,
    /// which are addressed to its external, on-link address). A host without an explicit
    /// gateway uses the only candidate; with several it must choose.
    pub fn gateway_candidates<'a>(&'a self, segment: &'a str) -> Vec<InterfaceRef<'a>> {
        self.attached_to(segment)
            .filter(|i| match i.node {
                Node::Host(_) => false,
                Node::Router(r) => match &r.nat {
                    Some(nat) => nat.outside != i.interface.name,
                    None => true,
                },
            })
            .collect()
    }

    /// Hosts (and routers) with the given role, e.g. the `6bed4-router`.
    pub fn nodes_with_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = Node<'a>> + 'a {
        self.nodes().filter(move |n| n.role() == role)
    }
}

/// A fuzz target body: parses arbitrary bytes as a topology and must never panic. When the
/// input is a valid topology, it also checks that `to_toml` round-trips it, so a fuzzer finds
/// writer bugs too (that check panics only on a real round-trip bug).
pub fn fuzz_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Topology::from_str(&text, "fuzz") {
        Ok(topology) => {
            let again = Topology::from_str(&topology.to_toml(), "fuzz-round-trip");
            assert_eq!(again.as_ref().ok(), Some(&topology), "to_toml did not round-trip");
        }
        // Rendering the message exercises the position and message code on every error.
        Err(e) => drop(e.to_string()),
    }
}

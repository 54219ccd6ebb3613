//! Semantic validation: pure checks on the model, run before anything is created.
//!
//! Every rule reports *all* its violations as [`Issue`]s named by model path
//! (`host[1].interface[0].address`); the parser turns paths into file positions, the builder
//! reports the paths themselves. Checks that depend on a broken reference (an interface on an
//! unknown segment) skip what they cannot judge, so one mistake yields one error rather than
//! a cascade.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::error::{with_suggestion, ErrorKind, Issue};
use super::values::Ipv4Net;
use super::{Impairment, Interface, Node, Topology, MAX_INTERFACE_NAME, MAX_MTU, MAX_NODE_NAME, MIN_MTU};

pub(crate) fn check(topology: &Topology) -> Vec<Issue> {
    let mut c = Checker {
        t: topology,
        issues: Vec::new(),
        owners: HashMap::new(),
    };
    c.topology();
    c.segments();
    c.nodes();
    c.interfaces();
    c.gateways();
    c.routes();
    c.nats();
    c.ipv6();
    c.issues
}

/// Who owns an address on a segment: the model path of the value, and the link (or pool) name.
struct Owner {
    path: String,
    what: String,
}

struct Checker<'a> {
    t: &'a Topology,
    issues: Vec<Issue>,
    /// (segment, address) → its first owner; filled by `interfaces`, then NAT pools.
    owners: HashMap<(&'a str, Ipv4Addr), Owner>,
}

/// Subnets no segment may touch: "this network", loopback, multicast and the reserved and
/// broadcast range above it.
const NON_UNICAST: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(224, 0, 0, 0), 3),
];

impl<'a> Checker<'a> {
    fn issue(
        &mut self,
        path: String,
        kind: ErrorKind,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.issues.push(Issue {
            path,
            kind,
            expected: expected.into(),
            found: found.into(),
            related: None,
        });
    }

    fn issue_related(
        &mut self,
        path: String,
        kind: ErrorKind,
        expected: impl Into<String>,
        found: impl Into<String>,
        related: String,
    ) {
        self.issues.push(Issue {
            path,
            kind,
            expected: expected.into(),
            found: found.into(),
            related: Some(related),
        });
    }

    /// Every node with its model path (`host[i]` / `router[i]`).
    fn nodes_with_paths(&self) -> Vec<(String, Node<'a>)> {
        let t = self.t;
        let hosts = t
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("host[{i}]"), Node::Host(h)));
        let routers = t
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("router[{i}]"), Node::Router(r)));
        hosts.chain(routers).collect()
    }

    fn name(&mut self, path: String, what: &str, name: &str, max: usize) {
        let valid = !name.is_empty()
            && name.len() <= max
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            self.issue(
                path,
                ErrorKind::BadName,
                format!("{what} of 1 to {max} characters from `a-z`, `0-9` and `-`, not starting with `-`"),
                format!("{name:?}"),
            );
        }
    }

    fn topology(&mut self) {
        let t = self.t;
        self.name("name".into(), "a topology name", &t.name, MAX_NODE_NAME);
        if i64::try_from(t.seed).is_err() {
            self.issue(
                "seed".into(),
                ErrorKind::BadValue,
                format!("a seed in 0..={} (TOML integers are signed 64-bit)", i64::MAX),
                t.seed.to_string(),
            );
        }
    }

    fn segments(&mut self) {
        let t = self.t;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, segment) in t.segments.iter().enumerate() {
            let path = format!("segment[{i}]");
            self.name(
                format!("{path}.name"),
                "a segment name",
                &segment.name,
                MAX_NODE_NAME,
            );
            if let Some(first) = seen.get(segment.name.as_str()) {
                self.issue_related(
                    format!("{path}.name"),
                    ErrorKind::DuplicateName,
                    "a segment name no other segment has",
                    format!("`{}` again", segment.name),
                    format!("segment[{first}].name"),
                );
            } else {
                seen.insert(&segment.name, i);
            }
            let subnet = segment.subnet;
            if NON_UNICAST
                .iter()
                .any(|&(a, l)| subnet.overlaps(&Ipv4Net::truncating(a, l)))
            {
                self.issue(
                    format!("{path}.subnet"),
                    ErrorKind::ReservedAddress,
                    "a unicast subnet (clear of 0.0.0.0/8, 127.0.0.0/8 and 224.0.0.0/3)",
                    subnet.to_string(),
                );
                continue;
            }
            if let Some((j, other)) = t.segments[..i]
                .iter()
                .enumerate()
                .find(|(_, other)| other.subnet.overlaps(&subnet))
            {
                self.issue_related(
                    format!("{path}.subnet"),
                    ErrorKind::OverlappingSubnets,
                    "a subnet that overlaps no other segment's",
                    format!(
                        "{subnet}, which overlaps segment `{}` ({})",
                        other.name, other.subnet
                    ),
                    format!("segment[{j}].subnet"),
                );
            }
        }
    }

    fn nodes(&mut self) {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (path, node) in self.nodes_with_paths() {
            self.name(format!("{path}.name"), "a node name", node.name(), MAX_NODE_NAME);
            if let Some(first) = seen.get(node.name()) {
                self.issue_related(
                    format!("{path}.name"),
                    ErrorKind::DuplicateName,
                    "a node name no other host or router has",
                    format!("`{}` again", node.name()),
                    format!("{first}.name"),
                );
            } else {
                seen.insert(node.name(), path.clone());
            }
            if node.role().is_empty() {
                self.issue(
                    format!("{path}.role"),
                    ErrorKind::BadName,
                    "a non-empty role",
                    "\"\"",
                );
            }
            let count = node.interfaces().len();
            match node {
                Node::Host(_) if count == 0 => self.issue(
                    path,
                    ErrorKind::BadNode,
                    "a host with at least one `[[host.interface]]`",
                    "none",
                ),
                Node::Router(_) if count < 2 => self.issue(
                    path,
                    ErrorKind::BadNode,
                    "a router with at least two `[[router.interface]]` (it forwards between them)",
                    if count == 0 {
                        "none".to_string()
                    } else {
                        "one".to_string()
                    },
                ),
                _ => {}
            }
        }
    }

    fn interfaces(&mut self) {
        for (node_path, node) in self.nodes_with_paths() {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for (j, iface) in node.interfaces().iter().enumerate() {
                let path = format!("{node_path}.interface[{j}]");
                self.name(
                    format!("{path}.name"),
                    "an interface name",
                    &iface.name,
                    MAX_INTERFACE_NAME,
                );
                if iface.name == "lo" {
                    self.issue(
                        format!("{path}.name"),
                        ErrorKind::BadName,
                        "an interface name other than `lo` (every namespace has its own loopback)",
                        "\"lo\"",
                    );
                }
                if let Some(first) = seen.get(iface.name.as_str()) {
                    self.issue_related(
                        format!("{path}.name"),
                        ErrorKind::DuplicateName,
                        format!("an interface name no other interface of `{}` has", node.name()),
                        format!("`{}` again", iface.name),
                        format!("{node_path}.interface[{first}].name"),
                    );
                } else {
                    seen.insert(&iface.name, j);
                }
                if !(MIN_MTU..=MAX_MTU).contains(&iface.mtu) {
                    self.issue(
                        format!("{path}.mtu"),
                        ErrorKind::BadMtu,
                        format!("an MTU in {MIN_MTU}..={MAX_MTU}"),
                        iface.mtu.to_string(),
                    );
                }
                self.impairment(&format!("{path}.egress"), &iface.egress);
                self.impairment(&format!("{path}.ingress"), &iface.ingress);
                self.attachment(&path, node, iface);
            }
        }
    }

    /// The interface's segment exists and its address is a free host address there.
    fn attachment(&mut self, path: &str, node: Node<'a>, iface: &'a Interface) {
        let t = self.t;
        let Some(segment) = t.segment(&iface.segment) else {
            let known: Vec<&str> = t.segments.iter().map(|s| s.name.as_str()).collect();
            let expected = if known.is_empty() {
                "the name of a declared segment (there is no `[[segment]]`)".to_string()
            } else {
                format!(
                    "the name of a declared segment ({})",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.issue(
                format!("{path}.segment"),
                ErrorKind::DanglingReference,
                expected,
                with_suggestion(&iface.segment, &known),
            );
            return;
        };
        let link = format!("{}/{}", node.name(), iface.name);
        if self.host_address(
            &format!("{path}.address"),
            &segment.name,
            segment.subnet,
            iface.address,
        ) {
            self.claim(&format!("{path}.address"), &segment.name, iface.address, link);
        }
    }

    /// Whether `addr` may be an interface address on `segment`; reports why not.
    fn host_address(&mut self, path: &str, segment: &str, subnet: Ipv4Net, addr: Ipv4Addr) -> bool {
        if !subnet.contains(addr) {
            self.issue(
                path.to_string(),
                ErrorKind::AddressOutsideSubnet,
                format!("an address inside segment `{segment}` ({subnet})"),
                addr.to_string(),
            );
            return false;
        }
        if !subnet.is_host_address(addr) {
            let which = if addr == subnet.addr() {
                "network"
            } else {
                "broadcast"
            };
            self.issue(
                path.to_string(),
                ErrorKind::ReservedAddress,
                format!("a host address of {subnet} (not its network or broadcast address)"),
                format!("{addr}, its {which} address"),
            );
            return false;
        }
        true
    }

    /// Records `addr` on `segment` as owned by `what`, or reports the earlier owner.
    fn claim(&mut self, path: &str, segment: &'a str, addr: Ipv4Addr, what: String) {
        if let Some(first) = self.owners.get(&(segment, addr)) {
            let (first_path, first_what) = (first.path.clone(), first.what.clone());
            self.issue_related(
                path.to_string(),
                ErrorKind::DuplicateAddress,
                format!("an address no other interface on segment `{segment}` has"),
                format!("{addr} again (owned by {first_what})"),
                first_path,
            );
        } else {
            self.owners.insert(
                (segment, addr),
                Owner {
                    path: path.to_string(),
                    what,
                },
            );
        }
    }

    fn impairment(&mut self, path: &str, imp: &Impairment) {
        for (key, value) in [
            ("loss", imp.loss),
            ("duplicate", imp.duplicate),
            ("reorder", imp.reorder),
        ] {
            if !(0.0..=1.0).contains(&value) {
                self.issue(
                    format!("{path}.{key}"),
                    ErrorKind::BadImpairment,
                    "a probability in 0..=1",
                    value.to_string(),
                );
            }
        }
        if imp.loss_burst.is_nan() || imp.loss_burst < 1.0 || imp.loss_burst.is_infinite() {
            self.issue(
                format!("{path}.loss_burst"),
                ErrorKind::BadImpairment,
                "a mean loss burst length of at least 1 packet (1 = independent losses)",
                imp.loss_burst.to_string(),
            );
        }
        if imp.rate_bps == Some(0) {
            self.issue(
                format!("{path}.rate"),
                ErrorKind::BadImpairment,
                "a rate above 0 (leave `rate` out for an unlimited link)",
                "0bit",
            );
        }
        if imp.queue_limit == 0 {
            self.issue(
                format!("{path}.queue_limit"),
                ErrorKind::BadImpairment,
                "a queue limit of at least 1 packet",
                "0",
            );
        }
    }

    /// Native IPv6: subnets are unicast /0../128 networks that do not overlap; an
    /// `address6` lies in its segment's `subnet6` (which must exist), is unused on the segment
    /// and belongs to a host (fabric routers do not route IPv6); a `gateway6` is another
    /// interface's `address6` on the same segment.
    fn ipv6(&mut self) {
        let t = self.t;
        for (i, s) in t.segments.iter().enumerate() {
            let Some(net) = s.subnet6 else { continue };
            let first = net.addr().segments()[0];
            if first >= 0xff00
                || net.addr().is_unspecified() && net.prefix_len() > 0
                || first & 0xffc0 == 0xfe80
            {
                self.issue(
                    format!("segment[{i}].subnet6"),
                    ErrorKind::ReservedAddress,
                    "a unicast, non-link-local IPv6 subnet",
                    net.to_string(),
                );
            }
            for (j, other) in t.segments.iter().enumerate().take(i) {
                if other.subnet6.is_some_and(|o| o.overlaps(&net)) {
                    self.issue_related(
                        format!("segment[{i}].subnet6"),
                        ErrorKind::OverlappingSubnets,
                        format!("an IPv6 subnet that does not overlap segment `{}`'s", other.name),
                        net.to_string(),
                        format!("segment[{j}].subnet6"),
                    );
                }
            }
        }
        let mut owners: HashMap<(&str, std::net::Ipv6Addr), String> = HashMap::new();
        for (node_path, node) in self.nodes_with_paths() {
            for (j, iface) in node.interfaces().iter().enumerate() {
                let path = format!("{node_path}.interface[{j}]");
                let Some(segment) = t.segment(&iface.segment) else {
                    continue;
                };
                if let Some(a) = iface.address6 {
                    if node.is_router() {
                        self.issue(
                            format!("{path}.address6"),
                            ErrorKind::BadValue,
                            "no `address6` on a router (routers forward IPv4 only; give the address to a host)",
                            a.to_string(),
                        );
                    }
                    match segment.subnet6 {
                        None => self.issue(
                            format!("{path}.address6"),
                            ErrorKind::AddressOutsideSubnet,
                            format!("a segment with `subnet6` (`{}` has none)", segment.name),
                            a.to_string(),
                        ),
                        Some(net) if !net.contains(a) || a == net.addr() => self.issue(
                            format!("{path}.address6"),
                            ErrorKind::AddressOutsideSubnet,
                            format!("a host address inside segment `{}`'s {net}", segment.name),
                            a.to_string(),
                        ),
                        Some(_) => match owners.get(&(segment.name.as_str(), a)) {
                            Some(first) => {
                                let first = first.clone();
                                self.issue_related(
                                    format!("{path}.address6"),
                                    ErrorKind::DuplicateAddress,
                                    format!("an IPv6 address no other interface on `{}` has", segment.name),
                                    format!("{a} again"),
                                    first,
                                );
                            }
                            None => {
                                owners.insert((segment.name.as_str(), a), format!("{path}.address6"));
                            }
                        },
                    }
                }
                if let Some(g) = iface.gateway6 {
                    let owned = t
                        .attached_to(&segment.name)
                        .any(|o| o.interface.address6 == Some(g) && o.interface.address6 != iface.address6);
                    if iface.address6.is_none() || !owned {
                        self.issue(
                            format!("{path}.gateway6"),
                            ErrorKind::BadGateway,
                            format!(
                                "the `address6` of another interface on segment `{}`, on an interface \
                                 that has an `address6` itself",
                                segment.name
                            ),
                            g.to_string(),
                        );
                    }
                }
            }
        }
    }

    fn gateways(&mut self) {
        let t = self.t;
        for (node_path, node) in self.nodes_with_paths() {
            for (j, iface) in node.interfaces().iter().enumerate() {
                let path = format!("{node_path}.interface[{j}]");
                if node.is_router() {
                    if let Some(gateway) = iface.gateway {
                        self.issue(
                            format!("{path}.gateway"),
                            ErrorKind::BadGateway,
                            "no `gateway` on a router interface (give the router a `[[router.route]]`, \
                             e.g. prefix \"0.0.0.0/0\")",
                            gateway.to_string(),
                        );
                    }
                    continue;
                }
                let Some(segment) = t.segment(&iface.segment) else {
                    continue;
                };
                let routers: Vec<String> = t
                    .attached_to(&segment.name)
                    .filter(|i| i.node.is_router())
                    .map(|i| format!("{} {}", i.interface.address, i.link()))
                    .collect();
                match iface.gateway {
                    Some(gateway) if !segment.subnet.contains(gateway) => self.issue(
                        format!("{path}.gateway"),
                        ErrorKind::BadGateway,
                        format!("a gateway inside segment `{}` ({})", segment.name, segment.subnet),
                        gateway.to_string(),
                    ),
                    Some(gateway) if gateway == iface.address => self.issue(
                        format!("{path}.gateway"),
                        ErrorKind::BadGateway,
                        "a gateway other than the interface's own address",
                        gateway.to_string(),
                    ),
                    Some(gateway) => {
                        let owned = t
                            .attached_to(&segment.name)
                            .any(|i| i.node.is_router() && i.interface.address == gateway);
                        if !owned {
                            let expected = if routers.is_empty() {
                                format!(
                                    "the address of a router interface on segment `{}` (it has none; \
                                     leave `gateway` out for on-link only)",
                                    segment.name
                                )
                            } else {
                                format!(
                                    "the address of a router interface on segment `{}` ({})",
                                    segment.name,
                                    routers.join(", ")
                                )
                            };
                            self.issue(
                                format!("{path}.gateway"),
                                ErrorKind::BadGateway,
                                expected,
                                format!("{gateway}, which no router has"),
                            );
                        }
                    }
                    None => {
                        let candidates: Vec<String> = t
                            .gateway_candidates(&segment.name)
                            .iter()
                            .map(|i| format!("{} {}", i.interface.address, i.link()))
                            .collect();
                        if candidates.len() > 1 {
                            self.issue(
                                path,
                                ErrorKind::MissingGateway,
                                format!(
                                    "a `gateway` (segment `{}` has several routers: {})",
                                    segment.name,
                                    candidates.join(", ")
                                ),
                                "none",
                            );
                        }
                    }
                }
            }
        }
    }

    fn routes(&mut self) {
        let t = self.t;
        for (i, router) in t.routers.iter().enumerate() {
            let mut seen: HashMap<Ipv4Net, usize> = HashMap::new();
            let connected: Vec<(&str, Ipv4Net)> = router
                .interfaces
                .iter()
                .filter_map(|iface| t.segment(&iface.segment))
                .map(|s| (s.name.as_str(), s.subnet))
                .collect();
            for (k, route) in router.routes.iter().enumerate() {
                let path = format!("router[{i}].route[{k}]");
                if let Some(first) = seen.get(&route.prefix) {
                    self.issue_related(
                        format!("{path}.prefix"),
                        ErrorKind::BadRoute,
                        format!("each prefix at most once in the routes of `{}`", router.name),
                        format!("{} again", route.prefix),
                        format!("router[{i}].route[{first}].prefix"),
                    );
                } else {
                    seen.insert(route.prefix, k);
                }
                let via = route.via;
                let Some((segment, _)) = connected.iter().find(|(_, subnet)| subnet.contains(via)) else {
                    let list: Vec<String> = connected.iter().map(|(n, s)| format!("`{n}` {s}")).collect();
                    self.issue(
                        format!("{path}.via"),
                        ErrorKind::BadRoute,
                        format!(
                            "a next hop on a segment `{}` is attached to ({})",
                            router.name,
                            list.join(", ")
                        ),
                        via.to_string(),
                    );
                    continue;
                };
                if router.interfaces.iter().any(|iface| iface.address == via) {
                    self.issue(
                        format!("{path}.via"),
                        ErrorKind::BadRoute,
                        "a next hop other than the router's own address",
                        via.to_string(),
                    );
                } else if !t.attached_to(segment).any(|iface| iface.interface.address == via) {
                    self.issue(
                        format!("{path}.via"),
                        ErrorKind::BadRoute,
                        format!("the address of an interface on segment `{segment}`"),
                        format!("{via}, which no interface has"),
                    );
                }
            }
        }
    }

    fn nats(&mut self) {
        let t = self.t;
        for (i, router) in t.routers.iter().enumerate() {
            let Some(nat) = &router.nat else { continue };
            let path = format!("router[{i}].nat");
            let outside = router.interfaces.iter().find(|iface| iface.name == nat.outside);
            if outside.is_none() {
                let known: Vec<&str> = router
                    .interfaces
                    .iter()
                    .map(|iface| iface.name.as_str())
                    .collect();
                self.issue(
                    format!("{path}.outside"),
                    ErrorKind::DanglingReference,
                    format!(
                        "the name of an interface of `{}` ({})",
                        router.name,
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    with_suggestion(&nat.outside, &known),
                );
            }
            if nat.kind.is_linux() {
                for knob in nat.knobs.set_names() {
                    if knob != "udp_timeout" && knob != "firewall" {
                        self.issue(
                            format!("{path}.{knob}"),
                            ErrorKind::BadNat,
                            format!(
                                "only `udp_timeout` and `firewall` on a `{}` NAT (the kernel decides the rest)",
                                nat.kind
                            ),
                            format!("`{knob}`"),
                        );
                    }
                }
            } else if nat.knobs.firewall.is_some() {
                self.issue(
                    format!("{path}.firewall"),
                    ErrorKind::BadNat,
                    format!(
                        "`firewall` only on a Linux NAT (a `{}` NAT's `filtering` decides what comes in)",
                        nat.kind
                    ),
                    "`firewall`",
                );
            }
            for (knob, value) in [
                ("udp_timeout", nat.knobs.udp_timeout),
                ("tcp_established_timeout", nat.knobs.tcp_established_timeout),
                ("tcp_transitory_timeout", nat.knobs.tcp_transitory_timeout),
            ] {
                if value.is_some_and(|v| v.is_zero()) {
                    self.issue(
                        format!("{path}.{knob}"),
                        ErrorKind::BadNat,
                        "a timeout above 0",
                        "0s",
                    );
                }
            }
            if let Some(pool) = &nat.knobs.external_addresses {
                self.pool(&path, router.name.as_str(), outside, pool);
            }
        }
    }

    /// A NAT's external pool: addresses on the outside segment that nobody else owns.
    fn pool(&mut self, path: &str, router: &str, outside: Option<&'a Interface>, pool: &[Ipv4Addr]) {
        if pool.is_empty() {
            self.issue(
                format!("{path}.external_addresses"),
                ErrorKind::BadNat,
                "at least one address (leave `external_addresses` out to use the outside interface's)",
                "an empty list",
            );
            return;
        }
        let Some(outside) = outside else { return };
        let Some(segment) = self.t.segment(&outside.segment) else {
            return;
        };
        for (m, &addr) in pool.iter().enumerate() {
            let entry = format!("{path}.external_addresses[{m}]");
            if !self.host_address(&entry, &segment.name, segment.subnet, addr) || addr == outside.address {
                continue;
            }
            self.claim(&entry, &segment.name, addr, format!("the pool of `{router}`"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = Topology::builder("ok").build_unchecked();
        let mut c = Checker {
            t: &t,
            issues: Vec::new(),
            owners: HashMap::new(),
        };
        for good in ["a", "0", "peer-a", "a-", "x".repeat(15).as_str()] {
            c.name("p".into(), "a name", good, 15);
        }
        assert!(c.issues.is_empty(), "{:?}", c.issues);
        for bad in ["", "-a", "A", "a_b", "a.b", "é", "x".repeat(16).as_str()] {
            c.name("p".into(), "a name", bad, 15);
        }
        assert_eq!(c.issues.len(), 7);
    }
}

//! TOML → model.
//!
//! Three passes, each reporting in the `origin:line:col: expected X, found Y` form:
//! 1. syntax: the text must be TOML (parsed once with nothing kept);
//! 2. schema: serde into "raw" structs that mirror the file, `deny_unknown_fields` everywhere
//!    and every value wrapped in `toml::Spanned` so its byte range is known;
//! 3. semantics: the raw structs become the model, remembering each value's span under its
//!    model path (`host[1].interface[0].address`) in a [`SourceMap`]; the pure checks of
//!    `validate` then run on the model and their issues are located through that map.
//!
//! The model itself carries no spans, which is what lets a builder-made topology compare
//! equal to a parsed one.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::error::{from_toml_error, Diagnostic, Issue};
use super::nat::{Filtering, IcmpPolicy, Mapping, NatKnobs, NatSpec, NatType, PortAllocation, Refresh};
use super::validate;
use super::values::{Addr6Text, AddrText, DurationText, Ipv4Net, Ipv6Net, PortRange, RateText};
use super::{
    Host, Impairment, Interface, Route, Router, Segment, Topology, TopologyError, DEFAULT_HOST_ROLE,
    DEFAULT_MTU, DEFAULT_QUEUE_LIMIT, DEFAULT_ROUTER_ROLE,
};

pub(crate) fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
    if let Err(e) = toml::from_str::<serde::de::IgnoredAny>(text) {
        return Err(TopologyError::Syntax(Box::new(from_toml_error(
            &e, text, origin, true,
        ))));
    }
    let raw: RawTopology = toml::from_str(text)
        .map_err(|e| TopologyError::Schema(Box::new(from_toml_error(&e, text, origin, false))))?;
    let mut map = SourceMap::default();
    let topology = raw.into_model(&mut map);
    let issues = validate::check(&topology);
    if issues.is_empty() {
        return Ok(topology);
    }
    Err(TopologyError::Invalid(locate(issues, &map, text, origin)))
}

/// Places each issue at the span of its path (or of the nearest enclosing value that was
/// written, for a value that was left out), sorted by position.
fn locate(issues: Vec<Issue>, map: &SourceMap, text: &str, origin: &str) -> Vec<Diagnostic> {
    let mut located: Vec<Diagnostic> = issues
        .into_iter()
        .map(|issue| {
            let span = map.find(&issue.path);
            let related = issue.related.as_deref().and_then(|r| map.find(r));
            issue.located(origin, text, span, related)
        })
        .collect();
    // Stable: issues at one position keep the order the checks found them in.
    located.sort_by_key(|d| d.position.map(|p| p.offset));
    located
}

/// Model path → byte range of the value (or table) in the file.
#[derive(Default)]
pub(crate) struct SourceMap {
    spans: HashMap<String, Range<usize>>,
}

impl SourceMap {
    fn record<T>(&mut self, path: &str, value: &Spanned<T>) {
        self.spans.insert(path.to_string(), value.span());
    }

    /// The span of `path`, or of its closest recorded ancestor (`a.b[2].c` → `a.b[2]` →
    /// `a.b` → `a`).
    pub(crate) fn find(&self, path: &str) -> Option<Range<usize>> {
        let mut path = path;
        loop {
            if let Some(span) = self.spans.get(path) {
                return Some(span.clone());
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// Takes a spanned value out, recording its span under `path`.
fn take<T>(map: &mut SourceMap, path: &str, value: Spanned<T>) -> T {
    map.record(path, &value);
    value.into_inner()
}

/// Like [`take`] for an optional value.
fn take_opt<T>(map: &mut SourceMap, path: &str, value: Option<Spanned<T>>) -> Option<T> {
    value.map(|v| take(map, path, v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    name: Spanned<String>,
    description: Option<Spanned<String>>,
    seed: Option<Spanned<u64>>,
    #[serde(default)]
    segment: Vec<Spanned<RawSegment>>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
    #[serde(default)]
    router: Vec<Spanned<RawRouter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: Spanned<String>,
    subnet: Spanned<Ipv4Net>,
    subnet6: Option<Spanned<Ipv6Net>>,
    description: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    role: Option<Spanned<String>>,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    name: Spanned<String>,
    role: Option<Spanned<String>>,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    nat: Option<Spanned<RawNat>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    segment: Spanned<String>,
    address: Spanned<AddrText>,
    gateway: Option<Spanned<AddrText>>,
    address6: Option<Spanned<Addr6Text>>,
    gateway6: Option<Spanned<Addr6Text>>,
    mtu: Option<Spanned<u32>>,
    egress: Option<Spanned<RawImpairment>>,
    ingress: Option<Spanned<RawImpairment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImpairment {
    delay: Option<Spanned<DurationText>>,
    jitter: Option<Spanned<DurationText>>,
    loss: Option<Spanned<f64>>,
    loss_burst: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    reorder: Option<Spanned<f64>>,
    reorder_gap: Option<Spanned<DurationText>>,
    rate: Option<Spanned<RateText>>,
    queue_limit: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<Ipv4Net>,
    via: Spanned<AddrText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNat {
    outside: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<NatType>>,
    mapping: Option<Spanned<Mapping>>,
    filtering: Option<Spanned<Filtering>>,
    port_allocation: Option<Spanned<PortAllocation>>,
    port_parity: Option<Spanned<bool>>,
    external_addresses: Option<Spanned<Vec<Spanned<AddrText>>>>,
    pairing: Option<Spanned<bool>>,
    hairpinning: Option<Spanned<bool>>,
    udp_timeout: Option<Spanned<DurationText>>,
    tcp_established_timeout: Option<Spanned<DurationText>>,
    tcp_transitory_timeout: Option<Spanned<DurationText>>,
    refresh: Option<Spanned<Refresh>>,
    port_range: Option<Spanned<PortRange>>,
    icmp: Option<Spanned<IcmpPolicy>>,
    firewall: Option<Spanned<bool>>,
}

impl RawTopology {
    fn into_model(self, map: &mut SourceMap) -> Topology {
        let name = take(map, "name", self.name);
        let description = take_opt(map, "description", self.description).unwrap_or_default();
        let seed = take_opt(map, "seed", self.seed).unwrap_or(0);
        let segments = self
            .segment
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let path = format!("segment[{i}]");
                take(map, &path, s).into_model(map, &path)
            })
            .collect();
        let hosts = self
            .host
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let path = format!("host[{i}]");
                take(map, &path, h).into_model(map, &path)
            })
            .collect();
        let routers = self
            .router
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let path = format!("router[{i}]");
                take(map, &path, r).into_model(map, &path)
            })
            .collect();
        Topology {
            name,
            description,
            seed,
            segments,
            hosts,
            routers,
        }
    }
}

impl RawSegment {
    fn into_model(self, map: &mut SourceMap, path: &str) -> Segment {
        Segment {
            name: take(map, &format!("{path}.name"), self.name),
            subnet: take(map, &format!("{path}.subnet"), self.subnet),
            subnet6: take_opt(map, &format!("{path}.subnet6"), self.subnet6),
            description: take_opt(map, &format!("{path}.description"), self.description).unwrap_or_default(),
        }
    }
}

fn interfaces(raw: Vec<Spanned<RawInterface>>, map: &mut SourceMap, path: &str) -> Vec<Interface> {
    raw.into_iter()
        .enumerate()
        .map(|(j, i)| {
            let path = format!("{path}.interface[{j}]");
            take(map, &path, i).into_model(map, &path)
        })
        .collect()
}

impl RawHost {
    fn into_model(self, map: &mut SourceMap, path: &str) -> Host {
        Host {
            name: take(map, &format!("{path}.name"), self.name),
            role: take_opt(map, &format!("{path}.role"), self.role)
                .unwrap_or_else(|| DEFAULT_HOST_ROLE.to_string()),
            interfaces: interfaces(self.interface, map, path),
        }
    }
}

impl RawRouter {
    fn into_model(self, map: &mut SourceMap, path: &str) -> Router {
        let name = take(map, &format!("{path}.name"), self.name);
        let role = take_opt(map, &format!("{path}.role"), self.role)
            .unwrap_or_else(|| DEFAULT_ROUTER_ROLE.to_string());
        let interfaces = interfaces(self.interface, map, path);
        let routes = self
            .route
            .into_iter()
            .enumerate()
            .map(|(k, r)| {
                let path = format!("{path}.route[{k}]");
                let r = take(map, &path, r);
                Route {
                    prefix: take(map, &format!("{path}.prefix"), r.prefix),
                    via: take(map, &format!("{path}.via"), r.via).0,
                }
            })
            .collect();
        let nat = self.nat.map(|n| {
            let path = format!("{path}.nat");
            take(map, &path, n).into_model(map, &path)
        });
        Router {
            name,
            role,
            interfaces,
            routes,
            nat,
        }
    }
}

impl RawInterface {
    fn into_model(self, map: &mut SourceMap, path: &str) -> Interface {
        let impairment = |map: &mut SourceMap, key: &str, raw: Option<Spanned<RawImpairment>>| {
            let path = format!("{path}.{key}");
            take_opt(map, &path, raw)
                .map(|r| r.into_model(map, &path))
                .unwrap_or_default()
        };
        Interface {
            name: take(map, &format!("{path}.name"), self.name),
            segment: take(map, &format!("{path}.segment"), self.segment),
            address: take(map, &format!("{path}.address"), self.address).0,
            gateway: take_opt(map, &format!("{path}.gateway"), self.gateway).map(|a| a.0),
            address6: take_opt(map, &format!("{path}.address6"), self.address6).map(|a| a.0),
            gateway6: take_opt(map, &format!("{path}.gateway6"), self.gateway6).map(|a| a.0),
            mtu: take_opt(map, &format!("{path}.mtu"), self.mtu).unwrap_or(DEFAULT_MTU),
            egress: impairment(map, "egress", self.egress),
            ingress: impairment(map, "ingress", self.ingress),
        }
    }
}

impl RawImpairment {
    fn into_model(self, map: &mut SourceMap, path: &str) -> Impairment {
        let p = |key: &str| format!("{path}.{key}");
        let base = Impairment::default();
        Impairment {
            delay: take_opt(map, &p("delay"), self.delay).map_or(base.delay, |d| d.0),
            jitter: take_opt(map, &p("jitter"), self.jitter).map_or(base.jitter, |d| d.0),
            loss: take_opt(map, &p("loss"), self.loss).unwrap_or(base.loss),
            loss_burst: take_opt(map, &p("loss_burst"), self.loss_burst).unwrap_or(base.loss_burst),
            duplicate: take_opt(map, &p("duplicate"), self.duplicate).unwrap_or(base.duplicate),
            reorder: take_opt(map, &p("reorder"), self.reorder).unwrap_or(base.reorder),
            reorder_gap: take_opt(map, &p("reorder_gap"), self.reorder_gap).map(|d| d.0),
            rate_bps: take_opt(map, &p("rate"), self.rate).map(|r| r.0),
            queue_limit: take_opt(map, &p("queue_limit"), self.queue_limit).unwrap_or(DEFAULT_QUEUE_LIMIT),
        }
    }
}

impl RawNat {
    fn into_model(self, map: &mut SourceMap, path: &str) -> NatSpec {
        let p = |key: &str| format!("{path}.{key}");
        let external_addresses =
            take_opt(map, &p("external_addresses"), self.external_addresses).map(|list| {
                list.into_iter()
                    .enumerate()
                    .map(|(m, a)| take(map, &format!("{path}.external_addresses[{m}]"), a).0)
                    .collect::<Vec<Ipv4Addr>>()
            });
        let knobs = NatKnobs {
            mapping: take_opt(map, &p("mapping"), self.mapping),
            filtering: take_opt(map, &p("filtering"), self.filtering),
            port_allocation: take_opt(map, &p("port_allocation"), self.port_allocation),
            port_parity: take_opt(map, &p("port_parity"), self.port_parity),
            external_addresses,
            pairing: take_opt(map, &p("pairing"), self.pairing),
            hairpinning: take_opt(map, &p("hairpinning"), self.hairpinning),
            udp_timeout: take_opt(map, &p("udp_timeout"), self.udp_timeout).map(|d| d.0),
            tcp_established_timeout: take_opt(
                map,
                &p("tcp_established_timeout"),
                self.tcp_established_timeout,
            )
            .map(|d| d.0),
            tcp_transitory_timeout: take_opt(map, &p("tcp_transitory_timeout"), self.tcp_transitory_timeout)
                .map(|d| d.0),
            refresh: take_opt(map, &p("refresh"), self.refresh),
            port_range: take_opt(map, &p("port_range"), self.port_range),
            icmp: take_opt(map, &p("icmp"), self.icmp),
            firewall: take_opt(map, &p("firewall"), self.firewall),
        };
        NatSpec {
            outside: take(map, &p("outside"), self.outside),
            kind: take_opt(map, &p("type"), self.kind)
                .map(Into::into)
                .unwrap_or_default(),
            knobs,
        }
    }
}

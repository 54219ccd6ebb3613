//! Scenarios (`scenarios/*.toml`): a topology, matrix axes, timers, steps and expectations.
//!
//! A scenario expands into **cells**, one per combination of its axis values. Axes are
//! recognised by name: an axis named after a NAT router of the topology sets that NAT's
//! behaviour (`full-cone`, `symmetric`, `linux-masquerade`, ... with an optional
//! `+hairpin`); `peer` and `router` choose implementations (default: every adapter that has
//! the role); an axis named after a host chooses that host's implementation; `profile` is
//! the wire profile; `impairment` names an entry of `[impairments]` applied to every peer's
//! uplink. Steps run in order; `at = "+2s"` waits after the previous step, `at = "30s"`
//! waits until 30 s into the cell.

use super::toml_util;
use crate::topology::{parse_duration, Diagnostic, ErrorKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a ping waits for replies after its last echo unless the step says otherwise.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// NAT behaviours an axis may name.
pub const NAT_VALUES: &[&str] = &[
    "full-cone",
    "restricted-cone",
    "port-restricted-cone",
    "symmetric",
    "linux-masquerade",
    "linux-masquerade-random",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    topology: String,
    /// A feature the peer implementation must claim; cells of implementations that do not
    /// are expected failures.
    #[serde(default)]
    feature: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Whether the scenario's cells have golden traces (default true). A scenario whose
    /// exchange depends on timing (which pairs of a 50-peer mesh go direct by their second
    /// echo) says `golden = false` and leaves the verdicts to its checks.
    #[serde(default)]
    golden: Option<bool>,
    #[serde(default)]
    matrix: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    timers: RawTimers,
    #[serde(default)]
    impairments: BTreeMap<String, RawImpairment>,
    #[serde(default, rename = "step")]
    steps: Vec<RawStep>,
    #[serde(default)]
    expect: RawExpect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimers {
    /// A duration, or "off".
    keepalive: Option<String>,
    keepalive_ttl: Option<u8>,
    rs_initial: Option<String>,
    rs_max: Option<String>,
    reachable: Option<String>,
    holddown: Option<String>,
    probe_interval: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImpairment {
    delay: Option<String>,
    jitter: Option<String>,
    loss: Option<f64>,
    duplicate: Option<f64>,
    reorder: Option<f64>,
    rate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Option<String>,
    start: Option<OneOrMany>,
    stop: Option<OneOrMany>,
    restart: Option<OneOrMany>,
    wait: Option<String>,
    nodes: Option<OneOrMany>,
    from: Option<String>,
    to: Option<String>,
    timeout: Option<String>,
    ping: Option<RawPing>,
    mesh: Option<RawMesh>,
    sleep: Option<String>,
    nat: Option<RawNat>,
    link: Option<RawLink>,
    inject: Option<RawInject>,
    /// A name later steps' windows can be anchored to.
    id: Option<String>,
    /// The step a window (`at = "+a~b"`) counts from.
    anchor: Option<String>,
    /// `wait = "packet"`: the link ends to watch.
    on: Option<OneOrMany>,
    filter: Option<String>,
    count: Option<u32>,
    /// `wait = "packet"`: `"seen"` (default) or `"absent"`.
    expect: Option<String>,
    flow: Option<super::steps::flow::RawFlow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPing {
    from: String,
    to: String,
    #[serde(default = "default_count")]
    count: u32,
    interval: Option<String>,
    size: Option<u32>,
    /// How long to wait for replies after the last echo (default 2 s, like `ping -W 2`).
    timeout: Option<String>,
    #[serde(default)]
    expect: PingExpect,
}

fn default_count() -> u32 {
    3
}

/// `mesh = { nodes = "peer-*", count = 1 }`: every node pings every other one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    nodes: OneOrMany,
    #[serde(default = "default_mesh_count")]
    count: u32,
    interval: Option<String>,
    #[serde(default)]
    expect: PingExpect,
}

fn default_mesh_count() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNat {
    node: String,
    action: NatAction,
    #[serde(default)]
    addresses: Vec<std::net::Ipv4Addr>,
    udp_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    link: String,
    state: Option<LinkState>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(flatten)]
    impairment: RawImpairmentInline,
}

#[derive(Debug, Default, Deserialize)]
struct RawImpairmentInline {
    delay: Option<String>,
    jitter: Option<String>,
    loss: Option<f64>,
    duplicate: Option<f64>,
    reorder: Option<f64>,
    rate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInject {
    from: String,
    to: String,
    #[serde(default = "default_corpus")]
    corpus: String,
}

fn default_corpus() -> String {
    "negative".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    /// `"peer-a>peer-b" = "direct" | "via-router" | "table"`.
    #[serde(default)]
    path: BTreeMap<String, String>,
    /// Check ids (or prefixes such as `KA-`) that decide this scenario; others are shown
    /// but do not fail it. Empty: all.
    #[serde(default)]
    checks: Vec<String>,
    /// The peer's external mapping must never change during the cell.
    #[serde(default)]
    stable_mapping: Option<bool>,
    /// The peer's address must change (a rebinding happened and was recovered from).
    #[serde(default)]
    address_change: Option<bool>,
    /// Timing slack the checks allow this scenario's lab (default 100 ms): a large lab on a
    /// busy machine timestamps packets later than a small one.
    #[serde(default)]
    tolerance: Option<String>,
}

/// What a ping expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PingExpect {
    /// Every reply must come back (allowing for the configured loss, see runner).
    #[default]
    Success,
    /// At least one reply.
    Some,
    /// No reply may come back.
    Failure,
    /// Recorded only.
    Any,
}

/// A NAT event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatAction {
    Flush,
    Rebind,
    Down,
    Up,
    Timeout,
}

/// A link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    Up,
    Down,
}

/// When a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Right after the previous step.
    Next,
    /// This long after the previous step ended (`+2s`).
    After(Duration),
    /// This long after the cell started (`30s`).
    Since(Duration),
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Start(Vec<String>),
    Stop(Vec<String>),
    Restart(Vec<String>),
    /// Wait until every node has a global address on its tunnel interface.
    WaitAddress {
        nodes: Vec<String>,
        timeout: Duration,
    },
    /// Wait until traffic from `from` reaches `to` directly (not via the router); pings
    /// `from` → `to` meanwhile.
    WaitDirect {
        from: String,
        to: String,
        timeout: Duration,
    },
    /// Pings `from` → `to` and checks the path spec §7 expects for this cell's NATs:
    /// direct (waits up to `timeout` for it) or via the router (fails if it goes direct).
    WaitPath {
        from: String,
        to: String,
        timeout: Duration,
    },
    /// Wait until `node`'s address differs from the one it had at the previous
    /// `WaitAddress`/`WaitAddressChange` (a rebinding recovered from).
    WaitAddressChange {
        nodes: Vec<String>,
        timeout: Duration,
    },
    Ping {
        from: String,
        to: String,
        count: u32,
        interval: Duration,
        size: Option<u32>,
        /// How long replies are waited for after the last echo.
        timeout: Duration,
        expect: PingExpect,
    },
    /// Every node of `nodes` pings every other one (`count` echoes each, all sources at
    /// once); one verdict for the whole mesh, naming the pairs that missed `expect`.
    PingMesh {
        nodes: Vec<String>,
        count: u32,
        interval: Duration,
        expect: PingExpect,
    },
    Sleep(Duration),
    Nat {
        node: String,
        action: NatAction,
        addresses: Vec<std::net::Ipv4Addr>,
        udp_timeout: Option<Duration>,
    },
    Link {
        link: String,
        direction: String,
        state: Option<LinkState>,
        impairment: Option<crate::topology::Impairment>,
    },
    Inject {
        from: String,
        to: String,
        corpus: String,
    },
    /// Wait for packets matching a filter on some links (see `steps`).
    WaitPacket(super::steps::PacketWait),
    /// A verified UDP or TCP flow between two nodes (see `steps::flow`).
    Flow(super::steps::flow::FlowSpec),
}

/// A step and when it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: At,
    pub action: Action,
    /// 1-based position in the file, for messages.
    pub index: usize,
    /// The step's name, for anchors.
    pub id: Option<String>,
    /// For waits: the window the awaited event must fall in (`at = "+a~b"`).
    pub window: Option<super::steps::Window>,
}

/// Timer settings passed to implementations that claim `configurable_timers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// `None`: keepalives off.
    pub keepalive: Option<Duration>,
    pub keepalive_ttl: u8,
    pub rs_initial: Duration,
    pub rs_max: Duration,
    pub reachable: Duration,
    pub holddown: Duration,
    pub probe_interval: Duration,
}

impl Default for Timers {
    /// Compressed timers: a lab cell lasts seconds, not minutes.
    fn default() -> Self {
        Timers {
            keepalive: Some(Duration::from_secs(1)),
            keepalive_ttl: 3,
            rs_initial: Duration::from_millis(200),
            rs_max: Duration::from_secs(2),
            reachable: Duration::from_secs(5),
            holddown: Duration::from_secs(3),
            probe_interval: Duration::from_millis(100),
        }
    }
}

/// What the cell's checks expect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// `(from, to)` → `direct`, `via-router` or `table`.
    pub path: Vec<((String, String), String)>,
    pub checks: Vec<String>,
    pub stable_mapping: Option<bool>,
    pub address_change: Option<bool>,
    /// Timing slack for the checks; `None`: their default (100 ms).
    pub tolerance: Option<Duration>,
}

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub topology: PathBuf,
    pub feature: Option<String>,
    pub tags: Vec<String>,
    /// Whether golden traces apply to its cells.
    pub golden: bool,
    pub matrix: BTreeMap<String, Vec<String>>,
    pub timers: Timers,
    pub impairments: BTreeMap<String, crate::topology::Impairment>,
    pub steps: Vec<Step>,
    pub expect: Expect,
    pub origin: PathBuf,
}

/// One cell: the scenario with one value per axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub scenario: std::sync::Arc<Scenario>,
    pub params: BTreeMap<String, String>,
}

impl Cell {
    pub fn id(&self) -> super::model::CellId {
        super::model::CellId {
            scenario: self.scenario.name.clone(),
            params: self.params.clone(),
        }
    }
}

/// Parses a time such as `+2s`, `30s` (see [`At`]).
fn parse_at(s: &str) -> Result<At, String> {
    match s.strip_prefix('+') {
        Some(rest) => parse_duration(rest).map(At::After).map_err(|e| e.to_string()),
        None => parse_duration(s).map(At::Since).map_err(|e| e.to_string()),
    }
}

/// Parses a duration or a range `25s~35s` (the midpoint is used when a single value is needed).
pub fn parse_duration_range(s: &str) -> Result<(Duration, Duration), String> {
    match s.split_once('~') {
        Some((a, b)) => {
            let a = parse_duration(a.trim()).map_err(|e| e.to_string())?;
            let b = parse_duration(b.trim()).map_err(|e| e.to_string())?;
            if b < a {
                return Err(format!("range {s:?} ends before it starts"));
            }
            Ok((a, b))
        }
        None => parse_duration(s).map(|d| (d, d)).map_err(|e| e.to_string()),
    }
}

fn impairment_of(r: &RawImpairmentInline) -> Result<Option<crate::topology::Impairment>, String> {
    if r.delay.is_none()
        && r.jitter.is_none()
        && r.loss.is_none()
        && r.duplicate.is_none()
        && r.reorder.is_none()
        && r.rate.is_none()
    {
        return Ok(None);
    }
    let mut i = crate::topology::Impairment::default();
    if let Some(d) = &r.delay {
        i.delay = parse_duration(d).map_err(|e| e.to_string())?;
    }
    if let Some(d) = &r.jitter {
        i.jitter = parse_duration(d).map_err(|e| e.to_string())?;
    }
    for (name, v, slot) in [
        ("loss", r.loss, &mut i.loss),
        ("duplicate", r.duplicate, &mut i.duplicate),
        ("reorder", r.reorder, &mut i.reorder),
    ] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be a probability in 0..=1, not {v}"));
            }
            *slot = v;
        }
    }
    if let Some(rate) = &r.rate {
        i.rate_bps = Some(crate::topology::parse_rate(rate).map_err(|e| e.to_string())?);
    }
    Ok(Some(i))
}

impl Scenario {
    /// Reads a scenario; `topologies` is the directory topology names resolve in.
    pub fn from_file(path: &Path, topologies: &Path) -> Result<Scenario, Box<Diagnostic>> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Box::new(Diagnostic {
                origin: origin.clone(),
                position: None,
                path: None,
                kind: ErrorKind::BadValue,
                expected: "a readable scenario file".into(),
                found: e.to_string(),
            })
        })?;
        Scenario::from_str(&text, &origin, path, topologies)
    }

    /// Parses scenario text.
    pub fn from_str(
        text: &str,
        origin: &str,
        path: &Path,
        topologies: &Path,
    ) -> Result<Scenario, Box<Diagnostic>> {
        let raw: RawScenario = toml_util::parse(text, origin)?;
        // Semantic errors point at the first place the offending text appears.
        let at = |needle: &str| text.find(needle).map_or(0..0, |i| i..i + needle.len());
        let bad = |needle: &str, kind: ErrorKind, expected: String, found: String| {
            toml_util::error_at(text, origin, at(needle), kind, expected, found)
        };
        let dur = |s: &str| {
            parse_duration(s).map_err(|e| {
                bad(
                    s,
                    ErrorKind::BadValue,
                    "a duration such as \"2s\"".into(),
                    format!("{s:?} ({e})"),
                )
            })
        };

        let topology_path = if raw.topology.ends_with(".toml") || raw.topology.contains('/') {
            path.parent().unwrap_or(Path::new(".")).join(&raw.topology)
        } else {
            topologies.join(format!("{}.toml", raw.topology))
        };
        let topology = crate::topology::Topology::from_file(&topology_path).map_err(|e| {
            bad(
                &raw.topology,
                ErrorKind::DanglingReference,
                "the name of a valid topology in topologies/".into(),
                format!("{:?}: {e}", raw.topology),
            )
        })?;
        let node_names: Vec<String> = topology.nodes().map(|n| n.name().to_string()).collect();
        let is_node = |n: &str| node_names.iter().any(|x| x == n);
        let nat_nodes: Vec<&str> = topology
            .routers
            .iter()
            .filter(|r| r.nat.is_some())
            .map(|r| r.name.as_str())
            .collect();

        // Axes.
        for (axis, values) in &raw.matrix {
            if values.is_empty() {
                return Err(bad(
                    axis,
                    ErrorKind::BadValue,
                    "at least one value".into(),
                    "[]".into(),
                ));
            }
            if nat_nodes.contains(&axis.as_str()) {
                for v in values {
                    let base = v.strip_suffix("+hairpin").unwrap_or(v);
                    if !NAT_VALUES.contains(&base) {
                        return Err(bad(
                            v,
                            ErrorKind::BadValue,
                            format!("a NAT behaviour: {}", NAT_VALUES.join(", ")),
                            format!("{v:?}"),
                        ));
                    }
                }
            } else if axis == "profile" {
                for v in values {
                    if v != "current" && v != "v01" {
                        return Err(bad(
                            v,
                            ErrorKind::BadValue,
                            "a profile: current or v01".into(),
                            format!("{v:?}"),
                        ));
                    }
                }
            } else if axis == "impairment" {
                for v in values {
                    if v != "none" && !raw.impairments.contains_key(v) {
                        return Err(bad(
                            v,
                            ErrorKind::DanglingReference,
                            "\"none\" or a name from [impairments]".into(),
                            format!("{v:?}"),
                        ));
                    }
                }
            } else if !(axis == "peer" || axis == "router" || is_node(axis)) {
                return Err(bad(
                    axis,
                    ErrorKind::UnknownKey,
                    format!(
                        "an axis: a NAT node ({}), peer, router, a host name, profile or impairment",
                        nat_nodes.join(", ")
                    ),
                    format!("{axis:?}"),
                ));
            }
        }

        let mut impairments = BTreeMap::new();
        for (name, r) in &raw.impairments {
            let inline = RawImpairmentInline {
                delay: r.delay.clone(),
                jitter: r.jitter.clone(),
                loss: r.loss,
                duplicate: r.duplicate,
                reorder: r.reorder,
                rate: r.rate.clone(),
            };
            let imp = impairment_of(&inline)
                .map_err(|e| bad(name, ErrorKind::BadImpairment, "a valid impairment".into(), e))?;
            impairments.insert(name.clone(), imp.unwrap_or_default());
        }

        let t = &raw.timers;
        let d = Timers::default();
        let timers = Timers {
            keepalive: match t.keepalive.as_deref() {
                Some("off") => None,
                Some(k) => Some(dur(k)?),
                None => d.keepalive,
            },
            keepalive_ttl: t.keepalive_ttl.unwrap_or(d.keepalive_ttl),
            rs_initial: t
                .rs_initial
                .as_deref()
                .map(dur)
                .transpose()?
                .unwrap_or(d.rs_initial),
            rs_max: t.rs_max.as_deref().map(dur).transpose()?.unwrap_or(d.rs_max),
            reachable: t
                .reachable
                .as_deref()
                .map(dur)
                .transpose()?
                .unwrap_or(d.reachable),
            holddown: t.holddown.as_deref().map(dur).transpose()?.unwrap_or(d.holddown),
            probe_interval: t
                .probe_interval
                .as_deref()
                .map(dur)
                .transpose()?
                .unwrap_or(d.probe_interval),
        };

        let mut steps = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        let links: Vec<String> = topology.links().map(|l| l.to_string()).collect();
        for (i, s) in raw.steps.into_iter().enumerate() {
            let index = i + 1;
            let window = match &s.at {
                Some(a) => super::steps::parse_window(a, s.anchor.as_deref()).map_err(|e| {
                    bad(
                        a,
                        ErrorKind::BadValue,
                        "a window such as \"+450ms~550ms\" or \"25s~35s\"".into(),
                        e,
                    )
                })?,
                None => None,
            };
            let step_at = match &s.at {
                Some(_) if window.is_some() => At::Next,
                Some(a) => parse_at(a).map_err(|e| {
                    bad(
                        a,
                        ErrorKind::BadValue,
                        "a time such as \"+2s\" or \"30s\", or a window \"+1s~2s\"".into(),
                        e,
                    )
                })?,
                None => At::Next,
            };
            if let Some(anchor) = &s.anchor {
                if window.is_none() && s.wait.as_deref() != Some("packet") {
                    return Err(bad(
                        anchor,
                        ErrorKind::BadValue,
                        "anchor only with a window (at = \"+a~b\") or on wait = \"packet\"".into(),
                        format!("anchor = {anchor:?}"),
                    ));
                }
                if !ids.contains(anchor) && anchor != "cell" {
                    return Err(bad(
                        anchor,
                        ErrorKind::DanglingReference,
                        format!("the id of an earlier step ({})", ids.join(", ")),
                        format!("{anchor:?}"),
                    ));
                }
            }
            if let Some(id) = &s.id {
                if ids.contains(id) || id == "cell" {
                    return Err(bad(
                        id,
                        ErrorKind::DuplicateName,
                        "a step id no earlier step has".into(),
                        format!("{id:?} again"),
                    ));
                }
                ids.push(id.clone());
            }
            let check_node = |n: &str| -> Result<(), Box<Diagnostic>> {
                if is_node(n) || n == "router" && is_node("router") {
                    Ok(())
                } else {
                    Err(bad(
                        n,
                        ErrorKind::DanglingReference,
                        format!("a node of the topology ({})", node_names.join(", ")),
                        format!("{n:?}"),
                    ))
                }
            };
            let timeout = s
                .timeout
                .as_deref()
                .map(dur)
                .transpose()?
                .unwrap_or(Duration::from_secs(10));
            let mut actions = Vec::new();
            // A name ending in `*` stands for every node whose name starts with the rest
            // (`peer-*`), in topology order; it must match at least one node.
            let expand = |names: Vec<String>| -> Result<Vec<String>, Box<Diagnostic>> {
                let mut out: Vec<String> = Vec::new();
                for n in names {
                    match n.strip_suffix('*') {
                        Some(prefix) => {
                            let matched: Vec<&String> =
                                node_names.iter().filter(|x| x.starts_with(prefix)).collect();
                            if matched.is_empty() {
                                return Err(bad(
                                    &n,
                                    ErrorKind::DanglingReference,
                                    format!(
                                        "a pattern matching nodes of the topology ({})",
                                        node_names.join(", ")
                                    ),
                                    format!("{n:?}, which matches none"),
                                ));
                            }
                            out.extend(
                                matched
                                    .into_iter()
                                    .filter(|m| !out.contains(m))
                                    .cloned()
                                    .collect::<Vec<_>>(),
                            );
                        }
                        None => {
                            check_node(&n)?;
                            if !out.contains(&n) {
                                out.push(n);
                            }
                        }
                    }
                }
                Ok(out)
            };
            if let Some(n) = s.start {
                actions.push(Action::Start(expand(n.into_vec())?));
            }
            if let Some(n) = s.stop {
                actions.push(Action::Stop(expand(n.into_vec())?));
            }
            if let Some(n) = s.restart {
                actions.push(Action::Restart(expand(n.into_vec())?));
            }
            if let Some(w) = &s.wait {
                match w.as_str() {
                    "address" | "address-change" => {
                        let nodes = s.nodes.clone().map(OneOrMany::into_vec).unwrap_or_default();
                        if nodes.is_empty() {
                            return Err(bad(
                                w,
                                ErrorKind::MissingKey,
                                "nodes = [...] with the wait".into(),
                                "none".into(),
                            ));
                        }
                        let nodes = expand(nodes)?;
                        actions.push(if w == "address" {
                            Action::WaitAddress { nodes, timeout }
                        } else {
                            Action::WaitAddressChange { nodes, timeout }
                        });
                    }
                    "direct" | "path" => {
                        let (Some(from), Some(to)) = (s.from.clone(), s.to.clone()) else {
                            return Err(bad(
                                w,
                                ErrorKind::MissingKey,
                                format!("from and to with wait = {w:?}"),
                                "none".into(),
                            ));
                        };
                        check_node(&from)?;
                        check_node(&to)?;
                        actions.push(if w == "direct" {
                            Action::WaitDirect { from, to, timeout }
                        } else {
                            Action::WaitPath { from, to, timeout }
                        });
                    }
                    "packet" => {
                        let since = match (&window, s.anchor.as_deref()) {
                            (None, Some("cell")) => Some(super::steps::Anchor::Cell),
                            (None, Some(id)) => Some(super::steps::Anchor::Step(id.to_string())),
                            _ => None,
                        };
                        actions.push(Action::WaitPacket(super::steps::parse_packet_wait(
                            &super::steps::PacketFields {
                                on: s.on.clone().map(OneOrMany::into_vec),
                                filter: s.filter.clone(),
                                count: s.count,
                                expect: s.expect.clone(),
                                timeout,
                                since,
                            },
                            &links,
                            &|n: &str| is_node(n),
                            &|needle, offset, kind, expected, found| {
                                let span = text.find(needle).map_or(0..0, |i| i + offset..i + offset + 1);
                                toml_util::error_at(text, origin, span, kind, expected, found)
                            },
                        )?));
                    }
                    other => {
                        return Err(bad(
                            other,
                            ErrorKind::BadValue,
                            "\"address\", \"address-change\", \"direct\", \"path\" or \"packet\"".into(),
                            format!("{other:?}"),
                        ));
                    }
                }
            }
            if let Some(p) = s.ping {
                check_node(&p.from)?;
                if !p.to.contains(':') {
                    check_node(&p.to)?;
                }
                let interval = p
                    .interval
                    .as_deref()
                    .map(dur)
                    .transpose()?
                    .unwrap_or(Duration::from_millis(200));
                let timeout = p
                    .timeout
                    .as_deref()
                    .map(dur)
                    .transpose()?
                    .unwrap_or(DEFAULT_PING_TIMEOUT);
                actions.push(Action::Ping {
                    from: p.from,
                    to: p.to,
                    count: p.count.max(1),
                    interval,
                    size: p.size,
                    timeout,
                    expect: p.expect,
                });
            }
            if let Some(m) = s.mesh {
                let nodes = expand(m.nodes.into_vec())?;
                if nodes.len() < 2 {
                    return Err(bad(
                        "mesh",
                        ErrorKind::BadValue,
                        "at least two nodes in a mesh".into(),
                        format!("{nodes:?}"),
                    ));
                }
                let interval = m
                    .interval
                    .as_deref()
                    .map(dur)
                    .transpose()?
                    .unwrap_or(Duration::from_millis(200));
                actions.push(Action::PingMesh {
                    nodes,
                    count: m.count.max(1),
                    interval,
                    expect: m.expect,
                });
            }
            if let Some(sl) = &s.sleep {
                actions.push(Action::Sleep(dur(sl)?));
            }
            if let Some(n) = s.nat {
                if !nat_nodes.contains(&n.node.as_str()) {
                    return Err(bad(
                        &n.node,
                        ErrorKind::DanglingReference,
                        format!("a NAT node ({})", nat_nodes.join(", ")),
                        format!("{:?}", n.node),
                    ));
                }
                let udp_timeout = n.udp_timeout.as_deref().map(dur).transpose()?;
                actions.push(Action::Nat {
                    node: n.node,
                    action: n.action,
                    addresses: n.addresses,
                    udp_timeout,
                });
            }
            if let Some(l) = s.link {
                let (node, _) = l.link.split_once('/').ok_or_else(|| {
                    bad(
                        &l.link,
                        ErrorKind::BadValue,
                        "a link named node/interface".into(),
                        format!("{:?}", l.link),
                    )
                })?;
                check_node(node)?;
                let impairment = impairment_of(&l.impairment)
                    .map_err(|e| bad(&l.link, ErrorKind::BadImpairment, "a valid impairment".into(), e))?;
                let direction = l.direction.unwrap_or_else(|| "both".into());
                if !["both", "egress", "ingress"].contains(&direction.as_str()) {
                    return Err(bad(
                        &direction,
                        ErrorKind::BadValue,
                        "both, egress or ingress".into(),
                        format!("{direction:?}"),
                    ));
                }
                actions.push(Action::Link {
                    link: l.link,
                    direction,
                    state: l.state,
                    impairment,
                });
            }
            if let Some(inj) = s.inject {
                check_node(&inj.from)?;
                check_node(&inj.to)?;
                actions.push(Action::Inject {
                    from: inj.from,
                    to: inj.to,
                    corpus: inj.corpus,
                });
            }
            if s.wait.as_deref() != Some("packet") {
                for (key, given) in [
                    ("on", s.on.is_some()),
                    ("filter", s.filter.is_some()),
                    ("count", s.count.is_some()),
                    ("expect", s.expect.is_some()),
                ] {
                    if given {
                        return Err(Box::new(Diagnostic {
                            origin: origin.to_string(),
                            position: None,
                            path: Some(format!("step[{index}].{key}")),
                            kind: ErrorKind::UnknownKey,
                            expected: format!("{key} only with wait = \"packet\""),
                            found: key.into(),
                        }));
                    }
                }
            }
            if let Some(f) = s.flow {
                let spec =
                    super::steps::flow::FlowSpec::from_raw(f).map_err(|(needle, expected, found)| {
                        bad(&needle, ErrorKind::BadValue, expected, found)
                    })?;
                check_node(&spec.from)?;
                check_node(&spec.to)?;
                actions.push(Action::Flow(spec));
            }
            if window.is_some()
                && !matches!(
                    actions.first(),
                    Some(
                        Action::WaitPacket(_) | Action::WaitAddress { .. } | Action::WaitAddressChange { .. }
                    )
                )
            {
                let a = s.at.as_deref().unwrap_or_default();
                return Err(bad(
                    a,
                    ErrorKind::BadValue,
                    "a window (a~b) only on wait = \"packet\", \"address\" or \"address-change\"; other steps take a time such as \"+2s\"".into(),
                    format!("{a:?}"),
                ));
            }
            match actions.len() {
                1 => steps.push(Step {
                    at: step_at,
                    action: actions.remove(0),
                    index,
                    id: s.id.clone(),
                    window: window.clone(),
                }),
                0 => return Err(Box::new(Diagnostic {
                    origin: origin.to_string(),
                    position: None,
                    path: Some(format!("step[{index}]")),
                    kind: ErrorKind::MissingKey,
                    expected:
                        "one action: start, stop, restart, wait, ping, mesh, sleep, nat, link, inject or flow"
                            .into(),
                    found: "none".into(),
                })),
                _ => {
                    return Err(Box::new(Diagnostic {
                        origin: origin.to_string(),
                        position: None,
                        path: Some(format!("step[{index}]")),
                        kind: ErrorKind::BadValue,
                        expected: "exactly one action per step".into(),
                        found: format!("{} actions", actions.len()),
                    }))
                }
            }
        }

        let mut paths = Vec::new();
        for (k, v) in &raw.expect.path {
            let (a, b) = k.split_once('>').ok_or_else(|| {
                bad(
                    k,
                    ErrorKind::BadValue,
                    "a pair written \"peer-a>peer-b\"".into(),
                    format!("{k:?}"),
                )
            })?;
            for n in [a.trim(), b.trim()] {
                if !is_node(n) {
                    return Err(bad(
                        n,
                        ErrorKind::DanglingReference,
                        format!("a node of the topology ({})", node_names.join(", ")),
                        format!("{n:?}"),
                    ));
                }
            }
            if !["direct", "via-router", "table"].contains(&v.as_str()) {
                return Err(bad(
                    v,
                    ErrorKind::BadValue,
                    "direct, via-router or table".into(),
                    format!("{v:?}"),
                ));
            }
            paths.push(((a.trim().to_string(), b.trim().to_string()), v.clone()));
        }

        let tolerance = raw.expect.tolerance.as_deref().map(dur).transpose()?;
        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            topology: topology_path,
            feature: raw.feature,
            tags: raw.tags,
            golden: raw.golden.unwrap_or(true),
            matrix: raw.matrix,
            timers,
            impairments,
            steps,
            expect: Expect {
                path: paths,
                checks: raw.expect.checks,
                stable_mapping: raw.expect.stable_mapping,
                address_change: raw.expect.address_change,
                tolerance,
            },
            origin: path.to_path_buf(),
        })
    }

    /// Every scenario in a directory (sorted by file name).
    pub fn load_dir(dir: &Path, topologies: &Path) -> Result<Vec<Scenario>, Vec<Box<Diagnostic>>> {
        toml_util::load_dir(dir, |f| Scenario::from_file(f, topologies))
    }
}

/// The product of the axes, in a stable order. `defaults` fills axes the scenario does not
/// name (implementations, profile).
pub fn expand(scenario: &std::sync::Arc<Scenario>, defaults: &BTreeMap<String, Vec<String>>) -> Vec<Cell> {
    let mut axes: BTreeMap<String, Vec<String>> = defaults.clone();
    for (k, v) in &scenario.matrix {
        axes.insert(k.clone(), v.clone());
    }
    let mut cells = vec![BTreeMap::new()];
    for (axis, values) in &axes {
        let mut next = Vec::new();
        for c in &cells {
            for v in values {
                let mut c: BTreeMap<String, String> = c.clone();
                c.insert(axis.clone(), v.clone());
                next.push(c);
            }
        }
        cells = next;
    }
    cells
        .into_iter()
        .map(|params| Cell {
            scenario: scenario.clone(),
            params,
        })
        .collect()
}

/// The bypass outcome spec §7 expects for two peers behind these NAT behaviours.
pub fn expected_path(nat_a: Option<&str>, nat_b: Option<&str>, same_nat: bool) -> &'static str {
    let class = |n: Option<&str>| match n.map(|s| s.strip_suffix("+hairpin").unwrap_or(s)) {
        None | Some("full-cone") => 0,
        Some("restricted-cone") | Some("port-restricted-cone") | Some("linux-masquerade") => 1,
        _ => 2, // symmetric, linux-masquerade-random
    };
    if same_nat {
        let hairpin = nat_a.is_some_and(|n| n.ends_with("+hairpin"));
        return if hairpin && class(nat_a) < 2 {
            "direct"
        } else {
            "via-router"
        };
    }
    if class(nat_a) == 2 || class(nat_b) == 2 {
        "via-router"
    } else {
        "direct"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("topologies")
    }

    fn parse(text: &str) -> Result<Scenario, Box<Diagnostic>> {
        Scenario::from_str(text, "s.toml", Path::new("scenarios/s.toml"), &topo_dir())
    }

    const GOOD: &str = r#"
name = "bypass"
topology = "two-nats"
feature = "bypass"
[matrix]
nat-a = ["full-cone", "symmetric"]
nat-b = ["port-restricted-cone+hairpin"]
[[step]]
start = "router"
[[step]]
start = ["peer-a", "peer-b"]
[[step]]
wait = "address"
nodes = ["peer-a", "peer-b"]
timeout = "10s"
[[step]]
at = "+1s"
ping = { from = "peer-a", to = "peer-b", count = 5 }
[[step]]
nat = { node = "nat-a", action = "flush" }
[expect]
path = { "peer-a>peer-b" = "table" }
"#;

    #[test]
    fn parses_steps_axes_and_expectations() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.steps[3].at, At::After(Duration::from_secs(1)));
        assert!(matches!(&s.steps[1].action, Action::Start(n) if n.len() == 2));
        assert_eq!(s.expect.path[0].1, "table");
        let arc = std::sync::Arc::new(s);
        let mut defaults = BTreeMap::new();
        defaults.insert("peer".to_string(), vec!["sixbed4".to_string()]);
        let cells = expand(&arc, &defaults);
        assert_eq!(cells.len(), 2);
        assert_eq!(
            cells[0].id().to_string(),
            "bypass[nat-a=full-cone,nat-b=port-restricted-cone+hairpin,peer=sixbed4]"
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad_axis = GOOD.replace("nat-b = [", "nat-c = [");
        let e = parse(&bad_axis).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:7:1:"), "{e}");
        let bad_node = GOOD.replace("start = \"router\"", "start = \"routr\"");
        let e = parse(&bad_node).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:9:10:") && e.contains("routr"), "{e}");
        let bad_nat = GOOD.replace("\"symmetric\"", "\"symetric\"");
        let e = parse(&bad_nat).unwrap_err().to_string();
        assert!(e.contains("symetric") && e.starts_with("s.toml:6:"), "{e}");
        let unknown = GOOD.replace("feature = \"bypass\"", "featur = \"bypass\"");
        assert!(parse(&unknown)
            .unwrap_err()
            .to_string()
            .starts_with("s.toml:4:1:"));
        let two = GOOD.replace("start = \"router\"", "start = \"router\"\nsleep = \"1s\"");
        assert!(parse(&two)
            .unwrap_err()
            .to_string()
            .contains("exactly one action"));
    }

    #[test]
    fn spec_table_seven() {
        assert_eq!(
            expected_path(Some("full-cone"), Some("symmetric"), false),
            "via-router"
        );
        assert_eq!(
            expected_path(Some("port-restricted-cone"), Some("restricted-cone"), false),
            "direct"
        );
        assert_eq!(expected_path(None, Some("port-restricted-cone"), false), "direct");
        assert_eq!(
            expected_path(Some("symmetric"), Some("symmetric"), false),
            "via-router"
        );
        assert_eq!(
            expected_path(Some("port-restricted-cone"), None, true),
            "via-router"
        );
        assert_eq!(
            expected_path(Some("port-restricted-cone+hairpin"), None, true),
            "direct"
        );
    }

    const STEPS: &str = r#"
name = "steps"
topology = "two-nats"
[[step]]
start = "router"
[[step]]
id = "first"
wait = "packet"
on = "nat-a/wan"
filter = "ka from peer-a and ttl <= 3"
[[step]]
at = "+450ms~550ms"
anchor = "first"
wait = "packet"
on = ["nat-a/wan", "router/eth0"]
filter = "ra to peer-a"
count = 2
[[step]]
at = "20s~30s"
wait = "packet"
on = "nat-b/wan"
filter = "data via-router"
expect = "absent"
[[step]]
flow = { proto = "udp", from = "peer-a", to = "peer-b", packets = 100, max_loss = 0.1 }
"#;

    #[test]
    fn packet_waits_windows_and_flows_parse() {
        let s = parse(STEPS).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.steps[1].id.as_deref(), Some("first"));
        let Action::WaitPacket(w) = &s.steps[2].action else {
            panic!("{:?}", s.steps[2].action)
        };
        assert_eq!((w.count, w.on.len()), (2, 2));
        let win = s.steps[2].window.clone().unwrap();
        assert_eq!(
            win.anchor,
            crate::conformance::steps::Anchor::Step("first".into())
        );
        assert_eq!(
            (win.lo, win.hi),
            (Duration::from_millis(450), Duration::from_millis(550))
        );
        assert_eq!(
            s.steps[3].window.as_ref().map(|w| w.anchor.clone()),
            Some(crate::conformance::steps::Anchor::Cell)
        );
        assert!(
            matches!(&s.steps[3].action, Action::WaitPacket(w) if w.expect == crate::conformance::steps::Presence::Absent)
        );
        assert!(matches!(&s.steps[4].action, Action::Flow(f) if f.packets == Some(100)));
    }

    #[test]
    fn new_step_errors_name_line_and_column() {
        let cases = [
            // A filter error points at the offending word inside the string.
            (
                STEPS.replace("ka from peer-a", "ka from peer-x"),
                "s.toml:10:19:",
                "peer-x",
            ),
            (
                STEPS.replace("ra to peer-a", "ra tu peer-a"),
                "s.toml:16:14:",
                "tu",
            ),
            (
                STEPS.replace(
                    "on = \"nat-a/wan\"\nfilter = \"ka",
                    "on = \"nat-z/wan\"\nfilter = \"ka",
                ),
                "s.toml:9:7:",
                "nat-z/wan",
            ),
            (
                STEPS.replace("anchor = \"first\"", "anchor = \"frist\""),
                "s.toml:13:11:",
                "frist",
            ),
            (
                STEPS.replace("\"20s~30s\"", "\"30s~20s\""),
                "s.toml:19:7:",
                "ends before it starts",
            ),
            (
                STEPS.replace("expect = \"absent\"", "expect = \"gone\""),
                "s.toml:23:11:",
                "gone",
            ),
            (
                STEPS.replace("proto = \"udp\"", "proto = \"sctp\""),
                "s.toml:25:19:",
                "sctp",
            ),
            (
                STEPS.replace("to = \"peer-b\"", "to = \"peer-q\""),
                "s.toml:25:",
                "peer-q",
            ),
        ];
        for (text, at, what) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with(at) && e.contains(what), "{at} {what}: {e}");
        }
        // A window only on waits; an anchor only with a window; ids unique.
        let e =
            parse(&STEPS.replace("start = \"router\"", "at = \"+1s~2s\"\nstart = \"router\"")).unwrap_err();
        assert!(e.to_string().contains("only on wait"), "{e}");
        let e = parse(&STEPS.replace("flow = {", "anchor = \"first\"\nflow = {")).unwrap_err();
        assert!(e.to_string().contains("anchor only with a window"), "{e}");
        // On a packet wait an anchor alone says where counting starts.
        let s = parse(&STEPS.replace("at = \"+450ms~550ms\"\n", "")).unwrap();
        assert!(
            matches!(&s.steps[2].action, Action::WaitPacket(w) if w.since == Some(crate::conformance::steps::Anchor::Step("first".into())))
        );
        let e =
            parse(&STEPS.replace("start = \"router\"", "start = \"router\"\nid = \"first\"")).unwrap_err();
        assert!(e.to_string().contains("again"), "{e}");
        let e =
            parse(&STEPS.replace("start = \"router\"", "start = \"router\"\nfilter = \"ka\"")).unwrap_err();
        assert!(e.to_string().contains("only with wait"), "{e}");
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_duration_range("25s~35s").unwrap(),
            (Duration::from_secs(25), Duration::from_secs(35))
        );
        assert!(parse_duration_range("35s~25s").is_err());
    }

    #[test]
    fn node_patterns_mesh_and_ping_timeout() {
        let text = GOOD
            .replace("start = [\"peer-a\", \"peer-b\"]", "start = \"peer-*\"")
            .replace(
                "ping = { from = \"peer-a\", to = \"peer-b\", count = 5 }",
                "ping = { from = \"peer-a\", to = \"peer-b\", count = 5, timeout = \"300ms\" }",
            )
            .replace(
                "[[step]]\nnat = ",
                "[[step]]\nmesh = { nodes = [\"peer-*\", \"router\"], count = 2 }\n[[step]]\nnat = ",
            );
        let s = parse(&text).unwrap();
        assert!(
            matches!(&s.steps[1].action, Action::Start(n) if n == &["peer-a", "peer-b"]),
            "{:?}",
            s.steps[1].action
        );
        assert!(matches!(
            &s.steps[3].action,
            Action::Ping { timeout, .. } if *timeout == Duration::from_millis(300)
        ));
        match &s.steps[4].action {
            Action::PingMesh { nodes, count, .. } => {
                assert_eq!(nodes, &["peer-a", "peer-b", "router"]);
                assert_eq!(*count, 2);
            }
            other => panic!("expected a mesh, got {other:?}"),
        }
        // The default reply wait is ping's own.
        assert!(matches!(
            &parse(GOOD).unwrap().steps[3].action,
            Action::Ping { timeout, .. } if *timeout == DEFAULT_PING_TIMEOUT
        ));

        let none = text.replace("start = \"peer-*\"", "start = \"host-*\"");
        let e = parse(&none).unwrap_err().to_string();
        assert!(
            e.starts_with("s.toml:11:10:") && e.contains("matches none"),
            "{e}"
        );
        let lonely = text.replace("nodes = [\"peer-*\", \"router\"]", "nodes = \"router\"");
        let e = parse(&lonely).unwrap_err().to_string();
        assert!(e.contains("at least two nodes in a mesh"), "{e}");
    }
}

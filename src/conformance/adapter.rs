//! Implementation adapters (`harness/impls/*.toml`): how bedlab starts a 6bed4 peer or
//! router it did not write, what that implementation needs from the lab, and what it
//! claims to support.
//!
//! Readiness and results are observed from outside (an address on the node's interface,
//! packets in the capture), so an implementation with no machine-readable output works
//! unchanged; one that prints JSON events gets richer logs. See `harness/impls/README.md`.

use super::toml_util;
use crate::topology::{Diagnostic, ErrorKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Placeholders an argument template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "binary",
    "node",
    "router_ip",
    "router_port",
    "profile",
    "prefix",
    "ifname",
    "lanip",
    "keepalive",
    "keepalive_ttl",
    "keepalive_s",
    "keepalive_spec",
    "rs_initial",
    "rs_max",
    "reachable",
    "holddown",
    "probe_interval",
    "bypass_flag",
    "native_prefix",
    "route_flag",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdapter {
    name: String,
    #[serde(default)]
    description: String,
    binary: Vec<String>,
    #[serde(default = "default_profiles")]
    profiles: Vec<String>,
    #[serde(default)]
    features: Features,
    #[serde(default)]
    requires: Requires,
    router: Option<RawRole>,
    peer: Option<RawRole>,
}

fn default_profiles() -> Vec<String> {
    vec!["current".into()]
}

/// Features an implementation claims. Cells that need an unclaimed feature are expected
/// failures (XFAIL), not failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Finds direct paths between peers.
    #[serde(default)]
    pub bypass: bool,
    /// Moves to a new address after a NAT rebinding (unsolicited RA).
    #[serde(default)]
    pub rebinding_recovery: bool,
    /// Keepalive period, RS backoff and bypass timers can be set (so labs can compress them).
    #[serde(default)]
    pub configurable_timers: bool,
    /// Sends ICMPv6 Packet Too Big instead of truncating large packets.
    #[serde(default)]
    pub packet_too_big: bool,
}

impl Features {
    /// Whether the named feature is claimed (unknown names are not).
    pub fn claims(&self, feature: &str) -> bool {
        match feature {
            "bypass" => self.bypass,
            "rebinding_recovery" => self.rebinding_recovery,
            "configurable_timers" => self.configurable_timers,
            "packet_too_big" => self.packet_too_big,
            _ => false,
        }
    }
}

/// What the implementation needs from the lab (real implementations compile some in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// The router must have this IPv4 address (the C reference sends data to 145.136.0.1).
    pub router_address: Option<Ipv4Addr>,
    /// The router must listen on this port.
    pub router_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    start: Vec<String>,
    #[serde(default)]
    after_start: Vec<Vec<String>>,
    #[serde(default)]
    ready: RawReady,
    #[serde(default)]
    events: EventsFormat,
    #[serde(default = "default_ifname")]
    ifname: String,
}

fn default_ifname() -> String {
    "6bed4".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    /// Wait for a global IPv6 address on the role's interface (the default).
    #[serde(default)]
    address: Option<bool>,
    /// Or wait a fixed time.
    #[serde(default)]
    delay: Option<String>,
    /// How long to wait at most.
    #[serde(default)]
    timeout: Option<String>,
}

/// What the process prints on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsFormat {
    /// Nothing machine-readable.
    #[default]
    None,
    /// One JSON object per line, `sixbed4 --events json` style.
    Json,
}

/// How readiness is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A global IPv6 address appears on the interface.
    Address,
    /// Just wait this long.
    Delay(Duration),
}

/// How to run one role (peer or router).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub start: Vec<String>,
    pub after_start: Vec<Vec<String>>,
    pub ready: Readiness,
    pub ready_timeout: Duration,
    pub events: EventsFormat,
    pub ifname: String,
}

/// An implementation under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    pub name: String,
    pub description: String,
    /// The program, resolved (first candidate that exists).
    pub binary: Option<PathBuf>,
    /// Candidates as written, for error messages.
    pub binary_candidates: Vec<String>,
    pub profiles: Vec<String>,
    pub features: Features,
    pub requires: Requires,
    pub router: Option<Role>,
    pub peer: Option<Role>,
    pub origin: PathBuf,
}

/// Values for the placeholders of one process.
pub type Vars = BTreeMap<&'static str, String>;

/// Why an argument template could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpandError(pub String);

/// Expands `{placeholder}`s; an argument that expands to the empty string is dropped (so
/// `{bypass_flag}` can stand for "nothing"). `{{` and `}}` are literal braces.
pub fn expand(template: &[String], vars: &Vars) -> Result<Vec<String>, ExpandError> {
    let mut out = Vec::new();
    for arg in template {
        let mut s = String::new();
        let mut rest = arg.as_str();
        while let Some(i) = rest.find(['{', '}']) {
            s.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(r) = tail.strip_prefix("{{") {
                s.push('{');
                rest = r;
            } else if let Some(r) = tail.strip_prefix("}}") {
                s.push('}');
                rest = r;
            } else if let Some(r) = tail.strip_prefix('{') {
                let end = r
                    .find('}')
                    .ok_or_else(|| ExpandError(format!("unclosed {{ in {arg:?}")))?;
                let name = &r[..end];
                let v = vars
                    .get(name)
                    .ok_or_else(|| ExpandError(format!("no value for {{{name}}} in {arg:?}")))?;
                s.push_str(v);
                rest = &r[end + 1..];
            } else {
                return Err(ExpandError(format!("stray }} in {arg:?}")));
            }
        }
        s.push_str(rest);
        if !s.is_empty() {
            out.push(s);
        }
    }
    Ok(out)
}

/// Placeholder names used in a template (for validation at load time).
fn placeholders_in(arg: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = arg;
    while let Some(i) = rest.find('{') {
        let r = &rest[i + 1..];
        if let Some(stripped) = r.strip_prefix('{') {
            rest = stripped;
            continue;
        }
        match r.find('}') {
            Some(end) => {
                names.push(&r[..end]);
                rest = &r[end + 1..];
            }
            None => break,
        }
    }
    names
}

impl Adapter {
    /// Reads an adapter file. `root` is where relative binary paths are resolved (the
    /// repository).
    pub fn from_file(path: &Path, root: &Path) -> Result<Adapter, Box<Diagnostic>> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Box::new(Diagnostic {
                origin: origin.clone(),
                position: None,
                path: None,
                kind: ErrorKind::BadValue,
                expected: "a readable adapter file".into(),
                found: e.to_string(),
            })
        })?;
        Adapter::from_str(&text, &origin, path, root)
    }

    /// Parses adapter text.
    pub fn from_str(text: &str, origin: &str, path: &Path, root: &Path) -> Result<Adapter, Box<Diagnostic>> {
        let raw: RawAdapter = toml_util::parse(text, origin)?;
        let locate = |needle: &str| text.find(needle).map_or(0..0, |i| i..i + needle.len());
        let bad = |needle: &str, expected: String, found: String| {
            toml_util::error_at(text, origin, locate(needle), ErrorKind::BadValue, expected, found)
        };
        for p in &raw.profiles {
            if p != "current" && p != "v01" {
                return Err(bad(
                    p,
                    "a profile: \"current\" or \"v01\"".into(),
                    format!("{p:?}"),
                ));
            }
        }
        let role = |r: Option<RawRole>| -> Result<Option<Role>, Box<Diagnostic>> {
            let Some(r) = r else { return Ok(None) };
            if r.start.is_empty() {
                return Err(bad("start", "a non-empty start command".into(), "[]".into()));
            }
            for arg in r.start.iter().chain(r.after_start.iter().flatten()) {
                for name in placeholders_in(arg) {
                    if !PLACEHOLDERS.contains(&name) {
                        return Err(bad(
                            &format!("{{{name}}}"),
                            format!("one of the placeholders {}", PLACEHOLDERS.join(", ")),
                            format!("{{{name}}}"),
                        ));
                    }
                }
            }
            let dur = |s: &Option<String>, default: Duration| -> Result<Duration, Box<Diagnostic>> {
                match s {
                    None => Ok(default),
                    Some(s) => crate::topology::parse_duration(s).map_err(|_| {
                        bad(
                            s,
                            "a duration such as \"500ms\" or \"10s\"".into(),
                            format!("{s:?}"),
                        )
                    }),
                }
            };
            let ready = match (&r.ready.delay, r.ready.address) {
                (Some(d), _) => Readiness::Delay(dur(&Some(d.clone()), Duration::ZERO)?),
                _ => Readiness::Address,
            };
            Ok(Some(Role {
                start: r.start,
                after_start: r.after_start,
                ready,
                ready_timeout: dur(&r.ready.timeout, Duration::from_secs(20))?,
                events: r.events,
                ifname: r.ifname,
            }))
        };
        let binary = choose_binary(&raw.binary, root);
        Ok(Adapter {
            name: raw.name,
            description: raw.description,
            binary,
            binary_candidates: raw.binary,
            profiles: raw.profiles,
            features: raw.features,
            requires: raw.requires,
            router: role(raw.router)?,
            peer: role(raw.peer)?,
            origin: path.to_path_buf(),
        })
    }

    /// Every adapter in a directory (`*.toml`, sorted by name).
    pub fn load_dir(dir: &Path, root: &Path) -> Result<Vec<Adapter>, Vec<Box<Diagnostic>>> {
        toml_util::load_dir(dir, |f| Adapter::from_file(f, root))
    }

    /// Whether this implementation speaks `profile`.
    pub fn supports_profile(&self, profile: &str) -> bool {
        self.profiles.iter().any(|p| p == profile)
    }
}

/// The first candidate that exists; but where a later candidate is the same program built
/// elsewhere (same file name: `target/release/x` and `target/debug/x`) and is newer, that
/// one, so a stale build left beside a fresh one is never the one tested.
fn choose_binary(candidates: &[String], root: &Path) -> Option<PathBuf> {
    let found: Vec<PathBuf> = candidates
        .iter()
        .filter_map(|c| resolve_binary(c, root))
        .collect();
    let first = found.first()?.clone();
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest = found
        .iter()
        .filter(|p| p.file_name() == first.file_name())
        .filter_map(|p| Some((mtime(p)?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone());
    Some(newest.unwrap_or(first))
}

/// A binary candidate: a path (relative to `root` or absolute) that exists, or a bare name
/// found on PATH.
fn resolve_binary(candidate: &str, root: &Path) -> Option<PathBuf> {
    if candidate.contains('/') {
        let p = if Path::new(candidate).is_absolute() {
            PathBuf::from(candidate)
        } else {
            root.join(candidate)
        };
        return p.is_file().then_some(p);
    }
    crate::preflight::which(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert("binary", "/bin/x".into());
        v.insert("router_ip", "198.51.100.1".into());
        v.insert("bypass_flag", String::new());
        v
    }

    #[test]
    fn expansion_fills_drops_empty_and_refuses_unknown() {
        let t: Vec<String> = [
            "{binary}",
            "--router",
            "{router_ip}:25790",
            "{bypass_flag}",
            "{{literal}}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            expand(&t, &vars()).unwrap(),
            vec!["/bin/x", "--router", "198.51.100.1:25790", "{literal}"]
        );
        assert!(expand(&["{nope}".to_string()], &vars()).is_err());
        assert!(expand(&["{open".to_string()], &vars()).is_err());
    }

    #[test]
    fn unknown_placeholder_is_reported_at_its_position() {
        let text = "name = \"x\"\nbinary = [\"x\"]\n[peer]\nstart = [\"{binary}\", \"{routr_ip}\"]\n";
        let e = Adapter::from_str(text, "x.toml", Path::new("x.toml"), Path::new("/")).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("x.toml:4:"), "{shown}");
        assert!(shown.contains("{routr_ip}"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_errors_with_positions() {
        let text = "name = \"x\"\nbinary = [\"x\"]\nfeatures = { bypas = true }\n";
        let e = Adapter::from_str(text, "x.toml", Path::new("x.toml"), Path::new("/")).unwrap_err();
        assert!(e.to_string().starts_with("x.toml:3:"), "{e}");
    }

    #[test]
    fn shipped_adapters_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let adapters = Adapter::load_dir(&root.join("harness/impls"), root).unwrap();
        let s = adapters
            .iter()
            .find(|a| a.name == "sixbed4")
            .expect("sixbed4 adapter");
        assert!(s.features.bypass && s.features.rebinding_recovery && s.features.configurable_timers);
        assert!(s.router.is_some() && s.peer.is_some());
    }

    #[test]
    fn the_newest_build_of_one_program_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["release", "debug", "other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::write(root.join("release/prog"), "").unwrap();
        std::fs::File::options()
            .write(true)
            .open(root.join("release/prog"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(root.join("debug/prog"), "").unwrap();
        std::fs::write(root.join("other/else"), "").unwrap();
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The stale release build loses to the fresh debug build of the same program.
        assert_eq!(
            choose_binary(&c(&["release/prog", "debug/prog"]), root),
            Some(root.join("debug/prog"))
        );
        // A different program later in the list never replaces the first that exists.
        assert_eq!(
            choose_binary(&c(&["release/prog", "other/else"]), root),
            Some(root.join("release/prog"))
        );
        assert_eq!(
            choose_binary(&c(&["missing/prog", "other/else"]), root),
            Some(root.join("other/else"))
        );
        assert_eq!(choose_binary(&c(&["missing/prog"]), root), None);
    }
}

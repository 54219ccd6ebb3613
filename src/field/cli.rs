//! The field tools' subcommands: their arguments (clap) and what each does, so that
//! `main.rs` only names them.
//!
//! Exit codes, for all of them: 0 done (and, for `check`, nothing FAILed); 1 `check` found a
//! FAIL (or ERROR) verdict, or writing failed; 2 the input could not be used (missing file,
//! not a capture, corrupt header). Errors name the file and the byte offset.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::anonymise::{self, Options};
use super::report::{decode_line, write_decode_lines, CheckReport, Facts, FactsWalk};
use crate::capture::ReadError;
use crate::conformance::checks::{run_checks, CheckDef, Expectations, Inputs, Window, REGISTRY};
use crate::conformance::decode::{decode_file, DecodeOptions, DecodedCapture, Profile};
use crate::conformance::model::CheckResult;
use crate::conformance::stream;
use crate::conformance::trace::{render_trace, trace, Roles};

/// `bedlab anonymise`.
#[derive(Args, Debug)]
pub struct AnonymiseArgs {
    /// The capture to anonymise (pcap or pcapng, any link type bedlab reads).
    pub input: PathBuf,
    /// Where to write the anonymised capture (always pcapng).
    pub output: PathBuf,
    /// The secret the Crypto-PAn key is derived from (SHA-256): the same secret gives the
    /// same mapping in every file. Prefer --key-file on shared machines.
    #[arg(long, required_unless_present = "key_file")]
    pub key: Option<String>,
    /// Read the secret from a file (its first line, without the newline).
    #[arg(long, conflicts_with = "key")]
    pub key_file: Option<PathBuf>,
    /// Anonymise UDP/TCP ports too, wherever 6bed4 embeds them (0, 25790, 25788 and
    /// --keep-port ports stay; even ports stay even).
    #[arg(long)]
    pub ports: bool,
    /// A router port besides 25790 and 25788 (repeatable): kept, and used to recognise
    /// 6bed4 addresses.
    #[arg(long = "keep-port")]
    pub keep_port: Vec<u16>,
    /// Zero payloads beyond the headers (inner data, non-6bed4 UDP, trailing bytes).
    #[arg(long)]
    pub zero_payloads: bool,
    /// Plain Crypto-PAn over the whole IPv4 space: private, loopback and multicast
    /// addresses may become public ones and back (checks that excuse NATed senders may
    /// then judge differently).
    #[arg(long)]
    pub no_class_preserving: bool,
}

/// `bedlab wireshark-plugin`.
#[derive(Args, Debug)]
pub struct WiresharkPluginArgs {
    /// Write the Lua file here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `bedlab check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The capture (pcap or pcapng).
    pub capture: PathBuf,
    /// A router UDP port besides 25790 and 25788.
    #[arg(long)]
    pub port: Option<u16>,
    /// Machine-readable output (the report and every check's result, evidence included).
    #[arg(long)]
    pub json: bool,
    /// Documented 6bed4 deviations from RFC 4861 FAIL instead of WARN.
    #[arg(long)]
    pub strict: bool,
    /// Force the profile (`current` or `v01`) instead of reading it per datagram.
    #[arg(long, value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// The peer's configured keepalive period in seconds (enables KA-03).
    #[arg(long)]
    pub keepalive_period: Option<f64>,
    /// The peer's configured keepalive TTL (KA-02; 3 when absent).
    #[arg(long)]
    pub keepalive_ttl: Option<u8>,
    /// Hold every record in memory instead of streaming the file. By default a capture
    /// from one capture point, in time order, on a router port, is read twice and checked
    /// in memory that does not grow with its size; any other is analysed in memory.
    #[arg(long)]
    pub in_memory: bool,
    /// Print how long decoding, the shared analysis and the checks took, how the capture
    /// was analysed, and the peak resident memory after each phase (stderr).
    #[arg(long, hide = true)]
    pub timings: bool,
}

/// `bedlab gen-traffic` (hidden): synthetic 6bed4 traffic for benchmarks.
#[derive(Args, Debug)]
pub struct GenTrafficArgs {
    /// Where to write the pcapng.
    pub out: PathBuf,
    /// How much: bytes of packets, with K, M or G (e.g. 1G).
    #[arg(long, default_value = "64M", value_parser = super::gen::parse_size)]
    pub size: u64,
    /// Number of peers.
    #[arg(long, default_value_t = 40)]
    pub peers: usize,
    /// Seed of the random choices (the same seed gives the same file).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `bedlab decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The capture (pcap or pcapng).
    pub capture: PathBuf,
    /// Print the normalised golden trace instead of one line per packet.
    #[arg(long)]
    pub trace: bool,
    /// A router UDP port besides 25790 and 25788.
    #[arg(long)]
    pub port: Option<u16>,
    /// Force the profile (`current` or `v01`).
    #[arg(long, value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// Hold every record in memory instead of streaming the file (see `check
    /// --in-memory`). `--trace` always does.
    #[arg(long)]
    pub in_memory: bool,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    match s {
        "current" => Ok(Profile::Current),
        "v01" => Ok(Profile::V01),
        _ => Err(format!("unknown profile {s:?} (current or v01)")),
    }
}

/// Prints `bedlab: <message>` and returns exit code 2 (unusable input).
fn input_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("bedlab: {msg}");
    ExitCode::from(2)
}

/// Prints `bedlab: <message>` and returns exit code 1.
fn failure(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("bedlab: {msg}");
    ExitCode::FAILURE
}

/// Runs `bedlab anonymise`.
pub fn anonymise(a: AnonymiseArgs) -> ExitCode {
    let key = match (&a.key, &a.key_file) {
        (Some(k), _) => k.clone().into_bytes(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => s.lines().next().unwrap_or("").as_bytes().to_vec(),
            Err(e) => return input_error(format!("{}: {e}", path.display())),
        },
        (None, None) => return input_error("--key or --key-file is required"),
    };
    if key.is_empty() {
        return input_error("the key is empty");
    }
    let opts = Options {
        key,
        ports: a.ports,
        keep_ports: a.keep_port,
        zero_payloads: a.zero_payloads,
        preserve_classes: !a.no_class_preserving,
    };
    match anonymise::anonymise_file(&a.input, &a.output, &opts) {
        Ok(summary) => {
            if let Some(t) = &summary.truncated {
                eprintln!(
                    "bedlab: warning: {}: {t}; the {} whole packets before it were written",
                    a.input.display(),
                    summary.packets
                );
            }
            eprintln!("{}: {summary}", a.output.display());
            ExitCode::SUCCESS
        }
        Err(e @ (anonymise::Error::Read { .. } | anonymise::Error::SameFile(_))) => input_error(e),
        Err(e) => failure(e),
    }
}

/// The Lua dissector, with this version stamped in.
pub fn plugin_text() -> String {
    include_str!("sixbed4.lua").replace("@VERSION@", env!("CARGO_PKG_VERSION"))
}

/// Runs `bedlab wireshark-plugin`.
pub fn wireshark_plugin(a: WiresharkPluginArgs) -> ExitCode {
    let text = plugin_text();
    match &a.out {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!(
                    "wrote {}: use it with `tshark -X lua_script:{}` or copy it into \
                     ~/.local/lib/wireshark/plugins/",
                    path.display(),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => failure(format!("{}: {e}", path.display())),
        },
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failure(format!("stdout: {e}")),
            }
        }
    }
}

/// Decodes a capture for `check` / `decode`; a file that cannot be opened or is not a
/// capture is an input error naming the offset.
fn load(path: &Path, port: Option<u16>, profile: Option<Profile>) -> Result<DecodedCapture, ExitCode> {
    decode_file(path, decode_options(path, port, profile))
        .map_err(|e: ReadError| input_error(format!("{}: {e}", path.display())))
}

/// The time of the capture's first frame (ns since 1970), which tshark counts relative
/// times from; the first decoded record's when the file cannot be read again.
fn first_frame_ns(path: &Path, cap: &DecodedCapture) -> u64 {
    file_t0(path).unwrap_or_else(|| cap.records.first().map_or(0, |r| r.ts_ns))
}

/// Warns on stderr when the capture ended inside a block or broke off in the middle.
fn warn_read_error(cap: &DecodedCapture) {
    if let Some(e) = &cap.read_error {
        eprintln!(
            "bedlab: warning: {}: {e}; the {} frames before it were read",
            cap.name, cap.stats.frames
        );
    }
}

/// The process's peak resident set so far (`VmHWM`), for `--timings`: where in the run
/// the memory peaks. "?" where /proc does not say.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().replace(" kB", " KB"))
        })
        .unwrap_or_else(|| "?".to_string())
}

/// What `bedlab check` analysed: the inputs (the capture's kept records), every check's
/// result and the report's facts.
struct Analysed {
    inputs: Inputs,
    results: Vec<CheckResult>,
    facts: Facts,
    /// How it was analysed, for `--timings`.
    how: String,
}

/// The time of the file's first frame (what tshark counts relative times from).
fn file_t0(path: &Path) -> Option<u64> {
    crate::capture::Reader::open(path)
        .ok()
        .and_then(|mut r| r.next_packet().ok().flatten())
        .map(|p| {
            p.ts.0
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(p.ts.1))
        })
}

/// The streaming analysis (see `conformance::stream`): `Ok(Err(why))` when the capture
/// must be analysed in memory.
fn check_streamed(
    a: &CheckArgs,
    expect: &Expectations,
    t0: u64,
) -> Result<Result<Analysed, String>, ExitCode> {
    let opts = decode_options(&a.capture, a.port, a.profile);
    let mut facts: Option<FactsWalk> = None;
    let mut done: Option<Facts> = None;
    let got = stream::check_file(
        &a.capture,
        &opts,
        |cap| {
            Inputs::with_roles(
                vec![cap],
                a.profile.unwrap_or_default(),
                a.strict,
                expect.clone(),
                Roles::default(),
            )
        },
        &mut |v, r| {
            let walk = facts.get_or_insert_with(|| FactsWalk::start(v, t0));
            match r {
                Some(r) => walk.packet(v, r, r),
                None => done = facts.take().map(|w| w.finish(v)),
            }
        },
    );
    match got {
        Err(e) => Err(input_error(format!("{}: {e}", a.capture.display()))),
        Ok(Err(why)) => Ok(Err(why)),
        Ok(Ok(c)) => {
            let facts = match done {
                Some(f) => f,
                None => return Ok(Err("the report's facts were not gathered".into())),
            };
            Ok(Ok(Analysed {
                how: format!(
                    "streamed: first pass {:.2?}, view and second pass {:.2?}",
                    c.scan, c.walk
                ),
                inputs: c.inputs,
                results: c.results,
                facts,
            }))
        }
    }
}

/// The in-memory analysis: every record decoded and kept, the checks and the report's
/// facts on two threads (each thread takes half of the checks and walks the packets once
/// for them; the first also gathers the facts). Results go back in registry order.
fn check_in_memory(a: &CheckArgs, expect: &Expectations, t0: Option<u64>) -> Result<Analysed, ExitCode> {
    let cap = load(&a.capture, a.port, a.profile)?;
    let t0 = t0.unwrap_or_else(|| cap.records.first().map_or(0, |r| r.ts_ns));
    let inputs = Inputs::with_roles(
        vec![cap],
        a.profile.unwrap_or_default(),
        a.strict,
        expect.clone(),
        Roles::default(),
    );
    let Some(view) = inputs.views().next() else {
        return Err(failure("no capture to check"));
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(2);
    let groups: Vec<Vec<&CheckDef>> = split_checks(threads);
    let (mut timed, facts): (Vec<(usize, CheckResult)>, Option<Facts>) = std::thread::scope(|s| {
        let (inputs, view) = (&inputs, &view);
        let handles: Vec<_> = groups
            .iter()
            .enumerate()
            .map(|(g, defs)| {
                s.spawn(move || {
                    let facts = (g == 0).then(|| Facts::build(view.cap, view, t0));
                    let results = run_checks(inputs, defs);
                    let idx = defs
                        .iter()
                        .map(|d| REGISTRY.iter().position(|x| x.id == d.id).unwrap_or(usize::MAX));
                    (idx.zip(results).collect::<Vec<_>>(), facts)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut facts = None;
        for h in handles {
            let (done, f) = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            all.extend(done);
            facts = facts.or(f);
        }
        (all, facts)
    });
    timed.sort_by_key(|t| t.0);
    let results: Vec<CheckResult> = timed.into_iter().map(|t| t.1).collect();
    let facts = facts.unwrap_or_else(|| Facts::build(view.cap, &view, t0));
    Ok(Analysed {
        inputs,
        results,
        facts,
        how: String::new(),
    })
}

/// Runs `bedlab check`.
pub fn check(a: CheckArgs) -> ExitCode {
    let started = Instant::now();
    let expect = Expectations {
        keepalive_period: a
            .keepalive_period
            .filter(|p| p.is_finite() && *p >= 0.0)
            .map(Duration::from_secs_f64),
        keepalive_ttl: a.keepalive_ttl,
        ..Expectations::default()
    };
    let file_t0 = file_t0(&a.capture);
    let streamed = if a.in_memory || !rereadable(&a.capture) {
        Ok(Err(if a.in_memory {
            "--in-memory".to_string()
        } else {
            "the file cannot be read twice".to_string()
        }))
    } else {
        check_streamed(&a, &expect, file_t0.unwrap_or(0))
    };
    let analysed = match streamed {
        Err(code) => return code,
        Ok(Ok(an)) => an,
        Ok(Err(why)) => match check_in_memory(&a, &expect, file_t0) {
            Ok(an) => Analysed {
                how: format!("in memory ({why})"),
                ..an
            },
            Err(code) => return code,
        },
    };
    let Analysed {
        inputs,
        results,
        facts,
        how,
    } = analysed;
    let Some(view) = inputs.views().next() else {
        return failure("no capture to check");
    };
    warn_read_error(view.cap);
    let t0 = file_t0.unwrap_or_else(|| view.t0());
    if a.timings {
        eprintln!(
            "timings: {:.2?} in all, {} records held; analysis {how}",
            started.elapsed(),
            view.cap.records.len()
        );
        eprintln!("peak memory: {}", peak_rss());
    }
    let report = CheckReport::with_facts(view.cap, results, facts, t0);
    let mut out = std::io::stdout().lock();
    let written = if a.json {
        writeln!(out, "{}", report.json())
    } else {
        write!(out, "{}", report.text())
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        return failure(format!("stdout: {e}"));
    }
    // A capture cut short (a capture still running, a killed writer) is checked for what it
    // holds; one that is corrupt in the middle cannot be trusted to be complete: exit 2.
    if let Some(e) = view
        .cap
        .read_error
        .as_deref()
        .filter(|e| !e.contains("truncated"))
    {
        return input_error(format!(
            "{}: {e}: the verdicts above cover only the frames before it",
            view.cap.name
        ));
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The registry split into `n` groups for as many threads: the checks that walk the
/// packets and the whole ones each dealt out in turn, so that every group walks once.
fn split_checks(n: usize) -> Vec<Vec<&'static CheckDef>> {
    let n = n.max(1);
    let mut groups: Vec<Vec<&CheckDef>> = vec![Vec::new(); n];
    let (walks, wholes): (Vec<&CheckDef>, Vec<&CheckDef>) = REGISTRY.iter().partition(|d| d.walks());
    for (i, d) in walks.into_iter().chain(wholes).enumerate() {
        groups[i % n].push(d);
    }
    groups
}

/// Whether `path` can be read twice (a regular file, not a pipe or a device).
fn rereadable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The decoder's options for a capture named by its path.
fn decode_options(path: &Path, port: Option<u16>, profile: Option<Profile>) -> DecodeOptions {
    DecodeOptions {
        name: path.display().to_string(),
        port,
        profile,
    }
}

/// Runs `bedlab decode`.
pub fn decode(a: DecodeArgs) -> ExitCode {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if !a.trace && !a.in_memory && rereadable(&a.capture) {
        let opts = decode_options(&a.capture, a.port, a.profile);
        match stream::scan(&a.capture, &opts) {
            Err(e) => return input_error(format!("{}: {e}", a.capture.display())),
            Ok(Err(_)) => {}
            Ok(Ok(s)) => {
                warn_read_error(&s.cap);
                let t0 = first_frame_ns(&a.capture, &s.cap);
                let window = Window::default();
                let mut written = Ok(());
                let walked = stream::walk(&a.capture, &opts, &s.cap, &s.endpoints, &window, &mut |r| {
                    if written.is_ok() {
                        written = writeln!(out, "{}", decode_line(r, t0));
                    }
                });
                if let Err(e) = walked {
                    return input_error(format!("{}: {e}", a.capture.display()));
                }
                return match written.and_then(|()| out.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => failure(format!("stdout: {e}")),
                };
            }
        }
    }
    let cap = match load(&a.capture, a.port, a.profile) {
        Ok(c) => c,
        Err(code) => return code,
    };
    warn_read_error(&cap);
    let written = if a.trace {
        out.write_all(render_trace(&trace(&cap, &Roles::default()), None).as_bytes())
    } else {
        write_decode_lines(&cap, first_frame_ns(&a.capture, &cap), &mut out)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(format!("stdout: {e}")),
    }
}

/// Runs `bedlab gen-traffic`.
pub fn gen_traffic(a: GenTrafficArgs) -> ExitCode {
    let file = match std::fs::File::create(&a.out) {
        Ok(f) => f,
        Err(e) => return failure(format!("{}: {e}", a.out.display())),
    };
    let opts = super::gen::GenOptions {
        bytes: a.size,
        peers: a.peers,
        seed: a.seed,
    };
    match super::gen::generate(file, &opts) {
        Ok(s) => {
            eprintln!(
                "{}: {} packets, {} bytes of packets, {} keepalives, {} rebinding(s)",
                a.out.display(),
                s.packets,
                s.bytes,
                s.keepalives,
                s.rebindings
            );
            ExitCode::SUCCESS
        }
        Err(e) => failure(format!("{}: {e}", a.out.display())),
    }
}

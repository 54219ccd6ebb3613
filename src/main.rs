//! `bedlab`: a network-namespace lab and conformance harness for 6bed4.

use anyhow::{bail, Context, Result};
use bedlab::lab::{Lab, LabError, LabOptions};
use bedlab::netns::NetNs;
use bedlab::runs::{self, RunRecord};
use bedlab::topology::Topology;
use clap::{Args, Parser, Subcommand};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A network lab and conformance harness for 6bed4 (IPv6 tunnelled over UDP/IPv4).
///
/// bedlab turns a topology file into real Linux network namespaces wired through a
/// userspace fabric (delay, loss, reordering, rate limits, NATs), runs processes inside
/// them and captures every link into one pcapng per run.
///
/// Typical session (as root, or as a normal user where the kernel allows user namespaces):
///   bedlab validate topologies/two-nats.toml     check a topology without building it
///   bedlab up topologies/two-nats.toml           build it; stays up until Ctrl-C
///   bedlab exec peer-a -- ping -c1 198.51.100.1  run a command inside a node
///   bedlab shell peer-a                          an interactive shell inside a node
///   bedlab down                                  tear a running lab down
///   bedlab gc                                    reap what killed runs left
#[derive(Parser, Debug)]
#[command(name = "bedlab", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Where run records live (default: /run/bedlab for root, else $XDG_RUNTIME_DIR/bedlab
    /// or /tmp/bedlab-<uid>).
    #[arg(long, global = true, hide = true)]
    state_root: Option<PathBuf>,
    /// Log level for stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build a topology and keep it running until Ctrl-C (or `bedlab down`).
    Up(UpArgs),
    /// Run a command inside a node of a running lab.
    Exec(ExecArgs),
    /// Open an interactive shell inside a node of a running lab.
    Shell(ShellArgs),
    /// Tear down running labs (all of them with --all).
    Down(DownArgs),
    /// Reap namespaces and processes left by labs whose bedlab process died.
    Gc(JsonArg),
    /// List lab runs on this machine.
    Ps(JsonArg),
    /// Parse and validate topology files; errors name file:line:col.
    Validate(ValidateArgs),
    /// Classify a NAT of a topology by probing it (RFC 5780 style): mapping, filtering,
    /// port allocation, hairpinning and mapping lifetime, measured, beside what the topology
    /// configures. Builds its own lab (the topology plus two probe clients inside the NAT
    /// and two probe servers outside). Exit 0 when the probe ran, 1 when it could not.
    NatProbe(NatProbeArgs),
    /// The probe's agents (run by nat-probe inside the lab's namespaces).
    #[command(hide = true)]
    ProbeAgent(bedlab::probe::agent::AgentArgs),
    /// The flow agent run inside nodes by flow steps (send or receive one verified flow).
    #[command(hide = true)]
    Flow(bedlab::traffic::agent::FlowArgs),
    /// Run conformance scenarios over a matrix of NATs and implementations.
    ///
    /// Writes out/<run-id>/: report.json, junit.xml, summary.md, report.html, and per cell
    /// the pcapng, logs and NAT decision logs. Exits 0 only when no cell FAILs or ERRORs.
    Run(RunArgs),
    /// List scenarios and the cells they expand to.
    List(ListArgs),
    /// Work with run reports.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Send the negative corpus (malformed, truncated, oversized, garbage 6bed4 datagrams)
    /// to an endpoint. Used inside lab nodes by `inject` steps.
    #[command(hide = true)]
    Inject(InjectArgs),
    /// ICMPv6 echo that waits for every reply (used inside lab nodes by ping and mesh
    /// steps); prints one JSON line.
    #[command(hide = true)]
    Echo6(bedlab::conformance::echo::EchoArgs),
    /// Anonymise a capture: every IPv4 address (outer headers, addresses in layouts C and V,
    /// link-layer options, the RA prefix, the default router prefix) through prefix-preserving
    /// Crypto-PAn, checksums mended; `bedlab check` gives the same verdicts afterwards.
    Anonymise(bedlab::field::AnonymiseArgs),
    /// Write a Lua dissector for Wireshark/tshark that shows 6bed4 (ports 25790, 25788 and a
    /// heuristic for other ports): keepalives, the IPv4:port embedded in each address.
    WiresharkPlugin(bedlab::field::WiresharkPluginArgs),
    /// Check a capture against every passive conformance check: who is in it, what they did,
    /// the verdicts. Exit 1 on FAIL, 2 when the file cannot be read.
    Check(bedlab::field::CheckArgs),
    /// One line per 6bed4 packet of a capture with its meaning (RS, RA → you are ..., KA,
    /// NS/NA, data direct / via router), or the normalised trace with --trace.
    Decode(bedlab::field::DecodeArgs),
    /// Generate synthetic 6bed4 traffic (benchmarks).
    #[command(hide = true)]
    GenTraffic(bedlab::field::GenTrafficArgs),
}

#[derive(Args, Debug)]
struct SuiteArgs {
    /// Scenario files or directories.
    #[arg(long = "scenarios", default_value = "scenarios")]
    scenarios: Vec<PathBuf>,
    /// Implementation adapters.
    #[arg(long, default_value = "harness/impls")]
    impls: PathBuf,
    /// Topologies that scenarios name.
    #[arg(long, default_value = "topologies")]
    topologies: PathBuf,
    /// Keep only cells whose id contains every given term (repeatable), e.g. `--filter bypass --filter symmetric`.
    #[arg(long)]
    filter: Vec<String>,
    /// Run a deterministic share of the cells: K/N runs cells K, K+N, K+2N, ... (1-based).
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Directory for results: <out>/<run-id>/.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Cells run in parallel.
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: usize,
    /// Treat documented 6bed4 deviations from RFC 4861 as failures.
    #[arg(long)]
    strict: bool,
    /// Print the report as JSON on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Use this run id (shards of one run share it, so merging can check they belong together).
    #[arg(long)]
    run_id: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ReportCmd {
    /// Join the report.json files of a run's shards into one report (all formats).
    Merge {
        /// The shards' report.json files.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Directory for the merged report: <out>/<run-id>/.
        #[arg(long, default_value = "out")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct InjectArgs {
    /// Where to send: <ipv4>:<port>.
    #[arg(long)]
    to: std::net::SocketAddrV4,
    /// Which corpus.
    #[arg(long, default_value = "negative")]
    corpus: String,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("expected K/N such as 1/4, found {s:?}"))?;
    let k: usize = k
        .parse()
        .map_err(|_| format!("expected K/N such as 1/4, found {s:?}"))?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("expected K/N such as 1/4, found {s:?}"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("shard {s:?}: K must be in 1..=N"));
    }
    Ok((k, n))
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Topology file (see topologies/).
    topology: PathBuf,
    /// Directory for run artifacts (capture, logs): <out>/<run-id>/.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Do not capture packets.
    #[arg(long)]
    no_capture: bool,
    /// Print the lab's description as JSON once it is up.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RunSel {
    /// Which running lab (needed only when several run).
    #[arg(long)]
    run: Option<String>,
}

#[derive(Args, Debug)]
struct ExecArgs {
    #[command(flatten)]
    sel: RunSel,
    /// Node to run in.
    node: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct ShellArgs {
    #[command(flatten)]
    sel: RunSel,
    /// Node to open a shell in.
    node: String,
}

#[derive(Args, Debug)]
struct DownArgs {
    #[command(flatten)]
    sel: RunSel,
    /// Tear down every running lab.
    #[arg(long)]
    all: bool,
}

#[derive(Args, Debug)]
struct JsonArg {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct NatProbeArgs {
    /// Topology file (see topologies/).
    topology: PathBuf,
    /// The NAT node to probe.
    nat: String,
    /// Machine-readable output: one JSON object.
    #[arg(long)]
    json: bool,
    /// Longest idle time the lifetime test tries ("0" skips the test); longer lifetimes are
    /// reported as "> this".
    #[arg(long, default_value = "40s", value_parser = bedlab::probe::parse_duration_arg)]
    lifetime_max: Duration,
    /// The lifetime test narrows its bracket down to this width.
    #[arg(long, default_value = "100ms", value_parser = bedlab::probe::parse_duration_arg)]
    resolution: Duration,
    /// How long to wait for an answer the NAT may filter.
    #[arg(long, default_value = "500ms", value_parser = bedlab::probe::parse_duration_arg)]
    wait: Duration,
    /// Directory for run artifacts (capture, logs): <out>/<run-id>/.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Do not capture packets.
    #[arg(long)]
    no_capture: bool,
}

#[derive(Args, Debug)]
struct ValidateArgs {
    #[arg(required = true)]
    topologies: Vec<PathBuf>,
}

/// An error whose exit code is 2: the user's input was wrong.
#[derive(Debug)]
struct InputError(String);
impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InputError {}

static STOP: AtomicBool = AtomicBool::new(false);
extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// What a lab-building command does first: the run-record directory, then the machine
/// check and, for a normal user, the user namespace (while the process has one thread).
fn prepare(needs: bedlab::preflight::Needs, state_root: &Path) -> Result<()> {
    let problems: Vec<String> = bedlab::preflight::check(needs).into_iter().map(|p| p.0).collect();
    if !problems.is_empty() {
        return Err(InputError(LabError::Preflight(problems).to_string()).into());
    }
    runs::ensure_state_root(state_root).map_err(|e| InputError(e.to_string()))?;
    reap_before_entering(state_root);
    match bedlab::lab::prepare(needs) {
        Ok(_) => Ok(()),
        Err(LabError::Preflight(p)) => Err(InputError(LabError::Preflight(p).to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

/// Reaps what dead runs left, from where this process can still see their processes: a
/// normal user's dead labs live in user namespaces that only the initial one may inspect
/// (see `runs::can_reap`). `Lab::build` collects again, for what it can reach.
fn reap_before_entering(state_root: &Path) {
    let reaped = runs::gc(state_root);
    if !reaped.runs_reaped.is_empty() {
        tracing::info!(
            "reaped dead runs {:?} ({} processes)",
            reaped.runs_reaped,
            reaped.processes_killed.len()
        );
    }
}

fn up(args: UpArgs, state_root: &Path) -> Result<()> {
    let topology = Topology::from_file(&args.topology).map_err(|e| InputError(e.to_string()))?;
    topology.validate().map_err(|e| InputError(e.to_string()))?;
    prepare(bedlab::lab::needs_of(&topology), state_root)?;
    install_stop_handlers();
    let options = LabOptions {
        out_dir: args.out.clone(),
        state_root: state_root.to_path_buf(),
        capture: !args.no_capture,
        run_id: None,
    };
    let lab = match Lab::build(topology, options) {
        Ok(lab) => lab,
        Err(LabError::Topology(e)) => return Err(InputError(e.to_string()).into()),
        Err(LabError::Preflight(p)) => return Err(InputError(LabError::Preflight(p).to_string()).into()),
        Err(e) => return Err(e).context(format!("building {}", args.topology.display())),
    };
    describe(&lab, args.json);
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("tearing down {}", lab.run_id());
    lab.teardown().context("teardown")?;
    Ok(())
}

fn describe(lab: &Lab, json: bool) {
    let t = lab.topology();
    let nodes: Vec<serde_json::Value> = t
        .nodes()
        .map(|n| {
            serde_json::json!({
                "name": n.name(),
                "role": n.role(),
                "namespace": n.is_namespace(),
                "interfaces": n.interfaces().iter().map(|i| serde_json::json!({
                    "name": i.name, "segment": i.segment, "address": i.address.to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "run_id": lab.run_id(),
            "topology": t.name,
            "artifacts": lab.artifacts(),
            "capture": lab.capture_path(),
            "nodes": nodes,
        });
        println!("{v}");
        return;
    }
    println!(
        "lab {} is up: topology {} ({})",
        lab.run_id(),
        t.name,
        t.description
    );
    for n in t.nodes() {
        let addrs: Vec<String> = n
            .interfaces()
            .iter()
            .map(|i| format!("{}={}", i.name, i.address))
            .collect();
        let kind = if n.is_namespace() { "namespace" } else { "fabric" };
        println!(
            "  {:<12} {:<14} {:<9} {}",
            n.name(),
            n.role(),
            kind,
            addrs.join(" ")
        );
    }
    if let Some(c) = lab.capture_path() {
        println!("capture: {}", c.display());
    }
    println!("logs:    {}", lab.artifacts().join("logs").display());
    println!("try:     bedlab exec <node> -- <command>   |   Ctrl-C tears the lab down");
}

/// The one live run the user means.
fn select_run(state_root: &Path, run: Option<&str>) -> Result<RunRecord> {
    let live: Vec<RunRecord> = runs::list(state_root)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .filter(|r| r.owner_alive())
        .collect();
    match run {
        Some(id) => live
            .into_iter()
            .find(|r| r.run_id == id)
            .ok_or_else(|| InputError(format!("no running lab with run id {id:?} (see `bedlab ps`)")).into()),
        None => match live.len() {
            0 => Err(InputError("no lab is running (start one with `bedlab up <topology>`)".into()).into()),
            1 => Ok(live.into_iter().next().context("one run")?),
            _ => {
                let ids: Vec<&str> = live.iter().map(|r| r.run_id.as_str()).collect();
                Err(InputError(format!(
                    "several labs are running ({}): choose one with --run",
                    ids.join(", ")
                ))
                .into())
            }
        },
    }
}

/// The namespaces to enter for a node of a running lab.
struct NodeHandle {
    net: NetNs,
    /// The lab's user namespace, when it has one that this process is not in already.
    user: Option<std::fs::File>,
}

/// Opens a node's namespace through the owner's descriptor and checks it is the recorded one;
/// for a lab built in a user namespace, opens that too (`/proc/<owner>/ns/user`).
fn open_node(record: &RunRecord, node: &str) -> Result<NodeHandle> {
    let ns = record.namespaces.iter().find(|n| n.node == node).ok_or_else(|| {
        let names: Vec<&str> = record.namespaces.iter().map(|n| n.node.as_str()).collect();
        InputError(format!(
            "lab {} has no namespace node {node:?} (nodes: {})",
            record.run_id,
            names.join(", ")
        ))
    })?;
    let handle = NetNs::open_path(&format!("/proc/{}/fd/{}", record.pid, ns.fd))?;
    if handle.inode() != ns.inode {
        bail!("the namespace of {node} changed under lab {}", record.run_id);
    }
    let user = match record.userns {
        Some(ino) if bedlab::userns::current_inode().ok() != Some(ino) => {
            let path = format!("/proc/{}/ns/user", record.pid);
            let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            use std::os::unix::fs::MetadataExt;
            if file.metadata()?.ino() != ino {
                bail!("the user namespace of lab {} changed", record.run_id);
            }
            Some(file)
        }
        _ => None,
    };
    Ok(NodeHandle { net: handle, user })
}

/// Runs `argv` inside `ns` (a node of the lab `record` describes).
///
/// The owner is checked again once the child is inside: if the lab died (and `gc` already
/// looked for processes in its namespaces) between opening the namespace and entering it,
/// nobody would ever reap the child, so it is killed here instead. A lab that dies later
/// finds the child by its namespace, as `gc` does for every process inside.
///
/// A lab built by a normal user lives in that user's user namespace: the child joins it
/// first (as its owner, it gets every capability there), then the node's network namespace,
/// which that user namespace owns. The command runs as uid 0 inside, as the user outside.
fn run_in(ns: NodeHandle, argv: &[String], node: &str, record: &RunRecord) -> Result<ExitCode> {
    let (program, args) = argv.split_first().context("empty command")?;
    let fd = ns.net.as_raw_fd();
    let user_fd = ns.user.as_ref().map(|f| f.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(args).env("BEDLAB_NODE", node);
    // SAFETY: setns is async-signal-safe; the forked child has one thread, as joining a
    // user namespace requires.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(u) = user_fd {
                bedlab::userns::setns_user(u)?;
            }
            bedlab::netns::setns(fd)
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {program:?} in {node}"))?;
    // The child holds the namespace now; this process need not keep it alive.
    drop(ns);
    if !record.owner_alive() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(InputError(format!(
            "lab {} went away while starting {program:?}",
            record.run_id
        ))
        .into());
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {program:?} in {node}"))?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
}

fn exec(args: ExecArgs, state_root: &Path) -> Result<ExitCode> {
    let record = select_run(state_root, args.sel.run.as_deref())?;
    let ns = open_node(&record, &args.node)?;
    run_in(ns, &args.command, &args.node, &record)
}

fn shell(args: ShellArgs, state_root: &Path) -> Result<ExitCode> {
    let record = select_run(state_root, args.sel.run.as_deref())?;
    let ns = open_node(&record, &args.node)?;
    let sh = std::env::var("SHELL").unwrap_or_else(|_| "/bin/bash".into());
    std::env::set_var("PS1", format!("[{}:{}] \\w\\$ ", record.run_id, args.node));
    eprintln!("shell in {} of lab {} (exit to leave)", args.node, record.run_id);
    run_in(ns, &[sh], &args.node, &record)
}

fn down(args: DownArgs, state_root: &Path) -> Result<()> {
    let targets: Vec<RunRecord> = if args.all {
        runs::list(state_root)
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .filter(|r| r.owner_alive())
            .collect()
    } else {
        vec![select_run(state_root, args.sel.run.as_deref())?]
    };
    for r in &targets {
        eprintln!("stopping lab {} (pid {})", r.run_id, r.pid);
        // SAFETY: kill has no memory preconditions; the pid's start time was just checked.
        unsafe { libc::kill(r.pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while targets.iter().any(RunRecord::owner_alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in targets.iter().filter(|r| r.owner_alive()) {
        eprintln!("lab {} did not stop in time: killing it", r.run_id);
        // SAFETY: as above.
        unsafe { libc::kill(r.pid as i32, libc::SIGKILL) };
    }
    let report = runs::gc(state_root);
    if !report.processes_killed.is_empty() {
        eprintln!("reaped {} leftover processes", report.processes_killed.len());
    }
    Ok(())
}

fn gc(args: JsonArg, state_root: &Path) -> Result<()> {
    let report = runs::gc(state_root);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "reaped {} dead run(s), killed {} leftover process(es); {} lab(s) still running",
            report.runs_reaped.len(),
            report.processes_killed.len(),
            report.live_runs.len()
        );
    }
    Ok(())
}

fn ps(args: JsonArg, state_root: &Path) -> Result<()> {
    let all: Vec<RunRecord> = runs::list(state_root)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect();
    if args.json {
        let v: Vec<_> = all
            .iter()
            .map(|r| serde_json::json!({"run_id": r.run_id, "pid": r.pid, "topology": r.topology, "alive": r.owner_alive(), "user_namespace": r.userns.is_some(), "artifacts": r.artifacts, "nodes": r.namespaces.iter().map(|n| &n.node).collect::<Vec<_>>()}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    if all.is_empty() {
        println!("no labs");
    }
    for r in all {
        let state = if r.owner_alive() {
            "running"
        } else {
            "dead (run `bedlab gc`)"
        };
        println!(
            "{}  {}  pid {}  {}  {}",
            r.run_id,
            r.topology,
            r.pid,
            state,
            r.artifacts.display()
        );
    }
    Ok(())
}

fn validate(args: ValidateArgs) -> Result<()> {
    let mut failed = Vec::new();
    for path in &args.topologies {
        match Topology::from_file(path) {
            Ok(t) => println!(
                "{}: ok ({} segments, {} hosts, {} routers)",
                path.display(),
                t.segments.len(),
                t.hosts.len(),
                t.routers.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                failed.push(path.display().to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(InputError(format!("{} invalid topology file(s)", failed.len())).into())
    }
}

fn nat_probe(args: NatProbeArgs, state_root: &Path) -> Result<ExitCode> {
    let topology = Topology::from_file(&args.topology)?;
    // Exit 1 for everything that stops the probe, as documented (no InputError here).
    let needs = bedlab::lab::needs_of(&topology);
    let problems: Vec<String> = bedlab::preflight::check(needs).into_iter().map(|p| p.0).collect();
    if !problems.is_empty() {
        return Err(LabError::Preflight(problems).into());
    }
    runs::ensure_state_root(state_root)?;
    reap_before_entering(state_root);
    bedlab::lab::prepare(needs)?;
    let agent = std::env::current_exe().context("locating the bedlab binary for the probe agents")?;
    let lab = LabOptions {
        out_dir: args.out,
        state_root: state_root.to_path_buf(),
        capture: !args.no_capture,
        run_id: None,
    };
    let mut options = bedlab::probe::ProbeOptions::new(agent, lab);
    options.lifetime_max = args.lifetime_max;
    options.resolution = args.resolution;
    options.wait = args.wait;
    let report = bedlab::probe::probe(&topology, &args.nat, &options)
        .with_context(|| format!("probing {} in {}", args.nat, args.topology.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

fn probe_agent(args: bedlab::probe::agent::AgentArgs) -> Result<ExitCode> {
    bedlab::probe::agent::run(args).map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

/// Commands that read (and reap) run records without building a lab.
fn reads_runs(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Exec(_) | Cmd::Shell(_) | Cmd::Down(_) | Cmd::Gc(_) | Cmd::Ps(_)
    )
}

fn main() -> ExitCode {
    // Die quietly when the reader goes away (`bedlab list | head`), like other tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Resolved before any user namespace is entered (inside one, every user is uid 0).
    let state_root = cli.state_root.clone().unwrap_or_else(runs::default_state_root);
    // The default place is the user's own: refuse one someone else made (explicit places are
    // for tests and scripts; record ownership still hides other users' runs there).
    if cli.state_root.is_none() && reads_runs(&cli.command) {
        if let Err(e) = runs::check_state_root(&state_root) {
            eprintln!("bedlab: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Cmd::Up(a) => up(a, &state_root).map(|()| ExitCode::SUCCESS),
        Cmd::Exec(a) => exec(a, &state_root),
        Cmd::Shell(a) => shell(a, &state_root),
        Cmd::Down(a) => down(a, &state_root).map(|()| ExitCode::SUCCESS),
        Cmd::Gc(a) => gc(a, &state_root).map(|()| ExitCode::SUCCESS),
        Cmd::Ps(a) => ps(a, &state_root).map(|()| ExitCode::SUCCESS),
        Cmd::Validate(a) => validate(a).map(|()| ExitCode::SUCCESS),
        Cmd::NatProbe(a) => nat_probe(a, &state_root),
        Cmd::ProbeAgent(a) => probe_agent(a),
        Cmd::Flow(a) => bedlab::traffic::agent::run(a)
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Cmd::Run(a) => run_suite(a, &state_root),
        Cmd::List(a) => list(a).map(|()| ExitCode::SUCCESS),
        Cmd::Report(ReportCmd::Merge { reports, out }) => merge_reports(&reports, &out),
        Cmd::Inject(a) => inject(a).map(|()| ExitCode::SUCCESS),
        Cmd::Echo6(a) => echo6(&a).map(|()| ExitCode::SUCCESS),
        Cmd::Anonymise(a) => Ok(bedlab::field::cli::anonymise(a)),
        Cmd::WiresharkPlugin(a) => Ok(bedlab::field::cli::wireshark_plugin(a)),
        Cmd::Check(a) => Ok(bedlab::field::cli::check(a)),
        Cmd::Decode(a) => Ok(bedlab::field::cli::decode(a)),
        Cmd::GenTraffic(a) => Ok(bedlab::field::cli::gen_traffic(a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(input) = e.downcast_ref::<InputError>() {
                eprintln!("bedlab: {input}");
                ExitCode::from(2)
            } else {
                eprintln!("bedlab: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

fn load_suite(a: &SuiteArgs) -> Result<bedlab::conformance::runner::Suite> {
    use bedlab::conformance::{adapter::Adapter, scenario::Scenario};
    let root = std::env::current_dir().context("current directory")?;
    let adapters = Adapter::load_dir(&a.impls, &root)
        .map_err(|e| InputError(bedlab::conformance::toml_util::render(&e)))?;
    if adapters.is_empty() {
        return Err(InputError(format!("no adapters in {}", a.impls.display())).into());
    }
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for path in &a.scenarios {
        if path.is_dir() {
            match Scenario::load_dir(path, &a.topologies) {
                Ok(s) => scenarios.extend(s),
                Err(e) => errors.extend(e),
            }
        } else {
            match Scenario::from_file(path, &a.topologies) {
                Ok(s) => scenarios.push(s),
                Err(e) => errors.push(e),
            }
        }
    }
    if !errors.is_empty() {
        return Err(InputError(bedlab::conformance::toml_util::render(&errors)).into());
    }
    Ok(bedlab::conformance::runner::Suite {
        scenarios: scenarios.into_iter().map(std::sync::Arc::new).collect(),
        adapters,
    })
}

fn list(a: ListArgs) -> Result<()> {
    let suite = load_suite(&a.suite)?;
    let cells = suite.cells(&a.suite.filter, a.suite.shard);
    if a.json {
        let v: Vec<_> = cells.iter().map(|c| c.id()).collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    for s in &suite.scenarios {
        let n = cells.iter().filter(|c| c.scenario.name == s.name).count();
        println!("{:<28} {:>3} cells  {}", s.name, n, s.description);
    }
    for (i, c) in cells.iter().enumerate() {
        println!("  {:>3}  {}", i + 1, c.id());
    }
    println!("{} cells", cells.len());
    Ok(())
}

fn echo6(a: &bedlab::conformance::echo::EchoArgs) -> Result<()> {
    let report = bedlab::conformance::echo::run(a).with_context(|| format!("echo to {}", a.target))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn inject(a: InjectArgs) -> Result<()> {
    let corpus = bedlab::conformance::corpus::corpus(&a.corpus)
        .ok_or_else(|| InputError(format!("no corpus named {:?} (known: negative)", a.corpus)))?;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    let mut sent = 0;
    for (name, datagram) in &corpus {
        match sock.send_to(datagram, a.to) {
            Ok(_) => sent += 1,
            Err(e) => eprintln!("{name}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    println!(
        "sent {sent} of {} {} datagrams to {}",
        corpus.len(),
        a.corpus,
        a.to
    );
    Ok(())
}

fn run_suite(a: RunArgs, state_root: &Path) -> Result<ExitCode> {
    use bedlab::conformance::runner;
    let suite = load_suite(&a.suite)?;
    let cells = suite.cells(&a.suite.filter, a.suite.shard);
    if cells.is_empty() {
        return Err(InputError("no cell matches (see `bedlab list`)".into()).into());
    }
    // Every cell's lab is built in this process, from several threads: a normal user's
    // user namespace is entered now, once, while there is one thread.
    prepare(
        bedlab::preflight::Needs {
            nft: true,
            conntrack_timeouts: false,
        },
        state_root,
    )?;
    let run_id = a.run_id.clone().unwrap_or_else(runs::new_run_id);
    let run_dir = a.out.join(&run_id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let ctx = runner::RunContext {
        run_dir: run_dir.clone(),
        state_root: state_root.to_path_buf(),
        bedlab: std::env::current_exe().context("finding the bedlab program")?,
        strict: a.strict,
    };
    let started = std::time::SystemTime::now();
    let report = bedlab::conformance::progress::run_all(&cells, &suite, &ctx, a.jobs.max(1), a.suite.shard);
    let report = bedlab::conformance::model::RunReport {
        run_id: run_id.clone(),
        started: started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        ..report
    };
    bedlab::conformance::progress::write_reports(&report, &run_dir).context("writing reports")?;
    for line in bedlab::conformance::report::terminal_summary(&report)
        .iter()
        .rev()
        .take(1)
    {
        eprintln!("{line}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    eprintln!("results: {}", run_dir.display());
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn merge_reports(paths: &[PathBuf], out: &Path) -> Result<ExitCode> {
    use bedlab::conformance::report;
    let mut shards = Vec::new();
    for p in paths {
        shards.push(report::load_report(p).map_err(|e| InputError(e.to_string()))?);
    }
    let merged = report::merge(shards).map_err(|e| InputError(e.to_string()))?;
    let dir = out.join(&merged.run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    report::write_all(&merged, &dir).context("writing the merged report")?;
    for line in report::terminal_summary(&merged) {
        eprintln!("{line}");
    }
    eprintln!("merged report: {}", dir.display());
    Ok(if merged.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

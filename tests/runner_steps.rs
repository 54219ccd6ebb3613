//! The new step kinds run for real: a packet wait with a packetdrill window fails a cell
//! whose keepalive period is off (too slow and too fast) and passes the right one; an
//! `absent` wait fails when the packet shows up; flow steps judge loss against their bound
//! and carry TCP to a native IPv6 host. Each test writes its scenario to a temporary
//! directory and runs its cells with `run_cell`, as `bedlab run` does.

use bedlab::conformance::adapter::Adapter;
use bedlab::conformance::model::{CellResult, Outcome, Verdict};
use bedlab::conformance::runner::{run_cell, RunContext, Suite};
use bedlab::conformance::scenario::Scenario;
use std::path::Path;
use std::sync::Arc;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn sixbed4_built() -> bool {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    repo.join("target/release/sixbed4").exists() || repo.join("target/debug/sixbed4").exists()
}

/// Runs every cell of `scenario` (TOML text); returns their results.
fn run(dir: &Path, scenario: &str) -> Vec<CellResult> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = dir.join("s.toml");
    std::fs::write(&file, scenario).unwrap();
    let s = Scenario::from_file(&file, &repo.join("topologies")).unwrap_or_else(|e| panic!("{e}"));
    let suite = Suite {
        scenarios: vec![Arc::new(s)],
        adapters: Adapter::load_dir(&repo.join("harness/impls"), repo).expect("adapters"),
    };
    let ctx = RunContext {
        run_dir: dir.to_path_buf(),
        state_root: dir.join("state"),
        bedlab: env!("CARGO_BIN_EXE_bedlab").into(),
        strict: false,
    };
    suite
        .cells(&[], None)
        .iter()
        .enumerate()
        .map(|(i, c)| run_cell(i + 1, c, &suite, &ctx))
        .collect()
}

fn failed_steps(r: &CellResult) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| c.id.starts_with("STEP-") && c.verdict == Verdict::Fail)
        .map(|c| c.message.clone())
        .collect()
}

fn keepalive(period: &str) -> String {
    format!(
        r#"
name = "ka-window"
topology = "two-nats"
[matrix]
nat-a = ["port-restricted-cone"]
[timers]
keepalive = "{period}"
[[step]]
start = "router"
[[step]]
start = "peer-a"
[[step]]
wait = "packet"
on = "nat-a/wan"
filter = "ka outbound from peer-a"
timeout = "3s"
[[step]]
at = "+400ms~600ms"
wait = "packet"
on = "nat-a/wan"
filter = "ka outbound from peer-a"
[expect]
checks = ["STEP-"]
"#
    )
}

#[test]
fn a_keepalive_period_outside_the_window_fails_the_cell() {
    if !root() || !sixbed4_built() {
        eprintln!("skipped: needs root and a built sixbed4 (cargo build -p sixbed4)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let right = run(dir.path(), &keepalive("500ms"));
    assert_eq!(right[0].outcome, Outcome::Pass, "{:?}", right[0].checks);
    let slow = run(dir.path(), &keepalive("1s"));
    assert_eq!(slow[0].outcome, Outcome::Fail);
    assert!(
        failed_steps(&slow[0]).iter().any(|m| m.contains("too late")),
        "{:?}",
        slow[0].checks
    );
    let fast = run(dir.path(), &keepalive("250ms"));
    assert_eq!(fast[0].outcome, Outcome::Fail);
    assert!(
        failed_steps(&fast[0]).iter().any(|m| m.contains("too early")),
        "{:?}",
        fast[0].checks
    );
}

#[test]
fn absent_packets_and_flow_bounds_decide_the_step() {
    if !root() || !sixbed4_built() {
        eprintln!("skipped: needs root and a built sixbed4 (cargo build -p sixbed4)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Keepalives do leave nat-a: "absent" must fail.
    let r = run(
        dir.path(),
        r#"
name = "absent"
topology = "two-nats"
[matrix]
nat-a = ["full-cone"]
[[step]]
start = "router"
[[step]]
start = "peer-a"
[[step]]
wait = "packet"
on = "nat-a/wan"
filter = "ka from peer-a"
expect = "absent"
timeout = "2500ms"
[expect]
checks = ["STEP-"]
"#,
    );
    assert_eq!(r[0].outcome, Outcome::Fail);
    assert!(
        failed_steps(&r[0])[0].contains("where none may be"),
        "{:?}",
        r[0].checks
    );

    // 30 % loss on peer-b's access link: a UDP flow with no loss allowed fails, one that
    // allows 60 % passes; TCP gets every byte through to the native host anyway.
    let r = run(
        dir.path(),
        r#"
name = "flows"
topology = "native-v6"
[matrix]
nat-a = ["full-cone"]
[[step]]
start = "router"
[[step]]
start = ["peer-a", "peer-b"]
[[step]]
wait = "address"
nodes = ["peer-a", "peer-b"]
[[step]]
link = { link = "peer-b/eth0", direction = "ingress", loss = 0.3 }
[[step]]
flow = { proto = "udp", from = "server", to = "peer-b", packets = 200, size = 500, rate = "2mbit", max_loss = 0.6 }
[[step]]
flow = { proto = "tcp", from = "peer-a", to = "server", bytes = 200000 }
[[step]]
flow = { proto = "udp", from = "peer-a", to = "peer-b", packets = 200, size = 500, rate = "2mbit" }
[expect]
checks = ["STEP-"]
"#,
    );
    let steps: Vec<_> = r[0].checks.iter().filter(|c| c.id.starts_with("STEP-")).collect();
    let verdict = |n: &str| {
        steps
            .iter()
            .find(|c| c.id == n)
            .map(|c| (c.verdict, c.message.clone()))
    };
    let (v, m) = verdict("STEP-5").expect("udp flow with a loose bound");
    assert_eq!(v, Verdict::Pass, "{m}");
    assert!(
        m.contains("lost") && !m.contains(" 0 lost"),
        "some loss was seen: {m}"
    );
    let (v, m) = verdict("STEP-6").expect("tcp flow");
    assert_eq!(v, Verdict::Pass, "{m}");
    assert!(m.contains("200000/200000 bytes arrived complete"), "{m}");
    let (v, m) = verdict("STEP-7").expect("udp flow without loss allowed");
    assert_eq!(v, Verdict::Fail, "{m}");
    assert!(m.contains("above 0.0 %"), "{m}");
    assert_eq!(r[0].outcome, Outcome::Fail);
}

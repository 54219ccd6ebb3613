//! The `bedlab` command line, run as a user would: exit codes (2 for the user's mistakes),
//! `file:line:col:` errors, one clear sentence when there is no lab, nothing created for a
//! bad topology, and a whole up / exec / ps / down session.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_bedlab");

fn bedlab(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--state-root")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bedlab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A topology whose only error is `loss = 1.5` at line 14, column 8.
const BAD: &str = r#"name = "bad"

[[segment]]
name = "internet"
subnet = "198.51.100.0/24"

[[host]]
name = "router"
[[host.interface]]
name = "eth0"
segment = "internet"
address = "198.51.100.1"
[host.interface.egress]
loss = 1.5
"#;

#[test]
fn validate_names_file_line_and_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, BAD).unwrap();
    let o = bedlab(dir.path(), &["validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let prefix = format!("{}:14:8: ", bad.display());
    assert!(
        stderr(&o)
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains("1.5")),
        "expected a line starting {prefix:?}: {}",
        stderr(&o)
    );

    // A syntax error too, and a good file next to a bad one: still 2, the good one says ok.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\n[[segment]\n").unwrap();
    let good = topology_file("two-nats");
    let o = bedlab(
        dir.path(),
        &["validate", good.to_str().unwrap(), broken.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    let prefix = format!("{}:2:", broken.display());
    assert!(
        stderr(&o).lines().any(|l| l.starts_with(&prefix)),
        "{}",
        stderr(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("two-nats.toml: ok"),
        "{}",
        text(&o)
    );

    let all: Vec<String> = shipped_topologies()
        .iter()
        .map(|t| topology_file(t).display().to_string())
        .collect();
    let o = Command::new(BIN).arg("validate").args(&all).output().unwrap();
    assert!(
        o.status.success(),
        "every shipped topology validates: {}",
        text(&o)
    );
}

#[test]
fn up_with_a_bad_file_exits_2_and_creates_nothing() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, BAD).unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-root")
        .arg(&state)
        .args(["up", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    // Under strace when there is one: then "no namespace" is seen, not inferred.
    let trace = dir.path().join("trace");
    let traced = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let o = if traced {
        Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=unshare,setns,clone,clone3", "-o"])
            .arg(&trace)
            .arg(BIN)
            .arg("--state-root")
            .arg(&state)
            .args(["up", bad.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    } else {
        eprintln!("strace is not installed: checking the on-disk effects only");
        cmd.output().unwrap()
    };
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:14:8: ", bad.display())),
        "{}",
        stderr(&o)
    );
    if traced {
        let t = std::fs::read_to_string(&trace).unwrap();
        assert!(
            !t.contains("CLONE_NEWNET"),
            "bedlab up created a namespace for an invalid topology:\n{t}"
        );
        assert!(
            !t.contains("setns("),
            "bedlab up entered a namespace for an invalid topology:\n{t}"
        );
    }
    assert!(bedlab::runs::list(&state).is_empty(), "no run record");
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "no artifacts"
    );
}

#[test]
fn exec_without_a_lab_says_so_in_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let o = bedlab(dir.path(), &["exec", "peer-a", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err:?}");
    assert!(
        lines[0].starts_with("bedlab: ") && lines[0].contains("no lab is running"),
        "{err:?}"
    );
    assert_eq!(lines[0].matches(". ").count(), 0, "one sentence: {err:?}");
    assert!(o.stdout.is_empty());
    for cmd in [&["shell", "peer-a"][..], &["down"]] {
        let o = bedlab(dir.path(), cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no lab is running"),
            "{cmd:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn help_exits_0() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["exec", "--help"],
        &["help"],
        &["--version"],
    ] {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(!o.stdout.is_empty(), "{args:?} prints to stdout");
    }
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for sub in ["up", "exec", "shell", "down", "gc", "ps", "validate"] {
        assert!(help.contains(&format!("  {sub}")), "--help lists {sub}: {help}");
    }
    assert!(!help.contains("state-root"), "--state-root is hidden");
    let o = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown subcommand is a usage error");
}

/// up (two labs), exec (exit codes, environment, errors), ps, down --all.
#[test]
fn a_whole_session() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));
    let start = |name: &str| {
        let log = dir.path().join(format!("{name}.stdout"));
        let child = Command::new(BIN)
            .arg("--state-root")
            .arg(&state)
            .args([
                "up",
                topology_file("two-nats").to_str().unwrap(),
                "--json",
                "--out",
                out.to_str().unwrap(),
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
                .is_ok_and(|s| s.ends_with('\n'))),
            "{name} came up"
        );
        let json: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
        (child, json)
    };
    let (mut first, desc) = start("first");
    let run_id = desc["run_id"].as_str().unwrap().to_string();
    assert_eq!(desc["topology"], "two-nats");
    let nodes: Vec<&str> = desc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 5, "{desc}");

    let o = bedlab(
        &state,
        &["exec", "peer-a", "--", "ip", "-4", "-o", "addr", "show", "eth0"],
    );
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("10.0.1.2/24"),
        "{}",
        text(&o)
    );
    let o = bedlab(
        &state,
        &["exec", "peer-a", "--", "sh", "-c", "echo $BEDLAB_NODE; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "exec passes the command's exit code on");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "peer-a");
    let o = bedlab(
        &state,
        &["exec", "peer-b", "--", "ping", "-c", "1", "-W", "1", "10.0.2.1"],
    );
    assert!(o.status.success(), "peer-b pings its gateway: {}", text(&o));
    let o = bedlab(&state, &["exec", "nosuch", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("nosuch") && stderr(&o).contains("peer-a"),
        "names the nodes there are: {}",
        stderr(&o)
    );
    let o = bedlab(&state, &["exec", "nat-a", "--", "true"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a fabric router is not a namespace: {}",
        stderr(&o)
    );

    let (mut second, desc2) = start("second");
    let run2 = desc2["run_id"].as_str().unwrap().to_string();
    assert_ne!(run_id, run2);
    let o = bedlab(&state, &["exec", "peer-a", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("several labs") && stderr(&o).contains(&run_id) && stderr(&o).contains(&run2),
        "{}",
        stderr(&o)
    );
    let o = bedlab(&state, &["exec", "--run", &run2, "peer-a", "--", "true"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = bedlab(&state, &["exec", "--run", "bl-nope", "peer-a", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));

    let o = bedlab(&state, &["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let alive: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alive"] == true)
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(alive.len(), 2, "{ps}");
    assert!(alive.contains(&run_id.as_str()) && alive.contains(&run2.as_str()));

    let o = bedlab(&state, &["down", "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(first.wait().unwrap().success(), "the first lab exits cleanly");
    assert!(second.wait().unwrap().success(), "the second lab exits cleanly");
    assert!(bedlab::runs::list(&state).is_empty());
    let o = bedlab(&state, &["ps"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "no labs");
    for id in [&run_id, &run2] {
        assert!(
            out.join(id).join("capture.pcapng").exists(),
            "the capture of {id} is kept"
        );
    }
}

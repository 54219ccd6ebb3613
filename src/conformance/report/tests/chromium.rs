//! report.html in a real browser: Debian's headless Chromium renders it offline, runs its
//! script, and screenshots it. Skipped, with the reason printed, where /usr/bin/chromium is
//! not installed (`apt-get install -y chromium`).

use super::{canonical_fixture, create_artifacts};
use crate::conformance::report::{write_all, REPORT_HTML};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// A generous bound: a cold start takes a few seconds; a hung browser must not hang CI.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs headless Chromium on a file with the flags that keep it off the network.
fn chromium(profile: &Path, extra: &[String], page: &Path) -> (Output, Duration) {
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    // Read stdout on a thread so a large DOM cannot fill the pipe while we wait.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).map(|_| v)
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("chromium did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let output = Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    };
    (output, elapsed)
}

#[test]
fn chromium_renders_the_report_offline() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIP chromium_renders_the_report_offline: {CHROMIUM} is not installed (apt-get install -y chromium)");
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let report = canonical_fixture();
    create_artifacts(&report, run.path());
    write_all(&report, run.path()).unwrap();
    let page = run.path().join(REPORT_HTML);

    let profile = tempfile::tempdir().unwrap();
    let (out, dom_time) = chromium(profile.path(), &["--dump-dom".to_string()], &page);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("<svg") && dom.contains("class=\"msg msg-direct\""),
        "no SVG in the rendered DOM"
    );
    for anchor in super::super::layout::cell_anchors(&report) {
        assert!(
            dom.contains(&format!("id=\"{anchor}\"")),
            "cell section {anchor} missing from the DOM"
        );
    }
    // The script ran: it unhides the expand/collapse tools.
    assert!(
        dom.contains("id=\"tools\" class=\"tools\">"),
        "the page's script did not run"
    );

    let profile = tempfile::tempdir().unwrap();
    let png = run.path().join("report.png");
    let (out, shot_time) = chromium(
        profile.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".to_string(),
        ],
        &page,
    );
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    eprintln!(
        "chromium: --dump-dom took {:.1}s, --screenshot took {:.1}s ({} KiB PNG)",
        dom_time.as_secs_f64(),
        shot_time.as_secs_f64(),
        bytes.len() / 1024
    );
    if let Ok(keep) = std::env::var("BEDLAB_KEEP_REPORT_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}

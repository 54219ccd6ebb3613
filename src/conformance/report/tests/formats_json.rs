//! report.json: the report survives a round trip exactly, and bad files name themselves.

use super::{canonical_fixture, fixture, NASTY};
use crate::conformance::report::{load_report, to_json, write_all, ReportError, REPORT_JSON};

#[test]
fn json_round_trips_exactly() {
    let report = fixture();
    let text = to_json(&report).unwrap();
    assert!(text.ends_with("}\n"));
    let back: crate::conformance::model::RunReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
    // The nasty message, control characters included, is data: JSON keeps it byte for byte.
    assert!(back
        .cells
        .iter()
        .flat_map(|c| &c.checks)
        .any(|k| k.message == NASTY));
}

#[test]
fn write_all_then_load_report_gives_the_canonical_report() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_all(&fixture(), dir.path()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.json", "junit.xml", "summary.md", "report.html"]);
    let loaded = load_report(&dir.path().join(REPORT_JSON)).unwrap();
    assert_eq!(loaded, canonical_fixture());
    // No temporary file is left behind.
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["junit.xml", "report.html", "report.json", "summary.md"]);
}

#[test]
fn load_report_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("report.json");
    std::fs::write(&bad, "{\"run_id\": 3}").unwrap();
    let err = load_report(&bad).unwrap_err();
    assert!(matches!(err, ReportError::Parse { .. }));
    assert!(
        err.to_string().contains("report.json: not a bedlab report"),
        "{err}"
    );
    let err = load_report(&dir.path().join("missing.json")).unwrap_err();
    assert!(
        matches!(err, ReportError::Io { .. }) && err.to_string().contains("missing.json"),
        "{err}"
    );
}

use bedlab::lab::{Lab, LabOptions};
use std::path::Path;

fn root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn opts(dir: &Path) -> LabOptions {
    LabOptions {
        out_dir: dir.join("out"),
        state_root: dir.join("state"),
        capture: true,
        run_id: None,
    }
}

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn one_hop_ping() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::from_file(Path::new("topologies/one-hop.toml"), opts(dir.path())).unwrap();
    let out = lab
        .exec("peer-a", &argv("ping -c 3 -i 0.2 -W 1 198.51.100.1"))
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success());
}

#[test]
fn two_nats_ping_across() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::from_file(Path::new("topologies/two-nats.toml"), opts(dir.path())).unwrap();
    let out = lab
        .exec("peer-a", &argv("ping -c 3 -i 0.2 -W 1 198.51.100.1"))
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    eprintln!("{:?}", lab.stats().unwrap());
}

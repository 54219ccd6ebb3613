//! A normal user's labs: `bedlab` started by an unprivileged uid enters a user namespace of
//! its own and builds the lab there; everything the user does against it (`up`, `exec`,
//! `shell`, `ps`, `down`, `gc`, `run`) works as that same uid, nothing is left behind, and
//! nobody else's runs are visible or reapable.
//!
//! The test itself runs as root (like the other lab tests) and starts `bedlab` as an unused
//! uid. So that the real user-namespace path is exercised whatever this machine's
//! `/dev/net/tun` allows, every such `bedlab` runs in a private mount namespace in which a
//! TUN device node made for the test (`mknod c 10 200`, owned by that uid, mode 0600) is
//! bind-mounted over `/dev/net/tun`; the host's device is never changed. A node owned by root
//! instead shows the preflight refusing an inaccessible device.
//!
//! Skipped, with the reason printed, only where the kernel forbids unprivileged user
//! namespaces (or when not running as root, like every lab test).

mod common;

use bedlab::runs::{self, RunRecord};
use common::*;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_bedlab");

/// `return`s (passing) with a reason unless this machine can run the test.
macro_rules! require_userns {
    () => {
        require_root!();
        let problems = bedlab::userns::Knobs::read().problems();
        if !problems.is_empty() {
            eprintln!(
                "skipped: the kernel forbids unprivileged user namespaces: {}",
                problems.join("; ")
            );
            return;
        }
    };
}

/// A TUN lab in which one host sits behind a userspace NAT and one behind a Linux NAT
/// (nftables masquerade with a conntrack timeout): everything a lab does inside its
/// namespaces, done from a user namespace.
const MIXED: &str = r#"name = "userns-mixed"
description = "a userspace NAT and a Linux NAT, built by a normal user"

[[segment]]
name = "internet"
subnet = "198.51.100.0/24"
[[segment]]
name = "lan-a"
subnet = "10.0.1.0/24"
[[segment]]
name = "lan-b"
subnet = "10.0.2.0/24"

[[host]]
name = "router"
role = "6bed4-router"
[[host.interface]]
name = "eth0"
segment = "internet"
address = "198.51.100.1"

[[host]]
name = "peer-a"
[[host.interface]]
name = "eth0"
segment = "lan-a"
address = "10.0.1.2"

[[host]]
name = "peer-b"
[[host.interface]]
name = "eth0"
segment = "lan-b"
address = "10.0.2.2"

[[router]]
name = "nat-a"
[[router.interface]]
name = "lan"
segment = "lan-a"
address = "10.0.1.1"
[[router.interface]]
name = "wan"
segment = "internet"
address = "198.51.100.10"
[router.nat]
outside = "wan"
type = "port-restricted-cone"

[[router]]
name = "nat-b"
[[router.interface]]
name = "lan"
segment = "lan-b"
address = "10.0.2.1"
[[router.interface]]
name = "wan"
segment = "internet"
address = "198.51.100.20"
[router.nat]
outside = "wan"
type = "linux-masquerade"
udp_timeout = "17s"
"#;

/// An unprivileged uid with a home (a temporary directory it owns) and a TUN device node.
struct User {
    uid: u32,
    home: tempfile::TempDir,
    tun: PathBuf,
    /// Files covered with `/dev/null` in the user's mount namespace (a program "missing").
    hidden: Vec<PathBuf>,
}

impl User {
    /// `tun_usable`: whether the uid may open its TUN node (else it belongs to root, 0600).
    fn new(uid: u32, tun_usable: bool) -> User {
        let home = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(home.path(), Some(uid), Some(uid)).expect("chown home");
        let tun = home.path().join("tun");
        let c = CString::new(tun.as_os_str().as_bytes()).expect("path");
        // SAFETY: mknod reads a NUL-terminated path that outlives the call.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(10, 200)) };
        assert_eq!(
            rc,
            0,
            "mknod {}: {}",
            tun.display(),
            std::io::Error::last_os_error()
        );
        if tun_usable {
            std::os::unix::fs::chown(&tun, Some(uid), Some(uid)).expect("chown tun");
        }
        User {
            uid,
            home,
            tun,
            hidden: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// `bedlab <args>` as this uid, in a private mount namespace where `/dev/net/tun` is
    /// this user's node; `$XDG_RUNTIME_DIR` is `<home>/xdg`.
    fn bedlab(&self, args: &[&str]) -> Command {
        self.command(BIN, args)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.path("xdg"))
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::null());
        let uid = self.uid;
        let tun = CString::new(self.tun.as_os_str().as_bytes()).expect("path");
        let dev = CString::new("/dev/net/tun").expect("path");
        let slash = CString::new("/").expect("path");
        let null = CString::new("/dev/null").expect("path");
        let hidden: Vec<CString> = self
            .hidden
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()).expect("path"))
            .collect();
        // SAFETY: only async-signal-safe system calls run between fork and exec, on strings
        // made before the fork.
        unsafe {
            c.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    std::ptr::null(),
                    slash.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    tun.as_ptr(),
                    dev.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                for h in &hidden {
                    check(libc::mount(
                        null.as_ptr(),
                        h.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(uid))?;
                check(libc::setuid(uid))?;
                // Set after the uid change, which clears it.
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                Ok(())
            });
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.bedlab(args).output().expect("run bedlab")
    }

    /// Starts `bedlab up <topology> --json` and waits for its description.
    fn up(&self, topology: &Path, extra: &[&str], name: &str) -> (Child, serde_json::Value) {
        let log = self.path(&format!("{name}.stdout"));
        let err = self.path(&format!("{name}.stderr"));
        let out = self.path("out");
        let mut args = vec![
            "up",
            topology.to_str().expect("utf-8"),
            "--json",
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let mut child = self
            .bedlab(&args)
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(&err).expect("log"))
            .spawn()
            .expect("start bedlab up");
        let ready = wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.ends_with('\n'))
                || child.try_wait().ok().flatten().is_some()
        });
        let stdout = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            ready && !stdout.is_empty(),
            "{name}: bedlab up as uid {} did not come up: {}",
            self.uid,
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        let json = serde_json::from_str(stdout.trim()).expect("one JSON object");
        (child, json)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `Uid:` of /proc/<pid>/status: real, effective, saved, filesystem.
fn uids_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| l.split_whitespace().filter_map(|u| u.parse().ok()).collect())
        .unwrap_or_default()
}

fn ns_inode(pid: u32, kind: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// Waits until no process of `uid` (everything a user's run starts is the user's) holds the
/// run's network namespaces or its user namespace, apart from the processes `except` (a
/// later run). The kernel reuses a freed namespace's inode number at once, so a later lab,
/// the user's or anyone's on this machine, may well hold namespaces with the same numbers.
fn assert_nothing_left(record: &RunRecord, uid: u32, except: &[u32], what: &str) {
    let net: BTreeSet<u64> = record.namespaces.iter().map(|n| n.inode).collect();
    let user: BTreeSet<u64> = record.userns.into_iter().collect();
    let left = || -> Vec<u32> {
        ns_holders("net", &net)
            .into_iter()
            .chain(ns_holders("user", &user))
            .filter(|p| !is_zombie(*p) && !except.contains(p) && uids_of(*p).first() == Some(&uid))
            .collect()
    };
    let gone = wait_until(Duration::from_secs(15), || left().is_empty());
    let left: Vec<String> = left()
        .into_iter()
        .map(|p| format!("{p} {}", cmdline(p)))
        .collect();
    assert!(gone, "{what}: the run's namespaces are still held by {left:?}");
}

/// Whether `pid` is blocked waiting for a child (a `bedlab exec` past its start-up checks).
fn waiting_for_child(pid: u32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    wchan == "do_wait"
        || syscall
            .split_whitespace()
            .next()
            .is_some_and(|n| n == libc::SYS_wait4.to_string() || n == libc::SYS_waitid.to_string())
}

/// The one record in a user's state root, read directly (as root, `runs::list` would not
/// show another user's run).
fn only_record(state: &Path) -> RunRecord {
    let dirs: Vec<PathBuf> = std::fs::read_dir(state)
        .expect("state root")
        .flatten()
        .map(|e| e.path().join("run.json"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(dirs.len(), 1, "one run record in {}: {dirs:?}", state.display());
    RunRecord::load(&dirs[0]).expect("a readable record")
}

/// Starts `sleep 300` in `node` of the run `record` through the user's `bedlab exec`
/// (records under `state_arg`), hands the child to `cleanup`, and waits until the sleep
/// runs in the node and `bedlab exec` is waiting for it. Returns the node's namespace.
fn exec_sleeper(
    user: &User,
    state_arg: &str,
    record: &RunRecord,
    node: &str,
    cleanup: &mut Cleanup,
) -> BTreeSet<u64> {
    let sleeper = user
        .bedlab(&["--state-root", state_arg, "exec", node, "--", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exec sleep");
    let exec_pid = sleeper.id();
    cleanup.children.push(sleeper);
    let ns = BTreeSet::from([record
        .namespaces
        .iter()
        .find(|n| n.node == node)
        .unwrap_or_else(|| panic!("{node} recorded"))
        .inode]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            !pids_in(&ns).is_empty() && waiting_for_child(exec_pid)
        }),
        "the sleep runs in {node} and bedlab exec waits for it"
    );
    ns
}

/// The whole session of a normal user: up (records under `$XDG_RUNTIME_DIR/bedlab`), exec
/// across a userspace NAT and a Linux NAT, shell, ps, down; every process runs as the
/// user outside and as 0 inside; root does not see the run; nothing is left.
#[test]
fn a_normal_user_builds_drives_and_tears_down_a_lab() {
    require_userns!();
    let user = User::new(441_101, true);
    let xdg = user.path("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::os::unix::fs::chown(&xdg, Some(user.uid), Some(user.uid)).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let topo = user.path("mixed.toml");
    std::fs::write(&topo, MIXED).unwrap();
    let mut cleanup = Cleanup {
        children: Vec::new(),
        inodes: BTreeSet::new(),
    };

    let (up, desc) = user.up(&topo, &[], "up");
    let up_pid = up.id();
    cleanup.children.push(up);
    let run_id = desc["run_id"].as_str().expect("run id").to_string();

    // The record lives in the user's own place, private, owned by the user, and names the
    // user namespace the lab lives in.
    let state = xdg.join("bedlab");
    let meta = std::fs::metadata(&state).expect("$XDG_RUNTIME_DIR/bedlab exists");
    assert_eq!(meta.uid(), user.uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let record = only_record(&state);
    cleanup.inodes = record.namespaces.iter().map(|n| n.inode).collect();
    assert_eq!(record.run_id, run_id);
    assert_eq!(record.pid, up_pid);
    let record_file = state.join(&run_id).join("run.json");
    assert_eq!(std::fs::metadata(&record_file).unwrap().uid(), user.uid);
    let userns = record
        .userns
        .expect("a normal user's run names its user namespace");
    assert_ne!(
        Some(userns),
        ns_inode(std::process::id(), "user"),
        "not the initial one"
    );
    assert_eq!(ns_inode(up_pid, "user"), Some(userns));
    assert_eq!(uids_of(up_pid), vec![user.uid; 4], "bedlab up runs as the user");
    assert_eq!(
        record.namespaces.len(),
        4,
        "router, peer-a, peer-b, nat-b: {record:?}"
    );

    // Across the userspace NAT and across the Linux NAT.
    for (node, what) in [("peer-a", "userspace NAT"), ("peer-b", "Linux NAT")] {
        let o = user.run(&[
            "exec",
            node,
            "--",
            "ping",
            "-n",
            "-c",
            "2",
            "-W",
            "2",
            "198.51.100.1",
        ]);
        assert!(
            o.status.success(),
            "{node} pings the router through the {what}: {}",
            text(&o)
        );
        assert!(stdout(&o).contains("2 received"), "{}", text(&o));
    }
    // The Linux NAT really translated, with nftables and conntrack in the user namespace.
    let o = user.run(&["exec", "nat-b", "--", "conntrack", "-L", "-p", "icmp"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("src=10.0.2.2 dst=198.51.100.1") && stdout(&o).contains("dst=198.51.100.20"),
        "a masqueraded echo in nat-b's conntrack table: {}",
        text(&o)
    );
    let o = user.run(&[
        "exec",
        "nat-b",
        "--",
        "cat",
        "/proc/sys/net/netfilter/nf_conntrack_udp_timeout",
    ]);
    assert_eq!(stdout(&o).trim(), "17", "udp_timeout applied: {}", text(&o));
    let o = user.run(&["exec", "nat-b", "--", "nft", "list", "table", "ip", "bedlab_nat"]);
    assert!(stdout(&o).contains("masquerade"), "{}", text(&o));

    // Inside, the command is root of the lab's user namespace; the map says who it is outside.
    let o = user.run(&[
        "exec",
        "peer-a",
        "--",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "exit codes pass through: {}", text(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    let map: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(map, ["0", &user.uid.to_string(), "1"], "{out}");

    // A long-running command: outside, it is the user's, in the lab's namespaces.
    let sleeper = user
        .bedlab(&["exec", "peer-a", "--", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exec sleep");
    let exec_pid = sleeper.id();
    cleanup.children.push(sleeper);
    let peer_a = record
        .namespaces
        .iter()
        .find(|n| n.node == "peer-a")
        .expect("peer-a recorded")
        .inode;
    let mut sleep_pid = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            sleep_pid = pids_in(&BTreeSet::from([peer_a]))
                .into_iter()
                .find(|p| cmdline(*p) == "sleep 300");
            sleep_pid.is_some()
        }),
        "the sleep runs inside peer-a"
    );
    let sleep_pid = sleep_pid.unwrap_or_default();
    assert_eq!(
        uids_of(sleep_pid),
        vec![user.uid; 4],
        "outside, the command is the user's"
    );
    assert_eq!(ns_inode(sleep_pid, "user"), Some(userns));
    assert_eq!(uids_of(exec_pid), vec![user.uid; 4]);

    // A shell reads its commands from stdin here.
    let mut shell = user.bedlab(&["shell", "peer-b"]);
    shell
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = shell.spawn().expect("bedlab shell");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(
                format!(
                    "echo node=$BEDLAB_NODE; ip -4 -o addr show eth0\n\
                     {BIN} ps\n\
                     {BIN} exec peer-a -- ping -n -c 1 -W 2 10.0.1.1\n\
                     exit 4\n"
                )
                .as_bytes(),
            )
            .expect("write to the shell");
    }
    let o = child.wait_with_output().expect("shell output");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        stdout(&o).contains("node=peer-b") && stdout(&o).contains("10.0.2.2/24"),
        "{}",
        text(&o)
    );
    // Inside the lab's user namespace (uid 0 there), bedlab still finds the user's runs and
    // reaches another node without joining the namespace it is already in.
    assert!(
        stdout(&o).contains(&format!("{run_id}  userns-mixed")) && stdout(&o).contains("running"),
        "{}",
        text(&o)
    );
    assert!(stdout(&o).contains("1 received"), "{}", text(&o));

    // The user sees the run; root, reading the same directory, does not (it is not root's).
    let o = user.run(&["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_slice(&o.stdout).expect("ps --json");
    let runs = ps.as_array().expect("an array");
    assert_eq!(runs.len(), 1, "{ps}");
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["alive"], true);
    assert_eq!(runs[0]["user_namespace"], true);
    assert!(runs::list(&state).is_empty(), "root does not list the user's run");
    let o = Command::new(BIN)
        .arg("--state-root")
        .arg(&state)
        .args(["exec", "peer-a", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("no lab is running"), "{}", text(&o));

    // Down: the lab exits cleanly, the exec'd sleep with it, and nothing is left.
    let o = user.run(&["down"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut children = std::mem::take(&mut cleanup.children);
    let status = children[0].wait().expect("bedlab up exits");
    assert!(status.success(), "bedlab up exits cleanly: {status}");
    let _ = children[1].wait();
    assert!(!record_file.exists(), "the record is gone");
    assert_nothing_left(&record, user.uid, &[], "after down");
    let capture = user.path("out").join(&run_id).join("capture.pcapng");
    let meta = std::fs::metadata(&capture).expect("the capture is kept");
    assert_eq!(meta.uid(), user.uid, "artifacts belong to the user");
    assert!(meta.len() > 0);
    let o = user.run(&["ps"]);
    assert_eq!(stdout(&o).trim(), "no labs", "{}", text(&o));
}

/// A killed user lab is reaped by the user's next start and by `bedlab gc` (its namespaces
/// die with their last process, which is what `gc` kills), while a user can neither see
/// nor reap nor stop root's runs.
#[test]
fn a_killed_user_lab_is_reaped_and_root_runs_are_out_of_reach() {
    require_userns!();
    let user = User::new(441_102, true);
    let state = user.path("state");
    let state_arg = state.to_str().expect("utf-8").to_string();
    let topo = topology_file("two-nats");
    let mut cleanup = Cleanup {
        children: Vec::new(),
        inodes: BTreeSet::new(),
    };

    // Root's lab, and a dead run of root's, in a directory everyone may read.
    let root_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_state = root_dir.path().join("state");
    let root_lab = bedlab::lab::Lab::from_file(&topo, opts(root_dir.path(), false)).expect("root's lab");
    let mut dead = RunRecord::for_this_process("root-dead", "t", root_dir.path()).unwrap();
    dead.pid_start += 1;
    dead.save(&root_state).unwrap();
    let root_state_arg = root_state.to_str().expect("utf-8");
    let visible = |o: &Output| -> Vec<String> {
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["run_id"].as_str().map(String::from))
            .collect()
    };
    let o = user.run(&["--state-root", root_state_arg, "ps", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        visible(&o).is_empty(),
        "the user sees none of root's runs: {}",
        text(&o)
    );
    let o = user.run(&["--state-root", root_state_arg, "gc", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("gc --json");
    assert_eq!(report["runs_reaped"], serde_json::json!([]), "{report}");
    assert!(root_state.join("root-dead/run.json").exists());
    let o = user.run(&["--state-root", root_state_arg, "down", "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = user.run(&[
        "--state-root",
        root_state_arg,
        "exec",
        "--run",
        root_lab.run_id(),
        "peer-a",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let (ok, out) = ping(&root_lab, "peer-b", "10.0.2.1".parse().unwrap(), 1, &[]);
    assert!(ok, "root's lab still runs: {out}");

    // The user's lab, with a command started through exec, killed outright.
    let (first, _) = user.up(&topo, &["--no-capture", "--state-root", &state_arg], "first");
    let first_pid = first.id();
    cleanup.children.push(first);
    let record = only_record(&state);
    cleanup.inodes.extend(record.namespaces.iter().map(|n| n.inode));
    // Once `bedlab exec` waits for its command, it no longer checks on the lab: the sleep
    // then outlives a killed lab (as a command started by hand would).
    let peer_a = exec_sleeper(&user, &state_arg, &record, "peer-a", &mut cleanup);
    // SAFETY: kill has no memory-safety preconditions; first_pid is our child.
    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    let _ = cleanup.children[0].wait();
    assert!(
        !pids_in(&peer_a).is_empty(),
        "the exec'd sleep outlives the killed lab (so there is something to reap)"
    );

    // The next start reaps it: the sleep dies, the record goes, the namespaces with them.
    let (second, _) = user.up(&topo, &["--no-capture", "--state-root", &state_arg], "second");
    let second_pid = second.id();
    cleanup.children.push(second);
    assert!(
        wait_until(Duration::from_secs(10), || pids_in(&peer_a).is_empty()),
        "the next start killed what the dead run left"
    );
    assert_nothing_left(&record, user.uid, &[second_pid], "after the next start");
    let now = only_record(&state);
    assert_eq!(now.pid, second_pid, "only the new run is recorded");
    cleanup.inodes.extend(now.namespaces.iter().map(|n| n.inode));

    // Killed again; this time `bedlab gc` reaps it.
    exec_sleeper(&user, &state_arg, &now, "peer-b", &mut cleanup);
    // SAFETY: as above.
    unsafe { libc::kill(second_pid as i32, libc::SIGKILL) };
    let _ = cleanup.children[2].wait();
    let o = user.run(&["--state-root", &state_arg, "gc", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("gc --json");
    assert_eq!(report["runs_reaped"], serde_json::json!([now.run_id]), "{report}");
    assert!(
        report["processes_killed"]
            .as_array()
            .is_some_and(|k| !k.is_empty()),
        "{report}"
    );
    assert_nothing_left(&now, user.uid, &[], "after gc");
    assert!(
        std::fs::read_dir(&state).unwrap().next().is_none(),
        "no records left"
    );

    // Root's runs were never touched.
    assert!(root_state.join("root-dead/run.json").exists());
    let (ok, out) = ping(&root_lab, "peer-a", "10.0.1.1".parse().unwrap(), 1, &[]);
    assert!(ok, "root's lab still runs: {out}");
    root_lab.teardown().unwrap();
}

/// `bedlab run` (conformance cells) as a normal user: the cell's lab, the 6bed4 daemons
/// (which make their own TUN devices) and the corpus injection all run in the user's user
/// namespace, and the results belong to the user.
#[test]
fn a_normal_user_runs_conformance_cells() {
    require_userns!();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !repo.join("target/release/sixbed4").exists() && !repo.join("target/debug/sixbed4").exists() {
        eprintln!("skipped: needs a built sixbed4 (cargo build -p sixbed4)");
        return;
    }
    let user = User::new(441_103, true);
    let out_dir = user.path("out");
    let state = user.path("state");
    // One cell with a 6bed4 bypass path through two NATs, one that injects the negative
    // corpus from inside a node (through `bedlab inject`).
    for (id, filter) in [
        ("userns-bypass", "bypass[nat-a=full-cone,nat-b=full-cone"),
        ("userns-negative", "negative"),
    ] {
        let mut cmd = user.bedlab(&[
            "--state-root",
            state.to_str().expect("utf-8"),
            "run",
            "--filter",
            filter,
            "--out",
            out_dir.to_str().expect("utf-8"),
            "--run-id",
            id,
        ]);
        // Scenarios, adapters and topologies are found relative to the repository.
        cmd.current_dir(repo);
        let o = cmd.output().expect("bedlab run");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out_dir.join(id).join("report.json")).unwrap_or_default())
                .unwrap_or_default();
        let cells = report["cells"].as_array().cloned().unwrap_or_default();
        assert!(o.status.success(), "{id}: {}\n{report}", text(&o));
        assert_eq!(cells.len(), 1, "{id}: {}", text(&o));
        assert_eq!(cells[0]["outcome"], "PASS", "{id}: {}", cells[0]);
        let checks = cells[0]["checks"].as_array().cloned().unwrap_or_default();
        assert!(
            checks.iter().filter(|c| c["verdict"] == "PASS").count() >= 10,
            "{id}: the checks ran on a real capture: {}",
            cells[0]
        );
        let meta = std::fs::metadata(out_dir.join(id).join("report.json")).unwrap();
        assert_eq!(meta.uid(), user.uid, "results belong to the user");
    }
    assert!(
        runs::list(&state).is_empty() && std::fs::read_dir(&state).is_ok_and(|mut d| d.next().is_none()),
        "every cell's record is gone"
    );
}

/// Before anything is built: a `/dev/net/tun` the user cannot open is named in one
/// sentence (exit 2, no record, no artifacts, no user namespace), and a run-record
/// directory somebody else made in `/tmp` is refused.
#[test]
fn preflight_refuses_an_inaccessible_tun_and_a_squatted_state_dir() {
    require_userns!();
    let user = User::new(441_104, false);
    let state = user.path("state");
    let out = user.path("out");
    let topo = topology_file("two-nats");
    let o = user.run(&[
        "--state-root",
        state.to_str().expect("utf-8"),
        "up",
        topo.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    let problems: Vec<&str> = err.lines().filter(|l| l.trim_start().starts_with("- ")).collect();
    assert_eq!(problems.len(), 1, "exactly one problem: {err}");
    assert!(
        problems[0].contains("/dev/net/tun is not accessible to uid 441104")
            && problems[0].contains("mode 0600")
            && problems[0].contains("owner uid 0"),
        "{err}"
    );
    assert!(!problems[0].contains(". "), "one sentence: {err}");
    assert!(!state.exists(), "no run-record directory");
    assert!(!out.exists(), "no artifacts");

    // Everything wrong at once: with nft gone too, a topology with a Linux NAT gets both
    // sentences.
    let mut user = user;
    user.hidden = [
        "/usr/sbin/nft",
        "/usr/bin/nft",
        "/sbin/nft",
        "/usr/local/sbin/nft",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.is_file())
    .collect();
    assert!(!user.hidden.is_empty(), "nft is installed (the Makefile's deps)");
    let mixed = user.path("mixed.toml");
    std::fs::write(&mixed, MIXED).unwrap();
    let o = user.run(&[
        "--state-root",
        state.to_str().expect("utf-8"),
        "up",
        mixed.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    let problems: Vec<&str> = err.lines().filter(|l| l.trim_start().starts_with("- ")).collect();
    assert_eq!(problems.len(), 2, "{err}");
    assert!(problems[0].contains("/dev/net/tun is not accessible"), "{err}");
    assert!(problems[1].contains("nft is not installed"), "{err}");
    assert!(!state.exists() && !out.exists(), "nothing created");
    user.hidden.clear();

    // The same refusal for `bedlab run`, before any cell starts.
    let o = user
        .bedlab(&[
            "--state-root",
            state.to_str().expect("utf-8"),
            "run",
            "--filter",
            "negative",
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("/dev/net/tun is not accessible"),
        "{}",
        text(&o)
    );
    assert!(!out.exists(), "no artifacts");

    // Without $XDG_RUNTIME_DIR, records go to /tmp/bedlab-<uid>; one made by someone else
    // is refused in one sentence.
    let squatted = PathBuf::from(format!("/tmp/bedlab-{}", user.uid));
    let _ = std::fs::remove_dir_all(&squatted);
    std::fs::create_dir(&squatted).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = RemoveDir(squatted.clone());
    let o = user
        .bedlab(&["ps"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!(
            "/tmp/bedlab-{} belongs to uid 0, not to uid {}",
            user.uid, user.uid
        )),
        "{}",
        text(&o)
    );
    std::fs::remove_dir(&squatted).unwrap();
    let o = user
        .bedlab(&["ps"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), "no labs");
}

/// Pids of every live (non-zombie) process of `uid`: with a uid only this test uses, a
/// dead lab has left nothing exactly when there are none (namespaces without processes,
/// descriptors or mounts are freed by the kernel, TUN devices and rules with them).
fn processes_of(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| uids_of(pid).first() == Some(&uid) && !is_zombie(pid))
        .collect()
}

/// `bedlab up` of a 51-namespace lab killed during its bring-up, while it runs, and while it
/// tears down: after the user's `bedlab gc`, not one process of the user is left (so
/// neither are its namespaces), and the record is gone.
#[test]
fn a_user_lab_killed_at_any_phase_leaves_nothing() {
    require_userns!();
    let user = User::new(441_105, true);
    let state = user.path("state");
    let state_arg = state.to_str().expect("utf-8").to_string();
    let topo = topology_file("mesh-50");
    let records = |state: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(state)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("run.json"))
            .filter(|p| p.exists())
            .collect()
    };
    for phase in ["bring-up", "running", "teardown"] {
        let mut cleanup = Cleanup {
            children: Vec::new(),
            inodes: BTreeSet::new(),
        };
        let log = user.path(&format!("{phase}.stdout"));
        let err = user.path(&format!("{phase}.stderr"));
        let out = user.path("out");
        let child = user
            .bedlab(&[
                "--state-root",
                &state_arg,
                "up",
                topo.to_str().expect("utf-8"),
                "--json",
                "--no-capture",
                "--out",
                out.to_str().expect("utf-8"),
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        cleanup.children.push(child);
        let described = || std::fs::read_to_string(&log).is_ok_and(|s| s.ends_with('\n'));
        match phase {
            // The record is written before the first namespace is made.
            "bring-up" => assert!(wait_until(Duration::from_secs(30), || !records(&state).is_empty())),
            "running" => {
                assert!(wait_until(Duration::from_secs(60), described), "{phase}: up");
                let sleeper = user
                    .bedlab(&[
                        "--state-root",
                        &state_arg,
                        "exec",
                        "peer-01",
                        "--",
                        "sleep",
                        "300",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                cleanup.children.push(sleeper);
                assert!(wait_until(Duration::from_secs(10), || {
                    processes_of(user.uid).iter().any(|p| cmdline(*p) == "sleep 300")
                }));
            }
            _ => {
                assert!(wait_until(Duration::from_secs(60), described), "{phase}: up");
                // SAFETY: kill has no memory-safety preconditions; pid is our child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                assert!(wait_until(Duration::from_secs(10), || {
                    std::fs::read_to_string(&err).is_ok_and(|s| s.contains("tearing down"))
                }));
            }
        }
        if let Some(r) = records(&state).first().and_then(|p| RunRecord::load(p).ok()) {
            cleanup.inodes.extend(r.namespaces.iter().map(|n| n.inode));
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = cleanup.children[0].wait();
        let o = user.run(&["--state-root", &state_arg, "gc"]);
        assert!(o.status.success(), "{phase}: {}", text(&o));
        for c in cleanup.children.iter_mut().skip(1) {
            let _ = c.wait();
        }
        let gone = wait_until(Duration::from_secs(15), || processes_of(user.uid).is_empty());
        let left: Vec<String> = processes_of(user.uid)
            .into_iter()
            .map(|p| format!("{p} {}", cmdline(p)))
            .collect();
        assert!(gone, "{phase}: processes of the user left: {left:?}");
        assert!(records(&state).is_empty(), "{phase}: the record is gone");
        eprintln!("{phase}: killed, reaped, nothing left");
    }
}

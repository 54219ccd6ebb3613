//! Run records and garbage collection of dead runs.
//!
//! Every lab run writes `<state root>/<run-id>/run.json` before it creates anything, and
//! adds each namespace's inode to it before any process is started there. If bedlab is
//! killed, its namespaces die with their last process; `gc` (run by `bedlab gc` and at every
//! start) finds records whose owner is gone, kills the processes still inside those
//! namespaces (and only those), and removes the record. Nothing else on the machine is
//! touched.
//!
//! The state root is `/run/bedlab` for root and a directory of the user's own otherwise
//! (`$XDG_RUNTIME_DIR/bedlab`, else `/tmp/bedlab-<uid>`), see [`default_state_root`]. A run
//! belongs to whoever owns its record file: [`list`], and so `gc`, `ps`, `exec` and `down`,
//! see only the caller's own runs, whatever directory they are pointed at.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where root's run records live (tmpfs: gone after a reboot, as are the namespaces).
pub const STATE_ROOT: &str = "/run/bedlab";

/// Where this user's run records live: [`STATE_ROOT`] for root, otherwise
/// `$XDG_RUNTIME_DIR/bedlab` (a per-user tmpfs that only the user can enter) when the
/// variable names an absolute directory, else `/tmp/bedlab-<uid>`. Inside a lab's user
/// namespace (`bedlab shell`), where the user is uid 0, it is still the user's place.
pub fn default_state_root() -> PathBuf {
    let uid = match crate::userns::euid() {
        0 => crate::userns::mapped_from().unwrap_or(0),
        uid => uid,
    };
    if uid == 0 {
        return PathBuf::from(STATE_ROOT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() && dir.is_dir() => dir.join("bedlab"),
        _ => PathBuf::from(format!("/tmp/bedlab-{uid}")),
    }
}

/// Why a state root cannot hold this user's run records.
#[derive(Debug, thiserror::Error)]
pub enum StateRootError {
    #[error("cannot create the run-record directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read the run-record directory {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },
    #[error("{path} is not a directory of its own (a symbolic link or a file): remove it or choose another place for run records")]
    NotADirectory { path: PathBuf },
    #[error("{path} belongs to uid {owner}, not to uid {me}: someone else made it, so bedlab will not keep run records there (remove it)")]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} is writable by other users (mode {mode:04o}): make it 0700 (chmod 0700 {path})")]
    Writable { path: PathBuf, mode: u32 },
}

/// Creates `root` if it does not exist (0700 for a normal user) and checks that it is a
/// real directory owned by this user and writable by nobody else, so that nobody can plant
/// or remove this user's run records.
pub fn ensure_state_root(root: &Path) -> Result<(), StateRootError> {
    if std::fs::symlink_metadata(root).is_err() {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StateRootError::Create {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        // Root's records may be read by anyone (as before); a user's only by the user.
        let mode = if crate::userns::euid() == 0 && crate::userns::in_initial() {
            0o755
        } else {
            0o700
        };
        match std::fs::DirBuilder::new().mode(mode).create(root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(StateRootError::Create {
                    path: root.to_path_buf(),
                    source: e,
                })
            }
            _ => {}
        }
    }
    check_state_root(root).map(|_| ())
}

/// Checks an existing state root as [`ensure_state_root`] does; `Ok(false)` when it does
/// not exist (then there are no runs to see).
pub fn check_state_root(root: &Path) -> Result<bool, StateRootError> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(StateRootError::Inspect {
                path: root.to_path_buf(),
                source,
            })
        }
    };
    let path = root.to_path_buf();
    if !meta.is_dir() {
        return Err(StateRootError::NotADirectory { path });
    }
    let me = crate::userns::euid();
    if meta.uid() != me {
        return Err(StateRootError::WrongOwner {
            path,
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(StateRootError::Writable { path, mode });
    }
    Ok(true)
}

/// A namespace that belongs to a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsRecord {
    pub node: String,
    pub inode: u64,
    /// The descriptor number in the owner process (`/proc/<pid>/fd/<fd>`), for `bedlab exec`.
    pub fd: i32,
}

/// What a run leaves on disk while it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub pid: u32,
    /// The owner's start time in clock ticks (`/proc/<pid>/stat` field 22): a reused pid
    /// has another.
    pub pid_start: u64,
    pub topology: String,
    pub artifacts: PathBuf,
    pub namespaces: Vec<NsRecord>,
    /// The inode of the user namespace the owner built the lab in, when that is not the
    /// initial one (a normal user's lab): `bedlab exec` joins it before a node's network
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<u64>,
}

impl RunRecord {
    /// A record for a run owned by this process.
    pub fn for_this_process(run_id: &str, topology: &str, artifacts: &Path) -> io::Result<RunRecord> {
        let pid = std::process::id();
        Ok(RunRecord {
            run_id: run_id.to_string(),
            pid,
            pid_start: process_start(pid).ok_or_else(|| io::Error::other("cannot read own start time"))?,
            topology: topology.to_string(),
            artifacts: artifacts.to_path_buf(),
            namespaces: Vec::new(),
            userns: if crate::userns::in_initial() {
                None
            } else {
                Some(crate::userns::current_inode()?)
            },
        })
    }

    pub fn dir(root: &Path, run_id: &str) -> PathBuf {
        root.join(run_id)
    }

    /// Writes the record atomically (temporary file, then rename).
    pub fn save(&self, root: &Path) -> io::Result<()> {
        let dir = Self::dir(root, &self.run_id);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("run.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        std::fs::rename(tmp, dir.join("run.json"))
    }

    pub fn load(path: &Path) -> io::Result<RunRecord> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
    }

    /// Removes the record (at a clean teardown).
    pub fn remove(&self, root: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(Self::dir(root, &self.run_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether the owning bedlab process is still running (a zombie is not: it holds no
    /// descriptors any more).
    pub fn owner_alive(&self) -> bool {
        process_start(self.pid) == Some(self.pid_start) && !is_zombie(self.pid)
    }
}

/// Every run record under `root` that belongs to this user, i.e. whose `run.json` this
/// user owns (unreadable ones are returned as errors with their path). Records of other
/// users are not listed: they are not this user's to drive or to reap.
pub fn list(root: &Path) -> Vec<(PathBuf, io::Result<RunRecord>)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let me = crate::userns::euid();
    let mut out: Vec<_> = entries
        .flatten()
        .map(|e| e.path().join("run.json"))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.uid() == me))
        .map(|p| {
            let r = RunRecord::load(&p);
            (p, r)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a garbage collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub runs_reaped: Vec<String>,
    pub processes_killed: Vec<u32>,
    pub live_runs: Vec<String>,
    /// Dead runs this process cannot inspect (see [`can_reap`]): left for a `gc` that can.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_for_later: Vec<String>,
}

/// Whether this process can see every process of a dead run, so that reaping it (killing
/// what is left, then forgetting the record) loses nothing. From the initial user
/// namespace it can: root sees everything, and a user owns the user namespaces its labs
/// were built in. From inside another user namespace (a normal user's `bedlab up`, once it
/// has entered its own) the kernel hides the namespaces of processes in a sibling user
/// namespace, so such a run is left for a `gc` from outside; `bedlab` runs that one before
/// it enters its user namespace.
pub fn can_reap(record: &RunRecord) -> bool {
    crate::userns::in_initial()
        || record
            .userns
            .is_some_and(|ino| crate::userns::current_inode().ok() == Some(ino))
}

/// Reaps every run under `root` whose owner is gone.
pub fn gc(root: &Path) -> GcReport {
    let mut report = GcReport::default();
    for (path, record) in list(root) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("ignoring unreadable run record {}: {e}", path.display());
                continue;
            }
        };
        if record.owner_alive() {
            report.live_runs.push(record.run_id);
            continue;
        }
        if !can_reap(&record) {
            report.left_for_later.push(record.run_id);
            continue;
        }
        let inodes: Vec<u64> = record.namespaces.iter().map(|n| n.inode).collect();
        report.processes_killed.extend(kill_processes_in(&inodes));
        let _ = record.remove(root);
        report.runs_reaped.push(record.run_id);
    }
    report
}

/// SIGKILLs every process whose network namespace is one of `inodes`; returns their pids.
/// Namespace inodes are unique while the namespace lives, and a namespace with a process in
/// it is alive, so this touches only processes inside the dead run's namespaces.
pub fn kill_processes_in(inodes: &[u64]) -> Vec<u32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut killed = Vec::new();
    for _round in 0..5 {
        let victims: Vec<u32> = all_pids()
            .into_iter()
            .filter(|&pid| pid != me)
            .filter(|&pid| crate::netns::netns_inode_of(pid).is_some_and(|ino| inodes.contains(&ino)))
            .collect();
        if victims.is_empty() {
            break;
        }
        for &pid in &victims {
            crate::process::kill_group(pid, libc::SIGKILL);
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's start time in clock ticks, or `None` if it does not exist.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // After ')' come fields 3.. ; starttime is field 22, i.e. index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process has exited but not been reaped by its parent yet.
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3))
                .map(|st| st == "Z" || st == "X")
        })
        .unwrap_or(false)
}

/// A new run id: time plus randomness, unique across parallel labs.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let noise: u32 = rand::random();
    format!("bl{:x}{:06x}", now.as_secs(), noise & 0xFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let a = process_start(me).unwrap();
        assert_eq!(process_start(me), Some(a));
        assert_eq!(process_start(u32::MAX), None);
    }

    #[test]
    fn records_round_trip_and_dead_owners_are_reaped() {
        let root = tempfile::tempdir().unwrap();
        let mut live = RunRecord::for_this_process("live", "t", Path::new("/tmp")).unwrap();
        live.namespaces.push(NsRecord {
            node: "a".into(),
            inode: 1,
            fd: 3,
        });
        live.save(root.path()).unwrap();
        let loaded = RunRecord::load(&root.path().join("live/run.json")).unwrap();
        assert_eq!(loaded, live);
        // A record whose owner pid exists but started at another time is dead (pid reuse).
        let mut dead = live.clone();
        dead.run_id = "dead".into();
        dead.pid_start += 1;
        dead.namespaces.clear();
        dead.save(root.path()).unwrap();
        let report = gc(root.path());
        assert_eq!(report.runs_reaped, vec!["dead".to_string()]);
        assert_eq!(report.live_runs, vec!["live".to_string()]);
        assert!(!root.path().join("dead").exists());
        assert!(root.path().join("live").exists());
    }

    #[test]
    fn state_roots_are_created_private_and_refused_when_someone_else_could_write_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/state");
        ensure_state_root(&root).unwrap();
        let meta = std::fs::metadata(&root).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.uid(), crate::userns::euid());
        let mode = meta.permissions().mode() & 0o777;
        if crate::userns::euid() == 0 && crate::userns::in_initial() {
            assert_eq!(mode, 0o755, "root's records stay readable as before");
        } else {
            assert_eq!(mode, 0o700, "a user's records are the user's alone");
        }
        ensure_state_root(&root).unwrap();
        assert!(check_state_root(&dir.path().join("absent")).is_ok_and(|exists| !exists));

        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_state_root(&root).unwrap_err();
        assert!(matches!(e, StateRootError::Writable { mode: 0o777, .. }), "{e}");
        assert!(e.to_string().contains("chmod 0700"), "{e}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let e = ensure_state_root(&link).unwrap_err();
        assert!(matches!(e, StateRootError::NotADirectory { .. }), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            check_state_root(&file),
            Err(StateRootError::NotADirectory { .. })
        ));

        if crate::userns::euid() == 0 {
            // A directory made by someone else (a squatter in /tmp) is refused.
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(4_242_424), Some(4_242_424)).unwrap();
            let e = ensure_state_root(&theirs).unwrap_err();
            assert!(
                matches!(
                    e,
                    StateRootError::WrongOwner {
                        owner: 4_242_424,
                        me: 0,
                        ..
                    }
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn other_users_records_are_neither_listed_nor_reaped() {
        if crate::userns::euid() != 0 {
            eprintln!("skipped: handing a record to another uid needs root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let mut theirs = RunRecord::for_this_process("theirs", "t", Path::new("/tmp")).unwrap();
        theirs.pid_start += 1; // dead: a gc of the owner would reap it
        theirs.save(root.path()).unwrap();
        let mine = RunRecord {
            run_id: "mine".into(),
            ..theirs.clone()
        };
        mine.save(root.path()).unwrap();
        let file = root.path().join("theirs/run.json");
        std::os::unix::fs::chown(&file, Some(4_242_424), Some(4_242_424)).unwrap();
        let listed: Vec<String> = list(root.path())
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .map(|r| r.run_id)
            .collect();
        assert_eq!(listed, vec!["mine".to_string()]);
        let report = gc(root.path());
        assert_eq!(report.runs_reaped, vec!["mine".to_string()]);
        assert!(file.exists(), "another user's record is left alone");
    }

    #[test]
    fn records_of_the_initial_namespace_name_no_user_namespace() {
        let r = RunRecord::for_this_process("r", "t", Path::new("/tmp")).unwrap();
        assert_eq!(r.userns.is_some(), !crate::userns::in_initial());
        // Records written before user namespaces were recorded still load.
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("userns") || r.userns.is_some());
        let old: RunRecord = serde_json::from_str(
            r#"{"run_id":"x","pid":1,"pid_start":2,"topology":"t","artifacts":"/a","namespaces":[]}"#,
        )
        .unwrap();
        assert_eq!(old.userns, None);
    }

    #[test]
    fn run_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..100).map(|_| new_run_id()).collect();
        assert_eq!(ids.len(), 100);
    }
}

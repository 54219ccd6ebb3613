//! Processes run inside lab namespaces.
//!
//! Each child enters its node's namespace between fork and exec, leads its own process
//! group (so teardown kills everything it started), and asks the kernel for SIGKILL when
//! bedlab dies (`PR_SET_PDEATHSIG`). The death signal fires when the *thread* that forked
//! the child exits, so children are spawned only from long-lived threads.
//! stdout and stderr go to per-node log files.

use crate::netns::{setns, NetNs};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A process running inside a lab node.
#[derive(Debug)]
pub struct LabProcess {
    pub node: String,
    pub name: String,
    child: Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

/// Where a process's output goes.
pub struct Logs {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Logs {
    /// `<dir>/<node>.<name>.stdout` and `.stderr`.
    pub fn in_dir(dir: &Path, node: &str, name: &str) -> Logs {
        Logs {
            stdout: dir.join(format!("{node}.{name}.stdout")),
            stderr: dir.join(format!("{node}.{name}.stderr")),
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening log {}: {e}", path.display())))
}

/// Spawns `argv` inside `ns`.
pub fn spawn_in(ns: &NetNs, node: &str, name: &str, argv: &[String], logs: Logs) -> io::Result<LabProcess> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let ns_fd = ns.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(append(&logs.stdout)?)
        .stderr(append(&logs.stderr)?);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (setns, setpgid, prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            setns(ns_fd)?;
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // bedlab may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::other("bedlab exited while starting the process"));
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting {program:?} in {node}: {e}")))?;
    Ok(LabProcess {
        node: node.into(),
        name: name.into(),
        child,
        stdout_path: logs.stdout,
        stderr_path: logs.stderr,
    })
}

impl LabProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and how).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`; reaps the child.
    pub fn stop(&mut self, grace: Duration) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.child.try_wait()? {
            kill_group(self.pid(), libc::SIGKILL);
            return Ok(Some(status));
        }
        kill_group(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                kill_group(self.pid(), libc::SIGKILL);
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        kill_group(self.pid(), libc::SIGKILL);
        self.child.wait().map(Some)
    }

    /// The last `lines` lines of the process's stderr, for error reports.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.stderr_path, lines)
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_millis(200));
    }
}

/// Sends `sig` to the process group led by `pgid` (and to the process itself, in case it
/// left the group).
pub fn kill_group(pgid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pgid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; pid > 1 so never "everyone".
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_inside_the_namespace_logs_and_stops() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ns = NetNs::create().unwrap();
        let argv: Vec<String> = [
            "sh",
            "-c",
            "readlink /proc/self/ns/net; echo oops >&2; exec sleep 30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = spawn_in(&ns, "n1", "probe", &argv, Logs::in_dir(dir.path(), "n1", "probe")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Both lines are written before `exec sleep`: wait for both, not just stdout.
        let written = |path: &Path| !std::fs::read_to_string(path).unwrap_or_default().is_empty();
        while !(written(&p.stdout_path) && written(&p.stderr_path)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = std::fs::read_to_string(&p.stdout_path).unwrap();
        assert_eq!(out.trim(), format!("net:[{}]", ns.inode()));
        let status = p.stop(Duration::from_secs(2)).unwrap().unwrap();
        assert!(!status.success());
        assert_eq!(p.stderr_tail(5), "oops");
    }
}

//! User namespaces: how a normal user builds a lab.
//!
//! A lab needs `CAP_NET_ADMIN` (TUN devices, addresses, routes, nftables), `CAP_NET_RAW`
//! (captures) and `CAP_SYS_ADMIN` (creating and entering network namespaces). The kernel
//! checks them against the user namespace that *owns* the network namespace. So a normal
//! user first creates a user namespace of its own ([`enter`]), in which it is root with
//! every capability, and every network namespace it then creates is owned by that user
//! namespace: the lab is built exactly as root builds it, while outside every process and
//! file belongs to the user.
//!
//! One uid and one gid are mapped (the user's, to 0 inside); `setgroups` is denied first,
//! as the kernel requires before an unprivileged process writes its own `gid_map`.
//!
//! Whoever joins a running lab later (`bedlab exec`, `bedlab shell`) enters the lab's user
//! namespace before its network namespace ([`setns_user`]): the kernel lets the owner of a
//! user namespace (same euid, in the parent namespace) join it with full capabilities.

use std::io;
use std::os::unix::fs::MetadataExt;

/// Whether this process is in the machine's initial user namespace (where uid 0 is root).
pub fn in_initial() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| is_identity_map(&m))
}

/// `0 0 4294967295`: the initial namespace's map (every uid maps to itself).
fn is_identity_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    lines.len() == 1 && lines[0] == ["0", "0", "4294967295"]
}

/// The uid outside that this process's uid 0 stands for, in a user namespace that maps one
/// uid (`0 <uid> 1`, as [`enter`] writes it); `None` elsewhere (the initial namespace, or a
/// container's namespace mapping a range).
pub fn mapped_from() -> Option<u32> {
    std::fs::read_to_string("/proc/self/uid_map")
        .ok()
        .and_then(|m| single_map(&m))
}

/// The outside uid of a one-line, one-uid map of uid 0.
fn single_map(map: &str) -> Option<u32> {
    let mut lines = map.lines().filter(|l| !l.trim().is_empty());
    let fields: Vec<&str> = lines.next()?.split_whitespace().collect();
    if lines.next().is_some() || fields.len() != 3 || fields[0] != "0" || fields[2] != "1" {
        return None;
    }
    fields[1].parse().ok()
}

/// The inode of this process's user namespace (its identity).
pub fn current_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/user")?.ino())
}

/// The effective uid (inside a user namespace: as seen there).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The effective gid.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

/// Why a user namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error(
        "bedlab must create its user namespace before it starts threads ({0} threads run): \
         this is a bug in the caller"
    )]
    Threaded(usize),
    #[error("the kernel refused to create a user namespace for uid {uid}: {source}")]
    Unshare { uid: u32, source: io::Error },
    #[error("writing {path} in the new user namespace: {source}")]
    Map { path: &'static str, source: io::Error },
}

/// Moves this (single-threaded) process into a new user namespace in which the caller's
/// uid and gid are 0. Afterwards the process has every capability over namespaces it
/// creates, and none over the rest of the machine.
pub fn enter() -> Result<(), EnterError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(EnterError::Threaded(threads));
    }
    let (uid, gid) = (euid(), egid());
    // SAFETY: unshare only changes this process's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(EnterError::Unshare {
            uid,
            source: io::Error::last_os_error(),
        });
    }
    let write = |path: &'static str, text: String| {
        std::fs::write(path, text).map_err(|source| EnterError::Map { path, source })
    };
    write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    // Without `deny`, the kernel refuses an unprivileged gid_map (a process could otherwise
    // drop a group that denies it access to something).
    write("/proc/self/setgroups", "deny\n".into())?;
    write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    Ok(())
}

/// The number of threads of this process (1 if it cannot be read).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// `setns(fd, CLONE_NEWUSER)`; async-signal-safe, so usable between fork and exec (where
/// the process is single-threaded, as the kernel requires for joining a user namespace).
pub fn setns_user(fd: i32) -> io::Result<()> {
    // SAFETY: setns only reads the descriptor and changes this process's namespace.
    if unsafe { libc::setns(fd, libc::CLONE_NEWUSER) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's switches for unprivileged user namespaces (`None`: the knob does not exist
/// on this kernel, so it does not restrict anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    /// `user.max_user_namespaces` (0 disables user namespaces for everyone but root).
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian and Ubuntu kernels; 0 disables them).
    pub unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu; 1 takes every capability
    /// inside the namespace away from programs without an AppArmor profile allowing it).
    pub apparmor_restrict: Option<u64>,
    /// This process's AppArmor label (`unconfined` when no profile applies).
    pub apparmor_label: Option<String>,
}

impl Knobs {
    /// Reads the knobs of this machine.
    pub fn read() -> Knobs {
        let num = |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
        let label = ["/proc/self/attr/apparmor/current", "/proc/self/attr/current"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim_end_matches(['\0', '\n']).trim().to_string());
        Knobs {
            max_user_namespaces: num("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: num("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: num("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            apparmor_label: label,
        }
    }

    /// One sentence per knob that forbids an unprivileged user namespace (empty: allowed).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_user_namespaces == Some(0) {
            out.push(
                "user namespaces are disabled (user.max_user_namespaces = 0): run bedlab as root, or \
                 allow them with sysctl -w user.max_user_namespaces=10000"
                    .to_string(),
            );
        }
        if self.unprivileged_userns_clone == Some(0) {
            out.push(
                "the kernel forbids unprivileged user namespaces (kernel.unprivileged_userns_clone = 0): \
                 run bedlab as root, or allow them with sysctl -w kernel.unprivileged_userns_clone=1"
                    .to_string(),
            );
        }
        let unconfined = match self.apparmor_label.as_deref() {
            None => true,
            Some(l) => l.is_empty() || l.starts_with("unconfined"),
        };
        if self.apparmor_restrict == Some(1) && unconfined {
            out.push(
                "AppArmor takes every capability away from user namespaces of unconfined programs \
                 (kernel.apparmor_restrict_unprivileged_userns = 1): run bedlab as root, or give it an \
                 AppArmor profile with the userns permission"
                    .to_string(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_identity_map_is_initial() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("0 0 4294967295\n1 1 1\n"));
        assert!(!is_identity_map(""));
        assert_eq!(single_map("         0       1000          1\n"), Some(1000));
        assert_eq!(single_map("         0          0 4294967295\n"), None);
        assert_eq!(single_map("0 100000 65536\n"), None);
        assert_eq!(single_map("0 1000 1\n1 2000 1\n"), None);
    }

    #[test]
    fn each_forbidding_knob_gets_its_own_sentence() {
        let open = Knobs {
            max_user_namespaces: Some(15000),
            unprivileged_userns_clone: Some(1),
            apparmor_restrict: Some(0),
            apparmor_label: Some("unconfined".into()),
        };
        assert!(open.problems().is_empty());
        assert!(
            Knobs::default().problems().is_empty(),
            "absent knobs restrict nothing"
        );

        let cases = [
            (
                Knobs {
                    max_user_namespaces: Some(0),
                    ..open.clone()
                },
                "user.max_user_namespaces = 0",
            ),
            (
                Knobs {
                    unprivileged_userns_clone: Some(0),
                    ..open.clone()
                },
                "kernel.unprivileged_userns_clone = 0",
            ),
            (
                Knobs {
                    apparmor_restrict: Some(1),
                    ..open.clone()
                },
                "kernel.apparmor_restrict_unprivileged_userns = 1",
            ),
        ];
        for (knobs, names) in cases {
            let p = knobs.problems();
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].contains(names), "{p:?}");
            assert!(p[0].contains("run bedlab as root"), "says what to do: {p:?}");
            assert!(
                !p[0].contains(". ") && !p[0].contains('\n'),
                "one sentence: {p:?}"
            );
        }
        // A program confined by a profile may have the userns permission: not refused.
        let confined = Knobs {
            apparmor_restrict: Some(1),
            apparmor_label: Some("bedlab (enforce)".into()),
            ..open.clone()
        };
        assert!(confined.problems().is_empty());
        let all = Knobs {
            max_user_namespaces: Some(0),
            unprivileged_userns_clone: Some(0),
            apparmor_restrict: Some(1),
            apparmor_label: None,
        };
        assert_eq!(all.problems().len(), 3);
    }

    #[test]
    fn this_process_has_a_user_namespace() {
        assert!(current_inode().is_ok());
    }
}

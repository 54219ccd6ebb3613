//! Checks made before a lab is built: one clear sentence per missing prerequisite, so a
//! user learns everything that is wrong at once and nothing is half-built.
//!
//! Three situations: root in the machine's initial user namespace; a normal user, who
//! still has to create a user namespace ([`crate::userns::enter`]); and a process that
//! already is root inside a user namespace (bedlab after entering one, or root in a
//! container). A normal user is checked for what the kernel must allow before the user
//! namespace is created: user namespaces at all, and a `/dev/net/tun` the user may open
//! (the device's file mode is checked against the user outside, whatever the namespace).

use crate::userns;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One missing prerequisite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

/// What a lab needs from the machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// nftables inside namespaces (Linux NAT nodes).
    pub nft: bool,
    /// Writable conntrack timeouts inside namespaces (a Linux NAT with `udp_timeout`).
    pub conntrack_timeouts: bool,
}

/// Who is asking, as far as the kernel's checks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// uid 0 in the initial user namespace.
    Root,
    /// uid 0 inside a user namespace: every capability over the namespaces it creates.
    UserNamespace,
    /// A normal user, who must enter a user namespace first.
    Unprivileged,
}

/// This process's [`Privilege`].
pub fn privilege() -> Privilege {
    if userns::euid() != 0 {
        Privilege::Unprivileged
    } else if userns::in_initial() {
        Privilege::Root
    } else {
        Privilege::UserNamespace
    }
}

/// The uid this process has outside every user namespace (what file modes are checked
/// against): inside a namespace of one mapped uid, the uid it maps to.
pub fn outside_uid() -> u32 {
    match userns::mapped_from() {
        Some(uid) if userns::euid() == 0 => uid,
        _ => userns::euid(),
    }
}

/// Returns every problem found (empty: ready).
pub fn check(needs: Needs) -> Vec<Problem> {
    let mut problems = Vec::new();
    let privilege = privilege();
    if privilege == Privilege::Unprivileged {
        problems.extend(userns::Knobs::read().problems().into_iter().map(Problem));
    }
    if let Some(p) = tun_problem() {
        problems.push(p);
    }
    if needs.nft && which("nft").is_none() {
        problems.push(Problem(
            "nft is not installed: install nftables (apt-get install nftables) for Linux NAT nodes".into(),
        ));
    }
    if needs.conntrack_timeouts && privilege == Privilege::UserNamespace {
        problems.extend(conntrack_timeouts_problem());
    }
    problems
}

/// Whether this process can open `/dev/net/tun` (the kernel checks the file mode against
/// the uid outside any user namespace; `CAP_NET_ADMIN` comes later, per namespace).
fn tun_problem() -> Option<Problem> {
    const TUN: &str = "/dev/net/tun";
    let err = match std::fs::OpenOptions::new().read(true).write(true).open(TUN) {
        Ok(_) => return None,
        Err(e) => e,
    };
    Some(Problem(match err.kind() {
        io::ErrorKind::NotFound => {
            "/dev/net/tun is missing: load the tun module (modprobe tun) or run where TUN devices exist"
                .into()
        }
        io::ErrorKind::PermissionDenied => {
            let (mode, owner) = std::fs::metadata(TUN)
                .map(|m| (format!("{:04o}", m.mode() & 0o7777), m.uid().to_string()))
                .unwrap_or_else(|_| ("unknown".into(), "unknown".into()));
            format!(
                "/dev/net/tun is not accessible to uid {} (mode {mode}, owner uid {owner}): run bedlab as \
                 root, or make the device usable by this user (mode 0666 is the usual setting, and the \
                 kernel still checks CAP_NET_ADMIN in each lab's namespaces)",
                outside_uid()
            )
        }
        _ => format!("/dev/net/tun cannot be opened ({err}): run bedlab where TUN devices work"),
    }))
}

/// Inside a user namespace, whether a network namespace's conntrack timeouts are writable
/// (kernels decide per sysctl which ones a non-initial namespace may change): probed in a
/// scratch namespace, which is gone when the probe returns.
fn conntrack_timeouts_problem() -> Option<Problem> {
    const SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_udp_timeout";
    let writable = crate::netns::NetNs::create()
        .and_then(|ns| {
            ns.run(|| {
                // Absent: conntrack is not loaded yet; nft loads it when the NAT is set up
                // and the write then either works or fails with the path in its error.
                !Path::new(SYSCTL).exists() || {
                    let c = std::ffi::CString::new(SYSCTL).unwrap_or_default();
                    // SAFETY: access reads a NUL-terminated path that outlives the call.
                    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
                }
            })
        })
        .unwrap_or(true);
    (!writable).then(|| {
        Problem(
            "this kernel does not let a user namespace change conntrack timeouts \
             (net.netfilter.nf_conntrack_udp_timeout is read-only there), which a Linux NAT with \
             udp_timeout needs: run bedlab as root, or leave udp_timeout out of the topology"
                .into(),
        )
    })
}

/// Finds a program on PATH (plus the sbin directories, which not every PATH has).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_and_reports_missing_nft_in_one_sentence() {
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-program-bedlab").is_none());
        for p in check(Needs {
            nft: true,
            conntrack_timeouts: true,
        }) {
            assert!(!p.0.contains('\n') && p.0.len() < 300, "one sentence: {p:?}");
        }
    }

    #[test]
    fn the_outside_uid_of_a_process_in_the_initial_namespace_is_its_uid() {
        if userns::in_initial() {
            assert_eq!(outside_uid(), userns::euid());
        }
    }
}

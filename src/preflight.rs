//! Checks made before a lab is built: one clear sentence per missing prerequisite, so a
//! user learns everything that is wrong at once and nothing is half-built.

use std::path::Path;

/// One missing prerequisite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

/// What a lab needs from the machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// nftables inside namespaces (Linux NAT nodes).
    pub nft: bool,
}

/// Returns every problem found (empty: ready).
pub fn check(needs: Needs) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !Path::new("/dev/net/tun").exists() {
        problems.push(Problem(
            "/dev/net/tun is missing: load the tun module (modprobe tun) or run where TUN devices exist"
                .into(),
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let userns = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
            .map(|s| s.trim() != "0")
            .unwrap_or(true)
            && std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
                .map(|s| s.trim() != "0")
                .unwrap_or(false);
        if userns {
            problems.push(Problem(
                "bedlab is not running as root: run it with sudo (user-namespace mode is not available for labs with TUN uplinks yet)".into(),
            ));
        } else {
            problems.push(Problem(
                "bedlab is not running as root and user namespaces are disabled (kernel.unprivileged_userns_clone=0 or user.max_user_namespaces=0): run it as root".into(),
            ));
        }
    }
    if needs.nft && which("nft").is_none() {
        problems.push(Problem(
            "nft is not installed: install nftables (apt-get install nftables) for Linux NAT nodes".into(),
        ));
    }
    problems
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
        for p in check(Needs { nft: true }) {
            assert!(!p.0.contains('\n') && p.0.len() < 200, "one sentence: {p:?}");
        }
    }
}

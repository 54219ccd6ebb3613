//! Network namespaces held by file descriptor.
//!
//! A lab namespace is never bind-mounted under `/run/netns`: it lives exactly as long as a
//! descriptor of it is open (here, in the bedlab process) or a process runs inside it. So
//! when bedlab dies, even by SIGKILL, the kernel frees every namespace whose processes are
//! gone, and the TUN devices inside go with it. Nothing on disk is left to clean up.
//!
//! Namespace membership is per thread on Linux: [`NetNs::create`] and [`NetNs::run`] use a
//! short-lived thread, so the calling thread never changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// A network namespace, alive while this value (or a process inside) exists.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    inode: u64,
}

impl NetNs {
    /// Creates a fresh, empty network namespace with `lo` up.
    pub fn create() -> io::Result<NetNs> {
        let ns = std::thread::spawn(|| -> io::Result<NetNs> {
            // SAFETY: unshare affects only this (short-lived) thread's namespace membership.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let ns = NetNs::open_path("/proc/thread-self/ns/net")?;
            let mut nl = sixbed4::sys::netlink::Netlink::open()?;
            nl.set_link_up(1, None)?;
            Ok(ns)
        })
        .join()
        .map_err(|_| io::Error::other("namespace creation thread panicked"))??;
        Ok(ns)
    }

    /// Opens an existing namespace by path (`/proc/<pid>/ns/net`, `/proc/<pid>/fd/<n>`).
    pub fn open_path(path: &str) -> io::Result<NetNs> {
        let file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
        let inode = file.metadata()?.ino();
        Ok(NetNs {
            fd: file.into(),
            inode,
        })
    }

    /// The namespace's inode number: its identity, as `/proc/<pid>/ns/net` shows it.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. Sockets,
    /// TUN devices and netlink handles made there belong to the namespace.
    pub fn run<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter_current_thread()?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
        })
    }

    /// Moves the calling thread into this namespace. Only for threads that live inside it
    /// for good (the fabric's capture threads, a forked child before exec).
    pub fn enter_current_thread(&self) -> io::Result<()> {
        setns(self.fd.as_raw_fd())
    }
}

/// `setns(fd, CLONE_NEWNET)`; async-signal-safe, so usable between fork and exec.
pub fn setns(fd: i32) -> io::Result<()> {
    // SAFETY: setns only reads the descriptor and changes this thread's namespace.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// The inode of the network namespace a process is in, or `None` if it is gone.
pub fn netns_inode_of(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn namespaces_are_distinct_and_vanish_with_their_descriptor() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let a = NetNs::create().unwrap();
        let b = NetNs::create().unwrap();
        assert_ne!(a.inode(), b.inode());
        assert_ne!(Some(a.inode()), netns_inode_of(std::process::id()));
        // Inside, only `lo` exists and it is up; the host's interfaces are not visible.
        let seen = a
            .run(|| {
                std::fs::read_to_string("/proc/thread-self/net/dev")
                    .unwrap()
                    .lines()
                    .skip(2)
                    .map(|l| l.split(':').next().unwrap_or("").trim().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap();
        assert_eq!(seen, vec!["lo".to_string()]);
        let inside = a
            .run(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino())
            .unwrap();
        assert_eq!(inside, a.inode());
        // The calling thread never moved.
        assert_ne!(
            std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
            a.inode()
        );
    }
}

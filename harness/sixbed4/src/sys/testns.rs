//! Test support: run a closure inside a throwaway network namespace.
//!
//! `unshare(CLONE_NEWNET)` moves only the calling *thread* into a new network namespace, so each
//! privileged test spawns a fresh thread, unshares there, and does all its work on that thread.
//! The host's interfaces, addresses and routes are never touched, and when the thread ends (and
//! the file descriptors it opened are closed) the namespace and everything created in it — TUN
//! devices, addresses, routes — disappear with it. A fresh thread is used even though libtest
//! already runs tests on threads, because with `--test-threads=1` tests run on the main thread,
//! which must not be moved.

use std::io;
use std::panic;
use std::thread;

/// Runs `f` on a new thread inside a new, empty network namespace whose loopback is up.
///
/// Panics in `f` are propagated to the caller so test failures read as usual. Setup failures
/// (no `CAP_SYS_ADMIN`, no netns support) panic with the reason: tests that need this cannot
/// run otherwise and should fail loudly rather than pass vacuously.
pub(crate) fn in_netns<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let handle = thread::spawn(move || {
        if let Err(e) = enter_new_netns() {
            panic!("cannot set up a test network namespace (are we root?): {e}");
        }
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(payload) => panic::resume_unwind(payload),
    }
}

fn enter_new_netns() -> io::Result<()> {
    // SAFETY: unshare takes a flag word and touches no memory of ours; CLONE_NEWNET only
    // changes the calling thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // A new namespace has only `lo`, and it is down; ifindex 1 is always loopback.
    super::netlink::Netlink::open()?.set_link_up(1, None)
}

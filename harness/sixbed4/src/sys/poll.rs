//! A minimal `poll(2)` wrapper for the daemon's single-threaded event loop.
//!
//! The loop watches two descriptors (TUN and UDP socket) and wakes for timers; `poll` does
//! that with no runtime, no registration state to keep in sync, and no dependency.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Waits until at least one of `fds` is readable or `timeout` passes (`None` waits forever),
/// and says which are.
///
/// "Readable" means a `read`/`recv` will not block: data is waiting, or the descriptor is in
/// an error or hang-up state, in which case the read reports it. A negative fd is ignored and
/// always reported `false`, as `poll` does. An interrupted wait (a signal, `EINTR`) returns all
/// `false` rather than an error, so the loop simply goes round and re-checks its timers. A
/// descriptor that is not open (`POLLNVAL`) is an error: polling it again would spin.
///
/// Timeouts are rounded *up* to whole milliseconds, so a timer due in 0.3 ms does not turn
/// into a zero-timeout busy loop until it is due.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms = match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    // SAFETY: `pfds` is a live array of exactly `pfds.len()` pollfd structures.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    if let Some(bad) = pfds.iter().find(|p| p.revents & libc::POLLNVAL != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("poll: file descriptor {} is not open", bad.fd),
        ));
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn reports_which_fd_is_readable() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let (_c, d) = UnixStream::pair().expect("pair");
        assert_eq!(
            wait_readable(&[b.as_raw_fd(), d.as_raw_fd()], Some(Duration::ZERO)).expect("poll"),
            vec![false, false]
        );
        a.write_all(b"x").expect("write");
        assert_eq!(
            wait_readable(&[b.as_raw_fd(), -1, d.as_raw_fd()], None).expect("poll"),
            vec![true, false, false]
        );
    }

    #[test]
    fn times_out_and_rounds_up() {
        let (_a, b) = UnixStream::pair().expect("pair");
        let start = Instant::now();
        let r = wait_readable(&[b.as_raw_fd()], Some(Duration::from_micros(1500))).expect("poll");
        assert_eq!(r, vec![false]);
        assert!(
            start.elapsed() >= Duration::from_millis(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn hang_up_counts_as_readable() {
        let (a, b) = UnixStream::pair().expect("pair");
        drop(a);
        assert_eq!(wait_readable(&[b.as_raw_fd()], None).expect("poll"), vec![true]);
    }

    #[test]
    fn closed_fd_is_an_error() {
        // A number far above any descriptor this process opens, so it is certainly not open
        // (a just-closed fd could be reused by a concurrently running test).
        let err = wait_readable(&[1_000_000], Some(Duration::ZERO)).expect_err("EBADF");
        assert!(err.to_string().contains("1000000"), "{err}");
    }
}

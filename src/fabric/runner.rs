//! The I/O shell around [`Fabric`]: one thread, one epoll loop, the TUN devices of the
//! External interfaces, a timerfd for the core's deadlines and an eventfd for control.
//!
//! Why a dedicated thread with plain epoll: the fabric is on the path of every packet in the
//! lab, so it must not share a runtime with slower work (capture writing, process
//! supervision), and it must be fast. The loop reads a batch of packets per readable TUN,
//! hands each to the core and writes whatever is due at once, so a link without impairments
//! costs one `read` and one `write` per packet; buffers are pooled and reused.
//!
//! The core's clock is [`Instant::now`]; capture records are also given the wall-clock time,
//! mapped from one `(Instant, SystemTime)` pair taken when the loop starts, so timestamps are
//! monotonic and consistent with each other even if the wall clock steps.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::core::{CaptureEvent, Fabric};
use super::spec::{Direction, IfaceId, Impairment};
use super::stats::{DropReason, Stats};

/// Receives every capture record with its wall-clock time. Runs on the fabric thread, so it
/// should be quick (write a pcapng block, or send to a channel).
pub type CaptureSink = Box<dyn FnMut(CaptureEvent, SystemTime) + Send>;

/// Packets read from one TUN per wake-up before looking at the others, so one busy
/// interface cannot starve the rest or the timers.
const DEFAULT_BATCH: usize = 64;
/// Spare packet buffers kept for reuse.
const POOL_MAX: usize = 1024;
const TOKEN_WAKE: u64 = u64::MAX;
const TOKEN_TIMER: u64 = u64::MAX - 1;

/// Builds and starts the fabric thread: `FabricRunner::new(fabric).tun(id, fd)...spawn()`.
pub struct FabricRunner {
    fabric: Fabric,
    tuns: Vec<(IfaceId, OwnedFd)>,
    sink: Option<CaptureSink>,
    batch: usize,
}

/// What [`FabricHandle::stop`] gives back: the core (with its final counters and state) and
/// the TUN descriptors (drop them to remove the interfaces).
#[derive(Debug)]
pub struct Stopped {
    pub fabric: Fabric,
    pub tuns: Vec<(IfaceId, OwnedFd)>,
}

enum Control {
    SetImpairment(
        IfaceId,
        Direction,
        Impairment,
        mpsc::Sender<Result<(), super::FabricError>>,
    ),
    SetCapture(bool, mpsc::Sender<()>),
    Tap(Arc<super::tap::TapShared>, mpsc::Sender<()>),
    Stats(mpsc::Sender<Stats>),
    Node(
        usize,
        super::NodeControl,
        mpsc::Sender<Result<(), super::FabricError>>,
    ),
    Stop,
}

impl FabricRunner {
    pub fn new(fabric: Fabric) -> FabricRunner {
        FabricRunner {
            fabric,
            tuns: Vec::new(),
            sink: None,
            batch: DEFAULT_BATCH,
        }
    }

    /// Attaches the TUN device (its descriptor; see `sixbed4::sys::tun::Tun` and its
    /// `Into<OwnedFd>`) of an External interface. It is switched to non-blocking mode.
    pub fn tun(mut self, iface: IfaceId, fd: OwnedFd) -> FabricRunner {
        self.tuns.push((iface, fd));
        self
    }

    /// Attaches several TUN devices.
    pub fn tuns(mut self, tuns: impl IntoIterator<Item = (IfaceId, OwnedFd)>) -> FabricRunner {
        self.tuns.extend(tuns);
        self
    }

    /// Sends every capture record to `sink`, and turns capturing on.
    pub fn capture_sink(mut self, sink: CaptureSink) -> FabricRunner {
        self.sink = Some(sink);
        self
    }

    /// Packets read per TUN per wake-up (default 64).
    pub fn batch(mut self, batch: usize) -> FabricRunner {
        self.batch = batch.max(1);
        self
    }

    /// Starts the fabric thread. Fails (before starting anything) if a TUN is attached to an
    /// interface that is not External, or twice, or if epoll, the timerfd or the eventfd
    /// cannot be set up.
    pub fn spawn(mut self) -> io::Result<FabricHandle> {
        let externals: Vec<IfaceId> = self.fabric.external_ifaces().collect();
        let mut by_iface: Vec<Vec<Option<usize>>> = Vec::new();
        let mut buf_size = 0usize;
        for (index, (id, fd)) in self.tuns.iter().enumerate() {
            if !externals.contains(id) {
                return Err(invalid(format!(
                    "TUN for {id}, which is not an External interface"
                )));
            }
            if by_iface.len() <= id.node {
                by_iface.resize(id.node + 1, Vec::new());
            }
            let slots = &mut by_iface[id.node];
            if slots.len() <= id.iface {
                slots.resize(id.iface + 1, None);
            }
            if slots[id.iface].replace(index).is_some() {
                return Err(invalid(format!("two TUNs for {id}")));
            }
            set_nonblocking(fd.as_raw_fd())?;
            buf_size = buf_size.max(self.fabric.mtu(*id).unwrap_or(1500) as usize);
        }
        // One byte more than the largest MTU: a read that fills the buffer was cut, and
        // is then dropped by the core as too big instead of passed on truncated.
        buf_size += 1;

        let epoll = epoll_create()?;
        let wake = Arc::new(eventfd()?);
        let timer = timerfd()?;
        epoll_add(&epoll, wake.as_raw_fd(), TOKEN_WAKE)?;
        epoll_add(&epoll, timer.as_raw_fd(), TOKEN_TIMER)?;
        for (index, (_, fd)) in self.tuns.iter().enumerate() {
            epoll_add(&epoll, fd.as_raw_fd(), index as u64)?;
        }
        if self.sink.is_some() {
            self.fabric.set_capture(true);
        }

        let (tx, rx) = mpsc::channel();
        let shell = Shell {
            fabric: self.fabric,
            tuns: self
                .tuns
                .into_iter()
                .map(|(id, fd)| TunPort {
                    id,
                    file: File::from(fd),
                    failed: false,
                })
                .collect(),
            by_iface,
            epoll,
            wake: Arc::clone(&wake),
            timer,
            armed: None,
            control: rx,
            sink: self.sink,
            sink_on: true,
            taps: Vec::new(),
            clock: (Instant::now(), SystemTime::now()),
            pool: Vec::new(),
            buf_size,
            batch: self.batch,
            write_errors_logged: 0,
        };
        let thread = std::thread::Builder::new()
            .name("bedlab-fabric".into())
            .spawn(move || shell.run())?;
        Ok(FabricHandle {
            control: tx,
            wake,
            thread: Some(thread),
        })
    }
}

/// Controls a running fabric thread. Dropping it stops the thread (and closes the TUNs);
/// [`FabricHandle::stop`] does the same but returns the core and the descriptors.
pub struct FabricHandle {
    control: mpsc::Sender<Control>,
    wake: Arc<File>,
    thread: Option<JoinHandle<io::Result<Stopped>>>,
}

impl FabricHandle {
    fn send(&self, c: Control) -> io::Result<()> {
        self.control
            .send(c)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the fabric thread has ended"))?;
        // The counter cannot overflow in practice (2^64 - 1 wake-ups); EAGAIN would mean
        // it is already huge and the loop is awake anyway.
        match (&*self.wake).write(&1u64.to_ne_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    fn request<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Control) -> io::Result<T> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv()
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the fabric thread has ended"))
    }

    /// Changes one direction of a link at run time (see [`Fabric::set_impairment`]). An
    /// invalid impairment is an `InvalidInput` error wrapping the [`super::FabricError`].
    pub fn set_impairment(&self, iface: IfaceId, dir: Direction, imp: Impairment) -> io::Result<()> {
        self.request(|tx| Control::SetImpairment(iface, dir, imp, tx))?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// Pauses or resumes capture records (only meaningful with a capture sink).
    pub fn set_capture(&self, on: bool) -> io::Result<()> {
        self.request(|tx| Control::SetCapture(on, tx))
    }

    /// Sends a run-time command to fabric node `node` (see [`Fabric::control_node`]).
    pub fn control_node(&self, node: usize, ctl: super::NodeControl) -> io::Result<()> {
        self.request(|tx| Control::Node(node, ctl, tx))?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// Opens a live [`super::Tap`] on some capture points (see `fabric/tap.rs`): from now
    /// on, the packets recorded there are copied into its bounded ring. Works with or
    /// without a capture sink; closing the tap (dropping it) stops the copying.
    pub fn tap(&self, spec: super::TapSpec) -> io::Result<super::Tap> {
        let (tap, shared) = super::tap::Tap::new(spec);
        self.request(|tx| Control::Tap(shared, tx))?;
        Ok(tap)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> io::Result<Stats> {
        self.request(Control::Stats)
    }

    /// True while the thread runs (it ends only when stopped or on a fatal epoll error).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and returns the core and the TUN descriptors, or the error that
    /// ended the thread.
    pub fn stop(mut self) -> io::Result<Stopped> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<Stopped> {
        let Some(thread) = self.thread.take() else {
            return Err(io::Error::other("the fabric thread was already stopped"));
        };
        // If the thread already ended, the send fails; joining still reports why.
        let _ = self.send(Control::Stop);
        thread
            .join()
            .map_err(|_| io::Error::other("the fabric thread panicked"))?
    }
}

impl Drop for FabricHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.shutdown() {
                tracing::warn!("fabric thread ended with an error: {e}");
            }
        }
    }
}

struct TunPort {
    id: IfaceId,
    file: File,
    /// Reading failed for good; removed from epoll.
    failed: bool,
}

/// The loop's state, owned by the fabric thread.
struct Shell {
    fabric: Fabric,
    tuns: Vec<TunPort>,
    /// `[node][iface]` -> index into `tuns`.
    by_iface: Vec<Vec<Option<usize>>>,
    epoll: OwnedFd,
    wake: Arc<File>,
    timer: File,
    /// The deadline the timerfd is set for, if any.
    armed: Option<Instant>,
    control: mpsc::Receiver<Control>,
    sink: Option<CaptureSink>,
    /// Whether the sink takes records (paused by `set_capture(false)`).
    sink_on: bool,
    /// Open taps; closed ones are removed at the next record.
    taps: Vec<Arc<super::tap::TapShared>>,
    clock: (Instant, SystemTime),
    pool: Vec<Vec<u8>>,
    buf_size: usize,
    batch: usize,
    write_errors_logged: u32,
}

impl Shell {
    fn run(mut self) -> io::Result<Stopped> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            let now = Instant::now();
            self.flush(now);
            let timeout_ms = match self.fabric.poll_timeout() {
                Some(t) if t <= now => 0,
                Some(t) => {
                    self.arm(t, now)?;
                    -1
                }
                None => -1,
            };
            let n = epoll_wait(&self.epoll, &mut events, timeout_ms)?;
            for ev in &events[..n] {
                // Copy out of the (packed) struct before use.
                let token = ev.u64;
                match token {
                    TOKEN_WAKE => {
                        if self.control() {
                            return Ok(self.finish());
                        }
                    }
                    TOKEN_TIMER => {
                        let mut b = [0u8; 8];
                        let _ = (&self.timer).read(&mut b);
                        self.armed = None;
                    }
                    t => self.read_tun(t as usize)?,
                }
            }
        }
    }

    /// Hands the remaining captures to the sink and gives back the core and descriptors.
    fn finish(mut self) -> Stopped {
        self.flush_captures();
        for t in &self.taps {
            t.close();
        }
        Stopped {
            fabric: self.fabric,
            tuns: self
                .tuns
                .into_iter()
                .map(|t| (t.id, OwnedFd::from(t.file)))
                .collect(),
        }
    }

    /// Handles control messages; true if told to stop (or if the handle is gone).
    fn control(&mut self) -> bool {
        let mut b = [0u8; 8];
        let _ = (&*self.wake).read(&mut b);
        loop {
            match self.control.try_recv() {
                Ok(Control::SetImpairment(id, dir, imp, reply)) => {
                    let _ = reply.send(self.fabric.set_impairment(id, dir, imp));
                }
                Ok(Control::SetCapture(on, reply)) => {
                    self.sink_on = on;
                    self.update_capture();
                    let _ = reply.send(());
                }
                Ok(Control::Tap(shared, reply)) => {
                    self.taps.push(shared);
                    self.update_capture();
                    let _ = reply.send(());
                }
                Ok(Control::Stats(reply)) => {
                    let _ = reply.send(self.fabric.stats());
                }
                Ok(Control::Node(node, ctl, reply)) => {
                    let _ = reply.send(self.fabric.control_node(Instant::now(), node, &ctl));
                }
                Ok(Control::Stop) | Err(mpsc::TryRecvError::Disconnected) => return true,
                Err(mpsc::TryRecvError::Empty) => return false,
            }
        }
    }

    /// Points the timerfd at `deadline` unless it already fires no later than that (an
    /// early wake-up costs one loop turn; a syscall per packet would cost more).
    fn arm(&mut self, deadline: Instant, now: Instant) -> io::Result<()> {
        if self.armed.is_some_and(|a| a > now && a <= deadline) {
            return Ok(());
        }
        timerfd_arm(&self.timer, deadline.saturating_duration_since(now))?;
        self.armed = Some(deadline);
        Ok(())
    }

    fn read_tun(&mut self, index: usize) -> io::Result<()> {
        let Some(port) = self.tuns.get(index) else {
            return Ok(());
        };
        if port.failed {
            return Ok(());
        }
        let (id, fd) = (port.id, port.file.as_raw_fd());
        for _ in 0..self.batch {
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.resize(self.buf_size, 0);
            match (&self.tuns[index].file).read(&mut buf) {
                Ok(0) => {
                    self.recycle(buf);
                    break;
                }
                Ok(n) => {
                    buf.truncate(n);
                    let now = Instant::now();
                    self.fabric.ingress(now, id, buf);
                    self.flush(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.recycle(buf);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.recycle(buf),
                Err(e) => {
                    // A TUN that fails to read (its device gone) would wake the loop
                    // forever; stop watching it and say why once.
                    let name = self.fabric.link_name(id).unwrap_or("?").to_string();
                    tracing::warn!(link = %name, "reading the TUN failed, no longer reading it: {e}");
                    self.tuns[index].failed = true;
                    epoll_del(&self.epoll, fd)?;
                    self.recycle(buf);
                    break;
                }
            }
        }
        Ok(())
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= self.buf_size && self.pool.len() < POOL_MAX {
            self.pool.push(buf);
        }
    }

    /// Writes every delivery due at `now` and passes on the capture records.
    fn flush(&mut self, now: Instant) {
        while let Some(d) = self.fabric.poll_delivery(now) {
            let tun = self
                .by_iface
                .get(d.iface.node)
                .and_then(|v| v.get(d.iface.iface))
                .copied()
                .flatten();
            let result = match tun {
                Some(t) => (&self.tuns[t].file).write(&d.packet).map(|_| ()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no TUN attached")),
            };
            if let Err(e) = result {
                self.fabric.count_drop(d.iface, DropReason::Io);
                if self.write_errors_logged < 10 {
                    self.write_errors_logged += 1;
                    let name = self.fabric.link_name(d.iface).unwrap_or("?").to_string();
                    tracing::warn!(link = %name, "writing to the TUN failed: {e}");
                }
            }
            self.recycle(d.packet);
        }
        self.flush_captures();
    }

    /// The core records packets while someone takes them: a running sink or an open tap.
    /// Without either, nobody would take the records: they would pile up.
    fn update_capture(&mut self) {
        let on = (self.sink_on && self.sink.is_some()) || !self.taps.is_empty();
        self.fabric.set_capture(on);
    }

    fn flush_captures(&mut self) {
        if !self.fabric.capture_enabled() {
            return;
        }
        let (base_i, base_s) = self.clock;
        let before = self.taps.len();
        self.taps.retain(super::tap::in_use);
        let mut sink = if self.sink_on { self.sink.as_mut() } else { None };
        for ev in self.fabric.take_captures() {
            for t in &self.taps {
                t.offer(&ev);
            }
            if let Some(sink) = sink.as_mut() {
                let wall = match ev.at.checked_duration_since(base_i) {
                    Some(d) => base_s + d,
                    None => base_s - base_i.saturating_duration_since(ev.at),
                };
                sink(ev, wall);
            }
        }
        if self.taps.len() != before {
            self.update_capture();
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn cvt(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL only reads the status flags of `fd`, which the caller owns.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) }, "fcntl(F_GETFL)")?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL with an int argument only changes the status flags of `fd`.
        cvt(
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
            "fcntl(F_SETFL)",
        )?;
    }
    Ok(())
}

fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = cvt(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn epoll_add(epoll: &OwnedFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event the kernel only reads; both fds are open.
    cvt(
        unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) },
        "epoll_ctl(ADD)",
    )?;
    Ok(())
}

fn epoll_del(epoll: &OwnedFd, fd: RawFd) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: as in `epoll_add`; the event argument is ignored for DEL but must be valid
    // on old kernels.
    cvt(
        unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) },
        "epoll_ctl(DEL)",
    )?;
    Ok(())
}

/// Waits for events; `timeout_ms` -1 blocks. An interrupted wait returns no events.
fn epoll_wait(epoll: &OwnedFd, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
    let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `events` is a live, writable array of at least `max` epoll_event structures.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(io::Error::new(e.kind(), format!("epoll_wait: {e}")));
    }
    Ok(n as usize)
}

fn eventfd() -> io::Result<File> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = cvt(
        unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) },
        "eventfd",
    )?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn timerfd() -> io::Result<File> {
    // SAFETY: plain syscall; the result is checked before use. CLOCK_MONOTONIC is the
    // clock `Instant` uses on Linux, so relative deadlines computed from it match.
    let fd = cvt(
        unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) },
        "timerfd_create",
    )?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Arms the one-shot timer to fire `after` from now (at least 1 ns: zero would disarm it).
fn timerfd_arm(timer: &File, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
        },
    };
    // SAFETY: `spec` is a valid itimerspec the kernel only reads; a null old value is allowed.
    cvt(
        unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) },
        "timerfd_settime",
    )?;
    Ok(())
}

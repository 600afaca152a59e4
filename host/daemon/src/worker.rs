//! One worker per device: drain the ring, run commands, complete, publish.
//!
//! A worker owns its device's ring engine, SCSI target and backend; nothing
//! on its hot path is shared with another device. Commands run as futures
//! (backends complete asynchronously: a WebAssembly backstore's host I/O
//! finishes on executor threads), so many can be in flight across batches.
//!
//! Each pass of the loop: apply control messages; drain up to `batch` new
//! entries and start a future for each; poll every pending future (a single
//! waker per worker marks "something finished" and writes an eventfd);
//! complete the ones that are done; store cmd_tail and ring the doorbell once.
//! It sleeps in `poll()` on the device's doorbell and the wake eventfd. A
//! worker with a control channel ([`channel`]) sleeps without a timeout:
//! every control message rings the same eventfd, so an idle device costs
//! no wake-ups at all. Without one (the simulator's bench and demo) it
//! wakes every 100 ms to look at its stop flag.
//!
//! A command is completed on the ring only when its future has resolved:
//! never while host I/O may still be writing into its data pages, which the
//! kernel reuses as soon as the command is reaped. So a TMR abort does not
//! cancel futures; it is logged and the commands complete as they finish.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wasmtap_kernel::{Doorbell, EventBell, MappedRegion};
use wasmtap_ring::{Command, Entry, Response, Ring, RingError};
use wasmtap_scsi::{Completion, IoKind, Status};

/// A command in progress, resolving to the SCSI target's answer. Owns
/// copies of what it needs (CDB, extents), never the ring's `Command`, so
/// the worker can always complete the command.
pub type CommandFuture = Pin<Box<dyn Future<Output = Completion>>>;

/// Work a device does after the command that started it has completed
/// (a SANITIZE with IMMED set). Polled with the commands; dropped, i.e.
/// interrupted, when the worker stops.
pub type BackgroundFuture = Pin<Box<dyn Future<Output = ()>>>;

/// What executes commands for a worker: the SCSI target over a backend.
///
/// Everything else a device is asked (a hot swap, a RECONFIG, its debug
/// text, another device's copy I/O) reaches the handler as a [`Job`] on the
/// worker's control channel: the worker knows nothing of backends.
pub trait Handler {
    /// Start executing `cmd`, whose data lives in `region`.
    fn start(&mut self, region: &Arc<MappedRegion>, cmd: &Command) -> CommandFuture;
    /// Called once per pass: background work to start, if some is waiting
    /// and none runs (the worker polls one at a time). Also the handler's
    /// chance to record state that must outlive the process.
    fn background(&mut self) -> Option<BackgroundFuture> {
        None
    }
}

impl<H: Handler + ?Sized> Handler for Box<H> {
    fn start(&mut self, region: &Arc<MappedRegion>, cmd: &Command) -> CommandFuture {
        (**self).start(region, cmd)
    }
    fn background(&mut self) -> Option<BackgroundFuture> {
        (**self).background()
    }
}

/// Work the daemon hands a worker's handler, run on the worker's thread
/// between passes. A future it returns is polled with the commands until
/// it is done (and counts as in flight for [`Control::WhenIdle`]).
pub type Job<H> = Box<dyn FnOnce(&mut H) -> Option<BackgroundFuture> + Send>;

/// Requests from the daemon to one worker, handled between batches.
pub enum Control<H> {
    /// Stop serving (the device is being removed).
    Stop,
    /// Run the job at the next pass.
    Now(Job<H>),
    /// Run the job once nothing is in flight: stop taking new commands, let
    /// every running command (and job future) finish, run it, resume. New
    /// commands wait on the ring meanwhile, as behind a slow backend;
    /// nothing is failed. A hot swap is one.
    WhenIdle(Job<H>),
}

impl<H> std::fmt::Debug for Control<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::Stop => "Stop",
            Control::Now(_) => "Now(..)",
            Control::WhenIdle(_) => "WhenIdle(..)",
        })
    }
}

/// The daemon's end of a worker's control channel: sending also rings the
/// worker's wake-up eventfd, so the worker needs no poll timeout.
pub struct ControlTx<H> {
    tx: std::sync::mpsc::Sender<Control<H>>,
    bell: EventBell,
}

impl<H> Clone for ControlTx<H> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<H> std::fmt::Debug for ControlTx<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlTx").finish_non_exhaustive()
    }
}

/// The worker's end of its control channel (see [`channel`]).
pub struct ControlRx<H> {
    rx: std::sync::mpsc::Receiver<Control<H>>,
    bell: EventBell,
}

impl<H> std::fmt::Debug for ControlRx<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlRx").finish_non_exhaustive()
    }
}

/// A control channel for one worker.
pub fn channel<H>() -> io::Result<(ControlTx<H>, ControlRx<H>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let bell = EventBell::new()?;
    Ok((
        ControlTx {
            tx,
            bell: bell.clone(),
        },
        ControlRx { rx, bell },
    ))
}

/// When a [`ControlTx::call`] runs: at the next pass ([`Control::Now`]) or
/// once nothing is in flight ([`Control::WhenIdle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// At the next pass.
    Now,
    /// Once no command is in flight.
    Idle,
}

/// Why a [`ControlTx::call`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The worker has stopped.
    #[error("the device's worker has stopped")]
    Gone,
    /// The worker did not answer in time.
    #[error("the device's worker did not answer in {} s", .0.as_secs())]
    Timeout(Duration),
}

impl<H: 'static> ControlTx<H> {
    /// Queue `c` for the worker and wake it. Fails when the worker is gone.
    pub fn send(&self, c: Control<H>) -> Result<(), CallError> {
        self.tx.send(c).map_err(|_| CallError::Gone)?;
        let _ = self.bell.ring();
        Ok(())
    }

    /// Run `f` on the handler `when` it should run and wait up to
    /// `timeout` for what it returns.
    pub fn call<R: Send + 'static>(
        &self,
        when: When,
        timeout: Duration,
        f: impl FnOnce(&mut H) -> R + Send + 'static,
    ) -> Result<R, CallError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job<H> = Box::new(move |h: &mut H| {
            let _ = tx.send(f(h));
            None
        });
        self.send(match when {
            When::Now => Control::Now(job),
            When::Idle => Control::WhenIdle(job),
        })?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => CallError::Timeout(timeout),
            std::sync::mpsc::RecvTimeoutError::Disconnected => CallError::Gone,
        })
    }
}

/// Upper bounds of the latency histogram's buckets, in microseconds (the
/// last bucket, past 1 s, has no bound).
pub const LATENCY_BOUNDS_US: [u64; 15] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000,
];

/// Live counters a worker exports (relaxed atomics: read by the control
/// plane, written only by the worker).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Commands completed.
    pub commands: AtomicU64,
    /// Completions with CHECK CONDITION.
    pub check_conditions: AtomicU64,
    /// Doorbell writes.
    pub notifies: AtomicU64,
    /// Commands in flight right now.
    pub in_flight: AtomicU64,
    /// Times the worker found nothing to do and slept in `poll()`.
    pub sleeps: AtomicU64,
    /// READ commands completed.
    pub reads: AtomicU64,
    /// WRITE (and WRITE AND VERIFY) commands completed.
    pub writes: AtomicU64,
    /// Bytes moved by good reads (after any short-read residual).
    pub read_bytes: AtomicU64,
    /// Bytes accepted by good writes.
    pub write_bytes: AtomicU64,
    /// CHECK CONDITIONs by sense key.
    pub sense_keys: [AtomicU64; 16],
    /// Latency histogram, see [`LATENCY_BOUNDS_US`] (+1 overflow bucket).
    pub latency: [AtomicU64; 16],
    /// Sum of latencies in microseconds.
    pub latency_sum_us: AtomicU64,
}

impl WorkerStats {
    fn record(&self, len: u64, started: Instant, now: Instant, done: &Completion) {
        let us = now.saturating_duration_since(started).as_micros() as u64;
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        if done.status == Status::CheckCondition {
            if let Some(k) = done.sense_key() {
                self.sense_keys[usize::from(k)].fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if done.status != Status::Good {
            return;
        }
        match done.io {
            IoKind::Read => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                let n = read_len(done, len).map_or(len, u64::from);
                self.read_bytes.fetch_add(n, Ordering::Relaxed);
            }
            IoKind::Write => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.write_bytes.fetch_add(len, Ordering::Relaxed);
            }
            IoKind::Other => {}
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The ring protocol broke (the device needs a ring reset).
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    /// Waiting on or ringing the doorbell failed (device removed?).
    #[error("doorbell: {0}")]
    Doorbell(#[from] io::Error),
    /// The device could not be set up for serving.
    #[error("setup: {0}")]
    Setup(String),
}

/// `poll(2)` with a timeout in milliseconds (negative: none); a signal
/// (EINTR: SIGTERM arriving, for one) counts as a wake-up with nothing
/// ready, not an error.
pub fn poll_fds(fds: &mut [PollFd<'_>], timeout_ms: i32) -> io::Result<i32> {
    let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    match poll(fds, timeout) {
        Ok(n) => Ok(n),
        Err(nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// How long a stopping worker waits for in-flight commands. Those still
/// running afterwards stay on the ring; the next attach resets it and the
/// kernel fails them as retryable.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Completed data after which a pass publishes its completions (and rings
/// the kernel) without waiting for its end. Small commands are still
/// published once per pass; a pass of large ones hands each back as it
/// finishes, so the kernel's copy of one overlaps the backend's work on the
/// next.
const PUBLISH_BYTES: u64 = 256 * 1024;

/// Store `cmd_tail` past the completed entries and, if it moved, ring the
/// kernel.
fn publish<B: Doorbell>(
    ring: &mut Ring<Arc<MappedRegion>>,
    bell: &B,
    stats: &WorkerStats,
) -> Result<(), WorkerError> {
    if ring.publish()? {
        bell.notify()?;
        stats.notifies.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Wakes the worker: marks that a future can make progress and, if the
/// worker may be asleep, writes the worker's eventfd (from any thread).
///
/// While the worker is busy (between waking up and deciding to sleep again)
/// the mark alone is enough: it checks `woken` before it sleeps. That makes
/// a wake from the worker's own thread (a future asking to be polled again,
/// as the WebAssembly backend does to batch requests) free of system calls.
/// `woken` and `busy` are sequentially consistent: either the worker sees
/// the mark before sleeping, or the waker sees `busy` cleared and rings.
struct WorkerWaker {
    woken: AtomicBool,
    busy: AtomicBool,
    bell: EventBell,
}

impl Wake for WorkerWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst) && !self.busy.load(Ordering::SeqCst) {
            let _ = self.bell.ring();
        }
    }
}

struct Pending {
    cmd: Command,
    fut: CommandFuture,
    started: Instant,
}

/// The READ_LEN to report for a completion of a command with `buf_len`
/// bytes of data buffer: only for data-in that came up short. The kernel
/// honours READ_LEN only for data-in commands and only when it is non-zero
/// (tcmu_handle_completion), so a zero-length transfer cannot be expressed
/// on the ring and is reported as a full one.
fn read_len(done: &Completion, buf_len: u64) -> Option<u32> {
    (done.data_in_len > 0 && done.data_in_len < buf_len).then_some(done.data_in_len as u32)
}

/// How a worker takes commands off its ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Largest number of ring entries handled per drain.
    pub batch: usize,
    /// After a pass that completed commands, watch the ring (and the
    /// waker) this long before sleeping; zero sleeps at once.
    pub poll: Duration,
}

impl From<usize> for Tuning {
    /// `batch` entries per drain, no polling before sleeping.
    fn from(batch: usize) -> Self {
        Self {
            batch,
            poll: Duration::ZERO,
        }
    }
}

/// What a worker thread serves, besides its handler.
pub struct Serve<B, H> {
    /// The device's ring.
    pub ring: Ring<Arc<MappedRegion>>,
    /// Its doorbell.
    pub bell: B,
    /// Stop when this says so (checked once per pass), besides on
    /// [`Control::Stop`].
    pub stop: Box<dyn Fn() -> bool + Send>,
    /// The counters the control plane reads.
    pub stats: Arc<WorkerStats>,
    /// Batch size and ring polling.
    pub tuning: Tuning,
    /// The control channel, if the device has one (see [`channel`]).
    pub control: Option<ControlRx<H>>,
}

impl<B, H> std::fmt::Debug for Serve<B, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("tuning", &self.tuning)
            .field("control", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

/// A stop condition that is `flag`.
pub fn stop_flag(flag: Arc<AtomicBool>) -> Box<dyn Fn() -> bool + Send> {
    Box::new(move || flag.load(Ordering::Relaxed))
}

/// Start a device's worker: a thread named `name` that builds its handler
/// with `make` (handlers hold the target in an `Rc`, so they are made on
/// the thread that runs them), serves until stopped or the device fails
/// ([`run`]), and ends with `done`, given the handler (none if `make`
/// failed) and how serving ended; what `done` returns is the thread's
/// result. The one way every device, simulated or real, is run.
pub fn spawn<B, H, E, R>(
    name: String,
    serve: Serve<B, H>,
    make: impl FnOnce() -> Result<H, E> + Send + 'static,
    done: impl FnOnce(Option<&mut H>, Result<(), WorkerError>) -> R + Send + 'static,
) -> io::Result<std::thread::JoinHandle<R>>
where
    B: Doorbell + Send + 'static,
    H: Handler + 'static,
    E: std::fmt::Display,
    R: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        let Serve {
            ring,
            bell,
            stop,
            stats,
            tuning,
            control,
        } = serve;
        match make() {
            Ok(mut h) => {
                let r = run(
                    ring,
                    &bell,
                    &mut h,
                    &*stop,
                    &stats,
                    tuning,
                    control.as_ref(),
                );
                done(Some(&mut h), r)
            }
            Err(e) => done(None, Err(WorkerError::Setup(e.to_string()))),
        }
    })
}

/// Serve `ring` until `stop` says so, a [`Control::Stop`] arrives, or the
/// device fails. [`spawn`] runs it on a thread of its own.
pub fn run<B: Doorbell, H: Handler>(
    mut ring: Ring<Arc<MappedRegion>>,
    bell: &B,
    handler: &mut H,
    stop: &dyn Fn() -> bool,
    stats: &WorkerStats,
    tuning: impl Into<Tuning>,
    control: Option<&ControlRx<H>>,
) -> Result<(), WorkerError> {
    let Tuning { batch, poll } = tuning.into();
    let region = Arc::clone(ring.region());
    let waker_state = Arc::new(WorkerWaker {
        woken: AtomicBool::new(false),
        busy: AtomicBool::new(true),
        bell: match control {
            Some(c) => c.bell.clone(),
            None => EventBell::new()?,
        },
    });
    // With a control channel every request rings the wake eventfd: sleep
    // until something happens. Without one, look at `stop` now and then.
    let sleep_ms: i32 = if control.is_some() { -1 } else { 100 };
    // Whether a pass since the last sleep completed something: only then
    // is the ring watched before sleeping (an idle device never spins).
    let mut worked = false;
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut cx = Context::from_waker(&waker);
    let mut entries: Vec<Entry> = Vec::with_capacity(batch);
    let mut pending: Vec<Pending> = Vec::new();
    let mut stopping: Option<Instant> = None;
    // Jobs waiting for nothing to be in flight, in order.
    let mut when_idle: std::collections::VecDeque<Job<H>> = std::collections::VecDeque::new();
    let mut background: Option<BackgroundFuture> = None;
    // Futures of jobs (another device's copy I/O served here).
    let mut services: Vec<BackgroundFuture> = Vec::new();
    loop {
        if let Some(rx) = control {
            while let Ok(c) = rx.rx.try_recv() {
                match c {
                    Control::Stop => {
                        stopping.get_or_insert_with(Instant::now);
                    }
                    Control::Now(job) => services.extend(job(handler)),
                    Control::WhenIdle(job) => when_idle.push_back(job),
                }
            }
        }
        if stopping.is_none() && stop() {
            stopping = Some(Instant::now());
        }
        // A job that wants the device idle waits for the commands in
        // flight; new ones stay on the ring meanwhile (the kernel queues
        // behind them as it would for a slow backend).
        while pending.is_empty() && services.is_empty() {
            let Some(job) = when_idle.pop_front() else {
                break;
            };
            services.extend(job(handler));
        }

        let mut drained = wasmtap_ring::Drained::default();
        if stopping.is_none() && when_idle.is_empty() {
            entries.clear();
            drained = ring.drain(&mut entries, batch)?;
            // One clock read per pass, not per command: the commands of a
            // pass were all seen at the same time.
            let started = if entries.is_empty() {
                None
            } else {
                Some(Instant::now())
            };
            for e in entries.drain(..) {
                match e {
                    Entry::Command(cmd) => {
                        let started = started.unwrap_or_else(Instant::now);
                        let fut = handler.start(&region, &cmd);
                        pending.push(Pending { cmd, fut, started });
                    }
                    Entry::TaskManagement(t) => {
                        tracing::info!(tmr_type = t.tmr_type, cmd_ids = ?t.cmd_ids,
                            "task management: aborted commands complete when their I/O is done");
                    }
                }
            }
        }

        // Poll everything in flight (new commands usually finish right here).
        waker_state.woken.store(false, Ordering::SeqCst);
        let (mut completed, mut checks, mut unpublished) = (0u64, 0u64, 0u64);
        let mut now: Option<Instant> = None;
        let mut i = 0;
        while i < pending.len() {
            if let Poll::Ready(done) = pending[i].fut.as_mut().poll(&mut cx) {
                let Pending { cmd, started, .. } = pending.swap_remove(i);
                if done.status == Status::CheckCondition {
                    checks += 1;
                }
                let bytes = cmd.data_len();
                let now = *now.get_or_insert_with(Instant::now);
                stats.record(bytes, started, now, &done);
                // The target's answer, as the ring takes it.
                let resp = Response {
                    status: done.status.as_u8(),
                    sense: done.sense(),
                    read_len: read_len(&done, bytes),
                };
                ring.complete(cmd, &resp)?;
                completed += 1;
                // Large commands are published as they finish rather than at
                // the end of the pass, so the kernel copies their data out
                // (or new data in) while the rest of the pass runs.
                unpublished += bytes;
                if unpublished >= PUBLISH_BYTES {
                    unpublished = 0;
                    publish(&mut ring, bell, stats)?;
                }
            } else {
                i += 1;
            }
        }
        publish(&mut ring, bell, stats)?;
        // Background work (after the commands: they may have started it).
        // Its wake-ups come through the same waker.
        let started_background = background.is_none() && {
            background = handler.background();
            background.is_some()
        };
        if let Some(b) = background.as_mut()
            && b.as_mut().poll(&mut cx).is_ready()
        {
            background = None;
            // Let the handler see the end of it on the next pass.
            waker_state.woken.store(true, Ordering::SeqCst);
        }
        worked |= started_background;
        let served = services.len();
        services.retain_mut(|f| f.as_mut().poll(&mut cx).is_pending());
        worked |= services.len() < served;
        stats.commands.fetch_add(completed, Ordering::Relaxed);
        stats.check_conditions.fetch_add(checks, Ordering::Relaxed);
        stats
            .in_flight
            .store(pending.len() as u64, Ordering::Relaxed);

        if let Some(since) = stopping {
            if pending.is_empty() {
                return Ok(());
            }
            if since.elapsed() > STOP_GRACE {
                tracing::warn!(
                    in_flight = pending.len(),
                    "stopping with commands still running; the next attach resets the ring"
                );
                return Ok(());
            }
        }
        if drained.more {
            continue;
        }
        worked |= completed > 0;
        if drained.entries == 0 && !poll.is_zero() && std::mem::take(&mut worked) {
            let until = Instant::now() + poll;
            let mut found = false;
            while !found && Instant::now() < until {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
                found = ring.has_new() || waker_state.woken.load(Ordering::SeqCst);
            }
            if found {
                continue;
            }
        }
        if drained.entries == 0 {
            waker_state.busy.store(false, Ordering::SeqCst);
            if waker_state.woken.load(Ordering::SeqCst) {
                waker_state.busy.store(true, Ordering::SeqCst);
                continue;
            }
            let ring_fd = bell.poll_fd();
            let wake_fd = waker_state.bell.fd();
            let mut fds = [
                PollFd::new(ring_fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake_fd.as_fd(), PollFlags::POLLIN),
            ];
            stats.sleeps.fetch_add(1, Ordering::Relaxed);
            let n = poll_fds(&mut fds, sleep_ms)?;
            if n > 0 {
                let ring_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
                let wake_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
                if ring_ready {
                    bell.wait()?;
                }
                if wake_ready {
                    waker_state.bell.wait()?;
                }
            }
            waker_state.busy.store(true, Ordering::SeqCst);
        }
    }
}

//! One worker per device: drain the ring, execute, complete, publish.
//!
//! A worker owns its device's ring engine and backend; nothing on its hot
//! path is shared with another device. It sleeps in `poll()` on the device's
//! doorbell with a short timeout so a shutdown request is seen promptly, and
//! handles commands in batches: one drain, every command executed, one
//! `publish` and one doorbell write per batch.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wasmtap_kernel::{Doorbell, MappedRegion};
use wasmtap_ring::{Command, Entry, Response, Ring, RingError};

/// The answer to one command, owned (sense copied out of the handler).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// SAM status.
    pub status: u8,
    /// Sense bytes (valid `sense_len` bytes).
    pub sense: [u8; 96],
    /// Valid sense bytes.
    pub sense_len: usize,
    /// Short data-in length, if any.
    pub read_len: Option<u32>,
}

/// What executes commands for a worker: the SCSI target over a backend.
pub trait Handler {
    /// Execute `cmd`, whose data lives in `region`.
    fn handle(&mut self, region: &Arc<MappedRegion>, cmd: &Command) -> Outcome;
    /// The initiator aborted these commands (a TMR); they still complete.
    fn aborted(&mut self, _cmd_ids: &[u16]) {}
    /// The kernel changed the device (netlink RECONFIG): new size in bytes
    /// and/or write-cache mode. Returns an error the kernel is told about.
    fn reconfigure(
        &mut self,
        _size: Option<u64>,
        _write_cache: Option<bool>,
    ) -> Result<(), String> {
        Err("this backend cannot be reconfigured".into())
    }
}

/// Requests from the daemon to one worker, handled between batches.
#[derive(Debug)]
pub enum Control {
    /// Apply a RECONFIG; the result goes back on the channel.
    Reconfigure {
        /// New size in bytes.
        size: Option<u64>,
        /// New write-cache mode.
        write_cache: Option<bool>,
        /// Where to send the outcome.
        done: std::sync::mpsc::Sender<Result<(), String>>,
    },
    /// Stop serving (the device is being removed).
    Stop,
}

/// Live counters a worker exports.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Commands completed.
    pub commands: AtomicU64,
    /// Completions with CHECK CONDITION.
    pub check_conditions: AtomicU64,
    /// Doorbell writes.
    pub notifies: AtomicU64,
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

/// Serve `ring` until `stop` is set or the device fails.
pub fn run<B: Doorbell, H: Handler>(
    mut ring: Ring<Arc<MappedRegion>>,
    bell: &B,
    handler: &mut H,
    stop: &AtomicBool,
    stats: &WorkerStats,
    batch: usize,
    control: Option<&std::sync::mpsc::Receiver<Control>>,
) -> Result<(), WorkerError> {
    let region = Arc::clone(ring.region());
    let mut entries: Vec<Entry> = Vec::with_capacity(batch);
    loop {
        if let Some(rx) = control {
            while let Ok(c) = rx.try_recv() {
                match c {
                    Control::Reconfigure {
                        size,
                        write_cache,
                        done,
                    } => {
                        let _ = done.send(handler.reconfigure(size, write_cache));
                    }
                    Control::Stop => return Ok(()),
                }
            }
        }
        entries.clear();
        let drained = ring.drain(&mut entries, batch)?;
        let mut completed = 0u64;
        let mut checks = 0u64;
        for e in entries.drain(..) {
            match e {
                Entry::Command(cmd) => {
                    let out = handler.handle(&region, &cmd);
                    if out.status == wasmtap_ring::abi::SAM_STAT_CHECK_CONDITION {
                        checks += 1;
                    }
                    let resp = Response {
                        status: out.status,
                        sense: &out.sense[..out.sense_len],
                        read_len: out.read_len,
                    };
                    ring.complete(cmd, &resp)?;
                    completed += 1;
                }
                Entry::TaskManagement(t) => {
                    tracing::info!(tmr_type = t.tmr_type, cmd_ids = ?t.cmd_ids, "task management");
                    handler.aborted(&t.cmd_ids);
                }
            }
        }
        if ring.publish()? {
            bell.notify()?;
            stats.notifies.fetch_add(1, Ordering::Relaxed);
        }
        stats.commands.fetch_add(completed, Ordering::Relaxed);
        stats.check_conditions.fetch_add(checks, Ordering::Relaxed);
        if drained.more {
            continue;
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if drained.entries == 0 {
            let fd = bell.poll_fd();
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let n = poll(&mut fds, PollTimeout::from(100u16)).map_err(io::Error::from)?;
            if n > 0 {
                bell.wait()?;
            }
        }
    }
}

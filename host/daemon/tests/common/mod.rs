//! A simulated TCMU device served by the daemon's worker, driven from the
//! test thread as an initiator would: shared by the end-to-end test files.

#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use wasmtap::demo::rw16;
use wasmtap::device::DeviceHandler;
use wasmtap::handler::HandlerError;
use wasmtap::worker::{self, ControlTx, WorkerError, WorkerStats};
use wasmtap_kernel::sim::{self, SimKernel};
use wasmtap_kernel::{EventBell, MappedRegion};
use wasmtap_ring::Ring;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{Completion, DataRef, SimConfig};

/// Builds a device's handler on its worker thread (the daemon's own kind:
/// the SCSI target over a `DeviceBackend`).
pub type Make = Box<dyn FnOnce(Arc<MappedRegion>) -> Result<DeviceHandler, HandlerError> + Send>;

/// One device: the kernel model on the test thread, the worker on its own.
pub struct Dev {
    pub k: SimKernel,
    pub control: ControlTx<DeviceHandler>,
    pub wake: EventBell,
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    block_size: u32,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), WorkerError>>>,
    tag: u64,
}

impl Dev {
    /// Start a device with `cfg`; `make` is given the region before the
    /// worker starts (to open a guest on the test thread) and returns the
    /// handler factory. The power-on unit attention is consumed, and checked.
    pub fn new(
        cfg: SimConfig,
        block_size: u32,
        make: impl FnOnce(Arc<MappedRegion>) -> Make,
    ) -> Self {
        Self::with_tuning(cfg, block_size, 64.into(), make)
    }

    /// [`Dev::new`] with the worker's batch size and ring polling given.
    pub fn with_tuning(
        cfg: SimConfig,
        block_size: u32,
        tuning: worker::Tuning,
        make: impl FnOnce(Arc<MappedRegion>) -> Make,
    ) -> Self {
        let (k, user) = sim::device(cfg).unwrap();
        let ring = Ring::attach(Arc::clone(&user.region)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let wstop = Arc::clone(&stop);
        let wake = user.bell.to_user.clone();
        let (control, ctl_rx) = worker::channel().unwrap();
        let factory = make(Arc::clone(&user.region));
        let stats = Arc::new(WorkerStats::default());
        let region = Arc::clone(&user.region);
        let serve = worker::Serve {
            ring,
            bell: user.bell,
            stop: worker::stop_flag(wstop),
            stats: Arc::clone(&stats),
            tuning,
            control: Some(ctl_rx),
        };
        let worker =
            worker::spawn("test-dev".into(), serve, move || factory(region), |_, r| r).unwrap();
        let mut d = Self {
            k,
            control,
            wake,
            stats,
            block_size,
            stop,
            worker: Some(worker),
            tag: 0,
        };
        let ua = d.exec(&[0; 6], DataRef::None);
        assert_eq!(ua.status, abi::SAM_STAT_CHECK_CONDITION);
        assert_eq!(triple(&ua), (0x6, 0x29, 0x00), "POWER ON, RESET first");
        d
    }

    /// Queue a command with the caller's tag and ring the doorbell.
    pub fn submit(&mut self, tag: u64, cdb: &[u8], dir: DataRef<'_>) {
        self.k.model.submit_ref(tag, cdb, dir).unwrap();
        self.k.to_user.ring().unwrap();
    }

    /// Reap until `n` commands have completed.
    pub fn wait(&mut self, n: usize) -> Vec<Completion> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < n {
            assert!(
                Instant::now() < deadline,
                "worker did not answer within 30 s"
            );
            self.k
                .model
                .reap_with(true, |c| got.push(c.clone()))
                .unwrap();
            if got.len() < n {
                thread::sleep(Duration::from_micros(200));
            }
        }
        got
    }

    /// Run one command and return its completion.
    pub fn exec(&mut self, cdb: &[u8], dir: DataRef<'_>) -> Completion {
        self.tag += 1;
        let tag = self.tag;
        self.submit(tag, cdb, dir);
        let c = self.wait(1).pop().unwrap();
        assert_eq!(c.tag, tag);
        c
    }

    /// WRITE(16) of `data` at `lba`.
    pub fn write(&mut self, lba: u64, data: &[u8]) -> Completion {
        let blocks = (data.len() / self.block_size as usize) as u32;
        self.exec(&rw16(0x8a, lba, blocks), DataRef::ToDevice(data))
    }

    /// READ(16) of `blocks` blocks at `lba`.
    pub fn read(&mut self, lba: u64, blocks: u32) -> Completion {
        self.exec(
            &rw16(0x88, lba, blocks),
            DataRef::FromDevice(blocks * self.block_size),
        )
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.ring();
        if let Some(w) = self.worker.take() {
            let r = w.join().expect("worker thread");
            if !thread::panicking() {
                r.expect("worker ends cleanly");
            }
        }
    }
}

/// Sense key, ASC, ASCQ of a fixed-format sense.
pub fn triple(c: &Completion) -> (u8, u8, u8) {
    (c.sense[2] & 0xf, c.sense[12], c.sense[13])
}

/// A fresh directory under the system's temporary directory, removed when
/// the test is done with it (tests that leave theirs fill `/tmp`).
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// An empty directory named after `name`, this process and thread.
    pub fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!(
            "wasmtap-{name}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! The backend of every device the daemon serves, whatever stores its
//! blocks: a WebAssembly instance that can be hot-swapped for another (a new
//! module version), the native RAM disk, or an offline disk when the bound
//! module cannot run. [`DeviceHandler`] is the SCSI handler over it, with
//! what the control plane asks of a device (swap, RECONFIG, debug text,
//! counters) as methods the worker runs as control-channel jobs.
//!
//! Each I/O clones the current backend's `Rc` before awaiting it, so a swap
//! never pulls a backend out from under a running command; the worker swaps
//! only when no command is in flight anyway (`Control::WhenIdle`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use wasmtap_runtime::{BackendStatus, GuestLog, ResourceMeter, WasmBackend};
use wasmtap_scsi::{
    BackendError, BackendResult, BlockBackend, BlockExtent, Blocks, BufMut, BufRef, DiskInfo, Lba,
};

use crate::handler::ScsiHandler;
use crate::offline::OfflineDisk;
use crate::ramdisk::RamDisk;

enum Inner {
    Guest(Box<WasmBackend>),
    Native(RamDisk),
    Offline(OfflineDisk),
}

/// A device's SCSI handler: the target over a [`DeviceBackend`].
pub type DeviceHandler = ScsiHandler<DeviceBackend>;

/// Why a device could not do what the control plane asked.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device's backstore cannot run.
    #[error("device is offline: {0}")]
    Offline(String),
    /// This kind of backend does not do that.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The WebAssembly instance failed the call.
    #[error("{0}")]
    Backstore(#[from] wasmtap_scsi::BackendError),
    /// The backend refused the change.
    #[error("{0}")]
    Refused(String),
    /// The backend's new geometry cannot be served.
    #[error(transparent)]
    Handler(#[from] crate::handler::HandlerError),
}

/// What the control plane reads about the current instance, from any thread.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The current guest's status (restarts, failures), if a guest runs.
    pub status: Option<Arc<Mutex<BackendStatus>>>,
    /// The current guest's log.
    pub log: Option<GuestLog>,
    /// What the current guest holds of the shared resources.
    pub meter: Option<ResourceMeter>,
    /// Why the device is offline, if it is.
    pub offline: Option<String>,
}

/// See the module docs.
pub struct DeviceBackend {
    cur: RefCell<Rc<Inner>>,
    observed: Arc<Mutex<Observed>>,
}

impl std::fmt::Debug for DeviceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &**self.cur.borrow() {
            Inner::Guest(_) => "guest",
            Inner::Native(_) => "native",
            Inner::Offline(_) => "offline",
        };
        f.debug_struct("DeviceBackend")
            .field("current", &kind)
            .finish()
    }
}

fn observe(inner: &Inner) -> Observed {
    match inner {
        Inner::Guest(b) => Observed {
            status: Some(b.status_handle()),
            log: Some(b.log().clone()),
            meter: Some(b.meter()),
            offline: None,
        },
        Inner::Native(_) => Observed::default(),
        Inner::Offline(d) => Observed {
            status: None,
            log: None,
            meter: None,
            offline: Some(d.reason.clone()),
        },
    }
}

impl DeviceBackend {
    /// Serve `guest`, or an offline disk with `geometry` (block size, block
    /// count) and the reason the guest could not be opened.
    pub fn new(
        guest: Result<WasmBackend, String>,
        geometry: (u32, u64),
        observed: Arc<Mutex<Observed>>,
    ) -> Self {
        let inner = match guest {
            Ok(b) => Inner::Guest(Box::new(b)),
            Err(reason) => Inner::Offline(OfflineDisk::new(geometry.0, geometry.1, reason)),
        };
        {
            let mut o = observed.lock().unwrap_or_else(|p| p.into_inner());
            let mut now = observe(&inner);
            // An offline device keeps the log its guest wrote while failing
            // to open (the control plane put it there before this worker
            // started).
            if now.log.is_none() {
                now.log = o.log.take();
            }
            *o = now;
        }
        Self {
            cur: RefCell::new(Rc::new(inner)),
            observed,
        }
    }

    /// Serve the native RAM disk.
    pub fn native(disk: RamDisk) -> Self {
        Self {
            cur: RefCell::new(Rc::new(Inner::Native(disk))),
            observed: Arc::default(),
        }
    }

    /// Close the current guest instance (td_close), if one serves and no
    /// command holds it. Afterwards the backend answers as failed.
    pub fn close(&self) -> Result<(), DeviceError> {
        match &**self.cur.borrow() {
            Inner::Guest(b) => Ok(b.close()?),
            Inner::Native(_) | Inner::Offline(_) => Ok(()),
        }
    }

    fn current(&self) -> Rc<Inner> {
        Rc::clone(&self.cur.borrow())
    }
}

impl BlockBackend for DeviceBackend {
    fn info(&self) -> DiskInfo {
        match &*self.current() {
            Inner::Guest(b) => b.info(),
            Inner::Native(d) => d.info(),
            Inner::Offline(d) => d.info(),
        }
    }
    async fn read(&self, lba: Lba, dst: BufMut<'_>) -> BackendResult {
        match &*self.current() {
            Inner::Guest(b) => b.read(lba, dst).await,
            Inner::Native(d) => d.read(lba, dst).await,
            Inner::Offline(d) => d.read(lba, dst).await,
        }
    }
    async fn write(&self, lba: Lba, src: BufRef<'_>, fua: bool) -> BackendResult {
        match &*self.current() {
            Inner::Guest(b) => b.write(lba, src, fua).await,
            Inner::Native(d) => d.write(lba, src, fua).await,
            Inner::Offline(d) => d.write(lba, src, fua).await,
        }
    }
    async fn flush(&self) -> BackendResult {
        match &*self.current() {
            Inner::Guest(b) => b.flush().await,
            Inner::Native(d) => d.flush().await,
            Inner::Offline(d) => d.flush().await,
        }
    }
    async fn discard(&self, lba: Lba, blocks: Blocks) -> BackendResult {
        match &*self.current() {
            Inner::Guest(b) => b.discard(lba, blocks).await,
            Inner::Native(d) => d.discard(lba, blocks).await,
            Inner::Offline(d) => d.discard(lba, blocks).await,
        }
    }
    async fn block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        match &*self.current() {
            Inner::Guest(b) => b.block_status(lba, blocks).await,
            Inner::Native(d) => d.block_status(lba, blocks).await,
            Inner::Offline(d) => d.block_status(lba, blocks).await,
        }
    }
    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, may_unmap: bool) -> BackendResult {
        match &*self.current() {
            Inner::Guest(b) => b.write_zeroes(lba, blocks, may_unmap).await,
            Inner::Native(d) => d.write_zeroes(lba, blocks, may_unmap).await,
            Inner::Offline(d) => d.write_zeroes(lba, blocks, may_unmap).await,
        }
    }
}

impl DeviceBackend {
    /// Replace the WebAssembly instance (no command is in flight); the old
    /// one is closed here, on the worker.
    fn swap(&self, backend: Box<WasmBackend>) {
        let old = self.cur.replace(Rc::new(Inner::Guest(backend)));
        *self.observed.lock().unwrap_or_else(|p| p.into_inner()) = observe(&self.cur.borrow());
        // The worker swaps with nothing in flight, so this is the last
        // reference and the old instance is closed here.
        match Rc::try_unwrap(old) {
            Ok(Inner::Guest(b)) => {
                if let Err(e) = b.close() {
                    tracing::warn!("closing the previous instance: {e}");
                }
            }
            Ok(Inner::Native(_) | Inner::Offline(_)) => {}
            Err(_) => tracing::warn!("previous backend still referenced; it closes when released"),
        }
    }

    fn reconfigure(&self, size: Option<u64>, write_cache: Option<bool>) -> Result<(), DeviceError> {
        match &*self.current() {
            Inner::Native(d) => d
                .reconfigure(size, write_cache)
                .map_err(DeviceError::Refused),
            Inner::Guest(_) => Err(DeviceError::Unsupported(
                "a WebAssembly backstore's geometry comes from its own configuration",
            )),
            Inner::Offline(d) => Err(DeviceError::Offline(d.reason.clone())),
        }
    }
}

impl DeviceHandler {
    /// Hot swap: serve `backend` from now on (run with nothing in flight,
    /// as a `Control::WhenIdle` job). A new module reporting another size
    /// raises CAPACITY DATA HAS CHANGED, as a resize does.
    pub fn swap(&mut self, backend: Box<WasmBackend>) -> Result<(), DeviceError> {
        self.backend().swap(backend);
        Ok(self.refresh()?)
    }

    /// The kernel changed the device (netlink RECONFIG): new size in bytes
    /// and/or write-cache mode.
    pub fn reconfigure(
        &mut self,
        size: Option<u64>,
        write_cache: Option<bool>,
    ) -> Result<(), DeviceError> {
        self.backend().reconfigure(size, write_cache)?;
        Ok(self.refresh()?)
    }

    /// The backstore's debug text (td_debug).
    pub fn debug(&self) -> Result<String, DeviceError> {
        match &*self.backend().current() {
            Inner::Guest(b) => Ok(b.debug()?),
            Inner::Native(_) => Err(DeviceError::Unsupported("this backend has no debug output")),
            Inner::Offline(d) => Ok(format!("offline: {}", d.reason)),
        }
    }

    /// The backstore's own counters (its `stats()`).
    pub fn guest_stats(&self) -> Result<wasmtap_web::host::GuestStats, DeviceError> {
        match &*self.backend().current() {
            Inner::Guest(b) => {
                let s = b.stats()?;
                Ok(wasmtap_web::host::GuestStats {
                    reads: s.reads,
                    writes: s.writes,
                    bytes_read: s.bytes_read,
                    bytes_written: s.bytes_written,
                    flushes: s.flushes,
                    discards: s.discards,
                    errors: s.errors,
                })
            }
            Inner::Native(_) => Err(DeviceError::Unsupported(
                "this backend keeps no counters of its own",
            )),
            Inner::Offline(d) => Err(DeviceError::Offline(d.reason.clone())),
        }
    }
}

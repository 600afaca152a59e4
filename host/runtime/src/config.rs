//! Knobs: for the runtime as a whole and for each device instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtap_kernel::MappedRegion;

use crate::limits::Tenant;
use crate::load::LoadLimits;
use crate::load::Module;

/// Engine-wide settings, fixed when the [`Runtime`](crate::Runtime) is built.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled code is cached (a directory the daemon owns). `None`:
    /// compile every load, cache only in memory.
    pub cache_dir: Option<PathBuf>,
    /// Instances that can exist at once (the pooling allocator reserves
    /// address space for this many).
    pub max_instances: u32,
    /// Hard ceiling for one linear memory, whatever an instance's own limit.
    pub max_memory_per_instance: u64,
    /// Period of the epoch ticker; deadlines are counted in these ticks
    /// (a call is interrupted between one tick before its deadline and its
    /// deadline). It ticks only while a guest call runs or a request is in
    /// flight, so the period is what a busy runtime pays in wake-ups.
    pub epoch_tick: Duration,
    /// Threads of the I/O executor (submit-read / submit-write).
    pub io_threads: usize,
    /// I/O jobs one device may have queued or running on the executor;
    /// past this, its submits get `busy`. The threads serve devices round
    /// robin, so this bounds what a flooding device costs the others.
    pub io_per_device: usize,
    /// Files all guests together may hold open through `storage`. Further
    /// capped at start to the process's descriptor limit less
    /// [`RESERVED_FDS`](crate::RESERVED_FDS), so guests can never take the
    /// descriptors the daemon needs for its own files, sockets and devices.
    pub max_open_files: u64,
    /// What an upload may contain, checked before it is compiled.
    pub load_limits: LoadLimits,
    /// Components compiled at once; further loads wait for a slot (up to
    /// `compile_timeout`). wasmtime is built without parallel compilation,
    /// so each compile uses one core.
    pub compile_slots: usize,
    /// Longest a load may wait for a slot plus compile. Past it the load
    /// fails; a compile already running finishes in the background (it
    /// cannot be interrupted) and keeps its slot meanwhile, so at most
    /// `compile_slots` compiles ever run.
    pub compile_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            // 256 devices, with room for the second instance a hot swap
            // opens before it closes the first.
            max_instances: 512,
            max_memory_per_instance: 1 << 30,
            // 20 wake-ups a second while busy; a 1 s call deadline is kept
            // to within 5 %.
            epoch_tick: Duration::from_millis(50),
            io_threads: 4,
            io_per_device: 256,
            max_open_files: 16_384,
            load_limits: LoadLimits::default(),
            compile_slots: 1,
            compile_timeout: Duration::from_secs(60),
        }
    }
}

/// Limits of one device instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Linear memory the instance may hold, all its memories together.
    pub memory: u64,
    /// Table elements the instance may hold, all its tables together.
    pub table_elements: u64,
    /// Longest a guest call (queue-*, info, debug, ...) may run.
    pub call_deadline: Duration,
    /// Longest instantiation plus `open` may run (opening may read metadata).
    pub open_deadline: Duration,
    /// Longest a request may stay uncompleted before it fails and the
    /// instance counts as failed.
    pub request_timeout: Duration,
    /// Work one guest call may ask of the host: bytes moved by read-at,
    /// write-at and the request data functions, plus a fixed charge per host
    /// call. Exhausting it traps the guest (host-call fuel).
    pub host_work_per_call: u64,
    /// Log lines a device may emit per second; the rest are counted and
    /// dropped.
    pub log_lines_per_sec: u32,
    /// Files the instance may hold open through `storage` at once; past
    /// it `open` answers `busy` (close one first).
    pub open_files: u64,
    /// Largest buffer the host allocates for one guest call's result
    /// (`read-at`, `read-data`); larger asks fail with `out-of-range`. Also
    /// never more than the instance could hold in its own memory, nor than
    /// its tenant's memory budget has left.
    pub max_host_buffer: u64,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        Self {
            memory: 256 << 20,
            table_elements: 100_000,
            call_deadline: Duration::from_secs(1),
            open_deadline: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            host_work_per_call: 1 << 30,
            log_lines_per_sec: 50,
            open_files: 64,
            max_host_buffer: 16 << 20,
        }
    }
}

/// When to re-create a failed instance and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// This many failures within `window` leave the backend failed for good.
    pub max_failures: u32,
    /// See `max_failures`.
    pub window: Duration,
    /// Wait before the first re-creation; doubles per failure.
    pub initial_backoff: Duration,
    /// Longest wait between re-creations.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Everything needed to (re-)create one device's instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The loaded backstore.
    pub module: Module,
    /// The device's configuration string, passed to `disk.open`.
    pub config: String,
    /// The device's own directory, the root of its `storage` interface.
    /// `None`: every storage call fails with `access-denied`.
    pub dir: Option<PathBuf>,
    /// The device's TCMU data area. With it, request data moves directly
    /// between files and the region; without it, through a host buffer.
    pub region: Option<Arc<MappedRegion>>,
    /// Whose memory budget the instance is charged to.
    pub tenant: Tenant,
    /// Per-instance limits.
    pub limits: InstanceLimits,
    /// Re-creation policy.
    pub restart: RestartPolicy,
    /// Open the disk read-only.
    pub read_only: bool,
    /// What the device's directory may hold.
    pub storage: StorageLimits,
    /// The device's size in bytes and sector size, when the device has a
    /// geometry of its own (a kernel LUN, a control-plane device): a
    /// backstore reporting another is refused at open
    /// ([`crate::OpenError::Geometry`]), with both in the reason.
    pub device_geometry: Option<(u64, u32)>,
    /// The device's log, when the caller keeps one across instances: lines
    /// a guest writes while failing to open stay readable there. `None`:
    /// the backend makes its own.
    pub log: Option<crate::GuestLog>,
}

/// What one device's directory may hold: bytes (logical file sizes) and
/// files. Past either, the `storage` call that would grow it fails with
/// `no-space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Bytes, all files' lengths together.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
}

impl StorageLimits {
    /// The default for a device of `size` bytes: its size, an eighth more
    /// and 16 MiB for an image format's metadata, and 256 files.
    pub fn for_device(size: u64) -> Self {
        Self {
            bytes: size.saturating_add(size / 8).saturating_add(16 << 20),
            files: 256,
        }
    }
}

impl Default for StorageLimits {
    /// No limit of the device's own (its tenant's still applies).
    fn default() -> Self {
        Self {
            bytes: u64::MAX,
            files: u64::MAX,
        }
    }
}

impl InstanceSpec {
    /// A spec with default limits and policy.
    pub fn new(module: Module, config: impl Into<String>, tenant: Tenant) -> Self {
        Self {
            module,
            config: config.into(),
            dir: None,
            region: None,
            tenant,
            limits: InstanceLimits::default(),
            restart: RestartPolicy::default(),
            read_only: false,
            storage: StorageLimits::default(),
            device_geometry: None,
            log: None,
        }
    }
}

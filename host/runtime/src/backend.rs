//! [`WasmBackend`]: one device's backstore instance behind the SCSI target's
//! block-backend seam, with containment and re-creation.
//!
//! Each block request becomes a `request` resource in the instance's table;
//! the guest's `queue-*` export receives it, and the request's future
//! resolves once the guest has completed it and every host I/O submitted for
//! it has finished. A trap, a blown deadline, running out of memory or a
//! broken protocol ends the instance: its in-flight requests fail with
//! [`BackendErrorKind::Unavailable`] (retryable), and the instance is
//! re-created with the same configuration after a backoff. After
//! [`RestartPolicy::max_failures`](crate::RestartPolicy) failures within the
//! policy's window the backend stays failed and [`WasmBackend::status`]
//! says why.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtap_scsi::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, BlockExtent, BlockState, Blocks,
    BufMut, BufRef, DiscardInfo, DiskInfo, Extent, Lba, WriteCache,
};
use wasmtime::component::{Resource, ResourceAny};
use wasmtime::{Store, Trap};

use crate::bindings::Linked;
use crate::bindings::requests::Kind;
use crate::bindings::types::{self, ErrorCode, OpenFlags};
use crate::config::InstanceSpec;
use crate::engine::{Awake, Runtime};
use crate::host::{DeviceState, ProtocolViolation, Resources};
use crate::io::{IoExecutor, IoOwner};
use crate::limits::{Budget, StoreLimiter};
use crate::log::GuestLog;
use crate::quota::DirAccount;
use crate::request::{
    Abandoned, DataTarget, Extents, Inflight, Outcome, RequestRes, RequestShared,
};

/// Largest transfer reported when the guest sets no limit.
const DEFAULT_MAX_TRANSFER: u64 = 8 << 20;

/// Why a backend could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The device directory could not be opened.
    #[error("device directory: {0}")]
    Directory(String),
    /// Instantiation or `open` trapped, overran its deadline or ran out of
    /// memory.
    #[error("instance failed while opening: {0}")]
    Instance(String),
    /// The guest's `open` refused the configuration: its error code, and
    /// the last thing it logged while opening (its own reason, if it gave
    /// one).
    #[error("the backstore refused to open: {}{}", .code.name(), said_suffix(.said))]
    Refused {
        /// The guest's error code.
        code: ErrorCode,
        /// Its last error or warning (else last line) logged during `open`.
        said: Option<String>,
    },
    /// The guest reported geometry the SCSI target cannot use.
    #[error("unusable geometry: {0}")]
    Geometry(String),
    /// A limit of the tenant or daemon leaves no room for the instance.
    #[error("{0}")]
    Limit(String),
}

fn said_suffix(said: &Option<String>) -> String {
    match said {
        Some(m) => format!(" (it logged: {m:?})"),
        None => String::new(),
    }
}

/// Longest `debug` text kept (the device page shows it; a guest may
/// return far more).
pub const MAX_DEBUG: usize = 64 << 10;

/// Reads what a device's backend holds, from any thread (the backend
/// itself stays on its worker). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResourceMeter(Arc<MeterInner>);

#[derive(Debug)]
struct MeterInner {
    /// Files the device's live instance holds open (its limit is the
    /// instance's).
    open_files: Budget,
    /// Linear memory of the live instance.
    memory: Arc<AtomicU64>,
    /// The device directory's storage account, once an instance opened.
    account: Mutex<Option<Arc<DirAccount>>>,
    io: Arc<IoExecutor>,
    io_owner: IoOwner,
}

impl ResourceMeter {
    /// What the device holds now.
    pub fn read(&self) -> DeviceResources {
        let m = &self.0;
        let mut r = DeviceResources {
            memory: m.memory.load(Ordering::Acquire),
            open_files: m.open_files.used(),
            open_files_limit: m.open_files.limit(),
            io_pending: m.io.pending(m.io_owner) as u64,
            ..DeviceResources::default()
        };
        if let Some(a) = m.account.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let u = a.usage();
            (r.storage_bytes, r.storage_files) = (u.bytes, u.files);
            (r.storage_bytes_limit, r.storage_files_limit) = (u.bytes_limit, u.files_limit);
        }
        r
    }
}

/// What one device's backend holds of the shared resources (see
/// docs/limits.md), at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceResources {
    /// Linear memory of the live instance, bytes.
    pub memory: u64,
    /// Files the live instance holds open, and its limit.
    pub open_files: u64,
    /// See `open_files`.
    pub open_files_limit: u64,
    /// Bytes stored in the device's directory, and its limit.
    pub storage_bytes: u64,
    /// See `storage_bytes`.
    pub storage_bytes_limit: u64,
    /// Files stored in the device's directory, and its limit.
    pub storage_files: u64,
    /// See `storage_files`.
    pub storage_files_limit: u64,
    /// I/O jobs queued or running on the executor.
    pub io_pending: u64,
}

/// Where a backend stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendState {
    /// The instance is serving requests.
    Running,
    /// The instance failed; it is re-created on the first request at or
    /// after `retry_at`.
    Restarting {
        /// When the next attempt may happen.
        retry_at: Instant,
    },
    /// Too many failures: every request fails until the device is
    /// re-created by the operator.
    Failed,
}

/// What the operator (the UI, the device page) sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    /// Current state.
    pub state: BackendState,
    /// Why the last failure happened, if any did.
    pub reason: Option<String>,
    /// Instances created after the first.
    pub restarts: u64,
    /// Instance failures since the backend was created.
    pub failures: u64,
}

struct Live {
    store: Store<DeviceState>,
    driver: Linked,
    disk: ResourceAny,
    generation: u64,
}

struct Supervisor {
    live: Option<Live>,
    generation: u64,
    recent: VecDeque<Instant>,
    backoff: Duration,
}

/// A device's backstore. See the module docs. Lives on the device's worker
/// thread (it is `Send`, not `Sync`); its futures are not `Send`.
pub struct WasmBackend {
    rt: Runtime,
    spec: InstanceSpec,
    log: GuestLog,
    inflight: Arc<Inflight>,
    sup: RefCell<Supervisor>,
    info: Cell<DiskInfo>,
    status: Arc<Mutex<BackendStatus>>,
    /// Requests already in the live instance's table, waiting for the next
    /// `queue-batch` call (see [`WasmBackend::dispatch`]).
    /// Each with its data length.
    queue: RefCell<VecDeque<(Resource<RequestRes>, u64)>>,
    /// What the device holds; its I/O queue and open-files count are kept
    /// across instances.
    meter: ResourceMeter,
    /// The vector the last `queue-batch` call was made from, kept for its
    /// capacity.
    spare_batch: RefCell<Vec<Resource<RequestRes>>>,
    /// The instance generation the queued requests belong to.
    queue_generation: Cell<u64>,
    /// Finished requests' shared state, reused (one allocation less per
    /// request).
    spare: RefCell<Vec<Arc<RequestShared>>>,
}

/// Most spare request states kept.
const MAX_SPARE: usize = 256;

/// Most requests handed to the guest in one `queue-batch` call.
const MAX_BATCH: usize = 64;

/// Most data (bytes) handed to the guest in one `queue-batch` call, unless
/// its first request alone is larger.
const MAX_BATCH_BYTES: u64 = 256 * 1024;

impl std::fmt::Debug for WasmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBackend")
            .field("module", &self.spec.module)
            .field("info", &self.info.get())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

fn ticks(rt: &Runtime, d: Duration) -> u64 {
    let tick =
        rt.0.config
            .epoch_tick
            .max(Duration::from_millis(1))
            .as_nanos();
    // At least two: with one, a tick landing just after the call began
    // would end it at once.
    (d.as_nanos().div_ceil(tick)).clamp(2, u128::from(u64::MAX)) as u64
}

/// A failure reason for the operator, from a guest call's error.
fn describe(e: &wasmtime::Error, store: &Store<DeviceState>, deadline: Duration) -> String {
    if let Some(p) = e.downcast_ref::<ProtocolViolation>() {
        return p.to_string();
    }
    if let Some(x) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("the guest exited (code {})", x.0);
    }
    if let Some(t) = e.downcast_ref::<Trap>() {
        if let Some(d) = store.data().limiter.denied {
            return format!("{d}; the guest then trapped ({t})");
        }
        return match t {
            Trap::Interrupt => {
                format!("deadline exceeded: a guest call ran longer than {deadline:?}")
            }
            _ => format!("trap: {t}"),
        };
    }
    if e.downcast_ref::<wasmtime::component::ResourceTableError>()
        .is_some()
    {
        return format!("protocol violation: {e}");
    }
    // The root cause first: the wasm backtrace wasmtime adds as context can
    // be long (a batch adds a frame) and is cut below.
    let mut s = format!("{}; {e:#}", e.root_cause());
    let mut end = s.len().min(512);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// The SCSI target's geometry from the guest's disk-info.
fn map_info(i: &types::DiskInfo, read_only: bool) -> Result<DiskInfo, String> {
    let bs = i.sector_size;
    if bs == 0 || !i.size.is_multiple_of(u64::from(bs)) {
        return Err(format!(
            "size {} is not a multiple of the sector size {bs}",
            i.size
        ));
    }
    let per = |bytes: u64| bytes / u64::from(bs);
    let max_transfer = match i.max_transfer {
        0 => per(DEFAULT_MAX_TRANSFER),
        m => per(u64::from(m)),
    }
    .max(1);
    let info = DiskInfo {
        block_size: bs,
        block_count: Blocks(per(i.size)),
        physical_exponent: 0,
        max_transfer: Blocks(max_transfer),
        optimal_transfer: Blocks(per(u64::from(i.optimal_transfer))),
        discard: i.discard.then(|| DiscardInfo {
            granularity: Blocks(per(u64::from(i.discard_granularity)).max(1)),
            alignment: Lba(0),
            max_blocks: u32::try_from(max_transfer).unwrap_or(u32::MAX),
            max_descriptors: 64,
            // The WIT: "discarded ranges read as zeros".
            zeroes: true,
        }),
        write_cache: if i.write_cache {
            WriteCache::WriteBack
        } else {
            WriteCache::WriteThrough
        },
        read_only: i.read_only || read_only,
    };
    info.validate().map_err(|e| e.to_string())?;
    Ok(info)
}

/// The SCSI target's error for a guest's error code.
fn backend_error(code: ErrorCode, lba: Lba) -> BackendError {
    let kind = match code {
        ErrorCode::Io | ErrorCode::Corrupt => {
            return BackendError::at(BackendErrorKind::Medium, lba);
        }
        ErrorCode::NoSpace => BackendErrorKind::NoSpace,
        ErrorCode::ReadOnly => BackendErrorKind::ReadOnly,
        ErrorCode::OutOfRange => BackendErrorKind::OutOfRange,
        ErrorCode::Unsupported => BackendErrorKind::Unsupported,
        ErrorCode::Busy => BackendErrorKind::Unavailable,
        ErrorCode::InvalidConfig
        | ErrorCode::AccessDenied
        | ErrorCode::NotFound
        | ErrorCode::Internal => BackendErrorKind::Internal,
    };
    BackendError::new(kind)
}

fn unavailable() -> BackendError {
    BackendError::new(BackendErrorKind::Unavailable)
}

impl Runtime {
    /// Create a device's backend: instantiate `spec.module` in a new store,
    /// open the disk with `spec.config`, and read its geometry.
    ///
    /// `device` names the device in logs.
    pub fn open(&self, device: &str, spec: InstanceSpec) -> Result<WasmBackend, OpenError> {
        // The caller's log, when it keeps one for the device: what the guest
        // says while failing to open stays visible there.
        let log = spec
            .log
            .clone()
            .unwrap_or_else(|| GuestLog::new(device, spec.limits.log_lines_per_sec));
        let meter = ResourceMeter(Arc::new(MeterInner {
            open_files: Budget::new(spec.limits.open_files),
            memory: Arc::default(),
            account: Mutex::new(None),
            io: Arc::clone(&self.0.io),
            io_owner: self.0.io.queue(spec.tenant.id()),
        }));
        let (live, info) = instantiate(self, &spec, &log, 0, &meter)?;
        let inflight = Arc::new(Inflight::default());
        self.watch(&inflight);
        Ok(WasmBackend {
            rt: self.clone(),
            log,
            inflight,
            sup: RefCell::new(Supervisor {
                live: Some(live),
                generation: 0,
                recent: VecDeque::new(),
                backoff: spec.restart.initial_backoff,
            }),
            info: Cell::new(info),
            spec,
            status: Arc::new(Mutex::new(BackendStatus {
                state: BackendState::Running,
                reason: None,
                restarts: 0,
                failures: 0,
            })),
            queue: RefCell::new(VecDeque::new()),
            meter,
            spare_batch: RefCell::new(Vec::new()),
            queue_generation: Cell::new(0),
            spare: RefCell::new(Vec::new()),
        })
    }
}

/// Build a store and instance, and open the disk.
fn instantiate(
    rt: &Runtime,
    spec: &InstanceSpec,
    log: &GuestLog,
    generation: u64,
    meter: &ResourceMeter,
) -> Result<(Live, DiskInfo), OpenError> {
    let _awake = rt.awake();
    let tenant = &spec.tenant;
    let instance = Budget::take_all(&[tenant.instances()], 1).map_err(|_| {
        OpenError::Limit(format!(
            "tenant {:?} has its limit of {} instances",
            tenant.id(),
            tenant.instances().limit()
        ))
    })?;
    let account = spec
        .dir
        .as_deref()
        .map(|d| rt.account(d, spec.storage, tenant));
    *meter.0.account.lock().unwrap_or_else(|p| p.into_inner()) = account.clone();
    let res = Resources {
        tenant: tenant.clone(),
        open_files: meter.0.open_files.clone(),
        daemon_files: rt.0.open_files.clone(),
        account,
        io_owner: meter.0.io_owner,
        max_host_buffer: spec.limits.max_host_buffer,
        _instance: instance,
    };
    let dir = match &spec.dir {
        Some(p) => Some(
            Dir::open_ambient_dir(p, ambient_authority())
                .map_err(|e| OpenError::Directory(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let limiter = StoreLimiter::new(
        spec.tenant.clone(),
        spec.limits.memory,
        spec.limits.table_elements,
        Arc::clone(&meter.0.memory),
    );
    let state = DeviceState::new(
        crate::wasi::context(log),
        limiter,
        dir,
        Arc::clone(&rt.0.io),
        log.clone(),
        res,
    );
    let mut store = Store::new(&rt.0.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    let deadline = spec.limits.open_deadline;
    store.set_epoch_deadline(ticks(rt, deadline));
    store.data_mut().work_left = spec.limits.host_work_per_call;
    let fail = |e: wasmtime::Error, store: &Store<DeviceState>| {
        OpenError::Instance(describe(&e, store, deadline))
    };
    let driver = match spec.module.0.pre.instantiate(&mut store) {
        Ok(d) => d,
        Err(e) => return Err(fail(e, &store)),
    };
    let flags = if spec.read_only {
        OpenFlags::READ_ONLY
    } else {
        OpenFlags::empty()
    };
    let disk = driver.wasmtap_backstore_driver().disk();
    let opening = std::time::SystemTime::now();
    let disk_res = match disk.call_open(&mut store, &spec.config, flags) {
        Ok(Ok(d)) => d,
        Ok(Err(code)) => {
            return Err(OpenError::Refused {
                code,
                said: log.said_since(opening),
            });
        }
        Err(e) => return Err(fail(e, &store)),
    };
    let wit_info = match disk.call_info(&mut store, disk_res) {
        Ok(i) => i,
        Err(e) => return Err(fail(e, &store)),
    };
    let info = map_info(&wit_info, spec.read_only).map_err(OpenError::Geometry)?;
    if let Some((size, sector)) = spec.device_geometry
        && (wit_info.size, wit_info.sector_size) != (size, sector)
    {
        // Serving it would fail every I/O past the smaller size (or mix
        // sector sizes): refuse, saying both.
        let _ = disk.call_close(&mut store, disk_res);
        return Err(OpenError::Geometry(format!(
            "the backstore reports {} bytes in {}-byte sectors, but the device is {size} bytes in {sector}-byte sectors \
             (the host passes the device's size= and sector= in the configuration; a backstore must use them, or the \
             configuration must agree)",
            wit_info.size, wit_info.sector_size
        )));
    }
    Ok((
        Live {
            store,
            driver,
            disk: disk_res,
            generation,
        },
        info,
    ))
}

/// Removes a request from the in-flight set (if it was entered there) when
/// its future ends, and, if the future was dropped early, waits for host
/// I/O into the command's buffer to drain before the buffer goes away.
struct Slot<'a> {
    inflight: &'a Inflight,
    index: Cell<Option<usize>>,
    shared: Arc<RequestShared>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.release();
        if let Some(i) = self.index.get() {
            self.inflight.remove(i);
        }
    }
}

impl WasmBackend {
    /// The device's status for the operator.
    pub fn status(&self) -> BackendStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A handle on the status that other threads (the web UI) can read.
    pub fn status_handle(&self) -> Arc<Mutex<BackendStatus>> {
        Arc::clone(&self.status)
    }

    /// The device's guest log (log interface, stdout, stderr).
    pub fn log(&self) -> &GuestLog {
        &self.log
    }

    /// Requests handed to the guest and not yet resolved.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// What the device holds of the shared resources.
    pub fn resources(&self) -> DeviceResources {
        self.meter.read()
    }

    /// A handle reading [`resources`](Self::resources) from other threads.
    pub fn meter(&self) -> ResourceMeter {
        self.meter.clone()
    }

    /// Linear memory the current instance holds, in bytes.
    pub fn memory(&self) -> u64 {
        self.sup
            .borrow()
            .live
            .as_ref()
            .map_or(0, |l| l.store.data().limiter.memory())
    }

    fn set_status(&self, f: impl FnOnce(&mut BackendStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Tear the instance of `generation` down (if it is still the live one)
    /// and decide about re-creation.
    fn fail(&self, sup: &mut Supervisor, generation: u64, reason: String) {
        match &sup.live {
            Some(l) if l.generation == generation => {}
            _ => return,
        }
        // Dropping the store frees its memory and returns it to the tenant.
        sup.live = None;
        self.inflight.abandon_all(Abandoned::InstanceFailed);
        self.record_failure(sup, reason);
    }

    fn record_failure(&self, sup: &mut Supervisor, reason: String) {
        let policy = self.spec.restart;
        let now = Instant::now();
        while sup
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > policy.window)
        {
            sup.recent.pop_front();
        }
        sup.backoff = if sup.recent.is_empty() {
            policy.initial_backoff
        } else {
            (sup.backoff * 2).min(policy.max_backoff)
        };
        sup.recent.push_back(now);
        let given_up = sup.recent.len() >= policy.max_failures as usize;
        tracing::warn!(
            target: "wasmtap::runtime",
            module = %self.spec.module.hash_hex(),
            given_up,
            "backstore instance failed: {reason}"
        );
        let retry_at = now + sup.backoff;
        self.set_status(|s| {
            s.failures += 1;
            s.state = if given_up {
                BackendState::Failed
            } else {
                BackendState::Restarting { retry_at }
            };
            s.reason = Some(if given_up {
                format!(
                    "{reason} ({} failures within {:?}; not restarting)",
                    sup.recent.len(),
                    policy.window
                )
            } else {
                reason
            });
        });
    }

    /// The live instance, re-creating it if its backoff has passed.
    fn live<'s>(&self, sup: &'s mut Supervisor) -> Result<&'s mut Live, BackendError> {
        if sup.live.is_none() {
            let retry_at = match self.status().state {
                BackendState::Failed => return Err(BackendError::new(BackendErrorKind::Offline)),
                BackendState::Restarting { retry_at } => retry_at,
                BackendState::Running => Instant::now(),
            };
            if Instant::now() < retry_at {
                return Err(unavailable());
            }
            sup.generation += 1;
            match instantiate(&self.rt, &self.spec, &self.log, sup.generation, &self.meter) {
                Ok((live, info)) => {
                    if info != self.info.get() {
                        tracing::warn!(
                            target: "wasmtap::runtime",
                            "re-created backstore reports different geometry: {info:?}"
                        );
                    }
                    self.info.set(info);
                    sup.live = Some(live);
                    self.set_status(|s| {
                        s.restarts += 1;
                        s.state = BackendState::Running;
                    });
                }
                Err(e) => {
                    self.record_failure(sup, format!("re-creating the instance: {e}"));
                    return Err(unavailable());
                }
            }
        }
        sup.live.as_mut().ok_or_else(unavailable)
    }

    /// Arm the deadline and the host-call budget for one guest call; the
    /// epoch ticks while the returned guard lives.
    #[must_use]
    fn arm(&self, live: &mut Live) -> Awake<'_> {
        self.arm_for(live, 0)
    }

    /// Arm one guest call that carries requests of `bytes` bytes: the
    /// deadline is the same as for any call (a whole batch must finish
    /// within it); the host-call budget is one call's plus twice the
    /// requests' data (each byte may be moved once in and once out), so it
    /// grows with the work the batch brings, not with how many requests
    /// carry it.
    #[must_use]
    fn arm_for(&self, live: &mut Live, bytes: u64) -> Awake<'_> {
        let awake = self.rt.awake();
        live.store
            .set_epoch_deadline(ticks(&self.rt, self.spec.limits.call_deadline));
        live.store.data_mut().work_left = self
            .spec
            .limits
            .host_work_per_call
            .saturating_add(bytes.saturating_mul(2));
        awake
    }

    /// Hand the oldest queued requests to the guest in one `queue-batch`
    /// call: up to [`MAX_BATCH`] of them and [`MAX_BATCH_BYTES`] of data
    /// (at least one). A request is queued when its future is first polled
    /// and dispatched when any queued future is polled again, so the small
    /// commands a worker starts in one pass reach the guest in one call;
    /// large ones go a few at a time, each poll of a queued future sending
    /// the next few, so the worker hands back the first ones' completions
    /// while the guest works on the rest.
    fn dispatch(&self) {
        let (batch, bytes, generation) = {
            let mut q = self.queue.borrow_mut();
            if q.is_empty() {
                return;
            }
            let (mut n, mut bytes) = (0, 0u64);
            while n < q.len() && n < MAX_BATCH && (n == 0 || bytes < MAX_BATCH_BYTES) {
                bytes += q[n].1;
                n += 1;
            }
            let mut batch = std::mem::take(&mut *self.spare_batch.borrow_mut());
            batch.extend(q.drain(..n).map(|(r, _)| r));
            (batch, bytes, self.queue_generation.get())
        };
        let mut sup = self.sup.borrow_mut();
        // Requests of an instance that failed (or was replaced) since they
        // were queued are not sent: each is abandoned when its future is
        // next polled (see `submit`).
        if let Some(live) = sup.live.as_mut()
            && live.generation == generation
        {
            let _awake = self.arm_for(live, bytes);
            let disk = live.driver.wasmtap_backstore_driver().disk();
            let r = disk.call_queue_batch(&mut live.store, live.disk, &batch);
            if let Err(e) = r {
                let reason = describe(&e, &live.store, self.spec.limits.call_deadline);
                self.fail(&mut sup, generation, reason);
            }
        }
        drop(sup);
        // Keep the vector's capacity for the next batch.
        let mut batch = batch;
        batch.clear();
        *self.spare_batch.borrow_mut() = batch;
    }

    /// Run a guest call that does not involve a request.
    fn call<R>(&self, f: impl FnOnce(&mut Live) -> wasmtime::Result<R>) -> Result<R, BackendError> {
        let mut sup = self.sup.borrow_mut();
        let live = self.live(&mut sup)?;
        let _awake = self.arm(live);
        let generation = live.generation;
        match f(live) {
            Ok(r) => Ok(r),
            Err(e) => {
                let reason = describe(&e, &live.store, self.spec.limits.call_deadline);
                self.fail(&mut sup, generation, reason);
                Err(unavailable())
            }
        }
    }

    /// The guest's `debug` text.
    ///
    /// At most [`MAX_DEBUG`] bytes: longer text is cut on a character
    /// boundary and says so.
    pub fn debug(&self) -> Result<String, BackendError> {
        let mut text = self.call(|l| {
            let d = l.driver.wasmtap_backstore_driver().disk();
            d.call_debug(&mut l.store, l.disk)
        })?;
        if text.len() > MAX_DEBUG {
            let total = text.len();
            let mut cut = MAX_DEBUG;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(&format!(
                "\n[cut: the guest returned {total} bytes, {MAX_DEBUG} are kept]"
            ));
        }
        Ok(text)
    }

    /// The guest's counters.
    pub fn stats(&self) -> Result<types::DiskStats, BackendError> {
        self.call(|l| {
            let d = l.driver.wasmtap_backstore_driver().disk();
            d.call_stats(&mut l.store, l.disk)
        })
    }

    /// The guest's answer to `block-status.query` for `blocks` blocks at
    /// `lba`, as block extents. A guest that does not export the interface
    /// (every 0.1.0 guest), or answers `unsupported`, is all mapped. An
    /// answer that is not in whole blocks is refused (HARDWARE ERROR to the
    /// initiator) and noted in the device's log; the SCSI target checks
    /// the rest (contiguity, range).
    fn guest_block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        let bs = u64::from(self.info.get().block_size);
        let out_of_range = || BackendError::new(BackendErrorKind::OutOfRange);
        let offset = lba.0.checked_mul(bs).ok_or_else(out_of_range)?;
        let len = blocks.0.checked_mul(bs).ok_or_else(out_of_range)?;
        let mapped = || {
            vec![BlockExtent {
                lba,
                blocks,
                state: BlockState::Mapped,
            }]
        };
        let answer = self.call(|l| {
            match l
                .driver
                .query_block_status(&mut l.store, l.disk, offset, len)
            {
                None => Ok(None),
                Some(r) => r.map(Some),
            }
        })?;
        let extents = match answer {
            None | Some(Err(ErrorCode::Unsupported)) => return Ok(mapped()),
            Some(Err(code)) => return Err(backend_error(code, lba)),
            Some(Ok(e)) => e,
        };
        let mut out = Vec::with_capacity(extents.len());
        for e in &extents {
            if e.offset % bs != 0 || e.length % bs != 0 {
                self.log.host(format!(
                    "block-status answered an extent of {} bytes at {} for a disk of {bs}-byte sectors: not whole sectors",
                    e.length, e.offset
                ));
                return Err(BackendError::new(BackendErrorKind::Internal));
            }
            out.push(BlockExtent {
                lba: Lba(e.offset / bs),
                blocks: Blocks(e.length / bs),
                state: match e.state {
                    types::BlockState::Mapped => BlockState::Mapped,
                    types::BlockState::Zero => BlockState::Zero,
                    types::BlockState::Hole => BlockState::Deallocated,
                },
            });
        }
        Ok(out)
    }

    /// Close the disk (td_close). Requests must have resolved first.
    pub fn close(&self) -> Result<(), BackendError> {
        let r = self.call(|l| {
            let d = l.driver.wasmtap_backstore_driver().disk();
            d.call_close(&mut l.store, l.disk)
        })?;
        self.sup.borrow_mut().live = None;
        self.set_status(|s| {
            s.state = BackendState::Failed;
            s.reason = Some("closed".into());
        });
        r.map_err(|code| backend_error(code, Lba(0)))
    }

    /// Hand one request to the guest and wait for it.
    async fn submit(
        &self,
        kind: Kind,
        lba: Lba,
        length: u64,
        fua: bool,
        data: DataTarget,
    ) -> BackendResult {
        let bs = u64::from(self.info.get().block_size);
        let offset = lba
            .0
            .checked_mul(bs)
            .ok_or(BackendError::new(BackendErrorKind::OutOfRange))?;
        let shared = self.spare.borrow_mut().pop().unwrap_or_default();
        let generation;
        let slot = {
            let mut sup = self.sup.borrow_mut();
            let live = self.live(&mut sup)?;
            generation = live.generation;
            let res: Resource<RequestRes> = live
                .store
                .data_mut()
                .table
                .push(RequestRes {
                    kind,
                    offset,
                    length,
                    fua,
                    data,
                    shared: Arc::clone(&shared),
                })
                .map_err(|_| BackendError::new(BackendErrorKind::Internal))?;
            // Entered in the in-flight set (which the supervisor times out
            // and a failing instance abandons) only if it is still running
            // after its dispatch: most requests are answered within it, and
            // the set costs two lock round trips and a clock read.
            let slot = Slot {
                inflight: &self.inflight,
                index: Cell::new(None),
                shared: Arc::clone(&shared),
            };
            let mut q = self.queue.borrow_mut();
            if self.queue_generation.get() != generation {
                // Left over from an instance that is gone (their futures
                // abandon them when next polled).
                q.clear();
                self.queue_generation.set(generation);
            }
            q.push_back((res, length));
            slot
        };
        // The first poll only queues the request and asks to be polled again
        // at once: the worker starts the rest of its pass meanwhile, and the
        // next poll of any queued request hands them all to the guest.
        let mut first = true;
        let outcome = std::future::poll_fn(|cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            self.dispatch();
            if !self.queue.borrow().is_empty() {
                // More than one batch's worth was queued: make sure the
                // worker comes back for the rest even if no queued future
                // is polled again in this pass.
                cx.waker().wake_by_ref();
            }
            let p = shared.poll(cx);
            if p.is_pending() && slot.index.get().is_none() {
                if !self.is_live(generation) {
                    // Its instance failed (or was replaced) before the
                    // request reached it: the queue was dropped, and the
                    // instance's failure could not abandon a request it
                    // never had.
                    shared.abandon(Abandoned::InstanceFailed);
                    return shared.poll(cx);
                }
                let deadline = Instant::now() + self.spec.limits.request_timeout;
                slot.index
                    .set(Some(self.inflight.insert(deadline, Arc::clone(&shared))));
                // Wake the supervisor (if it parked) to watch this request's
                // deadline: it stays awake while anything is in flight.
                drop(self.rt.awake());
            }
            p
        });
        let result = match outcome.await {
            Outcome::Completed(Ok(())) => Ok(()),
            Outcome::Completed(Err(code)) => Err(backend_error(code, lba)),
            Outcome::Abandoned(Abandoned::InstanceFailed) => Err(unavailable()),
            Outcome::Abandoned(Abandoned::TimedOut) => {
                let reason = format!(
                    "a {kind:?} request was not completed within {:?}",
                    self.spec.limits.request_timeout
                );
                self.fail(&mut self.sup.borrow_mut(), generation, reason);
                Err(unavailable())
            }
        };
        drop(slot);
        self.recycle(shared);
        result
    }

    /// Whether the instance of `generation` is the live one.
    fn is_live(&self, generation: u64) -> bool {
        self.sup
            .borrow()
            .live
            .as_ref()
            .is_some_and(|l| l.generation == generation)
    }

    /// Keep a finished request's shared state for the next request, if
    /// nothing else (the guest's table, an I/O job) still holds it.
    fn recycle(&self, mut shared: Arc<RequestShared>) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < MAX_SPARE
            && let Some(s) = Arc::get_mut(&mut shared)
        {
            s.reset();
            spare.push(shared);
        }
    }

    /// The view's extents in the device's region, if it has both.
    fn region_target(
        &self,
        extents_of: impl FnOnce(&mut dyn FnMut(Extent)) -> bool,
    ) -> Option<DataTarget> {
        let region = self.spec.region.as_ref()?;
        Some(DataTarget::Region {
            region: Arc::clone(region),
            extents: Extents::collect(extents_of)?,
        })
    }
}

fn bounce_len(len: u64) -> Result<usize, BackendError> {
    usize::try_from(len).map_err(|_| BackendError::new(BackendErrorKind::Buffer))
}

impl BlockBackend for WasmBackend {
    fn info(&self) -> DiskInfo {
        self.info.get()
    }

    async fn block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        self.guest_block_status(lba, blocks)
    }

    async fn read(&self, lba: Lba, mut dst: BufMut<'_>) -> BackendResult {
        let len = dst.len();
        if let Some(t) = self.region_target(|v| dst.extents(v)) {
            return self.submit(Kind::Read, lba, len, false, t).await;
        }
        let bounce = Arc::new(Mutex::new(vec![0u8; bounce_len(len)?]));
        self.submit(
            Kind::Read,
            lba,
            len,
            false,
            DataTarget::Bounce(Arc::clone(&bounce)),
        )
        .await?;
        let b = bounce.lock().unwrap_or_else(|p| p.into_inner());
        dst.write_at(0, &b)?;
        Ok(())
    }

    async fn write(&self, lba: Lba, src: BufRef<'_>, fua: bool) -> BackendResult {
        let len = src.len();
        let t = match self.region_target(|v| src.extents(v)) {
            Some(t) => t,
            None => DataTarget::Bounce(Arc::new(Mutex::new(src.to_vec()?))),
        };
        self.submit(Kind::Write, lba, len, fua, t).await
    }

    async fn flush(&self) -> BackendResult {
        self.submit(Kind::Flush, Lba(0), 0, false, DataTarget::None)
            .await
    }

    async fn discard(&self, lba: Lba, blocks: Blocks) -> BackendResult {
        let len = blocks
            .bytes(self.info.get().block_size)
            .ok_or(BackendError::new(BackendErrorKind::OutOfRange))?
            .0;
        self.submit(Kind::Discard, lba, len, false, DataTarget::None)
            .await
    }

    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, _may_unmap: bool) -> BackendResult {
        // The WIT's write-zeroes allows deallocation either way.
        let len = blocks
            .bytes(self.info.get().block_size)
            .ok_or(BackendError::new(BackendErrorKind::OutOfRange))?
            .0;
        self.submit(Kind::WriteZeroes, lba, len, false, DataTarget::None)
            .await
    }
}

// The daemon builds a backend and moves it to the device's worker thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<WasmBackend>();
};

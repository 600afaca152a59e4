//! The daemon's side of the control plane: [`DaemonHost`] runs the devices
//! the web crate keeps in its database (`wasmtap_web::host::Host`).
//!
//! * On the **sim** frontend each device gets its own simulated TCMU device
//!   (kernel model + shared region + doorbells) and a worker thread, exactly
//!   as a real device would; I/O comes from the built-in verifying initiator
//!   when the user asks for it (`exercise`).
//! * On the **tcmu** frontend a device is served once it is exported: the
//!   export creates a user backstore whose dev_config is `wasmtap/@<id>`,
//!   and the serve loop hands every UIO device with such a config to
//!   [`DaemonHost::attach_tcmu`].
//!
//! Either way the worker's backend is a [`DeviceBackend`], so a hot swap
//! (`rebind`) replaces the WebAssembly instance between commands: the new
//! instance is opened first (a module that does not open leaves the old one
//! serving and the error is returned), the worker stops taking new commands,
//! lets the in-flight ones finish, swaps, closes the old instance and goes
//! on.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wasmtap_kernel::MappedRegion;
use wasmtap_kernel::configfs::{self, LunSpec};
use wasmtap_kernel::sim::{self as ksim, SimKernel};
use wasmtap_kernel::uio::UioDevice;
use wasmtap_ring::Ring;
use wasmtap_ring::abi;
use wasmtap_ring::sim::SimConfig;
use wasmtap_runtime::{
    BackendState, InstanceSpec, LoadError, Module, OpenError, Runtime, RuntimeConfig, Tenant,
    TenantLimits, WasmBackend,
};
use wasmtap_web::host::{
    DeviceCounters, DeviceLive, DeviceSpec, DeviceState, FrontendInfo, FrontendKind, Histogram,
    Host, HostError, HostErrorKind, LunInfo, ModuleRefusal, ModuleReport, TenantResources,
};

use crate::backstore::with_geometry;
use crate::config::{GuestLimits, ServeConfig};
use crate::demo::{self, Load};
use crate::device::{DeviceBackend, DeviceHandler, Observed};
use crate::handler::ScsiHandler;
use crate::worker::{self, Control, ControlTx, LATENCY_BOUNDS_US, WorkerError, WorkerStats};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a control request waits for a device's worker.
const WORKER_ANSWER: Duration = Duration::from_secs(30);

/// A device's worker thread.
struct Run {
    handle: JoinHandle<()>,
    stats: Arc<WorkerStats>,
    control: ControlTx<DeviceHandler>,
    stop: Arc<AtomicBool>,
}

/// The simulated kernel side of a device on the sim frontend.
struct SimSide {
    kernel: Arc<Mutex<SimKernel>>,
    exercise_stop: Arc<AtomicBool>,
    exercise: Mutex<Option<JoinHandle<()>>>,
}

struct Managed {
    spec: Mutex<DeviceSpec>,
    /// The shared region of the device being served (for a new instance's
    /// zero-copy I/O at a hot swap).
    region: Mutex<Option<Arc<MappedRegion>>>,
    run: Mutex<Option<Run>>,
    observed: Arc<Mutex<Observed>>,
    sim: Option<SimSide>,
    exercising: Arc<AtomicBool>,
    /// What the host did to the device (swaps, exercises), for its page.
    events: Arc<Mutex<VecDeque<String>>>,
    /// The last exercise's outcome: `Ok(summary)` or `Err(why)`.
    last_exercise: Arc<Mutex<Option<Result<String, String>>>>,
    /// The guest's `debug` text, asked of the worker at most once a second
    /// and never twice at once (see [`DaemonHost::debug`]).
    debug: Mutex<DebugCache>,
}

/// The last `debug` answer and whether one is being asked for.
#[derive(Debug, Default)]
struct DebugCache {
    last: Option<(Instant, Result<String, HostError>)>,
    asking: bool,
    /// The guest's own counters, asked together with the debug text.
    stats: Option<wasmtap_web::host::GuestStats>,
}

/// How long a `debug` answer is served from the cache.
const DEBUG_FRESH: Duration = Duration::from_secs(1);

/// Host events kept per device.
const KEPT_EVENTS: usize = 32;

fn note(events: &Mutex<VecDeque<String>>, what: String) {
    let mut e = lock(events);
    if e.len() == KEPT_EVENTS {
        e.pop_front();
    }
    e.push_back(what);
}

impl Managed {
    fn new(spec: DeviceSpec, region: Option<Arc<MappedRegion>>, sim: Option<SimSide>) -> Self {
        Self {
            spec: Mutex::new(spec),
            region: Mutex::new(region),
            run: Mutex::new(None),
            observed: Arc::new(Mutex::new(Observed::default())),
            sim,
            exercising: Arc::new(AtomicBool::new(false)),
            events: Arc::new(Mutex::new(VecDeque::new())),
            last_exercise: Arc::new(Mutex::new(None)),
            debug: Mutex::default(),
        }
    }
}

/// The data plane behind the control plane. See the module docs.
pub struct DaemonHost {
    kind: FrontendKind,
    configfs: PathBuf,
    runtime: Runtime,
    modules: Mutex<HashMap<String, Module>>,
    tenants: Mutex<HashMap<String, Tenant>>,
    devices: Mutex<HashMap<i64, Arc<Managed>>>,
    stop: Arc<AtomicBool>,
    tuning: worker::Tuning,
    /// Per-instance and per-device guest limits from the configuration.
    guests: GuestLimits,
    /// The control plane has restored its devices (see [`Self::ready`]).
    ready: AtomicBool,
    /// The devices' designators, for EXTENDED COPY within a tenant.
    copy: crate::copy::CopyRegistry,
    /// The log of a device whose guest failed to open, until its worker
    /// shows it (the device is then served offline, with that log).
    failed_logs: Mutex<HashMap<i64, wasmtap_runtime::GuestLog>>,
}

impl std::fmt::Debug for DaemonHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonHost")
            .field("kind", &self.kind)
            .field("devices", &lock(&self.devices).len())
            .finish()
    }
}

/// The backstore name a device is exported as (configfs `user_0/<name>`).
pub fn backstore_name(id: i64) -> String {
    format!("wasmtap-dev{id}")
}

/// The dev_config (after `wasmtap/`) that ties a UIO device to device `id`.
pub fn dev_config(id: i64) -> String {
    format!("@{id}")
}

/// The device id in a dev_config written by [`dev_config`].
pub fn managed_id(config: &str) -> Option<i64> {
    config.strip_prefix('@')?.parse().ok()
}

fn refusal(e: &LoadError) -> ModuleRefusal {
    let code = match e {
        LoadError::NotWasm => "not_wasm",
        LoadError::CoreModule => "core_module",
        LoadError::Precompiled => "precompiled",
        LoadError::Invalid(_) => "invalid",
        LoadError::MissingDriver | LoadError::DriverMismatch(_) => "wrong_world",
        LoadError::Import {
            forbidden: true, ..
        } => "forbidden_import",
        LoadError::Import { .. } | LoadError::ImportMismatch { .. } => "unknown_import",
        LoadError::TooComplex(_) => "too_complex",
        LoadError::CompilerBusy(_) => "compiler_busy",
    };
    ModuleRefusal {
        code,
        message: e.to_string(),
    }
}

/// Raise the soft limit of open descriptors to the hard one, as servers
/// do: guests' files are bounded by their own limits (docs/limits.md), and
/// the runtime keeps [`wasmtap_runtime::RESERVED_FDS`] of this for the
/// daemon itself.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}");
    }
}

impl DaemonHost {
    /// A host for `kind`, with its compiled-code cache in `data_dir/cache`.
    /// `stop` is the daemon's shutdown flag (workers watch it too).
    pub fn new(
        cfg: &ServeConfig,
        kind: FrontendKind,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        raise_fd_limit();
        let runtime = Runtime::new(cfg.guests.runtime(RuntimeConfig {
            cache_dir: Some(cfg.data_dir.join("cache")),
            ..RuntimeConfig::default()
        }))
        .map_err(|e| format!("WebAssembly runtime: {e}"))?;
        Ok(Self {
            kind,
            configfs: cfg.configfs.clone(),
            runtime,
            modules: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            stop,
            tuning: cfg.tuning(),
            guests: cfg.guests.clone(),
            ready: AtomicBool::new(false),
            copy: crate::copy::CopyRegistry::default(),
            failed_logs: Mutex::new(HashMap::new()),
        })
    }

    /// The control plane has restored every device from its database: UIO
    /// devices naming a device id can be attached (before, an id would look
    /// unknown and the device would be served offline).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Mark the control plane's devices restored.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn module(&self, spec: &DeviceSpec) -> Result<Module, HostError> {
        if let Some(m) = lock(&self.modules).get(&spec.module_sha256) {
            return Ok(m.clone());
        }
        let bytes = std::fs::read(&spec.module_path).map_err(|e| {
            HostError::internal(format!(
                "module {}: {}: {e}",
                spec.module_name,
                spec.module_path.display()
            ))
        })?;
        let m = self.runtime.load(&bytes).map_err(|e| {
            let kind = match e {
                LoadError::CompilerBusy(_) => HostErrorKind::Busy,
                _ => HostErrorKind::Refused,
            };
            HostError::new(kind, format!("module {} refused: {e}", spec.module_name))
        })?;
        lock(&self.modules).insert(spec.module_sha256.clone(), m.clone());
        Ok(m)
    }

    /// The tenant's shared budgets, kept per tenant name so all its
    /// instances charge one account; a changed quota updates them.
    fn tenant(&self, spec: &DeviceSpec) -> Tenant {
        let l = spec.tenant_limits;
        let limits = TenantLimits {
            memory: l.memory,
            open_files: l.open_files,
            instances: l.instances,
            storage_bytes: l.storage_bytes,
            storage_files: l.storage_files,
        };
        let t = lock(&self.tenants)
            .entry(spec.tenant.clone())
            .or_insert_with(|| Tenant::with_limits(spec.tenant.clone(), limits))
            .clone();
        if t.limits() != limits {
            t.set_limits(limits);
        }
        t
    }

    /// Open `spec`'s module as an instance for a device whose data lives in
    /// `region`; the error is the reason the device is offline.
    fn open_guest(
        &self,
        spec: &DeviceSpec,
        region: Option<Arc<MappedRegion>>,
    ) -> Result<WasmBackend, String> {
        self.open_instance(spec, region).map_err(|e| e.message)
    }

    /// [`Self::open_guest`], saying what kind of failure it was.
    fn open_instance(
        &self,
        spec: &DeviceSpec,
        region: Option<Arc<MappedRegion>>,
    ) -> Result<WasmBackend, HostError> {
        let module = self.module(spec)?;
        std::fs::create_dir_all(&spec.dir)
            .map_err(|e| HostError::internal(format!("{}: {e}", spec.dir.display())))?;
        let config = with_geometry(
            &wasmtap_web::host::guest_config(&spec.config),
            spec.size,
            spec.block_size,
        );
        let mut inst = InstanceSpec::new(module, config, self.tenant(spec));
        inst.dir = Some(spec.dir.clone());
        inst.region = region;
        inst.storage = self.guests.storage(spec.size);
        inst.limits = self.guests.instance();
        inst.device_geometry = Some((spec.size, spec.block_size));
        let name = format!("{}/{}", spec.tenant, spec.name);
        let log = wasmtap_runtime::GuestLog::new(name.as_str(), inst.limits.log_lines_per_sec);
        inst.log = Some(log.clone());
        let opened = self.runtime.open(&name, inst).map_err(|e| {
            let kind = match &e {
                OpenError::Directory(_) => HostErrorKind::Internal,
                OpenError::Limit(_) => HostErrorKind::Limit,
                OpenError::Instance(_) | OpenError::Refused { .. } | OpenError::Geometry(_) => {
                    HostErrorKind::Refused
                }
            };
            HostError::new(kind, e.to_string())
        });
        if opened.is_err() {
            // What the guest logged while refusing stays readable in
            // `device log` (see `spawn_worker`).
            lock(&self.failed_logs).insert(spec.id, log);
        }
        opened
    }

    fn get(&self, id: i64) -> Result<Arc<Managed>, HostError> {
        lock(&self.devices).get(&id).cloned().ok_or_else(|| {
            HostError::not_running(format!("device {id} is not running in this daemon"))
        })
    }

    /// Start a worker serving `ring` for managed device `m`.
    fn spawn_worker<B: wasmtap_kernel::Doorbell + Send + 'static>(
        &self,
        m: &Arc<Managed>,
        ring: Ring<Arc<MappedRegion>>,
        bell: B,
        guest: Result<WasmBackend, String>,
        transport_max: Option<u32>,
    ) -> Result<Run, String> {
        let spec = lock(&m.spec).clone();
        let blocks = spec.size / u64::from(spec.block_size);
        let stats = Arc::new(WorkerStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (control, control_rx) =
            worker::channel().map_err(|e| format!("worker channel: {e}"))?;
        if let Err(e) = &guest {
            tracing::error!(device = %spec.name, tenant = %spec.tenant, "backstore unavailable, device answers NOT READY: {e}");
        }
        // Visible before the worker starts, so the state right after a
        // start already says offline (and why) when the guest did not open.
        *lock(&m.observed) = match &guest {
            Ok(b) => Observed {
                status: Some(b.status_handle()),
                log: Some(b.log().clone()),
                meter: Some(b.meter()),
                offline: None,
            },
            Err(reason) => Observed {
                offline: Some(reason.clone()),
                log: lock(&self.failed_logs).remove(&spec.id),
                ..Observed::default()
            },
        };
        let observed = Arc::clone(&m.observed);
        let seed = format!("wasmtap/{}/{}", spec.tenant, spec.name);
        // Next to the device's directory, outside it: the guest cannot forge it.
        let sanitize_file = spec.dir.with_extension("sanitize");
        // EXTENDED COPY reaches the tenant's own devices only (crate::copy).
        let (copies, copy_scope, copy_tx) = (
            self.copy.clone(),
            format!("tenant:{}", spec.tenant),
            control.clone(),
        );
        let make = move || {
            let backend = DeviceBackend::new(guest, (spec.block_size, blocks), observed);
            let h = ScsiHandler::new(&seed, backend, transport_max)?;
            Ok::<_, crate::handler::HandlerError>(h.persist_sanitize(sanitize_file).with_copy(
                &copies,
                &copy_scope,
                copy_tx,
            ))
        };
        // Stops on the device's own flag or the daemon's.
        let either = StopEither(Arc::clone(&stop), Arc::clone(&self.stop));
        let serve = worker::Serve {
            ring,
            bell,
            stop: Box::new(move || either.is_set()),
            stats: Arc::clone(&stats),
            tuning: self.tuning,
            control: Some(control_rx),
        };
        let name = format!("{}/{}", spec.tenant, spec.name);
        let handle = worker::spawn(
            format!("dev-{}", spec.id),
            serve,
            make,
            move |_, r| match r {
                Ok(()) => tracing::info!(device = %name, "worker stopped"),
                Err(WorkerError::Setup(e)) => tracing::error!(device = %name, "cannot serve: {e}"),
                Err(WorkerError::Doorbell(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    tracing::info!(device = %name, "device removed")
                }
                Err(e) => tracing::error!(device = %name, "worker failed: {e}"),
            },
        )
        .map_err(|e| format!("spawn worker: {e}"))?;
        Ok(Run {
            handle,
            stats,
            control,
            stop,
        })
    }

    fn start_sim(&self, spec: &DeviceSpec) -> Result<(), String> {
        let sim_cfg = SimConfig {
            caps: abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR,
            data_blocks: 1024,
            ..SimConfig::default()
        };
        let (kernel, user) = ksim::device(sim_cfg).map_err(|e| e.to_string())?;
        let ring = Ring::attach(Arc::clone(&user.region)).map_err(|e| e.to_string())?;
        let guest = self.open_guest(spec, Some(Arc::clone(&user.region)));
        let m = Arc::new(Managed::new(
            spec.clone(),
            Some(Arc::clone(&user.region)),
            Some(SimSide {
                kernel: Arc::new(Mutex::new(kernel)),
                exercise_stop: Arc::new(AtomicBool::new(false)),
                exercise: Mutex::new(None),
            }),
        ));
        let run = self.spawn_worker(&m, ring, user.bell, guest, None)?;
        *lock(&m.run) = Some(run);
        lock(&self.devices).insert(spec.id, m);
        Ok(())
    }

    /// Serve a UIO device whose dev_config names managed device `id`
    /// (called by the tcmu serve loop). A device the control plane does not
    /// know is served offline, so the kernel's commands are still answered.
    pub fn attach_tcmu(&self, id: i64, cfg: &ServeConfig, dev: &UioDevice) -> Result<(), String> {
        let m = match self.get(id) {
            Ok(m) => m,
            Err(_) => Arc::new(Managed::new(
                DeviceSpec {
                    id,
                    tenant: "unknown".into(),
                    name: dev.name.clone(),
                    size: 0,
                    block_size: 512,
                    module_name: String::new(),
                    module_sha256: String::new(),
                    module_path: PathBuf::new(),
                    config: String::new(),
                    dir: PathBuf::new(),
                    tenant_limits: Default::default(),
                },
                None,
                None,
            )),
        };
        if lock(&m.run)
            .as_ref()
            .is_some_and(|r| !r.handle.is_finished())
        {
            return Ok(());
        }
        let (attrs, handle, ring) =
            crate::attach::open_device(cfg, dev).map_err(|e| e.to_string())?;
        let known = self.get(id).is_ok();
        let guest = if known {
            let mut spec = lock(&m.spec).clone();
            // The kernel's geometry is what initiators see; it was created
            // from the spec, but trust configfs.
            spec.size = attrs.size;
            spec.block_size = attrs.block_size;
            *lock(&m.spec) = spec.clone();
            self.open_guest(&spec, Some(Arc::clone(&handle.region)))
        } else {
            let mut spec = lock(&m.spec);
            spec.size = attrs.size;
            spec.block_size = attrs.block_size;
            Err(format!(
                "device {id} is not in the control plane's database (deleted?)"
            ))
        };
        tracing::info!(device = %dev.name, uio = %dev.uio, id, "attached managed device");
        *lock(&m.region) = Some(Arc::clone(&handle.region));
        let run = self.spawn_worker(&m, ring, handle.bell, guest, Some(attrs.max_sectors))?;
        *lock(&m.run) = Some(run);
        Ok(())
    }

    fn stop_run(m: &Managed) {
        if let Some(s) = &m.sim {
            s.exercise_stop.store(true, Ordering::Relaxed);
            if let Some(h) = lock(&s.exercise).take() {
                let _ = h.join();
            }
        }
        Self::stop_worker(m);
    }

    /// Stop the device's worker (in-flight commands finish) and wait for it.
    fn stop_worker(m: &Managed) {
        if let Some(run) = lock(&m.run).take() {
            run.stop.store(true, Ordering::Relaxed);
            let _ = run.control.send(Control::Stop);
            if run.handle.join().is_err() {
                tracing::error!("worker panicked");
            }
        }
    }

    /// The outcome of the device's last finished exercise: `Ok(summary)`
    /// or `Err(why)` (commands failed or data read back wrong).
    pub fn exercise_outcome(&self, id: i64) -> Option<Result<String, String>> {
        self.get(id)
            .ok()
            .and_then(|m| lock(&m.last_exercise).clone())
    }

    /// An exercise is running on the device.
    pub fn exercising(&self, id: i64) -> bool {
        self.get(id)
            .is_ok_and(|m| m.exercising.load(Ordering::Acquire))
    }

    /// Stop every device (daemon shutdown).
    pub fn shutdown(&self) {
        let all: Vec<Arc<Managed>> = lock(&self.devices).drain().map(|(_, m)| m).collect();
        for m in all {
            Self::stop_run(&m);
        }
    }

    /// Run `f` on device `id`'s handler, on its worker thread (when nothing
    /// is in flight with `When::Idle`), and wait for its answer; the device's own
    /// refusal is an error of kind `refused`.
    fn ask<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
        &self,
        id: i64,
        when: worker::When,
        refused: HostErrorKind,
        f: impl FnOnce(&mut DeviceHandler) -> Result<T, E> + Send + 'static,
    ) -> Result<T, HostError> {
        let m = self.get(id)?;
        let control = {
            let run = lock(&m.run);
            let Some(run) = run.as_ref().filter(|r| !r.handle.is_finished()) else {
                return Err(HostError::not_running(
                    "the device is not being served right now",
                ));
            };
            run.control.clone()
        };
        match control.call(when, WORKER_ANSWER, f) {
            Ok(answer) => answer.map_err(|e| HostError::new(refused, e.to_string())),
            Err(worker::CallError::Gone) => {
                Err(HostError::not_running("the device's worker has stopped"))
            }
            Err(e @ worker::CallError::Timeout(_)) => {
                Err(HostError::new(HostErrorKind::Busy, e.to_string()))
            }
        }
    }
}

/// Stop when either flag is set.
struct StopEither(Arc<AtomicBool>, Arc<AtomicBool>);

impl StopEither {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed) || self.1.load(Ordering::Relaxed)
    }
}

fn counters(s: &WorkerStats) -> DeviceCounters {
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    DeviceCounters {
        commands: l(&s.commands),
        reads: l(&s.reads),
        writes: l(&s.writes),
        read_bytes: l(&s.read_bytes),
        write_bytes: l(&s.write_bytes),
        errors_by_sense_key: s.sense_keys.iter().map(l).collect(),
        in_flight: l(&s.in_flight),
        latency: Histogram {
            bounds_us: LATENCY_BOUNDS_US.to_vec(),
            counts: s.latency.iter().map(l).collect(),
            sum_us: l(&s.latency_sum_us),
        },
    }
}

impl Host for DaemonHost {
    fn frontend(&self) -> FrontendInfo {
        let note = match self.kind {
            FrontendKind::Tcmu => "Serving real LIO TCMU devices: export a device as a LUN (admin) and initiators see it as a SCSI disk.".into(),
            FrontendKind::Sim => "No LIO on this host: devices run on the built-in TCMU simulator, not the kernel. Use Exercise on a device to send it verified I/O.".into(),
        };
        FrontendInfo {
            kind: self.kind,
            note,
        }
    }

    fn validate(&self, bytes: &[u8]) -> Result<ModuleReport, ModuleRefusal> {
        let m = self.runtime.load(bytes).map_err(|e| refusal(&e))?;
        let report = ModuleReport {
            imports: m.imports().to_vec(),
            exports: vec![wasmtap_runtime::bindings::DRIVER_EXPORT.to_string()],
        };
        lock(&self.modules).insert(m.hash_hex(), m);
        Ok(report)
    }

    fn start(&self, dev: &DeviceSpec) -> Result<(), HostError> {
        if let Ok(m) = self.get(dev.id) {
            Self::stop_run(&m);
            lock(&self.devices).remove(&dev.id);
        }
        match self.kind {
            FrontendKind::Sim => self.start_sim(dev).map_err(HostError::internal),
            FrontendKind::Tcmu => {
                // Served when its UIO device appears (export, or a LUN that
                // survived a daemon restart: the serve loop's scan finds it).
                let m = Arc::new(Managed::new(dev.clone(), None, None));
                lock(&self.devices).insert(dev.id, m);
                Ok(())
            }
        }
    }

    fn stop(&self, id: i64) -> Result<(), HostError> {
        let m = lock(&self.devices).remove(&id);
        if let Some(m) = m {
            Self::stop_run(&m);
        }
        Ok(())
    }

    fn rebind(&self, dev: &DeviceSpec) -> Result<(), HostError> {
        let m = self.get(dev.id)?;
        let serving = lock(&m.run)
            .as_ref()
            .is_some_and(|r| !r.handle.is_finished());
        if !serving {
            // Not attached (tcmu, not exported yet): check the module opens,
            // then the next attach uses it.
            self.module(dev)?;
            *lock(&m.spec) = dev.clone();
            return Ok(());
        }
        let region = lock(&m.region).clone();
        // The new instance is opened before anything stops: a module that
        // fails to open leaves the old one serving.
        let (size, bs) = {
            let cur = lock(&m.spec);
            (cur.size, cur.block_size)
        };
        let mut spec = dev.clone();
        spec.size = size;
        spec.block_size = bs;
        let backend = self.open_instance(&spec, region)?;
        let from = lock(&m.spec).module_name.clone();
        self.ask(
            dev.id,
            worker::When::Idle,
            HostErrorKind::Conflict,
            move |h| h.swap(Box::new(backend)),
        )?;
        tracing::info!(device = %spec.name, tenant = %spec.tenant, %from, to = %spec.module_name, "hot swap done");
        note(
            &m.events,
            format!(
                "hot swap: {from} -> {} ({})",
                spec.module_name,
                &spec.module_sha256[..12.min(spec.module_sha256.len())]
            ),
        );
        *lock(&m.spec) = spec;
        Ok(())
    }

    fn live(&self, id: i64) -> Option<DeviceLive> {
        let m = self.get(id).ok()?;
        let run = lock(&m.run);
        let serving = run.as_ref().is_some_and(|r| !r.handle.is_finished());
        let counters = run.as_ref().map(|r| counters(&r.stats)).unwrap_or_default();
        drop(run);
        let obs = lock(&m.observed).clone();
        let status = obs.status.as_ref().map(|s| lock(s).clone());
        let (state, reason) = if !serving {
            (DeviceState::Stopped, None)
        } else if let Some(r) = &obs.offline {
            (DeviceState::Offline, Some(r.clone()))
        } else {
            match &status {
                Some(s) => match s.state {
                    BackendState::Running => (DeviceState::Running, s.reason.clone()),
                    BackendState::Restarting { .. } => (DeviceState::Degraded, s.reason.clone()),
                    BackendState::Failed => (DeviceState::Offline, s.reason.clone()),
                },
                None => (DeviceState::Running, None),
            }
        };
        let mut log: Vec<String> = obs
            .log
            .as_ref()
            .map(|l| {
                l.lines()
                    .into_iter()
                    .map(|line| format!("[{}] {}", line.level, line.message))
                    .collect()
            })
            .unwrap_or_default();
        log.extend(lock(&m.events).iter().map(|e| format!("[host] {e}")));
        let resources = obs.meter.as_ref().map(|meter| {
            let r = meter.read();
            wasmtap_web::host::DeviceResources {
                memory: r.memory,
                open_files: r.open_files,
                open_files_limit: r.open_files_limit,
                storage_bytes: r.storage_bytes,
                storage_bytes_limit: r.storage_bytes_limit,
                storage_files: r.storage_files,
                storage_files_limit: r.storage_files_limit,
                io_pending: r.io_pending,
            }
        });
        Some(DeviceLive {
            state,
            reason,
            restarts: status.map_or(0, |s| s.restarts),
            counters,
            log,
            exercising: m.exercising.load(Ordering::Relaxed),
            resources,
        })
    }

    fn forget_module(&self, sha256: &str) {
        lock(&self.modules).remove(sha256);
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(sha256, &mut hash).is_ok() && self.runtime.forget(&hash) {
            tracing::info!("compiled code of module {sha256} dropped: no module uses it");
        }
    }

    fn tenant_resources(&self, tenant: &str) -> Option<TenantResources> {
        let t = lock(&self.tenants).get(tenant).cloned()?;
        let (u, l) = (t.usage(), t.limits());
        Some(TenantResources {
            memory: u.memory,
            open_files: u.open_files,
            instances: u.instances,
            storage_bytes: u.storage_bytes,
            storage_files: u.storage_files,
            limits: wasmtap_web::host::TenantLimits {
                memory: l.memory,
                open_files: l.open_files,
                instances: l.instances,
                storage_bytes: l.storage_bytes,
                storage_files: l.storage_files,
            },
        })
    }

    /// The guest's `debug` text. However many clients ask, the worker is
    /// asked at most once a second and never twice at once: the others get
    /// the last answer (or are told it is being produced), so a slow or
    /// huge `debug` cannot pile up requests, threads or memory.
    fn debug(&self, id: i64) -> Result<String, HostError> {
        let m = self.get(id)?;
        {
            let mut c = lock(&m.debug);
            match &c.last {
                Some((at, r)) if at.elapsed() < DEBUG_FRESH => return r.clone(),
                Some((_, r)) if c.asking => return r.clone(),
                None if c.asking => {
                    return Err(HostError::new(
                        HostErrorKind::Busy,
                        "the guest's debug text is being produced; ask again",
                    ));
                }
                _ => {}
            }
            c.asking = true;
        }
        let r = self.ask(id, worker::When::Now, HostErrorKind::Internal, |h| {
            h.debug()
        });
        let stats = self
            .ask(id, worker::When::Now, HostErrorKind::Internal, |h| {
                h.guest_stats()
            })
            .ok();
        let mut c = lock(&m.debug);
        c.asking = false;
        c.last = Some((Instant::now(), r.clone()));
        c.stats = stats;
        r
    }

    fn guest_stats(&self, id: i64) -> Option<wasmtap_web::host::GuestStats> {
        lock(&self.get(id).ok()?.debug).stats
    }

    fn export(&self, dev: &DeviceSpec) -> Result<LunInfo, HostError> {
        if self.kind != FrontendKind::Tcmu {
            return Err(HostError::unsupported(
                "no LIO on this host: devices run on the built-in simulator and cannot be exported as kernel LUNs",
            ));
        }
        let name = backstore_name(dev.id);
        let spec = LunSpec {
            name: name.clone(),
            size: dev.size,
            block_size: dev.block_size,
            max_sectors: (1024 * 1024 / dev.block_size).max(1),
            config: dev_config(dev.id),
            hba: 0,
        };
        spec.validate().map_err(HostError::refused)?;
        // Exported before a daemon restart: the LUN is still there and the
        // serve loop re-attaches it.
        if !configfs::backstore_dir(&self.configfs, 0, &name).exists() {
            configfs::create_lun(&self.configfs, &spec)
                .map_err(|e| HostError::internal(e.to_string()))?;
        }
        let wwn = configfs::wwn_for(&name, b't');
        Ok(LunInfo {
            backstore: format!("user_0/{name}"),
            wwn,
            lun: 0,
        })
    }

    fn unexport(&self, dev: &DeviceSpec, _lun: &LunInfo) -> Result<(), HostError> {
        if self.kind != FrontendKind::Tcmu {
            return Err(HostError::unsupported(
                "no LIO on this host: nothing is exported",
            ));
        }
        // The LUN goes first, while the worker still answers: removing the
        // disk sends commands (cache flush) that must not go unanswered.
        // Then the backstore, whose UIO device vanishing ends the worker;
        // the device stays registered so a new export serves it again.
        let removed = configfs::delete_lun(&self.configfs, 0, &backstore_name(dev.id))
            .map_err(|e| HostError::internal(e.to_string()));
        if let Ok(m) = self.get(dev.id) {
            Self::stop_worker(&m);
        }
        removed
    }

    fn exercise(&self, id: i64, secs: u32, queue_depth: u32, mix: &str) -> Result<(), HostError> {
        let mix = demo::Mix::parse(mix).map_err(HostError::refused)?;
        let m = self.get(id)?;
        let Some(sim) = &m.sim else {
            return Err(HostError::unsupported(
                "exercise runs the simulator's initiator; on real LIO devices send I/O from an initiator (e.g. fio on the LUN)",
            ));
        };
        if m.exercising.swap(true, Ordering::AcqRel) {
            return Err(HostError::new(
                HostErrorKind::Conflict,
                "an exercise is already running on this device",
            ));
        }
        let spec = lock(&m.spec).clone();
        let load = Load {
            blocks: spec.size / u64::from(spec.block_size),
            block_size: spec.block_size,
            queue_depth: queue_depth.clamp(1, 128) as usize,
            fresh: false,
            label: format!("{}/{}", spec.tenant, spec.name),
            print: false,
            mix,
        };
        let kernel = Arc::clone(&sim.kernel);
        let stop = Arc::clone(&sim.exercise_stop);
        stop.store(false, Ordering::Relaxed);
        let (global, flag) = (Arc::clone(&self.stop), Arc::clone(&m.exercising));
        let (events, outcome) = (Arc::clone(&m.events), Arc::clone(&m.last_exercise));
        note(
            &events,
            format!("exercise: {secs} s at queue depth {}", load.queue_depth),
        );
        let h = thread::Builder::new()
            .name(format!("exercise-{id}"))
            .spawn(move || {
                let until = AtomicBool::new(false);
                let timer_stop = Arc::clone(&stop);
                let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(secs));
                thread::scope(|s| {
                    s.spawn(|| {
                        while std::time::Instant::now() < deadline
                            && !timer_stop.load(Ordering::Relaxed)
                            && !global.load(Ordering::Relaxed)
                        {
                            thread::sleep(Duration::from_millis(50));
                        }
                        until.store(true, Ordering::Relaxed);
                    });
                    let mut k = lock(&kernel);
                    let r = demo::initiator(&mut k, &load, &until);
                    match &r {
                        Ok(summary) => {
                            tracing::info!(device = %load.label, "exercise finished: {summary}");
                            note(&events, format!("exercise finished: {summary}"));
                        }
                        Err(e) => {
                            tracing::error!(device = %load.label, "exercise failed: {e}");
                            note(&events, format!("exercise FAILED: {e}"));
                        }
                    }
                    *lock(&outcome) = Some(r);
                });
                flag.store(false, Ordering::Release);
            })
            .map_err(|e| {
                m.exercising.store(false, Ordering::Release);
                HostError::internal(format!("spawn exercise: {e}"))
            })?;
        if let Some(old) = lock(&sim.exercise).replace(h) {
            let _ = old.join();
        }
        Ok(())
    }
}

//! [`Runtime`]: the engine, the linker, the module cache, the I/O executor
//! and the supervisor thread (epoch ticks and request timeouts).
//!
//! The supervisor ticks only while there is something to watch: a guest
//! call running or a request in flight. After [`PARK_AFTER_TICKS`] quiet
//! ticks it parks on a condition variable, and the next guest call wakes it
//! (see [`Ticker`]); an idle daemon's runtime therefore never wakes up,
//! however many devices it holds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::bindings::Backstore;
use crate::config::RuntimeConfig;
use crate::host::DeviceState;
use crate::io::IoExecutor;
use crate::limits::{Budget, Tenant};
use crate::load::{self, LoadError, Module};
use crate::quota::DirAccount;
use crate::request::Inflight;

/// Descriptors kept for the daemon itself (its database, listener,
/// connections, devices, logs): guests together may hold at most the
/// process's descriptor limit less this many.
pub const RESERVED_FDS: u64 = 512;

/// The daemon's one WebAssembly runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime(pub(crate) Arc<RuntimeInner>);

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    linker: Linker<DeviceState>,
    pub(crate) config: RuntimeConfig,
    pub(crate) io: Arc<IoExecutor>,
    /// Files all guests hold open (see [`RuntimeConfig::max_open_files`]).
    pub(crate) open_files: Budget,
    /// Compile slots (see [`RuntimeConfig::compile_slots`]).
    compiles: Arc<Slots>,
    /// Storage accounts of the device directories in use, shared by the
    /// instances of one device (a hot swap has two for a moment).
    accounts: Mutex<HashMap<PathBuf, Weak<DirAccount>>>,
    modules: Mutex<HashMap<[u8; 32], Module>>,
    /// Backends' in-flight sets, scanned by the supervisor for timeouts.
    pub(crate) watched: Arc<Mutex<Vec<Weak<Inflight>>>>,
    stop: Arc<AtomicBool>,
    pub(crate) ticker: Arc<Ticker>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// Quiet ticks (no guest call running, nothing in flight) after which the
/// supervisor parks until the next guest call.
pub(crate) const PARK_AFTER_TICKS: u32 = 4;

/// How often overdue requests are looked for while ticking.
const EXPIRE_EVERY: Duration = Duration::from_millis(50);

/// Whether the supervisor must tick: how many guest calls are running, and
/// whether it is parked.
///
/// The handshake is sequentially consistent on both sides: a caller
/// increments `active`, then looks at `parked`; the supervisor sets
/// `parked` (holding `lock`), then looks at `active` and the in-flight
/// sets before it waits. Either the supervisor sees the call, or the caller
/// sees `parked` and notifies under the same lock, after the wait began.
#[derive(Debug, Default)]
pub(crate) struct Ticker {
    active: AtomicUsize,
    parked: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

/// Held across a guest call (or while a request enters the in-flight set):
/// the supervisor keeps ticking meanwhile.
#[derive(Debug)]
pub(crate) struct Awake<'a>(&'a Ticker);

impl Ticker {
    /// Mark a guest call running, waking the supervisor if it is parked.
    pub(crate) fn enter(&self) -> Awake<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.wake.notify_all();
        }
        Awake(self)
    }

    fn stop(&self) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }
}

impl Drop for Awake<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

fn engine_config(cfg: &RuntimeConfig) -> Config {
    let mut c = Config::new();
    // Guest threads are off: wasmtime is built without its `threads`
    // feature, so shared memories and atomics-wait do not validate.
    c.wasm_component_model(true)
        // Deadlines: every guest call gets a number of epoch ticks.
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        .cranelift_opt_level(OptLevel::Speed);
    let n = cfg.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust wasip2 component is the guest's module plus the preview1
    // adapter and a few shims: a handful of core instances, two memories.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(4))
        .total_tables(n.saturating_mul(8))
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(usize::try_from(cfg.max_memory_per_instance).unwrap_or(usize::MAX));
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

/// wasmtime's on-disk cache of compiled code in `dir`: keyed by a hash of
/// the component bytes and of the engine's settings and version, written and
/// read only by wasmtime itself, so nothing a user uploads is ever
/// deserialized as machine code.
fn disk_cache(dir: &std::path::Path) -> Result<wasmtime::Cache, wasmtime::Error> {
    let mut cc = wasmtime::CacheConfig::new();
    cc.with_directory(dir);
    wasmtime::Cache::new(cc)
}

impl Runtime {
    /// Build the engine and start the supervisor and I/O threads.
    pub fn new(config: RuntimeConfig) -> Result<Self, wasmtime::Error> {
        let mut engine_cfg = engine_config(&config);
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir)?;
            engine_cfg.cache(Some(disk_cache(dir)?));
        }
        let engine = Engine::new(&engine_cfg)?;
        let mut linker = Linker::new(&engine);
        Backstore::add_to_linker::<DeviceState, wasmtime::component::HasSelf<DeviceState>>(
            &mut linker,
            |s| s,
        )?;
        crate::host::add_direct_paths(&mut linker)?;
        crate::wasi::add_to_linker(&mut linker)?;
        let io = IoExecutor::new(config.io_threads, config.io_per_device)?;
        let open_files = Budget::new(config.max_open_files.min(guest_fd_cap()));
        let compiles = Arc::new(Slots::new(config.compile_slots));
        let stop = Arc::new(AtomicBool::new(false));
        let watched: Arc<Mutex<Vec<Weak<Inflight>>>> = Arc::default();
        let ticker = Arc::new(Ticker::default());
        let supervisor = {
            let (engine, stop, watched, ticker) = (
                engine.clone(),
                stop.clone(),
                watched.clone(),
                ticker.clone(),
            );
            let tick = config.epoch_tick.max(Duration::from_millis(1));
            std::thread::Builder::new()
                .name("wasmtap-epoch".into())
                .spawn(move || supervise(&engine, &stop, &watched, &ticker, tick))?
        };
        Ok(Self(Arc::new(RuntimeInner {
            engine,
            linker,
            config,
            io,
            open_files,
            compiles,
            accounts: Mutex::default(),
            modules: Mutex::default(),
            watched,
            stop,
            ticker,
            supervisor: Mutex::new(Some(supervisor)),
        })))
    }

    /// The engine (for tests and tools; the daemon needs nothing from it).
    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// Validate, compile (or take from the cache) and pre-link `bytes`.
    ///
    /// Before compiling, the bytes are read for what would be refused
    /// anyway (imports, the driver export) and for the static
    /// [`LoadLimits`](crate::LoadLimits); compiles are bounded by
    /// [`RuntimeConfig::compile_slots`] and
    /// [`RuntimeConfig::compile_timeout`].
    pub fn load(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        load::sniff(bytes)?;
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(m) = self.lock_modules().get(&hash) {
            return Ok(m.clone());
        }
        load::precheck(bytes, &self.0.config.load_limits)?;
        let component = self.compile(bytes)?;
        let module = load::check_and_link(&self.0.engine, &self.0.linker, &component, hash)?;
        self.lock_modules().insert(hash, module.clone());
        Ok(module)
    }

    /// Drop the compiled code of the component whose SHA-256 is `hash`
    /// from the cache (memory; the on-disk cache keeps it for a re-upload).
    /// Backends still using it keep it alive until they close.
    pub fn forget(&self, hash: &[u8; 32]) -> bool {
        self.lock_modules().remove(hash).is_some()
    }

    /// Compiled components held in the in-memory cache.
    pub fn cached_modules(&self) -> usize {
        self.lock_modules().len()
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Module>> {
        self.0.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compile on a thread of its own holding one of the compile slots,
    /// and wait for it at most until the load's deadline.
    fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        let cfg = &self.0.config;
        let deadline = Instant::now() + cfg.compile_timeout;
        let Some(slot) = self.0.compiles.acquire(deadline) else {
            return Err(LoadError::CompilerBusy(format!(
                "the compiler is busy: {} upload(s) compiling for longer than {:?}; try again later",
                cfg.compile_slots, cfg.compile_timeout
            )));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, bytes) = (self.0.engine.clone(), bytes.to_vec());
        std::thread::Builder::new()
            .name("wasmtap-compile".into())
            .spawn(move || {
                let r = Component::from_binary(&engine, &bytes);
                drop(slot);
                let _ = tx.send(r);
            })
            .map_err(|e| LoadError::CompilerBusy(format!("cannot start a compile: {e}")))?;
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => r.map_err(|e| LoadError::Invalid(format!("{e:#}"))),
            Err(_) => Err(LoadError::CompilerBusy(format!(
                "compiling took longer than {:?}: refused",
                cfg.compile_timeout
            ))),
        }
    }

    /// Keep the supervisor ticking while the returned guard lives (a guest
    /// call, or a request entering the in-flight set).
    pub(crate) fn awake(&self) -> Awake<'_> {
        self.0.ticker.enter()
    }

    /// Files all guests hold open, and how many they may.
    pub fn open_files(&self) -> (u64, u64) {
        (self.0.open_files.used(), self.0.open_files.limit())
    }

    /// The storage account of device directory `dir`: the live one if an
    /// instance of the device has it, else a new one from a scan of the
    /// directory. Its per-device limits are set to `limits` either way.
    pub(crate) fn account(
        &self,
        dir: &Path,
        limits: crate::StorageLimits,
        tenant: &Tenant,
    ) -> Arc<DirAccount> {
        let mut all = self.0.accounts.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, a| a.strong_count() > 0);
        if let Some(a) = all.get(dir).and_then(Weak::upgrade) {
            a.set_limits(limits.bytes, limits.files);
            return a;
        }
        let a = Arc::new(DirAccount::scan(dir, limits.bytes, limits.files, tenant));
        all.insert(dir.to_path_buf(), Arc::downgrade(&a));
        a
    }

    pub(crate) fn watch(&self, inflight: &Arc<Inflight>) {
        let mut w = self.0.watched.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(inflight));
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ticker.stop();
        if let Some(h) = self
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        self.io.shutdown();
    }
}

/// A counting semaphore whose permits are owned (they may leave the
/// thread that took them).
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One permit of [`Slots`], given back on drop.
#[derive(Debug)]
struct Slot(Arc<Slots>);

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(self: &Arc<Self>, deadline: Instant) -> Option<Slot> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            let left = deadline.checked_duration_since(Instant::now())?;
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= 1;
        Some(Slot(Arc::clone(self)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// How many files guests may hold open: the process's soft descriptor
/// limit less [`RESERVED_FDS`] (at least a quarter of the limit).
fn guest_fd_cap() -> u64 {
    use nix::sys::resource::{Resource, getrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft.saturating_sub(RESERVED_FDS).max(soft / 4),
        Err(_) => 256,
    }
}

/// Tick the epoch every `tick` and time out overdue requests (at most every
/// [`EXPIRE_EVERY`]). Park when nothing has needed the ticks for [`PARK_AFTER_TICKS`].
fn supervise(
    engine: &Engine,
    stop: &AtomicBool,
    watched: &Mutex<Vec<Weak<Inflight>>>,
    ticker: &Ticker,
    tick: Duration,
) {
    let live = || -> Vec<Arc<Inflight>> {
        watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    };
    let (mut n, mut quiet) = (0u32, 0u32);
    let expire_every = u32::try_from(EXPIRE_EVERY.as_nanos() / tick.as_nanos().max(1))
        .unwrap_or(u32::MAX)
        .max(1);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        engine.increment_epoch();
        n = n.wrapping_add(1);
        if n.is_multiple_of(expire_every) {
            let now = Instant::now();
            for inflight in live() {
                inflight.expire(now);
            }
        }
        if ticker.active.load(Ordering::SeqCst) > 0 {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet < PARK_AFTER_TICKS || live().iter().any(|i| i.len() > 0) {
            continue;
        }
        let mut g = ticker.lock.lock().unwrap_or_else(|p| p.into_inner());
        ticker.parked.store(true, Ordering::SeqCst);
        while ticker.active.load(Ordering::SeqCst) == 0
            && !stop.load(Ordering::SeqCst)
            && live().iter().all(|i| i.len() == 0)
        {
            g = ticker.wake.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        ticker.parked.store(false, Ordering::SeqCst);
        quiet = 0;
    }
}

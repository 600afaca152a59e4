//! `wasmtap serve`: discover devices, run one worker per device, stop cleanly.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wasmtap_kernel::configfs;
use wasmtap_kernel::netlink::{self, DeviceEvent, EventKind, Replier};
use wasmtap_kernel::uio::{self, SUBTYPE, UioDevice};

use wasmtap_web::host::{FrontendKind, Host};
use wasmtap_web::{ControlPlane, WebConfig};

use crate::attach;
use crate::backstore::{self, BackstoreSpec, DeviceFacts, Guests};
use crate::config::{Frontend, ServeConfig};
use crate::control::{self, DaemonHost};
use crate::device::{DeviceBackend, DeviceHandler};
use crate::handler::ScsiHandler;
use crate::ramdisk::RamDisk;
use crate::worker::{self, Control, ControlTx, WorkerError, WorkerStats};

/// How often the device loop looks at the stop flag while it waits for
/// netlink events between rescans (SIGTERM only sets a flag).
const STOP_POLL: Duration = Duration::from_millis(500);

/// A device being served.
struct Running {
    handle: JoinHandle<()>,
    stats: Arc<WorkerStats>,
    control: ControlTx<DeviceHandler>,
}

/// `wasmtap demo`: one simulated device under the built-in initiator until
/// SIGTERM/SIGINT (or `duration`).
pub fn run_demo(cfg: &ServeConfig, duration: Option<Duration>) -> Result<(), String> {
    let stop = stop_signal(duration)?;
    crate::demo::run(cfg, &stop.flag)
}

/// The daemon's stop request: `flag` for loops that look at it between
/// steps, `wake` (the read end of a socket pair that receives a byte at the
/// same moment) for waits that should end at once without polling.
struct StopSignal {
    flag: Arc<AtomicBool>,
    wake: UnixStream,
}

/// Set by SIGTERM/SIGINT, or after `duration`.
fn stop_signal(duration: Option<Duration>) -> Result<StopSignal, String> {
    let flag = Arc::new(AtomicBool::new(false));
    let (wake, ring) = UnixStream::pair().map_err(|e| format!("stop socket: {e}"))?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Registered in this order, the flag is set before the byte is sent.
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .map_err(|e| format!("signal handler: {e}"))?;
        let ring = ring.try_clone().map_err(|e| format!("stop socket: {e}"))?;
        signal_hook::low_level::pipe::register(sig, ring)
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    if let Some(d) = duration {
        let flag = Arc::clone(&flag);
        thread::spawn(move || {
            thread::sleep(d);
            flag.store(true, Ordering::SeqCst);
            let _ = (&ring).write_all(&[1]);
        });
    }
    Ok(StopSignal { flag, wake })
}

/// Run until SIGTERM/SIGINT (or `duration`): the devices, on the tcmu or
/// sim frontend, and the control plane (API, UI, `/metrics`).
pub fn run(cfg: &ServeConfig, duration: Option<Duration>) -> Result<(), String> {
    let signal = stop_signal(duration)?;
    let stop = Arc::clone(&signal.flag);
    let cfg = &with_usable_data_dir(cfg)?;
    let kind = match cfg.resolved_frontend() {
        Frontend::Sim => FrontendKind::Sim,
        _ => FrontendKind::Tcmu,
    };
    let host = Arc::new(DaemonHost::new(cfg, kind, Arc::clone(&stop))?);
    // The control plane starts on a thread of its own (registering the
    // built-in modules compiles them, which takes a while on a cold cache):
    // devices that are not the control plane's are served meanwhile, and
    // the control plane's own are attached once it has restored them.
    let web = if cfg.web {
        Some(start_web(cfg, Arc::clone(&host), &stop, signal.wake)?)
    } else {
        host.set_ready();
        None
    };
    let result = match kind {
        FrontendKind::Sim => {
            tracing::info!(
                "no LIO on this host (or --frontend sim): devices run on the built-in TCMU simulator"
            );
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        FrontendKind::Tcmu => serve_tcmu(cfg, &stop, &host),
    };
    host.shutdown();
    let web_result = match web.map(JoinHandle::join) {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(_)) => Err("the web server thread panicked".to_string()),
    };
    result.and(web_result)
}

/// Creates `dir` (mode 0700 if new; the control plane sets it exactly)
/// and its missing parents.
fn create_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The configured data directory, or, when it is the default and cannot be
/// created (not root), `$XDG_DATA_HOME/wasmtap` (`~/.local/share/wasmtap`).
fn with_usable_data_dir(cfg: &ServeConfig) -> Result<ServeConfig, String> {
    let mut cfg = cfg.clone();
    if create_data_dir(&cfg.data_dir).is_ok() {
        return Ok(cfg);
    }
    let default = ServeConfig::default().data_dir;
    let fallback = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("wasmtap"));
    match fallback {
        Some(f) if cfg.data_dir == default => {
            create_data_dir(&f).map_err(|e| format!("data directory {}: {e}", f.display()))?;
            tracing::warn!(
                "cannot create {}; using {} as the data directory",
                default.display(),
                f.display()
            );
            cfg.data_dir = f;
            Ok(cfg)
        }
        _ => Err(format!(
            "cannot create data directory {}",
            cfg.data_dir.display()
        )),
    }
}

/// Open the control plane (SQLite state, tenants, modules), bring every
/// device back, and serve the API and UI on `cfg.listen` from a thread of
/// its own until `stop`.
fn start_web(
    cfg: &ServeConfig,
    host: Arc<DaemonHost>,
    stop: &Arc<AtomicBool>,
    wake: UnixStream,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let mut wc = WebConfig::new(&cfg.data_dir);
    wc.admin_token = cfg.admin_token()?;
    wc.max_module_bytes = cfg.max_module_mib << 20;
    wc.http = cfg.http_limits();
    wc.builtin_modules = backstore::BUILTIN
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    // Bound first, so a taken port fails the start at once.
    let listener = std::net::TcpListener::bind(&cfg.listen)
        .map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    let (stop, configured_token, db) = (
        Arc::clone(stop),
        wc.admin_token.is_some(),
        cfg.data_dir.join("wasmtap.db"),
    );
    let data_dir = cfg.data_dir.clone();
    thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            let opened = ControlPlane::open(wc, Arc::clone(&host) as Arc<dyn Host>);
            let (cp, new_token) = match opened {
                Ok(v) => v,
                Err(e) => {
                    // Without its state the daemon must not run half-way.
                    stop.store(true, Ordering::Relaxed);
                    return Err(format!("control plane: {e}"));
                }
            };
            let cp = Arc::new(cp);
            // The API serves at once; devices come back meanwhile, a few at
            // a time, each `restoring` until it is up.
            {
                let (cp, host) = (Arc::clone(&cp), Arc::clone(&host));
                thread::Builder::new()
                    .name("restore".into())
                    .spawn(move || {
                        let started = std::time::Instant::now();
                        cp.restore();
                        host.set_ready();
                        tracing::info!("devices restored in {:.1?}", started.elapsed());
                    })
                    .map_err(|e| format!("spawn restore thread: {e}"))?;
            }
            println!(
                "wasmtap: web UI and API at http://{addr}/  (data in {})",
                data_dir.display()
            );
            match new_token {
                Some(t) => println!(
                    "wasmtap: admin token (shown once, keep it; the UI and CLI log in with it): {t}"
                ),
                None if configured_token => {
                    println!("wasmtap: admin token: the one set in the configuration")
                }
                None => println!(
                    "wasmtap: admin token: as printed at the first start (stored hashed in {})",
                    db.display()
                ),
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("web-rt")
                .enable_all()
                .build()
                .map_err(|e| format!("web runtime: {e}"))?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| format!("web listener: {e}"))?;
                // Ends when the stop socket becomes readable (SIGTERM,
                // SIGINT, the duration): nothing wakes the runtime meanwhile.
                wake.set_nonblocking(true)
                    .map_err(|e| format!("stop socket: {e}"))?;
                let wake = tokio::net::UnixStream::from_std(wake)
                    .map_err(|e| format!("stop socket: {e}"))?;
                let shutdown = async move {
                    let _ = wake.readable().await;
                };
                cp.serve(listener, shutdown)
                    .await
                    .map_err(|e| format!("web server: {e}"))
            })
        })
        .map_err(|e| format!("spawn web thread: {e}"))
}

fn serve_tcmu(cfg: &ServeConfig, stop: &Arc<AtomicBool>, host: &DaemonHost) -> Result<(), String> {
    tracing::info!(
        uio = %cfg.sysfs_uio.display(),
        configfs = %cfg.configfs.display(),
        "serving TCMU devices of handler subtype {SUBTYPE:?}"
    );
    let (events, replier) = start_netlink();
    let mut devs = Devices {
        cfg,
        stop,
        host,
        guests: Guests::with_limits(&cfg.data_dir, &cfg.guests).map_err(|e| e.to_string())?,
        workers: HashMap::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        devs.rescan();
        // Wait for the next rescan, a netlink event, or a stop request
        // (seen within STOP_POLL).
        let deadline = Instant::now() + Duration::from_millis(cfg.rescan_ms);
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = left.min(STOP_POLL);
            let Some(rx) = &events else {
                thread::sleep(wait);
                continue;
            };
            match rx.recv_timeout(wait) {
                Ok(ev) => devs.handle_event(replier.as_ref(), &ev),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(wait),
            }
        }
    }
    let workers = devs.workers;
    tracing::info!(devices = workers.len(), "shutting down");
    for r in workers.values() {
        let _ = r.control.send(Control::Stop);
    }
    for (uio, r) in workers {
        if r.handle.join().is_err() {
            tracing::error!(%uio, "worker panicked");
        }
    }
    Ok(())
}

/// Subscribe to TCM-USER netlink events on a thread of their own; without
/// them (module not loaded yet, no CAP_NET_ADMIN) the periodic rescan alone
/// finds devices.
fn start_netlink() -> (Option<Receiver<DeviceEvent>>, Option<Replier>) {
    match netlink::subscribe() {
        Ok((mut events, replier)) => {
            let (tx, rx) = mpsc::channel();
            let spawned = thread::Builder::new()
                .name("netlink".into())
                .spawn(move || {
                    while let Some(ev) = events.next_event() {
                        match ev {
                            Ok(ev) => {
                                if tx.send(ev).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!("{e}"),
                        }
                    }
                });
            match spawned {
                Ok(_) => {
                    tracing::info!("listening for TCM-USER netlink events");
                    (Some(rx), Some(replier))
                }
                Err(e) => {
                    tracing::warn!("netlink thread: {e}; relying on rescans");
                    (None, None)
                }
            }
        }
        Err(e) => {
            tracing::warn!("{e}; relying on periodic rescans of /sys/class/uio");
            (None, None)
        }
    }
}

/// The configfs LUNs being served, and what serving them needs.
struct Devices<'a> {
    cfg: &'a ServeConfig,
    stop: &'a Arc<AtomicBool>,
    /// Runs the control plane's devices (dev_config `wasmtap/@<id>`).
    host: &'a DaemonHost,
    guests: Guests,
    /// By UIO device name.
    workers: HashMap<String, Running>,
}

impl Devices<'_> {
    /// Attach every new UIO device of our subtype; forget ended workers.
    fn rescan(&mut self) {
        let Self {
            cfg,
            stop,
            host,
            guests,
            workers,
        } = self;
        rescan(cfg, stop, guests, workers, host);
    }

    /// React to a netlink event (and answer it if the kernel waits).
    fn handle_event(&mut self, replier: Option<&Replier>, ev: &DeviceEvent) {
        // Events for other handlers' devices are none of our business.
        let Some(dir) = backstore_of(self.cfg, ev) else {
            return;
        };
        tracing::info!(kind = ?ev.kind, device = ?ev.uio_name, "netlink event");
        let status = self.apply(ev);
        if let Err(e) = &status {
            tracing::error!(kind = ?ev.kind, device = ?ev.uio_name, "{e}");
        }
        if netlink::needs_reply(&dir)
            && let Some(rep) = replier
        {
            let code = if status.is_ok() { 0 } else { -nix::libc::EIO };
            if let Err(e) = rep.reply(ev, code) {
                tracing::error!("{e}");
            }
        }
    }

    fn apply(&mut self, ev: &DeviceEvent) -> Result<(), String> {
        match ev.kind {
            EventKind::Added => {
                self.rescan();
                // Control-plane devices are attached by the host (rescan
                // logged any failure); the others get a worker here.
                let managed = ev
                    .uio_name
                    .as_deref()
                    .and_then(|n| uio::parse_uio_name(n, SUBTYPE))
                    .is_some_and(|(_, _, config)| control::managed_id(&config).is_some());
                match ev.uio() {
                    Some(u) if !managed && !self.workers.contains_key(&u) => {
                        Err(format!("{u} could not be attached"))
                    }
                    _ => Ok(()),
                }
            }
            EventKind::Removed => {
                if let Some(r) = ev.uio().and_then(|u| self.workers.remove(&u)) {
                    let _ = r.control.send(Control::Stop);
                    let _ = r.handle.join();
                }
                Ok(())
            }
            EventKind::Reconfig => match ev.uio().and_then(|u| self.workers.get(&u)) {
                Some(r) if ev.dev_size.is_some() || ev.write_cache.is_some() => {
                    let (size, write_cache) = (ev.dev_size, ev.write_cache);
                    match r
                        .control
                        .call(worker::When::Now, Duration::from_secs(5), move |h| {
                            h.reconfigure(size, write_cache)
                        }) {
                        Ok(done) => done.map_err(|e| e.to_string()),
                        Err(e) => Err(format!("reconfiguration: {e}")),
                    }
                }
                // dev_config changes take effect at the next attach.
                _ => Ok(()),
            },
        }
    }
}

fn rescan(
    cfg: &ServeConfig,
    stop: &Arc<AtomicBool>,
    guests: &mut Guests,
    workers: &mut HashMap<String, Running>,
    host: &DaemonHost,
) {
    match uio::scan(&cfg.sysfs_uio, SUBTYPE) {
        Ok(devs) => {
            for dev in devs {
                // Devices of the control plane (dev_config `wasmtap/@<id>`).
                if let Some(id) = control::managed_id(&dev.config) {
                    // Until the control plane has restored its devices the
                    // id means nothing yet; the next rescan attaches it.
                    if !host.ready() {
                        continue;
                    }
                    if let Err(e) = host.attach_tcmu(id, cfg, &dev) {
                        tracing::error!(device = %dev.name, uio = %dev.uio, "cannot attach: {e}");
                    }
                    continue;
                }
                if workers.contains_key(&dev.uio) {
                    continue;
                }
                match start_worker(cfg, &dev, stop, guests) {
                    Ok(r) => {
                        workers.insert(dev.uio.clone(), r);
                    }
                    // Removed between the scan and the attach: not a fault.
                    Err(e) if !dev.configfs_dir(&cfg.configfs).exists() => {
                        tracing::info!(device = %dev.name, uio = %dev.uio, "device went away while attaching: {e}")
                    }
                    Err(e) => {
                        tracing::error!(device = %dev.name, uio = %dev.uio, "cannot attach: {e}")
                    }
                }
            }
        }
        Err(e) => tracing::warn!("device scan: {e}"),
    }
    workers.retain(|uio, r| {
        if r.handle.is_finished() {
            tracing::info!(%uio, commands = r.stats.commands.load(Ordering::Relaxed), "worker ended");
            false
        } else {
            true
        }
    });
}

fn backstore_of(cfg: &ServeConfig, ev: &DeviceEvent) -> Option<PathBuf> {
    let name = ev.uio_name.as_deref()?;
    let (hba, dev, _) = uio::parse_uio_name(name, SUBTYPE)?;
    Some(configfs::backstore_dir(&cfg.configfs, hba, &dev))
}

/// Why a configfs LUN got no worker.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The device could not be opened for serving.
    #[error(transparent)]
    Attach(#[from] attach::AttachError),
    /// The worker's channel or thread could not be made.
    #[error("worker: {0}")]
    Worker(#[from] std::io::Error),
}

fn start_worker(
    cfg: &ServeConfig,
    dev: &UioDevice,
    stop: &Arc<AtomicBool>,
    guests: &mut Guests,
) -> Result<Running, StartError> {
    let spec = backstore::parse(&dev.config);
    let (attrs, handle, ring) = attach::open_device(cfg, dev)?;
    let blocks = attrs.size / u64::from(attrs.block_size);
    tracing::info!(
        device = %dev.name, uio = %dev.uio, size = attrs.size, block_size = attrs.block_size,
        max_sectors = attrs.max_sectors, caps = ring.caps(), config = %wasmtap_web::host::redact_config(&dev.config),
        "attached"
    );
    // A guest is opened here, before the worker starts, so a refused module
    // or configuration is reported at attach with its reason. A backstore that cannot run still gets a worker: it answers with NOT
    // READY, MANUAL INTERVENTION REQUIRED, so the kernel's commands never go
    // unanswered (an unanswered LUN scan blocks and leaks in tcm_loop).
    let guest = match &spec {
        Ok(BackstoreSpec::Native) => Ok(None),
        Ok(BackstoreSpec::Guest { module, config }) => {
            let config = backstore::with_geometry(
                &wasmtap_web::host::guest_config(config),
                attrs.size,
                attrs.block_size,
            );
            let device_dir = cfg
                .data_dir
                .join("devices")
                .join(format!("{}-{}", dev.hba, dev.name));
            guests
                .open(
                    &dev.name,
                    module,
                    &config,
                    &device_dir,
                    Some(Arc::clone(&handle.region)),
                    DeviceFacts::geometry(attrs.size, attrs.block_size),
                )
                .map(Some)
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &guest {
        tracing::error!(device = %dev.name, uio = %dev.uio, "backstore unavailable, LUN answers NOT READY: {e}");
    }
    let stats = Arc::new(WorkerStats::default());
    let (control, control_rx) = worker::channel()?;
    let name = dev.name.clone();
    let uio_name = dev.uio.clone();
    let wwn_seed = format!("{}/{}", dev.hba, dev.name);
    // EXTENDED COPY reaches the LUNs of the same user_N HBA only (crate::copy).
    let (copies, copy_scope, copy_tx) = (
        guests.copy.clone(),
        format!("hba:{}", dev.hba),
        control.clone(),
    );
    // Outside the guest's own directory: a backstore cannot forge it.
    let sanitize_file = cfg
        .data_dir
        .join("state")
        .join(format!("{}-{}.sanitize", dev.hba, dev.name));
    // A guest's data outlives the daemon, so does its sanitize state (the
    // native RAM disk starts empty every time).
    let persist = matches!(guest, Ok(Some(_)));
    let geometry = (attrs.block_size, blocks);
    let make = move || {
        let backend = match guest {
            Ok(None) => DeviceBackend::native(RamDisk::new(
                attrs.block_size,
                blocks,
                u64::from(attrs.max_sectors),
                attrs.write_cache,
            )),
            Ok(Some(b)) => DeviceBackend::new(Ok(b), geometry, Arc::default()),
            Err(reason) => DeviceBackend::new(Err(reason), geometry, Arc::default()),
        };
        let h = ScsiHandler::new(&wwn_seed, backend, Some(attrs.max_sectors))?;
        let h = if persist {
            h.persist_sanitize(sanitize_file)
        } else {
            h
        };
        Ok::<_, crate::handler::HandlerError>(h.with_copy(&copies, &copy_scope, copy_tx))
    };
    let serve = worker::Serve {
        ring,
        bell: handle.bell,
        stop: worker::stop_flag(Arc::clone(stop)),
        stats: Arc::clone(&stats),
        tuning: cfg.tuning(),
        control: Some(control_rx),
    };
    let handle = worker::spawn(
        format!("dev-{}", dev.name),
        serve,
        make,
        move |_, r| match r {
            Ok(()) => tracing::info!(device = %name, uio = %uio_name, "worker stopped"),
            Err(WorkerError::Setup(e)) => tracing::error!(device = %name, "cannot serve: {e}"),
            // The kernel tears the UIO device down on removal; its fd then
            // fails with EIO. That is the device going away, not a fault.
            Err(WorkerError::Doorbell(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                tracing::info!(device = %name, uio = %uio_name, "device removed")
            }
            Err(e) => tracing::error!(device = %name, uio = %uio_name, "worker failed: {e}"),
        },
    )?;
    Ok(Running {
        handle,
        stats,
        control,
    })
}

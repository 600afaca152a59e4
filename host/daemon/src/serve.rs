//! `wasmtap serve`: discover devices, run one worker per device, stop cleanly.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use wasmtap_kernel::configfs;
use wasmtap_kernel::uio::{self, SUBTYPE, UioDevice};
use wasmtap_ring::abi::mailbox;
use wasmtap_ring::{Ring, SharedRegion};

use crate::config::{Frontend, ServeConfig};
use crate::glue::ScsiHandler;
use crate::ramdisk::RamDisk;
use crate::worker::{self, WorkerStats};

/// A device being served.
struct Running {
    handle: JoinHandle<()>,
    stats: Arc<WorkerStats>,
}

/// Run until SIGTERM/SIGINT (or `duration`).
pub fn run(cfg: &ServeConfig, duration: Option<Duration>) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    if let Some(d) = duration {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }
    match cfg.resolved_frontend() {
        Frontend::Sim => crate::demo::run(cfg, &stop),
        _ => serve_tcmu(cfg, &stop),
    }
}

fn serve_tcmu(cfg: &ServeConfig, stop: &Arc<AtomicBool>) -> Result<(), String> {
    tracing::info!(
        uio = %cfg.sysfs_uio.display(),
        configfs = %cfg.configfs.display(),
        "serving TCMU devices of handler subtype {SUBTYPE:?}"
    );
    let mut workers: HashMap<String, Running> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        match uio::scan(&cfg.sysfs_uio, SUBTYPE) {
            Ok(devs) => {
                for dev in devs {
                    if workers.contains_key(&dev.uio) {
                        continue;
                    }
                    match start_worker(cfg, &dev, stop) {
                        Ok(r) => {
                            workers.insert(dev.uio.clone(), r);
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
        sleep_unless(stop, Duration::from_millis(cfg.rescan_ms));
    }
    tracing::info!(devices = workers.len(), "shutting down");
    for (uio, r) in workers {
        if r.handle.join().is_err() {
            tracing::error!(%uio, "worker panicked");
        }
    }
    Ok(())
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
    }
}

fn start_worker(
    cfg: &ServeConfig,
    dev: &UioDevice,
    stop: &Arc<AtomicBool>,
) -> Result<Running, String> {
    let dir = dev.configfs_dir(&cfg.configfs);
    let attrs = configfs::read_attrs(&dir).map_err(|e| e.to_string())?;
    let handle = uio::open(&cfg.dev_dir, dev).map_err(|e| e.to_string())?;
    let head = handle
        .region
        .load_u32_acquire(mailbox::CMD_HEAD as u64)
        .map_err(|e| e.to_string())?;
    let tail = handle
        .region
        .load_u32_acquire(mailbox::CMD_TAIL as u64)
        .map_err(|e| e.to_string())?;
    if head != tail {
        // Entries left by a previous daemon may hold half-written responses;
        // have the kernel fail them as retryable and start from an empty ring.
        tracing::warn!(device = %dev.name, head, tail, "ring not empty at attach: resetting");
        configfs::reset_ring(&dir).map_err(|e| e.to_string())?;
    }
    let ring = Ring::attach(Arc::clone(&handle.region)).map_err(|e| e.to_string())?;
    let blocks = attrs.size / u64::from(attrs.block_size);
    tracing::info!(
        device = %dev.name, uio = %dev.uio, size = attrs.size, block_size = attrs.block_size,
        max_sectors = attrs.max_sectors, caps = ring.caps(), config = %dev.config,
        "attached"
    );
    let stats = Arc::new(WorkerStats::default());
    let (stop, stats2, name, batch) = (
        Arc::clone(stop),
        Arc::clone(&stats),
        dev.name.clone(),
        cfg.batch,
    );
    let uio_name = dev.uio.clone();
    let wwn_seed = format!("{}/{}", dev.hba, dev.name);
    let handle = thread::Builder::new()
        .name(format!("dev-{}", dev.name))
        .spawn(move || {
            let disk = RamDisk::new(
                attrs.block_size,
                blocks,
                u64::from(attrs.max_sectors),
                attrs.write_cache,
            );
            let mut handler = match ScsiHandler::new(&wwn_seed, disk) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(device = %name, "cannot serve: {e}");
                    return;
                }
            };
            match worker::run(ring, &handle.bell, &mut handler, &stop, &stats2, batch) {
                Ok(()) => tracing::info!(device = %name, uio = %uio_name, "worker stopped"),
                Err(e) => tracing::error!(device = %name, uio = %uio_name, "worker failed: {e}"),
            }
        })
        .map_err(|e| format!("spawn worker: {e}"))?;
    Ok(Running { handle, stats })
}

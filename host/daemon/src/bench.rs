//! `wasmtap bench`: one simulated device per case, driven at a fixed queue
//! depth, for each backend; prints IOPS, MB/s, p50/p99 latency and the ratio
//! of each backend to its native yardstick.
//!
//! The simulated kernel runs on the calling thread, the device worker on its
//! own thread, as with a real device. Latency is from submission to reap.
//! Figures are printed, never asserted.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wasmtap_kernel::MappedRegion;
use wasmtap_kernel::sim::{self, SimKernel};
use wasmtap_ring::Ring;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{DataRef, SimConfig};

use crate::demo::rw16;
use crate::device::DeviceBackend;
use crate::filedisk::FileDisk;
use crate::handler::ScsiHandler;
use crate::ramdisk::RamDisk;
use crate::worker::{self, Handler, WorkerStats};

const BLOCK: u32 = 4096;
const DEVICE_BYTES: u64 = 128 << 20;
/// The simulated device's data area: 2048 blocks of 16 KiB.
const DATA_BLOCKS: u32 = 2048;
const DATA_AREA_BYTES: u64 = DATA_BLOCKS as u64 * 16 * 1024;

/// One workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Short name.
    pub name: &'static str,
    /// Bytes per command.
    pub size: u32,
    /// Commands in flight.
    pub qd: usize,
    /// Write (else read).
    pub write: bool,
    /// Random offsets (else sequential).
    pub random: bool,
}

/// The workloads of issue #5: 4 KiB random at QD 1 and 32, 1 MiB sequential.
pub const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "4k-randread-qd1",
        size: 4096,
        qd: 1,
        write: false,
        random: true,
    },
    Workload {
        name: "4k-randread-qd32",
        size: 4096,
        qd: 32,
        write: false,
        random: true,
    },
    Workload {
        name: "4k-randwrite-qd1",
        size: 4096,
        qd: 1,
        write: true,
        random: true,
    },
    Workload {
        name: "4k-randwrite-qd32",
        size: 4096,
        qd: 32,
        write: true,
        random: true,
    },
    Workload {
        name: "1m-seqread-qd8",
        size: 1 << 20,
        qd: 8,
        write: false,
        random: false,
    },
    Workload {
        name: "1m-seqwrite-qd8",
        size: 1 << 20,
        qd: 8,
        write: true,
        random: false,
    },
];

/// Measured figures for one backend and workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Commands per second.
    pub iops: f64,
    /// Megabytes (10^6) per second.
    pub mbps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// CPU time of the device worker thread per command, microseconds
    /// (user and system; 0 where not measured). Unlike IOPS it hardly
    /// depends on how fast the machine wakes sleeping threads.
    pub worker_us: f64,
    /// Times per command the device worker slept in `poll()` for lack of
    /// work (each sleep costs a wake-up later).
    pub sleeps: f64,
}

/// CPU time the calling thread has run, in nanoseconds
/// (`/proc/thread-self/schedstat`; 0 if unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A backend under test: builds the worker's handler on the worker thread.
pub type MakeHandler =
    Box<dyn FnOnce(Arc<MappedRegion>) -> Result<Box<dyn Handler>, String> + Send>;

/// The native RAM disk.
pub fn native_ram() -> MakeHandler {
    Box::new(|_| {
        let disk = RamDisk::new(BLOCK, DEVICE_BYTES / u64::from(BLOCK), 1024, false);
        // As the daemon serves it (see `crate::managed`).
        let backend = DeviceBackend::native(disk);
        Ok(
            Box::new(ScsiHandler::new("bench/ram", backend, None).map_err(|e| e.to_string())?)
                as Box<dyn Handler>,
        )
    })
}

/// The native pread/pwrite backend on a file in `dir`.
pub fn native_file(dir: &Path) -> MakeHandler {
    let path = dir.join("bench-native.img");
    Box::new(move |region| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.set_len(DEVICE_BYTES).map_err(|e| e.to_string())?;
        let disk = FileDisk::new(f, region, BLOCK, 1024).map_err(|e| e.to_string())?;
        Ok(
            Box::new(ScsiHandler::new("bench/file", disk, None).map_err(|e| e.to_string())?)
                as Box<dyn Handler>,
        )
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Run `w` against the backend `make` for `secs` seconds.
pub fn run_case(make: MakeHandler, w: Workload, secs: f64) -> Result<Figures, String> {
    let cfg = SimConfig {
        caps: abi::CAP_OOOC | abi::CAP_READ_LEN,
        data_blocks: DATA_BLOCKS, // 16 KiB blocks (the kernel's default size)
        ..SimConfig::default()
    };
    let (mut k, user) = sim::device(cfg).map_err(|e| e.to_string())?;
    // The kernel does not pre-fill read buffers; the model's poison fill is
    // a test oracle and would add a memset to every read here.
    k.model.set_poison(false);
    let ring = Ring::attach(Arc::clone(&user.region)).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let (wstop, bell, region) = (
        Arc::clone(&stop),
        user.bell.clone(),
        Arc::clone(&user.region),
    );
    let stats = Arc::new(WorkerStats::default());
    let serve = worker::Serve {
        ring,
        bell,
        stop: worker::stop_flag(wstop),
        stats: Arc::clone(&stats),
        tuning: 256.into(),
        control: None,
    };
    // The worker thread's CPU time while it serves (not while it builds
    // the handler).
    let cpu0 = Arc::new(AtomicU64::new(0));
    let cpu_start = Arc::clone(&cpu0);
    let make = move || {
        let h = make(region);
        cpu_start.store(thread_cpu_ns(), Ordering::Relaxed);
        h
    };
    let worker = worker::spawn("bench-dev".into(), serve, make, move |_, r| {
        r.map(|()| {
            (
                thread_cpu_ns().saturating_sub(cpu0.load(Ordering::Relaxed)),
                stats.commands.load(Ordering::Relaxed),
                stats.sleeps.load(Ordering::Relaxed),
            )
        })
    })
    .map_err(|e| e.to_string())?;
    let result = drive(&mut k, w, secs);
    stop.store(true, Ordering::Relaxed);
    let _ = user.bell.to_user.ring();
    match worker.join() {
        Ok(Ok((cpu_ns, commands, sleeps))) => result.map(|mut f| {
            if commands > 0 {
                f.worker_us = cpu_ns as f64 / commands as f64 / 1000.0;
                f.sleeps = sleeps as f64 / commands as f64;
            }
            f
        }),
        Ok(Err(e)) => Err(format!("worker: {e}")),
        Err(_) => Err("worker panicked".into()),
    }
}

/// TEST UNIT READY until GOOD: the first command of a nexus reports the
/// POWER ON unit attention, as with any initiator.
fn clear_unit_attention(k: &mut SimKernel) -> Result<(), String> {
    for _ in 0..3 {
        k.model
            .submit_ref(u64::MAX, &[0; 6], DataRef::None)
            .map_err(|e| e.to_string())?;
        k.to_user.ring().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut status = None;
        while status.is_none() {
            if Instant::now() > deadline {
                return Err("TEST UNIT READY got no answer".into());
            }
            k.model
                .reap_with(false, |c| status = Some(c.status))
                .map_err(|e| e.to_string())?;
            if status.is_none() {
                thread::sleep(Duration::from_micros(200));
            }
        }
        if status == Some(abi::SAM_STAT_GOOD) {
            return Ok(());
        }
    }
    Err("device not ready".into())
}

/// Sleep until the worker rings the kernel (at most 100 ms).
fn wait_for_completions(k: &mut SimKernel) -> Result<(), String> {
    let fd = k.to_kernel.fd();
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    if crate::worker::poll_fds(&mut fds, 100).map_err(|e| e.to_string())? > 0 {
        k.to_kernel.wait().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Write the whole device once (1 MiB commands, 8 in flight), so reads
/// return stored data: a fresh device would answer them from holes (a
/// memset, or the file system's zero page), which no real disk under test
/// does.
fn prefill(k: &mut SimKernel) -> Result<(), String> {
    const STEP: u32 = 1 << 20;
    let data: Vec<u8> = (0..STEP).map(|i| (i % 251) as u8).collect();
    let blocks = STEP / BLOCK;
    let (mut next, mut in_flight) = (0u64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < DEVICE_BYTES || in_flight > 0 {
        while next < DEVICE_BYTES && in_flight < 8 {
            k.model
                .submit_ref(
                    next,
                    &rw16(0x8a, next / u64::from(BLOCK), blocks),
                    DataRef::ToDevice(&data),
                )
                .map_err(|e| e.to_string())?;
            next += u64::from(STEP);
            in_flight += 1;
            k.to_user.ring().map_err(|e| e.to_string())?;
        }
        let mut bad = None;
        let n = k
            .model
            .reap_with(false, |c| {
                if c.status != abi::SAM_STAT_GOOD {
                    bad = Some(c.status);
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(status) = bad {
            return Err(format!("prefill write failed with status {status:#x}"));
        }
        in_flight -= n;
        if n == 0 {
            if Instant::now() > deadline {
                return Err("prefill did not finish within 60 s".into());
            }
            wait_for_completions(k)?;
        }
    }
    Ok(())
}

fn drive(k: &mut SimKernel, w: Workload, secs: f64) -> Result<Figures, String> {
    clear_unit_attention(k)?;
    if !w.write {
        prefill(k)?;
    }
    let blocks = w.size / BLOCK;
    let dev_blocks = DEVICE_BYTES / u64::from(BLOCK);
    let data = vec![0x5au8; w.size as usize];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut seq_lba = 0u64;
    let mut next_lba = || {
        if w.random {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % (dev_blocks / u64::from(blocks))) * u64::from(blocks)
        } else {
            let l = seq_lba;
            seq_lba = (seq_lba + u64::from(blocks)) % dev_blocks;
            l
        }
    };
    // Warm up: the first pass allocates the RAM disk's memory and the
    // simulator's buffers.
    let mut started: Vec<Option<Instant>> = vec![None; w.qd * 4 + 64];
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let (mut in_flight, mut tag, mut done) = (0usize, 0u64, 0u64);
    let warm_until = Instant::now() + Duration::from_secs_f64((secs / 5.0).min(1.0));
    let mut t0 = None;
    let end_after = Duration::from_secs_f64(secs);
    loop {
        let now = Instant::now();
        if t0.is_none() && now >= warm_until {
            t0 = Some(now);
            lat.clear();
            done = 0;
        }
        let measuring_over = t0.is_some_and(|t| now.duration_since(t) >= end_after);
        let mut queued = false;
        while !measuring_over && in_flight < w.qd {
            let dir = if w.write {
                DataRef::ToDevice(&data)
            } else {
                DataRef::FromDevice(w.size)
            };
            let slot = (tag % started.len() as u64) as usize;
            started[slot] = Some(Instant::now());
            k.model
                .submit_ref(
                    tag,
                    &rw16(if w.write { 0x8a } else { 0x88 }, next_lba(), blocks),
                    dir,
                )
                .map_err(|e| e.to_string())?;
            tag += 1;
            in_flight += 1;
            queued = true;
        }
        if queued {
            k.to_user.ring().map_err(|e| e.to_string())?;
        }
        if in_flight == 0 {
            break;
        }
        let mut bad = None;
        let n = k
            .model
            .reap_with(false, |c| {
                let slot = (c.tag % started.len() as u64) as usize;
                if let Some(s) = started[slot].take() {
                    lat.push(s.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                }
                if c.status != abi::SAM_STAT_GOOD {
                    bad = Some(c.sense.clone());
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(sense) = bad {
            return Err(format!(
                "command failed, sense {:02x?}",
                &sense[..sense.len().min(18)]
            ));
        }
        in_flight -= n;
        done += n as u64;
        if n == 0 {
            wait_for_completions(k)?;
        }
    }
    let elapsed = t0.map(|t| t.elapsed().as_secs_f64()).unwrap_or(secs);
    lat.sort_unstable();
    let iops = done as f64 / elapsed;
    Ok(Figures {
        iops,
        mbps: iops * f64::from(w.size) / 1e6,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        worker_us: 0.0,
        sleeps: 0.0,
    })
}

/// A plain memcpy of `size` bytes between two buffers of that size,
/// repeated for `secs`: both stay in the CPU's caches, so this is the
/// machine's copy speed with no memory traffic (the baseline).
pub fn memcpy_baseline(size: u32, secs: f64) -> Figures {
    memcpy_over(size, u64::from(size), u64::from(size), secs)
}

/// A plain memcpy of `size`-byte blocks from a buffer the size of the bench
/// device into one the size of the bench's data area, cycling through
/// both: one copy with the memory traffic a device of this size causes (a
/// read's copy from the store into the data area), and nothing else.
pub fn memcpy_span_baseline(size: u32, secs: f64) -> Figures {
    memcpy_over(size, DEVICE_BYTES, DATA_AREA_BYTES, secs)
}

fn memcpy_over(size: u32, src_len: u64, dst_len: u64, secs: f64) -> Figures {
    let n = size as usize;
    let src = vec![0x5au8; src_len as usize];
    let mut dst = vec![0u8; dst_len as usize];
    // Touch every page first, as a warmed-up device has.
    dst.fill(1);
    let (src_blocks, dst_blocks) = (src.len() / n, dst.len() / n);
    let mut lat = Vec::new();
    let (start, mut ops) = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < secs {
        let (s, d) = (
            (ops as usize % src_blocks) * n,
            (ops as usize % dst_blocks) * n,
        );
        let t = Instant::now();
        dst[d..d + n].copy_from_slice(std::hint::black_box(&src[s..s + n]));
        std::hint::black_box(&mut dst);
        lat.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        ops += 1;
    }
    lat.sort_unstable();
    let iops = ops as f64 / start.elapsed().as_secs_f64();
    Figures {
        iops,
        mbps: iops * f64::from(size) / 1e6,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        worker_us: 0.0,
        sleeps: 0.0,
    }
}

/// For the 1 MiB workloads: each backend's throughput over the two memcpy
/// baselines (the target is 0.5x the hot one).
fn print_versus_memcpy(series: &[Series]) {
    let mbps = |backend: &str, workload: &str| {
        series
            .iter()
            .find(|s| s.backend == backend && s.workload == workload)
            .map(|s| median(&s.col(|f| f.mbps)))
    };
    let mut header = false;
    for s in series {
        let (b, w) = (s.backend.as_str(), s.workload);
        if !w.starts_with("1m") || b.starts_with("memcpy") {
            continue;
        }
        let (Some(hot), Some(span)) = (mbps("memcpy", w), mbps("memcpy-span", w)) else {
            continue;
        };
        if !header {
            println!();
            println!(
                "{:<18} {:<14} {:>14} {:>16}",
                "workload", "backend", "/ memcpy (hot)", "/ memcpy-span"
            );
            header = true;
        }
        let m = median(&s.col(|f| f.mbps));
        println!("{:<18} {:<14} {:>13.2}x {:>15.2}x", w, b, m / hot, m / span);
    }
}

/// A backend row of the table: its name, its yardstick, how to build it.
pub struct Row {
    /// Name printed.
    pub name: String,
    /// Name of the row it is compared with (None: it is a yardstick).
    pub versus: Option<String>,
    /// Factory (called once per workload).
    pub make: Box<dyn Fn() -> MakeHandler>,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("name", &self.name)
            .field("versus", &self.versus)
            .finish()
    }
}

/// A WebAssembly backstore row: `module` opened with `config` (plus the
/// device's size and sector size), device directory under `data_dir`.
pub fn guest(data_dir: &Path, device: &str, module: &str, config: &str) -> MakeHandler {
    let (data_dir, device, module) = (
        data_dir.to_path_buf(),
        device.to_string(),
        module.to_string(),
    );
    let config = crate::backstore::with_geometry(config, DEVICE_BYTES, BLOCK);
    Box::new(move |region| {
        let mut g = crate::backstore::Guests::new(&data_dir).map_err(|e| e.to_string())?;
        let dir = data_dir.join("devices").join(&device);
        let facts = crate::backstore::DeviceFacts::geometry(DEVICE_BYTES, BLOCK);
        let b = g
            .open(&device, &module, &config, &dir, Some(region), facts)
            .map_err(|e| e.to_string())?;
        let geometry = (BLOCK, DEVICE_BYTES / u64::from(BLOCK));
        let backend = DeviceBackend::new(Ok(b), geometry, Arc::default());
        Ok(Box::new(
            ScsiHandler::new(&format!("bench/{device}"), backend, None)
                .map_err(|e| e.to_string())?,
        ) as Box<dyn Handler>)
    })
}

/// Every row: native yardsticks and the guests compared with them. File
/// cases live in `file_dir` (a tmpfs by default, so the file system is not
/// what is measured).
pub fn all_rows(file_dir: PathBuf) -> Vec<Row> {
    let mut rows = native_rows(file_dir.clone());
    let d1 = file_dir.clone();
    rows.push(Row {
        name: "guest-ram".into(),
        versus: Some("native-ram".into()),
        make: Box::new(move || guest(&d1, "bench-ram", "ram", "")),
    });
    rows.push(Row {
        name: "guest-raw-file".into(),
        versus: Some("native-file".into()),
        make: Box::new(move || guest(&file_dir, "bench-raw", "raw-file", "file=disk.img")),
    });
    rows
}

/// The native rows.
pub fn native_rows(file_dir: PathBuf) -> Vec<Row> {
    vec![
        Row {
            name: "native-ram".into(),
            versus: None,
            make: Box::new(native_ram),
        },
        Row {
            name: "native-file".into(),
            versus: None,
            make: Box::new(move || native_file(&file_dir)),
        },
    ]
}

/// Median of `v` (0 when empty).
fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Max minus min over the median, in percent (0 for fewer than two values).
fn spread_pct(v: &[f64]) -> f64 {
    let m = median(v);
    if v.len() < 2 || m == 0.0 {
        return 0.0;
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    100.0 * (hi - lo) / m
}

/// One backend on one workload over the repetitions.
#[derive(Debug, Clone, Default)]
struct Series {
    backend: String,
    workload: &'static str,
    runs: Vec<Figures>,
    /// Per repetition: this row's IOPS over its yardstick's, and the
    /// yardstick's CPU per command over this row's (both > 1 = better).
    iops_ratios: Vec<f64>,
    cpu_ratios: Vec<f64>,
}

impl Series {
    fn col(&self, f: impl Fn(&Figures) -> f64) -> Vec<f64> {
        self.runs.iter().map(f).collect()
    }
}

/// Run every row on every workload `reps` times, interleaved (each
/// repetition goes through every workload and row before the next starts,
/// so a slow spell of the machine hits every row alike), and print medians
/// with their spread (or JSON). CPU time of the device worker per command
/// is the primary figure: it depends far less than IOPS on how quickly the
/// machine wakes sleeping threads.
pub fn run(rows: &[Row], secs: f64, reps: usize, json: bool) -> Result<(), String> {
    let reps = reps.max(1);
    // `WASMTAP_BENCH_ONLY=guest-ram,randwrite-qd32` (for profiling): only the
    // rows and workloads whose names contain one of the words.
    let only: Vec<String> = std::env::var("WASMTAP_BENCH_ONLY")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let picked = |name: &str, words: &[&String]| {
        words.is_empty() || words.iter().any(|w| name.contains(w.as_str()))
    };
    let row_words: Vec<&String> = only
        .iter()
        .filter(|o| rows.iter().any(|r| r.name.contains(o.as_str())))
        .collect();
    let load_words: Vec<&String> = only
        .iter()
        .filter(|o| WORKLOADS.iter().any(|w| w.name.contains(o.as_str())))
        .collect();
    let memcpy = only.is_empty() || only.iter().any(|o| o == "memcpy");
    let mut series: Vec<Series> = Vec::new();
    for rep in 0..reps {
        for w in WORKLOADS {
            if !picked(w.name, &load_words) {
                continue;
            }
            let mut this_rep: Vec<(String, Figures)> = Vec::new();
            for row in rows {
                if !picked(&row.name, &row_words) {
                    continue;
                }
                let f = run_case((row.make)(), w, secs)
                    .map_err(|e| format!("{} {}: {e}", row.name, w.name))?;
                let base = row
                    .versus
                    .as_ref()
                    .and_then(|v| this_rep.iter().find(|(n, _)| n == v))
                    .map(|(_, b)| *b);
                this_rep.push((row.name.clone(), f));
                let i = match series
                    .iter()
                    .position(|s| s.backend == row.name && s.workload == w.name)
                {
                    Some(i) => i,
                    None => {
                        series.push(Series {
                            backend: row.name.clone(),
                            workload: w.name,
                            ..Series::default()
                        });
                        series.len() - 1
                    }
                };
                let s = &mut series[i];
                s.runs.push(f);
                if let Some(b) = base {
                    if b.iops > 0.0 {
                        s.iops_ratios.push(f.iops / b.iops);
                    }
                    if f.worker_us > 0.0 {
                        s.cpu_ratios.push(b.worker_us / f.worker_us);
                    }
                }
                if !json {
                    eprintln!(
                        "  rep {}/{reps} {:<14} {:<18} done",
                        rep + 1,
                        row.name,
                        w.name
                    );
                }
            }
            if memcpy && rep == 0 {
                for (name, f) in [
                    ("memcpy", memcpy_baseline(w.size, secs.min(1.0))),
                    ("memcpy-span", memcpy_span_baseline(w.size, secs.min(1.0))),
                ] {
                    series.push(Series {
                        backend: name.into(),
                        workload: w.name,
                        runs: vec![f],
                        ..Series::default()
                    });
                }
            }
        }
    }
    if json {
        let items: Vec<String> = series
            .iter()
            .map(|s| {
                let m = |f: fn(&Figures) -> f64| median(&s.col(f));
                let ratio = |v: &[f64]| {
                    if v.is_empty() {
                        "null".to_string()
                    } else {
                        format!("{:.3}", median(v))
                    }
                };
                format!(
                    "{{\"backend\":\"{}\",\"workload\":\"{}\",\"reps\":{},\"iops\":{:.1},\"iops_spread_pct\":{:.1},\"mbps\":{:.2},\"p50_us\":{:.2},\"p99_us\":{:.2},\"worker_us\":{:.3},\"worker_us_spread_pct\":{:.1},\"sleeps_per_op\":{:.3},\"ratio\":{},\"ratio_spread_pct\":{:.1},\"cpu_ratio\":{},\"cpu_ratio_spread_pct\":{:.1}}}",
                    s.backend,
                    s.workload,
                    s.runs.len(),
                    m(|f| f.iops),
                    spread_pct(&s.col(|f| f.iops)),
                    m(|f| f.mbps),
                    m(|f| f.p50_us),
                    m(|f| f.p99_us),
                    m(|f| f.worker_us),
                    spread_pct(&s.col(|f| f.worker_us)),
                    m(|f| f.sleeps),
                    ratio(&s.iops_ratios),
                    spread_pct(&s.iops_ratios),
                    ratio(&s.cpu_ratios),
                    spread_pct(&s.cpu_ratios),
                )
            })
            .collect();
        println!("[{}]", items.join(","));
        return Ok(());
    }
    println!("{reps} interleaved repetitions of {secs} s; medians, [spread = (max-min)/median]");
    println!(
        "{:<18} {:<14} {:>15} {:>16} {:>10} {:>9} {:>9} {:>15} {:>15}",
        "workload",
        "backend",
        "cpu us/op",
        "IOPS",
        "MB/s",
        "p50 us",
        "sleeps/op",
        "cpu ratio",
        "IOPS ratio"
    );
    // "median [spread%]", with `suffix` after the median; "-" when empty.
    let with_spread = |v: &[f64], prec: usize, suffix: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{:.prec$}{suffix} [{:>2.0}%]", median(v), spread_pct(v))
        }
    };
    for s in &series {
        let cpu = s.col(|f| f.worker_us);
        println!(
            "{:<18} {:<14} {:>15} {:>16} {:>10.1} {:>9.1} {:>9.3} {:>15} {:>15}",
            s.workload,
            s.backend,
            if cpu.iter().all(|&c| c == 0.0) {
                "-".to_string()
            } else {
                with_spread(&cpu, 2, "")
            },
            with_spread(&s.col(|f| f.iops), 0, ""),
            median(&s.col(|f| f.mbps)),
            median(&s.col(|f| f.p50_us)),
            median(&s.col(|f| f.sleeps)),
            with_spread(&s.cpu_ratios, 2, "x"),
            with_spread(&s.iops_ratios, 2, "x"),
        );
    }
    println!(
        "cpu ratio: the yardstick's worker CPU per command over this row's; IOPS ratio: this row's IOPS over the yardstick's (per repetition, then the median)"
    );
    print_versus_memcpy(&series);
    Ok(())
}

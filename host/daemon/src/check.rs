//! `wasmtap check`: a conformance battery for a backstore module.
//!
//! The module is loaded and opened as the daemon does (the same runtime,
//! `[guests]` limits and load checks, through [`Guests`]), then served on the
//! kernel simulator through the real SCSI target and device worker, with
//! the hot-swappable backend of control-plane devices ([`DeviceBackend`]).
//! An initiator on the calling thread runs named checks; each passes, fails
//! with a specific reason (command, LBA, expected and got, sense), or is
//! skipped with a note. The device's directory is a fresh temporary one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtap_kernel::sim::{self, SimKernel};
use wasmtap_kernel::{EventBell, MappedRegion};
use wasmtap_ring::Ring;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{Completion, DataRef, SimConfig};
use wasmtap_runtime::WasmBackend;

use crate::backstore::{DeviceFacts, Guests, with_geometry};
use crate::config::GuestLimits;
use crate::demo::rw16;
use crate::device::{DeviceBackend, DeviceHandler};
use crate::handler::ScsiHandler;
use crate::worker::{self, Control, ControlTx};

/// The name the module under test is loaded as.
const MODULE: &str = "check";
/// Largest transfer the simulated kernel allows, as the control plane's
/// simulated devices (`hw_max_sectors` of 1 MiB).
const TRANSPORT_MAX_BYTES: u32 = 1 << 20;
/// Bytes per chunk of the random-I/O phases.
const CHUNK: u32 = 4096;
/// How long one command may take before the check gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shown in the report (the module's file name).
    pub name: String,
    /// The component's bytes.
    pub module: Vec<u8>,
    /// Configuration string for the guest's `open` (`size=` and `sector=`
    /// are added unless set, as the daemon does).
    pub config: String,
    /// Device size in bytes.
    pub size: u64,
    /// Logical block size (512 or 4096).
    pub block_size: u32,
    /// Keep the data directory here (else a temporary one is removed).
    pub keep: Option<PathBuf>,
    /// The daemon's `[guests]` limits.
    pub limits: GuestLimits,
    /// Seconds of each random-I/O phase (queue depths 1, 8, 32; hot swap).
    pub load_secs: f64,
}

impl Options {
    /// Defaults: 64 MiB, 512-byte blocks, the default limits, 1 s phases.
    pub fn new(name: &str, module: Vec<u8>) -> Self {
        Self {
            name: name.to_string(),
            module,
            config: String::new(),
            size: 64 << 20,
            block_size: 512,
            keep: None,
            limits: GuestLimits::default(),
            load_secs: 1.0,
        }
    }
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Conforms.
    Pass,
    /// Does not conform (see the detail).
    Fail,
    /// Not applicable to this module, or not run (see the detail).
    Skip,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One named check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Short name.
    pub name: &'static str,
    /// Result.
    pub verdict: Verdict,
    /// Seconds it took.
    pub secs: f64,
    /// What was seen: figures on a pass, the reason of a failure, the note
    /// of a skip.
    pub detail: String,
}

/// The battery's results.
#[derive(Debug, Clone)]
pub struct Report {
    /// The module checked.
    pub module: String,
    /// Device size in bytes and block size asked for.
    pub size: u64,
    /// Block size asked for.
    pub block_size: u32,
    /// The checks, in the order run.
    pub checks: Vec<Check>,
    /// Where the data directory was kept, if it was.
    pub kept: Option<PathBuf>,
}

impl Report {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    /// The check called `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// A table: check, result, time, detail.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} ({} bytes, {}-byte blocks)\n{:<20} {:<6} {:>8}  detail\n",
            self.module, self.size, self.block_size, "check", "result", "time"
        );
        for c in &self.checks {
            s.push_str(&format!(
                "{:<20} {:<6} {:>7.2}s  {}\n",
                c.name,
                c.verdict.as_str(),
                c.secs,
                c.detail
            ));
        }
        let count = |v| self.checks.iter().filter(|c| c.verdict == v).count();
        s.push_str(&format!(
            "{} passed, {} failed, {} skipped\n",
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Skip)
        ));
        if let Some(k) = &self.kept {
            s.push_str(&format!("data directory kept in {}\n", k.display()));
        }
        s
    }

    /// The same as JSON.
    pub fn json(&self) -> String {
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                format!(
                    "{{\"check\":{},\"result\":\"{}\",\"secs\":{:.3},\"detail\":{}}}",
                    json_str(c.name),
                    match c.verdict {
                        Verdict::Pass => "pass",
                        Verdict::Fail => "fail",
                        Verdict::Skip => "skip",
                    },
                    c.secs,
                    json_str(&c.detail)
                )
            })
            .collect();
        format!(
            "{{\"module\":{},\"size\":{},\"block_size\":{},\"passed\":{},\"kept\":{},\"checks\":[{}]}}",
            json_str(&self.module),
            self.size,
            self.block_size,
            !self.failed(),
            self.kept
                .as_ref()
                .map_or("null".to_string(), |k| json_str(&k.display().to_string())),
            checks.join(",")
        )
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Deterministic, non-zero-heavy test data.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Sense key, ASC, ASCQ of fixed or descriptor sense data.
fn sense_of(c: &Completion) -> Option<(u8, u8, u8)> {
    let s = &c.sense;
    match s.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) if s.len() >= 14 => Some((s[2] & 0xf, s[12], s[13])),
        Some(0x72 | 0x73) if s.len() >= 4 => Some((s[1] & 0xf, s[2], s[3])),
        _ => None,
    }
}

fn key_name(k: u8) -> &'static str {
    match k {
        0x0 => "NO SENSE",
        0x1 => "RECOVERED ERROR",
        0x2 => "NOT READY",
        0x3 => "MEDIUM ERROR",
        0x4 => "HARDWARE ERROR",
        0x5 => "ILLEGAL REQUEST",
        0x6 => "UNIT ATTENTION",
        0x7 => "DATA PROTECT",
        0xb => "ABORTED COMMAND",
        0xe => "MISCOMPARE",
        _ => "other",
    }
}

/// "GOOD", or the status with its sense decoded.
fn answer(c: &Completion) -> String {
    if c.status == abi::SAM_STAT_GOOD {
        return "GOOD".into();
    }
    match sense_of(c) {
        Some((k, asc, ascq)) => format!(
            "CHECK CONDITION, sense key {k:#x} ({}), ASC/ASCQ {asc:02x}/{ascq:02x}",
            key_name(k)
        ),
        None => format!("status {:#04x}", c.status),
    }
}

/// A command for a message: name, LBA and length where it has them.
fn describe(cdb: &[u8]) -> String {
    let at = |name: &str| {
        if cdb.len() >= 14 {
            let lba = u64::from_be_bytes(cdb[2..10].try_into().unwrap_or_default());
            let n = u32::from_be_bytes(cdb[10..14].try_into().unwrap_or_default());
            format!("{name} of {n} blocks at LBA {lba}")
        } else {
            name.to_string()
        }
    };
    match cdb.first() {
        Some(0x88) => at("READ(16)"),
        Some(0x8a) => at("WRITE(16)"),
        Some(0x93) => at("WRITE SAME(16)"),
        Some(0x89) => "COMPARE AND WRITE".into(),
        Some(0x00) => "TEST UNIT READY".into(),
        Some(0x35 | 0x91) => "SYNCHRONIZE CACHE".into(),
        Some(0x42) => "UNMAP".into(),
        Some(op) => format!("command {op:#04x}"),
        None => "an empty command".into(),
    }
}

/// Where `got` first differs from `want`, for a read of `what`.
fn compare(what: &str, lba: u64, bs: u32, want: &[u8], got: &[u8]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} bytes returned, {} expected",
            got.len(),
            want.len()
        ));
    }
    match want.iter().zip(got).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: data differs at LBA {} byte {}: expected {:#04x}, got {:#04x}",
            lba + (i / bs as usize) as u64,
            i % bs as usize,
            want[i],
            got[i]
        )),
    }
}

/// One simulated device: the kernel model here, the worker on its thread.
struct Sim {
    k: SimKernel,
    region: Arc<MappedRegion>,
    control: ControlTx<DeviceHandler>,
    wake: EventBell,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<(), String>>>,
    tag: u64,
    bs: u32,
}

impl Sim {
    /// A device whose backend `open` makes (given the device's region),
    /// served as a control-plane device is: a swappable backend behind the
    /// SCSI target, limited to the simulated kernel's transfer size.
    fn start(
        bs: u32,
        blocks: u64,
        open: impl FnOnce(Arc<MappedRegion>) -> Result<WasmBackend, String>,
    ) -> Result<Self, String> {
        let cfg = SimConfig {
            // 64 MiB data area: room for 32 commands of 1 MiB plus change.
            data_blocks: 4096,
            ..SimConfig::default()
        };
        let (k, user) = sim::device(cfg).map_err(|e| format!("simulator: {e}"))?;
        let region = Arc::clone(&user.region);
        let backend = open(Arc::clone(&region))?;
        let ring = Ring::attach(Arc::clone(&user.region)).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let wstop = Arc::clone(&stop);
        let wake = user.bell.to_user.clone();
        let (control, ctl_rx) = worker::channel().map_err(|e| e.to_string())?;
        let transport_max = (TRANSPORT_MAX_BYTES / bs).max(1);
        let make = move || {
            let backend = DeviceBackend::new(Ok(backend), (bs, blocks), Arc::default());
            ScsiHandler::new("check/dev", backend, Some(transport_max))
        };
        let serve = worker::Serve {
            ring,
            bell: user.bell,
            stop: worker::stop_flag(wstop),
            stats: Arc::default(),
            tuning: 64.into(),
            control: Some(ctl_rx),
        };
        let worker = worker::spawn("check-dev".into(), serve, make, |h, r| {
            let r = r.map_err(|e| format!("worker: {e}"));
            // Close the instance as a device removal would.
            let closed = h.map_or(Ok(()), |h| {
                h.backend().close().map_err(|e| format!("close: {e}"))
            });
            r.and(closed)
        })
        .map_err(|e| e.to_string())?;
        let mut s = Self {
            k,
            region,
            control,
            wake,
            stop,
            worker: Some(worker),
            tag: 0,
            bs,
        };
        // The first command of the nexus gets the power-on unit attention.
        let ua = s.exec(&[0; 6], DataRef::None)?;
        if ua.status != abi::SAM_STAT_GOOD && sense_of(&ua).map(|t| t.0) != Some(0x6) {
            return Err(format!("TEST UNIT READY: {}", answer(&ua)));
        }
        Ok(s)
    }

    /// Stop the worker and close the instance.
    fn shut(mut self) -> Result<(), String> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.ring();
        match self.worker.take() {
            Some(w) => w.join().map_err(|_| "worker panicked".to_string())?,
            None => Ok(()),
        }
    }

    fn next_tag(&mut self) -> u64 {
        self.tag += 1;
        self.tag
    }

    fn submit(&mut self, tag: u64, cdb: &[u8], dir: DataRef<'_>) -> Result<(), String> {
        self.k
            .model
            .submit_ref(tag, cdb, dir)
            .map_err(|e| format!("simulator: {e}"))?;
        Ok(())
    }

    fn ring(&mut self) -> Result<(), String> {
        self.k.to_user.ring().map_err(|e| e.to_string())
    }

    /// Reap what has completed (data copied out).
    fn reap(&mut self, out: &mut Vec<Completion>) -> Result<usize, String> {
        self.k
            .model
            .reap_with(true, |c| out.push(c.clone()))
            .map_err(|e| format!("simulator: {e}"))
    }

    /// Sleep until the worker rings the kernel (at most 20 ms).
    fn wait(&mut self) -> Result<(), String> {
        let fd = self.k.to_kernel.fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        if worker::poll_fds(&mut fds, 20).map_err(|e| e.to_string())? > 0 {
            self.k.to_kernel.wait().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Run one command.
    fn exec(&mut self, cdb: &[u8], dir: DataRef<'_>) -> Result<Completion, String> {
        let tag = self.next_tag();
        self.submit(tag, cdb, dir)?;
        self.ring()?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut got = Vec::new();
        loop {
            self.reap(&mut got)?;
            if let Some(i) = got.iter().position(|c| c.tag == tag) {
                return Ok(got.swap_remove(i));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} got no answer within {} s",
                    describe(cdb),
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            self.wait()?;
        }
    }

    /// WRITE(16), FUA if asked; an error unless GOOD.
    fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> Result<(), String> {
        let n = (data.len() / self.bs as usize) as u32;
        let mut cdb = rw16(0x8a, lba, n);
        if fua {
            cdb[1] |= 0x08;
        }
        let c = self.exec(&cdb, DataRef::ToDevice(data))?;
        if c.status != abi::SAM_STAT_GOOD {
            return Err(format!(
                "WRITE(16){} of {n} blocks at LBA {lba}: {}",
                if fua { " FUA" } else { "" },
                answer(&c)
            ));
        }
        Ok(())
    }

    /// READ(16); an error unless GOOD.
    fn read(&mut self, lba: u64, n: u32) -> Result<Vec<u8>, String> {
        let c = self.exec(&rw16(0x88, lba, n), DataRef::FromDevice(n * self.bs))?;
        if c.status != abi::SAM_STAT_GOOD {
            return Err(format!(
                "READ(16) of {n} blocks at LBA {lba}: {}",
                answer(&c)
            ));
        }
        Ok(c.data_in)
    }

    /// READ(16) and compare with `want`.
    fn verify(&mut self, lba: u64, want: &[u8]) -> Result<(), String> {
        let n = (want.len() / self.bs as usize) as u32;
        let got = self.read(lba, n)?;
        compare(
            &format!("READ(16) of {n} blocks at LBA {lba}"),
            lba,
            self.bs,
            want,
            &got,
        )
    }

    /// Run a command that must answer GOOD.
    fn good(&mut self, what: &str, cdb: &[u8], dir: DataRef<'_>) -> Result<Completion, String> {
        let c = self.exec(cdb, dir)?;
        if c.status != abi::SAM_STAT_GOOD {
            return Err(format!("{what}: {}", answer(&c)));
        }
        Ok(c)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// What the device advertises.
#[derive(Debug, Clone, Copy, Default)]
struct Geometry {
    bs: u32,
    blocks: u64,
    /// MAXIMUM TRANSFER LENGTH, blocks (0: not reported).
    max_transfer: u32,
    /// MAXIMUM COMPARE AND WRITE LENGTH, blocks.
    max_caw: u32,
    /// LBPME: logical block provisioning (UNMAP) enabled.
    discard: bool,
    /// LBPRZ: unmapped blocks read zero.
    lbprz: bool,
}

/// State shared by the checks.
struct Ctx {
    opts: Options,
    guests: Guests,
    config: String,
    dir: PathBuf,
    sim: Option<Sim>,
    geo: Geometry,
    /// Data written with FUA or before SYNCHRONIZE CACHE, for the reopen.
    durable: Vec<(u64, Vec<u8>)>,
    /// Whether data survives a new instance (None: not known yet).
    persistent: Option<bool>,
}

type Outcome = Result<(Verdict, String), String>;

fn pass(detail: impl Into<String>) -> Outcome {
    Ok((Verdict::Pass, detail.into()))
}

fn skip(detail: impl Into<String>) -> Outcome {
    Ok((Verdict::Skip, detail.into()))
}

impl Ctx {
    fn open_instance(&mut self, region: Arc<MappedRegion>) -> Result<WasmBackend, String> {
        let facts = DeviceFacts::sized(self.opts.size);
        self.guests
            .open(
                "check",
                MODULE,
                &self.config,
                &self.dir,
                Some(region),
                facts,
            )
            .map_err(|e| e.to_string())
    }

    fn start(&mut self) -> Result<(), String> {
        let (bs, blocks) = (
            self.opts.block_size,
            self.opts.size / u64::from(self.opts.block_size),
        );
        let guests = &mut self.guests;
        let (config, dir, size) = (&self.config, &self.dir, self.opts.size);
        let sim = Sim::start(bs, blocks, |region| {
            guests
                .open(
                    "check",
                    MODULE,
                    config,
                    dir,
                    Some(region),
                    DeviceFacts::sized(size),
                )
                .map_err(|e| e.to_string())
        })?;
        self.sim = Some(sim);
        Ok(())
    }

    fn sim(&mut self) -> Result<&mut Sim, String> {
        self.sim
            .as_mut()
            .ok_or_else(|| "the device is not running (an earlier check stopped it)".into())
    }

    /// The device's geometry as READ CAPACITY(16) and the Block Limits VPD
    /// page report it.
    fn geometry(&mut self) -> Result<Geometry, String> {
        let sim = self.sim()?;
        let cap = sim.good(
            "READ CAPACITY(16)",
            &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
            DataRef::FromDevice(32),
        )?;
        let d = &cap.data_in;
        if d.len() < 16 {
            return Err(format!("READ CAPACITY(16): {} bytes returned", d.len()));
        }
        let mut g = Geometry {
            blocks: u64::from_be_bytes(d[0..8].try_into().unwrap_or_default()) + 1,
            bs: u32::from_be_bytes(d[8..12].try_into().unwrap_or_default()),
            discard: d[14] & 0x80 != 0,
            lbprz: d[14] & 0x40 != 0,
            ..Geometry::default()
        };
        let vpd = sim.good(
            "INQUIRY VPD Block Limits",
            &[0x12, 0x01, 0xb0, 0, 64, 0],
            DataRef::FromDevice(64),
        )?;
        let v = &vpd.data_in;
        if v.len() >= 12 {
            g.max_caw = u32::from(v[5]);
            g.max_transfer = u32::from_be_bytes(v[8..12].try_into().unwrap_or_default());
        }
        Ok(g)
    }

    fn check_open(&mut self) -> Outcome {
        let t = Instant::now();
        self.start()?;
        let open_ms = t.elapsed().as_millis();
        let g = self.geometry()?;
        self.geo = g;
        let (want_bs, want_blocks) = (
            self.opts.block_size,
            self.opts.size / u64::from(self.opts.block_size),
        );
        if g.bs != want_bs || g.blocks != want_blocks {
            return Err(format!(
                "geometry: the module reports {} blocks of {} bytes ({} bytes), expected {} blocks of {} bytes ({} bytes, from --size/--block-size)",
                g.blocks,
                g.bs,
                g.blocks * u64::from(g.bs),
                want_blocks,
                want_bs,
                self.opts.size
            ));
        }
        pass(format!(
            "opened in {open_ms} ms with config {:?}: {} blocks of {} bytes, max transfer {} blocks, discard {}, COMPARE AND WRITE up to {} blocks",
            with_geometry(
                &wasmtap_web::host::redact_config(&self.opts.config),
                self.opts.size,
                self.opts.block_size
            ),
            g.blocks,
            g.bs,
            g.max_transfer,
            if g.discard { "yes" } else { "no" },
            g.max_caw
        ))
    }

    fn check_unwritten(&mut self) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let per = (65536 / bs).max(1);
        let sim = self.sim()?;
        let mut spots = vec![0, blocks / 2, blocks.saturating_sub(u64::from(per))];
        spots.dedup();
        for &lba in &spots {
            let n = per.min((blocks - lba) as u32);
            sim.verify(lba, &vec![0u8; (n * bs) as usize])?;
        }
        pass(format!(
            "{} reads of {} KiB before any write returned zeros",
            spots.len(),
            per * bs / 1024
        ))
    }

    fn check_read_write(&mut self) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let max = if self.geo.max_transfer == 0 {
            TRANSPORT_MAX_BYTES / bs
        } else {
            self.geo.max_transfer
        };
        let mut sizes: Vec<u32> = [bs, 4096, 65536, 1 << 20]
            .iter()
            .map(|&b| (b / bs).max(1))
            .filter(|&n| n <= max)
            .collect();
        sizes.push(max);
        sizes.sort_unstable();
        sizes.dedup();
        let sim = self.sim()?;
        // From 1/8 of the device on, each size at an aligned LBA and then
        // at an unaligned one, one untouched block between them.
        let mut cursor = blocks / 8;
        let mut done = 0;
        for (i, &n) in sizes.iter().enumerate() {
            let n64 = u64::from(n);
            let aligned = cursor.div_ceil(n64) * n64;
            let unaligned = aligned + n64 + if n64 == 1 { 1 } else { 3 };
            if unaligned + n64 + 1 > blocks {
                break;
            }
            for (j, &lba) in [aligned, unaligned].iter().enumerate() {
                let data = pattern((i * 2 + j) as u64 + 100, (n * bs) as usize);
                sim.write(lba, &data, false)?;
                sim.verify(lba, &data)?;
                done += 1;
            }
            // The blocks around the unaligned write stay untouched.
            for lba in [unaligned - 1, unaligned + n64] {
                let got = sim.read(lba, 1)?;
                if got.iter().any(|&b| b != 0) {
                    return Err(format!(
                        "READ(16) of 1 block at LBA {lba}: next to a {n}-block write at LBA {unaligned}, expected zeros (never written), got data"
                    ));
                }
            }
            cursor = unaligned + n64 + 1;
        }
        pass(format!(
            "{done} writes read back, sizes {} blocks, aligned and unaligned; neighbours untouched",
            sizes
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ))
    }

    fn check_edges(&mut self) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let sim = self.sim()?;
        let first = pattern(1, bs as usize);
        let last = pattern(2, bs as usize);
        sim.write(0, &first, false)?;
        sim.write(blocks - 1, &last, false)?;
        sim.verify(0, &first)?;
        sim.verify(blocks - 1, &last)?;
        // Past the end: refused with LBA OUT OF RANGE.
        let cases: [(&str, [u8; 16], DataRef<'_>); 3] = [
            (
                "READ(16) of 2 blocks at the last LBA",
                rw16(0x88, blocks - 1, 2),
                DataRef::FromDevice(2 * bs),
            ),
            (
                "READ(16) of 1 block at LBA = capacity",
                rw16(0x88, blocks, 1),
                DataRef::FromDevice(bs),
            ),
            (
                "WRITE(16) of 1 block at LBA = capacity",
                rw16(0x8a, blocks, 1),
                DataRef::ToDevice(&last),
            ),
        ];
        for (what, cdb, dir) in cases {
            let c = sim.exec(&cdb, dir)?;
            if sense_of(&c) != Some((0x5, 0x21, 0x00)) {
                return Err(format!(
                    "{what}: expected ILLEGAL REQUEST, LBA OUT OF RANGE (5/21/00), got {}",
                    answer(&c)
                ));
            }
        }
        sim.verify(blocks - 1, &last)?;
        pass(
            "LBA 0 and the last LBA read back; 2 reads and 1 write past the end got LBA OUT OF RANGE",
        )
    }

    fn check_fua_sync(&mut self) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let n = (65536 / bs).max(1);
        let (a, b) = (blocks * 3 / 8, blocks * 3 / 8 + 2 * u64::from(n));
        let (da, db) = (
            pattern(31, (n * bs) as usize),
            pattern(32, (n * bs) as usize),
        );
        let sim = self.sim()?;
        sim.write(a, &da, true)?;
        sim.write(b, &db, false)?;
        sim.good(
            "SYNCHRONIZE CACHE(10)",
            &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            DataRef::None,
        )?;
        sim.good(
            "SYNCHRONIZE CACHE(16) of the written range",
            &{
                let mut c = [0u8; 16];
                c[0] = 0x91;
                c[2..10].copy_from_slice(&b.to_be_bytes());
                c[10..14].copy_from_slice(&n.to_be_bytes());
                c
            },
            DataRef::None,
        )?;
        sim.verify(a, &da)?;
        sim.verify(b, &db)?;
        self.durable = vec![(a, da), (b, db)];
        pass(format!(
            "WRITE(16) FUA at LBA {a} and WRITE(16) + SYNCHRONIZE CACHE(10)/(16) at LBA {b} ({n} blocks each): GOOD, read back"
        ))
    }

    fn check_durability(&mut self) -> Outcome {
        if self.durable.is_empty() {
            return skip("not run: FUA/SYNCHRONIZE CACHE check did not pass");
        }
        let sim = self.sim.take().ok_or("the device is not running")?;
        sim.shut()
            .map_err(|e| format!("closing the instance: {e}"))?;
        let files = count_files(&self.dir);
        self.start()
            .map_err(|e| format!("opening a new instance on the same directory: {e}"))?;
        let durable = std::mem::take(&mut self.durable);
        let sim = self.sim()?;
        let mut lost = None;
        for (lba, data) in &durable {
            if let Err(e) = sim.verify(*lba, data) {
                lost = Some(e);
                break;
            }
        }
        self.durable = durable;
        match (lost, files) {
            (None, _) => {
                self.persistent = Some(true);
                pass(format!(
                    "closed, reopened as a new instance: FUA and synchronized data intact ({files} file(s) in its directory)"
                ))
            }
            (Some(_), 0) => {
                self.persistent = Some(false);
                skip(
                    "not persistent: the module stores nothing in its directory and data did not survive a new instance (a RAM disk?)",
                )
            }
            (Some(e), n) => Err(format!(
                "after close and reopen ({n} file(s) in its directory): {e}"
            )),
        }
    }

    fn check_unmap(&mut self) -> Outcome {
        if !self.geo.discard {
            return skip("the device does not advertise discard (LBPME clear)");
        }
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let n = (256 * 1024 / bs).max(1);
        let lba = (blocks / 4).div_ceil(u64::from(TRANSPORT_MAX_BYTES / bs))
            * u64::from(TRANSPORT_MAX_BYTES / bs);
        let lbprz = self.geo.lbprz;
        let sim = self.sim()?;
        sim.write(lba, &pattern(41, (n * bs) as usize), false)?;
        let mut param = vec![0u8; 24];
        param[0..2].copy_from_slice(&22u16.to_be_bytes());
        param[2..4].copy_from_slice(&16u16.to_be_bytes());
        param[8..16].copy_from_slice(&lba.to_be_bytes());
        param[16..20].copy_from_slice(&n.to_be_bytes());
        sim.good(
            &format!("UNMAP of {n} blocks at LBA {lba}"),
            &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
            DataRef::ToDevice(&param),
        )?;
        if !lbprz {
            return pass(format!(
                "UNMAP of {n} blocks at LBA {lba}: GOOD (LBPRZ clear: contents afterwards not checked)"
            ));
        }
        sim.verify(lba, &vec![0u8; (n * bs) as usize])
            .map_err(|e| format!("after UNMAP (LBPRZ set, zeros expected): {e}"))?;
        pass(format!(
            "UNMAP of {n} blocks at LBA {lba}: GOOD, reads zeros"
        ))
    }

    fn write_same(&mut self, lba: u64, n: u32, block: &[u8], unmap: bool) -> Result<(), String> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x93;
        if unmap {
            cdb[1] = 0x08;
        }
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&n.to_be_bytes());
        self.sim()?
            .good(
                &format!(
                    "WRITE SAME(16){} of {n} blocks at LBA {lba}",
                    if unmap { " UNMAP" } else { "" }
                ),
                &cdb,
                DataRef::ToDevice(block),
            )
            .map(drop)
    }

    fn check_write_same_zero(&mut self) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let n = (128 * 1024 / bs).max(1);
        let lba = blocks * 5 / 16 + 1;
        let zeros = vec![0u8; (n * bs) as usize];
        let block = vec![0u8; bs as usize];
        let mut variants = vec![false];
        if self.geo.discard {
            variants.push(true);
        }
        for &unmap in &variants {
            let sim = self.sim()?;
            sim.write(lba, &pattern(51, (n * bs) as usize), false)?;
            self.write_same(lba, n, &block, unmap)?;
            self.sim()?.verify(lba, &zeros).map_err(|e| {
                format!(
                    "after WRITE SAME(16){} with a zero block: {e}",
                    if unmap { " UNMAP" } else { "" }
                )
            })?;
        }
        pass(format!(
            "WRITE SAME(16) of a zero block over {n} written blocks at LBA {lba}{}: reads zeros",
            if variants.len() > 1 {
                ", without and with UNMAP"
            } else {
                ""
            }
        ))
    }

    fn check_write_same_pattern(&mut self) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let n = (128 * 1024 / bs).max(1) + 3;
        let lba = blocks * 11 / 32;
        let block = pattern(61, bs as usize);
        self.write_same(lba, n, &block, false)?;
        let want: Vec<u8> = block
            .iter()
            .copied()
            .cycle()
            .take((n * bs) as usize)
            .collect();
        self.sim()?
            .verify(lba, &want)
            .map_err(|e| format!("after WRITE SAME(16) of a patterned block: {e}"))?;
        pass(format!(
            "WRITE SAME(16) of a patterned block over {n} blocks at LBA {lba}: every block reads the pattern"
        ))
    }

    fn check_compare_and_write(&mut self) -> Outcome {
        if self.geo.max_caw == 0 {
            return skip("the device does not advertise COMPARE AND WRITE (length 0)");
        }
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let n = self.geo.max_caw.min(8);
        let lba = blocks * 7 / 16 + 5;
        let len = (n * bs) as usize;
        let (old, new, wrong, other) = (
            pattern(71, len),
            pattern(72, len),
            pattern(73, len),
            pattern(74, len),
        );
        let caw = |lba: u64, n: u32| {
            let mut c = [0u8; 16];
            c[0] = 0x89;
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[13] = n as u8;
            c
        };
        let sim = self.sim()?;
        sim.write(lba, &old, false)?;
        let matching = [old.clone(), new.clone()].concat();
        sim.good(
            &format!("COMPARE AND WRITE of {n} blocks at LBA {lba} (matching)"),
            &caw(lba, n),
            DataRef::ToDevice(&matching),
        )?;
        sim.verify(lba, &new)
            .map_err(|e| format!("after a matching COMPARE AND WRITE: {e}"))?;
        let mis = [wrong, other].concat();
        let c = sim.exec(&caw(lba, n), DataRef::ToDevice(&mis))?;
        if sense_of(&c).map(|(k, asc, _)| (k, asc)) != Some((0xe, 0x1d)) {
            return Err(format!(
                "COMPARE AND WRITE of {n} blocks at LBA {lba} (miscompare): expected MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (e/1d/00), got {}",
                answer(&c)
            ));
        }
        sim.verify(lba, &new).map_err(|e| {
            format!("after a miscompared COMPARE AND WRITE (nothing may be written): {e}")
        })?;
        pass(format!(
            "{n} blocks at LBA {lba}: matching one wrote, miscompare got MISCOMPARE and wrote nothing"
        ))
    }

    fn check_lba_status(&mut self) -> Outcome {
        let blocks = self.geo.blocks;
        let mut seen = Vec::new();
        let sim = self.sim()?;
        for lba in [0u64, blocks / 4, blocks - 1] {
            let mut cdb = [0u8; 16];
            cdb[0] = 0x9e;
            cdb[1] = 0x12;
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[10..14].copy_from_slice(&4096u32.to_be_bytes());
            let c = sim.good(
                &format!("GET LBA STATUS at LBA {lba}"),
                &cdb,
                DataRef::FromDevice(4096),
            )?;
            let d = &c.data_in;
            if d.len() < 8 {
                return Err(format!(
                    "GET LBA STATUS at LBA {lba}: {} bytes returned, at least 8 expected",
                    d.len()
                ));
            }
            let total = u32::from_be_bytes(d[0..4].try_into().unwrap_or_default()) as usize + 4;
            let avail = total.min(d.len());
            if total < 8 || !(total - 8).is_multiple_of(16) {
                return Err(format!(
                    "GET LBA STATUS at LBA {lba}: parameter data length {} is not 4 + 16 per descriptor",
                    total - 4
                ));
            }
            let mut desc = Vec::new();
            let mut expect = lba;
            for chunk in d[8..avail].chunks_exact(16) {
                let start = u64::from_be_bytes(chunk[0..8].try_into().unwrap_or_default());
                let count = u32::from_be_bytes(chunk[8..12].try_into().unwrap_or_default());
                let state = chunk[12] & 0xf;
                if start != expect || count == 0 || start + u64::from(count) > blocks {
                    return Err(format!(
                        "GET LBA STATUS at LBA {lba}: descriptor {start}+{count} does not continue at LBA {expect} within the device"
                    ));
                }
                expect = start + u64::from(count);
                desc.push(format!(
                    "{start}+{count} {}",
                    match state {
                        0 => "mapped",
                        1 => "deallocated",
                        2 => "anchored",
                        3 => "mapped/unknown",
                        _ => "reserved",
                    }
                ));
            }
            if desc.is_empty() {
                return Err(format!("GET LBA STATUS at LBA {lba}: no descriptor"));
            }
            let shown = desc.len().min(3);
            seen.push(format!(
                "LBA {lba}: {}{}",
                desc[..shown].join(", "),
                if desc.len() > shown {
                    format!(" (+{} more)", desc.len() - shown)
                } else {
                    String::new()
                }
            ));
        }
        pass(seen.join("; "))
    }

    /// Random verified I/O at depth `qd` for `secs`; with `swap`, a new
    /// instance is swapped in partway.
    fn load(&mut self, qd: usize, secs: f64, swap: bool) -> Outcome {
        let (bs, blocks) = (self.geo.bs, self.geo.blocks);
        let cb = (CHUNK / bs).max(1);
        // Chunks in the device's last half, clear of the other checks.
        let base = blocks / 2;
        let chunks = ((blocks - base - 1) / u64::from(cb)).min(2048) as usize;
        if chunks < qd {
            return skip("device too small for this queue depth");
        }
        let chunk_bytes = (cb * bs) as usize;
        let persistent = self.persistent != Some(false);
        let mut t = Tracker {
            base,
            cb,
            bs,
            gens: vec![0; chunks],
            epoch_of: vec![0; chunks],
            busy: vec![false; chunks],
            epoch: 0,
            inflight: HashMap::new(),
            verified: 0,
        };
        let mut rng = 0x2545_f491_4f6c_dd1du64 ^ qd as u64;
        let mut next_gen = 1u64;
        let (mut reads, mut writes) = (0u64, 0u64);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let swap_at = start + Duration::from_secs_f64(secs * 0.4);
        let mut swap_state: Option<std::sync::mpsc::Receiver<Result<(), String>>> = None;
        let mut swapped: Option<f64> = None;
        let mut got = Vec::new();
        let seed = |c: usize, g: u64| (c as u64) << 32 | g;
        loop {
            let now = Instant::now();
            if swap && swap_state.is_none() && swapped.is_none() && now >= swap_at {
                let region = Arc::clone(&self.sim()?.region);
                let b = self
                    .open_instance(region)
                    .map_err(|e| format!("opening the new instance: {e}"))?;
                let (tx, rx) = std::sync::mpsc::channel();
                self.sim()?
                    .control
                    .send(Control::WhenIdle(Box::new(move |h: &mut DeviceHandler| {
                        let _ = tx.send(h.swap(Box::new(b)).map_err(|e| e.to_string()));
                        None
                    })))
                    .map_err(|e| e.to_string())?;
                swap_state = Some(rx);
                // Until the swap is done, a command may run on either
                // instance: for a module that keeps nothing, what it reads
                // or writes meanwhile proves nothing.
                if !persistent {
                    t.epoch += 1;
                }
            }
            let sim = self.sim()?;
            if let Some(rx) = &swap_state
                && let Ok(r) = rx.try_recv()
            {
                r.map_err(|e| format!("hot swap refused: {e}"))?;
                // Every command the old instance ran has been published.
                got.clear();
                sim.reap(&mut got)?;
                for c in got.drain(..) {
                    t.finish(&c)?;
                }
                // A module that keeps nothing starts empty: what the old
                // instance held is no longer expected.
                if !persistent {
                    t.epoch += 1;
                }
                swapped = Some(start.elapsed().as_secs_f64());
                swap_state = None;
            }
            let mut queued = false;
            while now < end && t.inflight.len() < qd {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let mut c = (rng % chunks as u64) as usize;
                while t.busy[c] {
                    c = (c + 1) % chunks;
                }
                t.busy[c] = true;
                let lba = base + c as u64 * u64::from(cb);
                let tag = sim.next_tag();
                if rng >> 60 < 8 {
                    let g = next_gen;
                    next_gen += 1;
                    let data = pattern(seed(c, g), chunk_bytes);
                    sim.submit(tag, &rw16(0x8a, lba, cb), DataRef::ToDevice(&data))?;
                    t.inflight.insert(tag, (c, g, t.epoch));
                    writes += 1;
                } else {
                    sim.submit(tag, &rw16(0x88, lba, cb), DataRef::FromDevice(cb * bs))?;
                    t.inflight.insert(tag, (c, 0, t.epoch));
                    reads += 1;
                }
                queued = true;
            }
            if queued {
                sim.ring()?;
            }
            if t.inflight.is_empty() && swap_state.is_none() {
                break;
            }
            if now > end + COMMAND_TIMEOUT {
                return Err(format!(
                    "{} commands got no answer within {} s",
                    t.inflight.len(),
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            got.clear();
            if sim.reap(&mut got)? == 0 {
                sim.wait()?;
            }
            for c in got.drain(..) {
                t.finish(&c)?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        if reads + writes == 0 {
            // A phase that sent nothing verified nothing (`--secs 0`).
            return Err(format!(
                "QD {qd}: no command sent in {secs} s, nothing verified"
            ));
        }
        let mut detail = format!(
            "QD {qd}: {} commands in {elapsed:.1} s ({writes} writes, {reads} reads, {} verified), no errors",
            reads + writes,
            t.verified
        );
        if swap {
            let at = swapped.ok_or("the hot swap never completed")?;
            detail.push_str(&format!("; swapped at {at:.2} s"));
            // Read every chunk whose content is known back.
            let sim = self.sim()?;
            let per = (TRANSPORT_MAX_BYTES / (cb * bs)).max(1) as usize;
            let mut checked = 0;
            for first in (0..chunks).step_by(per) {
                let n = per.min(chunks - first);
                let lba = base + first as u64 * u64::from(cb);
                let data = sim.read(lba, n as u32 * cb)?;
                for c in first..first + n {
                    if t.gens[c] == 0 || t.epoch_of[c] != t.epoch {
                        continue;
                    }
                    let off = (c - first) * chunk_bytes;
                    compare(
                        &format!("READ(16) after the hot swap at LBA {lba}"),
                        lba + ((c - first) as u64 * u64::from(cb)),
                        bs,
                        &pattern(seed(c, t.gens[c]), chunk_bytes),
                        &data[off..off + chunk_bytes],
                    )?;
                    checked += 1;
                }
            }
            detail.push_str(&format!(
                "; {checked} chunks read back intact{}",
                if persistent {
                    ""
                } else {
                    " (not persistent: only data written after the swap is expected)"
                }
            ));
        }
        pass(detail)
    }
}

/// What the random-I/O phase knows about its chunks (each `cb` blocks of
/// `bs` bytes from LBA `base`) and its commands in flight.
struct Tracker {
    base: u64,
    cb: u32,
    bs: u32,
    /// Per chunk: generation of its data (0: unknown), the epoch it was
    /// written in, whether a command on it is in flight.
    gens: Vec<u64>,
    epoch_of: Vec<u32>,
    busy: Vec<bool>,
    /// See `Ctx::load`: 0 before a hot swap is asked for, 1 while it is
    /// under way, 2 after; with a module that keeps data, always 0.
    epoch: u32,
    /// tag -> (chunk, write generation or 0 for a read, epoch at submission)
    inflight: HashMap<u64, (usize, u64, u32)>,
    /// Reads whose data was checked.
    verified: u64,
}

impl Tracker {
    /// Account for one completion.
    fn finish(&mut self, c: &Completion) -> Result<(), String> {
        let Some((chunk, g, submitted)) = self.inflight.remove(&c.tag) else {
            return Ok(());
        };
        let (cb, bs, epoch) = (self.cb, self.bs, self.epoch);
        self.busy[chunk] = false;
        let lba = self.base + chunk as u64 * u64::from(cb);
        let what = if g == 0 { "READ(16)" } else { "WRITE(16)" };
        if c.status != abi::SAM_STAT_GOOD {
            return Err(format!("{what} of {cb} blocks at LBA {lba}: {}", answer(c)));
        }
        if g != 0 {
            // A write is known only if it certainly ran on the current instance.
            self.gens[chunk] = if submitted == epoch { g } else { 0 };
            self.epoch_of[chunk] = epoch;
        } else if self.gens[chunk] != 0
            && self.epoch_of[chunk] == epoch
            && submitted == epoch
            && epoch != 1
        {
            compare(
                &format!("{what} of {cb} blocks at LBA {lba}"),
                lba,
                bs,
                &pattern((chunk as u64) << 32 | self.gens[chunk], (cb * bs) as usize),
                &c.data_in,
            )?;
            self.verified += 1;
        }
        Ok(())
    }
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("wasmtap-check-{}-{nanos}", std::process::id()))
}

type Step = fn(&mut Ctx, f64) -> Outcome;

/// The checks, in the order they run.
pub const CHECKS: [&str; 17] = [
    "load",
    "open",
    "unwritten-zero",
    "read-write",
    "first-last-range",
    "fua-sync",
    "durability-reopen",
    "unmap",
    "write-same-zero",
    "write-same-pattern",
    "compare-and-write",
    "get-lba-status",
    "random-qd1",
    "random-qd8",
    "random-qd32",
    "hot-swap",
    "close",
];

/// Run the battery.
pub fn run(opts: &Options) -> Report {
    let mut report = Report {
        module: opts.name.clone(),
        size: opts.size,
        block_size: opts.block_size,
        checks: Vec::new(),
        kept: opts.keep.clone(),
    };
    let root = opts.keep.clone().unwrap_or_else(temp_dir);
    let record = |report: &mut Report, name: &'static str, t: Instant, o: Outcome| {
        let (verdict, detail) = match o {
            Ok(v) => v,
            Err(e) => (Verdict::Fail, e),
        };
        report.checks.push(Check {
            name,
            verdict,
            secs: t.elapsed().as_secs_f64(),
            detail,
        });
        verdict
    };
    let t = Instant::now();
    let setup = std::fs::create_dir_all(&root)
        .map_err(|e| format!("{}: {e}", root.display()))
        .and_then(|()| Guests::with_limits(&root, &opts.limits).map_err(|e| e.to_string()));
    let mut guests = match setup {
        Ok(g) => g,
        Err(e) => {
            record(&mut report, "load", t, Err(e));
            return report;
        }
    };
    let loaded = guests
        .load(MODULE, &opts.module)
        .map_err(|e| e.to_string())
        .map(|_| {
            format!(
                "{} bytes accepted by the runtime's load checks",
                opts.module.len()
            )
        });
    let ok = record(&mut report, "load", t, loaded.map(|d| (Verdict::Pass, d)));
    if opts.block_size != 512 && opts.block_size != 4096 {
        record(
            &mut report,
            "open",
            Instant::now(),
            Err(format!("block size {} (use 512 or 4096)", opts.block_size)),
        );
    } else if ok == Verdict::Pass {
        let mut ctx = Ctx {
            config: with_geometry(
                &wasmtap_web::host::guest_config(&opts.config),
                opts.size,
                opts.block_size,
            ),
            dir: root.join("devices").join("check"),
            opts: opts.clone(),
            guests,
            sim: None,
            geo: Geometry::default(),
            durable: Vec::new(),
            persistent: None,
        };
        let t = Instant::now();
        let o = ctx.check_open();
        let opened = ctx.sim.is_some();
        record(&mut report, "open", t, o);
        if opened {
            if ctx.geo.bs == 0 || ctx.geo.blocks < 64 {
                ctx.geo.bs = opts.block_size;
                ctx.geo.blocks = opts.size / u64::from(opts.block_size);
            }
            let secs = opts.load_secs;
            let steps: [(&'static str, Step); 14] = [
                ("unwritten-zero", |c, _| c.check_unwritten()),
                ("read-write", |c, _| c.check_read_write()),
                ("first-last-range", |c, _| c.check_edges()),
                ("fua-sync", |c, _| c.check_fua_sync()),
                ("durability-reopen", |c, _| c.check_durability()),
                ("unmap", |c, _| c.check_unmap()),
                ("write-same-zero", |c, _| c.check_write_same_zero()),
                ("write-same-pattern", |c, _| c.check_write_same_pattern()),
                ("compare-and-write", |c, _| c.check_compare_and_write()),
                ("get-lba-status", |c, _| c.check_lba_status()),
                ("random-qd1", |c, s| c.load(1, s, false)),
                ("random-qd8", |c, s| c.load(8, s, false)),
                ("random-qd32", |c, s| c.load(32, s, false)),
                ("hot-swap", |c, s| c.load(8, s.max(0.5), true)),
            ];
            for (name, step) in steps {
                let t = Instant::now();
                let o = step(&mut ctx, secs);
                record(&mut report, name, t, o);
            }
            let t = Instant::now();
            let o = match ctx.sim.take() {
                Some(sim) => sim
                    .shut()
                    .map(|()| (Verdict::Pass, "instance closed".into())),
                None => Err("the device was no longer running".into()),
            };
            record(&mut report, "close", t, o);
        }
    }
    // Whatever could not run is listed as such.
    let why = match report.checks.last() {
        Some(c) if c.name == "load" => "not run: the module did not load",
        _ => "not run: the module did not open",
    };
    for name in CHECKS {
        if !report.checks.iter().any(|c| c.name == name) {
            report.checks.push(Check {
                name,
                verdict: Verdict::Skip,
                secs: 0.0,
                detail: why.into(),
            });
        }
    }
    if opts.keep.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    report
}

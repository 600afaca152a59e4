//! The `sim` frontend: one simulated TCMU device served by the normal worker
//! (SCSI target + native RAM disk), driven by a built-in initiator.
//!
//! The initiator does what the kernel's sd driver does at attach (TEST UNIT
//! READY, INQUIRY, READ CAPACITY(16)), then random READ(16)/WRITE(16) of 4 to
//! 64 KiB at a fixed queue depth, verifying every block it reads against
//! what it last wrote there. It prints throughput every two seconds. This is
//! how wasmtap runs on a machine without LIO.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtap_kernel::sim::{self, SimKernel};
use wasmtap_ring::Ring;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{Completion, DataRef, SimConfig};

use crate::backstore::{self, BackstoreSpec, DeviceFacts, Guests};
use crate::config::ServeConfig;
use crate::device::DeviceBackend;
use crate::handler::ScsiHandler;
use crate::ramdisk::RamDisk;
use crate::worker::{self, WorkerStats};

const BLOCK: u32 = 512;

/// Run the simulator frontend until `stop` is set.
pub fn run(cfg: &ServeConfig, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let sim_cfg = SimConfig {
        caps: abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR,
        data_blocks: 4096,
        ..SimConfig::default()
    };
    let (mut kernel, user) = sim::device(sim_cfg).map_err(|e| e.to_string())?;
    let blocks = cfg.sim_size_mib * 1024 * 1024 / u64::from(BLOCK);
    let ring = Ring::attach(Arc::clone(&user.region)).map_err(|e| e.to_string())?;
    let stats = Arc::new(WorkerStats::default());
    // The worker gets its own stop flag, set only after the initiator has
    // seen every command it queued complete: a stopping worker no longer
    // drains the ring (on a real device the next attach resets it).
    let worker_stop = Arc::new(AtomicBool::new(false));
    let (wstop, wstats, batch) = (Arc::clone(&worker_stop), Arc::clone(&stats), cfg.batch);
    let bell = user.bell.clone();
    let guest = match backstore::parse(&cfg.sim_backstore).map_err(|e| e.to_string())? {
        BackstoreSpec::Native => None,
        BackstoreSpec::Guest { module, config } => {
            let config = backstore::with_geometry(&config, blocks * u64::from(BLOCK), BLOCK);
            let mut guests =
                Guests::with_limits(&cfg.data_dir, &cfg.guests).map_err(|e| e.to_string())?;
            let dir = cfg.data_dir.join("devices").join("sim-sim0");
            tracing::info!(%module, %config, "simulated device backed by a WebAssembly backstore");
            Some(
                guests
                    .open(
                        "sim0",
                        &module,
                        &config,
                        &dir,
                        Some(Arc::clone(&user.region)),
                        DeviceFacts::geometry(blocks * u64::from(BLOCK), BLOCK),
                    )
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let make = move || {
        let backend = match guest {
            None => DeviceBackend::native(RamDisk::new(BLOCK, blocks, 2048, false)),
            Some(b) => DeviceBackend::new(Ok(b), (BLOCK, blocks), Arc::default()),
        };
        ScsiHandler::new("sim/sim0", backend, None)
    };
    let serve = worker::Serve {
        ring,
        bell,
        stop: worker::stop_flag(wstop),
        stats: wstats,
        tuning: batch.into(),
        control: None,
    };
    let worker = worker::spawn("dev-sim0".into(), serve, make, |_, r| r)
        .map_err(|e| format!("spawn worker: {e}"))?;
    tracing::info!(
        size_mib = cfg.sim_size_mib,
        queue_depth = cfg.sim_queue_depth,
        "no LIO on this host: serving one simulated TCMU device (sim0) with a built-in initiator"
    );
    let load = Load {
        blocks,
        block_size: BLOCK,
        queue_depth: cfg.sim_queue_depth.max(1),
        fresh: true,
        label: "sim0".into(),
        print: true,
        mix: Mix::all(),
    };
    let result = initiator(&mut kernel, &load, stop).map(drop);
    worker_stop.store(true, Ordering::Relaxed);
    let _ = user.bell.to_user.ring();
    match worker.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("worker failed: {e}")),
        Err(_) => return Err("worker panicked".into()),
    }
    result
}

/// What the initiator expects in each block: the stamp of the last write.
fn fill(buf: &mut [u8], lba: u64, stamp: u64, bs: u32) {
    for (i, blk) in buf.chunks_mut(bs as usize).enumerate() {
        let tag = (lba + i as u64) ^ (stamp << 40);
        for (j, w) in blk.chunks_mut(8).enumerate() {
            w.copy_from_slice(&(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64).to_le_bytes());
        }
    }
}

/// A READ(16) (0x88) or WRITE(16) (0x8a) CDB for `blocks` blocks at `lba`.
pub fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// What the model says a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blk {
    /// Written by a write (or COMPARE AND WRITE) with this stamp.
    Stamp(u64),
    /// Zeros (never written on a fresh device, WRITE SAME of zeros, UNMAP
    /// with LBPRZ).
    Zero,
    /// WRITE SAME of a block filled with this byte.
    Pattern(u8),
    /// Unknown (UNMAP without LBPRZ, blocks of an old device): not checked.
    Unknown,
}

/// The kinds of command the initiator sends (`Mix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// READ(16), data checked against the model.
    Read,
    /// WRITE(16).
    Write,
    /// WRITE(16) with FUA.
    FuaWrite,
    /// SYNCHRONIZE CACHE(16) of the whole device.
    Flush,
    /// UNMAP of one range (only if the device reports LBPME).
    Unmap,
    /// WRITE SAME(16) of a zero block with UNMAP set.
    WriteSameZero,
    /// WRITE SAME(16) of a patterned block.
    WriteSame,
    /// COMPARE AND WRITE of one block: with the right data (GOOD), now and
    /// then with wrong data (MISCOMPARE expected, nothing written).
    CompareAndWrite,
    /// VERIFY(16) with BYTCHK=1 against the model.
    Verify,
}

impl Op {
    const ALL: [Op; 9] = [
        Op::Read,
        Op::Write,
        Op::FuaWrite,
        Op::Flush,
        Op::Unmap,
        Op::WriteSameZero,
        Op::WriteSame,
        Op::CompareAndWrite,
        Op::Verify,
    ];

    /// The name in mix strings and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::FuaWrite => "fua",
            Op::Flush => "flush",
            Op::Unmap => "unmap",
            Op::WriteSameZero => "zero",
            Op::WriteSame => "writesame",
            Op::CompareAndWrite => "caw",
            Op::Verify => "verify",
        }
    }

    /// Relative weight in the full mix.
    fn weight(self) -> u64 {
        match self {
            Op::Read => 35,
            Op::Write => 30,
            Op::FuaWrite => 5,
            Op::Flush => 2,
            Op::Unmap => 5,
            Op::WriteSameZero => 4,
            Op::WriteSame => 4,
            Op::CompareAndWrite => 8,
            Op::Verify => 7,
        }
    }
}

/// Which commands an exercise sends: `all` (the default), `rw` (reads and
/// writes only), or a comma-separated list of [`Op::name`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<Op>);

impl Mix {
    /// Every kind of command.
    pub fn all() -> Self {
        Mix(Op::ALL.to_vec())
    }

    /// Parse `all`, `rw` or a list such as `read,write,unmap`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" | "all" => return Ok(Self::all()),
            "rw" => return Ok(Mix(vec![Op::Read, Op::Write])),
            _ => {}
        }
        let mut ops = Vec::new();
        for name in text.split(',').map(str::trim) {
            let op = Op::ALL
                .into_iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
                    format!(
                        "unknown command {name:?} in the mix (all, rw, or some of: {})",
                        names.join(", ")
                    )
                })?;
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        Ok(Mix(ops))
    }
}

struct Pending {
    op: Op,
    lba: u64,
    blocks: u32,
    /// The model's blocks once the command completes as expected.
    after: Option<Blk>,
    /// MISCOMPARE is the expected outcome.
    miscompare: bool,
}

/// What the built-in initiator does.
#[derive(Debug, Clone)]
pub struct Load {
    /// Device size in blocks.
    pub blocks: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Commands kept in flight.
    pub queue_depth: usize,
    /// The device is new (all zeros): blocks not written in this run must
    /// read back as zeros. Otherwise only blocks written in this run are
    /// checked.
    pub fresh: bool,
    /// Name in reports.
    pub label: String,
    /// Print throughput every two seconds on stdout (else log it).
    pub print: bool,
    /// The commands to send.
    pub mix: Mix,
}

/// Error lines the initiator logs per second per device; a tenant can
/// exercise an offline device, and every command of it fails.
const ERROR_LINES_PER_SEC: u32 = 10;

/// At most `per_sec` lines a second; past that, lines are counted and one
/// line a second says how many were left out.
#[derive(Debug)]
pub(crate) struct Throttle {
    per_sec: u32,
    window: Instant,
    logged: u32,
    dropped: u64,
}

impl Throttle {
    pub(crate) fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            window: Instant::now(),
            logged: 0,
            dropped: 0,
        }
    }

    /// Whether to log the next line (`who` names the source in the
    /// summary of what was left out).
    pub(crate) fn allow(&mut self, who: &str) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            if self.dropped > 0 {
                tracing::error!(device = %who, "{} more error line(s) not logged in the last second", self.dropped);
            }
            self.window = Instant::now();
            self.logged = 0;
            self.dropped = 0;
        }
        if self.logged < self.per_sec {
            self.logged += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Run the verifying initiator against the simulated kernel `k` until
/// `stop`, then wait for everything queued. Errors if any command failed,
/// any block read back wrong, or no command completed at all.
pub fn initiator(k: &mut SimKernel, load: &Load, stop: &AtomicBool) -> Result<String, String> {
    let mut throttle = Throttle::new(ERROR_LINES_PER_SEC);
    let (dev_blocks, qd, bs) = (load.blocks, load.queue_depth, load.block_size);
    // The largest transfer is 128 blocks of 512 (64 KiB) or 16 of 4096.
    let unit = 8 * 512 / bs.min(4096);
    let unit = unit.max(1);
    // Transfers of 1..=16 units, at most half the device.
    let max_units = (dev_blocks / 2 / u64::from(unit)).clamp(0, 16);
    if max_units == 0 {
        return Err(format!(
            "device of {dev_blocks} blocks is too small to exercise"
        ));
    }
    // READ CAPACITY (16) byte 14: LBPME (80h), LBPRZ (40h).
    let mut provisioning = 0u8;
    // The sd driver's attach sequence.
    let attach: [(&[u8], u32); 3] = [
        (&[0x00, 0, 0, 0, 0, 0], 0),
        (&[0x12, 0, 0, 0, 96, 0], 96),
        (&[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], 32),
    ];
    for (cdb, len) in attach {
        let dir = if len == 0 {
            DataRef::None
        } else {
            DataRef::FromDevice(len)
        };
        let mut done = one(k, cdb, dir)?;
        // A new nexus first sees UNIT ATTENTION (POWER ON, RESET); like the
        // sd driver, note it and retry.
        if done.status == abi::SAM_STAT_CHECK_CONDITION
            && done.sense.get(2).map(|k| k & 0xf) == Some(0x6)
        {
            tracing::info!(
                asc = done.sense[12],
                ascq = done.sense[13],
                "unit attention"
            );
            done = one(k, cdb, dir)?;
        }
        if done.status != abi::SAM_STAT_GOOD {
            return Err(format!(
                "attach command {:#04x} failed: status {:#x}",
                cdb[0], done.status
            ));
        }
        if cdb[0] == 0x9e {
            provisioning = done.data_in.get(14).copied().unwrap_or(0);
        }
        if cdb[0] == 0x12 {
            let d = &done.data_in;
            tracing::info!(
                vendor = %String::from_utf8_lossy(&d[8..16]).trim(),
                product = %String::from_utf8_lossy(&d[16..32]).trim(),
                "INQUIRY"
            );
        }
    }
    let (lbpme, lbprz) = (provisioning & 0x80 != 0, provisioning & 0x40 != 0);
    // UNMAP is offered only with logical block provisioning.
    let ops: Vec<Op> = load
        .mix
        .0
        .iter()
        .copied()
        .filter(|o| *o != Op::Unmap || lbpme)
        .collect();
    if ops.is_empty() {
        return Err("the mix has no command this device offers".into());
    }
    let total_weight: u64 = ops.iter().map(|o| o.weight()).sum();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let bsz = bs as usize;
    // The model: what each block holds (absent: zero on a fresh device,
    // unknown otherwise).
    let mut model: HashMap<u64, Blk> = HashMap::new();
    let state = |model: &HashMap<u64, Blk>, lba: u64| match model.get(&lba) {
        Some(b) => *b,
        None if load.fresh => Blk::Zero,
        None => Blk::Unknown,
    };
    let expect = |blk: Blk, lba: u64, out: &mut [u8]| -> bool {
        match blk {
            Blk::Stamp(st) => fill(out, lba, st, bs),
            Blk::Zero => out.fill(0),
            Blk::Pattern(p) => out.fill(p),
            Blk::Unknown => return false,
        }
        true
    };
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut buf = vec![0u8; 2 * 64 * 1024];
    let (mut tag, mut stamp) = (0u64, 0u64);
    let (mut ios, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut per_op: HashMap<Op, u64> = HashMap::new();
    let mut miscompares = 0u64;
    let (mut last, start) = (Instant::now(), Instant::now());
    let (mut last_ios, mut last_bytes) = (0u64, 0u64);
    let mut wind_down: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        if stop.load(Ordering::Relaxed) {
            let since = *wind_down.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "{} commands did not complete within 30 s of stopping",
                    pending.len()
                ));
            }
        }
        let mut queued = false;
        while !stop.load(Ordering::Relaxed) && pending.len() < qd {
            let mut pick = next() % total_weight;
            let mut op = ops[0];
            for o in &ops {
                if pick < o.weight() {
                    op = *o;
                    break;
                }
                pick -= o.weight();
            }
            let blocks = match op {
                Op::CompareAndWrite => 1,
                Op::Flush => 0,
                _ => unit * (1 + (next() % max_units) as u32),
            };
            let lba = match op {
                Op::Flush => 0,
                _ => next() % (dev_blocks - u64::from(blocks.max(1))),
            };
            // Commands in flight at once have no order (SIMPLE task
            // attribute): never overlap a new command with one in flight, or
            // the check below could not tell which data is right.
            let overlaps = pending
                .values()
                .any(|p| lba < p.lba + u64::from(p.blocks) && p.lba < lba + u64::from(blocks));
            if overlaps {
                continue;
            }
            let n = blocks as usize * bsz;
            // COMPARE AND WRITE and VERIFY need to know what is there.
            let known = (0..u64::from(blocks)).all(|b| state(&model, lba + b) != Blk::Unknown);
            let op = match op {
                Op::CompareAndWrite | Op::Verify if !known => Op::Read,
                o => o,
            };
            tag += 1;
            let (cdb, data, after, miscompare): (Vec<u8>, DataRef<'_>, Option<Blk>, bool) = match op
            {
                Op::Read => (
                    rw16(0x88, lba, blocks).to_vec(),
                    DataRef::FromDevice(blocks * bs),
                    None,
                    false,
                ),
                Op::Write | Op::FuaWrite => {
                    stamp += 1;
                    fill(&mut buf[..n], lba, stamp, bs);
                    let mut c = rw16(0x8a, lba, blocks);
                    if op == Op::FuaWrite {
                        c[1] = 0x08;
                    }
                    (
                        c.to_vec(),
                        DataRef::ToDevice(&buf[..n]),
                        Some(Blk::Stamp(stamp)),
                        false,
                    )
                }
                Op::Flush => (rw16(0x91, 0, 0).to_vec(), DataRef::None, None, false),
                Op::Unmap => {
                    let mut p = [0u8; 24];
                    p[1] = 22;
                    p[3] = 16;
                    p[8..16].copy_from_slice(&lba.to_be_bytes());
                    p[16..20].copy_from_slice(&blocks.to_be_bytes());
                    buf[..24].copy_from_slice(&p);
                    let mut c = vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
                    c[8] = 24;
                    let after = if lbprz { Blk::Zero } else { Blk::Unknown };
                    (c, DataRef::ToDevice(&buf[..24]), Some(after), false)
                }
                Op::WriteSameZero | Op::WriteSame => {
                    let (byte, flags) = if op == Op::WriteSameZero {
                        (0u8, 0x08) // UNMAP: may deallocate, reads zeros
                    } else {
                        ((next() % 255) as u8 + 1, 0)
                    };
                    buf[..bsz].fill(byte);
                    let mut c = rw16(0x93, lba, blocks);
                    c[1] = flags;
                    let after = if byte == 0 {
                        Blk::Zero
                    } else {
                        Blk::Pattern(byte)
                    };
                    (
                        c.to_vec(),
                        DataRef::ToDevice(&buf[..bsz]),
                        Some(after),
                        false,
                    )
                }
                Op::CompareAndWrite => {
                    stamp += 1;
                    expect(state(&model, lba), lba, &mut buf[..bsz]);
                    // One in eight compares against the wrong data.
                    let wrong = next() % 8 == 0;
                    if wrong {
                        buf[bsz / 2] ^= 0x5a;
                    }
                    fill(&mut buf[bsz..2 * bsz], lba, stamp, bs);
                    let mut c = vec![0u8; 16];
                    c[0] = 0x89;
                    c[2..10].copy_from_slice(&lba.to_be_bytes());
                    c[13] = 1;
                    let after = (!wrong).then_some(Blk::Stamp(stamp));
                    (c, DataRef::ToDevice(&buf[..2 * bsz]), after, wrong)
                }
                Op::Verify => {
                    for b in 0..u64::from(blocks) {
                        let at = b as usize * bsz;
                        expect(state(&model, lba + b), lba + b, &mut buf[at..at + bsz]);
                    }
                    let mut c = rw16(0x8f, lba, blocks);
                    c[1] = 0x02; // BYTCHK 01b: compare with the data-out
                    (c.to_vec(), DataRef::ToDevice(&buf[..n]), None, false)
                }
            };
            k.model
                .submit_ref(tag, &cdb, data)
                .map_err(|e| e.to_string())?;
            pending.insert(
                tag,
                Pending {
                    op,
                    lba,
                    blocks,
                    after,
                    miscompare,
                },
            );
            queued = true;
        }
        if queued {
            k.to_user.ring().map_err(|e| e.to_string())?;
        }
        let mut done: Vec<Completion> = Vec::new();
        let n = k
            .model
            .reap_with(true, |c| done.push(c.clone()))
            .map_err(|e| e.to_string())?;
        for c in done {
            let p = pending
                .remove(&c.tag)
                .ok_or("completion for an unknown tag")?;
            ios += 1;
            *per_op.entry(p.op).or_default() += 1;
            bytes += u64::from(p.blocks * bs);
            let key = c.sense.get(2).map(|k| k & 0xf);
            if p.miscompare {
                if c.status == abi::SAM_STAT_CHECK_CONDITION && key == Some(0x0e) {
                    miscompares += 1;
                } else {
                    errors += 1;
                    if throttle.allow(&load.label) {
                        tracing::error!(device = %load.label, lba = p.lba, status = c.status, "COMPARE AND WRITE with wrong data did not report MISCOMPARE");
                    }
                }
                continue;
            }
            if c.status != abi::SAM_STAT_GOOD {
                errors += 1;
                if throttle.allow(&load.label) {
                    tracing::error!(device = %load.label, op = p.op.name(), lba = p.lba, status = c.status, sense = ?&c.sense[..18.min(c.sense.len())], "I/O failed");
                }
                // What the command left is unknown now.
                if p.after.is_some() {
                    for b in 0..u64::from(p.blocks) {
                        model.insert(p.lba + b, Blk::Unknown);
                    }
                }
                continue;
            }
            if let Some(after) = p.after {
                for b in 0..u64::from(p.blocks) {
                    model.insert(p.lba + b, after);
                }
            } else if p.op == Op::Read {
                let mut want = vec![0u8; bsz];
                for b in 0..u64::from(p.blocks) {
                    let got = &c.data_in[b as usize * bsz..(b as usize + 1) * bsz];
                    if !expect(state(&model, p.lba + b), p.lba + b, &mut want) {
                        continue;
                    }
                    if got != want.as_slice() {
                        errors += 1;
                        if throttle.allow(&load.label) {
                            tracing::error!(device = %load.label, lba = p.lba + b, "data mismatch on read-back");
                        }
                    }
                }
            }
        }
        if n == 0 && !pending.is_empty() {
            // Wait for the worker's doorbell, but wake up to notice a stop.
            let mut fds = [nix::poll::PollFd::new(
                k.to_kernel.fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if crate::worker::poll_fds(&mut fds, 100).map_err(|e| e.to_string())? > 0 {
                k.to_kernel.wait().map_err(|e| e.to_string())?;
            }
        }
        if last.elapsed() >= Duration::from_secs(2) {
            let secs = last.elapsed().as_secs_f64();
            let (iops, mbs) = (
                (ios - last_ios) as f64 / secs,
                (bytes - last_bytes) as f64 / secs / 1e6,
            );
            if load.print {
                println!(
                    "{}: {iops:>8.0} IOPS {mbs:>8.1} MB/s  total {ios} I/Os, {errors} errors",
                    load.label
                );
            } else {
                tracing::debug!(device = %load.label, iops, mbs, ios, errors, "exercise");
            }
            (last, last_ios, last_bytes) = (Instant::now(), ios, bytes);
        }
    }
    let kinds: Vec<String> = Op::ALL
        .iter()
        .filter_map(|o| per_op.get(o).map(|n| format!("{} {n}", o.name())))
        .collect();
    let summary = format!(
        "{}: stopped after {:.1} s: {ios} I/Os verified ({}; {miscompares} deliberate miscompares reported), {errors} errors",
        load.label,
        start.elapsed().as_secs_f64(),
        kinds.join(", ")
    );
    if load.print {
        println!("{summary}");
    } else {
        tracing::info!("{summary}");
    }
    if errors > 0 {
        return Err(format!("{errors} I/O errors or mismatches ({summary})"));
    }
    if ios == 0 {
        return Err(format!(
            "no I/O completed before the stop, nothing was verified ({summary})"
        ));
    }
    Ok(summary)
}

/// Submit one command and wait for it (attach sequence only).
fn one(k: &mut SimKernel, cdb: &[u8], dir: DataRef<'_>) -> Result<Completion, String> {
    k.model
        .submit_ref(u64::MAX, cdb, dir)
        .map_err(|e| e.to_string())?;
    k.to_user.ring().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut got = None;
        k.model
            .reap_with(true, |c| got = Some(c.clone()))
            .map_err(|e| e.to_string())?;
        if let Some(c) = got {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err(format!("command {:#04x} got no answer in 10 s", cdb[0]));
        }
        let mut fds = [nix::poll::PollFd::new(
            k.to_kernel.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if crate::worker::poll_fds(&mut fds, 100).map_err(|e| e.to_string())? > 0 {
            k.to_kernel.wait().map_err(|e| e.to_string())?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_names_are_the_apis() {
        let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names, wasmtap_web::host::EXERCISE_OPS);
        assert_eq!(Mix::parse("all"), Ok(Mix::all()));
        assert_eq!(Mix::parse("rw"), Ok(Mix(vec![Op::Read, Op::Write])));
        assert_eq!(
            Mix::parse("read, unmap,read"),
            Ok(Mix(vec![Op::Read, Op::Unmap]))
        );
        let e = Mix::parse("read,trim").unwrap_err();
        assert!(e.contains("\"trim\"") && e.contains("unmap"), "{e}");
    }

    #[test]
    fn the_throttle_lets_a_few_lines_a_second_through() {
        let mut t = Throttle::new(3);
        let allowed = (0..1000).filter(|_| t.allow("d")).count();
        assert_eq!((allowed, t.dropped), (3, 997));
        t.window -= Duration::from_secs(1);
        assert!(t.allow("d"), "a new second starts over");
        assert_eq!(t.dropped, 0);
    }
}

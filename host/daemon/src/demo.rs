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
use std::thread;
use std::time::{Duration, Instant};

use wasmtap_kernel::sim::{self, SimKernel};
use wasmtap_ring::Ring;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{Completion, DataRef, SimConfig};

use crate::backstore::{self, BackstoreSpec, Guests};
use crate::config::ServeConfig;
use crate::glue::ScsiHandler;
use crate::ramdisk::RamDisk;
use crate::worker::{self, Handler, WorkerStats};

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
    let guest = match backstore::parse(&cfg.sim_backstore)? {
        BackstoreSpec::Native => None,
        BackstoreSpec::Guest { module, config } => {
            let config = backstore::with_geometry(&config, blocks * u64::from(BLOCK), BLOCK);
            let mut guests = Guests::with_limits(&cfg.data_dir, &cfg.guests)?;
            let dir = cfg.data_dir.join("devices").join("sim-sim0");
            tracing::info!(%module, %config, "simulated device backed by a WebAssembly backstore");
            Some(guests.open(
                "sim0",
                &module,
                &config,
                &dir,
                Some(Arc::clone(&user.region)),
                Some((blocks * u64::from(BLOCK), BLOCK)),
            )?)
        }
    };
    let worker = thread::Builder::new()
        .name("dev-sim0".into())
        .spawn(move || {
            let mut handler: Box<dyn Handler> = match guest {
                None => Box::new(
                    ScsiHandler::new("sim/sim0", RamDisk::new(BLOCK, blocks, 2048, false), None)
                        .map_err(worker::WorkerError::Setup)?,
                ),
                Some(b) => Box::new(
                    ScsiHandler::new("sim/sim0", b, None).map_err(worker::WorkerError::Setup)?,
                ),
            };
            worker::run(ring, &bell, &mut handler, &wstop, &wstats, batch, None)
        })
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

struct Pending {
    write: bool,
    lba: u64,
    blocks: u32,
    stamp: u64,
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
/// `stop`, then wait for everything queued. Errors if any command failed or
/// any block read back wrong.
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
        if cdb[0] == 0x12 {
            let d = &done.data_in;
            tracing::info!(
                vendor = %String::from_utf8_lossy(&d[8..16]).trim(),
                product = %String::from_utf8_lossy(&d[16..32]).trim(),
                "INQUIRY"
            );
        }
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut written: HashMap<u64, u64> = HashMap::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut tag, mut stamp) = (0u64, 0u64);
    let (mut ios, mut bytes, mut errors) = (0u64, 0u64, 0u64);
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
            let blocks = unit * (1 + (next() % max_units) as u32);
            let lba = next() % (dev_blocks - u64::from(blocks));
            let write = next() % 2 == 0;
            // Commands in flight at once have no order (SIMPLE task
            // attribute): never overlap a new command with one in flight, or
            // the check below could not tell which data is right.
            let overlaps = pending
                .values()
                .any(|p| lba < p.lba + u64::from(p.blocks) && p.lba < lba + u64::from(blocks));
            if overlaps {
                continue;
            }
            tag += 1;
            let p = if write {
                stamp += 1;
                let n = (blocks * bs) as usize;
                fill(&mut buf[..n], lba, stamp, bs);
                k.model
                    .submit_ref(tag, &rw16(0x8a, lba, blocks), DataRef::ToDevice(&buf[..n]))
                    .map_err(|e| e.to_string())?;
                Pending {
                    write,
                    lba,
                    blocks,
                    stamp,
                }
            } else {
                k.model
                    .submit_ref(
                        tag,
                        &rw16(0x88, lba, blocks),
                        DataRef::FromDevice(blocks * bs),
                    )
                    .map_err(|e| e.to_string())?;
                Pending {
                    write,
                    lba,
                    blocks,
                    stamp: 0,
                }
            };
            pending.insert(tag, p);
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
            bytes += u64::from(p.blocks * bs);
            if c.status != abi::SAM_STAT_GOOD {
                errors += 1;
                if throttle.allow(&load.label) {
                    tracing::error!(device = %load.label, lba = p.lba, status = c.status, sense = ?&c.sense[..18.min(c.sense.len())], "I/O failed");
                }
                continue;
            }
            if p.write {
                for b in 0..u64::from(p.blocks) {
                    written.insert(p.lba + b, p.stamp);
                }
            } else {
                let mut expect = vec![0u8; bs as usize];
                for b in 0..u64::from(p.blocks) {
                    let got = &c.data_in
                        [(b * u64::from(bs)) as usize..((b + 1) * u64::from(bs)) as usize];
                    match written.get(&(p.lba + b)) {
                        Some(&s) => fill(&mut expect, p.lba + b, s, bs),
                        None if load.fresh => expect.fill(0),
                        None => continue,
                    }
                    if got != expect.as_slice() {
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
    let summary = format!(
        "{}: stopped after {:.1} s: {ios} I/Os verified, {errors} errors",
        load.label,
        start.elapsed().as_secs_f64()
    );
    if load.print {
        println!("{summary}");
    } else {
        tracing::info!("{summary}");
    }
    if errors > 0 {
        return Err(format!("{errors} I/O errors or mismatches ({summary})"));
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
    fn the_throttle_lets_a_few_lines_a_second_through() {
        let mut t = Throttle::new(3);
        let allowed = (0..1000).filter(|_| t.allow("d")).count();
        assert_eq!((allowed, t.dropped), (3, 997));
        t.window -= Duration::from_secs(1);
        assert!(t.allow("d"), "a new second starts over");
        assert_eq!(t.dropped, 0);
    }
}

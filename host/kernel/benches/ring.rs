//! Ring benchmark: the kernel simulator feeding the ring engine, with a
//! trivial native backend (reads answered with zeros, writes accepted).
//!
//! `cargo bench -p wasmtap-kernel --bench ring [-- --secs N]`
//!
//! Two modes, both printed:
//! * threaded: simulator and engine on separate threads, woken through
//!   eventfd doorbells, as a device worker runs against the kernel;
//! * single-thread split: both sides on one thread, timing the engine's own
//!   work (drain + complete + publish + backend) apart from the simulator's,
//!   to show what one core of engine can sustain.
//!
//! Figures are printed, never asserted: these machines are noisy.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use wasmtap_kernel::MappedRegion;
use wasmtap_kernel::sim::{self, SimKernel, SimUser};
use wasmtap_ring::sim::{DataRef, SimConfig};
use wasmtap_ring::{Command, Entry, Response, Ring, region};

#[derive(Clone, Copy)]
struct Case {
    size: u32,
    qd: usize,
    write: bool,
}

const READ16: u8 = 0x88;
const WRITE16: u8 = 0x8a;

fn cdb(write: bool) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = if write { WRITE16 } else { READ16 };
    c
}

/// The trivial backend: zeros for reads, accept writes.
fn serve(ring: &mut Ring<Arc<MappedRegion>>, cmd: Command) {
    if cmd.cdb()[0] == READ16 {
        let len = cmd.data_len();
        region::fill(ring.region(), cmd.data_iovs(), 0, len, 0).expect("fill data-in");
    }
    ring.complete(cmd, &Response::GOOD).expect("complete");
}

fn consumer(user: SimUser, stop: Arc<std::sync::atomic::AtomicBool>) -> u64 {
    use std::sync::atomic::Ordering;
    use wasmtap_kernel::Doorbell;
    let mut ring = Ring::attach(Arc::clone(&user.region)).expect("attach");
    let mut batch = Vec::with_capacity(256);
    let mut served = 0u64;
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        let d = ring.drain(&mut batch, 256).expect("drain");
        if d.entries == 0 {
            user.bell.wait().expect("wait");
            continue;
        }
        for e in batch.drain(..) {
            if let Entry::Command(c) = e {
                serve(&mut ring, c);
                served += 1;
            }
        }
        if ring.publish().expect("publish") {
            user.bell.notify().expect("notify");
        }
    }
    served
}

fn producer(k: &mut SimKernel, case: Case, secs: f64) -> (u64, Duration) {
    let data = vec![0x5au8; case.size as usize];
    let cdb = cdb(case.write);
    let dir = if case.write {
        DataRef::ToDevice(&data)
    } else {
        DataRef::FromDevice(case.size)
    };
    let mut in_flight = 0usize;
    let mut done = 0u64;
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    loop {
        let stop = start.elapsed() >= budget;
        let mut queued = false;
        while !stop && in_flight < case.qd {
            k.model
                .submit_ref(done + in_flight as u64, &cdb, dir)
                .expect("submit");
            in_flight += 1;
            queued = true;
        }
        if queued {
            k.to_user.ring().expect("ring");
        }
        if in_flight == 0 {
            break;
        }
        let n = k.model.reap_with(true, |_| {}).expect("reap");
        if n == 0 {
            k.to_kernel.wait().expect("wait");
        }
        in_flight -= n;
        done += n as u64;
    }
    (done, start.elapsed())
}

/// The kernel's default geometry (8 MiB ring, 1 GiB data area in 16 KiB
/// blocks) with out-of-order completion, as LIO offers it.
fn config() -> SimConfig {
    SimConfig {
        caps: wasmtap_ring::abi::CAP_OOOC | wasmtap_ring::abi::CAP_READ_LEN,
        ..SimConfig::default()
    }
}

fn threaded(case: Case, secs: f64) -> (f64, f64) {
    let (mut k, user) = sim::device(config()).expect("sim device");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let bell = user.bell.clone();
    let worker = thread::spawn(move || consumer(user, stop2));
    let (done, took) = producer(&mut k, case, secs);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bell.to_user.ring().expect("wake worker");
    let served = worker.join().expect("worker");
    assert_eq!(served, done, "every command served once");
    let rate = done as f64 / took.as_secs_f64();
    (rate, rate * f64::from(case.size) / 1e6)
}

/// Single-thread: returns (engine ns/cmd, simulator ns/cmd).
fn split(case: Case, secs: f64) -> (f64, f64) {
    let (mut k, user) = sim::device(config()).expect("sim device");
    let mut ring = Ring::attach(Arc::clone(&user.region)).expect("attach");
    let data = vec![0x5au8; case.size as usize];
    let cdb = cdb(case.write);
    let dir = if case.write {
        DataRef::ToDevice(&data)
    } else {
        DataRef::FromDevice(case.size)
    };
    let mut batch = Vec::with_capacity(case.qd);
    let (mut engine, mut kernel) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t0 = Instant::now();
        for i in 0..case.qd {
            k.model.submit_ref(i as u64, &cdb, dir).expect("submit");
        }
        let t1 = Instant::now();
        batch.clear();
        ring.drain(&mut batch, usize::MAX).expect("drain");
        for e in batch.drain(..) {
            if let Entry::Command(c) = e {
                serve(&mut ring, c);
            }
        }
        ring.publish().expect("publish");
        let t2 = Instant::now();
        done += k.model.reap_with(true, |_| {}).expect("reap") as u64;
        let t3 = Instant::now();
        engine += t2 - t1;
        kernel += (t1 - t0) + (t3 - t2);
    }
    let per = |d: Duration| d.as_nanos() as f64 / done as f64;
    (per(engine), per(kernel))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0f64);
    println!(
        "ring bench: kernel simulator -> ring engine -> zero/accept backend ({secs} s per case)"
    );
    println!(
        "{:<6} {:>7} {:>3} | {:>12} {:>10} | {:>11} {:>11} {:>14}",
        "op", "size", "qd", "threaded/s", "MB/s", "engine ns", "sim ns", "engine-only/s"
    );
    for &size in &[4096u32, 128 * 1024] {
        for &qd in &[1usize, 32] {
            for &write in &[false, true] {
                let case = Case { size, qd, write };
                let (rate, mbs) = threaded(case, secs);
                let (eng, kern) = split(case, secs);
                println!(
                    "{:<6} {:>6}K {:>3} | {:>12.0} {:>10.1} | {:>11.0} {:>11.0} {:>14.0}",
                    if write { "write" } else { "read" },
                    size / 1024,
                    qd,
                    rate,
                    mbs,
                    eng,
                    kern,
                    1e9 / eng
                );
            }
        }
    }
}

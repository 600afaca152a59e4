//! End to end through the kernel simulator: the simulated kernel queues SCSI
//! commands on a memfd-backed ring, the daemon's worker (ring engine + SCSI
//! target + native RAM disk) answers them on its own thread, and the
//! simulator checks status, sense and data as an initiator would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtap::config::{Frontend, ServeConfig};
use wasmtap::demo::{self, Load, Mix};
use wasmtap::device::DeviceBackend;
use wasmtap::handler::ScsiHandler;
use wasmtap::ramdisk::RamDisk;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{DataRef, SimConfig};

const BS: u32 = 512;
const BLOCKS: u64 = 8192; // 4 MiB

mod common;
use common::{Dev, rw16 as rw, triple as sense_triple};

/// A device on the native RAM disk, with a small ring and one-page data
/// blocks so commands span many iovecs.
fn rig(caps: u16) -> Dev {
    rig_tuned(caps, 64.into())
}

fn rig_tuned(caps: u16, tuning: wasmtap::worker::Tuning) -> Dev {
    let cfg = SimConfig {
        cmdr_size: 64 * 1024,
        data_blocks: 256,
        data_pages_per_blk: 1,
        page_size: 4096,
        caps,
    };
    Dev::with_tuning(cfg, BS, tuning, |_| {
        Box::new(|_| {
            let disk = DeviceBackend::native(RamDisk::new(BS, BLOCKS, 256, false));
            ScsiHandler::new("test/e2e", disk, None)
        })
    })
}

#[test]
fn inquiry_reports_identity_and_short_transfer_as_read_len() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN);
    let c = rig.exec(&[0x12, 0, 0, 0, 255, 0], DataRef::FromDevice(255));
    assert_eq!(c.status, abi::SAM_STAT_GOOD);
    assert_eq!(&c.data_in[8..16], b"WASMTAP ");
    let n = c
        .read_len
        .expect("standard INQUIRY data is shorter than 255 bytes");
    assert_eq!(c.data_in.len(), n as usize);
    assert_eq!(
        u32::from(c.data_in[4]) + 5,
        n,
        "ADDITIONAL LENGTH matches the transfer"
    );
}

#[test]
fn read_capacity_16_matches_the_device() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN);
    let c = rig.exec(
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        DataRef::FromDevice(32),
    );
    assert_eq!(c.status, abi::SAM_STAT_GOOD);
    assert_eq!(
        u64::from_be_bytes(c.data_in[0..8].try_into().unwrap()),
        BLOCKS - 1
    );
    assert_eq!(u32::from_be_bytes(c.data_in[8..12].try_into().unwrap()), BS);
    assert_eq!(c.data_in[14] & 0x80, 0x80, "LBPME: the RAM disk discards");
}

#[test]
fn written_data_reads_back_across_many_iovecs() {
    for caps in [abi::CAP_READ_LEN, abi::CAP_OOOC | abi::CAP_READ_LEN] {
        let mut rig = rig(caps);
        // 40 KiB in one-page data blocks: ten iovecs (or fewer if adjacent).
        let data: Vec<u8> = (0..40 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();
        let w = rig.exec(&rw(0x8a, 77, 80), DataRef::ToDevice(&data));
        assert_eq!(w.status, abi::SAM_STAT_GOOD);
        let r = rig.exec(&rw(0x88, 77, 80), DataRef::FromDevice(40 * 1024));
        assert_eq!(r.status, abi::SAM_STAT_GOOD);
        assert_eq!(r.data_in, data);
    }
}

#[test]
fn many_commands_in_flight_complete_once_with_their_data() {
    many_in_flight(rig(abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR));
}

/// The same with a worker that watches its ring before sleeping: commands
/// found while it spins are served like those it is woken for.
#[test]
fn a_polling_worker_serves_commands_it_finds_while_spinning() {
    let tuning = wasmtap::worker::Tuning {
        batch: 8,
        poll: std::time::Duration::from_millis(2),
    };
    let caps = abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR;
    let mut rig = rig_tuned(caps, tuning);
    // One at a time: each arrives while the worker still polls after the
    // previous one.
    for t in 0..64u64 {
        let data = vec![t as u8; 4096];
        let c = rig.exec(&rw(0x8a, t * 8, 8), DataRef::ToDevice(&data));
        assert_eq!(c.status, abi::SAM_STAT_GOOD);
        let c = rig.exec(&rw(0x88, t * 8, 8), DataRef::FromDevice(4096));
        assert_eq!(c.data_in, data);
    }
    many_in_flight(rig);
}

fn many_in_flight(mut rig: Dev) {
    for t in 0..32u64 {
        let data = vec![t as u8 + 1; 4096];
        rig.submit(t, &rw(0x8a, t * 8, 8), DataRef::ToDevice(&data));
    }
    let mut done = rig.wait(32);
    done.sort_by_key(|c| c.tag);
    assert!(
        done.iter()
            .enumerate()
            .all(|(i, c)| c.tag == i as u64 && c.status == 0)
    );
    for t in 0..32u64 {
        rig.submit(100 + t, &rw(0x88, t * 8, 8), DataRef::FromDevice(4096));
    }
    for c in rig.wait(32) {
        let t = c.tag - 100;
        assert_eq!(c.status, abi::SAM_STAT_GOOD, "read of block run {t}");
        assert_eq!(c.data_in.len(), 4096, "read of block run {t}");
        assert!(
            c.data_in.iter().all(|&b| b == t as u8 + 1),
            "read of block run {t}"
        );
    }
}

#[test]
fn errors_come_back_as_sense_through_the_ring() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN);
    let bad_op = rig.exec(&[0xc7, 0, 0, 0, 0, 0, 0, 0, 0, 0], DataRef::None);
    assert_eq!(
        sense_triple(&bad_op),
        (0x5, 0x20, 0x00),
        "INVALID COMMAND OPERATION CODE"
    );
    let past_end = rig.exec(&rw(0x88, BLOCKS - 1, 2), DataRef::FromDevice(1024));
    assert_eq!(
        sense_triple(&past_end),
        (0x5, 0x21, 0x00),
        "LBA OUT OF RANGE"
    );
    // COMPARE AND WRITE against zeros with a non-zero verify buffer.
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    let mut buf = vec![0u8; 1024];
    buf[10] = 1;
    let miscompare = rig.exec(&caw, DataRef::ToDevice(&buf));
    assert_eq!(sense_triple(&miscompare), (0xe, 0x1d, 0x00), "MISCOMPARE");
    assert_eq!(
        u32::from_be_bytes(miscompare.sense[3..7].try_into().unwrap()),
        10,
        "offset of first difference"
    );
}

#[test]
fn unmap_reads_back_zeros() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN);
    assert_eq!(
        rig.exec(&rw(0x8a, 0, 256), DataRef::ToDevice(&vec![9u8; 128 * 1024]))
            .status,
        0
    );
    let mut param = vec![0u8; 24];
    param[0..2].copy_from_slice(&22u16.to_be_bytes());
    param[2..4].copy_from_slice(&16u16.to_be_bytes());
    param[8..16].copy_from_slice(&0u64.to_be_bytes());
    param[16..20].copy_from_slice(&128u32.to_be_bytes());
    let unmap = rig.exec(
        &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
        DataRef::ToDevice(&param),
    );
    assert_eq!(
        unmap.status,
        abi::SAM_STAT_GOOD,
        "sense {:?}",
        &unmap.sense[..18.min(unmap.sense.len())]
    );
    let r = rig.exec(&rw(0x88, 0, 256), DataRef::FromDevice(128 * 1024));
    assert!(r.data_in[..64 * 1024].iter().all(|&b| b == 0));
    assert!(r.data_in[64 * 1024..].iter().all(|&b| b == 9));
}

#[test]
fn simulator_frontend_runs_verified_random_io() {
    let cfg = ServeConfig {
        frontend: Frontend::Sim,
        sim_size_mib: 16,
        sim_queue_depth: 8,
        ..ServeConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(2));
        s2.store(true, Ordering::Relaxed);
    });
    // `run` fails on any error or mismatch, and on a run that completed no
    // I/O at all (which would verify nothing).
    wasmtap::demo::run(&cfg, &stop).expect("I/O happened, without errors or mismatches");
}

/// The initiator behind `demo` and the control plane's exercise: it sends
/// reads and writes that the worker counts, and its summary reports them.
#[test]
fn the_initiator_reports_the_io_it_verified() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR);
    let load = Load {
        blocks: BLOCKS,
        block_size: BS,
        queue_depth: 8,
        fresh: true,
        label: "e2e".into(),
        print: false,
        mix: Mix::parse("rw").unwrap(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let timer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        s2.store(true, Ordering::Relaxed);
    });
    let summary = demo::initiator(&mut rig.k, &load, &stop).expect("verified I/O");
    timer.join().unwrap();
    let verified: u64 = summary
        .split_once(" I/Os verified")
        .and_then(|(head, _)| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no I/O count in {summary:?}"));
    let (reads, writes) = (
        rig.stats.reads.load(Ordering::Relaxed),
        rig.stats.writes.load(Ordering::Relaxed),
    );
    assert!(verified > 0, "{summary}");
    assert!(
        reads > 0 && writes > 0,
        "the worker served reads {reads}, writes {writes}: {summary}"
    );
}

/// A run that completes no I/O verifies nothing: an error, not a pass.
#[test]
fn an_initiator_that_completes_no_io_fails() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN);
    let load = Load {
        blocks: BLOCKS,
        block_size: BS,
        queue_depth: 8,
        fresh: true,
        label: "idle".into(),
        print: false,
        mix: Mix::all(),
    };
    let stopped = AtomicBool::new(true);
    let e = demo::initiator(&mut rig.k, &load, &stopped).unwrap_err();
    assert!(e.contains("no I/O completed"), "{e}");
    assert_eq!(rig.stats.reads.load(Ordering::Relaxed), 0);
}

#[test]
fn reconfigure_resizes_and_raises_capacity_changed_once() {
    let mut rig = rig(abi::CAP_OOOC | abi::CAP_READ_LEN);
    let size = 2 * BLOCKS * u64::from(BS);
    rig.control
        .call(
            wasmtap::worker::When::Now,
            Duration::from_secs(10),
            move |h| h.reconfigure(Some(size), None),
        )
        .unwrap()
        .unwrap();
    let rc16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let ua = rig.exec(&rc16, DataRef::FromDevice(32));
    assert_eq!(
        sense_triple(&ua),
        (0x6, 0x2a, 0x09),
        "CAPACITY DATA HAS CHANGED"
    );
    let c = rig.exec(&rc16, DataRef::FromDevice(32));
    assert_eq!(c.status, abi::SAM_STAT_GOOD, "reported once");
    assert_eq!(
        u64::from_be_bytes(c.data_in[0..8].try_into().unwrap()),
        2 * BLOCKS - 1
    );
}

//! WebAssembly backstores end to end through the kernel simulator: the same
//! conformance checks for the native RAM disk and the `ram` and `raw-file`
//! guests, and containment of hostile guests next to a healthy device.

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use wasmtap::backstore::{self, Guests};
use wasmtap::device::DeviceBackend;
use wasmtap::handler::ScsiHandler;
use wasmtap::ramdisk::RamDisk;
use wasmtap_kernel::MappedRegion;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{DataRef, SimConfig};

const BS: u32 = 512;
const SIZE: u64 = 16 << 20;
const BLOCKS: u64 = SIZE / BS as u64;

mod common;
use common::{Dev, Make, triple};

fn config() -> SimConfig {
    SimConfig {
        cmdr_size: 256 * 1024,
        data_blocks: 1024,
        data_pages_per_blk: 1,
        page_size: 4096,
        caps: abi::CAP_OOOC | abi::CAP_READ_LEN,
    }
}

fn dev(make: impl FnOnce(Arc<MappedRegion>) -> Make) -> Dev {
    Dev::new(config(), BS, make)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn data_dir(tag: &str) -> common::Scratch {
    let d = common::Scratch::new(&format!("gs-{tag}"));
    std::fs::create_dir_all(d.join("modules")).unwrap();
    // Hostile modules are not built in: install them as uploaded modules.
    for (name, path) in wasmtap_hostile_guests::ALL {
        std::fs::copy(path, d.join("modules").join(format!("{name}.wasm"))).unwrap();
    }
    d
}

fn native() -> impl FnOnce(Arc<MappedRegion>) -> Make {
    |_| {
        Box::new(|_| {
            let disk = DeviceBackend::native(RamDisk::new(BS, BLOCKS, 256, false));
            ScsiHandler::new("t/native", disk, None)
        })
    }
}

/// A guest backend, opened on the test thread (so a refusal shows here) and
/// moved to the worker.
fn guest(
    dir: &Path,
    device: &str,
    module: &str,
    config: &str,
) -> impl FnOnce(Arc<MappedRegion>) -> Make {
    let (dir, device, module) = (dir.to_path_buf(), device.to_string(), module.to_string());
    let config = backstore::with_geometry(config, SIZE, BS);
    move |region| {
        let mut g = Guests::new(&dir).unwrap();
        let b = g
            .open(
                &device,
                &module,
                &config,
                &dir.join("devices").join(&device),
                Some(region),
                backstore::DeviceFacts::geometry(SIZE, BS),
            )
            .unwrap();
        let seed = format!("t/{device}");
        Box::new(move |_| {
            let backend = DeviceBackend::new(Ok(b), (BS, SIZE / u64::from(BS)), Arc::default());
            ScsiHandler::new(&seed, backend, None)
        })
    }
}

/// The shared conformance checks every data-keeping backstore must pass.
fn conformance(d: &mut Dev) {
    let cap = d.exec(
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        DataRef::FromDevice(32),
    );
    assert_eq!(cap.status, 0, "READ CAPACITY(16)");
    assert_eq!(
        u64::from_be_bytes(cap.data_in[0..8].try_into().unwrap()),
        BLOCKS - 1
    );
    assert_eq!(
        u32::from_be_bytes(cap.data_in[8..12].try_into().unwrap()),
        BS
    );
    let discard = cap.data_in[14] & 0x80 != 0;

    // Patterns at odd offsets and sizes, including the last blocks.
    let cases = [
        (0u64, 1u32),
        (1, 3),
        (7, 17),
        (123, 128),
        (4001, 255),
        (BLOCKS - 3, 3),
    ];
    for (i, &(lba, n)) in cases.iter().enumerate() {
        let data = pattern(i as u64 + 1, (n * BS) as usize);
        assert_eq!(d.write(lba, &data).status, 0, "write {n} blocks at {lba}");
        let r = d.read(lba, n);
        assert_eq!(r.status, 0, "read {n} blocks at {lba}");
        assert!(r.data_in == data, "read-back of {n} blocks at {lba}");
    }
    // Neighbours of a write are untouched.
    let r = d.read(124 + 128, 1);
    assert_eq!((r.status, r.data_in.len()), (0, BS as usize));
    assert!(
        r.data_in.iter().all(|&b| b == 0),
        "block after a written range stays zero"
    );

    // Flush.
    assert_eq!(
        d.exec(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], DataRef::None)
            .status,
        0,
        "SYNCHRONIZE CACHE"
    );

    // Discard reads back zeros.
    if discard {
        let mut param = vec![0u8; 24];
        param[0..2].copy_from_slice(&22u16.to_be_bytes());
        param[2..4].copy_from_slice(&16u16.to_be_bytes());
        param[8..16].copy_from_slice(&123u64.to_be_bytes());
        param[16..20].copy_from_slice(&128u32.to_be_bytes());
        let u = d.exec(
            &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],
            DataRef::ToDevice(&param),
        );
        assert_eq!(
            u.status,
            0,
            "UNMAP: sense {:02x?}",
            &u.sense[..u.sense.len().min(18)]
        );
        let r = d.read(123, 128);
        assert_eq!((r.status, r.data_in.len()), (0, 128 * BS as usize));
        assert!(
            r.data_in.iter().all(|&b| b == 0),
            "unmapped range reads zeros"
        );
    }

    // Out of range: refused before it reaches the backstore.
    assert_eq!(triple(&d.read(BLOCKS - 1, 2)), (0x5, 0x21, 0x00));
    assert_eq!(triple(&d.write(BLOCKS, &[0u8; 512])), (0x5, 0x21, 0x00));
}

#[test]
fn native_ram_disk_passes_conformance() {
    conformance(&mut dev(native()));
}

#[test]
fn ram_guest_passes_conformance() {
    let dir = data_dir("ram");
    conformance(&mut dev(guest(&dir, "ram0", "ram", "")));
}

#[test]
fn raw_file_guest_passes_conformance_and_keeps_data_in_its_file() {
    let dir = data_dir("raw");
    {
        let mut d = dev(guest(&dir, "raw0", "raw-file", "file=disk.img"));
        conformance(&mut d);
        let data = pattern(99, 4096);
        assert_eq!(d.write(8, &data).status, 0);
        assert_eq!(
            d.exec(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], DataRef::None)
                .status,
            0
        );
    }
    let file = std::fs::read(dir.join("devices/raw0/disk.img")).unwrap();
    assert_eq!(file.len() as u64, SIZE);
    assert!(
        file[8 * 512..8 * 512 + 4096] == pattern(99, 4096)[..],
        "the LUN's data is in the device's file"
    );
}

#[test]
fn null_guest_reads_zeros_and_accepts_writes() {
    let dir = data_dir("null");
    let mut d = dev(guest(&dir, "null0", "null", ""));
    assert_eq!(d.write(10, &pattern(1, 2048)).status, 0);
    let r = d.read(10, 4);
    assert_eq!((r.status, r.data_in.len()), (0, 4 * BS as usize));
    assert!(r.data_in.iter().all(|&b| b == 0));
}

/// A hostile guest fails only its own device, retryably (NOT READY, BECOMING
/// READY) while it is restarted, then for good (NOT READY, MANUAL
/// INTERVENTION REQUIRED); the healthy device next to it keeps its data.
fn contained(module: &str, first_completion_stands: bool) {
    let dir = data_dir(module);
    let mut healthy = dev(guest(&dir, "good", "ram", ""));
    let mut hostile = dev(guest(&dir, "bad", module, ""));
    let good = pattern(7, 64 * 1024);
    assert_eq!(healthy.write(0, &good).status, 0);
    // Writes to a hostile guest still work: only its reads misbehave.
    assert_eq!(hostile.write(0, &[1u8; 512]).status, 0);
    let start = Instant::now();
    let mut saw_retryable = false;
    loop {
        let r = hostile.read(0, 1);
        if first_completion_stands && r.status == abi::SAM_STAT_GOOD {
            // The guest completed the read, then broke the protocol with a
            // stale handle: the answer stands, the instance is recycled.
            assert!(r.data_in.iter().all(|&b| b == 0));
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{module}: never taken offline"
            );
            continue;
        }
        assert_eq!(
            r.status,
            abi::SAM_STAT_CHECK_CONDITION,
            "{module}: a hostile read must fail"
        );
        match triple(&r) {
            (0x2, 0x04, 0x01) => saw_retryable = true,
            (0x2, 0x04, 0x03) => break,
            other => panic!("{module}: unexpected sense {other:02x?}"),
        }
        let h = healthy.read(0, 128);
        assert!(
            h.status == 0 && h.data_in == good,
            "{module}: the healthy device lost its data"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{module}: never taken offline"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        saw_retryable,
        "{module}: failures before giving up are retryable"
    );
    let h = healthy.read(0, 128);
    assert!(h.status == 0 && h.data_in == good);
}

#[test]
fn a_trapping_guest_is_contained_and_taken_offline() {
    contained("hostile-trap", false);
}

#[test]
fn a_looping_guest_is_contained_and_taken_offline() {
    contained("hostile-loop", false);
}

#[test]
fn a_guest_completing_twice_is_contained_and_taken_offline() {
    contained("hostile-double-complete", true);
}

#[test]
fn a_guest_growing_memory_is_contained_and_taken_offline() {
    contained("hostile-memory", false);
}

#[test]
fn a_guest_escaping_its_directory_gets_read_errors_and_nothing_outside() {
    let dir = data_dir("escape");
    let mut d = dev(guest(&dir, "esc", "hostile-escape", ""));
    let r = d.read(0, 1);
    assert_eq!(
        r.status,
        abi::SAM_STAT_CHECK_CONDITION,
        "the guest fails the read with access-denied"
    );
    assert!(!dir.join("devices/x").exists() && !dir.join("x").exists());
}

#[test]
fn a_guest_importing_sockets_is_refused_with_the_reason() {
    let dir = data_dir("sockets");
    let mut g = Guests::new(&dir).unwrap();
    let err = g.module("hostile-sockets").unwrap_err();
    assert!(
        matches!(err, backstore::GuestError::Refused { .. }),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("wasi:"), "{err}");
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn a_device_whose_backstore_cannot_run_answers_not_ready_instead_of_hanging() {
    let mut d = dev(|_| {
        Box::new(|_| {
            let reason = "module \"nosuch\" not found".to_string();
            let disk = DeviceBackend::new(Err(reason), (BS, BLOCKS), Arc::default());
            ScsiHandler::new("t/offline", disk, None)
        })
    });
    // The LUN can still be scanned ...
    let inq = d.exec(&[0x12, 0, 0, 0, 96, 0], DataRef::FromDevice(96));
    assert_eq!(inq.status, 0);
    assert_eq!(&inq.data_in[8..16], b"WASMTAP ");
    let cap = d.exec(
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        DataRef::FromDevice(32),
    );
    assert_eq!(cap.status, 0);
    // ... but no data moves, and the initiator is told not to retry.
    assert_eq!(triple(&d.read(0, 1)), (0x2, 0x04, 0x03));
    assert_eq!(triple(&d.write(0, &[0u8; 512])), (0x2, 0x04, 0x03));
}

/// Several writes of different sizes (a batch's small ones come with its
/// description in one buffer, larger ones are fetched in pieces) and reads
/// in one doorbell, so they reach the guest as one batch; then read back.
fn mixed_batch_round_trip(d: &mut Dev) {
    use common::rw16;
    let writes: Vec<(u64, Vec<u8>)> = [(0u64, 1u32), (10, 8), (40, 128), (300, 160), (700, 3)]
        .iter()
        .enumerate()
        .map(|(i, &(lba, n))| (lba, pattern(50 + i as u64, (n * BS) as usize)))
        .collect();
    for (i, (lba, data)) in writes.iter().enumerate() {
        let blocks = (data.len() / BS as usize) as u32;
        d.k.model
            .submit_ref(
                100 + i as u64,
                &rw16(0x8a, *lba, blocks),
                DataRef::ToDevice(data),
            )
            .unwrap();
    }
    // A read in the same batch, of a range no write touches.
    d.k.model
        .submit_ref(99, &rw16(0x88, 2000, 4), DataRef::FromDevice(4 * BS))
        .unwrap();
    d.k.to_user.ring().unwrap();
    for c in d.wait(writes.len() + 1) {
        assert_eq!(c.status, 0, "command {} of the batch", c.tag);
        if c.tag == 99 {
            assert!(c.data_in.iter().all(|&b| b == 0));
        }
    }
    for (lba, data) in &writes {
        let r = d.read(*lba, (data.len() / BS as usize) as u32);
        assert_eq!(r.status, 0);
        assert!(r.data_in == *data, "read-back at {lba}");
    }
}

#[test]
fn guests_serve_a_mixed_batch_of_writes_and_reads() {
    let dir = data_dir("mixed");
    mixed_batch_round_trip(&mut dev(guest(&dir, "mixed-ram", "ram", "")));
    mixed_batch_round_trip(&mut dev(guest(
        &dir,
        "mixed-raw",
        "raw-file",
        "file=disk.img",
    )));
}

//! The example guests (example-guests/, built by wasmtap-example-guests)
//! served through WasmBackend, with heap buffers and with a memfd region.

mod common;

use std::sync::Arc;

use common::*;
use wasmtap_kernel::MappedRegion;
use wasmtap_runtime::{LoadError, Runtime, Tenant, WasmBackend};
use wasmtap_scsi::{BlockBackend, BlockState, Blocks, BufMut, BufRef, DataBuffer, Lba};

fn open(
    rt: &Runtime,
    file: &str,
    config: &str,
    dir: Option<std::path::PathBuf>,
    region: Option<Arc<MappedRegion>>,
) -> WasmBackend {
    let m = rt.load(&std::fs::read(file).unwrap()).unwrap();
    let mut s = spec(&m, config, &Tenant::new("t", 1 << 30));
    s.dir = dir;
    s.region = region;
    rt.open(config, s).unwrap()
}

fn round_trip_region(b: &WasmBackend, region: &Arc<MappedRegion>, lba: u64, len: u64, seed: u8) {
    let mem = RegionMemory(Arc::clone(region));
    let data = pattern(seed, len as usize);
    let wext = scattered(len, 4096, 0);
    let mut w = sg(&mem, &wext);
    w.write_at(0, &data).unwrap();
    block_on(b.write(Lba(lba), BufRef::whole(&w), false)).unwrap();
    let rext = scattered(len, 8192, 2 << 20);
    let mut r = sg(&mem, &rext);
    r.zero(0, len).unwrap();
    block_on(b.read(Lba(lba), BufMut::new(&mut r, 0, len).unwrap())).unwrap();
    let mut back = vec![0; len as usize];
    r.read_at(0, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn ram_guest_serves_heap_and_region_buffers() {
    let rt = runtime();
    let region = Arc::new(MappedRegion::memfd("ex-ram", 4 << 20).unwrap());
    let b = open(
        &rt,
        wasmtap_example_guests::RAM,
        "size=16M",
        None,
        Some(Arc::clone(&region)),
    );
    assert_eq!(b.info().block_count.0, (16 << 20) / 512);
    let data = pattern(4, 3 * 512);
    write_vec(&b, 5, &data).unwrap();
    assert_serves(&b, 5, &data);
    round_trip_region(&b, &region, 1234, 96 << 10, 8);
    assert!(!b.debug().unwrap().is_empty());
}

#[test]
fn null_guest_reads_zeros() {
    let rt = runtime();
    let b = open(&rt, wasmtap_example_guests::NULL, "size=1M", None, None);
    write_vec(&b, 0, &pattern(1, 4096)).unwrap();
    assert_serves(&b, 0, &[0u8; 4096]);
}

#[test]
fn raw_file_guest_moves_data_zero_copy() {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("wasmtap-ex-raw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let region = Arc::new(MappedRegion::memfd("ex-raw", 4 << 20).unwrap());
    let b = open(
        &rt,
        wasmtap_example_guests::RAW_FILE,
        "size=8M",
        Some(dir.clone()),
        Some(Arc::clone(&region)),
    );
    round_trip_region(&b, &region, 77, 64 << 10, 3);
    block_on(b.flush()).unwrap();
    let data = pattern(6, 8192);
    write_vec(&b, 9000, &data).unwrap();
    assert_serves(&b, 9000, &data);
    assert!(
        std::fs::read_dir(&dir).unwrap().count() >= 1,
        "the image lives in the device directory"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_sockets_guest_is_refused_at_load() {
    let rt = runtime();
    let e = rt
        .load(&std::fs::read(wasmtap_hostile_guests::HOSTILE_SOCKETS).unwrap())
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::Import { name, forbidden: true } if name.starts_with("wasi:sockets/") || name.starts_with("wasi:filesystem/")),
        "{e}"
    );
}

#[test]
fn compiled_code_is_cached_on_disk_and_reused_by_a_new_runtime() {
    use std::time::Instant;
    use wasmtap_runtime::RuntimeConfig;
    let dir = std::env::temp_dir().join(format!("wasmtap-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = std::fs::read(wasmtap_example_guests::RAM).unwrap();
    let cfg = || RuntimeConfig {
        cache_dir: Some(dir.clone()),
        max_instances: 4,
        ..RuntimeConfig::default()
    };
    let t = Instant::now();
    let first = Runtime::new(cfg()).unwrap();
    first.load(&bytes).unwrap();
    let cold = t.elapsed();
    drop(first);
    let files = walk(&dir);
    assert!(!files.is_empty(), "compiling wrote the cache");
    let t = Instant::now();
    let second = Runtime::new(cfg()).unwrap();
    let m = second.load(&bytes).unwrap();
    let warm = t.elapsed();
    assert_eq!(m.hash_hex().len(), 64);
    // Figures for the log only; timing is not asserted.
    eprintln!(
        "load: cold {cold:?}, from the disk cache {warm:?}, {} cache files",
        files.len()
    );
    let _ = std::fs::remove_dir_all(&dir);

    fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

/// A waker that counts its wakes.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn large_requests_go_to_the_guest_a_few_at_a_time_and_none_is_left_behind() {
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};
    let rt = runtime();
    let b = open(&rt, wasmtap_example_guests::RAM, "size=16M", None, None);
    // Three writes of 512 KiB: more than one `queue-batch` call's worth of
    // data, so each dispatch sends one of them.
    let len = 512 << 10;
    let data: Vec<Vec<u8>> = (0..3).map(|i| pattern(20 + i, len)).collect();
    let counter = Arc::new(CountingWaker(0.into()));
    let waker = std::task::Waker::from(Arc::clone(&counter));
    let mut cx = Context::from_waker(&waker);
    let mut futs: Vec<_> = (0..3)
        .map(|i| Box::pin(b.write(Lba(i as u64 * 1024), BufRef::whole(&data[i]), false)))
        .collect();
    // A worker pass: the first poll of each only queues it.
    for f in &mut futs {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    // The next pass, in the order a worker's swap-remove produces: polling
    // the first dispatches its own request; polling the third dispatches
    // the second's, so the third is still queued and must ask to be polled
    // again, or it would wait for an unrelated wake-up.
    assert!(matches!(
        futs[0].as_mut().poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    let before = counter.0.load(Ordering::SeqCst);
    assert!(futs[2].as_mut().poll(&mut cx).is_pending());
    assert!(
        counter.0.load(Ordering::SeqCst) > before,
        "a request left in the queue asked to be polled again"
    );
    assert!(matches!(
        futs[1].as_mut().poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(
        futs[2].as_mut().poll(&mut cx),
        Poll::Ready(Ok(()))
    ));
    drop(futs);
    for (i, d) in data.iter().enumerate() {
        assert_serves(&b, i as u64 * 1024, d);
    }
}

/// The default runtime holds 256 devices at once (each with its own
/// instance; hot swaps need a second one per device for a moment), and each
/// still serves I/O.
#[test]
fn default_runtime_holds_256_devices() {
    let rt = Runtime::new(wasmtap_runtime::RuntimeConfig::default()).unwrap();
    let m = rt
        .load(&std::fs::read(wasmtap_example_guests::RAM).unwrap())
        .unwrap();
    let tenant = Tenant::with_limits(
        "t",
        wasmtap_runtime::TenantLimits {
            memory: 64 << 30,
            instances: 512,
            ..wasmtap_runtime::TenantLimits::default()
        },
    );
    let backends: Vec<WasmBackend> = (0..256)
        .map(|i| {
            rt.open("size=1M", spec(&m, "size=1M", &tenant))
                .unwrap_or_else(|e| panic!("device {i}: {e}"))
        })
        .collect();
    for (i, b) in backends.iter().enumerate() {
        let data = pattern(i as u8, 512);
        write_vec(b, 1, &data).unwrap();
        assert_serves(b, 1, &data);
    }
}

/// Block status as (first LBA, blocks, state) triples.
fn status(b: &WasmBackend, lba: u64, blocks: u64) -> Vec<(u64, u64, BlockState)> {
    block_on(b.block_status(Lba(lba), Blocks(blocks)))
        .unwrap()
        .iter()
        .map(|e| (e.lba.0, e.blocks.0, e.state))
        .collect()
}

#[test]
fn ram_guest_reports_allocated_chunks_and_holes() {
    let rt = runtime();
    let b = open(&rt, wasmtap_example_guests::RAM, "size=16M", None, None);
    // 64 KiB chunks = 128 blocks: data in chunk 2, chunk 3 written then discarded.
    write_vec(&b, 300, &pattern(1, 512)).unwrap();
    write_vec(&b, 400, &pattern(2, 512)).unwrap();
    block_on(b.discard(Lba(384), Blocks(128))).unwrap();
    assert_eq!(
        status(&b, 0, 1024),
        [
            (0, 256, BlockState::Deallocated),
            (256, 128, BlockState::Mapped),
            (384, 640, BlockState::Deallocated),
        ]
    );
}

#[test]
fn raw_file_guest_reports_the_file_systems_holes() {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("wasmtap-bs-raw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let b = open(
        &rt,
        wasmtap_example_guests::RAW_FILE,
        "size=8M",
        Some(dir.clone()),
        None,
    );
    write_vec(&b, 2048, &pattern(3, 64 << 10)).unwrap();
    let s = status(&b, 0, 16384);
    // Contiguous, covering the asked range, the written bytes mapped.
    let mut at = 0;
    for &(lba, n, _) in &s {
        assert_eq!(lba, at, "{s:?}");
        at += n;
    }
    assert_eq!(at, 16384, "{s:?}");
    let state_at = |lba: u64| s.iter().find(|e| e.0 <= lba && lba < e.0 + e.1).unwrap().2;
    assert_eq!(state_at(2048), BlockState::Mapped);
    assert_eq!(state_at(2048 + 127), BlockState::Mapped);
    // Where the file system has holes (tmpfs, ext4, xfs, btrfs), the
    // never-written start and end of a fresh sparse file are holes.
    if state_at(0) == BlockState::Deallocated {
        assert_eq!(state_at(16383), BlockState::Deallocated);
        block_on(b.discard(Lba(2048), Blocks(128))).unwrap();
        assert_eq!(status(&b, 0, 16384), [(0, 16384, BlockState::Deallocated)]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_guest_built_against_0_1_0_still_loads_serves_and_is_all_mapped() {
    // The `ram` example as built from the 0.1.0 contract: it imports the
    // 0.1.0 interfaces and exports no block-status.
    let rt = runtime();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ram-0.1.0.wasm");
    let m = rt.load(&std::fs::read(file).unwrap()).unwrap();
    assert!(
        m.imports().iter().any(|i| i.ends_with("@0.1.0")),
        "{:?}",
        m.imports()
    );
    let b = open(&rt, file, "size=16M", None, None);
    let data = pattern(9, 8192);
    write_vec(&b, 77, &data).unwrap();
    assert_serves(&b, 77, &data);
    assert_eq!(status(&b, 0, 4096), [(0, 4096, BlockState::Mapped)]);
}

#[test]
fn a_backstore_whose_geometry_disagrees_with_the_device_is_refused_with_both() {
    let rt = runtime();
    let m = rt
        .load(&std::fs::read(wasmtap_example_guests::RAM).unwrap())
        .unwrap();
    // The operator's configuration sets its own size; the device is 2 MiB.
    let mut s = spec(&m, "size=1M", &Tenant::new("t", 1 << 30));
    s.device_geometry = Some((2 << 20, 512));
    let e = rt.open("geo", s).unwrap_err().to_string();
    assert!(
        e.contains("1048576 bytes in 512-byte sectors")
            && e.contains("2097152 bytes in 512-byte sectors"),
        "{e}"
    );
    // Agreeing geometry opens.
    let mut s = spec(&m, "size=2M", &Tenant::new("t", 1 << 30));
    s.device_geometry = Some((2 << 20, 512));
    rt.open("geo", s).unwrap();
}

#[test]
fn a_refusal_names_the_error_code_and_what_the_guest_logged() {
    let rt = runtime();
    let m = rt
        .load(&std::fs::read(wasmtap_example_guests::RAM).unwrap())
        .unwrap();
    let log = wasmtap_runtime::GuestLog::new("refuse", 100);
    let mut s = spec(&m, "size=1M,bogus=1", &Tenant::new("t", 1 << 30));
    s.log = Some(log.clone());
    let e = rt.open("refuse", s).unwrap_err().to_string();
    assert!(e.contains("invalid-config"), "{e}");
    assert!(e.contains("bogus"), "the guest's own reason: {e}");
    // And the line stays in the device's log.
    assert!(
        log.lines().iter().any(|l| l.message.contains("bogus")),
        "{:?}",
        log.lines()
    );
}

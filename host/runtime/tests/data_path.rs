//! Data moves correctly through heap buffers and through the TCMU region's
//! extents, by request data calls and by zero-copy file I/O.

mod common;

use std::sync::Arc;

use common::*;
use wasmtap_kernel::MappedRegion;
use wasmtap_runtime::{Tenant, WasmBackend};
use wasmtap_scsi::{BlockBackend, Blocks, BufMut, BufRef, Lba};

const REGION: usize = 4 << 20;

fn open(
    mode: &str,
    dir: Option<std::path::PathBuf>,
    region: Option<Arc<MappedRegion>>,
) -> WasmBackend {
    let rt = runtime();
    let m = rt.load(hostile_bytes()).unwrap();
    let mut s = spec(&m, &format!("mode={mode}"), &Tenant::new("t", 1 << 30));
    s.dir = dir;
    s.region = region;
    rt.open(mode, s).unwrap()
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wasmtap-dp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write then read back at odd offsets and sizes through region extents.
fn region_round_trip(b: &WasmBackend, region: &Arc<MappedRegion>) {
    let mem = RegionMemory(Arc::clone(region));
    for (lba, len, seed) in [
        (0u64, 512u64, 1u8),
        (3, 4096 + 1536, 2),
        (1001, 64 << 10, 3),
    ] {
        let data = pattern(seed, len as usize);
        let wext = scattered(len, 1536, 0);
        let mut wbuf = sg(&mem, &wext);
        wasmtap_scsi::DataBuffer::write_at(&mut wbuf, 0, &data).unwrap();
        block_on(b.write(Lba(lba), BufRef::whole(&wbuf), false)).unwrap();

        let rext = scattered(len, 2560, 2 << 20);
        let mut rbuf = sg(&mem, &rext);
        wasmtap_scsi::DataBuffer::zero(&mut rbuf, 0, len).unwrap();
        block_on(b.read(Lba(lba), BufMut::new(&mut rbuf, 0, len).unwrap())).unwrap();
        let mut back = vec![0u8; len as usize];
        wasmtap_scsi::DataBuffer::read_at(&rbuf, 0, &mut back).unwrap();
        assert_eq!(back, data, "lba {lba} len {len}");
        // The heap path sees the same bytes.
        assert_serves(b, lba, &data);
    }
}

#[test]
fn request_data_calls_work_through_heap_buffers() {
    let b = open("ram", None, None);
    let data = pattern(9, 12 << 10);
    write_vec(&b, 77, &data).unwrap();
    assert_serves(&b, 77, &data);
    block_on(b.write_zeroes(Lba(78), Blocks(2), false)).unwrap();
    let mut expect = data.clone();
    expect[512..1536].fill(0);
    assert_serves(&b, 77, &expect);
}

#[test]
fn request_data_calls_work_through_region_extents() {
    let region = Arc::new(MappedRegion::memfd("rt-ram", REGION).unwrap());
    let b = open("ram", None, Some(Arc::clone(&region)));
    region_round_trip(&b, &region);
}

#[test]
fn zero_copy_file_io_works_through_region_extents() {
    let dir = tempdir("file-region");
    let region = Arc::new(MappedRegion::memfd("rt-file", REGION).unwrap());
    let b = open("file", Some(dir.clone()), Some(Arc::clone(&region)));
    region_round_trip(&b, &region);
    block_on(b.flush()).unwrap();
    // The bytes really are in the device's file.
    let img = std::fs::read(dir.join("disk.img")).unwrap();
    assert_eq!(&img[1001 * 512..1001 * 512 + 4096], &pattern(3, 4096)[..]);
    block_on(b.discard(Lba(1001), Blocks(8))).unwrap();
    assert_serves(&b, 1001, &[0u8; 4096]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn zero_copy_file_io_works_through_heap_buffers() {
    let dir = tempdir("file-heap");
    let b = open("file", Some(dir.clone()), None);
    let data = pattern(5, 40 << 10);
    write_vec(&b, 9, &data).unwrap();
    assert_serves(&b, 9, &data);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_file_backstore_without_a_directory_is_refused_at_open() {
    let rt = runtime();
    let m = rt.load(hostile_bytes()).unwrap();
    let e = rt
        .open("nodir", spec(&m, "mode=file", &Tenant::new("t", 1 << 30)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            wasmtap_runtime::OpenError::Refused {
                code: wasmtap_runtime::bindings::types::ErrorCode::AccessDenied,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("access-denied"), "{e}");
}

/// Poll `futs` in passes, as a device worker does, until all are ready: the
/// first pass queues every request, the next hands them to the guest in one
/// `queue-batch` call.
fn run_together<F: std::future::Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while out.iter().any(Option::is_none) {
        assert!(
            std::time::Instant::now() < deadline,
            "requests did not finish"
        );
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none()
                && let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(&mut cx)
            {
                *o = Some(v);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    out.into_iter().map(Option::unwrap).collect()
}

#[test]
fn a_batch_of_transfers_gets_one_result_per_transfer_in_order() {
    let dir = tempdir("batch-file");
    let b = open("batch-file", Some(dir.clone()), None);
    // The guest gives the request at byte 3584 (LBA 7) a transfer past its
    // end: that one fails, its neighbours in the batch do not.
    let writes = [
        (0u64, pattern(1, 2048)),
        (7, pattern(2, 512)),
        (16, pattern(3, 4096)),
    ];
    let futs: Vec<_> = writes
        .iter()
        .map(|(lba, d)| Box::pin(b.write(Lba(*lba), BufRef::whole(d), false)))
        .collect();
    let results = run_together(futs);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert_eq!(
        results[1].as_ref().unwrap_err().kind,
        wasmtap_scsi::BackendErrorKind::OutOfRange
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert_serves(&b, 0, &writes[0].1);
    assert_serves(&b, 16, &writes[2].1);
    let img = std::fs::read(dir.join("disk.img")).unwrap();
    assert_eq!(&img[16 * 512..16 * 512 + 4096], &writes[2].1[..]);
    assert!(
        img[7 * 512..8 * 512].iter().all(|&x| x == 0),
        "the failed write stored nothing"
    );
    let _ = std::fs::remove_dir_all(dir);
}

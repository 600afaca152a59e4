//! The raw-file backstore on the SDK's in-process host: the whole guest
//! (open, zero-copy transfers, batches, flush, discard, block status,
//! close), natively under `cargo test`, no daemon.

use wasmtap_guest_raw_file::RawFile;
use wasmtap_guest_sdk::testing::{Host, Req};
use wasmtap_guest_sdk::{BlockState, ErrorCode, OpenFlags};

const MIB: u64 = 1 << 20;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn creates_its_file_and_reads_back_what_was_written() {
    let host = Host::new();
    let mut disk = host.open::<RawFile>("size=1M").unwrap();
    assert_eq!(disk.info().size, MIB);
    assert!(disk.info().discard);
    assert_eq!(host.files(), vec!["disk.img".to_owned()]);

    assert_eq!(disk.read(0, 8192).unwrap(), vec![0; 8192]);
    let data = pattern(1, 12 * 1024);
    disk.write(4096, &data).unwrap();
    assert_eq!(disk.read(4096, data.len() as u64).unwrap(), data);
    // The bytes are the file's, where the disk says they are.
    assert_eq!(
        &host.file("disk.img").unwrap()[4096..4096 + data.len()],
        data
    );
    disk.close().unwrap();
}

#[test]
fn a_batch_moves_reads_and_writes_in_order() {
    let host = Host::new();
    let mut disk = host.open::<RawFile>("size=1M,sector=4096").unwrap();
    let a = pattern(2, 4096);
    let b = pattern(3, 64 * 1024);
    let tickets = disk.submit_batch([
        Req::write(0, a.clone()),
        Req::write(MIB - 64 * 1024, b.clone()),
        Req::flush(),
        Req::read(0, 4096),
        Req::read(MIB - 64 * 1024, 64 * 1024),
    ]);
    for t in &tickets {
        assert_eq!(t.status(), Some(Ok(())), "{t:?}");
    }
    assert_eq!(tickets[3].data(), a);
    assert_eq!(tickets[4].data(), b);
    assert_eq!(disk.stats().writes, 2);
    assert_eq!(disk.stats().reads, 2);
    assert_eq!(disk.stats().flushes, 1);
}

#[test]
fn fua_and_flushed_writes_survive_a_crash_and_others_need_not() {
    let host = Host::new();
    let mut disk = host.open::<RawFile>("size=1M").unwrap();
    disk.flush().unwrap(); // the file's size is durable from here
    disk.write_fua(0, &pattern(4, 4096)).unwrap();
    disk.write(8192, &pattern(5, 4096)).unwrap();
    disk.flush().unwrap();
    disk.write(16384, &pattern(6, 4096)).unwrap(); // never synced

    let mut disk = disk.crash().unwrap();
    assert_eq!(disk.read(0, 4096).unwrap(), pattern(4, 4096));
    assert_eq!(disk.read(8192, 4096).unwrap(), pattern(5, 4096));
    assert_eq!(disk.read(16384, 4096).unwrap(), vec![0; 4096]);
}

#[test]
fn close_syncs_so_a_reopen_sees_everything() {
    let host = Host::new();
    let mut disk = host.open::<RawFile>("size=1M").unwrap();
    disk.write(512, &pattern(7, 1024)).unwrap();
    let mut disk = disk.reopen().unwrap();
    assert_eq!(disk.read(512, 1024).unwrap(), pattern(7, 1024));
    host.crash();
    assert_eq!(disk.read(512, 1024).unwrap(), pattern(7, 1024));
}

#[test]
fn discard_and_write_zeroes_read_zero_and_leave_holes() {
    let host = Host::new();
    let mut disk = host.open::<RawFile>("size=1M").unwrap();
    disk.write(0, &pattern(8, 256 * 1024)).unwrap();
    disk.discard(64 * 1024, 64 * 1024).unwrap();
    disk.write_zeroes(192 * 1024, 4096).unwrap();
    let back = disk.read(0, 256 * 1024).unwrap();
    let mut want = pattern(8, 256 * 1024);
    want[64 * 1024..128 * 1024].fill(0);
    want[192 * 1024..196 * 1024].fill(0);
    assert_eq!(back, want);

    let extents = disk.block_status(0, MIB).unwrap();
    let states: Vec<_> = extents
        .iter()
        .map(|e| (e.offset / 1024, e.length / 1024, e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (0, 64, BlockState::Mapped),
            (64, 64, BlockState::Hole),
            (128, 64, BlockState::Mapped),
            (192, 4, BlockState::Hole),
            (196, 60, BlockState::Mapped),
            (256, 768, BlockState::Hole),
        ]
    );
}

#[test]
fn an_existing_image_opens_at_its_own_size_and_read_only_refuses_writes() {
    let host = Host::new();
    let image = pattern(9, 64 * 1024);
    host.put_file("images/base.img", &image).unwrap();
    let mut disk = host
        .open_with::<RawFile>("file=images/base.img", OpenFlags::READ_ONLY)
        .unwrap();
    assert_eq!(disk.info().size, image.len() as u64);
    assert!(disk.info().read_only);
    assert_eq!(disk.read(0, image.len() as u64).unwrap(), image);
    assert_eq!(disk.write(0, &[0; 512]), Err(ErrorCode::ReadOnly));
    assert_eq!(disk.discard(0, 512), Err(ErrorCode::ReadOnly));
    assert_eq!(host.file("images/base.img").unwrap(), image);
}

#[test]
fn a_missing_file_is_refused_with_its_reason_in_the_log() {
    let host = Host::new();
    let err = host.open::<RawFile>("file=other.img").unwrap_err();
    assert_eq!(err, ErrorCode::NotFound);
    let logs = host.take_logs();
    assert!(
        logs.iter().any(|(_, line)| line.contains("other.img")),
        "{logs:?}"
    );
    assert_eq!(
        host.open::<RawFile>("file=../escape.img,size=1M")
            .unwrap_err(),
        ErrorCode::AccessDenied
    );
}

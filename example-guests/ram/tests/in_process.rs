//! The ram backstore on the SDK's in-process host: requests one by one and
//! in batches (with their data prefetched), discard, write-zeroes, block
//! status and the device-page counters, natively under `cargo test`.

use wasmtap_guest_ram::{CHUNK, Ram};
use wasmtap_guest_sdk::testing::{Host, Req, UNFILLED};
use wasmtap_guest_sdk::{BlockState, ErrorCode};

fn pattern(seed: u8, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn unwritten_blocks_read_zero_and_writes_read_back() {
    let host = Host::new();
    let mut disk = host.open::<Ram>("size=1M").unwrap();
    let zeros = disk.read(0, 2 * CHUNK).unwrap();
    assert!(zeros.iter().all(|&b| b == 0), "a fresh disk reads zeros");
    assert!(!zeros.contains(&UNFILLED));

    // Across a chunk boundary, unaligned to it.
    let data = pattern(1, CHUNK);
    disk.write(CHUNK / 2, &data).unwrap();
    assert_eq!(disk.read(CHUNK / 2, CHUNK).unwrap(), data);
    assert!(disk.debug().contains("2 of 16 chunks"), "{}", disk.debug());
}

#[test]
fn a_batch_with_prefetched_write_data_keeps_request_order() {
    let host = Host::new();
    let mut disk = host.open::<Ram>("size=1M,sector=4096").unwrap();
    let tickets = disk.submit_batch([
        Req::write(0, pattern(2, 4096)),
        Req::write(0, pattern(3, 8192)),
        Req::read(0, 8192),
        // Longer than the SDK's prefetch limit: fetched in pieces.
        Req::write(CHUNK * 2, pattern(4, 3 * CHUNK)),
        Req::read(CHUNK * 2, 3 * CHUNK),
    ]);
    assert!(tickets.iter().all(|t| t.status() == Some(Ok(()))));
    assert_eq!(tickets[2].data(), pattern(3, 8192));
    assert_eq!(tickets[4].data(), pattern(4, 3 * CHUNK));
    let stats = disk.stats();
    assert_eq!((stats.writes, stats.reads), (3, 2));
    assert_eq!(stats.bytes_written, 4096 + 8192 + 3 * CHUNK);
}

#[test]
fn discard_frees_chunks_and_block_status_reports_holes() {
    let host = Host::new();
    let mut disk = host.open::<Ram>("size=1M").unwrap();
    disk.write(0, &pattern(5, 4 * CHUNK)).unwrap();
    disk.discard(CHUNK, CHUNK).unwrap();
    disk.write_zeroes(2 * CHUNK + 512, 1024).unwrap();
    let back = disk.read(0, 4 * CHUNK).unwrap();
    let mut want = pattern(5, 4 * CHUNK);
    want[CHUNK as usize..2 * CHUNK as usize].fill(0);
    want[(2 * CHUNK + 512) as usize..(2 * CHUNK + 1536) as usize].fill(0);
    assert_eq!(back, want);

    let holes: Vec<_> = disk
        .block_status(0, 4 * CHUNK)
        .unwrap()
        .into_iter()
        .map(|e| (e.offset / CHUNK, e.length / CHUNK, e.state))
        .collect();
    assert_eq!(
        holes,
        vec![
            (0, 1, BlockState::Mapped),
            (1, 1, BlockState::Hole),
            (2, 2, BlockState::Mapped),
        ]
    );
    assert_eq!(disk.stats().discards, 2);
}

#[test]
fn requests_outside_the_disk_never_reach_it() {
    let host = Host::new();
    let mut disk = host.open::<Ram>("size=64K").unwrap();
    assert_eq!(disk.read(64 * 1024, 512), Err(ErrorCode::OutOfRange));
    assert_eq!(
        disk.write(63 * 1024, &[1; 2048]),
        Err(ErrorCode::OutOfRange)
    );
    assert_eq!(disk.stats().errors, 0, "refused by the host, not the disk");
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let host = Host::new();
    assert_eq!(
        host.open::<Ram>("size=2T").unwrap_err(),
        ErrorCode::InvalidConfig
    );
    assert_eq!(
        host.open::<Ram>("size=1M,colour=blue").unwrap_err(),
        ErrorCode::InvalidConfig
    );
    let logs = host.logs();
    assert!(
        logs.iter().any(|(_, l)| l.contains("larger than")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|(_, l)| l.contains("colour")), "{logs:?}");
}

#[test]
fn contents_are_memory_only() {
    let host = Host::new();
    let mut disk = host.open::<Ram>("size=1M").unwrap();
    disk.write(0, &pattern(6, 4096)).unwrap();
    let mut disk = disk.reopen().unwrap();
    assert_eq!(disk.read(0, 4096).unwrap(), vec![0; 4096]);
    assert!(host.files().is_empty());
}

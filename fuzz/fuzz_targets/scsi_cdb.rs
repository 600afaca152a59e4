//! Arbitrary CDBs and data-out against the SCSI target: parsing and
//! emulation must never panic, and every completion must be well formed.
//!
//! Input layout (see host/scsi/examples/scsi_fuzz_seeds.rs, which writes seeds):
//! byte 0 picks the device (bit 0: discard support, bit 1: read-only,
//! bit 2: 4096-byte blocks, bit 3: write-through), then up to 16 commands,
//! each `cdb_len (1 byte, mod 33) | cdb | buf_len (2 bytes BE, mod 16385) |
//! up to buf_len bytes of data-out` (missing bytes are zero).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmtap_scsi::testing::{MemBackend, block_on};
use wasmtap_scsi::{
    BlockBackend, Blocks, DataBuffer, DeviceIdentity, DiscardInfo, DiskInfo, Lba, Nexus, Status,
    Target, WriteCache,
};

const BLOCKS: u64 = 64;

fuzz_target!(|input: &[u8]| {
    let Some((&dev, mut rest)) = input.split_first() else {
        return;
    };
    let bs = if dev & 4 != 0 { 4096 } else { 512 };
    let mut info = DiskInfo::simple(bs, BLOCKS);
    info.max_transfer = Blocks(32);
    if dev & 1 != 0 {
        info.discard = Some(DiscardInfo {
            granularity: Blocks(1),
            alignment: Lba(0),
            max_blocks: 64,
            max_descriptors: 4,
            zeroes: true,
        });
    }
    info.read_only = dev & 2 != 0;
    if dev & 8 != 0 {
        info.write_cache = WriteCache::WriteThrough;
    }
    let target = Target::new(MemBackend::new(info), DeviceIdentity::new("fuzz").unwrap()).unwrap();
    let before = target.backend().contents();

    for _ in 0..16 {
        let Some((&cl, r)) = rest.split_first() else {
            break;
        };
        let cl = usize::from(cl % 33).min(r.len());
        let (cdb, r) = r.split_at(cl);
        let (lenb, r) = r.split_at(r.len().min(2));
        let mut l = [0u8; 2];
        l[..lenb.len()].copy_from_slice(lenb);
        let buf_len = usize::from(u16::from_be_bytes(l)) % 16385;
        let take = buf_len.min(r.len());
        let mut buf = r[..take].to_vec();
        buf.resize(buf_len, 0);
        rest = &r[take..];

        let c = block_on(target.execute(Nexus(u64::from(dev >> 4)), cdb, &mut buf));
        assert!(c.data_in_len <= DataBuffer::len(&buf));
        match c.status {
            Status::Good => assert!(c.sense().is_empty()),
            Status::ConditionMet => {
                // PRE-FETCH only: no sense, no data-in.
                assert!(c.sense().is_empty());
                assert_eq!(c.data_in_len, 0);
            }
            Status::CheckCondition => {
                assert_eq!(c.sense().len(), 18);
                assert_eq!(c.sense()[0] & 0x7F, 0x70);
                assert_eq!(c.data_in_len, 0);
            }
            s => panic!("unexpected status {s:?}"),
        }
    }
    if info.read_only {
        assert_eq!(
            target.backend().contents(),
            before,
            "read-only disk changed"
        );
    }
    assert_eq!(target.backend().info().block_count, Blocks(BLOCKS));
});

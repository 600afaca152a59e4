//! The transport's limit on one command (`Target::limit_transfer`): what a
//! LUN advertises in the Block Limits page is what it enforces, whatever
//! its backend would accept.

use crate::backend::BlockBackend;
use crate::sense::Status;
use crate::target::{Completion, Nexus, Target};
use crate::testing::{MemBackend, block_on};
use crate::units::Blocks;

fn target(backend_max: u64, transport_max: u64) -> Target<MemBackend> {
    let b = MemBackend::with_discard(4096);
    let mut info = b.info();
    info.max_transfer = Blocks(backend_max);
    b.set_info(info);
    let t = Target::new(b, crate::identity::DeviceIdentity::new("SN-LIMIT").unwrap())
        .unwrap()
        .limit_transfer(Blocks(transport_max));
    // Consume the power-on attention.
    block_on(t.execute(Nexus(0), &[0; 6], &mut Vec::new()));
    t
}

fn run(t: &Target<MemBackend>, cdb: &[u8], buf: &mut Vec<u8>) -> Completion {
    block_on(t.execute(Nexus(0), cdb, buf))
}

fn block_limits(t: &Target<MemBackend>) -> Vec<u8> {
    let mut buf = vec![0; 64];
    let c = run(t, &[0x12, 0x01, 0xB0, 0, 64, 0], &mut buf);
    assert_eq!(c.status, Status::Good);
    buf
}

fn read10(blocks: u16) -> [u8; 10] {
    let mut c = [0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn invalid_length_field(c: &Completion, byte: u8) {
    assert_eq!(c.status, Status::CheckCondition);
    let s = c.sense();
    assert_eq!((s[2] & 0x0F, s[12], s[13]), (0x05, 0x24, 0x00));
    assert_eq!(&s[15..18], &[0xC0, 0, byte]);
}

#[test]
fn the_smaller_of_backend_and_transport_is_advertised_and_enforced() {
    // A backend that takes 2048 blocks behind a kernel limit of 128 (LIO's
    // default hw_max_sectors), and the other way round.
    for (backend, transport, want) in [(2048, 128, 128u16), (64, 128, 64)] {
        let t = target(backend, transport);
        let p = block_limits(&t);
        assert_eq!(
            &p[8..12],
            &u32::from(want).to_be_bytes(),
            "MAXIMUM TRANSFER LENGTH"
        );
        assert_eq!(
            p[5],
            want.min(255) as u8,
            "MAXIMUM COMPARE AND WRITE LENGTH"
        );
        let mut buf = vec![0; 512 * (usize::from(want) + 1)];
        assert_eq!(run(&t, &read10(want), &mut buf).status, Status::Good);
        invalid_length_field(&run(&t, &read10(want + 1), &mut buf), 7);
        // WRITE and VERIFY the same.
        let mut w = read10(want + 1);
        w[0] = 0x2A;
        invalid_length_field(&run(&t, &w, &mut buf), 7);
        // VERIFY with BYTCHK=01b transfers the blocks to compare.
        w[0] = 0x2F;
        w[1] = 0x02;
        invalid_length_field(&run(&t, &w, &mut buf), 7);
        assert_eq!(t.backend().stats().writes, 0);
    }
}

#[test]
fn compare_and_write_above_the_limit_is_refused() {
    let t = target(2048, 128);
    // SBC-3 5.2: NUMBER OF LOGICAL BLOCKS above MAXIMUM COMPARE AND WRITE
    // LENGTH is an invalid field (byte 13).
    let mut cdb = [0u8; 16];
    cdb[0] = 0x89;
    cdb[13] = 129;
    let mut buf = vec![0; 2 * 129 * 512];
    invalid_length_field(&run(&t, &cdb, &mut buf), 13);
    cdb[13] = 128;
    let mut buf = vec![0; 2 * 128 * 512];
    assert_eq!(run(&t, &cdb, &mut buf).status, Status::Good);
}

#[test]
fn the_limit_survives_a_geometry_refresh() {
    let t = target(2048, 128);
    let mut info = t.backend().info();
    info.block_count = Blocks(8192);
    t.backend().set_info(info);
    assert!(t.refresh_info().unwrap());
    assert_eq!(t.info().max_transfer, Blocks(128));
}

//! Per-command tests. Expected bytes are written out from the field tables
//! of SPC-4 / SBC-3 (cited per test), not computed by the code under test.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Waker};

use crate::backend::{
    BackendError, BackendErrorKind, BlockBackend, BlockExtent, BlockState, DiscardInfo, DiskInfo,
    WriteCache,
};
use crate::buffer::{BufferError, DataBuffer, Extent, Memory, SgBuffer};
use crate::identity::DeviceIdentity;
use crate::sense::Status;
use crate::target::{Completion, Nexus, SanitizeBusy, SanitizeState, Target};
use crate::testing::{MemBackend, block_on, join_all};
use crate::units::{Blocks, Lba};

const N0: Nexus = Nexus(0);

fn id() -> DeviceIdentity {
    DeviceIdentity::with_strings("WASMTAP", "unit test disk", "0.1", "SN-0001").unwrap()
}

/// A 2048-block, 512-byte, discard-capable target whose power-on unit
/// attention on nexus 0 has been consumed.
fn target() -> Target<MemBackend> {
    target_with(MemBackend::with_discard(2048))
}

fn target_with(b: MemBackend) -> Target<MemBackend> {
    let t = Target::new(b, id()).unwrap();
    let c = run(&t, &[0; 6], &mut Vec::new());
    assert_eq!(triple(&c), (0x06, 0x29, 0x00));
    t
}

fn run<B: BlockBackend>(t: &Target<B>, cdb: &[u8], buf: &mut Vec<u8>) -> Completion {
    block_on(t.execute(N0, cdb, buf))
}

fn triple(c: &Completion) -> (u8, u8, u8) {
    assert_eq!(c.status, Status::CheckCondition, "expected CHECK CONDITION");
    let s = c.sense();
    assert_eq!(s[0] & 0x7F, 0x70, "fixed format");
    (s[2] & 0x0F, s[12], s[13])
}

/// The sense-key-specific bytes 15..18 of fixed sense.
fn sks(c: &Completion) -> [u8; 3] {
    c.sense()[15..18].try_into().unwrap()
}

fn good(c: &Completion) {
    assert_eq!(
        c.status,
        Status::Good,
        "expected GOOD, sense {:02x?}",
        c.sense()
    );
}

fn cdb10(op: u8, b1: u8, lba: u32, len: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[1] = b1;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&len.to_be_bytes());
    c
}

fn cdb16(op: u8, b1: u8, lba: u64, len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = b1;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

fn cdb12(op: u8, b1: u8, lba: u32, len: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = op;
    c[1] = b1;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&len.to_be_bytes());
    c
}

type Fut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Completion> + 'a>>;

/// `f`, started after `yields` polls: with a yielding backend this lands a
/// command at a chosen point inside another one.
fn after<'a>(yields: usize, f: impl std::future::Future<Output = Completion> + 'a) -> Fut<'a> {
    Box::pin(async move {
        for _ in 0..yields {
            crate::testing::yield_now().await;
        }
        f.await
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------- general

#[test]
fn empty_cdb_gives_invalid_command_operation_code() {
    let t = target();
    assert_eq!(triple(&run(&t, &[], &mut vec![])), (0x05, 0x20, 0x00));
}

#[test]
fn unknown_opcode_gives_invalid_command_operation_code() {
    let t = target();
    let c = run(&t, &[0xC1, 0, 0, 0, 0, 0], &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x20, 0x00));
    assert_eq!(sks(&c), [0, 0, 0], "no field pointer");
}

#[test]
fn truncated_cdb_gives_invalid_field_without_panic() {
    let t = target();
    for len in 1..10 {
        let c = run(&t, &cdb10(0x28, 0, 0, 1)[..len], &mut vec![0; 512]);
        assert_eq!(triple(&c), (0x05, 0x24, 0x00), "len {len}");
    }
}

#[test]
fn reserved_bit_gives_field_pointer_to_it() {
    let t = target();
    // WRITE (10) byte 1 bit 2 is reserved: SKSV|C/D|BPV|bit 2, byte 1.
    let c = run(&t, &cdb10(0x2A, 0x04, 0, 1), &mut vec![0; 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xCA, 0x00, 0x01]);
    assert_eq!(t.backend().stats().writes, 0);
}

// ---------------------------------------------------------- unit attention

#[test]
fn power_on_attention_is_reported_once_per_nexus() {
    let t = target();
    good(&run(&t, &[0; 6], &mut vec![]));
    let c = block_on(t.execute(Nexus(7), &[0; 6], &mut vec![]));
    assert_eq!(triple(&c), (0x06, 0x29, 0x00));
    good(&block_on(t.execute(Nexus(7), &[0; 6], &mut vec![])));
}

#[test]
fn attention_is_reported_even_for_an_invalid_cdb() {
    let t = Target::new(MemBackend::with_discard(8), id()).unwrap();
    let c = block_on(t.execute(N0, &[0xC1, 0, 0, 0, 0, 0], &mut vec![]));
    assert_eq!(triple(&c), (0x06, 0x29, 0x00));
}

#[test]
fn inquiry_and_report_luns_neither_block_on_nor_clear_attention() {
    let t = Target::new(MemBackend::with_discard(8), id()).unwrap();
    let mut buf = vec![0; 64];
    good(&run(&t, &[0x12, 0, 0, 0, 36, 0], &mut buf));
    let rl = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0];
    good(&run(&t, &rl, &mut buf));
    assert_eq!(triple(&run(&t, &[0; 6], &mut buf)), (0x06, 0x29, 0x00));
    good(&run(&t, &[0; 6], &mut buf));
}

#[test]
fn request_sense_returns_and_clears_attention() {
    // SPC-4 6.39: the attention comes back as parameter data, GOOD status.
    let t = Target::new(MemBackend::with_discard(8), id()).unwrap();
    let mut buf = vec![0xAA; 32];
    let c = run(&t, &[0x03, 0, 0, 0, 252, 0], &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 18);
    assert_eq!(
        &buf[..18],
        &[
            0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0
        ]
    );
    good(&run(&t, &[0; 6], &mut buf));
}

#[test]
fn request_sense_desc_bit_gives_descriptor_format() {
    let t = Target::new(MemBackend::with_discard(8), id()).unwrap();
    let mut buf = vec![0; 32];
    let c = run(&t, &[0x03, 0x01, 0, 0, 252, 0], &mut buf);
    good(&c);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &[0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]
    );
    // Nothing pending: NO SENSE.
    let c = run(&t, &[0x03, 0, 0, 0, 8, 0], &mut buf);
    assert_eq!(c.data_in_len, 8, "truncated to the allocation length");
    assert_eq!(&buf[..8], &[0x70, 0, 0x00, 0, 0, 0, 0, 10]);
}

#[test]
fn resize_raises_capacity_data_changed_once() {
    let t = target();
    let mut info = t.backend().info();
    info.block_count = Blocks(4096);
    t.backend().set_info(info);
    assert!(t.refresh_info().unwrap());
    let mut buf = vec![0; 8];
    // INQUIRY is not blocked; READ CAPACITY is.
    good(&run(&t, &[0x12, 0, 0, 0, 36, 0], &mut vec![0; 36]));
    let rc10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(triple(&run(&t, &rc10, &mut buf)), (0x06, 0x2A, 0x09));
    good(&run(&t, &rc10, &mut buf));
    assert_eq!(&buf[..4], &[0, 0, 0x0F, 0xFF]);
    // Refreshing without change raises nothing.
    assert!(!t.refresh_info().unwrap());
    good(&run(&t, &[0; 6], &mut buf));
}

#[test]
fn lun_reset_raises_bus_device_reset() {
    let t = target();
    t.lun_reset();
    assert_eq!(triple(&run(&t, &[0; 6], &mut vec![])), (0x06, 0x29, 0x03));
    good(&run(&t, &[0; 6], &mut vec![]));
}

// ----------------------------------------------------------------- INQUIRY

#[test]
fn standard_inquiry_layout() {
    // SPC-4 6.4.2, table 139.
    let t = target();
    let mut buf = vec![0; 96];
    let c = run(&t, &[0x12, 0, 0, 0, 96, 0], &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 74);
    // Byte 5: 3PC, third-party copy (EXTENDED COPY) supported.
    let mut want = vec![0x00, 0x00, 0x06, 0x12, 69, 0x08, 0x00, 0x02];
    want.extend_from_slice(b"WASMTAP ");
    want.extend_from_slice(b"unit test disk  ");
    want.extend_from_slice(b"0.1 ");
    // Vendor specific, CLOCKING/QAS/IUS and a reserved byte: zero.
    want.extend_from_slice(&[0; 22]);
    // VERSION DESCRIPTORs: SAM-5, SPC-4, SBC-3, then five unused.
    want.extend_from_slice(&[0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0]);
    want.extend_from_slice(&[0; 10]);
    assert_eq!(&buf[..74], &want[..]);
}

#[test]
fn inquiry_is_truncated_to_allocation_length() {
    let t = target();
    let mut buf = vec![0xEE; 96];
    let c = run(&t, &[0x12, 0, 0, 0, 5, 0], &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 5);
    assert_eq!(buf[5], 0xEE);
}

#[test]
fn inquiry_page_code_without_evpd_is_invalid_field() {
    let t = target();
    let c = run(&t, &[0x12, 0, 0x80, 0, 96, 0], &mut vec![0; 96]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 2]);
}

#[test]
fn inquiry_cmddt_is_invalid_field() {
    let t = target();
    let c = run(&t, &[0x12, 0x02, 0, 0, 96, 0], &mut vec![0; 96]);
    assert_eq!(sks(&c), [0xC9, 0, 1]);
}

fn vpd(t: &Target<MemBackend>, page: u8) -> Vec<u8> {
    let mut buf = vec![0; 512];
    let c = run(t, &[0x12, 0x01, page, 0x02, 0x00, 0], &mut buf);
    good(&c);
    buf.truncate(c.data_in_len as usize);
    buf
}

#[test]
fn vpd_supported_pages() {
    // SPC-4 7.8.13.
    assert_eq!(
        vpd(&target(), 0x00),
        [0, 0x00, 0, 7, 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]
    );
}

#[test]
fn vpd_unit_serial_number() {
    // SPC-4 7.8.15.
    assert_eq!(vpd(&target(), 0x80), b"\x00\x80\x00\x07SN-0001");
}

#[test]
fn vpd_device_identification_has_naa_and_t10_designators() {
    // SPC-4 7.8.6: NAA (binary, LU, type 3, length 8) then T10 vendor id
    // (ASCII, LU, type 1, vendor id + serial).
    let t = target();
    let p = vpd(&t, 0x83);
    let naa = t.identity().naa().to_be_bytes();
    let mut want = vec![0, 0x83, 0, 12 + 4 + 15, 0x01, 0x03, 0, 8];
    want.extend_from_slice(&naa);
    want.extend_from_slice(&[0x02, 0x01, 0, 15]);
    want.extend_from_slice(b"WASMTAP SN-0001");
    assert_eq!(p, want);
    assert_eq!(naa[0] >> 4, 3, "NAA locally assigned");
    // Same serial, new target: same designators.
    assert_eq!(vpd(&target(), 0x83), p);
}

#[test]
fn vpd_block_limits() {
    // SBC-3 6.6.4, table 200.
    let p = vpd(&target(), 0xB0);
    assert_eq!(p.len(), 64);
    assert_eq!(&p[..4], &[0, 0xB0, 0, 0x3C]);
    assert_eq!(p[4], 0x01, "WSNZ");
    assert_eq!(p[5], 255, "MAXIMUM COMPARE AND WRITE LENGTH");
    assert_eq!(&p[6..8], &[0, 1], "OPTIMAL TRANSFER LENGTH GRANULARITY");
    assert_eq!(
        &p[8..12],
        &[0, 0, 0x04, 0x00],
        "MAXIMUM TRANSFER LENGTH 1024"
    );
    assert_eq!(&p[12..16], &[0; 4], "OPTIMAL TRANSFER LENGTH");
    assert_eq!(&p[20..24], &[0, 1, 0, 0], "MAXIMUM UNMAP LBA COUNT");
    assert_eq!(&p[24..28], &[0, 0, 0, 16], "MAXIMUM UNMAP DESCRIPTOR COUNT");
    assert_eq!(&p[28..32], &[0, 0, 0, 8], "OPTIMAL UNMAP GRANULARITY");
    assert_eq!(&p[32..36], &[0x80, 0, 0, 0], "UGAVALID, alignment 0");
    assert_eq!(&p[36..44], &[0, 0, 0, 0, 0, 0x40, 0, 0], "MAX WRITE SAME");
    // SBC-4 additions: MAXIMUM ATOMIC TRANSFER LENGTH 64 KiB of 512-byte
    // blocks (below the 1024-block maximum transfer), ATOMIC ALIGNMENT and
    // ATOMIC TRANSFER LENGTH GRANULARITY 0 (none), MAXIMUM ATOMIC TRANSFER
    // LENGTH WITH ATOMIC BOUNDARY and MAXIMUM ATOMIC BOUNDARY SIZE 0.
    assert_eq!(&p[44..48], &[0, 0, 0, 0x80], "MAX ATOMIC TRANSFER LENGTH");
    assert_eq!(&p[48..52], &[0; 4], "ATOMIC ALIGNMENT");
    assert_eq!(&p[52..56], &[0; 4], "ATOMIC TRANSFER LENGTH GRANULARITY");
    assert_eq!(&p[56..64], &[0; 8], "atomic boundary fields");
}

#[test]
fn vpd_block_limits_without_discard_has_no_unmap_limits() {
    let t = target_with(MemBackend::new(DiskInfo::simple(4096, 64)));
    let p = vpd(&t, 0xB0);
    assert_eq!(&p[20..36], &[0; 16]);
}

#[test]
fn vpd_block_device_characteristics() {
    // SBC-3 6.6.2: non-rotating medium.
    let p = vpd(&target(), 0xB1);
    assert_eq!(p.len(), 64);
    assert_eq!(&p[..6], &[0, 0xB1, 0, 0x3C, 0x00, 0x01]);
    assert!(p[6..].iter().all(|&b| b == 0));
}

#[test]
fn vpd_logical_block_provisioning() {
    // SBC-3 6.6.5: LBPU, LBPWS, LBPWS10, LBPRZ; thin provisioned.
    assert_eq!(vpd(&target(), 0xB2), [0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 64)));
    assert_eq!(vpd(&t, 0xB2), [0, 0xB2, 0, 4, 0, 0, 0, 0]);
}

#[test]
fn unknown_vpd_page_is_invalid_field() {
    let t = target();
    let c = run(&t, &[0x12, 0x01, 0x89, 0, 255, 0], &mut vec![0; 255]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 2]);
}

// ----------------------------------------------------------- READ CAPACITY

#[test]
fn read_capacity_10_layout() {
    // SBC-3 5.15.2: RETURNED LOGICAL BLOCK ADDRESS, BLOCK LENGTH.
    let t = target_with(MemBackend::new(DiskInfo::simple(4096, 0x1234)));
    let mut buf = vec![0; 8];
    good(&run(&t, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut buf));
    assert_eq!(buf, [0, 0, 0x12, 0x33, 0, 0, 0x10, 0]);
}

#[test]
fn read_capacity_10_saturates_above_32_bits() {
    let mut info = DiskInfo::simple(512, 0x1_0000_0001);
    info.max_transfer = Blocks(8);
    // Geometry only: the in-memory disk would be 2 TiB, so use a backend
    // that reports it without allocating.
    let t = Target::new(Geometry(info), id()).unwrap();
    let mut buf = vec![0; 32];
    block_on(t.execute(N0, &[0; 6], &mut buf));
    let c = block_on(t.execute(N0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut buf));
    good(&c);
    assert_eq!(&buf[..8], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x02, 0]);
    let c = block_on(t.execute(N0, &cdb16(0x9E, 0x10, 0, 32), &mut buf));
    good(&c);
    assert_eq!(&buf[..12], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x02, 0]);
}

#[test]
fn read_capacity_10_lba_without_pmi_is_invalid_field() {
    let t = target();
    let c = run(&t, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], &mut vec![0; 8]);
    assert_eq!(sks(&c), [0xC0, 0, 2]);
}

#[test]
fn read_capacity_16_layout_with_provisioning() {
    // SBC-3 5.16.2, table 67: LBPME and LBPRZ in byte 14.
    let mut info = MemBackend::with_discard(2048).info();
    info.physical_exponent = 3;
    let t = target_with(MemBackend::new(info));
    let mut buf = vec![0xEE; 40];
    let c = run(&t, &cdb16(0x9E, 0x10, 0, 40), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 32);
    let mut want = [0u8; 32];
    want[6] = 0x07;
    want[7] = 0xFF;
    want[10] = 0x02;
    want[13] = 0x03;
    want[14] = 0xC0;
    assert_eq!(&buf[..32], &want);
}

/// A 512e disk: 512-byte logical blocks, 4096-byte physical blocks
/// (exponent 3), a discard granularity of `granularity` at `alignment`.
fn disk_512e(granularity: u64, alignment: u64) -> DiskInfo {
    let mut info = MemBackend::with_discard(2048).info();
    info.physical_exponent = 3;
    info.optimal_transfer = Blocks(100);
    let d = info.discard.as_mut().unwrap();
    d.granularity = Blocks(granularity);
    d.alignment = Lba(alignment);
    info
}

#[test]
fn read_capacity_16_of_a_512e_disk() {
    // SBC-3 5.16.2: LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 3 in byte
    // 13; byte 14 LBPME | LBPRZ | LOWEST ALIGNED LOGICAL BLOCK ADDRESS
    // (bits 5-0, with byte 15) = 0: LBA 0 starts a physical block.
    let t = target_with(MemBackend::new(disk_512e(1, 0)));
    let mut buf = vec![0xEE; 32];
    good(&run(&t, &cdb16(0x9E, 0x10, 0, 32), &mut buf));
    assert_eq!(
        buf,
        [
            0, 0, 0, 0, 0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00, 0, 0x03, 0xC0, 0x00, //
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
}

#[test]
fn vpd_block_limits_of_a_512e_disk_are_in_whole_physical_blocks() {
    // SBC-3 6.6.4: OPTIMAL TRANSFER LENGTH GRANULARITY (bytes 6-7) one
    // physical block; OPTIMAL TRANSFER LENGTH (12-15) 100 rounded down to
    // 96; OPTIMAL UNMAP GRANULARITY (28-31) a single-block granularity
    // raised to 8; UGAVALID | UNMAP GRANULARITY ALIGNMENT (32-35) 0.
    let p = vpd(&target_with(MemBackend::new(disk_512e(1, 0))), 0xB0);
    assert_eq!(&p[6..8], &[0, 8]);
    assert_eq!(&p[12..16], &[0, 0, 0, 96]);
    assert_eq!(&p[28..32], &[0, 0, 0, 8]);
    assert_eq!(&p[32..36], &[0x80, 0, 0, 0]);
    // A granularity of 12 at 4: least common multiple 24, first LBA that
    // starts both a granule and a physical block 16.
    let p = vpd(&target_with(MemBackend::new(disk_512e(12, 4))), 0xB0);
    assert_eq!(&p[28..32], &[0, 0, 0, 24]);
    assert_eq!(&p[32..36], &[0x80, 0, 0, 16]);
    // Granules that never start a physical block: refused at attach.
    let err = Target::new(MemBackend::new(disk_512e(8, 3)), id()).unwrap_err();
    assert!(matches!(
        err,
        crate::GeometryError::DiscardAlignment { physical: 8, .. }
    ));
    let mut bad = disk_512e(1, 0);
    bad.physical_exponent = 16;
    assert_eq!(
        Target::new(MemBackend::new(bad), id()).unwrap_err(),
        crate::GeometryError::PhysicalExponent(16)
    );
}

#[test]
fn read_capacity_16_without_discard_clears_lbpme() {
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 16)));
    let mut buf = vec![0; 32];
    good(&run(&t, &cdb16(0x9E, 0x10, 0, 32), &mut buf));
    assert_eq!(buf[14], 0);
}

#[test]
fn unsupported_service_action_is_invalid_field() {
    let t = target();
    let c = run(&t, &cdb16(0x9E, 0x11, 0, 32), &mut vec![0; 32]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xCC, 0, 1]);
}

// -------------------------------------------------------------- MODE SENSE

#[test]
fn mode_sense_6_caching_page_with_block_descriptor() {
    // SPC-4 7.5.5 header, SBC-3 6.4.2 short descriptor, 6.4.5 caching.
    let t = target();
    let mut buf = vec![0; 255];
    let c = run(&t, &[0x1A, 0, 0x08, 0, 255, 0], &mut buf);
    good(&c);
    let mut want = vec![3 + 8 + 20, 0, 0x10, 8];
    want.extend_from_slice(&[0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00]);
    let mut page = vec![0u8; 20];
    page[0] = 0x08;
    page[1] = 0x12;
    page[2] = 0x04; // WCE
    want.extend(page);
    assert_eq!(&buf[..c.data_in_len as usize], &want[..]);
}

#[test]
fn mode_sense_10_long_lba_descriptor() {
    // SPC-4 7.5.5 (10-byte header), SBC-3 6.4.2.3 long descriptor.
    let t = target();
    let mut buf = vec![0; 255];
    let c = run(&t, &[0x5A, 0x10, 0x01, 0, 0, 0, 0, 0, 255, 0], &mut buf);
    good(&c);
    let mut want = vec![0, 6 + 16 + 12, 0, 0x10, 0x01, 0, 0, 16];
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x02, 0]);
    want.extend_from_slice(&[0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&buf[..c.data_in_len as usize], &want[..]);
}

#[test]
fn mode_sense_all_pages_dbd() {
    let t = target();
    let mut buf = vec![0; 255];
    let c = run(&t, &[0x1A, 0x08, 0x3F, 0, 255, 0], &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 4 + 12 + 20 + 12);
    assert_eq!(buf[0], 47);
    assert_eq!(buf[3], 0, "no block descriptor");
    assert_eq!((buf[4], buf[16], buf[36]), (0x01, 0x08, 0x0A));
    // Control page: QUEUE ALGORITHM MODIFIER 1, D_SENSE 0.
    assert_eq!(&buf[36..40], &[0x0A, 0x0A, 0x00, 0x10]);
}

#[test]
fn mode_sense_changeable_shows_only_wce() {
    let t = target();
    let mut buf = vec![0; 255];
    let c = run(&t, &[0x1A, 0x08, 0x48, 0, 255, 0], &mut buf);
    good(&c);
    assert_eq!(&buf[4..7], &[0x08, 0x12, 0x04]);
    assert!(buf[7..24].iter().all(|&b| b == 0));
}

#[test]
fn mode_sense_saved_values_not_supported() {
    let t = target();
    let c = run(&t, &[0x1A, 0, 0xC8, 0, 255, 0], &mut vec![0; 255]);
    assert_eq!(triple(&c), (0x05, 0x39, 0x00));
}

#[test]
fn mode_sense_unknown_page_or_subpage_is_invalid_field() {
    let t = target();
    let c = run(&t, &[0x1A, 0, 0x1C, 0, 255, 0], &mut vec![0; 255]);
    assert_eq!(sks(&c), [0xCD, 0, 2]);
    let c = run(&t, &[0x1A, 0, 0x08, 1, 255, 0], &mut vec![0; 255]);
    assert_eq!(sks(&c), [0xC0, 0, 3]);
}

#[test]
fn mode_sense_reports_write_protect() {
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let mut buf = vec![0; 64];
    good(&run(&t, &[0x1A, 0x08, 0x08, 0, 64, 0], &mut buf));
    assert_eq!(buf[2], 0x90, "WP | DPOFUA");
}

// ------------------------------------------------------------- MODE SELECT

fn caching_select_6(wce: bool) -> Vec<u8> {
    let mut p = vec![0u8, 0, 0, 0];
    let mut page = vec![0u8; 20];
    page[0] = 0x08;
    page[1] = 0x12;
    if wce {
        page[2] = 0x04;
    }
    p.extend(page);
    p
}

#[test]
fn mode_select_clears_wce_and_writes_become_write_through() {
    let t = target();
    let mut p = caching_select_6(false);
    good(&run(&t, &[0x15, 0x10, 0, 0, 24, 0], &mut p));
    assert!(!t.write_cache_enabled());
    let mut buf = vec![0; 64];
    good(&run(&t, &[0x1A, 0x08, 0x08, 0, 64, 0], &mut buf));
    assert_eq!(buf[6], 0x00, "WCE now 0");
    let mut data = vec![1u8; 512];
    good(&run(&t, &cdb10(0x2A, 0, 0, 1), &mut data));
    assert_eq!(t.backend().stats().fua_writes, 1);
    // And back on, with MODE SELECT (10) and a block descriptor.
    let mut p10 = vec![0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0x08, 0, 0, 0, 0x02, 0];
    p10.extend_from_slice(&caching_select_6(true)[4..]);
    good(&run(&t, &[0x55, 0x10, 0, 0, 0, 0, 0, 0, 36, 0], &mut p10));
    assert!(t.write_cache_enabled());
    good(&run(&t, &cdb10(0x2A, 0, 0, 1), &mut data));
    assert_eq!(t.backend().stats().fua_writes, 1);
}

#[test]
fn mode_select_tells_other_nexuses() {
    let t = target();
    good(&block_on(t.execute(Nexus(1), &[0; 6], &mut vec![])).clone_or_ua());
    good(&run(
        &t,
        &[0x15, 0x10, 0, 0, 24, 0],
        &mut caching_select_6(false),
    ));
    let c = block_on(t.execute(Nexus(1), &[0; 6], &mut vec![]));
    assert_eq!(triple(&c), (0x06, 0x2A, 0x01));
    good(&run(&t, &[0; 6], &mut vec![]));
}

trait ClearUa {
    fn clone_or_ua(self) -> Completion;
}
impl ClearUa for Completion {
    /// The power-on attention of a fresh nexus counts as expected.
    fn clone_or_ua(self) -> Completion {
        if self.status == Status::CheckCondition && self.sense()[12] == 0x29 {
            Completion {
                status: Status::Good,
                ..self
            }
        } else {
            self
        }
    }
}

#[test]
fn mode_select_of_unchangeable_bit_points_into_parameter_list() {
    let t = target();
    let mut p = caching_select_6(true);
    p[4 + 2] |= 0x01; // RCD is not changeable
    let c = run(&t, &[0x15, 0x10, 0, 0, 24, 0], &mut p);
    assert_eq!(triple(&c), (0x05, 0x26, 0x00));
    // SKSV, C/D = 0 (parameter list), BPV, bit 0; byte 6.
    assert_eq!(sks(&c), [0x88, 0, 6]);
    assert!(t.write_cache_enabled(), "nothing applied");
}

#[test]
fn mode_select_errors() {
    let t = target();
    let mut p = caching_select_6(false);
    // SP = 1.
    let c = run(&t, &[0x15, 0x11, 0, 0, 24, 0], &mut p);
    assert_eq!(sks(&c), [0xC8, 0, 1]);
    // PF = 0.
    let c = run(&t, &[0x15, 0x00, 0, 0, 24, 0], &mut p);
    assert_eq!(sks(&c), [0xCC, 0, 1]);
    // List truncated in the middle of the page.
    let c = run(&t, &[0x15, 0x10, 0, 0, 12, 0], &mut p);
    assert_eq!(triple(&c), (0x05, 0x1A, 0x00));
    // Data-out shorter than the parameter list length.
    let c = run(&t, &[0x15, 0x10, 0, 0, 40, 0], &mut p);
    assert_eq!(triple(&c), (0x05, 0x1A, 0x00));
    // Unknown page.
    p[4] = 0x1C;
    let c = run(&t, &[0x15, 0x10, 0, 0, 24, 0], &mut p);
    assert_eq!(triple(&c), (0x05, 0x26, 0x00));
    // Block descriptor with another block size.
    let mut p = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    let c = run(&t, &[0x15, 0x10, 0, 0, 12, 0], &mut p);
    assert_eq!(sks(&c), [0x80, 0, 9]);
    assert!(t.write_cache_enabled());
}

// --------------------------------------------------------------- READ/WRITE

#[test]
fn write_then_read_round_trips_for_every_cdb_size() {
    let t = target();
    let cases: [(Vec<u8>, Vec<u8>); 4] = [
        (vec![0x0A, 0, 0, 5, 2, 0], vec![0x08, 0, 0, 5, 2, 0]),
        (
            cdb10(0x2A, 0, 10, 2).to_vec(),
            cdb10(0x28, 0, 10, 2).to_vec(),
        ),
        (
            vec![0xAA, 0, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0],
            vec![0xA8, 0, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0],
        ),
        (
            cdb16(0x8A, 0, 30, 2).to_vec(),
            cdb16(0x88, 0, 30, 2).to_vec(),
        ),
    ];
    for (i, (w, r)) in cases.iter().enumerate() {
        let mut data = pattern(1024, i as u8);
        good(&run(&t, w, &mut data));
        let mut back = vec![0; 1024];
        let c = run(&t, r, &mut back);
        good(&c);
        assert_eq!(c.data_in_len, 1024);
        assert_eq!(back, data, "case {i}");
    }
    let disk = t.backend().contents();
    assert_eq!(&disk[5 * 512..7 * 512], &pattern(1024, 0)[..]);
    assert_eq!(&disk[30 * 512..32 * 512], &pattern(1024, 3)[..]);
}

#[test]
fn write_6_length_zero_means_256_blocks() {
    // SBC-3 5.31: TRANSFER LENGTH 0 in WRITE (6) is 256 blocks.
    let t = target();
    let mut data = pattern(256 * 512, 9);
    good(&run(&t, &[0x0A, 0, 0, 1, 0, 0], &mut data));
    assert_eq!(&t.backend().contents()[512..257 * 512], &data[..]);
    let mut back = vec![0; 256 * 512];
    let c = run(&t, &[0x08, 0, 0, 1, 0, 0], &mut back);
    assert_eq!(c.data_in_len, 256 * 512);
    assert_eq!(back, data);
}

#[test]
fn read_10_length_zero_transfers_nothing() {
    let t = target();
    let c = run(&t, &cdb10(0x28, 0, 0, 0), &mut vec![]);
    good(&c);
    assert_eq!(c.data_in_len, 0);
    assert_eq!(t.backend().stats().reads, 0);
}

#[test]
fn read_reports_bytes_produced_for_a_larger_buffer() {
    let t = target();
    let mut buf = vec![0; 4096];
    let c = run(&t, &cdb10(0x28, 0, 0, 2), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 1024);
}

#[test]
fn fua_write_is_passed_as_write_through() {
    let t = target();
    good(&run(&t, &cdb10(0x2A, 0x08, 0, 1), &mut vec![1; 512]));
    good(&run(&t, &cdb10(0x2A, 0x00, 0, 1), &mut vec![1; 512]));
    let s = t.backend().stats();
    assert_eq!((s.writes, s.fua_writes), (2, 1));
}

#[test]
fn write_past_capacity_gives_lba_out_of_range_and_writes_nothing() {
    let t = target();
    let c = run(&t, &cdb10(0x2A, 0, 2047, 2), &mut vec![1; 1024]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    let c = run(&t, &cdb16(0x8A, 0, u64::MAX, 1), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    let c = run(&t, &cdb16(0x88, 0, 2048, 1), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(t.backend().stats().writes, 0);
    // The last block itself is fine.
    good(&run(&t, &cdb10(0x2A, 0, 2047, 1), &mut vec![1; 512]));
}

#[test]
fn short_data_out_is_refused_without_a_partial_write() {
    let t = target();
    let c = run(&t, &cdb10(0x2A, 0, 0, 4), &mut vec![7; 3 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 7], "points at TRANSFER LENGTH");
    assert_eq!(t.backend().stats().writes, 0);
    assert!(t.backend().contents().iter().all(|&b| b == 0));
}

#[test]
fn transfer_above_maximum_is_invalid_field() {
    let t = target();
    let c = run(&t, &cdb16(0x88, 0, 0, 1025), &mut vec![0; 1025 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 10]);
}

#[test]
fn write_to_read_only_device_is_write_protected() {
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &cdb10(0x2A, 0, 0, 1), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
    good(&run(&t, &cdb10(0x28, 0, 0, 1), &mut vec![1; 512]));
}

#[test]
fn backend_read_error_becomes_medium_error_with_lba() {
    let t = target();
    t.backend()
        .fail_next(BackendError::at(BackendErrorKind::Medium, Lba(12)));
    let c = run(&t, &cdb10(0x28, 0, 10, 4), &mut vec![0; 2048]);
    assert_eq!(triple(&c), (0x03, 0x11, 0x00));
    assert_eq!(c.sense()[0], 0xF0, "VALID");
    assert_eq!(&c.sense()[3..7], &[0, 0, 0, 12]);
    assert_eq!(c.data_in_len, 0);
}

#[test]
fn backend_unavailable_becomes_not_ready() {
    let t = target();
    t.backend()
        .fail_next(BackendError::new(BackendErrorKind::Unavailable));
    let c = run(&t, &cdb10(0x2A, 0, 0, 1), &mut vec![0; 512]);
    assert_eq!(triple(&c), (0x02, 0x04, 0x01));
}

#[test]
fn rdprotect_is_invalid_field_at_its_msb() {
    let t = target();
    let c = run(&t, &cdb10(0x28, 0x20, 0, 1), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
}

/// A scatter/gather buffer: the command's data in three pieces.
#[derive(Debug)]
struct Pieces(std::cell::RefCell<Vec<u8>>);

impl Memory for Pieces {
    fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        let a = addr as usize;
        dst.copy_from_slice(&self.0.borrow()[a..a + dst.len()]);
        Ok(())
    }
    fn write(&self, addr: u64, src: &[u8]) -> Result<(), BufferError> {
        let a = addr as usize;
        self.0.borrow_mut()[a..a + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn zero(&self, addr: u64, len: u64) -> Result<(), BufferError> {
        let a = addr as usize;
        self.0.borrow_mut()[a..a + len as usize].fill(0);
        Ok(())
    }
}

#[test]
fn read_and_write_through_a_scatter_gather_buffer() {
    let t = target();
    let mem = Pieces(std::cell::RefCell::new(vec![0; 4096]));
    let ext = [
        Extent {
            addr: 3000,
            len: 100,
        },
        Extent { addr: 0, len: 700 },
        Extent {
            addr: 1000,
            len: 224,
        },
    ];
    let data = pattern(1024, 5);
    {
        let mut sg = SgBuffer::new(&mem, &ext);
        sg.write_at(0, &data).unwrap();
        good(&block_on(t.execute(N0, &cdb10(0x2A, 0, 100, 2), &mut sg)));
    }
    assert_eq!(&t.backend().contents()[100 * 512..102 * 512], &data[..]);
    mem.0.borrow_mut().fill(0);
    let mut sg = SgBuffer::new(&mem, &ext);
    let c = block_on(t.execute(N0, &cdb10(0x28, 0, 100, 2), &mut sg));
    good(&c);
    let mut back = vec![0; 1024];
    sg.read_at(0, &mut back).unwrap();
    assert_eq!(back, data);
}

// ------------------------------------------------------- SYNCHRONIZE CACHE

#[test]
fn synchronize_cache_flushes() {
    let t = target();
    good(&run(&t, &cdb10(0x35, 0, 0, 0), &mut vec![]));
    good(&run(&t, &cdb16(0x91, 0x02, 100, 10), &mut vec![]));
    assert_eq!(t.backend().stats().flushes, 2);
    let c = run(&t, &cdb16(0x91, 0, 2040, 10), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(t.backend().stats().flushes, 2);
}

#[test]
fn synchronize_cache_flush_failure_is_write_error() {
    let t = target();
    t.backend()
        .fail_next(BackendError::new(BackendErrorKind::Medium));
    let c = run(&t, &cdb10(0x35, 0, 0, 0), &mut vec![]);
    assert_eq!(triple(&c), (0x03, 0x0C, 0x00));
}

// ---------------------------------------------------------------- PRE-FETCH

#[test]
fn pre_fetch_of_a_range_that_fits_the_cache_is_condition_met() {
    // SBC-3 PRE-FETCH: CONDITION MET (SAM-5 status 04h) when every block
    // fits the cache, with no sense data and no data-in.
    let t = target();
    let mut buf = vec![0xEE; 64];
    for cdb in [
        cdb10(0x34, 0, 100, 16).to_vec(),
        cdb10(0x34, 0x02, 100, 16).to_vec(), // IMMED
        cdb16(0x90, 0, 100, 16).to_vec(),
        cdb16(0x90, 0x02, 2047, 1).to_vec(),
    ] {
        let c = run(&t, &cdb, &mut buf);
        assert_eq!(c.status, Status::ConditionMet, "{cdb:02x?}");
        assert_eq!(c.status.as_u8(), 0x04);
        assert!(c.sense().is_empty());
        assert_eq!(c.data_in_len, 0);
    }
    assert_eq!(buf, vec![0xEE; 64], "no data-in");
    // A hint: nothing reaches the backend.
    assert_eq!(t.backend().stats(), Default::default());
}

#[test]
fn pre_fetch_length_zero_runs_to_the_end_of_the_medium() {
    // 2048 blocks of 512 bytes: 1 MiB from LBA 0, well inside the cache.
    let t = target();
    let c = run(&t, &cdb10(0x34, 0, 0, 0), &mut vec![]);
    assert_eq!(c.status, Status::ConditionMet);
    let c = run(&t, &cdb16(0x90, 0, 2047, 0), &mut vec![]);
    assert_eq!(c.status, Status::ConditionMet);
    // Zero length starting past the last block is out of range.
    let c = run(&t, &cdb10(0x34, 0, 2048, 0), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(sks(&c), [0, 0, 0]);
}

/// A target over `Geometry` (no allocation) with the power-on attention
/// consumed.
fn geometry_target(info: DiskInfo) -> Target<Geometry> {
    let t = Target::new(Geometry(info), id()).unwrap();
    block_on(t.execute(N0, &[0; 6], &mut vec![]));
    t
}

#[test]
fn pre_fetch_larger_than_the_cache_is_good() {
    // PREFETCH_CACHE_BYTES is 32 MiB: 65536 blocks of 512 bytes fit,
    // 65537 do not (GOOD: "as many as fit" are notionally cached).
    assert_eq!(crate::target::PREFETCH_CACHE_BYTES, 32 << 20);
    let t = geometry_target(DiskInfo::simple(512, 1 << 20));
    let st = |cdb: &[u8]| {
        let c = block_on(t.execute(N0, cdb, &mut vec![]));
        assert!(c.sense().is_empty());
        c.status
    };
    assert_eq!(st(&cdb16(0x90, 0, 0, 65536)), Status::ConditionMet);
    assert_eq!(st(&cdb16(0x90, 0, 0, 65537)), Status::Good);
    assert_eq!(st(&cdb10(0x34, 0x02, 0, 0)), Status::Good, "to the end");
    assert_eq!(
        st(&cdb10(0x34, 0, (1 << 20) - 65536, 0)),
        Status::ConditionMet,
        "the last 32 MiB"
    );
    // Not a transfer: far above MAXIMUM TRANSFER LENGTH (1024) is fine.
    assert_eq!(st(&cdb16(0x90, 0, 0, 1 << 20)), Status::Good);
}

#[test]
fn pre_fetch_errors() {
    let t = target();
    let c = run(&t, &cdb10(0x34, 0, 2040, 9), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    let c = run(&t, &cdb16(0x90, 0, u64::MAX, 1), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    // Byte 1: bit 0 obsolete (10) / reserved (16), bits 7-2 reserved.
    let c = run(&t, &cdb10(0x34, 0x01, 0, 1), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC8, 0, 1]);
    let c = run(&t, &cdb16(0x90, 0x80, 0, 1), &mut vec![]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
    // Reserved bits above GROUP NUMBER.
    let mut cdb = cdb10(0x34, 0, 0, 1);
    cdb[6] = 0x20;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![])), [0xCD, 0, 6]);
    let mut cdb = cdb16(0x90, 0, 0, 1);
    cdb[14] = 0x40;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![])), [0xCE, 0, 14]);
}

#[test]
fn pre_fetch_is_allowed_on_a_read_only_device() {
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &cdb10(0x34, 0, 0, 0), &mut vec![]);
    assert_eq!(c.status, Status::ConditionMet);
}

// -------------------------------------------------------------------- UNMAP

fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    let n = ranges.len() as u16 * 16;
    p[0..2].copy_from_slice(&(n + 6).to_be_bytes());
    p[2..4].copy_from_slice(&n.to_be_bytes());
    for &(lba, count) in ranges {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&count.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

fn unmap_cdb(len: u16) -> [u8; 10] {
    let mut c = cdb10(0x42, 0, 0, len);
    c[2..6].fill(0);
    c
}

#[test]
fn unmap_discards_every_descriptor() {
    let t = target();
    t.backend().poke(0, &vec![0xAB; 2048 * 512]);
    let mut p = unmap_list(&[(8, 8), (100, 1), (200, 0)]);
    good(&run(&t, &unmap_cdb(p.len() as u16), &mut p));
    let d = t.backend().contents();
    assert!(d[8 * 512..16 * 512].iter().all(|&b| b == 0));
    assert!(d[100 * 512..101 * 512].iter().all(|&b| b == 0));
    assert_eq!(d[16 * 512], 0xAB);
    assert_eq!(d[7 * 512], 0xAB);
    assert_eq!(
        t.backend().stats().discards,
        2,
        "zero-length descriptor skipped"
    );
}

#[test]
fn unmap_out_of_range_descriptor_discards_nothing() {
    let t = target();
    let mut p = unmap_list(&[(0, 8), (2047, 2)]);
    let c = run(&t, &unmap_cdb(p.len() as u16), &mut p);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(t.backend().stats().discards, 0);
}

#[test]
fn unmap_parameter_errors() {
    let t = target();
    // Zero length: nothing to do, not an error (SBC-3 5.28.1).
    good(&run(&t, &unmap_cdb(0), &mut vec![]));
    // Shorter than the 8-byte header.
    let c = run(&t, &unmap_cdb(4), &mut vec![0; 4]);
    assert_eq!(triple(&c), (0x05, 0x1A, 0x00));
    // Data-out shorter than the parameter list length.
    let mut p = unmap_list(&[(0, 8)]);
    let c = run(&t, &unmap_cdb(64), &mut p);
    assert_eq!(triple(&c), (0x05, 0x1A, 0x00));
    // More descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (16).
    let many: Vec<(u64, u32)> = (0..17).map(|i| (i * 8, 1)).collect();
    let mut p = unmap_list(&many);
    let c = run(&t, &unmap_cdb(p.len() as u16), &mut p);
    assert_eq!(triple(&c), (0x05, 0x26, 0x00));
    assert_eq!(sks(&c), [0x80, 0, 2]);
    // One descriptor above MAXIMUM UNMAP LBA COUNT.
    let mut p = unmap_list(&[(0, 0x1_0001)]);
    let c = run(&t, &unmap_cdb(p.len() as u16), &mut p);
    assert_eq!(sks(&c), [0x80, 0, 16]);
    // ANCHOR is not supported.
    let mut c = unmap_cdb(24);
    c[1] = 1;
    let c = run(&t, &c, &mut unmap_list(&[(0, 1)]));
    assert_eq!(sks(&c), [0xC8, 0, 1]);
    assert_eq!(t.backend().stats().discards, 0);
}

#[test]
fn unmap_without_discard_support_is_an_unknown_opcode() {
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 64)));
    let mut p = unmap_list(&[(0, 1)]);
    let c = run(&t, &unmap_cdb(24), &mut p);
    assert_eq!(triple(&c), (0x05, 0x20, 0x00));
}

// --------------------------------------------------------------- WRITE SAME

#[test]
fn write_same_10_repeats_the_block() {
    let t = target();
    let mut block = pattern(512, 3);
    good(&run(&t, &cdb10(0x41, 0, 4, 5), &mut block));
    let d = t.backend().contents();
    for i in 4..9 {
        assert_eq!(&d[i * 512..(i + 1) * 512], &block[..], "block {i}");
    }
    assert!(d[9 * 512..10 * 512].iter().all(|&b| b == 0));
}

#[test]
fn write_same_16_large_pattern_is_chunked() {
    let t = target_with(MemBackend::with_discard(8192));
    let mut block = pattern(512, 1);
    good(&run(&t, &cdb16(0x93, 0, 0, 5000), &mut block));
    let d = t.backend().contents();
    assert!(d[..5000 * 512].chunks(512).all(|c| c == block));
    assert!(t.backend().stats().writes > 1);
}

#[test]
fn write_same_zeroes_with_unmap_and_ndob() {
    let t = target();
    t.backend().poke(0, &vec![0xCD; 64 * 512]);
    // UNMAP with a zero block: write_zeroes, may unmap.
    good(&run(&t, &cdb10(0x41, 0x08, 0, 8), &mut vec![0; 512]));
    // WRITE SAME (16) NDOB: no data-out at all.
    good(&run(&t, &cdb16(0x93, 0x09, 16, 8), &mut vec![]));
    let d = t.backend().contents();
    assert!(d[..8 * 512].iter().all(|&b| b == 0));
    assert!(d[16 * 512..24 * 512].iter().all(|&b| b == 0));
    assert_eq!(d[8 * 512], 0xCD);
    assert_eq!(t.backend().stats().write_zeroes, 2);
    assert_eq!(t.backend().stats().writes, 0);
}

#[test]
fn write_same_errors() {
    let t = target();
    // WSNZ: zero blocks refused, pointer at NUMBER OF LOGICAL BLOCKS.
    let c = run(&t, &cdb10(0x41, 0, 0, 0), &mut vec![1; 512]);
    assert_eq!(sks(&c), [0xC0, 0, 7]);
    // ANCHOR.
    let c = run(&t, &cdb10(0x41, 0x10, 0, 1), &mut vec![1; 512]);
    assert_eq!(sks(&c), [0xCC, 0, 1]);
    // Missing data-out block.
    let c = run(&t, &cdb10(0x41, 0, 0, 1), &mut vec![1; 100]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    // Past the end.
    let c = run(&t, &cdb16(0x93, 0, 2000, 49), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(t.backend().stats().writes, 0);
}

// -------------------------------------------------------- COMPARE AND WRITE

fn caw_cdb(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write_writes_when_equal() {
    let t = target();
    let old = pattern(1024, 1);
    let new = pattern(1024, 2);
    t.backend().poke(10 * 512, &old);
    let mut d = old.clone();
    d.extend_from_slice(&new);
    good(&run(&t, &caw_cdb(10, 2), &mut d));
    assert_eq!(&t.backend().contents()[10 * 512..12 * 512], &new[..]);
}

#[test]
fn compare_and_write_miscompare_reports_offset_and_writes_nothing() {
    // SBC-3 5.2: MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION, the
    // INFORMATION field holding the offset of the first differing byte.
    let t = target();
    let old = pattern(1024, 1);
    t.backend().poke(10 * 512, &old);
    let mut d = old.clone();
    d[700] ^= 0xFF;
    d.extend_from_slice(&pattern(1024, 2));
    let c = run(&t, &caw_cdb(10, 2), &mut d);
    assert_eq!(triple(&c), (0x0E, 0x1D, 0x00));
    assert_eq!(c.sense()[0], 0xF0, "VALID");
    assert_eq!(&c.sense()[3..7], &700u32.to_be_bytes());
    assert_eq!(&t.backend().contents()[10 * 512..12 * 512], &old[..]);
}

#[test]
fn compare_and_write_errors() {
    let t = target();
    // Zero blocks: nothing happens.
    good(&run(&t, &caw_cdb(0, 0), &mut vec![]));
    // Data-out must hold verify + write data.
    let c = run(&t, &caw_cdb(0, 1), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xC0, 0, 13]);
    let c = run(&t, &caw_cdb(2048, 1), &mut vec![0; 1024]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    let mut info = DiskInfo::simple(512, 64);
    info.max_transfer = Blocks(4);
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &caw_cdb(0, 5), &mut vec![0; 5 * 1024]);
    assert_eq!(sks(&c), [0xC0, 0, 13]);
}

#[test]
fn concurrent_compare_and_writes_on_one_range_serialize() {
    // Two initiators both expect the old contents. With interleaving
    // backend calls, only the range lock stops both from succeeding.
    let t = target_with(MemBackend::with_discard(64).with_yields());
    let old = vec![0u8; 1024];
    let mk = |seed| {
        let mut d = old.clone();
        d.extend_from_slice(&pattern(1024, seed));
        d
    };
    let mut a = mk(1);
    let mut b = mk(2);
    let cdb = caw_cdb(4, 2);
    let results = block_on(join_all(vec![
        t.execute(N0, &cdb, &mut a),
        t.execute(N0, &cdb, &mut b),
    ]));
    let ok: Vec<bool> = results.iter().map(|c| c.status == Status::Good).collect();
    assert_eq!(ok.iter().filter(|&&g| g).count(), 1, "{results:?}");
    let loser = results.iter().find(|c| c.status != Status::Good).unwrap();
    assert_eq!(triple(loser), (0x0E, 0x1D, 0x00));
    let winner = if ok[0] {
        pattern(1024, 1)
    } else {
        pattern(1024, 2)
    };
    assert_eq!(&t.backend().contents()[4 * 512..6 * 512], &winner[..]);
}

#[test]
fn compare_and_write_is_atomic_against_a_racing_write() {
    // A plain write of the same range starts while the CAW is in flight.
    // Whatever the order, the result is one of the two serial outcomes:
    // either CAW then WRITE (disk = write data), or WRITE then CAW
    // (CAW miscompares, disk = write data). Never CAW data on disk after
    // the WRITE completed, and never a torn mix.
    let t = target_with(MemBackend::with_discard(64).with_yields());
    let mut caw = vec![0u8; 1024];
    caw.extend_from_slice(&pattern(1024, 7));
    let mut w = pattern(1024, 8);
    let results = block_on(join_all(vec![
        t.execute(N0, &caw_cdb(0, 2), &mut caw),
        t.execute(N0, &cdb10(0x2A, 0, 0, 2), &mut w),
    ]));
    good(&results[1]);
    let disk = &t.backend().contents()[..1024];
    assert_eq!(disk, &pattern(1024, 8)[..], "{results:?}");
}

// ------------------------------------------------------------------ ORWRITE

#[test]
fn orwrite_ors_the_data_out_into_the_blocks() {
    // SBC-3 ORWRITE (16): each byte written is the medium byte OR the
    // data-out byte. A0h | 05h = A5h; 00h | 3Ch = 3Ch.
    let t = target();
    t.backend().poke(10 * 512, &[0xA0; 512]);
    let mut d = vec![0x05u8; 512];
    d.extend_from_slice(&[0x3C; 512]);
    good(&run(&t, &cdb16(0x8B, 0, 10, 2), &mut d));
    let disk = t.backend().contents();
    assert!(disk[10 * 512..11 * 512].iter().all(|&b| b == 0xA5));
    assert!(disk[11 * 512..12 * 512].iter().all(|&b| b == 0x3C));
    assert!(disk[9 * 512..10 * 512].iter().all(|&b| b == 0));
    assert!(disk[12 * 512..13 * 512].iter().all(|&b| b == 0));
    let s = t.backend().stats();
    assert_eq!((s.reads, s.writes, s.fua_writes), (1, 1, 0));
    // Arbitrary bytes: the OR, byte for byte.
    let old = pattern(3 * 512, 40);
    t.backend().poke(100 * 512, &old);
    let mut new = pattern(3 * 512, 77);
    good(&run(&t, &cdb16(0x8B, 0, 100, 3), &mut new));
    let want: Vec<u8> = old.iter().zip(&new).map(|(a, b)| a | b).collect();
    assert_eq!(&t.backend().contents()[100 * 512..103 * 512], &want[..]);
}

#[test]
fn orwrite_fua_and_wce_behave_as_for_write() {
    let t = target();
    good(&run(&t, &cdb16(0x8B, 0x08, 0, 1), &mut vec![1; 512]));
    assert_eq!(t.backend().stats().fua_writes, 1, "FUA");
    let mut info = DiskInfo::simple(512, 64);
    info.write_cache = WriteCache::WriteThrough;
    let t = target_with(MemBackend::new(info));
    good(&run(&t, &cdb16(0x8B, 0, 0, 1), &mut vec![1; 512]));
    assert_eq!(t.backend().stats().fua_writes, 1, "WCE = 0");
}

#[test]
fn orwrite_larger_than_a_chunk_is_done_in_pieces_under_one_lock() {
    let mut info = DiskInfo::simple(512, 8192);
    info.max_transfer = Blocks(4096);
    let t = target_with(MemBackend::new(info));
    t.backend().poke(0, &vec![0x80; 8192 * 512]);
    let mut d = vec![0x01u8; 3000 * 512];
    good(&run(&t, &cdb16(0x8B, 0, 5, 3000), &mut d));
    let disk = t.backend().contents();
    assert!(disk[5 * 512..3005 * 512].iter().all(|&b| b == 0x81));
    assert_eq!(disk[5 * 512 - 1], 0x80);
    assert_eq!(disk[3005 * 512], 0x80);
    // 1 MiB chunks of 512-byte blocks: 2048 + 952.
    let s = t.backend().stats();
    assert_eq!((s.reads, s.writes), (2, 2));
}

#[test]
fn orwrite_errors() {
    let t = target();
    // Zero blocks: nothing happens.
    good(&run(&t, &cdb16(0x8B, 0, 0, 0), &mut vec![]));
    let c = run(&t, &cdb16(0x8B, 0, 2047, 2), &mut vec![1; 1024]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(sks(&c), [0, 0, 0]);
    // Above MAXIMUM TRANSFER LENGTH (1024), and a short data-out: the
    // TRANSFER LENGTH field at byte 10.
    let c = run(&t, &cdb16(0x8B, 0, 0, 1025), &mut vec![1; 1025 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 10]);
    let c = run(&t, &cdb16(0x8B, 0, 0, 2), &mut vec![1; 1023]);
    assert_eq!(sks(&c), [0xC0, 0, 10]);
    // ORPROTECT (byte 1 bits 7-5): pointer at bit 7.
    let c = run(&t, &cdb16(0x8B, 0x20, 0, 1), &mut vec![1; 512]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
    // Byte 1 bits 2-0 are reserved; so are bits 7-5 of byte 14, where
    // ORWRITE (32) has no counterpart either (its BMOP is byte 2 of a
    // 32-byte CDB).
    let c = run(&t, &cdb16(0x8B, 0x02, 0, 1), &mut vec![1; 512]);
    assert_eq!(sks(&c), [0xC9, 0, 1]);
    let mut cdb = cdb16(0x8B, 0, 0, 1);
    cdb[14] = 0x20;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![1; 512])), [0xCD, 0, 14]);
    let s = t.backend().stats();
    assert_eq!((s.reads, s.writes), (0, 0));
    // A read-only device: DATA PROTECT, WRITE PROTECTED.
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &cdb16(0x8B, 0, 0, 1), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
    assert_eq!(t.backend().stats().reads, 0);
}

#[test]
fn orwrite_read_error_writes_nothing() {
    let t = target();
    t.backend()
        .fail_next(BackendError::at(BackendErrorKind::Medium, Lba(21)));
    let c = run(&t, &cdb16(0x8B, 0, 20, 4), &mut vec![0xFF; 2048]);
    assert_eq!(triple(&c), (0x03, 0x11, 0x00));
    assert_eq!(&c.sense()[3..7], &21u32.to_be_bytes());
    assert_eq!(t.backend().stats().writes, 0);
    assert!(t.backend().contents().iter().all(|&b| b == 0));
}

#[test]
fn concurrent_orwrites_on_one_range_never_lose_bits() {
    // Two ORWRITEs of disjoint bits over the same zeroed blocks: serially
    // the result is every bit set. Without the exclusive lock across read
    // and write, both read zeros and the second write drops the first's
    // bits.
    let t = target_with(MemBackend::with_discard(64).with_yields());
    let mut a = vec![0x0Fu8; 4 * 512];
    let mut b = vec![0xF0u8; 4 * 512];
    let results = block_on(join_all(vec![
        t.execute(N0, &cdb16(0x8B, 0, 8, 4), &mut a),
        t.execute(N0, &cdb16(0x8B, 0, 10, 4), &mut b),
    ]));
    for c in &results {
        good(c);
    }
    let disk = t.backend().contents();
    assert!(disk[8 * 512..10 * 512].iter().all(|&x| x == 0x0F));
    assert!(
        disk[10 * 512..12 * 512].iter().all(|&x| x == 0xFF),
        "lost update: {:02x}",
        disk[10 * 512]
    );
    assert!(disk[12 * 512..14 * 512].iter().all(|&x| x == 0xF0));
}

#[test]
fn a_read_never_sees_half_of_an_orwrite_or_compare_and_write() {
    // The yielding backend writes a request in two halves. A READ started
    // at every point of an ORWRITE / COMPARE AND WRITE of the same four
    // blocks returns them all old or all new: reads hold a shared lock,
    // which waits for the exclusive one.
    for delay in 0..16 {
        let t = target_with(MemBackend::with_discard(64).with_yields());
        let mut or = vec![0xFF; 4 * 512];
        let mut back = vec![0xEE; 4 * 512];
        let r = block_on(join_all(vec![
            after(0, t.execute(N0, &cdb16(0x8B, 0, 0, 4), &mut or)),
            after(delay, t.execute(N0, &cdb10(0x28, 0, 0, 4), &mut back)),
        ]));
        good(&r[0]);
        good(&r[1]);
        let old = back.iter().all(|&b| b == 0);
        assert!(
            old || back.iter().all(|&b| b == 0xFF),
            "ORWRITE, delay {delay}"
        );

        let t = target_with(MemBackend::with_discard(64).with_yields());
        let mut caw = vec![0u8; 4 * 512];
        caw.extend_from_slice(&[0x77; 4 * 512]);
        let mut back = vec![0xEE; 4 * 512];
        let r = block_on(join_all(vec![
            after(0, t.execute(N0, &caw_cdb(0, 4), &mut caw)),
            after(delay, t.execute(N0, &cdb10(0x28, 0, 0, 4), &mut back)),
        ]));
        good(&r[0]);
        good(&r[1]);
        let old = back.iter().all(|&b| b == 0);
        assert!(old || back.iter().all(|&b| b == 0x77), "CAW, delay {delay}");
    }
}

// ------------------------------------------------------------ WRITE ATOMIC

fn atomic_cdb(b1: u8, lba: u64, blocks: u16) -> [u8; 16] {
    // SBC-4 WRITE ATOMIC (16): LBA at 2, ATOMIC BOUNDARY at 10, TRANSFER
    // LENGTH (two bytes) at 12.
    let mut c = [0u8; 16];
    c[0] = 0x9C;
    c[1] = b1;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[12..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn write_atomic_writes_the_blocks_in_one_backend_call() {
    let t = target();
    let mut d = pattern(128 * 512, 31);
    good(&run(&t, &atomic_cdb(0, 10, 128), &mut d));
    assert_eq!(&t.backend().contents()[10 * 512..138 * 512], &d[..]);
    let s = t.backend().stats();
    assert_eq!((s.writes, s.fua_writes, s.reads), (1, 0, 0));
    // FUA, and WCE = 0, pass `fua` as WRITE does.
    good(&run(&t, &atomic_cdb(0x08, 0, 1), &mut vec![1; 512]));
    assert_eq!(t.backend().stats().fua_writes, 1);
    // Zero blocks: not an error, nothing written.
    good(&run(&t, &atomic_cdb(0, 0, 0), &mut vec![]));
    assert_eq!(t.backend().stats().writes, 2);
}

#[test]
fn write_atomic_limits_follow_the_block_limits_page() {
    // (block size, max transfer, exponent) -> MAXIMUM ATOMIC TRANSFER
    // LENGTH, ATOMIC ALIGNMENT = ATOMIC TRANSFER LENGTH GRANULARITY.
    let cases = [
        ((512, 1024, 0), (128, 0)),
        ((512, 64, 0), (64, 0)),
        ((4096, 1024, 0), (16, 0)),
        ((512, 1024, 3), (128, 8)),
        ((512, 100, 3), (96, 8)),
        // A 64 KiB logical block: one block, the constant notwithstanding.
        ((65536, 8, 0), (1, 0)),
        // A physical block above 64 KiB: one physical block.
        ((4096, 1024, 5), (32, 32)),
    ];
    for ((bs, max, exp), (atomic, gran)) in cases {
        let mut info = DiskInfo::simple(bs, 4096);
        info.max_transfer = Blocks(max);
        info.physical_exponent = exp;
        let t = geometry_target(info);
        let mut buf = vec![0; 64];
        let c = block_on(t.execute(N0, &[0x12, 0x01, 0xB0, 0, 64, 0], &mut buf));
        good(&c);
        let want: Vec<u8> = [atomic as u32, gran, gran]
            .iter()
            .flat_map(|v: &u32| v.to_be_bytes())
            .collect();
        assert_eq!(&buf[44..56], &want[..], "{bs} {max} {exp}");
        assert_eq!(crate::pages::max_atomic_blocks(&info), atomic);
        assert!(atomic <= max && (gran == 0 || atomic % u64::from(gran) == 0));
    }
}

#[test]
fn write_atomic_errors_point_at_their_fields() {
    let t = target();
    // Above MAXIMUM ATOMIC TRANSFER LENGTH (128): TRANSFER LENGTH, byte 12.
    let c = run(&t, &atomic_cdb(0, 0, 129), &mut vec![1; 129 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 12]);
    // ATOMIC BOUNDARY other than zero: MAXIMUM ATOMIC BOUNDARY SIZE is 0.
    let mut cdb = atomic_cdb(0, 0, 1);
    cdb[11] = 1;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![1; 512])), [0xC0, 0, 10]);
    // WRPROTECT, and the reserved bits 2-0 of byte 1 and 7-5 of byte 14.
    let c = run(&t, &atomic_cdb(0x40, 0, 1), &mut vec![1; 512]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
    let c = run(&t, &atomic_cdb(0x02, 0, 1), &mut vec![1; 512]);
    assert_eq!(sks(&c), [0xC9, 0, 1]);
    let mut cdb = atomic_cdb(0, 0, 1);
    cdb[14] = 0x80;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![1; 512])), [0xCF, 0, 14]);
    // Data-out shorter than the transfer: TRANSFER LENGTH again.
    let c = run(&t, &atomic_cdb(0, 0, 2), &mut vec![1; 600]);
    assert_eq!(sks(&c), [0xC0, 0, 12]);
    // Past the end.
    let c = run(&t, &atomic_cdb(0, 2047, 2), &mut vec![1; 1024]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(sks(&c), [0, 0, 0]);
    assert_eq!(t.backend().stats().writes, 0);
    // Read-only.
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &atomic_cdb(0, 0, 1), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
}

#[test]
fn write_atomic_on_512e_is_whole_physical_blocks() {
    // ATOMIC ALIGNMENT 8: an LBA not a multiple of 8 is an invalid field
    // at the LOGICAL BLOCK ADDRESS (byte 2); ATOMIC TRANSFER LENGTH
    // GRANULARITY 8: a length not a multiple of 8, at TRANSFER LENGTH.
    let t = target_with(MemBackend::new(disk_512e(1, 0)));
    let c = run(&t, &atomic_cdb(0, 4, 8), &mut vec![1; 8 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 2]);
    let c = run(&t, &atomic_cdb(0, 8, 12), &mut vec![1; 12 * 512]);
    assert_eq!(sks(&c), [0xC0, 0, 12]);
    assert_eq!(t.backend().stats().writes, 0);
    let mut d = pattern(16 * 512, 9);
    good(&run(&t, &atomic_cdb(0, 8, 16), &mut d));
    assert_eq!(&t.backend().contents()[8 * 512..24 * 512], &d[..]);
}

#[test]
fn write_atomic_backend_error_is_reported_with_its_lba() {
    // The target has no undo: what the blocks hold after a failed backend
    // write is up to the backend (the in-memory one fails before copying).
    let t = target();
    t.backend()
        .fail_next(BackendError::at(BackendErrorKind::Medium, Lba(5)));
    let c = run(&t, &atomic_cdb(0, 4, 4), &mut vec![0xAB; 2048]);
    assert_eq!(triple(&c), (0x03, 0x0C, 0x00));
    assert_eq!(&c.sense()[3..7], &5u32.to_be_bytes());
    assert!(t.backend().contents().iter().all(|&b| b == 0));
}

#[test]
fn write_atomic_is_never_torn_by_an_overlapping_write() {
    // WRITE ATOMIC of blocks 0-3 (AAh) races a WRITE of blocks 2-3 (BBh)
    // started at every point. The yielding backend writes each request in
    // two halves; the only outcomes allowed are the two serial ones.
    // Without the exclusive lock, the WRITE's first half lands under the
    // atomic write's second half and its second half after it: block 2
    // AAh, block 3 BBh.
    for delay in 0..16 {
        let t = target_with(MemBackend::with_discard(64).with_yields());
        let mut a = vec![0xAA; 4 * 512];
        let mut w = vec![0xBB; 2 * 512];
        let r = block_on(join_all(vec![
            after(0, t.execute(N0, &atomic_cdb(0, 0, 4), &mut a)),
            after(delay, t.execute(N0, &cdb10(0x2A, 0, 2, 2), &mut w)),
        ]));
        good(&r[0]);
        good(&r[1]);
        let disk = t.backend().contents();
        assert!(disk[..2 * 512].iter().all(|&b| b == 0xAA));
        let tail = &disk[2 * 512..4 * 512];
        assert!(
            tail.iter().all(|&b| b == 0xAA) || tail.iter().all(|&b| b == 0xBB),
            "delay {delay}: torn, block 2 {:02x}, block 3 {:02x}",
            tail[0],
            tail[512]
        );
    }
}

#[test]
fn a_read_sees_all_or_none_of_a_write_atomic() {
    // SBC-4 atomic writes: a read overlapping an atomic write returns old
    // data until it completes, then new, never a mix.
    for delay in 0..16 {
        let t = target_with(MemBackend::with_discard(64).with_yields());
        let mut a = vec![0xC3; 4 * 512];
        let mut back = vec![0xEE; 4 * 512];
        let r = block_on(join_all(vec![
            after(0, t.execute(N0, &atomic_cdb(0, 0, 4), &mut a)),
            after(delay, t.execute(N0, &cdb10(0x28, 0, 0, 4), &mut back)),
        ]));
        good(&r[0]);
        good(&r[1]);
        let old = back.iter().all(|&b| b == 0);
        assert!(old || back.iter().all(|&b| b == 0xC3), "delay {delay}");
    }
}

// ------------------------------------------------------------------ VERIFY

#[test]
fn verify_bytchk_0_reads_the_medium() {
    let t = target();
    good(&run(&t, &cdb10(0x2F, 0, 0, 100), &mut vec![]));
    assert!(t.backend().stats().reads >= 1);
    t.backend()
        .fail_next(BackendError::at(BackendErrorKind::Medium, Lba(3)));
    let c = run(&t, &cdb16(0x8F, 0, 0, 100), &mut vec![]);
    assert_eq!(triple(&c), (0x03, 0x11, 0x00));
}

#[test]
fn verify_bytchk_1_compares_data_out() {
    let t = target();
    let data = pattern(2048, 4);
    t.backend().poke(512, &data);
    good(&run(&t, &cdb10(0x2F, 0x02, 1, 4), &mut data.clone()));
    let mut bad = data.clone();
    bad[1500] ^= 1;
    let c = run(&t, &cdb16(0x8F, 0x02, 1, 4), &mut bad);
    assert_eq!(triple(&c), (0x0E, 0x1D, 0x00));
    assert_eq!(&c.sense()[3..7], &1500u32.to_be_bytes());
}

#[test]
fn verify_bytchk_3_compares_each_block_with_one() {
    let t = target();
    let block = pattern(512, 6);
    for i in 0..3 {
        t.backend().poke(i * 512, &block);
    }
    good(&run(&t, &cdb10(0x2F, 0x06, 0, 3), &mut block.clone()));
    let c = run(&t, &cdb10(0x2F, 0x06, 0, 4), &mut block.clone());
    assert_eq!(triple(&c), (0x0E, 0x1D, 0x00));
}

#[test]
fn verify_errors() {
    let t = target();
    let c = run(&t, &cdb10(0x2F, 0, 2000, 100), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    let c = run(&t, &cdb10(0x2F, 0x02, 0, 2), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xC0, 0, 7]);
}

// -------------------------------------------------------- WRITE AND VERIFY

#[test]
fn write_and_verify_writes_through_and_checks() {
    let t = target();
    let mut data = pattern(1024, 11);
    good(&run(&t, &cdb10(0x2E, 0x02, 3, 2), &mut data));
    good(&run(&t, &cdb16(0x8E, 0x00, 9, 2), &mut data));
    let d = t.backend().contents();
    assert_eq!(&d[3 * 512..5 * 512], &data[..]);
    assert_eq!(&d[9 * 512..11 * 512], &data[..]);
    let s = t.backend().stats();
    assert_eq!((s.writes, s.fua_writes), (2, 2));
    assert_eq!(s.reads, 2);
    let c = run(&t, &cdb10(0x2E, 0x02, 2047, 2), &mut data);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
}

#[test]
fn verify_12_compares_like_the_10_and_16_byte_forms() {
    // VERIFY (12): VRPROTECT | DPO | reserved | BYTCHK (2 bits) | obsolete,
    // 32-bit LBA at 2, 32-bit VERIFICATION LENGTH at 6.
    let t = target();
    let data = pattern(3 * 512, 21);
    t.backend().poke(7 * 512, &data);
    good(&run(&t, &cdb12(0xAF, 0x02, 7, 3), &mut data.clone()));
    good(&run(&t, &cdb12(0xAF, 0x00, 7, 3), &mut vec![]));
    let mut block = data[..512].to_vec();
    let c = run(&t, &cdb12(0xAF, 0x06, 7, 1), &mut block);
    good(&c);
    let mut bad = data.clone();
    bad[1029] ^= 0x40;
    let c = run(&t, &cdb12(0xAF, 0x02, 7, 3), &mut bad);
    assert_eq!(triple(&c), (0x0E, 0x1D, 0x00));
    assert_eq!(c.sense()[0], 0xF0, "VALID");
    assert_eq!(&c.sense()[3..7], &1029u32.to_be_bytes());
}

#[test]
fn verify_12_errors_point_at_their_fields() {
    let t = target();
    // Past the end: LOGICAL BLOCK ADDRESS OUT OF RANGE, no field pointer.
    let c = run(&t, &cdb12(0xAF, 0, 2046, 3), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    assert_eq!(sks(&c), [0, 0, 0]);
    // BYTCHK 01b with a length above MAXIMUM TRANSFER LENGTH (1024): the
    // 32-bit VERIFICATION LENGTH field at byte 6.
    let c = run(&t, &cdb12(0xAF, 0x02, 0, 1025), &mut vec![0; 1025 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 6]);
    // Data-out shorter than the verification length: the same field.
    let c = run(&t, &cdb12(0xAF, 0x02, 0, 2), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xC0, 0, 6]);
    // VRPROTECT: SKSV | C/D | BPV | bit 7, byte 1.
    let c = run(&t, &cdb12(0xAF, 0x40, 0, 1), &mut vec![]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
    // BYTCHK 10b is reserved: pointer at the field's MSB, bit 2.
    let c = run(&t, &cdb12(0xAF, 0x04, 0, 1), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xCA, 0, 1]);
    // Byte 1 bit 3 is reserved; byte 10 bits 7-5 are not examined.
    let c = run(&t, &cdb12(0xAF, 0x08, 0, 1), &mut vec![]);
    assert_eq!(sks(&c), [0xCB, 0, 1]);
    let mut cdb = cdb12(0xAF, 0, 0, 1);
    cdb[10] = 0x80;
    let c = run(&t, &cdb, &mut vec![]);
    assert_eq!(sks(&c), [0xCF, 0, 10]);
    assert_eq!(t.backend().stats().reads, 0);
}

#[test]
fn write_and_verify_12_writes_through_and_checks() {
    let t = target();
    let mut data = pattern(2 * 512, 23);
    good(&run(&t, &cdb12(0xAE, 0x02, 40, 2), &mut data));
    assert_eq!(&t.backend().contents()[40 * 512..42 * 512], &data[..]);
    let s = t.backend().stats();
    assert_eq!((s.writes, s.fua_writes, s.reads), (1, 1, 1));
    // Past the end, above the maximum transfer, WRPROTECT.
    let c = run(&t, &cdb12(0xAE, 0, 2047, 2), &mut data);
    assert_eq!(triple(&c), (0x05, 0x21, 0x00));
    let c = run(&t, &cdb12(0xAE, 0, 0, 1025), &mut vec![0; 1025 * 512]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 6]);
    let c = run(&t, &cdb12(0xAE, 0x20, 0, 1), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
    // BYTCHK is one bit here: bit 2 is reserved.
    let c = run(&t, &cdb12(0xAE, 0x04, 0, 1), &mut vec![0; 512]);
    assert_eq!(sks(&c), [0xCA, 0, 1]);
    assert_eq!(t.backend().stats().writes, 1);
}

#[test]
fn write_and_verify_12_on_a_read_only_device_is_data_protect() {
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &cdb12(0xAE, 0x02, 0, 1), &mut vec![1; 512]);
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
    assert_eq!(t.backend().stats().writes, 0);
    // VERIFY (12) only reads: allowed.
    good(&run(&t, &cdb12(0xAF, 0x02, 0, 1), &mut vec![0; 512]));
}

// ------------------------------------------ START STOP / PREVENT / FORMAT

#[test]
fn start_stop_unit() {
    let t = target();
    good(&run(&t, &[0x1B, 0, 0, 0, 0x00, 0], &mut vec![]));
    assert_eq!(t.backend().stats().flushes, 1, "stop flushes");
    good(&run(&t, &[0x1B, 0, 0, 0, 0x04, 0], &mut vec![]));
    assert_eq!(t.backend().stats().flushes, 1, "NO_FLUSH");
    good(&run(&t, &[0x1B, 0x01, 0, 0, 0x01, 0], &mut vec![]));
    // Still ready after a stop: TUR passes.
    good(&run(&t, &[0; 6], &mut vec![]));
    let c = run(&t, &[0x1B, 0, 0, 0, 0x02, 0], &mut vec![]);
    assert_eq!(sks(&c), [0xC9, 0, 4], "LOEJ");
    let c = run(&t, &[0x1B, 0, 0, 0, 0x11, 0], &mut vec![]);
    assert_eq!(sks(&c), [0xCF, 0, 4], "POWER CONDITION");
}

#[test]
fn prevent_allow_medium_removal() {
    let t = target();
    good(&run(&t, &[0x1E, 0, 0, 0, 1, 0], &mut vec![]));
    good(&run(&t, &[0x1E, 0, 0, 0, 0, 0], &mut vec![]));
    let c = run(&t, &[0x1E, 0, 0, 0, 2, 0], &mut vec![]);
    assert_eq!(sks(&c), [0xC9, 0, 4]);
}

#[test]
fn format_unit_deallocates_a_thin_device() {
    let t = target();
    t.backend().poke(0, &[0x55; 4096]);
    good(&run(&t, &[0x04, 0, 0, 0, 0, 0], &mut vec![]));
    assert!(t.backend().contents().iter().all(|&b| b == 0));
    let c = run(&t, &[0x04, 0x10, 0, 0, 0, 0], &mut vec![]);
    assert_eq!(sks(&c), [0xCC, 0, 1], "FMTDATA");
    let c = run(&t, &[0x04, 0x40, 0, 0, 0, 0], &mut vec![]);
    assert_eq!(sks(&c), [0xCF, 0, 1], "FMTPINFO");
}

// --------------------------------------------------------- READ DEFECT DATA

fn rdd10(b2: u8, alloc: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x37;
    c[2] = b2;
    c[7..9].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn rdd12(b1: u8, index: u32, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xB7;
    c[1] = b1;
    c[2..6].copy_from_slice(&index.to_be_bytes());
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[test]
fn read_defect_data_10_returns_an_empty_list_in_the_format_asked_for() {
    // SBC-3 READ DEFECT DATA (10) parameter data: reserved byte, then
    // reserved (7-5) | PLISTV | GLISTV | DEFECT LIST FORMAT, then the
    // two-byte DEFECT LIST LENGTH, zero: no address descriptors.
    let t = target();
    let mut buf = vec![0xEE; 16];
    // REQ_GLIST, bytes from index format (100b), as smartctl asks.
    let c = run(&t, &rdd10(0x0C, 16), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 4);
    assert_eq!(&buf[..5], &[0x00, 0x0C, 0x00, 0x00, 0xEE]);
    // Both lists, short block format.
    let c = run(&t, &rdd10(0x18, 16), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &[0, 0x18, 0, 0]);
    // Neither list: the header alone, PLISTV = GLISTV = 0.
    let c = run(&t, &rdd10(0x05, 16), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &[0, 0x05, 0, 0]);
    // Every defined format (and vendor specific 110b) is echoed.
    for f in 0..=6u8 {
        let c = run(&t, &rdd10(0x10 | f, 16), &mut buf);
        good(&c);
        assert_eq!(&buf[..4], &[0, 0x10 | f, 0, 0], "format {f}");
    }
    // Truncated to the allocation length.
    let c = run(&t, &rdd10(0x08, 2), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 2);
    let c = run(&t, &rdd10(0x08, 0), &mut buf);
    assert_eq!(c.data_in_len, 0);
    assert_eq!(t.backend().stats(), Default::default());
}

#[test]
fn read_defect_data_12_has_an_eight_byte_header() {
    // SBC-3/SBC-4 READ DEFECT DATA (12) parameter data: PLISTV | GLISTV |
    // format in byte 1, GENERATION CODE (0000h: not supported) in 2-3,
    // four-byte DEFECT LIST LENGTH in 4-7.
    let t = target();
    let mut buf = vec![0xEE; 16];
    let c = run(&t, &rdd12(0x0B, 0, 16), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 8);
    assert_eq!(&buf[..9], &[0, 0x0B, 0, 0, 0, 0, 0, 0, 0xEE]);
    // Any ADDRESS DESCRIPTOR INDEX is at or past the (zero) descriptors:
    // a zero-length list.
    let c = run(&t, &rdd12(0x1D, 0xFFFF_FFFF, 16), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &[0, 0x1D, 0, 0, 0, 0, 0, 0]);
    // The length-probing call of SBC-4 (allocation length 8) and a short one.
    let c = run(&t, &rdd12(0x08, 0, 8), &mut buf);
    assert_eq!(c.data_in_len, 8);
    let c = run(&t, &rdd12(0x08, 0, 3), &mut buf);
    assert_eq!(c.data_in_len, 3);
}

#[test]
fn read_defect_data_errors() {
    let t = target();
    // DEFECT LIST FORMAT 111b is reserved: pointer at the field's MSB.
    let c = run(&t, &rdd10(0x1F, 16), &mut vec![0; 16]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xCA, 0, 2]);
    let c = run(&t, &rdd12(0x0F, 0, 16), &mut vec![0; 16]);
    assert_eq!(sks(&c), [0xCA, 0, 1]);
    // Reserved bits: byte 1 of (10), the three above REQ_PLIST, byte 10
    // of (12).
    let mut cdb = rdd10(0x08, 16);
    cdb[1] = 0x01;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![0; 16])), [0xC8, 0, 1]);
    assert_eq!(
        sks(&run(&t, &rdd10(0x28, 16), &mut vec![0; 16])),
        [0xCD, 0, 2]
    );
    let mut cdb = rdd12(0x08, 0, 16);
    cdb[10] = 0x02;
    assert_eq!(sks(&run(&t, &cdb, &mut vec![0; 16])), [0xC9, 0, 10]);
}

#[test]
fn read_defect_data_works_on_a_read_only_device() {
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let mut buf = vec![0; 8];
    let c = run(&t, &rdd10(0x0C, 8), &mut buf);
    good(&c);
    assert_eq!(&buf[..4], &[0, 0x0C, 0, 0]);
}

// ---------------------------------------------------------- REPORT LUNS

#[test]
fn report_luns_lists_lun_zero() {
    let t = target();
    let mut buf = vec![0xEE; 32];
    let c = run(&t, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &mut buf);
    good(&c);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

// ------------------------------------- REPORT SUPPORTED OPERATION CODES

fn rsoc(options: u8, opcode: u8, sa: u16, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0C;
    c[2] = options;
    c[3] = opcode;
    c[4..6].copy_from_slice(&sa.to_be_bytes());
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[test]
fn rsoc_all_commands() {
    // SPC-4 6.35.2: COMMAND DATA LENGTH then 8-byte descriptors.
    let t = target();
    let mut buf = vec![0; 4096];
    let c = run(&t, &rsoc(0, 0, 0, 4096), &mut buf);
    good(&c);
    let n = crate::cdb::OPCODES.len();
    assert_eq!(c.data_in_len as usize, 4 + 8 * n);
    assert_eq!(&buf[..4], &((8 * n) as u32).to_be_bytes());
    // First descriptor: TEST UNIT READY, 6 bytes.
    assert_eq!(&buf[4..12], &[0x00, 0, 0, 0, 0, 0, 0, 6]);
    // READ CAPACITY (16): SERVACTV, service action 10h.
    let d = buf[4..4 + 8 * n].chunks(8).find(|d| d[0] == 0x9E).unwrap();
    assert_eq!(d, &[0x9E, 0, 0, 0x10, 0, 0x01, 0, 16]);
    assert!(buf[4..4 + 8 * n].chunks(8).any(|d| d[0] == 0x42));
    // GET LBA STATUS; SANITIZE OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE
    // (no CRYPTOGRAPHIC ERASE).
    let descs: Vec<&[u8]> = buf[4..4 + 8 * n].chunks(8).collect();
    assert!(descs.contains(&&[0x9E, 0, 0, 0x12, 0, 0x01, 0, 16][..]));
    let sanitize: Vec<u8> = descs
        .iter()
        .filter(|d| d[0] == 0x48)
        .map(|d| d[3])
        .collect();
    assert_eq!(sanitize, [0x01, 0x02, 0x1F]);
    assert!(
        descs
            .iter()
            .filter(|d| d[0] == 0x48)
            .all(|d| d[5] == 0x01 && d[7] == 10)
    );
    // Without discard, UNMAP and BLOCK ERASE are not listed.
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 8)));
    let c = run(&t, &rsoc(0, 0, 0, 4096), &mut buf);
    assert_eq!(c.data_in_len as usize, 4 + 8 * (n - 2));
    let descs: Vec<&[u8]> = buf[4..4 + 8 * (n - 2)].chunks(8).collect();
    assert!(!descs.iter().any(|d| d[0] == 0x42));
    assert!(!descs.iter().any(|d| d[0] == 0x48 && d[3] == 0x02));
}

#[test]
fn rsoc_all_commands_with_timeouts() {
    let t = target();
    let mut buf = vec![0; 8192];
    let c = run(&t, &rsoc(0x80, 0, 0, 8192), &mut buf);
    let n = crate::cdb::OPCODES.len();
    assert_eq!(c.data_in_len as usize, 4 + 20 * n);
    assert_eq!(
        &buf[4..24],
        &[
            0, 0, 0, 0, 0, 0x02, 0, 6, 0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
}

#[test]
fn rsoc_one_command_gives_usage_map() {
    // SPC-4 6.35.3: SUPPORT 011b, CDB SIZE, CDB USAGE DATA.
    let t = target();
    let mut buf = vec![0; 64];
    let c = run(&t, &rsoc(1, 0x28, 0, 64), &mut buf);
    good(&c);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &[
            0, 0x03, 0, 10, 0x28, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x04
        ]
    );
    let c = run(&t, &rsoc(2, 0x9E, 0x10, 64), &mut buf);
    good(&c);
    assert_eq!(&buf[..6], &[0, 0x03, 0, 16, 0x9E, 0x10]);
    // Not supported: SUPPORT 001b.
    let c = run(&t, &rsoc(1, 0xC1, 0, 64), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &[0, 0x01, 0, 0]);
    // Option 1 for an opcode with service actions.
    let c = run(&t, &rsoc(1, 0x9E, 0, 64), &mut buf);
    assert_eq!(sks(&c), [0xCA, 0, 2]);
}

#[test]
fn rsoc_usage_maps_of_verify_12_pre_fetch_defect_data_orwrite_and_atomic() {
    // CDB USAGE DATA written out from the CDB tables: a set bit for every
    // field bit the target examines (reserved, obsolete and GROUP NUMBER
    // bits above 4 are not; CONTROL is NACA only).
    const F: u8 = 0xFF;
    let cases: [(u8, &[u8]); 8] = [
        // PRE-FETCH (10): IMMED; LBA; GROUP NUMBER; PREFETCH LENGTH.
        (0x34, &[0x34, 0x02, F, F, F, F, 0x1F, F, F, 0x04]),
        // READ DEFECT DATA (10): REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT;
        // ALLOCATION LENGTH.
        (0x37, &[0x37, 0, 0x1F, 0, 0, 0, 0, F, F, 0x04]),
        // ORWRITE (16): ORPROTECT, DPO, FUA; LBA; TRANSFER LENGTH; GROUP.
        (
            0x8B,
            &[0x8B, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0x04],
        ),
        // PRE-FETCH (16).
        (
            0x90,
            &[0x90, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0x04],
        ),
        // WRITE ATOMIC (16): WRPROTECT, DPO, FUA; LBA; ATOMIC BOUNDARY;
        // TRANSFER LENGTH; GROUP.
        (
            0x9C,
            &[0x9C, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, 0x04],
        ),
        // WRITE AND VERIFY (12): WRPROTECT, DPO, BYTCHK (one bit).
        (0xAE, &[0xAE, 0xF2, F, F, F, F, F, F, F, F, 0x1F, 0x04]),
        // VERIFY (12): VRPROTECT, DPO, BYTCHK (two bits).
        (0xAF, &[0xAF, 0xF6, F, F, F, F, F, F, F, F, 0x1F, 0x04]),
        // READ DEFECT DATA (12): the byte-2 fields of (10) in byte 1;
        // ADDRESS DESCRIPTOR INDEX; ALLOCATION LENGTH.
        (0xB7, &[0xB7, 0x1F, F, F, F, F, F, F, F, F, 0, 0x04]),
    ];
    let t = target();
    let mut buf = vec![0; 64];
    for (op, usage) in cases {
        let c = run(&t, &rsoc(1, op, 0, 64), &mut buf);
        good(&c);
        let mut want = vec![0, 0x03, 0, usage.len() as u8];
        want.extend_from_slice(usage);
        assert_eq!(&buf[..c.data_in_len as usize], &want[..], "{op:02x}");
    }
}

#[test]
fn rsoc_usage_map_matches_enforcement() {
    // Every bit not in the usage map is refused; every bit in it passes
    // the first parsing step.
    for info in crate::cdb::OPCODES {
        let mut cdb = vec![0u8; info.cdb_len()];
        cdb[0] = info.opcode;
        if let Some(sa) = info.service_action {
            cdb[1] = sa;
        }
        for byte in 1..cdb.len() {
            for bit in 0..8 {
                let mut c = cdb.clone();
                c[byte] ^= 1 << bit;
                if info.service_action.is_some() && byte == 1 && bit < 5 {
                    continue;
                }
                let r = crate::cdb::lookup(&c, true);
                if info.usage[byte] & (1 << bit) == 0 {
                    assert!(r.is_err(), "{} byte {byte} bit {bit}", info.name);
                } else if !(byte == cdb.len() - 1 && bit == 2) {
                    assert!(r.is_ok(), "{} byte {byte} bit {bit}", info.name);
                }
            }
        }
    }
}

// ----------------------------------------------------------- test backends

/// Reports geometry; every I/O fails. For capacity edge cases without
/// allocating the disk.
#[derive(Debug)]
struct Geometry(DiskInfo);

impl BlockBackend for Geometry {
    fn info(&self) -> DiskInfo {
        self.0
    }
    async fn read(&self, _: Lba, _: crate::BufMut<'_>) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn write(&self, _: Lba, _: crate::BufRef<'_>, _: bool) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn flush(&self) -> crate::BackendResult {
        Ok(())
    }
    async fn discard(&self, _: Lba, _: Blocks) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn write_zeroes(&self, _: Lba, _: Blocks, _: bool) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
}

#[test]
fn write_through_device_defaults_wce_off() {
    let mut info = DiskInfo::simple(512, 64);
    info.write_cache = WriteCache::WriteThrough;
    let t = target_with(MemBackend::new(info));
    assert!(!t.write_cache_enabled());
    good(&run(&t, &cdb10(0x2A, 0, 0, 1), &mut vec![0; 512]));
    assert_eq!(t.backend().stats().fua_writes, 1);
}

// ----------------------------------------------------------- GET LBA STATUS

/// Attach `b` and consume the power-on attention of nexus 0.
fn attach<B: BlockBackend>(t: Target<B>) -> Target<B> {
    let c = run(&t, &[0; 6], &mut Vec::new());
    assert_eq!(triple(&c), (0x06, 0x29, 0x00));
    t
}

fn gls(lba: u64, alloc: u32) -> [u8; 16] {
    cdb16(0x9E, 0x12, lba, alloc)
}

/// GET LBA STATUS parameter data (SBC-3 5.6.2, tables 44-45): PARAMETER
/// DATA LENGTH, four reserved bytes, then per descriptor LBA (8), NUMBER
/// OF LOGICAL BLOCKS (4), PROVISIONING STATUS (byte 12), three reserved.
fn lba_status(descs: &[(u64, u32, u8)]) -> Vec<u8> {
    let mut d = ((4 + 16 * descs.len()) as u32).to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 4]);
    for &(lba, blocks, status) in descs {
        d.extend_from_slice(&lba.to_be_bytes());
        d.extend_from_slice(&blocks.to_be_bytes());
        d.extend_from_slice(&[status, 0, 0, 0]);
    }
    d
}

fn ext(lba: u64, blocks: u64, state: BlockState) -> BlockExtent {
    BlockExtent {
        lba: Lba(lba),
        blocks: Blocks(blocks),
        state,
    }
}

#[test]
fn get_lba_status_merges_runs_and_reports_deallocated() {
    // A thin disk starts deallocated. Blocks 8..12 written, 12..16 zeroed
    // without UNMAP (allocated zeros: mapped, merged with 8..12), 20..24
    // written then unmapped (deallocated again).
    let t = target();
    good(&run(&t, &cdb10(0x2A, 0, 8, 4), &mut vec![1; 2048]));
    good(&run(&t, &cdb10(0x41, 0, 12, 4), &mut vec![0; 512]));
    good(&run(&t, &cdb10(0x2A, 0, 20, 4), &mut vec![1; 2048]));
    let mut p = unmap_list(&[(20, 4)]);
    good(&run(&t, &unmap_cdb(p.len() as u16), &mut p));
    let mut buf = vec![0xEE; 128];
    let c = run(&t, &gls(4, 128), &mut buf);
    good(&c);
    let want = lba_status(&[(4, 4, 1), (8, 8, 0), (16, 2032, 1)]);
    assert_eq!(c.data_in_len, want.len() as u64);
    assert_eq!(&buf[..want.len()], &want[..]);
    assert_eq!(buf[want.len()], 0xEE);
}

#[test]
fn get_lba_status_fills_as_many_descriptors_as_fit() {
    let t = target();
    for lba in [2, 6, 10] {
        good(&run(&t, &cdb10(0x2A, 0, lba, 1), &mut vec![1; 512]));
    }
    let all = [
        (0, 2, 1),
        (2, 1, 0),
        (3, 3, 1),
        (6, 1, 0),
        (7, 3, 1),
        (10, 1, 0),
        (11, 2037, 1),
    ];
    let mut buf = vec![0xEE; 4096];
    let c = run(&t, &gls(0, 4096), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &lba_status(&all)[..]);
    // Room for two descriptors: two, and PARAMETER DATA LENGTH says two.
    buf.fill(0xEE);
    let c = run(&t, &gls(0, 40), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 40);
    assert_eq!(&buf[..40], &lba_status(&all[..2])[..]);
    assert_eq!(buf[40], 0xEE);
    // 39 bytes: no partial second descriptor.
    let c = run(&t, &gls(0, 39), &mut buf);
    assert_eq!(c.data_in_len, 24);
    assert_eq!(&buf[..24], &lba_status(&all[..1])[..]);
    // Less than one descriptor: the header says one needs 24 bytes.
    let c = run(&t, &gls(0, 8), &mut buf);
    assert_eq!(c.data_in_len, 8);
    assert_eq!(&buf[..8], &[0, 0, 0, 20, 0, 0, 0, 0]);
    // A data buffer shorter than the allocation length limits it too.
    let mut small = vec![0; 40];
    let c = run(&t, &gls(0, 4096), &mut small);
    assert_eq!(c.data_in_len, 40);
    assert_eq!(small, lba_status(&all[..2]));
    // Allocation length zero: nothing transferred, the backend not asked.
    let asked = t.backend().stats().block_status;
    let c = run(&t, &gls(0, 0), &mut buf);
    good(&c);
    assert_eq!(c.data_in_len, 0);
    assert_eq!(t.backend().stats().block_status, asked);
}

#[test]
fn get_lba_status_starting_lba_past_capacity_is_out_of_range() {
    let t = target();
    let mut buf = vec![0; 64];
    for lba in [2048, u64::MAX] {
        let c = run(&t, &gls(lba, 64), &mut buf);
        assert_eq!(triple(&c), (0x05, 0x21, 0x00), "lba {lba}");
    }
    let c = run(&t, &gls(2047, 64), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(2047, 1, 1)])[..]
    );
    // Byte 14 (SBC-4's REPORT TYPE) is reserved in SBC-3.
    let mut cdb = gls(0, 64);
    cdb[14] = 0x01;
    assert_eq!(sks(&run(&t, &cdb, &mut buf)), [0xC8, 0, 14]);
}

#[test]
fn provisioning_fields_agree_with_lba_status() {
    // Thin (LBPME=1, VPD B2h thin, LBPRZ): deallocated is reported.
    let t = target();
    let mut buf = vec![0; 64];
    good(&run(&t, &cdb16(0x9E, 0x10, 0, 32), &mut buf));
    assert_eq!(buf[14] & 0xC0, 0xC0, "LBPME, LBPRZ");
    assert_eq!(vpd(&t, 0xB2)[6], 0x02, "thin provisioned");
    let c = run(&t, &gls(0, 64), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 2048, 1)])[..]
    );
    // Fully provisioned (LBPME=0): a backend's deallocated blocks are
    // reported mapped.
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 64)));
    t.backend().set_state(Lba(10), 5, BlockState::Deallocated);
    good(&run(&t, &cdb16(0x9E, 0x10, 0, 32), &mut buf));
    assert_eq!(buf[14], 0, "LBPME 0");
    assert_eq!(vpd(&t, 0xB2)[6], 0x00, "no provisioning type");
    let c = run(&t, &gls(3, 64), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(3, 61, 0)])[..]
    );
}

#[test]
fn get_lba_status_default_answer_is_mapped_and_split_at_32_bits() {
    // Geometry does not implement block_status: the trait's default.
    let mut info = DiskInfo::simple(512, 0x1_0000_0001);
    info.max_transfer = Blocks(8);
    let t = attach(Target::new(Geometry(info), id()).unwrap());
    let mut buf = vec![0; 64];
    let c = run(&t, &gls(0, 64), &mut buf);
    good(&c);
    let want = lba_status(&[(0, 0xFFFF_FFFF, 0), (0xFFFF_FFFF, 2, 0)]);
    assert_eq!(&buf[..c.data_in_len as usize], &want[..]);
    // Room for one: the first 2^32 - 1 blocks; from LBA 5 the rest fits.
    let c = run(&t, &gls(0, 24), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 0xFFFF_FFFF, 0)])[..]
    );
    let c = run(&t, &gls(5, 24), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(5, 0xFFFF_FFFC, 0)])[..]
    );
}

/// A thin 512-byte disk whose `block_status` answers come from a script;
/// once it is used up, mapped extents of at most `piece` blocks (an empty
/// answer when `piece` is 0). Other I/O fails.
#[derive(Debug)]
struct Scripted {
    info: DiskInfo,
    answers: RefCell<VecDeque<Result<Vec<BlockExtent>, BackendError>>>,
    piece: u64,
    calls: Cell<u32>,
}

impl Scripted {
    fn new(
        blocks: u64,
        answers: Vec<Result<Vec<BlockExtent>, BackendError>>,
        piece: u64,
    ) -> Target<Self> {
        let mut info = DiskInfo::simple(512, blocks);
        info.discard = Some(DiscardInfo {
            granularity: Blocks(1),
            alignment: Lba(0),
            max_blocks: 64,
            max_descriptors: 4,
            zeroes: true,
        });
        let b = Self {
            info,
            answers: RefCell::new(answers.into()),
            piece,
            calls: Cell::new(0),
        };
        attach(Target::new(b, id()).unwrap())
    }
}

impl BlockBackend for Scripted {
    fn info(&self) -> DiskInfo {
        self.info
    }
    async fn read(&self, _: Lba, _: crate::BufMut<'_>) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn write(&self, _: Lba, _: crate::BufRef<'_>, _: bool) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn flush(&self) -> crate::BackendResult {
        Ok(())
    }
    async fn discard(&self, _: Lba, _: Blocks) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn write_zeroes(&self, _: Lba, _: Blocks, _: bool) -> crate::BackendResult {
        Err(BackendError::new(BackendErrorKind::Internal))
    }
    async fn block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        self.calls.set(self.calls.get() + 1);
        if let Some(a) = self.answers.borrow_mut().pop_front() {
            return a;
        }
        if self.piece == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![ext(
            lba.0,
            blocks.0.min(self.piece),
            BlockState::Mapped,
        )])
    }
}

#[test]
fn get_lba_status_refuses_malformed_backend_answers() {
    use BlockState::*;
    // Asked for 10..64 of a 64-block disk.
    let cases: Vec<(&str, Vec<BlockExtent>)> = vec![
        ("starts elsewhere", vec![ext(9, 4, Mapped)]),
        ("empty extent", vec![ext(10, 0, Mapped)]),
        ("gap", vec![ext(10, 2, Mapped), ext(13, 2, Mapped)]),
        ("overlap", vec![ext(10, 2, Deallocated), ext(11, 2, Mapped)]),
        ("past the range", vec![ext(10, 55, Mapped)]),
        (
            "overflowing",
            vec![ext(10, 2, Mapped), ext(12, u64::MAX, Zero)],
        ),
        ("nothing", vec![]),
    ];
    for (what, answer) in cases {
        let t = Scripted::new(64, vec![Ok(answer)], 0);
        let mut buf = vec![0xEE; 256];
        let c = run(&t, &gls(10, 256), &mut buf);
        assert_eq!(triple(&c), (0x04, 0x44, 0x00), "{what}");
        assert_eq!(c.data_in_len, 0, "{what}");
        assert!(buf.iter().all(|&b| b == 0xEE), "{what}: nothing sent");
    }
    // A broken answer after good ones fails the command as well.
    let t = Scripted::new(
        64,
        vec![Ok(vec![ext(10, 2, Mapped)]), Ok(vec![ext(13, 1, Mapped)])],
        0,
    );
    let c = run(&t, &gls(10, 256), &mut vec![0; 256]);
    assert_eq!(triple(&c), (0x04, 0x44, 0x00));
    // A backend error is reported as such (a medium error reading status
    // is an unrecovered read error, SBC-3 4.15 INFORMATION = LBA).
    let t = Scripted::new(
        64,
        vec![Err(BackendError::at(BackendErrorKind::Medium, Lba(12)))],
        0,
    );
    let c = run(&t, &gls(10, 256), &mut vec![0; 256]);
    assert_eq!(triple(&c), (0x03, 0x11, 0x00));
    assert_eq!(&c.sense()[3..7], &[0, 0, 0, 12]);
}

#[test]
fn get_lba_status_asks_again_after_a_short_answer() {
    use BlockState::*;
    // Answers of at most 5 blocks: asked again until the end, one run.
    let t = Scripted::new(64, vec![], 5);
    let mut buf = vec![0; 256];
    let c = run(&t, &gls(0, 256), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 64, 0)])[..]
    );
    assert_eq!(t.backend().calls.get(), 13);
    // Runs merge across answers; zero extents count as mapped.
    let t = Scripted::new(
        64,
        vec![
            Ok(vec![ext(0, 2, Deallocated)]),
            Ok(vec![ext(2, 3, Deallocated), ext(5, 1, Zero)]),
            Ok(vec![ext(6, 2, Mapped)]),
        ],
        100,
    );
    let c = run(&t, &gls(0, 256), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 5, 1), (5, 59, 0)])[..]
    );
    // An empty answer after a good one ends the report there.
    let t = Scripted::new(64, vec![Ok(vec![ext(0, 3, Mapped)])], 0);
    let c = run(&t, &gls(0, 256), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 3, 0)])[..]
    );
    // One block per answer: the target stops asking after 64 calls.
    let t = Scripted::new(100, vec![], 1);
    let c = run(&t, &gls(0, 256), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 64, 0)])[..]
    );
    assert_eq!(t.backend().calls.get(), 64);
    // Once the descriptors are used up, a different status ends it.
    let t = Scripted::new(
        64,
        vec![
            Ok(vec![ext(0, 2, Deallocated), ext(2, 2, Mapped)]),
            Ok(vec![ext(4, 1, Mapped)]),
            Ok(vec![ext(5, 1, Deallocated)]),
        ],
        0,
    );
    let c = run(&t, &gls(0, 40), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 2, 1), (2, 3, 0)])[..]
    );
    assert_eq!(t.backend().calls.get(), 3);
}

#[test]
fn rsoc_reports_get_lba_status_and_sanitize_usage() {
    let t = target();
    let mut buf = vec![0; 64];
    let c = run(&t, &rsoc(2, 0x9E, 0x12, 64), &mut buf);
    let mut want = vec![0, 0x03, 0, 16, 0x9E, 0x12];
    want.extend_from_slice(&[0xFF; 12]);
    want.extend_from_slice(&[0x00, 0x04]);
    assert_eq!(&buf[..c.data_in_len as usize], &want[..]);
    // SANITIZE: IMMED, AUSE, SERVICE ACTION; PARAMETER LIST LENGTH.
    let c = run(&t, &rsoc(2, 0x48, 0x01, 64), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &[0, 0x03, 0, 10, 0x48, 0xA1, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x04]
    );
    // CRYPTOGRAPHIC ERASE: not supported.
    let c = run(&t, &rsoc(2, 0x48, 0x03, 64), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &[0, 0x01, 0, 0]);
    // BLOCK ERASE without LBPRZ: not supported.
    let mut info = MemBackend::with_discard(64).info();
    if let Some(d) = info.discard.as_mut() {
        d.zeroes = false;
    }
    let t = target_with(MemBackend::new(info));
    let c = run(&t, &rsoc(2, 0x48, 0x02, 64), &mut buf);
    assert_eq!(&buf[..c.data_in_len as usize], &[0, 0x01, 0, 0]);
    // Option 1 for SANITIZE (it has service actions) is an error.
    let c = run(&t, &rsoc(1, 0x48, 0, 64), &mut buf);
    assert_eq!(sks(&c), [0xCA, 0, 2]);
}

// ----------------------------------------------------------------- SANITIZE

fn sanitize_cdb(b1: u8, param_len: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x48;
    c[1] = b1;
    c[7..9].copy_from_slice(&param_len.to_be_bytes());
    c
}

/// OVERWRITE parameter list (SBC-3 5.21.2, table 87): INVERT | TEST |
/// OVERWRITE COUNT, reserved, INITIALIZATION PATTERN LENGTH, pattern.
fn overwrite_list(b0: u8, pattern: &[u8]) -> Vec<u8> {
    let mut p = vec![b0, 0];
    p.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
    p.extend_from_slice(pattern);
    p
}

fn block_of(pattern: &[u8], bs: usize) -> Vec<u8> {
    pattern.iter().copied().cycle().take(bs).collect()
}

/// Poll `f` (which must stay pending) until `cond` holds.
fn poll_until<F: Future>(mut f: Pin<&mut F>, mut cond: impl FnMut() -> bool) {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        assert!(
            f.as_mut().poll(&mut cx).is_pending(),
            "finished before the condition held"
        );
        if cond() {
            return;
        }
    }
    panic!("condition never held");
}

/// REQUEST SENSE (fixed) parameter data.
fn request_sense<B: BlockBackend>(t: &Target<B>) -> Vec<u8> {
    let mut buf = vec![0; 252];
    let c = run(t, &[0x03, 0, 0, 0, 252, 0], &mut buf);
    good(&c);
    buf.truncate(c.data_in_len as usize);
    buf
}

/// Fixed sense NOT READY, SANITIZE IN PROGRESS with the progress
/// indication (SPC-4 table 33: SKSV, PROGRESS INDICATION in 16-17).
fn in_progress(progress: u16) -> Vec<u8> {
    let [hi, lo] = progress.to_be_bytes();
    vec![
        0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x04, 0x1B, 0, 0x80, hi, lo,
    ]
}

const NO_SENSE: [u8; 18] = [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn sanitize_overwrite_fills_every_block_with_the_pattern() {
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 64)));
    t.backend().poke(0, &pattern(64 * 512, 9));
    // A 3-byte pattern restarts at every block: 512 = 3 * 170 + 2.
    let mut p = overwrite_list(0x01, &[0xDE, 0xAD, 0x42]);
    good(&run(&t, &sanitize_cdb(0x01, 7), &mut p));
    let block = block_of(&[0xDE, 0xAD, 0x42], 512);
    assert_eq!(&block[509..], &[0x42, 0xDE, 0xAD]);
    assert!(t.backend().contents().chunks(512).all(|b| b == block));
    let s = t.backend().stats();
    assert_eq!((s.writes, s.fua_writes, s.flushes), (1, 0, 1));
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    assert_eq!(request_sense(&t), NO_SENSE);
    good(&run(&t, &[0; 6], &mut vec![]));
}

#[test]
fn sanitize_overwrite_count_and_invert() {
    // SBC-3 5.21.2: with INVERT the passes alternate and the last one
    // writes the pattern as given, so of two passes the first is inverted.
    let mut info = DiskInfo::simple(512, 64);
    info.max_transfer = Blocks(8); // eight writes per pass
    let t = target_with(MemBackend::new(info).with_yields());
    let mut p = overwrite_list(0x80 | 2, &[0x0F]);
    let cdb = sanitize_cdb(0x01, 5);
    let mut fut = pin!(t.execute(N0, &cdb, &mut p));
    poll_until(fut.as_mut(), || t.backend().stats().writes == 9);
    let disk = t.backend().contents();
    assert!(
        disk[8 * 512..].iter().all(|&b| b == 0xF0),
        "first pass inverted"
    );
    // Eight of sixteen chunks done: PROGRESS INDICATION 8000h.
    assert_eq!(request_sense(&t), in_progress(0x8000));
    assert_eq!(
        t.sanitize_state(),
        SanitizeState::InProgress {
            progress: 0x8000,
            ause: false
        }
    );
    good(&block_on(fut));
    assert!(t.backend().contents().iter().all(|&b| b == 0x0F));
    assert_eq!(t.backend().stats().writes, 16);
    // Three passes without yields: plain, inverted, plain.
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 64)));
    good(&run(
        &t,
        &sanitize_cdb(0x01, 5),
        &mut overwrite_list(0x80 | 3, &[0x33]),
    ));
    assert!(t.backend().contents().iter().all(|&b| b == 0x33));
    assert_eq!(t.backend().stats().writes, 3);
}

#[test]
fn sanitize_in_progress_refuses_commands_with_progress() {
    // SBC-3 4.11: only INQUIRY, REPORT LUNS and REQUEST SENSE run; the
    // rest get NOT READY, SANITIZE IN PROGRESS with the progress.
    let t = target_with(MemBackend::with_discard(2048).with_yields());
    good(&block_on(t.execute(Nexus(1), &[0; 6], &mut vec![])).clone_or_ua());
    let mut p = overwrite_list(0x01, &[0xAA]);
    let cdb = sanitize_cdb(0x01, 5);
    let mut fut = pin!(t.execute(N0, &cdb, &mut p));
    // Two chunks of 1024 blocks; the second has started.
    poll_until(fut.as_mut(), || t.backend().stats().writes == 2);
    let mut buf = vec![0; 512];
    let c = run(&t, &[0; 6], &mut buf);
    assert_eq!(c.sense(), &in_progress(0x8000)[..], "TEST UNIT READY");
    let c = run(&t, &cdb10(0x28, 0, 0, 1), &mut buf);
    assert_eq!(c.sense(), &in_progress(0x8000)[..], "READ");
    let c = run(&t, &[0xC1, 0, 0, 0, 0, 0], &mut buf);
    assert_eq!(c.sense(), &in_progress(0x8000)[..], "invalid CDB");
    let c = run(&t, &sanitize_cdb(0x01, 5), &mut overwrite_list(1, &[1]));
    assert_eq!(c.sense(), &in_progress(0x8000)[..], "another SANITIZE");
    let c = block_on(t.execute(Nexus(1), &[0; 6], &mut buf));
    assert_eq!(c.sense(), &in_progress(0x8000)[..], "another nexus");
    good(&run(&t, &[0x12, 0, 0, 0, 36, 0], &mut buf));
    good(&run(
        &t,
        &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0],
        &mut buf,
    ));
    // REQUEST SENSE: parameter data with GOOD; DESC=1 gives a sense key
    // specific descriptor carrying the progress (SPC-4 4.5.2.4.3).
    assert_eq!(request_sense(&t), in_progress(0x8000));
    let c = run(&t, &[0x03, 0x01, 0, 0, 252, 0], &mut buf);
    good(&c);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &[
            0x72, 0x02, 0x04, 0x1B, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0x80, 0x80, 0x00, 0
        ]
    );
    assert_eq!(t.backend().stats().reads, 0);
    good(&block_on(fut));
    assert!(t.backend().contents().iter().all(|&b| b == 0xAA));
    good(&run(&t, &[0; 6], &mut buf));
    assert_eq!(request_sense(&t), NO_SENSE);
}

#[test]
fn sanitize_block_erase_deallocates_everything() {
    let t = target();
    t.backend().poke(0, &vec![0x77; 2048 * 512]);
    good(&run(&t, &sanitize_cdb(0x02, 0), &mut vec![]));
    assert!(t.backend().contents().iter().all(|&b| b == 0));
    assert!(
        t.backend()
            .states()
            .iter()
            .all(|&s| s == BlockState::Deallocated)
    );
    let s = t.backend().stats();
    assert_eq!((s.discards, s.writes, s.flushes), (1, 0, 1));
    let mut buf = vec![0; 64];
    let c = run(&t, &gls(0, 64), &mut buf);
    assert_eq!(
        &buf[..c.data_in_len as usize],
        &lba_status(&[(0, 2048, 1)])[..]
    );
}

#[test]
fn sanitize_block_erase_needs_discard_that_zeroes_and_crypto_erase_is_refused() {
    let mut no_zeroes = MemBackend::with_discard(64).info();
    if let Some(d) = no_zeroes.discard.as_mut() {
        d.zeroes = false;
    }
    for b in [
        MemBackend::new(no_zeroes),
        MemBackend::new(DiskInfo::simple(512, 64)),
    ] {
        let t = target_with(b);
        t.backend().poke(0, &[1; 512]);
        // INVALID FIELD IN CDB at SERVICE ACTION: SKSV, C/D, BPV, bit 4.
        let c = run(&t, &sanitize_cdb(0x02, 0), &mut vec![]);
        assert_eq!(triple(&c), (0x05, 0x24, 0x00));
        assert_eq!(sks(&c), [0xCC, 0, 1]);
        assert_eq!(t.backend().stats().discards, 0);
        assert_eq!(t.backend().contents()[0], 1);
        assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    }
    // CRYPTOGRAPHIC ERASE: no backstore encrypts; refused the same way.
    let t = target();
    let c = run(&t, &sanitize_cdb(0x03, 0), &mut vec![]);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xCC, 0, 1]);
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
}

#[test]
fn sanitize_parameter_list_errors() {
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 64)));
    t.backend().poke(0, &[5; 512]);
    let ow =
        |t: &Target<MemBackend>, len: u16, mut p: Vec<u8>| run(t, &sanitize_cdb(0x01, len), &mut p);
    // PARAMETER LIST LENGTH: zero for OVERWRITE, or above a block + 4.
    let c = ow(&t, 0, vec![]);
    assert_eq!(sks(&c), [0xC0, 0, 7]);
    let c = ow(&t, 517, overwrite_list(1, &[0; 513]));
    assert_eq!(sks(&c), [0xC0, 0, 7]);
    // ... and not zero for the others.
    let c = run(&t, &sanitize_cdb(0x1F, 4), &mut vec![0; 4]);
    assert_eq!(sks(&c), [0xC0, 0, 7]);
    // Shorter than the header, or than the data-out.
    assert_eq!(triple(&ow(&t, 3, vec![1, 0, 0])), (0x05, 0x1A, 0x00));
    assert_eq!(
        triple(&ow(&t, 8, overwrite_list(1, &[1, 2]))),
        (0x05, 0x1A, 0x00)
    );
    // OVERWRITE COUNT 0: SKSV, C/D = 0, BPV, bit 4, byte 0.
    let c = ow(&t, 5, overwrite_list(0x80, &[1]));
    assert_eq!(triple(&c), (0x05, 0x26, 0x00));
    assert_eq!(sks(&c), [0x8C, 0, 0]);
    // TEST other than 00b.
    assert_eq!(sks(&ow(&t, 5, overwrite_list(0x21, &[1]))), [0x8E, 0, 0]);
    // Reserved byte 1.
    let mut p = overwrite_list(1, &[1]);
    p[1] = 0x01;
    assert_eq!(sks(&ow(&t, 5, p)), [0x88, 0, 1]);
    // INITIALIZATION PATTERN LENGTH zero, or above the block size.
    assert_eq!(sks(&ow(&t, 4, overwrite_list(1, &[]))), [0x80, 0, 2]);
    let mut p = overwrite_list(1, &[1; 512]);
    p[2..4].copy_from_slice(&513u16.to_be_bytes());
    assert_eq!(sks(&ow(&t, 516, p)), [0x80, 0, 2]);
    // Pattern length and list length disagree.
    let c = ow(&t, 12, overwrite_list(1, &[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert_eq!(triple(&c), (0x05, 0x1A, 0x00));
    // Nothing was written, nothing entered the sanitize state.
    assert_eq!(t.backend().stats().writes, 0);
    assert_eq!(t.backend().contents()[0], 5);
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    // A read-only device is write protected.
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let t = target_with(MemBackend::new(info));
    let c = ow(&t, 5, overwrite_list(1, &[1]));
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
}

#[test]
fn failed_sanitize_enters_failure_mode_until_a_sanitize_succeeds() {
    let t = target();
    t.backend()
        .fail_next(BackendError::new(BackendErrorKind::Medium));
    let c = run(&t, &sanitize_cdb(0x01, 5), &mut overwrite_list(1, &[7]));
    // MEDIUM ERROR, SANITIZE COMMAND FAILED.
    assert_eq!(triple(&c), (0x03, 0x31, 0x03));
    assert_eq!(t.sanitize_state(), SanitizeState::Failed { ause: false });
    let mut buf = vec![0; 512];
    // Medium access refused; TEST UNIT READY says so too.
    for cdb in [
        cdb10(0x28, 0, 0, 1).to_vec(),
        cdb10(0x2A, 0, 0, 1).to_vec(),
        gls(0, 64).to_vec(),
        vec![0; 6],
    ] {
        let c = run(&t, &cdb, &mut buf);
        assert_eq!(triple(&c), (0x03, 0x31, 0x03), "{cdb:02x?}");
    }
    // An invalid CDB is still an invalid CDB.
    let c = run(&t, &cdb10(0x28, 0x01, 0, 1), &mut buf);
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    // What does not touch the medium runs.
    good(&run(&t, &[0x12, 0, 0, 0, 36, 0], &mut buf));
    good(&run(&t, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut buf));
    good(&run(&t, &[0x1A, 0x08, 0x3F, 0, 255, 0], &mut buf));
    // REQUEST SENSE reports the failure as parameter data.
    let mut want = NO_SENSE;
    want[2] = 0x03;
    want[12] = 0x31;
    want[13] = 0x03;
    assert_eq!(request_sense(&t), want);
    // AUSE was 0: no EXIT FAILURE MODE, and no new sanitize asking for
    // the unrestricted mode.
    let c = run(&t, &sanitize_cdb(0x1F, 0), &mut vec![]);
    assert_eq!(sks(&c), [0xCC, 0, 1]);
    let c = run(&t, &sanitize_cdb(0x21, 5), &mut overwrite_list(1, &[7]));
    assert_eq!(sks(&c), [0xCD, 0, 1]);
    assert_eq!(
        t.backend().stats().writes,
        0,
        "the refused ones wrote nothing"
    );
    // A successful sanitize (AUSE 0) ends failure mode.
    good(&run(&t, &sanitize_cdb(0x02, 0), &mut vec![]));
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    good(&run(&t, &cdb10(0x28, 0, 0, 1), &mut buf));
    assert_eq!(request_sense(&t), NO_SENSE);
}

#[test]
fn exit_failure_mode_after_a_failure_with_ause() {
    let t = target();
    // Nothing failed: EXIT FAILURE MODE is an invalid request.
    let c = run(&t, &sanitize_cdb(0x1F, 0), &mut vec![]);
    assert_eq!(sks(&c), [0xCC, 0, 1]);
    t.backend()
        .fail_next(BackendError::new(BackendErrorKind::Unavailable));
    let c = run(&t, &sanitize_cdb(0x22, 0), &mut vec![]);
    assert_eq!(triple(&c), (0x03, 0x31, 0x03));
    assert_eq!(t.sanitize_state(), SanitizeState::Failed { ause: true });
    good(&run(&t, &sanitize_cdb(0x1F, 0), &mut vec![]));
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    good(&run(&t, &cdb10(0x28, 0, 0, 1), &mut vec![0; 512]));
}

/// A target whose transport drives background jobs, power-on attention
/// consumed.
fn target_bg(b: MemBackend) -> Target<MemBackend> {
    attach(Target::new(b, id()).unwrap().with_background_jobs())
}

#[test]
fn immediate_sanitize_is_refused_without_a_background_driver() {
    // INVALID FIELD IN CDB at IMMED: SKSV, C/D, BPV, bit 7, byte 1.
    let t = target();
    let c = run(&t, &sanitize_cdb(0x82, 0), &mut vec![]);
    assert_eq!(sks(&c), [0xCF, 0, 1]);
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    assert!(!t.background_pending());
    assert_eq!(t.backend().stats().discards, 0);
}

#[test]
fn immediate_sanitize_runs_as_a_background_job() {
    let mut info = DiskInfo::simple(512, 64);
    info.max_transfer = Blocks(16);
    let t = target_bg(MemBackend::new(info).with_yields());
    t.backend().poke(0, &[9; 4096]);
    // GOOD as soon as CDB and parameter list are valid.
    good(&run(
        &t,
        &sanitize_cdb(0xA1, 5),
        &mut overwrite_list(1, &[0x5C]),
    ));
    assert_eq!(
        t.sanitize_state(),
        SanitizeState::InProgress {
            progress: 0,
            ause: true
        }
    );
    assert!(t.background_pending());
    assert_eq!(t.backend().stats().writes, 0);
    assert_eq!(run(&t, &[0; 6], &mut vec![]).sense(), &in_progress(0)[..]);
    let job = t.background().expect("a job waits");
    assert!(t.background().is_none(), "handed out once");
    assert!(!t.background_pending());
    let mut job = pin!(job);
    poll_until(job.as_mut(), || t.backend().stats().writes == 3);
    assert_eq!(request_sense(&t), in_progress(0x8000));
    block_on(job);
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
    assert!(t.backend().contents().iter().all(|&b| b == 0x5C));
    assert_eq!(t.backend().stats().flushes, 1);
    good(&run(&t, &[0; 6], &mut vec![]));
    assert_eq!(request_sense(&t), NO_SENSE);
}

#[test]
fn immediate_sanitize_failure_and_a_dropped_job_leave_failure_mode() {
    let t = target_bg(MemBackend::with_discard(64));
    good(&run(&t, &sanitize_cdb(0x82, 0), &mut vec![]));
    t.backend()
        .fail_next(BackendError::new(BackendErrorKind::Medium));
    block_on(t.background().unwrap());
    assert_eq!(t.sanitize_state(), SanitizeState::Failed { ause: false });
    let c = run(&t, &cdb10(0x28, 0, 0, 1), &mut vec![0; 512]);
    assert_eq!(triple(&c), (0x03, 0x31, 0x03));
    // A job dropped unfinished (shutdown) leaves the sanitize failed.
    good(&run(&t, &sanitize_cdb(0x82, 0), &mut vec![]));
    drop(t.background().unwrap());
    assert_eq!(t.sanitize_state(), SanitizeState::Failed { ause: false });
    // So does an IMMED=0 SANITIZE whose command future is dropped midway.
    let t = target_with(MemBackend::with_discard(64).with_yields());
    {
        let cdb = sanitize_cdb(0x21, 5);
        let mut p = overwrite_list(1, &[1]);
        let mut fut = Box::pin(t.execute(N0, &cdb, &mut p));
        poll_until(fut.as_mut(), || t.backend().stats().writes == 1);
    }
    assert_eq!(t.sanitize_state(), SanitizeState::Failed { ause: true });
    good(&run(&t, &sanitize_cdb(0x1F, 0), &mut vec![]));
}

#[test]
fn restored_sanitize_state_after_a_restart() {
    // The daemon stopped while a sanitize ran: the device comes back in
    // failure mode, with the AUSE of that sanitize.
    let t = target();
    let interrupted = SanitizeState::InProgress {
        progress: 0x1234,
        ause: true,
    };
    assert_eq!(t.restore_sanitize_state(interrupted), Ok(()));
    assert_eq!(t.sanitize_state(), SanitizeState::Failed { ause: true });
    let c = run(&t, &cdb10(0x28, 0, 0, 1), &mut vec![0; 512]);
    assert_eq!(triple(&c), (0x03, 0x31, 0x03));
    good(&run(&t, &sanitize_cdb(0x1F, 0), &mut vec![]));
    // Restoring a failure without AUSE; then Idle clears it.
    t.restore_sanitize_state(SanitizeState::Failed { ause: false })
        .unwrap();
    let c = run(&t, &sanitize_cdb(0x1F, 0), &mut vec![]);
    assert_eq!(sks(&c), [0xCC, 0, 1]);
    t.restore_sanitize_state(SanitizeState::Idle).unwrap();
    good(&run(&t, &[0; 6], &mut vec![]));
    // Not while a sanitize runs here.
    let t = target_bg(MemBackend::with_discard(64));
    good(&run(&t, &sanitize_cdb(0x82, 0), &mut vec![]));
    assert_eq!(
        t.restore_sanitize_state(SanitizeState::Idle),
        Err(SanitizeBusy)
    );
    block_on(t.background().unwrap());
    assert_eq!(t.sanitize_state(), SanitizeState::Idle);
}

#[test]
fn write_waiting_for_a_lock_does_not_run_into_a_sanitize() {
    // A WRITE accepted before the sanitize, blocked behind a COMPARE AND
    // WRITE's exclusive lock, must not write once the sanitize started.
    let t = target_bg(MemBackend::with_discard(64).with_yields());
    let caw = caw_cdb(0, 2);
    let mut caw_data = vec![0u8; 1024];
    caw_data.extend_from_slice(&pattern(1024, 3));
    let mut caw_fut = pin!(t.execute(N0, &caw, &mut caw_data));
    poll_until(caw_fut.as_mut(), || t.backend().stats().reads == 1);
    let w = cdb10(0x2A, 0, 1, 1);
    let mut w_data = vec![0xEE; 512];
    let mut w_fut = pin!(t.execute(N0, &w, &mut w_data));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        w_fut.as_mut().poll(&mut cx).is_pending(),
        "waits for the CAW"
    );
    good(&run(
        &t,
        &sanitize_cdb(0x81, 5),
        &mut overwrite_list(1, &[0x11]),
    ));
    good(&block_on(caw_fut));
    assert_eq!(block_on(w_fut).sense(), &in_progress(0)[..]);
    block_on(t.background().unwrap());
    assert!(t.backend().contents().iter().all(|&b| b == 0x11));
}

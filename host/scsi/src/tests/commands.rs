//! Per-command tests. Expected bytes are written out from the field tables
//! of SPC-4 / SBC-3 (cited per test), not computed by the code under test.

use crate::backend::{BackendError, BackendErrorKind, BlockBackend, DiskInfo, WriteCache};
use crate::buffer::{BufferError, DataBuffer, Extent, Memory, SgBuffer};
use crate::identity::DeviceIdentity;
use crate::sense::Status;
use crate::target::{Completion, Nexus, Target};
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

fn run(t: &Target<MemBackend>, cdb: &[u8], buf: &mut Vec<u8>) -> Completion {
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
    let c = run(&t, &cdb16(0x9E, 0x12, 0, 32), &mut vec![0; 32]);
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
    // Without discard, UNMAP is not listed.
    let t = target_with(MemBackend::new(DiskInfo::simple(512, 8)));
    let c = run(&t, &rsoc(0, 0, 0, 4096), &mut buf);
    assert_eq!(c.data_in_len as usize, 4 + 8 * (n - 1));
    assert!(!buf[4..4 + 8 * (n - 1)].chunks(8).any(|d| d[0] == 0x42));
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

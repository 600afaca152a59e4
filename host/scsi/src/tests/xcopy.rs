//! EXTENDED COPY(LID1) and the RECEIVE COPY commands. Parameter lists are
//! built byte by byte from SPC-4's tables (EXTENDED COPY(LID1) parameter
//! list header, identification descriptor CSCD descriptor, block device to
//! block device segment descriptor); expected responses are written out,
//! not computed by the code under test.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::backend::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, DiskInfo, WriteCache,
};
use crate::buffer::{BufMut, BufRef};
use crate::identity::DeviceIdentity;
use crate::sense::Status;
use crate::target::{Completion, Nexus, Target};
use crate::testing::{MemBackend, block_on, join_all};
use crate::units::{Blocks, Lba};
use crate::xcopy::{CopyIo, CopyLun, CopyPeers};

const N0: Nexus = Nexus(0);

fn id(serial: &str) -> DeviceIdentity {
    DeviceIdentity::with_strings("WASMTAP", "unit test disk", "0.1", serial).unwrap()
}

/// A target named `serial` whose power-on attention on nexus 0 has been
/// consumed.
fn named<B: BlockBackend>(serial: &str, b: B) -> Target<B> {
    ready(Target::new(b, id(serial)).unwrap())
}

fn ready<B: BlockBackend>(t: Target<B>) -> Target<B> {
    let c = run(&t, &[0; 6], &mut Vec::new());
    assert_eq!(triple(&c), (0x06, 0x29, 0x00));
    t
}

fn target() -> Target<MemBackend> {
    named("SN-A", MemBackend::with_discard(2048))
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

/// Sense-key-specific bytes 15..18 of fixed sense.
fn sks(c: &Completion) -> [u8; 3] {
    c.sense()[15..18].try_into().unwrap()
}

/// COMMAND-SPECIFIC INFORMATION, bytes 8..12 of fixed sense.
fn csi(c: &Completion) -> [u8; 4] {
    c.sense()[8..12].try_into().unwrap()
}

fn good(c: &Completion) {
    assert_eq!(
        c.status,
        Status::Good,
        "expected GOOD, sense {:02x?}",
        c.sense()
    );
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn naa<B: BlockBackend>(t: &Target<B>) -> Vec<u8> {
    t.identity().naa().to_be_bytes().to_vec()
}

fn blocks_of(t: &Target<MemBackend>, lba: usize, n: usize) -> Vec<u8> {
    let bs = t.info().block_size as usize;
    t.backend().contents()[lba * bs..(lba + n) * bs].to_vec()
}

// ------------------------------------------------------ parameter lists

/// Identification descriptor CSCD descriptor (type E4h): LU ID TYPE 00b,
/// NUL 0, PERIPHERAL DEVICE TYPE 00h, RELATIVE INITIATOR PORT IDENTIFIER 0;
/// designation descriptor with CODE SET 1h (binary), ASSOCIATION 00b (LU),
/// DESIGNATOR TYPE 3h (NAA); block device type specific parameters with
/// PAD 0 and the DISK BLOCK LENGTH in bytes 29-31.
fn e4(designator: &[u8], block_len: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[0] = 0xE4;
    d[4] = 0x01;
    d[5] = 0x03;
    d[7] = designator.len() as u8;
    d[8..8 + designator.len()].copy_from_slice(designator);
    d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
    d
}

/// Block device to block device segment descriptor (type 02h), DESCRIPTOR
/// LENGTH 0018h, DC and CAT zero.
fn b2b(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> [u8; 28] {
    let mut d = [0u8; 28];
    d[0] = 0x02;
    d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

/// The parameter list: a 16-byte header (LIST IDENTIFIER; STR, LIST ID
/// USAGE and PRIORITY in byte 1; CSCD DESCRIPTOR LIST LENGTH in bytes 2-3;
/// SEGMENT DESCRIPTOR LIST LENGTH in 8-11; INLINE DATA LENGTH in 12-15),
/// the CSCD descriptors, the segment descriptors.
fn list(list_id: u8, flags: u8, cscds: &[[u8; 32]], segs: &[[u8; 28]]) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[0] = list_id;
    p[1] = flags;
    p[2..4].copy_from_slice(&((32 * cscds.len()) as u16).to_be_bytes());
    p[8..12].copy_from_slice(&((28 * segs.len()) as u32).to_be_bytes());
    for c in cscds {
        p.extend_from_slice(c);
    }
    for s in segs {
        p.extend_from_slice(s);
    }
    p
}

/// EXTENDED COPY(LID1): 83h, service action 00h, PARAMETER LIST LENGTH in
/// bytes 10-13.
fn xcopy_cdb(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

/// THIRD-PARTY COPY IN: 84h, service action, LIST IDENTIFIER in byte 2,
/// ALLOCATION LENGTH in bytes 10-13.
fn rcr_cdb(sa: u8, list_id: u8, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn xcopy<B: BlockBackend>(t: &Target<B>, p: &[u8]) -> Completion {
    run(t, &xcopy_cdb(p.len() as u32), &mut p.to_vec())
}

fn results<B: BlockBackend>(t: &Target<B>, sa: u8, list_id: u8) -> Result<Vec<u8>, Completion> {
    let mut buf = vec![0u8; 512];
    let c = run(t, &rcr_cdb(sa, list_id, 512), &mut buf);
    if c.status != Status::Good {
        return Err(c);
    }
    buf.truncate(c.data_in_len as usize);
    Ok(buf)
}

fn copy_status<B: BlockBackend>(t: &Target<B>, list_id: u8) -> Vec<u8> {
    results(t, 0x00, list_id).unwrap()
}

// ------------------------------------------------------------- peers

/// The transport's directory, as a test: designator → logical unit.
struct Peers(Vec<(Vec<u8>, Rc<dyn CopyLun>)>);

impl CopyPeers for Peers {
    fn locate(&self, naa: &[u8]) -> Option<Rc<dyn CopyLun>> {
        self.0
            .iter()
            .find(|(n, _)| n == naa)
            .map(|(_, l)| Rc::clone(l))
    }
}

/// Target A (SN-A, 2048 blocks) reaching B through peers.
fn with_peer(b: &Rc<Target<MemBackend>>) -> Target<MemBackend> {
    let peers = Peers(vec![(naa(b.as_ref()), Rc::clone(b) as Rc<dyn CopyLun>)]);
    ready(
        Target::new(MemBackend::with_discard(2048), id("SN-A"))
            .unwrap()
            .with_copy_peers(Rc::new(peers)),
    )
}

fn peer(serial: &str, info: DiskInfo) -> Rc<Target<MemBackend>> {
    Rc::new(named(serial, MemBackend::new(info)))
}

// ------------------------------------------------------- same-LUN copies

#[test]
fn same_lun_copy_by_own_naa_and_by_local_id() {
    let t = target();
    let data = pattern(8 * 512, 1);
    t.backend().poke(10 * 512, &data);
    let me = naa(&t);
    good(&xcopy(
        &t,
        &list(1, 0, &[e4(&me, 512)], &[b2b(0, 0, 8, 10, 100)]),
    ));
    assert_eq!(blocks_of(&t, 100, 8), data);
    assert_eq!(blocks_of(&t, 10, 8), data, "source unchanged");
    // CSCD descriptor ID FFFFh: this logical unit, no CSCD descriptor.
    good(&xcopy(
        &t,
        &list(2, 0, &[], &[b2b(0xFFFF, 0xFFFF, 8, 10, 200)]),
    ));
    assert_eq!(blocks_of(&t, 200, 8), data);
    assert_eq!(
        t.backend().contents()[108 * 512..200 * 512],
        vec![0; 92 * 512]
    );
}

#[test]
fn overlapping_same_lun_copies_read_before_they_overwrite() {
    // 3000 blocks span two 1 MiB chunks; the result is that of reading the
    // whole source first, whichever way the ranges overlap.
    let t = named("SN-A", MemBackend::with_discard(8192));
    let me = naa(&t);
    let a = pattern(3000 * 512, 3);
    t.backend().poke(0, &a);
    good(&xcopy(
        &t,
        &list(1, 0, &[e4(&me, 512)], &[b2b(0, 0, 3000, 0, 1000)]),
    ));
    assert_eq!(blocks_of(&t, 1000, 3000), a, "destination above the source");
    let b = pattern(3000 * 512, 4);
    t.backend().poke(5000 * 512, &b);
    good(&xcopy(
        &t,
        &list(2, 0, &[e4(&me, 512)], &[b2b(0, 0, 3000, 5000, 4500)]),
    ));
    assert_eq!(blocks_of(&t, 4500, 3000), b, "destination below the source");
}

#[test]
fn copies_are_chunked_by_maximum_transfer_length() {
    let mut info = DiskInfo::simple(512, 1024);
    info.max_transfer = Blocks(128);
    let t = named("SN-A", MemBackend::new(info));
    let data = pattern(300 * 512, 5);
    t.backend().poke(0, &data);
    let before = t.backend().stats();
    good(&xcopy(
        &t,
        &list(1, 0, &[], &[b2b(0xFFFF, 0xFFFF, 300, 0, 500)]),
    ));
    let s = t.backend().stats();
    assert_eq!(s.reads - before.reads, 3, "128 + 128 + 44 blocks");
    assert_eq!(s.writes - before.writes, 3);
    assert_eq!(s.fua_writes, 0, "write-back: no FUA, as a WRITE");
    assert_eq!(blocks_of(&t, 500, 300), data);
}

#[test]
fn copy_writes_honour_a_disabled_write_cache() {
    let mut info = DiskInfo::simple(512, 64);
    info.write_cache = WriteCache::WriteThrough;
    let t = named("SN-A", MemBackend::new(info));
    good(&xcopy(
        &t,
        &list(1, 0, &[], &[b2b(0xFFFF, 0xFFFF, 4, 0, 8)]),
    ));
    let s = t.backend().stats();
    assert_eq!((s.writes, s.fua_writes), (1, 1));
}

#[test]
fn zero_length_list_and_zero_block_segment_do_nothing() {
    let t = target();
    good(&run(&t, &xcopy_cdb(0), &mut vec![]));
    good(&xcopy(
        &t,
        &list(1, 0, &[], &[b2b(0xFFFF, 0xFFFF, 0, 2048, 0)]),
    ));
    let s = t.backend().stats();
    assert_eq!((s.reads, s.writes), (0, 0));
}

#[test]
fn copy_writes_are_atomic_against_a_racing_write() {
    // The copy writes its destination under the exclusive range lock, so a
    // WRITE of some of the same blocks lands wholly before or wholly after
    // it. (The in-memory disk writes each request in two halves with a
    // yield between; a 4-block and a 2-block write split at different
    // blocks, so without the lock this interleaving tears.)
    let t = named("SN-A", MemBackend::with_discard(64).with_yields());
    let src = pattern(4 * 512, 7);
    t.backend().poke(0, &src);
    let mut p = list(1, 0, &[], &[b2b(0xFFFF, 0xFFFF, 4, 0, 8)]);
    let w = pattern(2 * 512, 8);
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2A;
    cdb[5] = 8;
    cdb[8] = 2;
    let results = block_on(join_all(vec![
        t.execute(N0, &xcopy_cdb(p.len() as u32), &mut p),
        t.execute(N0, &cdb, &mut w.clone()),
    ]));
    good(&results[0]);
    good(&results[1]);
    let dst = blocks_of(&t, 8, 4);
    let mut write_last = src.clone();
    write_last[..1024].copy_from_slice(&w);
    assert!(dst == src || dst == write_last, "torn destination");
}

// ------------------------------------------------------ between targets

#[test]
fn copy_between_two_targets_through_peers() {
    let mut info = DiskInfo::simple(512, 1024);
    info.write_cache = WriteCache::WriteThrough;
    let b = peer("SN-B", info);
    let a = with_peer(&b);
    let data = pattern(16 * 512, 9);
    a.backend().poke(5 * 512, &data);
    // Segment 0: A -> B. Segment 1: back from B to A, reading what
    // segment 0 wrote.
    let p = list(
        3,
        0,
        &[e4(&naa(&a), 512), e4(&naa(b.as_ref()), 512)],
        &[b2b(0, 1, 16, 5, 50), b2b(1, 0, 4, 50, 500)],
    );
    good(&xcopy(&a, &p));
    assert_eq!(blocks_of(&b, 50, 16), data);
    assert_eq!(blocks_of(&a, 500, 4), data[..4 * 512]);
    // B's write cache is off: its copy writes are FUA, as its WRITEs are.
    let s = b.backend().stats();
    assert_eq!((s.writes, s.fua_writes), (1, 1));
    // COPY STATUS: completed, 2 segments, 20 destination blocks.
    assert_eq!(
        copy_status(&a, 3),
        [0, 0, 0, 8, 0x01, 0, 2, 0xF1, 0, 0, 0, 20]
    );
}

#[test]
fn unreachable_designator_is_copy_aborted_before_any_copy() {
    let t = target();
    let stranger = [0x3F, 1, 2, 3, 4, 5, 6, 7];
    // Segment 0 is fine; segment 1 names a unit nobody serves.
    let p = list(
        1,
        0,
        &[e4(&naa(&t), 512), e4(&stranger, 512)],
        &[b2b(0, 0, 4, 0, 100), b2b(0, 1, 4, 0, 0)],
    );
    let c = xcopy(&t, &p);
    // COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE; segment 1 in bytes
    // 3-4 of COMMAND-SPECIFIC INFORMATION; segment pointer (SKSV, SD = 0)
    // at the DESIGNATOR of CSCD descriptor 1 (16 + 32 + 8).
    assert_eq!(triple(&c), (0x0A, 0x0D, 0x02));
    assert_eq!(csi(&c), [0, 0, 0, 1]);
    assert_eq!(sks(&c), [0x80, 0, 56]);
    assert_eq!(c.sense()[0], 0x70, "no INFORMATION");
    assert_eq!(t.backend().stats().writes, 0, "validated before copying");
    // With peers that do not know it either.
    let b = peer("SN-B", DiskInfo::simple(512, 64));
    let a = with_peer(&b);
    let p = list(
        1,
        0,
        &[e4(&stranger, 512), e4(&naa(b.as_ref()), 512)],
        &[b2b(0, 1, 1, 0, 0)],
    );
    let c = xcopy(&a, &p);
    assert_eq!(triple(&c), (0x0A, 0x0D, 0x02));
    assert_eq!(sks(&c), [0x80, 0, 24]);
}

#[test]
fn lba_out_of_range_on_either_side() {
    let t = target();
    let me = naa(&t);
    // One CSCD descriptor, so the segment is at byte 48: SOURCE LBA at 60,
    // DESTINATION LBA at 68.
    let cases = [
        (b2b(0, 0, 4, 2045, 0), 60),
        (b2b(0, 0, 4, 0, 2045), 68),
        (b2b(0, 0, 1, u64::MAX, 0), 60),
        (b2b(0, 0, 1, 0, 2048), 68),
    ];
    for (seg, at) in cases {
        let c = xcopy(&t, &list(1, 0, &[e4(&me, 512)], &[seg]));
        assert_eq!(triple(&c), (0x05, 0x21, 0x00));
        assert_eq!(sks(&c), [0x80, 0, at]);
    }
    good(&xcopy(
        &t,
        &list(1, 0, &[e4(&me, 512)], &[b2b(0, 0, 4, 2044, 0)]),
    ));
    assert_eq!(t.backend().stats().writes, 1);
}

#[test]
fn read_only_destination_is_data_protect() {
    let mut info = DiskInfo::simple(512, 64);
    info.read_only = true;
    let b = peer("SN-B", info);
    b.backend().poke(0, &pattern(512, 2));
    let a = with_peer(&b);
    let cscds = [e4(&naa(&a), 512), e4(&naa(b.as_ref()), 512)];
    let c = xcopy(&a, &list(1, 0, &cscds, &[b2b(0, 1, 1, 0, 0)]));
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
    assert_eq!(b.backend().stats().writes, 0);
    // A read-only source is fine.
    good(&xcopy(&a, &list(1, 0, &cscds, &[b2b(1, 0, 1, 0, 7)])));
    assert_eq!(blocks_of(&a, 7, 1), pattern(512, 2));
    // And a read-only unit cannot copy within itself.
    let c = xcopy(
        b.as_ref(),
        &list(1, 0, &[], &[b2b(0xFFFF, 0xFFFF, 1, 0, 1)]),
    );
    assert_eq!(triple(&c), (0x07, 0x27, 0x00));
}

#[test]
fn different_block_sizes_copy_whole_blocks_only() {
    let b = peer("SN-B", DiskInfo::simple(4096, 64));
    let a = with_peer(&b);
    let cscds = [e4(&naa(&a), 512), e4(&naa(b.as_ref()), 4096)];
    // 4 source blocks are half a destination block: UNEXPECTED INEXACT
    // SEGMENT, segment pointer relative to the segment (SD) at NUMBER OF
    // BLOCKS (byte 10).
    let c = xcopy(
        &a,
        &list(1, 0, &cscds, &[b2b(1, 1, 1, 0, 0), b2b(0, 1, 4, 0, 0)]),
    );
    assert_eq!(triple(&c), (0x0A, 0x26, 0x0A));
    assert_eq!(csi(&c), [0, 0, 0, 1]);
    assert_eq!(sks(&c), [0xA0, 0, 10]);
    // 8 source blocks are one destination block; with DC the count is in
    // destination blocks.
    let data = pattern(16 * 512, 6);
    a.backend().poke(0, &data);
    good(&xcopy(&a, &list(1, 0, &cscds, &[b2b(0, 1, 8, 0, 3)])));
    assert_eq!(blocks_of(&b, 3, 1), data[..4096]);
    let mut dc = b2b(0, 1, 2, 0, 10);
    dc[1] = 0x02;
    good(&xcopy(&a, &list(1, 0, &cscds, &[dc])));
    assert_eq!(blocks_of(&b, 10, 2), data);
}

#[test]
fn segment_above_maximum_segment_length_is_refused() {
    // MAXIMUM SEGMENT LENGTH is 65535 blocks of this unit (512 bytes); a
    // segment counted in a peer's 4096-byte blocks can exceed it.
    let mut info = DiskInfo::simple(4096, 1 << 20);
    info.max_transfer = Blocks(16);
    let big: Rc<dyn CopyLun> = Rc::new(GeometryOnly(info));
    let big_naa = vec![0x3A; 8];
    let a = ready(
        Target::new(MemBackend::with_discard(2048), id("SN-A"))
            .unwrap()
            .with_copy_peers(Rc::new(Peers(vec![(big_naa.clone(), big)]))),
    );
    let cscds = [e4(&naa(&a), 512), e4(&big_naa, 4096)];
    let c = xcopy(&a, &list(1, 0, &cscds, &[b2b(1, 1, 8192, 0, 9000)]));
    assert_eq!(triple(&c), (0x05, 0x26, 0x00));
    assert_eq!(sks(&c), [0x80, 0, 90]);
}

// ------------------------------------------------ parameter list errors

/// Two CSCD descriptors for the target (bytes 16 and 48) and one segment
/// (byte 80), 108 bytes.
fn base(t: &Target<MemBackend>) -> Vec<u8> {
    let me = naa(t);
    list(1, 0, &[e4(&me, 512), e4(&me, 512)], &[b2b(0, 1, 4, 0, 100)])
}

/// A byte of the base list set to a value, and the sense that gives.
type FieldCase = (&'static str, usize, u8, (u8, u8, u8), [u8; 3]);

#[test]
fn every_parameter_list_field_error_points_at_its_field() {
    // (what, byte, value, sense key/ASC/ASCQ, sense-key-specific bytes:
    // SKSV, C/D = 0, BPV + bit, field pointer).
    let ilr = (0x05, 0x26, 0x00);
    let cases: &[FieldCase] = &[
        ("reserved bit 7 of byte 1", 1, 0x80, ilr, [0x8F, 0, 1]),
        ("LIST ID USAGE 01b", 1, 0x08, ilr, [0x8C, 0, 1]),
        ("reserved byte 5", 5, 1, ilr, [0x80, 0, 4]),
        ("CSCD list length 65", 3, 65, ilr, [0x80, 0, 2]),
        ("INLINE DATA LENGTH", 15, 4, ilr, [0x80, 0, 12]),
        ("CSCD type E0h", 16, 0xE0, (0x05, 0x26, 0x07), [0x80, 0, 16]),
        ("CSCD type FFh", 48, 0xFF, (0x05, 0x26, 0x07), [0x80, 0, 48]),
        ("LU ID TYPE", 17, 0x40, ilr, [0x8F, 0, 17]),
        ("NUL", 17, 0x20, ilr, [0x8D, 0, 17]),
        ("PERIPHERAL DEVICE TYPE 01h", 17, 0x01, ilr, [0x8C, 0, 17]),
        ("CODE SET ASCII", 20, 0x02, ilr, [0x8B, 0, 20]),
        ("reserved bit 4 of byte 4", 20, 0x11, ilr, [0x8C, 0, 20]),
        ("PIV/reserved bit 7 of byte 5", 21, 0x83, ilr, [0x8F, 0, 21]),
        ("ASSOCIATION target port", 21, 0x13, ilr, [0x8D, 0, 21]),
        ("DESIGNATOR TYPE T10", 21, 0x01, ilr, [0x8B, 0, 21]),
        ("reserved byte 6", 22, 1, ilr, [0x80, 0, 22]),
        ("DESIGNATOR LENGTH 4", 23, 4, ilr, [0x80, 0, 23]),
        ("type specific byte 0 bit 0", 44, 0x01, ilr, [0x88, 0, 44]),
        ("DISK BLOCK LENGTH 4096", 46, 0x10, ilr, [0x80, 0, 45]),
        (
            "segment type 0Ah",
            80,
            0x0A,
            (0x05, 0x26, 0x09),
            [0x80, 0, 80],
        ),
        ("DESCRIPTOR LENGTH 14h", 83, 0x14, ilr, [0x80, 0, 82]),
        ("segment byte 1 bit 2", 81, 0x04, ilr, [0x8A, 0, 81]),
        ("source CSCD 2", 85, 2, ilr, [0x80, 0, 84]),
        ("destination CSCD 5", 87, 5, ilr, [0x80, 0, 86]),
        ("reserved segment byte 8", 88, 1, ilr, [0x80, 0, 88]),
    ];
    let t = target();
    for &(what, at, value, want, want_sks) in cases {
        let mut p = base(&t);
        p[at] = value;
        if what.starts_with("DISK BLOCK LENGTH") {
            p[47] = 0;
        }
        let c = xcopy(&t, &p);
        assert_eq!(triple(&c), want, "{what}");
        assert_eq!(sks(&c), want_sks, "{what}");
    }
    assert_eq!(t.backend().stats().writes, 0);
    // The base list itself, with PAD, CAT and a zero DISK BLOCK LENGTH.
    let mut p = base(&t);
    p[44] = 0x04;
    p[81] = 0x01;
    p[77..80].fill(0);
    good(&xcopy(&t, &p));
}

#[test]
fn list_identifier_zero_is_required_without_list_id() {
    let t = target();
    let mut p = base(&t);
    p[1] = 0x18; // LIST ID USAGE 11b
    let c = xcopy(&t, &p);
    assert_eq!(sks(&c), [0x80, 0, 0]);
    p[0] = 0;
    good(&xcopy(&t, &p));
}

#[test]
fn descriptor_counts_are_limited() {
    let t = target();
    let me = naa(&t);
    // 17 CSCD descriptors: TOO MANY TARGET DESCRIPTORS, pointer at CSCD
    // DESCRIPTOR LIST LENGTH.
    let c = xcopy(&t, &list(1, 0, &[e4(&me, 512); 17], &[b2b(0, 0, 1, 0, 1)]));
    assert_eq!(triple(&c), (0x05, 0x26, 0x06));
    assert_eq!(sks(&c), [0x80, 0, 2]);
    good(&xcopy(
        &t,
        &list(1, 0, &[e4(&me, 512); 16], &[b2b(15, 0, 1, 0, 1)]),
    ));
    // 33 segment descriptors: TOO MANY SEGMENT DESCRIPTORS, pointer at
    // SEGMENT DESCRIPTOR LIST LENGTH.
    let c = xcopy(&t, &list(1, 0, &[e4(&me, 512)], &[b2b(0, 0, 1, 0, 1); 33]));
    assert_eq!(triple(&c), (0x05, 0x26, 0x08));
    assert_eq!(sks(&c), [0x80, 0, 8]);
    good(&xcopy(
        &t,
        &list(1, 0, &[e4(&me, 512)], &[b2b(0, 0, 1, 0, 1); 32]),
    ));
}

#[test]
fn list_lengths_must_fit_the_parameter_list() {
    let t = target();
    let p = base(&t);
    let pll = (0x05, 0x1A, 0x00);
    // Shorter than the header.
    assert_eq!(triple(&run(&t, &xcopy_cdb(15), &mut p.clone())), pll);
    // PARAMETER LIST LENGTH cuts the segment list short.
    assert_eq!(triple(&run(&t, &xcopy_cdb(107), &mut p.clone())), pll);
    // The data-out buffer is shorter than PARAMETER LIST LENGTH.
    assert_eq!(
        triple(&run(&t, &xcopy_cdb(108), &mut p[..100].to_vec())),
        pll
    );
    // The lists together exceed MAXIMUM DESCRIPTOR LIST LENGTH (1408).
    let mut q = p.clone();
    q[8..12].copy_from_slice(&1400u32.to_be_bytes());
    q.resize(16 + 64 + 1400, 0);
    assert_eq!(triple(&xcopy(&t, &q)), pll);
    // A segment list that ends inside a descriptor: pointer at SEGMENT
    // DESCRIPTOR LIST LENGTH.
    for len in [20u32, 30] {
        let mut q = p.clone();
        q[8..12].copy_from_slice(&len.to_be_bytes());
        q.resize(16 + 64 + 30, 0);
        let c = xcopy(&t, &q);
        assert_eq!(triple(&c), (0x05, 0x26, 0x00), "{len}");
        assert_eq!(sks(&c), [0x80, 0, 8], "{len}");
    }
    // Bytes past the lists are ignored.
    let mut q = p.clone();
    q.resize(512, 0xEE);
    good(&xcopy(&t, &q));
    assert_eq!(t.backend().stats().writes, 1);
}

// ---------------------------------------------------- failures mid-copy

/// A RAM disk whose reads or writes start failing after a number of
/// successful ones.
#[derive(Debug)]
struct Flaky {
    mem: MemBackend,
    reads_left: Cell<u32>,
    writes_left: Cell<u32>,
}

impl Flaky {
    fn new(blocks: u64, max_transfer: u64) -> Self {
        let mut info = DiskInfo::simple(512, blocks);
        info.max_transfer = Blocks(max_transfer);
        Self {
            mem: MemBackend::new(info),
            reads_left: Cell::new(u32::MAX),
            writes_left: Cell::new(u32::MAX),
        }
    }
}

fn take(left: &Cell<u32>) -> BackendResult {
    match left.get() {
        0 => Err(BackendError::at(BackendErrorKind::Medium, Lba(0))),
        n => {
            left.set(n - 1);
            Ok(())
        }
    }
}

impl BlockBackend for Flaky {
    fn info(&self) -> DiskInfo {
        self.mem.info()
    }
    async fn read(&self, lba: Lba, dst: BufMut<'_>) -> BackendResult {
        take(&self.reads_left)?;
        self.mem.read(lba, dst).await
    }
    async fn write(&self, lba: Lba, src: BufRef<'_>, fua: bool) -> BackendResult {
        take(&self.writes_left)?;
        self.mem.write(lba, src, fua).await
    }
    async fn flush(&self) -> BackendResult {
        self.mem.flush().await
    }
    async fn discard(&self, lba: Lba, blocks: Blocks) -> BackendResult {
        self.mem.discard(lba, blocks).await
    }
    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, may_unmap: bool) -> BackendResult {
        self.mem.write_zeroes(lba, blocks, may_unmap).await
    }
}

/// Two CSCD descriptors naming the same unit: the destination is CSCD 0
/// (byte 16), the source CSCD 1 (byte 48). Segment 0 copies 100 blocks in
/// one write, segment 1 300 blocks in writes of 128, 128 and 44.
fn two_segments(t: &Target<Flaky>) -> Vec<u8> {
    let me = naa(t);
    list(
        9,
        0,
        &[e4(&me, 512), e4(&me, 512)],
        &[b2b(1, 0, 100, 0, 1000), b2b(1, 0, 300, 100, 1100)],
    )
}

#[test]
fn a_write_failing_mid_copy_is_copy_aborted_with_the_residual() {
    let t = named("SN-F", Flaky::new(2048, 128));
    t.backend().writes_left.set(2);
    let c = xcopy(&t, &two_segments(&t));
    // COPY ABORTED, THIRD PARTY DEVICE FAILURE; INFORMATION (VALID) = 172
    // destination blocks of segment 1 not written; COMMAND-SPECIFIC
    // INFORMATION = segment 1; segment pointer at the destination's CSCD
    // descriptor.
    assert_eq!(triple(&c), (0x0A, 0x0D, 0x01));
    assert_eq!(c.sense()[0], 0xF0, "VALID");
    assert_eq!(&c.sense()[3..7], &172u32.to_be_bytes());
    assert_eq!(csi(&c), [0, 0, 0, 1]);
    assert_eq!(sks(&c), [0x80, 0, 16]);
    // COPY STATUS: completed with errors, 1 segment processed, 228 blocks
    // (100 + 128) written.
    assert_eq!(
        copy_status(&t, 9),
        [0, 0, 0, 8, 0x02, 0, 1, 0xF1, 0, 0, 0, 228]
    );
    // FAILURE DETAILS: AVAILABLE DATA 56 + 18, COPY COMMAND STATUS 02h,
    // SENSE DATA LENGTH 18, then the sense the command ended with.
    let d = results(&t, 0x04, 9).unwrap();
    let mut want = vec![0u8; 60];
    want[3] = 74;
    want[56] = 0x02;
    want[59] = 18;
    want.extend_from_slice(c.sense());
    assert_eq!(d, want);
}

#[test]
fn a_read_failing_before_any_write_has_no_residual() {
    let t = named("SN-F", Flaky::new(2048, 128));
    t.backend().reads_left.set(2);
    let c = xcopy(&t, &two_segments(&t));
    assert_eq!(triple(&c), (0x0A, 0x0D, 0x01));
    assert_eq!(c.sense()[0], 0x70, "nothing of segment 1 written: no VALID");
    assert_eq!(csi(&c), [0, 0, 0, 1]);
    assert_eq!(sks(&c), [0x80, 0, 48], "the source's CSCD descriptor");
    assert_eq!(
        copy_status(&t, 9),
        [0, 0, 0, 8, 0x02, 0, 1, 0xF1, 0, 0, 0, 100]
    );
}

// ------------------------------------------------ RECEIVE COPY RESULTS

#[test]
fn operating_parameters_bytes() {
    // RECEIVE COPY OPERATING PARAMETERS: AVAILABLE DATA 42; SNLID; 16 CSCD
    // descriptors; 32 segment descriptors; descriptor lists of 1408 bytes;
    // segments of 65535 blocks; no inline or held data; 16 concurrent
    // copies; data segment granularity 2^9; descriptor codes 02h, E4h.
    let t = target();
    let want = [
        0, 0, 0, 42, 0x01, 0, 0, 0, 0, 16, 0, 32, 0, 0, 0x05, 0x80, //
        0x01, 0xFF, 0xFE, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0, 16, 16, 9, 0, 0, 0, 0, 0, 2, 0x02, 0xE4,
    ];
    assert_eq!(results(&t, 0x03, 0).unwrap(), want);
    // 4096-byte blocks: 65535 of them.
    let t4 = named("SN-4", MemBackend::new(DiskInfo::simple(4096, 16)));
    assert_eq!(
        results(&t4, 0x03, 0).unwrap()[16..20],
        [0x0F, 0xFF, 0xF0, 0x00]
    );
    // Truncated to the ALLOCATION LENGTH.
    let mut buf = vec![0xEE; 64];
    let c = run(&t, &rcr_cdb(0x03, 0, 10), &mut buf);
    assert_eq!(c.data_in_len, 10);
    assert_eq!(buf[..10], want[..10]);
}

#[test]
fn copy_status_is_per_nexus_and_list_identifier() {
    let t = target();
    good(&xcopy(
        &t,
        &list(7, 0, &[], &[b2b(0xFFFF, 0xFFFF, 8, 0, 8)]),
    ));
    assert_eq!(
        copy_status(&t, 7),
        [0, 0, 0, 8, 0x01, 0, 1, 0xF1, 0, 0, 0, 8]
    );
    // Read twice: still there.
    assert_eq!(copy_status(&t, 7)[4], 0x01);
    // An unknown list identifier: INVALID FIELD IN CDB at byte 2.
    let c = results(&t, 0x00, 8).unwrap_err();
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    assert_eq!(sks(&c), [0xC0, 0, 2]);
    // Another nexus has its own list identifiers.
    let other = Nexus(1);
    block_on(t.execute(other, &[0; 6], &mut vec![]));
    let c = block_on(t.execute(other, &rcr_cdb(0, 7, 64), &mut vec![0; 64]));
    assert_eq!(triple(&c), (0x05, 0x24, 0x00));
    // FAILURE DETAILS of a copy without errors: status 01h, no sense.
    let mut want = vec![0u8; 60];
    want[3] = 56;
    want[56] = 0x01;
    assert_eq!(results(&t, 0x04, 7).unwrap(), want);
    let c = results(&t, 0x04, 8).unwrap_err();
    assert_eq!(sks(&c), [0xC0, 0, 2]);
}

#[test]
fn no_status_is_held_without_list_id_usage_00b() {
    let t = target();
    // LIST ID USAGE 10b (SPC-3's NRCR): the status is not held.
    good(&xcopy(
        &t,
        &list(4, 0x10, &[], &[b2b(0xFFFF, 0xFFFF, 1, 0, 1)]),
    ));
    assert!(results(&t, 0x00, 4).is_err());
    // LIST ID USAGE 11b: no list identifier at all.
    good(&xcopy(
        &t,
        &list(0, 0x18, &[], &[b2b(0xFFFF, 0xFFFF, 1, 0, 1)]),
    ));
    assert!(results(&t, 0x00, 0).is_err());
    // STR and PRIORITY are accepted.
    good(&xcopy(
        &t,
        &list(5, 0x27, &[], &[b2b(0xFFFF, 0xFFFF, 1, 0, 1)]),
    ));
    assert_eq!(copy_status(&t, 5)[4], 0x01);
}

#[test]
fn held_statuses_are_bounded() {
    let t = target();
    for id in 0..=16u8 {
        good(&xcopy(
            &t,
            &list(id, 0, &[], &[b2b(0xFFFF, 0xFFFF, 1, 0, 1)]),
        ));
    }
    assert!(results(&t, 0x00, 0).is_err(), "the oldest was dropped");
    for id in 1..=16u8 {
        assert_eq!(copy_status(&t, id)[4], 0x01);
    }
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Completion> + 'a>>;

#[test]
fn copy_status_while_the_copy_runs() {
    let t = named("SN-A", MemBackend::with_discard(64).with_yields());
    let mut p = list(2, 0, &[], &[b2b(0xFFFF, 0xFFFF, 4, 0, 8)]);
    let mut status = vec![0u8; 12];
    let cdb = xcopy_cdb(p.len() as u32);
    let rcr = rcr_cdb(0, 2, 12);
    let futs: Vec<Boxed<'_>> = vec![
        Box::pin(t.execute(N0, &cdb, &mut p)),
        Box::pin(t.execute(N0, &rcr, &mut status)),
    ];
    let r = block_on(join_all(futs));
    good(&r[0]);
    good(&r[1]);
    assert_eq!(status, [0, 0, 0, 8, 0x00, 0, 0, 0xF1, 0, 0, 0, 0]);
    assert_eq!(copy_status(&t, 2)[4], 0x01);
}

#[test]
fn a_running_list_identifier_is_operation_in_progress() {
    let t = named("SN-A", MemBackend::with_discard(64).with_yields());
    let mut p1 = list(3, 0, &[], &[b2b(0xFFFF, 0xFFFF, 4, 0, 8)]);
    let mut p2 = list(3, 0x10, &[], &[b2b(0xFFFF, 0xFFFF, 4, 0, 16)]);
    let mut p3 = list(3, 0, &[], &[b2b(0xFFFF, 0xFFFF, 4, 0, 24)]);
    let cdb = xcopy_cdb(p1.len() as u32);
    block_on(t.execute(Nexus(1), &[0; 6], &mut vec![]));
    let r = block_on(join_all(vec![
        t.execute(N0, &cdb, &mut p1),
        t.execute(N0, &cdb, &mut p2),
        t.execute(Nexus(1), &cdb, &mut p3),
    ]));
    good(&r[0]);
    // OPERATION IN PROGRESS, pointer at LIST IDENTIFIER.
    assert_eq!(triple(&r[1]), (0x05, 0x00, 0x16));
    assert_eq!(sks(&r[1]), [0x80, 0, 0]);
    good(&r[2]);
}

#[test]
fn concurrent_copies_are_limited() {
    let t = named("SN-A", MemBackend::with_discard(64).with_yields());
    let mut lists: Vec<Vec<u8>> = (0..17u8)
        .map(|i| list(i, 0, &[], &[b2b(0xFFFF, 0xFFFF, 1, 0, 1)]))
        .collect();
    let cdb = xcopy_cdb(lists[0].len() as u32);
    let r = block_on(join_all(
        lists.iter_mut().map(|p| t.execute(N0, &cdb, p)).collect(),
    ));
    let refused: Vec<_> = r.iter().filter(|c| c.status != Status::Good).collect();
    assert_eq!(refused.len(), 1);
    // INSUFFICIENT RESOURCES.
    assert_eq!(triple(refused[0]), (0x05, 0x55, 0x03));
    good(&r[0]);
}

// ----------------------------------------- opcodes, INQUIRY and VPD 8Fh

#[test]
fn report_supported_operation_codes_lists_the_copy_commands() {
    let t = target();
    let rsoc = |opcode: u8, sa: u8| {
        let mut c = [0u8; 12];
        c[0] = 0xA3;
        c[1] = 0x0C;
        c[2] = 0x02;
        c[3] = opcode;
        c[5] = sa;
        c[9] = 64;
        let mut buf = vec![0u8; 64];
        let r = run(&t, &c, &mut buf);
        good(&r);
        buf.truncate(r.data_in_len as usize);
        buf
    };
    let ff = 0xFF;
    // SPC-4 6.35.3: SUPPORT 011b, CDB SIZE 16, CDB USAGE DATA.
    assert_eq!(
        rsoc(0x83, 0x00),
        [
            0, 3, 0, 16, 0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ff, ff, ff, ff, 0, 0x04
        ]
    );
    assert_eq!(
        rsoc(0x84, 0x00),
        [
            0, 3, 0, 16, 0x84, 0x00, ff, 0, 0, 0, 0, 0, 0, 0, ff, ff, ff, ff, 0, 0x04
        ]
    );
    assert_eq!(
        rsoc(0x84, 0x03),
        [
            0, 3, 0, 16, 0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, ff, ff, ff, ff, 0, 0x04
        ]
    );
    assert_eq!(
        rsoc(0x84, 0x04),
        [
            0, 3, 0, 16, 0x84, 0x04, ff, 0, 0, 0, 0, 0, 0, 0, ff, ff, ff, ff, 0, 0x04
        ]
    );
    // EXTENDED COPY(LID4), POPULATE TOKEN, RECEIVE COPY DATA: not
    // supported, and refused at the service action.
    for (op, sa) in [(0x83, 0x01), (0x83, 0x10), (0x84, 0x01), (0x84, 0x05)] {
        assert_eq!(rsoc(op, sa), [0, 1, 0, 0]);
        let mut cdb = xcopy_cdb(0);
        cdb[0] = op;
        cdb[1] = sa;
        let c = run(&t, &cdb, &mut vec![]);
        assert_eq!(triple(&c), (0x05, 0x24, 0x00));
        assert_eq!(sks(&c), [0xCC, 0, 1]);
    }
}

#[test]
fn third_party_copy_vpd_page() {
    // SPC-4 7.8.17: Supported Commands (0001h), Parameter Data (0004h),
    // Supported Descriptors (0008h), Supported CSCD Descriptor IDs (000Ch),
    // General Copy Operations (8001h), each padded to four bytes.
    let t = target();
    let mut buf = vec![0u8; 255];
    let c = run(&t, &[0x12, 0x01, 0x8F, 0, 255, 0], &mut buf);
    good(&c);
    let mut want = vec![0x00, 0x8F, 0, 100];
    want.extend_from_slice(&[
        0x00, 0x01, 0x00, 0x0C, 8, 0x83, 1, 0x00, 0x84, 3, 0x00, 0x03,
    ]);
    want.extend_from_slice(&[0x04, 0, 0, 0]);
    want.extend_from_slice(&[0x00, 0x04, 0x00, 0x1C, 0, 0, 0, 0, 0, 16, 0, 32]);
    want.extend_from_slice(&[0, 0, 0x05, 0x80, 0, 0, 0, 0]);
    want.extend_from_slice(&[0; 12]);
    want.extend_from_slice(&[0x00, 0x08, 0x00, 0x04, 2, 0x02, 0xE4, 0]);
    want.extend_from_slice(&[0x00, 0x0C, 0x00, 0x04, 0, 2, 0xFF, 0xFF]);
    want.extend_from_slice(&[0x80, 0x01, 0x00, 0x20, 0, 0, 0, 16, 0, 0, 0, 16]);
    want.extend_from_slice(&[0x01, 0xFF, 0xFE, 0x00, 9, 0]);
    want.extend_from_slice(&[0; 18]);
    assert_eq!(&buf[..c.data_in_len as usize], &want[..]);
}

// ------------------------------------------------------------ helpers

/// A logical unit that reports geometry and moves no data.
struct GeometryOnly(DiskInfo);

impl CopyLun for GeometryOnly {
    fn info(&self) -> DiskInfo {
        self.0
    }
    fn read_blocks<'a>(&'a self, _: Lba, _: &'a mut [u8]) -> CopyIo<'a> {
        Box::pin(async { Err(BackendError::new(BackendErrorKind::Internal)) })
    }
    fn write_blocks<'a>(&'a self, _: Lba, _: &'a [u8]) -> CopyIo<'a> {
        Box::pin(async { Err(BackendError::new(BackendErrorKind::Internal)) })
    }
}

//! One test per rule of the TCMU ring ABI, with the kernel simulator on the
//! other side of a heap-backed region.

use wasmtap_ring::abi::{self, hdr, mailbox, op, req, uflag};
use wasmtap_ring::sim::{Completion, DataDir, KernelSim, Placed, SimConfig};
use wasmtap_ring::{
    Command, CorruptReason, Entry, HeapRegion, Response, Ring, RingError, SharedRegion, region,
};

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];

fn setup(cfg: SimConfig) -> (KernelSim<&'static HeapRegion>, Ring<&'static HeapRegion>) {
    let region: &'static HeapRegion = Box::leak(Box::new(HeapRegion::new(cfg.region_len())));
    let sim = KernelSim::new(region, cfg).unwrap();
    let ring = Ring::attach(region).unwrap();
    (sim, ring)
}

fn small(caps: u16) -> SimConfig {
    SimConfig {
        cmdr_size: 1024,
        data_blocks: 64,
        data_pages_per_blk: 1,
        page_size: 4096,
        caps,
    }
}

fn drain_cmds<R: SharedRegion>(ring: &mut Ring<R>) -> Vec<Command> {
    let mut out = Vec::new();
    ring.drain(&mut out, usize::MAX).unwrap();
    out.into_iter()
        .map(|e| match e {
            Entry::Command(c) => c,
            Entry::TaskManagement(t) => panic!("unexpected TMR {t:?}"),
        })
        .collect()
}

fn place(sim: &mut KernelSim<&HeapRegion>, tag: u64, cdb: &[u8], dir: DataDir) -> u16 {
    match sim.submit(tag, cdb, dir).unwrap() {
        Placed::Ring(id) => id,
        Placed::Queued => panic!("command {tag} did not fit"),
    }
}

#[test]
fn attach_refuses_mailbox_version_other_than_2() {
    let r = HeapRegion::new(4096);
    r.write_u16(0, 1).unwrap();
    assert_eq!(
        Ring::attach(&r).unwrap_err(),
        RingError::UnsupportedVersion { found: 1 }
    );
}

#[test]
fn attach_refuses_ring_that_overruns_region() {
    let r = HeapRegion::new(4096);
    r.write_u16(0, 2).unwrap();
    r.write_u32(4, 128).unwrap();
    r.write_u32(8, 8192).unwrap();
    assert!(matches!(Ring::attach(&r), Err(RingError::BadGeometry(_))));
}

#[test]
fn attach_reads_capabilities_and_data_area() {
    let cfg = small(abi::CAP_OOOC | abi::CAP_TMR);
    let (_sim, ring) = setup(cfg);
    assert!(ring.out_of_order());
    assert_eq!(ring.caps(), abi::CAP_OOOC | abi::CAP_TMR);
    assert_eq!(ring.data_area(), 128 + 1024..cfg.region_len() as u64);
}

#[test]
fn empty_ring_drains_nothing() {
    let (_sim, mut ring) = setup(small(0));
    let mut out = Vec::new();
    let d = ring.drain(&mut out, 16).unwrap();
    assert_eq!(d.entries, 0);
    assert!(!ring.publish().unwrap());
}

#[test]
fn write_command_hands_out_cdb_and_data_out() {
    let (mut sim, mut ring) = setup(small(0));
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let id = place(&mut sim, 9, &WRITE10, DataDir::ToDevice(data.clone()));
    let cmds = drain_cmds(&mut ring);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].cmd_id(), id);
    assert_eq!(cmds[0].cdb(), &WRITE10);
    assert_eq!(cmds[0].data_len(), 4096);
    let mut got = vec![0; 4096];
    region::gather(ring.region(), cmds[0].data_iovs(), 0, &mut got).unwrap();
    assert_eq!(got, data);
    for c in cmds {
        ring.complete(c, &Response::GOOD).unwrap();
    }
    assert!(ring.publish().unwrap());
    let done = sim.reap().unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].tag, done[0].status), (9, abi::SAM_STAT_GOOD));
}

#[test]
fn read_data_in_reaches_the_kernel() {
    let (mut sim, mut ring) = setup(small(0));
    place(&mut sim, 1, &READ10, DataDir::FromDevice(8192));
    let cmds = drain_cmds(&mut ring);
    let pattern: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    region::scatter(ring.region(), cmds[0].data_iovs(), 0, &pattern).unwrap();
    for c in cmds {
        ring.complete(c, &Response::GOOD).unwrap();
    }
    ring.publish().unwrap();
    let done = sim.reap().unwrap();
    assert_eq!(done[0].data_in, pattern);
    assert_eq!(done[0].read_len, None);
}

/// A 4096-byte read answered with `data` at the start of its buffer and
/// `read_len`.
fn read_answered(caps: u16, data: &[u8], read_len: u32) -> Completion {
    let (mut sim, mut ring) = setup(small(caps));
    place(&mut sim, 1, &READ10, DataDir::FromDevice(4096));
    let c = drain_cmds(&mut ring).pop().unwrap();
    region::scatter(ring.region(), c.data_iovs(), 0, data).unwrap();
    let resp = Response {
        read_len: Some(read_len),
        ..Response::GOOD
    };
    ring.complete(c, &resp).unwrap();
    ring.publish().unwrap();
    sim.reap().unwrap().pop().unwrap()
}

fn short_read(caps: u16) -> Completion {
    read_answered(caps, &[7u8; 512], 512)
}

#[test]
fn short_read_sets_read_len_when_kernel_offers_it() {
    let done = short_read(abi::CAP_READ_LEN);
    assert_eq!(done.read_len, Some(512));
    assert_eq!(done.data_in, vec![7u8; 512]);
}

#[test]
fn a_read_len_of_zero_counts_as_a_full_read() {
    // tcmu_handle_completion honours READ_LEN only when it is non-zero.
    let done = read_answered(abi::CAP_READ_LEN, &[9u8; 4096], 0);
    assert_eq!(done.read_len, None);
    assert_eq!(done.data_in, vec![9u8; 4096]);
}

#[test]
fn short_read_is_not_flagged_without_cap_read_len() {
    let done = short_read(0);
    assert_eq!(done.read_len, None);
    assert_eq!(done.data_in.len(), 4096);
}

#[test]
fn check_condition_carries_sense() {
    let (mut sim, mut ring) = setup(small(0));
    place(
        &mut sim,
        1,
        &[0x12, 0, 0, 0, 36, 0],
        DataDir::FromDevice(36),
    );
    let c = drain_cmds(&mut ring).pop().unwrap();
    let sense = [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0];
    let resp = Response {
        status: abi::SAM_STAT_CHECK_CONDITION,
        sense: &sense,
        read_len: None,
    };
    ring.complete(c, &resp).unwrap();
    ring.publish().unwrap();
    let done = sim.reap().unwrap().pop().unwrap();
    assert_eq!(done.status, abi::SAM_STAT_CHECK_CONDITION);
    assert_eq!(&done.sense[..14], &sense);
    assert!(done.sense[14..].iter().all(|&b| b == 0));
}

#[test]
fn in_order_ring_holds_tail_until_oldest_completes() {
    let (mut sim, mut ring) = setup(small(0));
    place(&mut sim, 1, &[0; 6], DataDir::None);
    place(&mut sim, 2, &[0; 6], DataDir::None);
    let mut cmds = drain_cmds(&mut ring);
    let second = cmds.pop().unwrap();
    let first = cmds.pop().unwrap();
    ring.complete(second, &Response::GOOD).unwrap();
    assert!(
        !ring.publish().unwrap(),
        "tail must not pass the oldest open slot"
    );
    assert!(sim.reap().unwrap().is_empty());
    ring.complete(first, &Response::GOOD).unwrap();
    assert!(ring.publish().unwrap());
    let tags: Vec<u64> = sim.reap().unwrap().iter().map(|c| c.tag).collect();
    assert_eq!(tags, vec![1, 2]);
}

#[test]
fn out_of_order_completion_steals_the_oldest_slot() {
    let (mut sim, mut ring) = setup(small(abi::CAP_OOOC));
    place(&mut sim, 1, &READ10, DataDir::FromDevice(4096));
    place(&mut sim, 2, &READ10, DataDir::FromDevice(4096));
    let mut cmds = drain_cmds(&mut ring);
    let second = cmds.pop().unwrap();
    let first = cmds.pop().unwrap();
    region::scatter(ring.region(), second.data_iovs(), 0, &[2u8; 4096]).unwrap();
    ring.complete(second, &Response::GOOD).unwrap();
    assert!(ring.publish().unwrap(), "OOOC lets the tail move at once");
    let done = sim.reap().unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].tag, done[0].data_in[0]), (2, 2));
    // The first command's iovecs were copied out before its slot was reused.
    region::scatter(ring.region(), first.data_iovs(), 0, &[1u8; 4096]).unwrap();
    ring.complete(first, &Response::GOOD).unwrap();
    ring.publish().unwrap();
    let done = sim.reap().unwrap();
    assert_eq!((done[0].tag, done[0].data_in[4095]), (1, 1));
}

#[test]
fn full_ring_wraps_with_pad_entries() {
    let (mut sim, mut ring) = setup(small(0));
    let mut seen = 0u64;
    for round in 0..40u64 {
        for i in 0..3 {
            // WRITE(6): 120-byte entries do not divide the ring, so it pads.
            let write6 = [0x0a, 0, 0, 0, 1, 0];
            place(
                &mut sim,
                round * 3 + i,
                &write6,
                DataDir::ToDevice(vec![i as u8; 512]),
            );
        }
        for c in drain_cmds(&mut ring) {
            ring.complete(c, &Response::GOOD).unwrap();
        }
        ring.publish().unwrap();
        seen += sim.reap().unwrap().len() as u64;
    }
    assert_eq!(seen, 120);
    assert!(sim.pads() > 0, "a 1 KiB ring must have wrapped");
    assert_eq!(ring.stats().pads, sim.pads());
}

#[test]
fn commands_wait_in_qfull_queue_until_space_is_reaped() {
    let (mut sim, mut ring) = setup(small(0));
    let mut placed = 0;
    for t in 0..20 {
        if let Placed::Ring(_) = sim
            .submit(t, &WRITE10, DataDir::ToDevice(vec![0; 100]))
            .unwrap()
        {
            placed += 1;
        }
    }
    assert!(placed < 20 && sim.queued() == 20 - placed);
    let mut total = 0;
    while total < 20 {
        for c in drain_cmds(&mut ring) {
            ring.complete(c, &Response::GOOD).unwrap();
        }
        ring.publish().unwrap();
        total += sim.reap().unwrap().len();
    }
    assert_eq!(sim.queued(), 0);
}

#[test]
fn command_over_half_the_ring_is_refused_by_the_kernel() {
    let cfg = SimConfig {
        cmdr_size: 256,
        ..small(0)
    };
    let (mut sim, _ring) = setup(cfg);
    // 112 + 16 = 128 bytes: exactly half the ring, accepted.
    assert!(sim.submit(1, &[0x88; 16], DataDir::None).is_ok());
    // A 32-byte CDB makes a 144-byte entry: more than half, refused.
    let mut cdb = [0u8; 32];
    cdb[0] = 0x7f;
    cdb[7] = 24;
    assert!(sim.submit(2, &cdb, DataDir::None).is_err());
}

#[test]
fn command_with_more_data_than_the_data_area_is_refused() {
    let (mut sim, _ring) = setup(small(0));
    let err = sim.submit(1, &WRITE10, DataDir::ToDevice(vec![0; 65 * 4096]));
    assert!(matches!(
        err,
        Err(wasmtap_ring::sim::SimError::TooLarge { .. })
    ));
}

#[test]
fn tmr_lists_aborted_commands_and_needs_no_answer() {
    let (mut sim, mut ring) = setup(small(abi::CAP_TMR));
    let a = place(&mut sim, 10, &[0; 6], DataDir::None);
    let b = place(&mut sim, 11, &[0; 6], DataDir::None);
    sim.task_management(abi::tmr_type::ABORT_TASK, &[11])
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(ring.drain(&mut out, 99).unwrap().entries, 3);
    let Entry::TaskManagement(t) = &out[2] else {
        panic!("third entry should be the TMR")
    };
    assert_eq!(t.tmr_type, abi::tmr_type::ABORT_TASK);
    assert_eq!(t.cmd_ids, vec![b]);
    let ids: Vec<u16> = out
        .into_iter()
        .filter_map(|e| match e {
            Entry::Command(c) => {
                let id = c.cmd_id();
                ring.complete(c, &Response::GOOD).unwrap();
                Some(id)
            }
            Entry::TaskManagement(_) => None,
        })
        .collect();
    assert_eq!(ids, vec![a, b]);
    ring.publish().unwrap();
    assert_eq!(sim.reap().unwrap().len(), 2);
    // The TMR entry was released too: the ring is empty again.
    assert_eq!(
        sim.region()
            .load_u32_acquire(mailbox::CMD_TAIL as u64)
            .unwrap(),
        sim.region()
            .load_u32_acquire(mailbox::CMD_HEAD as u64)
            .unwrap()
    );
}

#[test]
fn tmr_is_not_sent_without_cap_tmr() {
    let (mut sim, _ring) = setup(small(0));
    place(&mut sim, 10, &[0; 6], DataDir::None);
    assert_eq!(
        sim.task_management(abi::tmr_type::ABORT_TASK, &[10])
            .unwrap(),
        None
    );
}

/// Write a raw entry at the current head and publish it.
fn raw_entry(r: &HeapRegion, len_op: u32, body: &[(usize, &[u8])]) {
    let head = r.load_u32_acquire(mailbox::CMD_HEAD as u64).unwrap();
    let e = 128 + u64::from(head);
    r.write_u32(e, len_op).unwrap();
    for (off, bytes) in body {
        r.write_bytes(e + *off as u64, bytes).unwrap();
    }
    let len = len_op & !7;
    r.store_u32_release(mailbox::CMD_HEAD as u64, head + len)
        .unwrap();
}

#[test]
fn unknown_entry_opcode_is_flagged_and_released() {
    let (sim, mut ring) = setup(small(0));
    raw_entry(sim.region(), 64 | 5, &[]);
    let mut out = Vec::new();
    assert_eq!(ring.drain(&mut out, 9).unwrap().entries, 0);
    assert_eq!(ring.stats().unknown_ops, 1);
    let mut uf = [0u8];
    sim.region()
        .read_bytes(128 + hdr::UFLAGS as u64, &mut uf)
        .unwrap();
    assert_eq!(uf[0] & uflag::UNKNOWN_OP, uflag::UNKNOWN_OP);
    assert!(ring.publish().unwrap());
}

fn corrupt_reason(ring: &mut Ring<&HeapRegion>) -> CorruptReason {
    let mut out = Vec::new();
    match ring.drain(&mut out, 9) {
        Err(RingError::Corrupt { reason, .. }) => reason,
        other => panic!("expected a corrupt ring, got {other:?}"),
    }
}

#[test]
fn misaligned_head_marks_ring_broken() {
    let (sim, mut ring) = setup(small(0));
    sim.region()
        .store_u32_release(mailbox::CMD_HEAD as u64, 12)
        .unwrap();
    assert_eq!(corrupt_reason(&mut ring), CorruptReason::BadHead(12));
    assert!(ring.broken().is_some());
    let mut out = Vec::new();
    assert!(matches!(ring.drain(&mut out, 9), Err(RingError::Broken(_))));
    assert!(matches!(ring.publish(), Err(RingError::Broken(_))));
}

#[test]
fn head_outside_ring_is_corrupt() {
    let (sim, mut ring) = setup(small(0));
    sim.region()
        .store_u32_release(mailbox::CMD_HEAD as u64, 4096)
        .unwrap();
    assert_eq!(corrupt_reason(&mut ring), CorruptReason::BadHead(4096));
}

#[test]
fn zero_length_entry_is_corrupt_not_a_hang() {
    let (sim, mut ring) = setup(small(0));
    sim.region()
        .store_u32_release(mailbox::CMD_HEAD as u64, 64)
        .unwrap();
    assert_eq!(corrupt_reason(&mut ring), CorruptReason::BadEntryLength(0));
}

#[test]
fn entry_longer_than_published_span_is_corrupt() {
    let (sim, mut ring) = setup(small(0));
    sim.region()
        .write_u32(128, 512 | u32::from(op::CMD))
        .unwrap();
    sim.region()
        .store_u32_release(mailbox::CMD_HEAD as u64, 256)
        .unwrap();
    assert_eq!(
        corrupt_reason(&mut ring),
        CorruptReason::BadEntryLength(512)
    );
}

#[test]
fn iovec_outside_data_area_is_corrupt() {
    let (sim, mut ring) = setup(small(0));
    let region = sim.region();
    // Valid-looking entry whose iovec points into the command ring.
    raw_entry(
        region,
        128 | u32::from(op::CMD),
        &[
            (hdr::CMD_ID, &1u16.to_ne_bytes()),
            (req::IOV_CNT, &1u32.to_ne_bytes()),
            (req::CDB_OFF, &(128u64 + 112).to_ne_bytes()),
            (req::IOV, &200u64.to_ne_bytes()),
            (req::IOV + 8, &512u64.to_ne_bytes()),
            (112, &[0u8; 6]),
        ],
    );
    assert!(matches!(
        corrupt_reason(&mut ring),
        CorruptReason::IovecOutOfDataArea {
            index: 0,
            base: 200,
            len: 512
        }
    ));
}

#[test]
fn iovec_length_overflow_is_corrupt() {
    let (sim, mut ring) = setup(small(0));
    let base = 128u64 + 1024;
    raw_entry(
        sim.region(),
        128 | u32::from(op::CMD),
        &[
            (hdr::CMD_ID, &1u16.to_ne_bytes()),
            (req::IOV_CNT, &1u32.to_ne_bytes()),
            (req::CDB_OFF, &(128u64 + 112).to_ne_bytes()),
            (req::IOV, &base.to_ne_bytes()),
            (req::IOV + 8, &u64::MAX.to_ne_bytes()),
        ],
    );
    assert!(matches!(
        corrupt_reason(&mut ring),
        CorruptReason::IovecOutOfDataArea { .. }
    ));
}

#[test]
fn iovec_count_larger_than_entry_is_corrupt() {
    let (sim, mut ring) = setup(small(0));
    raw_entry(
        sim.region(),
        128 | u32::from(op::CMD),
        &[
            (hdr::CMD_ID, &1u16.to_ne_bytes()),
            (req::IOV_CNT, &u32::MAX.to_ne_bytes()),
            (req::IOV_BIDI_CNT, &u32::MAX.to_ne_bytes()),
        ],
    );
    assert!(matches!(
        corrupt_reason(&mut ring),
        CorruptReason::IovecsOverflowEntry { .. }
    ));
}

#[test]
fn cdb_offset_outside_entry_is_corrupt() {
    let (sim, mut ring) = setup(small(0));
    raw_entry(
        sim.region(),
        128 | u32::from(op::CMD),
        &[
            (hdr::CMD_ID, &1u16.to_ne_bytes()),
            (req::CDB_OFF, &u64::MAX.to_ne_bytes()),
        ],
    );
    assert_eq!(
        corrupt_reason(&mut ring),
        CorruptReason::CdbOutsideEntry(u64::MAX)
    );
}

#[test]
fn duplicate_cmd_id_in_flight_is_corrupt() {
    let (mut sim, mut ring) = setup(small(0));
    let id = place(&mut sim, 1, &[0; 6], DataDir::None);
    let _held = drain_cmds(&mut ring);
    raw_entry(
        sim.region(),
        128 | u32::from(op::CMD),
        &[
            (hdr::CMD_ID, &id.to_ne_bytes()),
            (req::CDB_OFF, &(128u64 + 120 + 112).to_ne_bytes()),
        ],
    );
    assert_eq!(corrupt_reason(&mut ring), CorruptReason::BadCmdId(id));
}

#[test]
fn cdb_longer_than_lio_sends_is_refused_with_check_condition() {
    let (mut sim, mut ring) = setup(small(0));
    // Variable-length CDB (0x7F) with additional length 40: 48 bytes.
    let mut cdb = vec![0u8; 48];
    cdb[0] = 0x7f;
    cdb[7] = 40;
    place(&mut sim, 5, &cdb, DataDir::None);
    assert!(drain_cmds(&mut ring).is_empty());
    assert_eq!(ring.stats().refused, 1);
    ring.publish().unwrap();
    let done = sim.reap().unwrap().pop().unwrap();
    assert_eq!(done.status, abi::SAM_STAT_CHECK_CONDITION);
    assert_eq!((done.sense[2], done.sense[12]), (0x05, 0x20));
}

#[test]
fn completing_a_command_not_in_flight_is_an_error_that_keeps_the_ring() {
    let (mut sim, mut ring) = setup(small(0));
    place(&mut sim, 1, &[0; 6], DataDir::None);
    let c = drain_cmds(&mut ring).pop().unwrap();
    let id = c.cmd_id();
    ring.complete(c, &Response::GOOD).unwrap();
    // A forged command with the same id: not in flight any more.
    let forged = Command::default();
    assert_eq!(
        ring.complete(forged, &Response::GOOD),
        Err(RingError::NotInFlight { cmd_id: 0 })
    );
    assert!(ring.broken().is_none());
    assert!(ring.publish().unwrap());
    assert_eq!(sim.reap().unwrap()[0].cmd_id, id);
}

#[test]
fn one_publish_per_batch() {
    let (mut sim, mut ring) = setup(small(abi::CAP_OOOC));
    for t in 0..5 {
        place(&mut sim, t, &[0; 6], DataDir::None);
    }
    for c in drain_cmds(&mut ring) {
        ring.complete(c, &Response::GOOD).unwrap();
    }
    assert!(ring.publish().unwrap());
    assert!(!ring.publish().unwrap());
    assert_eq!(ring.stats().publishes, 1);
    assert_eq!(sim.reap().unwrap().len(), 5);
}

#[test]
fn drain_limit_leaves_the_rest_for_the_next_call() {
    let (mut sim, mut ring) = setup(small(0));
    for t in 0..4 {
        place(&mut sim, t, &[0; 6], DataDir::None);
    }
    let mut out = Vec::new();
    let d = ring.drain(&mut out, 3).unwrap();
    assert_eq!((d.entries, d.more), (3, true));
    let d = ring.drain(&mut out, 3).unwrap();
    assert_eq!((d.entries, d.more), (1, false));
}

#[test]
fn has_new_sees_published_entries_until_they_are_drained() {
    let (mut sim, mut ring) = setup(small(0));
    assert!(!ring.has_new());
    place(&mut sim, 1, &[0; 6], DataDir::None);
    assert!(ring.has_new());
    let mut out = Vec::new();
    ring.drain(&mut out, 1).unwrap();
    assert!(!ring.has_new(), "drained entries are not new");
    place(&mut sim, 2, &[0; 6], DataDir::None);
    assert!(ring.has_new());
}

#[test]
fn user_space_that_corrupts_a_header_breaks_the_simulated_ring() {
    let (mut sim, mut ring) = setup(small(0));
    place(&mut sim, 1, &[0; 6], DataDir::None);
    let c = drain_cmds(&mut ring).pop().unwrap();
    ring.complete(c, &Response::GOOD).unwrap();
    ring.publish().unwrap();
    sim.region().write_u32(128, 64 | 1).unwrap();
    assert!(sim.reap().is_err());
    assert!(sim.broken().is_some());
}

#[test]
fn data_in_buffers_are_poisoned_unless_the_model_is_told_not_to() {
    let seen = |poison: bool| {
        let (mut sim, mut ring) = setup(small(0));
        sim.set_poison(poison);
        // Something already in the data area, as after earlier commands.
        let start = ring.data_area().start;
        ring.region().fill_bytes(start, 64 * 4096, 0x11).unwrap();
        place(&mut sim, 1, &READ10, DataDir::FromDevice(4096));
        let cmds = drain_cmds(&mut ring);
        let mut got = vec![0; 4096];
        region::gather(ring.region(), cmds[0].data_iovs(), 0, &mut got).unwrap();
        got
    };
    assert!(seen(true).iter().all(|&b| b == wasmtap_ring::sim::POISON));
    // The kernel leaves the buffer as it was.
    assert!(seen(false).iter().all(|&b| b == 0x11));
}

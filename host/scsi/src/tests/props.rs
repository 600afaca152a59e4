//! Property tests: random command sequences against a model of the disk,
//! and arbitrary CDBs against the target's invariants.

use std::cell::RefCell;

use proptest::prelude::*;

use crate::sense::Status;
use crate::target::{Nexus, SanitizeState, Target};
use crate::testing::{MemBackend, block_on};
use crate::{
    BackendError, BackendErrorKind, BlockBackend, BlockExtent, BlockState, Blocks, DeviceIdentity,
    DiskInfo, Lba,
};

const BLOCKS: u64 = 64;
const BS: usize = 512;

#[derive(Debug, Clone)]
enum Op {
    Write {
        cdb_size: u8,
        lba: u64,
        blocks: u64,
        seed: u8,
    },
    Read {
        cdb_size: u8,
        lba: u64,
        blocks: u64,
    },
    WriteSame {
        lba: u64,
        blocks: u64,
        seed: u8,
        unmap: bool,
    },
    Unmap {
        lba: u64,
        blocks: u64,
    },
    CompareAndWrite {
        lba: u64,
        blocks: u64,
        seed: u8,
        corrupt: bool,
    },
    OrWrite {
        lba: u64,
        blocks: u64,
        seed: u8,
    },
    WriteAtomic {
        lba: u64,
        blocks: u64,
        seed: u8,
    },
    GetLbaStatus {
        lba: u64,
        alloc: u32,
    },
    SanitizeOverwrite {
        count: u8,
        invert: bool,
        pattern_len: u16,
        seed: u8,
    },
    SanitizeBlockErase,
}

fn op() -> impl Strategy<Value = Op> {
    let lba = 0..BLOCKS + 4;
    let blocks = 0..10u64;
    prop_oneof![
        (0..4u8, lba.clone(), blocks.clone(), any::<u8>()).prop_map(|(c, l, b, s)| Op::Write {
            cdb_size: c,
            lba: l,
            blocks: b,
            seed: s
        }),
        (0..4u8, lba.clone(), blocks.clone()).prop_map(|(c, l, b)| Op::Read {
            cdb_size: c,
            lba: l,
            blocks: b
        }),
        (lba.clone(), 1..10u64, any::<u8>(), any::<bool>()).prop_map(|(l, b, s, u)| {
            Op::WriteSame {
                lba: l,
                blocks: b,
                seed: s,
                unmap: u,
            }
        }),
        (lba.clone(), blocks.clone()).prop_map(|(l, b)| Op::Unmap { lba: l, blocks: b }),
        (lba.clone(), 1..4u64, any::<u8>(), any::<bool>()).prop_map(|(l, b, s, c)| {
            Op::CompareAndWrite {
                lba: l,
                blocks: b,
                seed: s,
                corrupt: c,
            }
        }),
        (lba.clone(), blocks.clone(), any::<u8>()).prop_map(|(l, b, s)| Op::OrWrite {
            lba: l,
            blocks: b,
            seed: s
        }),
        (lba.clone(), blocks, any::<u8>()).prop_map(|(l, b, s)| Op::WriteAtomic {
            lba: l,
            blocks: b,
            seed: s
        }),
        (lba, 0..120u32).prop_map(|(l, a)| Op::GetLbaStatus { lba: l, alloc: a }),
        (1..4u8, any::<bool>(), 1..=BS as u16, any::<u8>()).prop_map(|(c, i, l, s)| {
            Op::SanitizeOverwrite {
                count: c,
                invert: i,
                pattern_len: l,
                seed: s,
            }
        }),
        Just(Op::SanitizeBlockErase),
    ]
}

/// The GET LBA STATUS answer the model expects: runs of equal status
/// (1: deallocated) from `lba`, as many as `alloc` has room for (at least
/// one), truncated to `alloc`.
fn expected_lba_status(dealloc: &[bool], lba: u64, alloc: u32) -> Vec<u8> {
    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    for (i, &d) in dealloc.iter().enumerate().skip(lba as usize) {
        match runs.last_mut() {
            Some((_, n, s)) if *s == d => *n += 1,
            _ => runs.push((i as u64, 1, d)),
        }
    }
    let want = ((alloc as usize).saturating_sub(8) / 16).max(1);
    runs.truncate(want);
    let mut out = ((4 + 16 * runs.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&[0; 4]);
    for (l, n, d) in runs {
        out.extend_from_slice(&l.to_be_bytes());
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&[u8::from(d), 0, 0, 0]);
    }
    out.truncate(alloc as usize);
    out
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ seed.wrapping_mul(i as u8 | 1))
        .collect()
}

/// The CDB for a READ or WRITE of the given size class (6, 10, 12, 16).
fn rw_cdb(write: bool, size: u8, lba: u64, blocks: u64) -> Option<Vec<u8>> {
    let base = if write {
        [0x0A, 0x2A, 0xAA, 0x8A]
    } else {
        [0x08, 0x28, 0xA8, 0x88]
    };
    let op = base[size as usize];
    Some(match size {
        0 => {
            // READ/WRITE (6) cannot express 0 blocks (0 means 256).
            if blocks == 0 {
                return None;
            }
            vec![
                op,
                (lba >> 16) as u8 & 0x1F,
                (lba >> 8) as u8,
                lba as u8,
                blocks as u8,
                0,
            ]
        }
        1 => {
            let mut c = vec![op, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
            c
        }
        2 => {
            let mut c = vec![op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[6..10].copy_from_slice(&(blocks as u32).to_be_bytes());
            c
        }
        _ => {
            let mut c = vec![0u8; 16];
            c[0] = op;
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
            c
        }
    })
}

fn in_range(lba: u64, blocks: u64) -> bool {
    lba + blocks <= BLOCKS
}

fn span(lba: u64, blocks: u64) -> std::ops::Range<usize> {
    lba as usize * BS..(lba + blocks) as usize * BS
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_commands_match_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let t = Target::new(MemBackend::with_discard(BLOCKS), DeviceIdentity::new("p").unwrap()).unwrap();
        let n = Nexus(0);
        block_on(t.execute(n, &[0; 6], &mut vec![]));
        let mut model = vec![0u8; BLOCKS as usize * BS];
        // Provisioning: a thin disk starts deallocated.
        let mut dealloc = vec![true; BLOCKS as usize];
        let blocks_of = |lba: u64, n: u64| lba as usize..(lba + n) as usize;
        for op in ops {
            match op {
                Op::Write { cdb_size, lba, blocks, seed } => {
                    let Some(cdb) = rw_cdb(true, cdb_size, lba, blocks) else { continue };
                    let mut d = data(blocks as usize * BS, seed);
                    let c = block_on(t.execute(n, &cdb, &mut d));
                    prop_assert_eq!(c.status == Status::Good, in_range(lba, blocks));
                    if c.status == Status::Good {
                        model[span(lba, blocks)].copy_from_slice(&d);
                        dealloc[blocks_of(lba, blocks)].fill(false);
                    }
                }
                Op::Read { cdb_size, lba, blocks } => {
                    let Some(cdb) = rw_cdb(false, cdb_size, lba, blocks) else { continue };
                    let mut d = vec![0xEE; blocks as usize * BS];
                    let c = block_on(t.execute(n, &cdb, &mut d));
                    prop_assert_eq!(c.status == Status::Good, in_range(lba, blocks));
                    if c.status == Status::Good {
                        prop_assert_eq!(c.data_in_len, d.len() as u64);
                        prop_assert!(d == model[span(lba, blocks)]);
                    }
                }
                Op::WriteSame { lba, blocks, seed, unmap } => {
                    let mut cdb = vec![0x41, if unmap { 0x08 } else { 0 }, 0, 0, 0, 0, 0, 0, 0, 0];
                    cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                    cdb[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
                    let block = if seed % 3 == 0 { vec![0; BS] } else { data(BS, seed) };
                    let c = block_on(t.execute(n, &cdb, &mut block.clone()));
                    prop_assert_eq!(c.status == Status::Good, in_range(lba, blocks));
                    if c.status == Status::Good {
                        for chunk in model[span(lba, blocks)].chunks_mut(BS) {
                            chunk.copy_from_slice(&block);
                        }
                        // Zeros with UNMAP may deallocate (LBPRZ); zeros
                        // without it are allocated zeros, which are mapped.
                        let unmapped = unmap && block.iter().all(|&b| b == 0);
                        dealloc[blocks_of(lba, blocks)].fill(unmapped);
                    }
                }
                Op::Unmap { lba, blocks } => {
                    let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
                    p.extend_from_slice(&lba.to_be_bytes());
                    p.extend_from_slice(&(blocks as u32).to_be_bytes());
                    p.extend_from_slice(&[0; 4]);
                    let cdb = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
                    let c = block_on(t.execute(n, &cdb, &mut p));
                    prop_assert_eq!(c.status == Status::Good, in_range(lba, blocks));
                    if c.status == Status::Good {
                        // LBPRZ: unmapped blocks read as zeros.
                        model[span(lba, blocks)].fill(0);
                        dealloc[blocks_of(lba, blocks)].fill(true);
                    }
                }
                Op::CompareAndWrite { lba, blocks, seed, corrupt } => {
                    let mut cdb = [0u8; 16];
                    cdb[0] = 0x89;
                    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                    cdb[13] = blocks as u8;
                    if !in_range(lba, blocks) {
                        let c = block_on(t.execute(n, &cdb, &mut vec![0; 2 * blocks as usize * BS]));
                        prop_assert_eq!(c.sense()[12], 0x21);
                        continue;
                    }
                    let mut d = model[span(lba, blocks)].to_vec();
                    if corrupt {
                        let at = seed as usize % d.len();
                        d[at] ^= 0x5A;
                    }
                    let new = data(blocks as usize * BS, seed);
                    d.extend_from_slice(&new);
                    let c = block_on(t.execute(n, &cdb, &mut d));
                    if corrupt {
                        prop_assert_eq!(c.sense()[2], 0x0E);
                        let info = u32::from_be_bytes(c.sense()[3..7].try_into().unwrap());
                        prop_assert_eq!(info as usize, seed as usize % (blocks as usize * BS));
                    } else {
                        prop_assert_eq!(c.status, Status::Good);
                        model[span(lba, blocks)].copy_from_slice(&new);
                        dealloc[blocks_of(lba, blocks)].fill(false);
                    }
                }
                Op::OrWrite { lba, blocks, seed } => {
                    let mut cdb = [0u8; 16];
                    cdb[0] = 0x8B;
                    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                    cdb[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
                    // Sparse bits, so that ORs accumulate visibly.
                    let mut d: Vec<u8> = data(blocks as usize * BS, seed)
                        .iter()
                        .map(|b| b & seed.rotate_left(3) & 0x93)
                        .collect();
                    let c = block_on(t.execute(n, &cdb, &mut d));
                    prop_assert_eq!(c.status == Status::Good, in_range(lba, blocks));
                    if c.status == Status::Good {
                        for (m, x) in model[span(lba, blocks)].iter_mut().zip(&d) {
                            *m |= x;
                        }
                        dealloc[blocks_of(lba, blocks)].fill(false);
                    } else {
                        prop_assert_eq!(c.sense()[12], 0x21);
                    }
                }
                Op::WriteAtomic { lba, blocks, seed } => {
                    let mut cdb = [0u8; 16];
                    cdb[0] = 0x9C;
                    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                    cdb[12..14].copy_from_slice(&(blocks as u16).to_be_bytes());
                    let mut d = data(blocks as usize * BS, seed);
                    let c = block_on(t.execute(n, &cdb, &mut d));
                    prop_assert_eq!(c.status == Status::Good, in_range(lba, blocks));
                    if c.status == Status::Good {
                        model[span(lba, blocks)].copy_from_slice(&d);
                        dealloc[blocks_of(lba, blocks)].fill(false);
                    } else {
                        prop_assert_eq!(c.sense()[12], 0x21);
                    }
                }
                Op::GetLbaStatus { lba, alloc } => {
                    let mut cdb = [0u8; 16];
                    cdb[0] = 0x9E;
                    cdb[1] = 0x12;
                    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                    cdb[10..14].copy_from_slice(&alloc.to_be_bytes());
                    let mut d = vec![0xEE; 128];
                    let c = block_on(t.execute(n, &cdb, &mut d));
                    if lba >= BLOCKS {
                        prop_assert_eq!(c.sense()[12], 0x21);
                    } else {
                        prop_assert_eq!(c.status, Status::Good);
                        let want = expected_lba_status(&dealloc, lba, alloc);
                        prop_assert_eq!(&d[..c.data_in_len as usize], &want[..]);
                    }
                }
                Op::SanitizeOverwrite { count, invert, pattern_len, seed } => {
                    let pattern = data(usize::from(pattern_len), seed);
                    let mut p = vec![count | if invert { 0x80 } else { 0 }, 0];
                    p.extend_from_slice(&pattern_len.to_be_bytes());
                    p.extend_from_slice(&pattern);
                    let len = (p.len() as u16).to_be_bytes();
                    let cdb = [0x48, 0x01, 0, 0, 0, 0, 0, len[0], len[1], 0];
                    let c = block_on(t.execute(n, &cdb, &mut p));
                    prop_assert_eq!(c.status, Status::Good);
                    // The last pass always writes the pattern as given.
                    let block: Vec<u8> = pattern.iter().copied().cycle().take(BS).collect();
                    for chunk in model.chunks_mut(BS) {
                        chunk.copy_from_slice(&block);
                    }
                    dealloc.fill(false);
                }
                Op::SanitizeBlockErase => {
                    let cdb = [0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
                    let c = block_on(t.execute(n, &cdb, &mut vec![]));
                    prop_assert_eq!(c.status, Status::Good);
                    model.fill(0);
                    dealloc.fill(true);
                }
            }
            prop_assert_eq!(t.sanitize_state(), SanitizeState::Idle);
            prop_assert!(t.backend().contents() == model);
        }
        prop_assert_eq!(t.backend().info().block_count.0, BLOCKS);
    }

    #[test]
    fn arbitrary_cdbs_never_panic_and_keep_invariants(
        cdb in proptest::collection::vec(any::<u8>(), 0..20),
        opcode in prop::sample::select(crate::cdb::OPCODES.iter().map(|i| i.opcode).collect::<Vec<_>>()),
        use_known in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let t = Target::new(MemBackend::with_discard(BLOCKS), DeviceIdentity::new("f").unwrap()).unwrap();
        let mut cdb = cdb;
        if use_known && !cdb.is_empty() {
            cdb[0] = opcode;
        }
        let mut buf = data;
        let len = buf.len() as u64;
        for _ in 0..2 {
            let c = block_on(t.execute(Nexus(0), &cdb, &mut buf));
            prop_assert!(c.data_in_len <= len);
            prop_assert_eq!(c.status == Status::CheckCondition, !c.sense().is_empty());
            if c.status == Status::ConditionMet {
                prop_assert_eq!(c.data_in_len, 0);
            }
            if c.status == Status::CheckCondition {
                prop_assert_eq!(c.sense().len(), 18);
                prop_assert_eq!(c.data_in_len, 0);
            }
        }
    }
}

/// A thin disk whose `block_status` answers are arbitrary: mostly well
/// formed, sometimes not.
#[derive(Debug)]
struct RandomStatus {
    answers: RefCell<Vec<Vec<(u64, u64, u8)>>>,
}

impl BlockBackend for RandomStatus {
    fn info(&self) -> DiskInfo {
        let mut info = DiskInfo::simple(512, BLOCKS);
        info.discard = MemBackend::with_discard(1).info().discard;
        info
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
    /// Each answer is a list of (start offset from `lba` or absolute LBA,
    /// length, state) turned into extents; offsets usually chain.
    async fn block_status(
        &self,
        lba: Lba,
        _blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        let Some(answer) = self.answers.borrow_mut().pop() else {
            return Ok(Vec::new());
        };
        let mut at = lba.0;
        Ok(answer
            .into_iter()
            .map(|(skew, blocks, state)| {
                // skew 0 (most of the time): contiguous; else off by some.
                let start = if skew == 0 { at } else { at.wrapping_add(skew) };
                at = start.wrapping_add(blocks);
                let state = match state % 3 {
                    0 => BlockState::Mapped,
                    1 => BlockState::Deallocated,
                    _ => BlockState::Zero,
                };
                BlockExtent {
                    lba: Lba(start),
                    blocks: Blocks(blocks),
                    state,
                }
            })
            .collect())
    }
}

fn extent_list() -> impl Strategy<Value = Vec<(u64, u64, u8)>> {
    let skew = prop_oneof![8 => Just(0u64), 1 => any::<u64>(), 1 => 1..3u64];
    let blocks = prop_oneof![8 => 1..20u64, 1 => Just(0u64), 1 => any::<u64>()];
    proptest::collection::vec((skew, blocks, any::<u8>()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn get_lba_status_is_well_formed_or_an_error_for_any_backend_answer(
        answers in proptest::collection::vec(extent_list(), 0..8),
        lba in 0..BLOCKS,
        alloc in 0..200u32,
    ) {
        let t = Target::new(
            RandomStatus { answers: RefCell::new(answers) },
            DeviceIdentity::new("r").unwrap(),
        )
        .unwrap();
        block_on(t.execute(Nexus(0), &[0; 6], &mut vec![]));
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9E;
        cdb[1] = 0x12;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&alloc.to_be_bytes());
        let mut buf = vec![0u8; 256];
        let c = block_on(t.execute(Nexus(0), &cdb, &mut buf));
        if c.status == Status::CheckCondition {
            // A malformed answer: HARDWARE ERROR, INTERNAL TARGET FAILURE.
            prop_assert_eq!((c.sense()[2], c.sense()[12]), (0x04, 0x44));
            prop_assert_eq!(c.data_in_len, 0);
            return Ok(());
        }
        prop_assert!(c.data_in_len <= u64::from(alloc));
        if alloc < 24 {
            return Ok(());
        }
        let len = u32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
        prop_assert!(len >= 20 && (len - 4).is_multiple_of(16));
        prop_assert_eq!(c.data_in_len as usize, len + 4);
        let mut next = lba;
        let mut last = None;
        for d in buf[8..len + 4].chunks(16) {
            let l = u64::from_be_bytes(d[0..8].try_into().unwrap());
            let n = u64::from(u32::from_be_bytes(d[8..12].try_into().unwrap()));
            prop_assert_eq!(l, next, "contiguous from the starting LBA");
            prop_assert!(n >= 1);
            prop_assert!(d[12] <= 1 && d[13..16] == [0, 0, 0]);
            prop_assert!(last != Some(d[12]), "adjacent runs merged");
            last = Some(d[12]);
            next = l + n;
        }
        prop_assert!(next <= BLOCKS);
    }
}

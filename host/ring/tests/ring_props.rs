//! Property tests: random command streams through the kernel simulator and
//! the engine, checking that every command completes exactly once with the
//! data each side wrote.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use wasmtap_ring::abi;
use wasmtap_ring::sim::{DataDir, KernelSim, SimConfig};
use wasmtap_ring::{Command, Entry, HeapRegion, Response, Ring, region};

#[derive(Debug, Clone)]
enum Op {
    Submit { kind: u8, len: u32 },
    Drain { max: usize },
    Complete { pick: usize, short: bool },
    Publish,
    Reap,
    Abort { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 1u32..40_000).prop_map(|(kind, len)| Op::Submit { kind, len }),
        2 => (1usize..8).prop_map(|max| Op::Drain { max }),
        4 => (any::<usize>(), prop::bool::weighted(0.1))
            .prop_map(|(pick, short)| Op::Complete { pick, short }),
        1 => Just(Op::Publish),
        2 => Just(Op::Reap),
        1 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
    ]
}

fn pattern(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect()
}

/// Tag in the LBA field of a 16-byte CDB, so the backend side knows it.
fn cdb_for(tag: u64, kind: u8) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = [0x91, 0x8a, 0x88][kind as usize];
    cdb[2..10].copy_from_slice(&tag.to_be_bytes());
    cdb
}

fn tag_of(c: &Command) -> u64 {
    u64::from_be_bytes(c.cdb()[2..10].try_into().unwrap())
}

struct Harness {
    sim: KernelSim<&'static HeapRegion>,
    ring: Ring<&'static HeapRegion>,
    held: Vec<Command>,
    /// tag -> (kind, len, short read length if any)
    submitted: HashMap<u64, (u8, u32)>,
    short: HashMap<u64, u32>,
    done: HashSet<u64>,
    next_tag: u64,
    /// cmd_ids each queued TMR should list, in queue order.
    tmrs_sent: Vec<Vec<u16>>,
}

impl Harness {
    fn new(cfg: SimConfig) -> Self {
        let region: &'static HeapRegion = Box::leak(Box::new(HeapRegion::new(cfg.region_len())));
        Self {
            sim: KernelSim::new(region, cfg).unwrap(),
            ring: Ring::attach(region).unwrap(),
            held: Vec::new(),
            submitted: HashMap::new(),
            short: HashMap::new(),
            done: HashSet::new(),
            next_tag: 1,
            tmrs_sent: Vec::new(),
        }
    }

    fn drain(&mut self, max: usize) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        self.ring.drain(&mut out, max).unwrap();
        for e in out {
            match e {
                Entry::Command(c) => {
                    let tag = tag_of(&c);
                    let (kind, len) = self.submitted[&tag];
                    prop_assert_eq!(c.data_len(), if kind == 0 { 0 } else { u64::from(len) });
                    if kind == 1 {
                        let mut got = vec![0; len as usize];
                        region::gather(self.ring.region(), c.data_iovs(), 0, &mut got).unwrap();
                        prop_assert_eq!(got, pattern(tag, len as usize), "data-out of tag {}", tag);
                    }
                    self.held.push(c);
                }
                Entry::TaskManagement(t) => {
                    // A TMR lists commands that were on the ring when it was
                    // queued; user space may have completed them since (the
                    // kernel has the same race), so compare with the ids
                    // recorded at queue time.
                    let expected = self.tmrs_sent.remove(0);
                    prop_assert_eq!(t.cmd_ids, expected);
                    prop_assert_eq!(t.tmr_type, abi::tmr_type::ABORT_TASK);
                }
            }
        }
        Ok(())
    }

    fn complete(&mut self, pick: usize, short: bool) {
        if self.held.is_empty() {
            return;
        }
        let c = self.held.swap_remove(pick % self.held.len());
        let tag = tag_of(&c);
        let (kind, len) = self.submitted[&tag];
        let mut resp = Response::GOOD;
        // A READ_LEN of 0 is ignored (tcmu_handle_completion honours it only
        // when non-zero), so a "short" read of a 1-byte buffer, which would
        // report 0, is completed in full instead.
        let short = short && len / 2 > 0;
        if kind == 2 {
            let n = if short { len / 2 } else { len };
            region::scatter(
                self.ring.region(),
                c.data_iovs(),
                0,
                &pattern(tag, n as usize),
            )
            .unwrap();
            if short {
                resp.read_len = Some(n);
                self.short.insert(tag, n);
            }
        }
        self.ring.complete(c, &resp).unwrap();
    }

    fn reap(&mut self) -> Result<(), TestCaseError> {
        let mut seen = Vec::new();
        self.sim.reap_with(true, |c| seen.push(c.clone())).unwrap();
        for c in seen {
            prop_assert!(self.done.insert(c.tag), "tag {} completed twice", c.tag);
            prop_assert_eq!(c.status, abi::SAM_STAT_GOOD);
            let (kind, len) = self.submitted[&c.tag];
            if kind == 2 {
                let n = self.short.get(&c.tag).copied().unwrap_or(len);
                prop_assert_eq!(
                    c.data_in,
                    pattern(c.tag, n as usize),
                    "data-in of tag {}",
                    c.tag
                );
            }
        }
        Ok(())
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for op in ops {
            match op {
                Op::Submit { kind, len } => {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    let dir = match kind {
                        0 => DataDir::None,
                        1 => DataDir::ToDevice(pattern(tag, *len as usize)),
                        _ => DataDir::FromDevice(*len),
                    };
                    if self.sim.submit(tag, &cdb_for(tag, *kind), dir).is_ok() {
                        self.submitted.insert(tag, (*kind, *len));
                    }
                }
                Op::Drain { max } => self.drain(*max)?,
                Op::Complete { pick, short } => self.complete(*pick, *short),
                Op::Publish => {
                    self.ring.publish().unwrap();
                }
                Op::Reap => self.reap()?,
                Op::Abort { pick } => {
                    if !self.held.is_empty() {
                        let c = &self.held[pick % self.held.len()];
                        let (tag, id) = (tag_of(c), c.cmd_id());
                        if self
                            .sim
                            .task_management(abi::tmr_type::ABORT_TASK, &[tag])
                            .unwrap()
                            .is_some()
                        {
                            self.tmrs_sent.push(vec![id]);
                        }
                    }
                }
            }
        }
        // Finish everything: the simulator's qfull queue drains as space frees.
        for _ in 0..10_000 {
            if self.done.len() == self.submitted.len() && self.tmrs_sent.is_empty() {
                break;
            }
            self.drain(usize::MAX)?;
            while !self.held.is_empty() {
                self.complete(0, false);
            }
            self.ring.publish().unwrap();
            self.reap()?;
        }
        prop_assert_eq!(
            self.done.len(),
            self.submitted.len(),
            "every command completes"
        );
        prop_assert_eq!(self.ring.in_flight(), 0);
        prop_assert!(self.ring.broken().is_none());
        prop_assert!(self.tmrs_sent.is_empty(), "every TMR reached the engine");
        prop_assert!(self.sim.broken().is_none());
        Ok(())
    }
}

fn config() -> impl Strategy<Value = SimConfig> {
    (
        prop::sample::select(vec![512u32, 1000, 2048, 4096]),
        1u32..4,
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(cmdr_size, pages, ooo, tmr)| SimConfig {
            cmdr_size,
            data_blocks: 48 / pages,
            data_pages_per_blk: pages,
            page_size: 4096,
            caps: abi::CAP_READ_LEN
                | if ooo { abi::CAP_OOOC } else { 0 }
                | if tmr { abi::CAP_TMR } else { 0 },
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_command_completes_once_with_its_data(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        Harness::new(cfg).run(&ops)?;
    }
}

#[test]
fn long_run_wraps_the_ring_many_times_both_modes() {
    for caps in [
        abi::CAP_READ_LEN,
        abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR,
    ] {
        let cfg = SimConfig {
            cmdr_size: 1000,
            data_blocks: 16,
            data_pages_per_blk: 1,
            page_size: 4096,
            caps,
        };
        let mut h = Harness::new(cfg);
        let ops: Vec<Op> = (0..5000u32)
            .flat_map(|i| {
                [
                    Op::Submit {
                        kind: (i % 3) as u8,
                        len: 1 + (i * 977) % 9000,
                    },
                    Op::Drain { max: 3 },
                    Op::Complete {
                        pick: (i as usize) * 7,
                        short: i % 11 == 0,
                    },
                    Op::Publish,
                    Op::Reap,
                ]
            })
            .collect();
        h.run(&ops).unwrap();
        assert!(h.sim.pads() > 100, "only {} wraps", h.sim.pads());
    }
}

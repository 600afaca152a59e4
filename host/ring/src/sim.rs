//! A model of the kernel side of TCMU, for tests, benchmarks and demos.
//!
//! [`KernelSim`] produces and reaps ring entries the way
//! `drivers/target/target_core_user.c` does:
//!
//! * entries are contiguous; when the rest of the ring is too short for the
//!   next one, a PAD entry fills it and the entry goes to offset 0;
//! * one byte of the ring always stays free (head == tail means empty);
//! * a command needing more than half the ring is refused;
//! * cmd ids are the lowest free id in 1..=0xFFFF (the kernel's idr);
//! * the data area is allocated first-fit in blocks of `data_pages_per_blk`
//!   pages, so one command's buffer can be several non-contiguous iovecs
//!   (adjacent blocks are merged into one iovec, as the kernel does);
//! * commands that find no ring space, data blocks or id wait in a FIFO
//!   (the kernel's qfull queue) and are placed, in order, after a reap;
//! * reaping walks from the last reaped position to cmd_tail in ring order,
//!   skips PAD and TMR entries and finds each command by cmd_id; an unknown
//!   id marks the ring broken, as the kernel does;
//! * TMR entries, listing in-flight cmd ids, when `CAP_TMR` is set; a TMR
//!   that finds no ring space waits in its own FIFO (the kernel's
//!   `tmr_queue`), which is run before the qfull queue after a reap.
//!
//! Beyond the kernel, it verifies what user space did: each entry header it
//! reaps must still have the length and opcode it was written with, each
//! command completes exactly once, and data-in buffers are pre-filled with a
//! poison byte so a backend that forgets to write them is caught.
//!
//! The model is pure; doorbells (eventfds standing in for the 4-byte
//! read/write on `/dev/uioN`) are added by `wasmtap_kernel::sim`.

use std::collections::VecDeque;

use crate::abi::{self, hdr, mailbox, op, req, rsp, tmr, uflag};
use crate::region::{self, IoVec, RegionError, SharedRegion};

/// Byte written over data-in buffers before a command is queued.
pub const POISON: u8 = 0xa5;

/// Geometry and capabilities of a simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Command ring size in bytes (multiple of 8).
    pub cmdr_size: u32,
    /// Number of data blocks.
    pub data_blocks: u32,
    /// Pages per data block (`data_pages_per_blk`).
    pub data_pages_per_blk: u32,
    /// Page size.
    pub page_size: u32,
    /// Mailbox capability flags (`abi::CAP_*`).
    pub caps: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        // The kernel's defaults: 8 MiB ring (minus the mailbox), 1 GiB data
        // area in 4-page (16 KiB) blocks, OOOC and READ_LEN and TMR offered.
        Self {
            cmdr_size: 8 * 1024 * 1024 - abi::MAILBOX_SIZE as u32,
            data_blocks: 65536,
            data_pages_per_blk: 4,
            page_size: 4096,
            caps: abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR,
        }
    }
}

impl SimConfig {
    /// Bytes per data block.
    pub fn block_size(&self) -> u64 {
        u64::from(self.data_pages_per_blk) * u64::from(self.page_size)
    }
    /// Offset of the data area from the region start.
    pub fn data_off(&self) -> u64 {
        abi::MAILBOX_SIZE as u64 + u64::from(self.cmdr_size)
    }
    /// Size of the whole region this configuration needs.
    pub fn region_len(&self) -> usize {
        (self.data_off() + u64::from(self.data_blocks) * self.block_size()) as usize
    }
}

/// Direction and data of a simulated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// No data phase.
    None,
    /// Data-out (write): the bytes the initiator sends.
    ToDevice(Vec<u8>),
    /// Data-in (read): the buffer length the initiator expects.
    FromDevice(u32),
}

/// A borrowed [`DataDir`], for submitting without copying the data first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRef<'a> {
    /// No data phase.
    None,
    /// Data-out bytes.
    ToDevice(&'a [u8]),
    /// Data-in buffer length.
    FromDevice(u32),
}

impl DataDir {
    fn as_ref(&self) -> DataRef<'_> {
        match self {
            DataDir::None => DataRef::None,
            DataDir::ToDevice(d) => DataRef::ToDevice(d),
            DataDir::FromDevice(n) => DataRef::FromDevice(*n),
        }
    }
}

impl DataRef<'_> {
    fn len(&self) -> u64 {
        match self {
            DataRef::None => 0,
            DataRef::ToDevice(d) => d.len() as u64,
            DataRef::FromDevice(n) => u64::from(*n),
        }
    }
    fn to_owned(self) -> DataDir {
        match self {
            DataRef::None => DataDir::None,
            DataRef::ToDevice(d) => DataDir::ToDevice(d.to_vec()),
            DataRef::FromDevice(n) => DataDir::FromDevice(n),
        }
    }
}

/// What the simulator refused at submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The entry or data would need more than half the ring / all the data area.
    #[error("command needs {needed} bytes, more than the device can ever hold")]
    TooLarge {
        /// Bytes needed.
        needed: u64,
    },
    /// User space broke the protocol; the ring is broken until reset.
    #[error("ring broken: {0}")]
    Broken(String),
    /// A region access failed.
    #[error(transparent)]
    Region(#[from] RegionError),
}

/// Where a submitted command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// On the ring with this cmd_id; ring the doorbell.
    Ring(u16),
    /// Waiting in the qfull queue.
    Queued,
}

/// A command the simulator reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The submitter's tag.
    pub tag: u64,
    /// The cmd_id it ran under.
    pub cmd_id: u16,
    /// SAM status user space wrote (CHECK CONDITION for UNKNOWN_OP).
    pub status: u8,
    /// Sense data (96 bytes) when status is CHECK CONDITION, else empty.
    pub sense: Vec<u8>,
    /// Data-in bytes (truncated to `read_len` when READ_LEN was set).
    pub data_in: Vec<u8>,
    /// `read_len` if user space reported a short read.
    pub read_len: Option<u32>,
    /// Whether user space flagged the entry UNKNOWN_OP.
    pub unknown_op: bool,
}

#[derive(Debug)]
struct Waiting {
    tag: u64,
    kind: WaitKind,
}

#[derive(Debug)]
enum WaitKind {
    Cmd { cdb: Vec<u8>, dir: DataDir },
    Tmr { tmr_type: u8, cmd_ids: Vec<u16> },
}

#[derive(Debug)]
struct InFlight {
    tag: u64,
    blocks: Vec<u32>,
    iovs: Vec<IoVec>,
    data_in_len: u32,
}

/// The kernel model. See the module docs.
#[derive(Debug)]
pub struct KernelSim<R> {
    region: R,
    cfg: SimConfig,
    head: u32,
    last_cleaned: u32,
    /// Entries written and not yet reaped: (pos, len, opcode).
    placed: VecDeque<(u32, u32, u8)>,
    free_blocks: Vec<bool>,
    cmds: Vec<Option<InFlight>>,
    waiting: VecDeque<Waiting>,
    /// TMRs waiting for ring space (the kernel's `tmr_queue`): they wait
    /// only behind each other and go first when space frees.
    tmr_waiting: VecDeque<Waiting>,
    broken: Option<String>,
    reaped: u64,
    scratch: Vec<u8>,
    pads: u64,
    spare_blocks: Vec<Vec<u32>>,
    spare_iovs: Vec<Vec<IoVec>>,
    /// Fill data-in buffers with [`POISON`] before queueing (see
    /// [`KernelSim::set_poison`]).
    poison: bool,
}

impl<R: SharedRegion> KernelSim<R> {
    /// Whether data-in buffers are filled with [`POISON`] before a command
    /// is queued (on by default). The real kernel does not fill them; the
    /// fill is this model's check that a backend writes every byte it
    /// returns. Benchmarks turn it off so the model does only the kernel's
    /// work (its copy out of the data area after completion).
    pub fn set_poison(&mut self, on: bool) {
        self.poison = on;
    }

    /// Initialise the mailbox of `region` (which must be at least
    /// `cfg.region_len()` bytes and zeroed) and start with an empty ring.
    pub fn new(region: R, cfg: SimConfig) -> Result<Self, SimError> {
        assert!(
            cfg.cmdr_size.is_multiple_of(abi::ENTRY_ALIGN as u32),
            "cmdr_size must be 8-aligned"
        );
        assert!(
            region.len() >= cfg.region_len(),
            "region too small for config"
        );
        region.write_u16(mailbox::VERSION as u64, abi::MAILBOX_VERSION)?;
        region.write_u16(mailbox::FLAGS as u64, cfg.caps)?;
        region.write_u32(mailbox::CMDR_OFF as u64, abi::MAILBOX_SIZE as u32)?;
        region.write_u32(mailbox::CMDR_SIZE as u64, cfg.cmdr_size)?;
        region.store_u32_release(mailbox::CMD_HEAD as u64, 0)?;
        region.store_u32_release(mailbox::CMD_TAIL as u64, 0)?;
        Ok(Self {
            region,
            cfg,
            head: 0,
            last_cleaned: 0,
            placed: VecDeque::new(),
            free_blocks: vec![true; cfg.data_blocks as usize],
            cmds: (0..=u16::MAX as usize).map(|_| None).collect(),
            waiting: VecDeque::new(),
            tmr_waiting: VecDeque::new(),
            broken: None,
            reaped: 0,
            scratch: Vec::new(),
            pads: 0,
            spare_blocks: Vec::new(),
            spare_iovs: Vec::new(),
            poison: true,
        })
    }

    /// The shared region.
    pub fn region(&self) -> &R {
        &self.region
    }
    /// The configuration.
    pub fn config(&self) -> SimConfig {
        self.cfg
    }
    /// Commands on the ring, not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.cmds.iter().filter(|c| c.is_some()).count()
    }
    /// Commands (and TMRs) waiting for ring space.
    pub fn queued(&self) -> usize {
        self.waiting.len() + self.tmr_waiting.len()
    }
    /// Commands reaped so far.
    pub fn reaped(&self) -> u64 {
        self.reaped
    }
    /// PAD entries written so far (wraps).
    pub fn pads(&self) -> u64 {
        self.pads
    }
    /// Why the ring is broken, if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    fn max_entry(&self) -> u64 {
        u64::from(self.cfg.cmdr_size) / 2
    }

    /// Queue a command, as `tcmu_queue_cmd` does. `tag` is the submitter's
    /// own identifier, returned in the [`Completion`].
    pub fn submit(&mut self, tag: u64, cdb: &[u8], dir: DataDir) -> Result<Placed, SimError> {
        self.submit_ref(tag, cdb, dir.as_ref())
    }

    /// [`Self::submit`] with borrowed data: copies only if the command has
    /// to wait in the qfull queue.
    pub fn submit_ref(
        &mut self,
        tag: u64,
        cdb: &[u8],
        dir: DataRef<'_>,
    ) -> Result<Placed, SimError> {
        if let Some(b) = &self.broken {
            return Err(SimError::Broken(b.clone()));
        }
        let len = dir.len();
        let blocks = len.div_ceil(self.cfg.block_size());
        let entry = abi::cmd_entry_len(blocks as usize, cdb.len()).unwrap_or(usize::MAX) as u64;
        if entry > self.max_entry() || blocks > u64::from(self.cfg.data_blocks) {
            return Err(SimError::TooLarge {
                needed: entry.max(len),
            });
        }
        if self.waiting.is_empty()
            && let Some(id) = self.place_cmd(tag, cdb, dir)?
        {
            return Ok(Placed::Ring(id));
        }
        self.waiting.push_back(Waiting {
            tag,
            kind: WaitKind::Cmd {
                cdb: cdb.to_vec(),
                dir: dir.to_owned(),
            },
        });
        Ok(Placed::Queued)
    }

    /// Queue a TMR entry listing the in-flight commands among `tags` (the
    /// kernel lists only commands already on the ring). Requires `CAP_TMR`;
    /// without it the kernel sends nothing and this returns `Ok(None)`.
    pub fn task_management(
        &mut self,
        tmr_type: u8,
        tags: &[u64],
    ) -> Result<Option<Placed>, SimError> {
        if self.cfg.caps & abi::CAP_TMR == 0 {
            return Ok(None);
        }
        // The kernel fixes the id list when the TMR is raised
        // (tcmu_tmr_notify), even if the entry then waits for ring space.
        let cmd_ids: Vec<u16> = (1..=u16::MAX)
            .filter(|&i| {
                self.cmds[usize::from(i)]
                    .as_ref()
                    .is_some_and(|c| tags.contains(&c.tag))
            })
            .collect();
        let w = Waiting {
            tag: 0,
            kind: WaitKind::Tmr { tmr_type, cmd_ids },
        };
        // As queue_tmr_ring: a TMR waits only behind other TMRs, not
        // behind commands in the qfull queue.
        if self.tmr_waiting.is_empty()
            && let Some(id) = self.try_place(&w)?
        {
            return Ok(Some(Placed::Ring(id)));
        }
        self.tmr_waiting.push_back(w);
        Ok(Some(Placed::Queued))
    }

    /// Make room for `len` contiguous bytes at the head, writing a PAD when
    /// the end of the ring is too short. Returns false if there is no space.
    fn reserve(&mut self, len: u32) -> Result<bool, SimError> {
        let size = self.cfg.cmdr_size;
        let free = abi::ring_free(self.head, self.last_cleaned, size);
        let to_end = size - self.head;
        if len <= to_end {
            return Ok(len <= free);
        }
        if to_end + len > free {
            return Ok(false);
        }
        let at = abi::MAILBOX_SIZE as u64 + u64::from(self.head);
        self.region
            .write_u32(at + hdr::LEN_OP as u64, to_end | u32::from(op::PAD))?;
        self.region.write_u16(at + hdr::CMD_ID as u64, 0)?;
        self.region.write_u16(at + hdr::KFLAGS as u64, 0)?;
        self.placed.push_back((self.head, to_end, op::PAD));
        self.pads += 1;
        self.head = 0;
        Ok(true)
    }

    fn alloc_blocks(&mut self, n: usize) -> Option<Vec<u32>> {
        let mut got = self.spare_blocks.pop().unwrap_or_default();
        got.clear();
        for (i, free) in self.free_blocks.iter().enumerate() {
            if got.len() == n {
                break;
            }
            if *free {
                got.push(i as u32);
            }
        }
        if got.len() < n {
            self.spare_blocks.push(got);
            return None;
        }
        for &b in &got {
            self.free_blocks[b as usize] = false;
        }
        Some(got)
    }

    fn try_place(&mut self, w: &Waiting) -> Result<Option<u16>, SimError> {
        match &w.kind {
            WaitKind::Cmd { cdb, dir } => self.place_cmd(w.tag, cdb, dir.as_ref()),
            WaitKind::Tmr { tmr_type, cmd_ids } => {
                self.place_tmr(*tmr_type, cmd_ids).map(|ok| ok.then_some(0))
            }
        }
    }

    fn place_cmd(
        &mut self,
        tag: u64,
        cdb: &[u8],
        dir: DataRef<'_>,
    ) -> Result<Option<u16>, SimError> {
        let len = dir.len();
        let data_in_len = match dir {
            DataRef::FromDevice(n) => n,
            _ => 0,
        };
        let bs = self.cfg.block_size();
        let Some(cmd_id) = (1..=u16::MAX).find(|&i| self.cmds[usize::from(i)].is_none()) else {
            return Ok(None);
        };
        let Some(blocks) = self.alloc_blocks(len.div_ceil(bs) as usize) else {
            return Ok(None);
        };
        let mut iovs: Vec<IoVec> = self.spare_iovs.pop().unwrap_or_default();
        iovs.clear();
        let mut left = len;
        for &b in &blocks {
            let base = self.cfg.data_off() + u64::from(b) * bs;
            let n = left.min(bs);
            left -= n;
            match iovs.last_mut() {
                Some(last) if last.base + last.len == base => last.len += n,
                _ => iovs.push(IoVec { base, len: n }),
            }
        }
        let entry_len = abi::cmd_entry_len(iovs.len(), cdb.len()).unwrap_or(usize::MAX) as u32;
        if !self.reserve(entry_len)? {
            for &b in &blocks {
                self.free_blocks[b as usize] = true;
            }
            self.spare_blocks.push(blocks);
            self.spare_iovs.push(iovs);
            return Ok(None);
        }
        let pos = self.head;
        let e = abi::MAILBOX_SIZE as u64 + u64::from(pos);
        self.region.fill_bytes(e, u64::from(entry_len), 0)?;
        self.region
            .write_u32(e + hdr::LEN_OP as u64, entry_len | u32::from(op::CMD))?;
        self.region.write_u16(e + hdr::CMD_ID as u64, cmd_id)?;
        self.region
            .write_u32(e + req::IOV_CNT as u64, iovs.len() as u32)?;
        for (i, v) in iovs.iter().enumerate() {
            let at = e + (req::IOV + i * req::IOV_SIZE) as u64;
            self.region.write_u64(at, v.base)?;
            self.region.write_u64(at + 8, v.len)?;
        }
        let base_len = (req::IOV + iovs.len() * req::IOV_SIZE).max(abi::CMD_ENTRY_SIZE) as u64;
        self.region
            .write_u64(e + req::CDB_OFF as u64, e + base_len)?;
        self.region.write_bytes(e + base_len, cdb)?;
        match dir {
            DataRef::ToDevice(d) => {
                region::scatter(&self.region, &iovs, 0, d)?;
            }
            DataRef::FromDevice(n) if self.poison => {
                region::fill(&self.region, &iovs, 0, u64::from(n), POISON)?;
            }
            DataRef::FromDevice(_) => {}
            DataRef::None => {}
        }
        self.placed.push_back((pos, entry_len, op::CMD));
        self.cmds[usize::from(cmd_id)] = Some(InFlight {
            tag,
            blocks,
            iovs,
            data_in_len,
        });
        self.head = (pos + entry_len) % self.cfg.cmdr_size;
        self.region
            .store_u32_release(mailbox::CMD_HEAD as u64, self.head)?;
        Ok(Some(cmd_id))
    }

    fn place_tmr(&mut self, tmr_type: u8, ids: &[u16]) -> Result<bool, SimError> {
        let len = abi::tmr_entry_len(ids.len()).unwrap_or(usize::MAX) as u32;
        if u64::from(len) > self.max_entry() || !self.reserve(len)? {
            return Ok(false);
        }
        let pos = self.head;
        let e = abi::MAILBOX_SIZE as u64 + u64::from(pos);
        self.region.fill_bytes(e, u64::from(len), 0)?;
        self.region
            .write_u32(e + hdr::LEN_OP as u64, len | u32::from(op::TMR))?;
        self.region
            .write_bytes(e + tmr::TMR_TYPE as u64, &[tmr_type])?;
        self.region
            .write_u32(e + tmr::CMD_CNT as u64, ids.len() as u32)?;
        for (i, id) in ids.iter().enumerate() {
            self.region
                .write_u16(e + (tmr::CMD_IDS + 2 * i) as u64, *id)?;
        }
        self.placed.push_back((pos, len, op::TMR));
        self.head = (pos + len) % self.cfg.cmdr_size;
        self.region
            .store_u32_release(mailbox::CMD_HEAD as u64, self.head)?;
        Ok(true)
    }

    fn break_ring(&mut self, why: String) -> SimError {
        self.broken.get_or_insert(why.clone());
        SimError::Broken(why)
    }

    /// Reap what user space completed (tcmu_handle_completions), calling
    /// `done` for each command in ring order, then place waiting commands.
    /// With `copy_data` false, data-in is not gathered (benchmarks that do
    /// not verify data). Returns how many commands were reaped.
    pub fn reap_with(
        &mut self,
        copy_data: bool,
        mut done: impl FnMut(&Completion),
    ) -> Result<usize, SimError> {
        if let Some(b) = &self.broken {
            return Err(SimError::Broken(b.clone()));
        }
        let size = self.cfg.cmdr_size;
        let tail = self.region.load_u32_acquire(mailbox::CMD_TAIL as u64)?;
        let dist = |a: u32, b: u32| (b + size - a) % size;
        if tail >= size
            || tail % 8 != 0
            || dist(self.last_cleaned, tail) > dist(self.last_cleaned, self.head)
        {
            return Err(self.break_ring(format!("cmd_tail {tail:#x} is outside the queued span")));
        }
        let mut n = 0;
        let mut comp = Completion {
            tag: 0,
            cmd_id: 0,
            status: 0,
            sense: Vec::new(),
            data_in: std::mem::take(&mut self.scratch),
            read_len: None,
            unknown_op: false,
        };
        while self.last_cleaned != tail {
            let Some((pos, len, opcode)) = self.placed.pop_front() else {
                return Err(self.break_ring("cmd_tail beyond the last entry".into()));
            };
            debug_assert_eq!(pos, self.last_cleaned);
            let e = abi::MAILBOX_SIZE as u64 + u64::from(pos);
            let len_op = self.region.read_u32(e + hdr::LEN_OP as u64)?;
            if len_op != len | u32::from(opcode) {
                return Err(self.break_ring(format!(
                    "entry at {pos:#x}: header {len_op:#x} changed from {:#x}",
                    len | u32::from(opcode)
                )));
            }
            if dist(pos, tail) < len {
                return Err(
                    self.break_ring(format!("cmd_tail {tail:#x} splits the entry at {pos:#x}"))
                );
            }
            self.last_cleaned = (pos + len) % size;
            if opcode != op::CMD {
                continue;
            }
            let cmd_id = self.region.read_u16(e + hdr::CMD_ID as u64)?;
            let Some(c) = self.cmds[usize::from(cmd_id)].take() else {
                return Err(self.break_ring(format!("unknown cmd_id {cmd_id} at {pos:#x}")));
            };
            let mut uf = [0u8];
            self.region.read_bytes(e + hdr::UFLAGS as u64, &mut uf)?;
            let mut st = [0u8];
            self.region
                .read_bytes(e + rsp::SCSI_STATUS as u64, &mut st)?;
            comp.tag = c.tag;
            comp.cmd_id = cmd_id;
            comp.unknown_op = uf[0] & uflag::UNKNOWN_OP != 0;
            comp.status = if comp.unknown_op {
                abi::SAM_STAT_CHECK_CONDITION
            } else {
                st[0]
            };
            comp.read_len = None;
            comp.sense.clear();
            if st[0] == abi::SAM_STAT_CHECK_CONDITION {
                comp.sense.resize(rsp::SENSE_SIZE, 0);
                self.region
                    .read_bytes(e + rsp::SENSE as u64, &mut comp.sense)?;
            }
            let mut data_len = c.data_in_len;
            // As tcmu_handle_completion: READ_LEN counts only for data-in
            // commands and only when non-zero.
            if uf[0] & uflag::READ_LEN != 0
                && self.cfg.caps & abi::CAP_READ_LEN != 0
                && c.data_in_len > 0
            {
                let rl = self.region.read_u32(e + rsp::READ_LEN as u64)?;
                if rl != 0 {
                    comp.read_len = Some(rl);
                    data_len = data_len.min(rl);
                }
            }
            comp.data_in.clear();
            if copy_data && data_len > 0 {
                comp.data_in.resize(data_len as usize, 0);
                region::gather(&self.region, &c.iovs, 0, &mut comp.data_in)?;
            }
            for &b in &c.blocks {
                self.free_blocks[b as usize] = true;
            }
            self.spare_blocks.push(c.blocks);
            self.spare_iovs.push(c.iovs);
            done(&comp);
            n += 1;
        }
        self.scratch = comp.data_in;
        self.reaped += n as u64;
        // As run_qfull_queue: waiting TMRs first, and commands only once
        // every TMR is on the ring; each queue in order.
        while let Some(w) = self.tmr_waiting.pop_front() {
            if self.try_place(&w)?.is_none() {
                self.tmr_waiting.push_front(w);
                return Ok(n);
            }
        }
        while let Some(w) = self.waiting.pop_front() {
            if self.try_place(&w)?.is_none() {
                self.waiting.push_front(w);
                break;
            }
        }
        Ok(n)
    }

    /// [`Self::reap_with`] collecting owned completions (with data).
    pub fn reap(&mut self) -> Result<Vec<Completion>, SimError> {
        let mut out = Vec::new();
        self.reap_with(true, |c| out.push(c.clone()))?;
        Ok(out)
    }
}

//! The ring engine: parses what the kernel queued, writes what user space answers.
//!
//! One [`Ring`] per TCMU device, owned by that device's worker. It keeps three
//! positions in the command ring:
//!
//! ```text
//!   cmd_tail (published)      parse_pos               cmd_head (kernel)
//!        |--- slots we own ----|--- queued, not parsed ---|--- free ---|
//! ```
//!
//! `drain` walks from `parse_pos` to a freshly loaded `cmd_head`, validating
//! every entry and copying out its CDB and iovecs (the response overwrites
//! both); `complete` writes a response into a slot; `publish` stores the new
//! `cmd_tail` once per batch and says whether the kernel needs a doorbell.
//!
//! A structural inconsistency (bad head, an entry that does not fit, an offset
//! outside the region, a duplicated cmd_id) marks the ring broken: the kernel
//! must reset it (`action/reset_ring`), and until then every call returns
//! [`RingError::Broken`]. Nothing in here panics on ring contents.

use std::collections::VecDeque;

use crate::abi::{self, hdr, mailbox, op, req, rsp, tmr, uflag};
use crate::region::{IoVec, RegionError, SharedRegion};

/// Why the ring cannot be (or can no longer be) used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The mailbox speaks a version this engine does not.
    #[error(
        "mailbox version {found} is not supported (expected {})",
        abi::MAILBOX_VERSION
    )]
    UnsupportedVersion {
        /// Version found in the mailbox.
        found: u16,
    },
    /// The mailbox describes a ring that does not fit the region.
    #[error("bad mailbox geometry: {0}")]
    BadGeometry(String),
    /// The kernel side broke the protocol; the ring needs a reset.
    #[error("corrupt ring at offset {pos:#x}: {reason}")]
    Corrupt {
        /// Ring offset of the offending entry (or of cmd_head).
        pos: u32,
        /// What was wrong.
        reason: CorruptReason,
    },
    /// A region access failed the bounds check.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The ring was marked broken by an earlier error.
    #[error("ring is broken ({0}); reset required")]
    Broken(String),
    /// `complete` was called with a command that is not in flight here.
    #[error("command {cmd_id} is not in flight on this ring")]
    NotInFlight {
        /// The id given.
        cmd_id: u16,
    },
}

/// The specific protocol violation behind [`RingError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// cmd_head outside the ring or not 8-byte aligned.
    #[error("cmd_head {0:#x} is outside the ring or misaligned")]
    BadHead(u32),
    /// cmd_head moved backwards over entries user space still owns.
    #[error("cmd_head moved back over entries user space owns")]
    HeadRegressed,
    /// Entry length zero, not a multiple of 8, past the published head or the
    /// end of the ring.
    #[error("entry length {0:#x} is invalid here")]
    BadEntryLength(u32),
    /// A CMD entry smaller than `struct tcmu_cmd_entry`.
    #[error("command entry of {0} bytes is too short for a response")]
    ShortCommand(u32),
    /// The iovec array does not fit inside the entry.
    #[error("{count} iovecs do not fit in a {len}-byte entry")]
    IovecsOverflowEntry {
        /// Total iovec count (data + bidi + dif).
        count: u64,
        /// Entry length.
        len: u32,
    },
    /// An iovec points outside the data area.
    #[error("iovec {index} ({base:#x}+{len:#x}) is outside the data area")]
    IovecOutOfDataArea {
        /// Index in the entry's iovec array.
        index: usize,
        /// iov_base as given.
        base: u64,
        /// iov_len as given.
        len: u64,
    },
    /// cdb_off does not point inside the entry, after the iovecs.
    #[error("cdb_off {0:#x} is not inside its entry")]
    CdbOutsideEntry(u64),
    /// cmd_id 0, or an id already in flight.
    #[error("cmd_id {0} is invalid or already in flight")]
    BadCmdId(u16),
    /// A TMR entry whose id list does not fit.
    #[error("TMR lists {0} commands, more than its entry holds")]
    TmrOverflow(u32),
    /// The drain walked more entries than the ring can hold.
    #[error("step budget exhausted")]
    StepBudget,
}

/// One SCSI command taken off the ring, owned by the caller until completed.
///
/// The CDB and iovecs were copied out of the ring at drain time, so the slot
/// may be reused for any response. Give the value back through
/// [`Ring::complete`]; the engine recycles its buffers (no allocation per
/// command in steady state).
#[derive(Debug, Default)]
pub struct Command {
    cmd_id: u16,
    seq: u64,
    cdb: [u8; abi::MAX_CDB_LEN],
    cdb_len: u8,
    iovs: Vec<IoVec>,
    data_cnt: usize,
}

impl Command {
    /// The kernel's tag for this command (1..=0xFFFF).
    pub fn cmd_id(&self) -> u16 {
        self.cmd_id
    }
    /// The CDB, exactly as long as its operation code says.
    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..usize::from(self.cdb_len)]
    }
    /// The data buffer: data-out for writes, data-in for reads.
    pub fn data_iovs(&self) -> &[IoVec] {
        &self.iovs[..self.data_cnt]
    }
    /// The second buffer of a bidirectional command (data-in), usually empty.
    pub fn bidi_iovs(&self) -> &[IoVec] {
        &self.iovs[self.data_cnt..]
    }
    /// Total bytes in the data buffer.
    pub fn data_len(&self) -> u64 {
        crate::region::iov_total(self.data_iovs())
    }
}

/// A task management notification: the initiator aborted these commands.
///
/// The listed commands are still on the ring and still need a completion;
/// the caller should stop work on them and complete them promptly (the
/// kernel discards the status of aborted commands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagement {
    /// One of [`abi::tmr_type`].
    pub tmr_type: u8,
    /// The aborted commands' ids.
    pub cmd_ids: Vec<u16>,
}

/// What `drain` found on the ring.
#[derive(Debug)]
pub enum Entry {
    /// A command to execute.
    Command(Command),
    /// A task management notification.
    TaskManagement(TaskManagement),
}

/// How a command ended, as written into its response.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// SAM status byte.
    pub status: u8,
    /// Sense data (written when `status` is CHECK CONDITION); at most 96 bytes used.
    pub sense: &'a [u8],
    /// For data-in commands: bytes actually transferred, if fewer than the
    /// buffer. Reported only when the kernel offers `CAP_READ_LEN`.
    pub read_len: Option<u32>,
}

impl Response<'static> {
    /// GOOD status, full transfer.
    pub const GOOD: Self = Self {
        status: abi::SAM_STAT_GOOD,
        sense: &[],
        read_len: None,
    };
}

/// Outcome of one `drain` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Entries handed to the caller (commands and TMRs).
    pub entries: usize,
    /// The per-call entry limit stopped the walk; call `drain` again.
    pub more: bool,
}

/// Counters a worker can export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// CMD entries parsed.
    pub commands: u64,
    /// PAD entries skipped.
    pub pads: u64,
    /// TMR entries surfaced.
    pub tmrs: u64,
    /// Entries with an unknown opcode, flagged UNKNOWN_OP.
    pub unknown_ops: u64,
    /// Commands the engine failed itself (CDB longer than LIO ever sends).
    pub refused: u64,
    /// Tail publications (one per batch).
    pub publishes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// A CMD slot whose response has not been written yet.
    Open,
    /// Response written, or an entry the kernel skips (PAD, TMR, unknown).
    Filled,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    pos: u32,
    len: u32,
    /// The command parsed from this slot (0 for PAD/TMR/unknown).
    cmd_id: u16,
    state: SlotState,
}

/// The engine for one TCMU command ring.
#[derive(Debug)]
pub struct Ring<R> {
    region: R,
    cmdr_off: u64,
    cmdr_size: u32,
    data_start: u64,
    region_len: u64,
    caps: u16,
    /// Ring offset of the next entry to parse.
    parse_pos: u32,
    /// Ring offset of the oldest slot we still own.
    tail: u32,
    /// cmd_tail value last stored in the mailbox.
    published_tail: u32,
    /// Slots between `tail` and `parse_pos`, in ring order.
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    front_seq: u64,
    /// One bit per cmd_id currently in flight.
    in_flight: Box<[u64; 1024]>,
    pool: Vec<Command>,
    broken: Option<String>,
    stats: RingStats,
}

/// The sense data the engine writes itself for a CDB it refuses:
/// fixed format, ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20h/00h).
const REFUSED_SENSE: [u8; 18] = [
    0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0,
];

impl<R: SharedRegion> Ring<R> {
    /// Attach to a mapped region: check the mailbox, learn the geometry and
    /// start at the current `cmd_tail`. Entries already between `cmd_tail` and
    /// `cmd_head` will be parsed by the first `drain`.
    pub fn attach(region: R) -> Result<Self, RingError> {
        let region_len = region.len() as u64;
        if region_len < abi::MAILBOX_SIZE as u64 {
            return Err(RingError::BadGeometry(format!(
                "region of {region_len} bytes has no room for the mailbox"
            )));
        }
        let version = region.read_u16(mailbox::VERSION as u64)?;
        if version != abi::MAILBOX_VERSION {
            return Err(RingError::UnsupportedVersion { found: version });
        }
        let caps = region.read_u16(mailbox::FLAGS as u64)?;
        let cmdr_off = u64::from(region.read_u32(mailbox::CMDR_OFF as u64)?);
        let cmdr_size = region.read_u32(mailbox::CMDR_SIZE as u64)?;
        let data_start = cmdr_off + u64::from(cmdr_size);
        if cmdr_off < abi::MAILBOX_SIZE as u64
            || cmdr_off % abi::ENTRY_ALIGN as u64 != 0
            || cmdr_size < 2 * abi::CMD_ENTRY_SIZE as u32
            || !(cmdr_size as usize).is_multiple_of(abi::ENTRY_ALIGN)
            || data_start > region_len
        {
            return Err(RingError::BadGeometry(format!(
                "cmdr_off {cmdr_off:#x} cmdr_size {cmdr_size:#x} in a {region_len:#x}-byte region"
            )));
        }
        let tail = region.load_u32_acquire(mailbox::CMD_TAIL as u64)?;
        if tail >= cmdr_size || !(tail as usize).is_multiple_of(abi::ENTRY_ALIGN) {
            return Err(RingError::BadGeometry(format!(
                "cmd_tail {tail:#x} is outside the {cmdr_size:#x}-byte ring"
            )));
        }
        Ok(Self {
            region,
            cmdr_off,
            cmdr_size,
            data_start,
            region_len,
            caps,
            parse_pos: tail,
            tail,
            published_tail: tail,
            slots: VecDeque::new(),
            front_seq: 0,
            in_flight: Box::new([0; 1024]),
            pool: Vec::new(),
            broken: None,
            stats: RingStats::default(),
        })
    }

    /// Capability flags the kernel advertised (`abi::CAP_*`).
    pub fn caps(&self) -> u16 {
        self.caps
    }
    /// Whether out-of-order completion is in use.
    pub fn out_of_order(&self) -> bool {
        self.caps & abi::CAP_OOOC != 0
    }
    /// Size of the command ring in bytes.
    pub fn cmdr_size(&self) -> u32 {
        self.cmdr_size
    }
    /// Range of region offsets that hold the data area.
    pub fn data_area(&self) -> std::ops::Range<u64> {
        self.data_start..self.region_len
    }
    /// Counters since attach.
    pub fn stats(&self) -> RingStats {
        self.stats
    }
    /// Why the ring is broken, if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }
    /// Commands handed out and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// The region this ring lives in (for scatter/gather on command data).
    pub fn region(&self) -> &R {
        &self.region
    }

    fn check_usable(&self) -> Result<(), RingError> {
        match &self.broken {
            Some(why) => Err(RingError::Broken(why.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, err: RingError) -> RingError {
        if self.broken.is_none() {
            self.broken = Some(err.to_string());
        }
        err
    }

    fn dist(&self, from: u32, to: u32) -> u32 {
        (to + self.cmdr_size - from) % self.cmdr_size
    }

    fn bit(cmd_id: u16) -> (usize, u64) {
        (usize::from(cmd_id) / 64, 1u64 << (cmd_id % 64))
    }
    fn is_in_flight(&self, cmd_id: u16) -> bool {
        let (w, b) = Self::bit(cmd_id);
        self.in_flight[w] & b != 0
    }
    fn set_in_flight(&mut self, cmd_id: u16, on: bool) {
        let (w, b) = Self::bit(cmd_id);
        if on {
            self.in_flight[w] |= b;
        } else {
            self.in_flight[w] &= !b;
        }
    }

    /// Whether the kernel has published entries not drained yet (one
    /// Acquire load of cmd_head; a ring that cannot be read says no).
    pub fn has_new(&self) -> bool {
        self.region
            .load_u32_acquire(mailbox::CMD_HEAD as u64)
            .is_ok_and(|head| head != self.parse_pos)
    }

    /// Walk new entries (at most `max_entries` commands/TMRs), appending them
    /// to `out`. Loads cmd_head with Acquire so every entry byte the kernel
    /// wrote before publishing it is visible.
    pub fn drain(
        &mut self,
        out: &mut Vec<Entry>,
        max_entries: usize,
    ) -> Result<Drained, RingError> {
        self.check_usable()?;
        match self.drain_inner(out, max_entries) {
            Ok(d) => Ok(d),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn drain_inner(
        &mut self,
        out: &mut Vec<Entry>,
        max_entries: usize,
    ) -> Result<Drained, RingError> {
        let head = self.region.load_u32_acquire(mailbox::CMD_HEAD as u64)?;
        if head >= self.cmdr_size || !(head as usize).is_multiple_of(abi::ENTRY_ALIGN) {
            return Err(RingError::Corrupt {
                pos: head,
                reason: CorruptReason::BadHead(head),
            });
        }
        // The kernel may only add entries past what we parsed: the span from
        // our tail to the head must contain the span we already own.
        if self.dist(self.tail, head) < self.dist(self.tail, self.parse_pos) {
            return Err(RingError::Corrupt {
                pos: head,
                reason: CorruptReason::HeadRegressed,
            });
        }
        let mut drained = Drained::default();
        // Every entry is at least 8 bytes, so this bounds the walk even if the
        // arithmetic below were wrong.
        let mut budget = self.cmdr_size / abi::ENTRY_ALIGN as u32 + 1;
        while self.parse_pos != head {
            if drained.entries >= max_entries {
                drained.more = true;
                break;
            }
            budget = budget.checked_sub(1).ok_or(RingError::Corrupt {
                pos: self.parse_pos,
                reason: CorruptReason::StepBudget,
            })?;
            let pos = self.parse_pos;
            let entry_off = self.cmdr_off + u64::from(pos);
            let len_op = self.region.read_u32(entry_off + hdr::LEN_OP as u64)?;
            let len = len_op & !abi::OP_MASK;
            let opcode = (len_op & abi::OP_MASK) as u8;
            let avail = self.dist(pos, head);
            if len == 0
                || len > avail
                || u64::from(pos) + u64::from(len) > u64::from(self.cmdr_size)
            {
                return Err(RingError::Corrupt {
                    pos,
                    reason: CorruptReason::BadEntryLength(len),
                });
            }
            let seq = self.front_seq + self.slots.len() as u64;
            let state = match opcode {
                op::PAD => {
                    self.stats.pads += 1;
                    SlotState::Filled
                }
                op::CMD => {
                    let (cmd, refuse) = self.parse_cmd(pos, len, seq)?;
                    self.stats.commands += 1;
                    self.slots.push_back(Slot {
                        pos,
                        len,
                        cmd_id: cmd.cmd_id,
                        state: SlotState::Open,
                    });
                    self.parse_pos = (pos + len) % self.cmdr_size;
                    if refuse {
                        // LIO never forwards a CDB longer than
                        // TCM_MAX_COMMAND_SIZE; answer it here rather than
                        // hand the SCSI layer a truncated CDB.
                        self.stats.refused += 1;
                        let resp = Response {
                            status: abi::SAM_STAT_CHECK_CONDITION,
                            sense: &REFUSED_SENSE,
                            read_len: None,
                        };
                        self.complete_inner(cmd, &resp)?;
                    } else {
                        out.push(Entry::Command(cmd));
                        drained.entries += 1;
                    }
                    continue;
                }
                op::TMR => {
                    let t = self.parse_tmr(pos, len)?;
                    out.push(Entry::TaskManagement(t));
                    drained.entries += 1;
                    self.stats.tmrs += 1;
                    SlotState::Filled
                }
                _ => {
                    // An entry type this engine does not know: flag it and let
                    // the kernel deal with it (tcmu-abi: UNKNOWN_OP).
                    let uf = entry_off + hdr::UFLAGS as u64;
                    let mut b = [0u8];
                    self.region.read_bytes(uf, &mut b)?;
                    self.region.write_bytes(uf, &[b[0] | uflag::UNKNOWN_OP])?;
                    self.stats.unknown_ops += 1;
                    SlotState::Filled
                }
            };
            self.slots.push_back(Slot {
                pos,
                len,
                cmd_id: 0,
                state,
            });
            self.parse_pos = (pos + len) % self.cmdr_size;
        }
        // Entries that need no answer (PAD/TMR/unknown) at the front can be
        // released right away.
        self.advance_tail();
        Ok(drained)
    }

    /// Parse a CMD entry; the flag says the engine must refuse its CDB.
    fn parse_cmd(&mut self, pos: u32, len: u32, seq: u64) -> Result<(Command, bool), RingError> {
        let corrupt = |reason| RingError::Corrupt { pos, reason };
        if (len as usize) < abi::CMD_ENTRY_SIZE {
            return Err(corrupt(CorruptReason::ShortCommand(len)));
        }
        let e = self.cmdr_off + u64::from(pos);
        let cmd_id = self.region.read_u16(e + hdr::CMD_ID as u64)?;
        if cmd_id == 0 || self.is_in_flight(cmd_id) {
            return Err(corrupt(CorruptReason::BadCmdId(cmd_id)));
        }
        let iov_cnt = u64::from(self.region.read_u32(e + req::IOV_CNT as u64)?);
        let bidi_cnt = u64::from(self.region.read_u32(e + req::IOV_BIDI_CNT as u64)?);
        let dif_cnt = u64::from(self.region.read_u32(e + req::IOV_DIF_CNT as u64)?);
        // Three u32 counts: the sum and the product below cannot overflow u64.
        let total = iov_cnt + bidi_cnt + dif_cnt;
        let iov_end = total * req::IOV_SIZE as u64 + req::IOV as u64;
        if iov_end > u64::from(len) {
            return Err(corrupt(CorruptReason::IovecsOverflowEntry {
                count: total,
                len,
            }));
        }
        // The CDB follows the (at least struct-sized) base entry, inside the entry.
        let cdb_off = self.region.read_u64(e + req::CDB_OFF as u64)?;
        let entry_end = e + u64::from(len);
        if cdb_off < e + iov_end.max(abi::CMD_ENTRY_SIZE as u64) || cdb_off >= entry_end {
            return Err(corrupt(CorruptReason::CdbOutsideEntry(cdb_off)));
        }
        let mut first = [0u8; 8];
        let head_len = (entry_end - cdb_off).min(8) as usize;
        self.region.read_bytes(cdb_off, &mut first[..head_len])?;
        let byte7 = (head_len == 8).then_some(first[7]);
        let cdb_len = abi::cdb_len_from_opcode(first[0], byte7);
        if cdb_off + cdb_len as u64 > entry_end {
            return Err(corrupt(CorruptReason::CdbOutsideEntry(cdb_off)));
        }

        let mut cmd = self.pool.pop().unwrap_or_default();
        cmd.cmd_id = cmd_id;
        cmd.seq = seq;
        cmd.iovs.clear();
        cmd.data_cnt = iov_cnt as usize;
        for i in 0..(iov_cnt + bidi_cnt) {
            let at = e + req::IOV as u64 + i * req::IOV_SIZE as u64;
            let base = self.region.read_u64(at)?;
            let ilen = self.region.read_u64(at + 8)?;
            let inside = base >= self.data_start
                && base
                    .checked_add(ilen)
                    .is_some_and(|end| end <= self.region_len);
            if !inside {
                self.pool.push(cmd);
                return Err(corrupt(CorruptReason::IovecOutOfDataArea {
                    index: i as usize,
                    base,
                    len: ilen,
                }));
            }
            cmd.iovs.push(IoVec { base, len: ilen });
        }
        let refuse = cdb_len > abi::MAX_CDB_LEN;
        let keep = cdb_len.min(abi::MAX_CDB_LEN);
        self.region.read_bytes(cdb_off, &mut cmd.cdb[..keep])?;
        cmd.cdb_len = keep as u8;
        self.set_in_flight(cmd_id, true);
        Ok((cmd, refuse))
    }

    fn parse_tmr(&mut self, pos: u32, len: u32) -> Result<TaskManagement, RingError> {
        let e = self.cmdr_off + u64::from(pos);
        if (len as usize) < tmr::CMD_IDS {
            return Err(RingError::Corrupt {
                pos,
                reason: CorruptReason::BadEntryLength(len),
            });
        }
        let mut t = [0u8];
        self.region.read_bytes(e + tmr::TMR_TYPE as u64, &mut t)?;
        let cnt = self.region.read_u32(e + tmr::CMD_CNT as u64)?;
        if tmr::CMD_IDS as u64 + 2 * u64::from(cnt) > u64::from(len) {
            return Err(RingError::Corrupt {
                pos,
                reason: CorruptReason::TmrOverflow(cnt),
            });
        }
        let mut raw = vec![0u8; 2 * cnt as usize];
        self.region.read_bytes(e + tmr::CMD_IDS as u64, &mut raw)?;
        let cmd_ids = raw
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect();
        Ok(TaskManagement {
            tmr_type: t[0],
            cmd_ids,
        })
    }

    /// Write `resp` for `cmd` and give the command's buffers back to the engine.
    ///
    /// In ring order the response goes into the command's own slot. With
    /// `CAP_OOOC` it goes into the oldest slot still open, whatever command
    /// that slot carried, with the slot's cmd_id rewritten ("slot stealing"):
    /// filled slots then always form a prefix and cmd_tail moves on every
    /// completion. Call [`Ring::publish`] after a batch.
    pub fn complete(&mut self, cmd: Command, resp: &Response<'_>) -> Result<(), RingError> {
        self.check_usable()?;
        if !self.is_in_flight(cmd.cmd_id) {
            return Err(RingError::NotInFlight { cmd_id: cmd.cmd_id });
        }
        match self.complete_inner(cmd, resp) {
            Ok(()) => Ok(()),
            Err(e @ RingError::NotInFlight { .. }) => Err(e),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn complete_inner(&mut self, mut cmd: Command, resp: &Response<'_>) -> Result<(), RingError> {
        let not_here = RingError::NotInFlight { cmd_id: cmd.cmd_id };
        let idx = if self.out_of_order() {
            // Invariant: after advance_tail the front slot is open (or there
            // are none), and open slots == commands in flight.
            0
        } else {
            match cmd.seq.checked_sub(self.front_seq) {
                Some(i) if (i as usize) < self.slots.len() => i as usize,
                _ => return Err(not_here),
            }
        };
        let slot = match self.slots.get(idx) {
            Some(s) if s.state == SlotState::Open => *s,
            _ => return Err(not_here),
        };
        if !self.out_of_order() && slot.cmd_id != cmd.cmd_id {
            return Err(not_here);
        }
        self.write_response(slot.pos, cmd.cmd_id, resp)?;
        self.slots[idx].state = SlotState::Filled;
        self.set_in_flight(cmd.cmd_id, false);
        cmd.iovs.clear();
        self.pool.push(cmd);
        self.advance_tail();
        Ok(())
    }

    fn write_response(&self, pos: u32, cmd_id: u16, resp: &Response<'_>) -> Result<(), RingError> {
        let e = self.cmdr_off + u64::from(pos);
        let read_len = resp.read_len.filter(|_| self.caps & abi::CAP_READ_LEN != 0);
        self.region.write_u16(e + hdr::CMD_ID as u64, cmd_id)?;
        let uflags = if read_len.is_some() {
            uflag::READ_LEN
        } else {
            0
        };
        self.region.write_bytes(e + hdr::UFLAGS as u64, &[uflags])?;
        self.region
            .write_bytes(e + rsp::SCSI_STATUS as u64, &[resp.status])?;
        if let Some(n) = read_len {
            self.region.write_u32(e + rsp::READ_LEN as u64, n)?;
        }
        if resp.status == abi::SAM_STAT_CHECK_CONDITION {
            let n = resp.sense.len().min(rsp::SENSE_SIZE);
            let mut sense = [0u8; rsp::SENSE_SIZE];
            sense[..n].copy_from_slice(&resp.sense[..n]);
            self.region.write_bytes(e + rsp::SENSE as u64, &sense)?;
        }
        Ok(())
    }

    fn advance_tail(&mut self) {
        while let Some(s) = self.slots.front() {
            if s.state != SlotState::Filled {
                break;
            }
            self.tail = (s.pos + s.len) % self.cmdr_size;
            self.slots.pop_front();
            self.front_seq += 1;
        }
    }

    /// Store the new cmd_tail (Release: every response written before it is
    /// visible to the kernel first). Returns whether it moved, i.e. whether
    /// the caller should ring the kernel's doorbell — once per batch.
    pub fn publish(&mut self) -> Result<bool, RingError> {
        self.check_usable()?;
        if self.tail == self.published_tail {
            return Ok(false);
        }
        if let Err(e) = self
            .region
            .store_u32_release(mailbox::CMD_TAIL as u64, self.tail)
        {
            return Err(self.fail(e.into()));
        }
        self.published_tail = self.tail;
        self.stats.publishes += 1;
        Ok(true)
    }
}

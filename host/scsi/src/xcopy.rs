//! Third-party copy: EXTENDED COPY(LID1) and the THIRD-PARTY COPY IN
//! commands that report on it (SPC-4 6.3, 6.18-6.20; SPC-3 calls them
//! EXTENDED COPY and RECEIVE COPY RESULTS), for block-to-block copies
//! between logical units as VMware's full-copy offload (VAAI XCOPY) and
//! Linux `sg_xcopy` send them.
//!
//! What is implemented:
//! * CSCD descriptors of type E4h (identification descriptor) naming a
//!   logical unit by an NAA designator, association LU, peripheral device
//!   type 00h; the CSCD descriptor ID FFFFh names this logical unit;
//! * segment descriptors of type 02h (block device to block device);
//! * LIST ID USAGE 00b (status held for RECEIVE COPY STATUS / FAILURE
//!   DETAILS), 10b (not held; SPC-3's NRCR) and 11b (no list identifier).
//!
//! The whole parameter list is validated, and every logical unit it names
//! located, before any block moves. Copies then run synchronously inside
//! the EXTENDED COPY command, one segment after another, through a heap
//! buffer of at most 1 MiB, in reads and writes of at most each logical
//! unit's MAXIMUM TRANSFER LENGTH.
//!
//! Other logical units are reached through [`CopyPeers`], which the
//! transport installs with [`Target::with_copy_peers`]; this module knows
//! nothing of daemons or workers. A [`Target`] is itself a [`CopyLun`], so a
//! transport whose logical units live on one thread can hand out
//! `Rc<Target<B>>`s; the target always finds itself by its own NAA, so a
//! same-LUN copy needs no transport support at all.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};

use crate::backend::{BackendError, BackendResult, BlockBackend, DiskInfo};
use crate::buffer::{BufMut, BufRef, BufferError, DataBuffer};
use crate::cdb::op;
use crate::sense::{CommandError, CopyAbort, CopyError, FieldPointer, SegmentSense, SenseBytes};
use crate::target::{Nexus, Target};
use crate::units::{Lba, be};

/// MAXIMUM CSCD DESCRIPTOR COUNT.
pub const MAX_CSCD_DESCRIPTORS: u16 = 16;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 32;
/// Bytes of one CSCD descriptor of type E4h.
pub const CSCD_DESCRIPTOR_LEN: usize = 32;
/// Bytes of one segment descriptor of type 02h.
pub const B2B_SEGMENT_LEN: usize = 28;
/// MAXIMUM DESCRIPTOR LIST LENGTH: the CSCD and segment descriptor lists
/// together, as many of each as the counts allow.
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = MAX_CSCD_DESCRIPTORS as u32
    * CSCD_DESCRIPTOR_LEN as u32
    + MAX_SEGMENT_DESCRIPTORS as u32 * B2B_SEGMENT_LEN as u32;
/// MAXIMUM INLINE DATA LENGTH: no segment type we take uses inline data.
pub const MAX_INLINE_DATA_LENGTH: u32 = 0;
/// TOTAL CONCURRENT COPIES (and MAXIMUM CONCURRENT COPIES): EXTENDED COPY
/// commands running at once on one logical unit. Each holds a buffer of
/// up to [`COPY_CHUNK_BYTES`].
pub const MAX_CONCURRENT_COPIES: u16 = 16;
/// Completed copies whose status a logical unit keeps for RECEIVE COPY
/// STATUS / FAILURE DETAILS (the oldest goes first).
pub const HELD_STATUSES: usize = 16;
/// Largest NUMBER OF BLOCKS a 02h segment descriptor can hold.
pub const MAX_SEGMENT_BLOCKS: u64 = 0xFFFF;
/// Bytes copied per round (read the source, then write the destination).
pub const COPY_CHUNK_BYTES: u64 = 1 << 20;
/// DATA SEGMENT GRANULARITY as a power of two: 512 bytes, the smallest
/// block size, so every block-to-block segment is a multiple of it.
pub const DATA_SEGMENT_GRANULARITY_LOG2: u8 = 9;

/// The E4h CSCD descriptor type code (identification descriptor).
pub const CSCD_IDENTIFICATION: u8 = 0xE4;
/// The 02h segment descriptor type code (block device to block device).
pub const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;
/// CSCD descriptor ID naming the logical unit that received the command.
pub const LOCAL_CSCD_ID: u16 = 0xFFFF;

const HEADER_LEN: usize = 16;
/// TRANSFER COUNT UNITS: logical blocks (of the destinations).
const UNITS_BLOCKS: u8 = 0xF1;

/// MAXIMUM SEGMENT LENGTH in bytes for a logical unit: as many of its
/// blocks as a 02h segment descriptor can name. A segment counted in a
/// peer's larger blocks is refused above it.
pub fn max_segment_bytes(info: &DiskInfo) -> u64 {
    MAX_SEGMENT_BLOCKS * u64::from(info.block_size)
}

/// The future of one block transfer of a copy.
pub type CopyIo<'a> = Pin<Box<dyn Future<Output = BackendResult> + 'a>>;

/// What a copy needs of one logical unit: the source or the destination of
/// a segment.
///
/// [`Target`] implements it (reads go to its backend; writes hold its range
/// lock exclusively, like COMPARE AND WRITE, and use FUA exactly when a
/// WRITE without FUA would, i.e. when its WCE is off). A transport whose
/// logical units run on other threads implements it by forwarding.
///
/// The copy engine calls it only after validating the request against
/// [`CopyLun::info`]: whole blocks, inside the capacity, at most
/// `max_transfer` blocks per call, writes only to a unit that is not
/// read-only.
pub trait CopyLun {
    /// Geometry the logical unit answers with (after any transport limit).
    fn info(&self) -> DiskInfo;
    /// Fill `dst` with the blocks starting at `lba`.
    fn read_blocks<'a>(&'a self, lba: Lba, dst: &'a mut [u8]) -> CopyIo<'a>;
    /// Store `src` at `lba`, as a WRITE without FUA would.
    fn write_blocks<'a>(&'a self, lba: Lba, src: &'a [u8]) -> CopyIo<'a>;
}

/// The transport's directory of logical units that copies may reach.
pub trait CopyPeers {
    /// The logical unit whose NAA designator (the bytes of the DESIGNATOR
    /// field, 8 or 16 of them) is `naa`, if this transport serves it. The
    /// target asking is never looked up: it finds itself.
    fn locate(&self, naa: &[u8]) -> Option<Rc<dyn CopyLun>>;
}

impl<B> Target<B> {
    /// Let EXTENDED COPY reach the logical units `peers` knows besides this
    /// one. Without peers, only copies within this logical unit work.
    pub fn with_copy_peers(mut self, peers: Rc<dyn CopyPeers>) -> Self {
        self.copy.peers = Some(peers);
        self
    }
}

impl<B: BlockBackend> CopyLun for Target<B> {
    fn info(&self) -> DiskInfo {
        Target::info(self)
    }

    fn read_blocks<'a>(&'a self, lba: Lba, dst: &'a mut [u8]) -> CopyIo<'a> {
        Box::pin(async move {
            let len = dst.len() as u64;
            let mut view = SliceMut(dst);
            self.backend
                .read(lba, BufMut::new(&mut view, 0, len)?)
                .await
        })
    }

    fn write_blocks<'a>(&'a self, lba: Lba, src: &'a [u8]) -> CopyIo<'a> {
        Box::pin(async move {
            let blocks = src.len() as u64 / u64::from(Target::info(self).block_size);
            let fua = !self.write_cache_enabled();
            let _g = self
                .locks
                .lock(lba.0, lba.0.saturating_add(blocks), true)
                .await;
            let view = SliceRef(src);
            self.backend
                .write(lba, BufRef::new(&view, 0, src.len() as u64)?, fua)
                .await
        })
    }
}

/// A heap slice as a data buffer (what backends are handed).
struct SliceMut<'s>(&'s mut [u8]);
/// A read-only heap slice as a data buffer.
struct SliceRef<'s>(&'s [u8]);

fn bounds(off: u64, len: u64, buf_len: u64) -> Result<std::ops::Range<usize>, BufferError> {
    match off.checked_add(len) {
        Some(end) if end <= buf_len => Ok(off as usize..end as usize),
        _ => Err(BufferError::OutOfBounds { off, len, buf_len }),
    }
}

impl DataBuffer for SliceMut<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        dst.copy_from_slice(&self.0[bounds(off, dst.len() as u64, self.len())?]);
        Ok(())
    }
    fn write_at(&mut self, off: u64, src: &[u8]) -> Result<(), BufferError> {
        let r = bounds(off, src.len() as u64, self.len())?;
        self.0[r].copy_from_slice(src);
        Ok(())
    }
    fn zero(&mut self, off: u64, len: u64) -> Result<(), BufferError> {
        let r = bounds(off, len, self.len())?;
        self.0[r].fill(0);
        Ok(())
    }
}

impl DataBuffer for SliceRef<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        dst.copy_from_slice(&self.0[bounds(off, dst.len() as u64, self.len())?]);
        Ok(())
    }
    fn write_at(&mut self, off: u64, src: &[u8]) -> Result<(), BufferError> {
        Err(BufferError::Inaccessible {
            addr: off,
            len: src.len() as u64,
        })
    }
    fn zero(&mut self, off: u64, len: u64) -> Result<(), BufferError> {
        Err(BufferError::Inaccessible { addr: off, len })
    }
}

// ------------------------------------------------------------ copy manager

/// The copy state of one logical unit: the transport's peers and the
/// copies running or held for RECEIVE COPY STATUS.
#[derive(Default)]
pub(crate) struct CopyManager {
    peers: Option<Rc<dyn CopyPeers>>,
    lists: Mutex<Lists>,
}

impl fmt::Debug for CopyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyManager")
            .field("peers", &self.peers.is_some())
            .field("lists", &self.lists)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Lists {
    /// Running copies that have a list identifier, and held statuses, in
    /// the order they started.
    records: VecDeque<Record>,
    /// EXTENDED COPY commands running, with or without a record.
    running: usize,
    next_id: u64,
}

#[derive(Debug)]
struct Record {
    id: u64,
    nexus: Nexus,
    list_id: u8,
    /// LIST ID USAGE 00b: keep the status once complete.
    hold: bool,
    /// `None` while running.
    outcome: Option<Outcome>,
    /// SEGMENTS PROCESSED.
    segments: u16,
    /// Destination blocks written.
    blocks: u64,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Good,
    /// The sense the EXTENDED COPY ended with (fixed format).
    Failed(SenseBytes),
}

fn locked(m: &Mutex<Lists>) -> MutexGuard<'_, Lists> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running EXTENDED COPY; leaves the running set when dropped (also when
/// the command is abandoned mid-copy, which leaves no status behind).
struct Running<'a> {
    lists: &'a Mutex<Lists>,
    id: Option<u64>,
    done: bool,
}

impl Running<'_> {
    fn progress(&self, segments: u16, blocks: u64) {
        let Some(id) = self.id else { return };
        let mut l = locked(self.lists);
        if let Some(r) = l.records.iter_mut().find(|r| r.id == id) {
            r.segments = segments;
            r.blocks = blocks;
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.done = true;
        let Some(id) = self.id else { return };
        let mut l = locked(self.lists);
        let Some(pos) = l.records.iter().position(|r| r.id == id) else {
            return;
        };
        if !l.records[pos].hold {
            l.records.remove(pos);
            return;
        }
        l.records[pos].outcome = Some(outcome);
        while l.records.iter().filter(|r| r.outcome.is_some()).count() > HELD_STATUSES {
            let oldest = l.records.iter().position(|r| r.outcome.is_some());
            if let Some(i) = oldest {
                l.records.remove(i);
            }
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut l = locked(self.lists);
        l.running -= 1;
        if !self.done
            && let Some(id) = self.id
        {
            l.records.retain(|r| r.id != id);
        }
    }
}

impl CopyManager {
    /// Admit a copy whose parameter list passed validation.
    fn register(&self, nexus: Nexus, h: &Header) -> Result<Running<'_>, CommandError> {
        let mut l = locked(&self.lists);
        let mut id = None;
        if h.usage != ListIdUsage::None {
            let busy = l
                .records
                .iter()
                .any(|r| r.nexus == nexus && r.list_id == h.list_id && r.outcome.is_none());
            if busy {
                return Err(CommandError::Copy(CopyError::OperationInProgress(
                    FieldPointer::byte(0),
                )));
            }
        }
        if l.running >= usize::from(MAX_CONCURRENT_COPIES) {
            return Err(CommandError::Copy(CopyError::InsufficientResources));
        }
        if h.usage != ListIdUsage::None {
            // A new copy with the list identifier replaces its old status.
            l.records
                .retain(|r| !(r.nexus == nexus && r.list_id == h.list_id));
            let next = l.next_id;
            l.next_id += 1;
            l.records.push_back(Record {
                id: next,
                nexus,
                list_id: h.list_id,
                hold: h.usage == ListIdUsage::Hold,
                outcome: None,
                segments: 0,
                blocks: 0,
            });
            id = Some(next);
        }
        l.running += 1;
        Ok(Running {
            lists: &self.lists,
            id,
            done: false,
        })
    }

    /// Status, segments processed, blocks and sense of the copy `list_id`
    /// of `nexus`.
    fn status(&self, nexus: Nexus, list_id: u8) -> Option<(Option<Outcome>, u16, u64)> {
        let l = locked(&self.lists);
        l.records
            .iter()
            .find(|r| r.nexus == nexus && r.list_id == list_id)
            .map(|r| (r.outcome, r.segments, r.blocks))
    }
}

// ------------------------------------------------------- parameter list

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListIdUsage {
    /// 00b: hold the status for RECEIVE COPY STATUS.
    Hold,
    /// 10b: the list identifier is valid, nothing is held.
    NoHold,
    /// 11b: no list identifier.
    None,
}

#[derive(Debug)]
struct Header {
    list_id: u8,
    usage: ListIdUsage,
    cscd_len: usize,
    seg_len: usize,
}

#[derive(Debug)]
struct Cscd {
    /// Offset of the descriptor in the parameter list.
    at: usize,
    designator: Vec<u8>,
    /// DISK BLOCK LENGTH (zero: not given).
    block_len: u32,
}

#[derive(Debug)]
struct Segment {
    at: usize,
    src: u16,
    dst: u16,
    dc: bool,
    blocks: u64,
    src_lba: u64,
    dst_lba: u64,
}

fn param(at: usize) -> CommandError {
    CommandError::InvalidParameter(FieldPointer::byte(at as u16))
}

/// INVALID FIELD IN PARAMETER LIST at the most significant of `bad` bits
/// of byte `at`.
fn param_bits(at: usize, bad: u8) -> CommandError {
    let bit = 7 - bad.leading_zeros() as u8;
    CommandError::InvalidParameter(FieldPointer::bit(at as u16, bit))
}

fn get(p: &[u8], at: usize, len: usize) -> u64 {
    be::get(&p[at..at + len])
}

/// The parameter list header (SPC-4 6.3, EXTENDED COPY(LID1) parameter
/// list).
fn parse_header(h: &[u8; HEADER_LEN], param_len: u32) -> Result<Header, CommandError> {
    if h[1] & 0xC0 != 0 {
        return Err(param_bits(1, h[1] & 0xC0));
    }
    // STR (bit 5) and PRIORITY (bits 2-0) are hints: accepted, not acted on.
    let usage = match (h[1] >> 3) & 0x03 {
        0 => ListIdUsage::Hold,
        2 => ListIdUsage::NoHold,
        3 => ListIdUsage::None,
        _ => return Err(param_bits(1, 0x10)),
    };
    if usage == ListIdUsage::None && h[0] != 0 {
        return Err(param(0));
    }
    if get(h, 4, 4) != 0 {
        return Err(param(4));
    }
    let cscd_len = get(h, 2, 2);
    if !cscd_len.is_multiple_of(CSCD_DESCRIPTOR_LEN as u64) {
        return Err(param(2));
    }
    if cscd_len / CSCD_DESCRIPTOR_LEN as u64 > u64::from(MAX_CSCD_DESCRIPTORS) {
        return Err(CommandError::Copy(CopyError::TooManyCscds(
            FieldPointer::byte(2),
        )));
    }
    let seg_len = get(h, 8, 4);
    let inline = get(h, 12, 4);
    if inline > u64::from(MAX_INLINE_DATA_LENGTH) {
        return Err(param(12));
    }
    if cscd_len + seg_len > u64::from(MAX_DESCRIPTOR_LIST_LENGTH)
        || HEADER_LEN as u64 + cscd_len + seg_len + inline > u64::from(param_len)
    {
        return Err(CommandError::ParameterListLength);
    }
    Ok(Header {
        list_id: h[0],
        usage,
        cscd_len: cscd_len as usize,
        seg_len: seg_len as usize,
    })
}

/// An identification descriptor CSCD descriptor (type E4h) with the block
/// device type specific parameters (SPC-4 6.3, CSCD descriptors).
fn parse_cscd(p: &[u8], at: usize) -> Result<Cscd, CommandError> {
    let d = &p[at..at + CSCD_DESCRIPTOR_LEN];
    if d[0] != CSCD_IDENTIFICATION {
        return Err(CommandError::Copy(CopyError::UnsupportedCscdType(
            FieldPointer::byte(at as u16),
        )));
    }
    // LU ID TYPE (7-6) 00b, NUL (5) zero, PERIPHERAL DEVICE TYPE (4-0) 00h.
    for mask in [0xC0, 0x20, 0x1F] {
        if d[1] & mask != 0 {
            return Err(param_bits(at + 1, mask));
        }
    }
    // RELATIVE INITIATOR PORT IDENTIFIER (bytes 2-3): any port will do.
    // CODE SET binary; ASSOCIATION logical unit; DESIGNATOR TYPE NAA.
    if d[4] & 0xF0 != 0 {
        return Err(param_bits(at + 4, d[4] & 0xF0));
    }
    if d[4] & 0x0F != 0x01 {
        return Err(param_bits(at + 4, 0x08));
    }
    if d[5] & 0xC0 != 0 {
        return Err(param_bits(at + 5, d[5] & 0xC0));
    }
    if d[5] & 0x30 != 0 {
        return Err(param_bits(at + 5, 0x20));
    }
    if d[5] & 0x0F != 0x03 {
        return Err(param_bits(at + 5, 0x08));
    }
    if d[6] != 0 {
        return Err(param(at + 6));
    }
    // NAA designators are 8 (NAA 2h, 3h, 5h) or 16 (NAA 6h) bytes.
    let len = usize::from(d[7]);
    if len != 8 && len != 16 {
        return Err(param(at + 7));
    }
    // Block device type specific parameters: only PAD (bit 2) is defined.
    if d[28] & !0x04 != 0 {
        return Err(param_bits(at + 28, d[28] & !0x04));
    }
    Ok(Cscd {
        at,
        designator: d[8..8 + len].to_vec(),
        block_len: get(d, 29, 3) as u32,
    })
}

/// A block device to block device segment descriptor (type 02h; SPC-4 6.3,
/// segment descriptors).
fn parse_b2b(p: &[u8], at: usize, end: usize, cscds: usize) -> Result<Segment, CommandError> {
    let d = &p[at..];
    if d[0] != SEGMENT_BLOCK_TO_BLOCK {
        return Err(CommandError::Copy(CopyError::UnsupportedSegmentType(
            FieldPointer::byte(at as u16),
        )));
    }
    if get(d, 2, 2) != (B2B_SEGMENT_LEN - 4) as u64 {
        return Err(param(at + 2));
    }
    if end - at < B2B_SEGMENT_LEN {
        return Err(param(8));
    }
    // Byte 1: DC (bit 1), CAT (bit 0); CAT only matters for inexact
    // segments, which are refused.
    if d[1] & 0xFC != 0 {
        return Err(param_bits(at + 1, d[1] & 0xFC));
    }
    let id = |off: usize| {
        let v = get(d, off, 2) as u16;
        if v == LOCAL_CSCD_ID || usize::from(v) < cscds {
            Ok(v)
        } else {
            Err(param(at + off))
        }
    };
    let (src, dst) = (id(4)?, id(6)?);
    if get(d, 8, 2) != 0 {
        return Err(param(at + 8));
    }
    Ok(Segment {
        at,
        src,
        dst,
        dc: d[1] & 0x02 != 0,
        blocks: get(d, 10, 2),
        src_lba: get(d, 12, 8),
        dst_lba: get(d, 20, 8),
    })
}

/// Both descriptor lists; `p` holds the header and both lists.
fn parse_lists(p: &[u8], h: &Header) -> Result<(Vec<Cscd>, Vec<Segment>), CommandError> {
    let cscds = (0..h.cscd_len / CSCD_DESCRIPTOR_LEN)
        .map(|i| parse_cscd(p, HEADER_LEN + i * CSCD_DESCRIPTOR_LEN))
        .collect::<Result<Vec<_>, _>>()?;
    let mut at = HEADER_LEN + h.cscd_len;
    let end = at + h.seg_len;
    let mut segments = Vec::new();
    while at < end {
        if segments.len() == usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(CommandError::Copy(CopyError::TooManySegments(
                FieldPointer::byte(8),
            )));
        }
        // The list must hold the descriptor's header.
        if end - at < 4 {
            return Err(param(8));
        }
        segments.push(parse_b2b(p, at, end, cscds.len())?);
        at += B2B_SEGMENT_LEN;
    }
    Ok((cscds, segments))
}

// ------------------------------------------------------------ execution

#[derive(Clone)]
enum Lun {
    This,
    Peer(Rc<dyn CopyLun>),
}

/// A logical unit a segment reads or writes.
#[derive(Clone)]
struct Endpoint {
    lun: Lun,
    /// Its NAA designator: two endpoints are the same unit when equal.
    naa: Vec<u8>,
    info: DiskInfo,
    /// Where its CSCD descriptor is (none for FFFFh).
    cscd_at: Option<usize>,
}

impl Endpoint {
    /// Whether `self` and `other` are the same logical unit: the same
    /// designator, or the same object the transport handed out.
    fn same_unit(&self, other: &Endpoint) -> bool {
        match (&self.lun, &other.lun) {
            (Lun::Peer(a), Lun::Peer(b)) if Rc::ptr_eq(a, b) => true,
            _ => self.naa == other.naa,
        }
    }

    fn get<'a>(&'a self, this: &'a dyn CopyLun) -> &'a dyn CopyLun {
        match &self.lun {
            Lun::This => this,
            Lun::Peer(p) => p.as_ref(),
        }
    }
}

/// A validated segment.
struct Plan {
    index: u16,
    src: Endpoint,
    dst: Endpoint,
    src_lba: u64,
    dst_lba: u64,
    bytes: u64,
}

fn aborted(
    reason: CopyAbort,
    segment: u16,
    pointer: Option<(FieldPointer, bool)>,
    residual: Option<u64>,
) -> CommandError {
    CommandError::Copy(CopyError::Aborted {
        reason,
        at: SegmentSense { segment, pointer },
        residual,
    })
}

impl<B: BlockBackend> Target<B> {
    /// EXTENDED COPY(LID1) (SPC-4 6.3).
    pub(crate) async fn extended_copy(
        &self,
        nexus: Nexus,
        param_len: u32,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        // SPC-4 6.3: a zero PARAMETER LIST LENGTH is not an error.
        if param_len == 0 {
            return Ok(());
        }
        if (param_len as usize) < HEADER_LEN || buf.len() < u64::from(param_len) {
            return Err(CommandError::ParameterListLength);
        }
        let mut h = [0u8; HEADER_LEN];
        buf.read_at(0, &mut h)?;
        let header = parse_header(&h, param_len)?;
        // Bytes past the lists (up to PARAMETER LIST LENGTH) are not read.
        let mut p = vec![0u8; HEADER_LEN + header.cscd_len + header.seg_len];
        buf.read_at(0, &mut p)?;
        let (cscds, segments) = parse_lists(&p, &header)?;
        let plans = self.plan(&cscds, &segments)?;
        let mut running = self.copy.register(nexus, &header)?;
        let mut blocks = 0u64;
        for (done, plan) in plans.iter().enumerate() {
            match self.copy_segment(plan, &running, done as u16, blocks).await {
                Ok(n) => {
                    blocks += n;
                    running.progress(done as u16 + 1, blocks);
                }
                Err(e) => {
                    running.finish(Outcome::Failed(e.sense().to_fixed()));
                    return Err(e);
                }
            }
        }
        running.finish(Outcome::Good);
        Ok(())
    }

    /// Locate the logical unit of CSCD descriptor `id` for segment `index`.
    fn resolve(&self, cscds: &[Cscd], id: u16, index: u16) -> Result<Endpoint, CommandError> {
        let own = self.identity().naa().to_be_bytes();
        if id == LOCAL_CSCD_ID {
            return Ok(Endpoint {
                lun: Lun::This,
                naa: own.to_vec(),
                info: self.info(),
                cscd_at: None,
            });
        }
        let c = &cscds[usize::from(id)];
        let lun = if c.designator == own {
            Lun::This
        } else {
            match self
                .copy
                .peers
                .as_ref()
                .and_then(|p| p.locate(&c.designator))
            {
                Some(l) => Lun::Peer(l),
                None => {
                    let at = FieldPointer::byte((c.at + 8) as u16);
                    return Err(aborted(
                        CopyAbort::Unreachable,
                        index,
                        Some((at, false)),
                        None,
                    ));
                }
            }
        };
        let info = match &lun {
            Lun::This => self.info(),
            Lun::Peer(l) => l.info(),
        };
        // DISK BLOCK LENGTH must be the unit's (zero is taken as "its own").
        if c.block_len != 0 && c.block_len != info.block_size {
            return Err(param(c.at + 29));
        }
        Ok(Endpoint {
            lun,
            naa: c.designator.clone(),
            info,
            cscd_at: Some(c.at),
        })
    }

    /// Check every segment against the units it names, before copying.
    fn plan(&self, cscds: &[Cscd], segments: &[Segment]) -> Result<Vec<Plan>, CommandError> {
        let max_bytes = max_segment_bytes(&self.info());
        let mut resolved: Vec<Option<Endpoint>> = vec![None; cscds.len()];
        let mut endpoint = |id: u16, index: u16| -> Result<Endpoint, CommandError> {
            if let Some(Some(e)) = resolved.get(usize::from(id)) {
                return Ok(e.clone());
            }
            let e = self.resolve(cscds, id, index)?;
            if let Some(slot) = resolved.get_mut(usize::from(id)) {
                *slot = Some(e.clone());
            }
            Ok(e)
        };
        let mut plans = Vec::with_capacity(segments.len());
        for (index, s) in segments.iter().enumerate() {
            let index = index as u16;
            let src = endpoint(s.src, index)?;
            let dst = endpoint(s.dst, index)?;
            let (sbs, dbs) = (
                u64::from(src.info.block_size),
                u64::from(dst.info.block_size),
            );
            // DC: NUMBER OF BLOCKS counts destination blocks, else source.
            let bytes = s.blocks * if s.dc { dbs } else { sbs };
            if !bytes.is_multiple_of(sbs) || !bytes.is_multiple_of(dbs) {
                let at = FieldPointer::byte(10);
                return Err(aborted(
                    CopyAbort::InexactSegment,
                    index,
                    Some((at, true)),
                    None,
                ));
            }
            if bytes > max_bytes {
                return Err(param(s.at + 10));
            }
            for (lba, bs, info, off) in [
                (s.src_lba, sbs, &src.info, 12),
                (s.dst_lba, dbs, &dst.info, 20),
            ] {
                match lba.checked_add(bytes / bs) {
                    Some(end) if end <= info.block_count.0 => {}
                    _ => {
                        return Err(CommandError::Copy(CopyError::LbaOutOfRange(
                            FieldPointer::byte((s.at + off) as u16),
                        )));
                    }
                }
            }
            if dst.info.read_only {
                return Err(CommandError::WriteProtected);
            }
            plans.push(Plan {
                index,
                src,
                dst,
                src_lba: s.src_lba,
                dst_lba: s.dst_lba,
                bytes,
            });
        }
        Ok(plans)
    }

    /// Copy one segment; the destination blocks written.
    async fn copy_segment(
        &self,
        plan: &Plan,
        running: &Running<'_>,
        segments_done: u16,
        blocks_before: u64,
    ) -> Result<u64, CommandError> {
        let total = plan.bytes;
        if total == 0 {
            return Ok(0);
        }
        let this: &dyn CopyLun = self;
        let (src, dst) = (plan.src.get(this), plan.dst.get(this));
        let sbs = u64::from(plan.src.info.block_size);
        let dbs = u64::from(plan.dst.info.block_size);
        // Both block sizes divide the segment, and 1 MiB: whole blocks
        // of both in every chunk.
        let chunk = COPY_CHUNK_BYTES.min(total);
        let src_max = plan.src.info.max_transfer.0.saturating_mul(sbs);
        let dst_max = plan.dst.info.max_transfer.0.saturating_mul(dbs);
        // Within one unit, a destination that starts inside the source
        // range is copied from the end backwards, so every block is read
        // before it is overwritten (the result of copying all at once).
        let backward = plan.src.same_unit(&plan.dst)
            && plan.dst_lba > plan.src_lba
            && plan.dst_lba < plan.src_lba + total / sbs;
        let chunks = total.div_ceil(chunk);
        let mut data = vec![0u8; chunk as usize];
        let mut written = 0u64;
        let failed = |ep: &Endpoint, written: u64| {
            let residual = (written > 0).then(|| (total - written) / dbs);
            let at = ep.cscd_at.map(|a| (FieldPointer::byte(a as u16), false));
            move |_: BackendError| aborted(CopyAbort::DeviceFailure, plan.index, at, residual)
        };
        for i in 0..chunks {
            let c = if backward { chunks - 1 - i } else { i };
            let off = c * chunk;
            let len = chunk.min(total - off);
            let mut at = 0;
            while at < len {
                let n = (len - at).min(src_max);
                let lba = Lba(plan.src_lba + (off + at) / sbs);
                src.read_blocks(lba, &mut data[at as usize..(at + n) as usize])
                    .await
                    .map_err(failed(&plan.src, written))?;
                at += n;
            }
            let mut at = 0;
            while at < len {
                let n = (len - at).min(dst_max);
                let lba = Lba(plan.dst_lba + (off + at) / dbs);
                dst.write_blocks(lba, &data[at as usize..(at + n) as usize])
                    .await
                    .map_err(failed(&plan.dst, written))?;
                at += n;
                written += n;
                running.progress(segments_done, blocks_before + written / dbs);
            }
        }
        Ok(total / dbs)
    }

    /// THIRD-PARTY COPY IN: RECEIVE COPY STATUS(LID1), OPERATING
    /// PARAMETERS, FAILURE DETAILS(LID1).
    pub(crate) fn receive_copy_results(
        &self,
        nexus: Nexus,
        info: &DiskInfo,
        service_action: u8,
        list_id: u8,
    ) -> Result<Vec<u8>, CommandError> {
        let unknown = CommandError::InvalidField(FieldPointer::byte(2));
        match service_action {
            op::SA_COPY_OPERATING_PARAMETERS => Ok(operating_parameters(info)),
            op::SA_COPY_STATUS_LID1 => {
                let (outcome, segments, blocks) =
                    self.copy.status(nexus, list_id).ok_or(unknown)?;
                Ok(copy_status(outcome, segments, blocks))
            }
            op::SA_COPY_FAILURE_DETAILS_LID1 => match self.copy.status(nexus, list_id) {
                Some((Some(outcome), _, _)) => Ok(failure_details(outcome)),
                // Unknown, or still running: nothing to report yet.
                _ => Err(unknown),
            },
            _ => Err(CommandError::InvalidField(FieldPointer::bit(1, 4))),
        }
    }
}

/// RECEIVE COPY STATUS(LID1) parameter data (SPC-4; SPC-3's RECEIVE COPY
/// RESULTS with service action COPY STATUS).
fn copy_status(outcome: Option<Outcome>, segments: u16, blocks: u64) -> Vec<u8> {
    let mut d = vec![0u8; 12];
    be::put(&mut d[0..4], 8); // AVAILABLE DATA
    // HDD (bit 7) zero; COPY MANAGER STATUS: in progress, completed
    // without errors, completed with errors.
    d[4] = match outcome {
        None => 0x00,
        Some(Outcome::Good) => 0x01,
        Some(Outcome::Failed(_)) => 0x02,
    };
    be::put(&mut d[5..7], u64::from(segments));
    d[7] = UNITS_BLOCKS;
    be::put(&mut d[8..12], blocks.min(u64::from(u32::MAX)));
    d
}

/// RECEIVE COPY FAILURE DETAILS(LID1) parameter data (SPC-4; SPC-3's
/// FAILED SEGMENT DETAILS): the sense the failed EXTENDED COPY ended with.
fn failure_details(outcome: Outcome) -> Vec<u8> {
    let (status, sense) = match &outcome {
        Outcome::Good => (0x01, &[][..]),
        Outcome::Failed(s) => (0x02, s.as_slice()),
    };
    let mut d = vec![0u8; 60];
    be::put(&mut d[0..4], 56 + sense.len() as u64); // AVAILABLE DATA
    d[56] = status; // COPY COMMAND STATUS
    be::put(&mut d[58..60], sense.len() as u64); // SENSE DATA LENGTH
    d.extend_from_slice(sense);
    d
}

/// RECEIVE COPY OPERATING PARAMETERS parameter data (SPC-4; SPC-3's
/// RECEIVE COPY RESULTS with service action OPERATING PARAMETERS), 46
/// bytes.
pub fn operating_parameters(info: &DiskInfo) -> Vec<u8> {
    let codes = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
    let mut d = vec![0u8; 44];
    be::put(&mut d[0..4], (40 + codes.len()) as u64); // AVAILABLE DATA
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b is supported
    be::put(&mut d[8..10], MAX_CSCD_DESCRIPTORS.into());
    be::put(&mut d[10..12], MAX_SEGMENT_DESCRIPTORS.into());
    be::put(&mut d[12..16], MAX_DESCRIPTOR_LIST_LENGTH.into());
    be::put(&mut d[16..20], max_segment_bytes(info));
    be::put(&mut d[20..24], MAX_INLINE_DATA_LENGTH.into());
    // HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: zero.
    be::put(&mut d[34..36], MAX_CONCURRENT_COPIES.into()); // TOTAL CONCURRENT COPIES
    d[36] = MAX_CONCURRENT_COPIES as u8; // MAXIMUM CONCURRENT COPIES
    d[37] = DATA_SEGMENT_GRANULARITY_LOG2;
    // INLINE and HELD DATA GRANULARITY: 2^0.
    d[43] = codes.len() as u8; // IMPLEMENTED DESCRIPTOR LIST LENGTH
    d.extend_from_slice(&codes);
    d
}

/// One third-party copy descriptor: type, length, parameters padded to a
/// multiple of four bytes (SPC-4 7.8.17.1).
fn tpc_descriptor(d: &mut Vec<u8>, kind: u16, params: &[u8]) {
    let padded = params.len().next_multiple_of(4);
    d.extend_from_slice(&kind.to_be_bytes());
    d.extend_from_slice(&(padded as u16).to_be_bytes());
    d.extend_from_slice(params);
    d.resize(d.len() + padded - params.len(), 0);
}

/// The descriptors of the Third-party Copy VPD page (SPC-4 7.8.17): those
/// EXTENDED COPY(LID1) calls for, with the limits RECEIVE COPY OPERATING
/// PARAMETERS reports.
pub fn third_party_copy_descriptors(info: &DiskInfo) -> Vec<u8> {
    let mut d = Vec::new();
    // Supported Commands (0001h): opcode, service action count, actions.
    let cmds = [
        op::EXTENDED_COPY,
        1,
        op::SA_EXTENDED_COPY_LID1,
        op::RECEIVE_COPY_RESULTS,
        3,
        op::SA_COPY_STATUS_LID1,
        op::SA_COPY_OPERATING_PARAMETERS,
        op::SA_COPY_FAILURE_DETAILS_LID1,
    ];
    let mut p = vec![cmds.len() as u8];
    p.extend_from_slice(&cmds);
    tpc_descriptor(&mut d, 0x0001, &p);
    // Parameter Data (0004h).
    let mut p = [0u8; 28];
    be::put(&mut p[4..6], MAX_CSCD_DESCRIPTORS.into());
    be::put(&mut p[6..8], MAX_SEGMENT_DESCRIPTORS.into());
    be::put(&mut p[8..12], MAX_DESCRIPTOR_LIST_LENGTH.into());
    be::put(&mut p[12..16], MAX_INLINE_DATA_LENGTH.into());
    tpc_descriptor(&mut d, 0x0004, &p);
    // Supported Descriptors (0008h).
    tpc_descriptor(
        &mut d,
        0x0008,
        &[2, SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION],
    );
    // Supported CSCD Descriptor IDs (000Ch): FFFFh, this logical unit.
    let [hi, lo] = LOCAL_CSCD_ID.to_be_bytes();
    tpc_descriptor(&mut d, 0x000C, &[0, 2, hi, lo]);
    // General Copy Operations (8001h).
    let mut p = [0u8; 32];
    be::put(&mut p[0..4], MAX_CONCURRENT_COPIES.into()); // TOTAL CONCURRENT COPIES
    be::put(&mut p[4..8], MAX_CONCURRENT_COPIES.into()); // MAXIMUM IDENTIFIED CONCURRENT COPIES
    be::put(&mut p[8..12], max_segment_bytes(info));
    p[12] = DATA_SEGMENT_GRANULARITY_LOG2;
    tpc_descriptor(&mut d, 0x8001, &p);
    d
}

//! The logical unit: runs parsed commands against a [`BlockBackend`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::{
    BackendError, BackendErrorKind, BackendOp, BlockBackend, BlockExtent, BlockState, DiskInfo,
    GeometryError, WriteCache,
};
use crate::buffer::{BufMut, BufRef, DataBuffer};
use crate::cdb::{
    self, BlockRange, ByteCheck, Command, IoKind, Offered, PageControl, SanitizeAction,
};
use crate::identity::DeviceIdentity;
use crate::lock::{RangeGuard, RangeLocks};
use crate::pages;
use crate::sense::{
    CommandError, FieldPointer, Sense, SenseBytes, SenseFormat, Status, UnitAttention,
};
use crate::units::{Blocks, Lba, be};
use crate::xcopy::CopyManager;

/// An I_T nexus as the transport identifies it. Unit attentions are kept
/// per nexus (SAM-5 5.14). TCMU does not tell user space which initiator
/// sent a command, so the TCMU daemon uses one nexus per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Nexus(pub u64);

/// How a command ended: what the transport writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// SAM status.
    pub status: Status,
    /// Sense data (non-empty exactly when `status` is CHECK CONDITION).
    pub sense: SenseBytes,
    /// Bytes of data-in actually produced, from offset 0 of the buffer; a
    /// transport reports `buffer length - data_in_len` as residual
    /// (TCMU: READ_LEN). Zero for commands without data-in.
    pub data_in_len: u64,
    /// Whether the command was a READ, a WRITE or something else (for the
    /// transport's counters; decoded once, here).
    pub io: IoKind,
}

impl Completion {
    /// Success: GOOD or CONDITION MET, never with sense.
    fn done(status: Status, data_in_len: u64) -> Self {
        Self {
            status,
            sense: SenseBytes::EMPTY,
            data_in_len,
            io: IoKind::Other,
        }
    }
    fn check(err: &CommandError) -> Self {
        Self {
            status: Status::CheckCondition,
            sense: err.sense().to_fixed(),
            data_in_len: 0,
            io: IoKind::Other,
        }
    }
    /// The sense bytes.
    pub fn sense(&self) -> &[u8] {
        self.sense.as_slice()
    }
    /// The sense key's code (0 to 15), with CHECK CONDITION (the target
    /// writes fixed-format sense, key in byte 2).
    pub fn sense_key(&self) -> Option<u8> {
        if self.status != Status::CheckCondition {
            return None;
        }
        self.sense().get(2).map(|k| k & 0xf)
    }
}

/// Where the logical unit is with sanitizing (SBC-3 4.11), as
/// [`Target::sanitize_state`] reports it and
/// [`Target::restore_sanitize_state`] takes it back after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SanitizeState {
    /// No sanitize running, none failed: commands run normally.
    #[default]
    Idle,
    /// A sanitize operation is running (or, with IMMED, waiting for the
    /// transport to drive [`Target::background`]). Every command but
    /// INQUIRY, REPORT LUNS and REQUEST SENSE gets NOT READY, SANITIZE IN
    /// PROGRESS with `progress`.
    InProgress {
        /// PROGRESS INDICATION: fraction done, of 65536.
        progress: u16,
        /// AUSE of the SANITIZE command that started it.
        ause: bool,
    },
    /// The last sanitize failed or was interrupted: commands that access
    /// the medium get MEDIUM ERROR, SANITIZE COMMAND FAILED until a
    /// SANITIZE succeeds, or (only if `ause`) EXIT FAILURE MODE.
    Failed {
        /// AUSE of the SANITIZE command that failed.
        ause: bool,
    },
}

/// [`Target::restore_sanitize_state`] while a sanitize runs in this target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a sanitize operation is running; its state cannot be replaced")]
pub struct SanitizeBusy;

/// A sanitize operation: what to do to every block.
#[derive(Debug)]
enum Job {
    /// OVERWRITE: `count` passes of the pattern.
    Overwrite(Overwrite),
    /// BLOCK ERASE: discard everything (the backend zeroes, LBPRZ).
    BlockErase,
}

/// The OVERWRITE parameter list, validated (SBC-3 5.21.2, table 87).
#[derive(Debug)]
struct Overwrite {
    /// OVERWRITE COUNT, 1 to 31.
    count: u8,
    /// INVERT: invert the pattern between passes.
    invert: bool,
    /// INITIALIZATION PATTERN, 1 to block-size bytes.
    pattern: Vec<u8>,
}

impl Job {
    /// Blocks to process, the denominator of the progress indication.
    fn total(&self, info: &DiskInfo) -> u64 {
        match self {
            Self::Overwrite(o) => info.block_count.0.saturating_mul(u64::from(o.count)),
            Self::BlockErase => info.block_count.0,
        }
    }
}

/// An IMMED sanitize waiting for [`Target::background`].
#[derive(Debug)]
struct PendingJob {
    job: Job,
    info: DiskInfo,
    ause: bool,
}

#[derive(Debug)]
struct State {
    info: DiskInfo,
    /// The transport's own limit on one command, in blocks (the kernel's
    /// `hw_max_sectors`); `info.max_transfer` never exceeds it.
    transport_max: Option<Blocks>,
    /// WCE of the caching mode page, changeable by MODE SELECT.
    wce: bool,
    /// Pending unit attentions of every nexus seen so far, oldest first.
    nexuses: HashMap<Nexus, Vec<UnitAttention>>,
    /// Sanitize state (SBC-3 4.11).
    sanitize: SanitizeState,
    /// The accepted IMMED sanitize nobody has taken yet.
    job: Option<PendingJob>,
}

fn lock_state(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running sanitize operation's hold on the sanitize state: reports
/// progress, and sets the outcome when finished. Dropped unfinished (the
/// command or background future was dropped: abort, shutdown), it leaves
/// the state `Failed`, since the medium was only partly sanitized.
#[derive(Debug)]
struct SanitizeRun<'a> {
    state: &'a Mutex<State>,
    ause: bool,
    done: u64,
    total: u64,
    armed: bool,
}

impl<'a> SanitizeRun<'a> {
    fn new(state: &'a Mutex<State>, ause: bool, total: u64) -> Self {
        Self {
            state,
            ause,
            done: 0,
            total,
            armed: true,
        }
    }

    /// `n` more blocks processed.
    fn advance(&mut self, n: u64) {
        self.done = self.done.saturating_add(n).min(self.total);
        let p = progress(self.done, self.total);
        if let SanitizeState::InProgress { progress, .. } = &mut lock_state(self.state).sanitize {
            *progress = p;
        }
    }

    fn finish(mut self, ok: bool) {
        self.armed = false;
        lock_state(self.state).sanitize = if ok {
            SanitizeState::Idle
        } else {
            SanitizeState::Failed { ause: self.ause }
        };
    }
}

impl Drop for SanitizeRun<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock_state(self.state).sanitize = SanitizeState::Failed { ause: self.ause };
        }
    }
}

/// PROGRESS INDICATION: `done / total` as a fraction of 65536 (SPC-4
/// 4.5.2.4.3), at most FFFFh.
fn progress(done: u64, total: u64) -> u16 {
    if total == 0 {
        return 0;
    }
    (u128::from(done) * 65536 / u128::from(total)).min(0xFFFF) as u16
}

impl State {
    fn pending(&mut self, nexus: Nexus) -> &mut Vec<UnitAttention> {
        // A nexus seen for the first time has not been told the logical
        // unit came up (SAM-5 6.3.1, power on).
        self.nexuses
            .entry(nexus)
            .or_insert_with(|| vec![UnitAttention::PowerOnReset])
    }

    fn raise(&mut self, ua: UnitAttention, except: Option<Nexus>) {
        for (n, q) in &mut self.nexuses {
            if Some(*n) == except {
                continue;
            }
            match ua {
                // A reset supersedes whatever was pending.
                UnitAttention::PowerOnReset | UnitAttention::LunReset => *q = vec![ua],
                _ if !q.contains(&ua) => q.push(ua),
                _ => {}
            }
        }
    }
}

/// A snapshot of what a command needs from the shared state.
#[derive(Debug, Clone, Copy)]
struct Snap {
    info: DiskInfo,
    wce: bool,
    /// Sanitize operations started before this command was accepted.
    epoch: u64,
}

/// One SCSI logical unit backed by `B`.
///
/// [`Target::execute`] takes `&self`: any number of commands may be in
/// flight at once, and they complete in whatever order the backend finishes
/// them. COMPARE AND WRITE, ORWRITE and WRITE ATOMIC are made atomic by
/// range locks held here.
///
/// A target is not `Send`: it may hold the transport's [`CopyPeers`]
/// (`Rc`), and lives on its device's worker like its backend.
///
/// [`CopyPeers`]: crate::xcopy::CopyPeers
#[derive(Debug)]
pub struct Target<B> {
    pub(crate) backend: B,
    identity: DeviceIdentity,
    state: Mutex<State>,
    pub(crate) locks: RangeLocks,
    /// Sanitize operations started so far (bumped under `state`): a
    /// command that changes blocks compares it with its snapshot once it
    /// holds its range lock, so one accepted before a sanitize started
    /// cannot write while it runs or after it failed.
    sanitize_epoch: AtomicU64,
    /// The transport drives [`Target::background`]: IMMED sanitize is
    /// accepted.
    background_jobs: bool,
    /// EXTENDED COPY: the transport's peers and the copies' status.
    pub(crate) copy: CopyManager,
}

fn range_end(info: &DiskInfo, r: BlockRange) -> Result<u64, CommandError> {
    // SBC-3 4.5: LBA + length past the capacity is out of range.
    match r.lba.checked_add(r.blocks) {
        Some(end) if end.0 <= info.block_count.0 => Ok(end.0),
        _ => Err(CommandError::LbaOutOfRange),
    }
}

fn bytes_of(info: &DiskInfo, blocks: Blocks, field: u16) -> Result<u64, CommandError> {
    blocks
        .bytes(info.block_size)
        .map(|b| b.0)
        .ok_or(CommandError::InvalidField(FieldPointer::byte(field)))
}

/// SBC-3 5.x: a transfer above the Block Limits MAXIMUM TRANSFER LENGTH is
/// an invalid field (the length field).
fn check_transfer(info: &DiskInfo, r: BlockRange) -> Result<(), CommandError> {
    if r.blocks > info.max_transfer {
        return Err(CommandError::InvalidField(FieldPointer::byte(r.len_field)));
    }
    Ok(())
}

/// The data buffer must hold `needed` bytes; otherwise the command is
/// refused before anything reaches the backend (no partial write).
fn check_buffer(buf: &dyn DataBuffer, needed: u64, field: u16) -> Result<(), CommandError> {
    if buf.len() < needed {
        return Err(CommandError::InvalidField(FieldPointer::byte(field)));
    }
    Ok(())
}

fn check_writable(info: &DiskInfo) -> Result<(), CommandError> {
    if info.read_only {
        return Err(CommandError::WriteProtected);
    }
    Ok(())
}

/// Copy parameter data to the start of the buffer, truncated to the
/// ALLOCATION LENGTH and the buffer (SPC-4 4.2.5.6).
fn respond(buf: &mut dyn DataBuffer, data: &[u8], alloc: u32) -> Result<u64, CommandError> {
    let n = (data.len() as u64).min(u64::from(alloc)).min(buf.len());
    buf.write_at(0, &data[..n as usize])?;
    Ok(n)
}

fn backend_err(op: BackendOp) -> impl Fn(BackendError) -> CommandError {
    move |err| CommandError::Backend { op, err }
}

/// Bytes per chunk when the target itself reads for VERIFY or writes a
/// WRITE SAME pattern.
const CHUNK_BYTES: u64 = 1 << 20;

fn chunk_blocks(info: &DiskInfo) -> u64 {
    (CHUNK_BYTES / u64::from(info.block_size))
        .min(info.max_transfer.0)
        .max(1)
}

/// `info` with MAXIMUM TRANSFER LENGTH bounded by the transport's limit.
fn capped(mut info: DiskInfo, transport_max: Option<Blocks>) -> DiskInfo {
    if let Some(m) = transport_max {
        info.max_transfer = Blocks(info.max_transfer.0.min(m.0));
    }
    info
}

/// The size in bytes of the cache PRE-FETCH reports against: a range of
/// at most this many bytes completes with CONDITION MET, a larger one with
/// GOOD (SBC-3 PRE-FETCH (10)). The target keeps no cache; the figure is a
/// modest stand-in for the page cache under a backstore, which the target
/// can neither see nor size.
pub const PREFETCH_CACHE_BYTES: u64 = 32 << 20;

/// Blocks named by a PRE-FETCH: a PREFETCH LENGTH of zero means from the LBA
/// to the last block, so the LBA itself must then be inside the medium.
fn prefetch_blocks(info: &DiskInfo, r: BlockRange) -> Result<u64, CommandError> {
    if r.blocks.0 == 0 {
        return match info.block_count.0.checked_sub(r.lba.0) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(CommandError::LbaOutOfRange),
        };
    }
    range_end(info, r)?;
    Ok(r.blocks.0)
}

/// The status of a command that did not fail: GOOD, except a PRE-FETCH whose
/// blocks all fit the cache, which is CONDITION MET (SBC-3 PRE-FETCH (10),
/// with IMMED zero or one alike).
fn success_status(info: &DiskInfo, cmd: Command) -> Status {
    match cmd {
        Command::PreFetch { range } => match prefetch_blocks(info, range) {
            Ok(n)
                if Blocks(n)
                    .bytes(info.block_size)
                    .is_some_and(|b| b.0 <= PREFETCH_CACHE_BYTES) =>
            {
                Status::ConditionMet
            }
            _ => Status::Good,
        },
        _ => Status::Good,
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Most LBA status descriptors in one GET LBA STATUS answer (64 KiB).
const MAX_LBA_STATUS_DESCRIPTORS: u64 = 4096;

/// Most backend calls one GET LBA STATUS makes; a backend answering in
/// small pieces gets a shorter (still correct) report.
const MAX_BLOCK_STATUS_CALLS: usize = 64;

/// Bytes per discard call of SANITIZE BLOCK ERASE.
const ERASE_STEP_BYTES: u64 = 1 << 30;

/// A block status answer the target cannot use.
fn malformed_status() -> CommandError {
    CommandError::Backend {
        op: BackendOp::BlockStatus,
        err: BackendError::new(BackendErrorKind::Internal),
    }
}

/// Check an answer to `block_status(lba, blocks)`: contiguous non-empty
/// extents from `lba`, inside the range asked. Returns where it ends.
fn check_extents(extents: &[BlockExtent], lba: u64, blocks: u64) -> Result<u64, CommandError> {
    let end = lba + blocks;
    let mut at = lba;
    for e in extents {
        if e.lba.0 != at || e.blocks.0 == 0 || e.blocks.0 > end - at {
            return Err(malformed_status());
        }
        at += e.blocks.0;
    }
    Ok(at)
}

/// GET LBA STATUS parameter data being built (SBC-3 5.6.2): descriptors
/// of (blocks, PROVISIONING STATUS), contiguous from `start`.
#[derive(Debug)]
struct LbaStatus {
    start: u64,
    want: usize,
    descs: Vec<(u64, u8)>,
}

impl LbaStatus {
    fn new(start: u64, want: usize) -> Self {
        Self {
            start,
            want,
            descs: Vec::new(),
        }
    }

    /// All descriptors used, the last one full.
    fn full(&self) -> bool {
        self.descs.len() == self.want
            && self
                .descs
                .last()
                .is_some_and(|&(n, _)| n == u64::from(u32::MAX))
    }

    /// Append `blocks` blocks of `status`, merging with the last
    /// descriptor and splitting at the 32-bit NUMBER OF LOGICAL BLOCKS.
    /// False once no descriptor is left for the rest.
    fn push(&mut self, mut blocks: u64, status: u8) -> bool {
        const MAX: u64 = u32::MAX as u64;
        while blocks > 0 {
            let used = self.descs.len();
            match self.descs.last_mut() {
                Some((n, s)) if *s == status && *n < MAX => {
                    let add = blocks.min(MAX - *n);
                    *n += add;
                    blocks -= add;
                }
                _ if used == self.want => return false,
                _ => {
                    let add = blocks.min(MAX);
                    self.descs.push((add, status));
                    blocks -= add;
                }
            }
        }
        true
    }

    /// The parameter data: 8-byte header, then 16-byte descriptors.
    fn to_bytes(&self) -> Vec<u8> {
        let len = 8 + 16 * self.descs.len();
        let mut d = vec![0u8; len];
        // PARAMETER DATA LENGTH: the bytes after the field itself.
        be::put(&mut d[0..4], len as u64 - 4);
        let mut lba = self.start;
        for (i, &(n, status)) in self.descs.iter().enumerate() {
            let at = 8 + 16 * i;
            be::put(&mut d[at..at + 8], lba);
            be::put(&mut d[at + 8..at + 12], n);
            d[at + 12] = status; // PROVISIONING STATUS
            lba += n;
        }
        d
    }
}

/// Read and check the OVERWRITE parameter list (SBC-3 5.21.2, table 87).
fn overwrite_params(
    info: &DiskInfo,
    param_len: u16,
    buf: &dyn DataBuffer,
) -> Result<Overwrite, CommandError> {
    let bs = u64::from(info.block_size);
    // The list holds a 4-byte header and at most one block of pattern.
    if u64::from(param_len) > bs + 4 {
        return Err(CommandError::InvalidField(FieldPointer::byte(7)));
    }
    if param_len < 4 || buf.len() < u64::from(param_len) {
        return Err(CommandError::ParameterListLength);
    }
    let mut p = vec![0u8; usize::from(param_len)];
    buf.read_at(0, &mut p)?;
    if p[0] & 0x60 != 0 {
        // TEST: only 00b (a real overwrite).
        return Err(CommandError::InvalidParameter(FieldPointer::bit(0, 6)));
    }
    let count = p[0] & 0x1F;
    if count == 0 {
        return Err(CommandError::InvalidParameter(FieldPointer::bit(0, 4)));
    }
    if p[1] != 0 {
        let bit = 7 - p[1].leading_zeros() as u8;
        return Err(CommandError::InvalidParameter(FieldPointer::bit(1, bit)));
    }
    let len = be::get(&p[2..4]);
    if len == 0 || len > bs {
        return Err(CommandError::InvalidParameter(FieldPointer::byte(2)));
    }
    if len + 4 != u64::from(param_len) {
        return Err(CommandError::ParameterListLength);
    }
    Ok(Overwrite {
        count,
        invert: p[0] & 0x80 != 0,
        pattern: p.split_off(4),
    })
}

impl<B: BlockBackend> Target<B> {
    /// Attach a logical unit to `backend`. Every nexus will first see
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub fn new(backend: B, identity: DeviceIdentity) -> Result<Self, GeometryError> {
        let info = backend.info();
        info.validate()?;
        Ok(Self {
            backend,
            identity,
            state: Mutex::new(State {
                info,
                transport_max: None,
                wce: info.write_cache == WriteCache::WriteBack,
                nexuses: HashMap::new(),
                sanitize: SanitizeState::Idle,
                job: None,
            }),
            locks: RangeLocks::default(),
            sanitize_epoch: AtomicU64::new(0),
            background_jobs: false,
            copy: CopyManager::default(),
        })
    }

    /// Bound MAXIMUM TRANSFER LENGTH by the transport's own limit on one
    /// command (for TCMU the backstore's `hw_max_sectors`, which the
    /// kernel's own backstores enforce). The LUN then advertises and
    /// enforces `min(backend, transport)`, the same for every backend, and
    /// keeps doing so across [`Target::refresh_info`]. COMPARE AND WRITE's
    /// maximum follows it.
    pub fn limit_transfer(self, transport_max: Blocks) -> Self {
        {
            let mut s = self.state();
            s.transport_max = Some(Blocks(transport_max.0.max(1)));
            s.info = capped(s.info, s.transport_max);
        }
        self
    }

    /// Declare that the transport drives background jobs: it calls
    /// [`Target::background`] whenever [`Target::background_pending`] says
    /// a job is waiting, and polls the future alongside its commands.
    /// Only then is SANITIZE with IMMED=1 accepted; without this it is
    /// refused with INVALID FIELD IN CDB at the IMMED bit, so a transport
    /// that never drives jobs cannot leave a device stuck "in progress".
    pub fn with_background_jobs(mut self) -> Self {
        self.background_jobs = true;
        self
    }

    /// Whether an accepted IMMED sanitize waits for [`Target::background`].
    pub fn background_pending(&self) -> bool {
        self.state().job.is_some()
    }

    /// Take the waiting background job (an IMMED=1 SANITIZE the target
    /// answered GOOD at once), as a future that runs the whole sanitize
    /// operation; `None` when nothing waits. Each job is handed out once.
    ///
    /// The future needs no runtime and no thread: poll it on the device's
    /// worker next to the command futures (they see SANITIZE IN PROGRESS
    /// with its progress meanwhile). If it is dropped before completion,
    /// the sanitize counts as failed ([`SanitizeState::Failed`]).
    pub fn background(&self) -> Option<impl Future<Output = ()> + '_> {
        let PendingJob { job, info, ause } = self.state().job.take()?;
        let run = SanitizeRun::new(&self.state, ause, job.total(&info));
        Some(async move {
            // The outcome is in the sanitize state; nobody waits for status.
            let _ = self.sanitize_job(&info, &job, run).await;
        })
    }

    /// The sanitize state, to persist: a daemon that stops while this is
    /// `InProgress` (or `Failed`) restores it with
    /// [`Target::restore_sanitize_state`] when the device comes back.
    pub fn sanitize_state(&self) -> SanitizeState {
        self.state().sanitize
    }

    /// Put back a persisted sanitize state (at attach, before commands):
    /// `Failed` stays failed; `InProgress` means the sanitize was
    /// interrupted (the daemon stopped) and becomes `Failed` with its
    /// AUSE, since the medium was only partly sanitized and the operation
    /// is not resumed; `Idle` clears a failure. Refused while a sanitize
    /// runs in this target.
    pub fn restore_sanitize_state(&self, state: SanitizeState) -> Result<(), SanitizeBusy> {
        let mut s = self.state();
        if matches!(s.sanitize, SanitizeState::InProgress { .. }) {
            return Err(SanitizeBusy);
        }
        s.sanitize = match state {
            SanitizeState::InProgress { ause, .. } => SanitizeState::Failed { ause },
            other => other,
        };
        Ok(())
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The identity reported by INQUIRY.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Geometry the target currently answers with.
    pub fn info(&self) -> DiskInfo {
        self.state().info
    }

    /// Whether the volatile write cache is enabled (WCE).
    pub fn write_cache_enabled(&self) -> bool {
        self.state().wce
    }

    /// Re-read the backend's geometry (after a resize). If the capacity or
    /// block size changed, every nexus gets CAPACITY DATA HAS CHANGED
    /// (SBC-3 4.8). Returns whether it did.
    pub fn refresh_info(&self) -> Result<bool, GeometryError> {
        let info = self.backend.info();
        info.validate()?;
        let mut s = self.state();
        let changed =
            info.block_count != s.info.block_count || info.block_size != s.info.block_size;
        s.info = capped(info, s.transport_max);
        if changed {
            s.raise(UnitAttention::CapacityDataChanged, None);
        }
        Ok(changed)
    }

    /// A LUN reset happened (task management): every nexus gets BUS DEVICE
    /// RESET FUNCTION OCCURRED (SAM-5 6.3.4) and WCE returns to default.
    pub fn lun_reset(&self) {
        let mut s = self.state();
        s.wce = s.info.write_cache == WriteCache::WriteBack;
        s.raise(UnitAttention::LunReset, None);
    }

    /// Run one command. `buf` is the command's data buffer: data-out is
    /// read from it, data-in written to its start. Never panics on CDB or
    /// data contents.
    pub async fn execute(&self, nexus: Nexus, cdb: &[u8], buf: &mut dyn DataBuffer) -> Completion {
        let mut done = match self.run(nexus, cdb, buf).await {
            Ok((status, n)) => Completion::done(status, n),
            Err(e) => Completion::check(&e),
        };
        done.io = cdb.first().map_or(IoKind::Other, |&op| cdb::io_kind(op));
        done
    }

    async fn run(
        &self,
        nexus: Nexus,
        cdb: &[u8],
        buf: &mut dyn DataBuffer,
    ) -> Result<(Status, u64), CommandError> {
        let Some(&opcode) = cdb.first() else {
            return Err(CommandError::EmptyCdb);
        };
        let failed;
        let snap = {
            let mut s = self.state();
            let exempt = cdb::ua_exempt(opcode);
            let q = s.pending(nexus);
            // SAM-5 5.14: any command but INQUIRY, REPORT LUNS and REQUEST
            // SENSE reports (and so clears) the oldest pending attention
            // instead of running, whether or not the CDB is valid.
            if !exempt && !q.is_empty() {
                let ua = q.remove(0);
                return Err(CommandError::UnitAttention(ua));
            }
            // SBC-3 4.11: while a sanitize runs, only INQUIRY, REPORT LUNS
            // and REQUEST SENSE are processed, whether or not the CDB is
            // valid.
            if let SanitizeState::InProgress { progress, .. } = s.sanitize
                && !cdb::allowed_during_sanitize(opcode)
            {
                return Err(CommandError::SanitizeInProgress { progress });
            }
            failed = matches!(s.sanitize, SanitizeState::Failed { .. });
            Snap {
                info: s.info,
                wce: s.wce,
                epoch: self.sanitize_epoch.load(Ordering::Relaxed),
            }
        };
        let (op, cmd) = cdb::parse(cdb, Offered::of(&snap.info))?;
        if failed && op.medium {
            // SBC-3 4.11: after a failed sanitize the medium stays out of
            // reach until a sanitize succeeds.
            return Err(CommandError::SanitizeFailed);
        }
        let n = self.dispatch(nexus, snap, cmd, buf).await?;
        Ok((success_status(&snap.info, cmd), n))
    }

    /// Take the range lock of a command that changes blocks. If a
    /// sanitize started after the command was accepted (it waited behind
    /// an exclusive lock meanwhile), the command does not write while the
    /// sanitize runs or after it failed; after a successful one it goes on,
    /// as if SANITIZE had overtaken it (HEAD OF QUEUE, SBC-3 5.21).
    async fn lock_blocks(
        &self,
        snap: &Snap,
        start: u64,
        end: u64,
        exclusive: bool,
    ) -> Result<RangeGuard, CommandError> {
        let g = self.locks.lock(start, end, exclusive).await;
        if self.sanitize_epoch.load(Ordering::Acquire) != snap.epoch {
            match self.state().sanitize {
                SanitizeState::Idle => {}
                SanitizeState::InProgress { progress, .. } => {
                    return Err(CommandError::SanitizeInProgress { progress });
                }
                SanitizeState::Failed { .. } => return Err(CommandError::SanitizeFailed),
            }
        }
        Ok(g)
    }

    async fn dispatch(
        &self,
        nexus: Nexus,
        snap: Snap,
        cmd: Command,
        buf: &mut dyn DataBuffer,
    ) -> Result<u64, CommandError> {
        let info = &snap.info;
        match cmd {
            Command::TestUnitReady | Command::PreventAllowMediumRemoval { .. } => Ok(0),
            Command::RequestSense { desc, alloc } => {
                // SPC-4 6.39: report (and clear) a pending unit attention
                // as parameter data with GOOD status; then the sanitize
                // condition (SBC-3 4.11: in progress with its progress
                // indication, or failed); otherwise NO SENSE.
                let pending = {
                    let mut s = self.state();
                    let q = s.pending(nexus);
                    if q.is_empty() {
                        match s.sanitize {
                            SanitizeState::Idle => None,
                            SanitizeState::InProgress { progress, .. } => {
                                Some(CommandError::SanitizeInProgress { progress })
                            }
                            SanitizeState::Failed { .. } => Some(CommandError::SanitizeFailed),
                        }
                    } else {
                        Some(CommandError::UnitAttention(q.remove(0)))
                    }
                };
                let sense = pending.map_or(Sense::NONE, |e| e.sense());
                let format = if desc {
                    SenseFormat::Descriptor
                } else {
                    SenseFormat::Fixed
                };
                respond(buf, sense.to_bytes(format).as_slice(), alloc)
            }
            Command::Inquiry { evpd, page, alloc } => {
                let data = if evpd {
                    pages::vpd_page(page, &self.identity, info)?
                } else {
                    pages::standard_inquiry(&self.identity)
                };
                respond(buf, &data, alloc)
            }
            Command::ReportLuns { alloc } => {
                // SPC-4 6.33.2: one LUN, 0. (Under LIO the kernel answers
                // REPORT LUNS itself; this serves other transports.)
                let mut d = [0u8; 16];
                be::put(&mut d[0..4], 8);
                respond(buf, &d, alloc)
            }
            Command::ReadCapacity10 => respond(buf, &pages::read_capacity_10(info), 8),
            Command::ReadCapacity16 { alloc } => {
                respond(buf, &pages::read_capacity_16(info), alloc)
            }
            Command::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc,
            } => {
                let d = pages::mode_sense(ten, dbd, llbaa, pc, page, subpage, info, snap.wce)?;
                respond(buf, &d, alloc)
            }
            Command::ModeSelect { ten, param_len } => {
                self.mode_select(nexus, &snap, ten, param_len, buf)?;
                Ok(0)
            }
            Command::ReportSupportedOpcodes {
                rctd,
                options,
                opcode,
                service_action,
                alloc,
            } => {
                let d = pages::supported_opcodes(
                    rctd,
                    options,
                    opcode,
                    service_action,
                    Offered::of(info),
                )?;
                respond(buf, &d, alloc)
            }
            Command::Read { range } => self.read(info, range, buf).await,
            Command::Write { range, fua } => {
                self.write(&snap, range, fua || !snap.wce, buf).await?;
                Ok(0)
            }
            Command::Verify { range, bytchk } => {
                self.verify(info, range, bytchk, buf).await?;
                Ok(0)
            }
            Command::WriteAndVerify { range, bytchk } => {
                // Write through to the medium, then read it back (SBC-3 5.36).
                self.write(&snap, range, true, buf).await?;
                let check = if bytchk {
                    ByteCheck::Full
                } else {
                    ByteCheck::None
                };
                self.verify(info, range, check, buf).await?;
                Ok(0)
            }
            Command::SynchronizeCache { range } => {
                // SBC-3 5.22: the range is checked; the backend flushes
                // everything (there is no ranged flush below us). IMMED is
                // honoured by completing late, which the standard allows.
                range_end(info, range)?;
                self.backend
                    .flush()
                    .await
                    .map_err(backend_err(BackendOp::Flush))?;
                Ok(0)
            }
            Command::PreFetch { range } => {
                // SBC-3 PRE-FETCH: only the range is checked. There is no
                // cache in this target and no prefetch call in the backend,
                // so nothing is read; the status says whether the range
                // fits the notional cache (`success_status`).
                prefetch_blocks(info, range)?;
                Ok(0)
            }
            Command::WriteSame { range, unmap, ndob } => {
                self.write_same(&snap, range, unmap, ndob, buf).await?;
                Ok(0)
            }
            Command::Unmap { param_len } => {
                self.unmap(&snap, param_len, buf).await?;
                Ok(0)
            }
            Command::CompareAndWrite { range, fua } => {
                self.compare_and_write(&snap, range, fua || !snap.wce, buf)
                    .await?;
                Ok(0)
            }
            Command::GetLbaStatus { lba, alloc } => {
                self.get_lba_status(info, lba, alloc, buf).await
            }
            Command::Sanitize {
                action,
                immed,
                ause,
                param_len,
            } => {
                self.sanitize(info, action, immed, ause, param_len, buf)
                    .await?;
                Ok(0)
            }
            Command::OrWrite { range, fua } => {
                self.or_write(&snap, range, fua || !snap.wce, buf).await?;
                Ok(0)
            }
            Command::WriteAtomic { range, fua } => {
                self.write_atomic(&snap, range, fua || !snap.wce, buf)
                    .await?;
                Ok(0)
            }
            Command::StartStopUnit { start, no_flush } => {
                // SBC-3 5.25: stopping writes the cache back unless
                // NO_FLUSH. The unit does not become NOT READY: it is a
                // virtual disk that other initiators may still be using.
                if !start && !no_flush {
                    self.backend
                        .flush()
                        .await
                        .map_err(backend_err(BackendOp::Flush))?;
                }
                Ok(0)
            }
            Command::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                alloc,
            } => respond(
                buf,
                &pages::defect_data(twelve, plist, glist, format),
                alloc,
            ),
            Command::FormatUnit => {
                // SBC-3 5.3 with FMTDATA 0: no initialization pattern, so
                // block contents afterwards are unspecified. A thin
                // backend deallocates everything (SBC-3 4.7.3.3); others
                // keep their data.
                check_writable(info)?;
                if info.discard.is_some() && info.block_count.0 > 0 {
                    let _g = self.lock_blocks(&snap, 0, info.block_count.0, true).await?;
                    self.backend
                        .discard(Lba(0), info.block_count)
                        .await
                        .map_err(backend_err(BackendOp::Discard))?;
                }
                Ok(0)
            }
            Command::ExtendedCopy { param_len } => {
                self.extended_copy(nexus, param_len, buf).await?;
                Ok(0)
            }
            Command::ReceiveCopyResults {
                service_action,
                list_id,
                alloc,
            } => {
                let d = self.receive_copy_results(nexus, info, service_action, list_id)?;
                respond(buf, &d, alloc)
            }
        }
    }

    async fn read(
        &self,
        info: &DiskInfo,
        range: BlockRange,
        buf: &mut dyn DataBuffer,
    ) -> Result<u64, CommandError> {
        check_transfer(info, range)?;
        let end = range_end(info, range)?;
        let bytes = bytes_of(info, range.blocks, range.len_field)?;
        check_buffer(buf, bytes, range.len_field)?;
        if bytes == 0 {
            return Ok(0);
        }
        // Shared: reads never wait for each other or for plain writes, but
        // never see half of a command that holds the range exclusively
        // (COMPARE AND WRITE, ORWRITE, WRITE ATOMIC).
        let _g = self.locks.lock(range.lba.0, end, false).await;
        self.backend
            .read(range.lba, BufMut::new(buf, 0, bytes)?)
            .await
            .map_err(backend_err(BackendOp::Read))?;
        Ok(bytes)
    }

    async fn write(
        &self,
        snap: &Snap,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        self.write_locked(snap, range, fua, buf, false).await
    }

    /// One backend write of `range` from `buf`, after the checks every
    /// write makes, holding the range lock shared (plain writes) or
    /// exclusive (WRITE ATOMIC).
    async fn write_locked(
        &self,
        snap: &Snap,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
        exclusive: bool,
    ) -> Result<(), CommandError> {
        let info = &snap.info;
        check_transfer(info, range)?;
        let end = range_end(info, range)?;
        check_writable(info)?;
        let bytes = bytes_of(info, range.blocks, range.len_field)?;
        check_buffer(buf, bytes, range.len_field)?;
        if bytes == 0 {
            return Ok(());
        }
        let _g = self.lock_blocks(snap, range.lba.0, end, exclusive).await?;
        self.backend
            .write(range.lba, BufRef::new(buf, 0, bytes)?, fua)
            .await
            .map_err(backend_err(BackendOp::Write))
    }

    /// Read `range` back in chunks; with BYTCHK compare against data-out.
    async fn verify(
        &self,
        info: &DiskInfo,
        range: BlockRange,
        bytchk: ByteCheck,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let bs = u64::from(info.block_size);
        if bytchk != ByteCheck::None {
            check_transfer(info, range)?;
        }
        let end = range_end(info, range)?;
        let needed = match bytchk {
            ByteCheck::None => 0,
            ByteCheck::Full => bytes_of(info, range.blocks, range.len_field)?,
            ByteCheck::SingleBlock => bs,
        };
        check_buffer(buf, needed, range.len_field)?;
        if range.blocks.0 == 0 {
            return Ok(());
        }
        // A comparing verify reads data, so, like READ, it holds a shared
        // lock (its length is bounded by the maximum transfer). Without
        // BYTCHK only readability is checked and the whole medium may be
        // named: no lock, so it never holds up COMPARE AND WRITE for long.
        let _g = match bytchk {
            ByteCheck::None => None,
            _ => Some(self.locks.lock(range.lba.0, end, false).await),
        };
        let chunk = chunk_blocks(info);
        let mut medium = vec![0u8; (chunk * bs) as usize];
        let mut expected = vec![0u8; (chunk * bs) as usize];
        if bytchk == ByteCheck::SingleBlock {
            buf.read_at(0, &mut expected[..bs as usize])?;
            for i in 1..chunk as usize {
                expected.copy_within(..bs as usize, i * bs as usize);
            }
        }
        let mut done = 0u64;
        while done < range.blocks.0 {
            let n = (range.blocks.0 - done).min(chunk);
            let len = (n * bs) as usize;
            let lba = Lba(range.lba.0 + done);
            self.backend
                .read(lba, BufMut::new(&mut medium, 0, len as u64)?)
                .await
                .map_err(backend_err(BackendOp::Read))?;
            match bytchk {
                ByteCheck::None => {}
                ByteCheck::Full => {
                    buf.read_at(done * bs, &mut expected[..len])?;
                }
                ByteCheck::SingleBlock => {}
            }
            if bytchk != ByteCheck::None
                && let Some(at) = first_difference(&expected[..len], &medium[..len])
            {
                // SBC-3 5.29: INFORMATION is the offset into the data-out
                // buffer (for single-block data, into the block read).
                let offset = match bytchk {
                    ByteCheck::SingleBlock => at as u64 % bs,
                    _ => done * bs + at as u64,
                };
                return Err(CommandError::Miscompare { offset });
            }
            done += n;
        }
        Ok(())
    }

    async fn write_same(
        &self,
        snap: &Snap,
        range: BlockRange,
        unmap: bool,
        ndob: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let info = &snap.info;
        // WSNZ = 1 in the Block Limits page: zero blocks is refused, as is
        // anything above MAXIMUM WRITE SAME LENGTH (SBC-3 5.41).
        if range.blocks.0 == 0 || range.blocks.0 > pages::MAX_WRITE_SAME_BLOCKS {
            return Err(CommandError::InvalidField(FieldPointer::byte(
                range.len_field,
            )));
        }
        let end = range_end(info, range)?;
        check_writable(info)?;
        let bs = u64::from(info.block_size);
        let mut pattern = vec![0u8; bs as usize];
        if !ndob {
            // WRITE SAME carries exactly one block of data-out.
            check_buffer(buf, bs, range.len_field)?;
            buf.read_at(0, &mut pattern)?;
        }
        let _g = self.lock_blocks(snap, range.lba.0, end, false).await?;
        if pattern.iter().all(|&b| b == 0) {
            // SBC-3 4.7.3.4: with UNMAP the blocks may be deallocated,
            // provided they then read as the data written: zeros.
            return self
                .backend
                .write_zeroes(range.lba, range.blocks, unmap)
                .await
                .map_err(backend_err(BackendOp::WriteZeroes));
        }
        let chunk = chunk_blocks(info).min(range.blocks.0);
        let mut data = Vec::with_capacity((chunk * bs) as usize);
        for _ in 0..chunk {
            data.extend_from_slice(&pattern);
        }
        let mut done = 0u64;
        while done < range.blocks.0 {
            let n = (range.blocks.0 - done).min(chunk);
            self.backend
                .write(
                    Lba(range.lba.0 + done),
                    BufRef::new(&data, 0, n * bs)?,
                    !snap.wce,
                )
                .await
                .map_err(backend_err(BackendOp::Write))?;
            done += n;
        }
        Ok(())
    }

    async fn unmap(
        &self,
        snap: &Snap,
        param_len: u32,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let info = &snap.info;
        // UNMAP is only in the opcode table when discard is supported.
        let Some(d) = info.discard else {
            return Err(CommandError::InvalidOpcode {
                opcode: cdb::op::UNMAP,
            });
        };
        check_writable(info)?;
        // SBC-3 5.28.1: a zero-length list is not an error.
        if param_len == 0 {
            return Ok(());
        }
        if param_len < 8 || buf.len() < u64::from(param_len) {
            return Err(CommandError::ParameterListLength);
        }
        let mut p = vec![0u8; param_len as usize];
        buf.read_at(0, &mut p)?;
        // SBC-3 5.28.2: UNMAP BLOCK DESCRIPTOR DATA LENGTH (bytes 2-3) gives
        // the descriptors available; an incomplete last descriptor, or one
        // past the end of the list, is ignored.
        let desc_len = be::get(&p[2..4]).min(u64::from(param_len) - 8);
        let count = desc_len / 16;
        if count > u64::from(d.max_descriptors) {
            return Err(CommandError::InvalidParameter(FieldPointer::byte(2)));
        }
        // Validate every descriptor before unmapping anything.
        let mut ranges = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = 8 + 16 * i;
            let lba = Lba(be::get(&p[at..at + 8]));
            let blocks = Blocks(be::get(&p[at + 8..at + 12]));
            if blocks.0 > u64::from(d.max_blocks) {
                return Err(CommandError::InvalidParameter(FieldPointer::byte(
                    (at + 8) as u16,
                )));
            }
            let end = range_end(
                info,
                BlockRange {
                    lba,
                    blocks,
                    len_field: 0,
                },
            )?;
            if blocks.0 > 0 {
                ranges.push((lba, blocks, end));
            }
        }
        for (lba, blocks, end) in ranges {
            let _g = self.lock_blocks(snap, lba.0, end, false).await?;
            self.backend
                .discard(lba, blocks)
                .await
                .map_err(backend_err(BackendOp::Discard))?;
        }
        Ok(())
    }

    async fn compare_and_write(
        &self,
        snap: &Snap,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let info = &snap.info;
        // SBC-3 5.2: zero blocks is not an error.
        if range.blocks.0 == 0 {
            return Ok(());
        }
        if range.blocks.0 > pages::max_compare_and_write(info) {
            return Err(CommandError::InvalidField(FieldPointer::byte(
                range.len_field,
            )));
        }
        let end = range_end(info, range)?;
        check_writable(info)?;
        let half = bytes_of(info, range.blocks, range.len_field)?;
        // The data-out holds the verify data, then the write data.
        check_buffer(buf, 2 * half, range.len_field)?;
        let _g = self.lock_blocks(snap, range.lba.0, end, true).await?;
        let mut medium = vec![0u8; half as usize];
        self.backend
            .read(range.lba, BufMut::new(&mut medium, 0, half)?)
            .await
            .map_err(backend_err(BackendOp::Read))?;
        let mut expected = vec![0u8; half as usize];
        buf.read_at(0, &mut expected)?;
        if let Some(at) = first_difference(&expected, &medium) {
            return Err(CommandError::Miscompare { offset: at as u64 });
        }
        self.backend
            .write(range.lba, BufRef::new(buf, half, half)?, fua)
            .await
            .map_err(backend_err(BackendOp::Write))
    }

    /// ORWRITE (16) (SBC-3): read the blocks, OR the data-out into them and
    /// write them back, as one uninterruptible sequence: the exclusive
    /// range lock is held from the first read to the last write, so no
    /// overlapping write, COMPARE AND WRITE or ORWRITE interleaves (two
    /// racing ORWRITEs can never lose one's bits) and no read sees it half
    /// done. Large transfers go in chunks under that one lock; a backend
    /// error part way leaves the earlier chunks written, as for WRITE.
    async fn or_write(
        &self,
        snap: &Snap,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let info = &snap.info;
        check_transfer(info, range)?;
        let end = range_end(info, range)?;
        check_writable(info)?;
        let bytes = bytes_of(info, range.blocks, range.len_field)?;
        check_buffer(buf, bytes, range.len_field)?;
        if bytes == 0 {
            return Ok(());
        }
        let bs = u64::from(info.block_size);
        let chunk = chunk_blocks(info).min(range.blocks.0);
        let mut medium = vec![0u8; (chunk * bs) as usize];
        let mut data = vec![0u8; (chunk * bs) as usize];
        let _g = self.lock_blocks(snap, range.lba.0, end, true).await?;
        let mut done = 0u64;
        while done < range.blocks.0 {
            let n = (range.blocks.0 - done).min(chunk);
            let len = n * bs;
            let lba = Lba(range.lba.0 + done);
            self.backend
                .read(lba, BufMut::new(&mut medium, 0, len)?)
                .await
                .map_err(backend_err(BackendOp::Read))?;
            buf.read_at(done * bs, &mut data[..len as usize])?;
            for (m, d) in medium.iter_mut().zip(&data[..len as usize]) {
                *m |= d;
            }
            self.backend
                .write(lba, BufRef::new(&medium, 0, len)?, fua)
                .await
                .map_err(backend_err(BackendOp::Write))?;
            done += n;
        }
        Ok(())
    }

    /// GET LBA STATUS (SBC-3 5.6): LBA status descriptors from the
    /// starting LBA on, adjacent runs of one provisioning status merged,
    /// as many as fit the allocation length (at least one is built, so a
    /// short allocation length learns the length needed).
    async fn get_lba_status(
        &self,
        info: &DiskInfo,
        lba: Lba,
        alloc: u32,
        buf: &mut dyn DataBuffer,
    ) -> Result<u64, CommandError> {
        let end = info.block_count.0;
        if lba.0 >= end {
            return Err(CommandError::LbaOutOfRange);
        }
        if alloc == 0 {
            return Ok(0);
        }
        let room = u64::from(alloc).min(buf.len());
        let want = (room.saturating_sub(8) / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS) as usize;
        // Deallocated is only reported with logical block provisioning
        // management enabled (LBPME in READ CAPACITY (16), the thin
        // provisioning type in VPD B2h): a device that cannot discard has
        // every block mapped.
        let thin = info.discard.is_some();
        let mut descs = LbaStatus::new(lba.0, want);
        let mut next = lba.0;
        let mut room = true;
        for _ in 0..MAX_BLOCK_STATUS_CALLS {
            if next >= end || !room || descs.full() {
                break;
            }
            let ask = Blocks(end - next);
            let extents = self
                .backend
                .block_status(Lba(next), ask)
                .await
                .map_err(backend_err(BackendOp::BlockStatus))?;
            let covered = check_extents(&extents, next, ask.0)?;
            if covered == next {
                // Nothing covered: the backend stops here. The first
                // answer must cover at least the starting LBA.
                if next == lba.0 {
                    return Err(malformed_status());
                }
                break;
            }
            for e in &extents {
                let deallocated = e.state == BlockState::Deallocated && thin;
                room = descs.push(e.blocks.0, u8::from(deallocated));
                if !room {
                    break;
                }
            }
            next = covered;
        }
        respond(buf, &descs.to_bytes(), alloc)
    }

    /// SANITIZE (SBC-3 5.21): validate the CDB and parameter list, enter
    /// the sanitize state, then run the operation here (IMMED=0) or leave
    /// it to [`Target::background`] (IMMED=1).
    async fn sanitize(
        &self,
        info: &DiskInfo,
        action: SanitizeAction,
        immed: bool,
        ause: bool,
        param_len: u16,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let job = match action {
            SanitizeAction::ExitFailureMode => return self.exit_failure_mode(),
            SanitizeAction::Overwrite => Job::Overwrite(overwrite_params(info, param_len, buf)?),
            SanitizeAction::BlockErase => {
                // Offered only with discard that reads back zeros; the
                // opcode table already refused it otherwise.
                if !info.discard.is_some_and(|d| d.zeroes) {
                    return Err(CommandError::InvalidField(FieldPointer::bit(1, 4)));
                }
                Job::BlockErase
            }
        };
        check_writable(info)?;
        if immed && !self.background_jobs {
            // Nobody would run the job: refuse IMMED rather than report a
            // sanitize in progress forever.
            return Err(CommandError::InvalidField(FieldPointer::bit(1, 7)));
        }
        {
            let mut s = self.state();
            match s.sanitize {
                // Another SANITIZE got past the check in `run` at once.
                SanitizeState::InProgress { progress, .. } => {
                    return Err(CommandError::SanitizeInProgress { progress });
                }
                // SBC-4 5.24 (the intent of SBC-3): after a failure in
                // restricted completion mode (AUSE=0), a new sanitize may
                // not ask for the unrestricted mode.
                SanitizeState::Failed { ause: false } if ause => {
                    return Err(CommandError::InvalidField(FieldPointer::bit(1, 5)));
                }
                _ => {}
            }
            s.sanitize = SanitizeState::InProgress { progress: 0, ause };
            self.sanitize_epoch.fetch_add(1, Ordering::AcqRel);
            if immed {
                s.job = Some(PendingJob {
                    job,
                    info: *info,
                    ause,
                });
                return Ok(());
            }
        }
        let run = SanitizeRun::new(&self.state, ause, job.total(info));
        self.sanitize_job(info, &job, run)
            .await
            .map_err(|_| CommandError::SanitizeFailed)
    }

    /// EXIT FAILURE MODE (SBC-3 5.21.4): allowed only after a failed
    /// sanitize that had AUSE set; otherwise INVALID FIELD IN CDB at the
    /// SERVICE ACTION field (also when nothing failed).
    fn exit_failure_mode(&self) -> Result<(), CommandError> {
        let mut s = self.state();
        match s.sanitize {
            SanitizeState::Failed { ause: true } => {
                s.sanitize = SanitizeState::Idle;
                Ok(())
            }
            SanitizeState::InProgress { progress, .. } => {
                Err(CommandError::SanitizeInProgress { progress })
            }
            _ => Err(CommandError::InvalidField(FieldPointer::bit(1, 4))),
        }
    }

    /// Run a sanitize operation over the whole device under an exclusive
    /// range lock (commands already writing finish first), flush, and
    /// record the outcome in the sanitize state.
    async fn sanitize_job(
        &self,
        info: &DiskInfo,
        job: &Job,
        mut run: SanitizeRun<'_>,
    ) -> Result<(), BackendError> {
        let _g = self.locks.lock(0, info.block_count.0, true).await;
        let r = match job {
            Job::Overwrite(o) => self.overwrite(info, o, &mut run).await,
            Job::BlockErase => self.block_erase(info, &mut run).await,
        };
        let r = match r {
            Ok(()) => self.backend.flush().await,
            e => e,
        };
        run.finish(r.is_ok());
        r
    }

    /// OVERWRITE: `count` passes over every block, each block filled with
    /// the pattern repeated from its first byte; with INVERT the passes
    /// alternate between the inverted and the plain pattern, ending with
    /// the plain one (SBC-3 5.21.2). Written in chunks like WRITE SAME.
    async fn overwrite(
        &self,
        info: &DiskInfo,
        o: &Overwrite,
        run: &mut SanitizeRun<'_>,
    ) -> Result<(), BackendError> {
        let count = info.block_count.0;
        if count == 0 {
            return Ok(());
        }
        let bs = u64::from(info.block_size);
        let chunk = chunk_blocks(info).min(count);
        let block: Vec<u8> = o
            .pattern
            .iter()
            .copied()
            .cycle()
            .take(bs as usize)
            .collect();
        let plain = block.repeat(chunk as usize);
        let inverted: Vec<u8> = if o.invert {
            plain.iter().map(|b| !b).collect()
        } else {
            Vec::new()
        };
        for pass in 0..o.count {
            let data = if o.invert && (o.count - 1 - pass) % 2 == 1 {
                &inverted
            } else {
                &plain
            };
            let mut done = 0u64;
            while done < count {
                let n = (count - done).min(chunk);
                self.backend
                    .write(Lba(done), BufRef::new(data, 0, n * bs)?, false)
                    .await?;
                done += n;
                run.advance(n);
            }
        }
        Ok(())
    }

    /// WRITE ATOMIC (16) (SBC-4, atomic writes): the limits of the Block
    /// Limits page are checked, then the blocks are written by one backend
    /// call (at most the maximum transfer, so never split) under the
    /// exclusive range lock: no overlapping command starts until it has
    /// completed, and no overlapping read sees part of it. If the backend
    /// fails, the blocks are unchanged only as far as the backend's write
    /// is all-or-nothing; the target has no undo.
    async fn write_atomic(
        &self,
        snap: &Snap,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        let info = &snap.info;
        let len_field = CommandError::InvalidField(FieldPointer::byte(range.len_field));
        if range.blocks.0 > pages::max_atomic_blocks(info) {
            return Err(len_field);
        }
        let granularity = pages::atomic_granularity(info);
        if granularity > 1 {
            if !range.lba.0.is_multiple_of(granularity) {
                // ATOMIC ALIGNMENT: the LOGICAL BLOCK ADDRESS field.
                return Err(CommandError::InvalidField(FieldPointer::byte(2)));
            }
            if !range.blocks.0.is_multiple_of(granularity) {
                return Err(len_field);
            }
        }
        self.write_locked(snap, range, fua, buf, true).await
    }

    /// BLOCK ERASE: discard every block (they read back as zeros, LBPRZ),
    /// in steps of about 1 GiB for the progress indication.
    async fn block_erase(
        &self,
        info: &DiskInfo,
        run: &mut SanitizeRun<'_>,
    ) -> Result<(), BackendError> {
        let count = info.block_count.0;
        let step = (ERASE_STEP_BYTES / u64::from(info.block_size)).max(1);
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(step);
            self.backend.discard(Lba(done), Blocks(n)).await?;
            done += n;
            run.advance(n);
        }
        Ok(())
    }

    /// MODE SELECT (SPC-4 6.9/6.10): validate the whole parameter list,
    /// then apply. Only WCE is changeable; every other field must hold its
    /// current value.
    fn mode_select(
        &self,
        nexus: Nexus,
        snap: &Snap,
        ten: bool,
        param_len: u32,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        if param_len == 0 {
            return Ok(());
        }
        let header = if ten { 8 } else { 4 };
        if param_len < header || buf.len() < u64::from(param_len) {
            return Err(CommandError::ParameterListLength);
        }
        let mut p = vec![0u8; param_len as usize];
        buf.read_at(0, &mut p)?;
        let header = header as usize;
        let (bdl, bdl_at, long) = if ten {
            (be::get(&p[6..8]) as usize, 6u16, p[4] & 0x01 != 0)
        } else {
            (usize::from(p[3]), 3u16, false)
        };
        let info = &snap.info;
        if bdl != 0 {
            // One block descriptor, restating the current geometry
            // (SBC-3 6.4.2): we cannot change block size or count.
            let want = if long { 16 } else { 8 };
            if bdl != want || header + bdl > p.len() {
                return Err(CommandError::InvalidParameter(FieldPointer::byte(bdl_at)));
            }
            let d = &p[header..header + bdl];
            let (count, bs, count_at, bs_at) = if long {
                (be::get(&d[0..8]), be::get(&d[12..16]), 0, 12)
            } else {
                (be::get(&d[0..4]), be::get(&d[5..8]), 0, 5)
            };
            let cur = if long {
                info.block_count.0
            } else {
                info.block_count.0.min(u64::from(u32::MAX))
            };
            if count != 0 && count != cur {
                return Err(CommandError::InvalidParameter(FieldPointer::byte(
                    (header + count_at) as u16,
                )));
            }
            if bs != u64::from(info.block_size) {
                return Err(CommandError::InvalidParameter(FieldPointer::byte(
                    (header + bs_at) as u16,
                )));
            }
        }
        let mut wce = snap.wce;
        let mut at = header + bdl;
        while at < p.len() {
            if at + 2 > p.len() {
                return Err(CommandError::ParameterListLength);
            }
            if p[at] & 0x40 != 0 {
                // SPF: we have no subpages.
                return Err(CommandError::InvalidParameter(FieldPointer::bit(
                    at as u16, 6,
                )));
            }
            let code = p[at] & 0x3F;
            let cur = pages::mode_page(code, PageControl::Current, info, snap.wce).ok_or(
                CommandError::InvalidParameter(FieldPointer::bit(at as u16, 5)),
            )?;
            let mask =
                pages::mode_page(code, PageControl::Changeable, info, snap.wce).unwrap_or_default();
            if usize::from(p[at + 1]) != cur.len() - 2 {
                return Err(CommandError::InvalidParameter(FieldPointer::byte(
                    (at + 1) as u16,
                )));
            }
            if at + cur.len() > p.len() {
                return Err(CommandError::ParameterListLength);
            }
            let new = &p[at..at + cur.len()];
            for j in 2..cur.len() {
                let bad = (new[j] ^ cur[j]) & !mask[j];
                if bad != 0 {
                    let bit = 7 - bad.leading_zeros() as u8;
                    return Err(CommandError::InvalidParameter(FieldPointer::bit(
                        (at + j) as u16,
                        bit,
                    )));
                }
            }
            if code == 0x08 {
                wce = new[2] & 0x04 != 0;
            }
            at += cur.len();
        }
        let mut s = self.state();
        if s.wce != wce {
            s.wce = wce;
            // SPC-4 7.5.1 / SAM-5 5.14: other nexuses learn of the change.
            s.raise(UnitAttention::ModeParametersChanged, Some(nexus));
        }
        Ok(())
    }
}

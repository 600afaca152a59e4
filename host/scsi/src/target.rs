//! The logical unit: runs parsed commands against a [`BlockBackend`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::backend::{BackendError, BackendOp, BlockBackend, DiskInfo, GeometryError, WriteCache};
use crate::buffer::{BufMut, BufRef, DataBuffer};
use crate::cdb::{self, BlockRange, ByteCheck, Command, PageControl};
use crate::identity::DeviceIdentity;
use crate::lock::RangeLocks;
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
}

impl Completion {
    fn good(data_in_len: u64) -> Self {
        Self {
            status: Status::Good,
            sense: SenseBytes::EMPTY,
            data_in_len,
        }
    }
    fn check(err: &CommandError) -> Self {
        Self {
            status: Status::CheckCondition,
            sense: err.sense().to_fixed(),
            data_in_len: 0,
        }
    }
    /// The sense bytes.
    pub fn sense(&self) -> &[u8] {
        self.sense.as_slice()
    }
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
}

/// One SCSI logical unit backed by `B`.
///
/// [`Target::execute`] takes `&self`: any number of commands may be in
/// flight at once, and they complete in whatever order the backend finishes
/// them. COMPARE AND WRITE is made atomic by range locks held here.
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

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
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
            }),
            locks: RangeLocks::default(),
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

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The identity reported by INQUIRY.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        match self.run(nexus, cdb, buf).await {
            Ok(n) => Completion::good(n),
            Err(e) => Completion::check(&e),
        }
    }

    async fn run(
        &self,
        nexus: Nexus,
        cdb: &[u8],
        buf: &mut dyn DataBuffer,
    ) -> Result<u64, CommandError> {
        let Some(&opcode) = cdb.first() else {
            return Err(CommandError::EmptyCdb);
        };
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
            Snap {
                info: s.info,
                wce: s.wce,
            }
        };
        let (_, cmd) = cdb::parse(cdb, snap.info.discard.is_some())?;
        self.dispatch(nexus, snap, cmd, buf).await
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
                // as parameter data with GOOD status; otherwise NO SENSE.
                let ua = {
                    let mut s = self.state();
                    let q = s.pending(nexus);
                    (!q.is_empty()).then(|| q.remove(0))
                };
                let sense = ua.map_or(Sense::NONE, |ua| CommandError::UnitAttention(ua).sense());
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
                    info.discard.is_some(),
                )?;
                respond(buf, &d, alloc)
            }
            Command::Read { range } => self.read(info, range, buf).await,
            Command::Write { range, fua } => {
                self.write(info, range, fua || !snap.wce, buf).await?;
                Ok(0)
            }
            Command::Verify { range, bytchk } => {
                self.verify(info, range, bytchk, buf).await?;
                Ok(0)
            }
            Command::WriteAndVerify { range, bytchk } => {
                // Write through to the medium, then read it back (SBC-3 5.36).
                self.write(info, range, true, buf).await?;
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
            Command::WriteSame { range, unmap, ndob } => {
                self.write_same(&snap, range, unmap, ndob, buf).await?;
                Ok(0)
            }
            Command::Unmap { param_len } => {
                self.unmap(info, param_len, buf).await?;
                Ok(0)
            }
            Command::CompareAndWrite { range, fua } => {
                self.compare_and_write(info, range, fua || !snap.wce, buf)
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
            Command::FormatUnit => {
                // SBC-3 5.3 with FMTDATA 0: no initialization pattern, so
                // block contents afterwards are unspecified. A thin
                // backend deallocates everything (SBC-3 4.7.3.3); others
                // keep their data.
                check_writable(info)?;
                if info.discard.is_some() && info.block_count.0 > 0 {
                    let _g = self.locks.lock(0, info.block_count.0, true).await;
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
        range_end(info, range)?;
        let bytes = bytes_of(info, range.blocks, range.len_field)?;
        check_buffer(buf, bytes, range.len_field)?;
        if bytes == 0 {
            return Ok(0);
        }
        self.backend
            .read(range.lba, BufMut::new(buf, 0, bytes)?)
            .await
            .map_err(backend_err(BackendOp::Read))?;
        Ok(bytes)
    }

    async fn write(
        &self,
        info: &DiskInfo,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
        check_transfer(info, range)?;
        let end = range_end(info, range)?;
        check_writable(info)?;
        let bytes = bytes_of(info, range.blocks, range.len_field)?;
        check_buffer(buf, bytes, range.len_field)?;
        if bytes == 0 {
            return Ok(());
        }
        let _g = self.locks.lock(range.lba.0, end, false).await;
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
        range_end(info, range)?;
        let needed = match bytchk {
            ByteCheck::None => 0,
            ByteCheck::Full => bytes_of(info, range.blocks, range.len_field)?,
            ByteCheck::SingleBlock => bs,
        };
        check_buffer(buf, needed, range.len_field)?;
        if range.blocks.0 == 0 {
            return Ok(());
        }
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
        let _g = self.locks.lock(range.lba.0, end, false).await;
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
        info: &DiskInfo,
        param_len: u32,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
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
            let _g = self.locks.lock(lba.0, end, false).await;
            self.backend
                .discard(lba, blocks)
                .await
                .map_err(backend_err(BackendOp::Discard))?;
        }
        Ok(())
    }

    async fn compare_and_write(
        &self,
        info: &DiskInfo,
        range: BlockRange,
        fua: bool,
        buf: &dyn DataBuffer,
    ) -> Result<(), CommandError> {
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
        let _g = self.locks.lock(range.lba.0, end, true).await;
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

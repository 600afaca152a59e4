//! The [`Backstore`] trait and the adapter that exports it as the WIT
//! `driver.disk` resource.

use core::cell::RefCell;
use core::fmt;
use std::rc::Rc;

use crate::geometry::SectorSize;
use crate::host::requests::Request as HostRequest;
use crate::request::{Batch, Counters, Request};
use crate::{
    BlockExtent, BlockState, DiskInfo, DiskStats, ErrorCode, Kind, OpenFlags, Parent, Result,
};

/// Size of the SDK's reusable buffer for the default [`Backstore::read`],
/// [`Backstore::write`] and [`Backstore::write_zeroes`]: requests are moved
/// in pieces of at most this many bytes (64 KiB, a multiple of both sector
/// sizes).
pub const BOUNCE_LEN: usize = 64 * 1024;

thread_local! {
    // One buffer per instance (guests are single-threaded), allocated on
    // first use and kept, so the default read/write paths allocate nothing
    // per request in steady state.
    static BOUNCE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with a `len`-byte scratch buffer (`len <= BOUNCE_LEN`); its
/// contents are unspecified.
fn with_bounce<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    BOUNCE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(BOUNCE_LEN.max(len), 0);
            }
            f(&mut buf[..len])
        }
        // Only reachable if a backstore's `read_at`/`write_at` re-enters a
        // default method; correct, just not allocation-free.
        Err(_) => f(&mut vec![0; len]),
    })
}

fn piece_len(len: u64) -> usize {
    // A segment of `Segments::new(_, _, BOUNCE_LEN)` is at most BOUNCE_LEN.
    usize::try_from(len).unwrap_or(BOUNCE_LEN).min(BOUNCE_LEN)
}

/// A disk driver: what a backstore implements.
///
/// Only [`open`](Backstore::open) and [`info`](Backstore::info) are
/// required; everything else has a default. Pick the level that fits:
///
/// * **Byte level, synchronous** — implement [`read_at`](Backstore::read_at)
///   and [`write_at`](Backstore::write_at) over your own storage; the
///   defaults of [`read`](Backstore::read) and [`write`](Backstore::write)
///   move the data through a reused 64 KiB buffer. Simplest; one extra copy.
/// * **Request level, synchronous** — override [`read`](Backstore::read) and
///   [`write`](Backstore::write) and use the [`Request`] directly:
///   `write_data`/`read_data`/`zero_data` for data that lives in guest memory,
///   or `submit_read`/`submit_write` so the host moves the bytes between a
///   file and the initiator's buffer without them entering the guest
///   (zero-copy). The request is completed with the returned status.
/// * **Asynchronous** — override [`queue_read`](Backstore::queue_read) and
///   friends, keep the [`Request`]s, and complete them later (on another
///   request's arrival, on `flush`, ...).
///
/// The host never calls into a disk while another call to it is running, so
/// methods take `&mut self`.
///
/// Read-only disks (`info().read_only`) never see writes, discards or
/// write-zeroes: the SDK fails them with [`ErrorCode::ReadOnly`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a wasmtap backstore",
    label = "this type does not implement `wasmtap_guest_sdk::Backstore`",
    note = "implement `wasmtap_guest_sdk::Backstore` for `{Self}` (at least `open` and `info`) before exporting it"
)]
pub trait Backstore: Sized + 'static {
    /// Whether the data of a batch's writes (those of up to 64 KiB) should
    /// come with the batch (one host call for all of them) instead of one
    /// `read-data` call per write or piece. Turn it on when writes copy their data into guest memory
    /// ([`Request::data`], [`Request::read_data`], the default
    /// [`write`](Backstore::write) over [`write_at`](Backstore::write_at));
    /// leave it off when they move it with [`Request::submit_write`], which
    /// never needs the bytes in the guest.
    const PREFETCH_WRITE_DATA: bool = false;

    /// Open the disk described by the device's configuration string
    /// (td_open). Parse it with [`crate::Config`]; fail with
    /// [`ErrorCode::InvalidConfig`] (and a log line saying why) when it is
    /// not understood.
    fn open(config: &str, flags: OpenFlags) -> Result<Self>;

    /// Geometry and capabilities. Checked once after `open`: `size` must be a
    /// multiple of `sector_size`, which must be 512 or 4096; build it with
    /// [`crate::disk_info`].
    fn info(&self) -> DiskInfo;

    /// The identifier of the parent image, `None` for a base image.
    fn get_parent_id(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Check that `parent` is the image this disk was created against.
    /// Default: accept.
    fn validate_parent(&mut self, parent: &Parent) -> Result<()> {
        let _ = parent;
        Ok(())
    }

    /// Fill `buf` with the disk's bytes at `offset`. Default: unsupported.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let _ = (offset, buf);
        Err(ErrorCode::Unsupported)
    }

    /// Store `data` at `offset`. Default: unsupported.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let _ = (offset, data);
        Err(ErrorCode::Unsupported)
    }

    /// Serve a read request; the SDK completes it with the result.
    /// Default: [`read_at`](Backstore::read_at) in pieces of [`BOUNCE_LEN`].
    fn read(&mut self, req: &Request) -> Result<()> {
        for piece in req.segments(BOUNCE_LEN as u64) {
            with_bounce(piece_len(piece.len), |buf| {
                self.read_at(piece.offset, buf)?;
                req.write_data(piece.at, buf)
            })?;
        }
        Ok(())
    }

    /// Serve a write request; the SDK completes it with the result.
    /// Default: [`write_at`](Backstore::write_at) in pieces of
    /// [`BOUNCE_LEN`]. A write with [`Request::fua`] set is followed by
    /// [`flush`](Backstore::flush).
    fn write(&mut self, req: &Request) -> Result<()> {
        for piece in req.segments(BOUNCE_LEN as u64) {
            let data = req.data(piece.at, piece_len(piece.len) as u64)?;
            self.write_at(piece.offset, &data)?;
        }
        if req.fua() {
            self.flush()?;
        }
        Ok(())
    }

    /// Make completed writes durable. Default: nothing to do (no volatile
    /// write cache).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Deallocate `len` bytes at `offset`; they read as zeros afterwards.
    /// Default: unsupported (leave `disk-info.discard` false).
    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Err(ErrorCode::Unsupported)
    }

    /// Make `len` bytes at `offset` read as zeros. Default: write zeros with
    /// [`write_at`](Backstore::write_at) in pieces of [`BOUNCE_LEN`]. A
    /// backstore that serves requests itself (overriding
    /// [`write`](Backstore::write) but not `write_at`) must override this
    /// too: otherwise WRITE SAME fails, and the SDK logs why.
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<()> {
        for piece in crate::Segments::new(offset, len, BOUNCE_LEN as u64) {
            let r = with_bounce(piece_len(piece.len), |buf| {
                buf.fill(0);
                self.write_at(piece.offset, buf)
            });
            if r == Err(ErrorCode::Unsupported) {
                crate::log::warn(
                    "write-zeroes (WRITE SAME of zeros) failed: this backstore implements neither \
                     write_zeroes nor write_at; override Backstore::write_zeroes",
                );
            }
            r?;
        }
        Ok(())
    }

    /// Take a read request (td_queue_read). Default: [`read`](Backstore::read)
    /// and complete.
    fn queue_read(&mut self, req: Request) {
        let status = self.read(&req);
        req.complete(status);
    }

    /// Take a write request (td_queue_write). Default:
    /// [`write`](Backstore::write) and complete.
    fn queue_write(&mut self, req: Request) {
        let status = self.write(&req);
        req.complete(status);
    }

    /// Take a flush request. Default: [`flush`](Backstore::flush) and
    /// complete.
    fn queue_flush(&mut self, req: Request) {
        let status = self.flush();
        req.complete(status);
    }

    /// Take a discard or write-zeroes request. Default:
    /// [`discard`](Backstore::discard) or
    /// [`write_zeroes`](Backstore::write_zeroes) and complete.
    fn queue_discard(&mut self, req: Request) {
        let status = match req.kind() {
            Kind::Discard => self.discard(req.offset(), req.length()),
            Kind::WriteZeroes => self.write_zeroes(req.offset(), req.length()),
            Kind::Read | Kind::Write | Kind::Flush => Err(ErrorCode::Internal),
        };
        req.complete(status);
    }

    /// Take several requests of any kind. Default: hand each to the matching
    /// `queue_*` method, in order.
    fn queue_batch(&mut self, batch: Batch) {
        for req in batch {
            match req.kind() {
                Kind::Read => self.queue_read(req),
                Kind::Write => self.queue_write(req),
                Kind::Flush => self.queue_flush(req),
                Kind::Discard | Kind::WriteZeroes => self.queue_discard(req),
            }
        }
    }

    /// Which parts of the `len` bytes at `offset` are allocated
    /// (td_queue_block_status), for the initiator's GET LBA STATUS: extents
    /// contiguous from `offset`, each a multiple of the sector size; fewer
    /// bytes than asked is fine (the host asks again). Report
    /// [`BlockState::Hole`] only for ranges that read as zeros, and only if
    /// the disk offers discard. Files can answer for themselves:
    /// [`storage::File::block_status`](crate::storage::File::block_status)
    /// (SEEK_DATA/SEEK_HOLE on the host). Default: all mapped.
    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<BlockExtent>> {
        Ok(vec![BlockExtent {
            offset,
            length: len,
            state: BlockState::Mapped,
        }])
    }

    /// Human-readable internal state for the device page (td_debug).
    fn debug(&self) -> String {
        let info = self.info();
        format!(
            "{} bytes, {}-byte sectors{}{}",
            info.size,
            info.sector_size,
            if info.read_only { ", read-only" } else { "" },
            if info.discard { ", discard" } else { "" },
        )
    }

    /// Counters for the device page. `counted` holds what the SDK counted
    /// when requests were completed through [`Request::complete`]; the
    /// default returns it unchanged.
    fn stats(&self, counted: DiskStats) -> DiskStats {
        counted
    }

    /// Release everything (td_close); every request has been completed.
    /// Default: [`flush`](Backstore::flush).
    fn close(&mut self) -> Result<()> {
        self.flush()
    }
}

/// [`DiskInfo`] for a disk of `size` bytes with `sector_size` sectors, and
/// no limits, discard, write cache or read-only flag; change fields with
/// struct update syntax: `DiskInfo { discard: true, ..disk_info(size, s) }`.
pub fn disk_info(size: u64, sector_size: SectorSize) -> DiskInfo {
    DiskInfo {
        size,
        sector_size: sector_size.bytes(),
        max_transfer: 0,
        optimal_transfer: 0,
        discard: false,
        discard_granularity: 0,
        write_cache: false,
        read_only: false,
    }
}

/// Why `info` breaks the contract, if it does.
pub(crate) fn check_info(info: &DiskInfo) -> core::result::Result<(), String> {
    let Some(sector) = SectorSize::from_bytes(info.sector_size) else {
        return Err(format!(
            "sector-size {} is not 512 or 4096",
            info.sector_size
        ));
    };
    if !sector.is_aligned(info.size) {
        return Err(format!(
            "size {} is not a multiple of the sector size {sector}",
            info.size
        ));
    }
    for (name, value) in [
        ("max-transfer", info.max_transfer),
        ("optimal-transfer", info.optimal_transfer),
        ("discard-granularity", info.discard_granularity),
    ] {
        if !sector.is_aligned(u64::from(value)) {
            return Err(format!(
                "{name} {value} is not a multiple of the sector size {sector}"
            ));
        }
    }
    Ok(())
}

/// The exported `disk` resource for a backstore `T`. Created by
/// [`export_backstore!`](crate::export_backstore); not used directly.
#[doc(hidden)]
pub struct ExportedDisk<T> {
    backstore: RefCell<T>,
    counters: Rc<Counters>,
    read_only: bool,
}

impl<T> fmt::Debug for ExportedDisk<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedDisk")
            .field("backstore", &core::any::type_name::<T>())
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl<T: Backstore> ExportedDisk<T> {
    fn request(&self, raw: HostRequest) -> Request {
        Request::new(raw, Rc::clone(&self.counters))
    }

    fn backstore(&self) -> core::cell::RefMut<'_, T> {
        // The component model forbids re-entering an instance while it runs,
        // so no two calls on this disk overlap and the borrow cannot fail.
        self.backstore.borrow_mut()
    }

    fn refuse_if_read_only(&self, req: Request) -> Option<Request> {
        if self.read_only {
            req.complete(Err(ErrorCode::ReadOnly));
            None
        } else {
            Some(req)
        }
    }
}

/// The `driver.disk` resource's methods, whichever host calls them: the
/// generated export glue (`GuestDisk`, below) in the component, the
/// in-process host natively ([`crate::testing`]).
impl<T: Backstore> ExportedDisk<T> {
    /// `disk.open`: the backstore's `open`, then the contract check of its
    /// `info`.
    pub(crate) fn open(config: &str, flags: OpenFlags) -> Result<Self> {
        let backstore = T::open(config, flags)?;
        let info = backstore.info();
        if let Err(reason) = check_info(&info) {
            crate::log::error(&format!(
                "backstore bug: disk-info breaks the contract: {reason}"
            ));
            return Err(ErrorCode::Internal);
        }
        Ok(Self {
            backstore: RefCell::new(backstore),
            counters: Rc::default(),
            read_only: info.read_only,
        })
    }

    pub(crate) fn info(&self) -> DiskInfo {
        self.backstore.borrow().info()
    }

    pub(crate) fn get_parent_id(&self) -> Result<Option<String>> {
        self.backstore.borrow().get_parent_id()
    }

    pub(crate) fn validate_parent(&self, parent: &Parent) -> Result<()> {
        self.backstore().validate_parent(parent)
    }

    pub(crate) fn queue_read(&self, req: HostRequest) {
        let req = self.request(req);
        self.backstore().queue_read(req);
    }

    pub(crate) fn queue_write(&self, req: HostRequest) {
        let req = self.request(req);
        if let Some(req) = self.refuse_if_read_only(req) {
            self.backstore().queue_write(req);
        }
    }

    pub(crate) fn queue_batch(&self, reqs: Vec<HostRequest>) {
        crate::request::with_deferred_completions(|| self.queue_batch_now(reqs));
    }

    pub(crate) fn flush(&self, req: HostRequest) {
        let req = self.request(req);
        self.backstore().queue_flush(req);
    }

    pub(crate) fn discard(&self, req: HostRequest) {
        let req = self.request(req);
        if !matches!(req.kind(), Kind::Discard | Kind::WriteZeroes) {
            req.complete(Err(ErrorCode::Internal));
            return;
        }
        if let Some(req) = self.refuse_if_read_only(req) {
            self.backstore().queue_discard(req);
        }
    }

    /// `block-status.query` on this disk.
    pub fn block_status(&self, offset: u64, len: u64) -> Result<Vec<BlockExtent>> {
        self.backstore().block_status(offset, len)
    }

    pub(crate) fn debug(&self) -> String {
        self.backstore.borrow().debug()
    }

    pub(crate) fn stats(&self) -> DiskStats {
        self.backstore.borrow().stats(self.counters.snapshot())
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.backstore().close()
    }

    /// The backstore itself (tests look inside).
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    pub(crate) fn inner(&self) -> core::cell::Ref<'_, T> {
        self.backstore.borrow()
    }

    fn queue_batch_now(&self, reqs: Vec<HostRequest>) {
        if self.read_only {
            // Rare enough to filter one by one; the common case hands the
            // host's vector over untouched.
            let mut backstore = self.backstore();
            for req in Batch::new(reqs, Rc::clone(&self.counters), false) {
                match req.kind() {
                    Kind::Read => backstore.queue_read(req),
                    Kind::Flush => backstore.queue_flush(req),
                    Kind::Write | Kind::Discard | Kind::WriteZeroes => {
                        req.complete(Err(ErrorCode::ReadOnly))
                    }
                }
            }
            return;
        }
        self.backstore().queue_batch(Batch::new(
            reqs,
            Rc::clone(&self.counters),
            T::PREFETCH_WRITE_DATA,
        ));
    }
}

/// The generated export glue: the component's `driver.disk` resource.
#[cfg(target_arch = "wasm32")]
impl<T: Backstore> crate::bindings::exports::wasmtap::backstore::driver::GuestDisk
    for ExportedDisk<T>
{
    fn open(
        config: String,
        flags: OpenFlags,
    ) -> Result<crate::bindings::exports::wasmtap::backstore::driver::Disk> {
        Self::open(&config, flags)
            .map(crate::bindings::exports::wasmtap::backstore::driver::Disk::new)
    }

    fn info(&self) -> DiskInfo {
        Self::info(self)
    }

    fn get_parent_id(&self) -> Result<Option<String>> {
        Self::get_parent_id(self)
    }

    fn validate_parent(&self, parent: Parent) -> Result<()> {
        Self::validate_parent(self, &parent)
    }

    fn queue_read(&self, req: HostRequest) {
        Self::queue_read(self, req);
    }

    fn queue_write(&self, req: HostRequest) {
        Self::queue_write(self, req);
    }

    fn queue_batch(&self, reqs: Vec<HostRequest>) {
        Self::queue_batch(self, reqs);
    }

    fn flush(&self, req: HostRequest) {
        Self::flush(self, req);
    }

    fn discard(&self, req: HostRequest) {
        Self::discard(self, req);
    }

    fn debug(&self) -> String {
        Self::debug(self)
    }

    fn stats(&self) -> DiskStats {
        Self::stats(self)
    }

    fn close(&self) -> Result<()> {
        Self::close(self)
    }
}

/// Compile-time check behind [`export_backstore!`](crate::export_backstore)
/// in native builds, where the export glue is left out.
#[doc(hidden)]
pub const fn assert_backstore<T: Backstore>() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_info_defaults_pass_the_contract_check() {
        assert_eq!(check_info(&disk_info(1 << 30, SectorSize::B4096)), Ok(()));
    }

    #[test]
    fn unaligned_size_fails_the_contract_check() {
        let err = check_info(&disk_info(1000, SectorSize::B512)).unwrap_err();
        assert!(err.contains("size 1000"), "{err}");
    }

    #[test]
    fn odd_sector_size_fails_the_contract_check() {
        let info = DiskInfo {
            sector_size: 520,
            ..disk_info(520 * 8, SectorSize::B512)
        };
        assert!(check_info(&info).is_err());
    }

    #[test]
    fn unaligned_discard_granularity_fails_the_contract_check() {
        let info = DiskInfo {
            discard: true,
            discard_granularity: 512,
            ..disk_info(1 << 20, SectorSize::B4096)
        };
        assert!(
            check_info(&info)
                .unwrap_err()
                .contains("discard-granularity")
        );
    }

    #[test]
    fn bounce_buffer_is_reused_and_sized() {
        let first = with_bounce(4096, |b| (b.len(), b.as_ptr() as usize));
        let second = with_bounce(BOUNCE_LEN, |b| (b.len(), b.as_ptr() as usize));
        assert_eq!(first.0, 4096);
        assert_eq!(second, (BOUNCE_LEN, first.1));
    }

    #[test]
    fn nested_bounce_use_gets_its_own_buffer() {
        with_bounce(512, |outer| {
            outer.fill(7);
            with_bounce(512, |inner| inner.fill(9));
            assert!(outer.iter().all(|&b| b == 7));
        });
    }
}

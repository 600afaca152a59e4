//! Test a backstore under `cargo test`, natively, without the daemon.
//!
//! A [`Host`] is the host side of the contract, in process: an in-memory
//! device directory (what [`crate::storage`] reaches), an optional parent
//! image for [`Request::forward_to_parent`](crate::Request::forward_to_parent),
//! and the log. [`Host::open`] opens a backstore on it exactly as the
//! daemon's `disk.open` does (the same contract check of `info()`), and the
//! [`Disk`] it returns sends requests through the same SDK code a component
//! runs: `queue-read`, `queue-write`, `flush`, `discard` and `queue-batch`,
//! with the daemon's rules — ranges checked against the disk before the
//! backstore sees them, data calls checked against the request's kind and
//! range, FUA on `submit-write` syncing the file, read buffers arriving
//! full of stale bytes ([`UNFILLED`]) rather than zeros.
//!
//! Durability is modelled: every file remembers what its last `sync` made
//! durable, and [`Disk::crash`] (or [`Host::crash`]) throws the rest away,
//! so a test can check that FUA writes, flushes and metadata ordering
//! survive a power cut.
//!
//! ```
//! use wasmtap_guest_sdk::testing::{Host, Req};
//! # use wasmtap_guest_sdk::{Backstore, DiskInfo, OpenFlags, Result, SectorSize, disk_info};
//! # struct Zero;
//! # impl Backstore for Zero {
//! #     fn open(_: &str, _: OpenFlags) -> Result<Self> { Ok(Zero) }
//! #     fn info(&self) -> DiskInfo { disk_info(1 << 20, SectorSize::B512) }
//! #     fn read_at(&mut self, _: u64, buf: &mut [u8]) -> Result<()> { buf.fill(0); Ok(()) }
//! # }
//! let host = Host::new();
//! let mut disk = host.open::<Zero>("size=1M").unwrap();
//! assert_eq!(disk.read(0, 4096).unwrap(), vec![0; 4096]);
//! // Past the end: refused before the backstore sees it, as by the daemon.
//! let t = disk.submit(Req::read(1 << 20, 512));
//! assert_eq!(t.status(), Some(Err(wasmtap_guest_sdk::ErrorCode::OutOfRange)));
//! disk.close().unwrap();
//! ```

use core::cell::Ref;
use core::fmt;
use std::rc::Rc;

use crate::backstore::ExportedDisk;
use crate::bindings::wasmtap::backstore::log::Level;
use crate::native::requests::{Request as HostRequest, Slot};
use crate::native::{self, HostState};
use crate::{
    Backstore, BlockExtent, DiskInfo, DiskStats, ErrorCode, Kind, OpenFlags, Parent, Result,
};

pub use crate::native::UNFILLED;

/// The host side, in process: a device directory in memory, the log, and
/// optionally a parent image. Cheap to clone (clones share everything).
#[derive(Clone, Default)]
pub struct Host {
    state: Rc<HostState>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.state.fmt(f)
    }
}

impl Host {
    /// An empty device directory and log, no parent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open a backstore of type `T` with `config`, read-write. The string is
    /// passed as is; the daemon adds `size=` and `sector=` (the device's
    /// geometry) unless the configuration names them, so pass them too if
    /// the backstore relies on them.
    pub fn open<T: Backstore>(&self, config: &str) -> Result<Disk<T>> {
        self.open_with(config, OpenFlags::empty())
    }

    /// [`open`](Host::open) with flags (`READ_ONLY`, `AS_PARENT`).
    pub fn open_with<T: Backstore>(&self, config: &str, flags: OpenFlags) -> Result<Disk<T>> {
        let disk = native::enter(&self.state, || ExportedDisk::<T>::open(config, flags))?;
        let info = self.enter(|| disk.info());
        Ok(Disk {
            host: self.clone(),
            config: config.to_owned(),
            flags,
            disk: Some(disk),
            info,
        })
    }

    /// Run `f` with this host as the one [`crate::storage`] reaches (to
    /// prepare or inspect files with the storage API in a test).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        native::enter(&self.state, f)
    }

    /// Put a file into the device directory (an image to open, say),
    /// synced. Directories in `path` come into being.
    pub fn put_file(&self, path: &str, data: &[u8]) -> Result<()> {
        self.state.put_file(path, data)
    }

    /// The current contents of a file, or `None` if there is none.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.state.file_contents(path)
    }

    /// The names of the files in the device directory.
    pub fn files(&self) -> Vec<String> {
        self.state.file_names()
    }

    /// Give the disk a parent image: `forward-to-parent` reads from these
    /// bytes (zeros past their end). Without one it answers `unsupported`,
    /// as the daemon does for a disk without a parent.
    pub fn set_parent(&self, image: Vec<u8>) {
        self.state.set_parent(Some(image));
    }

    /// Power cut: every file keeps only what its last `sync` made durable.
    pub fn crash(&self) {
        self.state.crash();
    }

    /// Every line logged so far, with its level.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state.logs()
    }

    /// The lines logged so far, removing them.
    pub fn take_logs(&self) -> Vec<(Level, String)> {
        self.state.take_logs()
    }
}

/// A request to send to a [`Disk`]: build one with [`Req::read`],
/// [`Req::write`], [`Req::flush`], [`Req::discard`] or
/// [`Req::write_zeroes`], then [`Disk::submit`] it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Req {
    kind: Kind,
    offset: u64,
    length: u64,
    fua: bool,
    data: Vec<u8>,
}

impl Req {
    /// Read `length` bytes at `offset`.
    pub fn read(offset: u64, length: u64) -> Self {
        Self::new(Kind::Read, offset, length, Vec::new())
    }

    /// Write `data` at `offset`.
    pub fn write(offset: u64, data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Self::new(Kind::Write, offset, data.len() as u64, data)
    }

    /// Make completed writes durable (SYNCHRONIZE CACHE).
    pub fn flush() -> Self {
        Self::new(Kind::Flush, 0, 0, Vec::new())
    }

    /// Deallocate `length` bytes at `offset` (UNMAP).
    pub fn discard(offset: u64, length: u64) -> Self {
        Self::new(Kind::Discard, offset, length, Vec::new())
    }

    /// Make `length` bytes at `offset` read as zeros (WRITE SAME of zeros).
    pub fn write_zeroes(offset: u64, length: u64) -> Self {
        Self::new(Kind::WriteZeroes, offset, length, Vec::new())
    }

    /// Set force unit access (a write that must be durable when completed).
    pub fn fua(mut self) -> Self {
        self.fua = true;
        self
    }

    fn new(kind: Kind, offset: u64, length: u64, data: Vec<u8>) -> Self {
        Self {
            kind,
            offset,
            length,
            fua: false,
            data,
        }
    }

    /// What the request asks for.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// A submitted request, seen from the host: whether and how the backstore
/// completed it, and a read's data.
#[derive(Clone)]
pub struct Ticket {
    slot: Rc<Slot>,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("info", &self.slot.info)
            .field("status", &self.slot.status.get())
            .finish()
    }
}

impl Ticket {
    /// How the request was completed, or `None` while it is pending.
    pub fn status(&self) -> Option<Result<()>> {
        self.slot.status.get()
    }

    /// Whether the backstore completed it.
    pub fn is_done(&self) -> bool {
        self.status().is_some()
    }

    /// The request's buffer: for a read, what the backstore put there
    /// (bytes it never filled are [`UNFILLED`]); for a write, its data.
    pub fn data(&self) -> Vec<u8> {
        self.slot.data.borrow().clone()
    }
}

/// A backstore opened on a [`Host`]; each method is one call of the
/// contract, made as the daemon makes it.
pub struct Disk<T: Backstore> {
    host: Host,
    config: String,
    flags: OpenFlags,
    disk: Option<ExportedDisk<T>>,
    info: DiskInfo,
}

impl<T: Backstore> fmt::Debug for Disk<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disk")
            .field("backstore", &core::any::type_name::<T>())
            .field("config", &self.config)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<T: Backstore> Disk<T> {
    fn disk(&self) -> &ExportedDisk<T> {
        // `None` only inside `close`/`crash`, which consume `self`.
        self.disk.as_ref().expect("disk is open")
    }

    fn call<R>(&self, f: impl FnOnce(&ExportedDisk<T>) -> R) -> R {
        let disk = self.disk();
        self.host.enter(|| f(disk))
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// What `info()` said when the disk opened.
    pub fn info(&self) -> DiskInfo {
        self.info
    }

    /// The backstore value itself, to look at its state.
    pub fn backstore(&self) -> Ref<'_, T> {
        self.disk().inner()
    }

    /// Why the daemon would refuse `req` before the backstore sees it: a
    /// range that is not sector aligned or leaves the disk, an empty read
    /// or write.
    fn refusal(&self, req: &Req) -> Option<ErrorCode> {
        if req.kind == Kind::Flush {
            return None;
        }
        let sector = u64::from(self.info.sector_size);
        let aligned = req.offset.is_multiple_of(sector) && req.length.is_multiple_of(sector);
        let inside = req
            .offset
            .checked_add(req.length)
            .is_some_and(|end| end <= self.info.size);
        if !inside {
            Some(ErrorCode::OutOfRange)
        } else if !aligned || req.length == 0 {
            Some(ErrorCode::Unsupported)
        } else {
            None
        }
    }

    /// The host's request for `req`, and the ticket that watches it; or a
    /// ticket already failed with the refusal.
    fn prepare(&self, req: Req) -> (Option<HostRequest>, Ticket) {
        let info = crate::host::requests::RequestInfo {
            kind: req.kind,
            offset: req.offset,
            length: req.length,
            fua: req.fua,
        };
        let refusal = self.refusal(&req);
        let data = match req.kind {
            Kind::Write => req.data,
            Kind::Read if refusal.is_none() => vec![UNFILLED; req.length as usize],
            _ => Vec::new(),
        };
        let slot = Slot::new(info, data, Rc::clone(&self.host.state));
        let ticket = Ticket {
            slot: Rc::clone(&slot),
        };
        match refusal {
            Some(code) => {
                slot.status.set(Some(Err(code)));
                (None, ticket)
            }
            None => (Some(HostRequest { slot }), ticket),
        }
    }

    /// Hand `req` to the backstore through the entry point the daemon uses
    /// for its kind (`queue-read`, `queue-write`, `flush`, `discard`). The
    /// ticket says whether it completed, now or after later calls.
    pub fn submit(&mut self, req: Req) -> Ticket {
        let kind = req.kind;
        let (raw, ticket) = self.prepare(req);
        if let Some(raw) = raw {
            self.call(|d| match kind {
                Kind::Read => d.queue_read(raw),
                Kind::Write => d.queue_write(raw),
                Kind::Flush => d.flush(raw),
                Kind::Discard | Kind::WriteZeroes => d.discard(raw),
            });
        }
        ticket
    }

    /// Hand several requests to the backstore in one `queue-batch` call, as
    /// the daemon does when the ring holds more than one command.
    pub fn submit_batch(&mut self, reqs: impl IntoIterator<Item = Req>) -> Vec<Ticket> {
        let mut raws = Vec::new();
        let tickets = reqs
            .into_iter()
            .map(|r| {
                let (raw, ticket) = self.prepare(r);
                raws.extend(raw);
                ticket
            })
            .collect();
        if !raws.is_empty() {
            self.call(|d| d.queue_batch(raws));
        }
        tickets
    }

    /// Submit `req` and return its status, which the backstore must have
    /// given by the time the call returns.
    ///
    /// # Panics
    ///
    /// If the backstore kept the request to complete later; use
    /// [`submit`](Disk::submit) for backstores that do.
    fn run(&mut self, req: Req) -> (Result<()>, Ticket) {
        let what = format!("{:?} at {} (+{})", req.kind, req.offset, req.length);
        let ticket = self.submit(req);
        let status = ticket.status().unwrap_or_else(|| {
            panic!(
                "{what}: still pending after the call; use Disk::submit and drive its completion"
            )
        });
        (status, ticket)
    }

    /// Read `length` bytes at `offset`. Bytes the backstore left unfilled
    /// read [`UNFILLED`] (the daemon would have sent stale data).
    ///
    /// # Panics
    ///
    /// If the backstore did not complete the read during the call.
    pub fn read(&mut self, offset: u64, length: u64) -> Result<Vec<u8>> {
        let (status, ticket) = self.run(Req::read(offset, length));
        status?;
        Ok(ticket.data())
    }

    /// Write `data` at `offset`.
    ///
    /// # Panics
    ///
    /// If the backstore did not complete the write during the call.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.run(Req::write(offset, data)).0
    }

    /// Write `data` at `offset` with force unit access.
    ///
    /// # Panics
    ///
    /// If the backstore did not complete the write during the call.
    pub fn write_fua(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.run(Req::write(offset, data).fua()).0
    }

    /// Flush (SYNCHRONIZE CACHE).
    ///
    /// # Panics
    ///
    /// If the backstore did not complete the flush during the call.
    pub fn flush(&mut self) -> Result<()> {
        self.run(Req::flush()).0
    }

    /// Discard `length` bytes at `offset` (UNMAP).
    ///
    /// # Panics
    ///
    /// If the backstore did not complete the request during the call.
    pub fn discard(&mut self, offset: u64, length: u64) -> Result<()> {
        self.run(Req::discard(offset, length)).0
    }

    /// Make `length` bytes at `offset` read as zeros (WRITE SAME).
    ///
    /// # Panics
    ///
    /// If the backstore did not complete the request during the call.
    pub fn write_zeroes(&mut self, offset: u64, length: u64) -> Result<()> {
        self.run(Req::write_zeroes(offset, length)).0
    }

    /// `block-status.query` for `len` bytes at `offset`.
    pub fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<BlockExtent>> {
        self.call(|d| d.block_status(offset, len))
    }

    /// `get-parent-id`.
    pub fn parent_id(&self) -> Result<Option<String>> {
        self.call(|d| d.get_parent_id())
    }

    /// `validate-parent` with `parent`.
    pub fn validate_parent(&mut self, parent: &Parent) -> Result<()> {
        self.call(|d| d.validate_parent(parent))
    }

    /// `debug`: the text for the device page.
    pub fn debug(&self) -> String {
        self.call(|d| d.debug())
    }

    /// `stats`: the counters for the device page.
    pub fn stats(&self) -> DiskStats {
        self.call(|d| d.stats())
    }

    /// `close`, then drop the instance (as the daemon does on unbind).
    pub fn close(mut self) -> Result<()> {
        let disk = self.disk.take().expect("disk is open");
        self.host.enter(|| {
            let r = disk.close();
            drop(disk);
            r
        })
    }

    /// Close this instance and open a new one of the same backstore with
    /// the same configuration on the same directory (a daemon restart, a
    /// rebind to the same module).
    pub fn reopen(self) -> Result<Self> {
        let (host, config, flags) = (self.host.clone(), self.config.clone(), self.flags);
        self.close()?;
        host.open_with(&config, flags)
    }

    /// Power cut: the instance disappears without `close`, every file keeps
    /// only what was synced, and a new instance opens with the same
    /// configuration. Requests still pending are never completed.
    pub fn crash(mut self) -> Result<Self> {
        let disk = self.disk.take().expect("disk is open");
        // Dropped inside the host, as a backstore's `Drop` may still call it.
        self.host.enter(|| drop(disk));
        self.host.crash();
        let (host, config, flags) = (self.host.clone(), self.config.clone(), self.flags);
        host.open_with(&config, flags)
    }
}

impl<T: Backstore> Drop for Disk<T> {
    fn drop(&mut self) {
        if let Some(disk) = self.disk.take() {
            // Dropped without `close`: still drop the backstore inside the
            // host it belongs to.
            self.host.enter(|| drop(disk));
        }
    }
}

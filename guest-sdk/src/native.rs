//! The host, in process: what the SDK talks to when a backstore is compiled
//! for the build machine instead of `wasm32` (its unit tests).
//!
//! It mirrors the generated import bindings' shape (`requests::Request`
//! with the same methods, `storage::File`, the batch functions), so the
//! SDK's code is the same on both targets and only [`crate::host`] chooses.
//! Semantics follow the daemon's host (`host/runtime/src/host.rs`): the
//! same path rules and error codes, data access checked against the
//! request's kind and range, FUA on `submit-write` syncing the file. Files
//! live in memory, page by page, with what was last synced kept apart so a
//! test can simulate a crash ([`crate::testing::Host::crash`]).
//!
//! Which host a call reaches: the one a [`crate::testing`] disk entered for
//! the duration of its call into the backstore, otherwise a per-thread
//! default one (so `storage::open` in a plain `#[test]` works on an empty
//! in-memory directory).

use core::cell::{Cell, RefCell};
use core::fmt;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::bindings::wasmtap::backstore::log::Level;
use crate::{BlockExtent, BlockState, ErrorCode, Kind, Result};

/// Granularity of allocation in the in-memory files (tmpfs's page size):
/// what `punch-hole` frees and `block-status` reports.
pub(crate) const PAGE: u64 = 4096;

/// At most this many extents per `block-status` answer, as the daemon.
const MAX_EXTENTS: usize = 1024;

/// What a read buffer holds before the backstore fills it: the daemon's
/// buffers are the kernel's reused data area, so a read that forgets part of
/// its buffer would return stale bytes there; here it returns this byte.
pub const UNFILLED: u8 = 0xdb;

/// One in-process host: a directory of in-memory files, an optional parent
/// image for `forward-to-parent`, and the log.
#[derive(Default)]
pub(crate) struct HostState {
    files: RefCell<BTreeMap<String, Rc<MemFile>>>,
    /// Directories that exist (the storage interface cannot make any; a
    /// test places files in them with `put_file`).
    dirs: RefCell<BTreeSet<String>>,
    parent: RefCell<Option<Rc<Vec<u8>>>>,
    logs: RefCell<Vec<(Level, String)>>,
}

impl fmt::Debug for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostState")
            .field("files", &self.files.borrow().keys().collect::<Vec<_>>())
            .field("logs", &self.logs.borrow().len())
            .finish_non_exhaustive()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<HostState>>> = const { RefCell::new(None) };
    static DEFAULT: Rc<HostState> = Rc::default();
}

/// The host calls reach now.
pub(crate) fn current() -> Rc<HostState> {
    CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| DEFAULT.with(Rc::clone))
}

/// Run `f` with `state` as the current host (restored afterwards, also if
/// `f` panics).
pub(crate) fn enter<R>(state: &Rc<HostState>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Rc<HostState>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(Rc::clone(state)));
    let _restore = Restore(prev);
    f()
}

/// A log line from the backstore, kept by the current host.
pub(crate) fn log(level: Level, message: &str) {
    current()
        .logs
        .borrow_mut()
        .push((level, message.to_owned()));
}

impl HostState {
    pub(crate) fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }

    pub(crate) fn take_logs(&self) -> Vec<(Level, String)> {
        core::mem::take(&mut *self.logs.borrow_mut())
    }

    pub(crate) fn set_parent(&self, image: Option<Vec<u8>>) {
        *self.parent.borrow_mut() = image.map(Rc::new);
    }

    pub(crate) fn file_names(&self) -> Vec<String> {
        self.files.borrow().keys().cloned().collect()
    }

    /// The current contents of `path` (up to its size).
    pub(crate) fn file_contents(&self, path: &str) -> Option<Vec<u8>> {
        let path = normalize(path).ok()?;
        let file = self.files.borrow().get(&path).cloned()?;
        let live = file.live.borrow();
        let len = usize::try_from(live.size).ok()?;
        let mut buf = vec![0; len];
        live.read(0, &mut buf);
        Some(buf)
    }

    /// Create or replace `path` with `data`, synced (as if it had been put
    /// there before the device opened). Its directories come into being.
    pub(crate) fn put_file(&self, path: &str, data: &[u8]) -> Result<()> {
        let path = normalize(path)?;
        let mut image = Image::default();
        image.write(0, data);
        let file = MemFile {
            synced: RefCell::new(image.clone()),
            live: RefCell::new(image),
        };
        let mut dirs = self.dirs.borrow_mut();
        for (i, _) in path.match_indices('/') {
            dirs.insert(path[..i].to_owned());
        }
        self.files.borrow_mut().insert(path, Rc::new(file));
        Ok(())
    }

    /// Every file loses what was not synced: its data and size go back to
    /// their state at its last `sync` (an empty file if it never had one).
    /// Files themselves stay (creating and removing are durable at once).
    pub(crate) fn crash(&self) {
        for file in self.files.borrow().values() {
            *file.live.borrow_mut() = file.synced.borrow().clone();
        }
    }
}

/// `path` in the one spelling the directory uses (no `.` or empty
/// components), or `access-denied` for the paths the daemon refuses:
/// empty, with NUL, longer than 4096 bytes, absolute, or with `..`.
fn normalize(path: &str) -> Result<String> {
    if path.is_empty() || path.contains('\0') || path.len() > 4096 || path.starts_with('/') {
        return Err(ErrorCode::AccessDenied);
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(ErrorCode::AccessDenied),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        // `.` or `./`: the device directory itself, not a file.
        return Err(ErrorCode::AccessDenied);
    }
    Ok(parts.join("/"))
}

/// A sparse file: its size and its allocated pages.
#[derive(Clone, Default)]
struct Image {
    size: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Image {
    /// Fill `buf` from `offset`; holes and bytes past the end read zero.
    fn read(&self, offset: u64, buf: &mut [u8]) {
        buf.fill(0);
        let Some(end) = offset.checked_add(buf.len() as u64) else {
            return;
        };
        let end = end.min(self.size);
        for (&page, bytes) in self.pages.range(offset / PAGE..end.div_ceil(PAGE)) {
            let start = (page * PAGE).max(offset);
            let stop = ((page + 1) * PAGE).min(end);
            if start >= stop {
                continue;
            }
            let src = &bytes[(start - page * PAGE) as usize..(stop - page * PAGE) as usize];
            buf[(start - offset) as usize..(stop - offset) as usize].copy_from_slice(src);
        }
    }

    /// Store `data` at `offset` (the caller checked that the end fits in
    /// `u64`), growing the file.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let stop = ((page + 1) * PAGE).min(end);
            let bytes = self
                .pages
                .entry(page)
                .or_insert_with(|| vec![0; PAGE as usize].into_boxed_slice());
            let from = (at - page * PAGE) as usize;
            let src = &data[(at - offset) as usize..(stop - offset) as usize];
            bytes[from..from + src.len()].copy_from_slice(src);
            at = stop;
        }
        self.size = self.size.max(end);
    }

    fn set_size(&mut self, size: u64) {
        if size < self.size {
            // What lies past the new end is gone, also if it grows again.
            let first_gone = size.div_ceil(PAGE);
            self.pages.retain(|&p, _| p < first_gone);
            if !size.is_multiple_of(PAGE)
                && let Some(last) = self.pages.get_mut(&(size / PAGE))
            {
                last[(size % PAGE) as usize..].fill(0);
            }
        }
        self.size = size;
    }

    /// Zero `offset..offset + len`, freeing the pages it covers whole (the
    /// size does not change, like FALLOC_FL_KEEP_SIZE).
    fn punch(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        let first_whole = offset.div_ceil(PAGE);
        let end_whole = end / PAGE;
        if first_whole < end_whole {
            let gone: Vec<u64> = self
                .pages
                .range(first_whole..end_whole)
                .map(|(&p, _)| p)
                .collect();
            for p in gone {
                self.pages.remove(&p);
            }
        }
        // The partial pages at either end are zeroed in place.
        for page in [offset / PAGE, end.saturating_sub(1) / PAGE] {
            if let Some(bytes) = self.pages.get_mut(&page) {
                let start = (page * PAGE).max(offset) - page * PAGE;
                let stop = ((page + 1) * PAGE).min(end).saturating_sub(page * PAGE);
                if start < stop {
                    bytes[start as usize..stop as usize].fill(0);
                }
            }
        }
    }

    /// Extents from `offset` covering up to `len` bytes: allocated pages are
    /// `mapped`, the rest (and everything past the end) `hole`.
    fn extents(&self, offset: u64, len: u64) -> Vec<BlockExtent> {
        let end = offset.saturating_add(len);
        let mut out: Vec<BlockExtent> = Vec::new();
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let stop = if at >= self.size {
                end
            } else {
                ((page + 1) * PAGE).min(end)
            };
            let state = if at < self.size && self.pages.contains_key(&page) {
                BlockState::Mapped
            } else {
                BlockState::Hole
            };
            let full = out.len() == MAX_EXTENTS;
            match out.last_mut() {
                Some(last) if last.state == state => last.length += stop - at,
                _ if full => break,
                _ => out.push(BlockExtent {
                    offset: at,
                    length: stop - at,
                    state,
                }),
            }
            at = stop;
        }
        out
    }
}

/// A file of the in-process host: what is there now, and what the last
/// sync made durable.
pub(crate) struct MemFile {
    live: RefCell<Image>,
    synced: RefCell<Image>,
}

impl MemFile {
    fn sync(&self) {
        *self.synced.borrow_mut() = self.live.borrow().clone();
    }
}

/// Files in the device's own directory (in-process host).
pub mod storage {
    use super::*;

    /// An open file of the device's directory.
    pub struct File {
        path: String,
        file: Rc<MemFile>,
        writable: bool,
    }

    impl fmt::Debug for File {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("File")
                .field("path", &self.path)
                .field("writable", &self.writable)
                .finish_non_exhaustive()
        }
    }

    /// Open `path`, creating it (empty) if `create` is set and it does not
    /// exist.
    pub fn open(path: &str, create: bool, writable: bool) -> Result<File> {
        let host = current();
        let path = normalize(path)?;
        let existing = host.files.borrow().get(&path).cloned();
        let file = match existing {
            Some(f) => f,
            None if create => {
                // Only files in existing directories can be made (the
                // interface has no mkdir; the daemon answers `not-found`).
                if let Some((dir, _)) = path.rsplit_once('/')
                    && !host.dirs.borrow().contains(dir)
                {
                    return Err(ErrorCode::NotFound);
                }
                let f = Rc::new(MemFile {
                    live: RefCell::default(),
                    synced: RefCell::default(),
                });
                host.files.borrow_mut().insert(path.clone(), Rc::clone(&f));
                f
            }
            None => return Err(ErrorCode::NotFound),
        };
        Ok(File {
            path,
            file,
            writable,
        })
    }

    /// Remove a file (open handles keep working on its data).
    pub fn remove(path: &str) -> Result<()> {
        let path = normalize(path)?;
        match current().files.borrow_mut().remove(&path) {
            Some(_) => Ok(()),
            None => Err(ErrorCode::NotFound),
        }
    }

    impl File {
        fn writable(&self) -> Result<()> {
            if self.writable {
                Ok(())
            } else {
                Err(ErrorCode::ReadOnly)
            }
        }

        pub(crate) fn store(&self, offset: u64, data: &[u8]) -> Result<()> {
            self.writable()?;
            offset
                .checked_add(data.len() as u64)
                .ok_or(ErrorCode::OutOfRange)?;
            self.file.live.borrow_mut().write(offset, data);
            Ok(())
        }

        pub(crate) fn load(&self, offset: u64, buf: &mut [u8]) {
            self.file.live.borrow().read(offset, buf);
        }

        /// Current size in bytes.
        pub fn size(&self) -> Result<u64> {
            Ok(self.file.live.borrow().size)
        }

        /// Grow or shrink the file.
        pub fn set_size(&self, size: u64) -> Result<()> {
            self.writable()?;
            if size > i64::MAX as u64 {
                return Err(ErrorCode::OutOfRange);
            }
            self.file.live.borrow_mut().set_size(size);
            Ok(())
        }

        /// Read up to `len` bytes at `offset`; fewer at the end of the file.
        pub fn read_at(&self, offset: u64, len: u32) -> Result<Vec<u8>> {
            let size = self.size()?;
            let n = u64::from(len).min(size.saturating_sub(offset));
            let mut buf = vec![0; n as usize];
            self.load(offset, &mut buf);
            Ok(buf)
        }

        /// Write `data` at `offset`.
        pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
            self.store(offset, data)
        }

        /// Make everything written so far durable.
        pub fn sync(&self) -> Result<()> {
            self.file.sync();
            Ok(())
        }

        /// Deallocate a range; it then reads as zeros.
        pub fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
            self.writable()?;
            if offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
                return Err(ErrorCode::OutOfRange);
            }
            self.file.live.borrow_mut().punch(offset, len);
            Ok(())
        }

        /// Which parts of `len` bytes at `offset` are allocated.
        pub fn block_status(&self, offset: u64, len: u64) -> Result<Vec<BlockExtent>> {
            Ok(self.file.live.borrow().extents(offset, len))
        }
    }
}

/// Requests (in-process host).
pub mod requests {
    use super::storage::File;
    use super::*;
    pub use crate::bindings::wasmtap::backstore::requests::RequestInfo;

    /// The host's side of one request: what it asks for, its data buffer
    /// and, once the backstore completed it, the status.
    pub(crate) struct Slot {
        pub(crate) info: RequestInfo,
        /// A write's data, or a read's buffer (filled with [`UNFILLED`]).
        pub(crate) data: RefCell<Vec<u8>>,
        pub(crate) status: Cell<Option<Result<()>>>,
        /// The host whose parent image `forward-to-parent` reads.
        pub(crate) host: Rc<HostState>,
    }

    impl Slot {
        pub(crate) fn new(info: RequestInfo, data: Vec<u8>, host: Rc<HostState>) -> Rc<Self> {
            Rc::new(Self {
                info,
                data: RefCell::new(data),
                status: Cell::new(None),
                host,
            })
        }
    }

    /// One block request, as the host hands it over.
    pub struct Request {
        pub(crate) slot: Rc<Slot>,
    }

    impl fmt::Debug for Request {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Request")
                .field("info", &self.slot.info)
                .finish_non_exhaustive()
        }
    }

    impl Request {
        /// The byte range `at..at + len` of the request's buffer, if `kind`
        /// is what the request is and the range lies inside it: the checks
        /// (and error codes) of the daemon's data calls.
        fn access(&self, want: Kind, at: u64, len: u64) -> Result<core::ops::Range<usize>> {
            if self.slot.info.kind != want {
                return Err(ErrorCode::Unsupported);
            }
            match at.checked_add(len) {
                Some(end) if end <= self.slot.info.length => Ok(at as usize..end as usize),
                _ => Err(ErrorCode::OutOfRange),
            }
        }

        /// Kind, offset, length and FUA flag.
        pub fn describe(&self) -> RequestInfo {
            self.slot.info
        }

        /// Copy `len` bytes of a write's data, starting `at` bytes into it.
        pub fn read_data(&self, at: u64, len: u32) -> Result<Vec<u8>> {
            let r = self.access(Kind::Write, at, u64::from(len))?;
            Ok(self.slot.data.borrow()[r].to_vec())
        }

        /// Store `data` into a read's buffer, `at` bytes into it.
        pub fn write_data(&self, at: u64, data: &[u8]) -> Result<()> {
            let r = self.access(Kind::Read, at, data.len() as u64)?;
            self.slot.data.borrow_mut()[r].copy_from_slice(data);
            Ok(())
        }

        /// Zero `len` bytes of a read's buffer, `at` bytes into it.
        pub fn zero_data(&self, at: u64, len: u64) -> Result<()> {
            let r = self.access(Kind::Read, at, len)?;
            self.slot.data.borrow_mut()[r].fill(0);
            Ok(())
        }

        /// Read `len` bytes of `src` at `file_offset` into the buffer at `at`.
        pub fn submit_read(&self, src: &File, file_offset: u64, at: u64, len: u64) -> Result<()> {
            let r = self.access(Kind::Read, at, len)?;
            file_offset.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
            src.load(file_offset, &mut self.slot.data.borrow_mut()[r]);
            Ok(())
        }

        /// Write the request's data at `at` into `dst` at `file_offset`; a
        /// FUA write's file is synced afterwards, as the daemon does.
        pub fn submit_write(&self, dst: &File, file_offset: u64, at: u64, len: u64) -> Result<()> {
            let r = self.access(Kind::Write, at, len)?;
            dst.store(file_offset, &self.slot.data.borrow()[r])?;
            if self.slot.info.fua {
                dst.sync()?;
            }
            Ok(())
        }

        /// Fill `len` bytes of a read at `at` from the parent image (zeros
        /// past its end); `unsupported` when the host has none.
        pub fn forward_to_parent(&self, at: u64, len: u64) -> Result<()> {
            let r = self.access(Kind::Read, at, len)?;
            let parent = self.slot.host.parent.borrow().clone();
            let parent = parent.ok_or(ErrorCode::Unsupported)?;
            let mut buf = self.slot.data.borrow_mut();
            let dst = &mut buf[r];
            dst.fill(0);
            let from = self.slot.info.offset.saturating_add(at);
            if let Ok(from) = usize::try_from(from)
                && from < parent.len()
            {
                let n = dst.len().min(parent.len() - from);
                dst[..n].copy_from_slice(&parent[from..from + n]);
            }
            Ok(())
        }

        /// Finish the request.
        pub fn complete(this: Request, status: Result<()>) {
            let earlier = this.slot.status.replace(Some(status));
            assert!(
                earlier.is_none(),
                "request completed twice (the daemon fails the guest for this)"
            );
        }
    }

    /// `describe` for several requests.
    pub fn describe_batch(reqs: &[&Request]) -> Vec<RequestInfo> {
        reqs.iter().map(|r| r.describe()).collect()
    }

    /// `describe-batch` plus the data of the writes of at most `max_len`
    /// bytes, one after the other.
    pub fn describe_batch_with_data(
        reqs: &[&Request],
        max_len: u64,
    ) -> (Vec<RequestInfo>, Vec<bool>, Vec<u8>) {
        let mut data = Vec::new();
        let mut has = Vec::with_capacity(reqs.len());
        for r in reqs {
            let info = r.describe();
            let part = info.kind == Kind::Write && info.length <= max_len;
            if part {
                data.extend_from_slice(&r.slot.data.borrow());
            }
            has.push(part);
        }
        (describe_batch(reqs), has, data)
    }

    /// One zero-copy transfer for [`submit_batch`].
    #[derive(Debug)]
    pub struct Transfer<'a> {
        pub req: &'a Request,
        pub file: &'a File,
        pub file_offset: u64,
        pub at: u64,
        pub len: u64,
        pub into_request: bool,
    }

    /// `submit-read`/`submit-write` for several transfers, in order.
    pub fn submit_batch(transfers: &[Transfer<'_>]) -> Vec<Result<()>> {
        transfers
            .iter()
            .map(|t| {
                if t.into_request {
                    t.req.submit_read(t.file, t.file_offset, t.at, t.len)
                } else {
                    t.req.submit_write(t.file, t.file_offset, t.at, t.len)
                }
            })
            .collect()
    }

    /// `complete` for several requests, in order.
    pub fn complete_batch(done: Vec<(Request, Result<()>)>) {
        for (r, status) in done {
            Request::complete(r, status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extents(img: &Image, offset: u64, len: u64) -> Vec<(u64, u64, BlockState)> {
        img.extents(offset, len)
            .into_iter()
            .map(|e| (e.offset, e.length, e.state))
            .collect()
    }

    #[test]
    fn paths_follow_the_daemon_rules() {
        assert_eq!(normalize("a/./b//c").unwrap(), "a/b/c");
        for bad in ["", "/etc/passwd", "../x", "a/../b", ".", "a\0b"] {
            assert_eq!(normalize(bad), Err(ErrorCode::AccessDenied), "{bad:?}");
        }
    }

    #[test]
    fn sparse_image_reads_zero_in_holes_and_past_the_end() {
        let mut img = Image::default();
        img.write(5000, b"hello");
        assert_eq!(img.size, 5005);
        let mut buf = [1u8; 16];
        img.read(4996, &mut buf);
        assert_eq!(&buf, b"\0\0\0\0hello\0\0\0\0\0\0\0");
        assert_eq!(img.pages.len(), 1);
    }

    #[test]
    fn punch_frees_whole_pages_and_zeroes_partial_ones() {
        let mut img = Image::default();
        img.write(0, &[7; 4 * PAGE as usize]);
        img.punch(100, 2 * PAGE);
        assert_eq!(img.size, 4 * PAGE);
        let mut buf = vec![0u8; 4 * PAGE as usize];
        img.read(0, &mut buf);
        assert!(buf[..100].iter().all(|&b| b == 7));
        assert!(buf[100..100 + 2 * PAGE as usize].iter().all(|&b| b == 0));
        assert!(buf[100 + 2 * PAGE as usize..].iter().all(|&b| b == 7));
        assert_eq!(
            extents(&img, 0, 5 * PAGE),
            vec![
                (0, PAGE, BlockState::Mapped),
                (PAGE, PAGE, BlockState::Hole),
                (2 * PAGE, 2 * PAGE, BlockState::Mapped),
                (4 * PAGE, PAGE, BlockState::Hole),
            ]
        );
    }

    #[test]
    fn shrinking_forgets_the_tail() {
        let mut img = Image::default();
        img.write(0, &[9; 3 * PAGE as usize]);
        img.set_size(PAGE + 10);
        img.set_size(3 * PAGE);
        let mut buf = vec![0u8; 3 * PAGE as usize];
        img.read(0, &mut buf);
        assert!(buf[..PAGE as usize + 10].iter().all(|&b| b == 9));
        assert!(buf[PAGE as usize + 10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn crash_keeps_only_what_was_synced() {
        let host = Rc::new(HostState::default());
        enter(&host, || {
            let f = storage::open("disk.img", true, true).unwrap();
            f.write_at(0, b"durable").unwrap();
            f.sync().unwrap();
            f.write_at(0, b"lost!!!").unwrap();
            f.write_at(100, b"also lost").unwrap();
        });
        host.crash();
        assert_eq!(host.file_contents("disk.img").unwrap(), b"durable");
    }

    #[test]
    fn files_are_per_host_and_need_existing_directories() {
        let a = Rc::new(HostState::default());
        let b = Rc::new(HostState::default());
        enter(&a, || storage::open("x", true, true).unwrap());
        enter(&b, || {
            assert_eq!(
                storage::open("x", false, true).unwrap_err(),
                ErrorCode::NotFound
            );
            assert_eq!(
                storage::open("sub/x", true, true).unwrap_err(),
                ErrorCode::NotFound
            );
        });
        b.put_file("sub/y", b"").unwrap();
        enter(&b, || storage::open("sub/x", true, true).unwrap());
        let ro = enter(&a, || storage::open("x", false, false).unwrap());
        assert_eq!(ro.write_at(0, b"no"), Err(ErrorCode::ReadOnly));
    }
}

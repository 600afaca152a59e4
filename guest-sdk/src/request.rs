//! Requests: the unit of work the host hands to a backstore.
//!
//! [`Request`] wraps the host's `request` resource. It reads the request's
//! kind, offset and length once when it arrives, counts the request in the
//! disk's [statistics](crate::Backstore::stats) when it is completed, and
//! turns "dropped without completing" (a forgotten request, an early `?`
//! return from code that owned it) into a completion with
//! [`ErrorCode::Internal`] and a warning in the log, instead of a command the
//! initiator waits for until it times out.
//!
//! To keep a request pending on purpose, store it (in a queue, a map) and
//! complete it later; [`Request::into_raw`] hands out the bare resource for
//! code that needs the generated bindings directly.

use core::cell::{Cell, RefCell};
use core::fmt;
use std::borrow::Cow;
use std::rc::Rc;

use crate::geometry::Segments;
use crate::host::requests::{self as host, RequestInfo};
use crate::storage::File;
use crate::{DiskStats, ErrorCode, Kind, Result};

/// The host's request handle: the generated import resource in a `wasm32`
/// build, the in-process host's natively.
type HostRequest = host::Request;

/// A request's answer waiting to be sent with the others of its batch.
type Completion = (HostRequest, Result<()>);

thread_local! {
    // While a `queue-batch` call runs: the completions made during it, sent
    // in one `complete-batch` host call when it returns (the host looks at
    // completions only after the call anyway). `None` outside a batch:
    // completions go out at once.
    static DEFERRED: RefCell<Option<Vec<Completion>>> = const { RefCell::new(None) };
}

/// Run `f` with completions deferred to one `complete-batch` call at its end.
pub(crate) fn with_deferred_completions<R>(f: impl FnOnce() -> R) -> R {
    let nested = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_some() {
            return true;
        }
        *d = Some(Vec::new());
        false
    });
    let r = f();
    if !nested {
        let done = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
        if !done.is_empty() {
            host::complete_batch(done);
        }
    }
    r
}

/// Send `raw`'s completion now, or with its batch.
fn send_completion(raw: HostRequest, status: Result<()>) {
    let leftover = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(v) => {
            v.push((raw, status));
            None
        }
        None => Some((raw, status)),
    });
    if let Some((raw, status)) = leftover {
        HostRequest::complete(raw, status);
    }
}

/// Counters kept per disk by the SDK; see [`crate::Backstore::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reads: Cell<u64>,
    writes: Cell<u64>,
    bytes_read: Cell<u64>,
    bytes_written: Cell<u64>,
    flushes: Cell<u64>,
    discards: Cell<u64>,
    errors: Cell<u64>,
}

fn bump(counter: &Cell<u64>, by: u64) {
    counter.set(counter.get().wrapping_add(by));
}

impl Counters {
    fn record(&self, kind: Kind, length: u64, status: &Result<()>) {
        if status.is_err() {
            bump(&self.errors, 1);
            return;
        }
        match kind {
            Kind::Read => {
                bump(&self.reads, 1);
                bump(&self.bytes_read, length);
            }
            Kind::Write => {
                bump(&self.writes, 1);
                bump(&self.bytes_written, length);
            }
            Kind::Flush => bump(&self.flushes, 1),
            Kind::Discard | Kind::WriteZeroes => bump(&self.discards, 1),
        }
    }

    pub(crate) fn snapshot(&self) -> DiskStats {
        DiskStats {
            reads: self.reads.get(),
            writes: self.writes.get(),
            bytes_read: self.bytes_read.get(),
            bytes_written: self.bytes_written.get(),
            flushes: self.flushes.get(),
            discards: self.discards.get(),
            errors: self.errors.get(),
        }
    }
}

/// One block request; complete it exactly once with [`Request::complete`].
///
/// Offsets (`at`) passed to the data methods are relative to the start of the
/// request; [`Request::offset`] is the request's byte offset on the disk.
pub struct Request {
    raw: Option<HostRequest>,
    kind: Kind,
    offset: u64,
    length: u64,
    fua: bool,
    counters: Rc<Counters>,
    /// A write's whole data, when it came with its batch
    /// ([`crate::Backstore::PREFETCH_WRITE_DATA`]): the batch's data and
    /// where this request's `length` bytes start in it.
    data: Option<(Rc<Vec<u8>>, usize)>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new(raw: HostRequest, counters: Rc<Counters>) -> Self {
        // One host call for all four fields (each call crosses the
        // component boundary, which costs more than the call's work).
        let info = raw.describe();
        Self::with_info(raw, info, counters, None)
    }

    fn with_info(
        raw: HostRequest,
        info: RequestInfo,
        counters: Rc<Counters>,
        data: Option<(Rc<Vec<u8>>, usize)>,
    ) -> Self {
        Self {
            raw: Some(raw),
            kind: info.kind,
            offset: info.offset,
            length: info.length,
            fua: info.fua,
            counters,
            data,
        }
    }

    fn raw(&self) -> &HostRequest {
        // `raw` is only taken by `complete`/`into_raw`, which consume `self`.
        self.raw.as_ref().expect("request already completed")
    }

    /// What the request asks for.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Byte offset on the disk.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// One past the last byte on the disk (`offset + length`; the host has
    /// checked the range against the disk size, so this cannot overflow).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }

    /// Force unit access: a write must be durable when it is completed.
    pub fn fua(&self) -> bool {
        self.fua
    }

    /// The request's range split at multiples of `unit` bytes on the disk
    /// (chunks, clusters, or just pieces no longer than `unit`).
    pub fn segments(&self, unit: u64) -> Segments {
        Segments::new(self.offset, self.length, unit)
    }

    /// Copy `len` bytes of a write's data, `at` bytes into the request.
    pub fn read_data(&self, at: u64, len: u32) -> Result<Vec<u8>> {
        match self.prefetched(at, u64::from(len)) {
            Some(d) => d.map(<[u8]>::to_vec),
            None => self.raw().read_data(at, len),
        }
    }

    /// `len` bytes of a write's data, `at` bytes into the request: borrowed
    /// from the data that came with the batch when the backstore asked for
    /// it ([`crate::Backstore::PREFETCH_WRITE_DATA`]), otherwise fetched
    /// with `read-data`.
    pub fn data(&self, at: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        match self.prefetched(at, len) {
            Some(d) => d.map(Cow::Borrowed),
            None => {
                let len = u32::try_from(len).map_err(|_| ErrorCode::OutOfRange)?;
                self.raw().read_data(at, len).map(Cow::Owned)
            }
        }
    }

    /// The prefetched bytes `at..at + len`, if this request has its data.
    fn prefetched(&self, at: u64, len: u64) -> Option<Result<&[u8]>> {
        let (all, start) = self.data.as_ref()?;
        // `Batch::new` checked that `start + length` lies within `all`.
        let d = &all[*start..*start + self.length as usize];
        Some(
            at.checked_add(len)
                .filter(|&end| end <= d.len() as u64)
                .map(|end| &d[at as usize..end as usize])
                .ok_or(ErrorCode::OutOfRange),
        )
    }

    /// Store `data` into a read's buffer, `at` bytes into the request.
    pub fn write_data(&self, at: u64, data: &[u8]) -> Result<()> {
        self.raw().write_data(at, data)
    }

    /// Zero `len` bytes of a read's buffer, `at` bytes into the request
    /// (no data crosses into the host: cheaper than writing zeros).
    pub fn zero_data(&self, at: u64, len: u64) -> Result<()> {
        self.raw().zero_data(at, len)
    }

    /// Zero-copy read: the host moves `len` bytes of `src` at `file_offset`
    /// straight into the request's buffer at `at`. The I/O may still be
    /// running when this returns; [`Request::complete`] waits for it.
    pub fn submit_read(&self, src: &File, file_offset: u64, at: u64, len: u64) -> Result<()> {
        self.raw().submit_read(src, file_offset, at, len)
    }

    /// Zero-copy write: the request's data at `at` goes straight into `dst`
    /// at `file_offset`.
    pub fn submit_write(&self, dst: &File, file_offset: u64, at: u64, len: u64) -> Result<()> {
        self.raw().submit_write(dst, file_offset, at, len)
    }

    /// Fill `len` bytes of a read at `at` from the disk's parent image.
    pub fn forward_to_parent(&self, at: u64, len: u64) -> Result<()> {
        self.raw().forward_to_parent(at, len)
    }

    /// Finish the request with `status`. Host I/O submitted for it is
    /// awaited first; if any failed, the request fails with that error.
    pub fn complete(mut self, status: Result<()>) {
        let raw = self.raw.take().expect("request already completed");
        self.counters.record(self.kind, self.length, &status);
        send_completion(raw, status);
    }

    /// The bare resource, for code that uses the generated bindings
    /// directly. The SDK no longer counts or guards it: completing it is
    /// the caller's job. Only in the component (`wasm32`) build: natively
    /// requests come from the in-process host, not the bindings.
    #[cfg(target_arch = "wasm32")]
    pub fn into_raw(mut self) -> crate::RawRequest {
        self.raw.take().expect("request already completed")
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            crate::log::warn(&format!(
                "{:?} request at {} (+{}) dropped without completion; failing it",
                self.kind, self.offset, self.length
            ));
            let status = Err(ErrorCode::Internal);
            self.counters.record(self.kind, self.length, &status);
            send_completion(raw, status);
        }
    }
}

/// Zero-copy transfers of several requests, submitted to the host with one
/// call (`submit-batch`) instead of one [`Request::submit_read`] or
/// [`Request::submit_write`] call each. Add transfers, then
/// [`submit`](Transfers::submit) them; each result is what the single call
/// would have returned. A backstore that serves a batch this way overrides
/// [`crate::Backstore::queue_batch`] (see `example-guests/raw-file`).
#[derive(Default)]
pub struct Transfers<'a> {
    list: Vec<host::Transfer<'a>>,
}

impl fmt::Debug for Transfers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transfers")
            .field("len", &self.list.len())
            .finish()
    }
}

impl<'a> Transfers<'a> {
    /// Room for `n` transfers.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            list: Vec::with_capacity(n),
        }
    }

    /// [`Request::submit_read`] of `req`, submitted with the others.
    pub fn read(&mut self, req: &'a Request, src: &'a File, file_offset: u64, at: u64, len: u64) {
        self.push(req, src, file_offset, at, len, true);
    }

    /// [`Request::submit_write`] of `req`, submitted with the others.
    pub fn write(&mut self, req: &'a Request, dst: &'a File, file_offset: u64, at: u64, len: u64) {
        self.push(req, dst, file_offset, at, len, false);
    }

    fn push(
        &mut self,
        req: &'a Request,
        file: &'a File,
        file_offset: u64,
        at: u64,
        len: u64,
        into_request: bool,
    ) {
        self.list.push(host::Transfer {
            req: req.raw(),
            file,
            file_offset,
            at,
            len,
            into_request,
        });
    }

    /// Submit every transfer in one host call; one result per transfer, in
    /// the order they were added.
    pub fn submit(self) -> Vec<Result<()>> {
        if self.list.is_empty() {
            return Vec::new();
        }
        host::submit_batch(&self.list)
    }
}

/// Longest write whose data comes with its batch when a backstore asks for
/// it: larger ones are read in pieces, whose copies stay in the CPU's caches
/// (measured: a 1 MiB write copied whole took 60% more time than in 64 KiB
/// pieces).
const PREFETCH_MAX: u64 = 64 * 1024;

/// What the host said about a request of a batch: its description and,
/// when asked for, where a write's data is (the batch's data, and the
/// offset of this request's part in it).
type Described = (RequestInfo, Option<(Rc<Vec<u8>>, usize)>);

/// Give each write that has a part of the batch's `data` (`has`) its
/// offset in it. Should the parts not add up to the data (a host bug), no
/// request gets prefetched data and each fetches its own with `read-data`.
fn split_data(infos: Vec<RequestInfo>, has: &[bool], data: Vec<u8>) -> Vec<Described> {
    let data = Rc::new(data);
    let mut at = 0usize;
    let mut starts = Vec::with_capacity(infos.len());
    for (i, info) in infos.iter().enumerate() {
        let part = has.get(i).copied().unwrap_or(false) && info.kind == Kind::Write;
        starts.push(part.then_some(at));
        if part {
            at = usize::try_from(info.length)
                .ok()
                .and_then(|n| at.checked_add(n))
                .unwrap_or(usize::MAX);
        }
    }
    let consistent = at == data.len();
    infos
        .into_iter()
        .zip(starts)
        .map(|(info, start)| {
            let d = start.filter(|_| consistent).map(|s| (Rc::clone(&data), s));
            (info, d)
        })
        .collect()
}

/// The requests of one `queue-batch` call, in the host's order.
///
/// Requests not taken out of the batch are failed with
/// [`ErrorCode::Internal`] when the batch is dropped (see [`Request`]).
pub struct Batch {
    raws: std::iter::Zip<std::vec::IntoIter<HostRequest>, std::vec::IntoIter<Described>>,
    counters: Rc<Counters>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("remaining", &self.raws.len())
            .finish()
    }
}

impl Batch {
    /// `with_data`: fetch the writes' data in the same call.
    pub(crate) fn new(raws: Vec<HostRequest>, counters: Rc<Counters>, with_data: bool) -> Self {
        // Every request's kind, offset, length and FUA flag (and, if asked
        // for, every write's data) in one host call.
        let described: Vec<Described> = if raws.is_empty() {
            Vec::new()
        } else {
            let borrowed: Vec<&HostRequest> = raws.iter().collect();
            if with_data {
                let (infos, has, data) = host::describe_batch_with_data(&borrowed, PREFETCH_MAX);
                split_data(infos, &has, data)
            } else {
                host::describe_batch(&borrowed)
                    .into_iter()
                    .map(|info| (info, None))
                    .collect()
            }
        };
        Self {
            raws: raws.into_iter().zip(described),
            counters,
        }
    }
}

impl Iterator for Batch {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        let (raw, (info, data)) = self.raws.next()?;
        Some(Request::with_info(
            raw,
            info,
            Rc::clone(&self.counters),
            data,
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raws.size_hint()
    }
}

impl ExactSizeIterator for Batch {}

impl Drop for Batch {
    fn drop(&mut self) {
        // Each remaining request fails through `Request`'s own `Drop`.
        self.by_ref().for_each(drop);
    }
}

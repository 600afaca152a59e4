//! Requests: the host-owned `request` resource, the state its future waits
//! on, and the data buffer behind it.
//!
//! A request is done when the guest has called `complete` **and** every host
//! I/O submitted for it has finished (`docs/read-path.md`, step 8); or
//! when its instance failed or it timed out, again only once its host I/O
//! has drained: I/O still writing into the TCMU data area must never outlive
//! the command, or it would scribble over the next command's buffer.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use wasmtap_kernel::MappedRegion;
use wasmtap_ring::region::SharedRegion;
use wasmtap_scsi::Extent;

use crate::bindings::requests::Kind;
use crate::bindings::types::ErrorCode;

/// Extents held inline up to this many (a TCMU command's data is usually
/// one or two runs of contiguous blocks), so most requests allocate none.
const INLINE_EXTENTS: usize = 4;

/// A request's extents: inline when few, shared (cheap to clone into an I/O
/// job) when many.
#[derive(Debug, Clone)]
pub(crate) enum Extents {
    Inline { n: u8, e: [Extent; INLINE_EXTENTS] },
    Shared(Arc<[Extent]>),
}

impl Extents {
    /// Collect what `extents_of` visits; `None` if it refuses (the view is
    /// not in the region).
    pub(crate) fn collect(extents_of: impl FnOnce(&mut dyn FnMut(Extent)) -> bool) -> Option<Self> {
        let mut e = [Extent::default(); INLINE_EXTENTS];
        let mut n = 0usize;
        let mut spill: Vec<Extent> = Vec::new();
        let ok = extents_of(&mut |x| {
            if n < INLINE_EXTENTS {
                e[n] = x;
            } else {
                if spill.is_empty() {
                    spill.extend_from_slice(&e);
                }
                spill.push(x);
            }
            n += 1;
        });
        if !ok {
            return None;
        }
        Some(if n <= INLINE_EXTENTS {
            Extents::Inline { n: n as u8, e }
        } else {
            Extents::Shared(spill.into())
        })
    }
}

impl std::ops::Deref for Extents {
    type Target = [Extent];
    fn deref(&self) -> &[Extent] {
        match self {
            Extents::Inline { n, e } => &e[..usize::from(*n)],
            Extents::Shared(v) => v,
        }
    }
}

/// Where a request's data lives.
#[derive(Debug, Clone)]
pub(crate) enum DataTarget {
    /// No data (flush, discard, write-zeroes).
    None,
    /// Extents of the device's TCMU region, in request order.
    Region {
        region: Arc<MappedRegion>,
        extents: Extents,
    },
    /// A host buffer, copied from/to the command's buffer by the backend.
    Bounce(Arc<Mutex<Vec<u8>>>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DataTarget {
    /// Call `f(region_offset, offset_in_range, n)` for each piece of
    /// `at..at+len`, which the caller checked against the request length.
    fn walk<E>(
        extents: &[Extent],
        at: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut skip = at;
        let mut done = 0u64;
        for e in extents {
            if done == len {
                break;
            }
            if skip >= e.len {
                skip -= e.len;
                continue;
            }
            let n = (e.len - skip).min(len - done);
            f(e.addr + skip, done, n)?;
            done += n;
            skip = 0;
        }
        Ok(())
    }

    /// The `len` bytes at `at` of the request's buffer, as a new vector
    /// (copied once, never zero-filled first).
    pub(crate) fn read_vec(&self, at: u64, len: u64) -> Result<Vec<u8>, ErrorCode> {
        let mut out = Vec::with_capacity(len as usize);
        self.append_to(at, len, &mut out)?;
        Ok(out)
    }

    /// Append the `len` bytes at `at` of the request's buffer to `out`; on
    /// failure `out` is back to its old length.
    pub(crate) fn append_to(&self, at: u64, len: u64, out: &mut Vec<u8>) -> Result<(), ErrorCode> {
        let old = out.len();
        let r = match self {
            DataTarget::None => Err(ErrorCode::OutOfRange),
            DataTarget::Region { region, extents } => Self::walk(extents, at, len, |addr, _, n| {
                region
                    .append_to(addr, n, out)
                    .map_err(|_| ErrorCode::Internal)
            }),
            DataTarget::Bounce(b) => {
                out.extend_from_slice(&lock(b)[at as usize..(at + len) as usize]);
                Ok(())
            }
        };
        if r.is_err() {
            out.truncate(old);
        }
        r
    }

    /// Copy `src` into the request's buffer at `at`.
    pub(crate) fn write(&self, at: u64, src: &[u8]) -> Result<(), ErrorCode> {
        match self {
            DataTarget::None => Err(ErrorCode::OutOfRange),
            DataTarget::Region { region, extents } => {
                Self::walk(extents, at, src.len() as u64, |addr, off, n| {
                    region
                        .write_bytes(addr, &src[off as usize..(off + n) as usize])
                        .map_err(|_| ErrorCode::Internal)
                })
            }
            DataTarget::Bounce(b) => {
                let mut b = lock(b);
                let s = at as usize;
                b[s..s + src.len()].copy_from_slice(src);
                Ok(())
            }
        }
    }

    /// Zero `len` bytes at `at`.
    pub(crate) fn zero(&self, at: u64, len: u64) -> Result<(), ErrorCode> {
        match self {
            DataTarget::None => Err(ErrorCode::OutOfRange),
            DataTarget::Region { region, extents } => Self::walk(extents, at, len, |addr, _, n| {
                region
                    .fill_bytes(addr, n, 0)
                    .map_err(|_| ErrorCode::Internal)
            }),
            DataTarget::Bounce(b) => {
                let mut b = lock(b);
                b[at as usize..(at + len) as usize].fill(0);
                Ok(())
            }
        }
    }

    /// Read `len` bytes of `file` at `file_off` into the buffer at `at`.
    /// Past the end of the file the buffer is zero-filled (a file reads as
    /// zeros beyond its end, as a sparse hole does). Runs on an I/O thread.
    pub(crate) fn fill_from_file(
        &self,
        file: &File,
        file_off: u64,
        at: u64,
        len: u64,
    ) -> io::Result<()> {
        match self {
            DataTarget::None => Err(io::ErrorKind::InvalidInput.into()),
            DataTarget::Region { region, extents } => {
                Self::walk(extents, at, len, |addr, off, n| {
                    let mut got = 0u64;
                    while got < n {
                        let r = region.pread_from(file, file_off + off + got, addr + got, n - got);
                        match r {
                            Ok(0) => {
                                return region
                                    .fill_bytes(addr + got, n - got, 0)
                                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
                            }
                            Ok(k) => got += k as u64,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
            }
            DataTarget::Bounce(b) => {
                use std::os::unix::fs::FileExt;
                let mut b = lock(b);
                let dst = &mut b[at as usize..(at + len) as usize];
                let mut got = 0usize;
                while got < dst.len() {
                    match file.read_at(&mut dst[got..], file_off + got as u64) {
                        Ok(0) => {
                            dst[got..].fill(0);
                            break;
                        }
                        Ok(k) => got += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// Try the whole transfer on the calling thread without blocking
    /// (`RWF_NOWAIT`: page-cache hits). Returns false when any part would
    /// block, came up short, or the file system cannot do it; the caller then
    /// queues the transfer to an I/O thread, which redoes it whole (moving the
    /// same bytes twice is harmless). A thread hand-off costs far more than a
    /// cached 4 KiB copy, which is why this comes first.
    pub(crate) fn try_inline(
        &self,
        file: &File,
        file_off: u64,
        at: u64,
        len: u64,
        into_request: bool,
    ) -> bool {
        let DataTarget::Region { region, extents } = self else {
            return false;
        };
        Self::walk(extents, at, len, |addr, off, n| {
            let r = if into_request {
                region.pread_from_nowait(file, file_off + off, addr, n)
            } else {
                region.pwrite_to_nowait(file, file_off + off, addr, n)
            };
            match r {
                Ok(k) if k as u64 == n => Ok(()),
                _ => Err(ErrorCode::Busy),
            }
        })
        .is_ok()
    }

    /// Write `len` bytes of the buffer at `at` into `file` at `file_off`.
    /// Runs on an I/O thread.
    pub(crate) fn drain_to_file(
        &self,
        file: &File,
        file_off: u64,
        at: u64,
        len: u64,
    ) -> io::Result<()> {
        match self {
            DataTarget::None => Err(io::ErrorKind::InvalidInput.into()),
            DataTarget::Region { region, extents } => {
                Self::walk(extents, at, len, |addr, off, n| {
                    let mut put = 0u64;
                    while put < n {
                        match region.pwrite_to(file, file_off + off + put, addr + put, n - put) {
                            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                            Ok(k) => put += k as u64,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
            }
            DataTarget::Bounce(b) => {
                use std::os::unix::fs::FileExt;
                let b = lock(b);
                file.write_all_at(&b[at as usize..(at + len) as usize], file_off)
            }
        }
    }
}

/// The `request` resource as the host keeps it in the store's table.
#[derive(Debug)]
pub struct RequestRes {
    pub(crate) kind: Kind,
    pub(crate) offset: u64,
    pub(crate) length: u64,
    pub(crate) fua: bool,
    pub(crate) data: DataTarget,
    pub(crate) shared: Arc<RequestShared>,
}

impl RequestRes {
    /// What `describe` reports.
    pub(crate) fn info(&self) -> crate::bindings::requests::RequestInfo {
        crate::bindings::requests::RequestInfo {
            kind: self.kind,
            offset: self.offset,
            length: self.length,
            fua: self.fua,
        }
    }

    /// Check `at..at+len` against the request's length.
    pub(crate) fn range(&self, at: u64, len: u64) -> Result<(), ErrorCode> {
        match at.checked_add(len) {
            Some(end) if end <= self.length => Ok(()),
            _ => Err(ErrorCode::OutOfRange),
        }
    }
}

/// Why a request ended without the guest's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// Its instance trapped, overran a deadline or broke the protocol.
    InstanceFailed,
    /// It was not completed within the request timeout.
    TimedOut,
}

/// What a finished request resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The guest completed it; an I/O error has already replaced its status.
    Completed(Result<(), ErrorCode>),
    /// See [`Abandoned`].
    Abandoned(Abandoned),
}

#[derive(Debug, Default)]
struct ReqState {
    completed: Option<Result<(), ErrorCode>>,
    pending_io: u32,
    io_error: Option<ErrorCode>,
    abandoned: Option<Abandoned>,
    /// The command's buffer is gone (the future was dropped): refuse further
    /// data access.
    released: bool,
    waker: Option<Waker>,
}

impl ReqState {
    fn outcome(&self) -> Option<Outcome> {
        if self.pending_io > 0 {
            return None;
        }
        if let Some(status) = self.completed {
            return Some(Outcome::Completed(match self.io_error {
                Some(e) => Err(e),
                None => status,
            }));
        }
        self.abandoned.map(Outcome::Abandoned)
    }
}

/// State shared by a request's resource, its future, the I/O threads and
/// the supervisor.
#[derive(Debug, Default)]
pub(crate) struct RequestShared {
    state: Mutex<ReqState>,
    io_idle: Condvar,
}

impl RequestShared {
    fn wake_if_done(st: &mut ReqState) {
        if st.outcome().is_some()
            && let Some(w) = st.waker.take()
        {
            w.wake();
        }
    }

    /// Back to the state of a new request (the caller owns the only
    /// reference).
    pub(crate) fn reset(&mut self) {
        *self.state.get_mut().unwrap_or_else(|p| p.into_inner()) = ReqState::default();
    }

    /// The guest's `complete`.
    pub(crate) fn complete(&self, status: Result<(), ErrorCode>) {
        let mut st = lock(&self.state);
        if st.completed.is_none() {
            st.completed = Some(status);
        }
        Self::wake_if_done(&mut st);
    }

    /// Give up on the request (instance failed, timeout) unless the guest
    /// already answered it.
    pub(crate) fn abandon(&self, why: Abandoned) {
        let mut st = lock(&self.state);
        if st.completed.is_none() && st.abandoned.is_none() {
            st.abandoned = Some(why);
        }
        Self::wake_if_done(&mut st);
    }

    /// Whether data access is still allowed.
    pub(crate) fn usable(&self) -> bool {
        let st = lock(&self.state);
        !st.released && st.completed.is_none() && st.abandoned.is_none()
    }

    /// Account for a host I/O about to be queued; `false` if the request can
    /// no longer take I/O.
    pub(crate) fn begin_io(&self) -> bool {
        let mut st = lock(&self.state);
        if st.released || st.completed.is_some() || st.abandoned.is_some() {
            return false;
        }
        st.pending_io += 1;
        true
    }

    /// A host I/O finished (on an I/O thread).
    pub(crate) fn end_io(&self, result: Result<(), ErrorCode>) {
        let mut st = lock(&self.state);
        st.pending_io = st.pending_io.saturating_sub(1);
        if let Err(e) = result
            && st.io_error.is_none()
        {
            st.io_error = Some(e);
        }
        if st.pending_io == 0 {
            self.io_idle.notify_all();
        }
        Self::wake_if_done(&mut st);
    }

    /// Poll for the outcome, registering `cx`'s waker if not done.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut st = lock(&self.state);
        match st.outcome() {
            Some(o) => Poll::Ready(o),
            None => {
                match &mut st.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// The command's buffer is about to go away: refuse further access and
    /// wait for host I/O into it to drain (bounded by the I/O itself).
    pub(crate) fn release(&self) {
        let mut st = lock(&self.state);
        st.released = true;
        st.waker = None;
        while st.pending_io > 0 {
            st = self.io_idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The requests of one backend that have not resolved yet, with their
/// deadlines; shared with the runtime's supervisor thread, which times them
/// out.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    slots: Mutex<InflightSlots>,
}

#[derive(Debug, Default)]
struct InflightSlots {
    entries: Vec<Option<(Instant, Arc<RequestShared>)>>,
    free: Vec<usize>,
}

impl Inflight {
    pub(crate) fn insert(&self, deadline: Instant, req: Arc<RequestShared>) -> usize {
        let mut s = lock(&self.slots);
        match s.free.pop() {
            Some(i) => {
                s.entries[i] = Some((deadline, req));
                i
            }
            None => {
                s.entries.push(Some((deadline, req)));
                s.entries.len() - 1
            }
        }
    }

    pub(crate) fn remove(&self, slot: usize) {
        let mut s = lock(&self.slots);
        if let Some(e) = s.entries.get_mut(slot)
            && e.take().is_some()
        {
            s.free.push(slot);
        }
    }

    /// Abandon every request (the instance is gone).
    pub(crate) fn abandon_all(&self, why: Abandoned) {
        let s = lock(&self.slots);
        for (_, r) in s.entries.iter().flatten() {
            r.abandon(why);
        }
    }

    /// Time out requests past their deadline.
    pub(crate) fn expire(&self, now: Instant) {
        let s = lock(&self.slots);
        for (deadline, r) in s.entries.iter().flatten() {
            if *deadline <= now {
                r.abandon(Abandoned::TimedOut);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        let s = lock(&self.slots);
        s.entries.len() - s.free.len()
    }
}

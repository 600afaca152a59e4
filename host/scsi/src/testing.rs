//! Test doubles: an in-memory backend and a tiny executor.
//!
//! Always compiled (they are small and dependency-free) so the daemon's
//! tests, the simulator and the fuzz target can drive a [`crate::Target`]
//! without a runtime, and without a cargo feature whose absence would make
//! the crate's doctests fail to build.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::backend::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, DiscardInfo, DiskInfo,
};
use crate::buffer::{BufMut, BufRef};
use crate::units::{Blocks, Lba};

struct ThreadWaker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Run `fut` to completion on this thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let tw = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(tw.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        while !tw.woken.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

/// Poll every future in turn until all are done; outputs in input order.
/// With [`MemBackend::with_yields`] this interleaves commands the way a
/// worker with many commands in flight does.
pub async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(out.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

/// Return `Pending` once (waking immediately), then `Ready`.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Counters of what reached the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemStats {
    /// `read` calls.
    pub reads: u64,
    /// `write` calls.
    pub writes: u64,
    /// `write` calls with `fua`.
    pub fua_writes: u64,
    /// `flush` calls.
    pub flushes: u64,
    /// `discard` calls.
    pub discards: u64,
    /// `write_zeroes` calls.
    pub write_zeroes: u64,
}

#[derive(Debug)]
struct MemState {
    info: DiskInfo,
    data: Vec<u8>,
    stats: MemStats,
    fail_next: Option<BackendError>,
}

/// A RAM disk implementing [`BlockBackend`], with failure injection.
///
/// Discarded blocks read back as zeros. With [`MemBackend::with_yields`]
/// every operation yields once before and once after touching the data, so
/// concurrent commands interleave.
#[derive(Debug)]
pub struct MemBackend {
    state: Mutex<MemState>,
    yields: bool,
}

impl MemBackend {
    /// A zero-filled disk of `info.block_count` blocks.
    pub fn new(info: DiskInfo) -> Self {
        let len = info.block_count.bytes(info.block_size).map_or(0, |b| b.0) as usize;
        Self {
            state: Mutex::new(MemState {
                info,
                data: vec![0; len],
                stats: MemStats::default(),
                fail_next: None,
            }),
            yields: false,
        }
    }

    /// A 512-byte-block disk of `blocks` blocks with discard support.
    pub fn with_discard(blocks: u64) -> Self {
        let mut info = DiskInfo::simple(512, blocks);
        info.discard = Some(DiscardInfo {
            granularity: Blocks(8),
            alignment: Lba(0),
            max_blocks: 0x1_0000,
            max_descriptors: 16,
            zeroes: true,
        });
        Self::new(info)
    }

    /// Yield around every operation (see the type docs).
    pub fn with_yields(mut self) -> Self {
        self.yields = true;
        self
    }

    fn state(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copy of the whole disk.
    pub fn contents(&self) -> Vec<u8> {
        self.state().data.clone()
    }

    /// Overwrite bytes at `off` directly (test setup).
    pub fn poke(&self, off: usize, bytes: &[u8]) {
        self.state().data[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// What reached the backend so far.
    pub fn stats(&self) -> MemStats {
        self.state().stats
    }

    /// Make the next operation fail with `err`.
    pub fn fail_next(&self, err: BackendError) {
        self.state().fail_next = Some(err);
    }

    /// Change the geometry (a resize keeps the data that still fits).
    pub fn set_info(&self, info: DiskInfo) {
        let mut s = self.state();
        let len = info.block_count.bytes(info.block_size).map_or(0, |b| b.0) as usize;
        s.data.resize(len, 0);
        s.info = info;
    }

    async fn op<R>(
        &self,
        f: impl FnOnce(&mut MemState) -> Result<R, BackendError>,
    ) -> Result<R, BackendError> {
        if self.yields {
            yield_now().await;
        }
        let r = {
            let mut s = self.state();
            match s.fail_next.take() {
                Some(e) => Err(e),
                None => f(&mut s),
            }
        };
        if self.yields {
            yield_now().await;
        }
        r
    }
}

fn span(s: &MemState, lba: Lba, len: u64) -> Result<std::ops::Range<usize>, BackendError> {
    let start = lba.0.checked_mul(u64::from(s.info.block_size));
    match start.and_then(|st| st.checked_add(len).map(|e| (st, e))) {
        Some((st, e)) if e <= s.data.len() as u64 => Ok(st as usize..e as usize),
        _ => Err(BackendError::at(BackendErrorKind::OutOfRange, lba)),
    }
}

impl BlockBackend for MemBackend {
    fn info(&self) -> DiskInfo {
        self.state().info
    }

    async fn read(&self, lba: Lba, mut dst: BufMut<'_>) -> BackendResult {
        self.op(|s| {
            s.stats.reads += 1;
            let r = span(s, lba, dst.len())?;
            dst.write_at(0, &s.data[r])?;
            Ok(())
        })
        .await
    }

    async fn write(&self, lba: Lba, src: BufRef<'_>, fua: bool) -> BackendResult {
        if self.yields {
            yield_now().await;
        }
        // Copy in two halves with a yield between, so a racing command
        // that is not excluded by the range lock would see a torn write.
        let half = (src.len() / 2) & !511;
        for (i, (off, len)) in [(0, half), (half, src.len() - half)]
            .into_iter()
            .enumerate()
        {
            self.op(|s| {
                if i == 0 {
                    s.stats.writes += 1;
                    s.stats.fua_writes += u64::from(fua);
                }
                if s.info.read_only {
                    return Err(BackendError::new(BackendErrorKind::ReadOnly));
                }
                let r = span(s, lba, src.len())?;
                let start = r.start + off as usize;
                src.read_at(off, &mut s.data[start..start + len as usize])?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    async fn flush(&self) -> BackendResult {
        self.op(|s| {
            s.stats.flushes += 1;
            Ok(())
        })
        .await
    }

    async fn discard(&self, lba: Lba, blocks: Blocks) -> BackendResult {
        self.op(|s| {
            s.stats.discards += 1;
            if s.info.discard.is_none() {
                return Err(BackendError::new(BackendErrorKind::Unsupported));
            }
            let len = blocks.0.saturating_mul(u64::from(s.info.block_size));
            let r = span(s, lba, len)?;
            s.data[r].fill(0);
            Ok(())
        })
        .await
    }

    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, _may_unmap: bool) -> BackendResult {
        self.op(|s| {
            s.stats.write_zeroes += 1;
            let len = blocks.0.saturating_mul(u64::from(s.info.block_size));
            let r = span(s, lba, len)?;
            s.data[r].fill(0);
            Ok(())
        })
        .await
    }
}

//! Test doubles: an in-memory backend and a tiny executor.
//!
//! Compiled for this crate's own tests and with the `test-utils` feature,
//! which the daemon's tests and the fuzz targets enable (as
//! dev-dependencies) to drive a [`crate::Target`] without a runtime. This
//! crate's doctests get it through its dev-dependency on itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::backend::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, BlockExtent, BlockState,
    DiscardInfo, DiskInfo,
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
    /// `block_status` calls.
    pub block_status: u64,
}

#[derive(Debug)]
struct MemState {
    info: DiskInfo,
    data: Vec<u8>,
    /// Provisioning state of every block.
    states: Vec<BlockState>,
    stats: MemStats,
    fail_next: Option<BackendError>,
}

impl MemState {
    fn mark(&mut self, lba: Lba, blocks: u64, state: BlockState) {
        let start = usize::try_from(lba.0).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(blocks).unwrap_or(usize::MAX));
        let end = end.min(self.states.len());
        if start < end {
            self.states[start..end].fill(state);
        }
    }
}

/// What blocks hold before anything is written: thin disks (with discard)
/// start deallocated, others mapped.
fn fresh_state(info: &DiskInfo) -> BlockState {
    if info.discard.is_some() {
        BlockState::Deallocated
    } else {
        BlockState::Mapped
    }
}

/// A RAM disk implementing [`BlockBackend`], with failure injection.
///
/// Discarded blocks read back as zeros. Provisioning is tracked per block
/// and answered by `block_status`: a disk with discard starts
/// deallocated, one without starts mapped; `write` maps, `discard`
/// deallocates, `write_zeroes` deallocates when it may unmap and the disk
/// zeroes discarded blocks, otherwise leaves allocated zeros
/// ([`BlockState::Zero`]). With [`MemBackend::with_yields`]
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
                states: vec![fresh_state(&info); info.block_count.0 as usize],
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

    /// Overwrite bytes at `off` directly (test setup); the blocks touched
    /// become mapped.
    pub fn poke(&self, off: usize, bytes: &[u8]) {
        let mut s = self.state();
        s.data[off..off + bytes.len()].copy_from_slice(bytes);
        if !bytes.is_empty() {
            let bs = s.info.block_size as usize;
            let first = off / bs;
            let last = (off + bytes.len() - 1) / bs;
            s.mark(
                Lba(first as u64),
                (last - first + 1) as u64,
                BlockState::Mapped,
            );
        }
    }

    /// Provisioning state of every block.
    pub fn states(&self) -> Vec<BlockState> {
        self.state().states.clone()
    }

    /// Set the provisioning state of `blocks` blocks at `lba` (test setup;
    /// the data is left alone).
    pub fn set_state(&self, lba: Lba, blocks: u64, state: BlockState) {
        self.state().mark(lba, blocks, state);
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
        s.states
            .resize(info.block_count.0 as usize, fresh_state(&info));
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
                let blocks = src.len() / u64::from(s.info.block_size);
                s.mark(lba, blocks, BlockState::Mapped);
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
            s.mark(lba, blocks.0, BlockState::Deallocated);
            Ok(())
        })
        .await
    }

    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, may_unmap: bool) -> BackendResult {
        self.op(|s| {
            s.stats.write_zeroes += 1;
            let len = blocks.0.saturating_mul(u64::from(s.info.block_size));
            let r = span(s, lba, len)?;
            s.data[r].fill(0);
            let unmap = may_unmap && s.info.discard.is_some_and(|d| d.zeroes);
            let state = if unmap {
                BlockState::Deallocated
            } else {
                BlockState::Zero
            };
            s.mark(lba, blocks.0, state);
            Ok(())
        })
        .await
    }

    async fn block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        self.op(|s| {
            s.stats.block_status += 1;
            let start = usize::try_from(lba.0).unwrap_or(usize::MAX);
            let end = usize::try_from(lba.0.saturating_add(blocks.0))
                .unwrap_or(usize::MAX)
                .min(s.states.len());
            if start >= end {
                return Err(BackendError::at(BackendErrorKind::OutOfRange, lba));
            }
            let mut out: Vec<BlockExtent> = Vec::new();
            for (i, &state) in s.states[start..end].iter().enumerate() {
                match out.last_mut() {
                    Some(e) if e.state == state => e.blocks.0 += 1,
                    _ => out.push(BlockExtent {
                        lba: Lba((start + i) as u64),
                        blocks: Blocks(1),
                        state,
                    }),
                }
            }
            Ok(out)
        })
        .await
    }
}

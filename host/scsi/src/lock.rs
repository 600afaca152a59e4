//! Block range locks: what makes COMPARE AND WRITE (SBC-3 5.2), ORWRITE
//! and WRITE ATOMIC atomic.
//!
//! Every command that changes blocks holds a *shared* lock on its range for
//! the duration of its backend calls; COMPARE AND WRITE holds an
//! *exclusive* lock across its read, compare and write, ORWRITE across its
//! read, OR and write, WRITE ATOMIC across its one backend write. READ and
//! comparing VERIFY hold shared locks too, so they never see half of an
//! exclusive holder. Shared locks do not exclude each other (SCSI gives no
//! ordering between overlapping commands in flight anyway), so plain reads
//! and writes pay one uncontended mutex round trip.
//!
//! The lock is asynchronous: a blocked command returns `Pending` and is
//! woken when a conflicting holder releases, so the worker keeps running
//! other commands. Waiters are woken all at once on every release and
//! re-check; a stream of shared holders can delay an exclusive waiter,
//! which is acceptable for the rare COMPARE AND WRITE, ORWRITE and WRITE
//! ATOMIC.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
struct Held {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
}

#[derive(Debug, Default)]
struct Table {
    held: Vec<Held>,
    waiters: Vec<Waker>,
    next_id: u64,
}

/// The range locks of one logical unit.
#[derive(Debug, Default, Clone)]
pub(crate) struct RangeLocks {
    table: Arc<Mutex<Table>>,
}

/// A held range lock; released on drop.
#[derive(Debug)]
pub(crate) struct RangeGuard {
    table: Arc<Mutex<Table>>,
    id: u64,
}

fn lock(t: &Mutex<Table>) -> MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl RangeLocks {
    /// Wait for `start..end` (block numbers) and take it.
    pub(crate) fn lock(&self, start: u64, end: u64, exclusive: bool) -> Acquire {
        Acquire {
            table: self.table.clone(),
            start,
            end,
            exclusive,
        }
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        lock(&self.table).held.len()
    }
}

/// Future returned by [`RangeLocks::lock`].
#[derive(Debug)]
pub(crate) struct Acquire {
    table: Arc<Mutex<Table>>,
    start: u64,
    end: u64,
    exclusive: bool,
}

impl Future for Acquire {
    type Output = RangeGuard;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RangeGuard> {
        let this = self.get_mut();
        let mut t = lock(&this.table);
        let conflict = t
            .held
            .iter()
            .any(|h| h.start < this.end && this.start < h.end && (h.exclusive || this.exclusive));
        if conflict {
            t.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let id = t.next_id;
        t.next_id += 1;
        t.held.push(Held {
            id,
            start: this.start,
            end: this.end,
            exclusive: this.exclusive,
        });
        Poll::Ready(RangeGuard {
            table: this.table.clone(),
            id,
        })
    }
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let waiters = {
            let mut t = lock(&self.table);
            t.held.retain(|h| h.id != self.id);
            std::mem::take(&mut t.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        f.poll_unpin_noop()
    }

    trait PollNoop: Future + Unpin + Sized {
        fn poll_unpin_noop(&mut self) -> Poll<Self::Output> {
            let mut cx = Context::from_waker(Waker::noop());
            Pin::new(self).poll(&mut cx)
        }
    }
    impl<F: Future + Unpin> PollNoop for F {}

    #[test]
    fn exclusive_waits_for_overlapping_shared_and_vice_versa() {
        let l = RangeLocks::default();
        let Poll::Ready(w1) = poll(&mut l.lock(0, 8, false)) else {
            panic!("first lock must be free")
        };
        // Shared locks coexist.
        let Poll::Ready(w2) = poll(&mut l.lock(4, 12, false)) else {
            panic!("shared locks must coexist")
        };
        let mut caw = l.lock(7, 9, true);
        assert!(poll(&mut caw).is_pending());
        // A disjoint exclusive lock is free.
        let Poll::Ready(other) = poll(&mut l.lock(12, 13, true)) else {
            panic!("disjoint range must be free")
        };
        drop(w1);
        assert!(poll(&mut caw).is_pending(), "w2 still overlaps");
        drop(w2);
        let Poll::Ready(g) = poll(&mut caw) else {
            panic!("free after both released")
        };
        assert!(poll(&mut l.lock(8, 9, false)).is_pending());
        drop(g);
        drop(other);
        assert_eq!(l.held(), 0);
    }
}

//! EXTENDED COPY between devices of this daemon.
//!
//! The SCSI target finds copy sources and destinations by their NAA
//! designator through a [`CopyPeers`]; it finds itself without help. Each
//! device's target lives on its own worker thread, so another device is
//! reached by message: a [`RemoteLun`] posts a [`CopyRequest`] to the
//! owning worker (the [`Post`] the device registered: a job on its control
//! channel), which runs the read or write on its own target (checked
//! against its current geometry, as a command would be) and answers through
//! a [`Reply`], waking the asking worker. Workers never block on each other,
//! so two devices copying to each other cannot deadlock.
//!
//! **Scope.** A designator is easy to guess (it is derived from the
//! device's name), and TCMU does not say which initiator sent a command. So a
//! copy may only reach devices in the asking device's *scope*: the same
//! tenant for control-plane devices, the same `user_N` HBA for LUNs made in
//! configfs. Anything else is COPY TARGET DEVICE NOT REACHABLE, exactly as
//! if the device did not exist (the Linux target's own XCOPY had to learn
//! this, CVE-2020-28374).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wasmtap_scsi::{
    BackendError, BackendErrorKind, BackendResult, CopyIo, CopyLun, CopyPeers, DiskInfo, Lba,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable() -> BackendError {
    BackendError::new(BackendErrorKind::Unavailable)
}

/// What a copy asks of another device's worker.
#[derive(Debug)]
pub enum CopyOp {
    /// Read `len` bytes at `lba`.
    Read {
        /// First block.
        lba: Lba,
        /// Bytes (whole blocks).
        len: usize,
    },
    /// Write `data` at `lba`.
    Write {
        /// First block.
        lba: Lba,
        /// Whole blocks.
        data: Vec<u8>,
    },
}

/// One copy request, with where its answer goes.
#[derive(Debug)]
pub struct CopyRequest {
    /// What to do.
    pub op: CopyOp,
    /// The answer: the bytes read (empty for a write), or the error.
    pub reply: Responder,
}

#[derive(Debug, Default)]
struct ReplyState {
    result: Option<Result<Vec<u8>, BackendError>>,
    waker: Option<Waker>,
}

/// The asking side's future of a [`CopyRequest`].
#[derive(Debug)]
pub struct Reply(Arc<Mutex<ReplyState>>);

/// The answering side: answers once; dropped unanswered (the worker
/// stopped), it answers "unavailable", so the asker never waits forever.
#[derive(Debug)]
pub struct Responder(Option<Arc<Mutex<ReplyState>>>);

/// A linked [`Reply`] and [`Responder`].
pub fn reply() -> (Reply, Responder) {
    let s = Arc::new(Mutex::new(ReplyState::default()));
    (Reply(Arc::clone(&s)), Responder(Some(s)))
}

impl Responder {
    /// Answer the request.
    pub fn send(mut self, r: Result<Vec<u8>, BackendError>) {
        self.answer(r);
    }

    fn answer(&mut self, r: Result<Vec<u8>, BackendError>) {
        if let Some(s) = self.0.take() {
            let waker = {
                let mut st = lock(&s);
                st.result = Some(r);
                st.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.answer(Err(unavailable()));
    }
}

impl Future for Reply {
    type Output = Result<Vec<u8>, BackendError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = lock(&self.0);
        match st.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// How a registered device takes a copy request: hands it to its worker;
/// `false` when the worker is gone.
#[derive(Clone)]
pub struct Post(Arc<dyn Fn(CopyRequest) -> bool + Send + Sync>);

impl Post {
    /// Post with `f`.
    pub fn new(f: impl Fn(CopyRequest) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for Post {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Post(..)")
    }
}

#[derive(Debug, Clone)]
struct Peer {
    scope: String,
    post: Post,
    info: Arc<Mutex<DiskInfo>>,
}

/// The daemon's devices by NAA designator, for EXTENDED COPY.
#[derive(Debug, Clone, Default)]
pub struct CopyRegistry(Arc<Mutex<HashMap<u64, Peer>>>);

/// A device's entry in the registry; dropping it removes the entry.
#[derive(Debug)]
pub struct Registration {
    registry: CopyRegistry,
    naa: u64,
    info: Arc<Mutex<DiskInfo>>,
}

impl Registration {
    /// The device's geometry changed (resize, hot swap).
    pub fn update(&self, info: DiskInfo) {
        *lock(&self.info) = info;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = lock(&self.registry.0);
        // Only our own entry: a device re-attached under the same name may
        // have registered again meanwhile.
        if map
            .get(&self.naa)
            .is_some_and(|p| Arc::ptr_eq(&p.info, &self.info))
        {
            map.remove(&self.naa);
        }
    }
}

impl CopyRegistry {
    /// Make the device with designator `naa` reachable by copies from its
    /// `scope`; `post` hands a request to its worker.
    pub fn register(&self, naa: u64, scope: &str, post: Post, info: DiskInfo) -> Registration {
        let info = Arc::new(Mutex::new(info));
        lock(&self.0).insert(
            naa,
            Peer {
                scope: scope.to_string(),
                post,
                info: Arc::clone(&info),
            },
        );
        Registration {
            registry: self.clone(),
            naa,
            info,
        }
    }

    /// The peers a device in `scope` may copy to and from.
    pub fn peers(&self, scope: &str) -> Rc<dyn CopyPeers> {
        Rc::new(ScopedPeers {
            registry: self.clone(),
            scope: scope.to_string(),
        })
    }
}

struct ScopedPeers {
    registry: CopyRegistry,
    scope: String,
}

impl CopyPeers for ScopedPeers {
    fn locate(&self, naa: &[u8]) -> Option<Rc<dyn CopyLun>> {
        let key = u64::from_be_bytes(naa.try_into().ok()?);
        let peer = lock(&self.registry.0).get(&key)?.clone();
        if peer.scope != self.scope {
            return None;
        }
        let info = *lock(&peer.info);
        Some(Rc::new(RemoteLun {
            post: peer.post,
            info,
        }))
    }
}

/// Another worker's device, reached by message.
struct RemoteLun {
    post: Post,
    info: DiskInfo,
}

impl RemoteLun {
    async fn ask(&self, op: CopyOp) -> Result<Vec<u8>, BackendError> {
        let (answer, reply) = reply();
        if !(self.post.0)(CopyRequest { op, reply }) {
            return Err(unavailable());
        }
        answer.await
    }
}

impl CopyLun for RemoteLun {
    fn info(&self) -> DiskInfo {
        self.info
    }

    fn read_blocks<'a>(&'a self, lba: Lba, dst: &'a mut [u8]) -> CopyIo<'a> {
        Box::pin(async move {
            let data = self
                .ask(CopyOp::Read {
                    lba,
                    len: dst.len(),
                })
                .await?;
            if data.len() != dst.len() {
                return Err(BackendError::new(BackendErrorKind::Internal));
            }
            dst.copy_from_slice(&data);
            Ok(())
        })
    }

    fn write_blocks<'a>(&'a self, lba: Lba, src: &'a [u8]) -> CopyIo<'a> {
        Box::pin(async move {
            self.ask(CopyOp::Write {
                lba,
                data: src.to_vec(),
            })
            .await
            .map(drop)
        })
    }
}

/// Run a peer's request on this device, `lun` (the device's own target),
/// checked against its current geometry as a command would be.
pub async fn serve(lun: &dyn CopyLun, op: CopyOp) -> Result<Vec<u8>, BackendError> {
    let info = lun.info();
    let bs = u64::from(info.block_size);
    let check = |lba: Lba, len: usize| -> BackendResult {
        let blocks = len as u64 / bs;
        let whole = (len as u64).is_multiple_of(bs);
        let inside = lba
            .0
            .checked_add(blocks)
            .is_some_and(|end| end <= info.block_count.0);
        if !whole || !inside || blocks > info.max_transfer.0 {
            return Err(BackendError::at(BackendErrorKind::OutOfRange, lba));
        }
        Ok(())
    };
    match op {
        CopyOp::Read { lba, len } => {
            check(lba, len)?;
            let mut buf = vec![0u8; len];
            lun.read_blocks(lba, &mut buf).await?;
            Ok(buf)
        }
        CopyOp::Write { lba, data } => {
            check(lba, data.len())?;
            if info.read_only {
                return Err(BackendError::new(BackendErrorKind::ReadOnly));
            }
            lun.write_blocks(lba, &data).await?;
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_responder_answers_unavailable() {
        let (answer, responder) = reply();
        drop(responder);
        let r = wasmtap_scsi::testing::block_on(answer);
        assert_eq!(r.unwrap_err().kind, BackendErrorKind::Unavailable);
    }

    #[test]
    fn peers_outside_the_scope_are_not_found() {
        let reg = CopyRegistry::default();
        let info = DiskInfo::simple(512, 1024);
        let _a = reg.register(0x3000_0000_0000_0001, "tenant:a", Post::new(|_| true), info);
        let naa = 0x3000_0000_0000_0001u64.to_be_bytes();
        assert!(reg.peers("tenant:a").locate(&naa).is_some());
        assert!(reg.peers("tenant:b").locate(&naa).is_none());
        assert!(reg.peers("tenant:a").locate(&[0; 8]).is_none());
        assert!(reg.peers("tenant:a").locate(&[0; 16]).is_none());
        drop(_a);
        assert!(reg.peers("tenant:a").locate(&naa).is_none());
    }
}

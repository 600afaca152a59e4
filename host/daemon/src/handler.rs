//! Between the ring and the SCSI target: the TCMU region as the target's
//! [`Memory`], a command's iovecs as its scatter/gather list: the
//! [`ScsiHandler`] that starts each command on the device's target.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use wasmtap_kernel::MappedRegion;
use wasmtap_ring::{Command, SharedRegion};
use wasmtap_scsi::{
    BlockBackend, Blocks, BufferError, DeviceIdentity, Extent, GeometryError, IdentityError,
    Memory, Nexus, SanitizeState, SgBuffer, Target,
};

use crate::copy::{CopyRegistry, CopyRequest};
use crate::worker::{BackgroundFuture, CommandFuture, Control, ControlTx, Handler};

/// Why a device's handler could not be made, or its new geometry taken.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The device's name makes no valid identity.
    #[error("device identity: {0}")]
    Identity(#[from] IdentityError),
    /// The backend reports a geometry the target cannot serve.
    #[error("device geometry: {0}")]
    Geometry(#[from] GeometryError),
}

/// The shared region seen as the SCSI target's memory: offsets in, copies out.
#[derive(Debug)]
pub struct RegionMemory<'a>(pub &'a MappedRegion);

impl Memory for RegionMemory<'_> {
    fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        self.0
            .read_bytes(addr, dst)
            .map_err(|_| BufferError::Inaccessible {
                addr,
                len: dst.len() as u64,
            })
    }
    fn write(&self, addr: u64, src: &[u8]) -> Result<(), BufferError> {
        self.0
            .write_bytes(addr, src)
            .map_err(|_| BufferError::Inaccessible {
                addr,
                len: src.len() as u64,
            })
    }
    fn zero(&self, addr: u64, len: u64) -> Result<(), BufferError> {
        self.0
            .fill_bytes(addr, len, 0)
            .map_err(|_| BufferError::Inaccessible { addr, len })
    }
}

/// A serial number stable for a device: derived from its HBA and name, so a
/// restart (or another host serving the same backstore) reports the same
/// VPD identifiers.
pub fn serial_for(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("wt{h:016x}")
}

/// Iovecs a command's future holds without allocating.
const INLINE_IOVS: usize = 4;

/// Executes ring commands through a SCSI [`Target`] over backend `B`.
#[derive(Debug)]
pub struct ScsiHandler<B> {
    target: Rc<Target<B>>,
    /// Where the sanitize state outlives the process, and what it last said.
    sanitize_file: Option<(PathBuf, SanitizeState)>,
    /// This device's entry in the daemon's copy registry.
    copy: Option<crate::copy::Registration>,
}

/// The persisted form of a sanitize state (`None`: idle, no file).
fn sanitize_text(s: SanitizeState) -> Option<String> {
    match s {
        SanitizeState::Idle => None,
        SanitizeState::InProgress { ause, .. } => {
            Some(format!("in-progress ause={}\n", u8::from(ause)))
        }
        SanitizeState::Failed { ause } => Some(format!("failed ause={}\n", u8::from(ause))),
    }
}

fn parse_sanitize(text: &str) -> Option<SanitizeState> {
    let (what, ause) = text.trim().split_once(" ause=")?;
    let ause = match ause {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    match what {
        "in-progress" => Some(SanitizeState::InProgress { progress: 0, ause }),
        "failed" => Some(SanitizeState::Failed { ause }),
        _ => None,
    }
}

/// Same state for persistence (progress does not count).
fn same_kind(a: SanitizeState, b: SanitizeState) -> bool {
    sanitize_text(a) == sanitize_text(b)
}

impl<B: BlockBackend + 'static> ScsiHandler<B> {
    /// A handler for the device identified by `seed` (e.g. `hba/name`).
    /// `transport_max` is the kernel's limit on one command in blocks
    /// (`hw_max_sectors`), when there is a kernel: the LUN advertises and
    /// enforces the smaller of it and the backend's own limit, so every
    /// backstore behind the same attributes answers alike.
    pub fn new(seed: &str, backend: B, transport_max: Option<u32>) -> Result<Self, HandlerError> {
        let identity = DeviceIdentity::new(&serial_for(seed))?;
        let mut target = Target::new(backend, identity)?;
        if let Some(max) = transport_max {
            target = target.limit_transfer(Blocks(u64::from(max)));
        }
        // The worker polls background jobs (SANITIZE with IMMED set).
        target = target.with_background_jobs();
        Ok(Self {
            target: Rc::new(target),
            sanitize_file: None,
            copy: None,
        })
    }

    /// The backend the target runs on.
    pub fn backend(&self) -> &B {
        self.target.backend()
    }

    /// Let EXTENDED COPY reach the devices of `scope` in `registry`, and
    /// make this device reachable from them through `tx`, its worker's
    /// control channel (see `crate::copy`). Call before the worker starts.
    pub fn with_copy(mut self, registry: &CopyRegistry, scope: &str, tx: ControlTx<Self>) -> Self {
        match Rc::try_unwrap(self.target) {
            Ok(t) => {
                let naa = t.identity().naa();
                let info = t.info();
                self.target = Rc::new(t.with_copy_peers(registry.peers(scope)));
                // Another device's copy I/O runs here as a job whose future
                // the worker polls with the commands.
                let post = crate::copy::Post::new(move |req: CopyRequest| {
                    tx.send(Control::Now(Box::new(move |h: &mut Self| {
                        Some(h.copy_io(req))
                    })))
                    .is_ok()
                });
                self.copy = Some(registry.register(naa, scope, post, info));
            }
            // Not reachable: the handler is not shared before its worker runs.
            Err(t) => self.target = t,
        }
        self
    }

    fn copy_geometry_changed(&self) {
        if let Some(r) = &self.copy {
            r.update(self.target.info());
        }
    }

    /// Keep the device's sanitize state in `path`, so that a sanitize the
    /// daemon did not finish (it stopped or crashed) is reported as failed
    /// after a restart (SANITIZE COMMAND FAILED on every medium access
    /// until the initiator sanitizes again), and a failed one stays failed.
    /// Restores what `path` holds now.
    pub fn persist_sanitize(mut self, path: PathBuf) -> Self {
        let mut on_file = SanitizeState::Idle;
        if let Ok(text) = std::fs::read_to_string(&path) {
            match parse_sanitize(&text) {
                Some(state) => {
                    on_file = state;
                    tracing::warn!(file = %path.display(), state = text.trim(),
                        "a sanitize did not complete on this device: it reports SANITIZE COMMAND FAILED until sanitized again");
                    let _ = self.target.restore_sanitize_state(state);
                }
                None => {
                    tracing::error!(file = %path.display(), "unreadable sanitize state ignored: {text:?}")
                }
            }
        }
        // Rewritten if the target's state differs (in progress → failed).
        self.sanitize_file = Some((path, on_file));
        self.save_sanitize_state();
        self
    }

    fn save_sanitize_state(&mut self) {
        let Some((path, last)) = &mut self.sanitize_file else {
            return;
        };
        let now = self.target.sanitize_state();
        if same_kind(now, *last) {
            return;
        }
        let r = match sanitize_text(now) {
            None => match std::fs::remove_file(&*path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Some(text) => {
                let tmp = path.with_extension("tmp");
                path.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&tmp, text))
                    .and_then(|()| std::fs::rename(&tmp, &*path))
            }
        };
        match r {
            Ok(()) => *last = now,
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot save the sanitize state: {e}")
            }
        }
    }
}

impl<B: BlockBackend + 'static> Handler for ScsiHandler<B> {
    fn start(&mut self, region: &Arc<MappedRegion>, cmd: &Command) -> CommandFuture {
        let target = Rc::clone(&self.target);
        let region = Arc::clone(region);
        let mut cdb = [0u8; wasmtap_ring::abi::MAX_CDB_LEN];
        let cdb_len = cmd.cdb().len();
        cdb[..cdb_len].copy_from_slice(cmd.cdb());
        // Most commands have one or two iovecs: keep up to INLINE_IOVS in the
        // future itself and allocate only for more.
        let iovs = cmd.data_iovs();
        let to_extent = |v: &wasmtap_ring::IoVec| Extent {
            addr: v.base,
            len: v.len,
        };
        let mut inline = [Extent::default(); INLINE_IOVS];
        let heap: Vec<Extent> = if iovs.len() <= INLINE_IOVS {
            for (slot, v) in inline.iter_mut().zip(iovs) {
                *slot = to_extent(v);
            }
            Vec::new()
        } else {
            iovs.iter().map(to_extent).collect()
        };
        let n_inline = iovs.len().min(INLINE_IOVS);
        Box::pin(async move {
            let mem = RegionMemory(&region);
            let extents: &[Extent] = if heap.is_empty() {
                &inline[..n_inline]
            } else {
                &heap
            };
            let mut buf = SgBuffer::new(&mem, extents);
            // LIO has one I_T nexus per TCMU device from our point of view:
            // the ring does not say which initiator sent a command.
            target.execute(Nexus(0), &cdb[..cdb_len], &mut buf).await
        })
    }

    fn background(&mut self) -> Option<BackgroundFuture> {
        self.save_sanitize_state();
        if !self.target.background_pending() {
            return None;
        }
        let target = Rc::clone(&self.target);
        Some(Box::pin(async move {
            if let Some(job) = target.background() {
                job.await;
            }
        }))
    }
}

impl<B: BlockBackend + 'static> ScsiHandler<B> {
    /// Serve another device's copy request on this device (see
    /// `crate::copy`): a future the worker polls with its commands, which
    /// answers the request.
    pub fn copy_io(&mut self, req: CopyRequest) -> BackgroundFuture {
        let target = Rc::clone(&self.target);
        Box::pin(async move {
            let r = crate::copy::serve(&*target, req.op).await;
            req.reply.send(r);
        })
    }

    /// The backend's geometry may have changed (a RECONFIG, a hot swap):
    /// re-read it; if the size moved, the target raises CAPACITY DATA HAS
    /// CHANGED on every nexus.
    pub fn refresh(&mut self) -> Result<(), HandlerError> {
        let r = self
            .target
            .refresh_info()
            .map(drop)
            .map_err(HandlerError::from);
        self.copy_geometry_changed();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ramdisk::RamDisk;

    fn handler(file: &std::path::Path) -> ScsiHandler<RamDisk> {
        ScsiHandler::new("t/sanitize", RamDisk::new(512, 2048, 128, false), None)
            .unwrap()
            .persist_sanitize(file.to_path_buf())
    }

    #[test]
    fn an_interrupted_sanitize_is_failed_after_a_restart_and_stays_so() {
        let dir = std::env::temp_dir().join(format!("wasmtap-glue-{}", std::process::id()));
        let file = dir.join("state/0-d.sanitize");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // The daemon stopped during a sanitize with AUSE set.
        std::fs::write(&file, "in-progress ause=1\n").unwrap();
        let h = handler(&file);
        assert_eq!(
            h.target.sanitize_state(),
            SanitizeState::Failed { ause: true }
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "failed ause=1\n");
        drop(h);
        // Next start: still failed.
        let mut h = handler(&file);
        assert_eq!(
            h.target.sanitize_state(),
            SanitizeState::Failed { ause: true }
        );
        // EXIT FAILURE MODE (allowed: AUSE was set) clears it, and the file.
        let exit = [0x48, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0];
        let done =
            wasmtap_scsi::testing::block_on(h.target.execute(Nexus(0), &exit, &mut Vec::new()));
        // The first command reports the power-on attention; run it again.
        let done = if done.status != wasmtap_scsi::Status::Good {
            wasmtap_scsi::testing::block_on(h.target.execute(Nexus(0), &exit, &mut Vec::new()))
        } else {
            done
        };
        assert_eq!(
            done.status,
            wasmtap_scsi::Status::Good,
            "{:02x?}",
            done.sense()
        );
        assert!(h.background().is_none());
        assert!(!file.exists());
        // A garbled file is ignored (and said so), not trusted.
        std::fs::write(&file, "sanitized, honest\n").unwrap();
        let h = handler(&file);
        assert_eq!(h.target.sanitize_state(), SanitizeState::Idle);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

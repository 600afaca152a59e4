//! Between the ring and the SCSI target: the TCMU region as the target's
//! [`Memory`], a command's iovecs as its scatter/gather list, and the
//! target's [`Completion`] as a ring response.

use std::rc::Rc;
use std::sync::Arc;

use wasmtap_kernel::MappedRegion;
use wasmtap_ring::{Command, SharedRegion};
use wasmtap_scsi::{
    BlockBackend, Blocks, BufferError, DeviceIdentity, Extent, Memory, Nexus, SgBuffer, Target,
};

use crate::worker::{CommandFuture, Handler, Outcome};

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
}

impl<B: BlockBackend> ScsiHandler<B> {
    /// A handler for the device identified by `seed` (e.g. `hba/name`).
    /// `transport_max` is the kernel's limit on one command in blocks
    /// (`hw_max_sectors`), when there is a kernel: the LUN advertises and
    /// enforces the smaller of it and the backend's own limit, so every
    /// backstore behind the same attributes answers alike.
    pub fn new(seed: &str, backend: B, transport_max: Option<u32>) -> Result<Self, String> {
        let identity = DeviceIdentity::new(&serial_for(seed)).map_err(|e| e.to_string())?;
        let mut target =
            Target::new(backend, identity).map_err(|e| format!("device geometry: {e}"))?;
        if let Some(max) = transport_max {
            target = target.limit_transfer(Blocks(u64::from(max)));
        }
        Ok(Self {
            target: Rc::new(target),
        })
    }
}

/// What a worker can ask of its backend besides I/O: the kernel's RECONFIG
/// (geometry changed at run time), a hot swap, the debug text.
pub trait Reconfigurable {
    /// Apply a new size in bytes and/or write-cache mode.
    fn reconfigure(&self, size: Option<u64>, write_cache: Option<bool>) -> Result<(), String>;
    /// Replace the WebAssembly instance behind the device (no command is in
    /// flight when this is called).
    fn swap(&self, _backend: Box<wasmtap_runtime::WasmBackend>) -> Result<(), String> {
        Err("this device's backend cannot be swapped".into())
    }
    /// The backend's debug text.
    fn debug(&self) -> Result<String, String> {
        Err("this backend has no debug output".into())
    }
}

impl Reconfigurable for crate::ramdisk::RamDisk {
    fn reconfigure(&self, size: Option<u64>, write_cache: Option<bool>) -> Result<(), String> {
        crate::ramdisk::RamDisk::reconfigure(self, size, write_cache)
    }
}

impl<B: BlockBackend + Reconfigurable + 'static> Handler for ScsiHandler<B> {
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
        let buf_len = cmd.data_len();
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
            let done = target.execute(Nexus(0), &cdb[..cdb_len], &mut buf).await;
            outcome(&done, buf_len)
        })
    }

    fn swap(&mut self, backend: Box<wasmtap_runtime::WasmBackend>) -> Result<(), String> {
        self.target.backend().swap(backend)?;
        // Same geometry in the usual case; a new module reporting another
        // size raises CAPACITY DATA HAS CHANGED, as a resize does.
        self.target
            .refresh_info()
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn debug(&mut self) -> Result<String, String> {
        self.target.backend().debug()
    }

    fn reconfigure(&mut self, size: Option<u64>, write_cache: Option<bool>) -> Result<(), String> {
        self.target.backend().reconfigure(size, write_cache)?;
        // Raises CAPACITY DATA HAS CHANGED on every nexus if the size moved.
        self.target
            .refresh_info()
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// A target completion as a ring response.
fn outcome(done: &wasmtap_scsi::Completion, buf_len: u64) -> Outcome {
    let mut sense = [0u8; 96];
    let s = done.sense();
    let sense_len = s.len().min(96);
    sense[..sense_len].copy_from_slice(&s[..sense_len]);
    // Report a residual only for data-in that came up short. The kernel
    // honours READ_LEN only for data-in commands and only when it is
    // non-zero (tcmu_handle_completion), so a zero-length transfer cannot
    // be expressed on the ring and is reported as a full one.
    let read_len =
        (done.data_in_len > 0 && done.data_in_len < buf_len).then_some(done.data_in_len as u32);
    Outcome {
        status: done.status as u8,
        sense,
        sense_len,
        read_len,
    }
}

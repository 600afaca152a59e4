//! The backend of a device whose backstore cannot run (module missing or
//! refused, configuration rejected): it keeps the LUN answering instead of
//! leaving the kernel's commands unanswered. INQUIRY, READ CAPACITY and the
//! like work from the device's geometry; every I/O fails with NOT READY,
//! MANUAL INTERVENTION REQUIRED, and the reason is in the daemon's log.

use wasmtap_scsi::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, Blocks, BufMut, BufRef, DiskInfo,
    Lba,
};

/// See the module docs.
#[derive(Debug)]
pub struct OfflineDisk {
    info: DiskInfo,
    /// Why the device is offline.
    pub reason: String,
}

impl OfflineDisk {
    /// An offline disk with LIO's geometry for the device.
    pub fn new(block_size: u32, block_count: u64, reason: String) -> Self {
        Self {
            info: DiskInfo::simple(block_size, block_count.max(1)),
            reason,
        }
    }
}

fn offline() -> BackendError {
    BackendError::new(BackendErrorKind::Offline)
}

impl BlockBackend for OfflineDisk {
    fn info(&self) -> DiskInfo {
        self.info
    }
    async fn read(&self, _lba: Lba, _dst: BufMut<'_>) -> BackendResult {
        Err(offline())
    }
    async fn write(&self, _lba: Lba, _src: BufRef<'_>, _fua: bool) -> BackendResult {
        Err(offline())
    }
    async fn flush(&self) -> BackendResult {
        Err(offline())
    }
    async fn discard(&self, _lba: Lba, _blocks: Blocks) -> BackendResult {
        Err(offline())
    }
    async fn write_zeroes(&self, _lba: Lba, _blocks: Blocks, _may_unmap: bool) -> BackendResult {
        Err(offline())
    }
    async fn block_status(
        &self,
        _lba: Lba,
        _blocks: Blocks,
    ) -> Result<Vec<wasmtap_scsi::BlockExtent>, wasmtap_scsi::BackendError> {
        Err(offline())
    }
}

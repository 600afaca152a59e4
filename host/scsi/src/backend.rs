//! The block backend seam: what the SCSI target asks of whatever stores the
//! blocks (the daemon's native RAM disk, the WebAssembly runtime; in tests
//! `testing::MemBackend`, feature `test-utils`).
//!
//! Every operation returns a future, so the target can keep many commands in
//! flight on one worker without a runtime of its own. The futures are not
//! required to be `Send`: a device's target and backend live on that device's
//! worker thread, and no lock is shared between devices (`docs/daemon.md`).

use std::future::Future;

use crate::buffer::{BufMut, BufRef, BufferError};
use crate::units::{Blocks, Lba};

/// Whether the device has a volatile write cache (reported as WCE in the
/// caching mode page, SBC-3 6.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCache {
    /// Writes may sit in a volatile cache until SYNCHRONIZE CACHE (WCE=1).
    WriteBack,
    /// Every write is durable when it completes (WCE=0).
    WriteThrough,
}

/// Discard (unmap) capabilities, reported in the Block Limits and Logical
/// Block Provisioning VPD pages and READ CAPACITY (16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscardInfo {
    /// Optimal unmap granularity in blocks (at least 1).
    pub granularity: Blocks,
    /// LBA of the first block aligned to the granularity.
    pub alignment: Lba,
    /// Largest number of blocks in one UNMAP command.
    pub max_blocks: u32,
    /// Largest number of descriptors in one UNMAP parameter list.
    pub max_descriptors: u32,
    /// Discarded blocks read back as zeros (LBPRZ).
    pub zeroes: bool,
}

/// Geometry and capabilities of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    /// Logical block size in bytes: a power of two, 512 to 65536.
    pub block_size: u32,
    /// Number of logical blocks.
    pub block_count: Blocks,
    /// Logical blocks per physical block as a power of two (0: equal),
    /// 0 to 15. LBA 0 starts a physical block (LOWEST ALIGNED LOGICAL BLOCK
    /// ADDRESS 0).
    pub physical_exponent: u8,
    /// Largest transfer the backend accepts in one request (at least 1).
    pub max_transfer: Blocks,
    /// Preferred transfer size (0: not reported).
    pub optimal_transfer: Blocks,
    /// Discard support, `None` when the backend cannot discard.
    pub discard: Option<DiscardInfo>,
    /// Write-cache mode at attach time (MODE SELECT may change WCE later).
    pub write_cache: WriteCache,
    /// The device refuses writes (DATA PROTECT / WRITE PROTECTED).
    pub read_only: bool,
}

/// Why geometry from a backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Block size not a power of two in 512..=65536.
    #[error("block size {0} is not a power of two between 512 and 65536")]
    BlockSize(u32),
    /// max_transfer of zero, or above what the CDBs can express.
    #[error("maximum transfer {0} blocks is not in 1..=4294967295")]
    MaxTransfer(u64),
    /// Block count so large that the last byte is not addressable.
    #[error("{0} blocks of the given size overflow a 64-bit byte offset")]
    Capacity(u64),
    /// Discard granularity zero.
    #[error("discard granularity must be at least one block")]
    DiscardGranularity,
    /// Logical blocks per physical block exponent above 15, what the
    /// four-bit field of READ CAPACITY (16) can carry.
    #[error("physical block exponent {0} is above 15")]
    PhysicalExponent(u8),
    /// max_transfer smaller than one physical block.
    #[error("maximum transfer {max} blocks is less than one physical block ({physical} blocks)")]
    MaxTransferBelowPhysical {
        /// max_transfer, in logical blocks.
        max: u64,
        /// Logical blocks per physical block.
        physical: u64,
    },
    /// No discard granule starts on a physical block boundary, so every
    /// unmap unit straddles physical blocks.
    #[error(
        "discard alignment {alignment} with granularity {granularity} never starts a physical block ({physical} blocks)"
    )]
    DiscardAlignment {
        /// DiscardInfo::alignment.
        alignment: u64,
        /// DiscardInfo::granularity.
        granularity: u64,
        /// Logical blocks per physical block.
        physical: u64,
    },
}

impl DiscardInfo {
    /// Granularity and alignment widened to whole physical blocks of
    /// `physical` logical blocks (a power of two): the least common
    /// multiple of the granularity and the physical block, and the lowest
    /// LBA that starts both a granule (`alignment` modulo `granularity`)
    /// and a physical block. `None` when no granule starts a physical
    /// block. With `physical` 1 this is the granularity and the alignment
    /// reduced modulo it.
    pub fn physical_granule(&self, physical: u64) -> Option<(u64, u64)> {
        let g = u128::from(self.granularity.0.max(1));
        let p = u128::from(physical.max(1));
        // gcd of g and a power of two: the power of two g is divisible by.
        let gcd = 1u128
            << self
                .granularity
                .0
                .max(1)
                .trailing_zeros()
                .min(p.trailing_zeros());
        let lcm = g / gcd * p;
        let mut x = u128::from(self.alignment.0) % g;
        for _ in 0..p / gcd {
            if x % p == 0 {
                let sat = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
                return Some((sat(lcm), sat(x)));
            }
            x += g;
        }
        None
    }
}

impl DiskInfo {
    /// A writable, write-back disk without discard; handy for tests.
    pub fn simple(block_size: u32, block_count: u64) -> Self {
        Self {
            block_size,
            block_count: Blocks(block_count),
            physical_exponent: 0,
            max_transfer: Blocks(1024),
            optimal_transfer: Blocks(0),
            discard: None,
            write_cache: WriteCache::WriteBack,
            read_only: false,
        }
    }

    /// Check the values the target relies on.
    pub fn validate(&self) -> Result<(), GeometryError> {
        if !self.block_size.is_power_of_two() || !(512..=65536).contains(&self.block_size) {
            return Err(GeometryError::BlockSize(self.block_size));
        }
        if self.max_transfer.0 == 0 || self.max_transfer.0 > u64::from(u32::MAX) {
            return Err(GeometryError::MaxTransfer(self.max_transfer.0));
        }
        if self.block_count.bytes(self.block_size).is_none() {
            return Err(GeometryError::Capacity(self.block_count.0));
        }
        if matches!(self.discard, Some(d) if d.granularity.0 == 0) {
            return Err(GeometryError::DiscardGranularity);
        }
        if self.physical_exponent > 15 {
            return Err(GeometryError::PhysicalExponent(self.physical_exponent));
        }
        let physical = self.physical_blocks();
        if self.max_transfer.0 < physical {
            return Err(GeometryError::MaxTransferBelowPhysical {
                max: self.max_transfer.0,
                physical,
            });
        }
        if let Some(d) = self.discard
            && d.physical_granule(physical).is_none()
        {
            return Err(GeometryError::DiscardAlignment {
                alignment: d.alignment.0,
                granularity: d.granularity.0,
                physical,
            });
        }
        Ok(())
    }

    /// Logical blocks per physical block: 2 ^ `physical_exponent`.
    pub fn physical_blocks(&self) -> u64 {
        1 << self.physical_exponent.min(15)
    }
}

/// The operation a backend error happened in; part of the sense mapping
/// (a medium error while reading is UNRECOVERED READ ERROR, while writing
/// WRITE ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendOp {
    /// `read` (also the read-back of VERIFY and COMPARE AND WRITE).
    Read,
    /// `write`.
    Write,
    /// `flush`.
    Flush,
    /// `discard`.
    Discard,
    /// `write_zeroes`.
    WriteZeroes,
    /// `block_status` (GET LBA STATUS), including an answer the target
    /// found malformed.
    BlockStatus,
}

/// What went wrong in a backend, as a small matchable kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The medium could not be read or written (an I/O error underneath).
    Medium,
    /// A thin-provisioned backend ran out of space.
    NoSpace,
    /// The backend refuses writes.
    ReadOnly,
    /// The request lies outside the backend (it shrank under the target).
    OutOfRange,
    /// The backend does not implement the operation it was asked for.
    Unsupported,
    /// The backend is temporarily unavailable (restarting); retry later.
    Unavailable,
    /// The backend has failed for good and needs an operator (a backstore
    /// that kept crashing); retrying will not help.
    Offline,
    /// The backend failed in a way that says nothing about the medium
    /// (a trapped guest, a broken protocol).
    Internal,
    /// The request was cancelled (task management, shutdown).
    Aborted,
    /// Copying to or from the command's data buffer failed.
    Buffer,
}

/// A backend failure: a kind plus the first failing block if known (it goes
/// into the sense INFORMATION field, SBC-3 4.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("backend error {kind:?}{}", .lba.map(|l| format!(" at {l}")).unwrap_or_default())]
pub struct BackendError {
    /// What went wrong.
    pub kind: BackendErrorKind,
    /// First block that failed, if the backend knows it.
    pub lba: Option<Lba>,
}

impl BackendError {
    /// An error of `kind` with no block address.
    pub fn new(kind: BackendErrorKind) -> Self {
        Self { kind, lba: None }
    }
    /// An error of `kind` at `lba`.
    pub fn at(kind: BackendErrorKind, lba: Lba) -> Self {
        Self {
            kind,
            lba: Some(lba),
        }
    }
}

impl From<BufferError> for BackendError {
    fn from(_: BufferError) -> Self {
        Self::new(BackendErrorKind::Buffer)
    }
}

/// Result of a backend operation.
pub type BackendResult = Result<(), BackendError>;

/// What a range of blocks holds, as far as provisioning goes: the answer
/// of [`BlockBackend::block_status`] (in the manner of tapdisk's
/// `td_queue_block_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockState {
    /// Allocated, holding data (or the backend cannot tell).
    Mapped,
    /// Deallocated (a hole): discarded or never written.
    Deallocated,
    /// Allocated and known to read as zeros (written zeroes without
    /// unmapping). Reported as mapped: SBC-3 has no separate status for it.
    Zero,
}

/// A contiguous run of blocks in one [`BlockState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockExtent {
    /// First block of the run.
    pub lba: Lba,
    /// Length of the run (at least 1).
    pub blocks: Blocks,
    /// What the run holds.
    pub state: BlockState,
}

/// The storage under a SCSI logical unit.
///
/// The target validates every request against [`DiskInfo`] first: ranges are
/// inside the device, transfers are at most `max_transfer` blocks, discards
/// only reach a backend that reported [`DiscardInfo`], writes never reach a
/// read-only one. A view's length is always `blocks * block_size`.
pub trait BlockBackend {
    /// Current geometry and capabilities. Called at attach and when the
    /// owner asks the target to re-read it after a resize.
    fn info(&self) -> DiskInfo;

    /// Fill `dst` with the blocks starting at `lba`.
    fn read(&self, lba: Lba, dst: BufMut<'_>) -> impl Future<Output = BackendResult>;

    /// Store `src` at `lba`. With `fua` the data must be durable when the
    /// future completes (FUA, or any write while WCE is 0).
    fn write(&self, lba: Lba, src: BufRef<'_>, fua: bool) -> impl Future<Output = BackendResult>;

    /// Make every completed write durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> impl Future<Output = BackendResult>;

    /// Deallocate `blocks` blocks at `lba` (UNMAP). Afterwards they read as
    /// zeros if [`DiscardInfo::zeroes`], otherwise as anything.
    fn discard(&self, lba: Lba, blocks: Blocks) -> impl Future<Output = BackendResult>;

    /// Make `blocks` blocks at `lba` read as zeros. With `may_unmap` the
    /// backend may deallocate them instead of writing (WRITE SAME with UNMAP).
    fn write_zeroes(
        &self,
        lba: Lba,
        blocks: Blocks,
        may_unmap: bool,
    ) -> impl Future<Output = BackendResult>;

    /// Provisioning status of the blocks from `lba` on (GET LBA STATUS):
    /// contiguous extents, the first starting at `lba`, each at least one
    /// block long, together covering at most `blocks` blocks. Covering
    /// fewer is fine (the target asks again from where the answer ended,
    /// or stops); an answer breaking these rules fails the command with
    /// HARDWARE ERROR, it is never passed on.
    ///
    /// The target asks with `blocks >= 1` and `lba + blocks` inside the
    /// device. [`BlockState::Deallocated`] is reported to the initiator
    /// only when the backend offers [`DiscardInfo`] (thin provisioning,
    /// LBPME = 1); otherwise it is reported as mapped.
    ///
    /// The default answers one [`BlockState::Mapped`] extent for the whole
    /// range, which SBC-3 reads as "mapped or unknown": right for every
    /// backend that does not track allocation.
    fn block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> impl Future<Output = Result<Vec<BlockExtent>, BackendError>> {
        std::future::ready(Ok(vec![BlockExtent {
            lba,
            blocks,
            state: BlockState::Mapped,
        }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_unusable_geometry() {
        assert!(DiskInfo::simple(512, 100).validate().is_ok());
        assert_eq!(
            DiskInfo::simple(520, 1).validate(),
            Err(GeometryError::BlockSize(520))
        );
        assert_eq!(
            DiskInfo::simple(256, 1).validate(),
            Err(GeometryError::BlockSize(256))
        );
        let mut i = DiskInfo::simple(4096, u64::MAX / 1024);
        assert!(matches!(i.validate(), Err(GeometryError::Capacity(_))));
        i = DiskInfo::simple(512, 8);
        i.max_transfer = Blocks(0);
        assert_eq!(i.validate(), Err(GeometryError::MaxTransfer(0)));
        i = DiskInfo::simple(512, 8);
        i.discard = Some(DiscardInfo {
            granularity: Blocks(0),
            alignment: Lba(0),
            max_blocks: 1,
            max_descriptors: 1,
            zeroes: true,
        });
        assert_eq!(i.validate(), Err(GeometryError::DiscardGranularity));
    }

    fn discard(granularity: u64, alignment: u64) -> DiscardInfo {
        DiscardInfo {
            granularity: Blocks(granularity),
            alignment: Lba(alignment),
            max_blocks: 1,
            max_descriptors: 1,
            zeroes: true,
        }
    }

    #[test]
    fn validate_rejects_unusable_physical_blocks() {
        let mut i = DiskInfo::simple(512, 1 << 20);
        i.max_transfer = Blocks(1 << 15);
        i.physical_exponent = 15;
        assert!(i.validate().is_ok());
        assert_eq!(i.physical_blocks(), 1 << 15);
        i.physical_exponent = 16;
        assert_eq!(i.validate(), Err(GeometryError::PhysicalExponent(16)));
        // 512e (eight 512-byte blocks per 4096-byte physical block) with a
        // backend that takes at most four blocks per request.
        i = DiskInfo::simple(512, 64);
        i.physical_exponent = 3;
        i.max_transfer = Blocks(4);
        assert_eq!(
            i.validate(),
            Err(GeometryError::MaxTransferBelowPhysical {
                max: 4,
                physical: 8
            })
        );
        i.max_transfer = Blocks(8);
        assert!(i.validate().is_ok());
        // Granules of 8 starting at LBA 3 never start a physical block.
        i.discard = Some(discard(8, 3));
        assert_eq!(
            i.validate(),
            Err(GeometryError::DiscardAlignment {
                alignment: 3,
                granularity: 8,
                physical: 8
            })
        );
        // Any single-block granularity can be widened.
        i.discard = Some(discard(1, 5));
        assert!(i.validate().is_ok());
    }

    #[test]
    fn discard_granule_is_widened_to_whole_physical_blocks() {
        // (granularity, alignment, physical) -> (granularity, alignment).
        let cases = [
            ((8, 0, 1), Some((8, 0))),
            ((8, 11, 1), Some((8, 3))),
            ((1, 0, 8), Some((8, 0))),
            ((1, 5, 8), Some((8, 0))),
            ((8, 0, 8), Some((8, 0))),
            ((16, 8, 8), Some((16, 8))),
            // lcm(12, 8) = 24; 16 is 4 modulo 12 and a multiple of 8.
            ((12, 4, 8), Some((24, 16))),
            ((3, 1, 4), Some((12, 4))),
            ((8, 3, 8), None),
            ((12, 2, 8), None),
        ];
        for ((g, a, p), want) in cases {
            assert_eq!(discard(g, a).physical_granule(p), want, "{g} {a} {p}");
        }
    }
}

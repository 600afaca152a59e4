//! SCSI target emulation for wasmtap: CDB in, status + sense + data-in out.
//!
//! This crate is the SCSI logical unit between a transport (the TCMU ring
//! engine, later NBD) and a block backend (a WebAssembly backstore). It
//! knows nothing of either: it performs no I/O, contains no `unsafe`, and
//! runs on any executor because every backend call is a future.
//!
//! ```text
//!  transport ──cdb, DataBuffer──▶ Target::execute ──▶ BlockBackend (read/write/
//!      ▲                              │               flush/discard/write_zeroes/
//!      │                              │               block_status)
//!      └──── Completion (status, sense, data_in_len) ◀┘
//! ```
//!
//! * [`buffer`]: the command's data buffer ([`DataBuffer`]), scatter/gather
//!   over a transport's memory ([`SgBuffer`] + [`Memory`]), and the
//!   sub-range views backends receive ([`BufRef`], [`BufMut`]).
//! * [`backend`]: the [`BlockBackend`] seam and [`DiskInfo`] geometry.
//! * [`cdb`]: CDB parsing in two steps, opcode table then typed [`Command`].
//! * [`sense`]: status, sense formats, and the one table from
//!   [`CommandError`] to sense key / ASC / ASCQ.
//! * [`target`]: [`Target`], which runs commands, keeps unit attentions per
//!   nexus, the WCE bit, range locks for COMPARE AND WRITE, ORWRITE and
//!   WRITE ATOMIC, and the sanitize state (with IMMED sanitize handed to
//!   the transport as a background future, [`Target::background`]).
//! * [`xcopy`]: EXTENDED COPY(LID1) and the RECEIVE COPY commands, with the
//!   [`CopyPeers`] seam through which a transport lets copies reach its
//!   other logical units.
//! * `testing` (feature `test-utils`, for tests and fuzzing only): an
//!   in-memory backend and a tiny executor.
//!
//! The standard sections each behaviour follows are cited next to the code.
//! See `docs/scsi.md` in the repository for the design notes and the list
//! of supported commands.
//!
//! # Example
//! ```
//! use wasmtap_scsi::{DeviceIdentity, Nexus, Status, Target};
//! use wasmtap_scsi::testing::{MemBackend, block_on};
//!
//! let target = Target::new(MemBackend::with_discard(2048), DeviceIdentity::new("sn0").unwrap()).unwrap();
//! let mut buf = vec![0u8; 8];
//! // The first command of a nexus reports POWER ON, RESET.
//! let tur = [0u8; 6];
//! assert_eq!(block_on(target.execute(Nexus(0), &tur, &mut buf)).status, Status::CheckCondition);
//! // READ CAPACITY (10): last LBA 2047, 512-byte blocks.
//! let c = block_on(target.execute(Nexus(0), &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut buf));
//! assert_eq!(c.status, Status::Good);
//! assert_eq!(buf, [0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00]);
//! ```

pub mod backend;
pub mod buffer;
pub mod cdb;
pub mod identity;
mod lock;
pub mod pages;
pub mod sense;
pub mod target;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod units;
pub mod xcopy;

pub use backend::{
    BackendError, BackendErrorKind, BackendOp, BackendResult, BlockBackend, BlockExtent,
    BlockState, DiscardInfo, DiskInfo, GeometryError, WriteCache,
};
pub use buffer::{BufMut, BufRef, BufferError, DataBuffer, Extent, Memory, SgBuffer};
pub use cdb::{Command, IoKind};
pub use identity::{DeviceIdentity, IdentityError};
pub use sense::{CommandError, Sense, SenseBytes, SenseFormat, SenseKey, Status};
pub use target::{Completion, Nexus, SanitizeBusy, SanitizeState, Target};
pub use units::{Blocks, Bytes, Lba};
pub use xcopy::{CopyIo, CopyLun, CopyPeers};

#[cfg(test)]
mod tests;

//! The TCMU command-ring engine for wasmtap.
//!
//! Pure protocol code: it knows the layout of the shared region the kernel's
//! `target_core_user` module maps to user space (mailbox, command ring, data
//! area) and the rules for consuming and answering entries, and nothing else.
//! It performs no I/O, contains no `unsafe`, and reaches shared memory only
//! through the bounds-checked [`SharedRegion`] trait.
//!
//! * [`abi`]: offsets, sizes and constants of the kernel ABI, pinned by
//!   compile-time asserts against a transcription of the C structs.
//! * [`region`]: the [`SharedRegion`] trait, scatter/gather over a command's
//!   iovecs, and a heap-backed double for tests and fuzzing.
//! * [`engine`]: [`Ring`], which drains entries, hands out [`Command`]s and
//!   TMR notifications, writes responses (in order, or out of order by slot
//!   stealing when the kernel offers `CAP_OOOC`) and publishes `cmd_tail`.
//!
//! See `docs/ring.md` in the repository for the reasoning behind the design.

pub mod abi;
pub mod engine;
pub mod region;

pub use engine::{
    Command, CorruptReason, Drained, Entry, Response, Ring, RingError, RingStats, TaskManagement,
};
pub use region::{HeapRegion, IoVec, RegionError, SharedRegion};

#[cfg(any(test, feature = "test-utils"))]
pub mod sim;

//! The wasmtap daemon as a library: what `wasmtap serve` and `wasmtap lun`
//! are made of, so integration tests can drive the same code.
//!
//! * [`worker`]: one thread per device: drain the ring, execute through a
//!   [`worker::Handler`], complete, publish once per batch.
//! * [`glue`]: the handler that runs commands through the SCSI target, with
//!   the TCMU region as the target's memory.
//! * [`ramdisk`]: the native sparse RAM disk backend.
//! * [`serve`]: device discovery (UIO scan), worker lifecycle, signals.
//! * [`demo`]: the simulator frontend with a built-in, verifying initiator.
//! * [`check`]: `wasmtap check`, a conformance battery for a module.
//! * [`lun`], [`config`]: `wasmtap lun create|delete` and configuration.
//! * [`scaffold`]: `wasmtap new`, a backstore crate from the template.

pub mod attach;
pub mod backstore;
pub mod bench;
pub mod check;
pub mod config;
pub mod control;
pub mod copy;
pub mod demo;
pub mod filedisk;
pub mod glue;
pub mod lun;
pub mod managed;
pub mod offline;
pub mod ramdisk;
pub mod scaffold;
pub mod serve;
pub mod worker;

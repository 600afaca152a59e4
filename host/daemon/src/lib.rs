//! The wasmtap daemon as a library: what `wasmtap serve` and `wasmtap lun`
//! are made of, so integration tests can drive the same code.
//!
//! The data path, in the order a command meets it (`docs/read-path.md`
//! walks one READ through it):
//!
//! * [`attach`]: a kernel TCMU device opened for serving (region, doorbell,
//!   ring reset).
//! * [`worker`]: one thread per device ([`worker::spawn`]): drain the ring,
//!   start each command through a [`worker::Handler`], complete, publish;
//!   control-plane requests arrive as jobs on its control channel.
//! * [`handler`]: the handler that runs commands through the SCSI target,
//!   with the TCMU region as the target's memory.
//! * [`device`]: the backend of every device (a hot-swappable WebAssembly
//!   instance, the native RAM disk, or an offline disk) and what the control
//!   plane asks of a device.
//! * [`backstore`]: modules and instances of WebAssembly backstores;
//!   [`ramdisk`], [`offline`]: the native backends.
//! * [`copy`]: EXTENDED COPY between devices of this daemon.
//!
//! Around it:
//!
//! * [`serve`]: `wasmtap serve` — configfs LUNs (UIO scan, netlink), the
//!   control plane and web UI, signals.
//! * [`control`]: the control plane's devices (`wasmtap_web::host::Host`).
//! * [`demo`]: the simulator frontend with a built-in, verifying initiator.
//! * [`check`]: `wasmtap check`, a conformance battery for a module.
//! * [`bench`], [`filedisk`]: `wasmtap bench` on the simulator.
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
pub mod device;
pub mod filedisk;
pub mod handler;
pub mod lun;
pub mod offline;
pub mod ramdisk;
pub mod scaffold;
pub mod serve;
pub mod worker;

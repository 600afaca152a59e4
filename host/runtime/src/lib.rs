//! The WebAssembly backstore runtime: one wasmtime [`Engine`](wasmtime::Engine)
//! for the daemon, loading and caching of uploaded components, and
//! [`WasmBackend`], a [`BlockBackend`](wasmtap_scsi::BlockBackend) that runs
//! one device's backstore in its own sandboxed store.
//!
//! The pieces, in the order a device meets them:
//! - [`Runtime::new`] builds the engine (pooling allocator, epoch
//!   interruption with a ticker thread, no guest threads), the I/O executor
//!   and the supervisor that times out requests.
//! - [`Runtime::load`] validates an uploaded component against the
//!   `wasmtap:backstore` world and refuses it with a [`LoadError`] that names
//!   the reason; compiled code is cached by content hash.
//! - [`Runtime::open`] creates a [`WasmBackend`] for a device: a store with
//!   its own memory limit, charged to its tenant's budget, a storage
//!   directory, and the device's TCMU region for zero-copy I/O.
//! - [`WasmBackend`] turns block requests into `request` resources, calls the
//!   guest, waits for its `complete` and for every host I/O of the request,
//!   and contains failures: a trapped, stuck or misbehaving guest loses only
//!   its own instance, which is re-created with backoff (see
//!   [`BackendStatus`]).
//!
//! docs/runtime.md explains the policy and why.

mod backend;
pub mod bindings;
mod config;
mod engine;
mod extents;
mod host;
mod io;
mod limits;
mod load;
mod log;
mod quota;
mod request;
mod wasi;

pub use backend::{
    BackendState, BackendStatus, DeviceResources, MAX_DEBUG, OpenError, ResourceMeter, WasmBackend,
};
pub use config::{InstanceLimits, InstanceSpec, RestartPolicy, RuntimeConfig, StorageLimits};
pub use engine::RESERVED_FDS;
pub use engine::Runtime;
pub use limits::{Budget, Tenant, TenantLimits, TenantUsage};
pub use load::{LoadError, LoadLimits, Module};
pub use log::{GuestLog, LogLine};

//! The one `bindgen!` for the `wasmtap:backstore/backstore` world.
//!
//! Every import is `trappable`: a host function returns
//! `wasmtime::Result<_>`, and an `Err` traps the guest. That is how a broken
//! protocol (a request dropped without completion, an exhausted host-call
//! budget) takes its instance down, kept apart from the WIT-level
//! `error-code` results that a well-behaved guest handles itself.

wasmtime::component::bindgen!({
    world: "backstore",
    path: "../../wit",
    imports: { default: trappable },
    with: {
        "wasmtap:backstore/storage.file": crate::host::FileRes,
        "wasmtap:backstore/requests.request": crate::request::RequestRes,
    },
});

pub use exports::wasmtap::backstore::driver;
pub use wasmtap::backstore::{log, requests, storage, types};

/// The interface a component must export, with its version.
pub const DRIVER_EXPORT: &str = "wasmtap:backstore/driver@0.1.0";

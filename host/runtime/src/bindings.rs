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
pub const DRIVER_EXPORT: &str = "wasmtap:backstore/driver@0.1.1";

/// The optional interface a component may export, with its version.
pub const BLOCK_STATUS_EXPORT: &str = "wasmtap:backstore/block-status@0.1.1";

use exports::wasmtap::backstore::block_status;
use wasmtime::component::{InstancePre, ResourceAny};

use crate::host::DeviceState;

/// A pre-linked backstore. The world's generated `BackstorePre` would
/// require every export; this requires the driver and takes the optional
/// interfaces (0.1.1's `block-status`) when the component has them, so
/// 0.1.0 components keep running.
pub(crate) struct LinkedPre {
    pre: InstancePre<DeviceState>,
    driver: driver::GuestIndices,
    block_status: Option<block_status::GuestIndices>,
}

impl LinkedPre {
    /// Check the exports of a pre-linked component: the driver must match
    /// the host's contract; an optional interface, if exported, must too.
    pub(crate) fn new(pre: InstancePre<DeviceState>) -> wasmtime::Result<Self> {
        let driver = driver::GuestIndices::new(&pre)?;
        let exported = pre
            .component()
            .get_export_index(None, BLOCK_STATUS_EXPORT)
            .is_some();
        let block_status = if exported {
            Some(block_status::GuestIndices::new(&pre)?)
        } else {
            None
        };
        Ok(Self {
            pre,
            driver,
            block_status,
        })
    }

    /// A new instance in `store`.
    pub(crate) fn instantiate(
        &self,
        store: &mut wasmtime::Store<DeviceState>,
    ) -> wasmtime::Result<Linked> {
        let instance = self.pre.instantiate(&mut *store)?;
        let driver = self.driver.load(&mut *store, &instance)?;
        let block_status = match &self.block_status {
            Some(i) => Some(i.load(&mut *store, &instance)?),
            None => None,
        };
        Ok(Linked {
            driver,
            block_status,
        })
    }
}

/// An instance's exports.
pub(crate) struct Linked {
    driver: driver::Guest,
    block_status: Option<block_status::Guest>,
}

impl Linked {
    /// The driver interface.
    pub(crate) fn wasmtap_backstore_driver(&self) -> &driver::Guest {
        &self.driver
    }

    /// `block-status.query`, if the component exports it.
    pub(crate) fn query_block_status(
        &self,
        store: &mut wasmtime::Store<DeviceState>,
        disk: ResourceAny,
        offset: u64,
        len: u64,
    ) -> Option<wasmtime::Result<Result<Vec<types::BlockExtent>, types::ErrorCode>>> {
        self.block_status
            .as_ref()
            .map(|b| b.call_query(store, disk, offset, len))
    }
}

//! Attaching to a kernel TCMU device: what a worker needs before it can
//! serve a UIO device, for configfs LUNs (`crate::serve`) and control-plane
//! exports (`crate::control`) alike.
//!
//! The region and doorbell come from the UIO device; the geometry from the
//! backstore's configfs attributes. A ring left non-empty by a previous
//! daemon (a crash, a kill -9) may hold half-written responses, so it is
//! reset through configfs first: the kernel fails those commands as
//! retryable and the worker starts from an empty ring.

use std::sync::Arc;

use wasmtap_kernel::MappedRegion;
use wasmtap_kernel::configfs::{self, ConfigfsError, DeviceAttrs};
use wasmtap_kernel::uio::{self, UioDevice, UioError, UioHandle};
use wasmtap_ring::abi::mailbox;
use wasmtap_ring::{RegionError, Ring, RingError, SharedRegion};

use crate::config::ServeConfig;

/// Why a device could not be opened for serving.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Its configfs attributes could not be read.
    #[error("configfs attributes: {0}")]
    Attributes(#[source] ConfigfsError),
    /// The UIO device could not be opened or mapped.
    #[error("{0}")]
    Uio(#[from] UioError),
    /// The ring's mailbox could not be read.
    #[error("ring mailbox: {0}")]
    Mailbox(#[from] RegionError),
    /// A ring left non-empty could not be reset.
    #[error("resetting the ring: {0}")]
    Reset(#[source] ConfigfsError),
    /// The ring engine refused the ring.
    #[error("{0}")]
    Ring(#[from] RingError),
}

/// Open a UIO device for serving: its configfs attributes, the mapped
/// region and doorbell, and a ring engine attached to an empty ring.
pub fn open_device(
    cfg: &ServeConfig,
    dev: &UioDevice,
) -> Result<(DeviceAttrs, UioHandle, Ring<Arc<MappedRegion>>), AttachError> {
    let dir = dev.configfs_dir(&cfg.configfs);
    let attrs = configfs::read_attrs(&dir).map_err(AttachError::Attributes)?;
    let handle = uio::open(&cfg.dev_dir, dev)?;
    let head = handle.region.load_u32_acquire(mailbox::CMD_HEAD as u64)?;
    let tail = handle.region.load_u32_acquire(mailbox::CMD_TAIL as u64)?;
    if head != tail {
        // Entries left by a previous daemon may hold half-written responses;
        // have the kernel fail them as retryable and start from an empty ring.
        tracing::warn!(device = %dev.name, head, tail, "ring not empty at attach: resetting");
        configfs::reset_ring(&dir).map_err(AttachError::Reset)?;
    }
    let ring = Ring::attach(Arc::clone(&handle.region))?;
    Ok((attrs, handle, ring))
}

//! A simulated TCMU device: the kernel model from `wasmtap_ring::sim` over a
//! memfd-backed [`MappedRegion`], with eventfd doorbells in both directions.
//! Used by tests, benchmarks and the daemon's `sim` frontend.

use std::io;
use std::sync::Arc;

use wasmtap_ring::sim::{KernelSim, SimConfig, SimError};

use crate::doorbell::{EventBell, SimDoorbell};
use crate::region::MappedRegion;

/// The kernel side of a simulated device.
#[derive(Debug)]
pub struct SimKernel {
    /// The kernel model, writing into the shared region.
    pub model: KernelSim<Arc<MappedRegion>>,
    /// Rung after queuing entries (the kernel's `uio_event_notify`).
    pub to_user: EventBell,
    /// Waited on for user-space completions (the 4-byte write to /dev/uioN).
    pub to_kernel: EventBell,
}

/// The user side of a simulated device: what a worker needs.
#[derive(Debug, Clone)]
pub struct SimUser {
    /// The shared region, to attach a `wasmtap_ring::Ring` to.
    pub region: Arc<MappedRegion>,
    /// Doorbells.
    pub bell: SimDoorbell,
}

/// Errors setting up a simulated device.
#[derive(Debug, thiserror::Error)]
pub enum SimSetupError {
    /// memfd, mmap or eventfd failed.
    #[error("simulated device setup: {0}")]
    Io(#[from] io::Error),
    /// The model refused the configuration.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Create a simulated device with configuration `cfg`.
pub fn device(cfg: SimConfig) -> Result<(SimKernel, SimUser), SimSetupError> {
    let region = Arc::new(MappedRegion::memfd("wasmtap-sim", cfg.region_len())?);
    let to_user = EventBell::new()?;
    let to_kernel = EventBell::new()?;
    let model = KernelSim::new(Arc::clone(&region), cfg)?;
    Ok((
        SimKernel {
            model,
            to_user: to_user.clone(),
            to_kernel: to_kernel.clone(),
        },
        SimUser {
            region,
            bell: SimDoorbell { to_user, to_kernel },
        },
    ))
}

//! Kernel plumbing for wasmtap: the only crate that contains `unsafe`.
//!
//! * [`region::MappedRegion`]: the shared TCMU region (an mmap of `/dev/uioN`,
//!   or of a memfd for the simulator) behind the bounds-checked
//!   `wasmtap_ring::SharedRegion` interface.
//! * [`doorbell`]: waiting for and signalling the other side of the ring.
//! * [`sim`]: a simulated TCMU device (kernel model + memfd + eventfds).
//! * [`uio`]: discovery of our TCMU devices in sysfs, opening `/dev/uioN`.
//! * [`configfs`]: creating/deleting a backstore + tcm_loop LUN, attributes.
//!
//! Every `unsafe` block carries a SAFETY comment stating the invariant it
//! relies on and where that invariant was checked; clippy enforces the
//! comment (`undocumented_unsafe_blocks`) and one operation per block.

pub mod configfs;
pub mod doorbell;
pub mod netlink;
pub mod region;
pub mod sim;
pub mod uio;

pub use doorbell::{Doorbell, EventBell, SimDoorbell};
pub use region::MappedRegion;

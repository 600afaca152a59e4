//! The JSON API's request and response types, shared by the server (the
//! `api` module emits and reads them) and the command-line client (`cli`
//! sends and parses them). docs/api.md describes them.

use crate::host::TenantLimits;

/// Per-tenant limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    /// Devices a tenant may own.
    pub max_devices: u64,
    /// Sum of its devices' sizes, in bytes.
    pub max_total_bytes: u64,
    /// Guest memory budget shared by its devices' instances, in bytes.
    pub max_guest_memory: u64,
    /// Files its guests may hold open at once, all devices together.
    pub max_open_files: u64,
    /// Guest instances at once (each running device has one; a hot swap
    /// holds a second for a moment).
    pub max_instances: u64,
    /// Files its devices' directories may hold, all together.
    pub max_stored_files: u64,
    /// Modules it may own.
    pub max_modules: u64,
    /// Bytes of all its modules together.
    pub max_module_total_bytes: u64,
}

impl Default for Quota {
    /// 16 devices, 64 GiB of devices, 1 GiB of guest memory, 256 open
    /// files, 64 instances, 10,000 stored files, 32 modules of 256 MiB
    /// together.
    fn default() -> Self {
        Self {
            max_devices: 16,
            max_total_bytes: 64 << 30,
            max_guest_memory: 1 << 30,
            max_open_files: 256,
            max_instances: 64,
            max_stored_files: 10_000,
            max_modules: 32,
            max_module_total_bytes: 256 << 20,
        }
    }
}

impl Quota {
    /// The limits the data plane enforces for a tenant with this quota.
    /// Stored bytes are the devices' sizes plus the same allowance each
    /// device gets for an image format's metadata (an eighth and 16 MiB).
    pub fn data_plane(&self) -> TenantLimits {
        let t = self.max_total_bytes;
        TenantLimits {
            memory: self.max_guest_memory,
            open_files: self.max_open_files,
            instances: self.max_instances,
            storage_bytes: t
                .saturating_add(t / 8)
                .saturating_add(self.max_devices.saturating_mul(16 << 20)),
            storage_files: self.max_stored_files,
        }
    }
}

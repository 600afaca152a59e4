//! The JSON API's request and response types, shared by the server (the
//! `api` module emits and reads them) and the command-line client (`cli`
//! sends and parses them). docs/api.md describes them.

use serde::{Deserialize, Serialize};

use crate::host::{
    DeviceCounters, DeviceResources, DeviceState, FrontendInfo, GuestStats, LunInfo, TenantLimits,
    TenantResources,
};

// ---------------------------------------------------------------- errors

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code (docs/api.md, "Errors") and what happened, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    pub code: String,
    /// What and why.
    pub message: String,
}

// ---------------------------------------------------------------- whoami

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The admin token.
    Admin,
    /// A tenant's token.
    Tenant,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// What the token may do.
    pub role: Role,
    /// The tenant of a tenant token.
    pub tenant: Option<String>,
    /// How the daemon serves devices.
    pub frontend: FrontendInfo,
    /// The daemon's version.
    pub version: String,
}

// ---------------------------------------------------------------- tenants

/// Per-tenant limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// What a tenant uses of its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Devices it owns.
    pub devices: u64,
    /// Sum of their sizes, bytes.
    pub total_bytes: u64,
    /// Modules it owns.
    pub modules: u64,
    /// Bytes of its modules.
    pub module_bytes: u64,
}

/// A tenant: its quota (flattened: `max_devices`, ...), usage and what its
/// running devices hold in the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Name.
    pub name: String,
    /// Its limits.
    #[serde(flatten)]
    pub quota: Quota,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// What it uses of the quota.
    pub usage: Usage,
    /// What its running devices hold; absent when none of its devices ran
    /// in this daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<TenantResources>,
}

/// `POST /api/v1/tenants` (with `name`) and `PATCH /api/v1/tenants/{name}`
/// (without): the quota fields to set; unset ones keep their value (or the
/// default, for a new tenant). Each `max_*` sets the `Quota` field of that
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_guest_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stored_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_modules: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_module_total_bytes: Option<u64>,
}

/// `POST /api/v1/tenants/{name}/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for (1 to 64 characters).
    pub label: String,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Id (to revoke it).
    pub id: i64,
    /// What it is for.
    pub label: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A token just created: the only answer that carries the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// Id.
    pub id: i64,
    /// What it is for.
    pub label: String,
    /// The bearer token (`wt_` + 40 hex digits).
    pub token: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

// ---------------------------------------------------------------- modules

/// A module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Id.
    pub id: i64,
    /// Name (unique per owner with the version).
    pub name: String,
    /// Version label (built-ins: the start of their hash).
    pub version: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The owning tenant; `None` for a built-in.
    pub owner: Option<String>,
    /// Who uploaded it (`tenant:label`, `admin:label` or `builtin`).
    pub uploaded_by: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Built into the daemon (visible to every tenant, never deleted).
    pub builtin: bool,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
    /// Interfaces it exports.
    pub exports: Vec<String>,
    /// The caller's devices bound to it.
    pub bound_devices: Vec<BoundDevice>,
}

/// A device bound to a module, as the module lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundDevice {
    /// Device id.
    pub id: i64,
    /// Device name.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
}

// ---------------------------------------------------------------- devices

/// The module a device runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    /// Module id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Content hash.
    pub sha256: String,
}

/// A device with its live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Id.
    pub id: i64,
    /// Owning tenant.
    pub tenant: String,
    /// Name (unique within the tenant).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// 512 or 4096.
    pub block_size: u32,
    /// The module it runs.
    pub module: ModuleRef,
    /// Configuration string, secret values shown as `secret:***`.
    pub config: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Live state.
    pub state: DeviceState,
    /// Why it is degraded or offline, or the last guest failure.
    pub reason: Option<String>,
    /// Guest restarts after failures.
    pub restarts: u64,
    /// The built-in initiator is running on it.
    pub exercising: bool,
    /// Live counters.
    pub counters: DeviceCounters,
    /// What it holds of the shared resources (`None` when no guest runs).
    pub resources: Option<DeviceResources>,
    /// The kernel LUN it is exported as.
    pub lun: Option<LunInfo>,
}

/// `GET /api/v1/devices/{id}`: the device and the backstore's own counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDetail {
    /// The device.
    #[serde(flatten)]
    pub device: Device,
    /// The backstore's own counters (its `stats()`), if it keeps any.
    pub guest_stats: Option<GuestStats>,
}

/// A size in a request: a JSON number of bytes, or a string in the size
/// grammar (docs/api.md, "Sizes"), e.g. `"64M"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeArg {
    /// A JSON number (must be a whole number of bytes).
    Number(serde_json::Number),
    /// A string such as `"64M"`.
    Text(String),
    /// Anything else, refused by [`SizeArg::bytes`] naming what it got.
    Other(serde_json::Value),
}

impl SizeArg {
    /// The number of bytes.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeArg::Number(n) => n
                .as_u64()
                .ok_or_else(|| format!("{n} is not a whole number of bytes")),
            SizeArg::Text(s) => crate::size::parse_size(s),
            SizeArg::Other(v) => Err(format!(
                "expected a number of bytes or a string like \"64M\", got {v}"
            )),
        }
    }
}

impl From<u64> for SizeArg {
    fn from(bytes: u64) -> Self {
        SizeArg::Number(bytes.into())
    }
}

/// `POST /api/v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// The owning tenant: the admin must name it; a tenant token may name
    /// only its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Name.
    pub name: String,
    /// Size.
    pub size: SizeArg,
    /// 512 (default) or 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Module id.
    pub module: i64,
    /// Configuration string for the module's `open`.
    #[serde(default)]
    pub config: String,
}

/// `PUT /api/v1/devices/{id}/module`: hot swap to `module`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    /// The new module's id.
    pub module: i64,
    /// A new configuration string; unset keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// `GET /api/v1/devices/{id}/stats`: what the UI plots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStats {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Live state.
    pub state: DeviceState,
    /// Why it is degraded or offline.
    pub reason: Option<String>,
    /// Guest restarts.
    pub restarts: u64,
    /// Counters.
    pub counters: DeviceCounters,
    /// Shared resources held.
    pub resources: Option<DeviceResources>,
}

/// `GET /api/v1/devices/{id}/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLog {
    /// Recent guest and host log lines, oldest first.
    pub log: Vec<String>,
    /// The guest's debug text (or why there is none).
    pub debug: String,
    /// The backstore's own counters, if it keeps any.
    pub guest_stats: Option<GuestStats>,
}

/// `POST /api/v1/devices/{id}/exercise` (simulator only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExerciseRequest {
    /// 1 to 600 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// 1 to 128 (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u32>,
    /// `all` (default), `rw`, or a comma-separated list of commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<String>,
}

/// The answer to an exercise: what runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExerciseStarted {
    /// Device id.
    pub device: i64,
    /// For how long.
    pub seconds: u32,
    /// At which queue depth.
    pub queue_depth: u32,
    /// Which commands.
    pub mix: String,
}

/// `POST /api/v1/devices/{id}/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The LUN.
    pub lun: LunInfo,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn size(v: serde_json::Value) -> Result<u64, String> {
        serde_json::from_value::<SizeArg>(v).unwrap().bytes()
    }

    #[test]
    fn sizes_are_numbers_or_strings_of_the_size_grammar() {
        assert_eq!(size(json!(4096)), Ok(4096));
        assert_eq!(size(json!("64M")), Ok(64 << 20));
        assert_eq!(size(json!("1mb")), Ok(1 << 20));
        for bad in [json!("64X"), json!(-1), json!(1.5), json!(null), json!([1])] {
            assert!(size(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_value(SizeArg::from(512)).unwrap(),
            json!(512)
        );
    }
}

//! The seam between the control plane and the data plane.
//!
//! The web crate owns state (SQLite), tenancy, the JSON API, the UI and
//! `/metrics`; it never touches rings, SCSI or wasmtime. Everything that
//! runs devices goes through [`Host`], which the daemon implements (and the
//! tests implement with a mock). Calls may block (compiling a module takes
//! seconds, a hot swap waits for in-flight commands): the API calls them
//! from `tokio::task::spawn_blocking`.

use std::path::PathBuf;

/// Which kernel interface the daemon serves devices through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendKind {
    /// Real LIO TCMU devices.
    Tcmu,
    /// The in-process kernel simulator (no LIO on this host).
    Sim,
}

/// What the UI tells the user about the frontend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrontendInfo {
    /// The kind.
    pub kind: FrontendKind,
    /// One plain sentence for the UI banner, e.g. "No LIO on this host:
    /// devices run on the built-in simulator; use Exercise to send I/O."
    pub note: String,
}

/// Why a module was refused. `code` is stable (API clients match on it),
/// `message` is the runtime's exact reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModuleRefusal {
    /// One of: `not_wasm`, `core_module`, `precompiled`, `invalid`,
    /// `wrong_world`, `forbidden_import`, `unknown_import`.
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
}

/// What a valid module exposes, shown on the modules page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModuleReport {
    /// Interfaces the component imports (all offered by the host).
    pub imports: Vec<String>,
    /// Interfaces it exports.
    pub exports: Vec<String>,
}

/// Everything the host needs to run one device. Built by the web crate from
/// its database rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Database id (stable across restarts).
    pub id: i64,
    /// Owning tenant's name.
    pub tenant: String,
    /// Device name (unique within the tenant).
    pub name: String,
    /// Size in bytes (a multiple of `block_size`).
    pub size: u64,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Bound module: display name.
    pub module_name: String,
    /// Bound module: content hash (sha256 hex) — the version identity.
    pub module_sha256: String,
    /// Bound module: the component bytes on disk (content-addressed file).
    pub module_path: PathBuf,
    /// Configuration string for the guest's `open`.
    pub config: String,
    /// The device's own storage directory (created by the web crate; the
    /// guest's `storage` is rooted here and can reach nothing else).
    pub dir: PathBuf,
    /// The tenant's limits the data plane enforces, shared by all its
    /// devices.
    pub tenant_limits: TenantLimits,
}

/// A tenant's limits as the data plane enforces them (from its quota; see
/// docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TenantLimits {
    /// Guest linear memory of all its instances, bytes.
    pub memory: u64,
    /// Files its guests hold open at once.
    pub open_files: u64,
    /// Guest instances at once (a hot swap holds two for a moment).
    pub instances: u64,
    /// Bytes its devices' directories may hold.
    pub storage_bytes: u64,
    /// Files its devices' directories may hold.
    pub storage_files: u64,
}

/// What a device holds of the shared resources, with its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DeviceResources {
    /// Guest linear memory, bytes.
    pub memory: u64,
    /// Files the guest holds open.
    pub open_files: u64,
    /// The instance's limit of open files.
    pub open_files_limit: u64,
    /// Bytes stored in the device's directory.
    pub storage_bytes: u64,
    /// The device's storage quota, bytes.
    pub storage_bytes_limit: u64,
    /// Files stored in the device's directory.
    pub storage_files: u64,
    /// The device's quota of files.
    pub storage_files_limit: u64,
    /// I/O jobs queued or running on the shared I/O threads.
    pub io_pending: u64,
}

/// What a tenant holds in this daemon, and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TenantResources {
    /// Guest linear memory, bytes.
    pub memory: u64,
    /// Files open.
    pub open_files: u64,
    /// Live instances.
    pub instances: u64,
    /// Bytes stored by its running devices.
    pub storage_bytes: u64,
    /// Files stored by its running devices.
    pub storage_files: u64,
    /// The limits.
    pub limits: TenantLimits,
}

/// Marks a configuration value secret: `key=secret:VALUE`. The backstore
/// gets `key=VALUE`; the API, the UI and the daemon's log show
/// `key=secret:***`. The value is kept in the database as given (the
/// daemon must pass it again at every start), so the database file stays
/// readable by the daemon's user only.
pub const SECRET_PREFIX: &str = "secret:";

fn map_values(config: &str, f: impl Fn(&str, &str) -> String) -> String {
    config
        .split(',')
        .map(|entry| match entry.split_once('=') {
            Some((k, v)) => match v.trim_start().strip_prefix(SECRET_PREFIX) {
                Some(secret) => f(k, secret),
                None => entry.to_string(),
            },
            None => entry.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `config` as shown to people: secret values replaced by `***`.
pub fn redact_config(config: &str) -> String {
    map_values(config, |k, _| format!("{k}={SECRET_PREFIX}***"))
}

/// `config` as the backstore gets it: secret values without their marker.
pub fn guest_config(config: &str) -> String {
    map_values(config, |k, v| format!("{k}={v}"))
}

/// The commands an exercise can send, by the names a `mix` lists (the
/// daemon's initiator implements each).
pub const EXERCISE_OPS: [&str; 9] = [
    "read",
    "write",
    "fua",
    "flush",
    "unmap",
    "zero",
    "writesame",
    "caw",
    "verify",
];

/// Whether `mix` is a valid exercise mix: `all`, `rw`, or a non-empty
/// comma-separated list of [`EXERCISE_OPS`].
pub fn valid_mix(mix: &str) -> Result<(), String> {
    let mix = mix.trim();
    if mix.is_empty() || mix == "all" || mix == "rw" {
        return Ok(());
    }
    for name in mix.split(',').map(str::trim) {
        if !EXERCISE_OPS.contains(&name) {
            return Err(format!(
                "unknown command {name:?} (all, rw, or some of: {})",
                EXERCISE_OPS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A device's state as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Serving.
    Running,
    /// The guest failed and is being restarted with backoff.
    Degraded,
    /// The backstore cannot run (repeated failures, or it did not open):
    /// I/O answers NOT READY. `reason` says why.
    Offline,
    /// Not being served (not started, or stopped).
    Stopped,
    /// Being started again after the daemon started (its guest opens).
    Restoring,
}

impl DeviceState {
    /// Its name in the API (`running`, `degraded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Running => "running",
            DeviceState::Degraded => "degraded",
            DeviceState::Offline => "offline",
            DeviceState::Stopped => "stopped",
            DeviceState::Restoring => "restoring",
        }
    }
}

/// A latency histogram: `counts[i]` commands took at most `bounds_us[i]`
/// microseconds (and more than `bounds_us[i-1]`); the last count is the
/// overflow bucket (`counts.len() == bounds_us.len() + 1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Histogram {
    /// Upper bounds in microseconds, increasing.
    pub bounds_us: Vec<u64>,
    /// Per-bucket counts (not cumulative), plus the overflow bucket.
    pub counts: Vec<u64>,
    /// Sum of all latencies in microseconds.
    pub sum_us: u64,
}

/// Live counters of one device (monotonic since the device started in
/// this daemon process, except `in_flight`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceCounters {
    /// Commands completed.
    pub commands: u64,
    /// READ commands completed.
    pub reads: u64,
    /// WRITE commands completed.
    pub writes: u64,
    /// Bytes returned by reads.
    pub read_bytes: u64,
    /// Bytes accepted by writes.
    pub write_bytes: u64,
    /// Completions with CHECK CONDITION, by sense key (index = key 0..=15).
    pub errors_by_sense_key: Vec<u64>,
    /// Commands in flight now.
    pub in_flight: u64,
    /// Command latency (ring entry seen to response written).
    pub latency: Histogram,
}

/// What the device page and `/metrics` show for one device.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceLive {
    /// Current state.
    pub state: DeviceState,
    /// Why it is degraded or offline, or the last guest failure.
    pub reason: Option<String>,
    /// Guest instances restarted after failures.
    pub restarts: u64,
    /// Counters.
    pub counters: DeviceCounters,
    /// Recent guest log lines (`[level] message`), oldest first.
    pub log: Vec<String>,
    /// The simulator's built-in initiator is running on this device.
    pub exercising: bool,
    /// What it holds of the shared resources (`None` when no guest runs).
    pub resources: Option<DeviceResources>,
}

/// The counters a backstore reports itself (its `stats()`), next to the
/// host's own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestStats {
    /// Reads it served.
    pub reads: u64,
    /// Writes it served.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Flushes.
    pub flushes: u64,
    /// Discards.
    pub discards: u64,
    /// Errors it reported.
    pub errors: u64,
}

/// A kernel LUN a device is exported as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LunInfo {
    /// The backstore name in configfs (`user_N/<backstore>`).
    pub backstore: String,
    /// The tcm_loop WWN the LUN hangs under.
    pub wwn: String,
    /// LUN number.
    pub lun: u32,
}

/// Why the data plane refused a call: a [`HostErrorKind`] the API answers
/// with its own status and code (`ApiError::host`, the one place that maps
/// them), and the host's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    /// What kind of refusal.
    pub kind: HostErrorKind,
    /// What and why, for people.
    pub message: String,
}

/// The kinds of [`HostError`]: what the refusal means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The host does not serve the device now (never started, stopped, or
    /// its worker is gone). API: 409 `not_running`.
    NotRunning,
    /// The device did not answer in time: try again. API: 503 `busy`.
    Busy,
    /// The call conflicts with what the device is doing (an exercise or a
    /// hot swap already under way). API: 409 `conflict`.
    Conflict,
    /// The data plane refused what was asked: the module or its
    /// configuration did not open, an unusable geometry, an invalid
    /// exercise mix. API: 422 `refused`.
    Refused,
    /// A limit the data plane enforces for the tenant leaves no room (e.g.
    /// its instances). API: 409 `quota_exceeded`.
    Limit,
    /// Not possible on this frontend (no LIO to export to; the built-in
    /// initiator runs on the simulator only). API: 409 `unsupported`.
    Unsupported,
    /// The data plane failed (I/O, configfs, threads). API: 500 `host_error`.
    Internal,
}

impl HostError {
    /// An error of `kind`.
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// [`HostErrorKind::NotRunning`].
    pub fn not_running(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::NotRunning, message)
    }
    /// [`HostErrorKind::Refused`].
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::Refused, message)
    }
    /// [`HostErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::Unsupported, message)
    }
    /// [`HostErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::Internal, message)
    }
}

/// The data plane, as the control plane sees it.
pub trait Host: Send + Sync + 'static {
    /// The frontend devices are served through.
    fn frontend(&self) -> FrontendInfo;
    /// Validate and compile a module (blocking; seconds). The compiled code
    /// is cached, so a later `start` of a device bound to it is fast.
    fn validate(&self, bytes: &[u8]) -> Result<ModuleReport, ModuleRefusal>;
    /// Start serving a device (at creation, and for every device at daemon
    /// start). On the sim frontend this creates its simulated TCMU device;
    /// on tcmu it is served once exported (and re-attached if its LUN
    /// already exists). A guest that cannot open is not an error here: the
    /// device comes up `Offline` with the reason.
    fn start(&self, dev: &DeviceSpec) -> Result<(), HostError>;
    /// Stop serving a device (before delete); in-flight commands finish.
    fn stop(&self, id: i64) -> Result<(), HostError>;
    /// Hot swap: drain in-flight commands, close the old instance, open
    /// `dev`'s (new) module, resume. No command is lost or failed. On error
    /// the old instance keeps serving and the error says why.
    fn rebind(&self, dev: &DeviceSpec) -> Result<(), HostError>;
    /// Live state and counters; `None` if the host does not know the id.
    fn live(&self, id: i64) -> Option<DeviceLive>;
    /// The guest's `debug` text (blocking; answered by the device's worker).
    fn debug(&self, id: i64) -> Result<String, HostError>;
    /// The backstore's own counters as of the last [`Host::debug`] answer
    /// (asked together, under the same rate limit); `None` when none is
    /// known (no guest, or it failed to answer).
    fn guest_stats(&self, _id: i64) -> Option<GuestStats> {
        None
    }
    /// Export as a kernel LUN (tcmu frontend only; sim answers
    /// [`HostErrorKind::Unsupported`], saying there is no LIO).
    fn export(&self, dev: &DeviceSpec) -> Result<LunInfo, HostError>;
    /// Remove the LUN and its backstore.
    fn unexport(&self, dev: &DeviceSpec, lun: &LunInfo) -> Result<(), HostError>;
    /// Sim frontend: run the built-in verifying initiator (random 4–64 KiB
    /// reads and writes) against the device for `secs` seconds at
    /// `queue_depth`, in the background. tcmu answers
    /// [`HostErrorKind::Unsupported`] (real initiators send the I/O there).
    /// `mix` is `all`, `rw` or a comma-separated list of [`EXERCISE_OPS`]
    /// (checked by the API before the call).
    fn exercise(&self, id: i64, secs: u32, queue_depth: u32, mix: &str) -> Result<(), HostError>;
    /// No module has the component with this content hash any more: drop
    /// its compiled code (instances still running keep their own).
    fn forget_module(&self, sha256: &str) {
        let _ = sha256;
    }
    /// What a tenant's instances hold now; `None` if none of its devices
    /// ever ran in this daemon.
    fn tenant_resources(&self, tenant: &str) -> Option<TenantResources> {
        let _ = tenant;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_the_api_names() {
        use DeviceState::*;
        for s in [Running, Degraded, Offline, Stopped, Restoring] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn secret_values_are_hidden_from_people_and_given_to_the_backstore() {
        let c = "file=d.img,key=secret:s3cr3t, token = secret:abc,flag";
        assert_eq!(
            redact_config(c),
            "file=d.img,key=secret:***, token =secret:***,flag"
        );
        assert_eq!(guest_config(c), "file=d.img,key=s3cr3t, token =abc,flag");
        assert!(!redact_config(c).contains("s3cr3t"));
        assert_eq!(redact_config(""), "");
    }
}

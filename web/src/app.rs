//! [`ControlPlane`]: the control plane's state (database, data directory,
//! the host, per-device locks), opening it and restoring devices. The
//! router that serves it is assembled in `routes`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::dto::Quota;
use crate::error::Error;
use crate::host::{DeviceSpec, Host};
use crate::server::{HttpLimits, HttpStats};
use crate::store::{DeviceRow, NewModule, Report, Scope, Store};

/// Devices [`ControlPlane::restore`] brings back at once.
pub const RESTORE_PARALLEL: usize = 4;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How the control plane is set up.
#[derive(Clone)]
pub struct WebConfig {
    /// Holds `wasmtap.db`, `modules/` and `devices/`.
    pub data_dir: PathBuf,
    /// The admin token from the configuration. When set (and not blank), it
    /// becomes the only admin token (any earlier one stops working); when
    /// unset, an admin token is generated once, at the first start.
    pub admin_token: Option<String>,
    /// Largest module upload, in bytes (default 32 MiB).
    pub max_module_bytes: u64,
    /// Built-in modules `(name, component bytes)`, registered at open.
    pub builtin_modules: Vec<(String, Vec<u8>)>,
    /// Quota of a tenant created without explicit limits.
    pub default_quota: Quota,
    /// Timeouts and connection limits of [`ControlPlane::serve`]
    /// (defaults: see [`HttpLimits::default`] and `docs/limits.md`).
    pub http: HttpLimits,
}

impl WebConfig {
    /// Defaults, with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            admin_token: None,
            max_module_bytes: 32 << 20,
            builtin_modules: Vec::new(),
            default_quota: Quota::default(),
            http: HttpLimits::default(),
        }
    }
}

impl Default for WebConfig {
    /// Defaults, with data dir `/var/lib/wasmtap`.
    fn default() -> Self {
        Self::new("/var/lib/wasmtap")
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("data_dir", &self.data_dir)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_module_bytes", &self.max_module_bytes)
            .field(
                "builtin_modules",
                &self
                    .builtin_modules
                    .iter()
                    .map(|(n, b)| (n.as_str(), b.len()))
                    .collect::<Vec<_>>(),
            )
            .field("default_quota", &self.default_quota)
            .field("http", &self.http)
            .finish()
    }
}

/// The control plane: state, tenancy, the JSON API, the UI and `/metrics`.
/// Open it once at daemon start, call [`ControlPlane::restore`], then serve
/// [`ControlPlane::router`].
pub struct ControlPlane {
    pub(crate) data_dir: PathBuf,
    pub(crate) max_module_bytes: u64,
    pub(crate) default_quota: Quota,
    pub(crate) host: Arc<dyn Host>,
    pub(crate) store: Store,
    /// One async lock per device: changes to a device (bind, export,
    /// unexport, delete) run one at a time.
    device_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Devices [`ControlPlane::restore`] has not brought back yet.
    restoring: Mutex<std::collections::HashSet<i64>>,
    /// Binds in progress per target module id, so a module cannot be deleted
    /// while the host is switching a device to it.
    pub(crate) pending_binds: Mutex<HashMap<i64, usize>>,
    pub(crate) started: SystemTime,
    /// Limits of [`ControlPlane::serve`].
    pub(crate) http_limits: HttpLimits,
    /// Counters of [`ControlPlane::serve`], for `/metrics`.
    pub(crate) http_stats: Arc<HttpStats>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("data_dir", &self.data_dir)
            .field("max_module_bytes", &self.max_module_bytes)
            .finish_non_exhaustive()
    }
}

/// `wt_` + 40 hex digits.
pub(crate) fn new_token() -> Result<String, String> {
    let mut b = [0u8; 20];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    Ok(format!("wt_{}", hex::encode(b)))
}

/// What is stored of a token: its SHA-256, hex.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Creates `dir` with mode 0700 (and its parents as needed); the mode is
/// set explicitly, whatever the umask, and an existing `dir` is tightened.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    set_mode(dir, 0o700)
}

/// Sets the permission bits of `path` to `mode` unless they are already.
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let now = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if now != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// [`set_mode`] on `path` if it exists; a failure is logged.
fn tighten(path: &Path, mode: u32) {
    match set_mode(path, mode) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            "could not set the mode of {} to {mode:o}: {e}",
            path.display()
        ),
    }
}

/// Creates the data directory 0700 (missing parents with the usual mode)
/// or tightens an existing one to 0700, unless it is a shared directory
/// (sticky bit, like `/tmp`): what wasmtap keeps in it is private anyway.
fn prepare_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return set_mode(dir, 0o700),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o1000 != 0 {
        tracing::warn!(
            "data directory {} is shared (sticky bit): leaving its mode {:o}; use a directory of its own",
            dir.display(),
            mode & 0o7777
        );
    } else if mode & 0o077 != 0 {
        tracing::info!(
            "data directory {}: mode {:o} tightened to 700",
            dir.display(),
            mode & 0o7777
        );
        tighten(dir, 0o700);
    }
    Ok(())
}

/// Creates the database file 0600 if it is missing (SQLite takes an empty
/// file as a new database, and gives its journal files the database's
/// mode), and tightens it and its journal files to 0600.
fn prepare_db_file(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)?;
    if f.metadata()?.permissions().mode() & 0o7777 != 0o600 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tighten_db_journals(db);
    Ok(())
}

/// Tightens `<db>-wal`, `<db>-shm` and `<db>-journal` to 0600 if present.
fn tighten_db_journals(db: &Path) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        tighten(Path::new(&p), 0o600);
    }
}

/// Tightens every file in the modules directory to 0600.
fn tighten_module_files(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("listing {}: {e}", dir.display());
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            tighten(&entry.path(), 0o600);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, unless a
/// file of that size is there already (the name is the content's hash).
pub(crate) fn write_content_addressed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".tmp-{}", hex::encode(rnd)));
    let result = (|| {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // 0600 whatever the umask.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl ControlPlane {
    /// Opens (creating and migrating as needed) the state in
    /// `cfg.data_dir`, settles the admin token and registers the built-in
    /// modules (validated through `host`; one the host refuses is logged and
    /// skipped). Returns the admin token if one was generated now (first
    /// start without `cfg.admin_token`): print it, it is never shown again.
    pub fn open(cfg: WebConfig, host: Arc<dyn Host>) -> Result<(Self, Option<String>), Error> {
        // The database, the module files and the device directories are
        // private to the daemon: directories 0700, files 0600, set
        // explicitly (whatever the umask) and tightened if they exist.
        let data_dir = cfg.data_dir;
        prepare_data_dir(&data_dir).map_err(io_err(format!("creating {}", data_dir.display())))?;
        let modules = data_dir.join("modules");
        create_private_dir(&modules).map_err(io_err(format!("creating {}", modules.display())))?;
        tighten_module_files(&modules);
        let devices = data_dir.join("devices");
        create_private_dir(&devices).map_err(io_err(format!("creating {}", devices.display())))?;
        let db = data_dir.join("wasmtap.db");
        prepare_db_file(&db).map_err(io_err(format!("creating {}", db.display())))?;
        let store = Store::open(&db)?;
        tighten_db_journals(&db);
        // Bearer tokens are trimmed when read, so the configured one is too;
        // an empty one would lock the admin out and counts as unset.
        let configured = cfg.admin_token.as_deref().map(str::trim);
        if configured == Some("") {
            tracing::warn!("admin_token is empty in the configuration; ignoring it");
        }
        let fresh_token = match configured.filter(|t| !t.is_empty()) {
            Some(token) => {
                store.replace_admin_tokens(&hash_token(token), "config")?;
                None
            }
            None if store.has_admin_token()? => None,
            None => {
                let token = new_token().map_err(Error::Random)?;
                store.insert_token(None, "initial", &hash_token(&token))?;
                Some(token)
            }
        };
        let cp = Self {
            data_dir,
            max_module_bytes: cfg.max_module_bytes,
            default_quota: cfg.default_quota,
            host,
            store,
            device_locks: Mutex::new(HashMap::new()),
            restoring: Mutex::default(),
            pending_binds: Mutex::new(HashMap::new()),
            started: SystemTime::now(),
            http_limits: cfg.http,
            http_stats: Arc::default(),
        };
        for (name, bytes) in &cfg.builtin_modules {
            cp.register_builtin(name, bytes)?;
        }
        Ok((cp, fresh_token))
    }

    fn register_builtin(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.module_path(&sha);
        if self.store.builtin_by_sha(&sha)?.is_some() {
            write_content_addressed(&path, bytes)
                .map_err(io_err(format!("writing {}", path.display())))?;
            return Ok(());
        }
        let report = match self.host.validate(bytes) {
            Ok(r) => r,
            Err(refusal) => {
                tracing::error!(
                    "built-in module {name:?} refused by the host ({}): {}; not registered",
                    refusal.code,
                    refusal.message
                );
                return Ok(());
            }
        };
        let new = NewModule {
            name: name.to_owned(),
            version: sha[..12].to_owned(),
            sha256: sha.clone(),
            size: bytes.len() as u64,
            owner_id: None,
            uploaded_by: "builtin".into(),
            report: Report {
                imports: report.imports,
                exports: report.exports,
            },
        };
        match self
            .store
            .insert_module(&new, || write_content_addressed(&path, bytes))
        {
            Ok(m) => tracing::info!("built-in module {name:?} registered as id {}", m.id),
            Err(e) => tracing::error!("registering built-in module {name:?}: {e}"),
        }
        Ok(())
    }

    /// Starts every device in the database through `host.start` (errors are
    /// logged and the next device is tried), then, for every device with a
    /// LUN row, calls `host.export` again so the host knows (or, after a
    /// reboot, recreates) the LUN; the row is updated with what the host
    /// answers, or removed if it fails.
    ///
    /// Up to [`RESTORE_PARALLEL`] devices are restored at once (a guest's
    /// `open` may take seconds), each under its device lock, so API calls
    /// on a device wait until it is back while everything else is served;
    /// until then the device shows as `restoring`. Blocking: call it from a
    /// thread of its own (or `spawn_blocking`) while the server serves.
    pub fn restore(&self) {
        let devices = match self.store.devices(Scope::All) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("restore: listing devices: {e}");
                return;
            }
        };
        lock(&self.restoring).extend(devices.iter().map(|d| d.id));
        let queue = Mutex::new(devices.into_iter());
        std::thread::scope(|s| {
            for _ in 0..RESTORE_PARALLEL {
                s.spawn(|| {
                    loop {
                        let next = lock(&queue).next();
                        let Some(d) = next else { return };
                        let held = self.device_lock(d.id).blocking_lock_owned();
                        self.restore_one(&d);
                        lock(&self.restoring).remove(&d.id);
                        drop(held);
                    }
                });
            }
        });
    }

    /// Whether device `id` is still being restored.
    pub(crate) fn is_restoring(&self, id: i64) -> bool {
        lock(&self.restoring).contains(&id)
    }

    fn restore_one(&self, d: &DeviceRow) {
        let spec = self.spec(d);
        if let Err(e) = create_private_dir(&spec.dir) {
            tracing::error!("restore: device {} dir {}: {e}", d.id, spec.dir.display());
        }
        if let Err(e) = self.host.start(&spec) {
            tracing::error!(
                "restore: starting device {} ({}/{}): {e}",
                d.id,
                d.tenant,
                d.name
            );
            return;
        }
        let Some(lun) = &d.lun else { return };
        match self.host.export(&spec) {
            Ok(now) if &now == lun => {}
            Ok(now) => {
                if let Err(e) = self.store.set_lun(d.id, &now) {
                    tracing::error!("restore: recording LUN of device {}: {e}", d.id);
                }
            }
            Err(e) => {
                tracing::error!(
                    "restore: re-exporting device {} ({}/{}): {e}; it is no longer exported",
                    d.id,
                    d.tenant,
                    d.name
                );
                if let Err(e) = self.store.clear_lun(d.id) {
                    tracing::error!("restore: forgetting LUN of device {}: {e}", d.id);
                }
            }
        }
    }

    /// The content-addressed file of a module.
    pub(crate) fn module_path(&self, sha256: &str) -> PathBuf {
        self.modules_dir().join(format!("{sha256}.wasm"))
    }

    pub(crate) fn modules_dir(&self) -> PathBuf {
        self.data_dir.join("modules")
    }

    pub(crate) fn device_dir(&self, id: i64) -> PathBuf {
        self.data_dir.join("devices").join(id.to_string())
    }

    /// What the host needs to run `d`.
    pub(crate) fn spec(&self, d: &DeviceRow) -> DeviceSpec {
        DeviceSpec {
            id: d.id,
            tenant: d.tenant.clone(),
            name: d.name.clone(),
            size: d.size,
            block_size: d.block_size,
            module_name: d.module_name.clone(),
            module_sha256: d.module_sha256.clone(),
            module_path: self.module_path(&d.module_sha256),
            config: d.config.clone(),
            dir: d.dir.clone(),
            tenant_limits: d.tenant_quota.data_plane(),
        }
    }

    /// Waits for, then holds, device `id`'s lock.
    pub(crate) async fn lock_device(&self, id: i64) -> tokio::sync::OwnedMutexGuard<()> {
        self.device_lock(id).lock_owned().await
    }

    fn device_lock(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.device_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    /// Forgets a deleted device's lock.
    pub(crate) fn forget_device_lock(&self, id: i64) {
        self.device_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

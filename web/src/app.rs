//! [`ControlPlane`]: opening the state, restoring devices, and the router.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodFilter, MethodRouter, on};
use sha2::{Digest, Sha256};

use crate::api;
use crate::error::Error;
use crate::host::{DeviceSpec, Host};
use crate::store::{DeviceRow, NewModule, Report, Scope, Store};

/// Per-tenant limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    /// Devices a tenant may own.
    pub max_devices: u64,
    /// Sum of its devices' sizes, in bytes.
    pub max_total_bytes: u64,
    /// Guest memory budget shared by its devices' instances, in bytes.
    pub max_guest_memory: u64,
}

impl Default for Quota {
    /// 16 devices, 64 GiB of devices, 1 GiB of guest memory.
    fn default() -> Self {
        Self {
            max_devices: 16,
            max_total_bytes: 64 << 30,
            max_guest_memory: 1 << 30,
        }
    }
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
    /// Binds in progress per target module id, so a module cannot be deleted
    /// while the host is switching a device to it.
    pub(crate) pending_binds: Mutex<HashMap<i64, usize>>,
    pub(crate) started: SystemTime,
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

/// Creates `dir` with mode 0700 (and its parents as needed).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
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
        let mut f = std::fs::File::create(&tmp)?;
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
        let data_dir = cfg.data_dir;
        std::fs::create_dir_all(&data_dir)
            .map_err(io_err(format!("creating {}", data_dir.display())))?;
        let modules = data_dir.join("modules");
        std::fs::create_dir_all(&modules)
            .map_err(io_err(format!("creating {}", modules.display())))?;
        let devices = data_dir.join("devices");
        create_private_dir(&devices).map_err(io_err(format!("creating {}", devices.display())))?;
        let store = Store::open(&data_dir.join("wasmtap.db"))?;
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
            pending_binds: Mutex::new(HashMap::new()),
            started: SystemTime::now(),
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
    /// answers, or removed if it fails. Blocking: call it before serving or
    /// from `spawn_blocking`.
    pub fn restore(&self) {
        let devices = match self.store.devices(Scope::All) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("restore: listing devices: {e}");
                return;
            }
        };
        for d in &devices {
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
                continue;
            }
            let Some(lun) = &d.lun else { continue };
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
    }

    /// The router: `/api/v1/*`, `/metrics`, `/` and `/ui/*`.
    pub fn router(self: Arc<Self>) -> Router {
        let upload_limit = usize::try_from(self.max_module_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20);
        build_routes(upload_limit).router.with_state(self)
    }

    /// Serves [`ControlPlane::router`] on `listener` until `shutdown`
    /// resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
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
            tenant_memory: d.tenant_memory,
        }
    }

    /// Waits for, then holds, device `id`'s lock.
    pub(crate) async fn lock_device(&self, id: i64) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .device_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone();
        m.lock_owned().await
    }

    /// Forgets a deleted device's lock.
    pub(crate) fn forget_device_lock(&self, id: i64) {
        self.device_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The routes, and `(method, path)` of each for the OpenAPI test.
pub(crate) struct Routes {
    pub(crate) router: Router<Arc<ControlPlane>>,
    pub(crate) table: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        mr: impl FnOnce(MethodFilter) -> MethodRouter<Arc<ControlPlane>>,
    ) -> Self {
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            "DELETE" => MethodFilter::DELETE,
            other => unreachable!("method {other} is not used"),
        };
        self.router = self.router.route(path, mr(filter));
        self.table.push((method, path));
        self
    }
}

/// Every route. `upload_limit` is the body limit of the module upload.
pub(crate) fn build_routes(upload_limit: usize) -> Routes {
    use crate::metrics;
    let r = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    r.add("GET", "/api/v1/openapi.json", |f| on(f, api::openapi))
        .add("GET", "/api/v1/whoami", |f| on(f, api::whoami))
        .add("GET", "/api/v1/tenants", |f| on(f, api::list_tenants))
        .add("POST", "/api/v1/tenants", |f| on(f, api::create_tenant))
        .add("GET", "/api/v1/tenants/{name}", |f| on(f, api::get_tenant))
        .add("PATCH", "/api/v1/tenants/{name}", |f| {
            on(f, api::patch_tenant)
        })
        .add("DELETE", "/api/v1/tenants/{name}", |f| {
            on(f, api::delete_tenant)
        })
        .add("POST", "/api/v1/tenants/{name}/tokens", |f| {
            on(f, api::create_token)
        })
        .add("GET", "/api/v1/tenants/{name}/tokens", |f| {
            on(f, api::list_tokens)
        })
        .add("DELETE", "/api/v1/tenants/{name}/tokens/{id}", |f| {
            on(f, api::delete_token)
        })
        .add("GET", "/api/v1/modules", |f| on(f, api::list_modules))
        .add("POST", "/api/v1/modules", |f| {
            on(f, api::upload_module).layer(DefaultBodyLimit::max(upload_limit))
        })
        .add("GET", "/api/v1/modules/{id}", |f| on(f, api::get_module))
        .add("DELETE", "/api/v1/modules/{id}", |f| {
            on(f, api::delete_module)
        })
        .add("GET", "/api/v1/devices", |f| on(f, api::list_devices))
        .add("POST", "/api/v1/devices", |f| on(f, api::create_device))
        .add("GET", "/api/v1/devices/{id}", |f| on(f, api::get_device))
        .add("DELETE", "/api/v1/devices/{id}", |f| {
            on(f, api::delete_device)
        })
        .add("PUT", "/api/v1/devices/{id}/module", |f| {
            on(f, api::bind_module)
        })
        .add("GET", "/api/v1/devices/{id}/stats", |f| on(f, api::stats))
        .add("GET", "/api/v1/devices/{id}/log", |f| on(f, api::log))
        .add("POST", "/api/v1/devices/{id}/exercise", |f| {
            on(f, api::exercise)
        })
        .add("POST", "/api/v1/devices/{id}/export", |f| {
            on(f, api::export)
        })
        .add("DELETE", "/api/v1/devices/{id}/export", |f| {
            on(f, api::unexport)
        })
        .add("GET", "/metrics", |f| on(f, metrics::handler))
        .add("GET", "/", |f| on(f, api::ui_index))
        .add("GET", "/ui/{*path}", |f| on(f, api::ui_asset))
        .map_router(|r| r.fallback(api::fallback))
}

impl Routes {
    fn map_router(
        mut self,
        f: impl FnOnce(Router<Arc<ControlPlane>>) -> Router<Arc<ControlPlane>>,
    ) -> Self {
        self.router = f(self.router);
        self
    }
}

/// `(method, path)` of every route the router serves (paths in axum's
/// syntax: `{id}`, `{*path}`).
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    build_routes(0).table
}

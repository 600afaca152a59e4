//! The JSON API's handlers (docs/api.md).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::app::{
    ControlPlane, create_private_dir, hash_token, new_token, write_content_addressed,
};
use crate::dto::{
    self, BindRequest, CreateDevice, DeviceDetail, DeviceLog, DeviceStats, ExerciseRequest,
    ExerciseStarted, Exported, ModuleRef, NewToken, Quota, Role, TenantRequest, Token,
    TokenRequest, WhoAmI,
};
use crate::error::ApiError;
use crate::extract::{Admin, Body, Caller};
use crate::host::{DeviceCounters, DeviceLive, DeviceState, FrontendKind, Host, HostError};
use crate::store::{DeviceRow, ModuleRow, NewDevice, NewModule, Report, Scope, TenantRow, rfc3339};

type Cp = State<Arc<ControlPlane>>;
type ApiResult = Result<Response, ApiError>;

fn parse_id(s: &str, what: &str) -> Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} with id {s:?}")))
}

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

fn created(v: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Runs a blocking host call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("host call failed: {e}")))
}

/// Runs a state change to its end even if the client goes away (the
/// handler's future may be dropped; a spawned task is not).
async fn detached<T: Send + 'static>(
    fut: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(fut)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}

// ---------------------------------------------------------------- validation

/// `[a-z0-9][a-z0-9_-]{0,31}`.
pub(crate) fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn check_name(field: &str, s: &str) -> Result<(), ApiError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("{s:?} is not a valid name ([a-z0-9][a-z0-9_-]{{0,31}})"),
        ))
    }
}

fn valid_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
}

fn check_limit(field: &str, v: Option<u64>) -> Result<Option<u64>, ApiError> {
    match v {
        Some(n) if i64::try_from(n).is_err() => Err(ApiError::invalid(field, "too large")),
        other => Ok(other),
    }
}

// ---------------------------------------------------------------- JSON shapes

fn module_dto(cp: &ControlPlane, m: ModuleRow, scope: Scope) -> Result<dto::Module, ApiError> {
    Ok(dto::Module {
        bound_devices: cp.store.bound_devices(m.id, scope)?,
        id: m.id,
        name: m.name,
        version: m.version,
        sha256: m.sha256,
        size: m.size,
        owner: m.owner,
        uploaded_by: m.uploaded_by,
        created_at: rfc3339(m.created_at),
        builtin: m.owner_id.is_none(),
        imports: m.report.imports,
        exports: m.report.exports,
    })
}

/// A tenant as the API shows it; `resources` only where the route reports
/// what its devices hold.
fn tenant_dto(t: TenantRow, resources: Option<crate::host::TenantResources>) -> dto::Tenant {
    dto::Tenant {
        name: t.name,
        quota: t.quota,
        created_at: rfc3339(t.created_at),
        usage: t.usage,
        resources,
    }
}

/// A device's live state, or `restoring` while the control plane has not
/// brought it back since the daemon started.
fn live_of(cp: &ControlPlane, id: i64) -> Option<DeviceLive> {
    let live = cp.host.live(id);
    if !cp.is_restoring(id)
        || live
            .as_ref()
            .is_some_and(|l| l.state != DeviceState::Stopped)
    {
        return live;
    }
    Some(DeviceLive {
        state: DeviceState::Restoring,
        reason: Some("being restored since the daemon started".into()),
        ..stopped()
    })
}

/// What a device the host does not know shows: stopped, zero counters.
fn stopped() -> DeviceLive {
    DeviceLive {
        state: DeviceState::Stopped,
        reason: None,
        restarts: 0,
        counters: DeviceCounters::default(),
        log: Vec::new(),
        exercising: false,
        resources: None,
    }
}

fn device_dto(cp: &ControlPlane, d: &DeviceRow) -> dto::Device {
    let live = live_of(cp, d.id).unwrap_or_else(stopped);
    dto::Device {
        id: d.id,
        tenant: d.tenant.clone(),
        name: d.name.clone(),
        size: d.size,
        block_size: d.block_size,
        module: ModuleRef {
            id: d.module_id,
            name: d.module_name.clone(),
            version: d.module_version.clone(),
            sha256: d.module_sha256.clone(),
        },
        config: crate::host::redact_config(&d.config),
        created_at: rfc3339(d.created_at),
        state: live.state,
        reason: live.reason,
        restarts: live.restarts,
        exercising: live.exercising,
        counters: live.counters,
        resources: live.resources,
        lun: d.lun.clone(),
    }
}

/// Device `id` (as the route names it) if `scope` may see it, else 404.
fn visible_device(cp: &ControlPlane, scope: Scope, id: &str) -> Result<DeviceRow, ApiError> {
    let id = parse_id(id, "device")?;
    cp.store
        .device(id, scope)?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))
}

/// Runs `change` on device `id` to its end even if the client goes away
/// (detached), holding the device's lock, on the device as the database
/// has it once the lock is held (a delete may have come first: 404).
async fn change_device<T, Fut>(
    cp: &Arc<ControlPlane>,
    id: i64,
    change: impl FnOnce(Arc<ControlPlane>, DeviceRow) -> Fut + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let cp = Arc::clone(cp);
    detached(async move {
        let _guard = cp.lock_device(id).await;
        let d = cp
            .store
            .device(id, Scope::All)?
            .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))?;
        change(cp, d).await
    })
    .await
}

/// Records in the database what the host just did (`record`'s outcome);
/// if that failed, `undo`es it on the host, so the two stay in step, and
/// answers the database's error.
async fn record_or_undo(
    cp: &ControlPlane,
    what: String,
    record: Result<(), rusqlite::Error>,
    undo: impl FnOnce(&dyn Host) -> Result<(), HostError> + Send + 'static,
) -> Result<(), ApiError> {
    let Err(e) = record else { return Ok(()) };
    let undone = host_call(cp, "undoing", undo).await;
    tracing::error!("recording {what}: {e}; undone on the host: {undone:?}");
    Err(e.into())
}

/// A blocking call of the data plane; its refusal answers `context: why`
/// with the status of its kind.
async fn host_call<T: Send + 'static>(
    cp: &ControlPlane,
    context: &'static str,
    call: impl FnOnce(&dyn Host) -> Result<T, HostError> + Send + 'static,
) -> Result<T, ApiError> {
    let host = Arc::clone(&cp.host);
    blocking(move || call(&*host))
        .await?
        .map_err(|e| ApiError::host(context, e))
}

fn tenant_by_name(cp: &ControlPlane, name: &str) -> Result<crate::store::TenantRow, ApiError> {
    cp.store
        .tenant(name)?
        .ok_or_else(|| ApiError::not_found(format!("no tenant named {name:?}")))
}

// ---------------------------------------------------------------- misc routes

pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

pub(crate) async fn whoami(caller: Caller, State(cp): Cp) -> ApiResult {
    let (role, tenant) = match caller {
        Caller::Admin { .. } => (Role::Admin, None),
        Caller::Tenant { name, .. } => (Role::Tenant, Some(name)),
    };
    ok(WhoAmI {
        role,
        tenant,
        frontend: cp.host.frontend(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

fn asset_response(path: &str) -> Response {
    match crate::ui::asset(path) {
        Some((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        None => ApiError::not_found(format!("no UI asset {path:?}")).into_response(),
    }
}

pub(crate) async fn ui_index() -> Response {
    asset_response("index.html")
}

pub(crate) async fn ui_asset(Path(path): Path<String>) -> Response {
    asset_response(&path)
}

pub(crate) async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

// ---------------------------------------------------------------- tenants

/// `base` with the quota fields `req` sets.
fn apply_quota(r: &TenantRequest, base: Quota) -> Result<Quota, ApiError> {
    let f = |name: &str, v: Option<u64>, old: u64| -> Result<u64, ApiError> {
        Ok(check_limit(name, v)?.unwrap_or(old))
    };
    Ok(Quota {
        max_devices: f("max_devices", r.max_devices, base.max_devices)?,
        max_total_bytes: f("max_total_bytes", r.max_total_bytes, base.max_total_bytes)?,
        max_guest_memory: f(
            "max_guest_memory",
            r.max_guest_memory,
            base.max_guest_memory,
        )?,
        max_open_files: f("max_open_files", r.max_open_files, base.max_open_files)?,
        max_instances: f("max_instances", r.max_instances, base.max_instances)?,
        max_stored_files: f(
            "max_stored_files",
            r.max_stored_files,
            base.max_stored_files,
        )?,
        max_modules: f("max_modules", r.max_modules, base.max_modules)?,
        max_module_total_bytes: f(
            "max_module_total_bytes",
            r.max_module_total_bytes,
            base.max_module_total_bytes,
        )?,
    })
}

pub(crate) async fn list_tenants(_: Admin, State(cp): Cp) -> ApiResult {
    let all: Vec<dto::Tenant> = cp
        .store
        .tenants()?
        .into_iter()
        .map(|t| {
            let held = cp.host.tenant_resources(&t.name);
            tenant_dto(t, held)
        })
        .collect();
    ok(all)
}

pub(crate) async fn create_tenant(
    _: Admin,
    State(cp): Cp,
    Body(b): Body<TenantRequest>,
) -> ApiResult {
    let name = b.name.as_deref().unwrap_or_default();
    check_name("name", name)?;
    let q = apply_quota(&b, cp.default_quota)?;
    let t = cp.store.create_tenant(name, &q)?;
    created(tenant_dto(t, None))
}

pub(crate) async fn get_tenant(_: Admin, State(cp): Cp, Path(name): Path<String>) -> ApiResult {
    let t = tenant_by_name(&cp, &name)?;
    let held = cp.host.tenant_resources(&t.name);
    ok(tenant_dto(t, held))
}

pub(crate) async fn patch_tenant(
    _: Admin,
    State(cp): Cp,
    Path(name): Path<String>,
    Body(b): Body<TenantRequest>,
) -> ApiResult {
    if b.name.is_some() {
        return Err(ApiError::invalid("name", "a tenant cannot be renamed"));
    }
    let t = tenant_by_name(&cp, &name)?;
    cp.store.update_quota(t.id, &apply_quota(&b, t.quota)?)?;
    ok(tenant_dto(tenant_by_name(&cp, &name)?, None))
}

pub(crate) async fn delete_tenant(_: Admin, State(cp): Cp, Path(name): Path<String>) -> ApiResult {
    cp.store.delete_tenant(&name)?;
    no_content()
}

pub(crate) async fn create_token(
    _: Admin,
    State(cp): Cp,
    Path(name): Path<String>,
    Body(b): Body<TokenRequest>,
) -> ApiResult {
    let t = tenant_by_name(&cp, &name)?;
    let label = b.label.trim();
    if label.is_empty() || label.len() > 64 {
        return Err(ApiError::invalid("label", "must be 1 to 64 characters"));
    }
    let token = new_token().map_err(ApiError::internal)?;
    let row = cp
        .store
        .insert_token(Some(t.id), label, &hash_token(&token))?;
    created(NewToken {
        id: row.id,
        label: row.label,
        token,
        created_at: rfc3339(row.created_at),
    })
}

pub(crate) async fn list_tokens(_: Admin, State(cp): Cp, Path(name): Path<String>) -> ApiResult {
    let t = tenant_by_name(&cp, &name)?;
    let all: Vec<Token> = cp
        .store
        .list_tokens(t.id)?
        .into_iter()
        .map(|r| Token {
            id: r.id,
            label: r.label,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    ok(all)
}

pub(crate) async fn delete_token(
    _: Admin,
    State(cp): Cp,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let t = tenant_by_name(&cp, &name)?;
    let id = parse_id(&id, "token")?;
    if !cp.store.delete_token(t.id, id)? {
        return Err(ApiError::not_found(format!(
            "tenant {name:?} has no token with id {id}"
        )));
    }
    no_content()
}

// ---------------------------------------------------------------- modules

pub(crate) async fn list_modules(caller: Caller, State(cp): Cp) -> ApiResult {
    let scope = caller.scope();
    let list = cp
        .store
        .modules(scope)?
        .into_iter()
        .map(|m| module_dto(&cp, m, scope))
        .collect::<Result<Vec<_>, _>>()?;
    ok(list)
}

pub(crate) async fn get_module(caller: Caller, State(cp): Cp, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id, "module")?;
    let scope = caller.scope();
    let m = cp
        .store
        .module(id, scope)?
        .ok_or_else(|| ApiError::not_found(format!("no module with id {id}")))?;
    ok(module_dto(&cp, m, scope)?)
}

pub(crate) async fn delete_module(
    caller: Caller,
    State(cp): Cp,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id, "module")?;
    let pending = cp.pending_binds.lock().unwrap_or_else(|e| e.into_inner());
    if pending.get(&id).is_some_and(|&n| n > 0) {
        return Err(ApiError::conflict(format!(
            "a device is being bound to module {id}; try again when it is done"
        )));
    }
    // Lock order: pending binds, then the database (as in bind).
    let gone = cp
        .store
        .delete_module(id, caller.scope(), &cp.modules_dir())?;
    drop(pending);
    if let Some(sha) = gone {
        // No module row has these bytes any more: free the compiled code.
        cp.host.forget_module(&sha);
    }
    no_content()
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(e.body_text())
    } else {
        ApiError::bad_request(format!("multipart body: {}", e.body_text()))
    }
}

async fn text_field(
    mut field: axum::extract::multipart::Field<'_>,
    name: &str,
    max: usize,
) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > max {
            return Err(ApiError::invalid(name, format!("longer than {max} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| ApiError::invalid(name, "not UTF-8"))
}

/// The tenant a request acts for: a tenant token's own (naming another is
/// refused with `not_own`), or the one the admin names (`admin_must_name`
/// when it names none).
fn acting_tenant(
    cp: &ControlPlane,
    caller: &Caller,
    named: Option<&str>,
    not_own: &str,
    admin_must_name: &str,
) -> Result<i64, ApiError> {
    match (caller, named) {
        (Caller::Tenant { id, name, .. }, t) => {
            if t.is_some_and(|t| t != name) {
                return Err(ApiError::invalid("tenant", not_own));
            }
            Ok(*id)
        }
        (Caller::Admin { .. }, Some(t)) => Ok(cp
            .store
            .tenant(t)?
            .ok_or_else(|| ApiError::invalid("tenant", format!("no tenant named {t:?}")))?
            .id),
        (Caller::Admin { .. }, None) => Err(ApiError::invalid("tenant", admin_must_name)),
    }
}

pub(crate) async fn upload_module(
    caller: Caller,
    State(cp): Cp,
    Query(query): Query<HashMap<String, String>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult {
    let owner = acting_tenant(
        &cp,
        &caller,
        query.get("tenant").map(String::as_str),
        "a tenant token uploads to its own tenant",
        "the admin uploads for a tenant: add ?tenant=<name>",
    )?;
    let mut multipart = multipart.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = cp.max_module_bytes;
    let (mut name, mut version, mut file) = (None, None, None);
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("name") => name = Some(text_field(field, "name", 256).await?),
            Some("version") => version = Some(text_field(field, "version", 256).await?),
            Some("file") => {
                let mut buf = Vec::new();
                let mut hasher = Sha256::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if (buf.len() + chunk.len()) as u64 > limit {
                        return Err(ApiError::too_large(format!(
                            "module is larger than the limit of {limit} bytes"
                        )));
                    }
                    hasher.update(&chunk);
                    buf.extend_from_slice(&chunk);
                }
                file = Some((buf, hex::encode(hasher.finalize())));
            }
            _ => {}
        }
    }
    let name = name.ok_or_else(|| ApiError::invalid("name", "missing"))?;
    check_name("name", &name)?;
    let (bytes, sha) = file.ok_or_else(|| ApiError::invalid("file", "missing"))?;
    let version = match version.filter(|v| !v.is_empty()) {
        Some(v) if valid_version(&v) => v,
        Some(v) => {
            return Err(ApiError::invalid(
                "version",
                format!("{v:?}: 1 to 64 of [A-Za-z0-9._+-]"),
            ));
        }
        None => sha[..12].to_owned(),
    };
    if cp.store.module_name_taken(Some(owner), &name, &version)? {
        return Err(ApiError::conflict(format!(
            "module {name:?} version {version:?} already exists"
        )));
    }
    // Refused before any compilation; checked again when it is stored.
    if let Some(t) = cp.store.tenant_by_id(owner)? {
        crate::store::Store::module_quota(&t, bytes.len() as u64)?;
    }
    let bytes = Arc::new(bytes);
    let report = {
        let (host, bytes) = (cp.host.clone(), bytes.clone());
        blocking(move || host.validate(&bytes)).await?
    }
    .map_err(ApiError::refusal)?;
    let new = NewModule {
        name,
        version,
        sha256: sha.clone(),
        size: bytes.len() as u64,
        owner_id: Some(owner),
        uploaded_by: caller.who(),
        report: Report {
            imports: report.imports,
            exports: report.exports,
        },
    };
    let path = cp.module_path(&sha);
    let cp2 = cp.clone();
    let m = blocking(move || {
        cp2.store
            .insert_module(&new, || write_content_addressed(&path, &bytes))
    })
    .await??;
    created(module_dto(&cp, m, caller.scope())?)
}

// ---------------------------------------------------------------- devices

pub(crate) async fn list_devices(
    caller: Caller,
    State(cp): Cp,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let scope = match (caller.scope(), query.get("tenant")) {
        (Scope::All, Some(t)) => Scope::Tenant(tenant_by_name(&cp, t)?.id),
        (scope, _) => scope,
    };
    let list: Vec<dto::Device> = cp
        .store
        .devices(scope)?
        .iter()
        .map(|d| device_dto(&cp, d))
        .collect();
    ok(list)
}

fn check_config(config: &str) -> Result<(), ApiError> {
    if config.len() > 4096 || config.contains('\0') {
        return Err(ApiError::invalid(
            "config",
            "at most 4096 bytes, no NUL characters",
        ));
    }
    Ok(())
}

pub(crate) async fn create_device(
    caller: Caller,
    State(cp): Cp,
    Body(b): Body<CreateDevice>,
) -> ApiResult {
    let tenant_id = acting_tenant(
        &cp,
        &caller,
        b.tenant.as_deref(),
        "a tenant token creates devices in its own tenant",
        "the admin creates devices for a tenant: set \"tenant\"",
    )?;
    check_name("name", &b.name)?;
    let block_size = b.block_size.unwrap_or(512);
    if block_size != 512 && block_size != 4096 {
        return Err(ApiError::invalid(
            "block_size",
            format!("{block_size}: must be 512 or 4096"),
        ));
    }
    let size = b.size.bytes().map_err(|e| ApiError::invalid("size", e))?;
    if size == 0 || size % u64::from(block_size) != 0 || i64::try_from(size).is_err() {
        return Err(ApiError::invalid(
            "size",
            format!(
                "{size} bytes: must be more than 0 and a multiple of the block size {block_size}"
            ),
        ));
    }
    check_config(&b.config)?;
    let new = NewDevice {
        tenant_id,
        name: b.name,
        size,
        block_size,
        module_id: b.module,
        config: b.config,
    };
    let cp2 = cp.clone();
    let row = detached(async move {
        let cp = cp2;
        let row = cp.store.insert_device(&new, |id| cp.device_dir(id))?;
        let _guard = cp.lock_device(row.id).await;
        // A delete may have slipped in between the insert and the lock.
        let row = cp
            .store
            .device(row.id, Scope::All)?
            .ok_or_else(|| ApiError::conflict("device deleted while being created"))?;
        let undo = |cp: &ControlPlane, row: &DeviceRow| {
            if let Err(e) = cp.store.delete_device(row.id) {
                tracing::error!("undoing device {}: {e}", row.id);
            }
            let _ = std::fs::remove_dir_all(&row.dir);
        };
        let dir_result = match std::fs::remove_dir_all(&row.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => create_private_dir(&row.dir),
        };
        if let Err(e) = dir_result {
            undo(&cp, &row);
            return Err(ApiError::internal(format!(
                "creating {}: {e}",
                row.dir.display()
            )));
        }
        let spec = cp.spec(&row);
        if let Err(e) = host_call(&cp, "starting the device", move |h| h.start(&spec)).await {
            undo(&cp, &row);
            return Err(e);
        }
        Ok(row)
    })
    .await?;
    created(device_dto(&cp, &row))
}

pub(crate) async fn get_device(caller: Caller, State(cp): Cp, Path(id): Path<String>) -> ApiResult {
    let d = visible_device(&cp, caller.scope(), &id)?;
    // The backstore's own counters come with its debug text (asked at most
    // once a second per device, however many clients ask).
    let host = cp.host.clone();
    let id = d.id;
    let stats = blocking(move || {
        let _ = host.debug(id);
        host.guest_stats(id)
    })
    .await?;
    ok(DeviceDetail {
        device: device_dto(&cp, &d),
        guest_stats: stats,
    })
}

pub(crate) async fn delete_device(
    caller: Caller,
    State(cp): Cp,
    Path(id): Path<String>,
) -> ApiResult {
    let d = visible_device(&cp, caller.scope(), &id)?;
    change_device(&cp, d.id, |cp, d| async move {
        if let Some(lun) = d.lun.clone() {
            let spec = cp.spec(&d);
            host_call(&cp, "removing the LUN", move |h| h.unexport(&spec, &lun)).await?;
            cp.store.clear_lun(d.id)?;
        }
        let id = d.id;
        if let Err(e) = host_call(&cp, "stopping", move |h| h.stop(id)).await {
            tracing::warn!("device {} ({}/{}): {}", d.id, d.tenant, d.name, e.message);
        }
        cp.store.delete_device(d.id)?;
        match std::fs::remove_dir_all(&d.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("removing {}: {e}", d.dir.display());
            }
            _ => {}
        }
        cp.forget_device_lock(d.id);
        Ok(())
    })
    .await?;
    no_content()
}

/// Counts a bind to a module as pending until dropped.
struct PendingBind {
    cp: Arc<ControlPlane>,
    module: i64,
}

impl Drop for PendingBind {
    fn drop(&mut self) {
        let mut p = self
            .cp
            .pending_binds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = p.get_mut(&self.module) {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.module);
            }
        }
    }
}

pub(crate) async fn bind_module(
    caller: Caller,
    State(cp): Cp,
    Path(id): Path<String>,
    Body(b): Body<BindRequest>,
) -> ApiResult {
    let d = visible_device(&cp, caller.scope(), &id)?;
    if let Some(c) = &b.config {
        check_config(c)?;
    }
    let row = change_device(&cp, d.id, move |cp, d| async move {
        let (m, _pending) = {
            // Lock order: pending binds, then the database (as in delete).
            let mut pending = cp.pending_binds.lock().unwrap_or_else(|e| e.into_inner());
            let m = cp
                .store
                .module(b.module, Scope::Tenant(d.tenant_id))?
                .ok_or_else(|| {
                    ApiError::invalid("module", format!("no module with id {}", b.module))
                })?;
            *pending.entry(m.id).or_default() += 1;
            (
                m,
                PendingBind {
                    cp: cp.clone(),
                    module: b.module,
                },
            )
        };
        let mut new = d.clone();
        new.module_id = m.id;
        new.module_name = m.name;
        new.module_version = m.version;
        new.module_sha256 = m.sha256;
        if let Some(c) = b.config {
            new.config = c;
        }
        let spec = cp.spec(&new);
        host_call(&cp, "rebinding", move |h| h.rebind(&spec)).await?;
        // Else the host goes back to what the database says.
        let (recorded, old) = (
            cp.store.set_binding(d.id, new.module_id, &new.config),
            cp.spec(&d),
        );
        let what = format!("the binding of device {}", d.id);
        record_or_undo(&cp, what, recorded, move |h| h.rebind(&old)).await?;
        Ok(new)
    })
    .await?;
    ok(device_dto(&cp, &row))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) async fn stats(caller: Caller, State(cp): Cp, Path(id): Path<String>) -> ApiResult {
    let d = visible_device(&cp, caller.scope(), &id)?;
    let l = live_of(&cp, d.id).unwrap_or_else(stopped);
    ok(DeviceStats {
        at_ms: now_ms(),
        state: l.state,
        reason: l.reason,
        restarts: l.restarts,
        counters: l.counters,
        resources: l.resources,
    })
}

pub(crate) async fn log(caller: Caller, State(cp): Cp, Path(id): Path<String>) -> ApiResult {
    let d = visible_device(&cp, caller.scope(), &id)?;
    let lines = cp.host.live(d.id).map(|l| l.log).unwrap_or_default();
    let host = cp.host.clone();
    let (debug, stats) = blocking(move || (host.debug(d.id), host.guest_stats(d.id))).await?;
    ok(DeviceLog {
        log: lines,
        debug: debug.unwrap_or_else(|e| e.message),
        guest_stats: stats,
    })
}

pub(crate) async fn exercise(
    caller: Caller,
    State(cp): Cp,
    Path(id): Path<String>,
    Body(b): Body<ExerciseRequest>,
) -> ApiResult {
    let d = visible_device(&cp, caller.scope(), &id)?;
    let seconds = b.seconds.unwrap_or(10);
    let queue_depth = b.queue_depth.unwrap_or(16);
    if !(1..=600).contains(&seconds) {
        return Err(ApiError::invalid("seconds", format!("{seconds}: 1 to 600")));
    }
    if !(1..=128).contains(&queue_depth) {
        return Err(ApiError::invalid(
            "queue_depth",
            format!("{queue_depth}: 1 to 128"),
        ));
    }
    let mix = b.mix.unwrap_or_else(|| "all".into());
    crate::host::valid_mix(&mix).map_err(|e| ApiError::invalid("mix", e))?;
    let frontend = cp.host.frontend();
    if frontend.kind != FrontendKind::Sim {
        return Err(ApiError::unsupported(
            "exercise runs on the simulator only; on LIO, send I/O from an initiator",
        ));
    }
    let m = mix.clone();
    host_call(&cp, "exercise", move |h| {
        h.exercise(d.id, seconds, queue_depth, &m)
    })
    .await?;
    let started = ExerciseStarted {
        device: d.id,
        seconds,
        queue_depth,
        mix,
    };
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

pub(crate) async fn export(_: Admin, State(cp): Cp, Path(id): Path<String>) -> ApiResult {
    let d = visible_device(&cp, Scope::All, &id)?;
    let frontend = cp.host.frontend();
    if frontend.kind != FrontendKind::Tcmu {
        return Err(ApiError::unsupported(format!(
            "export needs LIO: {}",
            frontend.note
        )));
    }
    let lun = change_device(&cp, d.id, |cp, d| async move {
        if let Some(lun) = &d.lun {
            return Err(ApiError::conflict(format!(
                "device {} is already exported as {}/{} LUN {}",
                d.id, lun.wwn, lun.backstore, lun.lun
            )));
        }
        let spec = cp.spec(&d);
        let s = spec.clone();
        let lun = host_call(&cp, "export", move |h| h.export(&s)).await?;
        let (recorded, l) = (cp.store.set_lun(d.id, &lun), lun.clone());
        let what = format!("the LUN of device {}", d.id);
        record_or_undo(&cp, what, recorded, move |h| h.unexport(&spec, &l)).await?;
        Ok(lun)
    })
    .await?;
    ok(Exported { lun })
}

pub(crate) async fn unexport(_: Admin, State(cp): Cp, Path(id): Path<String>) -> ApiResult {
    let d = visible_device(&cp, Scope::All, &id)?;
    change_device(&cp, d.id, |cp, d| async move {
        let lun = d
            .lun
            .clone()
            .ok_or_else(|| ApiError::not_found(format!("device {} is not exported", d.id)))?;
        let spec = cp.spec(&d);
        host_call(&cp, "unexport", move |h| h.unexport(&spec, &lun)).await?;
        cp.store.clear_lun(d.id)?;
        Ok(())
    })
    .await?;
    no_content()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "0", "a-b_c", "abcdefghijklmnopqrstuvwxyz012345"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a.b",
            "a b",
            "abcdefghijklmnopqrstuvwxyz0123456",
            "é",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

//! The control plane's state: one SQLite database (`<data_dir>/wasmtap.db`)
//! behind one mutex, plus content-addressed module files
//! (`<data_dir>/modules/<sha256>.wasm`).
//!
//! Every method takes the lock for one short burst of SQL (a transaction
//! where a check and a write must be atomic) and never across an `.await`.
//! Methods return [`ApiError`] directly: their callers are the API handlers.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::Value;
use rusqlite::{
    Connection, OptionalExtension, Params, ToSql, Transaction, params, params_from_iter,
};

use crate::dto::{BoundDevice, Quota, Usage};
use crate::error::{ApiError, Error};
use crate::host::LunInfo;

/// Schema migrations, in order: migration `i` takes the database from
/// `user_version` `i` to `i + 1`. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: tenants, tokens, modules, devices.
    "CREATE TABLE tenants (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        max_devices INTEGER NOT NULL,
        max_total_bytes INTEGER NOT NULL,
        max_guest_memory INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id INTEGER REFERENCES tenants(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE modules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        owner_id INTEGER REFERENCES tenants(id),
        uploaded_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    CREATE UNIQUE INDEX modules_owner_name_version ON modules (COALESCE(owner_id, 0), name, version);
    CREATE INDEX modules_sha256 ON modules (sha256);
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        block_size INTEGER NOT NULL,
        module_id INTEGER NOT NULL REFERENCES modules(id),
        config TEXT NOT NULL,
        dir TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (tenant_id, name)
    );",
    // 2: kernel LUNs devices are exported as.
    "CREATE TABLE luns (
        device_id INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        backstore TEXT NOT NULL,
        wwn TEXT NOT NULL,
        lun INTEGER NOT NULL
    );",
    // 3: quotas of the resources a tenant's guests and uploads share with
    // everyone (docs/limits.md); existing tenants get the defaults.
    "ALTER TABLE tenants ADD COLUMN max_open_files INTEGER NOT NULL DEFAULT 256;
    ALTER TABLE tenants ADD COLUMN max_instances INTEGER NOT NULL DEFAULT 64;
    ALTER TABLE tenants ADD COLUMN max_stored_files INTEGER NOT NULL DEFAULT 10000;
    ALTER TABLE tenants ADD COLUMN max_modules INTEGER NOT NULL DEFAULT 32;
    ALTER TABLE tenants ADD COLUMN max_module_total_bytes INTEGER NOT NULL DEFAULT 268435456;",
];

/// The schema version this build migrates to.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Which rows a caller may see: everything, or one tenant's (plus the
/// built-in modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The admin: all tenants.
    All,
    /// One tenant, by id.
    Tenant(i64),
}

impl Scope {
    /// The tenant id to filter by (`NULL` = no filter).
    fn tenant(self) -> Option<i64> {
        match self {
            Scope::All => None,
            Scope::Tenant(id) => Some(id),
        }
    }
}

/// A tenant with its quota and usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantRow {
    pub id: i64,
    pub name: String,
    pub quota: Quota,
    pub created_at: i64,
    pub usage: Usage,
}

/// A token as listed (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRow {
    pub id: i64,
    pub label: String,
    pub created_at: i64,
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenOwner {
    pub token_id: i64,
    pub label: String,
    /// `None` for an admin token.
    pub tenant: Option<(i64, String)>,
}

/// The validation report stored with a module.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// A module row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleRow {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub owner_id: Option<i64>,
    pub owner: Option<String>,
    pub uploaded_by: String,
    pub created_at: i64,
    pub report: Report,
}

/// A module to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewModule {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub owner_id: Option<i64>,
    pub uploaded_by: String,
    pub report: Report,
}

/// A device row joined with its tenant, module and LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRow {
    pub id: i64,
    pub tenant_id: i64,
    pub tenant: String,
    pub name: String,
    pub size: u64,
    pub block_size: u32,
    pub module_id: i64,
    pub module_name: String,
    pub module_version: String,
    pub module_sha256: String,
    pub config: String,
    pub dir: PathBuf,
    pub created_at: i64,
    pub tenant_quota: Quota,
    pub lun: Option<LunInfo>,
}

/// A device to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewDevice {
    pub tenant_id: i64,
    pub name: String,
    pub size: u64,
    pub block_size: u32,
    pub module_id: i64,
    pub config: String,
}

/// `2024-05-06T07:08:09Z` for a Unix time (proleptic Gregorian, UTC).
pub(crate) fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// How a selected row becomes a value.
type FromRow<T> = fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>;

/// The row `sql` selects, if any (on the store's connection or in a
/// transaction).
fn one<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    map: FromRow<T>,
) -> rusqlite::Result<Option<T>> {
    conn.query_row(sql, p, map).optional()
}

/// Every row `sql` selects.
fn all<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    map: FromRow<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut st = conn.prepare(sql)?;
    st.query_map(p, map)?.collect()
}

/// Tenant `key` (`t.id = ?1` or `t.name = ?1`).
fn tenant_where(
    conn: &Connection,
    key: &str,
    value: impl ToSql,
) -> rusqlite::Result<Option<TenantRow>> {
    one(
        conn,
        &format!("{TENANT_SELECT} WHERE {key} = ?1"),
        [value],
        tenant_from_row,
    )
}

/// Module `id` if `scope` may see it (its own or a built-in).
fn visible_module(conn: &Connection, id: i64, scope: Scope) -> rusqlite::Result<Option<ModuleRow>> {
    one(
        conn,
        &format!(
            "{MODULE_SELECT} WHERE m.id = ?1 AND (?2 IS NULL OR m.owner_id IS NULL OR m.owner_id = ?2)"
        ),
        params![id, scope.tenant()],
        module_from_row,
    )
}

/// The database.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Mutex<Connection>,
}

/// Applies the migrations after the database's version, up to `upto`.
pub(crate) fn migrate(conn: &mut Connection, upto: i64) -> Result<(), Error> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= found || version > upto {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!("database schema migrated to version {version}");
    }
    Ok(())
}

/// Opens a connection with the settings every connection needs.
pub(crate) fn connect(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// A tenant's quota columns (of `tenants`; no other table has them), in
/// the order [`quota_at`] reads them and [`quota_values`] writes them.
macro_rules! quota_columns {
    () => {
        "max_devices, max_total_bytes, max_guest_memory, max_open_files,
        max_instances, max_stored_files, max_modules, max_module_total_bytes"
    };
}

/// A quota as the values of [`quota_columns`].
fn quota_values(q: &Quota) -> [i64; 8] {
    [
        q.max_devices,
        q.max_total_bytes,
        q.max_guest_memory,
        q.max_open_files,
        q.max_instances,
        q.max_stored_files,
        q.max_modules,
        q.max_module_total_bytes,
    ]
    .map(to_i64)
}

/// The quota in the eight columns from `first` on ([`quota_columns`]).
fn quota_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Quota> {
    let q = |i: usize| r.get(first + i).map(to_u64);
    Ok(Quota {
        max_devices: q(0)?,
        max_total_bytes: q(1)?,
        max_guest_memory: q(2)?,
        max_open_files: q(3)?,
        max_instances: q(4)?,
        max_stored_files: q(5)?,
        max_modules: q(6)?,
        max_module_total_bytes: q(7)?,
    })
}

const DEVICE_SELECT: &str = concat!(
    "SELECT d.id, d.tenant_id, t.name, d.name, d.size, d.block_size,
        d.module_id, m.name, m.version, m.sha256, d.config, d.dir, d.created_at,
        l.backstore, l.wwn, l.lun, ",
    quota_columns!(),
    " FROM devices d
    JOIN tenants t ON t.id = d.tenant_id
    JOIN modules m ON m.id = d.module_id
    LEFT JOIN luns l ON l.device_id = d.id"
);

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    let backstore: Option<String> = r.get(13)?;
    let lun = match backstore {
        Some(backstore) => Some(LunInfo {
            backstore,
            wwn: r.get(14)?,
            lun: r.get(15)?,
        }),
        None => None,
    };
    Ok(DeviceRow {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        tenant: r.get(2)?,
        name: r.get(3)?,
        size: to_u64(r.get(4)?),
        block_size: r.get(5)?,
        module_id: r.get(6)?,
        module_name: r.get(7)?,
        module_version: r.get(8)?,
        module_sha256: r.get(9)?,
        config: r.get(10)?,
        dir: PathBuf::from(r.get::<_, String>(11)?),
        created_at: r.get(12)?,
        tenant_quota: quota_at(r, 16)?,
        lun,
    })
}

const MODULE_SELECT: &str = "SELECT m.id, m.name, m.version, m.sha256, m.size, m.owner_id, t.name,
        m.uploaded_by, m.created_at, m.report
    FROM modules m LEFT JOIN tenants t ON t.id = m.owner_id";

fn module_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModuleRow> {
    let report: String = r.get(9)?;
    Ok(ModuleRow {
        id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        sha256: r.get(3)?,
        size: to_u64(r.get(4)?),
        owner_id: r.get(5)?,
        owner: r.get(6)?,
        uploaded_by: r.get(7)?,
        created_at: r.get(8)?,
        report: serde_json::from_str(&report).unwrap_or_default(),
    })
}

const TENANT_SELECT: &str = concat!(
    "SELECT t.id, t.name, t.created_at,
        (SELECT COUNT(*) FROM devices d WHERE d.tenant_id = t.id),
        (SELECT COALESCE(SUM(d.size), 0) FROM devices d WHERE d.tenant_id = t.id),
        (SELECT COUNT(*) FROM modules m WHERE m.owner_id = t.id),
        (SELECT COALESCE(SUM(m.size), 0) FROM modules m WHERE m.owner_id = t.id), ",
    quota_columns!(),
    " FROM tenants t"
);

fn tenant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenantRow> {
    Ok(TenantRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        usage: Usage {
            devices: to_u64(r.get(3)?),
            total_bytes: to_u64(r.get(4)?),
            modules: to_u64(r.get(5)?),
            module_bytes: to_u64(r.get(6)?),
        },
        quota: quota_at(r, 7)?,
    })
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let mut conn = connect(path)?;
        migrate(&mut conn, SCHEMA_VERSION)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The schema version of the open database.
    #[cfg(test)]
    pub(crate) fn schema_version(&self) -> i64 {
        self.lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap_or(-1)
    }

    // ---- tokens ----

    /// Whether any admin token exists.
    pub(crate) fn has_admin_token(&self) -> Result<bool, rusqlite::Error> {
        self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE tenant_id IS NULL)",
            [],
            |r| r.get(0),
        )
    }

    /// Makes `hash` the only admin token (the configured one).
    pub(crate) fn replace_admin_tokens(
        &self,
        hash: &str,
        label: &str,
    ) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM tokens WHERE tenant_id IS NULL", [])?;
        tx.execute(
            "INSERT INTO tokens (tenant_id, label, hash, created_at) VALUES (NULL, ?1, ?2, ?3)",
            params![label, hash, now_secs()],
        )?;
        tx.commit()
    }

    /// Adds a token (admin if `tenant_id` is `None`); returns its id.
    pub(crate) fn insert_token(
        &self,
        tenant_id: Option<i64>,
        label: &str,
        hash: &str,
    ) -> Result<TokenRow, rusqlite::Error> {
        let conn = self.lock();
        let created_at = now_secs();
        conn.execute(
            "INSERT INTO tokens (tenant_id, label, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![tenant_id, label, hash, created_at],
        )?;
        Ok(TokenRow {
            id: conn.last_insert_rowid(),
            label: label.to_owned(),
            created_at,
        })
    }

    /// Who the token with this hash belongs to.
    pub(crate) fn lookup_token(&self, hash: &str) -> Result<Option<TokenOwner>, rusqlite::Error> {
        one(
            &self.lock(),
            "SELECT k.id, k.label, k.tenant_id, t.name FROM tokens k
             LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = ?1",
            [hash],
            |r| {
                let tenant_id: Option<i64> = r.get(2)?;
                let tenant_name: Option<String> = r.get(3)?;
                Ok(TokenOwner {
                    token_id: r.get(0)?,
                    label: r.get(1)?,
                    tenant: tenant_id.zip(tenant_name),
                })
            },
        )
    }

    /// A tenant's tokens.
    pub(crate) fn list_tokens(&self, tenant_id: i64) -> Result<Vec<TokenRow>, rusqlite::Error> {
        all(
            &self.lock(),
            "SELECT id, label, created_at FROM tokens WHERE tenant_id = ?1 ORDER BY id",
            [tenant_id],
            |r| {
                Ok(TokenRow {
                    id: r.get(0)?,
                    label: r.get(1)?,
                    created_at: r.get(2)?,
                })
            },
        )
    }

    /// Deletes one of a tenant's tokens; false if it has no such token.
    pub(crate) fn delete_token(&self, tenant_id: i64, id: i64) -> Result<bool, rusqlite::Error> {
        let n = self.lock().execute(
            "DELETE FROM tokens WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant_id],
        )?;
        Ok(n > 0)
    }

    // ---- tenants ----

    /// Creates a tenant; 409 if the name is taken.
    pub(crate) fn create_tenant(&self, name: &str, q: &Quota) -> Result<TenantRow, ApiError> {
        {
            let conn = self.lock();
            let sql = concat!(
                "INSERT INTO tenants (name, created_at, ",
                quota_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (name) DO NOTHING"
            );
            let head = [Value::from(name.to_owned()), Value::from(now_secs())];
            let values = head.into_iter().chain(quota_values(q).map(Value::from));
            let n = conn.execute(sql, params_from_iter(values))?;
            if n == 0 {
                return Err(ApiError::conflict(format!(
                    "a tenant named {name:?} already exists"
                )));
            }
        }
        self.tenant(name)?
            .ok_or_else(|| ApiError::internal("tenant vanished after insert"))
    }

    /// One tenant by id.
    pub(crate) fn tenant_by_id(&self, id: i64) -> Result<Option<TenantRow>, rusqlite::Error> {
        tenant_where(&self.lock(), "t.id", id)
    }

    /// One tenant by name.
    pub(crate) fn tenant(&self, name: &str) -> Result<Option<TenantRow>, rusqlite::Error> {
        tenant_where(&self.lock(), "t.name", name)
    }

    /// All tenants, by name.
    pub(crate) fn tenants(&self) -> Result<Vec<TenantRow>, rusqlite::Error> {
        let sql = format!("{TENANT_SELECT} ORDER BY t.name");
        all(&self.lock(), &sql, [], tenant_from_row)
    }

    /// Sets a tenant's quotas.
    pub(crate) fn update_quota(&self, id: i64, q: &Quota) -> Result<(), rusqlite::Error> {
        let sql = concat!(
            "UPDATE tenants SET (",
            quota_columns!(),
            ") = (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) WHERE id = ?1"
        );
        let values = std::iter::once(id).chain(quota_values(q));
        self.lock().execute(sql, params_from_iter(values))?;
        Ok(())
    }

    /// Deletes a tenant and its tokens; 409 while it owns devices or modules.
    pub(crate) fn delete_tenant(&self, name: &str) -> Result<(), ApiError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let Some(t) = tenant_where(&tx, "t.name", name)? else {
            return Err(ApiError::not_found(format!("no tenant named {name:?}")));
        };
        if t.usage.devices > 0 || t.usage.modules > 0 {
            return Err(ApiError::conflict(format!(
                "tenant {name:?} still owns {} device(s) and {} module(s); delete them first",
                t.usage.devices, t.usage.modules
            )));
        }
        tx.execute("DELETE FROM tokens WHERE tenant_id = ?1", [t.id])?;
        tx.execute("DELETE FROM tenants WHERE id = ?1", [t.id])?;
        tx.commit()?;
        Ok(())
    }

    // ---- modules ----

    /// The built-in module with this content, if registered.
    pub(crate) fn builtin_by_sha(
        &self,
        sha256: &str,
    ) -> Result<Option<ModuleRow>, rusqlite::Error> {
        let sql = format!("{MODULE_SELECT} WHERE m.owner_id IS NULL AND m.sha256 = ?1");
        one(&self.lock(), &sql, [sha256], module_from_row)
    }

    /// Whether `owner` already has a module `name` `version`.
    pub(crate) fn module_name_taken(
        &self,
        owner_id: Option<i64>,
        name: &str,
        version: &str,
    ) -> Result<bool, rusqlite::Error> {
        Self::name_taken(&self.lock(), owner_id, name, version)
    }

    fn name_taken(
        conn: &Connection,
        owner_id: Option<i64>,
        name: &str,
        version: &str,
    ) -> Result<bool, rusqlite::Error> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM modules WHERE COALESCE(owner_id, 0) = COALESCE(?1, 0)
                AND name = ?2 AND version = ?3)",
            params![owner_id, name, version],
            |r| r.get(0),
        )
    }

    /// Inserts a module. `put_file` puts its bytes in place (under the lock,
    /// so a concurrent delete of the last module with the same content
    /// cannot remove the file between the write and the insert).
    /// Whether tenant `t` may add a module of `size` bytes: its count and
    /// total size of modules stay within its quota.
    pub(crate) fn module_quota(t: &TenantRow, size: u64) -> Result<(), ApiError> {
        let q = &t.quota;
        if t.usage.modules + 1 > q.max_modules {
            return Err(ApiError::quota(format!(
                "max_modules: tenant {:?} has {} of {} modules; delete one first",
                t.name, t.usage.modules, q.max_modules
            )));
        }
        let total = t.usage.module_bytes.saturating_add(size);
        if total > q.max_module_total_bytes {
            return Err(ApiError::quota(format!(
                "max_module_total_bytes: tenant {:?} has {} bytes of modules; {size} more \
                 would make {total}, over {}",
                t.name, t.usage.module_bytes, q.max_module_total_bytes
            )));
        }
        Ok(())
    }

    pub(crate) fn insert_module(
        &self,
        m: &NewModule,
        put_file: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<ModuleRow, ApiError> {
        let id = {
            let conn = self.lock();
            if Self::name_taken(&conn, m.owner_id, &m.name, &m.version)? {
                return Err(ApiError::conflict(format!(
                    "module {:?} version {:?} already exists",
                    m.name, m.version
                )));
            }
            if let Some(owner) = m.owner_id {
                let t = tenant_where(&conn, "t.id", owner)?
                    .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                Self::module_quota(&t, m.size)?;
            }
            put_file().map_err(|e| ApiError::internal(format!("storing module file: {e}")))?;
            let report = serde_json::to_string(&m.report).unwrap_or_else(|_| "{}".into());
            conn.execute(
                "INSERT INTO modules (name, version, sha256, size, owner_id, uploaded_by, created_at, report)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    m.name,
                    m.version,
                    m.sha256,
                    to_i64(m.size),
                    m.owner_id,
                    m.uploaded_by,
                    now_secs(),
                    report
                ],
            )?;
            conn.last_insert_rowid()
        };
        self.module(id, Scope::All)?
            .ok_or_else(|| ApiError::internal("module vanished after insert"))
    }

    /// One module, if `scope` may see it (its own or a built-in).
    pub(crate) fn module(
        &self,
        id: i64,
        scope: Scope,
    ) -> Result<Option<ModuleRow>, rusqlite::Error> {
        visible_module(&self.lock(), id, scope)
    }

    /// The modules `scope` may see, by id.
    pub(crate) fn modules(&self, scope: Scope) -> Result<Vec<ModuleRow>, rusqlite::Error> {
        let sql = format!(
            "{MODULE_SELECT} WHERE ?1 IS NULL OR m.owner_id IS NULL OR m.owner_id = ?1 ORDER BY m.id"
        );
        all(&self.lock(), &sql, [scope.tenant()], module_from_row)
    }

    /// Devices bound to module `id` that `scope` may see.
    pub(crate) fn bound_devices(
        &self,
        id: i64,
        scope: Scope,
    ) -> Result<Vec<BoundDevice>, rusqlite::Error> {
        all(
            &self.lock(),
            "SELECT d.id, d.name, t.name FROM devices d JOIN tenants t ON t.id = d.tenant_id
             WHERE d.module_id = ?1 AND (?2 IS NULL OR d.tenant_id = ?2) ORDER BY d.id",
            params![id, scope.tenant()],
            |r| {
                Ok(BoundDevice {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    tenant: r.get(2)?,
                })
            },
        )
    }

    /// Deletes a module: 404 if `scope` cannot see it, 409 for a built-in or
    /// while a device is bound to it. Removes the file when no other module
    /// has the same content, and then returns its hash. The caller makes
    /// sure no bind to it is pending.
    pub(crate) fn delete_module(
        &self,
        id: i64,
        scope: Scope,
        modules_dir: &Path,
    ) -> Result<Option<String>, ApiError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let m = visible_module(&tx, id, scope)?
            .ok_or_else(|| ApiError::not_found(format!("no module with id {id}")))?;
        if m.owner_id.is_none() {
            return Err(ApiError::conflict(format!(
                "module {:?} is built in and cannot be deleted",
                m.name
            )));
        }
        let bound: i64 = tx.query_row(
            "SELECT COUNT(*) FROM devices WHERE module_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        if bound > 0 {
            return Err(ApiError::conflict(format!(
                "module {:?} is in use by {bound} device(s); rebind or delete them first",
                m.name
            )));
        }
        tx.execute("DELETE FROM modules WHERE id = ?1", [id])?;
        let others: i64 = tx.query_row(
            "SELECT COUNT(*) FROM modules WHERE sha256 = ?1",
            [&m.sha256],
            |r| r.get(0),
        )?;
        tx.commit()?;
        if others == 0 {
            let path = modules_dir.join(format!("{}.wasm", m.sha256));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("removing {}: {e}", path.display()),
            }
            return Ok(Some(m.sha256));
        }
        Ok(None)
    }

    // ---- devices ----

    /// Inserts a device after checking, atomically: the module is visible
    /// to the tenant, the name is free, and the tenant's quotas allow it.
    /// `dir_of` names the storage directory for the new id.
    pub(crate) fn insert_device(
        &self,
        d: &NewDevice,
        dir_of: impl FnOnce(i64) -> PathBuf,
    ) -> Result<DeviceRow, ApiError> {
        let id = {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let id = Self::insert_device_tx(&tx, d, dir_of)?;
            tx.commit()?;
            id
        };
        self.device(id, Scope::All)?
            .ok_or_else(|| ApiError::internal("device vanished after insert"))
    }

    fn insert_device_tx(
        tx: &Transaction<'_>,
        d: &NewDevice,
        dir_of: impl FnOnce(i64) -> PathBuf,
    ) -> Result<i64, ApiError> {
        let t = tenant_where(tx, "t.id", d.tenant_id)?
            .ok_or_else(|| ApiError::invalid("tenant", "no such tenant"))?;
        let visible: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM modules WHERE id = ?1
                AND (owner_id IS NULL OR owner_id = ?2))",
            params![d.module_id, d.tenant_id],
            |r| r.get(0),
        )?;
        if !visible {
            return Err(ApiError::invalid(
                "module",
                format!("no module with id {}", d.module_id),
            ));
        }
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE tenant_id = ?1 AND name = ?2)",
            params![d.tenant_id, d.name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(ApiError::conflict(format!(
                "tenant {:?} already has a device named {:?}",
                t.name, d.name
            )));
        }
        if t.usage.devices + 1 > t.quota.max_devices {
            return Err(ApiError::quota(format!(
                "max_devices: tenant {:?} has {} of {} devices",
                t.name, t.usage.devices, t.quota.max_devices
            )));
        }
        let total = t.usage.total_bytes.saturating_add(d.size);
        if total > t.quota.max_total_bytes {
            return Err(ApiError::quota(format!(
                "max_total_bytes: tenant {:?} uses {} bytes; {} more would make {} of {} bytes",
                t.name, t.usage.total_bytes, d.size, total, t.quota.max_total_bytes
            )));
        }
        tx.execute(
            "INSERT INTO devices (tenant_id, name, size, block_size, module_id, config, dir, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7)",
            params![
                d.tenant_id,
                d.name,
                to_i64(d.size),
                d.block_size,
                d.module_id,
                d.config,
                now_secs()
            ],
        )?;
        let id = tx.last_insert_rowid();
        let dir = dir_of(id);
        tx.execute(
            "UPDATE devices SET dir = ?2 WHERE id = ?1",
            params![id, dir.to_string_lossy()],
        )?;
        Ok(id)
    }

    /// One device, if `scope` may see it.
    pub(crate) fn device(
        &self,
        id: i64,
        scope: Scope,
    ) -> Result<Option<DeviceRow>, rusqlite::Error> {
        let sql = format!("{DEVICE_SELECT} WHERE d.id = ?1 AND (?2 IS NULL OR d.tenant_id = ?2)");
        one(
            &self.lock(),
            &sql,
            params![id, scope.tenant()],
            device_from_row,
        )
    }

    /// The devices `scope` may see, by id.
    pub(crate) fn devices(&self, scope: Scope) -> Result<Vec<DeviceRow>, rusqlite::Error> {
        let sql = format!("{DEVICE_SELECT} WHERE ?1 IS NULL OR d.tenant_id = ?1 ORDER BY d.id");
        all(&self.lock(), &sql, [scope.tenant()], device_from_row)
    }

    /// Records a device's new binding (after the host switched to it).
    pub(crate) fn set_binding(
        &self,
        id: i64,
        module_id: i64,
        config: &str,
    ) -> Result<(), rusqlite::Error> {
        self.lock().execute(
            "UPDATE devices SET module_id = ?2, config = ?3 WHERE id = ?1",
            params![id, module_id, config],
        )?;
        Ok(())
    }

    /// Deletes a device row (and its LUN row).
    pub(crate) fn delete_device(&self, id: i64) -> Result<(), rusqlite::Error> {
        self.lock()
            .execute("DELETE FROM devices WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Records (or replaces) the LUN a device is exported as.
    pub(crate) fn set_lun(&self, id: i64, lun: &LunInfo) -> Result<(), rusqlite::Error> {
        self.lock().execute(
            "INSERT INTO luns (device_id, backstore, wwn, lun) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id) DO UPDATE SET backstore = ?2, wwn = ?3, lun = ?4",
            params![id, lun.backstore, lun.wwn, lun.lun],
        )?;
        Ok(())
    }

    /// Forgets a device's LUN.
    pub(crate) fn clear_lun(&self, id: i64) -> Result<(), rusqlite::Error> {
        self.lock()
            .execute("DELETE FROM luns WHERE device_id = ?1", [id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn fresh_database_is_at_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.schema_version(), SCHEMA_VERSION);
        const { assert!(SCHEMA_VERSION >= 2) };
    }

    #[test]
    fn old_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut conn = connect(&path).unwrap();
            migrate(&mut conn, 1).unwrap();
            let v: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, 1);
            // The LUN table does not exist yet at version 1.
            assert!(conn.execute("SELECT * FROM luns", []).is_err());
            conn.execute(
                "INSERT INTO tenants (name, max_devices, max_total_bytes, max_guest_memory, created_at)
                 VALUES ('old', 3, 1000, 2000, 5)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version(), SCHEMA_VERSION);
        let t = store.tenant("old").unwrap().unwrap();
        let q = t.quota;
        assert_eq!(
            (q.max_devices, q.max_total_bytes, q.max_guest_memory),
            (3, 1000, 2000)
        );
        // Quotas added later arrive with their defaults.
        let d = Quota::default();
        assert_eq!(
            (q.max_open_files, q.max_instances, q.max_stored_files),
            (d.max_open_files, d.max_instances, d.max_stored_files)
        );
        assert_eq!(
            (q.max_modules, q.max_module_total_bytes),
            (d.max_modules, d.max_module_total_bytes)
        );
        assert_eq!(store.lock().execute("DELETE FROM luns", []).unwrap(), 0);
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let conn = connect(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        match Store::open(&path) {
            Err(Error::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn quota_checks_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let q = Quota {
            max_devices: 2,
            max_total_bytes: 1000,
            max_guest_memory: 1,
            ..Quota::default()
        };
        let t = store.create_tenant("a", &q).unwrap();
        let m = store
            .insert_module(
                &NewModule {
                    name: "m".into(),
                    version: "1".into(),
                    sha256: "00".into(),
                    size: 1,
                    owner_id: None,
                    uploaded_by: "builtin".into(),
                    report: Report::default(),
                },
                || Ok(()),
            )
            .unwrap();
        let new = |name: &str, size| NewDevice {
            tenant_id: t.id,
            name: name.into(),
            size,
            block_size: 512,
            module_id: m.id,
            config: String::new(),
        };
        let dir_of = |id| PathBuf::from(format!("/x/{id}"));
        store.insert_device(&new("d1", 600), dir_of).unwrap();
        let e = store.insert_device(&new("d2", 401), dir_of).unwrap_err();
        assert_eq!(e.code, "quota_exceeded");
        assert!(e.message.contains("max_total_bytes"), "{e}");
        assert!(e.message.contains("1001 of 1000"), "{e}");
        store.insert_device(&new("d2", 400), dir_of).unwrap();
        let e = store.insert_device(&new("d3", 0), dir_of).unwrap_err();
        assert_eq!(e.code, "quota_exceeded");
        assert!(e.message.contains("max_devices"), "{e}");
        assert!(e.message.contains("2 of 2"), "{e}");
        let e = store.insert_device(&new("d1", 0), dir_of).unwrap_err();
        assert_eq!(
            e.code, "conflict",
            "a taken name is named before the quota: {e}"
        );
    }
}

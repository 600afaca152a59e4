//! Daemon configuration: embedded defaults, overridden by a TOML file, then
//! by command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Which kernel interface devices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Frontend {
    /// Real TCMU devices if LIO is present (configfs has `target/`), else the simulator.
    Auto,
    /// Real TCMU devices through UIO.
    Tcmu,
    /// In-process simulated TCMU devices (the control plane's devices run
    /// on the kernel simulator; no LIO needed).
    Sim,
}

/// `wasmtap serve` settings. Every field has a default (see [`Default`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Device source.
    pub frontend: Frontend,
    /// Where UIO devices are listed (`/sys/class/uio`).
    pub sysfs_uio: PathBuf,
    /// Where their device nodes live (`/dev`).
    pub dev_dir: PathBuf,
    /// Where configfs is mounted (`/sys/kernel/config`).
    pub configfs: PathBuf,
    /// How often to look for new or removed devices, in milliseconds.
    pub rescan_ms: u64,
    /// Largest number of ring entries handled per drain (batch size).
    pub batch: usize,
    /// After a pass that completed commands, watch the ring this many
    /// microseconds before sleeping (0: sleep at once). Spinning trades CPU
    /// for latency: a command that arrives meanwhile is taken without a
    /// wake-up. See docs/performance.md for the measured trade.
    pub poll_us: u64,
    /// Where device directories, uploaded modules and caches live.
    pub data_dir: PathBuf,
    /// Simulator frontend: backstore (`native`, or a module name with an
    /// optional `/config`, as in a dev_config after `wasmtap/`).
    pub sim_backstore: String,
    /// Simulator frontend: device size in MiB.
    pub sim_size_mib: u64,
    /// Simulator frontend: queue depth of the built-in load generator.
    pub sim_queue_depth: usize,
    /// Serve the control plane (JSON API, web UI, `/metrics`).
    pub web: bool,
    /// Address of the control plane (loopback by default).
    pub listen: String,
    /// The admin token. Unset (and no `admin_token_file`): one is
    /// generated at the first start and printed once. Keep a file that
    /// sets it private (mode 0600).
    pub admin_token: Option<String>,
    /// A file whose first line is the admin token (instead of
    /// `admin_token`; keep it mode 0600).
    pub admin_token_file: Option<PathBuf>,
    /// Largest module upload, in MiB.
    pub max_module_mib: u64,
    /// HTTP: seconds a client has to send a request's head (line and
    /// headers), from its connection or its first byte (default 10; 0: off).
    pub http_header_timeout_secs: u64,
    /// HTTP: seconds a kept-alive connection may wait for its next request,
    /// or a response for the client to read it (default 60; 0: off).
    pub http_idle_timeout_secs: u64,
    /// HTTP: seconds a request body (a module upload) has to arrive in
    /// full (default 120; 0: off).
    pub http_body_timeout_secs: u64,
    /// HTTP: connections open at once; more are answered 503 and closed
    /// (default 512; 0: no limit).
    pub http_max_connections: usize,
    /// HTTP: connections open at once from one address (IPv6: one /64);
    /// more are answered 503 and closed (default 64; 0: no limit; behind a
    /// reverse proxy every client has the proxy's address).
    pub http_max_connections_per_peer: usize,
    /// What guests may use of what the daemon shares (the `[guests]`
    /// table; docs/limits.md).
    pub guests: GuestLimits,
}

/// Limits of the guests, per instance, per device and for the daemon as a
/// whole (docs/limits.md). Per-tenant limits are the tenants' quotas, set
/// through the API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestLimits {
    /// Linear memory of one instance, MiB.
    pub memory_mib: u64,
    /// Files one instance may hold open.
    pub open_files: u64,
    /// Files all guests together may hold open (further capped by the
    /// process's descriptor limit less 512).
    pub open_files_total: u64,
    /// Largest host buffer for one guest call's result, MiB.
    pub host_buffer_mib: u64,
    /// Threads doing guests' zero-copy I/O, shared by all devices.
    pub io_threads: usize,
    /// I/O jobs one device may have queued or running on them.
    pub io_per_device: usize,
    /// Files one device's directory may hold (its bytes: the device's size,
    /// an eighth more and 16 MiB).
    pub stored_files_per_device: u64,
    /// Log lines one device may emit per second.
    pub log_lines_per_sec: u32,
    /// Uploads compiled at once.
    pub compile_slots: usize,
    /// Longest an upload may wait for a compile slot plus compile, seconds.
    pub compile_timeout_secs: u64,
}

impl Default for GuestLimits {
    fn default() -> Self {
        let (rt, inst) = (
            wasmtap_runtime::RuntimeConfig::default(),
            wasmtap_runtime::InstanceLimits::default(),
        );
        Self {
            memory_mib: inst.memory >> 20,
            open_files: inst.open_files,
            open_files_total: rt.max_open_files,
            host_buffer_mib: inst.max_host_buffer >> 20,
            io_threads: rt.io_threads,
            io_per_device: rt.io_per_device,
            stored_files_per_device: wasmtap_runtime::StorageLimits::for_device(0).files,
            log_lines_per_sec: inst.log_lines_per_sec,
            compile_slots: rt.compile_slots,
            compile_timeout_secs: rt.compile_timeout.as_secs(),
        }
    }
}

impl GuestLimits {
    /// `base` with these limits.
    pub fn runtime(&self, base: wasmtap_runtime::RuntimeConfig) -> wasmtap_runtime::RuntimeConfig {
        wasmtap_runtime::RuntimeConfig {
            max_open_files: self.open_files_total,
            io_threads: self.io_threads,
            io_per_device: self.io_per_device,
            compile_slots: self.compile_slots,
            compile_timeout: Duration::from_secs(self.compile_timeout_secs),
            ..base
        }
    }

    /// The limits of each instance.
    pub fn instance(&self) -> wasmtap_runtime::InstanceLimits {
        wasmtap_runtime::InstanceLimits {
            memory: self.memory_mib << 20,
            open_files: self.open_files,
            max_host_buffer: self.host_buffer_mib << 20,
            log_lines_per_sec: self.log_lines_per_sec,
            ..wasmtap_runtime::InstanceLimits::default()
        }
    }

    /// What a device of `size` bytes may store.
    pub fn storage(&self, size: u64) -> wasmtap_runtime::StorageLimits {
        wasmtap_runtime::StorageLimits {
            files: self.stored_files_per_device,
            ..wasmtap_runtime::StorageLimits::for_device(size)
        }
    }
}

impl ServeConfig {
    /// The HTTP server's limits.
    pub fn http_limits(&self) -> wasmtap_web::HttpLimits {
        wasmtap_web::HttpLimits {
            header_read_timeout: Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_secs),
            body_read_timeout: Duration::from_secs(self.http_body_timeout_secs),
            max_connections: self.http_max_connections,
            max_connections_per_peer: self.http_max_connections_per_peer,
        }
    }

    /// The configured admin token: read from `admin_token_file` (its first
    /// line, trimmed; a warning if others may read the file), else
    /// `admin_token`.
    pub fn admin_token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.admin_token_file else {
            return Ok(self.admin_token.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("admin token file {}: {e}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(format!("admin token file {} is empty", path.display()));
        }
        warn_if_readable_by_others(path, "the admin token file");
        Ok(Some(token.to_owned()))
    }

    /// How workers take commands off their rings.
    pub fn tuning(&self) -> crate::worker::Tuning {
        crate::worker::Tuning {
            batch: self.batch,
            poll: std::time::Duration::from_micros(self.poll_us),
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        let http = wasmtap_web::HttpLimits::default();
        Self {
            frontend: Frontend::Auto,
            sysfs_uio: "/sys/class/uio".into(),
            dev_dir: "/dev".into(),
            configfs: wasmtap_kernel::configfs::DEFAULT_ROOT.into(),
            rescan_ms: 1000,
            batch: 256,
            poll_us: 0,
            data_dir: "/var/lib/wasmtap".into(),
            sim_backstore: "native".into(),
            sim_size_mib: 128,
            sim_queue_depth: 16,
            web: true,
            listen: "127.0.0.1:8470".into(),
            admin_token: None,
            admin_token_file: None,
            max_module_mib: 32,
            http_header_timeout_secs: http.header_read_timeout.as_secs(),
            http_idle_timeout_secs: http.idle_timeout.as_secs(),
            http_body_timeout_secs: http.body_read_timeout.as_secs(),
            http_max_connections: http.max_connections,
            http_max_connections_per_peer: http.max_connections_per_peer,
            guests: GuestLimits::default(),
        }
    }
}

impl ServeConfig {
    /// Read a TOML file over the defaults. Setting both `admin_token` and
    /// `admin_token_file` is an error; a file that sets `admin_token` and
    /// that others may read gets a warning.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if cfg.admin_token.is_some() && cfg.admin_token_file.is_some() {
            return Err(format!(
                "{}: set admin_token or admin_token_file, not both",
                path.display()
            ));
        }
        if cfg.admin_token.is_some() {
            warn_if_readable_by_others(path, "the configuration file, which holds admin_token,");
        }
        Ok(cfg)
    }

    /// The frontend after resolving `auto`.
    pub fn resolved_frontend(&self) -> Frontend {
        match self.frontend {
            Frontend::Auto if self.configfs.join("target").is_dir() => Frontend::Tcmu,
            Frontend::Auto => Frontend::Sim,
            f => f,
        }
    }
}

/// Logs a warning if users other than the owner may read `path`.
fn warn_if_readable_by_others(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            tracing::warn!(
                "{what} {} is readable by other users (mode {mode:o}): chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_overrides_defaults_and_rejects_unknown_keys() {
        let c: ServeConfig = toml::from_str("frontend = \"sim\"\nbatch = 64\n").unwrap();
        assert_eq!(c.frontend, Frontend::Sim);
        assert_eq!(c.batch, 64);
        assert_eq!(c.rescan_ms, 1000);
        assert!(toml::from_str::<ServeConfig>("bogus = 1").is_err());
    }

    #[test]
    fn http_limits_default_to_the_web_crate_and_come_from_the_file() {
        let d = ServeConfig::default();
        assert_eq!(d.http_limits(), wasmtap_web::HttpLimits::default());
        let c: ServeConfig = toml::from_str(
            "http_header_timeout_secs = 3\nhttp_idle_timeout_secs = 0\n\
             http_body_timeout_secs = 600\nhttp_max_connections = 100\n\
             http_max_connections_per_peer = 0\n",
        )
        .unwrap();
        let l = c.http_limits();
        assert_eq!(l.header_read_timeout, Duration::from_secs(3));
        assert_eq!(l.idle_timeout, Duration::ZERO);
        assert_eq!(l.body_read_timeout, Duration::from_secs(600));
        assert_eq!(l.max_connections, 100);
        assert_eq!(l.max_connections_per_peer, 0);
    }

    #[test]
    fn guest_limits_default_to_the_runtime_and_come_from_the_file() {
        let d = GuestLimits::default();
        assert_eq!(d.instance(), wasmtap_runtime::InstanceLimits::default());
        assert_eq!(
            d.storage(1 << 20),
            wasmtap_runtime::StorageLimits::for_device(1 << 20)
        );
        let c: ServeConfig =
            toml::from_str("[guests]\nopen_files = 8\nio_per_device = 32\nmemory_mib = 64\n")
                .unwrap();
        assert_eq!(c.guests.instance().open_files, 8);
        assert_eq!(c.guests.instance().memory, 64 << 20);
        let rt = c.guests.runtime(wasmtap_runtime::RuntimeConfig::default());
        assert_eq!((rt.io_per_device, rt.io_threads), (32, 4));
        assert!(toml::from_str::<ServeConfig>("[guests]\nopen_file = 8\n").is_err());
    }

    #[test]
    fn admin_token_from_a_file_or_the_config() {
        let dir = tempfile_dir();
        let tok = dir.join("admin.token");
        std::fs::write(&tok, "wt_0123456789abcdef0123456789abcdef01234567\n").unwrap();
        let c = ServeConfig {
            admin_token_file: Some(tok.clone()),
            ..ServeConfig::default()
        };
        assert_eq!(
            c.admin_token().unwrap().as_deref(),
            Some("wt_0123456789abcdef0123456789abcdef01234567")
        );
        std::fs::write(&tok, "\n").unwrap();
        assert!(c.admin_token().unwrap_err().contains("empty"));
        let missing = ServeConfig {
            admin_token_file: Some(dir.join("nope")),
            ..ServeConfig::default()
        };
        assert!(missing.admin_token().is_err());
        let inline = ServeConfig {
            admin_token: Some("wt_x".into()),
            ..ServeConfig::default()
        };
        assert_eq!(inline.admin_token().unwrap().as_deref(), Some("wt_x"));
        assert_eq!(ServeConfig::default().admin_token().unwrap(), None);

        let both = dir.join("both.toml");
        std::fs::write(
            &both,
            "admin_token = \"wt_x\"\nadmin_token_file = \"/etc/wasmtap/admin.token\"\n",
        )
        .unwrap();
        assert!(
            ServeConfig::from_file(&both)
                .unwrap_err()
                .contains("not both")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory under the system temp dir.
    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wasmtap-config-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

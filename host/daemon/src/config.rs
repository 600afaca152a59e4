//! Daemon configuration: embedded defaults, overridden by a TOML file, then
//! by command-line flags.

use std::path::{Path, PathBuf};

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
    /// The admin token. Unset: one is generated at the first start and
    /// printed once.
    pub admin_token: Option<String>,
    /// Largest module upload, in MiB.
    pub max_module_mib: u64,
}

impl ServeConfig {
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
            max_module_mib: 32,
        }
    }
}

impl ServeConfig {
    /// Read a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
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

/// Parse a size such as `1G`, `512M`, `64k`, `1GiB` or a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("invalid size unit in {s:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("size {s:?} is zero or too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn config_file_overrides_defaults_and_rejects_unknown_keys() {
        let c: ServeConfig = toml::from_str("frontend = \"sim\"\nbatch = 64\n").unwrap();
        assert_eq!(c.frontend, Frontend::Sim);
        assert_eq!(c.batch, 64);
        assert_eq!(c.rescan_ms, 1000);
        assert!(toml::from_str::<ServeConfig>("bogus = 1").is_err());
    }
}

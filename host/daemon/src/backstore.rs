//! Which backstore serves a device, from its dev_config.
//!
//! `wasmtap` or `wasmtap/native` is the native RAM disk;
//! `wasmtap/<module>` or `wasmtap/<module>/<config>` is the WebAssembly
//! backstore `<module>` opened with `<config>` (free-form, e.g.
//! `size=64M,sector=4096`). Modules are the built-in ones (`null`, `ram`,
//! `raw-file`, embedded in the binary) or `<modules dir>/<module>.wasm`.
//! Unless the config sets them, the device's size and sector size are passed
//! as `size=` and `sector=`, so the guest matches what LIO was told.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtap_kernel::MappedRegion;
use wasmtap_runtime::{
    InstanceSpec, LoadError, Module, OpenError, Runtime, RuntimeConfig, Tenant, WasmBackend,
};

use crate::config::GuestLimits;

include!(concat!(env!("OUT_DIR"), "/builtin_guests.rs"));

/// What a device's dev_config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackstoreSpec {
    /// The native RAM disk.
    Native,
    /// A WebAssembly backstore.
    Guest {
        /// Module name.
        module: String,
        /// Configuration string for the guest's `open`.
        config: String,
    },
}

/// Why a backstore could not be found, loaded or opened.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A dev_config names a module with characters module names never have.
    #[error("invalid module name {0:?} (letters, digits, '-' and '_' only)")]
    ModuleName(String),
    /// The WebAssembly runtime could not start.
    #[error("WebAssembly runtime: {0}")]
    Runtime(String),
    /// The module's file could not be read.
    #[error("module {name:?}: {}: {source}", path.display())]
    ReadModule {
        /// The module.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The runtime refused the module.
    #[error("module {name:?} refused: {source}")]
    Refused {
        /// The module.
        name: String,
        /// The runtime's reason.
        source: LoadError,
    },
    /// The device's directory could not be made.
    #[error("{}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The instance did not open.
    #[error("{device}: {source}")]
    Open {
        /// The device.
        device: String,
        /// Why (the guest's error code and last log line, if it refused).
        source: OpenError,
    },
}

/// Parse the part of dev_config after `wasmtap/` (empty for plain `wasmtap`).
pub fn parse(config: &str) -> Result<BackstoreSpec, GuestError> {
    let (module, rest) = config.split_once('/').unwrap_or((config, ""));
    if module.is_empty() || module == "native" {
        return Ok(BackstoreSpec::Native);
    }
    if !module
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(GuestError::ModuleName(module.to_string()));
    }
    Ok(BackstoreSpec::Guest {
        module: module.to_string(),
        config: rest.to_string(),
    })
}

/// `config` with `size=` and `sector=` added when it does not set them.
pub fn with_geometry(config: &str, size: u64, sector: u32) -> String {
    let has = |key: &str| {
        config
            .split(',')
            .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    };
    let mut parts: Vec<String> = config
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if !has("size") {
        parts.push(format!("size={size}"));
    }
    if !has("sector") {
        parts.push(format!("sector={sector}"));
    }
    parts.join(",")
}

/// The daemon's WebAssembly side: one runtime, loaded modules by name.
#[derive(Debug)]
pub struct Guests {
    runtime: Runtime,
    modules_dir: PathBuf,
    loaded: HashMap<String, Module>,
    tenant: Tenant,
    limits: GuestLimits,
    /// The LUNs served here, for EXTENDED COPY between them.
    pub copy: crate::copy::CopyRegistry,
}

impl Guests {
    /// A runtime with its cache in `data_dir/cache`, modules from
    /// `data_dir/modules`.
    pub fn new(data_dir: &Path) -> Result<Self, GuestError> {
        Self::with_limits(data_dir, &GuestLimits::default())
    }

    /// [`new`](Self::new) with the configuration's `[guests]` limits.
    pub fn with_limits(data_dir: &Path, limits: &GuestLimits) -> Result<Self, GuestError> {
        let cfg = limits.runtime(RuntimeConfig {
            cache_dir: Some(data_dir.join("cache")),
            ..RuntimeConfig::default()
        });
        let runtime = Runtime::new(cfg).map_err(|e| GuestError::Runtime(e.to_string()))?;
        Ok(Self {
            runtime,
            modules_dir: data_dir.join("modules"),
            loaded: HashMap::new(),
            // Tenants arrive with the control plane; until then every
            // device is charged to one budget.
            tenant: Tenant::new("default", 4 << 30),
            limits: limits.clone(),
            copy: crate::copy::CopyRegistry::default(),
        })
    }

    /// The module called `name`, loaded and validated once.
    pub fn module(&mut self, name: &str) -> Result<Module, GuestError> {
        if let Some(m) = self.loaded.get(name) {
            return Ok(m.clone());
        }
        let bytes: Vec<u8> = match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, b)) => b.to_vec(),
            None => {
                let p = self.modules_dir.join(format!("{name}.wasm"));
                std::fs::read(&p).map_err(|source| GuestError::ReadModule {
                    name: name.to_string(),
                    path: p.clone(),
                    source,
                })?
            }
        };
        let m = self.load_checked(name, &bytes)?;
        self.loaded.insert(name.to_string(), m.clone());
        Ok(m)
    }

    /// Load `bytes` as the module called `name` (replacing a loaded module
    /// of that name), with the same checks as [`module`](Self::module).
    pub fn load(&mut self, name: &str, bytes: &[u8]) -> Result<Module, GuestError> {
        let m = self.load_checked(name, bytes)?;
        self.loaded.insert(name.to_string(), m.clone());
        Ok(m)
    }

    fn load_checked(&self, name: &str, bytes: &[u8]) -> Result<Module, GuestError> {
        self.runtime
            .load(bytes)
            .map_err(|source| GuestError::Refused {
                name: name.to_string(),
                source,
            })
    }

    /// Open an instance of `module` for a device whose directory is `dir`
    /// and whose data lives in `region` (see [`DeviceFacts`]).
    pub fn open(
        &mut self,
        device: &str,
        module: &str,
        config: &str,
        dir: &Path,
        region: Option<Arc<MappedRegion>>,
        facts: DeviceFacts,
    ) -> Result<WasmBackend, GuestError> {
        let m = self.module(module)?;
        std::fs::create_dir_all(dir).map_err(|source| GuestError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut spec = InstanceSpec::new(m, config, self.tenant.clone());
        spec.limits = self.limits.instance();
        if let Some(size) = facts.storage_for {
            spec.storage = self.limits.storage(size);
        }
        spec.dir = Some(dir.to_path_buf());
        spec.region = region;
        spec.device_geometry = facts.geometry;
        self.runtime
            .open(device, spec)
            .map_err(|source| GuestError::Open {
                device: device.to_string(),
                source,
            })
    }
}

/// What the host knows of the device an instance is opened for.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceFacts {
    /// Hold the directory to the storage limits of a device this size.
    storage_for: Option<u64>,
    /// The device's size and sector size, which the module must report.
    geometry: Option<(u64, u32)>,
}

impl DeviceFacts {
    /// A device of `size` bytes in `sector`-byte blocks: the module must
    /// report that geometry.
    pub fn geometry(size: u64, sector: u32) -> Self {
        Self {
            storage_for: None,
            geometry: Some((size, sector)),
        }
    }

    /// A device of `size` bytes whose directory is held to the `[guests]`
    /// storage limits for that size, as the control plane's devices are;
    /// no geometry is enforced (`wasmtap check` compares the module's own
    /// with the one asked for, as a check of its own).
    pub fn sized(size: u64) -> Self {
        Self {
            storage_for: Some(size),
            geometry: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_config_selects_native_or_guest() {
        assert_eq!(parse("").ok(), Some(BackstoreSpec::Native));
        assert_eq!(parse("native").ok(), Some(BackstoreSpec::Native));
        assert_eq!(
            parse("ram/size=64M,sector=4096").ok(),
            Some(BackstoreSpec::Guest {
                module: "ram".into(),
                config: "size=64M,sector=4096".into()
            })
        );
        assert_eq!(
            parse("raw-file").ok(),
            Some(BackstoreSpec::Guest {
                module: "raw-file".into(),
                config: String::new()
            })
        );
        assert!(parse("../x/y").is_err());
    }

    #[test]
    fn geometry_is_added_only_when_missing() {
        assert_eq!(with_geometry("", 1024, 512), "size=1024,sector=512");
        assert_eq!(with_geometry("size=2M", 1024, 512), "size=2M,sector=512");
        assert_eq!(
            with_geometry("file=a.img,sector=4096", 8192, 512),
            "file=a.img,sector=4096,size=8192"
        );
    }

    #[test]
    fn built_in_modules_are_embedded_and_load() {
        let dir = std::env::temp_dir().join(format!("wasmtap-bs-{}", std::process::id()));
        let mut g = Guests::new(&dir).unwrap();
        for (name, bytes) in BUILTIN {
            assert!(bytes.starts_with(b"\0asm"), "{name}");
            g.module(name).unwrap();
        }
        assert!(
            g.module("does-not-exist")
                .unwrap_err()
                .to_string()
                .contains("does-not-exist")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Finding and opening TCMU devices through UIO.
//!
//! `target_core_user` registers one UIO device per user backstore, named
//! `tcm-user/<hba>/<device>/<dev_config>`. wasmtap serves only devices whose
//! dev_config starts with its handler subtype (`wasmtap/`): another TCMU
//! daemon (tcmu-runner, say) may serve other subtypes on the same host.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::doorbell::Doorbell;
use crate::region::MappedRegion;

/// The handler subtype wasmtap claims in dev_config.
pub const SUBTYPE: &str = "wasmtap";

/// A TCMU device found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioDevice {
    /// `uioN`.
    pub uio: String,
    /// The TCM HBA index (`user_<hba>` in configfs).
    pub hba: u32,
    /// The backstore name in configfs.
    pub name: String,
    /// Everything after `wasmtap/` in dev_config (may be empty).
    pub config: String,
    /// Size of map0 in bytes.
    pub map_size: usize,
}

impl UioDevice {
    /// The configfs directory of this backstore under `configfs_root`
    /// (normally `/sys/kernel/config`).
    pub fn configfs_dir(&self, configfs_root: &Path) -> PathBuf {
        configfs_root
            .join("target/core")
            .join(format!("user_{}", self.hba))
            .join(&self.name)
    }
}

/// Errors of discovery and attach, with the path involved.
#[derive(Debug, thiserror::Error)]
pub enum UioError {
    /// A sysfs or device file could not be read or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A sysfs file held something unexpected.
    #[error("{path}: unexpected contents {contents:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        contents: String,
    },
}

fn read_trimmed(path: &Path) -> Result<String, UioError> {
    fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|source| UioError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Parse a UIO name `tcm-user/<hba>/<device>/<dev_config>`; returns
/// `(hba, device, config)` when dev_config belongs to `subtype`.
pub fn parse_uio_name(name: &str, subtype: &str) -> Option<(u32, String, String)> {
    let rest = name.strip_prefix("tcm-user/")?;
    let mut parts = rest.splitn(3, '/');
    let hba = parts.next()?.parse().ok()?;
    let dev = parts.next()?;
    let cfg = parts.next()?;
    let config = if cfg == subtype {
        ""
    } else {
        cfg.strip_prefix(subtype)?.strip_prefix('/')?
    };
    if dev.is_empty() {
        return None;
    }
    Some((hba, dev.to_string(), config.to_string()))
}

/// Scan `sysfs_class_uio` (normally `/sys/class/uio`) for TCMU devices of
/// `subtype`, sorted by UIO name. Devices of other handlers are skipped.
pub fn scan(sysfs_class_uio: &Path, subtype: &str) -> Result<Vec<UioDevice>, UioError> {
    let entries = match fs::read_dir(sysfs_class_uio) {
        Ok(e) => e,
        // No UIO devices at all (module not loaded): nothing to serve.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(UioError::Io {
                path: sysfs_class_uio.to_owned(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| UioError::Io {
            path: sysfs_class_uio.to_owned(),
            source,
        })?;
        let dir = entry.path();
        let uio = entry.file_name().to_string_lossy().into_owned();
        let Ok(name) = read_trimmed(&dir.join("name")) else {
            continue; // raced with removal
        };
        let Some((hba, dev, config)) = parse_uio_name(&name, subtype) else {
            continue;
        };
        let size_path = dir.join("maps/map0/size");
        let raw = read_trimmed(&size_path)?;
        let map_size = parse_hex(&raw).ok_or_else(|| UioError::Parse {
            path: size_path.clone(),
            contents: raw.clone(),
        })?;
        found.push(UioDevice {
            uio,
            hba,
            name: dev,
            config,
            map_size,
        });
    }
    found.sort_by(|a, b| a.uio.cmp(&b.uio));
    Ok(found)
}

fn parse_hex(s: &str) -> Option<usize> {
    usize::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// An opened `/dev/uioN`: the mapped region and the doorbell.
#[derive(Debug, Clone)]
pub struct UioHandle {
    /// The mapped TCMU region.
    pub region: Arc<MappedRegion>,
    /// Wait/notify on the device file.
    pub bell: UioDoorbell,
}

/// Open `dev_dir/<uio>` (normally `/dev/uioN`) and map its region.
/// The kernel allows one opener; a second gets EBUSY.
pub fn open(dev_dir: &Path, dev: &UioDevice) -> Result<UioHandle, UioError> {
    let path = dev_dir.join(&dev.uio);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_CLOEXEC.bits())
        .open(&path)
        .map_err(|source| UioError::Io {
            path: path.clone(),
            source,
        })?;
    let region = MappedRegion::map_file(&file, dev.map_size).map_err(|source| UioError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(UioHandle {
        region: Arc::new(region),
        bell: UioDoorbell {
            file: Arc::new(file),
        },
    })
}

/// The doorbell of a real TCMU device: 4-byte read to wait, 4-byte write to
/// notify (the kernel refuses any other length).
#[derive(Debug, Clone)]
pub struct UioDoorbell {
    file: Arc<File>,
}

impl Doorbell for UioDoorbell {
    fn wait(&self) -> io::Result<()> {
        let mut count = [0u8; 4];
        (&*self.file).read_exact(&mut count)
    }
    fn notify(&self) -> io::Result<()> {
        (&*self.file).write_all(&0u32.to_ne_bytes())
    }
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uio_name_of_our_subtype_is_parsed() {
        assert_eq!(
            parse_uio_name("tcm-user/0/disk1/wasmtap/module=ram,size=1G", SUBTYPE),
            Some((0, "disk1".into(), "module=ram,size=1G".into()))
        );
        assert_eq!(
            parse_uio_name("tcm-user/3/d/wasmtap", SUBTYPE),
            Some((3, "d".into(), String::new()))
        );
    }

    #[test]
    fn other_handlers_and_lookalikes_are_ignored() {
        assert_eq!(parse_uio_name("tcm-user/0/d/rbd/pool/img", SUBTYPE), None);
        assert_eq!(parse_uio_name("tcm-user/0/d/wasmtapx/y", SUBTYPE), None);
        assert_eq!(parse_uio_name("tcm-user/x/d/wasmtap", SUBTYPE), None);
        assert_eq!(parse_uio_name("uio_pci_generic", SUBTYPE), None);
        assert_eq!(parse_uio_name("tcm-user/0//wasmtap", SUBTYPE), None);
    }

    #[test]
    fn scan_reads_fake_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("wasmtap-uio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (uio, name, size) in [
            ("uio0", "tcm-user/0/a/wasmtap/x=1", "0x40800000"),
            ("uio1", "tcm-user/0/b/qcow/file", "0x1000"),
            ("uio2", "tcm-user/1/c/wasmtap", "0x2000\n"),
        ] {
            let d = root.join(uio).join("maps/map0");
            fs::create_dir_all(&d).unwrap();
            fs::write(root.join(uio).join("name"), format!("{name}\n")).unwrap();
            fs::write(d.join("size"), size).unwrap();
        }
        let devs = scan(&root, SUBTYPE).unwrap();
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0].name, "a");
        assert_eq!(devs[0].map_size, 0x4080_0000);
        assert_eq!(devs[1].hba, 1);
        assert_eq!(devs[1].map_size, 0x2000);
        assert_eq!(
            devs[0].configfs_dir(Path::new("/sys/kernel/config")),
            PathBuf::from("/sys/kernel/config/target/core/user_0/a")
        );
        fs::write(root.join("uio2/maps/map0/size"), "zz").unwrap();
        assert!(matches!(scan(&root, SUBTYPE), Err(UioError::Parse { .. })));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn scan_of_missing_class_dir_finds_nothing() {
        assert!(
            scan(Path::new("/nonexistent/uio"), SUBTYPE)
                .unwrap()
                .is_empty()
        );
    }
}

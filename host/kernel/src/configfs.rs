//! configfs helpers: create and delete a TCMU user backstore exported as a
//! tcm_loop LUN, and read a backstore's attributes.
//!
//! Order matters. A backstore is configured through `control` *before*
//! `enable`; a tcm_loop TPG needs its I_T nexus *before* a LUN is added, or
//! the kernel logs "I_T Nexus does not exist" and never scans the LUN. Delete
//! runs the same steps backwards. Every error names the path and the errno.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::uio::SUBTYPE;

/// Where configfs is normally mounted.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config";

/// A configfs operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("configfs {op} {path}: {source}")]
pub struct ConfigfsError {
    /// What was being done (mkdir, write, symlink, ...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The kernel's answer (errno).
    pub source: io::Error,
}

fn ctx<T>(op: &'static str, path: &Path, r: io::Result<T>) -> Result<T, ConfigfsError> {
    r.map_err(|source| ConfigfsError {
        op,
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), ConfigfsError> {
    ctx("write", path, fs::write(path, value))
}

/// What `wasmtap lun create` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunSpec {
    /// Backstore name (configfs directory, part of the UIO name).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Maximum transfer per command, in blocks (`hw_max_sectors`).
    pub max_sectors: u32,
    /// Free-form device configuration after `wasmtap/` (no ':').
    pub config: String,
    /// TCM HBA index (`user_<hba>`).
    pub hba: u32,
}

impl LunSpec {
    /// Check the parts the kernel would reject less clearly.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(['/', ':', ' ']) || self.name.starts_with('.')
        {
            return Err(format!("invalid backstore name {:?}", self.name));
        }
        if self.config.contains(':') {
            return Err("device config must not contain ':'".into());
        }
        if !matches!(self.block_size, 512 | 4096) {
            return Err(format!("block size {} is not 512 or 4096", self.block_size));
        }
        if self.size == 0 || !self.size.is_multiple_of(u64::from(self.block_size)) {
            return Err(format!(
                "size {} is not a positive multiple of the block size {}",
                self.size, self.block_size
            ));
        }
        Ok(())
    }

    /// `dev_config` as written to `control`.
    pub fn dev_config(&self) -> String {
        if self.config.is_empty() {
            SUBTYPE.to_string()
        } else {
            format!("{SUBTYPE}/{}", self.config)
        }
    }
}

/// The backstore directory of `name` on `hba`.
pub fn backstore_dir(root: &Path, hba: u32, name: &str) -> PathBuf {
    root.join("target/core")
        .join(format!("user_{hba}"))
        .join(name)
}

/// A stable NAA WWN for a name: IEEE registered format (NAA 5) with the
/// locally chosen 36-bit vendor-specific part derived from the name, so the
/// same LUN gets the same WWN across runs. `salt` tells target from initiator.
pub fn wwn_for(name: &str, salt: u8) -> String {
    // FNV-1a: stable, dependency-free, good enough to separate names.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([salt]) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // 5 | OUI 001405 (the OUI LIO uses for its generated WWNs) | 36 bits.
    format!("naa.5001405{:09x}", h & 0xf_ffff_ffff)
}

/// Create the backstore and its tcm_loop LUN. On failure, whatever was
/// created is removed again and the first error is returned.
pub fn create_lun(root: &Path, spec: &LunSpec) -> Result<PathBuf, ConfigfsError> {
    let dir = backstore_dir(root, spec.hba, &spec.name);
    let hba_dir = dir.parent().expect("backstore dir has a parent");
    if !hba_dir.exists() {
        ctx("mkdir", hba_dir, fs::create_dir(hba_dir))?;
    }
    ctx("mkdir", &dir, fs::create_dir(&dir))?;
    let result = (|| {
        let control = dir.join("control");
        write(&control, &format!("dev_config={}", spec.dev_config()))?;
        write(&control, &format!("dev_size={}", spec.size))?;
        write(&control, &format!("hw_block_size={}", spec.block_size))?;
        write(&control, &format!("hw_max_sectors={}", spec.max_sectors))?;
        // Never make the kernel wait for a netlink reply from us: if another
        // daemon switched replies on host-wide and then died, device
        // creation would hang for everyone (tcmu-abi: nl_reply_supported).
        write(&control, "nl_reply_supported=-1")?;
        write(&dir.join("enable"), "1")?;
        let tpg = root
            .join("target/loopback")
            .join(wwn_for(&spec.name, b't'))
            .join("tpgt_1");
        ctx("mkdir", &tpg, fs::create_dir_all(&tpg))?;
        // The nexus first: without it the LUN is never scanned.
        write(&tpg.join("nexus"), &wwn_for(&spec.name, b'i'))?;
        let lun = tpg.join("lun/lun_0");
        ctx("mkdir", &lun, fs::create_dir(&lun))?;
        let link = lun.join(&spec.name);
        ctx("symlink", &link, std::os::unix::fs::symlink(&dir, &link))?;
        Ok(tpg)
    })();
    if result.is_err() {
        let _ = delete_lun(root, spec.hba, &spec.name);
    }
    result
}

/// Remove every tcm_loop LUN that exports the backstore `name`, then the
/// backstore. Missing pieces are skipped, so it also cleans up after a
/// half-finished create.
pub fn delete_lun(root: &Path, hba: u32, name: &str) -> Result<(), ConfigfsError> {
    let dir = backstore_dir(root, hba, name);
    let loopback = root.join("target/loopback");
    if let Ok(targets) = fs::read_dir(&loopback) {
        for t in targets.flatten() {
            let target = t.path();
            let Ok(tpgs) = fs::read_dir(&target) else {
                continue;
            };
            for tpg in tpgs.flatten().map(|e| e.path()) {
                if !tpg
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("tpgt_"))
                {
                    continue;
                }
                let mut exported = false;
                let mut emptied = true;
                if let Ok(luns) = fs::read_dir(tpg.join("lun")) {
                    for lun in luns.flatten().map(|e| e.path()) {
                        let link = lun.join(name);
                        let ours = fs::read_link(&link).is_ok_and(|p| p == dir)
                            || (link.is_symlink()
                                && fs::canonicalize(&link).ok() == fs::canonicalize(&dir).ok());
                        if ours {
                            ctx("unlink", &link, fs::remove_file(&link))?;
                            ctx("rmdir", &lun, fs::remove_dir(&lun))?;
                            exported = true;
                        } else {
                            emptied = false;
                        }
                    }
                }
                let ours_by_name = target
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy() == wwn_for(name, b't'));
                if (exported || ours_by_name) && emptied {
                    // Drop the nexus, then the TPG and the target if they
                    // only served this backstore.
                    let nexus = tpg.join("nexus");
                    if fs::read_to_string(&nexus).is_ok_and(|s| !s.trim().is_empty()) {
                        let _ = fs::write(&nexus, "NULL");
                    }
                    ctx("rmdir", &tpg, fs::remove_dir(&tpg))?;
                    let _ = fs::remove_dir(&target);
                }
            }
        }
    }
    if dir.exists() {
        ctx("rmdir", &dir, fs::remove_dir(&dir))?;
    }
    Ok(())
}

/// Recover a ring that still holds entries from a previous daemon: block the
/// device, reset the ring (in-flight commands fail with BUSY, which
/// initiators retry), unblock. The kernel sets cmd_head and cmd_tail to 0.
pub fn reset_ring(dir: &Path) -> Result<(), ConfigfsError> {
    let action = dir.join("action");
    write(&action.join("block_dev"), "1")?;
    let reset = write(&action.join("reset_ring"), "1");
    // Unblock even if the reset failed, so the device is not left blocked.
    let unblock = write(&action.join("block_dev"), "0");
    reset.and(unblock)
}

/// What the kernel says about a backstore (configfs `attrib/` and `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAttrs {
    /// Device size in bytes.
    pub size: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Maximum blocks per command.
    pub max_sectors: u32,
    /// Whether the initiator sees a volatile write cache (WCE).
    pub write_cache: bool,
}

fn read_num(path: &Path) -> Result<u64, ConfigfsError> {
    let s = ctx("read", path, fs::read_to_string(path))?;
    s.trim().parse().map_err(|_| ConfigfsError {
        op: "parse",
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a number: {:?}", s.trim()),
        ),
    })
}

/// Read a backstore's attributes from its configfs directory.
pub fn read_attrs(dir: &Path) -> Result<DeviceAttrs, ConfigfsError> {
    let a = dir.join("attrib");
    Ok(DeviceAttrs {
        size: read_num(&a.join("dev_size"))?,
        block_size: read_num(&a.join("hw_block_size"))? as u32,
        max_sectors: read_num(&a.join("hw_max_sectors"))? as u32,
        write_cache: read_num(&a.join("emulate_write_cache"))? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LunSpec {
        LunSpec {
            name: "disk1".into(),
            size: 1 << 30,
            block_size: 512,
            max_sectors: 2048,
            config: String::new(),
            hba: 0,
        }
    }

    #[test]
    fn wwns_are_stable_distinct_and_well_formed() {
        let t = wwn_for("disk1", b't');
        assert_eq!(t, wwn_for("disk1", b't'));
        assert_ne!(t, wwn_for("disk1", b'i'));
        assert_ne!(t, wwn_for("disk2", b't'));
        assert_eq!(t.len(), "naa.".len() + 16);
        assert!(t[4..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn spec_validation_names_the_problem() {
        assert!(spec().validate().is_ok());
        let bad = LunSpec {
            block_size: 1024,
            ..spec()
        };
        assert!(bad.validate().unwrap_err().contains("1024"));
        let bad = LunSpec {
            size: 1000,
            ..spec()
        };
        assert!(bad.validate().unwrap_err().contains("multiple"));
        let bad = LunSpec {
            name: "a/b".into(),
            ..spec()
        };
        assert!(bad.validate().is_err());
        let bad = LunSpec {
            config: "x:y".into(),
            ..spec()
        };
        assert!(bad.validate().is_err());
        assert_eq!(
            LunSpec {
                config: "ram".into(),
                ..spec()
            }
            .dev_config(),
            "wasmtap/ram"
        );
    }

    #[test]
    fn create_without_configfs_reports_path_and_errno() {
        let root = Path::new("/nonexistent/configfs");
        let err = create_lun(root, &spec()).unwrap_err();
        assert_eq!(err.op, "mkdir");
        assert!(
            err.to_string()
                .contains("/nonexistent/configfs/target/core/user_0")
        );
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn read_attrs_parses_configfs_files() {
        let dir = std::env::temp_dir().join(format!("wasmtap-cfs-{}", std::process::id()));
        let a = dir.join("attrib");
        fs::create_dir_all(&a).unwrap();
        fs::write(a.join("dev_size"), "1073741824\n").unwrap();
        fs::write(a.join("hw_block_size"), "4096\n").unwrap();
        fs::write(a.join("hw_max_sectors"), "256\n").unwrap();
        fs::write(a.join("emulate_write_cache"), "1\n").unwrap();
        let attrs = read_attrs(&dir).unwrap();
        assert_eq!(
            attrs,
            DeviceAttrs {
                size: 1 << 30,
                block_size: 4096,
                max_sectors: 256,
                write_cache: true
            }
        );
        fs::write(a.join("hw_block_size"), "x\n").unwrap();
        let err = read_attrs(&dir).unwrap_err();
        assert_eq!(err.op, "parse");
        fs::remove_dir_all(&dir).unwrap();
    }
}

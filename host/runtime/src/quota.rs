//! Stored bytes and files of one device directory, charged to the device's
//! storage quota and its tenant's.
//!
//! What counts is the *logical* size of every regular file (a sparse file
//! counts its whole length: that is what it may grow into without asking
//! again), and the number of files. A device's directory is scanned once
//! when its first instance opens, so the account is right after a restart;
//! from then on every operation that can grow a file (`set-size`,
//! `write-at`, `submit-write`, creating `open`) charges before it acts and
//! fails with `no-space` past a limit, and shrinking or removing gives back.
//!
//! Files are known by (device, inode), so two handles on one file share
//! one charge. A removed file stays charged until its last open handle
//! closes (its data is still on the disk until then).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::limits::{Budget, Tenant};

/// (st_dev, st_ino) of a file.
pub(crate) type FileKey = (u64, u64);

/// Bytes and files a device directory stores, and its limits of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StorageUsage {
    pub(crate) bytes: u64,
    pub(crate) files: u64,
    pub(crate) bytes_limit: u64,
    pub(crate) files_limit: u64,
}

/// One device directory's account.
#[derive(Debug)]
pub(crate) struct DirAccount {
    bytes: Budget,
    files: Budget,
    tenant: Tenant,
    known: Mutex<HashMap<FileKey, Arc<FileAcct>>>,
}

/// One file's charge: its logical size and the file itself, given back
/// when the file is removed and no handle holds it any more.
#[derive(Debug)]
pub(crate) struct FileAcct {
    charged: AtomicU64,
    budgets: [Budget; 4],
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The device's quota.
    Device,
    /// The tenant's quota.
    Tenant,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Device => "the device's",
            Refused::Tenant => "the tenant's",
        })
    }
}

fn refused(i: usize) -> Refused {
    if i == 0 {
        Refused::Device
    } else {
        Refused::Tenant
    }
}

impl DirAccount {
    /// The account of `dir` with the given per-device limits, found by
    /// scanning it (at most `depth` levels of sub-directories).
    pub(crate) fn scan(dir: &Path, bytes: u64, files: u64, tenant: &Tenant) -> Self {
        let a = Self {
            bytes: Budget::new(bytes),
            files: Budget::new(files),
            tenant: tenant.clone(),
            known: Mutex::new(HashMap::new()),
        };
        a.walk(dir, 4);
        a
    }

    fn walk(&self, dir: &Path, depth: u32) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_file() {
                self.track((m.dev(), m.ino()), m.len());
            } else if m.is_dir() && depth > 0 {
                self.walk(&e.path(), depth - 1);
            }
        }
    }

    /// Change the per-device limits (the device was resized).
    pub(crate) fn set_limits(&self, bytes: u64, files: u64) {
        self.bytes.set_limit(bytes);
        self.files.set_limit(files);
    }

    /// What the directory stores, and the device's limits.
    pub(crate) fn usage(&self) -> StorageUsage {
        StorageUsage {
            bytes: self.bytes.used(),
            files: self.files.used(),
            bytes_limit: self.bytes.limit(),
            files_limit: self.files.limit(),
        }
    }

    fn new_acct(&self, size: u64) -> FileAcct {
        FileAcct {
            charged: AtomicU64::new(size),
            budgets: [
                self.bytes.clone(),
                self.files.clone(),
                self.tenant.storage_bytes().clone(),
                self.tenant.storage_files().clone(),
            ],
        }
    }

    /// The account of an existing file of `size` bytes; a file not seen
    /// before (made by someone else since the scan) is charged as found.
    pub(crate) fn track(&self, key: FileKey, size: u64) -> Arc<FileAcct> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(known.entry(key).or_insert_with(|| {
            for b in [&self.bytes, self.tenant.storage_bytes()] {
                b.force_take(size);
            }
            for b in [&self.files, self.tenant.storage_files()] {
                b.force_take(1);
            }
            Arc::new(self.new_acct(size))
        }))
    }

    /// Reserve one more file before creating it.
    pub(crate) fn reserve_file(&self) -> Result<FileReservation<'_>, Refused> {
        Budget::charge_all(&[&self.files, self.tenant.storage_files()], 1).map_err(refused)?;
        Ok(FileReservation(Some(self)))
    }

    /// Grow `f`'s charge to `end` bytes if it is below (a write reaching
    /// `end`, or `set-size`).
    pub(crate) fn grow(&self, f: &FileAcct, end: u64) -> Result<(), Refused> {
        if end <= f.charged.load(Ordering::Acquire) {
            return Ok(());
        }
        let _g = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let now = f.charged.load(Ordering::Acquire);
        if end <= now {
            return Ok(());
        }
        Budget::charge_all(&[&self.bytes, self.tenant.storage_bytes()], end - now)
            .map_err(refused)?;
        f.charged.store(end, Ordering::Release);
        Ok(())
    }

    /// `f` now has exactly `size` bytes (after `set-size`).
    pub(crate) fn set_size(&self, f: &FileAcct, size: u64) -> Result<(), Refused> {
        let _g = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let now = f.charged.load(Ordering::Acquire);
        if size > now {
            Budget::charge_all(&[&self.bytes, self.tenant.storage_bytes()], size - now)
                .map_err(refused)?;
        } else {
            self.bytes.give(now - size);
            self.tenant.storage_bytes().give(now - size);
        }
        f.charged.store(size, Ordering::Release);
        Ok(())
    }

    /// The file `key` was removed: its charge goes when its last handle
    /// closes.
    pub(crate) fn removed(&self, key: FileKey) {
        let gone = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        drop(gone);
    }
}

/// One file reserved by [`DirAccount::reserve_file`]: given back on drop
/// unless [`created`](Self::created) turns it into the new file's account.
#[derive(Debug)]
pub(crate) struct FileReservation<'a>(Option<&'a DirAccount>);

impl FileReservation<'_> {
    /// The file was created empty as `key`.
    pub(crate) fn created(mut self, key: FileKey) -> Arc<FileAcct> {
        let a = self.0.take().expect("a reservation is used once");
        let mut known = a.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&key) {
            // Cannot happen for a file that did not exist; keep one charge.
            Some(f) => {
                a.files.give(1);
                a.tenant.storage_files().give(1);
                Arc::clone(f)
            }
            None => {
                let f = Arc::new(a.new_acct(0));
                known.insert(key, Arc::clone(&f));
                f
            }
        }
    }
}

impl Drop for FileReservation<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.files.give(1);
            a.tenant.storage_files().give(1);
        }
    }
}

impl Drop for FileAcct {
    fn drop(&mut self) {
        let n = self.charged.load(Ordering::Acquire);
        let [bytes, files, tbytes, tfiles] = &self.budgets;
        bytes.give(n);
        tbytes.give(n);
        files.give(1);
        tfiles.give(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::TenantLimits;

    fn tenant(bytes: u64, files: u64) -> Tenant {
        Tenant::with_limits(
            "t",
            TenantLimits {
                storage_bytes: bytes,
                storage_files: files,
                ..TenantLimits::default()
            },
        )
    }

    #[test]
    fn the_scan_charges_what_is_on_disk_and_dropping_gives_it_back() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::File::create(d.path().join("sub/b"))
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let t = tenant(u64::MAX, 100);
        let a = DirAccount::scan(d.path(), 10, 1, &t);
        assert_eq!(
            a.usage(),
            StorageUsage {
                bytes: 1000 + (1 << 20),
                files: 2,
                bytes_limit: 10,
                files_limit: 1
            },
            "found data counts past the limits"
        );
        assert_eq!(t.usage().storage_bytes, 1000 + (1 << 20));
        drop(a);
        assert_eq!((t.usage().storage_bytes, t.usage().storage_files), (0, 0));
    }

    #[test]
    fn growth_is_charged_once_per_file_and_refused_past_either_limit() {
        let t = tenant(3000, 100);
        let d = tempfile::tempdir().unwrap();
        let a = DirAccount::scan(d.path(), 2000, 2, &t);
        let f = a.reserve_file().unwrap().created((1, 1));
        a.grow(&f, 1500).unwrap();
        a.grow(&f, 1000).unwrap();
        assert_eq!(a.usage().bytes, 1500, "writes inside the file cost nothing");
        assert_eq!(a.grow(&f, 2001), Err(Refused::Device));
        let g = a.reserve_file().unwrap().created((1, 2));
        assert_eq!(a.reserve_file().err(), Some(Refused::Device));
        a.set_size(&g, 500).unwrap();
        a.set_size(&f, 100).unwrap();
        assert_eq!(a.usage().bytes, 600);
        let b = DirAccount::scan(d.path(), 10_000, 10, &t);
        let h = b.reserve_file().unwrap().created((2, 1));
        assert_eq!(b.grow(&h, 2500), Err(Refused::Tenant), "600 + 2500 > 3000");
        b.grow(&h, 2400).unwrap();
    }

    #[test]
    fn a_removed_file_stays_charged_while_a_handle_holds_it() {
        let t = tenant(u64::MAX, 100);
        let d = tempfile::tempdir().unwrap();
        let a = DirAccount::scan(d.path(), 1 << 20, 10, &t);
        let f = a.reserve_file().unwrap().created((1, 1));
        a.grow(&f, 4096).unwrap();
        a.removed((1, 1));
        assert_eq!(a.usage().bytes, 4096);
        drop(f);
        assert_eq!((a.usage().bytes, a.usage().files), (0, 0));
        drop(a.reserve_file().unwrap());
        assert_eq!(a.usage().files, 0, "an unused reservation is given back");
    }
}

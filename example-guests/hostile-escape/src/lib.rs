//! Hostile test guest: tries to leave its device directory through storage.
//!
//! Opens like the null backstore (`size=`, default 1G) and accepts writes.
//! Every read first tries to open each of [`PROBES`] (parent-relative and
//! absolute paths, some with `create`), logs the outcome of each, and then:
//!
//! * if every probe was refused with `access-denied` (the correct outcome),
//!   the read fails with `access-denied`, and the log has one `warn` line per
//!   probe (`hostile-escape: <path>: refused with access-denied`);
//! * if a probe was refused with another code, the read fails with that code
//!   and the log says `error ... expected access-denied`;
//! * if a probe *opened*, the log says `error hostile-escape: sandbox breach:
//!   opened <path>`, and the read succeeds with the start of that file's
//!   contents in the buffer, so a test that reads the device sees the leak.

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, ErrorCode, OpenFlags, Request, Result, SectorSize, disk_info,
    storage,
};

/// The paths tried on every read, with the `create` and `writable` flags.
pub const PROBES: &[(&str, bool, bool)] = &[
    ("../x", true, true),
    ("/etc/passwd", false, false),
    ("a/../../x", true, true),
    ("./../x", false, false),
    ("..", false, false),
    ("/", false, false),
    ("//etc/passwd", false, false),
];

/// A disk whose reads probe the sandbox.
#[derive(Debug)]
pub struct Escape {
    size: u64,
}

impl Escape {
    /// Try every probe; the first opened file, or the error to fail with.
    fn probe(&self) -> Result<(&'static str, storage::File)> {
        let mut failure = ErrorCode::AccessDenied;
        for &(path, create, writable) in PROBES {
            match storage::open(path, create, writable) {
                Ok(file) => {
                    wasmtap_guest_sdk::error!("hostile-escape: sandbox breach: opened {path}");
                    return Ok((path, file));
                }
                Err(ErrorCode::AccessDenied) => {
                    wasmtap_guest_sdk::warn!("hostile-escape: {path}: refused with access-denied");
                }
                Err(code) => {
                    wasmtap_guest_sdk::error!(
                        "hostile-escape: {path}: refused with {code:?}, expected access-denied"
                    );
                    if failure == ErrorCode::AccessDenied {
                        failure = code;
                    }
                }
            }
        }
        Err(failure)
    }
}

impl Backstore for Escape {
    fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
        let config = Config::parse(config).map_err(|e| e.report())?;
        let size = config
            .size("size")
            .map_err(|e| e.report())?
            .unwrap_or(1 << 30);
        Ok(Self {
            size: SectorSize::B512.align_down(size),
        })
    }

    fn info(&self) -> DiskInfo {
        disk_info(self.size, SectorSize::B512)
    }

    fn write(&mut self, _req: &Request) -> Result<()> {
        Ok(())
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        let (path, file) = self.probe()?;
        let len = u32::try_from(req.length()).unwrap_or(u32::MAX);
        let leaked = file.read_at(0, len)?;
        wasmtap_guest_sdk::error!("hostile-escape: leaking {} bytes of {path}", leaked.len());
        req.zero_data(0, req.length())?;
        req.write_data(0, &leaked)
    }
}

wasmtap_guest_sdk::export_backstore!(Escape);

//! Hostile test guest: completes a request that does not exist.
//!
//! On every read it first completes the real request properly (zeros), then
//! completes a forged handle: by default an index the host never handed out
//! (`forge=unknown`, index 0x00ff_fff0); with `forge=file` the handle of a
//! storage `file` it opened (`forged.tmp`, a live handle of the wrong type).
//! Forging needs the bindings' `unsafe fn from_handle`.
//!
//! What the host sees: wasmtime refuses to lift the forged `own<request>`
//! (unknown handle index, or a handle of another resource type) and the
//! `queue-read` call traps; the host's `complete` is never called with a
//! request it did not create.

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, ErrorCode, OpenFlags, Request, Result, SectorSize, disk_info,
    storage,
};

/// The handle index used for `forge=unknown`.
pub const UNKNOWN_HANDLE: u32 = 0x00ff_fff0;

/// A disk whose reads complete phantom requests.
#[derive(Debug)]
pub struct Forger {
    size: u64,
    // Read only by the component build's `queue_read`.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    file: Option<storage::File>,
}

impl Backstore for Forger {
    fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
        let config = Config::parse(config).map_err(|e| e.report())?;
        let size = config
            .size("size")
            .map_err(|e| e.report())?
            .unwrap_or(1 << 30);
        let file = match config.str("forge").map_err(|e| e.report())? {
            None | Some("unknown") => None,
            Some("file") => Some(storage::open("forged.tmp", true, true)?),
            Some(other) => {
                wasmtap_guest_sdk::error!("forge={other}: expected `unknown` or `file`");
                return Err(ErrorCode::InvalidConfig);
            }
        };
        config.finish().map_err(|e| e.report())?;
        Ok(Self {
            size: SectorSize::B512.align_down(size),
            file,
        })
    }

    fn info(&self) -> DiskInfo {
        disk_info(self.size, SectorSize::B512)
    }

    fn write(&mut self, _req: &Request) -> Result<()> {
        Ok(())
    }

    // Resource handles exist only in the component build.
    #[cfg(target_arch = "wasm32")]
    #[allow(unsafe_code)]
    fn queue_read(&mut self, req: Request) {
        let status = req.zero_data(0, req.length());
        req.complete(status);
        let handle = self.file.as_ref().map_or(UNKNOWN_HANDLE, |f| f.handle());
        wasmtap_guest_sdk::warn!(
            "hostile-forged-complete: completing forged request handle {handle}"
        );
        // SAFETY: none — `handle` is not an owned request handle; forging it
        // is the point of this guest. Wasmtime validates index and type when
        // lifting it, so the worst outcome is a trap in this instance.
        let forged = unsafe { wasmtap_guest_sdk::RawRequest::from_handle(handle) };
        wasmtap_guest_sdk::RawRequest::complete(forged, Ok(()));
    }
}

wasmtap_guest_sdk::export_backstore!(Forger);

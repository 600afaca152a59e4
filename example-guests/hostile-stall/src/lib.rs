//! Hostile test guest: never completes a read.
//!
//! Opens like the null backstore (`size=`, default 1G) and completes writes
//! at once; every read request is kept, as the bare resource, and never
//! completed. What the host sees: `queue-read` returns normally and the
//! request stays outstanding; only a per-request timeout on the host side
//! ends the command. When the disk is dropped, the kept handles are dropped
//! too: the host then gets `[resource-drop]request` for requests that were
//! never completed, and must treat that as a failure (not a double free).

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, RawRequest, Request, Result, SectorSize, disk_info,
};

/// A disk whose reads never finish.
#[derive(Debug)]
pub struct Stall {
    size: u64,
    kept: Vec<RawRequest>,
}

impl Backstore for Stall {
    fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
        let config = Config::parse(config).map_err(|e| e.report())?;
        let size = config
            .size("size")
            .map_err(|e| e.report())?
            .unwrap_or(1 << 30);
        Ok(Self {
            size: SectorSize::B512.align_down(size),
            kept: Vec::new(),
        })
    }

    fn info(&self) -> DiskInfo {
        disk_info(self.size, SectorSize::B512)
    }

    fn write(&mut self, _req: &Request) -> Result<()> {
        Ok(())
    }

    // `Request::into_raw` exists only in the component build.
    #[cfg(target_arch = "wasm32")]
    fn queue_read(&mut self, req: Request) {
        // `into_raw` leaves the SDK's "complete on drop" safety net behind.
        self.kept.push(req.into_raw());
    }

    fn debug(&self) -> String {
        format!("{} reads held, never to be completed", self.kept.len())
    }
}

wasmtap_guest_sdk::export_backstore!(Stall);

//! Hostile test guest: completes a read twice.
//!
//! `request.complete` takes the request by value (`own<request>`), so safe
//! code cannot complete twice: the second completion needs the handle index
//! of the first, re-wrapped with the bindings' `unsafe fn from_handle`.
//!
//! What the host sees: the first `complete` is a normal completion (the read
//! is answered with zeros). The second passes a handle index that the first
//! call already moved out of the guest's handle table, so wasmtime fails to
//! lift `own<request>` ("unknown handle index") and the `queue-read` call
//! traps before the host's `complete` runs again. The host never observes a
//! second completion of the same request as a call; it observes a trap right
//! after a valid completion. (Had the host lowered a new request into the
//! freed slot in between, the stale index would name that new request: a
//! valid completion of the wrong request, indistinguishable from a guest
//! bug. Within one `queue-read` call that cannot happen.)

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// A disk whose reads complete twice.
#[derive(Debug)]
pub struct Twice {
    size: u64,
}

impl Backstore for Twice {
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

    // `Request::into_raw` exists only in the component build.
    #[cfg(target_arch = "wasm32")]
    #[allow(unsafe_code)]
    fn queue_read(&mut self, req: Request) {
        let raw = req.into_raw();
        let handle = raw.handle();
        let status = raw.zero_data(0, raw.length());
        wasmtap_guest_sdk::RawRequest::complete(raw, status);
        wasmtap_guest_sdk::warn!(
            "hostile-double-complete: completing handle {handle} a second time"
        );
        // SAFETY: none — this deliberately breaks `from_handle`'s contract
        // (the handle must be owned and live) to test the host's containment.
        // Wasmtime validates the index when lifting it, so the worst outcome
        // is a trap in this instance.
        let again = unsafe { wasmtap_guest_sdk::RawRequest::from_handle(handle) };
        wasmtap_guest_sdk::RawRequest::complete(again, Ok(()));
    }
}

wasmtap_guest_sdk::export_backstore!(Twice);

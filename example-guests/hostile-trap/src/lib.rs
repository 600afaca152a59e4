//! Hostile test guest: panics on a read.
//!
//! Opens like the null backstore (`size=`, default 1G) and accepts writes;
//! every read panics. A panic in a wasm32 guest prints its message to
//! `wasi:cli/stderr` and aborts, which is an `unreachable` trap: the host
//! sees the `queue-read` call fail with a trap (and, if it captures stderr,
//! the message `hostile-trap: deliberate panic on the read at <offset>`).

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// A disk whose reads trap.
#[derive(Debug)]
pub struct Trap {
    size: u64,
}

impl Backstore for Trap {
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
        panic!(
            "hostile-trap: deliberate panic on the read at {}",
            req.offset()
        );
    }
}

wasmtap_guest_sdk::export_backstore!(Trap);

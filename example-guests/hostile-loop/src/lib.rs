//! Hostile test guest: loops forever in `queue-read`.
//!
//! Opens like the null backstore (`size=`, default 1G) and accepts writes;
//! the first read never returns. What the host must do: interrupt the call
//! at its epoch deadline (a trap), fail the device's in-flight commands with
//! a retryable status and restart the instance, without other devices
//! noticing.

use core::hint::black_box;

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// A disk whose reads spin forever.
#[derive(Debug)]
pub struct Spin {
    size: u64,
}

impl Backstore for Spin {
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

    fn queue_read(&mut self, req: Request) {
        wasmtap_guest_sdk::warn!(
            "hostile-loop: spinning forever on the read at {}",
            req.offset()
        );
        let mut turns: u64 = 0;
        loop {
            // `black_box` keeps the loop from being optimised into a trap or
            // removed: it must burn fuel/time until the host interrupts it.
            turns = black_box(turns.wrapping_add(1));
        }
    }
}

wasmtap_guest_sdk::export_backstore!(Spin);

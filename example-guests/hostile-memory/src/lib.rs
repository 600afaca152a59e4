//! Hostile test guest: grows its memory without bound on a read.
//!
//! Opens like the null backstore (`size=`, default 1G) and accepts writes;
//! each read allocates (and touches) 16 MiB blocks until allocation fails.
//! What the host sees: `memory.grow` requests past its per-instance limit.
//! If the host's limiter refuses the growth (`memory.grow` returns -1), the
//! allocator reports out-of-memory and Rust aborts: an `unreachable` trap.
//! If the limiter errors instead, the trap comes from `memory.grow` itself.
//! Either way the instance must die alone.

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// How much to allocate per step.
pub const STEP: usize = 16 << 20;

/// A disk whose reads eat memory.
#[derive(Debug)]
pub struct Hoarder {
    size: u64,
    hoard: Vec<Vec<u8>>,
}

impl Backstore for Hoarder {
    fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
        let config = Config::parse(config).map_err(|e| e.report())?;
        let size = config
            .size("size")
            .map_err(|e| e.report())?
            .unwrap_or(1 << 30);
        Ok(Self {
            size: SectorSize::B512.align_down(size),
            hoard: Vec::new(),
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
            "hostile-memory: allocating without bound on the read at {}",
            req.offset()
        );
        loop {
            // Infallible allocation on purpose: failure aborts (traps).
            let block = vec![0xa5_u8; STEP];
            self.hoard.push(core::hint::black_box(block));
        }
    }

    fn debug(&self) -> String {
        format!("hoarding {} MiB", self.hoard.len() * (STEP >> 20))
    }
}

wasmtap_guest_sdk::export_backstore!(Hoarder);

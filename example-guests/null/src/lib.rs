//! The null backstore: every read returns zeros, every write is dropped.
//!
//! Useful to measure the host's own overhead (no data crosses into the
//! guest: reads are answered with the host's `zero-data`) and as the smallest
//! complete backstore.
//!
//! Configuration: `size=<bytes>` (default `1G`), `sector=512|4096`
//! (default 512).

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// The default size when the configuration names none.
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// A disk that stores nothing.
#[derive(Debug)]
pub struct Null {
    size: u64,
    sector: SectorSize,
    read_only: bool,
}

impl Null {
    /// Parse the configuration string.
    pub fn from_config(config: &str, flags: OpenFlags) -> Result<Self> {
        let config = Config::parse(config).map_err(|e| e.report())?;
        let size = config
            .size("size")
            .map_err(|e| e.report())?
            .unwrap_or(DEFAULT_SIZE);
        let sector = config
            .sector_size("sector")
            .map_err(|e| e.report())?
            .unwrap_or_default();
        config.finish().map_err(|e| e.report())?;
        Ok(Self {
            size: sector.align_down(size),
            sector,
            read_only: flags.contains(OpenFlags::READ_ONLY),
        })
    }
}

impl Backstore for Null {
    fn open(config: &str, flags: OpenFlags) -> Result<Self> {
        Self::from_config(config, flags)
    }

    fn info(&self) -> DiskInfo {
        DiskInfo {
            discard: true,
            discard_granularity: self.sector.bytes(),
            read_only: self.read_only,
            ..disk_info(self.size, self.sector)
        }
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        req.zero_data(0, req.length())
    }

    fn write(&mut self, _req: &Request) -> Result<()> {
        Ok(())
    }

    fn discard(&mut self, _offset: u64, _len: u64) -> Result<()> {
        Ok(())
    }

    fn write_zeroes(&mut self, _offset: u64, _len: u64) -> Result<()> {
        Ok(())
    }

    fn debug(&self) -> String {
        format!(
            "null disk: {} bytes, {}-byte sectors, reads zeros, drops writes",
            self.size, self.sector
        )
    }
}

wasmtap_guest_sdk::export_backstore!(Null);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_defaults_to_one_gibibyte() {
        let null = Null::from_config("", OpenFlags::empty()).unwrap();
        assert_eq!(null.info().size, DEFAULT_SIZE);
        assert_eq!(null.info().sector_size, 512);
    }

    #[test]
    fn size_and_sector_come_from_config() {
        let null = Null::from_config("size=64M,sector=4096", OpenFlags::READ_ONLY).unwrap();
        let info = null.info();
        assert_eq!(
            (info.size, info.sector_size, info.read_only),
            (64 << 20, 4096, true)
        );
    }

    #[test]
    fn size_is_rounded_down_to_whole_sectors() {
        let null = Null::from_config("size=10000,sector=4096", OpenFlags::empty()).unwrap();
        assert_eq!(null.info().size, 8192);
    }

    #[test]
    fn unknown_option_is_invalid_config() {
        let err = Null::from_config("size=1G,colour=blue", OpenFlags::empty()).unwrap_err();
        assert_eq!(err, wasmtap_guest_sdk::ErrorCode::InvalidConfig);
    }
}

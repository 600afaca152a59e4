//! A RAM disk backstore for wasmtap.
//!
//! Configuration (the device's config string): `size=<bytes>` (default
//! `16M`; suffixes K, M, G), `sector=512|4096` (default 512). The contents
//! live in the component's memory and are lost when the device closes.
//!
//! The disk itself ([`RamDisk`]) is plain Rust that does not talk to the
//! host, so `cargo test` checks it natively; the [`Backstore`]
//! implementation only adapts it to the contract.

#![forbid(unsafe_code)]

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, ErrorCode, OpenFlags, Result, SectorSize, disk_info,
};

/// The size when the configuration names none.
pub const DEFAULT_SIZE: u64 = 16 << 20;

/// The disk: its bytes and sector size.
#[derive(Debug)]
pub struct RamDisk {
    data: Vec<u8>,
    sector: SectorSize,
    read_only: bool,
}

impl RamDisk {
    /// Parse the configuration string and allocate the disk (zeroed).
    /// Unknown keys and sizes that do not fit in memory are errors.
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
        let len = usize::try_from(sector.align_down(size)).map_err(|_| ErrorCode::NoSpace)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| ErrorCode::NoSpace)?;
        data.resize(len, 0);
        Ok(Self {
            data,
            sector,
            read_only: flags.contains(OpenFlags::READ_ONLY),
        })
    }

    /// The size in bytes (a multiple of the sector size).
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The byte range `offset..offset + len`, or `None` when it leaves the
    /// disk. (The host checks every request's range first; this keeps a
    /// bug from turning into a trap.)
    fn range(&self, offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.data.len()).then_some(start..end)
    }

    /// Copy `buf.len()` bytes at `offset` into `buf`.
    pub fn load(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let range = self.range(offset, buf.len()).ok_or(ErrorCode::OutOfRange)?;
        buf.copy_from_slice(&self.data[range]);
        Ok(())
    }

    /// Store `data` at `offset`.
    pub fn store(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let range = self
            .range(offset, data.len())
            .ok_or(ErrorCode::OutOfRange)?;
        self.data[range].copy_from_slice(data);
        Ok(())
    }
}

impl Backstore for RamDisk {
    fn open(config: &str, flags: OpenFlags) -> Result<Self> {
        Self::from_config(config, flags)
    }

    fn info(&self) -> DiskInfo {
        DiskInfo {
            read_only: self.read_only,
            ..disk_info(self.size(), self.sector)
        }
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.load(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.store(offset, data)
    }
}

wasmtap_guest_sdk::export_backstore!(RamDisk);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sizes_the_disk_and_data_round_trips() {
        let mut disk = RamDisk::from_config("size=1M,sector=4096", OpenFlags::empty()).unwrap();
        assert_eq!(disk.size(), 1 << 20);
        assert_eq!(disk.info().sector_size, 4096);

        disk.store(8192, b"hello").unwrap();
        let mut buf = [0xff; 8];
        disk.load(8190, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0hello\0");

        // Past the end, unknown keys, and the default size.
        assert!(disk.store((1 << 20) - 2, b"xyz").is_err());
        assert!(RamDisk::from_config("colour=blue", OpenFlags::empty()).is_err());
        let default = RamDisk::from_config("", OpenFlags::empty()).unwrap();
        assert_eq!(default.size(), DEFAULT_SIZE);
    }

    /// The whole backstore, as the daemon drives it, on the SDK's
    /// in-process host (the `testing` feature in `[dev-dependencies]`).
    #[test]
    fn serves_requests_on_the_in_process_host() {
        use wasmtap_guest_sdk::testing::{Host, Req};

        let host = Host::new();
        let mut disk = host.open::<RamDisk>("size=1M").unwrap();
        assert_eq!(disk.read(0, 4096).unwrap(), vec![0; 4096]);
        disk.write(4096, &[7; 8192]).unwrap();
        let tickets = disk.submit_batch([Req::read(4096, 8192), Req::flush()]);
        assert_eq!(tickets[0].data(), vec![7; 8192]);
        assert_eq!(tickets[1].status(), Some(Ok(())));
        // Past the end: refused before the backstore sees it.
        assert_eq!(disk.read(1 << 20, 512), Err(ErrorCode::OutOfRange));
        disk.close().unwrap();
    }
}

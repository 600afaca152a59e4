//! The raw-file backstore: the disk is a plain image file in the device's
//! directory, byte for byte.
//!
//! Request data never enters the guest: reads and writes are handed to the
//! host with `submit-read`/`submit-write`, which moves the bytes between the
//! file and the initiator's buffer directly (tapdisk's td_prep_read +
//! td_queue_tiocb). The request is completed right after submitting; the host
//! answers the command only when its I/O is done. Flush is the file's `sync`
//! (the host's page cache is the disk's volatile write cache); discard and
//! write-zeroes punch holes.
//!
//! Configuration: `file=<path>` (default `disk.img`, relative to the device's
//! directory), `size=<bytes>` (create the file, or grow it, to this size;
//! without it the file must exist and its size is the disk's),
//! `sector=512|4096` (default 512). An existing file larger than `size` is
//! refused rather than truncated.

use wasmtap_guest_sdk::{
    Backstore, Batch, BlockExtent, Config, DiskInfo, ErrorCode, Kind, OpenFlags, Request, Result,
    SectorSize, Segments, Transfers, disk_info, sector_extents, storage,
};

/// The file used when the configuration names none.
pub const DEFAULT_FILE: &str = "disk.img";

/// Hole punching works in file-system blocks; advertise 4 KiB so the
/// initiator's unmaps actually free space.
const DISCARD_GRANULARITY: u32 = 4096;

/// How many zero bytes to write per `write-at` where the host cannot punch
/// holes.
const ZERO_FILL_LEN: u64 = 64 * 1024;

/// The parsed configuration.
#[derive(Debug, PartialEq, Eq)]
pub struct Settings {
    /// Path of the image, relative to the device's directory.
    pub file: String,
    /// Requested disk size, if any.
    pub size: Option<u64>,
    /// Logical sector size.
    pub sector: SectorSize,
}

impl Settings {
    /// Parse a configuration string.
    pub fn parse(config: &str) -> core::result::Result<Self, wasmtap_guest_sdk::ConfigError> {
        let config = Config::parse(config)?;
        let file = config.str("file")?.unwrap_or(DEFAULT_FILE).to_owned();
        let size = config.size("size")?;
        let sector = config.sector_size("sector")?.unwrap_or_default();
        config.finish()?;
        Ok(Self { file, size, sector })
    }

    /// The disk size for a file that is `file_size` bytes long now, and
    /// whether the file must grow to it first.
    pub fn disk_size(&self, file_size: u64) -> Result<(u64, bool)> {
        match self.size {
            None if file_size < self.sector.bytes_u64() => {
                wasmtap_guest_sdk::error!(
                    "invalid configuration: `{}` is empty or missing; give `size=` to create it",
                    self.file
                );
                Err(ErrorCode::InvalidConfig)
            }
            None => Ok((self.sector.align_down(file_size), false)),
            Some(size) if size > file_size => Ok((self.sector.align_down(size), true)),
            Some(size) if size < file_size => {
                wasmtap_guest_sdk::error!(
                    "invalid configuration: `{}` has {file_size} bytes, more than size={size}; refusing to shrink it",
                    self.file
                );
                Err(ErrorCode::InvalidConfig)
            }
            Some(size) => Ok((self.sector.align_down(size), false)),
        }
    }
}

/// A disk backed by one image file.
#[derive(Debug)]
pub struct RawFile {
    file: storage::File,
    settings: Settings,
    size: u64,
    read_only: bool,
}

impl Backstore for RawFile {
    fn open(config: &str, flags: OpenFlags) -> Result<Self> {
        let settings = Settings::parse(config).map_err(|e| e.report())?;
        let read_only = flags.contains(OpenFlags::READ_ONLY);
        let create = settings.size.is_some() && !read_only;
        let file = storage::open(&settings.file, create, !read_only).inspect_err(|e| {
            wasmtap_guest_sdk::error!("open `{}`: {e}", settings.file);
        })?;
        let (size, grow) = settings.disk_size(file.size()?)?;
        if grow {
            if read_only {
                wasmtap_guest_sdk::error!(
                    "`{}` is smaller than size= and the disk is read-only",
                    settings.file
                );
                return Err(ErrorCode::ReadOnly);
            }
            file.set_size(size)?;
            wasmtap_guest_sdk::info!("`{}` sized to {size} bytes", settings.file);
        }
        Ok(Self {
            file,
            settings,
            size,
            read_only,
        })
    }

    fn info(&self) -> DiskInfo {
        DiskInfo {
            discard: true,
            discard_granularity: DISCARD_GRANULARITY.max(self.settings.sector.bytes()),
            write_cache: true,
            read_only: self.read_only,
            ..disk_info(self.size, self.settings.sector)
        }
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        req.submit_read(&self.file, req.offset(), 0, req.length())
    }

    fn write(&mut self, req: &Request) -> Result<()> {
        // For a FUA write the host syncs the file once this submitted I/O is
        // done, before the request completes (wit: `request.fua`), so there
        // is nothing more to do here.
        req.submit_write(&self.file, req.offset(), 0, req.length())?;
        Ok(())
    }

    /// A batch's reads and writes go to the host as one `submit-batch` call
    /// (each is a single zero-copy transfer, as in `read`/`write`); flushes
    /// and discards are then served one by one. A flush covers writes
    /// completed before it was issued, never those of its own batch, so
    /// serving it after them is correct.
    fn queue_batch(&mut self, batch: Batch) {
        let mut io = Vec::with_capacity(batch.len());
        let mut rest = Vec::new();
        for req in batch {
            match req.kind() {
                Kind::Read | Kind::Write => io.push(req),
                Kind::Flush | Kind::Discard | Kind::WriteZeroes => rest.push(req),
            }
        }
        let results = {
            let mut t = Transfers::with_capacity(io.len());
            for req in &io {
                if req.kind() == Kind::Read {
                    t.read(req, &self.file, req.offset(), 0, req.length());
                } else {
                    t.write(req, &self.file, req.offset(), 0, req.length());
                }
            }
            t.submit()
        };
        for (req, status) in io.into_iter().zip(results) {
            req.complete(status);
        }
        for req in rest {
            match req.kind() {
                Kind::Flush => self.queue_flush(req),
                _ => self.queue_discard(req),
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.file.sync()
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.file.punch_hole(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<()> {
        match self.file.punch_hole(offset, len) {
            Err(ErrorCode::Unsupported) => {
                // The file system cannot deallocate: write the zeros.
                let zeros = vec![0; ZERO_FILL_LEN as usize];
                for piece in Segments::new(offset, len, ZERO_FILL_LEN) {
                    self.file
                        .write_at(piece.offset, &zeros[..piece.len as usize])?;
                }
                Ok(())
            }
            other => other,
        }
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<BlockExtent>> {
        // The host answers from the file system (SEEK_DATA/SEEK_HOLE); the
        // disk's bytes are the file's, so only sector rounding is left.
        let extents = self.file.block_status(offset, len)?;
        Ok(sector_extents(&extents, self.settings.sector))
    }

    fn debug(&self) -> String {
        format!(
            "raw file `{}`: {} bytes, {}-byte sectors{}",
            self.settings.file,
            self.size,
            self.settings.sector,
            if self.read_only { ", read-only" } else { "" }
        )
    }

    fn close(&mut self) -> Result<()> {
        if self.read_only {
            Ok(())
        } else {
            self.file.sync()
        }
    }
}

wasmtap_guest_sdk::export_backstore!(RawFile);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_name_disk_img_without_size() {
        let s = Settings::parse("").unwrap();
        assert_eq!(
            s,
            Settings {
                file: DEFAULT_FILE.into(),
                size: None,
                sector: SectorSize::B512
            }
        );
    }

    #[test]
    fn config_names_file_size_and_sector() {
        let s = Settings::parse("file=images/a.raw,size=1G,sector=4096").unwrap();
        assert_eq!(
            (s.file.as_str(), s.size, s.sector),
            ("images/a.raw", Some(1 << 30), SectorSize::B4096)
        );
    }

    #[test]
    fn new_file_grows_to_size() {
        let s = Settings::parse("size=1M").unwrap();
        assert_eq!(s.disk_size(0), Ok((1 << 20, true)));
    }

    #[test]
    fn existing_file_without_size_keeps_its_size_in_whole_sectors() {
        let s = Settings::parse("sector=4096").unwrap();
        assert_eq!(s.disk_size(10_000), Ok((8192, false)));
    }

    #[test]
    fn empty_file_without_size_is_invalid_config() {
        let s = Settings::parse("").unwrap();
        assert_eq!(s.disk_size(0), Err(ErrorCode::InvalidConfig));
    }

    #[test]
    fn larger_file_is_not_shrunk() {
        let s = Settings::parse("size=1M").unwrap();
        assert_eq!(s.disk_size(2 << 20), Err(ErrorCode::InvalidConfig));
    }

    #[test]
    fn unknown_option_is_refused() {
        assert!(Settings::parse("file=a,cache=none").is_err());
    }
}

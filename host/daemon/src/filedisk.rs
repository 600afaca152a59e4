//! A native file backend: `pread`/`pwrite` straight between a file and the
//! TCMU data area. The yardstick for the `raw-file` WebAssembly guest, which
//! moves its data the same way through the host's zero-copy path.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use wasmtap_kernel::MappedRegion;
use wasmtap_scsi::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, Blocks, BufMut, BufRef, DiskInfo,
    Extent, Lba, WriteCache,
};

/// See the module docs.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    region: Arc<MappedRegion>,
    info: DiskInfo,
}

impl FileDisk {
    /// Serve `file` (already sized) with `block_size`-byte blocks; buffers
    /// whose extents lie in `region` are moved without a bounce copy.
    pub fn new(
        file: File,
        region: Arc<MappedRegion>,
        block_size: u32,
        max_transfer: u64,
    ) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        let mut info = DiskInfo::simple(block_size, len / u64::from(block_size));
        info.max_transfer = Blocks(max_transfer.max(1));
        info.write_cache = WriteCache::WriteBack;
        Ok(Self { file, region, info })
    }

    fn extents(view_extents: impl FnOnce(&mut dyn FnMut(Extent)) -> bool) -> Option<Vec<Extent>> {
        let mut v = Vec::new();
        view_extents(&mut |e| v.push(e)).then_some(v)
    }

    /// Move each extent of a buffer at `lba` with `io(file offset, extent)`,
    /// which returns the bytes it moved; a short transfer is an error.
    fn each_extent(
        &self,
        lba: Lba,
        extents: Vec<Extent>,
        mut io: impl FnMut(u64, &Extent) -> std::io::Result<usize>,
    ) -> BackendResult {
        let mut pos = lba.0 * u64::from(self.info.block_size);
        for e in extents {
            let n = io(pos, &e).map_err(|_| io_err(lba))?;
            if (n as u64) < e.len {
                return Err(io_err(lba));
            }
            pos += e.len;
        }
        Ok(())
    }
}

fn io_err(lba: Lba) -> BackendError {
    BackendError::at(BackendErrorKind::Medium, lba)
}

impl BlockBackend for FileDisk {
    fn info(&self) -> DiskInfo {
        self.info
    }

    async fn read(&self, lba: Lba, mut dst: BufMut<'_>) -> BackendResult {
        if let Some(ext) = Self::extents(|f| dst.extents(f)) {
            return self.each_extent(lba, ext, |pos, e| {
                self.region.pread_from(&self.file, pos, e.addr, e.len)
            });
        }
        let mut tmp = vec![0u8; dst.len() as usize];
        let pos = lba.0 * u64::from(self.info.block_size);
        self.file
            .read_exact_at(&mut tmp, pos)
            .map_err(|_| io_err(lba))?;
        dst.write_at(0, &tmp)?;
        Ok(())
    }

    async fn write(&self, lba: Lba, src: BufRef<'_>, _fua: bool) -> BackendResult {
        if let Some(ext) = Self::extents(|f| src.extents(f)) {
            return self.each_extent(lba, ext, |pos, e| {
                self.region.pwrite_to(&self.file, pos, e.addr, e.len)
            });
        }
        let tmp = src.to_vec()?;
        let pos = lba.0 * u64::from(self.info.block_size);
        self.file.write_all_at(&tmp, pos).map_err(|_| io_err(lba))
    }

    async fn flush(&self) -> BackendResult {
        self.file
            .sync_data()
            .map_err(|_| BackendError::new(BackendErrorKind::Medium))
    }

    async fn discard(&self, _lba: Lba, _blocks: Blocks) -> BackendResult {
        Err(BackendError::new(BackendErrorKind::Unsupported))
    }

    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, _may_unmap: bool) -> BackendResult {
        let bs = u64::from(self.info.block_size);
        let zeros = vec![0u8; (blocks.0 * bs) as usize];
        self.file
            .write_all_at(&zeros, lba.0 * bs)
            .map_err(|_| io_err(lba))
    }
}

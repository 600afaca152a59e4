//! The native RAM disk: a sparse, in-memory block backend.
//!
//! Memory is allocated in 64 KiB chunks on first write, so a large LUN costs
//! only what is written; discard and write-zeroes free whole chunks (and
//! zero partial ones), so discarded blocks read back as zeros (LBPRZ).
//! Single-threaded by design: it lives on its device's worker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use wasmtap_scsi::{
    BackendError, BackendErrorKind, BackendResult, BlockBackend, BlockExtent, BlockState, Blocks,
    BufMut, BufRef, DiscardInfo, DiskInfo, Lba, WriteCache,
};

const CHUNK: u64 = 64 * 1024;

/// Most extents one block-status answer holds (the target asks again).
const MAX_EXTENTS: usize = 1024;

/// See the module docs.
#[derive(Debug)]
pub struct RamDisk {
    info: Cell<DiskInfo>,
    chunks: RefCell<HashMap<u64, Box<[u8]>>>,
}

impl RamDisk {
    /// A zeroed disk of `block_count` blocks of `block_size` bytes that
    /// accepts up to `max_transfer` blocks per request.
    pub fn new(block_size: u32, block_count: u64, max_transfer: u64, write_cache: bool) -> Self {
        let per_chunk = CHUNK / u64::from(block_size);
        Self {
            info: Cell::new(DiskInfo {
                block_size,
                block_count: Blocks(block_count),
                physical_exponent: 0,
                max_transfer: Blocks(max_transfer.max(1)),
                optimal_transfer: Blocks(0),
                discard: Some(DiscardInfo {
                    granularity: Blocks(per_chunk.max(1)),
                    alignment: Lba(0),
                    max_blocks: u32::MAX,
                    max_descriptors: 256,
                    zeroes: true,
                }),
                write_cache: if write_cache {
                    WriteCache::WriteBack
                } else {
                    WriteCache::WriteThrough
                },
                read_only: false,
            }),
            chunks: RefCell::new(HashMap::new()),
        }
    }

    /// Bytes of memory holding data.
    #[cfg(test)]
    pub fn resident_bytes(&self) -> u64 {
        self.chunks.borrow().len() as u64 * CHUNK
    }

    /// Change the size (a RECONFIG from the kernel) and/or the write-cache
    /// mode. Data beyond a smaller size is dropped.
    pub fn reconfigure(&self, size: Option<u64>, write_cache: Option<bool>) -> Result<(), String> {
        let mut info = self.info.get();
        if let Some(bytes) = size {
            let bs = u64::from(info.block_size);
            if bytes == 0 || !bytes.is_multiple_of(bs) {
                return Err(format!(
                    "new size {bytes} is not a positive multiple of {bs}"
                ));
            }
            info.block_count = Blocks(bytes / bs);
            let mut chunks = self.chunks.borrow_mut();
            chunks.retain(|&idx, _| idx * CHUNK < bytes);
            let tail = bytes % CHUNK;
            if tail != 0
                && let Some(c) = chunks.get_mut(&(bytes / CHUNK))
            {
                c[tail as usize..].fill(0);
            }
        }
        if let Some(wc) = write_cache {
            info.write_cache = if wc {
                WriteCache::WriteBack
            } else {
                WriteCache::WriteThrough
            };
        }
        self.info.set(info);
        Ok(())
    }

    fn byte_range(&self, lba: Lba, blocks: u64) -> Result<(u64, u64), BackendError> {
        let info = self.info.get();
        let bs = u64::from(info.block_size);
        let end = lba
            .0
            .checked_add(blocks)
            .filter(|&e| e <= info.block_count.0);
        match end {
            Some(_) => Ok((lba.0 * bs, blocks * bs)),
            None => Err(BackendError::at(BackendErrorKind::OutOfRange, lba)),
        }
    }

    /// Visit `(chunk index, offset in chunk, offset in request, length)`.
    fn pieces(
        start: u64,
        len: u64,
        mut f: impl FnMut(u64, usize, u64, usize) -> BackendResult,
    ) -> BackendResult {
        let mut done = 0;
        while done < len {
            let pos = start + done;
            let (idx, off) = (pos / CHUNK, pos % CHUNK);
            let n = (CHUNK - off).min(len - done);
            f(idx, off as usize, done, n as usize)?;
            done += n;
        }
        Ok(())
    }

    fn zero_range(&self, start: u64, len: u64) {
        let mut chunks = self.chunks.borrow_mut();
        let _ = Self::pieces(start, len, |idx, off, _, n| {
            if n as u64 == CHUNK {
                chunks.remove(&idx);
            } else if let Some(c) = chunks.get_mut(&idx) {
                c[off..off + n].fill(0);
            }
            Ok(())
        });
    }
}

impl BlockBackend for RamDisk {
    fn info(&self) -> DiskInfo {
        self.info.get()
    }

    /// Chunks that hold data are mapped, the others deallocated (never
    /// written, or discarded whole): at most [`MAX_EXTENTS`] extents.
    async fn block_status(
        &self,
        lba: Lba,
        blocks: Blocks,
    ) -> Result<Vec<BlockExtent>, BackendError> {
        let (start, len) = self.byte_range(lba, blocks.0)?;
        let bs = u64::from(self.info.get().block_size);
        let chunks = self.chunks.borrow();
        let mut out: Vec<BlockExtent> = Vec::new();
        let mut pos = start;
        while pos < start + len {
            let n = (CHUNK - pos % CHUNK).min(start + len - pos);
            let state = if chunks.contains_key(&(pos / CHUNK)) {
                BlockState::Mapped
            } else {
                BlockState::Deallocated
            };
            let full = out.len() == MAX_EXTENTS;
            match out.last_mut() {
                Some(l) if l.state == state => l.blocks = Blocks(l.blocks.0 + n / bs),
                _ if full => break,
                _ => out.push(BlockExtent {
                    lba: Lba(pos / bs),
                    blocks: Blocks(n / bs),
                    state,
                }),
            }
            pos += n;
        }
        Ok(out)
    }

    async fn read(&self, lba: Lba, mut dst: BufMut<'_>) -> BackendResult {
        let blocks = dst.len() / u64::from(self.info.get().block_size);
        let (start, len) = self.byte_range(lba, blocks)?;
        let chunks = self.chunks.borrow();
        Self::pieces(start, len, |idx, off, at, n| {
            match chunks.get(&idx) {
                Some(c) => dst.write_at(at, &c[off..off + n])?,
                None => dst.zero(at, n as u64)?,
            }
            Ok(())
        })
    }

    async fn write(&self, lba: Lba, src: BufRef<'_>, _fua: bool) -> BackendResult {
        let blocks = src.len() / u64::from(self.info.get().block_size);
        let (start, len) = self.byte_range(lba, blocks)?;
        let mut chunks = self.chunks.borrow_mut();
        Self::pieces(start, len, |idx, off, at, n| {
            let c = chunks
                .entry(idx)
                .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            src.read_at(at, &mut c[off..off + n])?;
            Ok(())
        })
    }

    async fn flush(&self) -> BackendResult {
        Ok(())
    }

    async fn discard(&self, lba: Lba, blocks: Blocks) -> BackendResult {
        let (start, len) = self.byte_range(lba, blocks.0)?;
        self.zero_range(start, len);
        Ok(())
    }

    async fn write_zeroes(&self, lba: Lba, blocks: Blocks, _may_unmap: bool) -> BackendResult {
        let (start, len) = self.byte_range(lba, blocks.0)?;
        self.zero_range(start, len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_scsi::DataBuffer;
    use wasmtap_scsi::testing::block_on;

    fn disk() -> RamDisk {
        RamDisk::new(512, 4096, 256, false)
    }

    #[test]
    fn unwritten_blocks_read_as_zeros_and_cost_no_memory() {
        let d = disk();
        let mut buf = vec![0xffu8; 4096];
        block_on(d.read(Lba(100), BufMut::new(&mut buf, 0, 4096).unwrap())).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(d.resident_bytes(), 0);
    }

    #[test]
    fn block_status_follows_the_chunks() {
        let d = disk();
        let data = vec![7u8; 512];
        // Chunk 1 (blocks 128..256) gets data; chunk 2 is written and then
        // discarded whole.
        block_on(d.write(Lba(130), BufRef::new(&data, 0, 512).unwrap(), false)).unwrap();
        block_on(d.write(Lba(300), BufRef::new(&data, 0, 512).unwrap(), false)).unwrap();
        block_on(d.discard(Lba(256), Blocks(128))).unwrap();
        let got: Vec<_> = block_on(d.block_status(Lba(100), Blocks(400)))
            .unwrap()
            .iter()
            .map(|e| (e.lba.0, e.blocks.0, e.state))
            .collect();
        assert_eq!(
            got,
            [
                (100, 28, BlockState::Deallocated),
                (128, 128, BlockState::Mapped),
                (256, 244, BlockState::Deallocated),
            ]
        );
    }

    #[test]
    fn writes_across_chunk_boundaries_read_back() {
        let d = disk();
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
        // 64 KiB chunk = 128 blocks; start 4 blocks before a boundary.
        block_on(d.write(Lba(124), BufRef::new(&data, 0, 8192).unwrap(), false)).unwrap();
        let mut back = vec![0u8; 8192];
        block_on(d.read(Lba(124), BufMut::new(&mut back, 0, 8192).unwrap())).unwrap();
        assert_eq!(back, data);
        assert_eq!(d.resident_bytes(), 2 * CHUNK);
    }

    #[test]
    fn discard_zeroes_partial_chunks_and_frees_whole_ones() {
        let d = disk();
        // Three 64 KiB chunks (128 blocks each); discard blocks 1..300, which
        // covers chunk 1 entirely and parts of chunks 0 and 2.
        let data = vec![7u8; 384 * 512];
        block_on(d.write(
            Lba(0),
            BufRef::new(&data, 0, data.len() as u64).unwrap(),
            false,
        ))
        .unwrap();
        block_on(d.discard(Lba(1), Blocks(299))).unwrap();
        let mut back = vec![0u8; 384 * 512];
        let n = back.len() as u64;
        block_on(d.read(Lba(0), BufMut::new(&mut back, 0, n).unwrap())).unwrap();
        assert!(back[..512].iter().all(|&b| b == 7));
        assert!(back[512..300 * 512].iter().all(|&b| b == 0));
        assert!(back[300 * 512..].iter().all(|&b| b == 7));
        assert_eq!(
            d.resident_bytes(),
            2 * CHUNK,
            "the fully discarded middle chunk is freed"
        );
    }

    #[test]
    fn resize_changes_capacity_and_drops_data_beyond_it() {
        let d = disk();
        let data = vec![5u8; 1024];
        block_on(d.write(Lba(4000), BufRef::new(&data, 0, 1024).unwrap(), false)).unwrap();
        d.reconfigure(Some(1024 * 512), None).unwrap();
        assert_eq!(d.info().block_count, Blocks(1024));
        let mut buf = vec![0u8; 512];
        let r = block_on(d.read(Lba(1024), BufMut::new(&mut buf, 0, 512).unwrap()));
        assert_eq!(r.unwrap_err().kind, BackendErrorKind::OutOfRange);
        d.reconfigure(Some(4096 * 512), Some(true)).unwrap();
        block_on(d.read(Lba(4000), BufMut::new(&mut buf, 0, 512).unwrap())).unwrap();
        assert!(
            buf.iter().all(|&b| b == 0),
            "shrinking dropped the old data"
        );
        assert_eq!(d.info().write_cache, WriteCache::WriteBack);
        assert!(d.reconfigure(Some(1000), None).is_err());
    }

    #[test]
    fn out_of_range_is_an_error() {
        let d = disk();
        let mut buf = vec![0u8; 1024];
        let r = block_on(d.read(Lba(4095), BufMut::new(&mut buf, 0, 1024).unwrap()));
        assert_eq!(r.unwrap_err().kind, BackendErrorKind::OutOfRange);
        assert_eq!(DataBuffer::len(&buf), 1024);
    }
}

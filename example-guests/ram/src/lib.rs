//! The ram backstore: a sparse RAM disk in guest memory.
//!
//! The disk is cut into 64 KiB chunks, allocated on first write of non-zero
//! data and freed by discard or write-zeroes over the whole chunk, so a large
//! mostly-empty disk costs little memory. Reads of unallocated chunks are
//! answered with the host's `zero-data` (no bytes cross into the host);
//! allocated chunks go straight from the chunk into the request with
//! `write-data` (one copy, no intermediate buffer).
//!
//! When guest memory runs out (the host's per-instance limit), a write that
//! needs a new chunk fails with `no-space` instead of trapping: the disk
//! behaves like a full thin-provisioned volume.
//!
//! Configuration: `size=<bytes>` (default `64M`, at most `1T`),
//! `sector=512|4096` (default 512).

use std::borrow::Cow;

use wasmtap_guest_sdk::{
    Backstore, BlockExtent, BlockState, Config, DiskInfo, ErrorCode, OpenFlags, Request, Result,
    SectorSize, Segment, Segments, disk_info,
};

/// Most extents one block-status answer holds (the host asks again).
const MAX_EXTENTS: usize = 1024;

/// Allocation unit: 64 KiB, a multiple of both sector sizes.
pub const CHUNK: u64 = 64 * 1024;
const CHUNK_BYTES: usize = CHUNK as usize;

/// The default size when the configuration names none.
pub const DEFAULT_SIZE: u64 = 64 << 20;

/// The largest disk: 1 TiB, whose chunk table takes 64 MiB of a wasm32
/// guest's memory (4 bytes per chunk).
pub const MAX_SIZE: u64 = 1 << 40;

type Chunk = Box<[u8; CHUNK_BYTES]>;

/// Sparse storage for a disk's bytes, in [`CHUNK`]-sized pieces.
///
/// Offsets and lengths passed in must lie inside the disk (the host checks
/// every request against the disk size before the backstore sees it).
#[derive(Debug, Default)]
pub struct ChunkStore {
    chunks: Vec<Option<Chunk>>,
    allocated: usize,
}

fn new_chunk() -> Result<Chunk> {
    let mut bytes = Vec::new();
    // Fallible: running into the instance's memory limit is "disk full",
    // not a trap.
    bytes
        .try_reserve_exact(CHUNK_BYTES)
        .map_err(|_| ErrorCode::NoSpace)?;
    bytes.resize(CHUNK_BYTES, 0);
    Chunk::try_from(bytes.into_boxed_slice()).map_err(|_| ErrorCode::Internal)
}

fn index(segment: &Segment) -> usize {
    // The table has one entry per chunk of a disk that fits in memory, so
    // every in-range chunk index fits in usize.
    usize::try_from(segment.unit(CHUNK)).unwrap_or(usize::MAX)
}

fn span(segment: &Segment) -> core::ops::Range<usize> {
    let start = segment.offset_in_unit(CHUNK) as usize;
    start..start + segment.len as usize
}

impl ChunkStore {
    /// A store for `size` bytes, all zero. Fails with `no-space` if the
    /// chunk table itself does not fit in memory.
    pub fn new(size: u64) -> Result<Self> {
        let count = usize::try_from(size.div_ceil(CHUNK)).map_err(|_| ErrorCode::NoSpace)?;
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(count)
            .map_err(|_| ErrorCode::NoSpace)?;
        chunks.resize_with(count, || None);
        Ok(Self {
            chunks,
            allocated: 0,
        })
    }

    /// Allocated chunks as `mapped`, the others as `hole`, for the `len`
    /// bytes at `offset` (inside the disk): contiguous extents from
    /// `offset`, at most [`MAX_EXTENTS`] of them.
    pub fn extents(&self, offset: u64, len: u64) -> Vec<BlockExtent> {
        let mut out: Vec<BlockExtent> = Vec::new();
        for segment in Segments::new(offset, len, CHUNK) {
            let state = match self.chunks.get(index(&segment)) {
                Some(Some(_)) => BlockState::Mapped,
                _ => BlockState::Hole,
            };
            let full = out.len() == MAX_EXTENTS;
            match out.last_mut() {
                Some(last) if last.state == state => last.length += segment.len,
                _ if full => break,
                _ => out.push(BlockExtent {
                    offset: segment.offset,
                    length: segment.len,
                    state,
                }),
            }
        }
        out
    }

    /// How many chunks hold data.
    pub fn allocated_chunks(&self) -> usize {
        self.allocated
    }

    /// The bytes of `segment` (which must not cross a chunk boundary), or
    /// `None` if they are unallocated and read as zeros.
    pub fn get(&self, segment: &Segment) -> Option<&[u8]> {
        let chunk = self.chunks.get(index(segment))?.as_ref()?;
        Some(&chunk[span(segment)])
    }

    /// Store `data` at `segment` (which must not cross a chunk boundary and
    /// has `data.len()` bytes). All-zero data for an unallocated chunk
    /// allocates nothing.
    pub fn put(&mut self, segment: &Segment, data: Cow<'_, [u8]>) -> Result<()> {
        let slot = self
            .chunks
            .get_mut(index(segment))
            .ok_or(ErrorCode::OutOfRange)?;
        if let Some(chunk) = slot {
            chunk[span(segment)].copy_from_slice(&data);
            return Ok(());
        }
        if data.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let chunk = if segment.covers_unit(CHUNK) {
            // A whole-chunk write adopts an owned buffer (no copy) or
            // copies a borrowed one without zero-filling a new chunk first.
            Chunk::try_from(data.into_owned().into_boxed_slice())
                .map_err(|_| ErrorCode::Internal)?
        } else {
            let mut chunk = new_chunk()?;
            chunk[span(segment)].copy_from_slice(&data);
            chunk
        };
        *slot = Some(chunk);
        self.allocated += 1;
        Ok(())
    }

    /// Make `offset..offset + len` read as zeros, freeing every chunk the
    /// range covers whole.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        for segment in Segments::new(offset, len, CHUNK) {
            let slot = self
                .chunks
                .get_mut(index(&segment))
                .ok_or(ErrorCode::OutOfRange)?;
            if segment.covers_unit(CHUNK) {
                if slot.take().is_some() {
                    self.allocated -= 1;
                }
            } else if let Some(chunk) = slot {
                chunk[span(&segment)].fill(0);
            }
        }
        Ok(())
    }
}

/// A RAM disk.
#[derive(Debug)]
pub struct Ram {
    size: u64,
    sector: SectorSize,
    read_only: bool,
    store: ChunkStore,
}

impl Ram {
    /// Parse the configuration and allocate the chunk table.
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
        if size > MAX_SIZE {
            wasmtap_guest_sdk::error!(
                "invalid configuration: size {size} is larger than {MAX_SIZE}"
            );
            return Err(ErrorCode::InvalidConfig);
        }
        let size = sector.align_down(size);
        Ok(Self {
            size,
            sector,
            read_only: flags.contains(OpenFlags::READ_ONLY),
            store: ChunkStore::new(size)?,
        })
    }
}

impl Backstore for Ram {
    // Writes are copied into guest memory: take their data with the batch.
    const PREFETCH_WRITE_DATA: bool = true;

    fn open(config: &str, flags: OpenFlags) -> Result<Self> {
        Self::from_config(config, flags)
    }

    fn info(&self) -> DiskInfo {
        DiskInfo {
            discard: true,
            discard_granularity: CHUNK as u32,
            read_only: self.read_only,
            ..disk_info(self.size, self.sector)
        }
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        // Runs of unallocated chunks become one `zero-data` call.
        let mut zeros: Option<(u64, u64)> = None;
        for segment in req.segments(CHUNK) {
            match self.store.get(&segment) {
                Some(bytes) => {
                    if let Some((at, len)) = zeros.take() {
                        req.zero_data(at, len)?;
                    }
                    req.write_data(segment.at, bytes)?;
                }
                None => match &mut zeros {
                    Some((_, len)) => *len += segment.len,
                    None => zeros = Some((segment.at, segment.len)),
                },
            }
        }
        if let Some((at, len)) = zeros {
            req.zero_data(at, len)?;
        }
        Ok(())
    }

    fn write(&mut self, req: &Request) -> Result<()> {
        for segment in req.segments(CHUNK) {
            let data = req.data(segment.at, segment.len)?;
            if data.len() as u64 != segment.len {
                return Err(ErrorCode::Internal);
            }
            self.store.put(&segment, data)?;
        }
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.store.zero(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<()> {
        self.store.zero(offset, len)
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<BlockExtent>> {
        Ok(self.store.extents(offset, len))
    }

    fn debug(&self) -> String {
        let chunks = self.store.allocated_chunks();
        format!(
            "ram disk: {} bytes, {}-byte sectors; {} of {} chunks of {} KiB allocated ({} KiB)",
            self.size,
            self.sector,
            chunks,
            self.size.div_ceil(CHUNK),
            CHUNK / 1024,
            chunks as u64 * CHUNK / 1024,
        )
    }
}

wasmtap_guest_sdk::export_backstore!(Ram);

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(offset: u64, len: u64) -> Segment {
        let mut it = Segments::new(offset, len, CHUNK);
        let s = it.next().unwrap();
        assert!(it.next().is_none(), "test segment crosses a chunk");
        s
    }

    #[test]
    fn fresh_store_reads_zeros_without_allocating() {
        let store = ChunkStore::new(1 << 20).unwrap();
        assert_eq!(store.get(&segment(4096, 512)), None);
        assert_eq!(store.allocated_chunks(), 0);
    }

    #[test]
    fn partial_write_allocates_one_chunk_and_reads_back() {
        let mut store = ChunkStore::new(1 << 20).unwrap();
        store
            .put(&segment(CHUNK + 512, 1024), vec![0xab; 1024].into())
            .unwrap();
        assert_eq!(store.allocated_chunks(), 1);
        assert_eq!(
            store.get(&segment(CHUNK + 512, 1024)),
            Some(&[0xab; 1024][..])
        );
        assert_eq!(store.get(&segment(CHUNK, 512)), Some(&[0; 512][..]));
        assert_eq!(store.get(&segment(0, 512)), None);
    }

    #[test]
    fn extents_follow_allocated_chunks() {
        let mut store = ChunkStore::new(8 * CHUNK).unwrap();
        store
            .put(&segment(2 * CHUNK + 512, 512), vec![1; 512].into())
            .unwrap();
        store
            .put(&segment(3 * CHUNK, 512), vec![1; 512].into())
            .unwrap();
        let got = |offset, len| -> Vec<(u64, u64, BlockState)> {
            store
                .extents(offset, len)
                .iter()
                .map(|e| (e.offset, e.length, e.state))
                .collect()
        };
        assert_eq!(
            got(512, 8 * CHUNK - 512),
            [
                (512, 2 * CHUNK - 512, BlockState::Hole),
                (2 * CHUNK, 2 * CHUNK, BlockState::Mapped),
                (4 * CHUNK, 4 * CHUNK, BlockState::Hole),
            ]
        );
        assert_eq!(
            got(2 * CHUNK + 4096, 4096),
            [(2 * CHUNK + 4096, 4096, BlockState::Mapped)]
        );
        store.zero(2 * CHUNK, CHUNK).unwrap();
        let got = store.extents(0, 3 * CHUNK);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].length, got[0].state), (3 * CHUNK, BlockState::Hole));
    }

    #[test]
    fn zero_writes_to_unallocated_chunks_stay_sparse() {
        let mut store = ChunkStore::new(1 << 20).unwrap();
        store.put(&segment(0, 4096), vec![0; 4096].into()).unwrap();
        assert_eq!(store.allocated_chunks(), 0);
    }

    #[test]
    fn whole_chunk_write_is_adopted() {
        let mut store = ChunkStore::new(1 << 20).unwrap();
        let data: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
        store
            .put(&segment(2 * CHUNK, CHUNK), data.clone().into())
            .unwrap();
        assert_eq!(store.get(&segment(2 * CHUNK, CHUNK)), Some(&data[..]));
    }

    #[test]
    fn discard_frees_whole_chunks_and_zeroes_partial_ones() {
        let mut store = ChunkStore::new(4 * CHUNK).unwrap();
        for c in 0..3 {
            store
                .put(&segment(c * CHUNK, CHUNK), vec![1; CHUNK_BYTES].into())
                .unwrap();
        }
        // Covers the second half of chunk 0 and all of chunk 1.
        store.zero(CHUNK / 2, CHUNK + CHUNK / 2).unwrap();
        assert_eq!(store.allocated_chunks(), 2);
        assert_eq!(store.get(&segment(0, 512)), Some(&[1; 512][..]));
        assert_eq!(store.get(&segment(CHUNK / 2, 512)), Some(&[0; 512][..]));
        assert_eq!(store.get(&segment(CHUNK, 512)), None);
        assert_eq!(store.get(&segment(2 * CHUNK, 512)), Some(&[1; 512][..]));
    }

    #[test]
    fn config_sets_size_and_sector() {
        let ram = Ram::from_config("size=1M,sector=4096", OpenFlags::empty()).unwrap();
        let info = ram.info();
        assert_eq!(
            (info.size, info.sector_size, info.discard),
            (1 << 20, 4096, true)
        );
    }

    #[test]
    fn default_size_is_64_mebibytes() {
        let ram = Ram::from_config("", OpenFlags::empty()).unwrap();
        assert_eq!(ram.info().size, DEFAULT_SIZE);
    }

    #[test]
    fn oversized_disk_is_invalid_config() {
        let err = Ram::from_config("size=2T", OpenFlags::empty()).unwrap_err();
        assert_eq!(err, ErrorCode::InvalidConfig);
    }

    #[test]
    fn odd_sector_size_is_invalid_config() {
        let err = Ram::from_config("sector=520", OpenFlags::empty()).unwrap_err();
        assert_eq!(err, ErrorCode::InvalidConfig);
    }
}

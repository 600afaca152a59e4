//! Sector and byte arithmetic.
//!
//! Every offset and length in the contract is in bytes; the host has already
//! checked that a request's range is sector aligned and lies inside the disk.
//! These helpers cover what a backstore still has to compute itself: where a
//! range crosses its own allocation units (chunks, clusters, pages) and how
//! sizes relate to sectors.

use core::fmt;

/// A logical sector size the contract allows (`disk-info.sector-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SectorSize {
    /// 512-byte sectors, what most initiators expect.
    #[default]
    B512,
    /// 4096-byte sectors ("4Kn").
    B4096,
}

impl SectorSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u32 {
        match self {
            Self::B512 => 512,
            Self::B4096 => 4096,
        }
    }

    /// The size in bytes, as a `u64` for offset arithmetic.
    pub const fn bytes_u64(self) -> u64 {
        self.bytes() as u64
    }

    /// The sector size of `bytes`, if it is one the contract allows.
    pub const fn from_bytes(bytes: u32) -> Option<Self> {
        match bytes {
            512 => Some(Self::B512),
            4096 => Some(Self::B4096),
            _ => None,
        }
    }

    /// Whether `bytes` is a whole number of sectors.
    pub const fn is_aligned(self, bytes: u64) -> bool {
        bytes.is_multiple_of(self.bytes_u64())
    }

    /// `bytes` rounded down to a whole number of sectors.
    pub const fn align_down(self, bytes: u64) -> u64 {
        bytes - bytes % self.bytes_u64()
    }

    /// `bytes` rounded up to a whole number of sectors, or `None` on overflow.
    pub const fn align_up(self, bytes: u64) -> Option<u64> {
        align_up(bytes, self.bytes_u64())
    }

    /// How many whole sectors `bytes` holds (rounding down).
    pub const fn sectors(self, bytes: u64) -> u64 {
        bytes / self.bytes_u64()
    }

    /// The byte offset of sector `lba`, or `None` on overflow.
    pub const fn offset_of(self, lba: u64) -> Option<u64> {
        lba.checked_mul(self.bytes_u64())
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// `value` rounded down to a multiple of `align`.
///
/// # Panics
/// If `align` is zero.
pub const fn align_down(value: u64, align: u64) -> u64 {
    value - value % align
}

/// `value` rounded up to a multiple of `align`, or `None` on overflow.
///
/// # Panics
/// If `align` is zero.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value % align {
        0 => Some(value),
        rem => value.checked_add(align - rem),
    }
}

/// One piece of a byte range that does not cross an allocation boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset on the disk.
    pub offset: u64,
    /// Byte offset relative to the start of the range (for a request: the
    /// `at` argument of `write-data`, `read-data`, `submit-*`, ...).
    pub at: u64,
    /// Length in bytes; never zero.
    pub len: u64,
}

impl Segment {
    /// The index of the allocation unit this segment lies in.
    pub const fn unit(&self, unit_size: u64) -> u64 {
        self.offset / unit_size
    }

    /// Where the segment starts inside its allocation unit.
    pub const fn offset_in_unit(&self, unit_size: u64) -> u64 {
        self.offset % unit_size
    }

    /// Whether the segment covers its whole allocation unit.
    pub const fn covers_unit(&self, unit_size: u64) -> bool {
        self.len == unit_size
    }
}

/// The pieces of `offset..offset + len` split at every multiple of a unit
/// size (a chunk, a cluster, a bounce buffer's length).
///
/// The iterator yields at most `len / unit + 2` items and never overflows:
/// a range that would run past `u64::MAX` is cut at `u64::MAX`.
#[derive(Clone, Debug)]
pub struct Segments {
    next: u64,
    end: u64,
    start: u64,
    unit: u64,
}

impl Segments {
    /// Split `offset..offset + len` at multiples of `unit`.
    ///
    /// # Panics
    /// If `unit` is zero.
    pub fn new(offset: u64, len: u64, unit: u64) -> Self {
        assert!(unit > 0, "allocation unit must not be zero");
        Self {
            next: offset,
            end: offset.saturating_add(len),
            start: offset,
            unit,
        }
    }
}

impl Iterator for Segments {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        if self.next >= self.end {
            return None;
        }
        let to_boundary = self.unit - self.next % self.unit;
        let len = to_boundary.min(self.end - self.next);
        let segment = Segment {
            offset: self.next,
            at: self.next - self.start,
            len,
        };
        self.next += len;
        Some(segment)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.next >= self.end {
            return (0, Some(0));
        }
        let first = align_down(self.next, self.unit);
        let last = (self.end - 1) / self.unit;
        let count = usize::try_from(last - first / self.unit + 1).ok();
        (count.unwrap_or(usize::MAX), count)
    }
}

impl core::iter::FusedIterator for Segments {}

/// `extents` (contiguous byte extents, e.g. a file's
/// [`block_status`](crate::storage::File::block_status)) made fit for
/// [`Backstore::block_status`](crate::Backstore::block_status): holes
/// shrunk inward to whole sectors (a partly allocated sector is mapped),
/// adjacent extents of one state merged, empty ones dropped.
pub fn sector_extents(
    extents: &[crate::BlockExtent],
    sector: SectorSize,
) -> Vec<crate::BlockExtent> {
    use crate::{BlockExtent, BlockState};
    let s = u64::from(sector.bytes());
    let mut out: Vec<BlockExtent> = Vec::new();
    let mut push = |from: u64, to: u64, state: BlockState| {
        if to <= from {
            return;
        }
        match out.last_mut() {
            Some(l) if l.state == state && l.offset + l.length == from => l.length += to - from,
            _ => out.push(BlockExtent {
                offset: from,
                length: to - from,
                state,
            }),
        }
    };
    for e in extents {
        let (start, end) = (e.offset, e.offset + e.length);
        if e.state == BlockState::Mapped {
            push(start, end, BlockState::Mapped);
            continue;
        }
        let a = align_up(start, s).unwrap_or(end).min(end);
        let b = align_down(end, s).max(start);
        if a >= b {
            push(start, end, BlockState::Mapped);
        } else {
            push(start, a, BlockState::Mapped);
            push(a, b, e.state);
            push(b, end, BlockState::Mapped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_extents_shrink_holes_to_whole_sectors() {
        use crate::{BlockExtent, BlockState::*};
        let e = |offset, length, state| BlockExtent {
            offset,
            length,
            state,
        };
        let got = sector_extents(
            &[
                e(0, 1000, Mapped),
                e(1000, 9000, Hole),
                e(10000, 100, Mapped),
                e(10100, 100, Hole),
            ],
            SectorSize::B512,
        );
        let want = [
            e(0, 1024, Mapped),
            e(1024, 8704, Hole),
            e(9728, 472, Mapped),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.offset, g.length, g.state), (w.offset, w.length, w.state));
        }
    }

    #[test]
    fn sector_size_accepts_only_512_and_4096() {
        assert_eq!(SectorSize::from_bytes(512), Some(SectorSize::B512));
        assert_eq!(SectorSize::from_bytes(4096), Some(SectorSize::B4096));
        assert_eq!(SectorSize::from_bytes(1024), None);
        assert_eq!(SectorSize::from_bytes(0), None);
    }

    #[test]
    fn sector_alignment_rounds_the_right_way() {
        let s = SectorSize::B4096;
        assert_eq!(s.align_down(8191), 4096);
        assert_eq!(s.align_up(4097), Some(8192));
        assert_eq!(s.align_up(u64::MAX), None);
        assert!(s.is_aligned(8192));
        assert!(!s.is_aligned(512));
        assert_eq!(s.sectors(12288), 3);
        assert_eq!(s.offset_of(3), Some(12288));
        assert_eq!(s.offset_of(u64::MAX), None);
    }

    #[test]
    fn segments_split_at_unit_boundaries() {
        let got: Vec<_> = Segments::new(1000, 5000, 4096).collect();
        assert_eq!(
            got,
            vec![
                Segment {
                    offset: 1000,
                    at: 0,
                    len: 3096
                },
                Segment {
                    offset: 4096,
                    at: 3096,
                    len: 1904
                },
            ]
        );
    }

    #[test]
    fn segments_of_an_aligned_range_cover_whole_units() {
        let got: Vec<_> = Segments::new(8192, 8192, 4096).collect();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| s.covers_unit(4096)));
        assert_eq!(got[1].unit(4096), 3);
    }

    #[test]
    fn segments_of_an_empty_range_are_empty() {
        assert_eq!(Segments::new(4096, 0, 512).count(), 0);
    }

    #[test]
    fn segments_stop_at_u64_max_instead_of_overflowing() {
        let total: u64 = Segments::new(u64::MAX - 10, 100, 4096).map(|s| s.len).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn segments_size_hint_is_exact() {
        for (offset, len, unit) in [
            (0, 1, 512),
            (511, 2, 512),
            (1000, 100_000, 4096),
            (0, 65536, 65536),
        ] {
            let it = Segments::new(offset, len, unit);
            let (lo, hi) = it.size_hint();
            let n = it.count();
            assert_eq!((lo, hi), (n, Some(n)), "{offset} {len} {unit}");
        }
    }
}

//! The shared TCMU region as the engine sees it: byte ranges and two atomics.
//!
//! The region is written concurrently by the kernel (or the simulator), so the
//! engine never holds a `&[u8]` into it. Every access goes through
//! [`SharedRegion`], whose implementations copy bytes in or out after checking
//! the range against the mapping. The production implementation is
//! `wasmtap_kernel::MappedRegion` (an mmap of `/dev/uioN` or of a memfd for
//! the simulator); [`HeapRegion`] is a safe in-process double for unit tests
//! and fuzzing.

use std::sync::Mutex;

/// A range that does not lie inside the region, or a misaligned atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// `off..off+len` is not inside `0..region_len`.
    #[error("range {off:#x}+{len:#x} is outside the {region_len:#x}-byte shared region")]
    OutOfBounds {
        /// Start of the rejected range.
        off: u64,
        /// Length of the rejected range.
        len: u64,
        /// Size of the region.
        region_len: u64,
    },
    /// An atomic access at an offset that is not 4-byte aligned.
    #[error("atomic access at {off:#x} is not 4-byte aligned")]
    Misaligned {
        /// The rejected offset.
        off: u64,
    },
}

/// Check that `off..off+len` lies inside a region of `region_len` bytes.
pub fn check_range(off: u64, len: u64, region_len: usize) -> Result<(), RegionError> {
    match off.checked_add(len) {
        Some(end) if end <= region_len as u64 => Ok(()),
        _ => Err(RegionError::OutOfBounds {
            off,
            len,
            region_len: region_len as u64,
        }),
    }
}

/// Bounds-checked access to a shared memory region.
///
/// Offsets are byte offsets from the start of the region (the mailbox), the
/// same coordinates the kernel uses for `cdb_off` and `iov_base`.
pub trait SharedRegion {
    /// Size of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty (it never is once mapped).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy `dst.len()` bytes starting at `off` out of the region.
    fn read_bytes(&self, off: u64, dst: &mut [u8]) -> Result<(), RegionError>;
    /// Copy `src` into the region starting at `off`.
    fn write_bytes(&self, off: u64, src: &[u8]) -> Result<(), RegionError>;
    /// Set `len` bytes starting at `off` to `byte`.
    fn fill_bytes(&self, off: u64, len: u64, byte: u8) -> Result<(), RegionError>;
    /// Atomically load the `u32` at `off` with Acquire ordering.
    fn load_u32_acquire(&self, off: u64) -> Result<u32, RegionError>;
    /// Atomically store `val` at `off` with Release ordering.
    fn store_u32_release(&self, off: u64, val: u32) -> Result<(), RegionError>;

    /// Read a native-endian `u16` (plain, non-atomic).
    fn read_u16(&self, off: u64) -> Result<u16, RegionError> {
        let mut b = [0; 2];
        self.read_bytes(off, &mut b)?;
        Ok(u16::from_ne_bytes(b))
    }
    /// Read a native-endian `u32` (plain, non-atomic).
    fn read_u32(&self, off: u64) -> Result<u32, RegionError> {
        let mut b = [0; 4];
        self.read_bytes(off, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }
    /// Read a native-endian `u64` (plain, non-atomic).
    fn read_u64(&self, off: u64) -> Result<u64, RegionError> {
        let mut b = [0; 8];
        self.read_bytes(off, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }
    /// Write a native-endian `u16`.
    fn write_u16(&self, off: u64, v: u16) -> Result<(), RegionError> {
        self.write_bytes(off, &v.to_ne_bytes())
    }
    /// Write a native-endian `u32`.
    fn write_u32(&self, off: u64, v: u32) -> Result<(), RegionError> {
        self.write_bytes(off, &v.to_ne_bytes())
    }
    /// Write a native-endian `u64`.
    fn write_u64(&self, off: u64, v: u64) -> Result<(), RegionError> {
        self.write_bytes(off, &v.to_ne_bytes())
    }
}

impl<T: SharedRegion + ?Sized> SharedRegion for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read_bytes(&self, off: u64, dst: &mut [u8]) -> Result<(), RegionError> {
        (**self).read_bytes(off, dst)
    }
    fn write_bytes(&self, off: u64, src: &[u8]) -> Result<(), RegionError> {
        (**self).write_bytes(off, src)
    }
    fn fill_bytes(&self, off: u64, len: u64, byte: u8) -> Result<(), RegionError> {
        (**self).fill_bytes(off, len, byte)
    }
    fn load_u32_acquire(&self, off: u64) -> Result<u32, RegionError> {
        (**self).load_u32_acquire(off)
    }
    fn store_u32_release(&self, off: u64, val: u32) -> Result<(), RegionError> {
        (**self).store_u32_release(off, val)
    }
}

impl<T: SharedRegion + ?Sized> SharedRegion for std::sync::Arc<T> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read_bytes(&self, off: u64, dst: &mut [u8]) -> Result<(), RegionError> {
        (**self).read_bytes(off, dst)
    }
    fn write_bytes(&self, off: u64, src: &[u8]) -> Result<(), RegionError> {
        (**self).write_bytes(off, src)
    }
    fn fill_bytes(&self, off: u64, len: u64, byte: u8) -> Result<(), RegionError> {
        (**self).fill_bytes(off, len, byte)
    }
    fn load_u32_acquire(&self, off: u64) -> Result<u32, RegionError> {
        (**self).load_u32_acquire(off)
    }
    fn store_u32_release(&self, off: u64, val: u32) -> Result<(), RegionError> {
        (**self).store_u32_release(off, val)
    }
}

/// A heap-backed region for unit tests and fuzzing.
///
/// A mutex serialises every access, which trivially gives the Acquire/Release
/// guarantees of the trait. It is not a performance model: benches use the
/// mmap-backed region.
#[derive(Debug)]
pub struct HeapRegion {
    bytes: Mutex<Vec<u8>>,
    len: usize,
}

impl HeapRegion {
    /// A zeroed region of `len` bytes.
    pub fn new(len: usize) -> Self {
        Self::from_bytes(vec![0; len])
    }
    /// A region holding `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        Self {
            bytes: Mutex::new(bytes),
            len,
        }
    }
    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut guard = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
    fn range(&self, off: u64, len: u64) -> Result<std::ops::Range<usize>, RegionError> {
        check_range(off, len, self.len)?;
        Ok(off as usize..(off + len) as usize)
    }
}

impl SharedRegion for HeapRegion {
    fn len(&self) -> usize {
        self.len
    }
    fn read_bytes(&self, off: u64, dst: &mut [u8]) -> Result<(), RegionError> {
        let r = self.range(off, dst.len() as u64)?;
        self.with(|b| dst.copy_from_slice(&b[r]));
        Ok(())
    }
    fn write_bytes(&self, off: u64, src: &[u8]) -> Result<(), RegionError> {
        let r = self.range(off, src.len() as u64)?;
        self.with(|b| b[r].copy_from_slice(src));
        Ok(())
    }
    fn fill_bytes(&self, off: u64, len: u64, byte: u8) -> Result<(), RegionError> {
        let r = self.range(off, len)?;
        self.with(|b| b[r].fill(byte));
        Ok(())
    }
    fn load_u32_acquire(&self, off: u64) -> Result<u32, RegionError> {
        if !off.is_multiple_of(4) {
            return Err(RegionError::Misaligned { off });
        }
        self.read_u32(off)
    }
    fn store_u32_release(&self, off: u64, val: u32) -> Result<(), RegionError> {
        if !off.is_multiple_of(4) {
            return Err(RegionError::Misaligned { off });
        }
        self.write_u32(off, val)
    }
}

/// One element of a command's scatter/gather list: an offset into the region
/// (not a pointer) and a length, both as the kernel wrote them and already
/// validated against the data area when the command was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoVec {
    /// Offset of the buffer from the start of the region.
    pub base: u64,
    /// Length of the buffer in bytes.
    pub len: u64,
}

/// Total number of bytes described by `iovs`.
pub fn iov_total(iovs: &[IoVec]) -> u64 {
    iovs.iter().map(|v| v.len).fold(0u64, u64::saturating_add)
}

/// Walk the pieces of `iovs` covering the logical byte range `skip..skip+len`,
/// calling `f(region_offset, piece_offset_in_range, piece_len)` for each.
/// Returns how many bytes were covered (less than `len` if the list is short).
fn for_each_piece<E>(
    iovs: &[IoVec],
    mut skip: u64,
    len: u64,
    mut f: impl FnMut(u64, u64, u64) -> Result<(), E>,
) -> Result<u64, E> {
    let mut done = 0u64;
    for v in iovs {
        if done == len {
            break;
        }
        if skip >= v.len {
            skip -= v.len;
            continue;
        }
        let n = (v.len - skip).min(len - done);
        f(v.base + skip, done, n)?;
        done += n;
        skip = 0;
    }
    Ok(done)
}

/// Copy bytes `skip..skip+dst.len()` of the buffer described by `iovs` into
/// `dst` (gather). Returns the number of bytes copied.
pub fn gather<R: SharedRegion + ?Sized>(
    region: &R,
    iovs: &[IoVec],
    skip: u64,
    dst: &mut [u8],
) -> Result<usize, RegionError> {
    let n = for_each_piece(iovs, skip, dst.len() as u64, |off, at, n| {
        region.read_bytes(off, &mut dst[at as usize..(at + n) as usize])
    })?;
    Ok(n as usize)
}

/// Copy `src` into bytes `skip..skip+src.len()` of the buffer described by
/// `iovs` (scatter). Returns the number of bytes copied.
pub fn scatter<R: SharedRegion + ?Sized>(
    region: &R,
    iovs: &[IoVec],
    skip: u64,
    src: &[u8],
) -> Result<usize, RegionError> {
    let n = for_each_piece(iovs, skip, src.len() as u64, |off, at, n| {
        region.write_bytes(off, &src[at as usize..(at + n) as usize])
    })?;
    Ok(n as usize)
}

/// Fill bytes `skip..skip+len` of the buffer described by `iovs` with `byte`.
pub fn fill<R: SharedRegion + ?Sized>(
    region: &R,
    iovs: &[IoVec],
    skip: u64,
    len: u64,
    byte: u8,
) -> Result<u64, RegionError> {
    for_each_piece(iovs, skip, len, |off, _, n| region.fill_bytes(off, n, byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_access_is_an_error_not_a_panic() {
        let r = HeapRegion::new(64);
        let mut buf = [0u8; 8];
        assert!(r.read_bytes(60, &mut buf).is_err());
        assert!(r.write_bytes(u64::MAX - 2, &buf).is_err());
        assert!(r.fill_bytes(0, 65, 0).is_err());
        assert_eq!(
            r.load_u32_acquire(2),
            Err(RegionError::Misaligned { off: 2 })
        );
        assert!(r.read_bytes(56, &mut buf).is_ok());
    }

    #[test]
    fn gather_and_scatter_cross_iovec_boundaries() {
        let r = HeapRegion::new(256);
        let iovs = [
            IoVec { base: 100, len: 3 },
            IoVec { base: 10, len: 5 },
            IoVec { base: 200, len: 4 },
        ];
        let src: Vec<u8> = (1..=12).collect();
        assert_eq!(scatter(&r, &iovs, 0, &src).unwrap(), 12);
        let mut b = [0u8; 3];
        r.read_bytes(100, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        let mut out = [0u8; 6];
        assert_eq!(gather(&r, &iovs, 2, &mut out).unwrap(), 6);
        assert_eq!(out, [3, 4, 5, 6, 7, 8]);
        // Asking for more than the list holds copies what there is.
        let mut big = [0u8; 20];
        assert_eq!(gather(&r, &iovs, 10, &mut big).unwrap(), 2);
        assert_eq!(&big[..2], &[11, 12]);
        assert_eq!(fill(&r, &iovs, 1, 5, 0).unwrap(), 5);
        assert_eq!(gather(&r, &iovs, 0, &mut out).unwrap(), 6);
        assert_eq!(out, [1, 0, 0, 0, 0, 0]);
    }
}

//! [`MappedRegion`]: the one type through which wasmtap touches a TCMU region.
//!
//! It owns a shared mapping, of `/dev/uioN` (the real kernel) or of a memfd
//! (the simulator), and implements [`SharedRegion`]: bounds-checked copies in
//! and out, and Acquire/Release atomics for `cmd_head`/`cmd_tail`. It never
//! hands out a reference into the mapping: the other side writes it
//! concurrently, so a `&[u8]` would promise an immutability that does not
//! hold. Copies use raw pointers only.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::memfd::{MFdFlags, memfd_create};
use wasmtap_ring::region::{RegionError, SharedRegion, check_range};

/// A shared mapping of a TCMU region. See the module docs.
#[derive(Debug)]
pub struct MappedRegion {
    map: MmapRaw,
    len: usize,
}

impl MappedRegion {
    /// Map `len` bytes of `file` from offset 0, shared and writable.
    ///
    /// For `/dev/uioN`, `len` must be exactly the size in
    /// `/sys/class/uio/uioN/maps/map0/size`; the kernel refuses anything else.
    pub fn map_file(file: &File, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zero-length region",
            ));
        }
        let map = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Self { map, len })
    }

    /// A zeroed region of `len` bytes backed by a memfd, for the simulator.
    pub fn memfd(name: &str, len: usize) -> io::Result<Self> {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(io::Error::from)?;
        let file = File::from(fd);
        file.set_len(len as u64)?;
        Self::map_file(&file, len)
    }

    /// Start of the byte range `off..off+len`, after checking it lies inside
    /// the mapping. The only way this module computes a pointer.
    fn ptr(&self, off: u64, len: u64) -> Result<*mut u8, RegionError> {
        check_range(off, len, self.len)?;
        // `wrapping_add` needs no unsafe; the range check above guarantees the
        // result is inside the mapping (off + len <= self.len).
        Ok(self.map.as_mut_ptr().wrapping_add(off as usize))
    }

    fn atomic(&self, off: u64) -> Result<&AtomicU32, RegionError> {
        if !off.is_multiple_of(4) {
            return Err(RegionError::Misaligned { off });
        }
        let p = self.ptr(off, 4)?;
        // SAFETY: `p` is 4-byte aligned (checked above; the mapping is
        // page-aligned) and points at 4 bytes inside the mapping, which lives
        // as long as `self`, so the reference cannot outlive it. The word is
        // only ever accessed atomically by both sides (cmd_head / cmd_tail).
        Ok(unsafe { AtomicU32::from_ptr(p.cast::<u32>()) })
    }
}

impl MappedRegion {
    /// Read up to `len` bytes of `file` at `file_off` straight into the
    /// region at `off` (one `pread(2)`; no bounce buffer, no reference into
    /// the mapping). Returns the bytes read (short at end of file).
    pub fn pread_from(&self, file: &File, file_off: u64, off: u64, len: u64) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let dst = self
            .ptr(off, len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let file_off =
            i64::try_from(file_off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `dst..dst+len` lies inside the live, writable mapping
        // (checked by `ptr`); the kernel writes into it through the syscall,
        // so no Rust reference to the shared bytes exists at any point.
        let n = unsafe { nix::libc::pread(file.as_raw_fd(), dst.cast(), len as usize, file_off) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Write `len` bytes from the region at `off` into `file` at `file_off`
    /// (one `pwrite(2)`). Returns the bytes written.
    pub fn pwrite_to(&self, file: &File, file_off: u64, off: u64, len: u64) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let src = self
            .ptr(off, len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let file_off =
            i64::try_from(file_off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `src..src+len` lies inside the live mapping (checked by
        // `ptr`); the kernel only reads it through the syscall.
        let n = unsafe { nix::libc::pwrite(file.as_raw_fd(), src.cast(), len as usize, file_off) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl MappedRegion {
    /// `pread_from`, but only if it can be done without blocking
    /// (`preadv2(RWF_NOWAIT)`: the data is in the page cache). Fails with
    /// `WouldBlock` otherwise, or with the kernel's error where the file
    /// system does not support it; callers then fall back to a blocking read
    /// on an I/O thread.
    pub fn pread_from_nowait(
        &self,
        file: &File,
        file_off: u64,
        off: u64,
        len: u64,
    ) -> io::Result<usize> {
        self.rw_nowait(file, file_off, off, len, false)
    }

    /// `pwrite_to` without blocking (`pwritev2(RWF_NOWAIT)`); see
    /// [`Self::pread_from_nowait`].
    pub fn pwrite_to_nowait(
        &self,
        file: &File,
        file_off: u64,
        off: u64,
        len: u64,
    ) -> io::Result<usize> {
        self.rw_nowait(file, file_off, off, len, true)
    }

    fn rw_nowait(
        &self,
        file: &File,
        file_off: u64,
        off: u64,
        len: u64,
        write: bool,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let p = self
            .ptr(off, len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let file_off =
            i64::try_from(file_off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let iov = nix::libc::iovec {
            iov_base: p.cast(),
            iov_len: len as usize,
        };
        let fd = file.as_raw_fd();
        let n = if write {
            // SAFETY: `iov` describes `p..p+len`, inside the live mapping
            // (checked by `ptr`); the kernel only reads it during the call.
            unsafe { nix::libc::pwritev2(fd, &iov, 1, file_off, nix::libc::RWF_NOWAIT) }
        } else {
            // SAFETY: as above; the kernel writes into the mapped range during
            // the call and no Rust reference to it exists.
            unsafe { nix::libc::preadv2(fd, &iov, 1, file_off, nix::libc::RWF_NOWAIT) }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl MappedRegion {
    /// Append `len` bytes at `off` to `dst`, without first zeroing the
    /// space they land in (what `read_bytes` into a fresh `vec![0; len]`
    /// would cost: a memset as large as the copy).
    pub fn append_to(&self, off: u64, len: u64, dst: &mut Vec<u8>) -> Result<(), RegionError> {
        let src = self.ptr(off, len)?;
        let n = len as usize; // `ptr` checked it lies inside the mapping
        dst.reserve(n);
        let old = dst.len();
        let spare = dst.spare_capacity_mut();
        // SAFETY: `src..src+n` is inside the live mapping (checked by `ptr`);
        // `reserve` made `spare` at least `n` bytes long, and it is `dst`'s
        // own allocation, so it cannot overlap the mapping.
        unsafe { std::ptr::copy_nonoverlapping(src, spare.as_mut_ptr().cast::<u8>(), n) };
        // SAFETY: the `n` bytes after `old` are within capacity and were
        // initialised by the copy above.
        unsafe { dst.set_len(old + n) };
        Ok(())
    }
}

impl SharedRegion for MappedRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn read_bytes(&self, off: u64, dst: &mut [u8]) -> Result<(), RegionError> {
        let src = self.ptr(off, dst.len() as u64)?;
        // SAFETY: `src..src+dst.len()` is inside the live mapping (checked by
        // `ptr`), `dst` is a distinct local buffer so the ranges cannot
        // overlap, and no reference into the mapping is created.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn write_bytes(&self, off: u64, src: &[u8]) -> Result<(), RegionError> {
        let dst = self.ptr(off, src.len() as u64)?;
        // SAFETY: as in `read_bytes`, with the roles of the buffers swapped;
        // the mapping is writable (MAP_SHARED, PROT_WRITE).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    fn fill_bytes(&self, off: u64, len: u64, byte: u8) -> Result<(), RegionError> {
        let dst = self.ptr(off, len)?;
        // SAFETY: `dst..dst+len` is inside the live, writable mapping
        // (checked by `ptr`).
        unsafe { std::ptr::write_bytes(dst, byte, len as usize) };
        Ok(())
    }

    fn load_u32_acquire(&self, off: u64) -> Result<u32, RegionError> {
        Ok(self.atomic(off)?.load(Ordering::Acquire))
    }

    fn store_u32_release(&self, off: u64, val: u32) -> Result<(), RegionError> {
        self.atomic(off)?.store(val, Ordering::Release);
        Ok(())
    }
}

// Workers move regions between threads and share them with the simulator's
// thread; `MmapRaw` is Send + Sync and so is this wrapper.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MappedRegion>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_region_round_trips_and_rejects_out_of_range() {
        let r = MappedRegion::memfd("t", 8192).unwrap();
        r.write_bytes(100, b"hello").unwrap();
        let mut b = [0u8; 5];
        r.read_bytes(100, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(r.read_bytes(8190, &mut b).is_err());
        assert!(r.write_bytes(u64::MAX, &b).is_err());
        assert!(r.fill_bytes(8000, 193, 0).is_err());
        r.store_u32_release(64, 0xdead_beef).unwrap();
        assert_eq!(r.load_u32_acquire(64).unwrap(), 0xdead_beef);
        assert_eq!(
            r.load_u32_acquire(66),
            Err(RegionError::Misaligned { off: 66 })
        );
        assert!(r.load_u32_acquire(8192).is_err());
        // Appending copies after what the vector holds, and refuses ranges
        // outside the mapping without touching the vector.
        let mut v = b"ab".to_vec();
        r.append_to(100, 5, &mut v).unwrap();
        assert_eq!(v, b"abhello");
        assert!(r.append_to(8190, 5, &mut v).is_err());
        assert!(r.append_to(u64::MAX, 2, &mut v).is_err());
        assert_eq!(v, b"abhello");
    }

    #[test]
    fn file_io_moves_bytes_directly_to_and_from_the_region() {
        let r = MappedRegion::memfd("io", 16384).unwrap();
        let f = File::from(memfd_create("file", MFdFlags::MFD_CLOEXEC).unwrap());
        f.set_len(8192).unwrap();
        r.write_bytes(4096, &[7u8; 4096]).unwrap();
        assert_eq!(r.pwrite_to(&f, 1000, 4096, 4096).unwrap(), 4096);
        assert_eq!(r.pread_from(&f, 1000, 8192, 4096).unwrap(), 4096);
        let mut back = [0u8; 4096];
        r.read_bytes(8192, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 7));
        // Short read at end of file; out-of-range region offsets are refused.
        assert_eq!(r.pread_from(&f, 8000, 0, 4096).unwrap(), 192);
        assert!(r.pread_from(&f, 0, 16000, 4096).is_err());
        assert!(r.pwrite_to(&f, 0, u64::MAX, 1).is_err());
    }

    #[test]
    fn nowait_io_moves_cached_data_or_says_it_would_block() {
        let r = MappedRegion::memfd("nw", 16384).unwrap();
        let f = File::from(memfd_create("nwf", MFdFlags::MFD_CLOEXEC).unwrap());
        f.set_len(8192).unwrap();
        r.write_bytes(0, &[3u8; 4096]).unwrap();
        // A memfd is always "cached": either it works, or the kernel says it
        // does not support NOWAIT here; it must never block or corrupt.
        match r.pwrite_to_nowait(&f, 0, 0, 4096) {
            Ok(n) => assert_eq!(n, 4096),
            Err(e) => assert!(
                matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EAGAIN | nix::libc::EOPNOTSUPP)
                ),
                "{e}"
            ),
        }
        r.pwrite_to(&f, 0, 0, 4096).unwrap();
        match r.pread_from_nowait(&f, 0, 8192, 4096) {
            Ok(n) => {
                assert_eq!(n, 4096);
                let mut b = [0u8; 4096];
                r.read_bytes(8192, &mut b).unwrap();
                assert!(b.iter().all(|&x| x == 3));
            }
            Err(e) => assert!(
                matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EAGAIN | nix::libc::EOPNOTSUPP)
                ),
                "{e}"
            ),
        }
        assert!(r.pread_from_nowait(&f, 0, 16000, 4096).is_err());
    }

    #[test]
    fn two_mappings_of_one_file_see_each_others_writes() {
        let fd = memfd_create("t2", MFdFlags::MFD_CLOEXEC).unwrap();
        let f = File::from(fd);
        f.set_len(4096).unwrap();
        let a = MappedRegion::map_file(&f, 4096).unwrap();
        let b = MappedRegion::map_file(&f, 4096).unwrap();
        a.store_u32_release(12, 42).unwrap();
        assert_eq!(b.load_u32_acquire(12).unwrap(), 42);
    }
}

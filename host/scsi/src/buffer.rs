//! The command's data buffer: data-out for writes, data-in for reads.
//!
//! A transport hands the target one [`DataBuffer`] per command. The target
//! never asks for a `&[u8]` into it: the buffer may live in memory another
//! party writes concurrently (the TCMU data area), so access is copy-in /
//! copy-out at an offset, as in rust-vmm's `vm-memory`.
//!
//! Scatter/gather is solved once, in [`SgBuffer`]: a transport describes the
//! buffer as a list of [`Extent`]s in some address space and implements the
//! three-method [`Memory`] trait for that space; `SgBuffer` does the walking.
//!
//! Backends receive sub-range views ([`BufRef`] for data they must write to
//! the medium, [`BufMut`] for data they read from it). A view can describe
//! itself as extents of the transport's address space
//! ([`BufRef::extents`]), so a backend that does file I/O can move bytes
//! directly between the file and the transport's memory with no bounce copy.

/// Why a buffer access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// `off..off+len` is not inside the buffer (or view) of `buf_len` bytes.
    #[error("range {off:#x}+{len:#x} is outside the {buf_len:#x}-byte data buffer")]
    OutOfBounds {
        /// Start of the rejected range.
        off: u64,
        /// Length of the rejected range.
        len: u64,
        /// Length of the buffer.
        buf_len: u64,
    },
    /// The memory behind the buffer refused the access (for example a
    /// transport extent that is no longer mapped).
    #[error("memory at {addr:#x}+{len:#x} is not accessible")]
    Inaccessible {
        /// Address in the transport's address space.
        addr: u64,
        /// Length of the access.
        len: u64,
    },
}

fn check(off: u64, len: u64, buf_len: u64) -> Result<(), BufferError> {
    match off.checked_add(len) {
        Some(end) if end <= buf_len => Ok(()),
        _ => Err(BufferError::OutOfBounds { off, len, buf_len }),
    }
}

/// One contiguous piece of a buffer in a transport's address space
/// (for TCMU: an offset into the shared region and a length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// Address of the piece.
    pub addr: u64,
    /// Length of the piece in bytes.
    pub len: u64,
}

/// A command's data buffer, addressed by byte offset from its start.
pub trait DataBuffer {
    /// Length of the buffer in bytes.
    fn len(&self) -> u64;
    /// Whether the buffer holds no bytes (commands without data).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy `dst.len()` bytes starting at `off` out of the buffer.
    fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError>;
    /// Copy `src` into the buffer starting at `off`.
    fn write_at(&mut self, off: u64, src: &[u8]) -> Result<(), BufferError>;
    /// Set `len` bytes starting at `off` to zero.
    fn zero(&mut self, off: u64, len: u64) -> Result<(), BufferError>;
    /// Describe `off..off+len` as extents of the transport's address space,
    /// calling `visit` for each in order. Returns `false` (and visits
    /// nothing) when the buffer has no such description, as for a heap
    /// buffer; the caller then copies through `read_at`/`write_at`.
    fn extents(&self, off: u64, len: u64, visit: &mut dyn FnMut(Extent)) -> bool {
        let _ = (off, len, visit);
        false
    }
}

impl DataBuffer for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        check(off, dst.len() as u64, DataBuffer::len(self))?;
        let off = off as usize;
        dst.copy_from_slice(&self[off..off + dst.len()]);
        Ok(())
    }
    fn write_at(&mut self, off: u64, src: &[u8]) -> Result<(), BufferError> {
        check(off, src.len() as u64, DataBuffer::len(self))?;
        let off = off as usize;
        self[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn zero(&mut self, off: u64, len: u64) -> Result<(), BufferError> {
        check(off, len, DataBuffer::len(self))?;
        self[off as usize..(off + len) as usize].fill(0);
        Ok(())
    }
}

/// Byte-addressed memory that scatter/gather lists point into.
///
/// Methods take `&self`: the memory is typically shared with another party
/// (the kernel) and implementations copy under their own bounds checks.
pub trait Memory {
    /// Copy `dst.len()` bytes at `addr` out of memory.
    fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), BufferError>;
    /// Copy `src` to `addr`.
    fn write(&self, addr: u64, src: &[u8]) -> Result<(), BufferError>;
    /// Zero `len` bytes at `addr`.
    fn zero(&self, addr: u64, len: u64) -> Result<(), BufferError>;
}

/// A data buffer made of several extents of a [`Memory`]: the one place
/// where scatter/gather is walked.
#[derive(Debug)]
pub struct SgBuffer<'a, M: ?Sized> {
    mem: &'a M,
    extents: &'a [Extent],
    len: u64,
}

impl<'a, M: Memory + ?Sized> SgBuffer<'a, M> {
    /// A buffer over `extents` of `mem`, in order. A total length that
    /// overflows `u64` saturates (the transport validated the list).
    pub fn new(mem: &'a M, extents: &'a [Extent]) -> Self {
        let len = extents.iter().fold(0u64, |a, e| a.saturating_add(e.len));
        Self { mem, extents, len }
    }

    /// Call `f(addr, offset_in_range, len)` for each piece of `off..off+len`.
    fn walk(
        &self,
        off: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, u64) -> Result<(), BufferError>,
    ) -> Result<(), BufferError> {
        check(off, len, self.len)?;
        let mut skip = off;
        let mut done = 0u64;
        for e in self.extents {
            if done == len {
                break;
            }
            if skip >= e.len {
                skip -= e.len;
                continue;
            }
            let n = (e.len - skip).min(len - done);
            f(e.addr + skip, done, n)?;
            done += n;
            skip = 0;
        }
        Ok(())
    }
}

impl<M: Memory + ?Sized> DataBuffer for SgBuffer<'_, M> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        self.walk(off, dst.len() as u64, |addr, at, n| {
            self.mem
                .read(addr, &mut dst[at as usize..(at + n) as usize])
        })
    }
    fn write_at(&mut self, off: u64, src: &[u8]) -> Result<(), BufferError> {
        self.walk(off, src.len() as u64, |addr, at, n| {
            self.mem.write(addr, &src[at as usize..(at + n) as usize])
        })
    }
    fn zero(&mut self, off: u64, len: u64) -> Result<(), BufferError> {
        self.walk(off, len, |addr, _, n| self.mem.zero(addr, n))
    }
    fn extents(&self, off: u64, len: u64, visit: &mut dyn FnMut(Extent)) -> bool {
        self.walk(off, len, |addr, _, n| {
            visit(Extent { addr, len: n });
            Ok(())
        })
        .is_ok()
    }
}

/// A read-only view of `off..off+len` of a data buffer: what a backend
/// writes to the medium.
#[derive(Clone, Copy)]
pub struct BufRef<'a> {
    buf: &'a dyn DataBuffer,
    off: u64,
    len: u64,
}

impl std::fmt::Debug for BufRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRef")
            .field("off", &self.off)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a> BufRef<'a> {
    /// A view of `off..off+len` of `buf`.
    pub fn new(buf: &'a dyn DataBuffer, off: u64, len: u64) -> Result<Self, BufferError> {
        check(off, len, buf.len())?;
        Ok(Self { buf, off, len })
    }
    /// A view of the whole of `buf`.
    pub fn whole(buf: &'a dyn DataBuffer) -> Self {
        Self {
            buf,
            off: 0,
            len: buf.len(),
        }
    }
    /// Length of the view in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The sub-view `off..off+len` of this view.
    pub fn slice(&self, off: u64, len: u64) -> Result<BufRef<'a>, BufferError> {
        check(off, len, self.len)?;
        Ok(Self {
            buf: self.buf,
            off: self.off + off,
            len,
        })
    }
    /// Copy `dst.len()` bytes at `off` (relative to the view) into `dst`.
    pub fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        check(off, dst.len() as u64, self.len)?;
        self.buf.read_at(self.off + off, dst)
    }
    /// The view as extents of the transport's memory, if it has them.
    pub fn extents(&self, visit: &mut dyn FnMut(Extent)) -> bool {
        self.buf.extents(self.off, self.len, visit)
    }
    /// The view's bytes in a new vector (for backends that transform data).
    pub fn to_vec(&self) -> Result<Vec<u8>, BufferError> {
        let mut v = vec![0; usize::try_from(self.len).unwrap_or(usize::MAX)];
        self.read_at(0, &mut v)?;
        Ok(v)
    }
}

/// A writable view of `off..off+len` of a data buffer: where a backend puts
/// what it read from the medium.
pub struct BufMut<'a> {
    buf: &'a mut dyn DataBuffer,
    off: u64,
    len: u64,
}

impl std::fmt::Debug for BufMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufMut")
            .field("off", &self.off)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a> BufMut<'a> {
    /// A view of `off..off+len` of `buf`.
    pub fn new(buf: &'a mut dyn DataBuffer, off: u64, len: u64) -> Result<Self, BufferError> {
        check(off, len, buf.len())?;
        Ok(Self { buf, off, len })
    }
    /// Length of the view in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Reborrow the sub-view `off..off+len` of this view.
    pub fn slice(&mut self, off: u64, len: u64) -> Result<BufMut<'_>, BufferError> {
        check(off, len, self.len)?;
        Ok(BufMut {
            buf: &mut *self.buf,
            off: self.off + off,
            len,
        })
    }
    /// Copy `src` into the view at `off` (relative to the view).
    pub fn write_at(&mut self, off: u64, src: &[u8]) -> Result<(), BufferError> {
        check(off, src.len() as u64, self.len)?;
        self.buf.write_at(self.off + off, src)
    }
    /// Zero `len` bytes at `off` (relative to the view): for holes.
    pub fn zero(&mut self, off: u64, len: u64) -> Result<(), BufferError> {
        check(off, len, self.len)?;
        self.buf.zero(self.off + off, len)
    }
    /// Copy bytes at `off` of the view back out (rarely needed).
    pub fn read_at(&self, off: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        check(off, dst.len() as u64, self.len)?;
        self.buf.read_at(self.off + off, dst)
    }
    /// The view as extents of the transport's memory, if it has them.
    pub fn extents(&self, visit: &mut dyn FnMut(Extent)) -> bool {
        self.buf.extents(self.off, self.len, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A flat memory whose extents the tests choose.
    struct Flat(RefCell<Vec<u8>>);

    impl Memory for Flat {
        fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), BufferError> {
            let m = self.0.borrow();
            let a = addr as usize;
            let src = m.get(a..a + dst.len()).ok_or(BufferError::Inaccessible {
                addr,
                len: dst.len() as u64,
            })?;
            dst.copy_from_slice(src);
            Ok(())
        }
        fn write(&self, addr: u64, src: &[u8]) -> Result<(), BufferError> {
            let mut m = self.0.borrow_mut();
            let a = addr as usize;
            let len = src.len() as u64;
            m.get_mut(a..a + src.len())
                .ok_or(BufferError::Inaccessible { addr, len })?
                .copy_from_slice(src);
            Ok(())
        }
        fn zero(&self, addr: u64, len: u64) -> Result<(), BufferError> {
            let mut m = self.0.borrow_mut();
            let a = addr as usize;
            m.get_mut(a..a + len as usize)
                .ok_or(BufferError::Inaccessible { addr, len })?
                .fill(0);
            Ok(())
        }
    }

    #[test]
    fn sg_buffer_scatters_and_gathers_across_extents() {
        let mem = Flat(RefCell::new(vec![0xEE; 64]));
        let ext = [
            Extent { addr: 40, len: 3 },
            Extent { addr: 4, len: 5 },
            Extent { addr: 20, len: 4 },
        ];
        let mut sg = SgBuffer::new(&mem, &ext);
        assert_eq!(DataBuffer::len(&sg), 12);
        let src: Vec<u8> = (1..=12).collect();
        sg.write_at(0, &src).unwrap();
        assert_eq!(&mem.0.borrow()[40..43], &[1, 2, 3]);
        assert_eq!(&mem.0.borrow()[4..9], &[4, 5, 6, 7, 8]);
        let mut out = [0u8; 6];
        sg.read_at(2, &mut out).unwrap();
        assert_eq!(out, [3, 4, 5, 6, 7, 8]);
        sg.zero(1, 5).unwrap();
        sg.read_at(0, &mut out).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 0, 0]);
        let mut seen = Vec::new();
        assert!(sg.extents(2, 8, &mut |e| seen.push(e)));
        assert_eq!(
            seen,
            [
                Extent { addr: 42, len: 1 },
                Extent { addr: 4, len: 5 },
                Extent { addr: 20, len: 2 }
            ]
        );
    }

    #[test]
    fn accesses_past_the_end_are_errors() {
        let mem = Flat(RefCell::new(vec![0; 16]));
        let ext = [Extent { addr: 0, len: 8 }];
        let mut sg = SgBuffer::new(&mem, &ext);
        let mut b = [0u8; 4];
        assert!(sg.read_at(6, &mut b).is_err());
        assert!(sg.write_at(u64::MAX, &b).is_err());
        let mut v = vec![0u8; 8];
        assert!(v.zero(4, 5).is_err());
        assert!(BufRef::new(&v, 4, 5).is_err());
        let mut m = BufMut::new(&mut v, 2, 4).unwrap();
        assert!(m.write_at(1, &[1, 2, 3, 4]).is_err());
        m.write_at(0, &[9, 9, 9, 9]).unwrap();
        assert_eq!(v, [0, 0, 9, 9, 9, 9, 0, 0]);
    }

    #[test]
    fn views_are_relative_to_their_start() {
        let v: Vec<u8> = (0..16).collect();
        let r = BufRef::new(&v, 4, 8).unwrap().slice(2, 4).unwrap();
        assert_eq!(r.to_vec().unwrap(), [6, 7, 8, 9]);
        assert!(!r.extents(&mut |_| {}), "a heap buffer has no extents");
    }
}

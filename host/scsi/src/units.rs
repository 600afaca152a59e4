//! Units as newtypes, and the one big-endian codec every CDB field and every
//! response field goes through (SCSI is big-endian on the wire, SAM-5 3.6.2).

use std::fmt;

/// A logical block address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lba(pub u64);

/// A number of logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Blocks(pub u64);

/// A number of bytes (buffer lengths and offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Lba {
    /// The address `n` blocks further on, or `None` on overflow.
    pub fn checked_add(self, n: Blocks) -> Option<Lba> {
        self.0.checked_add(n.0).map(Lba)
    }
}

impl Blocks {
    /// Size in bytes of this many blocks of `block_size` bytes.
    pub fn bytes(self, block_size: u32) -> Option<Bytes> {
        self.0.checked_mul(u64::from(block_size)).map(Bytes)
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lba {}", self.0)
    }
}

impl fmt::Display for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} blocks", self.0)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// Big-endian field codec. Every multi-byte field is read and written here.
pub mod be {
    /// Decode `bytes` (at most 8) as one big-endian unsigned number.
    ///
    /// Callers pass a slice of a CDB whose length was checked against the
    /// opcode table, so the slice always exists.
    pub fn get(bytes: &[u8]) -> u64 {
        debug_assert!(bytes.len() <= 8);
        bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }

    /// Decode `len` bytes starting at `at`; bytes past the end read as zero.
    ///
    /// Used for parameter lists, whose length the device does not control.
    pub fn get_at(buf: &[u8], at: usize, len: usize) -> u64 {
        (at..at + len).fold(0u64, |acc, i| {
            (acc << 8) | u64::from(buf.get(i).copied().unwrap_or(0))
        })
    }

    /// Encode `v` big-endian into all of `dst` (at most 8 bytes), keeping
    /// the low `dst.len()` bytes.
    pub fn put(dst: &mut [u8], v: u64) {
        debug_assert!(dst.len() <= 8);
        let n = dst.len();
        for (i, b) in dst.iter_mut().enumerate() {
            *b = (v >> (8 * (n - 1 - i))) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be_round_trips_each_width() {
        let mut b = [0u8; 8];
        for width in 1..=8 {
            let v = 0x0102_0304_0506_0708u64 >> (8 * (8 - width));
            be::put(&mut b[..width], v);
            assert_eq!(be::get(&b[..width]), v, "width {width}");
        }
        be::put(&mut b[..4], 0xAABB_CCDD);
        assert_eq!(&b[..4], &[0xAA, 0xBB, 0xCC, 0xDD]);
    }

    #[test]
    fn get_at_reads_missing_bytes_as_zero() {
        assert_eq!(be::get_at(&[0x12, 0x34], 1, 2), 0x3400);
        assert_eq!(be::get_at(&[], 0, 4), 0);
    }

    #[test]
    fn block_arithmetic_is_checked() {
        assert_eq!(Blocks(3).bytes(512), Some(Bytes(1536)));
        assert_eq!(Blocks(u64::MAX).bytes(512), None);
        assert_eq!(Lba(u64::MAX).checked_add(Blocks(1)), None);
        assert_eq!(Lba(5).checked_add(Blocks(2)), Some(Lba(7)));
    }
}

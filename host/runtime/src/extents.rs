//! Which parts of a host file are allocated: the file system's SEEK_DATA /
//! SEEK_HOLE, as the `block-extent`s of `storage.file.block-status`.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

use crate::bindings::types::{BlockExtent, BlockState};

/// Most extents one `block-status` call returns (the guest asks again from
/// where the answer stopped); bounds the host memory a call can take.
pub(crate) const MAX_EXTENTS: usize = 1024;

/// The extents of `len` bytes at `offset` of `file`: contiguous from
/// `offset`, `mapped` or `hole` (past the end of the file is a hole),
/// adjacent extents of one state merged, at most `max` of them. A file
/// system without SEEK_DATA reports everything before the end as mapped.
pub(crate) fn file_extents(
    file: &File,
    offset: u64,
    len: u64,
    max: usize,
) -> io::Result<Vec<BlockExtent>> {
    let size = file.metadata()?.len();
    let end = offset.saturating_add(len);
    let mut out: Vec<BlockExtent> = Vec::new();
    let push =
        |out: &mut Vec<BlockExtent>, from: u64, to: u64, state: BlockState| match out.last_mut() {
            Some(l) if l.state == state && l.offset + l.length == from => l.length += to - from,
            _ => out.push(BlockExtent {
                offset: from,
                length: to - from,
                state,
            }),
        };
    let seek = |pos: u64, whence: Whence| -> io::Result<Option<u64>> {
        let Ok(p) = i64::try_from(pos) else {
            return Ok(None);
        };
        match lseek(file, p, whence) {
            Ok(at) => Ok(Some(at as u64)),
            // SEEK_DATA at or after the last data.
            Err(Errno::ENXIO) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    };
    let mut pos = offset;
    while pos < end && out.len() < max {
        if pos >= size {
            push(&mut out, pos, end, BlockState::Hole);
            break;
        }
        let data = match seek(pos, Whence::SeekData) {
            Ok(d) => d.unwrap_or(size),
            // No SEEK_DATA here (EINVAL): everything is data.
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => pos,
            Err(e) => return Err(e),
        };
        if data > pos {
            let to = data.min(end);
            push(&mut out, pos, to, BlockState::Hole);
            pos = to;
            continue;
        }
        let hole = match seek(pos, Whence::SeekHole) {
            Ok(h) => h.unwrap_or(size),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => size,
            Err(e) => return Err(e),
        }
        .max(pos + 1);
        let to = hole.min(end).min(size);
        push(&mut out, pos, to, BlockState::Mapped);
        pos = to;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn covers(e: &[BlockExtent], offset: u64, len: u64) {
        let mut at = offset;
        for x in e {
            assert_eq!(x.offset, at, "contiguous: {e:?}");
            assert!(x.length > 0);
            at += x.length;
        }
        assert_eq!(at, offset + len, "covers the range: {e:?}");
    }

    #[test]
    fn data_holes_and_the_end_of_the_file() {
        let dir = std::env::temp_dir().join(format!("wasmtap-extents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sparse");
        let f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        const M: u64 = 1 << 20;
        f.set_len(4 * M).unwrap();
        f.write_all_at(&[7u8; 65536], M).unwrap();
        let e = file_extents(&f, 0, 6 * M, MAX_EXTENTS).unwrap();
        covers(&e, 0, 6 * M);
        // Whatever the file system reports as holes, the written bytes are
        // mapped and everything past the end is a hole.
        let state_at = |off: u64| {
            e.iter()
                .find(|x| x.offset <= off && off < x.offset + x.length)
                .unwrap()
                .state
        };
        assert_eq!(state_at(M), BlockState::Mapped);
        assert_eq!(state_at(M + 65535), BlockState::Mapped);
        assert_eq!(state_at(4 * M), BlockState::Hole);
        assert_eq!(state_at(6 * M - 1), BlockState::Hole);
        let holes_supported = state_at(0) == BlockState::Hole;
        if holes_supported {
            assert_eq!(state_at(3 * M), BlockState::Hole);
        }
        // A bounded answer stops early and the rest can be asked for.
        let first = file_extents(&f, 0, 6 * M, 1).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].offset, first[0].length, first[0].state),
            (e[0].offset, e[0].length, e[0].state)
        );
        // Inside one extent.
        let mid = file_extents(&f, M + 4096, 4096, MAX_EXTENTS).unwrap();
        assert_eq!(mid.len(), 1);
        assert_eq!(
            (mid[0].offset, mid[0].length, mid[0].state),
            (M + 4096, 4096, BlockState::Mapped)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The in-process host (`testing` feature) holds backstores to the
//! contract the daemon holds them to: asynchronous completion, data calls
//! checked against the request, stale read buffers, parents, crashes.

use std::collections::VecDeque;

use wasmtap_guest_sdk::testing::{Host, Req, UNFILLED};
use wasmtap_guest_sdk::{
    Backstore, DiskInfo, ErrorCode, OpenFlags, Request, Result, SectorSize, disk_info, storage,
};

/// Completes writes only when a flush arrives (a write-back cache), and
/// reads from its parent where it holds nothing.
struct Lazy {
    held: VecDeque<Request>,
    data: Vec<u8>,
}

impl Backstore for Lazy {
    fn open(_: &str, _: OpenFlags) -> Result<Self> {
        Ok(Self {
            held: VecDeque::new(),
            data: vec![0; 64 * 1024],
        })
    }

    fn info(&self) -> DiskInfo {
        disk_info(self.data.len() as u64, SectorSize::B512)
    }

    fn queue_write(&mut self, req: Request) {
        self.held.push_back(req);
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        // Only the first half is ours; the rest comes from the parent.
        let half = req.length() / 2;
        let start = req.offset() as usize;
        req.write_data(0, &self.data[start..start + half as usize])?;
        req.forward_to_parent(half, req.length() - half)
    }

    fn queue_flush(&mut self, req: Request) {
        while let Some(w) = self.held.pop_front() {
            let status = w.data(0, w.length()).map(|d| {
                let at = w.offset() as usize;
                self.data[at..at + d.len()].copy_from_slice(&d);
            });
            w.complete(status);
        }
        req.complete(Ok(()));
    }
}

#[test]
fn held_requests_stay_pending_until_the_backstore_completes_them() {
    let host = Host::new();
    let mut disk = host.open::<Lazy>("").unwrap();
    let w = disk.submit(Req::write(0, vec![7; 1024]));
    assert_eq!(w.status(), None);
    assert!(!w.is_done());
    disk.flush().unwrap();
    assert_eq!(w.status(), Some(Ok(())));
    assert_eq!(disk.stats().writes, 1);
}

#[test]
fn forward_to_parent_reads_the_parent_or_is_unsupported() {
    let host = Host::new();
    let mut disk = host.open::<Lazy>("").unwrap();
    assert_eq!(disk.read(0, 1024), Err(ErrorCode::Unsupported));
    host.set_parent(vec![5; 4096]);
    let back = disk.read(0, 1024).unwrap();
    assert_eq!(&back[..512], &[0; 512]);
    assert_eq!(&back[512..], &[5; 512]);
    // Past the parent's end: zeros.
    assert_eq!(disk.read(8192, 1024).unwrap(), vec![0; 1024]);
}

#[test]
#[should_panic(expected = "still pending")]
fn the_synchronous_helpers_say_when_a_request_was_kept() {
    let host = Host::new();
    let mut disk = host.open::<Lazy>("").unwrap();
    let _ = disk.write(0, &[1; 512]);
}

/// Breaks the contract in the ways the host must catch.
struct Sloppy;

impl Backstore for Sloppy {
    fn open(_: &str, _: OpenFlags) -> Result<Self> {
        Ok(Self)
    }

    fn info(&self) -> DiskInfo {
        disk_info(1 << 20, SectorSize::B4096)
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        // Fills only the first half; asks for write data of a read.
        req.write_data(0, &vec![1; req.length() as usize / 2])?;
        match req.read_data(0, 512) {
            Err(ErrorCode::Unsupported) => Ok(()),
            other => panic!("read-data of a read answered {other:?}"),
        }
    }

    fn write(&mut self, req: &Request) -> Result<()> {
        assert_eq!(req.write_data(0, &[0; 512]), Err(ErrorCode::Unsupported));
        assert_eq!(
            req.read_data(req.length(), 1).unwrap_err(),
            ErrorCode::OutOfRange
        );
        Ok(())
    }
}

#[test]
fn data_calls_are_checked_and_read_buffers_start_stale() {
    let host = Host::new();
    let mut disk = host.open::<Sloppy>("").unwrap();
    let back = disk.read(0, 8192).unwrap();
    assert_eq!(&back[..4096], &[1; 4096]);
    assert!(back[4096..].iter().all(|&b| b == UNFILLED));
    disk.write(0, &[2; 4096]).unwrap();
    // Not sector aligned for a 4096-byte disk: refused by the host.
    let t = disk.submit(Req::read(512, 4096));
    assert_eq!(t.status(), Some(Err(ErrorCode::Unsupported)));
    assert_eq!(disk.flush(), Ok(()));
    assert_eq!(
        disk.submit(Req::read(0, 0)).status(),
        Some(Err(ErrorCode::Unsupported))
    );
}

/// `info()` that breaks the contract.
struct Misshapen;

impl Backstore for Misshapen {
    fn open(_: &str, _: OpenFlags) -> Result<Self> {
        Ok(Self)
    }

    fn info(&self) -> DiskInfo {
        disk_info(1000, SectorSize::B512)
    }
}

#[test]
fn an_info_that_breaks_the_contract_fails_open_with_a_log_line() {
    let host = Host::new();
    assert_eq!(host.open::<Misshapen>("").unwrap_err(), ErrorCode::Internal);
    let logs = host.logs();
    assert!(
        logs.iter().any(|(_, l)| l.contains("size 1000")),
        "{logs:?}"
    );
}

#[test]
fn storage_outside_a_disk_is_a_per_thread_memory_directory() {
    let f = storage::open("scratch.bin", true, true).unwrap();
    f.write_at(10, b"abc").unwrap();
    assert_eq!(f.size().unwrap(), 13);
    assert_eq!(f.read_at(8, 100).unwrap(), b"\0\0abc");
    assert_eq!(storage::remove("scratch.bin"), Ok(()));
    assert_eq!(storage::remove("scratch.bin"), Err(ErrorCode::NotFound));

    // A host's own directory is separate, and reachable with `enter`.
    let host = Host::new();
    host.enter(|| storage::open("mine", true, true).unwrap());
    assert_eq!(host.files(), vec!["mine".to_owned()]);
    assert_eq!(
        storage::open("mine", false, false).unwrap_err(),
        ErrorCode::NotFound
    );
}

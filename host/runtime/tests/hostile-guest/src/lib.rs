//! A backstore that misbehaves on purpose, chosen by its configuration
//! string `mode=<m>`; every mode but the hostile read behaves as a 1 MiB RAM
//! disk, so the tests can tell "contained" from "broken".
//!
//! Modes: `ram` (well-behaved), `loop` (a read spins forever), `oom` (a read
//! allocates without bound), `trap` (a read panics), `never` (reads are
//! never completed), `double` (a read is completed twice), `forge` (a read
//! completes a handle that does not exist), `escape` (open tries `../` and
//! absolute paths in storage, then serves as `ram`), `drop` (a read is
//! dropped without completion), `file` (a well-behaved zero-copy raw file,
//! `disk.img` in the device directory), `batch-file` (`file` with a batch's
//! transfers in one `submit-batch` call; a request at byte 3584 gets a
//! transfer past its end, so one result in the batch is an error).

#![allow(unsafe_code)] // forging handles is the point

use std::cell::RefCell;

wit_bindgen::generate!({
    world: "backstore",
    path: "../../../../wit",
});

use exports::wasmtap::backstore::driver::{Disk, Guest, GuestDisk, Parent};
use wasmtap::backstore::requests::{Kind, Request};
use wasmtap::backstore::storage;
use wasmtap::backstore::types::{DiskInfo, DiskStats, ErrorCode, OpenFlags};

const SIZE: usize = 1 << 20;

struct Hostile {
    mode: String,
    data: RefCell<Vec<u8>>,
    held: RefCell<Vec<Request>>,
    escape: String,
    file: Option<storage::File>,
}

struct Component;

impl Guest for Component {
    type Disk = Hostile;
}

fn serve(d: &Hostile, req: Request) {
    if let Some(f) = &d.file {
        // Zero-copy: the host moves the bytes between the file and the
        // command's buffer.
        let (off, len) = (req.offset(), req.length());
        let status = match req.kind() {
            Kind::Read => req.submit_read(f, off, 0, len),
            Kind::Write => req.submit_write(f, off, 0, len),
            Kind::Flush => f.sync(),
            Kind::Discard | Kind::WriteZeroes => f.punch_hole(off, len),
        };
        Request::complete(req, status);
        return;
    }
    let off = req.offset() as usize;
    let len = req.length() as usize;
    let status = match req.kind() {
        Kind::Read => {
            let data = d.data.borrow();
            req.write_data(0, &data[off..off + len])
        }
        Kind::Write => match req.read_data(0, len as u32) {
            Ok(bytes) => {
                d.data.borrow_mut()[off..off + len].copy_from_slice(&bytes);
                Ok(())
            }
            Err(e) => Err(e),
        },
        Kind::Flush => Ok(()),
        Kind::Discard | Kind::WriteZeroes => {
            d.data.borrow_mut()[off..off + len].fill(0);
            Ok(())
        }
    };
    Request::complete(req, status);
}

impl GuestDisk for Hostile {
    fn open(config: String, _flags: OpenFlags) -> Result<Disk, ErrorCode> {
        let mode = config
            .strip_prefix("mode=")
            .ok_or(ErrorCode::InvalidConfig)?
            .to_string();
        let mut escape = String::new();
        if mode == "escape" {
            for p in ["../escape.img", "/etc/passwd", "a/../../escape.img"] {
                let r = storage::open(p, true, true).map(|_| ());
                escape.push_str(&format!("{p}={r:?};"));
            }
        }
        if mode == "oom-open" {
            let mut v: Vec<Vec<u8>> = Vec::new();
            loop {
                v.push(vec![1u8; 1 << 20]);
            }
        }
        let file = if mode == "file" || mode == "batch-file" {
            let f = storage::open("disk.img", true, true)?;
            f.set_size(SIZE as u64)?;
            Some(f)
        } else {
            None
        };
        Ok(Disk::new(Hostile {
            file,
            mode,
            data: RefCell::new(vec![0; SIZE]),
            held: RefCell::new(Vec::new()),
            escape,
        }))
    }

    fn info(&self) -> DiskInfo {
        DiskInfo {
            size: SIZE as u64,
            sector_size: 512,
            max_transfer: 0,
            optimal_transfer: 0,
            discard: true,
            discard_granularity: 512,
            write_cache: false,
            read_only: false,
        }
    }

    fn get_parent_id(&self) -> Result<Option<String>, ErrorCode> {
        Ok(None)
    }

    fn validate_parent(&self, _parent: Parent) -> Result<(), ErrorCode> {
        Err(ErrorCode::Unsupported)
    }

    fn queue_read(&self, req: Request) {
        match self.mode.as_str() {
            "loop" => loop {
                std::hint::black_box(&req);
            },
            "oom" => {
                let mut v: Vec<Vec<u8>> = Vec::new();
                loop {
                    v.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&v);
                }
            }
            "trap" => panic!("hostile guest: trap on read"),
            "never" => self.held.borrow_mut().push(req),
            "double" => {
                let h = req.handle();
                Request::complete(req, Ok(()));
                // SAFETY: not safe at all: the handle was consumed above.
                Request::complete(unsafe { Request::from_handle(h) }, Ok(()));
            }
            "forge" => {
                // SAFETY: not safe at all: no such handle exists.
                Request::complete(unsafe { Request::from_handle(req.handle() + 1000) }, Ok(()));
                serve(self, req);
            }
            "drop" => drop(req),
            _ => serve(self, req),
        }
    }

    fn queue_write(&self, req: Request) {
        serve(self, req);
    }

    fn queue_batch(&self, reqs: Vec<Request>) {
        if self.mode == "batch-file"
            && let Some(f) = &self.file
        {
            use wasmtap::backstore::requests::{Transfer, submit_batch};
            let transfers: Vec<Transfer<'_>> = reqs
                .iter()
                .map(|r| Transfer {
                    req: r,
                    file: f,
                    file_offset: r.offset(),
                    at: if r.offset() == 3584 { r.length() } else { 0 },
                    len: r.length(),
                    into_request: r.kind() == Kind::Read,
                })
                .collect();
            let results = submit_batch(&transfers);
            drop(transfers);
            for (r, status) in reqs.into_iter().zip(results) {
                Request::complete(r, status);
            }
            return;
        }
        for r in reqs {
            match r.kind() {
                Kind::Read => self.queue_read(r),
                _ => serve(self, r),
            }
        }
    }

    fn flush(&self, req: Request) {
        serve(self, req);
    }

    fn discard(&self, req: Request) {
        serve(self, req);
    }

    fn debug(&self) -> String {
        format!("mode={} escape={}", self.mode, self.escape)
    }

    fn stats(&self) -> DiskStats {
        DiskStats {
            reads: 0,
            writes: 0,
            bytes_read: 0,
            bytes_written: 0,
            flushes: 0,
            discards: 0,
            errors: 0,
        }
    }

    fn close(&self) -> Result<(), ErrorCode> {
        Ok(())
    }
}

// The optional block status, answered "unsupported": the host then reports
// the disk as mapped.
impl exports::wasmtap::backstore::block_status::Guest for Component {
    fn query(
        _disk: exports::wasmtap::backstore::driver::DiskBorrow<'_>,
        _offset: u64,
        _len: u64,
    ) -> Result<Vec<wasmtap::backstore::types::BlockExtent>, ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
}

export!(Component);

//! Hostile test guest: tries to take more than its share of a resource the
//! host shares between tenants. The `attack` key of its configuration picks
//! which; `size=` (default 1M) is the disk it reports. Every attack keeps
//! the disk otherwise working (reads answer zeros, writes are accepted), so
//! what a test sees is only the attack and how the host contains it;
//! `debug` reports how far the attack got and the error that stopped it.
//!
//! | `attack=` | when | what |
//! |---|---|---|
//! | `files` | `open` | opens `f0`, `f1`, ... (created) and keeps them all open until `open` fails |
//! | `read-at` | each read | asks `read-at` for 4 GiB - 1 of a sparse file it sized to 4 GiB in `open` (inside `queue-batch`, whose host-work budget grows with the batch) |
//! | `submits` | each read | submits the request's whole range from a file `count=` times (default 4000) |
//! | `disk` | `open` | writes 1 MiB chunks to `fill` until `write-at` fails (at most `max=`, default 1G) |
//! | `many-files` | `open` | creates empty files `e0`, `e1`, ... until `open` fails (at most 100000) |
//! | `log` | each read | logs 1000 lines with embedded newlines and escapes |
//! | `slow-open` | `open` | spins `spin=` iterations (default 30,000,000,000: past any open deadline) |
//! | `debug` | `debug` | spins `spin=` iterations (default 300,000,000: a fraction of a second) and returns 32 MiB of text |

use wasmtap_guest_sdk::storage::{self, File};
use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, ErrorCode, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// The attack this instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    Files,
    ReadAt,
    Submits,
    Disk,
    ManyFiles,
    Log,
    Debug,
    SlowOpen,
}

/// A disk that attacks the host.
#[derive(Debug)]
pub struct Hog {
    size: u64,
    attack: Attack,
    count: u64,
    /// Files kept open (the `files` attack) or used by the attack.
    files: Vec<File>,
    /// How far the attack got: units done and the error that stopped it.
    done: u64,
    stopped_by: Option<ErrorCode>,
    /// Submits refused so far (`submits`).
    refused: u64,
    /// `debug` calls so far, and how long each spins (`debug`).
    debug_calls: core::cell::Cell<u64>,
    debug_spin: u64,
}

impl Hog {
    fn stop(&mut self, e: ErrorCode) {
        self.stopped_by.get_or_insert(e);
    }

    fn open_files(&mut self) {
        for i in 0.. {
            match storage::open(&format!("f{i}"), true, true) {
                Ok(f) => {
                    self.files.push(f);
                    self.done += 1;
                }
                Err(e) => return self.stop(e),
            }
        }
    }

    fn fill_disk(&mut self, max: u64) {
        let f = match storage::open("fill", true, true) {
            Ok(f) => f,
            Err(e) => return self.stop(e),
        };
        let chunk = vec![0x5a_u8; 1 << 20];
        while self.done < max {
            if let Err(e) = f.write_at(self.done, &chunk) {
                return self.stop(e);
            }
            self.done += chunk.len() as u64;
        }
        self.files.push(f);
    }

    fn many_files(&mut self) {
        for i in 0..100_000 {
            match storage::open(&format!("e{i}"), true, true) {
                // Dropped at once: files, not descriptors.
                Ok(_) => self.done += 1,
                Err(e) => return self.stop(e),
            }
        }
    }

    fn huge_read(&mut self) {
        let Some(f) = self.files.first() else { return };
        match f.read_at(0, u32::MAX) {
            Ok(v) => self.done += v.len() as u64,
            Err(e) => self.stop(e),
        }
    }

    fn flood_submits(&mut self, req: &Request) {
        let Some(f) = self.files.first() else { return };
        for _ in 0..self.count {
            match req.submit_read(f, 0, 0, req.length()) {
                Ok(()) => self.done += 1,
                Err(_) => self.refused += 1,
            }
        }
    }
}

impl Backstore for Hog {
    fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
        let c = Config::parse(config).map_err(|e| e.report())?;
        let size = c.size("size").map_err(|e| e.report())?.unwrap_or(1 << 20);
        let attack = match c.str("attack").map_err(|e| e.report())? {
            Some("files") => Attack::Files,
            Some("read-at") => Attack::ReadAt,
            Some("submits") => Attack::Submits,
            Some("disk") => Attack::Disk,
            Some("many-files") => Attack::ManyFiles,
            Some("log") => Attack::Log,
            Some("debug") => Attack::Debug,
            Some("slow-open") => Attack::SlowOpen,
            _ => return Err(ErrorCode::InvalidConfig),
        };
        let count = c.u64("count").map_err(|e| e.report())?.unwrap_or(4000);
        let max = c.size("max").map_err(|e| e.report())?.unwrap_or(1 << 30);
        let debug_spin = c
            .u64("spin")
            .map_err(|e| e.report())?
            .unwrap_or(300_000_000);
        let mut hog = Self {
            size: SectorSize::B512.align_down(size),
            attack,
            count,
            files: Vec::new(),
            done: 0,
            stopped_by: None,
            refused: 0,
            debug_calls: core::cell::Cell::new(0),
            debug_spin,
        };
        match attack {
            Attack::Files => hog.open_files(),
            Attack::Disk => hog.fill_disk(max),
            Attack::ManyFiles => hog.many_files(),
            Attack::ReadAt => {
                let f = storage::open("sparse", true, true)?;
                f.set_size(4 << 30)?;
                hog.files.push(f);
            }
            Attack::Submits => {
                let f = storage::open("data", true, true)?;
                f.set_size(hog.size)?;
                hog.files.push(f);
            }
            Attack::SlowOpen => {
                let spin = c
                    .u64("spin")
                    .map_err(|e| e.report())?
                    .unwrap_or(30_000_000_000);
                for i in 0..spin {
                    core::hint::black_box(i);
                }
            }
            Attack::Log | Attack::Debug => {}
        }
        Ok(hog)
    }

    fn info(&self) -> DiskInfo {
        disk_info(self.size, SectorSize::B512)
    }

    fn write(&mut self, _req: &Request) -> Result<()> {
        Ok(())
    }

    fn queue_read(&mut self, req: Request) {
        match self.attack {
            Attack::ReadAt => self.huge_read(),
            Attack::Submits => self.flood_submits(&req),
            Attack::Log => {
                for i in 0..1000 {
                    wasmtap_guest_sdk::error!(
                        "line {i}\nadmin token: forged\r\x1b[2Jstill line {i}"
                    );
                }
            }
            _ => {}
        }
        let r = if self.attack == Attack::Submits {
            // The submitted reads fill the request; no zeros over them.
            Ok(())
        } else {
            req.zero_data(0, req.length())
        };
        req.complete(r);
    }

    fn debug(&self) -> String {
        self.debug_calls.set(self.debug_calls.get() + 1);
        if self.attack == Attack::Debug {
            // No clocks in the sandbox: spin a number of iterations.
            for i in 0..self.debug_spin {
                core::hint::black_box(i);
            }
            let mut text = format!("debug calls={} ", self.debug_calls.get());
            text.push_str(&"x".repeat(32 << 20));
            return text;
        }
        format!(
            "attack={:?} done={} refused={} stopped_by={:?}",
            self.attack, self.done, self.refused, self.stopped_by
        )
    }
}

wasmtap_guest_sdk::export_backstore!(Hog);

//! The example and hostile guests as compiled WebAssembly components, for
//! tests and benchmarks.
//!
//! The build script compiles every crate in `example-guests/` (except this
//! one) with `cargo build --release --target wasm32-wasip2` into
//! `<target dir>/wasm-guests` (override: `WASMTAP_GUESTS_TARGET_DIR`) and
//! records where each `.wasm` file is. Nothing is checked in; a clean clone
//! builds them on first use, and later builds (debug or release host) reuse
//! them until a guest's sources, the SDK or `wit/` change.
//!
//! ```no_run
//! let bytes = std::fs::read(wasmtap_example_guests::RAM).unwrap();
//! assert!(bytes.starts_with(b"\0asm"));
//! ```
//!
//! Guests (see each crate's docs for its configuration string and, for the
//! hostile ones, what the host sees):
//!
//! | constant | guest | behaviour |
//! |---|---|---|
//! | [`NULL`] | `null` | reads zeros (`zero-data`), drops writes; `size=` (1G) |
//! | [`RAM`] | `ram` | sparse RAM disk; `size=` (64M), `sector=512\|4096`, discard |
//! | [`RAW_FILE`] | `raw-file` | image file via zero-copy `submit-*`; `file=` (disk.img), `size=`, `sector=` |
//! | [`HOSTILE_LOOP`] | `hostile-loop` | spins forever in `queue-read` |
//! | [`HOSTILE_MEMORY`] | `hostile-memory` | allocates 16 MiB blocks without bound on a read |
//! | [`HOSTILE_TRAP`] | `hostile-trap` | panics (traps) on a read |
//! | [`HOSTILE_STALL`] | `hostile-stall` | never completes reads (keeps the handles) |
//! | [`HOSTILE_DOUBLE_COMPLETE`] | `hostile-double-complete` | completes a read, then its stale handle again |
//! | [`HOSTILE_FORGED_COMPLETE`] | `hostile-forged-complete` | completes a forged handle (`forge=unknown\|file`) |
//! | [`HOSTILE_ESCAPE`] | `hostile-escape` | opens `../x`, `/etc/passwd`, ... on every read; fails the read with the error |
//! | [`HOSTILE_SOCKETS`] | `hostile-sockets` | imports `wasi:sockets/*` (must be refused at load) |
//! | [`HOSTILE_HOG`] | `hostile-hog` | exhausts a shared resource, chosen by `attack=` (files, read-at, submits, disk, many-files, log); default size 1M |
//!
//! All hostile guests open like `null` (`size=`, default 1G) and complete
//! writes normally; only reads misbehave.
//!
//! If you delete `<target dir>/wasm-guests` by hand, also run
//! `cargo clean -p wasmtap-example-guests` (cargo cannot watch the outputs of
//! the nested build without rebuilding every time).

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The component of the guest called `name` (`"ram"`, `"hostile-loop"`, ...).
pub fn path(name: &str) -> Option<&'static Path> {
    ALL.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| Path::new(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_has_a_built_component() {
        for (name, file) in ALL {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            assert!(bytes.starts_with(b"\0asm"), "{name} is not wasm");
        }
    }

    #[test]
    fn path_finds_guests_by_name() {
        assert_eq!(path("raw-file"), Some(Path::new(RAW_FILE)));
        assert_eq!(path("nonexistent"), None);
    }
}

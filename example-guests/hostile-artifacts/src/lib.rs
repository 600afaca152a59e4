//! The hostile guests (`example-guests/hostile-*`) as compiled WebAssembly
//! components, for the host's containment tests. Test fixtures only: name
//! this crate in `[dev-dependencies]`, never in `[dependencies]` or
//! `[build-dependencies]` of a product crate, so building the daemon does not
//! compile them.
//!
//! The build script is the one of `wasmtap-example-guests`
//! (`example-guests/artifacts/guest_build.rs`) with another list: the guests
//! are compiled for `wasm32-wasip2` once into `<target dir>/wasm-guests`
//! (override: `WASMTAP_GUESTS_TARGET_DIR`), beside the example guests.
//!
//! ```no_run
//! let bytes = std::fs::read(wasmtap_hostile_guests::HOSTILE_TRAP).unwrap();
//! assert!(bytes.starts_with(b"\0asm"));
//! ```
//!
//! Guests (see each crate's docs for what the host sees):
//!
//! | constant | guest | behaviour |
//! |---|---|---|
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

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

// `ALL`, a constant per guest and `path(name)`, written by `guest_build.rs`.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hostile_guest_has_a_built_component() {
        assert_eq!(ALL.len(), 9);
        for (name, file) in ALL {
            assert!(name.starts_with("hostile-"), "{name}");
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            assert!(bytes.starts_with(b"\0asm"), "{name} is not wasm");
        }
    }

    #[test]
    fn path_finds_guests_by_name() {
        assert_eq!(path("hostile-hog"), Some(std::path::Path::new(HOSTILE_HOG)));
        assert_eq!(path("ram"), None);
    }
}

//! The example guests the daemon embeds as built-in modules (`null`, `ram`,
//! `raw-file`), as compiled WebAssembly components, for the daemon's build
//! script, tests and benchmarks.
//!
//! The build script compiles them with `cargo build --release --target
//! wasm32-wasip2` into `<target dir>/wasm-guests` (override:
//! `WASMTAP_GUESTS_TARGET_DIR`) and records where each `.wasm` file is.
//! Nothing is checked in; a clean clone builds them on first use, and later
//! builds (debug or release host) reuse them until a guest's sources, the
//! SDK or `wit/` change.
//!
//! The hostile guests (`example-guests/hostile-*`) are not here: they are
//! test fixtures, built by `wasmtap-hostile-guests` (same pipeline, same
//! directory), which only dev-dependencies name, so building the daemon
//! never compiles them.
//!
//! ```no_run
//! let bytes = std::fs::read(wasmtap_example_guests::RAM).unwrap();
//! assert!(bytes.starts_with(b"\0asm"));
//! ```
//!
//! Guests (see each crate's docs for its configuration string):
//!
//! | constant | guest | behaviour |
//! |---|---|---|
//! | [`NULL`] | `null` | reads zeros (`zero-data`), drops writes; `size=` (1G) |
//! | [`RAM`] | `ram` | sparse RAM disk; `size=` (64M), `sector=512\|4096`, discard |
//! | [`RAW_FILE`] | `raw-file` | image file via zero-copy `submit-*`; `file=` (disk.img), `size=`, `sector=` |
//!
//! If you delete `<target dir>/wasm-guests` by hand, also run
//! `cargo clean -p wasmtap-example-guests -p wasmtap-hostile-guests` (cargo
//! cannot watch the outputs of the nested build without rebuilding every
//! time).

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

// `ALL`, a constant per guest and `path(name)`, written by `guest_build.rs`.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_has_a_built_component() {
        let names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["null", "ram", "raw-file"],
            "only the built-in guests"
        );
        for (name, file) in ALL {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            assert!(bytes.starts_with(b"\0asm"), "{name} is not wasm");
        }
    }

    #[test]
    fn path_finds_guests_by_name() {
        assert_eq!(path("raw-file"), Some(std::path::Path::new(RAW_FILE)));
        assert_eq!(path("nonexistent"), None);
        assert_eq!(
            path("hostile-loop"),
            None,
            "built by wasmtap-hostile-guests"
        );
    }
}

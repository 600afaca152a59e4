//! Embed the example guests (built by `wasmtap-example-guests`) in the
//! daemon, so `wasmtap serve` offers `null`, `ram` and `raw-file` wherever
//! the binary is copied.

use std::io::Write;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut f =
        std::fs::File::create(out.join("builtin_guests.rs")).expect("create builtin_guests.rs");
    writeln!(
        f,
        "/// Built-in backstore modules: (name, component bytes)."
    )
    .unwrap();
    writeln!(f, "pub const BUILTIN: &[(&str, &[u8])] = &[").unwrap();
    for (name, path) in [
        ("null", wasmtap_example_guests::NULL),
        ("ram", wasmtap_example_guests::RAM),
        ("raw-file", wasmtap_example_guests::RAW_FILE),
    ] {
        println!("cargo:rerun-if-changed={path}");
        writeln!(f, "    ({name:?}, include_bytes!({path:?})),").unwrap();
    }
    writeln!(f, "];").unwrap();
}

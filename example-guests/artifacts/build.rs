//! Compile the guests the daemon embeds (`null`, `ram`, `raw-file`) to
//! `wasm32-wasip2` components, once, and emit their paths as constants.
//! The hostile guests are built by `wasmtap-hostile-guests`, which only
//! tests depend on; `guest_build.rs` (shared by both) says how.

mod guest_build;

fn main() {
    guest_build::build(&[("NULL", "null"), ("RAM", "ram"), ("RAW_FILE", "raw-file")]);
}

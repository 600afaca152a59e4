//! Compile the hostile guests to `wasm32-wasip2` components, once, and emit
//! their paths as constants. Same pipeline and output directory as
//! `wasmtap-example-guests` (`../artifacts/guest_build.rs`), other guests.

#[path = "../artifacts/guest_build.rs"]
mod guest_build;

fn main() {
    guest_build::build(&[
        ("HOSTILE_LOOP", "hostile-loop"),
        ("HOSTILE_MEMORY", "hostile-memory"),
        ("HOSTILE_TRAP", "hostile-trap"),
        ("HOSTILE_STALL", "hostile-stall"),
        ("HOSTILE_DOUBLE_COMPLETE", "hostile-double-complete"),
        ("HOSTILE_FORGED_COMPLETE", "hostile-forged-complete"),
        ("HOSTILE_ESCAPE", "hostile-escape"),
        ("HOSTILE_SOCKETS", "hostile-sockets"),
        ("HOSTILE_HOG", "hostile-hog"),
    ]);
}

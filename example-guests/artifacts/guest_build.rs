//! Compile a list of guests to `wasm32-wasip2` components, once, and emit
//! their paths as constants. Shared (through `#[path]`) by the build scripts
//! of `wasmtap-example-guests` (the guests the daemon embeds) and
//! `wasmtap-hostile-guests` (the hostile guests, for tests only).
//!
//! The guests are built by a nested `cargo build --release --target
//! wasm32-wasip2 -p <guest>...` of this workspace into one fixed directory,
//! `<target dir>/wasm-guests` (or `$WASMTAP_GUESTS_TARGET_DIR`), so debug and
//! release builds of the host share one set of guests. The nested build must
//! not use the outer build's own target directory: the outer cargo holds its
//! lock while this script runs, and the nested one would wait for it forever.
//! It builds only the guest packages it is given (never an artifacts crate),
//! so it cannot recurse.
//!
//! Both build scripts share `wasm-guests`, so the guests' common
//! dependencies (the SDK, wit-bindgen) are compiled once. Each script builds
//! only its own guests, so neither rebuilds the other's; if cargo runs both
//! at once, the nested cargo's lock on `wasm-guests` makes the second wait
//! for the first instead of racing it.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(env::var_os(name).unwrap_or_else(|| panic!("cargo did not set {name}")))
}

/// The outer build's target (or build) directory: the nearest ancestor of
/// OUT_DIR that cargo tagged with CACHEDIR.TAG, skipping a per-triple
/// subdirectory (`<target dir>/<triple>/`, which is tagged too).
fn outer_target_dir(out_dir: &Path) -> PathBuf {
    let host_triple = env::var("TARGET").unwrap_or_default();
    for dir in out_dir.ancestors() {
        if !dir.join("CACHEDIR.TAG").is_file() {
            continue;
        }
        let is_triple_dir = dir.file_name().is_some_and(|n| n == host_triple.as_str());
        match dir.parent() {
            Some(parent) if is_triple_dir && parent.join("CACHEDIR.TAG").is_file() => {
                return parent.to_path_buf();
            }
            _ => return dir.to_path_buf(),
        }
    }
    // Unknown layout: fall back to a directory of our own (built per profile).
    out_dir.to_path_buf()
}

/// Build `guests`, given as (constant name, guest name): the guest lives in
/// `example-guests/<name>` as package `wasmtap-guest-<name>`. Writes
/// `$OUT_DIR/guests.rs` with one `pub const` per guest and `ALL`.
pub fn build(guests: &[(&str, &str)]) {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let workspace = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("the artifacts crates lie two levels below the workspace root")
        .to_path_buf();
    let out_dir = env_path("OUT_DIR");

    // This file is shared by two build scripts: what it generates changes
    // with it.
    println!(
        "cargo:rerun-if-changed={}",
        workspace
            .join("example-guests/artifacts/guest_build.rs")
            .display()
    );
    for path in ["wit", "guest-sdk", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    for (_, name) in guests {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("example-guests").join(name).display()
        );
    }
    println!("cargo:rerun-if-env-changed=WASMTAP_GUESTS_TARGET_DIR");

    let target_dir = match env::var_os("WASMTAP_GUESTS_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => outer_target_dir(&out_dir).join("wasm-guests"),
    };

    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Small components, still with their name section for backtraces;
        // the workspace's release profile keeps line tables for the host.
        .args(["--config", "profile.release.debug=false"])
        .args(["--config", "profile.release.strip=\"debuginfo\""]);
    if env::var("CARGO_NET_OFFLINE").is_ok_and(|v| v == "true") {
        cmd.arg("--offline");
    }
    for (_, name) in guests {
        cmd.arg("-p").arg(format!("wasmtap-guest-{name}"));
    }
    // Flags and wrappers meant for the host build (coverage, clippy-driver
    // under `cargo clippy`, target-cpu) must not reach the wasm build; the
    // jobserver (CARGO_MAKEFLAGS) is kept so the nested build shares the
    // outer one's job slots.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_BUILD_DIR",
        "CARGO_LLVM_COV",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run the nested cargo for the guests: {e}"));
    assert!(
        status.success(),
        "building the guests for {WASM_TARGET} failed ({status}); is the target installed (rust-toolchain.toml lists it)?"
    );

    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    let mut code = String::new();
    let mut all = String::new();
    for (constant, name) in guests {
        let file = wasm_dir.join(format!("wasmtap_guest_{}.wasm", name.replace('-', "_")));
        assert!(
            file.is_file(),
            "the guest build did not produce {}",
            file.display()
        );
        let path = file.to_str().expect("target directory path is UTF-8");
        writeln!(
            code,
            "/// The `{name}` guest component (`example-guests/{name}`)."
        )
        .unwrap();
        writeln!(code, "pub const {constant}: &str = {path:?};").unwrap();
        writeln!(all, "    ({name:?}, {constant}),").unwrap();
    }
    writeln!(
        code,
        "/// Every guest of this crate: (name, path of its component)."
    )
    .unwrap();
    writeln!(code, "pub const ALL: &[(&str, &str)] = &[\n{all}];").unwrap();
    code.push_str(
        "\n/// The component of the guest called `name`, if this crate builds it.\n\
         pub fn path(name: &str) -> Option<&'static std::path::Path> {\n    \
         ALL.iter()\n        .find(|(n, _)| *n == name)\n        \
         .map(|(_, p)| std::path::Path::new(*p))\n}\n",
    );
    std::fs::write(out_dir.join("guests.rs"), code).expect("write guests.rs");
}

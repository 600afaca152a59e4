//! `wasmtap new` writes a crate that builds into a component and whose own
//! unit test passes.
//!
//! The generated crate is built outside this workspace (in a temporary
//! directory) with the workspace's `Cargo.lock`, so it uses the dependency
//! versions the repository is tested with and needs no network. Its target
//! directory is fixed (`<target>/template-guest`), so only the first run
//! compiles wit-bindgen; later runs rebuild just the small crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn new_crate_builds_a_component_and_passes_its_test() {
    let work = std::env::temp_dir().join(format!("wasmtap-new-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let dir = work.join("tmpl-disk");

    run(Command::new(env!("CARGO_BIN_EXE_wasmtap"))
        .args(["new", "tmpl-disk", "--dir"])
        .arg(&dir));
    // The directory must be empty the second time.
    let again = Command::new(env!("CARGO_BIN_EXE_wasmtap"))
        .args(["new", "tmpl-disk", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("template-guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(&cargo);
        cmd.args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("RUSTFLAGS");
        cmd
    };
    run(&mut cargo(&[
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
    ]));
    let wasm: PathBuf = target.join("wasm32-wasip2/release/tmpl_disk.wasm");
    let bytes = std::fs::read(&wasm).unwrap();
    // A component (layer 1), not a core module.
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "{}", wasm.display());
    run(&mut cargo(&["test"]));

    std::fs::remove_dir_all(&work).unwrap();
}

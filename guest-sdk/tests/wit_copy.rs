//! The SDK's `wit/backstore.wit` is the repository's `wit/backstore.wit`
//! (the file the host binds): a symlink there, so `cargo package` ships the
//! contract inside the crate. Should the link ever be replaced by a copy,
//! this fails as soon as the two differ. Outside the repository (the
//! packaged crate) there is nothing to compare with.

use std::path::Path;

#[test]
fn sdk_wit_is_the_repository_wit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = dir.join("../wit/backstore.wit");
    if !repo.exists() {
        eprintln!("no {}: not in the wasmtap repository", repo.display());
        return;
    }
    let sdk = std::fs::read(dir.join("wit/backstore.wit")).unwrap();
    let repo = std::fs::read(repo).unwrap();
    assert!(
        sdk == repo,
        "guest-sdk/wit/backstore.wit differs from wit/backstore.wit: restore the symlink \
         (ln -sf ../../wit/backstore.wit guest-sdk/wit/backstore.wit)"
    );
}

//! `wasmtap new`: start a backstore crate from the template in
//! `templates/backstore/` (a RAM disk built with the guest SDK).
//!
//! The template files are compiled into the binary, so `wasmtap new` works
//! anywhere. The crate name replaces `my-backstore` (and `my_backstore`);
//! the SDK dependency becomes an absolute `path =` to a `guest-sdk`
//! directory: by default the one of the checkout this binary was built from,
//! which is what a developer building wasmtap from source has. The generated
//! `Cargo.toml` shows the git and registry forms in a comment.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The template's `Cargo.toml`, as in `templates/backstore/`.
pub const CARGO_TOML: &str = include_str!("../../../templates/backstore/Cargo.toml");
/// The template's `src/lib.rs`.
pub const LIB_RS: &str = include_str!("../../../templates/backstore/src/lib.rs");

/// The template's crate name, replaced by the new crate's.
const TEMPLATE_NAME: &str = "my-backstore";
/// The template's SDK dependency line (valid inside this repository),
/// replaced by one naming the chosen SDK directory.
/// How the template's dependency and dev-dependency name the SDK.
const TEMPLATE_SDK_PATH: &str = r#"path = "../../guest-sdk""#;

/// The `guest-sdk` directory of the checkout this binary was built from.
/// It may no longer exist (an installed binary, a moved checkout).
pub fn default_sdk_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
    dir.canonicalize().unwrap_or(dir)
}

/// Is `name` usable as a Cargo package (and so Rust crate) name?
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("the crate name is empty".into());
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!(
            "crate name `{name}` must start with an ASCII letter"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "crate name `{name}` may only hold ASCII letters, digits, `-` and `_`"
        ));
    }
    if name.len() > 64 {
        return Err(format!("crate name `{name}` is longer than 64 characters"));
    }
    if name.replace('-', "_") == "wasmtap_guest_sdk" {
        return Err(format!("crate name `{name}` is the SDK's own"));
    }
    Ok(())
}

/// The files of a new crate named `name` depending on the SDK in `sdk_dir`:
/// `(relative path, contents)`.
pub fn render(name: &str, sdk_dir: &Path) -> Result<Vec<(&'static str, String)>, String> {
    check_name(name)?;
    let sdk = sdk_dir
        .to_str()
        .ok_or_else(|| format!("SDK path {} is not UTF-8", sdk_dir.display()))?;
    // A TOML string literal, escaped as TOML wants it.
    let sdk = toml::Value::String(sdk.to_owned()).to_string();
    let cargo_toml = CARGO_TOML
        .replace(TEMPLATE_SDK_PATH, &format!("path = {sdk}"))
        .replace(TEMPLATE_NAME, name)
        .replace(&TEMPLATE_NAME.replace('-', "_"), &name.replace('-', "_"));
    let lib_rs = LIB_RS
        .replace(TEMPLATE_NAME, name)
        .replace(&TEMPLATE_NAME.replace('-', "_"), &name.replace('-', "_"));
    Ok(vec![
        ("Cargo.toml", cargo_toml),
        ("src/lib.rs", lib_rs),
        (".gitignore", "/target\n".to_owned()),
    ])
}

/// Write a new crate named `name` into `dir` (default `./name`), which must
/// not exist or be empty. Returns the crate's directory.
pub fn create(name: &str, dir: Option<&Path>, sdk_dir: Option<&Path>) -> Result<PathBuf, String> {
    let sdk_dir = match sdk_dir {
        Some(d) => d
            .canonicalize()
            .map_err(|e| format!("SDK directory {}: {e}", d.display()))?,
        None => default_sdk_dir(),
    };
    if !sdk_dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "no guest SDK at {} (this binary was built from a checkout that has moved?): \
             pass --sdk <wasmtap checkout>/guest-sdk",
            sdk_dir.display()
        ));
    }
    let files = render(name, &sdk_dir)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    match fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!("{} exists and is not empty", dir.display()));
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_the_lines_we_replace() {
        assert_eq!(CARGO_TOML.matches(TEMPLATE_SDK_PATH).count(), 2);
        assert!(CARGO_TOML.contains(&format!("name = \"{TEMPLATE_NAME}\"")));
        assert!(CARGO_TOML.contains(r#"crate-type = ["cdylib", "rlib"]"#));
    }

    #[test]
    fn render_substitutes_name_and_sdk_path() {
        let files = render("disk-2", Path::new("/src/wasmtap \"x\"/guest-sdk")).unwrap();
        let cargo_toml = &files[0].1;
        assert!(cargo_toml.contains("name = \"disk-2\""));
        assert!(cargo_toml.contains("release/disk_2.wasm"));
        assert!(!cargo_toml.contains("my-backstore") && !cargo_toml.contains("my_backstore"));
        // The manifest stays valid TOML.
        let parsed: toml::Table = cargo_toml.parse().unwrap();
        assert_eq!(parsed["package"]["name"].as_str(), Some("disk-2"));
        assert_eq!(
            parsed["dependencies"]["wasmtap-guest-sdk"]["path"].as_str(),
            Some("/src/wasmtap \"x\"/guest-sdk")
        );
        let dev = &parsed["dev-dependencies"]["wasmtap-guest-sdk"];
        assert_eq!(dev["path"].as_str(), Some("/src/wasmtap \"x\"/guest-sdk"));
        assert_eq!(dev["features"][0].as_str(), Some("testing"));
    }

    #[test]
    fn names_are_checked() {
        for bad in [
            "",
            "1disk",
            "a b",
            "a/b",
            "wasmtap-guest-sdk",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "my_disk", "qcow2-lite"] {
            check_name(good).unwrap();
        }
    }
}

//! What each built component imports and exports: the contract between the
//! guests and the host's linker.
//!
//! A Rust guest that uses `std` (as the SDK does) imports a fixed set of
//! WASI interfaces even if it never touches files, clocks or the network:
//! the panic handler prints to stderr (`wasi:cli/stderr`, `wasi:io/streams`,
//! `wasi:io/error`, `wasi:io/poll`) and reads `RUST_BACKTRACE`
//! (`wasi:cli/environment`), and wasi-libc's start-up sets up the standard
//! streams and their terminals (`wasi:cli/{stdin,stdout,terminal-*}`) and
//! links `exit` (`wasi:cli/exit`). None of these gives a guest access to
//! anything: the host can back them with an empty environment, closed
//! stdin and a stderr that goes to the device log. `wasi:filesystem`,
//! `wasi:sockets`, `wasi:clocks` and `wasi:random` are not in the set; the
//! `hostile-sockets` guest shows what `std::net` adds.

use std::collections::BTreeSet;

use wasmparser::{Parser, Payload};

/// The WASI interfaces (without `@version`) every std-using guest imports.
const STD_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

const DRIVER: &str = "wasmtap:backstore/driver@0.1.1";
const BLOCK_STATUS: &str = "wasmtap:backstore/block-status@0.1.1";

struct Surface {
    imports: BTreeSet<String>,
    exports: BTreeSet<String>,
}

/// The top-level imports and exports of a component (nested modules and
/// components have their own, which the host never sees).
fn surface(file: &str) -> Surface {
    let bytes = std::fs::read(file).unwrap();
    let mut surface = Surface {
        imports: BTreeSet::new(),
        exports: BTreeSet::new(),
    };
    let mut depth = 0_u32;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    surface.imports.insert(import.unwrap().name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    surface.exports.insert(export.unwrap().name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    surface
}

/// Every built guest, example and hostile (twelve).
fn all_guests() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let all = wasmtap_example_guests::ALL
        .iter()
        .chain(wasmtap_hostile_guests::ALL);
    assert_eq!(all.clone().count(), 12, "3 example guests, 9 hostile ones");
    all
}

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

#[test]
fn every_guest_exports_the_driver() {
    for (name, file) in all_guests() {
        let s = surface(file);
        println!(
            "{name}:\n  imports: {:?}\n  exports: {:?}",
            s.imports, s.exports
        );
        assert!(
            s.exports.contains(DRIVER),
            "{name} does not export {DRIVER}: {:?}",
            s.exports
        );
        // The SDK exports the optional block status with its default.
        assert!(
            s.exports.contains(BLOCK_STATUS),
            "{name} does not export {BLOCK_STATUS}: {:?}",
            s.exports
        );
    }
}

#[test]
fn std_guests_import_only_the_contract_and_the_std_wasi_set() {
    for (name, file) in all_guests() {
        if *name == "hostile-sockets" {
            continue;
        }
        let s = surface(file);
        let wasi: BTreeSet<&str> = s
            .imports
            .iter()
            .filter(|i| i.starts_with("wasi:"))
            .map(|i| unversioned(i))
            .collect();
        assert_eq!(wasi, STD_WASI.iter().copied().collect(), "{name}");
        for import in s.imports.iter().filter(|i| !i.starts_with("wasi:")) {
            assert!(
                import.starts_with("wasmtap:backstore/")
                    && import.ends_with("@0.1.1")
                    && import.as_str() != DRIVER,
                "{name} imports {import}"
            );
        }
    }
}

#[test]
fn storage_is_imported_only_by_guests_that_use_it() {
    let storage = "wasmtap:backstore/storage@0.1.1";
    assert!(
        surface(wasmtap_example_guests::RAW_FILE)
            .imports
            .contains(storage)
    );
    assert!(
        surface(wasmtap_hostile_guests::HOSTILE_ESCAPE)
            .imports
            .contains(storage)
    );
    assert!(
        !surface(wasmtap_example_guests::RAM)
            .imports
            .contains(storage)
    );
}

#[test]
fn sockets_guest_imports_wasi_sockets() {
    let s = surface(wasmtap_hostile_guests::HOSTILE_SOCKETS);
    let sockets: Vec<_> = s
        .imports
        .iter()
        .filter(|i| i.starts_with("wasi:sockets/"))
        .collect();
    assert!(
        sockets.iter().any(|i| i.starts_with("wasi:sockets/tcp@")),
        "{:?}",
        s.imports
    );
    assert!(
        sockets
            .iter()
            .any(|i| i.starts_with("wasi:sockets/network@"))
    );
}

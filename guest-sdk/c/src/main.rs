//! `wasmtap-guest-c`: the two steps of building a wasmtap backstore in C that
//! are not clang's job.
//!
//! ```text
//! wasmtap-guest-c bindings --out DIR [--wit DIR] [--world NAME]
//! wasmtap-guest-c component CORE.wasm -o COMPONENT.wasm
//! ```
//!
//! `bindings` generates the C bindings of the backstore world with
//! `wit-bindgen-c`: `backstore.h` (the API your code includes),
//! `backstore.c` (the canonical-ABI glue, compiled with your sources) and
//! `backstore_component_type.o` (a wasm object holding the world's type as a
//! custom section; link it in). `component` turns the core module clang
//! linked into a component with `wit-component`, which finds the world's type
//! in that custom section, and lists the component's imports.
//!
//! The component must import only what the wasmtap host offers, so
//! `component` refuses a core module that imports WASI preview 1
//! (`wasi_snapshot_preview1`, what wasi-libc's I/O, clock and start-up code
//! call) instead of papering over it with an adapter: the adapter would add
//! WASI interfaces the host does not provide.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

/// The repository's contract, the default for `--wit`.
const DEFAULT_WIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");

/// The core-module import namespace of WASI preview 1.
const WASI_P1: &str = "wasi_snapshot_preview1";

#[derive(Debug, Parser)]
#[command(
    name = "wasmtap-guest-c",
    version,
    about = "Build wasmtap backstores in C: generate bindings, make components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the C bindings of the backstore world into a directory.
    Bindings {
        /// Where to write `<world>.h`, `<world>.c` and `<world>_component_type.o`
        /// (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The WIT package directory (default: the repository's `wit/`).
        #[arg(long, default_value = DEFAULT_WIT)]
        wit: PathBuf,
        /// The world to generate.
        #[arg(long, default_value = "backstore")]
        world: String,
    },
    /// Turn a core wasm module linked with the bindings into a component.
    Component {
        /// The core module clang linked (it carries the world's type in a
        /// `component-type` custom section from `<world>_component_type.o`).
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bindings { out, wit, world } => bindings(&wit, &world, &out),
        Command::Component { module, output } => component(&module, &output),
    };
    if let Err(e) = result {
        eprintln!("wasmtap-guest-c: error: {e:#}");
        std::process::exit(1);
    }
}

/// Generate the C bindings for `world` of the WIT package at `wit` into `out`.
fn bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading the WIT package in {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("selecting world `{world}`"))?;

    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        // Leave an unchanged file alone so that make-style builds do not
        // recompile the glue every time.
        if fs::read(&path).is_ok_and(|old| old == contents) {
            continue;
        }
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    for (name, _) in files.iter() {
        println!("{}", out.join(name).display());
    }
    Ok(())
}

/// Encode the core module at `module` as a component at `output` and print
/// the component's imports.
fn component(module: &Path, output: &Path) -> Result<()> {
    let core = fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    if !wasmparser::Parser::is_core_wasm(&core) {
        bail!(
            "{} is not a core WebAssembly module (already a component?)",
            module.display()
        );
    }

    let wasi = core_imports(&core)?
        .into_iter()
        .filter(|(namespace, _)| namespace == WASI_P1)
        .map(|(_, name)| name)
        .collect::<Vec<_>>();
    if !wasi.is_empty() {
        bail!(
            "{} imports WASI preview 1 functions ({WASI_P1}: {}), which the wasmtap host does \
             not offer: drop the libc calls that need them (stdio, time, getenv, exit) and \
             link with -nostartfiles -Wl,--no-entry",
            module.display(),
            wasi.join(", ")
        );
    }

    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .context(
            "reading the module's component-type section (is <world>_component_type.o linked in?)",
        )?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    fs::write(output, &component).with_context(|| format!("writing {}", output.display()))?;

    println!("{} ({} bytes), imports:", output.display(), component.len());
    for name in component_imports(&component)? {
        println!("  {name}");
    }
    Ok(())
}

/// The (module, name) pairs a core module imports.
fn core_imports(core: &[u8]) -> Result<Vec<(String, String)>> {
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let wasmparser::Payload::ImportSection(section) = payload? {
            for import in section.into_imports() {
                let import = import?;
                imports.push((import.module.to_owned(), import.name.to_owned()));
            }
        }
    }
    Ok(imports)
}

/// The names a component imports at its top level (nested modules and
/// components are skipped: their imports are satisfied inside).
fn component_imports(component: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    names.push(import?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wasmtap-guest-c-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn bindings_cover_the_repository_world() {
        let out = scratch("bindings");
        bindings(Path::new(DEFAULT_WIT), "backstore", &out).unwrap();
        let header = fs::read_to_string(out.join("backstore.h")).unwrap();
        for declaration in [
            "exports_wasmtap_backstore_driver_static_disk_open(",
            "exports_wasmtap_backstore_driver_method_disk_queue_batch(",
            "exports_wasmtap_backstore_block_status_query(",
            "wasmtap_backstore_requests_static_request_complete(",
            "wasmtap_backstore_requests_describe_batch_with_data(",
        ] {
            assert!(
                header.contains(declaration),
                "backstore.h lacks {declaration}"
            );
        }
        let object = fs::read(out.join("backstore_component_type.o")).unwrap();
        assert!(
            object.starts_with(b"\0asm"),
            "the type object is a wasm object"
        );
        assert!(out.join("backstore.c").is_file());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn unknown_world_is_an_error() {
        let out = scratch("no-world");
        let err = bindings(Path::new(DEFAULT_WIT), "nope", &out).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
        fs::remove_dir_all(&out).unwrap();
    }

    /// A core module with one function import.
    fn module_importing(namespace: &str, name: &str) -> Vec<u8> {
        use wasm_encoder::{EntityType, ImportSection, Module, TypeSection};
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut imports = ImportSection::new();
        imports.import(namespace, name, EntityType::Function(0));
        let mut module = Module::new();
        module.section(&types).section(&imports);
        module.finish()
    }

    #[test]
    fn wasi_preview1_imports_are_refused_by_name() {
        let dir = scratch("wasi");
        let core = dir.join("core.wasm");
        fs::write(&core, module_importing(WASI_P1, "fd_write")).unwrap();
        let err = component(&core, &dir.join("out.wasm")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("fd_write"), "{text}");
        assert!(!dir.join("out.wasm").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_module_without_the_type_section_is_an_error() {
        let dir = scratch("untyped");
        let core = dir.join("core.wasm");
        fs::write(
            &core,
            module_importing("wasmtap:backstore/log@0.1.1", "log"),
        )
        .unwrap();
        assert!(component(&core, &dir.join("out.wasm")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

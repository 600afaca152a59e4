//! Loading: validate an uploaded component against the world and compile it.
//!
//! The checks run in the order that gives the most useful reason: what the
//! bytes are (wasm at all? a precompiled artifact? a core module?), whether
//! they validate, whether the driver is exported, and whether every import
//! is something the host offers (named, so the author knows what to drop).

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre};

use crate::bindings::{DRIVER_EXPORT, LinkedPre};
use crate::host::DeviceState;
use crate::wasi;

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly binary.
    #[error("not a WebAssembly binary (it does not start with the \\0asm header)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component: build the backstore for wasm32-wasip2 (or run wasm-tools component new)"
    )]
    CoreModule,
    /// A precompiled artifact (wasmtime .cwasm or any other native code).
    #[error(
        "a precompiled artifact, which the host never loads: upload the component's .wasm and the host compiles it"
    )]
    Precompiled,
    /// Validation or compilation failed.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The driver interface is not exported.
    #[error("the component does not export {DRIVER_EXPORT}")]
    MissingDriver,
    /// The driver is exported with the wrong shape.
    #[error("the component's {DRIVER_EXPORT} does not match the host's contract: {0}")]
    DriverMismatch(String),
    /// An import the host does not offer.
    #[error("the component imports `{name}`, which {}", if *.forbidden {
        "a backstore may never use (no WASI filesystem, sockets or HTTP: use wasmtap:backstore/storage)"
    } else {
        "the host does not offer"
    })]
    Import {
        /// The import's full name, e.g. `wasi:sockets/tcp@0.2.0`.
        name: String,
        /// It belongs to a WASI package the host never offers.
        forbidden: bool,
    },
    /// Past a static limit checked before compiling (see [`LoadLimits`]).
    #[error("refused before compiling: {0}")]
    TooComplex(String),
    /// The compiler is busy with other uploads, or compiling took longer
    /// than the runtime allows.
    #[error("{0}")]
    CompilerBusy(String),
    /// An import has the right name but not the shape the host offers.
    #[error("the component's import `{name}` does not match what the host offers: {reason}")]
    ImportMismatch {
        /// The import's full name.
        name: String,
        /// What the linker said.
        reason: String,
    },
}

/// A loaded backstore: validated, compiled and pre-linked.
#[derive(Clone)]
pub struct Module(pub(crate) Arc<ModuleInner>);

pub(crate) struct ModuleInner {
    pub(crate) hash: [u8; 32],
    pub(crate) pre: LinkedPre,
    pub(crate) imports: Vec<String>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("hash", &self.hash_hex())
            .field("imports", &self.0.imports)
            .finish()
    }
}

impl Module {
    /// SHA-256 of the uploaded bytes, lower-case hex.
    pub fn hash_hex(&self) -> String {
        hex(&self.0.hash)
    }
    /// The component's imports, as named in the binary.
    pub fn imports(&self) -> &[String] {
        &self.0.imports
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Classify the bytes before handing them to the compiler.
pub(crate) fn sniff(bytes: &[u8]) -> Result<(), LoadError> {
    // Wasmtime's own artifacts are ELF files; so is any other native code.
    if Engine::detect_precompiled(bytes).is_some() || bytes.starts_with(b"\x7fELF") {
        return Err(LoadError::Precompiled);
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm);
    }
    if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
        return Err(LoadError::CoreModule);
    }
    if !wasmtime::wasmparser::Parser::is_component(bytes) {
        return Err(LoadError::Invalid(
            "unknown WebAssembly binary version or layer".into(),
        ));
    }
    Ok(())
}

/// What an upload may contain, checked by reading it before anything is
/// compiled: compile time and memory grow with these, and a component past
/// them costs every tenant's I/O while it compiles. The defaults are far
/// above what a storage backstore needs (the example guests have about a
/// thousand functions each; see docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Functions with a body, all core modules together.
    pub functions: u64,
    /// Bytes of one function body.
    pub function_body: u64,
    /// Locals of one function.
    pub locals: u64,
    /// Core modules in the component (nested ones included).
    pub modules: u64,
    /// Data segments, all core modules together.
    pub data_segments: u64,
    /// Memories defined, all core modules together.
    pub memories: u64,
    /// Tables defined, all core modules together.
    pub tables: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            functions: 50_000,
            function_body: 512 << 10,
            locals: 10_000,
            modules: 32,
            data_segments: 10_000,
            memories: 8,
            tables: 32,
        }
    }
}

/// Read the component without compiling it: its top-level imports must all
/// be offered, the driver must be exported, and its core modules must stay
/// within `limits`. The cheap refusals come first, as they would from
/// [`check_and_link`] after compiling.
pub(crate) fn precheck(bytes: &[u8], limits: &LoadLimits) -> Result<(), LoadError> {
    use wasmtime::wasmparser::{Encoding, Parser, Payload};
    let invalid = |e: wasmtime::wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let over = |what: &str, n: u64, max: u64| {
        LoadError::TooComplex(format!("{what}: {n}, the limit is {max}"))
    };
    let mut depth = 0usize;
    let (mut functions, mut modules, mut data, mut memories, mut tables) = (0, 0, 0, 0, 0);
    let mut imports: Vec<String> = Vec::new();
    let mut driver = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if encoding == Encoding::Module {
                    modules += 1;
                    if modules > limits.modules {
                        return Err(over("core modules", modules, limits.modules));
                    }
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(r) if depth == 1 => {
                for i in r {
                    imports.push(i.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for e in r {
                    driver |= same_interface(e.map_err(invalid)?.name.name, DRIVER_EXPORT);
                }
            }
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                if functions > limits.functions {
                    return Err(over("functions", functions, limits.functions));
                }
                let size = body.range().len() as u64;
                if size > limits.function_body {
                    return Err(over(
                        &format!("bytes in function body {functions}"),
                        size,
                        limits.function_body,
                    ));
                }
                let mut locals = 0u64;
                for l in body.get_locals_reader().map_err(invalid)? {
                    locals += u64::from(l.map_err(invalid)?.0);
                    if locals > limits.locals {
                        return Err(over(
                            &format!("locals in function {functions}"),
                            locals,
                            limits.locals,
                        ));
                    }
                }
            }
            Payload::DataSection(r) => {
                data += u64::from(r.count());
                if data > limits.data_segments {
                    return Err(over("data segments", data, limits.data_segments));
                }
            }
            Payload::MemorySection(r) => {
                memories += u64::from(r.count());
                if memories > limits.memories {
                    return Err(over("memories", memories, limits.memories));
                }
            }
            Payload::TableSection(r) => {
                tables += u64::from(r.count());
                if tables > limits.tables {
                    return Err(over("tables", tables, limits.tables));
                }
            }
            _ => {}
        }
    }
    check_imports(&imports)?;
    if !driver {
        return Err(LoadError::MissingDriver);
    }
    Ok(())
}

/// Refuse the first import the host does not offer. A forbidden one is
/// named first: it is the one the author must remove (a sockets guest also
/// imports clocks, which is merely not offered).
fn check_imports(imports: &[String]) -> Result<(), LoadError> {
    let refused = imports
        .iter()
        .find(|n| wasi::forbidden(n))
        .or_else(|| imports.iter().find(|n| !import_offered(n)));
    match refused {
        Some(name) => Err(LoadError::Import {
            name: name.clone(),
            forbidden: wasi::forbidden(name),
        }),
        None => Ok(()),
    }
}

/// Whether the host offers an import of this name.
fn import_offered(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix("wasmtap:backstore/") {
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        return matches!(iface, "types" | "log" | "storage" | "requests")
            && (version.is_empty() || version.starts_with("0.1."));
    }
    wasi::offered(name)
}

/// Check the component's exports and imports, then pre-link it.
pub(crate) fn check_and_link(
    engine: &Engine,
    linker: &wasmtime::component::Linker<DeviceState>,
    component: &Component,
    hash: [u8; 32],
) -> Result<Module, LoadError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    check_imports(&imports)?;
    let pre: InstancePre<DeviceState> =
        linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::ImportMismatch {
                name: mismatched_import(&e, &imports),
                reason: format!("{e:#}"),
            })?;
    if !ty
        .exports(engine)
        .any(|(name, _)| same_interface(name, DRIVER_EXPORT))
    {
        return Err(LoadError::MissingDriver);
    }
    let pre = LinkedPre::new(pre).map_err(|e| LoadError::DriverMismatch(format!("{e:#}")))?;
    Ok(Module(Arc::new(ModuleInner { hash, pre, imports })))
}

/// Whether `name` is the interface `contract` names at a version the host
/// serves: the same interface, the same `0.minor` (semver-compatible for
/// 0.x, as wasmtime's linker matches them), any patch.
fn same_interface(name: &str, contract: &str) -> bool {
    let stem = |n: &str| -> Option<String> {
        let (iface, version) = n.split_once('@')?;
        let mut parts = version.split('.');
        let (major, minor) = (parts.next()?, parts.next()?);
        Some(format!("{iface}@{major}.{minor}"))
    };
    stem(name).is_some_and(|a| Some(a) == stem(contract))
}

/// The import a linker error is about, if the message names one.
fn mismatched_import(e: &wasmtime::Error, imports: &[String]) -> String {
    let msg = format!("{e:#}");
    imports
        .iter()
        .find(|i| msg.contains(i.as_str()))
        .cloned()
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_match_within_the_minor_version() {
        let d = DRIVER_EXPORT;
        assert!(same_interface("wasmtap:backstore/driver@0.1.0", d));
        assert!(same_interface("wasmtap:backstore/driver@0.1.7", d));
        assert!(!same_interface("wasmtap:backstore/driver@0.2.0", d));
        assert!(!same_interface("wasmtap:backstore/driver", d));
        assert!(!same_interface("wasmtap:backstore/drivers@0.1.0", d));
    }

    #[test]
    fn offered_imports_follow_the_world_and_the_wasi_subset() {
        for ok in [
            "wasmtap:backstore/requests@0.1.0",
            "wasmtap:backstore/types@0.1.0",
            "wasi:cli/environment@0.2.3",
            "wasi:io/streams@0.2.0",
        ] {
            assert!(import_offered(ok), "{ok}");
        }
        for no in [
            "wasmtap:backstore/driver@0.1.0",
            "wasmtap:backstore/log@0.2.0",
            "wasi:filesystem/types@0.2.0",
            "wasi:sockets/tcp@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:cli/environment@0.3.0",
            "evil:thing/x",
        ] {
            assert!(!import_offered(no), "{no}");
        }
        assert!(wasi::forbidden("wasi:sockets/tcp@0.2.0"));
        assert!(!wasi::forbidden("evil:thing/x"));
    }

    #[test]
    fn sniff_names_what_the_bytes_are() {
        assert_eq!(sniff(b"hello"), Err(LoadError::NotWasm));
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01"), Err(LoadError::Precompiled));
        assert_eq!(sniff(b"\0asm\x01\0\0\0"), Err(LoadError::CoreModule));
        assert_eq!(sniff(b"\0asm\x0d\0\x01\0"), Ok(()));
    }
}

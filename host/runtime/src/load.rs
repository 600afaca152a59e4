//! Loading: validate an uploaded component against the world and compile it.
//!
//! The checks run in the order that gives the most useful reason: what the
//! bytes are (wasm at all? a precompiled artifact? a core module?), whether
//! they validate, whether the driver is exported, and whether every import
//! is something the host offers (named, so the author knows what to drop).

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre};

use crate::bindings::{BackstorePre, DRIVER_EXPORT};
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
    pub(crate) pre: BackstorePre<DeviceState>,
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
    // Name a forbidden import first: it is the one the author must remove
    // (a sockets guest also imports clocks, which is merely not offered).
    let refused = imports
        .iter()
        .find(|n| wasi::forbidden(n))
        .or_else(|| imports.iter().find(|n| !import_offered(n)));
    if let Some(name) = refused {
        return Err(LoadError::Import {
            name: name.clone(),
            forbidden: wasi::forbidden(name),
        });
    }
    let pre: InstancePre<DeviceState> =
        linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::ImportMismatch {
                name: mismatched_import(&e, &imports),
                reason: format!("{e:#}"),
            })?;
    if ty.get_export(engine, DRIVER_EXPORT).is_none() {
        return Err(LoadError::MissingDriver);
    }
    let pre = BackstorePre::new(pre).map_err(|e| LoadError::DriverMismatch(format!("{e:#}")))?;
    Ok(Module(Arc::new(ModuleInner { hash, pre, imports })))
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

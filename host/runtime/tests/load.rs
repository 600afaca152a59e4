//! Loading refuses what the host must not run, each with its own reason.

mod common;

use wasmtap_runtime::LoadError;

#[test]
fn random_bytes_are_not_wasm() {
    let rt = common::runtime();
    assert_eq!(
        rt.load(b"#!/bin/sh\necho hi\n").unwrap_err(),
        LoadError::NotWasm
    );
    assert_eq!(rt.load(b"").unwrap_err(), LoadError::NotWasm);
}

#[test]
fn a_core_module_is_not_a_component() {
    let rt = common::runtime();
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    assert_eq!(rt.load(&core).unwrap_err(), LoadError::CoreModule);
}

#[test]
fn precompiled_artifacts_are_refused_never_deserialized() {
    let rt = common::runtime();
    let c = wat::parse_str("(component)").unwrap();
    let cwasm = rt.engine().precompile_component(&c).unwrap();
    assert_eq!(rt.load(&cwasm).unwrap_err(), LoadError::Precompiled);
    let m = wat::parse_str("(module)").unwrap();
    let cwasm = rt.engine().precompile_module(&m).unwrap();
    assert_eq!(rt.load(&cwasm).unwrap_err(), LoadError::Precompiled);
}

#[test]
fn garbage_after_the_component_header_is_invalid() {
    let rt = common::runtime();
    let mut c = wat::parse_str("(component)").unwrap();
    c.extend_from_slice(&[0xff, 0x00, 0x13]);
    assert!(matches!(rt.load(&c).unwrap_err(), LoadError::Invalid(_)));
}

#[test]
fn a_component_without_the_driver_export_is_refused() {
    let rt = common::runtime();
    let c = wat::parse_str("(component)").unwrap();
    assert_eq!(rt.load(&c).unwrap_err(), LoadError::MissingDriver);
}

#[test]
fn wasi_sockets_imports_are_refused_by_name() {
    let rt = common::runtime();
    let c = wat::parse_str(r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#).unwrap();
    let e = rt.load(&c).unwrap_err();
    assert_eq!(
        e,
        LoadError::Import {
            name: "wasi:sockets/tcp@0.2.0".into(),
            forbidden: true
        }
    );
    assert!(e.to_string().contains("wasi:sockets/tcp@0.2.0"), "{e}");
}

#[test]
fn filesystem_and_unknown_imports_are_refused_by_name() {
    let rt = common::runtime();
    let fs = wat::parse_str(r#"(component (import "wasi:filesystem/preopens@0.2.3" (instance)))"#)
        .unwrap();
    assert!(matches!(
        rt.load(&fs).unwrap_err(),
        LoadError::Import {
            forbidden: true,
            ..
        }
    ));
    let other = wat::parse_str(r#"(component (import "acme:secrets/vault" (func)))"#).unwrap();
    assert_eq!(
        rt.load(&other).unwrap_err(),
        LoadError::Import {
            name: "acme:secrets/vault".into(),
            forbidden: false
        }
    );
}

#[test]
fn an_offered_name_with_the_wrong_shape_is_a_mismatch() {
    let rt = common::runtime();
    // `log` exists, but not with a function called `shout`.
    let c = wat::parse_str(
        r#"(component (import "wasmtap:backstore/log@0.1.0" (instance (export "shout" (func)))))"#,
    )
    .unwrap();
    assert!(matches!(
        rt.load(&c).unwrap_err(),
        LoadError::ImportMismatch { ref name, .. } if name == "wasmtap:backstore/log@0.1.0"
    ));
}

#[test]
fn a_real_guest_loads_and_its_imports_are_listed() {
    let rt = common::runtime();
    let m = rt
        .load(common::hostile_bytes())
        .expect("hostile guest is a valid backstore");
    assert!(
        m.imports()
            .iter()
            .any(|i| i.starts_with("wasmtap:backstore/requests"))
    );
    assert!(
        m.imports()
            .iter()
            .all(|i| !i.starts_with("wasi:filesystem") && !i.starts_with("wasi:sockets")),
        "{:?}",
        m.imports()
    );
    assert_eq!(m.hash_hex().len(), 64);
}

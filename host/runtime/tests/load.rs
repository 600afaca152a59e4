//! Loading refuses what the host must not run, each with its own reason.

mod common;

use std::time::Duration;

use wasmtap_runtime::{LoadError, LoadLimits, Runtime, RuntimeConfig};

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
    // (It exports a driver by name, so it passes the reading before
    // compiling; the linker finds the mismatch.)
    let c = wat::parse_str(
        r#"(component
            (import "wasmtap:backstore/log@0.1.0" (instance (export "shout" (func))))
            (instance $d)
            (export "wasmtap:backstore/driver@0.1.0" (instance $d)))"#,
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

/// A component whose core module has `funcs` functions of `locals` locals
/// each (and nothing else), in the binary format.
fn component_with(funcs: usize, locals: usize) -> Vec<u8> {
    let body = if locals > 0 {
        format!("(local {})", "i64 ".repeat(locals))
    } else {
        String::new()
    };
    let mut text = String::from("(component (core module ");
    for _ in 0..funcs {
        text.push_str(&format!("(func {body})"));
    }
    text.push_str("))");
    wat::parse_str(&text).unwrap()
}

/// Issue 11, row 5: what makes a compile slow or large is refused by
/// reading the upload, before anything is compiled.
#[test]
fn static_limits_refuse_a_component_before_it_is_compiled() {
    let rt = common::runtime();
    let limits = LoadLimits::default();
    let many = component_with(limits.functions as usize + 1, 0);
    match rt.load(&many).unwrap_err() {
        LoadError::TooComplex(why) => assert!(why.starts_with("functions: 50001"), "{why}"),
        e => panic!("{e}"),
    }
    let wide = component_with(1, limits.locals as usize + 1);
    match rt.load(&wide).unwrap_err() {
        LoadError::TooComplex(why) => assert!(why.contains("locals in function 1"), "{why}"),
        e => panic!("{e}"),
    }
    // Within the limits it is read further: this one has no driver, which
    // is also refused before compiling.
    assert_eq!(
        rt.load(&component_with(10, 10)).unwrap_err(),
        LoadError::MissingDriver
    );
    // Every example guest is far inside the limits.
    for g in [
        wasmtap_example_guests::RAM,
        wasmtap_example_guests::RAW_FILE,
        wasmtap_example_guests::NULL,
    ] {
        rt.load(&std::fs::read(g).unwrap()).unwrap();
    }
}

/// Issue 11, row 5: compiles are bounded in number and time; a load that
/// cannot get a slot, or whose compile outlives the limit, is refused
/// with that reason.
#[test]
fn compiles_are_bounded_in_number_and_time() {
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 4,
        compile_slots: 1,
        compile_timeout: Duration::from_millis(1),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let ram = std::fs::read(wasmtap_example_guests::RAM).unwrap();
    match rt.load(&ram).unwrap_err() {
        LoadError::CompilerBusy(why) => assert!(why.contains("took longer"), "{why}"),
        e => panic!("{e}"),
    }
    // The first compile still holds the only slot.
    let null = std::fs::read(wasmtap_example_guests::NULL).unwrap();
    match rt.load(&null).unwrap_err() {
        LoadError::CompilerBusy(why) => assert!(why.contains("the compiler is busy"), "{why}"),
        e => panic!("{e}"),
    }
    assert_eq!(rt.cached_modules(), 0);
}

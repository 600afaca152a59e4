//! The control plane's data-plane side, on the simulator frontend: devices
//! served per the database, hot swaps under load, modules refused with the
//! runtime's reason, offline devices, and a daemon restart that brings every
//! device back. The API is driven over real HTTP where it matters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtap::config::ServeConfig;
use wasmtap::control::DaemonHost;
use wasmtap_web::host::{DeviceSpec, DeviceState, FrontendKind, Host, HostErrorKind};

mod common;

fn tmp(tag: &str) -> common::Scratch {
    common::Scratch::new(&format!("control-{tag}"))
}

fn host(data: &Path) -> DaemonHost {
    let cfg = ServeConfig {
        data_dir: data.to_path_buf(),
        ..ServeConfig::default()
    };
    DaemonHost::new(&cfg, FrontendKind::Sim, Arc::new(AtomicBool::new(false))).unwrap()
}

/// `bytes` as another module version: the same component with a custom
/// section appended (still valid, different content hash).
fn new_version(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"wasmtap-version";
    let payload = tag.as_bytes();
    let mut sec = vec![name.len() as u8];
    sec.extend_from_slice(name);
    sec.extend_from_slice(payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(sec.len() as u8);
    out.extend_from_slice(&sec);
    out
}

/// Store `bytes` content-addressed under `data/modules`, as the web crate does.
fn module_file(data: &Path, bytes: &[u8]) -> (String, PathBuf) {
    let sha = hex(&Sha256::digest(bytes));
    let dir = data.join("modules");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{sha}.wasm"));
    std::fs::write(&p, bytes).unwrap();
    (sha, p)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn spec(data: &Path, id: i64, module: &str, bytes: &[u8], config: &str, bs: u32) -> DeviceSpec {
    let (sha, path) = module_file(data, bytes);
    DeviceSpec {
        id,
        tenant: "t1".into(),
        name: format!("dev{id}"),
        size: 32 << 20,
        block_size: bs,
        module_name: module.into(),
        module_sha256: sha,
        module_path: path,
        config: config.into(),
        dir: data.join("devices").join(id.to_string()),
        tenant_limits: wasmtap_web::Quota::default().data_plane(),
    }
}

fn wait_exercise(h: &DaemonHost, id: i64) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while h.exercising(id) {
        assert!(Instant::now() < deadline, "exercise did not finish");
        thread::sleep(Duration::from_millis(50));
    }
    h.exercise_outcome(id).expect("an outcome is recorded")
}

fn raw_file() -> Vec<u8> {
    std::fs::read(wasmtap_example_guests::RAW_FILE).unwrap()
}

#[test]
fn hot_swaps_under_load_lose_and_fail_nothing() {
    let data = tmp("swap");
    let h = host(&data);
    let v1 = raw_file();
    let v2 = new_version(&v1, "2");
    let s1 = spec(&data, 1, "raw-file", &v1, "", 512);
    let s2 = DeviceSpec {
        module_name: "raw-file-v2".into(),
        ..spec(&data, 1, "raw-file-v2", &v2, "", 512)
    };
    assert_ne!(s1.module_sha256, s2.module_sha256);
    h.validate(&v2)
        .expect("a custom section keeps the component valid");
    h.start(&s1).unwrap();
    h.exercise(1, 6, 16, "all").unwrap();
    let mut swaps = 0;
    let start = Instant::now();
    // Swap back and forth while the verifying initiator keeps 16 commands
    // in flight: each swap drains them, so none may fail or read wrong data.
    while start.elapsed() < Duration::from_secs(4) {
        thread::sleep(Duration::from_millis(300));
        let next = if swaps % 2 == 0 { &s2 } else { &s1 };
        h.rebind(next).unwrap();
        swaps += 1;
    }
    let summary = wait_exercise(&h, 1).expect("no command failed, no data read back wrong");
    let live = h.live(1).unwrap();
    assert_eq!(live.state, DeviceState::Running);
    let c = &live.counters;
    assert!(c.reads > 100 && c.writes > 100, "{c:?} ({summary})");
    // The only CHECK CONDITIONs are the power-on unit attention the
    // initiator expects at attach and the MISCOMPAREs of its deliberately
    // wrong COMPARE AND WRITEs (the full mix; the initiator counts any
    // other outcome of those as an error).
    let miscompares = c.errors_by_sense_key[0x0e];
    let errors: u64 = c.errors_by_sense_key.iter().sum();
    assert_eq!(errors, 1 + miscompares, "{c:?}");
    assert_eq!(c.errors_by_sense_key[6], 1);
    assert!(
        summary.contains(&format!("{miscompares} deliberate miscompares")),
        "{summary}"
    );
    for op in [
        "caw",
        "verify",
        "unmap",
        "writesame",
        "zero",
        "fua",
        "flush",
    ] {
        assert!(
            summary.contains(&format!("{op} ")),
            "{op} missing: {summary}"
        );
    }
    let swapped = live.log.iter().filter(|l| l.contains("hot swap")).count();
    assert_eq!(swapped, swaps, "{:?}", live.log);
    assert!(swaps >= 8, "only {swaps} swaps happened");
    h.shutdown();
}

#[test]
fn a_module_that_cannot_open_leaves_the_old_instance_serving() {
    let data = tmp("badswap");
    let h = host(&data);
    let v1 = raw_file();
    let s1 = spec(&data, 7, "raw-file", &v1, "", 4096);
    h.start(&s1).unwrap();
    // raw-file refuses a sector size the device does not have.
    let bad = DeviceSpec {
        config: "sector=999".into(),
        ..s1.clone()
    };
    let err = h.rebind(&bad).unwrap_err();
    assert_eq!(err.kind, HostErrorKind::Refused, "{err}");
    assert!(err.message.contains("invalid-config"), "{err}");
    h.exercise(7, 2, 8, "all").unwrap();
    wait_exercise(&h, 7).expect("the old instance still serves 4 KiB-block I/O");
    assert_eq!(h.live(7).unwrap().state, DeviceState::Running);
    // The backstore's own counters come with its debug text.
    assert_eq!(h.guest_stats(7), None, "not asked yet");
    h.debug(7).unwrap();
    let g = h.guest_stats(7).expect("the guest answered stats()");
    assert!(g.reads > 0 && g.writes > 0 && g.bytes_written > 0, "{g:?}");
    h.shutdown();
}

#[test]
fn a_device_whose_module_does_not_open_is_offline_with_the_reason() {
    let data = tmp("offline");
    let h = host(&data);
    let s = spec(&data, 3, "raw-file", &raw_file(), "sector=999", 512);
    h.start(&s)
        .expect("start succeeds; the device comes up offline");
    let live = h.live(3).unwrap();
    assert_eq!(live.state, DeviceState::Offline);
    let reason = live.reason.as_deref().unwrap_or("");
    assert!(reason.contains("invalid-config"), "{live:?}");
    // The guest's own words: the code by name and what it logged, which
    // also stays in the device's log.
    assert!(
        reason.contains("refused to open: invalid-config (it logged:"),
        "{reason}"
    );
    assert!(
        live.log.iter().any(|l| l.contains("999")),
        "the guest's line about sector=999 is in the log: {:?}",
        live.log
    );
    h.exercise(3, 1, 4, "all").unwrap();
    let err = wait_exercise(&h, 3).unwrap_err();
    assert!(err.contains("errors"), "{err}");
    let live = h.live(3).unwrap();
    assert!(
        live.counters.errors_by_sense_key[2] > 0,
        "NOT READY: {live:?}"
    );
    h.shutdown();
}

#[test]
fn modules_are_refused_with_the_runtime_reason() {
    let data = tmp("refuse");
    let h = host(&data);
    let code = |b: &[u8]| h.validate(b).unwrap_err().code;
    assert_eq!(code(b"hello, not wasm"), "not_wasm");
    assert_eq!(code(b"\0asm\x01\0\0\0"), "core_module");
    // An empty component: valid, but it exports no driver.
    assert_eq!(code(b"\0asm\x0d\0\x01\0"), "wrong_world");
    let sockets = std::fs::read(wasmtap_hostile_guests::HOSTILE_SOCKETS).unwrap();
    let r = h.validate(&sockets).unwrap_err();
    assert_eq!(r.code, "forbidden_import", "{r:?}");
    assert!(r.message.contains("wasi:"), "{r:?}");
    let ok = h.validate(&raw_file()).unwrap();
    assert!(ok.exports.iter().any(|e| e.contains("driver")));
}

#[test]
fn exercise_is_refused_while_one_runs_and_for_unknown_devices() {
    let data = tmp("busy");
    let h = host(&data);
    let ram = std::fs::read(wasmtap_example_guests::RAM).unwrap();
    h.start(&spec(&data, 4, "ram", &ram, "", 512)).unwrap();
    h.exercise(4, 2, 4, "all").unwrap();
    let e = h.exercise(4, 2, 4, "all").unwrap_err();
    assert_eq!(e.kind, HostErrorKind::Conflict, "{e}");
    assert!(e.message.contains("already"), "{e}");
    let e = h.exercise(99, 1, 1, "all").unwrap_err();
    assert_eq!(e.kind, HostErrorKind::NotRunning, "{e}");
    let e = h.export(&spec(&data, 4, "ram", &ram, "", 512)).unwrap_err();
    assert_eq!(e.kind, HostErrorKind::Unsupported, "sim has no LIO: {e}");
    wait_exercise(&h, 4).unwrap();
    h.stop(4).unwrap();
    assert!(h.live(4).is_none());
    h.shutdown();
}

/// Issue 11: what a device holds of the shared resources shows on its live
/// state (the device page, /metrics), what its tenant holds on the
/// tenant's; a hot swap that would pass the tenant's instance quota is
/// refused with that reason while the old instance keeps serving.
#[test]
fn resources_held_are_visible_and_the_instance_quota_holds_across_a_swap() {
    let data = tmp("resources");
    let h = host(&data);
    let v1 = raw_file();
    let mut s1 = spec(&data, 1, "raw-file", &v1, "", 512);
    s1.tenant_limits.instances = 1;
    h.start(&s1).unwrap();
    let r = h.live(1).unwrap().resources.expect("a guest runs");
    assert_eq!((r.open_files, r.open_files_limit), (1, 64));
    assert_eq!((r.storage_bytes, r.storage_files), (32 << 20, 1));
    assert_eq!(r.storage_bytes_limit, (32 << 20) + (4 << 20) + (16 << 20));
    assert!(r.memory > 0);
    let t = h.tenant_resources(&s1.tenant).expect("the tenant is known");
    assert_eq!(
        (t.instances, t.open_files, t.storage_bytes),
        (1, 1, 32 << 20)
    );
    assert_eq!(t.limits.instances, 1);
    let v2 = new_version(&v1, "2");
    let s2 = DeviceSpec {
        module_name: "raw-file-v2".into(),
        tenant_limits: s1.tenant_limits,
        ..spec(&data, 1, "raw-file-v2", &v2, "", 512)
    };
    let e = h.rebind(&s2).expect_err("a swap needs a second instance");
    assert_eq!(e.kind, HostErrorKind::Limit, "{e}");
    assert!(e.message.contains("limit of 1 instances"), "{e}");
    assert_eq!(h.live(1).unwrap().state, DeviceState::Running);
    h.exercise(1, 1, 4, "all").unwrap();
    wait_exercise(&h, 1).expect("the old instance still serves");
    h.forget_module(&s2.module_sha256);
    h.shutdown();
}

/// Issue 11, row 8: many clients asking for the `debug` text of a guest
/// whose `debug` is slow and returns 32 MiB ask its worker at most once a
/// second, never twice at once, get at most 64 KiB each, and another
/// device keeps serving verified I/O meanwhile.
#[test]
fn a_slow_huge_debug_is_asked_once_at_a_time_and_cut() {
    let data = tmp("debug");
    let h = Arc::new(host(&data));
    let hog = std::fs::read(wasmtap_hostile_guests::HOSTILE_HOG).unwrap();
    let mut s1 = spec(&data, 1, "hostile-hog", &hog, "attack=debug", 512);
    s1.tenant = "hostile".into();
    h.start(&s1).unwrap();
    let s2 = spec(&data, 2, "raw-file", &raw_file(), "", 512);
    h.start(&s2).unwrap();
    h.exercise(2, 3, 8, "all").unwrap();
    let start = Instant::now();
    let askers: Vec<_> = (0..64)
        .map(|_| {
            let h = Arc::clone(&h);
            thread::spawn(move || {
                let t = Instant::now();
                let r = h.debug(1);
                (t.elapsed(), r)
            })
        })
        .collect();
    let mut answered = 0;
    for a in askers {
        let (took, r) = a.join().unwrap();
        if let Ok(text) = r {
            assert!(
                text.len() <= wasmtap_runtime::MAX_DEBUG + 100,
                "{}",
                text.len()
            );
            assert!(text.contains("[cut: the guest returned"), "{}", &text[..80]);
            answered += 1;
        }
        assert!(took < Duration::from_secs(10), "an asker waited {took:?}");
    }
    assert!(answered >= 1);
    let elapsed = start.elapsed().as_secs() + 1;
    // Ask again after the cache went stale: the guest counts its calls.
    thread::sleep(Duration::from_millis(1100));
    let text = h.debug(1).unwrap();
    let calls: u64 = text
        .strip_prefix("debug calls=")
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", &text[..40]));
    assert!(
        calls <= elapsed + 2,
        "{calls} debug calls in about {elapsed} s"
    );
    wait_exercise(&h, 2).expect("the other device served without an error");
    h.shutdown();
}

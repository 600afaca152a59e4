//! Resource isolation: a hostile guest that tries to exhaust something the
//! daemon shares (descriptors, host memory, the I/O threads, disk, instance
//! slots, the log) is stopped at its own limits with a documented error,
//! while a victim device of another tenant runs verified I/O throughout and
//! ends with zero failed I/Os. (The API side of the same attacks is tested
//! in web/ and host/daemon/.)

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use common::*;
use wasmtap_runtime::{
    InstanceSpec, OpenError, Runtime, RuntimeConfig, StorageLimits, Tenant, TenantLimits,
    WasmBackend,
};

fn hog(rt: &Runtime) -> wasmtap_runtime::Module {
    rt.load(&std::fs::read(wasmtap_hostile_guests::HOSTILE_HOG).unwrap())
        .unwrap()
}

fn hog_spec(rt: &Runtime, attack: &str, tenant: &Tenant, dir: &Path) -> InstanceSpec {
    let mut s = spec(&hog(rt), &format!("attack={attack}"), tenant);
    s.dir = Some(dir.to_path_buf());
    s
}

/// A scratch directory in memory where there is one: on tmpfs, transfers
/// over 64 KiB always go to the I/O threads (on a disk file system, reads
/// of cached data may run inline and never meet the shared threads).
fn scratch() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn subdir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the victim saw.
#[derive(Debug)]
struct Verified {
    ios: u64,
    failures: Vec<String>,
}

/// A `raw-file` device of tenant "victim" writing and reading back 128 KiB
/// patterns (large enough to use the I/O threads) until `stop` is set and
/// at least `min` round trips are done.
fn victim(rt: &Runtime, dir: PathBuf, stop: Arc<AtomicBool>, min: u64) -> JoinHandle<Verified> {
    let rt = rt.clone();
    std::thread::spawn(move || {
        let m = rt
            .load(&std::fs::read(wasmtap_example_guests::RAW_FILE).unwrap())
            .unwrap();
        let tenant = Tenant::new("victim", 1 << 30);
        let mut s = spec(&m, "file=disk.img,size=8M", &tenant);
        s.dir = Some(dir);
        s.storage = StorageLimits::for_device(8 << 20);
        let b = rt.open("victim", s).expect("the victim opens");
        let mut v = Verified {
            ios: 0,
            failures: Vec::new(),
        };
        let mut i = 0u64;
        while i < min || !stop.load(Ordering::Acquire) {
            let lba = (i * 37 % 64) * 256;
            let data = pattern(i as u8, 128 << 10);
            match write_vec(&b, lba, &data) {
                Ok(()) => {}
                Err(e) => v.failures.push(format!("write {i}: {e:?}")),
            }
            match read_vec(&b, lba, data.len()) {
                Ok(back) if back == data => {}
                Ok(_) => v.failures.push(format!("read {i}: wrong data")),
                Err(e) => v.failures.push(format!("read {i}: {e:?}")),
            }
            v.ios += 2;
            i += 1;
        }
        v
    })
}

fn finish(stop: &AtomicBool, h: JoinHandle<Verified>) -> Verified {
    stop.store(true, Ordering::Release);
    let v = h.join().expect("the victim thread");
    assert!(
        v.failures.is_empty(),
        "the victim saw {} failed I/Os of {}: {:?}",
        v.failures.len(),
        v.ios,
        &v.failures[..v.failures.len().min(5)]
    );
    v
}

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb << 10
}

fn log_text(b: &WasmBackend) -> String {
    b.log()
        .lines()
        .iter()
        .map(|l| format!("{} {}\n", l.level, l.message))
        .collect()
}

/// Row 1: descriptors. Each instance may hold 64 open files, each tenant
/// 100; the hostile tenant's three devices get 64 + 36 + 0, the daemon's
/// descriptor count grows by no more, every hog still opens (its `open`
/// just sees `busy`), and the victim opens its own file and serves.
#[test]
fn a_guest_hoarding_descriptors_stops_at_its_limits() {
    let rt = runtime();
    let root = scratch();
    let tenant = Tenant::with_limits(
        "hostile",
        TenantLimits {
            open_files: 100,
            ..TenantLimits::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let v = victim(&rt, subdir(root.path(), "victim"), Arc::clone(&stop), 20);
    let hogs: Vec<WasmBackend> = (0..3)
        .map(|i| {
            let d = subdir(root.path(), &format!("hog{i}"));
            rt.open("hog", hog_spec(&rt, "files", &tenant, &d)).unwrap()
        })
        .collect();
    let done: Vec<String> = hogs.iter().map(|h| h.debug().unwrap()).collect();
    assert!(
        done[0].contains("done=64 ") && done[0].contains("\"busy\""),
        "{}",
        done[0]
    );
    assert!(done[1].contains("done=36 "), "{}", done[1]);
    assert!(done[2].contains("done=0 "), "{}", done[2]);
    assert_eq!(tenant.usage().open_files, 100);
    assert_eq!(hogs[0].resources().open_files, 64);
    // (The daemon process's descriptor count under this attack is checked
    // in host/daemon/tests/abuse.rs: here other tests share the process.)
    assert!(log_text(&hogs[0]).contains("the instance's limit of 64 open files"));
    assert!(log_text(&hogs[1]).contains("the tenant's limit of 100 open files"));
    finish(&stop, v);
    drop(hogs);
    assert_eq!(tenant.usage().open_files, 0, "closed with their instances");
}

/// Row 1, daemon-wide: however many tenants, guests never take the
/// descriptors reserved for the daemon.
#[test]
fn guests_together_stop_at_the_daemon_wide_descriptor_limit() {
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 16,
        max_open_files: 150,
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert_eq!(rt.open_files().1, 150);
    let root = scratch();
    let hogs: Vec<WasmBackend> = (0..3)
        .map(|i| {
            let t = Tenant::new(format!("t{i}"), 1 << 30);
            let d = subdir(root.path(), &format!("hog{i}"));
            rt.open("hog", hog_spec(&rt, "files", &t, &d)).unwrap()
        })
        .collect();
    assert_eq!(rt.open_files().0, 150);
    assert!(hogs[2].debug().unwrap().contains("done=22 "));
    assert!(log_text(&hogs[2]).contains("the daemon's limit of 150 open files"));
}

/// Row 2: host memory. A 4 GiB `read-at` on a sparse file the guest sized
/// itself is refused (`out-of-range`, the reason in its log) without the
/// host allocating it, at open and on every read, while the victim serves.
#[test]
fn a_huge_read_at_is_refused_before_the_host_allocates_it() {
    let rt = runtime();
    let root = scratch();
    let tenant = Tenant::new("hostile", 1 << 30);
    let stop = Arc::new(AtomicBool::new(false));
    let v = victim(&rt, subdir(root.path(), "victim"), Arc::clone(&stop), 20);
    let before = rss();
    let d = subdir(root.path(), "hog");
    let h = rt
        .open("hog", hog_spec(&rt, "read-at", &tenant, &d))
        .unwrap();
    for _ in 0..20 {
        read_vec(&h, 0, 4096).expect("the hog's own reads still complete");
    }
    let grew = rss().saturating_sub(before);
    assert!(grew < 256 << 20, "the daemon grew by {} MiB", grew >> 20);
    let dbg = h.debug().unwrap();
    assert!(
        dbg.contains("done=0 ") && dbg.contains("\"out-of-range\""),
        "{dbg}"
    );
    assert!(
        log_text(&h).contains("read-at of 4294967295 bytes refused"),
        "{}",
        log_text(&h)
    );
    finish(&stop, v);
}

/// Row 3: the I/O threads. A guest submitting each 256 KiB read's range
/// 3000 times (more than the whole executor queued before) fills only its
/// own queue (256 jobs) and gets `busy` past it; the victim's I/O, on the
/// same four threads, never fails.
#[test]
fn a_submit_flood_queues_behind_its_own_share_of_the_io_threads() {
    let rt = runtime();
    let root = scratch();
    let tenant = Tenant::new("hostile", 1 << 30);
    let d = subdir(root.path(), "hog");
    let mut s = hog_spec(&rt, "submits", &tenant, &d);
    s.config = "attack=submits,size=4M,count=3000".into();
    let h = rt.open("hog", s).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let v = victim(&rt, subdir(root.path(), "victim"), Arc::clone(&stop), 50);
    for i in 0..20u64 {
        // Its own reads may fail (busy); that is the hog's problem.
        let _ = read_vec(&h, (i % 16) * 512, 256 << 10);
    }
    let dbg = h.debug().unwrap();
    let v = finish(&stop, v);
    assert!(
        dbg.contains("refused=") && !dbg.contains("refused=0 "),
        "{dbg}"
    );
    eprintln!("hog: {dbg}; victim: {} verified I/Os", v.ios);
}

/// Row 6: disk. A device may store its size plus an allowance
/// (`StorageLimits::for_device`) and 256 files; past either the guest gets
/// `no-space`. The count survives a restart (the directory is scanned), and
/// the tenant's quota caps all its devices together.
#[test]
fn storage_quotas_stop_a_guest_filling_the_disk() {
    let rt = runtime();
    let root = scratch();
    let tenant = Tenant::with_limits(
        "hostile",
        TenantLimits {
            storage_bytes: 40 << 20,
            ..TenantLimits::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let v = victim(&rt, subdir(root.path(), "victim"), Arc::clone(&stop), 20);
    let fill = |name: &str| {
        let d = subdir(root.path(), name);
        let mut s = hog_spec(&rt, "disk", &tenant, &d);
        s.storage = StorageLimits::for_device(1 << 20);
        (rt.open(name, s).unwrap(), d)
    };
    let (h, d) = fill("disk1");
    let dbg = h.debug().unwrap();
    // 1 MiB + 1/8 + 16 MiB = 17.125 MiB: 17 whole chunks fit.
    assert!(dbg.contains(&format!("done={} ", 17 << 20)), "{dbg}");
    assert!(dbg.contains("\"no-space\""), "{dbg}");
    let r = h.resources();
    assert_eq!(r.storage_bytes, 17 << 20);
    assert_eq!(r.storage_bytes_limit, (1 << 20) + (1 << 17) + (16 << 20));
    assert!(log_text(&h).contains("the device's storage quota is spent"));
    drop(h);
    assert_eq!(
        tenant.usage().storage_bytes,
        0,
        "given back with the instance"
    );
    // After a restart the file still counts: the hog rewrites its 17 MiB
    // in place and cannot grow it.
    let (h, _) = fill("disk1");
    let dbg = h.debug().unwrap();
    assert!(dbg.contains(&format!("done={} ", 17 << 20)), "{dbg}");
    assert_eq!(h.resources().storage_bytes, 17 << 20);
    // A second device of the tenant: 40 MiB - 17 MiB = 23 MiB left, but
    // the device's own 17 MiB comes first; a third gets the last 6 MiB.
    let (h2, _) = fill("disk2");
    let (h3, _) = fill("disk3");
    assert!(h2.debug().unwrap().contains(&format!("done={} ", 17 << 20)));
    let dbg3 = h3.debug().unwrap();
    assert!(dbg3.contains(&format!("done={} ", 6 << 20)), "{dbg3}");
    assert!(log_text(&h3).contains("the tenant's storage quota is spent"));
    assert_eq!(std::fs::metadata(d.join("fill")).unwrap().len(), 17 << 20);
    // Files: 256 per device.
    let d = subdir(root.path(), "files");
    let mut s = hog_spec(&rt, "many-files", &tenant, &d);
    s.storage = StorageLimits::for_device(1 << 20);
    let h = rt.open("files", s).unwrap();
    let dbg = h.debug().unwrap();
    assert!(
        dbg.contains("done=256 ") && dbg.contains("\"no-space\""),
        "{dbg}"
    );
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 256);
    finish(&stop, v);
}

/// Row 9: instances. A tenant at its instance quota cannot open more, and
/// another tenant still can.
#[test]
fn a_tenant_at_its_instance_quota_leaves_the_pool_to_others() {
    let rt = runtime();
    let m = rt
        .load(&std::fs::read(wasmtap_example_guests::RAM).unwrap())
        .unwrap();
    let greedy = Tenant::with_limits(
        "greedy",
        TenantLimits {
            instances: 4,
            ..TenantLimits::default()
        },
    );
    let held: Vec<WasmBackend> = (0..4)
        .map(|_| rt.open("g", spec(&m, "size=1M", &greedy)).unwrap())
        .collect();
    match rt.open("g", spec(&m, "size=1M", &greedy)) {
        Err(OpenError::Limit(reason)) => {
            assert!(reason.contains("limit of 4 instances"), "{reason}")
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("a fifth instance opened"),
    }
    assert_eq!(greedy.usage().instances, 4);
    let other = Tenant::new("other", 1 << 30);
    let b = rt.open("o", spec(&m, "size=1M", &other)).unwrap();
    write_vec(&b, 0, &pattern(3, 4096)).unwrap();
    assert_serves(&b, 0, &pattern(3, 4096));
    drop(held);
    assert_eq!(greedy.usage().instances, 0);
}

/// Row 10: a guest's log lines cannot forge daemon log lines (control
/// characters are escaped) and a flood is cut to the rate, with a line
/// saying how many were dropped.
#[test]
fn a_log_flood_is_cut_and_cannot_forge_lines() {
    let rt = runtime();
    let root = scratch();
    let tenant = Tenant::new("hostile", 1 << 30);
    let d = subdir(root.path(), "hog");
    let h = rt.open("hog", hog_spec(&rt, "log", &tenant, &d)).unwrap();
    read_vec(&h, 0, 4096).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    read_vec(&h, 0, 4096).unwrap();
    let lines = h.log().lines();
    assert!(h.log().dropped() >= 1900, "{}", h.log().dropped());
    assert!(lines.len() <= 60, "{}", lines.len());
    for l in &lines {
        assert!(!l.message.chars().any(char::is_control), "{:?}", l.message);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.level == "host" && l.message.contains("dropped"))
    );
}

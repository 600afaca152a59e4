//! `wasmtap check` against the example guests: the ram and raw-file guests
//! pass (raw-file's data survives a reopen), broken ones fail with the
//! command, LBA and what was expected.

use wasmtap::check::{self, Options, Report, Verdict};

/// Short random-I/O phases: the battery's shape, not its endurance.
fn opts(path: &str, config: &str) -> Options {
    let bytes = std::fs::read(path).unwrap();
    let mut o = Options::new(path, bytes);
    o.config = config.into();
    o.load_secs = 0.3;
    o
}

fn verdict(r: &Report, name: &str) -> (Verdict, String) {
    let c = r
        .get(name)
        .unwrap_or_else(|| panic!("no check {name}:\n{}", r.table()));
    (c.verdict, c.detail.clone())
}

/// The command count of a random-I/O phase's detail ("QD 8: 1234 commands
/// in ...").
fn commands(detail: &str) -> u64 {
    detail
        .split_once(": ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no command count in {detail:?}"))
}

#[test]
fn ram_guest_passes_and_is_reported_not_persistent() {
    let r = check::run(&opts(wasmtap_example_guests::RAM, ""));
    assert!(!r.failed(), "{}", r.table());
    for name in check::CHECKS {
        assert!(r.get(name).is_some(), "{name} missing:\n{}", r.table());
    }
    let (v, d) = verdict(&r, "durability-reopen");
    assert_eq!(v, Verdict::Skip, "{d}");
    assert!(d.contains("not persistent"), "{d}");
    // The random-I/O phases ran and sent commands (a skipped or empty
    // phase would verify nothing).
    for name in ["random-qd1", "random-qd8", "random-qd32", "hot-swap"] {
        let (v, d) = verdict(&r, name);
        assert_eq!(v, Verdict::Pass, "{name}: {d}");
        assert!(commands(&d) > 0, "{name}: {d}");
    }
    // The JSON has the same rows.
    let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(j["passed"], true);
    assert_eq!(j["checks"].as_array().unwrap().len(), r.checks.len());
    assert_eq!(j["checks"][6]["check"], "durability-reopen");
    assert_eq!(j["checks"][6]["result"], "skip");
}

#[test]
fn raw_file_guest_passes_and_its_data_survives_a_reopen() {
    let mut o = opts(wasmtap_example_guests::RAW_FILE, "file=disk.img");
    o.block_size = 4096;
    let keep = std::env::temp_dir().join(format!("wasmtap-check-keep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keep);
    o.keep = Some(keep.clone());
    let r = check::run(&o);
    assert!(!r.failed(), "{}", r.table());
    assert_eq!(r.checks.len(), check::CHECKS.len(), "{}", r.table());
    assert!(
        r.checks.iter().all(|c| c.verdict == Verdict::Pass),
        "{}",
        r.table()
    );
    assert!(verdict(&r, "durability-reopen").1.contains("intact"));
    assert!(commands(&verdict(&r, "random-qd8").1) > 0);
    // --keep leaves the device's image behind.
    let img = keep.join("devices/check/disk.img");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 64 << 20);
    std::fs::remove_dir_all(&keep).unwrap();
}

#[test]
fn null_guest_fails_read_write_with_the_difference() {
    let r = check::run(&opts(wasmtap_example_guests::NULL, ""));
    assert!(r.failed());
    // Reads of unwritten blocks are zeros: that much is right.
    assert_eq!(verdict(&r, "unwritten-zero").0, Verdict::Pass);
    let (v, d) = verdict(&r, "read-write");
    assert_eq!(v, Verdict::Fail);
    assert!(
        d.starts_with("READ(16) of 1 blocks at LBA ")
            && d.contains("data differs at LBA")
            && d.contains("got 0x00"),
        "{d}"
    );
    // It stores nothing, so there is nothing to reopen.
    assert_eq!(verdict(&r, "durability-reopen").0, Verdict::Skip);
}

#[test]
fn trapping_guest_fails_its_first_read_with_the_sense() {
    let r = check::run(&opts(wasmtap_hostile_guests::HOSTILE_TRAP, ""));
    let (v, d) = verdict(&r, "unwritten-zero");
    assert_eq!(v, Verdict::Fail);
    assert!(
        d.starts_with("READ(16) of ") && d.contains("sense key 0x2 (NOT READY)"),
        "{d}"
    );
}

#[test]
fn a_geometry_mismatch_names_both_values() {
    let r = check::run(&opts(wasmtap_example_guests::RAM, "size=32M"));
    let (v, d) = verdict(&r, "open");
    assert_eq!(v, Verdict::Fail);
    assert!(
        d.contains("65536 blocks of 512") && d.contains("131072 blocks of 512"),
        "{d}"
    );
}

#[test]
fn a_module_that_does_not_load_fails_load_and_runs_nothing_else() {
    let r = check::run(&Options::new("junk.wasm", b"not a component".to_vec()));
    assert_eq!(verdict(&r, "load").0, Verdict::Fail);
    assert!(verdict(&r, "load").1.contains("refused"));
    assert_eq!(r.checks.len(), check::CHECKS.len(), "{}", r.table());
    assert!(
        r.checks[1..]
            .iter()
            .all(|c| c.verdict == Verdict::Skip && c.detail.starts_with("not run"))
    );
}

#[test]
fn a_random_phase_that_sends_nothing_fails() {
    let mut o = opts(wasmtap_example_guests::RAM, "");
    o.load_secs = 0.0;
    let r = check::run(&o);
    let (v, d) = verdict(&r, "random-qd1");
    assert_eq!(v, Verdict::Fail, "{d}");
    assert!(d.contains("nothing verified"), "{d}");
}

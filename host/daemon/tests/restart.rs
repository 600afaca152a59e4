//! The daemon restarted as a process: state in SQLite survives, the admin
//! token printed at the first start keeps working and is not printed again,
//! and every device comes back bound to the same module version with its
//! storage intact. Everything goes through the JSON API over HTTP.

mod http_daemon;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use http_daemon::*;
use serde_json::json;
use sha2::{Digest, Sha256};

fn file_hash(p: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn a_restarted_daemon_brings_everything_back() {
    let data: PathBuf =
        std::env::temp_dir().join(format!("wasmtap-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);

    let mut d = Daemon::start(&data);
    let admin = d
        .stdout
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("wt_")))
        .unwrap_or_else(|| panic!("first start prints the admin token: {:?}", d.stdout))
        .to_string();
    let u = d.url.clone();
    let (s, _) = call(
        "POST",
        &format!("{u}/api/v1/tenants"),
        &admin,
        Some(json!({"name": "acme"})),
    );
    assert_eq!(s, 201);
    let (s, t) = call(
        "POST",
        &format!("{u}/api/v1/tenants/acme/tokens"),
        &admin,
        Some(json!({"label": "ci"})),
    );
    assert_eq!(s, 201);
    let tok = t["token"].as_str().unwrap().to_string();
    let raw = std::fs::read(wasmtap_example_guests::RAW_FILE).unwrap();
    let (s, m) = upload(&u, &tok, "disk-v1", &raw);
    assert_eq!(s, 201, "{m}");
    let (s, dev) = call(
        "POST",
        &format!("{u}/api/v1/devices"),
        &tok,
        Some(
            json!({"name": "vol", "size": "16M", "block_size": 4096, "module": m["id"], "config": ""}),
        ),
    );
    assert_eq!(s, 201, "{dev}");
    let id = dev["id"].as_i64().unwrap();
    let (s, _) = call(
        "POST",
        &format!("{u}/api/v1/devices/{id}/exercise"),
        &tok,
        Some(json!({"seconds": 2, "queue_depth": 8})),
    );
    assert_eq!(s, 202);
    assert_exercise_verified(&u, &tok, id);
    d.stop();
    let image = data.join("devices").join(id.to_string()).join("disk.img");
    let before = file_hash(&image);

    let mut d = Daemon::start(&data);
    assert!(
        !d.stdout.iter().any(|l| l.contains("wt_")),
        "the admin token is printed only at the first start: {:?}",
        d.stdout
    );
    let u = d.url.clone();
    // Same tokens, same tenant, same device bound to the same module version.
    let (s, list) = call("GET", &format!("{u}/api/v1/devices"), &tok, None);
    assert_eq!(s, 200, "{list}");
    // The API answers at once; the device is `restoring` until its guest
    // has opened, then running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let now = loop {
        let (s, now) = call("GET", &format!("{u}/api/v1/devices/{id}"), &tok, None);
        assert_eq!(s, 200, "{now}");
        if now["state"] != json!("restoring") {
            break now;
        }
        assert!(Instant::now() < deadline, "still restoring: {now}");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(now["module"]["sha256"], m["sha256"], "{now}");
    assert_eq!(now["state"], json!("running"), "{now}");
    let (s, _) = call("GET", &format!("{u}/api/v1/tenants/acme"), &admin, None);
    assert_eq!(s, 200);
    assert_eq!(
        file_hash(&image),
        before,
        "storage untouched by the restart"
    );
    // And it serves: a new exercise verifies its I/O.
    let (s, _) = call(
        "POST",
        &format!("{u}/api/v1/devices/{id}/exercise"),
        &tok,
        Some(json!({"seconds": 1, "queue_depth": 4})),
    );
    assert_eq!(s, 202);
    assert_exercise_verified(&u, &tok, id);
    d.stop();
    let _ = std::fs::remove_dir_all(&data);
}

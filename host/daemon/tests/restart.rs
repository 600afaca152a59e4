//! The daemon restarted as a process: state in SQLite survives, the admin
//! token printed at the first start keeps working and is not printed again,
//! and every device comes back bound to the same module version with its
//! storage intact. Everything goes through the JSON API over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Daemon {
    child: Child,
    url: String,
    stdout: Vec<String>,
}

impl Daemon {
    fn start(data: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmtap"))
            .args(["serve", "--frontend", "sim", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data)
            .env_remove("WASMTAP_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let mut stdout = Vec::new();
        let mut url = None;
        // The banner: the URL line, then the admin-token line.
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.split("web UI and API at ").nth(1) {
                url = rest
                    .split_whitespace()
                    .next()
                    .map(|u| u.trim_end_matches('/').to_string());
            }
            let done = line.contains("admin token");
            stdout.push(line);
            if done {
                break;
            }
        }
        thread::spawn(move || for _ in lines {});
        let url = url.unwrap_or_else(|| panic!("no URL in {stdout:?}"));
        Self { child, url, stdout }
    }

    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "daemon exited with {st}");
                return;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    /// A failed test must not leave its daemon running (it would also
    /// hold the test's output pipe open).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let req = ureq::request(method, url).set("Authorization", &format!("Bearer {token}"));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn upload(url: &str, token: &str, name: &str, bytes: &[u8]) -> (u16, Value) {
    let b = "wasmtap-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let r = ureq::post(&format!("{url}/api/v1/modules"))
        .set("Authorization", &format!("Bearer {token}"))
        .set(
            "Content-Type",
            &format!("multipart/form-data; boundary={b}"),
        )
        .send_bytes(&body);
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("upload: {e}"),
    };
    let status = resp.status();
    (
        status,
        serde_json::from_str(&resp.into_string().unwrap()).unwrap(),
    )
}

fn wait_exercise(url: &str, token: &str, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, d) = call("GET", &format!("{url}/api/v1/devices/{id}"), token, None);
        if d["exercising"] == json!(false) {
            return;
        }
        assert!(Instant::now() < deadline, "exercise did not end: {d}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn last_exercise_line(url: &str, token: &str, id: i64) -> String {
    let (_, l) = call(
        "GET",
        &format!("{url}/api/v1/devices/{id}/log"),
        token,
        None,
    );
    l["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .rfind(|s| s.contains("exercise finished") || s.contains("exercise FAILED"))
        .unwrap_or_else(|| panic!("no exercise outcome in {l}"))
        .to_string()
}

fn file_hash(p: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn a_restarted_daemon_brings_everything_back() {
    let data: PathBuf =
        std::env::temp_dir().join(format!("wasmtap-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);

    let d = Daemon::start(&data);
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
    wait_exercise(&u, &tok, id);
    let line = last_exercise_line(&u, &tok, id);
    assert!(line.contains("0 errors"), "{line}");
    d.stop();
    let image = data.join("devices").join(id.to_string()).join("disk.img");
    let before = file_hash(&image);

    let d = Daemon::start(&data);
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
    wait_exercise(&u, &tok, id);
    let line = last_exercise_line(&u, &tok, id);
    assert!(line.contains("0 errors"), "{line}");
    d.stop();
    let _ = std::fs::remove_dir_all(&data);
}

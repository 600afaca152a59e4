//! A `wasmtap serve` process on the simulator frontend and a small client
//! of its JSON API over HTTP, for the tests that drive the daemon as users
//! do (restart.rs, abuse.rs).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binary under test: `$WASMTAP_TEST_BIN` if set (to measure another
/// build, e.g. an older commit's), else this package's.
pub fn binary() -> PathBuf {
    std::env::var_os("WASMTAP_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wasmtap")))
}

pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub stdout: Vec<String>,
}

impl Daemon {
    /// Start on `data` (stderr inherited).
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[], None)
    }

    /// Start on `data` with `extra` arguments, its stderr into `stderr`
    /// if given.
    pub fn start_with(data: &Path, extra: &[&str], stderr: Option<&Path>) -> Self {
        let err = match stderr {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(binary())
            .args(["serve", "--frontend", "sim", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env_remove("WASMTAP_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(err)
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
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

pub fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
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

pub fn upload(url: &str, token: &str, name: &str, bytes: &[u8]) -> (u16, Value) {
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

pub fn wait_exercise(url: &str, token: &str, id: i64) {
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

/// Wait for the device's exercise to end and check its outcome line: it
/// finished (not FAILED), verified some I/O, and counted no errors. (A
/// FAILED line can also end in "0 errors", and a run that did nothing
/// verified nothing.) Returns the line.
pub fn assert_exercise_verified(url: &str, token: &str, id: i64) -> String {
    wait_exercise(url, token, id);
    let line = last_exercise_line(url, token, id);
    assert!(line.contains("exercise finished"), "{line}");
    assert!(line.contains(", 0 errors"), "{line}");
    let ios: u64 = line
        .split_once(" I/Os verified")
        .and_then(|(head, _)| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no I/O count in {line:?}"));
    assert!(ios > 0, "{line}");
    line
}

pub fn last_exercise_line(url: &str, token: &str, id: i64) -> String {
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

//! The command-line client against a fake daemon: a std `TcpListener` that
//! answers canned JSON and records every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use wasmtap_web::cli::{self, ClientOpts, Command, DeviceCmd, ModuleCmd, TenantCmd};

// --- The fake daemon --------------------------------------------------------

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    /// Lower-cased names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn json(&self) -> Value {
        assert_eq!(
            self.headers.get("content-type").map(String::as_str),
            Some("application/json"),
            "{} {}",
            self.method,
            self.path
        );
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

struct Fake {
    url: String,
    reqs: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    /// Serve `route` (request → status and body) until the test ends.
    fn start(route: impl Fn(&Req) -> (u16, String) + Send + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&reqs);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    let l = l.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let req = Req {
                    method,
                    path,
                    headers,
                    body,
                };
                let (status, answer) = route(&req);
                log.lock().unwrap().push(req);
                let head = if status == 204 {
                    "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        answer.len()
                    )
                };
                let _ = stream.write_all(head.as_bytes());
                if status != 204 {
                    let _ = stream.write_all(answer.as_bytes());
                }
            }
        });
        Fake { url, reqs }
    }

    fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Req::line).collect()
    }

    fn clear(&self) {
        self.reqs.lock().unwrap().clear();
    }

    /// Run `wasmtap ARGS --url <fake>` with `env`; (result, stdout).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (Result<(), String>, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &self.url]);
        run(&all, env)
    }

    /// `run` with a token flag; panics on error.
    fn ok(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--token", "wt_test"]);
        let (r, out) = self.run(&all, &[]);
        r.unwrap_or_else(|e| panic!("{args:?}: {e}"));
        out
    }
}

// --- The command line, as the daemon binary declares it ---------------------

#[derive(Debug, Parser)]
#[command(name = "wasmtap")]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    Module {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: ModuleCmd,
    },
    Device {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    Tenant {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: TenantCmd,
    },
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (Result<(), String>, String) {
    let cli = Cli::try_parse_from(std::iter::once("wasmtap").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let (opts, cmd) = match cli.cmd {
        Top::Module { opts, cmd } => (opts, Command::Module(cmd)),
        Top::Device { opts, cmd } => (opts, Command::Device(cmd)),
        Top::Tenant { opts, cmd } => (opts, Command::Tenant(cmd)),
    };
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| env.get(k).cloned();
    let mut out = Vec::new();
    let r = cli::run_with(&opts, cmd, &lookup, &mut out);
    (r, String::from_utf8(out).unwrap())
}

// --- Canned answers ----------------------------------------------------------

const SHA_RAM: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";
const SHA_MINE: &str = "9999888877776666555544443333222211110000aaaabbbbccccddddeeeeffff";

fn modules() -> Value {
    json!([
        {"id": 1, "name": "ram", "version": "", "sha256": SHA_RAM, "size": 123456,
         "owner": null, "uploaded_by": "builtin", "created_at": "2025-01-01T00:00:00Z",
         "builtin": true, "imports": [], "exports": ["wasmtap:backstore/backstore@0.1.0"],
         "bound_devices": []},
        {"id": 7, "name": "mystore", "version": "1.2", "sha256": SHA_MINE, "size": 2097152,
         "owner": "acme", "uploaded_by": "acme/ci", "created_at": "2025-01-02T00:00:00Z",
         "builtin": false,
         "imports": ["wasmtap:backstore/storage@0.1.0", "wasmtap:backstore/log@0.1.0"],
         "exports": ["wasmtap:backstore/backstore@0.1.0"],
         "bound_devices": [{"id": 3, "name": "disk1", "tenant": "acme"},
                           {"id": 4, "name": "disk2", "tenant": "acme"}]}
    ])
}

fn device3() -> Value {
    json!({
        "id": 3, "name": "disk1", "tenant": "acme", "size": 67108864, "block_size": 4096,
        "module": {"id": 7, "name": "mystore", "version": "1.2", "sha256": SHA_MINE},
        "config": "file=d.img", "created_at": "2025-01-03T00:00:00Z",
        "state": "running", "reason": null, "restarts": 2,
        "counters": {"commands": 10, "reads": 6, "writes": 4, "read_bytes": 4194304,
                     "write_bytes": 8192, "in_flight": 1,
                     "errors_by_sense_key": [0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                     "latency": {"bounds_us": [100], "counts": [9, 1], "sum_us": 1230}},
        "resources": null,
        "lun": {"backstore": "user_1/wasmtap-3", "wwn": "naa.5001405aabbccdd", "lun": 0},
        "exercising": false
    })
}

fn devices() -> Value {
    json!([
        device3(),
        {"id": 12, "name": "scratch", "tenant": "globex", "size": 1073741824,
         "block_size": 512, "module": {"id": 1, "name": "ram", "version": "", "sha256": SHA_RAM},
         "config": "", "created_at": "2025-01-04T00:00:00Z",
         "state": "offline", "reason": "open failed", "restarts": 0, "exercising": false,
         "counters": {"commands": 0, "reads": 0, "writes": 0, "read_bytes": 0,
                      "write_bytes": 0, "in_flight": 0, "errors_by_sense_key": [],
                      "latency": {"bounds_us": [], "counts": [], "sum_us": 0}},
         "resources": null, "lun": null}
    ])
}

fn tenants() -> Value {
    json!([
        {"name": "acme", "max_devices": 16, "max_total_bytes": 68719476736_u64,
         "max_guest_memory": 1073741824, "max_open_files": 256, "max_instances": 64,
         "max_stored_files": 10000, "max_modules": 32, "max_module_total_bytes": 268435456,
         "created_at": "2025-01-01T00:00:00Z",
         "usage": {"devices": 2, "total_bytes": 1140850688, "modules": 1,
                   "module_bytes": 2097152},
         "resources": {"memory": 2097152, "open_files": 3, "instances": 2,
                       "storage_bytes": 1048576, "storage_files": 2,
                       "limits": {"memory": 1073741824, "open_files": 256, "instances": 64,
                                  "storage_bytes": 77309411328_u64, "storage_files": 10000}}},
        {"name": "globex", "max_devices": 4, "max_total_bytes": 10737418240_u64,
         "max_guest_memory": 268435456, "max_open_files": 256, "max_instances": 64,
         "max_stored_files": 10000, "max_modules": 32, "max_module_total_bytes": 268435456,
         "created_at": "2025-01-01T00:00:00Z",
         "usage": {"devices": 0, "total_bytes": 0, "modules": 0, "module_bytes": 0}}
    ])
}

/// A daemon with the canned data; `DELETE`s answer 204.
fn daemon() -> Fake {
    Fake::start(|r| {
        let ok = |v: Value| (200, v.to_string());
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/api/v1/modules") => ok(modules()),
            ("GET", "/api/v1/modules/7") => ok(modules()[1].clone()),
            ("POST", p) if p.starts_with("/api/v1/modules") => (201, modules()[1].to_string()),
            ("GET", "/api/v1/devices") => ok(devices()),
            ("GET", "/api/v1/devices/3") => ok(device3()),
            ("POST", "/api/v1/devices") => (201, device3().to_string()),
            ("PUT", "/api/v1/devices/3/module") => ok(device3()),
            ("POST", "/api/v1/devices/3/export") => ok(json!({"lun": device3()["lun"]})),
            ("POST", "/api/v1/devices/3/exercise") => (
                202,
                json!({"device": 3, "seconds": 10, "queue_depth": 16, "mix": "all"}).to_string(),
            ),
            ("GET", "/api/v1/devices/3/log") => ok(json!({
                "log": ["[info] opened", "[warn] slow"], "debug": "blocks: 16384\n",
                "guest_stats": null
            })),
            ("GET", "/api/v1/tenants") => ok(tenants()),
            ("GET", "/api/v1/tenants/acme") => ok(tenants()[0].clone()),
            ("POST", "/api/v1/tenants") => (201, tenants()[0].to_string()),
            ("PATCH", "/api/v1/tenants/acme") => ok(tenants()[0].clone()),
            ("POST", "/api/v1/tenants/acme/tokens") => (
                201,
                json!({"id": 5, "label": "ci",
                       "token": "wt_00112233445566778899aabbccddeeff00112233",
                       "created_at": "2023-11-14T22:13:20Z"})
                .to_string(),
            ),
            ("GET", "/api/v1/tenants/acme/tokens") => ok(json!([
                {"id": 5, "label": "ci", "created_at": "2023-11-14T22:13:20Z"},
                {"id": 6, "label": "laptop", "created_at": "2024-05-01T10:00:00Z"}
            ])),
            ("DELETE", _) => (204, String::new()),
            _ => (
                404,
                json!({"error": {"code": "not_found", "message": "no such route"}}).to_string(),
            ),
        }
    })
}

/// Column start of `needle` in `line`, by characters.
fn col(line: &str, needle: &str) -> usize {
    let b = line
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"));
    line[..b].chars().count()
}

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

// --- Tests -------------------------------------------------------------------

#[test]
fn module_list_sends_the_bearer_token_and_prints_an_aligned_table() {
    let d = daemon();
    let out = d.ok(&["module", "list"]);
    let reqs = d.requests();
    assert_eq!(d.lines(), ["GET /api/v1/modules"]);
    assert_eq!(reqs[0].headers["authorization"], "Bearer wt_test");

    let header = out.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "ID", "NAME", "VERSION", "SIZE", "OWNER", "DEVICES", "SHA256"
        ]
    );
    let ram = line_with(&out, "ram");
    let mine = line_with(&out, "mystore");
    assert_eq!(out.lines().count(), 3, "{out}");
    for (h, a, b) in [
        ("NAME", "ram", "mystore"),
        ("OWNER", "built-in", "acme"),
        ("SHA256", &SHA_RAM[..12], &SHA_MINE[..12]),
    ] {
        assert_eq!(col(header, h), col(ram, a), "{h}:\n{out}");
        assert_eq!(col(header, h), col(mine, b), "{h}:\n{out}");
    }
    assert!(mine.contains("2 MiB") && mine.contains("1.2"), "{mine}");
    assert!(ram.contains("120.6 KiB"), "{ram}");
    assert_eq!(
        col(header, "VERSION"),
        col(ram, "-"),
        "no version shows as -:\n{out}"
    );
    // The devices column counts the bound devices; SHA256 is abbreviated.
    assert!(mine.split_whitespace().any(|c| c == "2"), "{mine}");
    assert!(!out.contains(SHA_MINE));
}

#[test]
fn json_flag_prints_the_answer_verbatim_and_pretty() {
    let d = daemon();
    // Global flags may follow the sub-subcommand.
    let out = d.ok(&["module", "list", "--json"]);
    assert_eq!(
        out,
        serde_json::to_string_pretty(&modules()).unwrap() + "\n"
    );
    let out = d.ok(&["device", "--json", "show", "3"]);
    assert_eq!(
        out,
        serde_json::to_string_pretty(&device3()).unwrap() + "\n"
    );
    // A 204 prints nothing.
    assert_eq!(d.ok(&["device", "rm", "3", "--json"]), "");
}

/// The parts of a multipart body: (headers, content).
fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart content type");
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--\r\n");
    assert!(body.starts_with(open.as_bytes()));
    assert!(body.ends_with(close.as_bytes()));
    let inner = &body[open.len()..body.len() - close.len()];
    let sep = format!("\r\n--{boundary}\r\n");
    let mut out = Vec::new();
    let mut rest = inner;
    loop {
        let end = rest
            .windows(sep.len())
            .position(|w| w == sep.as_bytes())
            .unwrap_or(rest.len());
        let part = &rest[..end];
        let h = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        out.push((
            String::from_utf8(part[..h].to_vec()).unwrap(),
            part[h + 4..].to_vec(),
        ));
        if end == rest.len() {
            return out;
        }
        rest = &rest[end + sep.len()..];
    }
}

#[test]
fn upload_sends_a_multipart_body_with_the_file_bytes_and_name() {
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mystore.wasm");
    // Binary content, including CR LF and bytes that are not UTF-8.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend((0..=255u8).cycle().take(5000));
    bytes.extend(b"\r\n--\r\n");
    std::fs::write(&file, &bytes).unwrap();
    let path = file.to_str().unwrap();

    let out = d.ok(&["module", "upload", path, "--version", "1.2"]);
    let reqs = d.requests();
    assert_eq!(d.lines(), ["POST /api/v1/modules"]);
    let r = &reqs[0];
    assert_eq!(r.headers["authorization"], "Bearer wt_test");
    let p = parts(&r.headers["content-type"], &r.body);
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!(p[0].0, "Content-Disposition: form-data; name=\"name\"");
    assert_eq!(p[0].1, b"mystore", "the name defaults to the file stem");
    assert_eq!(p[1].0, "Content-Disposition: form-data; name=\"version\"");
    assert_eq!(p[1].1, b"1.2");
    assert!(
        p[2].0.starts_with(
            "Content-Disposition: form-data; name=\"file\"; filename=\"mystore.wasm\""
        ),
        "{}",
        p[2].0
    );
    assert!(p[2].0.contains("Content-Type: application/wasm"));
    assert_eq!(p[2].1, bytes);
    assert!(out.starts_with("uploaded module 7 (mystore)\n"), "{out}");
    assert!(line_with(&out, "sha256").ends_with(SHA_MINE));

    // An explicit name, no version, and an admin's ?tenant=.
    d.clear();
    d.ok(&[
        "module", "upload", path, "--name", "other", "--tenant", "ac me",
    ]);
    let r = &d.requests()[0];
    assert_eq!(r.line(), "POST /api/v1/modules?tenant=ac%20me");
    let p = parts(&r.headers["content-type"], &r.body);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].1, b"other");
    assert_eq!(p[1].1, bytes);

    // A missing file is a local error; nothing is sent.
    d.clear();
    let missing = dir.path().join("nope.wasm");
    let (r, _) = d.run(
        &[
            "module",
            "upload",
            missing.to_str().unwrap(),
            "--token",
            "t",
        ],
        &[],
    );
    assert!(r.unwrap_err().contains("nope.wasm"));
    assert!(d.requests().is_empty());
}

#[test]
fn module_show_and_rm_by_id_and_by_name() {
    let d = daemon();
    let out = d.ok(&["module", "show", "7"]);
    assert_eq!(d.lines(), ["GET /api/v1/modules/7"]);
    assert!(
        line_with(&out, "size").contains("2 MiB (2097152 bytes)"),
        "{out}"
    );
    assert!(line_with(&out, "owner").ends_with("acme"));
    // Lists continue on aligned lines under their key.
    let imports = out.find("imports:").unwrap();
    assert!(
        out[imports..].starts_with(
            "imports:        wasmtap:backstore/storage@0.1.0\n                \
             wasmtap:backstore/log@0.1.0\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("bound devices:  3 (disk1)\n                4 (disk2)\n"),
        "{out}"
    );
    assert!(line_with(&out, "created").ends_with("2025-01-02T00:00:00Z"));

    d.clear();
    let out = d.ok(&["module", "rm", "mystore"]);
    assert_eq!(
        d.lines(),
        ["GET /api/v1/modules", "DELETE /api/v1/modules/7"]
    );
    assert_eq!(out, "deleted module 7\n");

    d.clear();
    let (r, _) = d.run(&["module", "rm", "nosuch", "--token", "t"], &[]);
    assert!(r.unwrap_err().contains("\"nosuch\""));
    assert_eq!(
        d.lines(),
        ["GET /api/v1/modules"],
        "no DELETE for an unknown name"
    );
}

#[test]
fn device_create_sends_the_json_body_and_resolves_module_names() {
    let d = daemon();
    let out = d.ok(&[
        "device",
        "create",
        "disk1",
        "--size",
        "64M",
        "--block-size",
        "4096",
        "--module",
        "mystore",
        "--config",
        "file=d.img",
        "--tenant",
        "acme",
    ]);
    let reqs = d.requests();
    assert_eq!(d.lines(), ["GET /api/v1/modules", "POST /api/v1/devices"]);
    assert_eq!(
        reqs[1].json(),
        json!({"name": "disk1", "size": 67108864, "block_size": 4096, "module": 7,
               "config": "file=d.img", "tenant": "acme"})
    );
    assert!(out.starts_with("created device 3 (disk1)\n"), "{out}");

    // A numeric module id is sent as is; defaults for block size and config.
    d.clear();
    d.ok(&["device", "create", "d2", "--size", "1G", "--module", "1"]);
    assert_eq!(d.lines(), ["POST /api/v1/devices"]);
    assert_eq!(
        d.requests()[0].json(),
        json!({"name": "d2", "size": 1073741824, "block_size": 512, "module": 1, "config": ""})
    );

    // Local validation: nothing is sent.
    d.clear();
    let (r, _) = d.run(
        &[
            "device", "create", "d3", "--size", "1000", "--module", "1", "--token", "t",
        ],
        &[],
    );
    assert!(r.unwrap_err().contains("multiple of the block size"));
    assert!(d.requests().is_empty());
    assert!(
        Cli::try_parse_from([
            "wasmtap",
            "device",
            "create",
            "x",
            "--size",
            "1M",
            "--module",
            "1",
            "--block-size",
            "1024"
        ])
        .is_err()
    );
    assert!(Cli::try_parse_from(["wasmtap", "device", "exercise", "3", "--secs", "601"]).is_err());
}

#[test]
fn device_subcommands_use_the_documented_routes() {
    let d = daemon();
    let cases: Vec<(Vec<&str>, Vec<&str>, Option<Value>)> = vec![
        (vec!["device", "list"], vec!["GET /api/v1/devices"], None),
        (
            vec!["device", "show", "3"],
            vec!["GET /api/v1/devices/3"],
            None,
        ),
        (
            vec!["device", "show", "disk1"],
            vec!["GET /api/v1/devices", "GET /api/v1/devices/3"],
            None,
        ),
        (
            vec!["device", "bind", "3", "--module", "7", "--config", "c=1"],
            vec!["PUT /api/v1/devices/3/module"],
            Some(json!({"module": 7, "config": "c=1"})),
        ),
        (
            vec!["device", "bind", "disk1", "--module", "ram"],
            vec![
                "GET /api/v1/devices",
                "GET /api/v1/modules",
                "PUT /api/v1/devices/3/module",
            ],
            Some(json!({"module": 1})),
        ),
        (
            vec!["device", "rm", "3"],
            vec!["DELETE /api/v1/devices/3"],
            None,
        ),
        (
            vec!["device", "export", "3"],
            vec!["POST /api/v1/devices/3/export"],
            None,
        ),
        (
            vec!["device", "unexport", "3"],
            vec!["DELETE /api/v1/devices/3/export"],
            None,
        ),
        (
            vec![
                "device",
                "exercise",
                "3",
                "--secs",
                "5",
                "--queue-depth",
                "8",
                "--mix",
                "read,write,unmap",
            ],
            vec!["POST /api/v1/devices/3/exercise"],
            Some(json!({"seconds": 5, "queue_depth": 8, "mix": "read,write,unmap"})),
        ),
        (
            vec!["device", "exercise", "3"],
            vec!["POST /api/v1/devices/3/exercise"],
            Some(json!({"seconds": 10, "queue_depth": 16, "mix": "all"})),
        ),
        (
            vec!["device", "log", "3"],
            vec!["GET /api/v1/devices/3/log"],
            None,
        ),
    ];
    for (args, want, body) in cases {
        d.clear();
        d.ok(&args);
        assert_eq!(d.lines(), want, "{args:?}");
        let reqs = d.requests();
        let last = reqs.last().unwrap();
        assert_eq!(last.headers["authorization"], "Bearer wt_test", "{args:?}");
        match body {
            Some(b) => assert_eq!(last.json(), b, "{args:?}"),
            None => assert!(last.body.is_empty(), "{args:?}"),
        }
    }
}

#[test]
fn device_human_output() {
    let d = daemon();
    let out = d.ok(&["device", "list"]);
    let header = out.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "ID", "NAME", "TENANT", "SIZE", "BLOCK", "MODULE", "STATE", "LUN"
        ]
    );
    let disk1 = line_with(&out, "disk1");
    let scratch = line_with(&out, "scratch");
    for (h, a, b) in [
        ("NAME", "disk1", "scratch"),
        ("TENANT", "acme", "globex"),
        ("MODULE", "mystore", "ram"),
        ("STATE", "running", "offline"),
    ] {
        assert_eq!(col(header, h), col(disk1, a), "{h}:\n{out}");
        assert_eq!(col(header, h), col(scratch, b), "{h}:\n{out}");
    }
    assert!(
        disk1.contains("64 MiB") && scratch.contains("1 GiB"),
        "{out}"
    );

    let out = d.ok(&["device", "show", "3"]);
    for (k, v) in [
        ("size:", "64 MiB (67108864 bytes)"),
        ("module:", "mystore (id 7)"),
        ("state:", "running"),
        ("restarts:", "2"),
        ("reads:", "6 (4 MiB)"),
        ("writes:", "4 (8 KiB)"),
        ("errors:", "5 (sense key 0x3)"),
        ("mean latency:", "123 µs"),
        (
            "lun:",
            "LUN 0 on naa.5001405aabbccdd (backstore user_1/wasmtap-3)",
        ),
        ("exercising:", "false"),
    ] {
        let l = line_with(&out, k);
        assert!(l.starts_with(k) && l.ends_with(v), "{l:?} vs {v:?}\n{out}");
    }
    // Values are aligned.
    let starts: Vec<usize> = out
        .lines()
        .map(|l| {
            l.find(':').unwrap()
                + 1
                + l[l.find(':').unwrap() + 1..]
                    .chars()
                    .take_while(|c| *c == ' ')
                    .count()
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{out}");

    assert_eq!(
        d.ok(&["device", "export", "3"]),
        "exported device 3 as LUN 0 on naa.5001405aabbccdd (backstore user_1/wasmtap-3)\n"
    );
    let out = d.ok(&["device", "log", "3"]);
    assert_eq!(
        out,
        "[info] opened\n[warn] slow\n--- debug ---\nblocks: 16384\n"
    );

    let empty = Fake::start(|_| (200, "[]".into()));
    assert_eq!(empty.ok(&["device", "list"]), "no devices\n");
}

#[test]
fn tenant_subcommands() {
    let d = daemon();
    let out = d.ok(&[
        "tenant",
        "create",
        "acme",
        "--max-devices",
        "4",
        "--max-total-size",
        "10G",
        "--max-guest-memory",
        "256M",
    ]);
    assert_eq!(d.lines(), ["POST /api/v1/tenants"]);
    assert_eq!(
        d.requests()[0].json(),
        json!({"name": "acme", "max_devices": 4, "max_total_bytes": 10737418240_u64,
               "max_guest_memory": 268435456})
    );
    assert!(out.starts_with("created tenant acme\n"), "{out}");
    assert!(line_with(&out, "devices").ends_with("2 of 16"), "{out}");
    assert!(
        line_with(&out, "total size").ends_with("1.1 GiB of 64 GiB"),
        "{out}"
    );
    assert!(
        line_with(&out, "guest memory").ends_with("2 MiB of 1 GiB"),
        "{out}"
    );
    assert!(line_with(&out, "open files").ends_with("3 of 256"), "{out}");
    assert!(line_with(&out, "modules").ends_with("1 of 32"), "{out}");
    assert!(
        line_with(&out, "module bytes").ends_with("2 MiB of 256 MiB"),
        "{out}"
    );

    d.clear();
    d.ok(&["tenant", "create", "acme"]);
    assert_eq!(d.requests()[0].json(), json!({"name": "acme"}));

    d.clear();
    d.ok(&["tenant", "set", "acme", "--max-devices", "8"]);
    assert_eq!(d.lines(), ["PATCH /api/v1/tenants/acme"]);
    assert_eq!(d.requests()[0].json(), json!({"max_devices": 8}));

    d.clear();
    let (r, _) = d.run(&["tenant", "set", "acme", "--token", "t"], &[]);
    assert!(r.unwrap_err().contains("nothing to change"));
    assert!(d.requests().is_empty());

    d.clear();
    let out = d.ok(&["tenant", "list"]);
    assert_eq!(d.lines(), ["GET /api/v1/tenants"]);
    let header = out.lines().next().unwrap();
    let globex = line_with(&out, "globex");
    assert_eq!(col(header, "DEVICES"), col(globex, "0 of 4"), "{out}");
    assert_eq!(
        col(header, "TOTAL SIZE"),
        col(globex, "0 B of 10 GiB"),
        "{out}"
    );
    assert_eq!(col(header, "GUEST MEMORY"), col(globex, "256 MiB"), "{out}");

    let simple: Vec<(&[&str], &str)> = vec![
        (&["tenant", "show", "acme"], "GET /api/v1/tenants/acme"),
        (&["tenant", "rm", "acme"], "DELETE /api/v1/tenants/acme"),
        (
            &["tenant", "token", "list", "acme"],
            "GET /api/v1/tenants/acme/tokens",
        ),
        (
            &["tenant", "token", "revoke", "acme", "5"],
            "DELETE /api/v1/tenants/acme/tokens/5",
        ),
    ];
    for (args, want) in simple {
        d.clear();
        d.ok(args);
        assert_eq!(d.lines(), [want], "{args:?}");
    }

    d.clear();
    let out = d.ok(&["tenant", "token", "create", "acme", "--label", "ci"]);
    assert_eq!(d.lines(), ["POST /api/v1/tenants/acme/tokens"]);
    assert_eq!(d.requests()[0].json(), json!({"label": "ci"}));
    assert!(
        out.contains("\n    wt_00112233445566778899aabbccddeeff00112233\n"),
        "{out}"
    );
    assert!(out.contains("only this once"));

    let out = d.ok(&["tenant", "token", "list", "acme"]);
    assert_eq!(
        out,
        "ID  LABEL   CREATED\n\
         5   ci      2023-11-14T22:13:20Z\n\
         6   laptop  2024-05-01T10:00:00Z\n"
    );
}

#[test]
fn api_errors_render_as_code_and_message() {
    let d = Fake::start(|r| match r.path.as_str() {
        "/api/v1/modules/7" => (
            409,
            json!({"error": {"code": "conflict",
                             "message": "module 7 is bound to 2 devices"}})
            .to_string(),
        ),
        "/api/v1/tenants" => (
            403,
            json!({"error": {"code": "forbidden", "message": "admin only"}}).to_string(),
        ),
        _ => (502, "bad gateway".into()),
    });
    let (r, out) = d.run(&["module", "rm", "7", "--token", "t"], &[]);
    assert_eq!(r.unwrap_err(), "conflict: module 7 is bound to 2 devices");
    assert_eq!(out, "", "human mode prints nothing on stdout");

    let (r, out) = d.run(&["tenant", "list", "--json", "--token", "t"], &[]);
    assert_eq!(r.unwrap_err(), "forbidden: admin only");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["error"]["code"], "forbidden",
        "--json prints the error JSON"
    );

    let (r, _) = d.run(&["device", "list", "--token", "t"], &[]);
    assert_eq!(r.unwrap_err(), "HTTP 502: bad gateway");
}

#[test]
fn token_resolution_order_flag_env_config() {
    let d = daemon();
    let auth = |d: &Fake| {
        let r = d.requests();
        let a = r.last().unwrap().headers["authorization"].clone();
        d.clear();
        a
    };
    let xdg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(xdg.path().join("wasmtap")).unwrap();
    std::fs::write(
        xdg.path().join("wasmtap/client.toml"),
        format!("url = \"{}\"\ntoken = \"wt_file\"\n", d.url),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".config/wasmtap")).unwrap();
    std::fs::write(
        home.path().join(".config/wasmtap/client.toml"),
        format!("url = \"{}\"\ntoken = \"wt_home\"\n", d.url),
    )
    .unwrap();
    let xdg_s = xdg.path().to_str().unwrap();
    let home_s = home.path().to_str().unwrap();

    let all = [
        ("WASMTAP_TOKEN", "wt_env"),
        ("XDG_CONFIG_HOME", xdg_s),
        ("HOME", home_s),
    ];
    d.run(&["module", "list", "--token", "wt_flag"], &all)
        .0
        .unwrap();
    assert_eq!(auth(&d), "Bearer wt_flag");
    d.run(&["module", "list"], &all).0.unwrap();
    assert_eq!(auth(&d), "Bearer wt_env");
    // No --url either: the config file's url is used.
    run(&["module", "list"], &all[1..]).0.unwrap();
    assert_eq!(auth(&d), "Bearer wt_file");
    run(&["module", "list"], &all[2..]).0.unwrap();
    assert_eq!(
        auth(&d),
        "Bearer wt_home",
        "~/.config without XDG_CONFIG_HOME"
    );
    // An empty environment variable counts as unset.
    run(
        &["module", "list"],
        &[("WASMTAP_TOKEN", ""), ("XDG_CONFIG_HOME", xdg_s)],
    )
    .0
    .unwrap();
    assert_eq!(auth(&d), "Bearer wt_file");
    // WASMTAP_URL beats the config file's url.
    let other = daemon();
    run(
        &["module", "list"],
        &[("WASMTAP_URL", &other.url), ("XDG_CONFIG_HOME", xdg_s)],
    )
    .0
    .unwrap();
    assert_eq!(other.lines(), ["GET /api/v1/modules"]);
    assert!(d.requests().is_empty());

    // Nothing anywhere: one error naming all three places; nothing sent.
    let empty = tempfile::tempdir().unwrap();
    let (r, _) = d.run(
        &["module", "list"],
        &[("HOME", empty.path().to_str().unwrap())],
    );
    let e = r.unwrap_err();
    for want in [
        "--token",
        "WASMTAP_TOKEN",
        &format!("{}/.config/wasmtap/client.toml", empty.path().display()),
    ] {
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    assert!(d.requests().is_empty());

    // A broken config file is named.
    std::fs::write(xdg.path().join("wasmtap/client.toml"), "token = 5\n").unwrap();
    let (r, _) = d.run(&["module", "list"], &[("XDG_CONFIG_HOME", xdg_s)]);
    assert!(r.unwrap_err().contains("client.toml"));
}

#[test]
fn connection_refused_names_the_url_and_suggests_serve() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let (r, out) = run(&["device", "list", "--url", &url, "--token", "t"], &[]);
    let e = r.unwrap_err();
    assert!(e.contains(&url), "{e}");
    assert!(e.contains("connection refused"), "{e}");
    assert!(e.contains("wasmtap serve"), "{e}");
    assert_eq!(out, "");

    let (r, _) = run(
        &["device", "list", "--url", "https://x:1", "--token", "t"],
        &[],
    );
    assert!(r.unwrap_err().contains("plain HTTP"));
}

#[test]
fn create_and_bind_fail_when_the_device_did_not_come_up() {
    let offline = || {
        let mut d = device3();
        d["state"] = json!("offline");
        d["reason"] = json!(
            "the backstore refused to open: invalid-config (it logged: \"file other.img: not-found\")"
        );
        d
    };
    let f = Fake::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/modules") => (200, modules().to_string()),
        ("GET", "/api/v1/devices") => (200, devices().to_string()),
        ("POST", "/api/v1/devices") => (201, offline().to_string()),
        ("PUT", "/api/v1/devices/3/module") => (200, offline().to_string()),
        _ => (404, "{}".into()),
    });
    let (r, out) = f.run(
        &[
            "device",
            "create",
            "disk1",
            "--size",
            "64M",
            "--block-size",
            "4096",
            "--module",
            "mystore",
            "--config",
            "file=other.img",
            "--token",
            "t",
        ],
        &[],
    );
    // The device is shown (it exists), and the command fails with why.
    assert!(out.contains("created device 3"), "{out}");
    let e = r.unwrap_err();
    assert!(
        e.contains("device 3 is offline")
            && e.contains("invalid-config")
            && e.contains("other.img"),
        "{e}"
    );
    let (r, _) = f.run(
        &["device", "bind", "3", "--module", "mystore", "--token", "t"],
        &[],
    );
    assert!(r.unwrap_err().contains("device 3 is offline"));
}

#[test]
fn module_name_at_version_picks_one_of_several() {
    let two = || {
        json!([
            {"id": 7, "name": "mystore", "version": "1.2", "sha256": SHA_MINE, "size": 1,
             "owner": "acme", "uploaded_by": "acme:ci", "created_at": "2025-01-02T00:00:00Z",
             "builtin": false, "imports": [], "exports": [], "bound_devices": []},
            {"id": 9, "name": "mystore", "version": "2.0", "sha256": SHA_RAM, "size": 1,
             "owner": "acme", "uploaded_by": "acme:ci", "created_at": "2025-01-03T00:00:00Z",
             "builtin": false, "imports": [], "exports": [], "bound_devices": []}
        ])
    };
    let f = Fake::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/modules") => (200, two().to_string()),
        ("POST", "/api/v1/devices") => (201, device3().to_string()),
        _ => (404, "{}".into()),
    });
    let args = |m: &'static str| -> Vec<&'static str> {
        vec![
            "device", "create", "d", "--size", "1M", "--module", m, "--token", "t",
        ]
    };
    // The bare name is ambiguous, and the error says how to choose.
    let (r, _) = f.run(&args("mystore"), &[]);
    let e = r.unwrap_err();
    assert!(e.contains("name@version"), "{e}");
    let (r, _) = f.run(&args("mystore@2.0"), &[]);
    r.unwrap();
    let last = f.requests().last().unwrap().json();
    assert_eq!(last["module"], 9);
    let (r, _) = f.run(&args("mystore@3"), &[]);
    assert!(r.unwrap_err().contains("mystore@3"));
}

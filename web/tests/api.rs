//! The JSON API end to end: the router driven with `oneshot` against a mock
//! `Host` that records every call.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmtap_web::host::{
    DeviceCounters, DeviceLive, DeviceSpec, DeviceState, FrontendInfo, FrontendKind, Histogram,
    Host, HostError, HostErrorKind, LunInfo, ModuleRefusal, ModuleReport,
};
use wasmtap_web::{ControlPlane, Quota, WebConfig, route_table};

// ------------------------------------------------------------------ mock host

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Validate(usize),
    Start(DeviceSpec),
    Stop(i64),
    Rebind(DeviceSpec),
    Debug(i64),
    Export(DeviceSpec),
    Unexport(i64, LunInfo),
    Exercise(i64, u32, u32),
}

#[derive(Debug, Default)]
struct MockHost {
    calls: Mutex<Vec<Call>>,
    refuse: Mutex<Option<(&'static str, String)>>,
    fail_start: Mutex<Option<String>>,
    /// Rebinding to a module of this name fails.
    fail_rebind_module: Mutex<Option<String>>,
    fail_debug: Mutex<Option<String>>,
    /// What `exercise` answers instead of starting.
    fail_exercise: Mutex<Option<HostError>>,
    tcmu: AtomicBool,
    counters: Mutex<HashMap<i64, DeviceCounters>>,
    /// Content hashes the control plane said no module uses any more.
    forgotten: Mutex<Vec<String>>,
    /// While set, every `start` waits (and counts itself in `starting`
    /// meanwhile).
    start_gate: AtomicBool,
    starting: std::sync::atomic::AtomicUsize,
    max_starting: std::sync::atomic::AtomicUsize,
    /// What the host serves: device id → the spec it runs.
    serving: Mutex<HashMap<i64, DeviceSpec>>,
    rebinding: Mutex<HashSet<i64>>,
    overlapping_rebinds: AtomicUsize,
    rebind_delay_ms: AtomicU64,
}

fn lun_for(id: i64) -> LunInfo {
    LunInfo {
        backstore: format!("wasmtap_{id}"),
        wwn: "naa.5001405000000001".into(),
        lun: u32::try_from(id).unwrap(),
    }
}

impl MockHost {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn push(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
    fn validations(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Validate(_)))
            .count()
    }
    fn serving(&self, id: i64) -> Option<DeviceSpec> {
        self.serving.lock().unwrap().get(&id).cloned()
    }
}

impl Host for MockHost {
    fn forget_module(&self, sha256: &str) {
        self.forgotten.lock().unwrap().push(sha256.to_string());
    }
    fn frontend(&self) -> FrontendInfo {
        if self.tcmu.load(Ordering::SeqCst) {
            FrontendInfo {
                kind: FrontendKind::Tcmu,
                note: "LIO".into(),
            }
        } else {
            FrontendInfo {
                kind: FrontendKind::Sim,
                note: "No LIO on this host: devices run on the built-in simulator.".into(),
            }
        }
    }
    fn validate(&self, bytes: &[u8]) -> Result<ModuleReport, ModuleRefusal> {
        self.push(Call::Validate(bytes.len()));
        if let Some((code, message)) = self.refuse.lock().unwrap().clone() {
            return Err(ModuleRefusal { code, message });
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(ModuleRefusal {
                code: "not_wasm",
                message: "not a WebAssembly binary".into(),
            });
        }
        Ok(ModuleReport {
            imports: vec!["wasmtap:backstore/storage@0.1.0".into()],
            exports: vec!["wasmtap:backstore/device@0.1.0".into()],
        })
    }
    fn start(&self, dev: &DeviceSpec) -> Result<(), HostError> {
        self.push(Call::Start(dev.clone()));
        if self.start_gate.load(Ordering::SeqCst) {
            let now = self.starting.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_starting.fetch_max(now, Ordering::SeqCst);
            while self.start_gate.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            self.starting.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(e) = self.fail_start.lock().unwrap().clone() {
            return Err(HostError::internal(e));
        }
        self.serving.lock().unwrap().insert(dev.id, dev.clone());
        Ok(())
    }
    fn stop(&self, id: i64) -> Result<(), HostError> {
        self.push(Call::Stop(id));
        self.serving
            .lock()
            .unwrap()
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| HostError::not_running(format!("unknown device {id}")))
    }
    fn rebind(&self, dev: &DeviceSpec) -> Result<(), HostError> {
        if !self.rebinding.lock().unwrap().insert(dev.id) {
            self.overlapping_rebinds.fetch_add(1, Ordering::SeqCst);
        }
        let delay = self.rebind_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            // Widens the window in which an unserialized bind would overlap.
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        self.push(Call::Rebind(dev.clone()));
        let fail = self.fail_rebind_module.lock().unwrap().clone();
        let result = if fail.as_deref() == Some(dev.module_name.as_str()) {
            Err(HostError::refused(format!(
                "guest {} did not open",
                dev.module_name
            )))
        } else {
            self.serving.lock().unwrap().insert(dev.id, dev.clone());
            Ok(())
        };
        self.rebinding.lock().unwrap().remove(&dev.id);
        result
    }
    fn live(&self, id: i64) -> Option<DeviceLive> {
        let spec = self.serving(id)?;
        Some(DeviceLive {
            state: DeviceState::Running,
            reason: None,
            restarts: 2,
            counters: self
                .counters
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .unwrap_or_default(),
            log: vec![format!("[info] opened {}", spec.module_name)],
            exercising: false,
            resources: None,
        })
    }
    fn debug(&self, id: i64) -> Result<String, HostError> {
        self.push(Call::Debug(id));
        match self.fail_debug.lock().unwrap().clone() {
            Some(e) => Err(HostError::internal(e)),
            None => Ok(format!("debug of {id}")),
        }
    }
    fn export(&self, dev: &DeviceSpec) -> Result<LunInfo, HostError> {
        self.push(Call::Export(dev.clone()));
        if self.tcmu.load(Ordering::SeqCst) {
            Ok(lun_for(dev.id))
        } else {
            Err(HostError::unsupported("no LIO"))
        }
    }
    fn unexport(&self, dev: &DeviceSpec, lun: &LunInfo) -> Result<(), HostError> {
        self.push(Call::Unexport(dev.id, lun.clone()));
        Ok(())
    }
    fn exercise(&self, id: i64, secs: u32, queue_depth: u32, _mix: &str) -> Result<(), HostError> {
        self.push(Call::Exercise(id, secs, queue_depth));
        match self.fail_exercise.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

// ------------------------------------------------------------------ harness

fn wasm(tag: &[u8]) -> Vec<u8> {
    let mut v = b"\0asm\x0d\0\x01\0".to_vec();
    v.extend_from_slice(tag);
    v
}

fn builtins() -> Vec<(String, Vec<u8>)> {
    vec![
        ("null".into(), wasm(b"null guest")),
        ("ram".into(), wasm(b"ram guest")),
    ]
}

struct Env {
    cp: Arc<ControlPlane>,
    app: Router,
    host: Arc<MockHost>,
    dir: tempfile::TempDir,
    admin: String,
}

fn config(dir: &Path) -> WebConfig {
    let mut cfg = WebConfig::new(dir);
    cfg.builtin_modules = builtins();
    cfg.max_module_bytes = 4096;
    cfg
}

fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(MockHost::default());
    let (cp, admin) = ControlPlane::open(config(dir.path()), host.clone()).unwrap();
    let cp = Arc::new(cp);
    Env {
        app: cp.clone().router(),
        cp,
        host,
        dir,
        admin: admin.expect("a first start generates an admin token"),
    }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, v)
}

fn request(method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

const BOUNDARY: &str = "wasmtapTestBoundary7MA4YWxk";

fn multipart(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, data) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        if *name == "file" {
            body.extend_from_slice(
                b"Content-Disposition: form-data; name=\"file\"; filename=\"m.wasm\"\r\n\
                  Content-Type: application/wasm\r\n\r\n",
            );
        } else {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn err_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

fn err_msg(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap()
}

impl Env {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send(&self.app, request(method, path, token, body.as_ref())).await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.admin), body).await
    }

    /// Creates a tenant and a token for it.
    async fn tenant(&self, name: &str) -> String {
        let (s, v) = self
            .admin("POST", "/api/v1/tenants", Some(json!({"name": name})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = self
            .admin(
                "POST",
                &format!("/api/v1/tenants/{name}/tokens"),
                Some(json!({"label": "ci"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    async fn upload(
        &self,
        token: &str,
        query: &str,
        fields: &[(&str, &[u8])],
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/api/v1/modules{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Body::from(multipart(fields)))
            .unwrap();
        send(&self.app, req).await
    }

    /// Uploads a valid module; returns its id.
    async fn module(&self, token: &str, name: &str, version: &str, tag: &[u8]) -> i64 {
        let bytes = wasm(tag);
        let (s, v) = self
            .upload(
                token,
                "",
                &[
                    ("name", name.as_bytes()),
                    ("version", version.as_bytes()),
                    ("file", &bytes),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    async fn builtin(&self, name: &str) -> i64 {
        let (_, v) = self.admin("GET", "/api/v1/modules", None).await;
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name && m["builtin"] == true)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// Creates a device; returns it.
    async fn device(&self, token: &str, name: &str, module: i64) -> Value {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/devices",
                Some(token),
                Some(json!({"name": name, "size": "1M", "block_size": 512, "module": module})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap()
}

// ------------------------------------------------------------------ routes and OpenAPI

fn openapi_path(p: &str) -> String {
    p.replace("{*", "{")
}

#[tokio::test]
async fn openapi_lists_every_route_and_nothing_else() {
    let env = setup();
    let (s, doc) = env.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let table = route_table();
    assert!(table.len() >= 27, "{table:?}");
    let mut in_doc = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            in_doc.insert((method.to_uppercase(), path.clone()));
            assert!(op["responses"].is_object(), "{method} {path}: responses");
            // Every path parameter is declared.
            let declared: HashSet<String> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(op["parameters"].as_array())
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            for seg in path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(declared.contains(name), "{method} {path}: parameter {name}");
                }
            }
        }
    }
    let in_router: HashSet<(String, String)> = table
        .iter()
        .map(|(m, p)| (m.to_string(), openapi_path(p)))
        .collect();
    let missing: Vec<_> = in_router.difference(&in_doc).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    let extra: Vec<_> = in_doc.difference(&in_router).collect();
    assert!(
        extra.is_empty(),
        "openapi.json lists routes the router lacks: {extra:?}"
    );
}

#[tokio::test]
async fn every_route_in_the_table_is_routed_and_authenticated() {
    let env = setup();
    for (method, path) in route_table() {
        let concrete = path
            .replace("{name}", "acme")
            .replace("{id}", "1")
            .replace("{*path}", "index.html");
        let (s, v) = env.call(method, &concrete, None, None).await;
        let public = path == "/api/v1/openapi.json" || path == "/" || path.starts_with("/ui/");
        if public {
            assert_eq!(s, StatusCode::OK, "{method} {path}: {v}");
        } else {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
            assert_eq!(err_code(&v), "unauthorized");
        }
    }
    let (s, v) = env.admin("GET", "/api/v1/nope", None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn ui_assets() {
    let env = setup();
    let resp = env
        .app
        .clone()
        .oneshot(request("GET", "/", None, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let (s, _) = env.call("GET", "/ui/index.html", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env.call("GET", "/ui/no/such.js", None, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}

// ------------------------------------------------------------------ auth

#[tokio::test]
async fn whoami_and_tokens() {
    let env = setup();
    let (s, v) = env.admin("GET", "/api/v1/whoami", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["role"], "admin");
    assert_eq!(v["tenant"], Value::Null);
    assert_eq!(v["frontend"]["kind"], "sim");
    assert!(v["frontend"]["note"].as_str().unwrap().contains("No LIO"));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));

    let t = env.tenant("acme").await;
    assert!(t.starts_with("wt_") && t.len() == 43, "{t}");
    assert!(t[3..].bytes().all(|c| c.is_ascii_hexdigit()));
    let (s, v) = env.call("GET", "/api/v1/whoami", Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["role"].clone(), v["tenant"].clone()),
        (json!("tenant"), json!("acme"))
    );

    // Missing, malformed, garbage.
    let (s, v) = env.call("GET", "/api/v1/whoami", None, None).await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let req = Request::builder()
        .uri("/api/v1/whoami")
        .header(header::AUTHORIZATION, format!("Basic {t}"))
        .body(Body::empty())
        .unwrap();
    let (s, v) = send(&env.app, req).await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (s, v) = env
        .call(
            "GET",
            "/api/v1/whoami",
            Some("wt_0000000000000000000000000000000000000000"),
            None,
        )
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (s, _) = env
        .call("GET", "/api/v1/whoami", Some("garbage"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Listing shows no secrets; revoking works at once.
    let (s, list) = env.admin("GET", "/api/v1/tenants/acme/tokens", None).await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "ci");
    assert!(list[0].get("token").is_none() && list[0].get("hash").is_none());
    assert!(!list[0].to_string().contains(&t[3..]));
    let tid = list[0]["id"].as_i64().unwrap();

    let other = env.tenant("other").await;
    // A token id under the wrong tenant is not found.
    let (s, _) = env
        .admin(
            "DELETE",
            &format!("/api/v1/tenants/other/tokens/{tid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .admin(
            "DELETE",
            &format!("/api/v1/tenants/acme/tokens/{tid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = env.call("GET", "/api/v1/whoami", Some(&t), None).await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (s, _) = env
        .admin(
            "DELETE",
            &format!("/api/v1/tenants/acme/tokens/{tid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The other tenant's token still works.
    let (s, _) = env.call("GET", "/api/v1/whoami", Some(&other), None).await;
    assert_eq!(s, StatusCode::OK);
    // Label is required.
    let (s, v) = env
        .admin("POST", "/api/v1/tenants/acme/tokens", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).contains("label"), "{v}");
    let (s, _) = env
        .admin(
            "POST",
            "/api/v1/tenants/nope/tokens",
            Some(json!({"label": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenant_tokens_get_403_on_every_admin_route() {
    let env = setup();
    let t = env.tenant("acme").await;
    let admin_only = [
        ("GET", "/api/v1/tenants"),
        ("POST", "/api/v1/tenants"),
        ("GET", "/api/v1/tenants/acme"),
        ("PATCH", "/api/v1/tenants/acme"),
        ("DELETE", "/api/v1/tenants/acme"),
        ("POST", "/api/v1/tenants/acme/tokens"),
        ("GET", "/api/v1/tenants/acme/tokens"),
        ("DELETE", "/api/v1/tenants/acme/tokens/1"),
        ("POST", "/api/v1/devices/1/export"),
        ("DELETE", "/api/v1/devices/1/export"),
        ("GET", "/metrics"),
    ];
    for (method, path) in admin_only {
        let (s, v) = env
            .call(
                method,
                path,
                Some(&t),
                Some(json!({"name": "x", "label": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert_eq!(err_code(&v), "forbidden");
    }
    // The tenant still exists and its token still works.
    let (s, _) = env.admin("GET", "/api/v1/tenants/acme", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn configured_admin_token_replaces_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(MockHost::default());
    let (cp, generated) = ControlPlane::open(config(dir.path()), host.clone()).unwrap();
    let generated = generated.unwrap();
    drop(cp);
    let mut cfg = config(dir.path());
    cfg.admin_token = Some("my-admin-secret".into());
    let (cp, fresh) = ControlPlane::open(cfg, host.clone()).unwrap();
    assert_eq!(fresh, None);
    let app = Arc::new(cp).router();
    let (s, v) = send(
        &app,
        request("GET", "/api/v1/whoami", Some("my-admin-secret"), None),
    )
    .await;
    assert_eq!((s, v["role"].clone()), (StatusCode::OK, json!("admin")));
    let (s, _) = send(
        &app,
        request("GET", "/api/v1/whoami", Some(&generated), None),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    drop(app);
    // A blank configured token is ignored, not made the admin token.
    let mut cfg = config(dir.path());
    cfg.admin_token = Some("  ".into());
    let (cp, fresh) = ControlPlane::open(cfg, host.clone()).unwrap();
    assert_eq!(fresh, None);
    let app = Arc::new(cp).router();
    let (s, _) = send(
        &app,
        request("GET", "/api/v1/whoami", Some("my-admin-secret"), None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    drop(app);
    // Without the configured token, nothing new is generated and it keeps working.
    let (cp, fresh) = ControlPlane::open(config(dir.path()), host).unwrap();
    assert_eq!(fresh, None);
    let app = Arc::new(cp).router();
    let (s, _) = send(
        &app,
        request("GET", "/api/v1/whoami", Some("my-admin-secret"), None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

// ------------------------------------------------------------------ tenants

#[tokio::test]
async fn tenants_crud_and_quotas() {
    let env = setup();
    let (s, v) = env
        .admin("POST", "/api/v1/tenants", Some(json!({"name": "acme"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let q = Quota::default();
    assert_eq!(v["name"], "acme");
    assert_eq!(v["max_devices"], q.max_devices);
    assert_eq!(v["max_total_bytes"], q.max_total_bytes);
    assert_eq!(v["max_guest_memory"], q.max_guest_memory);
    assert_eq!(
        v["usage"],
        json!({"devices": 0, "total_bytes": 0, "modules": 0, "module_bytes": 0})
    );
    assert_eq!(v["max_open_files"], q.max_open_files);
    assert_eq!(v["max_instances"], q.max_instances);
    assert_eq!(v["max_stored_files"], q.max_stored_files);
    assert_eq!(v["max_modules"], q.max_modules);
    assert_eq!(v["max_module_total_bytes"], q.max_module_total_bytes);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));

    let (s, v) = env
        .admin("POST", "/api/v1/tenants", Some(json!({"name": "acme"})))
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, v) = env
        .admin("POST", "/api/v1/tenants", Some(json!({"name": "Bad Name"})))
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(err_msg(&v).starts_with("name:"), "{v}");
    let (s, v) = env
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"name": "b", "max_devicez": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).contains("max_devicez"), "{v}");
    let (s, v) = env
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"name": "small", "max_devices": 1, "max_total_bytes": 3145728, "max_guest_memory": 7})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["max_guest_memory"], 7);
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/tenants")
        .header(header::AUTHORIZATION, format!("Bearer {}", env.admin))
        .body(Body::from("{not json"))
        .unwrap();
    let (s, v) = send(&env.app, req).await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let (s, v) = env.admin("GET", "/api/v1/tenants", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("acme"), json!("small")]);

    let (s, v) = env
        .admin(
            "PATCH",
            "/api/v1/tenants/small",
            Some(json!({"max_devices": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["max_devices"].clone(), v["max_guest_memory"].clone()),
        (json!(2), json!(7))
    );
    let (s, v) = env.admin("GET", "/api/v1/tenants/small", None).await;
    assert_eq!((s, v["max_devices"].clone()), (StatusCode::OK, json!(2)));
    let (s, _) = env
        .admin(
            "PATCH",
            "/api/v1/tenants/nope",
            Some(json!({"max_devices": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.admin("GET", "/api/v1/tenants/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Quotas: devices and bytes, with the numbers in the message.
    let (s, v) = env
        .admin(
            "POST",
            "/api/v1/tenants/small/tokens",
            Some(json!({"label": "l"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let t = v["token"].as_str().unwrap().to_owned();
    let ram = env.builtin("ram").await;
    let d1 = env.device(&t, "d1", ram).await;
    let (s, v) = env
        .call(
            "POST",
            "/api/v1/devices",
            Some(&t),
            Some(json!({"name": "d2", "size": "3M", "module": ram})),
        )
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "quota_exceeded"));
    assert!(err_msg(&v).contains("max_total_bytes"), "{v}");
    assert!(err_msg(&v).contains("4194304 of 3145728"), "{v}");
    let _d2 = env.device(&t, "d2", ram).await;
    let (s, v) = env
        .call(
            "POST",
            "/api/v1/devices",
            Some(&t),
            Some(json!({"name": "d3", "size": 512, "module": ram})),
        )
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "quota_exceeded"));
    assert!(
        err_msg(&v).contains("max_devices") && err_msg(&v).contains("2 of 2"),
        "{v}"
    );
    let (_, v) = env.admin("GET", "/api/v1/tenants/small", None).await;
    assert_eq!(v["usage"]["devices"], 2);
    assert_eq!(v["usage"]["total_bytes"], 2 << 20);

    // Delete: refused while it owns devices, then works and its token dies.
    let (s, v) = env.admin("DELETE", "/api/v1/tenants/small", None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
    for d in [id_of(&d1), id_of(&_d2)] {
        let (s, _) = env
            .call("DELETE", &format!("/api/v1/devices/{d}"), Some(&t), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let m = env.module(&t, "mine", "1", b"mine").await;
    let (s, v) = env.admin("DELETE", "/api/v1/tenants/small", None).await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::CONFLICT, "conflict"),
        "owns a module"
    );
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/modules/{m}"), Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env.admin("DELETE", "/api/v1/tenants/small", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env.call("GET", "/api/v1/whoami", Some(&t), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env.admin("DELETE", "/api/v1/tenants/small", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------------ modules

#[tokio::test]
async fn builtins_are_registered_once_and_visible_to_all() {
    let env = setup();
    assert_eq!(env.host.validations(), 2);
    let t = env.tenant("acme").await;
    let (s, v) = env.call("GET", "/api/v1/modules", Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for m in list {
        assert_eq!(m["owner"], Value::Null);
        assert_eq!(m["builtin"], true);
        assert_eq!(m["uploaded_by"], "builtin");
        let path = env
            .dir
            .path()
            .join("modules")
            .join(format!("{}.wasm", m["sha256"].as_str().unwrap()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            m["size"].as_u64().unwrap()
        );
        assert_eq!(m["imports"], json!(["wasmtap:backstore/storage@0.1.0"]));
    }
    let ram = env.builtin("ram").await;
    let (s, v) = env
        .call("GET", &format!("/api/v1/modules/{ram}"), Some(&t), None)
        .await;
    assert_eq!((s, v["name"].clone()), (StatusCode::OK, json!("ram")));
    for token in [&t, &env.admin] {
        let (s, v) = env
            .call(
                "DELETE",
                &format!("/api/v1/modules/{ram}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
        assert!(err_msg(&v).contains("built in"), "{v}");
    }

    // Opening again with the same built-ins validates nothing and keeps ids.
    let dir = env.dir.path().to_owned();
    let host2 = Arc::new(MockHost::default());
    let (cp2, fresh) = ControlPlane::open(config(&dir), host2.clone()).unwrap();
    assert_eq!(fresh, None);
    assert_eq!(host2.validations(), 0);
    let app2 = Arc::new(cp2).router();
    let (_, v2) = send(
        &app2,
        request("GET", "/api/v1/modules", Some(&env.admin), None),
    )
    .await;
    let (_, v1) = env.admin("GET", "/api/v1/modules", None).await;
    assert_eq!(v1, v2);
}

#[tokio::test]
async fn module_upload_get_delete_and_tenancy() {
    let env = setup();
    let a = env.tenant("a").await;
    let b = env.tenant("b").await;
    let bytes = wasm(b"my module");
    let (s, v) = env
        .upload(
            &a,
            "",
            &[("file", &bytes), ("name", b"mod"), ("version", b"1.0")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = id_of(&v);
    let sha = v["sha256"].as_str().unwrap().to_owned();
    assert_eq!(sha.len(), 64);
    assert_eq!(v["name"], "mod");
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["owner"], "a");
    assert_eq!(v["uploaded_by"], "a:ci");
    assert_eq!(v["builtin"], false);
    assert_eq!(v["size"], bytes.len());
    assert_eq!(v["exports"], json!(["wasmtap:backstore/device@0.1.0"]));
    assert_eq!(v["bound_devices"], json!([]));
    let file = env.dir.path().join("modules").join(format!("{sha}.wasm"));
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert!(env.host.calls().contains(&Call::Validate(bytes.len())));

    // Owner and admin see it; the other tenant does not.
    let (s, _) = env
        .call("GET", &format!("/api/v1/modules/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .admin("GET", &format!("/api/v1/modules/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env
        .call("GET", &format!("/api/v1/modules/{id}"), Some(&b), None)
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, _) = env.call("GET", "/api/v1/modules/999", Some(&a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.call("GET", "/api/v1/modules/abc", Some(&a), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = env.call("GET", "/api/v1/modules", Some(&b), None).await;
    assert!(list.as_array().unwrap().iter().all(|m| m["id"] != id));
    let (_, list) = env.call("GET", "/api/v1/modules", Some(&a), None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (_, list) = env.admin("GET", "/api/v1/modules", None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (s, v) = env
        .call("DELETE", &format!("/api/v1/modules/{id}"), Some(&b), None)
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "not_found"));

    // Duplicate name+version for the same owner: 409 (before validating);
    // the same name+version for another tenant is fine.
    let before = env.host.validations();
    let (s, v) = env
        .upload(
            &a,
            "",
            &[("name", b"mod"), ("version", b"1.0"), ("file", &wasm(b"x"))],
        )
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
    assert_eq!(env.host.validations(), before);
    let same_bytes_b = {
        let (s, v) = env
            .upload(
                &b,
                "",
                &[("name", b"mod"), ("version", b"1.0"), ("file", &bytes)],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        id_of(&v)
    };
    // No version: the content hash's prefix.
    let (s, v) = env
        .upload(&a, "", &[("name", b"mod"), ("file", &wasm(b"v2"))])
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["version"].as_str().unwrap(),
        &v["sha256"].as_str().unwrap()[..12]
    );

    // Admin uploads need ?tenant=.
    let (s, v) = env
        .upload(&env.admin, "", &[("name", b"adm"), ("file", &bytes)])
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(err_msg(&v).starts_with("tenant:"), "{v}");
    let (s, v) = env
        .upload(
            &env.admin,
            "?tenant=b",
            &[("name", b"adm"), ("file", &bytes)],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (
            v["owner"].clone(),
            v["uploaded_by"].as_str().unwrap().starts_with("admin")
        ),
        (json!("b"), true)
    );
    let (s, _) = env
        .upload(
            &env.admin,
            "?tenant=zzz",
            &[("name", b"adm"), ("file", &bytes)],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env
        .upload(&a, "?tenant=b", &[("name", b"sneaky"), ("file", &bytes)])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Missing fields, bad names.
    let (s, v) = env.upload(&a, "", &[("name", b"nofile")]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).starts_with("file:"), "{v}");
    let (s, v) = env.upload(&a, "", &[("file", &bytes)]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).starts_with("name:"), "{v}");
    let (s, _) = env
        .upload(&a, "", &[("name", b"Bad!"), ("file", &bytes)])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env
        .upload(
            &a,
            "",
            &[("name", b"ok"), ("version", b"a b"), ("file", &bytes)],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let req = request(
        "POST",
        "/api/v1/modules",
        Some(&a),
        Some(&json!({"name": "x"})),
    );
    let (s, v) = send(&env.app, req).await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // Delete: a shared file stays until its last module goes.
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/modules/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(file.exists(), "b's module has the same bytes");
    let (s, _) = env
        .call("GET", &format!("/api/v1/modules/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .call(
            "DELETE",
            &format!("/api/v1/modules/{same_bytes_b}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(file.exists(), "the admin's upload for b has the same bytes");
    let (_, list) = env.call("GET", "/api/v1/modules", Some(&b), None).await;
    let adm = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "adm")
        .unwrap()["id"]
        .clone();
    let (s, _) = env
        .admin("DELETE", &format!("/api/v1/modules/{adm}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!file.exists());
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path().join("modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".wasm"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn refused_module_is_422_with_the_runtime_code() {
    let env = setup();
    let a = env.tenant("a").await;
    let (s, v) = env
        .upload(&a, "", &[("name", b"junk"), ("file", b"not wasm at all")])
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_wasm")
    );
    *env.host.refuse.lock().unwrap() = Some((
        "forbidden_import",
        "imports wasi:sockets/tcp@0.2.0, which backstores may not use".into(),
    ));
    let (s, v) = env
        .upload(&a, "", &[("name", b"sock"), ("file", &wasm(b"sockets"))])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err_code(&v), "forbidden_import");
    assert!(err_msg(&v).contains("wasi:sockets/tcp"), "{v}");
    // Nothing was stored.
    let (_, list) = env.call("GET", "/api/v1/modules", Some(&a), None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let files = std::fs::read_dir(env.dir.path().join("modules"))
        .unwrap()
        .count();
    assert_eq!(files, 2, "only the built-ins' files");
}

/// A body that sends `data` and then never ends.
struct Stalling {
    data: Option<axum::body::Bytes>,
}

impl http_body::Body for Stalling {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.data.take() {
            Some(d) => Poll::Ready(Some(Ok(http_body::Frame::data(d)))),
            None => Poll::Pending,
        }
    }
}

#[tokio::test]
async fn oversized_upload_is_413_while_streaming() {
    let env = setup();
    let a = env.tenant("a").await;
    // Whole body over the limit (4096 in these tests).
    let big = wasm(&[7u8; 5000]);
    let (s, v) = env
        .upload(&a, "", &[("name", b"big"), ("file", &big)])
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    assert_eq!(env.host.validations(), 2, "never validated");
    // Exactly at the limit is fine.
    let exact = wasm(&vec![7u8; 4096 - 8]);
    assert_eq!(exact.len(), 4096);
    let (s, v) = env
        .upload(&a, "", &[("name", b"exact"), ("file", &exact)])
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // The answer comes as soon as the limit is passed: this body never ends.
    let mut head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.wasm\"\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&[1u8; 8192]);
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/modules")
        .header(header::AUTHORIZATION, format!("Bearer {a}"))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::new(Stalling {
            data: Some(head.into()),
        }))
        .unwrap();
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        env.app.clone().oneshot(req),
    )
    .await
    .expect("413 without waiting for the end of the body")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

// ------------------------------------------------------------------ devices

#[tokio::test]
async fn device_create_get_list_delete() {
    let env = setup();
    let a = env.tenant("a").await;
    let b = env.tenant("b").await;
    let ram = env.builtin("ram").await;
    let (s, v) = env
        .call(
            "POST",
            "/api/v1/devices",
            Some(&a),
            Some(json!({"name": "d1", "size": "64M", "block_size": 4096, "module": ram, "config": "fill=0"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = id_of(&v);
    assert_eq!(v["tenant"], "a");
    assert_eq!(v["name"], "d1");
    assert_eq!(v["size"], 64 << 20);
    assert_eq!(v["block_size"], 4096);
    assert_eq!(v["module"]["id"], ram);
    assert_eq!(v["module"]["name"], "ram");
    assert_eq!(v["config"], "fill=0");
    assert_eq!(v["state"], "running");
    assert_eq!(v["lun"], Value::Null);

    // The host got the right spec, the directory is private, the module file is there.
    let spec = env.host.serving(id).expect("started");
    let dir = env.dir.path().join("devices").join(id.to_string());
    assert_eq!(
        spec,
        DeviceSpec {
            id,
            tenant: "a".into(),
            name: "d1".into(),
            size: 64 << 20,
            block_size: 4096,
            module_name: "ram".into(),
            module_sha256: v["module"]["sha256"].as_str().unwrap().into(),
            module_path: env
                .dir
                .path()
                .join("modules")
                .join(format!("{}.wasm", v["module"]["sha256"].as_str().unwrap())),
            config: "fill=0".into(),
            dir: dir.clone(),
            tenant_limits: Quota::default().data_plane(),
        }
    );
    assert!(spec.module_path.is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    // Validation.
    let bad = [
        (json!({"name": "Bad", "size": 512, "module": ram}), "name:"),
        (json!({"name": "x", "size": 1000, "module": ram}), "size:"),
        (json!({"name": "x", "size": 0, "module": ram}), "size:"),
        (json!({"name": "x", "size": "12Q", "module": ram}), "size:"),
        (json!({"name": "x", "size": -512, "module": ram}), "size:"),
        (
            json!({"name": "x", "size": 4096, "block_size": 1024, "module": ram}),
            "block_size:",
        ),
        (
            json!({"name": "x", "size": 4096, "module": 9999}),
            "module:",
        ),
        (
            json!({"name": "x", "size": 4096, "module": ram, "tenant": "b"}),
            "tenant:",
        ),
        (json!({"name": "x", "module": ram}), "size"),
    ];
    for (body, field) in bad {
        let (s, v) = env
            .call("POST", "/api/v1/devices", Some(&a), Some(body.clone()))
            .await;
        assert_eq!(
            (s, err_code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
        assert!(err_msg(&v).contains(field), "{body}: {v}");
    }
    // Another tenant's module is invisible.
    let bmod = env.module(&b, "bmod", "1", b"b's").await;
    let (s, v) = env
        .call(
            "POST",
            "/api/v1/devices",
            Some(&a),
            Some(json!({"name": "x", "size": 512, "module": bmod})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).starts_with("module:"), "{v}");
    // Duplicate name in the same tenant; same name in another tenant is fine.
    let (s, v) = env
        .call(
            "POST",
            "/api/v1/devices",
            Some(&a),
            Some(json!({"name": "d1", "size": 512, "module": ram})),
        )
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
    let bd = env.device(&b, "d1", bmod).await;
    // Admin creates for a tenant.
    let (s, v) = env
        .admin(
            "POST",
            "/api/v1/devices",
            Some(json!({"name": "d2", "size": 512, "module": ram})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).starts_with("tenant:"), "{v}");
    let (s, v) = env
        .admin(
            "POST",
            "/api/v1/devices",
            Some(json!({"tenant": "a", "name": "d2", "size": 512, "module": ram})),
        )
        .await;
    assert_eq!((s, v["tenant"].clone()), (StatusCode::CREATED, json!("a")));
    let d2 = id_of(&v);

    // Lists and gets.
    let names = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["tenant"].as_str().unwrap().into(),
                    d["name"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let (_, v) = env.call("GET", "/api/v1/devices", Some(&a), None).await;
    assert_eq!(
        names(&v),
        vec![("a".into(), "d1".into()), ("a".into(), "d2".into())]
    );
    let (_, v) = env.call("GET", "/api/v1/devices", Some(&b), None).await;
    assert_eq!(names(&v), vec![("b".into(), "d1".into())]);
    let (_, v) = env.admin("GET", "/api/v1/devices", None).await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    let (_, v) = env.admin("GET", "/api/v1/devices?tenant=b", None).await;
    assert_eq!(names(&v), vec![("b".into(), "d1".into())]);
    let (s, v) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(
        (s, v["name"].clone(), v["restarts"].clone()),
        (StatusCode::OK, json!("d1"), json!(2))
    );
    let (s, _) = env
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Cross-tenant: every device route answers 404.
    let bid = id_of(&bd);
    let cross = [
        ("GET", format!("/api/v1/devices/{bid}"), None),
        ("DELETE", format!("/api/v1/devices/{bid}"), None),
        (
            "PUT",
            format!("/api/v1/devices/{bid}/module"),
            Some(json!({"module": ram})),
        ),
        ("GET", format!("/api/v1/devices/{bid}/stats"), None),
        ("GET", format!("/api/v1/devices/{bid}/log"), None),
        (
            "POST",
            format!("/api/v1/devices/{bid}/exercise"),
            Some(json!({"seconds": 1, "queue_depth": 1})),
        ),
    ];
    for (method, path, body) in cross {
        let (s, v) = env.call(method, &path, Some(&a), body).await;
        assert_eq!(
            (s, err_code(&v)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}"
        );
    }
    assert!(env.host.serving(bid).is_some(), "b's device untouched");
    let (_, v) = env
        .call("GET", &format!("/api/v1/modules/{bmod}"), Some(&b), None)
        .await;
    assert_eq!(
        v["bound_devices"],
        json!([{"id": bid, "name": "d1", "tenant": "b"}])
    );

    // Delete: stops, removes the row and the directory.
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(env.host.calls().contains(&Call::Stop(id)));
    assert!(env.host.serving(id).is_none());
    assert!(!dir.exists());
    let (s, _) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .admin("DELETE", &format!("/api/v1/devices/{d2}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn failed_start_leaves_nothing_behind() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    *env.host.fail_start.lock().unwrap() = Some("simulator is full".into());
    let (s, v) = env
        .call(
            "POST",
            "/api/v1/devices",
            Some(&a),
            Some(json!({"name": "d", "size": 512, "module": ram})),
        )
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::INTERNAL_SERVER_ERROR, "host_error")
    );
    assert!(err_msg(&v).contains("simulator is full"), "{v}");
    let (_, list) = env.call("GET", "/api/v1/devices", Some(&a), None).await;
    assert_eq!(list, json!([]));
    let dirs = std::fs::read_dir(env.dir.path().join("devices"))
        .unwrap()
        .count();
    assert_eq!(dirs, 0);
    // The name is free again.
    *env.host.fail_start.lock().unwrap() = None;
    env.device(&a, "d", ram).await;
}

#[tokio::test]
async fn module_in_use_cannot_be_deleted() {
    let env = setup();
    let a = env.tenant("a").await;
    let m = env.module(&a, "mine", "1", b"mine").await;
    let d = env.device(&a, "d", m).await;
    let (s, v) = env
        .call("DELETE", &format!("/api/v1/modules/{m}"), Some(&a), None)
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
    assert!(err_msg(&v).contains("in use"), "{v}");
    let ram = env.builtin("ram").await;
    let (s, _) = env
        .call(
            "PUT",
            &format!("/api/v1/devices/{}/module", id_of(&d)),
            Some(&a),
            Some(json!({"module": ram})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/modules/{m}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bind_swaps_the_module_and_keeps_db_and_host_in_step() {
    let env = setup();
    let a = env.tenant("a").await;
    let b = env.tenant("b").await;
    let ram = env.builtin("ram").await;
    let null_mod = env.builtin("null").await;
    let d = env.device(&a, "d", ram).await;
    let id = id_of(&d);
    let path = format!("/api/v1/devices/{id}/module");

    let (s, v) = env
        .call(
            "PUT",
            &path,
            Some(&a),
            Some(json!({"module": null_mod, "config": "x=1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["module"]["name"].clone(), v["config"].clone()),
        (json!("null"), json!("x=1"))
    );
    let served = env.host.serving(id).unwrap();
    assert_eq!(
        (served.module_name.as_str(), served.config.as_str()),
        ("null", "x=1")
    );
    assert!(matches!(env.host.calls().last(), Some(Call::Rebind(s)) if s.module_name == "null"));
    // config omitted: kept.
    let (s, v) = env
        .call("PUT", &path, Some(&a), Some(json!({"module": ram})))
        .await;
    assert_eq!((s, v["config"].clone()), (StatusCode::OK, json!("x=1")));

    // A secret value reaches the host (the daemon strips the marker for
    // the backstore) but is never shown back.
    let (s, v) = env
        .call(
            "PUT",
            &path,
            Some(&a),
            Some(json!({"module": ram, "config": "x=1,key=secret:hunter2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["config"], "x=1,key=secret:***");
    assert_eq!(
        env.host.serving(id).unwrap().config,
        "x=1,key=secret:hunter2"
    );
    let (_, v) = env
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert!(!v.to_string().contains("hunter2"), "{v}");
    let (_, v) = env.admin("GET", "/api/v1/devices", None).await;
    assert!(!v.to_string().contains("hunter2"), "{v}");
    let (s, _) = env
        .call(
            "PUT",
            &path,
            Some(&a),
            Some(json!({"module": ram, "config": "x=1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // The host refuses (the new module does not open): 422, DB unchanged.
    let broken = env.module(&a, "broken", "1", b"broken").await;
    *env.host.fail_rebind_module.lock().unwrap() = Some("broken".into());
    let (s, v) = env
        .call("PUT", &path, Some(&a), Some(json!({"module": broken})))
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "refused")
    );
    assert!(err_msg(&v).contains("did not open"), "{v}");
    let (_, v) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(v["module"]["id"], ram);
    assert_eq!(env.host.serving(id).unwrap().module_name, "ram");

    // Invisible or missing module: 400, host not called.
    let bmod = env.module(&b, "bmod", "1", b"b").await;
    let calls = env.host.calls().len();
    for m in [bmod, 12345] {
        let (s, v) = env
            .call("PUT", &path, Some(&a), Some(json!({"module": m})))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(err_msg(&v).starts_with("module:"), "{v}");
    }
    let (s, _) = env.call("PUT", &path, Some(&a), Some(json!({}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(env.host.calls().len(), calls);
    // The admin can bind too.
    let (s, _) = env
        .admin("PUT", &path, Some(json!({"module": null_mod})))
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_binds_serialize() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    let null_mod = env.builtin("null").await;
    let broken = env.module(&a, "broken", "1", b"broken").await;
    let d = env.device(&a, "d", ram).await;
    let id = id_of(&d);
    *env.host.fail_rebind_module.lock().unwrap() = Some("broken".into());
    env.host.rebind_delay_ms.store(5, Ordering::SeqCst);

    let targets = [
        null_mod, ram, broken, null_mod, broken, ram, null_mod, broken,
    ];
    let mut tasks = Vec::new();
    for (i, m) in targets.into_iter().enumerate() {
        let app = env.app.clone();
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"module": m, "config": format!("c{i}")});
            let req = request(
                "PUT",
                &format!("/api/v1/devices/{id}/module"),
                Some(&a),
                Some(&body),
            );
            (m, send(&app, req).await)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (m, (s, v)) = t.await.unwrap();
        if m == broken {
            assert_eq!(
                (s, err_code(&v)),
                (StatusCode::UNPROCESSABLE_ENTITY, "refused")
            );
        } else {
            assert_eq!(s, StatusCode::OK, "{v}");
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(env.host.overlapping_rebinds.load(Ordering::SeqCst), 0);
    let rebinds: Vec<DeviceSpec> = env
        .host
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Rebind(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(rebinds.len(), 8);
    let last_ok = rebinds
        .iter()
        .rev()
        .find(|s| s.module_name != "broken")
        .unwrap();
    assert_eq!(env.host.serving(id).as_ref(), Some(last_ok));
    let (_, v) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(v["module"]["name"], last_ok.module_name.as_str());
    assert_eq!(v["module"]["sha256"], last_ok.module_sha256.as_str());
    assert_eq!(v["config"], last_ok.config.as_str());
}

#[tokio::test]
async fn stats_log_and_exercise() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    let id = id_of(&env.device(&a, "d", ram).await);
    let counters = DeviceCounters {
        commands: 10,
        reads: 6,
        writes: 4,
        read_bytes: 6 * 4096,
        write_bytes: 4 * 4096,
        errors_by_sense_key: {
            let mut e = vec![0; 16];
            e[2] = 1;
            e
        },
        in_flight: 3,
        latency: Histogram {
            bounds_us: vec![100, 1000],
            counts: vec![7, 2, 1],
            sum_us: 5000,
        },
    };
    env.host
        .counters
        .lock()
        .unwrap()
        .insert(id, counters.clone());
    let (s, v) = env
        .call(
            "GET",
            &format!("/api/v1/devices/{id}/stats"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(v["state"], "running");
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(v["restarts"], 2);
    assert_eq!(v["counters"], serde_json::to_value(&counters).unwrap());
    let (_, dev) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(dev["counters"]["commands"], 10);

    let (s, v) = env
        .call("GET", &format!("/api/v1/devices/{id}/log"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"log": ["[info] opened ram"], "debug": format!("debug of {id}"), "guest_stats": null})
    );
    // A single device's JSON carries the backstore's own counters when the
    // host has them (this mock host keeps none).
    assert_eq!(dev["guest_stats"], Value::Null);
    *env.host.fail_debug.lock().unwrap() = Some("guest has no debug export".into());
    let (_, v) = env
        .admin("GET", &format!("/api/v1/devices/{id}/log"), None)
        .await;
    assert_eq!(v["debug"], "guest has no debug export");

    let path = format!("/api/v1/devices/{id}/exercise");
    let (s, v) = env
        .call(
            "POST",
            &path,
            Some(&a),
            Some(json!({"seconds": 5, "queue_depth": 32})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["mix"], "all", "the full command mix by default");
    assert!(env.host.calls().contains(&Call::Exercise(id, 5, 32)));
    for body in [
        json!({"seconds": 0, "queue_depth": 1}),
        json!({"seconds": 601, "queue_depth": 1}),
        json!({"seconds": 1, "queue_depth": 129}),
        json!({"seconds": 1, "queue_depth": 1, "mix": "read,trim"}),
    ] {
        let (s, v) = env.call("POST", &path, Some(&a), Some(body)).await;
        assert_eq!(
            (s, err_code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
    }
    env.host.tcmu.store(true, Ordering::SeqCst);
    let (s, v) = env
        .call(
            "POST",
            &path,
            Some(&a),
            Some(json!({"seconds": 5, "queue_depth": 1})),
        )
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "unsupported"));

    // A device the host does not know reads as stopped with zero counters.
    env.host.serving.lock().unwrap().remove(&id);
    let (_, v) = env
        .call(
            "GET",
            &format!("/api/v1/devices/{id}/stats"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["counters"]["commands"], 0);
}

/// `v` reads as a `T` and writes back as exactly `v`: the shared DTOs are
/// the shapes the server emits (the CLI parses its answers with them).
fn same_shape<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) {
    let t: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{}: {e}: {v}", std::any::type_name::<T>()));
    assert_eq!(
        &serde_json::to_value(t).unwrap(),
        v,
        "{}",
        std::any::type_name::<T>()
    );
}

#[tokio::test]
async fn every_answer_has_the_shape_of_its_dto() {
    use wasmtap_web::dto;
    let env = setup();
    env.host.counters.lock().unwrap().insert(
        1,
        DeviceCounters {
            commands: 3,
            errors_by_sense_key: vec![0; 16],
            ..DeviceCounters::default()
        },
    );
    let a = env.tenant("a").await;
    let (_, v) = env.call("GET", "/api/v1/whoami", Some(&a), None).await;
    same_shape::<dto::WhoAmI>(&v);
    let (_, v) = env.admin("GET", "/api/v1/whoami", None).await;
    same_shape::<dto::WhoAmI>(&v);
    let (_, v) = env.admin("GET", "/api/v1/tenants", None).await;
    same_shape::<Vec<dto::Tenant>>(&v);
    let (_, v) = env
        .admin(
            "PATCH",
            "/api/v1/tenants/a",
            Some(json!({"max_modules": 3})),
        )
        .await;
    same_shape::<dto::Tenant>(&v);
    let (_, v) = env
        .admin(
            "POST",
            "/api/v1/tenants/a/tokens",
            Some(json!({"label": "more"})),
        )
        .await;
    same_shape::<dto::NewToken>(&v);
    let (_, v) = env.admin("GET", "/api/v1/tenants/a/tokens", None).await;
    same_shape::<Vec<dto::Token>>(&v);
    let m = env.module(&a, "mine", "1", b"mine").await;
    let d = env.device(&a, "d", m).await;
    same_shape::<dto::Device>(&d);
    let id = id_of(&d);
    assert_eq!(id, 1);
    let (_, v) = env.call("GET", "/api/v1/modules", Some(&a), None).await;
    same_shape::<Vec<dto::Module>>(&v);
    let (_, v) = env
        .call("GET", &format!("/api/v1/modules/{m}"), Some(&a), None)
        .await;
    same_shape::<dto::Module>(&v);
    let (_, v) = env.call("GET", "/api/v1/devices", Some(&a), None).await;
    same_shape::<Vec<dto::Device>>(&v);
    let (_, v) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    same_shape::<dto::DeviceDetail>(&v);
    for route in ["stats", "log"] {
        let (_, v) = env
            .call(
                "GET",
                &format!("/api/v1/devices/{id}/{route}"),
                Some(&a),
                None,
            )
            .await;
        match route {
            "stats" => same_shape::<dto::DeviceStats>(&v),
            _ => same_shape::<dto::DeviceLog>(&v),
        }
    }
    let (s, v) = env
        .call(
            "POST",
            &format!("/api/v1/devices/{id}/exercise"),
            Some(&a),
            Some(json!({"seconds": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    same_shape::<dto::ExerciseStarted>(&v);
    let (_, v) = env
        .call(
            "PUT",
            &format!("/api/v1/devices/{id}/module"),
            Some(&a),
            Some(json!({"module": m})),
        )
        .await;
    same_shape::<dto::Device>(&v);
    env.host.tcmu.store(true, Ordering::SeqCst);
    let (_, v) = env
        .admin("POST", &format!("/api/v1/devices/{id}/export"), None)
        .await;
    same_shape::<dto::Exported>(&v);
    let (_, v) = env.call("GET", "/api/v1/tenants", Some(&a), None).await;
    same_shape::<dto::ErrorBody>(&v);
}

/// Every kind of host refusal answers its own status and code, with the
/// host's message after what the API asked.
#[tokio::test]
async fn host_errors_answer_the_status_of_their_kind() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    let id = id_of(&env.device(&a, "d", ram).await);
    let path = format!("/api/v1/devices/{id}/exercise");
    let cases = [
        (
            HostErrorKind::NotRunning,
            StatusCode::CONFLICT,
            "not_running",
        ),
        (HostErrorKind::Busy, StatusCode::SERVICE_UNAVAILABLE, "busy"),
        (HostErrorKind::Conflict, StatusCode::CONFLICT, "conflict"),
        (
            HostErrorKind::Refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
        ),
        (HostErrorKind::Limit, StatusCode::CONFLICT, "quota_exceeded"),
        (
            HostErrorKind::Unsupported,
            StatusCode::CONFLICT,
            "unsupported",
        ),
        (
            HostErrorKind::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "host_error",
        ),
    ];
    for (kind, status, code) in cases {
        *env.host.fail_exercise.lock().unwrap() = Some(HostError::new(kind, "the host says no"));
        let (s, v) = env.call("POST", &path, Some(&a), Some(json!({}))).await;
        assert_eq!((s, err_code(&v)), (status, code), "{kind:?}: {v}");
        assert_eq!(err_msg(&v), "exercise: the host says no", "{kind:?}");
    }
}

#[tokio::test]
async fn export_and_unexport() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    let id = id_of(&env.device(&a, "d", ram).await);
    let path = format!("/api/v1/devices/{id}/export");
    // Sim: unsupported, host not asked.
    let (s, v) = env.admin("POST", &path, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "unsupported"));
    assert!(
        !env.host
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Export(_)))
    );

    env.host.tcmu.store(true, Ordering::SeqCst);
    let (s, v) = env.call("POST", &path, Some(&a), None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = env.admin("POST", &path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["lun"], serde_json::to_value(lun_for(id)).unwrap());
    let (_, dev) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(dev["lun"], serde_json::to_value(lun_for(id)).unwrap());
    let (s, v) = env.admin("POST", &path, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, _) = env.admin("POST", "/api/v1/devices/999/export", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = env.admin("DELETE", &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(env.host.calls().contains(&Call::Unexport(id, lun_for(id))));
    let (_, dev) = env
        .call("GET", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(dev["lun"], Value::Null);
    let (s, v) = env.admin("DELETE", &path, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "not_found"));

    // Deleting an exported device removes the LUN first, then stops it.
    let (s, _) = env.admin("POST", &path, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/devices/{id}"), Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let calls = env.host.calls();
    let unexport = calls
        .iter()
        .rposition(|c| matches!(c, Call::Unexport(..)))
        .unwrap();
    let stop = calls.iter().rposition(|c| *c == Call::Stop(id)).unwrap();
    assert!(unexport < stop, "{calls:?}");
}

#[tokio::test]
async fn metrics_in_prometheus_text_format() {
    let env = setup();
    env.tenant("idle").await;
    let t = env.tenant("acme").await;
    let ram = env.builtin("ram").await;
    let id = id_of(&env.device(&t, "d", ram).await);
    env.host.counters.lock().unwrap().insert(
        id,
        DeviceCounters {
            commands: 42,
            read_bytes: 8192,
            errors_by_sense_key: {
                let mut e = vec![0; 16];
                e[5] = 3;
                e
            },
            latency: Histogram {
                bounds_us: vec![100, 1000],
                counts: vec![1, 2, 3],
                sum_us: 7_000_000,
            },
            ..Default::default()
        },
    );
    let (s, v) = env.call("GET", "/metrics", Some(&t), None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, _) = env.call("GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let resp = env
        .app
        .clone()
        .oneshot(request("GET", "/metrics", Some(&env.admin), None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let labels = "tenant=\"acme\",device=\"d\",module=\"ram\"";
    for line in [
        format!("wasmtap_device_commands_total{{{labels}}} 42"),
        format!("wasmtap_device_read_bytes_total{{{labels}}} 8192"),
        format!("wasmtap_device_errors_total{{{labels},sense_key=\"ILLEGAL_REQUEST\"}} 3"),
        format!("wasmtap_device_errors_total{{{labels},sense_key=\"NOT_READY\"}} 0"),
        format!("wasmtap_device_latency_seconds_bucket{{{labels},le=\"0.0001\"}} 1"),
        format!("wasmtap_device_latency_seconds_bucket{{{labels},le=\"0.001\"}} 3"),
        format!("wasmtap_device_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 6"),
        format!("wasmtap_device_latency_seconds_sum{{{labels}}} 7.0"),
        format!("wasmtap_device_latency_seconds_count{{{labels}}} 6"),
        format!("wasmtap_device_guest_restarts_total{{{labels}}} 2"),
        format!("wasmtap_device_up{{{labels}}} 1"),
        "wasmtap_tenant_devices{tenant=\"acme\"} 1".into(),
        "wasmtap_tenant_devices{tenant=\"idle\"} 0".into(),
        "wasmtap_tenant_device_bytes{tenant=\"acme\"} 1048576".into(),
        "wasmtap_tenant_commands_total{tenant=\"acme\"} 42".into(),
        "wasmtap_up 1".into(),
        "# TYPE wasmtap_device_latency_seconds histogram".into(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    for family in [
        "wasmtap_process_start_time_seconds",
        "wasmtap_process_resident_memory_bytes",
        "wasmtap_process_threads",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{family} ")))
            .unwrap();
        let v: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(v > 0.0, "{line}");
    }
}

// ------------------------------------------------------------------ restart

#[tokio::test]
async fn restart_keeps_everything_and_restores_devices() {
    let env = setup();
    env.host.tcmu.store(true, Ordering::SeqCst);
    let a = env.tenant("a").await;
    let b = env.tenant("b").await;
    let (s, _) = env
        .admin(
            "PATCH",
            "/api/v1/tenants/b",
            Some(json!({"max_guest_memory": 12345})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let ram = env.builtin("ram").await;
    let mine = env.module(&a, "mine", "2", b"mine").await;
    let d1 = id_of(&env.device(&a, "d1", ram).await);
    let d2 = id_of(&env.device(&b, "d2", ram).await);
    let (s, _) = env
        .call(
            "PUT",
            &format!("/api/v1/devices/{d1}/module"),
            Some(&a),
            Some(json!({"module": mine, "config": "k=v"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .admin("POST", &format!("/api/v1/devices/{d2}/export"), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    let snapshot = |app: Router, admin: String| async move {
        let mut out = Vec::new();
        for path in [
            "/api/v1/tenants",
            "/api/v1/modules",
            "/api/v1/tenants/a/tokens",
            "/api/v1/tenants/b/tokens",
        ] {
            out.push(send(&app, request("GET", path, Some(&admin), None)).await.1);
        }
        let (_, devices) = send(&app, request("GET", "/api/v1/devices", Some(&admin), None)).await;
        for d in devices.as_array().unwrap() {
            out.push(json!([
                d["id"],
                d["tenant"],
                d["name"],
                d["size"],
                d["block_size"],
                d["module"],
                d["config"],
                d["lun"],
                d["created_at"]
            ]));
        }
        out
    };
    let before = snapshot(env.app.clone(), env.admin.clone()).await;
    let specs_before: Vec<DeviceSpec> = [d1, d2]
        .iter()
        .map(|&id| env.host.serving(id).unwrap())
        .collect();
    assert_eq!(specs_before[0].module_name, "mine");
    assert_eq!(specs_before[1].tenant_limits.memory, 12345);

    let dir = env.dir;
    drop(env.app);
    drop(env.cp);
    let host2 = Arc::new(MockHost::default());
    host2.tcmu.store(true, Ordering::SeqCst);
    let (cp2, fresh) = ControlPlane::open(config(dir.path()), host2.clone()).unwrap();
    assert_eq!(fresh, None, "no new admin token on restart");
    assert!(
        host2.calls().is_empty(),
        "built-ins are not validated again: {:?}",
        host2.calls()
    );
    cp2.restore();
    let mut starts: Vec<DeviceSpec> = host2
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start(s) => Some(s),
            _ => None,
        })
        .collect();
    // Restored in parallel: in any order.
    starts.sort_by_key(|s| s.id);
    assert_eq!(starts, specs_before);
    assert!(
        host2
            .calls()
            .contains(&Call::Export(specs_before[1].clone()))
    );
    let cp2 = Arc::new(cp2);
    let app2 = cp2.clone().router();
    let after = snapshot(app2.clone(), env.admin.clone()).await;
    assert_eq!(before, after);
    // Tenant tokens survive.
    for t in [&a, &b] {
        let (s, _) = send(&app2, request("GET", "/api/v1/whoami", Some(t), None)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (_, v) = send(
        &app2,
        request("GET", &format!("/api/v1/devices/{d2}"), Some(&b), None),
    )
    .await;
    assert_eq!(v["lun"], serde_json::to_value(lun_for(d2)).unwrap());
    assert_eq!(v["state"], "running");
}

#[tokio::test]
async fn restore_logs_failures_and_goes_on() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    let d1 = id_of(&env.device(&a, "d1", ram).await);
    let d2 = id_of(&env.device(&a, "d2", ram).await);
    let host2 = Arc::new(MockHost::default());
    *host2.fail_start.lock().unwrap() = Some("no".into());
    let (cp2, _) = ControlPlane::open(config(env.dir.path()), host2.clone()).unwrap();
    cp2.restore();
    let mut started: Vec<i64> = host2
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start(s) => Some(s.id),
            _ => None,
        })
        .collect();
    started.sort();
    assert_eq!(started, vec![d1, d2]);
}

/// Issue 11, row 11: the API answers while devices are restored, a few
/// at a time; each shows `restoring` until it is up, and a call on one
/// waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_restored_in_parallel_while_the_api_serves() {
    let env = setup();
    let a = env.tenant("a").await;
    let ram = env.builtin("ram").await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(id_of(&env.device(&a, &format!("d{i}"), ram).await));
    }
    let host2 = Arc::new(MockHost::default());
    host2.start_gate.store(true, Ordering::SeqCst);
    let (cp2, _) = ControlPlane::open(config(env.dir.path()), host2.clone()).unwrap();
    let cp2 = Arc::new(cp2);
    let app2 = cp2.clone().router();
    let restorer = {
        let cp2 = cp2.clone();
        std::thread::spawn(move || cp2.restore())
    };
    // Every start blocks on the gate: the first wave is in `start`.
    while host2.starting.load(Ordering::SeqCst) < wasmtap_web::RESTORE_PARALLEL {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (s, v) = send(&app2, request("GET", "/api/v1/devices", Some(&a), None)).await;
    assert_eq!(s, StatusCode::OK, "the API answers during the restore");
    let states: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["restoring"; 8]);
    host2.start_gate.store(false, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || restorer.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        host2.max_starting.load(Ordering::SeqCst),
        wasmtap_web::RESTORE_PARALLEL,
        "a few at a time, never more"
    );
    let (_, v) = send(&app2, request("GET", "/api/v1/devices", Some(&a), None)).await;
    for d in v.as_array().unwrap() {
        assert_eq!(d["state"], "running", "{d}");
    }
}

// ------------------------------------------------------------------ over TCP

/// The whole stack over a real socket: a request, and an oversized upload
/// answered 413 while the client has not finished sending.
/// The CLI against the real server (over TCP, with the mock host): every
/// command group parses the answers it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_what_the_server_answers() {
    use wasmtap_web::cli::{self, ClientOpts, Command, DeviceCmd, ModuleCmd, TenantCmd, TokenCmd};
    let env = setup();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(env.cp.clone().serve(listener, async {
        let _ = stop_rx.await;
    }));
    let a = env.tenant("a").await;
    let m = env.module(&a, "mine", "1", b"mine").await;
    let run = |token: &str, cmd: Command| {
        let opts = ClientOpts {
            url: Some(url.clone()),
            token: Some(token.to_string()),
            json: false,
        };
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let r = cli::run_with(&opts, cmd, &|_| None, &mut out);
            (r, String::from_utf8(out).unwrap())
        })
    };
    let admin = env.admin.clone();
    let ok = |(r, out): (Result<(), String>, String)| {
        r.unwrap_or_else(|e| panic!("{e}\n{out}"));
        out
    };
    let out = ok(run(
        &a,
        Command::Device(DeviceCmd::Create {
            name: "d".into(),
            size: 1 << 20,
            block_size: 512,
            module: "mine".into(),
            config: "k=secret:v".into(),
            tenant: None,
        }),
    )
    .await
    .unwrap());
    assert!(out.starts_with("created device 1 (d)\n"), "{out}");
    assert!(out.contains("k=secret:***"), "{out}");
    for cmd in [
        Command::Device(DeviceCmd::List),
        Command::Device(DeviceCmd::Show { id: "d".into() }),
        Command::Device(DeviceCmd::Log { id: "1".into() }),
        Command::Device(DeviceCmd::Exercise {
            id: "d".into(),
            secs: 1,
            queue_depth: 1,
            mix: "rw".into(),
        }),
        Command::Device(DeviceCmd::Bind {
            id: "d".into(),
            module: format!("{m}"),
            config: None,
        }),
        Command::Module(ModuleCmd::List),
        Command::Module(ModuleCmd::Show {
            id: "mine@1".into(),
        }),
    ] {
        ok(run(&a, cmd).await.unwrap());
    }
    for cmd in [
        Command::Tenant(TenantCmd::List),
        Command::Tenant(TenantCmd::Show { name: "a".into() }),
        Command::Tenant(TenantCmd::Token {
            cmd: TokenCmd::Create {
                tenant: "a".into(),
                label: "more".into(),
            },
        }),
        Command::Tenant(TenantCmd::Token {
            cmd: TokenCmd::List { tenant: "a".into() },
        }),
        Command::Device(DeviceCmd::Rm { id: "1".into() }),
    ] {
        ok(run(&admin, cmd).await.unwrap());
    }
    // An error answer reads as code and message.
    let (r, _) = run(&a, Command::Tenant(TenantCmd::List)).await.unwrap();
    assert_eq!(
        r.unwrap_err(),
        "forbidden: this route needs the admin token"
    );
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = setup();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(env.cp.clone().serve(listener, async {
        let _ = stop_rx.await;
    }));

    let read_all = |mut s: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            env.admin
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let resp = read_all(s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"role\":\"admin\""), "{resp}");

    let t = env.tenant("a").await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let declared = 10 << 20;
    let mut head = format!(
        "POST /api/v1/modules HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.wasm\"\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&[1u8; 16384]);
    s.write_all(&head).await.unwrap();
    // The rest of the declared 10 MiB is never sent.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("answered before the body ended")
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("too_large"), "{resp}");

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// ------------------------------------------------------------ module quota

/// Issue 11, row 7: a tenant's modules are bounded in count and total size,
/// refused before anything is compiled; deleting the last module with some
/// content tells the data plane to drop its compiled code.
#[tokio::test]
async fn module_quota_is_checked_before_compiling_and_deleted_code_is_forgotten() {
    let env = setup();
    let tok = env.tenant("acme").await;
    let (s, v) = env
        .admin(
            "PATCH",
            "/api/v1/tenants/acme",
            Some(json!({"max_modules": 2, "max_module_total_bytes": 100})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["max_modules"].as_u64(),
            v["max_module_total_bytes"].as_u64()
        ),
        (Some(2), Some(100))
    );
    let a = env.module(&tok, "a", "1", b"first").await;
    // Too big for what is left (100 - 13 bytes): refused, never validated.
    let before = env.host.validations();
    let big = wasm(&[7u8; 90]);
    let (s, v) = env
        .upload(&tok, "", &[("name", b"big".as_slice()), ("file", &big)])
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::CONFLICT, "quota_exceeded"),
        "{v}"
    );
    assert!(err_msg(&v).contains("max_module_total_bytes"), "{v}");
    assert_eq!(env.host.validations(), before, "nothing was compiled");
    env.module(&tok, "b", "1", b"second").await;
    let (s, v) = env
        .upload(
            &tok,
            "",
            &[("name", b"c".as_slice()), ("file", &wasm(b"third"))],
        )
        .await;
    assert_eq!(
        (s, err_code(&v)),
        (StatusCode::CONFLICT, "quota_exceeded"),
        "{v}"
    );
    assert!(err_msg(&v).contains("max_modules"), "{v}");
    assert_eq!(env.host.validations(), before + 1);
    let (_, t) = env.admin("GET", "/api/v1/tenants/acme", None).await;
    assert_eq!(t["usage"]["modules"], 2);
    assert_eq!(t["usage"]["module_bytes"], 2 * 8 + 5 + 6);
    // Deleting one makes room, and the data plane forgets its code.
    let (s, _) = env
        .call("DELETE", &format!("/api/v1/modules/{a}"), Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let forgotten = env.host.forgotten.lock().unwrap().clone();
    assert_eq!(forgotten.len(), 1);
    env.module(&tok, "c", "1", b"third").await;
}

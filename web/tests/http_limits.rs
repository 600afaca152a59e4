//! The HTTP server under hostile clients (issue 11, rows 4 and 10): the real
//! server on a loopback socket with small limits. Slow clients are cut by
//! the header, idle and body timeouts; connections past the total and
//! per-peer limits are refused; a victim is answered meanwhile. Every
//! response carries the security headers; the state files are private.
//!
//! Loopback only: clients bind 127.0.0.x source addresses to act as
//! different peers.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wasmtap_web::host::{
    DeviceLive, DeviceSpec, FrontendInfo, FrontendKind, Host, HostError, LunInfo, ModuleRefusal,
    ModuleReport,
};
use wasmtap_web::{CONTENT_SECURITY_POLICY, ControlPlane, HttpLimits, WebConfig};

/// How long a victim may wait for its answer.
const VICTIM_DEADLINE: Duration = Duration::from_secs(2);
/// Slack on top of a timeout before a test calls a connection "not cut".
const SLACK: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ harness

#[derive(Debug)]
struct NullHost;

impl Host for NullHost {
    fn frontend(&self) -> FrontendInfo {
        FrontendInfo {
            kind: FrontendKind::Sim,
            note: String::new(),
        }
    }
    fn validate(&self, bytes: &[u8]) -> Result<ModuleReport, ModuleRefusal> {
        if bytes.starts_with(b"\0asm") {
            Ok(ModuleReport::default())
        } else {
            Err(ModuleRefusal {
                code: "not_wasm",
                message: "not a WebAssembly binary".into(),
            })
        }
    }
    fn start(&self, _: &DeviceSpec) -> Result<(), HostError> {
        Ok(())
    }
    fn stop(&self, _: i64) -> Result<(), HostError> {
        Ok(())
    }
    fn rebind(&self, _: &DeviceSpec) -> Result<(), HostError> {
        Ok(())
    }
    fn live(&self, _: i64) -> Option<DeviceLive> {
        None
    }
    fn debug(&self, _: i64) -> Result<String, HostError> {
        Ok(String::new())
    }
    fn export(&self, _: &DeviceSpec) -> Result<LunInfo, HostError> {
        Err(HostError::unsupported("no LIO"))
    }
    fn unexport(&self, _: &DeviceSpec, _: &LunInfo) -> Result<(), HostError> {
        Ok(())
    }
    fn exercise(&self, _: i64, _: u32, _: u32, _: &str) -> Result<(), HostError> {
        Ok(())
    }
}

fn wasm(tag: &[u8]) -> Vec<u8> {
    let mut v = b"\0asm\x0d\0\x01\0".to_vec();
    v.extend_from_slice(tag);
    v
}

/// A server on 127.0.0.1 with its own data directory.
struct Server {
    addr: SocketAddr,
    admin: String,
    data: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Limits with long timeouts and high connection limits; tests lower the
/// one they exercise.
fn relaxed() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        body_read_timeout: Duration::from_secs(30),
        max_connections: 1000,
        max_connections_per_peer: 1000,
    }
}

async fn start(limits: HttpLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = WebConfig::new(&data);
    cfg.http = limits;
    cfg.builtin_modules = vec![("ram".into(), wasm(b"ram guest"))];
    let (cp, admin) = ControlPlane::open(cfg, Arc::new(NullHost)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Arc::new(cp).serve(listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        admin: admin.expect("a fresh data dir generates the admin token"),
        data,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Server {
    /// Stops the server; it must have returned within `within`. Returns
    /// the data directory's temporary parent (removed when dropped).
    async fn shut_down(mut self, within: Duration) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(within, &mut self.task)
            .await
            .expect("the server stops in time")
            .unwrap()
            .unwrap();
        self._dir
    }
}

/// A connection to `addr` from source address `src` (127.0.0.x).
async fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    assert!(src.starts_with("127."), "loopback only");
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    sock.connect(addr).await.unwrap()
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (head, then `Content-Length` bytes, or to the end).
async fn read_response(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    match len {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            s.read_to_end(&mut body).await?;
        }
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Writes a request; `Connection: close` unless `keep_alive`.
async fn send(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    token: Option<&str>,
    keep_alive: bool,
) -> std::io::Result<()> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let conn = if keep_alive { "keep-alive" } else { "close" };
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: {conn}\r\n\r\n")
            .as_bytes(),
    )
    .await
}

/// One request on a new connection from `src`, answered within `within`.
async fn request_from(
    src: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    within: Duration,
) -> Resp {
    let t = Instant::now();
    let r = tokio::time::timeout(within, async {
        let mut s = connect_from(src, addr).await;
        send(&mut s, method, path, token, false).await?;
        read_response(&mut s).await
    })
    .await;
    match r {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("{method} {path} from {src}: {e}"),
        Err(_) => panic!(
            "{method} {path} from {src}: no answer within {within:?} (waited {:?})",
            t.elapsed()
        ),
    }
}

/// A victim's `GET /api/v1/whoami` as admin from `src`: 200 within
/// [`VICTIM_DEADLINE`].
async fn victim(srv: &Server, src: &str) {
    let r = request_from(
        src,
        srv.addr,
        "GET",
        "/api/v1/whoami",
        Some(&srv.admin),
        VICTIM_DEADLINE,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["role"], "admin");
}

/// Creates tenant `name` (admin).
async fn create_tenant(srv: &Server, name: &str) {
    let mut s = connect_from("127.0.0.1", srv.addr).await;
    let body = format!(r#"{{"name":"{name}"}}"#);
    s.write_all(
        format!(
            "POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            srv.admin,
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

/// `/metrics` as admin, from 127.0.0.9 (its own peer).
async fn metrics(srv: &Server) -> String {
    let r = request_from(
        "127.0.0.9",
        srv.addr,
        "GET",
        "/metrics",
        Some(&srv.admin),
        VICTIM_DEADLINE,
    )
    .await;
    assert_eq!(r.status, 200);
    r.text()
}

/// The value of the sample `series` (name and labels exactly as printed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// Reads until the server closes the connection (EOF or reset); the time
/// that took, or `None` if it is still open after `limit`.
async fn wait_closed(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(t + limit, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn assert_security_headers(r: &Resp, what: &str) {
    assert_eq!(
        r.header("content-security-policy"),
        Some(CONTENT_SECURITY_POLICY),
        "{what}: CSP"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
}

// ------------------------------------------------------------------ tests

/// Row 4: 100 clients that send half a request line and stall. Each is
/// disconnected once the header timeout has passed (not before), and while
/// they are all open a victim is answered within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_and_do_not_block_others() {
    let header = Duration::from_secs(2);
    let srv = start(HttpLimits {
        header_read_timeout: header,
        ..relaxed()
    })
    .await;
    let mut loris = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let mut s = connect_from("127.0.0.1", srv.addr).await;
        s.write_all(b"GET / HT").await.unwrap();
        loris.push((t, s));
    }
    // All 100 are open (the metrics request sees them) and victims are
    // answered, from another address and from the attacker's own.
    let m = metrics(&srv).await;
    assert!(
        sample(&m, "wasmtap_http_connections_open") >= 101.0,
        "the slow clients are open while the victim is served:\n{m}"
    );
    victim(&srv, "127.0.0.2").await;
    victim(&srv, "127.0.0.1").await;

    let mut waits = JoinSet::new();
    for (t, mut s) in loris {
        waits.spawn(async move {
            let closed = wait_closed(&mut s, header + SLACK).await;
            (closed.map(|_| t.elapsed()), s)
        });
    }
    let mut held = Vec::new();
    while let Some(r) = waits.join_next().await {
        let (after, s) = r.unwrap();
        let after = after.expect("a slow client is disconnected after the header timeout");
        assert!(after >= header, "cut after {after:?}, before the timeout");
        held.push(s);
    }
    let m = metrics(&srv).await;
    assert_eq!(
        sample(
            &m,
            "wasmtap_http_connections_timed_out_total{timeout=\"header\"}"
        ),
        100.0,
        "{m}"
    );
    drop(held);
    srv.shut_down(Duration::from_secs(5)).await;
}

/// A client that connects and sends nothing is cut by the header timeout
/// too; a kept-alive connection between requests is not: it waits for the
/// idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_the_header_timeout_then_closes() {
    let header = Duration::from_secs(1);
    let idle = Duration::from_secs(3);
    let srv = start(HttpLimits {
        header_read_timeout: header,
        idle_timeout: idle,
        ..relaxed()
    })
    .await;

    let mut silent = connect_from("127.0.0.1", srv.addr).await;
    let mut s = connect_from("127.0.0.1", srv.addr).await;
    send(&mut s, "GET", "/api/v1/whoami", Some(&srv.admin), true)
        .await
        .unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200);
    // Longer than the header timeout, shorter than the idle one.
    tokio::time::sleep(header + Duration::from_millis(500)).await;
    let sent = Instant::now();
    send(&mut s, "GET", "/api/v1/whoami", Some(&srv.admin), true)
        .await
        .unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200, "the kept-alive connection still serves");
    wait_closed(&mut s, idle + SLACK)
        .await
        .expect("an idle kept-alive connection is closed after the idle timeout");
    // The server's idle time starts after it received the request.
    let waited = sent.elapsed();
    assert!(
        waited >= idle,
        "closed after {waited:?}, before the idle timeout"
    );

    assert!(
        wait_closed(&mut silent, header + SLACK).await.is_some(),
        "a silent connection is cut by the header timeout"
    );
    let m = metrics(&srv).await;
    assert_eq!(
        sample(
            &m,
            "wasmtap_http_connections_timed_out_total{timeout=\"idle\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "wasmtap_http_connections_timed_out_total{timeout=\"header\"}"
        ),
        1.0,
        "{m}"
    );
    srv.shut_down(Duration::from_secs(5)).await;
}

/// A client that asks for responses and never reads them is cut once
/// writing has made no progress for the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut() {
    let idle = Duration::from_secs(1);
    let srv = start(HttpLimits {
        idle_timeout: idle,
        ..relaxed()
    })
    .await;
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut s = sock.connect(srv.addr).await.unwrap();
    // Pipelined requests for ~60 KB each: far more than the socket buffers.
    let one = "GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(one.repeat(500).as_bytes()).await.unwrap();
    let end = Instant::now() + idle + SLACK;
    loop {
        let m = metrics(&srv).await;
        if sample(
            &m,
            "wasmtap_http_connections_timed_out_total{timeout=\"send\"}",
        ) == 1.0
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the non-reading client is never cut:\n{}",
            m.lines()
                .filter(|l| l.starts_with("wasmtap_http"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_closed(&mut s, SLACK).await.is_some(),
        "the connection is closed"
    );
    victim(&srv, "127.0.0.1").await;
    srv.shut_down(Duration::from_secs(5)).await;
}

/// A stalled upload, and one that trickles a byte every 50 ms, are both cut
/// when the body timeout has passed: 408 `timeout`, then the connection
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_trickled_uploads_are_cut_by_the_body_timeout() {
    let body = Duration::from_secs(1);
    let srv = start(HttpLimits {
        body_read_timeout: body,
        ..relaxed()
    })
    .await;
    create_tenant(&srv, "t1").await;
    let boundary = "b0undary";
    let head = format!(
        "POST /api/v1/modules?tenant=t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.wasm\"\r\n\r\n\0asm",
        srv.admin
    );
    for trickle in [false, true] {
        let t = Instant::now();
        let mut s = connect_from("127.0.0.1", srv.addr).await;
        s.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let dripper = tokio::spawn(async move {
            if trickle {
                // Until the server closes (or the test aborts this task).
                while wr.write_all(b"x").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            wr
        });
        // Everything until the server closes. Trickled bytes that arrive
        // after the server stopped reading make its close a reset, which
        // may come before the answer is read.
        let (r, reset) = tokio::time::timeout(body + SLACK, async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) => break (buf, false),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(_) => break (buf, true),
                }
            }
        })
        .await
        .expect("the upload is cut after the body timeout");
        let elapsed = t.elapsed();
        assert!(elapsed >= body, "cut after {elapsed:?}");
        let text = String::from_utf8_lossy(&r);
        if !(trickle && reset && r.is_empty()) {
            assert!(
                text.starts_with("HTTP/1.1 408"),
                "trickle {trickle}: {text}"
            );
            assert!(text.contains("\"code\":\"timeout\""), "{text}");
            assert!(
                text.to_ascii_lowercase().contains(&format!(
                    "content-security-policy: {}",
                    CONTENT_SECURITY_POLICY.to_ascii_lowercase()
                )),
                "{text}"
            );
        }
        dripper.abort();
    }
    victim(&srv, "127.0.0.1").await;
    let m = metrics(&srv).await;
    assert_eq!(
        sample(
            &m,
            "wasmtap_http_connections_timed_out_total{timeout=\"body\"}"
        ),
        2.0,
        "{m}"
    );
    srv.shut_down(Duration::from_secs(5)).await;
}

/// The per-peer limit: one address holds its 4 connections; its 5th is
/// answered 503 and closed at once; another address is served; a freed
/// slot is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_limit_refuses_the_excess_and_serves_others() {
    let srv = start(HttpLimits {
        max_connections: 100,
        max_connections_per_peer: 4,
        ..relaxed()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.1", srv.addr).await;
        s.write_all(b"GET / HT").await.unwrap();
        held.push(s);
    }
    let r = request_from(
        "127.0.0.1",
        srv.addr,
        "GET",
        "/api/v1/whoami",
        Some(&srv.admin),
        VICTIM_DEADLINE,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unavailable");
    assert_security_headers(&r, "503 refusal");

    victim(&srv, "127.0.0.2").await;
    let m = metrics(&srv).await;
    assert_eq!(
        sample(
            &m,
            "wasmtap_http_connections_refused_total{limit=\"per_peer\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "wasmtap_http_connections_refused_total{limit=\"total\"}"
        ),
        0.0
    );

    // One of the four goes away: the address may connect again.
    drop(held.pop());
    let end = Instant::now() + SLACK;
    loop {
        let r = request_from(
            "127.0.0.1",
            srv.addr,
            "GET",
            "/api/v1/whoami",
            Some(&srv.admin),
            VICTIM_DEADLINE,
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < end, "the freed slot is never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Shutting down does not wait for the half-sent requests.
    srv.shut_down(Duration::from_secs(5)).await;
    drop(held);
}

/// The total limit: five connections held from two addresses and a
/// victim's kept-alive one fill it; a seventh, from a third address, is
/// refused while the victim goes on being served; once the holders leave,
/// everyone is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_limit_refuses_the_excess() {
    let srv = start(HttpLimits {
        max_connections: 6,
        max_connections_per_peer: 4,
        ..relaxed()
    })
    .await;
    let mut held = Vec::new();
    for src in [
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.3",
    ] {
        let mut s = connect_from(src, srv.addr).await;
        s.write_all(b"GET / HT").await.unwrap();
        held.push(s);
    }
    // The victim takes the sixth slot and keeps it.
    let mut v = connect_from("127.0.0.2", srv.addr).await;
    let admin = srv.admin.clone();
    let ask = async |v: &mut TcpStream| {
        tokio::time::timeout(VICTIM_DEADLINE, async {
            send(v, "GET", "/api/v1/whoami", Some(&admin), true).await?;
            read_response(v).await
        })
        .await
        .expect("the victim is answered in time")
        .unwrap()
    };
    assert_eq!(ask(&mut v).await.status, 200);
    let r = request_from(
        "127.0.0.4",
        srv.addr,
        "GET",
        "/api/v1/whoami",
        Some(&srv.admin),
        VICTIM_DEADLINE,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unavailable");
    assert_eq!(ask(&mut v).await.status, 200, "the victim is still served");

    // The holders leave; everyone is served again.
    drop(held);
    drop(v);
    let end = Instant::now() + SLACK;
    loop {
        let r = request_from(
            "127.0.0.4",
            srv.addr,
            "GET",
            "/metrics",
            Some(&srv.admin),
            VICTIM_DEADLINE,
        )
        .await;
        if r.status == 200 {
            let m = r.text();
            assert!(
                sample(
                    &m,
                    "wasmtap_http_connections_refused_total{limit=\"total\"}"
                ) >= 1.0,
                "{m}"
            );
            assert_eq!(
                sample(
                    &m,
                    "wasmtap_http_connections_refused_total{limit=\"per_peer\"}"
                ),
                0.0,
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < end, "slots are never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.shut_down(Duration::from_secs(5)).await;
}

/// Every response carries the CSP, X-Frame-Options, X-Content-Type-Options
/// and Referrer-Policy: the UI, its assets, the API (success and errors),
/// unknown paths and /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let srv = start(relaxed()).await;
    let admin = Some(srv.admin.as_str());
    let cases: [(&str, &str, Option<&str>, u16); 11] = [
        ("GET", "/", None, 200),
        ("GET", "/ui/app.js", None, 200),
        ("GET", "/ui/app.css", None, 200),
        ("GET", "/ui/favicon.svg", None, 200),
        ("GET", "/ui/nope.js", None, 404),
        ("GET", "/api/v1/openapi.json", None, 200),
        ("GET", "/api/v1/whoami", None, 401),
        ("GET", "/api/v1/whoami", admin, 200),
        ("GET", "/api/v1/devices/12345", admin, 404),
        ("GET", "/metrics", admin, 200),
        ("GET", "/no/such/path", None, 404),
    ];
    for (method, path, token, status) in cases {
        let r = request_from("127.0.0.1", srv.addr, method, path, token, VICTIM_DEADLINE).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_security_headers(&r, &format!("{method} {path}"));
    }
    // A request hyper itself refuses (malformed) goes without the service;
    // a method the route does not have goes through the router.
    let r = request_from(
        "127.0.0.1",
        srv.addr,
        "DELETE",
        "/api/v1/whoami",
        admin,
        VICTIM_DEADLINE,
    )
    .await;
    assert_security_headers(&r, "DELETE /api/v1/whoami");
    srv.shut_down(Duration::from_secs(5)).await;
}

/// A legitimate 8 MiB upload goes through the body timeout and the 64 KiB
/// connection buffer untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_within_the_limits_succeeds() {
    let srv = start(HttpLimits {
        body_read_timeout: Duration::from_secs(20),
        ..relaxed()
    })
    .await;
    create_tenant(&srv, "t1").await;
    let boundary = "b0undary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.wasm\"\r\n\r\n"
    )
    .into_bytes();
    let module = wasm(&vec![7u8; 8 << 20]);
    body.extend_from_slice(&module);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut s = connect_from("127.0.0.1", srv.addr).await;
    let mut req = format!(
        "POST /api/v1/modules?tenant=t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        srv.admin,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    s.write_all(&req).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["size"], module.len());
    srv.shut_down(Duration::from_secs(5)).await;
}

/// A request head past 64 KiB is refused (431) instead of being buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused() {
    let srv = start(relaxed()).await;
    let mut s = connect_from("127.0.0.1", srv.addr).await;
    let head = format!(
        "GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Pad: {}\r\n\r\n",
        srv.admin,
        "a".repeat(100 << 10)
    );
    // The server may stop reading (and close) before all of it is sent.
    let _ = s.write_all(head.as_bytes()).await;
    let r = tokio::time::timeout(VICTIM_DEADLINE, read_response(&mut s))
        .await
        .expect("answered at once");
    match r {
        Ok(r) => assert_eq!(r.status, 431, "{}", r.text()),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "closed without 431: {e}"
        ),
    }
    victim(&srv, "127.0.0.1").await;
    srv.shut_down(Duration::from_secs(5)).await;
}

/// The CSP is strict: scripts, styles and everything else from this origin
/// only, no plugins, no <base>, no framing, forms to this origin.
#[test]
fn the_policy_is_strict() {
    let p = CONTENT_SECURITY_POLICY;
    for d in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(p.split("; ").any(|x| x == d), "{d} missing from {p}");
    }
    assert!(!p.contains("unsafe"), "{p}");
    assert!(!p.contains("script-src") && !p.contains("style-src"), "{p}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn module_files(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Row 10: the database and module files are 0600 and their directories
/// 0700 when created (a module uploaded over HTTP included), and existing
/// ones with looser modes are tightened at the next open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_private() {
    let srv = start(relaxed()).await;
    let data = srv.data.clone();
    // A tenant, and a module uploaded for it over HTTP.
    create_tenant(&srv, "t1").await;
    let boundary = "b0undary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nup\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.wasm\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&wasm(b"uploaded"));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = {
        let mut s = connect_from("127.0.0.1", srv.addr).await;
        let mut req = format!(
            "POST /api/v1/modules?tenant=t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            srv.admin,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        s.write_all(&req).await.unwrap();
        read_response(&mut s).await.unwrap()
    };
    assert_eq!(r.status, 201, "{}", r.text());

    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("modules")), 0o700, "modules dir");
    assert_eq!(mode(&data.join("devices")), 0o700, "devices dir");
    assert_eq!(mode(&data.join("wasmtap.db")), 0o600, "database");
    for j in ["wasmtap.db-wal", "wasmtap.db-shm"] {
        let p = data.join(j);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{j}");
        }
    }
    let files = module_files(&data);
    assert_eq!(files.len(), 2, "the built-in and the upload: {files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let _dir = srv.shut_down(Duration::from_secs(5)).await;

    // Loosened (as an older wasmtap left them), then opened again.
    chmod(&data, 0o755);
    chmod(&data.join("modules"), 0o755);
    chmod(&data.join("devices"), 0o755);
    chmod(&data.join("wasmtap.db"), 0o644);
    for f in &files {
        chmod(f, 0o644);
    }
    let (_cp, _) = ControlPlane::open(WebConfig::new(&data), Arc::new(NullHost)).unwrap();
    assert_eq!(mode(&data), 0o700, "data dir tightened");
    assert_eq!(mode(&data.join("modules")), 0o700, "modules dir tightened");
    assert_eq!(mode(&data.join("devices")), 0o700, "devices dir tightened");
    assert_eq!(mode(&data.join("wasmtap.db")), 0o600, "database tightened");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{} tightened", f.display());
    }
}

/// Graceful shutdown: idle connections and connections half-way through a
/// request head do not hold the server up; it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_or_slow_clients() {
    let srv = start(relaxed()).await;
    let mut idle = connect_from("127.0.0.1", srv.addr).await;
    send(&mut idle, "GET", "/api/v1/whoami", Some(&srv.admin), true)
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap().status, 200);
    let mut slow = connect_from("127.0.0.1", srv.addr).await;
    slow.write_all(b"GET /api/v1/who").await.unwrap();
    // Both are open on the server's side before the stop.
    let m = metrics(&srv).await;
    assert!(sample(&m, "wasmtap_http_connections_open") >= 3.0, "{m}");
    srv.shut_down(Duration::from_secs(2)).await;
    assert!(wait_closed(&mut idle, SLACK).await.is_some());
    assert!(wait_closed(&mut slow, SLACK).await.is_some());
}

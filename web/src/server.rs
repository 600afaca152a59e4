//! The HTTP server: an accept loop on hyper (HTTP/1.1) that keeps one client
//! from hurting the others (`docs/limits.md`, section "HTTP server").
//!
//! * A connection past [`HttpLimits::max_connections`] open at once, or past
//!   [`HttpLimits::max_connections_per_peer`] from one peer address, is
//!   answered `503` and closed at once, without reading from it.
//! * A watchdog per connection closes it when the client is too slow:
//!   the request head (request line and headers) must arrive within
//!   [`HttpLimits::header_read_timeout`] of the connection being accepted
//!   or of its first byte; a kept-alive connection may wait
//!   [`HttpLimits::idle_timeout`] for its next request; a response the client
//!   stops reading may stall that long too.
//! * A request body must arrive in full within
//!   [`HttpLimits::body_read_timeout`] of its head: past it the request
//!   fails with `408` and the connection is closed.
//!
//! Every response, including those written here, carries the security
//! headers of [`add_security_headers`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::error::ApiError;

/// Limits of the HTTP server. A zero turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a complete request head (request line and
    /// headers), counted from the connection being accepted (first request)
    /// or from the first byte of the request (later ones on a kept-alive
    /// connection). Past it the connection is closed without an answer.
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request, and a
    /// response may wait for the client to read it (no write progress).
    /// Past it the connection is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// Time a request body has to arrive in full, from the end of its head.
    /// Past it the request fails with 408 `timeout` and the connection is
    /// closed. Default 120 s (a 32 MiB upload needs about 280 KB/s).
    pub body_read_timeout: Duration,
    /// Connections open at once. A new one past it is answered 503
    /// `unavailable` and closed. Default 512.
    pub max_connections: usize,
    /// Connections open at once from one peer (an IPv4 address, or an
    /// IPv6 /64). A new one past it is answered 503 `unavailable` and
    /// closed. Default 64. Behind a reverse proxy every client has the
    /// proxy's address: raise it or turn it off (0) there.
    pub max_connections_per_peer: usize,
}

impl Default for HttpLimits {
    /// 10 s head, 60 s idle, 120 s body; 512 connections, 64 per peer.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(120),
            max_connections: 512,
            max_connections_per_peer: 64,
        }
    }
}

/// Counters of the HTTP server, read by `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct HttpStats {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_total: AtomicU64,
    pub(crate) refused_per_peer: AtomicU64,
    pub(crate) timeout_header: AtomicU64,
    pub(crate) timeout_idle: AtomicU64,
    pub(crate) timeout_send: AtomicU64,
    pub(crate) timeout_body: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// `Content-Security-Policy` of every response: the UI loads its scripts,
/// styles and icon from `/ui/` and talks to this origin only; nothing inline
/// runs, nothing may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The security headers every response carries (a handler's own value of
/// one of them is kept).
pub fn add_security_headers(h: &mut HeaderMap) {
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    for (name, value) in set {
        h.entry(name).or_insert(value);
    }
}

/// Largest request head, and the read/write buffer of a connection: a
/// bigger head is answered 431 by hyper. Bounds what slow clients within
/// the connection limits can make the server hold (512 × 64 KiB = 32 MiB);
/// hyper's default buffer is about 400 KiB and its head size unlimited.
pub(crate) const MAX_HEAD_BYTES: usize = 64 << 10;

/// What a connection over a limit gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-security-policy: default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'\r\n\
x-frame-options: DENY\r\n\
x-content-type-options: nosniff\r\n\
referrer-policy: no-referrer\r\n\
content-length: 78\r\n\
\r\n\
{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections; retry later\"}}";

// ------------------------------------------------------------ limits

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerPeer,
}

/// Open connections, in total and per peer.
#[derive(Debug)]
struct Limiter {
    limits: HttpLimits,
    stats: Arc<HttpStats>,
    inner: Mutex<LimiterInner>,
}

#[derive(Debug, Default)]
struct LimiterInner {
    open: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// The peer a connection counts against: an IPv4 address (IPv4-mapped IPv6
/// included), or the /64 of an IPv6 one (one host usually has a whole /64).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Limiter {
    fn lock(&self) -> MutexGuard<'_, LimiterInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `ip`, or the limit that refuses it.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = peer_key(ip);
        let mut g = self.lock();
        let max = self.limits.max_connections;
        if max != 0 && g.open >= max {
            bump(&self.stats.refused_total);
            return Err(Refusal::Total);
        }
        let per_peer = self.limits.max_connections_per_peer;
        let n = g.per_peer.get(&key).copied().unwrap_or(0);
        if per_peer != 0 && n >= per_peer {
            bump(&self.stats.refused_per_peer);
            return Err(Refusal::PerPeer);
        }
        g.per_peer.insert(key, n + 1);
        g.open += 1;
        self.stats.open.store(g.open as u64, Ordering::Relaxed);
        bump(&self.stats.accepted);
        Ok(Slot {
            limiter: Arc::clone(self),
            key,
        })
    }
}

/// An open connection's place in the limits; freed on drop.
#[derive(Debug)]
struct Slot {
    limiter: Arc<Limiter>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.limiter.lock();
        g.open = g.open.saturating_sub(1);
        if let Some(n) = g.per_peer.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                g.per_peer.remove(&self.key);
            }
        }
        self.limiter
            .stats
            .open
            .store(g.open as u64, Ordering::Relaxed);
    }
}

/// Logs at most one line per `every`, with how many were not logged.
#[derive(Debug)]
struct LogEvery {
    every: Duration,
    last: Option<Instant>,
    dropped: u64,
}

impl LogEvery {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            dropped: 0,
        }
    }

    /// `Some(number not logged since the last line)` if a line may be
    /// logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + self.every) {
            self.dropped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.dropped))
    }
}

// ------------------------------------------------------------ timeouts

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    /// The request head did not arrive in time.
    Header,
    /// No request on a kept-alive connection.
    Idle,
    /// The client did not read the response.
    Send,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head that started arriving (or for the first
    /// request) at this instant.
    Head(Instant),
    /// Requests in the service (head read, response not yet sent).
    Busy(usize),
    /// Waiting for the next request since this instant.
    Idle(Instant),
}

#[derive(Debug)]
struct ConnInner {
    phase: Phase,
    /// Since when a write has been waiting for the client to read.
    write_stalled: Option<Instant>,
}

/// A connection's timing state, shared by its I/O, its requests and its
/// watchdog.
#[derive(Debug)]
struct Conn {
    limits: HttpLimits,
    inner: Mutex<ConnInner>,
    /// Rung when the deadline may have moved earlier.
    changed: Notify,
}

impl Conn {
    fn new(limits: HttpLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(ConnInner {
                phase: Phase::Head(Instant::now()),
                write_stalled: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes came in.
    fn on_read(&self) {
        let mut g = self.lock();
        if let Phase::Idle(_) = g.phase {
            g.phase = Phase::Head(Instant::now());
            drop(g);
            self.changed.notify_one();
        }
    }

    /// A write found the socket's buffer full.
    fn on_write_pending(&self) {
        let mut g = self.lock();
        if g.write_stalled.is_none() {
            g.write_stalled = Some(Instant::now());
            drop(g);
            self.changed.notify_one();
        }
    }

    /// A write made progress: output still flowing is not idleness.
    fn on_write_progress(&self) {
        let mut g = self.lock();
        g.write_stalled = None;
        if let Phase::Idle(_) = g.phase {
            g.phase = Phase::Idle(Instant::now());
        }
    }

    /// A request head was read; the returned guard ends the request when
    /// its response body is dropped (sent, or the connection closed).
    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        let mut g = self.lock();
        g.phase = match g.phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        RequestGuard {
            conn: Arc::clone(self),
        }
    }

    fn end_request(&self) {
        let mut g = self.lock();
        g.phase = match g.phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        drop(g);
        self.changed.notify_one();
    }

    /// Whether the connection is between a request's first byte and its
    /// complete head.
    fn reading_head(&self) -> bool {
        matches!(self.lock().phase, Phase::Head(_))
    }

    /// The earliest deadline now, and what passing it means.
    fn deadline(&self) -> Option<(Instant, Timeout)> {
        let g = self.lock();
        let l = &self.limits;
        let after = |t: Instant, d: Duration, why| (!d.is_zero()).then(|| (t + d, why));
        let phase = match g.phase {
            Phase::Head(t) => after(t, l.header_read_timeout, Timeout::Header),
            // With output waiting for the client it is not idle: the send
            // deadline below applies.
            Phase::Idle(_) if g.write_stalled.is_some() => None,
            Phase::Idle(t) => after(t, l.idle_timeout, Timeout::Idle),
            Phase::Busy(_) => None,
        };
        let send = g
            .write_stalled
            .and_then(|t| after(t, l.idle_timeout, Timeout::Send));
        match (phase, send) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Resolves when a deadline has passed.
    async fn watchdog(&self) -> Timeout {
        loop {
            match self.deadline() {
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            if let Some((at, why)) = self.deadline()
                                && at <= Instant::now()
                            {
                                return why;
                            }
                        }
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// Ends a request when dropped.
#[derive(Debug)]
struct RequestGuard {
    conn: Arc<Conn>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.conn.end_request();
    }
}

/// The socket, telling its [`Conn`] about reads and stalled writes.
#[derive(Debug)]
struct WatchedIo {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl WatchedIo {
    fn after_write<T>(&self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match &r {
            Poll::Pending => self.conn.on_write_pending(),
            Poll::Ready(Ok(_)) => self.conn.on_write_progress(),
            Poll::Ready(Err(_)) => {}
        }
        r
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A request body that fails once its deadline has passed.
struct TimedBody {
    inner: Incoming,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: Arc<AtomicBool>,
    stats: Arc<HttpStats>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err("request body timed out".into())));
        }
        if let Some(at) = this.deadline {
            // Checked before reading, so a client that keeps sending does
            // not outrun the deadline either.
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if sleep.as_mut().poll(cx).is_ready() {
                this.timed_out.store(true, Ordering::Relaxed);
                bump(&this.stats.timeout_body);
                return Poll::Ready(Some(Err("request body timed out".into())));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.deadline = None;
                this.sleep = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// A response body that holds its request's [`RequestGuard`].
struct GuardedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// 408 `timeout`, closing the connection.
fn body_timeout_response(limit: Duration) -> Response<Body> {
    let mut r = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!(
            "the request body did not arrive within {} s",
            limit.as_secs_f64()
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    add_security_headers(r.headers_mut());
    r
}

// ------------------------------------------------------------ the loop

/// Whether an accept error concerns only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves;
/// then stops accepting, closes idle connections and connections still
/// sending a request head, lets requests in progress finish, and returns
/// once every connection is closed.
pub(crate) async fn serve(
    router: Router,
    limits: HttpLimits,
    stats: Arc<HttpStats>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limiter = Arc::new(Limiter {
        limits,
        stats: Arc::clone(&stats),
        inner: Mutex::new(LimiterInner::default()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver; `closed` resolves when the
    // last one is gone.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut accept_log = LogEvery::new(Duration::from_secs(10));
    let mut refuse_log = LogEvery::new(Duration::from_secs(60));
    'accept: loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(v) => v,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors, say: wait for some to be freed.
                if let Some(n) = accept_log.allow() {
                    if n > 0 {
                        tracing::error!("accept error: {e} ({n} more since the last report)");
                    } else {
                        tracing::error!("accept error: {e}");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut shutdown => break 'accept,
                }
            }
        };
        let slot = match limiter.acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(which) => {
                if let Some(n) = refuse_log.allow() {
                    let why = match which {
                        Refusal::Total => "too many connections open",
                        Refusal::PerPeer => "too many connections open from that address",
                    };
                    let more = if n > 0 {
                        format!(" ({n} more refused since the last report)")
                    } else {
                        String::new()
                    };
                    tracing::warn!(
                        "refused an HTTP connection from {}: {why}{more}; \
                         wasmtap_http_connections_refused_total counts them all",
                        peer.ip()
                    );
                }
                let _ = stream.try_write(REFUSED);
                continue;
            }
        };
        let conn = Connection {
            router: router.clone(),
            limits,
            stats: Arc::clone(&stats),
            peer,
        };
        let stop_rx = stop_rx.clone();
        let done_rx = done_rx.clone();
        tokio::spawn(async move {
            conn.run(stream, stop_rx).await;
            drop((slot, done_rx));
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// What a connection task needs.
struct Connection {
    router: Router,
    limits: HttpLimits,
    stats: Arc<HttpStats>,
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        let Self {
            router,
            limits,
            stats,
            peer,
        } = self;
        let conn = Arc::new(Conn::new(limits));
        let io = TokioIo::new(WatchedIo {
            io: stream,
            conn: Arc::clone(&conn),
        });
        let svc_conn = Arc::clone(&conn);
        let svc_stats = Arc::clone(&stats);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let router = router.clone();
            let conn = Arc::clone(&svc_conn);
            let stats = Arc::clone(&svc_stats);
            async move {
                let guard = conn.begin_request();
                let timed_out = Arc::new(AtomicBool::new(false));
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                let limit = limits.body_read_timeout;
                let body = TimedBody {
                    inner: body,
                    deadline: (!limit.is_zero()).then(|| Instant::now() + limit),
                    sleep: None,
                    timed_out: Arc::clone(&timed_out),
                    stats,
                };
                let req = Request::from_parts(parts, Body::new(body));
                let response = match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                let response = if timed_out.load(Ordering::Relaxed) {
                    tracing::debug!("{peer}: request body timed out");
                    body_timeout_response(limit)
                } else {
                    response
                };
                Ok::<_, Infallible>(response.map(|inner| GuardedBody {
                    inner,
                    _guard: guard,
                }))
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.max_buf_size(MAX_HEAD_BYTES)
            .max_header_size(MAX_HEAD_BYTES);
        let mut served = pin!(http.serve_connection(io, service));
        let mut watchdog = pin!(conn.watchdog());
        let mut stopping = false;
        loop {
            tokio::select! {
                r = served.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!("{peer}: connection: {e}");
                    }
                    break;
                }
                why = &mut watchdog => {
                    bump(match why {
                        Timeout::Header => &stats.timeout_header,
                        Timeout::Idle => &stats.timeout_idle,
                        Timeout::Send => &stats.timeout_send,
                    });
                    tracing::debug!("{peer}: closing the connection: {why:?} timeout");
                    break;
                }
                _ = stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    // A request half-sent is dropped; idle connections
                    // close and requests in progress finish (hyper).
                    if conn.reading_head() {
                        break;
                    }
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "unavailable");
        assert!(head.contains(CONTENT_SECURITY_POLICY));
    }

    #[test]
    fn peers_are_keyed_by_address_or_ipv6_prefix() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(peer_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(peer_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b));
        assert_ne!(peer_key(a), peer_key(c));
    }

    #[test]
    fn limiter_counts_and_frees() {
        let stats = Arc::new(HttpStats::default());
        let limiter = Arc::new(Limiter {
            limits: HttpLimits {
                max_connections: 3,
                max_connections_per_peer: 2,
                ..HttpLimits::default()
            },
            stats: Arc::clone(&stats),
            inner: Mutex::new(LimiterInner::default()),
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limiter.acquire(a).unwrap();
        let _a2 = limiter.acquire(a).unwrap();
        assert_eq!(limiter.acquire(a).unwrap_err(), Refusal::PerPeer);
        let _b1 = limiter.acquire(b).unwrap();
        assert_eq!(limiter.acquire(b).unwrap_err(), Refusal::Total);
        assert_eq!(stats.open.load(Ordering::Relaxed), 3);
        drop(a1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 2);
        let _b2 = limiter.acquire(b).unwrap();
        assert_eq!(stats.refused_per_peer.load(Ordering::Relaxed), 1);
        assert_eq!(stats.refused_total.load(Ordering::Relaxed), 1);
        assert_eq!(stats.accepted.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limiter = Arc::new(Limiter {
            limits: HttpLimits {
                max_connections: 0,
                max_connections_per_peer: 0,
                ..HttpLimits::default()
            },
            stats: Arc::default(),
            inner: Mutex::new(LimiterInner::default()),
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..1000).map(|_| limiter.acquire(a).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_phase() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        };
        let conn = Arc::new(Conn::new(limits));
        let t0 = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((t0 + Duration::from_secs(10), Timeout::Header))
        );
        let guard = conn.begin_request();
        assert_eq!(conn.deadline(), None, "no timeout while the service runs");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(guard);
        let t1 = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((t1 + Duration::from_secs(60), Timeout::Idle))
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        conn.on_read();
        let t2 = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((t2 + Duration::from_secs(10), Timeout::Header))
        );
        let _guard = conn.begin_request();
        conn.on_write_pending();
        assert_eq!(
            conn.deadline(),
            Some((t2 + Duration::from_secs(60), Timeout::Send))
        );
        conn.on_write_progress();
        assert_eq!(conn.deadline(), None);
        // Idle with a response still waiting for the client: the send
        // deadline, from the stall.
        drop(_guard);
        tokio::time::advance(Duration::from_secs(5)).await;
        conn.on_write_pending();
        let t3 = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((t3 + Duration::from_secs(60), Timeout::Send))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        conn.on_write_progress();
        let t4 = Instant::now();
        assert_eq!(
            conn.deadline(),
            Some((t4 + Duration::from_secs(60), Timeout::Idle)),
            "output that flows restarts the idle time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_fires_at_the_header_deadline_not_before() {
        let conn = Arc::new(Conn::new(HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            ..HttpLimits::default()
        }));
        let t0 = Instant::now();
        let why = conn.watchdog().await;
        assert_eq!(why, Timeout::Header);
        assert!(Instant::now() >= t0 + Duration::from_secs(10));
    }
}

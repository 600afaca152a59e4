//! `GET /metrics`: Prometheus text exposition format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::ControlPlane;
use crate::error::ApiError;
use crate::extract::Admin;
use crate::host::{DeviceLive, DeviceState};
use crate::server::HttpStats;
use crate::store::{DeviceRow, Scope};

/// Names of the SCSI sense keys, by value (SPC-4 table 48).
pub const SENSE_KEYS: [&str; 16] = [
    "NO_SENSE",
    "RECOVERED_ERROR",
    "NOT_READY",
    "MEDIUM_ERROR",
    "HARDWARE_ERROR",
    "ILLEGAL_REQUEST",
    "UNIT_ATTENTION",
    "DATA_PROTECT",
    "BLANK_CHECK",
    "VENDOR_SPECIFIC",
    "COPY_ABORTED",
    "ABORTED_COMMAND",
    "RESERVED_0C",
    "VOLUME_OVERFLOW",
    "MISCOMPARE",
    "COMPLETED",
];

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Escapes HELP text: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Builds exposition text; each family's samples are written together.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a family: `# HELP` and `# TYPE`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Microseconds as seconds, exactly as Prometheus parses floats.
fn secs(us: u64) -> String {
    let s = format!("{}", us as f64 / 1e6);
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

fn device_labels(d: &DeviceRow) -> [(&'static str, &str); 3] {
    [
        ("tenant", d.tenant.as_str()),
        ("device", d.name.as_str()),
        ("module", d.module_name.as_str()),
    ]
}

/// Writes the per-device, per-tenant and process families.
pub(crate) fn render(cp: &ControlPlane) -> Result<String, ApiError> {
    let devices: Vec<(DeviceRow, Option<DeviceLive>)> = cp
        .store
        .devices(Scope::All)?
        .into_iter()
        .map(|d| {
            let live = cp.host.live(d.id);
            (d, live)
        })
        .collect();
    let tenants = cp.store.tenants()?;
    let mut t = Text::default();

    type Get = fn(&DeviceLive) -> u64;
    let counters: [(&str, &str, &str, Get); 6] = [
        (
            "wasmtap_device_commands_total",
            "counter",
            "SCSI commands completed.",
            |l| l.counters.commands,
        ),
        (
            "wasmtap_device_read_commands_total",
            "counter",
            "READ commands completed.",
            |l| l.counters.reads,
        ),
        (
            "wasmtap_device_write_commands_total",
            "counter",
            "WRITE commands completed.",
            |l| l.counters.writes,
        ),
        (
            "wasmtap_device_read_bytes_total",
            "counter",
            "Bytes returned by reads.",
            |l| l.counters.read_bytes,
        ),
        (
            "wasmtap_device_write_bytes_total",
            "counter",
            "Bytes accepted by writes.",
            |l| l.counters.write_bytes,
        ),
        (
            "wasmtap_device_guest_restarts_total",
            "counter",
            "Guest instances restarted after failures.",
            |l| l.restarts,
        ),
    ];
    for (name, kind, help, get) in counters {
        t.family(name, kind, help);
        for (d, live) in &devices {
            t.sample(name, &device_labels(d), live.as_ref().map_or(0, get));
        }
    }

    t.family(
        "wasmtap_device_errors_total",
        "counter",
        "Commands completed with CHECK CONDITION, by sense key.",
    );
    for (d, live) in &devices {
        let [a, b, c] = device_labels(d);
        for (key, key_name) in SENSE_KEYS.iter().enumerate() {
            let n = live
                .as_ref()
                .and_then(|l| l.counters.errors_by_sense_key.get(key).copied())
                .unwrap_or(0);
            t.sample(
                "wasmtap_device_errors_total",
                &[a, b, c, ("sense_key", key_name)],
                n,
            );
        }
    }

    t.family(
        "wasmtap_device_latency_seconds",
        "histogram",
        "Command latency, ring entry seen to response written.",
    );
    for (d, live) in &devices {
        let [a, b, c] = device_labels(d);
        let empty = Default::default();
        let h = live.as_ref().map_or(&empty, |l| &l.counters.latency);
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds_us.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let le = secs(*bound);
            t.sample(
                "wasmtap_device_latency_seconds_bucket",
                &[a, b, c, ("le", &le)],
                cumulative,
            );
        }
        let total: u64 = h.counts.iter().sum();
        t.sample(
            "wasmtap_device_latency_seconds_bucket",
            &[a, b, c, ("le", "+Inf")],
            total,
        );
        t.sample(
            "wasmtap_device_latency_seconds_sum",
            &[a, b, c],
            secs(h.sum_us),
        );
        t.sample("wasmtap_device_latency_seconds_count", &[a, b, c], total);
    }

    t.family(
        "wasmtap_device_in_flight",
        "gauge",
        "Commands in flight now.",
    );
    for (d, live) in &devices {
        let n = live.as_ref().map_or(0, |l| l.counters.in_flight);
        t.sample("wasmtap_device_in_flight", &device_labels(d), n);
    }
    t.family(
        "wasmtap_device_up",
        "gauge",
        "1 if the device is running, 0 if degraded, offline or stopped.",
    );
    for (d, live) in &devices {
        let up = live
            .as_ref()
            .is_some_and(|l| l.state == DeviceState::Running);
        t.sample("wasmtap_device_up", &device_labels(d), u8::from(up));
    }

    // What each device holds of the shared resources (docs/limits.md).
    type RGet = fn(&crate::host::DeviceResources) -> u64;
    let held: [(&str, &str, RGet); 8] = [
        (
            "wasmtap_device_guest_memory_bytes",
            "Guest linear memory in bytes.",
            |r| r.memory,
        ),
        (
            "wasmtap_device_open_files",
            "Files the guest holds open.",
            |r| r.open_files,
        ),
        (
            "wasmtap_device_open_files_limit",
            "The instance's limit of open files.",
            |r| r.open_files_limit,
        ),
        (
            "wasmtap_device_stored_bytes",
            "Bytes in the device's directory (logical file sizes).",
            |r| r.storage_bytes,
        ),
        (
            "wasmtap_device_stored_bytes_limit",
            "The device's storage quota in bytes.",
            |r| r.storage_bytes_limit,
        ),
        (
            "wasmtap_device_stored_files",
            "Files in the device's directory.",
            |r| r.storage_files,
        ),
        (
            "wasmtap_device_stored_files_limit",
            "The device's quota of files.",
            |r| r.storage_files_limit,
        ),
        (
            "wasmtap_device_io_pending",
            "I/O jobs queued or running on the shared I/O threads.",
            |r| r.io_pending,
        ),
    ];
    for (name, help, get) in held {
        t.family(name, "gauge", help);
        for (d, live) in &devices {
            if let Some(r) = live.as_ref().and_then(|l| l.resources.as_ref()) {
                t.sample(name, &device_labels(d), get(r));
            }
        }
    }

    // Per tenant.
    #[derive(Default)]
    struct Sum {
        commands: u64,
        read_bytes: u64,
        write_bytes: u64,
    }
    let mut sums: BTreeMap<&str, Sum> = BTreeMap::new();
    for (d, live) in &devices {
        let s = sums.entry(d.tenant.as_str()).or_default();
        if let Some(l) = live {
            s.commands += l.counters.commands;
            s.read_bytes += l.counters.read_bytes;
            s.write_bytes += l.counters.write_bytes;
        }
    }
    let zero = Sum::default();
    t.family(
        "wasmtap_tenant_devices",
        "gauge",
        "Devices the tenant owns.",
    );
    for tn in &tenants {
        t.sample(
            "wasmtap_tenant_devices",
            &[("tenant", &tn.name)],
            tn.usage.devices,
        );
    }
    t.family(
        "wasmtap_tenant_device_bytes",
        "gauge",
        "Sum of the tenant's device sizes in bytes.",
    );
    for tn in &tenants {
        t.sample(
            "wasmtap_tenant_device_bytes",
            &[("tenant", &tn.name)],
            tn.usage.total_bytes,
        );
    }
    type TGet = fn(&Sum) -> u64;
    let tenant_counters: [(&str, &str, TGet); 3] = [
        (
            "wasmtap_tenant_commands_total",
            "SCSI commands completed by the tenant's devices.",
            |s| s.commands,
        ),
        (
            "wasmtap_tenant_read_bytes_total",
            "Bytes read from the tenant's devices.",
            |s| s.read_bytes,
        ),
        (
            "wasmtap_tenant_write_bytes_total",
            "Bytes written to the tenant's devices.",
            |s| s.write_bytes,
        ),
    ];
    for (name, help, get) in tenant_counters {
        t.family(name, "counter", help);
        for tn in &tenants {
            let s = sums.get(tn.name.as_str()).unwrap_or(&zero);
            t.sample(name, &[("tenant", &tn.name)], get(s));
        }
    }

    type TGetR = fn(&crate::host::TenantResources) -> u64;
    let tenant_held: [(&str, &str, TGetR); 10] = [
        (
            "wasmtap_tenant_guest_memory_bytes",
            "Guest linear memory of the tenant's instances.",
            |r| r.memory,
        ),
        (
            "wasmtap_tenant_guest_memory_limit_bytes",
            "The tenant's guest memory budget.",
            |r| r.limits.memory,
        ),
        (
            "wasmtap_tenant_open_files",
            "Files the tenant's guests hold open.",
            |r| r.open_files,
        ),
        (
            "wasmtap_tenant_open_files_limit",
            "The tenant's limit of open files.",
            |r| r.limits.open_files,
        ),
        (
            "wasmtap_tenant_instances",
            "Live guest instances of the tenant.",
            |r| r.instances,
        ),
        (
            "wasmtap_tenant_instances_limit",
            "The tenant's limit of instances.",
            |r| r.limits.instances,
        ),
        (
            "wasmtap_tenant_stored_bytes",
            "Bytes stored by the tenant's running devices.",
            |r| r.storage_bytes,
        ),
        (
            "wasmtap_tenant_stored_bytes_limit",
            "The tenant's storage quota in bytes.",
            |r| r.limits.storage_bytes,
        ),
        (
            "wasmtap_tenant_stored_files",
            "Files stored by the tenant's running devices.",
            |r| r.storage_files,
        ),
        (
            "wasmtap_tenant_stored_files_limit",
            "The tenant's quota of stored files.",
            |r| r.limits.storage_files,
        ),
    ];
    let held_by: Vec<_> = tenants
        .iter()
        .map(|tn| cp.host.tenant_resources(&tn.name))
        .collect();
    for (name, help, get) in tenant_held {
        t.family(name, "gauge", help);
        for (tn, r) in tenants.iter().zip(&held_by) {
            if let Some(r) = r {
                t.sample(name, &[("tenant", &tn.name)], get(r));
            }
        }
    }

    // The HTTP server.
    render_http(&mut t, &cp.http_stats);

    // Process.
    let start = cp
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    t.family(
        "wasmtap_process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    t.sample("wasmtap_process_start_time_seconds", &[], start);
    if let Some(rss) = resident_bytes() {
        t.family(
            "wasmtap_process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        t.sample("wasmtap_process_resident_memory_bytes", &[], rss);
    }
    if let Some(n) = threads() {
        t.family(
            "wasmtap_process_threads",
            "gauge",
            "OS threads in the process.",
        );
        t.sample("wasmtap_process_threads", &[], n);
    }
    t.family("wasmtap_up", "gauge", "1: the control plane answers.");
    t.sample("wasmtap_up", &[], 1);
    Ok(t.finish())
}

/// The HTTP server's connection families (`docs/limits.md`).
fn render_http(t: &mut Text, s: &HttpStats) {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    t.family(
        "wasmtap_http_connections_open",
        "gauge",
        "HTTP connections open now.",
    );
    t.sample("wasmtap_http_connections_open", &[], get(&s.open));
    t.family(
        "wasmtap_http_connections_accepted_total",
        "counter",
        "HTTP connections accepted within the connection limits.",
    );
    t.sample(
        "wasmtap_http_connections_accepted_total",
        &[],
        get(&s.accepted),
    );
    t.family(
        "wasmtap_http_connections_refused_total",
        "counter",
        "HTTP connections answered 503 and closed at once, by the limit they hit (total: max_connections, per_peer: max_connections_per_peer).",
    );
    for (limit, c) in [
        ("total", &s.refused_total),
        ("per_peer", &s.refused_per_peer),
    ] {
        t.sample(
            "wasmtap_http_connections_refused_total",
            &[("limit", limit)],
            get(c),
        );
    }
    t.family(
        "wasmtap_http_connections_timed_out_total",
        "counter",
        "HTTP connections closed by a timeout: header (request head not received in time), idle (no request on a kept-alive connection), send (response not read by the client), body (request body not received in time; answered 408).",
    );
    for (timeout, c) in [
        ("header", &s.timeout_header),
        ("idle", &s.timeout_idle),
        ("send", &s.timeout_send),
        ("body", &s.timeout_body),
    ] {
        t.sample(
            "wasmtap_http_connections_timed_out_total",
            &[("timeout", timeout)],
            get(c),
        );
    }
}

/// The page size, from the auxiliary vector (`AT_PAGESZ`), else 4096.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    let word = std::mem::size_of::<usize>();
    let read = |b: &[u8]| -> u64 {
        let mut buf = [0u8; 8];
        buf[..word].copy_from_slice(b);
        u64::from_ne_bytes(buf)
    };
    auxv.chunks_exact(2 * word)
        .map(|p| (read(&p[..word]), read(&p[word..])))
        .find(|&(k, _)| k == AT_PAGESZ)
        .map_or(4096, |(_, v)| v)
}

/// Resident set size: `/proc/self/statm`'s second field times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// `Threads:` of `/proc/self/status`.
fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

pub(crate) async fn handler(_: Admin, State(cp): State<Arc<ControlPlane>>) -> Response {
    match render(&cp) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed sample line.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// Parses one sample line per the 0.0.4 text format.
    fn parse_sample(line: &str) -> Sample {
        let name_end = line.find(['{', ' ']).expect("name ends");
        let name = line[..name_end].to_owned();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            loop {
                let (start, c) = chars.next().expect("label or }");
                if c == '}' {
                    rest = &r[start + 1..];
                    break;
                }
                if c == ',' {
                    continue;
                }
                let eq = r[start..].find('=').expect("=") + start;
                let key = r[start..eq].to_owned();
                while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "opening quote");
                let mut value = String::new();
                loop {
                    match chars.next().expect("closing quote") {
                        (_, '"') => break,
                        (_, '\\') => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c}"),
                        },
                        (_, '\n') => panic!("raw newline in label"),
                        (_, c) => value.push(c),
                    }
                }
                labels.push((key, value));
            }
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}")),
        };
        Sample {
            name,
            labels,
            value,
        }
    }

    /// Parses a whole exposition: families with their type, samples.
    fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
        let mut types = BTreeMap::new();
        let mut helped = BTreeMap::new();
        let mut samples = Vec::new();
        let mut current: Option<String> = None;
        let mut seen_families = Vec::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("# HELP ") {
                let (name, _) = h.split_once(' ').expect("help text");
                assert!(helped.insert(name.to_owned(), ()).is_none(), "HELP twice");
            } else if let Some(tl) = line.strip_prefix("# TYPE ") {
                let (name, kind) = tl.split_once(' ').expect("type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{kind}"
                );
                assert!(helped.contains_key(name), "HELP before TYPE for {name}");
                assert!(!seen_families.contains(&name.to_owned()), "{name} twice");
                seen_families.push(name.to_owned());
                types.insert(name.to_owned(), kind.to_owned());
                current = Some(name.to_owned());
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let s = parse_sample(line);
                let fam = current.as_deref().expect("sample after TYPE");
                let ok = s.name == fam
                    || (types[fam] == "histogram"
                        && [
                            format!("{fam}_bucket"),
                            format!("{fam}_sum"),
                            format!("{fam}_count"),
                        ]
                        .contains(&s.name));
                assert!(ok, "sample {} outside its family {fam}", s.name);
                samples.push(s);
            }
        }
        (types, samples)
    }

    #[test]
    fn escaping_round_trips() {
        let mut t = Text::default();
        t.family("x_total", "counter", "help with \\ and\nnewline");
        let nasty = "a\"b\\c\nd é";
        t.sample("x_total", &[("l", nasty), ("m", "")], 3);
        let text = t.finish();
        assert!(text.contains("# HELP x_total help with \\\\ and\\nnewline\n"));
        let (_, samples) = parse(&text);
        assert_eq!(
            samples,
            vec![Sample {
                name: "x_total".into(),
                labels: vec![("l".into(), nasty.into()), ("m".into(), String::new())],
                value: 3.0,
            }]
        );
    }

    #[test]
    fn seconds_format() {
        assert_eq!(secs(0), "0.0");
        assert_eq!(secs(100), "0.0001");
        assert_eq!(secs(2_500_000), "2.5");
        assert_eq!(secs(1_000_000), "1.0");
    }

    #[test]
    fn page_size_is_sane() {
        let p = page_size();
        assert!(p.is_power_of_two() && p >= 4096, "{p}");
    }

    use crate::host::HostError;

    /// A host that serves every device with fixed counters.
    #[derive(Debug)]
    struct FixedHost;

    impl crate::host::Host for FixedHost {
        fn frontend(&self) -> crate::host::FrontendInfo {
            crate::host::FrontendInfo {
                kind: crate::host::FrontendKind::Sim,
                note: String::new(),
            }
        }
        fn validate(
            &self,
            _: &[u8],
        ) -> Result<crate::host::ModuleReport, crate::host::ModuleRefusal> {
            Ok(Default::default())
        }
        fn start(&self, _: &crate::host::DeviceSpec) -> Result<(), HostError> {
            Ok(())
        }
        fn stop(&self, _: i64) -> Result<(), HostError> {
            Ok(())
        }
        fn rebind(&self, _: &crate::host::DeviceSpec) -> Result<(), HostError> {
            Ok(())
        }
        fn live(&self, id: i64) -> Option<DeviceLive> {
            (id == 1).then(|| DeviceLive {
                state: DeviceState::Degraded,
                reason: Some("guest trapped".into()),
                restarts: 4,
                counters: crate::host::DeviceCounters {
                    commands: 100,
                    reads: 60,
                    writes: 40,
                    read_bytes: 1 << 20,
                    write_bytes: 1 << 19,
                    errors_by_sense_key: vec![0, 0, 9, 1],
                    in_flight: 5,
                    latency: crate::host::Histogram {
                        bounds_us: vec![10, 100, 1000],
                        counts: vec![50, 30, 15, 5],
                        sum_us: 123_456,
                    },
                },
                log: Vec::new(),
                exercising: false,
                resources: Some(crate::host::DeviceResources {
                    memory: 1 << 20,
                    open_files: 3,
                    open_files_limit: 64,
                    ..Default::default()
                }),
            })
        }
        fn debug(&self, _: i64) -> Result<String, HostError> {
            Ok(String::new())
        }
        fn export(&self, _: &crate::host::DeviceSpec) -> Result<crate::host::LunInfo, HostError> {
            Err(HostError::unsupported("no"))
        }
        fn unexport(
            &self,
            _: &crate::host::DeviceSpec,
            _: &crate::host::LunInfo,
        ) -> Result<(), HostError> {
            Ok(())
        }
        fn exercise(&self, _: i64, _: u32, _: u32, _: &str) -> Result<(), HostError> {
            Ok(())
        }
    }

    #[test]
    fn full_exposition_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::WebConfig::new(dir.path());
        cfg.builtin_modules = vec![("ram".into(), b"\0asm".to_vec())];
        let (cp, _) = ControlPlane::open(cfg, std::sync::Arc::new(FixedHost)).unwrap();
        let q = crate::Quota {
            max_devices: 9,
            max_total_bytes: 1 << 40,
            ..crate::Quota::default()
        };
        let t = cp.store.create_tenant("t1", &q).unwrap();
        cp.store.create_tenant("t2", &q).unwrap();
        let m = cp.store.modules(Scope::All).unwrap()[0].id;
        for (name, size) in [("d1", 4096), ("d2", 8192)] {
            cp.store
                .insert_device(
                    &crate::store::NewDevice {
                        tenant_id: t.id,
                        name: name.into(),
                        size,
                        block_size: 512,
                        module_id: m,
                        config: String::new(),
                    },
                    |id| dir.path().join(id.to_string()),
                )
                .unwrap();
        }
        let text = render(&cp).unwrap();
        let (types, samples) = parse(&text);
        let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
            let found: Vec<_> = samples
                .iter()
                .filter(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
                })
                .collect();
            assert_eq!(found.len(), 1, "{name} {labels:?}");
            found[0].value
        };
        let d1 = [("tenant", "t1"), ("device", "d1"), ("module", "ram")];
        let d2 = [("tenant", "t1"), ("device", "d2"), ("module", "ram")];
        assert_eq!(get("wasmtap_device_commands_total", &d1), 100.0);
        assert_eq!(get("wasmtap_device_commands_total", &d2), 0.0);
        assert_eq!(get("wasmtap_device_read_commands_total", &d1), 60.0);
        assert_eq!(get("wasmtap_device_write_commands_total", &d1), 40.0);
        assert_eq!(get("wasmtap_device_write_bytes_total", &d1), 524_288.0);
        assert_eq!(get("wasmtap_device_guest_restarts_total", &d1), 4.0);
        assert_eq!(get("wasmtap_device_in_flight", &d1), 5.0);
        assert_eq!(get("wasmtap_device_guest_memory_bytes", &d1), 1048576.0);
        assert_eq!(get("wasmtap_device_open_files", &d1), 3.0);
        assert_eq!(get("wasmtap_device_open_files_limit", &d1), 64.0);
        assert_eq!(get("wasmtap_device_up", &d1), 0.0, "degraded is not up");
        let nr = [d1[0], d1[1], d1[2], ("sense_key", "NOT_READY")];
        assert_eq!(get("wasmtap_device_errors_total", &nr), 9.0);
        let me = [d1[0], d1[1], d1[2], ("sense_key", "MEDIUM_ERROR")];
        assert_eq!(get("wasmtap_device_errors_total", &me), 1.0);
        // Histogram: cumulative buckets, +Inf equals _count.
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == "wasmtap_device_latency_seconds_bucket"
                    && s.labels.iter().any(|(k, v)| k == "device" && v == "d1")
            })
            .map(|s| {
                let le = &s.labels.iter().find(|(k, _)| k == "le").unwrap().1;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, s.value)
            })
            .collect();
        assert_eq!(
            buckets,
            vec![
                (0.00001, 50.0),
                (0.0001, 80.0),
                (0.001, 95.0),
                (f64::INFINITY, 100.0)
            ]
        );
        assert_eq!(get("wasmtap_device_latency_seconds_count", &d1), 100.0);
        assert!((get("wasmtap_device_latency_seconds_sum", &d1) - 0.123456).abs() < 1e-12);
        assert_eq!(get("wasmtap_device_latency_seconds_count", &d2), 0.0);
        // Tenants, including one without devices.
        assert_eq!(get("wasmtap_tenant_devices", &[("tenant", "t1")]), 2.0);
        assert_eq!(get("wasmtap_tenant_devices", &[("tenant", "t2")]), 0.0);
        assert_eq!(
            get("wasmtap_tenant_device_bytes", &[("tenant", "t1")]),
            12288.0
        );
        assert_eq!(
            get("wasmtap_tenant_commands_total", &[("tenant", "t1")]),
            100.0
        );
        assert_eq!(
            get("wasmtap_tenant_read_bytes_total", &[("tenant", "t1")]),
            1_048_576.0
        );
        assert_eq!(
            get("wasmtap_tenant_write_bytes_total", &[("tenant", "t2")]),
            0.0
        );
        assert_eq!(get("wasmtap_up", &[]), 1.0);
        assert_eq!(get("wasmtap_http_connections_open", &[]), 0.0);
        assert_eq!(
            get(
                "wasmtap_http_connections_refused_total",
                &[("limit", "per_peer")]
            ),
            0.0
        );
        assert_eq!(
            get(
                "wasmtap_http_connections_timed_out_total",
                &[("timeout", "header")]
            ),
            0.0
        );
        assert!(get("wasmtap_process_resident_memory_bytes", &[]) > 1e5);
        assert!(get("wasmtap_process_threads", &[]) >= 1.0);
        assert!(get("wasmtap_process_start_time_seconds", &[]) > 1.6e9);
        assert_eq!(types["wasmtap_device_latency_seconds"], "histogram");
        assert_eq!(types["wasmtap_device_commands_total"], "counter");
        assert_eq!(types["wasmtap_device_in_flight"], "gauge");
        // Counters end in _total.
        for (name, kind) in &types {
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
        }
    }

    #[test]
    fn parser_rejects_bad_lines() {
        for bad in ["x{l=\"a} 1", "x{l=\"a\\q\"} 1", "x 1a", "x{l=a} 1"] {
            let r = std::panic::catch_unwind(|| parse_sample(bad));
            assert!(r.is_err(), "{bad} should not parse");
        }
    }
}

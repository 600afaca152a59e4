//! `wasmtap module|device|tenant`: the command-line client of the JSON API
//! (`docs/api.md`).
//!
//! Every subcommand is one or two HTTP requests to the daemon. Output is a
//! table or a `key: value` block by default; `--json` prints the API's JSON
//! answer (pretty-printed) instead. An API error is returned as
//! `code: message` (and, with `--json`, its JSON is printed too).
//!
//! Where to connect and which token to send:
//!
//! * URL: `--url`, else `WASMTAP_URL`, else `url` in the config file, else
//!   [`DEFAULT_URL`].
//! * Token: `--token`, else `WASMTAP_TOKEN`, else `token` in the config file.
//!
//! The config file is `$XDG_CONFIG_HOME/wasmtap/client.toml`, or
//! `~/.config/wasmtap/client.toml` when `XDG_CONFIG_HOME` is unset:
//!
//! ```toml
//! url = "http://127.0.0.1:8470"
//! token = "wt_0123456789abcdef0123456789abcdef01234567"
//! ```
//!
//! Modules and devices can be named by id or by name (a name is looked up
//! in the caller's list first; an ambiguous name is refused with the ids).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::size::{human_size, parse_nonzero_size, parse_size};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8470";

/// How to reach the daemon; shared by `wasmtap module|device|tenant`
/// (flatten it into the subcommand; the flags are global, so they may also
/// follow the sub-subcommand).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct ClientOpts {
    /// Daemon address [default: $WASMTAP_URL, else `url` in
    /// ~/.config/wasmtap/client.toml, else http://127.0.0.1:8470].
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API token [default: $WASMTAP_TOKEN, else `token` in
    /// ~/.config/wasmtap/client.toml].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `wasmtap module ...`: WebAssembly backstore modules.
#[derive(Debug, clap::Subcommand)]
pub enum ModuleCmd {
    /// Upload a backstore component (the daemon validates and compiles it).
    Upload {
        /// The component file (`.wasm`).
        file: PathBuf,
        /// Module name [default: the file name without `.wasm`].
        #[arg(long)]
        name: Option<String>,
        /// Version label.
        #[arg(long)]
        version: Option<String>,
        /// Admin only: the tenant that will own the module.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List the modules you can use (yours and the built-in ones).
    #[command(visible_alias = "ls")]
    List,
    /// Show one module: hash, imports, exports, bound devices.
    Show {
        /// Module id (or unique name).
        id: String,
    },
    /// Delete a module (refused while a device is bound to it).
    #[command(visible_alias = "delete")]
    Rm {
        /// Module id (or unique name).
        id: String,
    },
}

/// `wasmtap device ...`: devices (LUNs backed by a module).
#[derive(Debug, clap::Subcommand)]
pub enum DeviceCmd {
    /// Create a device; it starts at once.
    Create {
        /// Device name (unique within the tenant).
        name: String,
        /// Size, e.g. 64M, 1G, or bytes.
        #[arg(long, value_parser = parse_nonzero_size)]
        size: u64,
        /// Logical block size.
        #[arg(long, default_value_t = 512, value_parser = parse_block_size)]
        block_size: u32,
        /// Backstore module id (or unique name, e.g. `ram`).
        #[arg(long)]
        module: String,
        /// Configuration string passed to the module.
        #[arg(long, default_value = "")]
        config: String,
        /// Admin only: the tenant that will own the device.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List devices with their state.
    #[command(visible_alias = "ls")]
    List,
    /// Show one device: state, counters, LUN.
    Show {
        /// Device id (or unique name).
        id: String,
    },
    /// Hot-swap the device's module (in-flight commands drain, none fail).
    Bind {
        /// Device id (or unique name).
        id: String,
        /// The new module's id (or unique name).
        #[arg(long)]
        module: String,
        /// New configuration string [default: keep the current one].
        #[arg(long)]
        config: Option<String>,
    },
    /// Delete a device: stop it, remove its LUN, delete its storage.
    #[command(visible_alias = "delete")]
    Rm {
        /// Device id (or unique name).
        id: String,
    },
    /// Admin only: export the device as a kernel LUN.
    Export {
        /// Device id (or unique name).
        id: String,
    },
    /// Admin only: remove the device's kernel LUN.
    Unexport {
        /// Device id (or unique name).
        id: String,
    },
    /// Simulator only: run the built-in verifying initiator against it.
    Exercise {
        /// Device id (or unique name).
        id: String,
        /// How long, in seconds (1..=600).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
        secs: u32,
        /// Commands in flight (1..=128).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=128))]
        queue_depth: u32,
        /// Which commands: `all` (reads, writes, FUA writes, SYNCHRONIZE
        /// CACHE, UNMAP, WRITE SAME, COMPARE AND WRITE, VERIFY, each
        /// verified), `rw`, or a list such as `read,write,unmap`.
        #[arg(long, default_value = "all")]
        mix: String,
    },
    /// Print the guest's recent log lines and its debug text.
    Log {
        /// Device id (or unique name).
        id: String,
    },
}

/// `wasmtap tenant ...`: tenants and their tokens (admin only).
#[derive(Debug, clap::Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (quotas not given take the daemon's defaults).
    Create {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Change a tenant's quotas.
    Set {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// List tenants with quotas and usage.
    #[command(visible_alias = "ls")]
    List,
    /// Show one tenant.
    Show {
        /// Tenant name.
        name: String,
    },
    /// Delete a tenant (refused while it owns devices or modules).
    #[command(visible_alias = "delete")]
    Rm {
        /// Tenant name.
        name: String,
    },
    /// Manage a tenant's API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

/// A tenant's quotas, as flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QuotaArgs {
    /// Most devices the tenant may have.
    #[arg(long)]
    pub max_devices: Option<u64>,
    /// Most total device size, e.g. 64G.
    #[arg(long, value_parser = parse_size)]
    pub max_total_size: Option<u64>,
    /// Guest memory budget shared by the tenant's devices, e.g. 1G.
    #[arg(long, value_parser = parse_size)]
    pub max_guest_memory: Option<u64>,
    /// Files the tenant's guests may hold open at once.
    #[arg(long)]
    pub max_open_files: Option<u64>,
    /// Guest instances at once (a hot swap holds two for a moment).
    #[arg(long)]
    pub max_instances: Option<u64>,
    /// Files the tenant's device directories may hold.
    #[arg(long)]
    pub max_stored_files: Option<u64>,
    /// Modules the tenant may own.
    #[arg(long)]
    pub max_modules: Option<u64>,
    /// Total size of the tenant's modules, e.g. 256M.
    #[arg(long, value_parser = parse_size)]
    pub max_module_total_size: Option<u64>,
}

/// `wasmtap tenant token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token (it is printed this once only).
    Create {
        /// Tenant name.
        tenant: String,
        /// What the token is for.
        #[arg(long)]
        label: String,
    },
    /// List a tenant's tokens (ids and labels, never the tokens).
    #[command(visible_alias = "ls")]
    List {
        /// Tenant name.
        tenant: String,
    },
    /// Revoke a token; it stops working at once.
    #[command(visible_alias = "rm")]
    Revoke {
        /// Tenant name.
        tenant: String,
        /// Token id (from `token list`).
        id: String,
    },
}

/// Any client subcommand (for [`run_with`]).
#[derive(Debug)]
pub enum Command {
    /// `wasmtap module ...`
    Module(ModuleCmd),
    /// `wasmtap device ...`
    Device(DeviceCmd),
    /// `wasmtap tenant ...`
    Tenant(TenantCmd),
}

/// Run `wasmtap module ...` against the daemon, printing to stdout.
pub fn run_module(opts: &ClientOpts, cmd: ModuleCmd) -> Result<(), String> {
    run_stdout(opts, Command::Module(cmd))
}

/// Run `wasmtap device ...` against the daemon, printing to stdout.
pub fn run_device(opts: &ClientOpts, cmd: DeviceCmd) -> Result<(), String> {
    run_stdout(opts, Command::Device(cmd))
}

/// Run `wasmtap tenant ...` against the daemon, printing to stdout.
pub fn run_tenant(opts: &ClientOpts, cmd: TenantCmd) -> Result<(), String> {
    run_stdout(opts, Command::Tenant(cmd))
}

fn run_stdout(opts: &ClientOpts, cmd: Command) -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok();
    run_with(opts, cmd, &env, &mut std::io::stdout().lock())
}

/// Run a subcommand with an explicit environment lookup (`WASMTAP_URL`,
/// `WASMTAP_TOKEN`, `XDG_CONFIG_HOME`, `HOME`) and output sink. Output
/// produced before an error is still written.
pub fn run_with(
    opts: &ClientOpts,
    cmd: Command,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let target = resolve(opts, env)?;
    let client = Client::new(target, opts.json);
    let mut text = String::new();
    let result = match cmd {
        Command::Module(c) => module(&client, c, &mut text),
        Command::Device(c) => device(&client, c, &mut text),
        Command::Tenant(c) => tenant(&client, c, &mut text),
    };
    // An API error's JSON (under --json) is part of the output too.
    let result = match result {
        Err(Failure::Api { json, text: t }) => {
            if opts.json {
                text.push_str(&json);
                text.push('\n');
            }
            Err(t)
        }
        Err(Failure::Other(t)) => Err(t),
        Ok(()) => Ok(()),
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write output: {e}"))?;
    result
}

// ---------------------------------------------------------------------------
// Where to connect.

/// The resolved daemon address and token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    url: String,
    token: String,
}

fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CONFIG_HOME") {
        return Some(Path::new(&x).join("wasmtap/client.toml"));
    }
    nonempty("HOME").map(|h| Path::new(&h).join(".config/wasmtap/client.toml"))
}

#[derive(Debug, Default)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
}

fn read_config(path: &Path) -> Result<FileConfig, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let get = |k: &str| -> Result<Option<String>, String> {
        match table.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{}: `{k}` must be a string", path.display())),
        }
    };
    Ok(FileConfig {
        url: get("url")?,
        token: get("token")?,
    })
}

fn resolve(opts: &ClientOpts, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, String> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let path = config_path(env);
    let file = match &path {
        Some(p) => read_config(p)?,
        None => FileConfig::default(),
    };
    let url = opts
        .url
        .clone()
        .or_else(|| nonempty("WASMTAP_URL"))
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let url = url.trim().trim_end_matches('/').to_string();
    if let Some(rest) = url.strip_prefix("https://") {
        return Err(format!(
            "{url}: this client speaks plain HTTP only (the daemon serves http://); use http://{rest}"
        ));
    }
    if !url.starts_with("http://") {
        return Err(format!(
            "invalid daemon URL {url:?}: expected http://HOST:PORT"
        ));
    }
    let token = opts
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| nonempty("WASMTAP_TOKEN"))
        .or(file.token)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        let where_ = path.map_or_else(
            || "$XDG_CONFIG_HOME/wasmtap/client.toml".to_string(),
            |p| p.display().to_string(),
        );
        return Err(format!(
            "no API token: pass --token, set WASMTAP_TOKEN, or put `token = \"wt_...\"` in {where_} \
             (the admin token is printed at the daemon's first start)"
        ));
    };
    Ok(Target { url, token })
}

// ---------------------------------------------------------------------------
// HTTP.

#[derive(Debug)]
enum Failure {
    /// The API answered an error: its pretty JSON (or raw body) and
    /// `code: message`.
    Api { json: String, text: String },
    /// Anything else (connection, local validation).
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

type Res<T> = Result<T, Failure>;

#[derive(Debug)]
enum Body {
    Empty,
    Json(Value),
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
}

#[derive(Debug)]
struct Client {
    target: Target,
    json: bool,
    agent: ureq::Agent,
}

impl Client {
    fn new(target: Target, json: bool) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            // Uploads are validated and compiled, and hot swaps drain
            // in-flight commands, before the answer: allow a while.
            .timeout_read(Duration::from_secs(300))
            .redirects(0)
            .build();
        Client {
            target,
            json,
            agent,
        }
    }

    /// One request; the parsed JSON answer (`Value::Null` for an empty body).
    fn call(&self, method: &str, path: &str, body: Body) -> Res<Value> {
        let url = format!("{}{path}", self.target.url);
        let req = self
            .agent
            .request(method, &url)
            .set("Authorization", &format!("Bearer {}", self.target.token))
            .set("Accept", "application/json");
        let result = match body {
            Body::Empty => req.call(),
            Body::Json(v) => req
                .set("Content-Type", "application/json")
                .send_string(&v.to_string()),
            Body::Raw {
                content_type,
                bytes,
            } => req.set("Content-Type", &content_type).send_bytes(&bytes),
        };
        match result {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| format!("{method} {url}: cannot read the answer: {e}"))?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|e| {
                    Failure::Other(format!("{method} {url}: the answer is not JSON ({e})"))
                })
            }
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err(api_error(status, &text))
            }
            Err(ureq::Error::Transport(t)) => {
                Err(Failure::Other(transport_error(&self.target.url, &t)))
            }
        }
    }

    fn get(&self, path: &str) -> Res<Value> {
        self.call("GET", path, Body::Empty)
    }
}

fn api_error(status: u16, body: &str) -> Failure {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v["error"]["code"].is_string() => {
            let code = v["error"]["code"].as_str().unwrap_or_default();
            let message = v["error"]["message"].as_str().unwrap_or("");
            Failure::Api {
                json: serde_json::to_string_pretty(&v).unwrap_or_else(|_| body.to_string()),
                text: format!("{code}: {message}"),
            }
        }
        _ => {
            let snippet: String = body.trim().chars().take(200).collect();
            let text = if snippet.is_empty() {
                format!("HTTP {status} (no error body)")
            } else {
                format!("HTTP {status}: {snippet}")
            };
            Failure::Api {
                json: body.to_string(),
                text,
            }
        }
    }
}

fn transport_error(url: &str, t: &ureq::Transport) -> String {
    let refused = {
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
        let mut found = false;
        while let Some(e) = src {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                found |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            src = e.source();
        }
        found
    };
    if refused {
        format!(
            "cannot connect to the wasmtap daemon at {url}: connection refused. \
             Is it running? Start it with `wasmtap serve`, or point --url or WASMTAP_URL at it."
        )
    } else if t.kind() == ureq::ErrorKind::ConnectionFailed || t.kind() == ureq::ErrorKind::Dns {
        format!(
            "cannot connect to the wasmtap daemon at {url}: {t}. \
             Is it running? Start it with `wasmtap serve`, or point --url or WASMTAP_URL at it."
        )
    } else {
        format!("talking to the wasmtap daemon at {url}: {t}")
    }
}

/// Percent-encode one path segment.
fn seg(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// A `multipart/form-data` body: text fields, then one file.
fn multipart(
    fields: &[(&str, &str)],
    file_field: &str,
    filename: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    // A boundary the content does not contain.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ u128::from(std::process::id());
    let mut n = seed;
    let boundary = loop {
        let b = format!("----wasmtap-{n:032x}");
        let hit = |hay: &[u8]| hay.windows(b.len()).any(|w| w == b.as_bytes());
        if !hit(bytes) && !fields.iter().any(|(_, v)| hit(v.as_bytes())) {
            break b;
        }
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
    };
    let quote = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(['\r', '\n'], " ")
    };
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (k, v) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{v}\r\n",
                quote(k)
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
             Content-Type: application/wasm\r\n\r\n",
            quote(file_field),
            quote(filename)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

// ---------------------------------------------------------------------------
// Local parsing.

fn parse_block_size(s: &str) -> Result<u32, String> {
    match s.trim() {
        "512" => Ok(512),
        "4096" | "4k" | "4K" => Ok(4096),
        _ => Err(format!("block size must be 512 or 4096, not {s:?}")),
    }
}

/// An id as the API gave it (number or string), for paths and messages.
fn id_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The items of a list answer: a bare array, or an object holding one.
fn items<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => {
            if let Some(Value::Array(a)) = o.get(key) {
                return a.iter().collect();
            }
            let arrays: Vec<&Vec<Value>> = o.values().filter_map(Value::as_array).collect();
            match arrays.as_slice() {
                [a] => a.iter().collect(),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// A module or device named by id or name: its path segment and JSON id.
fn lookup(client: &Client, kind: &str, arg: &str) -> Res<(String, Value)> {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        let id = arg
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(arg));
        return Ok((seg(arg), id));
    }
    let list = client.get(&format!("/api/v1/{kind}s"))?;
    let all = items(&list, &format!("{kind}s"));
    if let Some(hit) = all.iter().find(|m| id_str(&m["id"]) == arg) {
        return Ok((seg(arg), hit["id"].clone()));
    }
    // `name@version` picks one version of a module among several.
    let (name, version) = match arg.rsplit_once('@') {
        Some((n, v)) if kind == "module" && !n.is_empty() => (n, Some(v)),
        _ => (arg, None),
    };
    let named: Vec<&&Value> = all
        .iter()
        .filter(|m| m["name"] == name && version.is_none_or(|v| m["version"] == v))
        .collect();
    match named.as_slice() {
        [one] => Ok((seg(&id_str(&one["id"])), one["id"].clone())),
        [] => Err(Failure::Other(format!(
            "not_found: no {kind} with id or name {arg:?}"
        ))),
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|m| {
                    let owner = m
                        .get("tenant")
                        .or_else(|| m.get("owner"))
                        .map(text)
                        .unwrap_or_default();
                    format!("{} ({owner})", id_str(&m["id"]))
                })
                .collect();
            let how = if kind == "module" {
                "give the id or name@version"
            } else {
                "give the id"
            };
            Err(Failure::Other(format!(
                "{} {kind}s are named {arg:?} (ids {}): {how}",
                many.len(),
                ids.join(", ")
            )))
        }
    }
}

// ---------------------------------------------------------------------------
// Subcommands.

impl Client {
    /// Print `v` pretty under `--json`; else run `human`.
    fn show(&self, out: &mut String, v: &Value, human: impl FnOnce(&mut String, &Value)) {
        if self.json {
            if !v.is_null() {
                out.push_str(&serde_json::to_string_pretty(v).unwrap_or_default());
                out.push('\n');
            }
        } else {
            human(out, v);
        }
    }
}

fn module(c: &Client, cmd: ModuleCmd, out: &mut String) -> Res<()> {
    match cmd {
        ModuleCmd::Upload {
            file,
            name,
            version,
            tenant,
        } => {
            let bytes =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let filename = file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "module.wasm".into());
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{}: give the module a --name", file.display()))?,
            };
            let mut fields = vec![("name", name.as_str())];
            if let Some(v) = &version {
                fields.push(("version", v.as_str()));
            }
            let (content_type, body) = multipart(&fields, "file", &filename, &bytes);
            let path = match &tenant {
                Some(t) => format!("/api/v1/modules?tenant={}", seg(t)),
                None => "/api/v1/modules".to_string(),
            };
            let v = c.call(
                "POST",
                &path,
                Body::Raw {
                    content_type,
                    bytes: body,
                },
            )?;
            c.show(out, &v, |o, m| {
                let _ = writeln!(
                    o,
                    "uploaded module {} ({})",
                    id_str(&m["id"]),
                    text(&m["name"])
                );
                module_block(o, m);
            });
        }
        ModuleCmd::List => {
            let v = c.get("/api/v1/modules")?;
            c.show(out, &v, |o, v| module_table(o, &items(v, "modules")));
        }
        ModuleCmd::Show { id } => {
            let (p, _) = lookup(c, "module", &id)?;
            let v = c.get(&format!("/api/v1/modules/{p}"))?;
            c.show(out, &v, module_block);
        }
        ModuleCmd::Rm { id } => {
            let (p, jid) = lookup(c, "module", &id)?;
            let v = c.call("DELETE", &format!("/api/v1/modules/{p}"), Body::Empty)?;
            c.show(out, &v, |o, _| {
                let _ = writeln!(o, "deleted module {}", id_str(&jid));
            });
        }
    }
    Ok(())
}

fn device(c: &Client, cmd: DeviceCmd, out: &mut String) -> Res<()> {
    match cmd {
        DeviceCmd::Create {
            name,
            size,
            block_size,
            module,
            config,
            tenant,
        } => {
            if !size.is_multiple_of(u64::from(block_size)) {
                return Err(Failure::Other(format!(
                    "size {size} is not a multiple of the block size {block_size}"
                )));
            }
            let (_, module_id) = lookup(c, "module", &module)?;
            let mut body = json!({
                "name": name,
                "size": size,
                "block_size": block_size,
                "module": module_id,
                "config": config,
            });
            if let Some(t) = tenant {
                body["tenant"] = Value::from(t);
            }
            let v = c.call("POST", "/api/v1/devices", Body::Json(body))?;
            c.show(out, &v, |o, d| {
                let _ = writeln!(
                    o,
                    "created device {} ({})",
                    id_str(&d["id"]),
                    text(&d["name"])
                );
                device_block(o, d);
            });
            came_up(&v)?;
        }
        DeviceCmd::List => {
            let v = c.get("/api/v1/devices")?;
            c.show(out, &v, |o, v| device_table(o, &items(v, "devices")));
        }
        DeviceCmd::Show { id } => {
            let (p, _) = lookup(c, "device", &id)?;
            let v = c.get(&format!("/api/v1/devices/{p}"))?;
            c.show(out, &v, device_block);
        }
        DeviceCmd::Bind { id, module, config } => {
            let (p, _) = lookup(c, "device", &id)?;
            let (_, module_id) = lookup(c, "module", &module)?;
            let mut body = json!({ "module": module_id });
            if let Some(cfg) = config {
                body["config"] = Value::from(cfg);
            }
            let v = c.call(
                "PUT",
                &format!("/api/v1/devices/{p}/module"),
                Body::Json(body),
            )?;
            c.show(out, &v, |o, d| {
                let _ = writeln!(
                    o,
                    "device {} now runs module {}",
                    id_str(&d["id"]),
                    module_name(d).unwrap_or_else(|| id_str(&module_id))
                );
                device_block(o, d);
            });
            came_up(&v)?;
        }
        DeviceCmd::Rm { id } => {
            let (p, jid) = lookup(c, "device", &id)?;
            let v = c.call("DELETE", &format!("/api/v1/devices/{p}"), Body::Empty)?;
            c.show(out, &v, |o, _| {
                let _ = writeln!(o, "deleted device {}", id_str(&jid));
            });
        }
        DeviceCmd::Export { id } => {
            let (p, jid) = lookup(c, "device", &id)?;
            let v = c.call("POST", &format!("/api/v1/devices/{p}/export"), Body::Empty)?;
            c.show(out, &v, |o, v| {
                let lun = if v.get("lun").is_some() { &v["lun"] } else { v };
                let _ = writeln!(o, "exported device {} as {}", id_str(&jid), lun_text(lun));
            });
        }
        DeviceCmd::Unexport { id } => {
            let (p, jid) = lookup(c, "device", &id)?;
            let v = c.call(
                "DELETE",
                &format!("/api/v1/devices/{p}/export"),
                Body::Empty,
            )?;
            c.show(out, &v, |o, _| {
                let _ = writeln!(o, "removed the LUN of device {}", id_str(&jid));
            });
        }
        DeviceCmd::Exercise {
            id,
            secs,
            queue_depth,
            mix,
        } => {
            let (p, jid) = lookup(c, "device", &id)?;
            let body = json!({ "seconds": secs, "queue_depth": queue_depth, "mix": mix });
            let v = c.call(
                "POST",
                &format!("/api/v1/devices/{p}/exercise"),
                Body::Json(body),
            )?;
            c.show(out, &v, |o, _| {
                let _ = writeln!(
                    o,
                    "exercising device {} for {secs} s at queue depth {queue_depth} \
                     (`wasmtap device show {}` shows the counters)",
                    id_str(&jid),
                    id_str(&jid)
                );
            });
        }
        DeviceCmd::Log { id } => {
            let (p, _) = lookup(c, "device", &id)?;
            let v = c.get(&format!("/api/v1/devices/{p}/log"))?;
            c.show(out, &v, |o, v| {
                for line in v["log"].as_array().into_iter().flatten() {
                    let _ = writeln!(o, "{}", text(line));
                }
                let debug = text(&v["debug"]);
                if !debug.is_empty() {
                    let _ = writeln!(o, "--- debug ---\n{}", debug.trim_end());
                }
                if let Some(g) = v.get("guest_stats").filter(|g| g.is_object()) {
                    let _ = writeln!(o, "--- backstore counters ---\n{}", guest_stats_text(g));
                }
            });
        }
    }
    Ok(())
}

fn quota_body(q: &QuotaArgs, body: &mut Map<String, Value>) {
    if let Some(n) = q.max_devices {
        body.insert("max_devices".into(), n.into());
    }
    if let Some(n) = q.max_total_size {
        body.insert("max_total_bytes".into(), n.into());
    }
    if let Some(n) = q.max_guest_memory {
        body.insert("max_guest_memory".into(), n.into());
    }
    let more = [
        ("max_open_files", q.max_open_files),
        ("max_instances", q.max_instances),
        ("max_stored_files", q.max_stored_files),
        ("max_modules", q.max_modules),
        ("max_module_total_bytes", q.max_module_total_size),
    ];
    for (key, v) in more {
        if let Some(n) = v {
            body.insert(key.into(), n.into());
        }
    }
}

fn tenant(c: &Client, cmd: TenantCmd, out: &mut String) -> Res<()> {
    match cmd {
        TenantCmd::Create { name, quota } => {
            let mut body = Map::new();
            body.insert("name".into(), Value::from(name));
            quota_body(&quota, &mut body);
            let v = c.call("POST", "/api/v1/tenants", Body::Json(Value::Object(body)))?;
            c.show(out, &v, |o, t| {
                let _ = writeln!(o, "created tenant {}", text(&t["name"]));
                tenant_block(o, t);
            });
        }
        TenantCmd::Set { name, quota } => {
            let mut body = Map::new();
            quota_body(&quota, &mut body);
            if body.is_empty() {
                return Err(Failure::Other(
                    "nothing to change: give --max-devices, --max-total-size or --max-guest-memory"
                        .into(),
                ));
            }
            let path = format!("/api/v1/tenants/{}", seg(&name));
            let v = c.call("PATCH", &path, Body::Json(Value::Object(body)))?;
            c.show(out, &v, tenant_block);
        }
        TenantCmd::List => {
            let v = c.get("/api/v1/tenants")?;
            c.show(out, &v, |o, v| tenant_table(o, &items(v, "tenants")));
        }
        TenantCmd::Show { name } => {
            let v = c.get(&format!("/api/v1/tenants/{}", seg(&name)))?;
            c.show(out, &v, tenant_block);
        }
        TenantCmd::Rm { name } => {
            let v = c.call(
                "DELETE",
                &format!("/api/v1/tenants/{}", seg(&name)),
                Body::Empty,
            )?;
            c.show(out, &v, |o, _| {
                let _ = writeln!(o, "deleted tenant {name}");
            });
        }
        TenantCmd::Token { cmd } => match cmd {
            TokenCmd::Create { tenant, label } => {
                let path = format!("/api/v1/tenants/{}/tokens", seg(&tenant));
                let v = c.call("POST", &path, Body::Json(json!({ "label": label })))?;
                c.show(out, &v, |o, t| {
                    let _ = writeln!(
                        o,
                        "token {} ({}) for tenant {tenant}:\n\n    {}\n\n\
                         It is shown only this once; the daemon keeps only its hash.",
                        id_str(&t["id"]),
                        text(&t["label"]),
                        text(&t["token"])
                    );
                });
            }
            TokenCmd::List { tenant } => {
                let v = c.get(&format!("/api/v1/tenants/{}/tokens", seg(&tenant)))?;
                c.show(out, &v, |o, v| {
                    let rows: Vec<Vec<String>> = items(v, "tokens")
                        .iter()
                        .map(|t| {
                            vec![
                                id_str(&t["id"]),
                                text(&t["label"]),
                                time_text(&t["created_at"]),
                            ]
                        })
                        .collect();
                    table(o, &["ID", "LABEL", "CREATED"], &[], &rows, "tokens");
                });
            }
            TokenCmd::Revoke { tenant, id } => {
                let path = format!("/api/v1/tenants/{}/tokens/{}", seg(&tenant), seg(&id));
                let v = c.call("DELETE", &path, Body::Empty)?;
                c.show(out, &v, |o, _| {
                    let _ = writeln!(o, "revoked token {id} of tenant {tenant}");
                });
            }
        },
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Human output.

/// A JSON value as plain text: strings unquoted, null empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `text`, with `-` for nothing.
fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

/// The first of `paths` (dotted) present and non-null in `v`.
fn pick<'a>(v: &'a Value, paths: &[&str]) -> Option<&'a Value> {
    paths.iter().find_map(|p| {
        let mut cur = v;
        for k in p.split('.') {
            cur = cur.get(k)?;
        }
        (!cur.is_null()).then_some(cur)
    })
}

fn size_text(v: Option<&Value>) -> String {
    match v.and_then(Value::as_u64) {
        Some(b) => human_size(b),
        None => v.map(text).unwrap_or_default(),
    }
}

/// Unix seconds or milliseconds → `YYYY-MM-DD HH:MM:SS UTC`; strings as given.
fn time_text(v: &Value) -> String {
    let Some(mut secs) = v.as_i64() else {
        return text(v);
    };
    if secs > 100_000_000_000 {
        secs /= 1000;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn lun_text(lun: &Value) -> String {
    if lun.is_null() {
        return "-".into();
    }
    match (pick(lun, &["lun"]), pick(lun, &["wwn"])) {
        (Some(n), Some(w)) => {
            let mut s = format!("LUN {} on {}", text(n), text(w));
            if let Some(b) = pick(lun, &["backstore"]) {
                let _ = write!(s, " (backstore {})", text(b));
            }
            s
        }
        _ => text(lun),
    }
}

fn module_name(d: &Value) -> Option<String> {
    pick(d, &["module_name", "module.name"])
        .map(text)
        .or_else(|| pick(d, &["module"]).filter(|m| !m.is_object()).map(text))
}

/// The bound module's id: `module_id`, `module.id`, or `module` itself
/// when it is a scalar next to a `module_name`.
fn module_id(d: &Value) -> Option<&Value> {
    pick(d, &["module_id", "module.id"]).or_else(|| {
        pick(d, &["module"]).filter(|m| !m.is_object() && pick(d, &["module_name"]).is_some())
    })
}

/// A device that was created (or bound) but is not serving: the command
/// fails, naming the reason, so scripts notice (the device itself exists
/// and is shown above).
fn came_up(d: &Value) -> Res<()> {
    if state_of(d) != "offline" {
        return Ok(());
    }
    let reason = pick(d, &["reason", "live.reason", "status.reason"])
        .map(text)
        .unwrap_or_default();
    Err(Failure::Other(format!(
        "device {} is offline: {}",
        id_str(&d["id"]),
        or_dash(reason)
    )))
}

fn state_of(d: &Value) -> String {
    or_dash(
        pick(d, &["state", "live.state", "status.state"])
            .map(text)
            .unwrap_or_default(),
    )
}

/// Left-aligned columns except those listed in `right`; two spaces apart.
fn table(out: &mut String, headers: &[&str], right: &[usize], rows: &[Vec<String>], what: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "no {what}");
        return;
    }
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w[i] - c.chars().count();
            if right.contains(&i) {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    let hdr: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    line(out, &hdr);
    for r in rows {
        line(out, r);
    }
}

/// `key: value` lines with aligned values, then the fields of `v` not in
/// `used` (scalars only), so nothing the API says is hidden.
fn block(out: &mut String, rows: &[(&str, String)], v: &Value, used: &[&str]) {
    let mut rows: Vec<(String, String)> = rows
        .iter()
        .filter(|(_, val)| !val.is_empty())
        .map(|(k, val)| (k.to_string(), val.clone()))
        .collect();
    if let Some(o) = v.as_object() {
        let used: BTreeSet<&str> = used.iter().copied().collect();
        for (k, val) in o {
            if used.contains(k.as_str()) || val.is_null() || val.is_object() {
                continue;
            }
            let val = match val {
                Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
                other => text(other),
            };
            if !val.is_empty() {
                rows.push((k.replace('_', " "), val));
            }
        }
    }
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, val) in rows {
        let pad = w - k.chars().count();
        let mut lines = val.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "{k}:{}  {first}", " ".repeat(pad));
        for l in lines {
            let _ = writeln!(out, "{}   {l}", " ".repeat(w));
        }
    }
}

fn list_text(v: &Value) -> String {
    match v {
        Value::Array(a) if a.is_empty() => "(none)".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Object(_) => {
                    let id = pick(x, &["id"]).map(id_str).unwrap_or_default();
                    match pick(x, &["name"]) {
                        Some(n) if !id.is_empty() => format!("{id} ({})", text(n)),
                        Some(n) => text(n),
                        None => x.to_string(),
                    }
                }
                other => text(other),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => text(other),
    }
}

fn owner_text(m: &Value) -> String {
    if m["builtin"] == true || (m.get("owner").is_some() && m["owner"].is_null()) {
        "built-in".into()
    } else {
        or_dash(text(&m["owner"]))
    }
}

fn module_table(out: &mut String, list: &[&Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let devices = match &m["bound_devices"] {
                Value::Array(a) => a.len().to_string(),
                Value::Null => "-".into(),
                other => text(other),
            };
            vec![
                id_str(&m["id"]),
                text(&m["name"]),
                or_dash(text(&m["version"])),
                or_dash(size_text(m.get("size"))),
                owner_text(m),
                devices,
                text(&m["sha256"]).chars().take(12).collect(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "ID", "NAME", "VERSION", "SIZE", "OWNER", "DEVICES", "SHA256",
        ],
        &[3, 5],
        &rows,
        "modules",
    );
}

fn module_block(out: &mut String, m: &Value) {
    let size = match m["size"].as_u64() {
        Some(b) => format!("{} ({b} bytes)", human_size(b)),
        None => text(&m["size"]),
    };
    block(
        out,
        &[
            ("id", id_str(&m["id"])),
            ("name", text(&m["name"])),
            ("version", or_dash(text(&m["version"]))),
            ("owner", owner_text(m)),
            ("uploaded by", text(&m["uploaded_by"])),
            ("created", time_text(&m["created_at"])),
            ("size", size),
            ("sha256", text(&m["sha256"])),
            (
                "imports",
                m.get("imports").map(list_text).unwrap_or_default(),
            ),
            (
                "exports",
                m.get("exports").map(list_text).unwrap_or_default(),
            ),
            (
                "bound devices",
                m.get("bound_devices").map(list_text).unwrap_or_default(),
            ),
        ],
        m,
        &[
            "id",
            "name",
            "version",
            "owner",
            "builtin",
            "uploaded_by",
            "created_at",
            "size",
            "sha256",
            "imports",
            "exports",
            "bound_devices",
        ],
    );
}

fn device_table(out: &mut String, list: &[&Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                id_str(&d["id"]),
                text(&d["name"]),
                or_dash(pick(d, &["tenant", "owner"]).map(text).unwrap_or_default()),
                or_dash(size_text(d.get("size"))),
                or_dash(text(&d["block_size"])),
                or_dash(module_name(d).unwrap_or_default()),
                state_of(d),
                match pick(d, &["lun.lun", "lun"]) {
                    Some(l) if !l.is_object() => text(l),
                    Some(l) => lun_text(l),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    table(
        out,
        &[
            "ID", "NAME", "TENANT", "SIZE", "BLOCK", "MODULE", "STATE", "LUN",
        ],
        &[3, 4],
        &rows,
        "devices",
    );
}

fn device_block(out: &mut String, d: &Value) {
    let size = match d["size"].as_u64() {
        Some(b) => format!("{} ({b} bytes)", human_size(b)),
        None => text(&d["size"]),
    };
    let counters = pick(d, &["counters", "live.counters", "status.counters"]);
    let ctr = |k: &str| counters.and_then(|c| c.get(k)).and_then(Value::as_u64);
    let mut rows = vec![
        ("id", id_str(&d["id"])),
        ("name", text(&d["name"])),
        (
            "tenant",
            pick(d, &["tenant", "owner"]).map(text).unwrap_or_default(),
        ),
        ("size", size),
        ("block size", text(&d["block_size"])),
        (
            "module",
            match (module_name(d), module_id(d)) {
                (Some(n), Some(id)) => format!("{n} (id {})", id_str(id)),
                (Some(n), None) => n,
                (None, Some(id)) => id_str(id),
                (None, None) => String::new(),
            },
        ),
        ("config", text(&d["config"])),
        ("state", state_of(d)),
        (
            "reason",
            pick(d, &["reason", "live.reason", "status.reason"])
                .map(text)
                .unwrap_or_default(),
        ),
        (
            "restarts",
            pick(d, &["restarts", "live.restarts", "status.restarts"])
                .map(text)
                .unwrap_or_default(),
        ),
        (
            "lun",
            match pick(d, &["lun"]) {
                Some(l) => lun_text(l),
                None => "-".into(),
            },
        ),
        ("created", time_text(&d["created_at"])),
    ];
    if let Some(n) = ctr("commands") {
        rows.push(("commands", n.to_string()));
        let io = |n: Option<u64>, b: Option<u64>| match (n, b) {
            (Some(n), Some(b)) => format!("{n} ({})", human_size(b)),
            (Some(n), None) => n.to_string(),
            _ => String::new(),
        };
        rows.push(("reads", io(ctr("reads"), ctr("read_bytes"))));
        rows.push(("writes", io(ctr("writes"), ctr("write_bytes"))));
        if let Some(f) = ctr("in_flight") {
            rows.push(("in flight", f.to_string()));
        }
        let errs: Vec<String> = counters
            .and_then(|c| c["errors_by_sense_key"].as_array())
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(key, n)| {
                n.as_u64()
                    .filter(|&n| n > 0)
                    .map(|n| format!("{n} (sense key {key:#x})"))
            })
            .collect();
        rows.push((
            "errors",
            if errs.is_empty() {
                "0".into()
            } else {
                errs.join(", ")
            },
        ));
        let sum = counters.and_then(|c| c["latency"]["sum_us"].as_u64());
        if let (Some(sum), true) = (sum, n > 0) {
            rows.push(("mean latency", format!("{} µs", sum / n)));
        }
    }
    if let Some(g) = d.get("guest_stats").filter(|g| g.is_object()) {
        rows.push(("backstore says", guest_stats_text(g)));
    }
    block(
        out,
        &rows,
        d,
        &[
            "id",
            "name",
            "tenant",
            "owner",
            "size",
            "block_size",
            "module",
            "module_name",
            "module_id",
            "config",
            "state",
            "reason",
            "restarts",
            "lun",
            "created_at",
            "counters",
            "guest_stats",
        ],
    );
}

/// A backstore's own counters (its `stats()`), on one line.
fn guest_stats_text(g: &Value) -> String {
    let n = |k: &str| g[k].as_u64().unwrap_or(0);
    format!(
        "reads {} ({}), writes {} ({}), flushes {}, discards {}, errors {}",
        n("reads"),
        human_size(n("bytes_read")),
        n("writes"),
        human_size(n("bytes_written")),
        n("flushes"),
        n("discards"),
        n("errors")
    )
}

/// `used of max` for a tenant's usage against a quota.
fn usage_text(used: Option<&Value>, max: Option<&Value>, size: bool) -> String {
    let f = |v: Option<&Value>| {
        if size {
            size_text(v)
        } else {
            v.map(text).unwrap_or_default()
        }
    };
    match (used, max) {
        (Some(_), Some(_)) => format!("{} of {}", f(used), f(max)),
        (Some(_), None) => f(used),
        (None, Some(_)) => format!("max {}", f(max)),
        (None, None) => "-".into(),
    }
}

const USED_DEVICES: &[&str] = &["usage.devices", "devices", "device_count"];
const MAX_DEVICES: &[&str] = &["max_devices", "quota.max_devices", "quotas.max_devices"];
const USED_BYTES: &[&str] = &["usage.total_bytes", "total_bytes"];
const MAX_BYTES: &[&str] = &[
    "max_total_bytes",
    "quota.max_total_bytes",
    "quotas.max_total_bytes",
];
const MAX_MEMORY: &[&str] = &[
    "max_guest_memory",
    "quota.max_guest_memory",
    "quotas.max_guest_memory",
];

fn tenant_table(out: &mut String, list: &[&Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                text(&t["name"]),
                usage_text(
                    pick(t, USED_DEVICES).filter(|v| v.is_number()),
                    pick(t, MAX_DEVICES),
                    false,
                ),
                usage_text(pick(t, USED_BYTES), pick(t, MAX_BYTES), true),
                or_dash(size_text(pick(t, MAX_MEMORY))),
            ]
        })
        .collect();
    table(
        out,
        &["NAME", "DEVICES", "TOTAL SIZE", "GUEST MEMORY"],
        &[],
        &rows,
        "tenants",
    );
}

fn tenant_block(out: &mut String, t: &Value) {
    block(
        out,
        &[
            ("name", text(&t["name"])),
            (
                "devices",
                usage_text(
                    pick(t, USED_DEVICES).filter(|v| v.is_number()),
                    pick(t, MAX_DEVICES),
                    false,
                ),
            ),
            (
                "total size",
                usage_text(pick(t, USED_BYTES), pick(t, MAX_BYTES), true),
            ),
            (
                "guest memory",
                usage_text(pick(t, &["resources.memory"]), pick(t, MAX_MEMORY), true),
            ),
            (
                "open files",
                usage_text(
                    pick(t, &["resources.open_files"]),
                    pick(t, &["max_open_files"]),
                    false,
                ),
            ),
            (
                "instances",
                usage_text(
                    pick(t, &["resources.instances"]),
                    pick(t, &["max_instances"]),
                    false,
                ),
            ),
            (
                "stored files",
                usage_text(
                    pick(t, &["resources.storage_files"]),
                    pick(t, &["max_stored_files"]),
                    false,
                ),
            ),
            (
                "modules",
                usage_text(
                    pick(t, &["usage.modules"]),
                    pick(t, &["max_modules"]),
                    false,
                ),
            ),
            (
                "module bytes",
                usage_text(
                    pick(t, &["usage.module_bytes"]),
                    pick(t, &["max_module_total_bytes"]),
                    true,
                ),
            ),
            ("created", time_text(&t["created_at"])),
        ],
        t,
        &[
            "name",
            "devices",
            "device_count",
            "total_bytes",
            "max_devices",
            "max_total_bytes",
            "max_guest_memory",
            "created_at",
            "usage",
            "quota",
            "quotas",
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time_text(&json!(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time_text(&json!(1_700_000_000)), "2023-11-14 22:13:20 UTC");
        assert_eq!(
            time_text(&json!(1_700_000_000_123_i64)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(
            time_text(&json!("2024-01-02T03:04:05Z")),
            "2024-01-02T03:04:05Z"
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("acme-1_x.y~"), "acme-1_x.y~");
    }

    #[test]
    fn multipart_boundary_avoids_content() {
        let (ct, body) = multipart(&[("name", "x")], "file", "x.wasm", b"\0asm");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        assert!(body.starts_with(format!("--{boundary}\r\n").as_bytes()));
        assert!(body.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
    }
}

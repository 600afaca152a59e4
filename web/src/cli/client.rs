//! Reaching the daemon: where (`--url`, `WASMTAP_URL`, the config file),
//! with which token, and one HTTP request at a time with the API's answers
//! read as the types of `crate::dto`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dto::ErrorBody;

use super::render::{Columns, table};

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

// ---------------------------------------------------------------------------
// Where to connect.

/// The resolved daemon address and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
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

pub(super) fn resolve(
    opts: &ClientOpts,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, String> {
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
pub(super) enum Failure {
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

pub(super) type Res<T> = Result<T, Failure>;

/// What a request sends.
#[derive(Debug)]
pub(super) enum Body {
    /// Nothing.
    Empty,
    /// A JSON document.
    Json(String),
    /// Other bytes (a module upload).
    Raw {
        /// Its `Content-Type`.
        content_type: String,
        /// The body.
        bytes: Vec<u8>,
    },
}

impl Body {
    /// `v` as a JSON body.
    pub(super) fn json(v: &impl Serialize) -> Self {
        Body::Json(serde_json::to_string(v).unwrap_or_default())
    }
}

/// An answer: what it says, read as the route's type, and its JSON text
/// (printed as is under `--json`; empty for `204 No Content`).
#[derive(Debug)]
pub(super) struct Reply<T> {
    /// The answer.
    pub(super) data: T,
    text: String,
}

/// The daemon's client: where, and whether to print JSON.
#[derive(Debug)]
pub(super) struct Client {
    target: Target,
    json: bool,
    agent: ureq::Agent,
}

impl Client {
    pub(super) fn new(target: Target, json: bool) -> Self {
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

    /// One request; its answer read as `T` (`()` for an empty answer).
    pub(super) fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Body,
    ) -> Res<Reply<T>> {
        let url = format!("{}{path}", self.target.url);
        let req = self
            .agent
            .request(method, &url)
            .set("Authorization", &format!("Bearer {}", self.target.token))
            .set("Accept", "application/json");
        let result = match body {
            Body::Empty => req.call(),
            Body::Json(text) => req
                .set("Content-Type", "application/json")
                .send_string(&text),
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
                let json = if text.trim().is_empty() {
                    "null"
                } else {
                    &text
                };
                let data = serde_json::from_str(json).map_err(|e| {
                    Failure::Other(format!(
                        "{method} {url}: the answer is not what this client expects ({e})"
                    ))
                })?;
                Ok(Reply { data, text })
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

    /// `GET path`, read as `T`.
    pub(super) fn get<T: DeserializeOwned>(&self, path: &str) -> Res<Reply<T>> {
        self.call("GET", path, Body::Empty)
    }

    /// `GET path`: a list, shown as a table of `cols`, one `row` each.
    pub(super) fn list<T: DeserializeOwned>(
        &self,
        out: &mut String,
        path: &str,
        cols: &Columns,
        row: impl Fn(&T) -> Vec<String>,
    ) -> Res<()> {
        let r = self.get::<Vec<T>>(path)?;
        self.show(out, &r, |o, items| table(o, cols, items, row));
        Ok(())
    }

    /// `DELETE path`; then says `done` (under `--json`, nothing: the answer
    /// is empty).
    pub(super) fn delete(&self, out: &mut String, path: &str, done: &str) -> Res<()> {
        let r = self.call::<()>("DELETE", path, Body::Empty)?;
        self.show(out, &r, |o, ()| {
            o.push_str(done);
            o.push('\n');
        });
        Ok(())
    }

    /// Under `--json`, the answer's JSON as the API sent it (pretty, and
    /// nothing for an empty answer); else `human` renders what it says.
    pub(super) fn show<T>(
        &self,
        out: &mut String,
        reply: &Reply<T>,
        human: impl FnOnce(&mut String, &T),
    ) {
        if !self.json {
            human(out, &reply.data);
        } else if !reply.text.trim().is_empty() {
            out.push_str(&pretty(&reply.text));
            out.push('\n');
        }
    }
}

/// JSON text, pretty-printed (as given if it is not JSON).
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

fn api_error(status: u16, body: &str) -> Failure {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => Failure::Api {
            json: pretty(body),
            text: format!("{}: {}", error.code, error.message),
        },
        Err(_) => {
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
pub(super) fn seg(s: &str) -> String {
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
pub(super) fn multipart(
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

#[cfg(test)]
mod tests {
    use super::*;

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

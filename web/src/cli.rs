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
//!
//! Requests and answers are the types of `crate::dto`, the ones the server
//! emits; one file per command group (`module`, `device`, `tenant`), with
//! the connection in `client`, name lookup in `lookup` and the human output
//! in `render`.

mod client;
mod device;
mod lookup;
mod module;
mod render;
mod tenant;

use std::io::Write;

pub use client::{ClientOpts, DEFAULT_URL};
pub use device::DeviceCmd;
pub use module::ModuleCmd;
pub use tenant::{QuotaArgs, TenantCmd, TokenCmd};

use client::{Client, Failure};

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
    let target = client::resolve(opts, env)?;
    let client = Client::new(target, opts.json);
    let mut text = String::new();
    let result = match cmd {
        Command::Module(c) => module::run(&client, c, &mut text),
        Command::Device(c) => device::run(&client, c, &mut text),
        Command::Tenant(c) => tenant::run(&client, c, &mut text),
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

//! `wasmtap`: the daemon and its command-line tools (see the library docs).
//!
//! * `wasmtap serve`: serve every TCMU device of our handler subtype (one
//!   worker thread per device), or a simulated device when the host has no
//!   LIO.
//! * `wasmtap lun create|delete`: make or remove a user backstore exported
//!   as a tcm_loop LUN, without targetcli.
//! * `wasmtap module|device|tenant ...`: the control plane's CLI, a client
//!   of a running daemon's JSON API.
//! * `wasmtap demo`: one simulated device under a built-in verifying
//!   initiator, printing throughput.
//! * `wasmtap bench`: backend benchmarks on simulated devices.
//! * `wasmtap check`: a conformance battery for a backstore module.
//! * `wasmtap new`: start a backstore crate from the template.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wasmtap::config::{Frontend, ServeConfig};
use wasmtap::{lun, scaffold, serve};

#[derive(Debug, Parser)]
#[command(
    name = "wasmtap",
    version,
    about = "Userspace backstore host for the Linux SCSI target (TCMU)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve devices (real TCMU, or simulated without LIO) and the web UI/API
    /// until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// One simulated device under a built-in verifying initiator (no LIO,
    /// no control plane); prints throughput every two seconds.
    Demo(ServeArgs),
    /// Upload, list and delete backstore modules (talks to a running daemon).
    Module {
        #[command(flatten)]
        opts: wasmtap_web::cli::ClientOpts,
        #[command(subcommand)]
        cmd: wasmtap_web::cli::ModuleCmd,
    },
    /// Create, inspect, rebind, export and delete devices (talks to a running daemon).
    Device {
        #[command(flatten)]
        opts: wasmtap_web::cli::ClientOpts,
        #[command(subcommand)]
        cmd: wasmtap_web::cli::DeviceCmd,
    },
    /// Manage tenants, quotas and tokens (admin; talks to a running daemon).
    Tenant {
        #[command(flatten)]
        opts: wasmtap_web::cli::ClientOpts,
        #[command(subcommand)]
        cmd: wasmtap_web::cli::TenantCmd,
    },
    /// Benchmark backends on a simulated device (prints a table, or JSON).
    Bench {
        /// Seconds per case and repetition.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Interleaved repetitions (medians and spread are printed).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Directory for file-backed cases (default: /dev/shm, a tmpfs).
        #[arg(long, default_value = "/dev/shm")]
        dir: PathBuf,
    },
    /// Check a backstore module: load and open it as the daemon would, then
    /// run a conformance battery on a simulated device through the SCSI
    /// target (prints a table, or JSON; exits non-zero if a check fails).
    Check {
        /// The module (a WebAssembly component).
        module: PathBuf,
        /// Configuration string for the module's `open` (`size=` and
        /// `sector=` are added unless set).
        #[arg(long, default_value = "")]
        config: String,
        /// Device size, e.g. 64M or 1G.
        #[arg(long, default_value = "64M")]
        size: String,
        /// Logical block size.
        #[arg(long, default_value_t = 512, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["512", "4096"]), |s| s.parse::<u32>().unwrap_or(512)))]
        block_size: u32,
        /// Seconds of each random-I/O phase (queue depths 1, 8, 32; hot swap).
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Keep the data directory (device storage, cache) in DIR instead
        /// of a temporary one removed at the end.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// TOML configuration file whose `[guests]` limits apply (as `serve`).
        #[arg(long = "daemon-config", value_name = "PATH")]
        daemon_config: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create or delete a TCMU backstore exported as a tcm_loop LUN.
    Lun {
        #[command(subcommand)]
        cmd: LunCmd,
    },
    /// Start a backstore crate: a RAM disk built with the guest SDK, ready
    /// for `cargo build --release --target wasm32-wasip2`.
    New {
        /// Crate name (letters, digits, `-`, `_`).
        name: String,
        /// Directory to create (default: ./NAME); must not exist or be empty.
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
        /// The guest SDK the crate depends on by path (default: the
        /// `guest-sdk` of the checkout this binary was built from).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
}

/// The environment variable that may hold the admin token.
const ADMIN_TOKEN_ENV: &str = "WASMTAP_ADMIN_TOKEN";

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file (keys as in `ServeConfig`; flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Device source.
    #[arg(long, value_enum)]
    frontend: Option<Frontend>,
    /// configfs mount point.
    #[arg(long)]
    configfs: Option<PathBuf>,
    /// Stop after this many seconds (demo and test runs).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Data directory (device directories, modules, caches).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `wasmtap demo`'s backstore: `native`, or `<module>[/<config>]`
    /// (built-in modules: null, ram, raw-file).
    #[arg(long)]
    sim_backstore: Option<String>,
    /// Address of the web UI and JSON API (default 127.0.0.1:8470).
    #[arg(long)]
    listen: Option<String>,
    /// Admin token. Every user sees it in `ps`: prefer $WASMTAP_ADMIN_TOKEN
    /// or --admin-token-file (default: `admin_token` or `admin_token_file`
    /// in the config, else generated at the first start and printed once).
    #[arg(long, value_name = "TOKEN", conflicts_with = "admin_token_file")]
    admin_token: Option<String>,
    /// File whose first line is the admin token (keep it mode 0600).
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// Do not serve the web UI and API.
    #[arg(long)]
    no_web: bool,
    /// Watch each busy device's ring this many microseconds before its
    /// worker sleeps (default 0: off; trades CPU for latency).
    #[arg(long)]
    poll_us: Option<u64>,
}

impl ServeArgs {
    fn config(self) -> Result<(ServeConfig, Option<u64>), String> {
        let mut cfg = match &self.config {
            Some(p) => ServeConfig::from_file(p)?,
            None => ServeConfig::default(),
        };
        if let Some(f) = self.frontend {
            cfg.frontend = f;
        }
        if let Some(c) = self.configfs {
            cfg.configfs = c;
        }
        if let Some(d) = self.data_dir {
            cfg.data_dir = d;
        }
        if let Some(b) = self.sim_backstore {
            cfg.sim_backstore = b;
        }
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        // The admin token: --admin-token, --admin-token-file,
        // $WASMTAP_ADMIN_TOKEN, then the config file's.
        let from_env = std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        if let Some(t) = self.admin_token {
            tracing::warn!(
                "--admin-token puts the admin token on the command line, where every user of \
                 this host sees it (ps, /proc/<pid>/cmdline): use ${ADMIN_TOKEN_ENV} or \
                 --admin-token-file instead"
            );
            (cfg.admin_token, cfg.admin_token_file) = (Some(t), None);
        } else if let Some(f) = self.admin_token_file {
            (cfg.admin_token, cfg.admin_token_file) = (None, Some(f));
        } else if let Some(t) = from_env {
            (cfg.admin_token, cfg.admin_token_file) = (Some(t), None);
        }
        if self.no_web {
            cfg.web = false;
        }
        if let Some(p) = self.poll_us {
            cfg.poll_us = p;
        }
        Ok((cfg, self.duration_secs))
    }
}

#[derive(Debug, Subcommand)]
enum LunCmd {
    /// Create a user backstore with our handler and a tcm_loop LUN for it.
    Create {
        /// Backstore name.
        name: String,
        /// Size, e.g. 1G or 512M.
        #[arg(long)]
        size: String,
        /// Logical block size (512 or 4096).
        #[arg(long, default_value_t = 512)]
        block_size: u32,
        /// Largest transfer per command in bytes.
        #[arg(long, default_value = "1M")]
        max_transfer: String,
        /// Device configuration string passed to the backstore (no ':').
        #[arg(long, default_value = "")]
        dev_config: String,
        /// configfs mount point.
        #[arg(long, default_value = wasmtap_kernel::configfs::DEFAULT_ROOT)]
        configfs: PathBuf,
    },
    /// Delete the LUN(s) exporting a backstore, then the backstore.
    Delete {
        /// Backstore name.
        name: String,
        /// configfs mount point.
        #[arg(long, default_value = wasmtap_kernel::configfs::DEFAULT_ROOT)]
        configfs: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: log files and journald get plain text
        // that grep can match.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(a) => a
            .config()
            .and_then(|(cfg, secs)| serve::run(&cfg, secs.map(std::time::Duration::from_secs))),
        Cmd::Demo(a) => a.config().and_then(|(cfg, secs)| {
            serve::run_demo(&cfg, secs.map(std::time::Duration::from_secs))
        }),
        Cmd::Module { opts, cmd } => wasmtap_web::cli::run_module(&opts, cmd),
        Cmd::Device { opts, cmd } => wasmtap_web::cli::run_device(&opts, cmd),
        Cmd::Tenant { opts, cmd } => wasmtap_web::cli::run_tenant(&opts, cmd),
        Cmd::Bench {
            secs,
            reps,
            json,
            dir,
        } => wasmtap::bench::run(&wasmtap::bench::all_rows(dir), secs, reps, json),
        Cmd::Check {
            module,
            config,
            size,
            block_size,
            secs,
            keep,
            daemon_config,
            json,
        } => {
            return check(
                module,
                config,
                &size,
                block_size,
                secs,
                keep,
                daemon_config,
                json,
            );
        }
        Cmd::Lun { cmd } => match cmd {
            LunCmd::Create {
                name,
                size,
                block_size,
                max_transfer,
                dev_config,
                configfs,
            } => lun::create(
                &configfs,
                &name,
                &size,
                block_size,
                &max_transfer,
                &dev_config,
            ),
            LunCmd::Delete { name, configfs } => lun::delete(&configfs, &name),
        },
        Cmd::New { name, dir, sdk } => {
            scaffold::create(&name, dir.as_deref(), sdk.as_deref()).map(|dir| {
                println!(
                    "created backstore crate `{name}` in {}\n\
                     build it: cd {} && cargo build --release --target wasm32-wasip2\n\
                     component: target/wasm32-wasip2/release/{}.wasm",
                    dir.display(),
                    dir.display(),
                    name.replace('-', "_"),
                );
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmtap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `wasmtap check`.
#[allow(clippy::too_many_arguments)]
fn check(
    module: PathBuf,
    config: String,
    size: &str,
    block_size: u32,
    secs: f64,
    keep: Option<PathBuf>,
    daemon_config: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let setup = || -> Result<wasmtap::check::Options, String> {
        let bytes = std::fs::read(&module).map_err(|e| format!("{}: {e}", module.display()))?;
        let mut o = wasmtap::check::Options::new(&module.display().to_string(), bytes);
        o.config = config;
        o.size = wasmtap_web::size::parse_nonzero_size(size)?;
        o.block_size = block_size;
        o.load_secs = secs;
        o.keep = keep;
        if let Some(p) = daemon_config {
            o.limits = ServeConfig::from_file(&p)?.guests;
        }
        Ok(o)
    };
    let opts = match setup() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("wasmtap: {e}");
            return ExitCode::from(2);
        }
    };
    let report = wasmtap::check::run(&opts);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut all = vec!["wasmtap", "serve"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.cmd {
            Cmd::Serve(a) => Ok(a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn check_flags() {
        let cli = Cli::try_parse_from([
            "wasmtap",
            "check",
            "m.wasm",
            "--config",
            "file=a.img",
            "--size",
            "32M",
            "--block-size",
            "4096",
            "--json",
        ])
        .unwrap();
        match cli.cmd {
            Cmd::Check {
                module,
                config,
                size,
                block_size,
                json,
                keep,
                ..
            } => {
                assert_eq!(module, PathBuf::from("m.wasm"));
                assert_eq!(config, "file=a.img");
                assert_eq!(size, "32M");
                assert_eq!(block_size, 4096);
                assert!(json);
                assert_eq!(keep, None);
            }
            _ => unreachable!(),
        }
        assert!(
            Cli::try_parse_from(["wasmtap", "check", "m.wasm", "--block-size", "1024"]).is_err()
        );
        match Cli::try_parse_from(["wasmtap", "check", "m.wasm"])
            .unwrap()
            .cmd
        {
            Cmd::Check { block_size, .. } => assert_eq!(block_size, 512),
            _ => unreachable!(),
        }
    }

    #[test]
    fn new_takes_a_name_and_options() {
        let cli = Cli::try_parse_from(["wasmtap", "new", "disk", "--dir", "/tmp/d"]).unwrap();
        let Cmd::New { name, dir, sdk } = cli.cmd else {
            panic!("not `new`")
        };
        assert_eq!(name, "disk");
        assert_eq!(dir, Some(PathBuf::from("/tmp/d")));
        assert_eq!(sdk, None);
        assert!(Cli::try_parse_from(["wasmtap", "new"]).is_err());
    }

    #[test]
    fn admin_token_flags() {
        let (cfg, _) = serve_args(&["--admin-token-file", "/run/secrets/t"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(cfg.admin_token_file, Some(PathBuf::from("/run/secrets/t")));
        assert_eq!(cfg.admin_token, None);
        let (cfg, _) = serve_args(&["--admin-token", "wt_x"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(cfg.admin_token.as_deref(), Some("wt_x"));
        assert_eq!(cfg.admin_token_file, None);
        assert!(serve_args(&["--admin-token", "wt_x", "--admin-token-file", "/t"]).is_err());
    }
}

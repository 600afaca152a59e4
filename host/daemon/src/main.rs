//! `wasmtap`: the daemon and its command-line tools (see the library docs).
//!
//! * `wasmtap serve`: serve every TCMU device of our handler subtype (one
//!   worker thread per device), or a simulated device when the host has no
//!   LIO.
//! * `wasmtap lun create|delete`: make or remove a user backstore exported
//!   as a tcm_loop LUN, without targetcli.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wasmtap::config::{Frontend, ServeConfig};
use wasmtap::{lun, serve};

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
    /// Serve TCMU devices (or a simulated one) until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Benchmark backends on a simulated device (prints a table, or JSON).
    Bench {
        /// Seconds per case.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Directory for file-backed cases (default: /dev/shm, a tmpfs).
        #[arg(long, default_value = "/dev/shm")]
        dir: PathBuf,
    },
    /// Create or delete a TCMU backstore exported as a tcm_loop LUN.
    Lun {
        #[command(subcommand)]
        cmd: LunCmd,
    },
}

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
    /// Simulator frontend's backstore: `native`, or `<module>[/<config>]`
    /// (built-in modules: null, ram, raw-file).
    #[arg(long)]
    sim_backstore: Option<String>,
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
        Cmd::Serve(a) => (|| {
            let mut cfg = match &a.config {
                Some(p) => ServeConfig::from_file(p)?,
                None => ServeConfig::default(),
            };
            if let Some(f) = a.frontend {
                cfg.frontend = f;
            }
            if let Some(c) = a.configfs {
                cfg.configfs = c;
            }
            if let Some(d) = a.data_dir {
                cfg.data_dir = d;
            }
            if let Some(b) = a.sim_backstore {
                cfg.sim_backstore = b;
            }
            serve::run(&cfg, a.duration_secs.map(std::time::Duration::from_secs))
        })(),
        Cmd::Bench { secs, json, dir } => {
            wasmtap::bench::run(&wasmtap::bench::all_rows(dir), secs, json)
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmtap: {e}");
            ExitCode::FAILURE
        }
    }
}

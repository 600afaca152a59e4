//! `wasmtap device ...`: devices (LUNs backed by a module).

use std::fmt::Write as _;

use crate::dto::{
    BindRequest, CreateDevice, Device, DeviceDetail, DeviceLog, ExerciseRequest, ExerciseStarted,
    Exported,
};
use crate::host::{DeviceState, GuestStats};
use crate::size::{human_size, parse_nonzero_size};

use super::client::{Body, Client, Failure, Res};
use super::lookup;
use super::render::{Columns, block, guest_stats_text, lun_text, or_dash, size_in_full};

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

pub(super) fn run(c: &Client, cmd: DeviceCmd, out: &mut String) -> Res<()> {
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
            let req = CreateDevice {
                tenant,
                name,
                size: size.into(),
                block_size: Some(block_size),
                module: lookup::module(c, &module)?,
                config,
            };
            let r = c.call::<Device>("POST", "/api/v1/devices", Body::json(&req))?;
            c.show(out, &r, |o, d| {
                let _ = writeln!(o, "created device {} ({})", d.id, d.name);
                device_block(o, d, None);
            });
            came_up(&r.data)?;
        }
        DeviceCmd::List => {
            c.list(out, "/api/v1/devices", &DEVICES, device_row)?;
        }
        DeviceCmd::Show { id } => {
            let id = lookup::device(c, &id)?;
            let r = c.get::<DeviceDetail>(&format!("/api/v1/devices/{id}"))?;
            c.show(out, &r, |o, d| {
                device_block(o, &d.device, d.guest_stats.as_ref());
            });
        }
        DeviceCmd::Bind { id, module, config } => {
            let id = lookup::device(c, &id)?;
            let req = BindRequest {
                module: lookup::module(c, &module)?,
                config,
            };
            let path = format!("/api/v1/devices/{id}/module");
            let r = c.call::<Device>("PUT", &path, Body::json(&req))?;
            c.show(out, &r, |o, d| {
                let _ = writeln!(o, "device {} now runs module {}", d.id, d.module.name);
                device_block(o, d, None);
            });
            came_up(&r.data)?;
        }
        DeviceCmd::Rm { id } => {
            let id = lookup::device(c, &id)?;
            let path = format!("/api/v1/devices/{id}");
            c.delete(out, &path, &format!("deleted device {id}"))?;
        }
        DeviceCmd::Export { id } => {
            let id = lookup::device(c, &id)?;
            let path = format!("/api/v1/devices/{id}/export");
            let r = c.call::<Exported>("POST", &path, Body::Empty)?;
            c.show(out, &r, |o, e| {
                let _ = writeln!(o, "exported device {id} as {}", lun_text(&e.lun));
            });
        }
        DeviceCmd::Unexport { id } => {
            let id = lookup::device(c, &id)?;
            let path = format!("/api/v1/devices/{id}/export");
            c.delete(out, &path, &format!("removed the LUN of device {id}"))?;
        }
        DeviceCmd::Exercise {
            id,
            secs,
            queue_depth,
            mix,
        } => {
            let id = lookup::device(c, &id)?;
            let req = ExerciseRequest {
                seconds: Some(secs),
                queue_depth: Some(queue_depth),
                mix: Some(mix),
            };
            let path = format!("/api/v1/devices/{id}/exercise");
            let r = c.call::<ExerciseStarted>("POST", &path, Body::json(&req))?;
            c.show(out, &r, |o, e| {
                let _ = writeln!(
                    o,
                    "exercising device {id} for {} s at queue depth {} \
                     (`wasmtap device show {id}` shows the counters)",
                    e.seconds, e.queue_depth
                );
            });
        }
        DeviceCmd::Log { id } => {
            let id = lookup::device(c, &id)?;
            let r = c.get::<DeviceLog>(&format!("/api/v1/devices/{id}/log"))?;
            c.show(out, &r, |o, l| {
                for line in &l.log {
                    let _ = writeln!(o, "{line}");
                }
                if !l.debug.is_empty() {
                    let _ = writeln!(o, "--- debug ---\n{}", l.debug.trim_end());
                }
                if let Some(g) = &l.guest_stats {
                    let _ = writeln!(o, "--- backstore counters ---\n{}", guest_stats_text(g));
                }
            });
        }
    }
    Ok(())
}

fn parse_block_size(s: &str) -> Result<u32, String> {
    match s.trim() {
        "512" => Ok(512),
        "4096" | "4k" | "4K" => Ok(4096),
        _ => Err(format!("block size must be 512 or 4096, not {s:?}")),
    }
}

/// A device that was created (or bound) but is not serving: the command
/// fails, naming the reason, so scripts notice (the device itself exists
/// and is shown above).
fn came_up(d: &Device) -> Res<()> {
    if d.state != DeviceState::Offline {
        return Ok(());
    }
    Err(Failure::Other(format!(
        "device {} is offline: {}",
        d.id,
        or_dash(d.reason.clone().unwrap_or_default())
    )))
}

const DEVICES: Columns = Columns {
    headers: &[
        "ID", "NAME", "TENANT", "SIZE", "BLOCK", "MODULE", "STATE", "LUN",
    ],
    right: &[3, 4],
    what: "devices",
};

fn device_row(d: &Device) -> Vec<String> {
    vec![
        d.id.to_string(),
        d.name.clone(),
        d.tenant.clone(),
        human_size(d.size),
        d.block_size.to_string(),
        d.module.name.clone(),
        d.state.as_str().into(),
        d.lun.as_ref().map_or("-".into(), |l| l.lun.to_string()),
    ]
}

/// A device in full; `guest` is what the backstore counts itself.
fn device_block(out: &mut String, d: &Device, guest: Option<&GuestStats>) {
    let c = &d.counters;
    let io = |n: u64, bytes: u64| format!("{n} ({})", human_size(bytes));
    let errors: Vec<String> = c
        .errors_by_sense_key
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(key, n)| format!("{n} (sense key {key:#x})"))
        .collect();
    let mut rows = vec![
        ("id", d.id.to_string()),
        ("name", d.name.clone()),
        ("tenant", d.tenant.clone()),
        ("size", size_in_full(d.size)),
        ("block size", d.block_size.to_string()),
        ("module", format!("{} (id {})", d.module.name, d.module.id)),
        ("config", d.config.clone()),
        ("state", d.state.as_str().into()),
        ("reason", d.reason.clone().unwrap_or_default()),
        ("restarts", d.restarts.to_string()),
        ("lun", d.lun.as_ref().map_or("-".into(), lun_text)),
        ("created", d.created_at.clone()),
        ("commands", c.commands.to_string()),
        ("reads", io(c.reads, c.read_bytes)),
        ("writes", io(c.writes, c.write_bytes)),
        ("in flight", c.in_flight.to_string()),
        ("errors", or_zero(errors.join(", "))),
    ];
    if let Some(mean) = c.latency.sum_us.checked_div(c.commands) {
        rows.push(("mean latency", format!("{mean} µs")));
    }
    if let Some(g) = guest {
        rows.push(("backstore says", guest_stats_text(g)));
    }
    rows.push(("exercising", d.exercising.to_string()));
    block(out, &rows);
}

/// `0` for nothing.
fn or_zero(s: String) -> String {
    if s.is_empty() { "0".into() } else { s }
}

//! `wasmtap module ...`: WebAssembly backstore modules.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::dto::Module;
use crate::size::human_size;

use super::client::{Body, Client, Res, multipart, seg};
use super::lookup;
use super::render::{Columns, block, lines, or_dash, size_in_full};

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

pub(super) fn run(c: &Client, cmd: ModuleCmd, out: &mut String) -> Res<()> {
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
            let body = Body::Raw {
                content_type,
                bytes: body,
            };
            let r = c.call::<Module>("POST", &path, body)?;
            c.show(out, &r, |o, m| {
                let _ = writeln!(o, "uploaded module {} ({})", m.id, m.name);
                module_block(o, m);
            });
        }
        ModuleCmd::List => {
            c.list(out, "/api/v1/modules", &MODULES, module_row)?;
        }
        ModuleCmd::Show { id } => {
            let id = lookup::module(c, &id)?;
            let r = c.get::<Module>(&format!("/api/v1/modules/{id}"))?;
            c.show(out, &r, module_block);
        }
        ModuleCmd::Rm { id } => {
            let id = lookup::module(c, &id)?;
            let path = format!("/api/v1/modules/{id}");
            c.delete(out, &path, &format!("deleted module {id}"))?;
        }
    }
    Ok(())
}

fn owner_text(m: &Module) -> String {
    match (&m.owner, m.builtin) {
        (Some(owner), false) => or_dash(owner.as_str()),
        _ => "built-in".into(),
    }
}

const MODULES: Columns = Columns {
    headers: &[
        "ID", "NAME", "VERSION", "SIZE", "OWNER", "DEVICES", "SHA256",
    ],
    right: &[3, 5],
    what: "modules",
};

fn module_row(m: &Module) -> Vec<String> {
    vec![
        m.id.to_string(),
        m.name.clone(),
        or_dash(m.version.as_str()),
        human_size(m.size),
        owner_text(m),
        m.bound_devices.len().to_string(),
        m.sha256.chars().take(12).collect(),
    ]
}

fn module_block(out: &mut String, m: &Module) {
    block(
        out,
        &[
            ("id", m.id.to_string()),
            ("name", m.name.clone()),
            ("version", or_dash(m.version.as_str())),
            ("owner", owner_text(m)),
            ("uploaded by", m.uploaded_by.clone()),
            ("created", m.created_at.clone()),
            ("size", size_in_full(m.size)),
            ("sha256", m.sha256.clone()),
            ("imports", lines(&m.imports, String::clone)),
            ("exports", lines(&m.exports, String::clone)),
            (
                "bound devices",
                lines(&m.bound_devices, |d| format!("{} ({})", d.id, d.name)),
            ),
        ],
    );
}

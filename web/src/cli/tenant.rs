//! `wasmtap tenant ...`: tenants, their quotas and tokens (admin only).

use std::fmt::Write as _;

use crate::dto::{NewToken, Tenant, TenantRequest, Token, TokenRequest};
use crate::size::{human_size, parse_size};

use super::client::{Body, Client, Failure, Res, seg};
use super::render::{Columns, block};

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

impl QuotaArgs {
    /// The request setting the quotas given (and `name`, on create).
    fn request(&self, name: Option<String>) -> TenantRequest {
        TenantRequest {
            name,
            max_devices: self.max_devices,
            max_total_bytes: self.max_total_size,
            max_guest_memory: self.max_guest_memory,
            max_open_files: self.max_open_files,
            max_instances: self.max_instances,
            max_stored_files: self.max_stored_files,
            max_modules: self.max_modules,
            max_module_total_bytes: self.max_module_total_size,
        }
    }
}

pub(super) fn run(c: &Client, cmd: TenantCmd, out: &mut String) -> Res<()> {
    match cmd {
        TenantCmd::Create { name, quota } => {
            let req = quota.request(Some(name));
            let r = c.call::<Tenant>("POST", "/api/v1/tenants", Body::json(&req))?;
            c.show(out, &r, |o, t| {
                let _ = writeln!(o, "created tenant {}", t.name);
                tenant_block(o, t);
            });
        }
        TenantCmd::Set { name, quota } => {
            let req = quota.request(None);
            if req == TenantRequest::default() {
                return Err(Failure::Other(
                    "nothing to change: give --max-devices, --max-total-size or --max-guest-memory"
                        .into(),
                ));
            }
            let path = format!("/api/v1/tenants/{}", seg(&name));
            let r = c.call::<Tenant>("PATCH", &path, Body::json(&req))?;
            c.show(out, &r, tenant_block);
        }
        TenantCmd::List => {
            c.list(out, "/api/v1/tenants", &TENANTS, tenant_row)?;
        }
        TenantCmd::Show { name } => {
            let r = c.get::<Tenant>(&format!("/api/v1/tenants/{}", seg(&name)))?;
            c.show(out, &r, tenant_block);
        }
        TenantCmd::Rm { name } => {
            let path = format!("/api/v1/tenants/{}", seg(&name));
            c.delete(out, &path, &format!("deleted tenant {name}"))?;
        }
        TenantCmd::Token { cmd } => token(c, cmd, out)?,
    }
    Ok(())
}

fn token(c: &Client, cmd: TokenCmd, out: &mut String) -> Res<()> {
    match cmd {
        TokenCmd::Create { tenant, label } => {
            let path = format!("/api/v1/tenants/{}/tokens", seg(&tenant));
            let req = TokenRequest { label };
            let r = c.call::<NewToken>("POST", &path, Body::json(&req))?;
            c.show(out, &r, |o, t| {
                let _ = writeln!(
                    o,
                    "token {} ({}) for tenant {tenant}:\n\n    {}\n\n\
                     It is shown only this once; the daemon keeps only its hash.",
                    t.id, t.label, t.token
                );
            });
        }
        TokenCmd::List { tenant } => {
            let path = format!("/api/v1/tenants/{}/tokens", seg(&tenant));
            c.list(out, &path, &TOKENS, |t: &Token| {
                vec![t.id.to_string(), t.label.clone(), t.created_at.clone()]
            })?;
        }
        TokenCmd::Revoke { tenant, id } => {
            let path = format!("/api/v1/tenants/{}/tokens/{}", seg(&tenant), seg(&id));
            c.delete(
                out,
                &path,
                &format!("revoked token {id} of tenant {tenant}"),
            )?;
        }
    }
    Ok(())
}

/// `used of max`, or `max ...` when nothing is known of the use.
fn usage(used: Option<u64>, max: u64, show: fn(u64) -> String) -> String {
    match used {
        Some(u) => format!("{} of {}", show(u), show(max)),
        None => format!("max {}", show(max)),
    }
}

fn count(n: u64) -> String {
    n.to_string()
}

const TENANTS: Columns = Columns {
    headers: &["NAME", "DEVICES", "TOTAL SIZE", "GUEST MEMORY"],
    right: &[],
    what: "tenants",
};

fn tenant_row(t: &Tenant) -> Vec<String> {
    let (u, q) = (&t.usage, &t.quota);
    vec![
        t.name.clone(),
        usage(Some(u.devices), q.max_devices, count),
        usage(Some(u.total_bytes), q.max_total_bytes, human_size),
        human_size(q.max_guest_memory),
    ]
}

const TOKENS: Columns = Columns {
    headers: &["ID", "LABEL", "CREATED"],
    right: &[],
    what: "tokens",
};

fn tenant_block(out: &mut String, t: &Tenant) {
    let (u, q, held) = (&t.usage, &t.quota, t.resources.as_ref());
    block(
        out,
        &[
            ("name", t.name.clone()),
            ("devices", usage(Some(u.devices), q.max_devices, count)),
            (
                "total size",
                usage(Some(u.total_bytes), q.max_total_bytes, human_size),
            ),
            (
                "guest memory",
                usage(held.map(|r| r.memory), q.max_guest_memory, human_size),
            ),
            (
                "open files",
                usage(held.map(|r| r.open_files), q.max_open_files, count),
            ),
            (
                "instances",
                usage(held.map(|r| r.instances), q.max_instances, count),
            ),
            (
                "stored files",
                usage(held.map(|r| r.storage_files), q.max_stored_files, count),
            ),
            ("modules", usage(Some(u.modules), q.max_modules, count)),
            (
                "module bytes",
                usage(Some(u.module_bytes), q.max_module_total_bytes, human_size),
            ),
            ("created", t.created_at.clone()),
        ],
    );
}

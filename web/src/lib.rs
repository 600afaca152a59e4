//! The wasmtap control plane.
//!
//! This crate owns everything the daemon serves over HTTP: the state
//! (tenants, tokens, modules, devices and their LUNs in one SQLite database
//! under the data directory, module bytes content-addressed beside it),
//! tenancy and quotas, the JSON API of `docs/api.md` (`/api/v1/*`, with
//! its OpenAPI description at `/api/v1/openapi.json`), the web UI's static
//! assets (`/`, `/ui/*`) and Prometheus metrics (`/metrics`).
//!
//! It never touches rings, SCSI or wasmtime: the daemon implements
//! [`host::Host`] and this crate calls it to validate modules and to start,
//! stop, rebind, export and inspect devices.
//!
//! ```ignore
//! let (cp, fresh_admin_token) = ControlPlane::open(WebConfig::new(data_dir), host)?;
//! if let Some(t) = fresh_admin_token { println!("admin token: {t}"); }
//! cp.restore();
//! Arc::new(cp).serve(listener, shutdown).await?;
//! ```
//!
//! `docs/control-plane.md` describes the state model and tenancy rules.

mod api;
mod app;
pub mod cli;
pub mod dto;
mod error;
mod extract;
pub mod host;
pub mod metrics;
mod routes;
mod server;
pub mod size;
mod store;
pub mod ui;

pub use app::{ControlPlane, RESTORE_PARALLEL, WebConfig};
pub use dto::Quota;
pub use error::{ApiError, Error};
pub use routes::route_table;
pub use server::{CONTENT_SECURITY_POLICY, HttpLimits, add_security_headers};

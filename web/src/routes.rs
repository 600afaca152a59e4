//! The router: every route of the JSON API, `/metrics` and the UI, with
//! the security headers, and [`ControlPlane::serve`], which serves it.
//! The top of the module graph: it names the handlers of [`crate::api`]
//! and [`crate::metrics`], which know nothing of it.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::app::ControlPlane;
use crate::{api, metrics, server};

impl ControlPlane {
    /// The router: `/api/v1/*`, `/metrics`, `/` and `/ui/*`. Every
    /// response carries the security headers (CSP, `X-Frame-Options`,
    /// `X-Content-Type-Options`, `Referrer-Policy`).
    pub fn router(self: Arc<Self>) -> Router {
        let upload_limit = usize::try_from(self.max_module_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20);
        build_routes(upload_limit)
            .router
            .with_state(self)
            .layer(axum::middleware::map_response(
                |mut r: axum::response::Response| async move {
                    server::add_security_headers(r.headers_mut());
                    r
                },
            ))
    }

    /// Serves [`ControlPlane::router`] on `listener` until `shutdown`
    /// resolves, under the timeouts and connection limits of
    /// [`WebConfig::http`] (HTTP/1.1). After `shutdown` it stops accepting,
    /// closes idle connections and lets requests in progress finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.http_limits;
        let stats = Arc::clone(&self.http_stats);
        server::serve(self.router(), limits, stats, listener, shutdown).await
    }
}

/// The routes, and `(method, path)` of each for the OpenAPI test.
struct Routes {
    router: Router<Arc<ControlPlane>>,
    table: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        mr: impl FnOnce(MethodFilter) -> MethodRouter<Arc<ControlPlane>>,
    ) -> Self {
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            "DELETE" => MethodFilter::DELETE,
            other => unreachable!("method {other} is not used"),
        };
        self.router = self.router.route(path, mr(filter));
        self.table.push((method, path));
        self
    }
}

/// Every route. `upload_limit` is the body limit of the module upload.
fn build_routes(upload_limit: usize) -> Routes {
    let r = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    r.add("GET", "/api/v1/openapi.json", |f| on(f, api::openapi))
        .add("GET", "/api/v1/whoami", |f| on(f, api::whoami))
        .add("GET", "/api/v1/tenants", |f| on(f, api::list_tenants))
        .add("POST", "/api/v1/tenants", |f| on(f, api::create_tenant))
        .add("GET", "/api/v1/tenants/{name}", |f| on(f, api::get_tenant))
        .add("PATCH", "/api/v1/tenants/{name}", |f| {
            on(f, api::patch_tenant)
        })
        .add("DELETE", "/api/v1/tenants/{name}", |f| {
            on(f, api::delete_tenant)
        })
        .add("POST", "/api/v1/tenants/{name}/tokens", |f| {
            on(f, api::create_token)
        })
        .add("GET", "/api/v1/tenants/{name}/tokens", |f| {
            on(f, api::list_tokens)
        })
        .add("DELETE", "/api/v1/tenants/{name}/tokens/{id}", |f| {
            on(f, api::delete_token)
        })
        .add("GET", "/api/v1/modules", |f| on(f, api::list_modules))
        .add("POST", "/api/v1/modules", |f| {
            on(f, api::upload_module).layer(DefaultBodyLimit::max(upload_limit))
        })
        .add("GET", "/api/v1/modules/{id}", |f| on(f, api::get_module))
        .add("DELETE", "/api/v1/modules/{id}", |f| {
            on(f, api::delete_module)
        })
        .add("GET", "/api/v1/devices", |f| on(f, api::list_devices))
        .add("POST", "/api/v1/devices", |f| on(f, api::create_device))
        .add("GET", "/api/v1/devices/{id}", |f| on(f, api::get_device))
        .add("DELETE", "/api/v1/devices/{id}", |f| {
            on(f, api::delete_device)
        })
        .add("PUT", "/api/v1/devices/{id}/module", |f| {
            on(f, api::bind_module)
        })
        .add("GET", "/api/v1/devices/{id}/stats", |f| on(f, api::stats))
        .add("GET", "/api/v1/devices/{id}/log", |f| on(f, api::log))
        .add("POST", "/api/v1/devices/{id}/exercise", |f| {
            on(f, api::exercise)
        })
        .add("POST", "/api/v1/devices/{id}/export", |f| {
            on(f, api::export)
        })
        .add("DELETE", "/api/v1/devices/{id}/export", |f| {
            on(f, api::unexport)
        })
        .add("GET", "/metrics", |f| on(f, metrics::handler))
        .add("GET", "/", |f| on(f, api::ui_index))
        .add("GET", "/ui/{*path}", |f| on(f, api::ui_asset))
        .map_router(|r| r.fallback(api::fallback))
}

impl Routes {
    fn map_router(
        mut self,
        f: impl FnOnce(Router<Arc<ControlPlane>>) -> Router<Arc<ControlPlane>>,
    ) -> Self {
        self.router = f(self.router);
        self
    }
}

/// `(method, path)` of every route the router serves (paths in axum's
/// syntax: `{id}`, `{*path}`).
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    build_routes(0).table
}

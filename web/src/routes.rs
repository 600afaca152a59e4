//! The router: every route of the JSON API, `/metrics` and the UI, with
//! the security headers, and [`ControlPlane::serve`], which serves it.
//! The top of the module graph: it names the handlers of [`crate::api`]
//! and [`crate::metrics`], which know nothing of it.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
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
    /// `handler` serves `method path`.
    fn add<H, T>(self, method: &'static str, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<ControlPlane>>,
        T: 'static,
    {
        self.route(method, path, |f| on(f, handler))
    }

    /// `method path` is served by the method router `mr` makes.
    fn route(
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
    let mut r = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    r = r
        .add("GET", "/api/v1/openapi.json", api::openapi)
        .add("GET", "/api/v1/whoami", api::whoami)
        .add("GET", "/api/v1/tenants", api::list_tenants)
        .add("POST", "/api/v1/tenants", api::create_tenant)
        .add("GET", "/api/v1/tenants/{name}", api::get_tenant)
        .add("PATCH", "/api/v1/tenants/{name}", api::patch_tenant)
        .add("DELETE", "/api/v1/tenants/{name}", api::delete_tenant)
        .add("POST", "/api/v1/tenants/{name}/tokens", api::create_token)
        .add("GET", "/api/v1/tenants/{name}/tokens", api::list_tokens)
        .add(
            "DELETE",
            "/api/v1/tenants/{name}/tokens/{id}",
            api::delete_token,
        )
        .add("GET", "/api/v1/modules", api::list_modules)
        .route("POST", "/api/v1/modules", |f| {
            on(f, api::upload_module).layer(DefaultBodyLimit::max(upload_limit))
        })
        .add("GET", "/api/v1/modules/{id}", api::get_module)
        .add("DELETE", "/api/v1/modules/{id}", api::delete_module)
        .add("GET", "/api/v1/devices", api::list_devices)
        .add("POST", "/api/v1/devices", api::create_device)
        .add("GET", "/api/v1/devices/{id}", api::get_device)
        .add("DELETE", "/api/v1/devices/{id}", api::delete_device)
        .add("PUT", "/api/v1/devices/{id}/module", api::bind_module)
        .add("GET", "/api/v1/devices/{id}/stats", api::stats)
        .add("GET", "/api/v1/devices/{id}/log", api::log)
        .add("POST", "/api/v1/devices/{id}/exercise", api::exercise)
        .add("POST", "/api/v1/devices/{id}/export", api::export)
        .add("DELETE", "/api/v1/devices/{id}/export", api::unexport)
        .add("GET", "/metrics", metrics::handler)
        .add("GET", "/", api::ui_index)
        .add("GET", "/ui/{*path}", api::ui_asset);
    r.router = r.router.fallback(api::fallback);
    r
}

/// `(method, path)` of every route the router serves (paths in axum's
/// syntax: `{id}`, `{*path}`).
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    build_routes(0).table
}

//! Every route the service serves, in one list. Both servers register exactly these (one resource
//! per path, answering any other method with 405 and the methods it does take in `Allow`), and
//! the contract test holds `openapi.yaml` to the same list, so the document and the service cannot
//! drift apart.

use actix_web::http::Method;
use actix_web::http::header::HeaderValue;
use actix_web::web;

use super::metrics_port::render_metrics;
use crate::browser::cors;
use crate::checkout;
use crate::http;
use crate::sandbox;
use crate::status;

/// Where, and in which mode, a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// On the browser-facing port, always.
    Always,
    /// On the browser-facing port, at `status.webhook_path`, when it is set.
    Webhook,
    /// On the browser-facing port, in sandbox mode only.
    Sandbox,
    /// On `metrics.listen`, when it is set; never on the browser-facing port.
    MetricsPort,
}

/// One method on one path.
pub struct Route {
    pub method: Method,
    /// The path as `openapi.yaml` writes it. The webhook's is a placeholder: it is served at the
    /// configured `status.webhook_path`.
    pub path: &'static str,
    pub served: Served,
    /// Attaches the handler to a route that already has this method.
    to: fn(actix_web::Route) -> actix_web::Route,
}

/// The documented stand-in for the webhook's configured path.
pub const WEBHOOK_PATH: &str = "/{webhook_path}";

/// Every route, in the order they are matched.
pub static ROUTES: [Route; 16] = [
    Route {
        method: Method::POST,
        path: "/start-checkout",
        served: Served::Always,
        to: |route| route.to(checkout::start_checkout),
    },
    Route {
        method: Method::OPTIONS,
        path: "/start-checkout",
        served: Served::Always,
        to: |route| route.to(cors::preflight),
    },
    Route {
        method: Method::GET,
        path: "/checkout/{merchant_transaction_id}",
        served: Served::Always,
        to: |route| route.to(status::transaction_status),
    },
    Route {
        method: Method::GET,
        path: "/checkout/{merchant_transaction_id}/events",
        served: Served::Always,
        to: |route| route.to(status::transaction_events),
    },
    Route {
        method: Method::GET,
        path: "/kyc-status",
        served: Served::Always,
        to: |route| route.to(status::kyc_status),
    },
    // Some health checkers probe with HEAD: the same answer, its body left out.
    Route {
        method: Method::GET,
        path: "/healthz",
        served: Served::Always,
        to: |route| route.to(http::healthz),
    },
    Route {
        method: Method::HEAD,
        path: "/healthz",
        served: Served::Always,
        to: |route| route.to(http::healthz),
    },
    Route {
        method: Method::GET,
        path: "/readyz",
        served: Served::Always,
        to: |route| route.to(http::readyz),
    },
    Route {
        method: Method::HEAD,
        path: "/readyz",
        served: Served::Always,
        to: |route| route.to(http::readyz),
    },
    Route {
        method: Method::POST,
        path: WEBHOOK_PATH,
        served: Served::Webhook,
        to: |route| route.to(status::webhook),
    },
    Route {
        method: Method::GET,
        path: "/",
        served: Served::Sandbox,
        to: |route| route.to(sandbox::demo_page),
    },
    Route {
        method: Method::GET,
        path: "/sandbox/demo.js",
        served: Served::Sandbox,
        to: |route| route.to(sandbox::demo_js),
    },
    Route {
        method: Method::GET,
        path: "/sandbox/client.js",
        served: Served::Sandbox,
        to: |route| route.to(sandbox::demo_client),
    },
    Route {
        method: Method::GET,
        path: "/sandbox/demo.css",
        served: Served::Sandbox,
        to: |route| route.to(sandbox::demo_css),
    },
    Route {
        method: Method::POST,
        path: "/sandbox/login",
        served: Served::Sandbox,
        to: |route| route.to(sandbox::login),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        served: Served::MetricsPort,
        to: |route| route.to(render_metrics),
    },
];

/// Registers the routes for which `path` gives where they are served (`None`: not on this server,
/// or not in this mode): one resource per path, in the list's order, whose other methods get 405.
pub(super) fn register(app: &mut web::ServiceConfig, path: impl Fn(&Route) -> Option<String>) {
    let mut registered: Vec<String> = Vec::new();
    for first in &ROUTES {
        let Some(served_at) = path(first) else {
            continue;
        };
        if registered.contains(&served_at) {
            continue;
        }
        let same_path = || ROUTES.iter().filter(|r| r.path == first.path);
        let allow = same_path()
            .map(|route| route.method.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let allow = HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static(""));
        let mut resource = web::resource(served_at.as_str());
        for route in same_path() {
            resource = resource.route((route.to)(web::method(route.method.clone())));
        }
        app.service(resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move { http::method_not_allowed(allow) }
        })));
        registered.push(served_at);
    }
}

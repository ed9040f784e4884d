//! The metrics port (`metrics.listen`): `GET /metrics` in Prometheus' text format, on a listener
//! of its own so that scrapes never share the checkout's port.
//!
//! It runs as a server of its own (one worker), beside the browser-facing one, with fixed bounds
//! of its own: actix counts connections per server, so on the same server an idle scraper's
//! sockets would take places out of `server.max_connections` and could starve the browsers.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, web};

use super::routes::Served;
use crate::checkout::CheckoutContext;
use crate::http;
use crate::http::connection::{self, ConnectionDrain, ConnectionLimits, RequestBodyBound};
use crate::idempotency::MemoryStore;
use crate::rate_limit::RateLimits;
use crate::status;
use crate::telemetry::{self, LiveState, Metrics};

/// Connections the metrics port holds at once; beyond them, new ones wait in the listen backlog
/// until one closes. A Prometheus server keeps one connection per target.
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// How long a metrics connection may sit idle between scrapes, and how long a scrape's request
/// (its headers, and any body) may take to arrive; then the connection is closed. A scrape
/// writes its request at once, and Prometheus' shortest usual scrape interval is longer than the
/// idle bound, so it reconnects rather than keeping sockets open on the port.
pub const METRICS_CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits {
    client_request_timeout: Duration::from_secs(5),
    keep_alive: Duration::from_secs(5),
};

/// What `GET /metrics` reads: the counters, and the live state it reports as gauges.
#[derive(Clone)]
pub(super) struct MetricsScrape {
    pub metrics: web::Data<Metrics>,
    pub rate_limits: Arc<RateLimits>,
    pub status: web::Data<status::StatusContext>,
    pub checkout: web::Data<CheckoutContext>,
}

/// The metrics port's server: one worker, its own connection cap and timeouts. Like the main
/// server it does nothing until polled; it is stopped (at once) after the main one.
pub(super) fn build_metrics_server(
    listener: TcpListener,
    scrape: MetricsScrape,
) -> std::io::Result<Server> {
    let local_addr = listener.local_addr()?;
    Ok(Server::build()
        .workers(1)
        .max_concurrent_connections(METRICS_MAX_CONNECTIONS)
        // It stops once the main server has drained, dropping what it still holds: a scrape
        // cut short then is of no consequence.
        .disable_signals()
        .listen("metrics", listener, move || {
            metrics_service(scrape.clone(), local_addr)
        })?
        .run())
}

/// The metrics port's HTTP service: `GET /metrics` and nothing else, behind the same socket
/// bounds as the browser-facing port (with the fixed limits above).
fn metrics_service(
    scrape: MetricsScrape,
    local_addr: std::net::SocketAddr,
) -> impl actix_service::ServiceFactory<
    actix_web::rt::net::TcpStream,
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
> {
    let app = App::new()
        // Scrapes are served through the service's drain, until the process stops.
        .wrap(RequestBodyBound::new(
            METRICS_CONNECTION_LIMITS.client_request_timeout,
            ConnectionDrain::never(),
        ))
        .app_data(web::Data::new(scrape))
        .configure(|app| {
            super::routes::register(app, |route| {
                (route.served == Served::MetricsPort).then(|| route.path.to_owned())
            });
        })
        .default_service(web::to(http::not_found));
    connection::http1(
        app,
        METRICS_CONNECTION_LIMITS,
        local_addr,
        ConnectionDrain::never(),
    )
}

pub(super) async fn render_metrics(scrape: web::Data<MetricsScrape>) -> HttpResponse {
    let live = LiveState {
        rate_limit_keys: scrape.rate_limits.in_memory().map(|limiter| limiter.len()),
        idempotency_store: scrape
            .checkout
            .idempotency
            .in_memory()
            .map(MemoryStore::usage),
        event_streams: scrape.status.limits.open(),
        watched_transactions: scrape.status.watchers.len(),
        log_lines_dropped: telemetry::dropped_log_lines(),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(scrape.metrics.render(live))
}

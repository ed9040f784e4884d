//! The metrics port (`metrics.listen`): `GET /metrics` in Prometheus' text format, on a listener
//! of its own so that scrapes never share the checkout's port.

use std::sync::Arc;

use actix_web::{App, HttpResponse, web};

use crate::http;
use crate::rate_limit::RateLimits;
use crate::status;
use crate::telemetry::{self, LiveState, Metrics};

/// What `GET /metrics` reads: the counters, and the live state it reports as gauges.
#[derive(Clone)]
pub(super) struct MetricsScrape {
    pub metrics: web::Data<Metrics>,
    pub rate_limits: Arc<RateLimits>,
    pub status: web::Data<status::StatusContext>,
}

/// The metrics port's HTTP service: `GET /metrics` and nothing else.
pub(super) fn metrics_service(
    scrape: MetricsScrape,
) -> impl actix_service::ServiceFactory<
    actix_web::rt::net::TcpStream,
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
> {
    let app = App::new()
        .app_data(web::Data::new(scrape))
        .route("/metrics", web::get().to(render_metrics))
        .default_service(web::to(http::not_found));
    actix_http::HttpService::build()
        .h1(actix_service::map_config(app, |()| {
            actix_web::dev::AppConfig::default()
        }))
        .tcp()
}

async fn render_metrics(scrape: web::Data<MetricsScrape>) -> HttpResponse {
    let live = LiveState {
        rate_limit_keys: scrape.rate_limits.in_memory().map(|limiter| limiter.len()),
        event_streams: scrape.status.limits.open(),
        watched_transactions: scrape.status.watchers.len(),
        log_lines_dropped: telemetry::dropped_log_lines(),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(scrape.metrics.render(live))
}

//! After the widget: what became of the user's checkout, relayed from Proof and never another
//! user's. `GET /checkout/{merchant_transaction_id}` ([`transaction`]) and `GET /kyc-status`
//! ([`kyc`]) answer with Proof's bytes; `GET /checkout/{id}/events` ([`stream`]) follows the
//! transaction live through one shared [`watcher`] per transaction, within the stream
//! [`limits`], in the [`event`] format; Proof's webhook ([`webhook`]) only hints. Proof's API
//! itself (the calls, their retries, the WebSocket, its wire types) stays in [`crate::proof`];
//! this module decides who may see what.
//!
//! Every status route runs the checkout's caller phases (the client's address and its limit, the
//! session, the user's limit) with two differences: a request without `Origin` is served (a
//! same-origin `GET` sends none), and it spends the status reads' own budget (a per-address limit
//! of its own and `status_per_user_per_minute`), so polling never eats into the checkout's.
//!
//! The `[status]` settings are [`config`].

mod config;
mod event;
mod kyc;
mod limits;
mod stream;
mod transaction;
mod watcher;
mod webhook;
mod websocket_budget;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

pub use config::{StatusConfig, StatusSettings};
pub use kyc::kyc_status;
pub use limits::StreamLimits;
pub use stream::transaction_events;
pub use transaction::transaction_status;
pub use watcher::{WatchTimings, Watchers};
pub use webhook::{MAX_WEBHOOK_BYTES, webhook};
use websocket_budget::WebSocketBudget;

/// What every worker shares for the event streams: the watchers, the stream counts.
#[derive(Debug)]
pub struct StatusContext {
    pub watchers: Arc<Watchers>,
    pub limits: Arc<StreamLimits>,
    pub max_stream_duration: Duration,
    seen_hints: webhook::SeenHints,
}

impl StatusContext {
    /// `websocket_timeout`: how long opening Proof's WebSocket may take; `metrics`, when they are
    /// served.
    pub fn new(
        config: &StatusConfig,
        websocket_timeout: Duration,
        metrics: Option<&Metrics>,
    ) -> Self {
        let timings = WatchTimings {
            poll_interval: config.poll_interval,
            confirm_interval: config.confirm_interval,
            connect_timeout: websocket_timeout,
        };
        let websockets =
            WebSocketBudget::new(config.max_watchers, metrics.map(Metrics::status_websockets));
        Self {
            watchers: Arc::new(Watchers::new(timings, websockets)),
            limits: Arc::new(StreamLimits::new(
                config.max_streams_per_user,
                config.max_streams,
            )),
            max_stream_duration: config.max_stream_duration,
            seen_hints: webhook::SeenHints::default(),
        }
    }
}

use crate::admission::{AdmissionContext, ApiError, identify, resolve_client_ip};
use crate::browser::{BrowserConfig, check_reader};
use crate::proof::UpstreamAnswer;
use crate::rate_limit::{Allowance, Budget, RATE_LIMIT, RATE_LIMIT_POLICY};
use crate::session::SessionUser;
use crate::telemetry::Metrics;

/// The reader, once admitted: who they are, and their standing against the status limit.
struct Reader {
    user: SessionUser,
    /// None when the shared backend failed and `on_backend_error` let the request through.
    allowance: Option<Allowance>,
}

/// The phases before a status route's own work, in order.
async fn admit(
    req: &HttpRequest,
    browser: &BrowserConfig,
    context: &AdmissionContext,
) -> Result<Reader, ApiError> {
    if context.readiness.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    check_reader(req, browser)?;
    let client_ip = resolve_client_ip(req, context);
    let (user, allowance) = identify(req, context, client_ip, Budget::Status).await?;
    Ok(Reader { user, allowance })
}

/// Proof's answer, byte for byte, with the status limit's headers.
fn relay(answer: UpstreamAnswer, reader: &Reader, context: &AdmissionContext) -> HttpResponse {
    let mut response = HttpResponse::build(answer.status);
    response.insert_header((
        header::CONTENT_TYPE,
        answer
            .content_type
            .unwrap_or(HeaderValue::from_static("application/json")),
    ));
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    if let Some(retry_after) = answer.retry_after {
        response.insert_header((header::RETRY_AFTER, retry_after));
    }
    response.insert_header((
        RATE_LIMIT_POLICY,
        context.rate_limits.policy(Budget::Status).clone(),
    ));
    if let Some(allowance) = &reader.allowance {
        response.insert_header((RATE_LIMIT, allowance.rate_limit.clone()));
    }
    response.body(answer.body)
}

//! Logs and the per-request root span.
//!
//! [`logging`] builds and installs the subscriber (JSON lines or human-readable, one filter for our
//! events and our dependencies' `log` records); [`request_id`] gives every request an id that is
//! returned to the caller and forwarded to Proof; [`root_span`] is the span that carries what an
//! operator needs to follow one request (method, route, status, latency, request id, the resolved
//! client IP and the user id) and nothing that is a secret or personal data: no email, no token, no
//! cookie, no request body.

mod logging;
mod metrics;
mod request_id;
mod root_span;

pub use logging::{
    LogConfig, LogFormat, LogGuard, dropped_log_lines, init, install, report_dropped_lines,
    subscriber, subscriber_with_filter,
};
pub use metrics::{ErrorCode, LiveState, Metrics};
pub use request_id::{REQUEST_ID_HEADER, RequestId, RequestIdMiddleware, RequestIdService};
pub use root_span::{BffRootSpan, HiddenRoute};

//! Logs, metrics, traces and the per-request root span.
//!
//! [`logging`] builds and installs the subscriber (JSON lines or human-readable, one filter for our
//! events and our dependencies' `log` records); [`request_id`] gives every request an id that is
//! returned to the caller and forwarded to Proof; [`root_span`] is the span that carries what an
//! operator needs to follow one request (method, route, status, latency, request id, the resolved
//! client IP and the user id, and from its [`record`] what it came to: the rate limits' decision and
//! the call to Proof) and nothing that is a secret or personal data: no email, no token, no cookie,
//! no request body. [`metrics`] counts each request once, from the same record; [`traces`] exports
//! OpenTelemetry spans when `telemetry.otlp_endpoint` is set. The JSON lines are written as text
//! ([`json_line`], [`json_text`]), copy a span's fields from the JSON object they are kept in
//! ([`span_fields`]) and leave through a batching writer thread that a worker never waits on
//! ([`stdout_writer`]). The `[telemetry]`, `[metrics]` and `[log]` settings are [`config`].

#[cfg(test)]
mod captured_lines;
mod config;
mod json_line;
mod json_text;
mod logging;
mod metrics;
mod record;
mod request_id;
mod root_span;
mod span_fields;
mod stdout_writer;
mod traces;

pub use config::{LogSettings, MetricsSettings, TelemetrySettings};
pub use logging::{
    LogConfig, LogFormat, LogGuard, dropped_log_lines, init, install, report_dropped_lines,
    subscriber, subscriber_with_filter,
};
pub use metrics::{ErrorCode, LiveState, Metrics};
pub use record::{Caller, DetachedCall, RateLimitDecision, UpstreamOutcome, note_rate_limit};
pub use request_id::{
    REQUEST_ID_HEADER, RequestId, RequestIdMiddleware, RequestIdService, plain_request_id,
};
pub use root_span::{BffRootSpan, CLIENT_CLOSED, CLIENT_CLOSED_STATUS, HiddenRoute};
pub use traces::{ClientSpan, Traces, TracesConfig};

//! Logs, metrics, traces and the per-request root span.
//!
//! [`logging`] builds and installs the subscriber (JSON lines or human-readable, one filter for our
//! events and our dependencies' `log` records); [`request_id`] gives every request an id that is
//! returned to the caller and forwarded to Proof; [`root_span`] is the span that carries what an
//! operator needs to follow one request (method, route, status, latency, request id, the resolved
//! client IP and the user id) and nothing that is a secret or personal data: no email, no token, no
//! cookie, no request body; its [`record`] is what the request keeps from its start to its end.
//! [`metrics`] counts each request once, when it ends; [`traces`] exports OpenTelemetry spans when
//! `telemetry.otlp_endpoint` is set.

mod logging;
mod metrics;
mod record;
mod request_id;
mod root_span;
mod traces;

pub use logging::{LogConfig, LogFormat, init, install, subscriber, subscriber_with_filter};
pub use metrics::{ErrorCode, LiveState, Metrics};
pub use record::Caller;
pub use request_id::{
    REQUEST_ID_HEADER, RequestId, RequestIdMiddleware, RequestIdService, plain_request_id,
};
pub use root_span::{BffRootSpan, HiddenRoute};
pub use traces::{ClientSpan, Traces, TracesConfig};

//! The root span of every request, and the completion log line written when it ends.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage, web};
use tracing::Span;
use tracing::field::{Empty, display};
use tracing_actix_web::RootSpanBuilder;

use super::metrics::{ErrorCode, Metrics};
use super::record::{ProofStage, RequestRecord, Unended};
use super::request_id::RequestId;
use super::traces::Traces;

/// A route whose path is a secret (Proof's webhook: the path is all it has), logged as `label`.
#[derive(Debug)]
pub struct HiddenRoute {
    pub path: String,
    pub label: &'static str,
}

/// Root span of every request. `client_ip` and `user_id` start empty and are recorded by the
/// checkout handler once they are known, from the server's own resolution, never from the
/// spoofable `X-Forwarded-For` that the default builder reads. What the request came to (the rate
/// limits' decision, the call to Proof) is recorded once, when it ends, from its
/// [`RequestRecord`], as declared fields: no debug strings. A request dropped before it answered
/// (its client went away) ends when its record is dropped, as a 499 `client_closed` with the
/// field `reached`.
pub struct BffRootSpan;

impl RootSpanBuilder for BffRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let started = Instant::now();
        let extensions = request.extensions();
        let request_id = extensions
            .get::<RequestId>()
            .map(RequestId::as_str)
            .unwrap_or("");
        // A route whose path is a secret is named by its label instead.
        let hidden = request
            .app_data::<web::Data<HiddenRoute>>()
            .filter(|hidden| hidden.path == request.path());
        let route = match hidden {
            Some(hidden) => hidden.label.to_owned(),
            None => request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
        };
        let metrics = request.app_data::<web::Data<Metrics>>().cloned();
        if let Some(metrics) = &metrics {
            metrics.request_started();
        }
        let span = tracing::info_span!(
            "http_request",
            http.method = %request.method(),
            http.route = route.as_str(),
            request_id = %request_id,
            trace_id = Empty,
            client_ip = Empty,
            user_id = Empty,
            http.status_code = Empty,
            latency_ms = Empty,
            error.code = Empty,
            reached = Empty,
            rate_limit = Empty,
            proof.attempts = Empty,
            proof.status = Empty,
            proof.request_id = Empty,
            proof.latency_ms = Empty,
        );
        // Only present when traces are on.
        let server_span = request
            .app_data::<web::Data<Traces>>()
            .map(|traces| traces.server_span(request, &route, request_id));
        if let Some(server_span) = &server_span {
            span.record("trace_id", display(server_span.trace_id()));
        }
        drop(extensions);
        // Resolved once: the end of the request counts it under the same route.
        request.extensions_mut().insert(RequestRecord {
            started,
            route,
            rate_limit: None,
            upstream: None,
            server_span,
            reached: ProofStage::Before,
            unended: Some(Unended {
                span: span.clone(),
                metrics,
            }),
        });
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let code = response
                    .response()
                    .extensions()
                    .get::<ErrorCode>()
                    .map(|code| code.0);
                let record = response
                    .request()
                    .extensions_mut()
                    .remove::<RequestRecord>();
                if let Some(mut record) = record {
                    // Ended here: nothing is left for the record to tell when it is dropped.
                    let unended = record.unended.take();
                    let metrics = unended.as_ref().and_then(Unended::metrics);
                    request_ended(&span, &mut record, status, code, metrics);
                }
                response.status()
            }
            // Never with a record's end: the record goes with the request (its trace span too).
            // No service of the app answers with an error rather than an error's response, so
            // this is not seen; were it, the record would count the request as a 499.
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.status_code", status.as_u16());
        let _entered = span.enter();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "request completed");
        } else {
            tracing::info!(status = status.as_u16(), "request completed");
        }
    }
}

/// The status a request whose client went away is logged and counted with (nginx's).
pub const CLIENT_CLOSED_STATUS: u16 = 499;
/// The code of a request whose client went away.
pub const CLIENT_CLOSED: &str = "client_closed";

/// Reads the record once: into the span's declared fields, the metrics and the trace.
fn request_ended(
    span: &Span,
    record: &mut RequestRecord,
    status: u16,
    code: Option<&'static str>,
    metrics: Option<&Metrics>,
) {
    let latency = record.started.elapsed();
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    if let Some(code) = code {
        span.record("error.code", code);
    }
    if code == Some(CLIENT_CLOSED) {
        span.record("reached", record.reached.name());
    }
    if let Some(decision) = record.rate_limit {
        span.record("rate_limit", decision.name());
    }
    if let Some(upstream) = &record.upstream {
        span.record("proof.attempts", upstream.attempts);
        if let Some(status) = upstream.status {
            span.record("proof.status", status);
        }
        if let Some(id) = upstream
            .proof_request_id
            .as_ref()
            .and_then(|id| id.to_str().ok())
        {
            span.record("proof.request_id", id);
        }
        span.record("proof.latency_ms", upstream.latency.as_secs_f64() * 1000.0);
    }
    if let Some(server_span) = record.server_span.take() {
        server_span.end(status, code);
    }
    if let Some(metrics) = metrics {
        let route = std::mem::take(&mut record.route);
        metrics.request_ended(route, status, code, latency, record.rate_limit);
    }
}

/// The end of a request dropped before it answered because its client went away (the server
/// drops a request whose connection closed): logged once and counted as a 499 `client_closed`,
/// with how far it had got. A call to Proof it had begun is not cancelled with it (see the
/// checkout), and is logged on its own when it ends.
pub(super) fn client_closed(unended: Unended, record: &mut RequestRecord) {
    let span = &unended.span;
    request_ended(
        span,
        record,
        CLIENT_CLOSED_STATUS,
        Some(CLIENT_CLOSED),
        unended.metrics(),
    );
    span.record("http.status_code", CLIENT_CLOSED_STATUS);
    let _entered = span.enter();
    tracing::info!(status = CLIENT_CLOSED_STATUS, "request completed");
}

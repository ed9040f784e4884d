//! The root span of every request, and the completion log line written when it ends.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::RootSpanBuilder;

use super::metrics::{ErrorCode, Metrics};
use super::request_id::{RequestId, RequestStart};

/// A route whose path is a secret (Proof's webhook: the path is all it has), logged as `label`.
#[derive(Debug)]
pub struct HiddenRoute {
    pub path: String,
    pub label: &'static str,
}

/// Root span of every request. `client_ip` and `user_id` start empty and are recorded by the
/// checkout handler once they are known, from the server's own resolution, never from the
/// spoofable `X-Forwarded-For` that the default builder reads.
pub struct BffRootSpan;

impl RootSpanBuilder for BffRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let extensions = request.extensions();
        let request_id = extensions
            .get::<RequestId>()
            .map(RequestId::as_str)
            .unwrap_or("");
        // A route whose path is a secret is named by its label instead.
        let hidden = request
            .app_data::<actix_web::web::Data<HiddenRoute>>()
            .filter(|hidden| hidden.path == request.path());
        let route = match hidden {
            Some(hidden) => hidden.label.to_owned(),
            None => request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
        };
        if let Some(metrics) = request.app_data::<actix_web::web::Data<Metrics>>() {
            metrics.request_started();
        }
        let span = tracing::info_span!(
            "http_request",
            http.method = %request.method(),
            http.route = route.as_str(),
            request_id = %request_id,
            client_ip = Empty,
            user_id = Empty,
            http.status_code = Empty,
            latency_ms = Empty,
            error.code = Empty,
        );
        drop(extensions);
        // Resolved once: the end of the request counts it under the same route.
        request.extensions_mut().insert(RequestRoute(route));
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, latency, code) = match outcome {
            Ok(response) => {
                let latency = response
                    .request()
                    .extensions()
                    .get::<RequestStart>()
                    .map(|start| start.0.elapsed());
                let code = response
                    .response()
                    .extensions()
                    .get::<ErrorCode>()
                    .map(|code| code.0);
                if let Some(metrics) = response
                    .request()
                    .app_data::<actix_web::web::Data<Metrics>>()
                {
                    let route = response
                        .request()
                        .extensions_mut()
                        .remove::<RequestRoute>()
                        .map_or_else(|| "unmatched".to_owned(), |route| route.0);
                    metrics.request_ended(route, response.status().as_u16(), code, latency);
                }
                (response.status(), latency, code)
            }
            Err(error) => (error.as_response_error().status_code(), None, None),
        };
        span.record("http.status_code", status.as_u16());
        if let Some(latency) = latency {
            span.record("latency_ms", latency.as_secs_f64() * 1000.0);
        }
        if let Some(code) = code {
            span.record("error.code", code);
        }
        let _entered = span.enter();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "request completed");
        } else {
            tracing::info!(status = status.as_u16(), "request completed");
        }
    }
}

/// The route a request is logged and counted under: its pattern, or its label when its path is a
/// secret, or `unmatched`.
struct RequestRoute(String);

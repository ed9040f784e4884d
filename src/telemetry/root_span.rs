//! The root span of every request, and the completion log line written when it ends.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::RootSpanBuilder;

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
            Some(hidden) => Some(hidden.label.to_owned()),
            None => request.match_pattern(),
        };
        tracing::info_span!(
            "http_request",
            http.method = %request.method(),
            http.route = route.as_deref().unwrap_or("unmatched"),
            request_id = %request_id,
            client_ip = Empty,
            user_id = Empty,
            http.status_code = Empty,
            latency_ms = Empty,
            error.code = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, latency_ms) = match outcome {
            Ok(response) => {
                let latency = response
                    .request()
                    .extensions()
                    .get::<RequestStart>()
                    .map(|start| start.0.elapsed().as_secs_f64() * 1000.0);
                (response.status(), latency)
            }
            Err(error) => (error.as_response_error().status_code(), None),
        };
        span.record("http.status_code", status.as_u16());
        if let Some(latency_ms) = latency_ms {
            span.record("latency_ms", latency_ms);
        }
        let _entered = span.enter();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "request completed");
        } else {
            tracing::info!(status = status.as_u16(), "request completed");
        }
    }
}

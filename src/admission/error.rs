//! Why the service itself refused or failed a request, on any route, and the status, error and code
//! each reason answers with in the envelope. Proof's own answers are relayed as they came and never
//! pass through here.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::browser::CallerRefused;
use crate::http::envelope_response;
use crate::idempotency::KeyError;
use crate::proof::{UpstreamError, UpstreamFailure};
use crate::rate_limit::{LimitKind, RATE_LIMIT, RATE_LIMIT_POLICY, Refusal};
use crate::session::SessionError;
use crate::telemetry::{CLIENT_CLOSED, CLIENT_CLOSED_STATUS};

/// Why the service itself refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Caller(#[from] CallerRefused),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body not received in time")]
    RequestTimeout,
    /// The connection closed before the whole body arrived: no one is left to answer. Logged and
    /// counted as a 499 `client_closed`, as a request dropped half way is.
    #[error("the client closed the connection before its request arrived")]
    ClientClosed,
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("rate limited ({})", .0.kind.code())]
    RateLimited(Refusal, HeaderValue),
    #[error("rate limit backend unreachable")]
    RateLimitBackend,
    #[error("service is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    IdempotencyKey(#[from] KeyError),
    #[error("the same Idempotency-Key is still being served")]
    RequestInProgress,
    #[error("the Idempotency-Key was used for another checkout")]
    IdempotencyKeyReused,
    /// Unknown, malformed or another user's: the same answer for each, so ids cannot be probed.
    #[error("no such transaction")]
    NotFound,
    #[error("too many event streams")]
    TooManyStreams,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Why a request was refused: the field (`"body"` for the body as a whole)
/// and a message that names the field and never repeats the value sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// About the body as a whole.
    pub fn body(message: impl Into<String>) -> Self {
        Self::new("body", message)
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, Cow<'static, str>) {
        use ApiError as E;
        match self {
            E::Caller(CallerRefused::ForbiddenOrigin) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "forbidden_origin",
                "the request's Origin is not allowed to call this service".into(),
            ),
            E::Caller(CallerRefused::CsrfHeaderMissing) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "csrf",
                "the X-CSRF: 1 header is required".into(),
            ),
            E::Session(SessionError::Backend) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "session_backend",
                "the service cannot check sessions right now: try again".into(),
            ),
            E::Session(e) => (
                StatusCode::UNAUTHORIZED,
                "unauthorised",
                e.code(),
                match e {
                    SessionError::Missing => "no session: sign in first",
                    SessionError::Invalid => "the session is not valid: sign in again",
                    SessionError::Expired => "the session has expired: sign in again",
                    SessionError::Backend => "the service cannot check sessions right now",
                }
                .into(),
            ),
            E::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "unsupported_media_type",
                "the request body must be JSON with Content-Type: application/json".into(),
            ),
            E::BodyTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "body_too_large",
                format!("the request body must be at most {limit} bytes").into(),
            ),
            // The connection is closed after this answer, as the body was not read to its end.
            E::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "request_timeout",
                "the request did not arrive in time".into(),
            ),
            E::ClientClosed => (
                StatusCode::from_u16(CLIENT_CLOSED_STATUS).unwrap_or(StatusCode::BAD_REQUEST),
                CLIENT_CLOSED,
                CLIENT_CLOSED,
                "the connection closed before the request arrived".into(),
            ),
            E::Validation(e) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "validation_error",
                e.message.clone().into(),
            ),
            E::RateLimited(refusal, _) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                refusal.kind.code(),
                match refusal.kind {
                    LimitKind::PerUser | LimitKind::PerIp => {
                        "too many checkout attempts: try again later"
                    }
                    LimitKind::PerUserStatus | LimitKind::PerIpStatus => {
                        "too many status reads: try again later"
                    }
                }
                .into(),
            ),
            E::RateLimitBackend => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "rate_limit_backend",
                "the service cannot check its rate limits right now: try again".into(),
            ),
            E::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "shutting_down",
                "the service is restarting: try again".into(),
            ),
            E::IdempotencyKey(e) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "validation_error",
                e.to_string().into(),
            ),
            E::RequestInProgress => (
                StatusCode::CONFLICT,
                "conflict",
                "request_in_progress",
                "a request with this Idempotency-Key is still being served: try again in a moment"
                    .into(),
            ),
            E::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different checkout: use a new key".into(),
            ),
            E::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "not_found",
                "no such transaction".into(),
            ),
            E::TooManyStreams => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too_many_streams",
                "too many open status streams: close one and try again".into(),
            ),
            E::Upstream(e) => match e.kind {
                UpstreamFailure::Misconfigured { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "upstream_misconfigured",
                    "the payment provider refused this service's credentials".into(),
                ),
                UpstreamFailure::ProviderError { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "provider_error",
                    "the payment provider failed: try again".into(),
                ),
                UpstreamFailure::Unavailable { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "upstream_unavailable",
                    "the payment provider is unreachable: try again".into(),
                ),
                UpstreamFailure::InvalidResponse { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "invalid_upstream_response",
                    "the payment provider sent an unusable answer".into(),
                ),
                UpstreamFailure::Timeout { .. } => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "upstream_timeout",
                    "the payment provider did not answer in time: try again".into(),
                ),
                UpstreamFailure::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "upstream_busy",
                    "too many calls to the payment provider are in flight: try again in a moment"
                        .into(),
                ),
            },
        }
    }

    /// The public error slug and code, for logs and metrics.
    pub fn error_code(&self) -> (&'static str, &'static str) {
        let (_, error, code, _) = self.parts();
        (error, code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, error, code, message) = self.parts();
        let mut response = envelope_response(status, error, code, &message);
        match self {
            ApiError::RateLimited(refusal, policy) => {
                let headers = response.headers_mut();
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(refusal.retry_after_s),
                );
                headers.insert(RATE_LIMIT_POLICY, policy.clone());
                headers.insert(RATE_LIMIT, refusal.rate_limit.clone());
            }
            ApiError::TooManyStreams => {
                // A stream closes when its page does; a few seconds is enough.
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::RequestInProgress
            | ApiError::Upstream(UpstreamError {
                kind: UpstreamFailure::Busy,
                ..
            }) => {
                // A place comes free as soon as one call in flight ends.
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

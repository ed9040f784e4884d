//! Logs and the per-request root span.
//!
//! The root span carries what an operator needs to follow one request (method, route, status,
//! latency, request id, the resolved client IP and the user id) and nothing that is a secret or
//! personal data: no email, no token, no cookie, no request body.

use std::future::{Ready, ready};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use futures_util::future::LocalBoxFuture;
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::RootSpanBuilder;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, Registry};

use crate::configuration::{LogConfig, LogFormat};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

/// Builds the subscriber: JSON lines or human-readable, `RUST_LOG` winning over `log.level`.
/// Never writes colour codes: `writer` may be a file or a pipe.
pub fn subscriber<W>(log: &LogConfig, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build_subscriber(log, &filter_from_env(log), writer, false)
}

/// `RUST_LOG` when it is set and valid, else `log.level`.
fn filter_from_env(log: &LogConfig) -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|value| EnvFilter::try_new(value).is_ok())
        .unwrap_or_else(|| log.level.clone())
}

/// Like [`subscriber`] with an explicit filter, ignoring `RUST_LOG`.
pub fn subscriber_with_filter<W>(
    log: &LogConfig,
    filter: &str,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build_subscriber(log, filter, writer, false)
}

/// `ansi` colours the pretty format; escape codes in a file or a log pipeline are only noise.
fn build_subscriber<W>(
    log: &LogConfig,
    filter: &str,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = Registry::default().with(filter);
    match log.format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
        ),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(ansi)
                    .with_writer(writer),
            ),
        ),
    }
}

/// Installs the subscriber for the process, writing to standard output.
pub fn init(log: &LogConfig) -> Result<(), TryInitError> {
    install(stdout_subscriber(log))
}

/// The process's subscriber: pretty logs are coloured only on a terminal, and not when
/// `NO_COLOR` is set (no-color.org).
fn stdout_subscriber(log: &LogConfig) -> Box<dyn tracing::Subscriber + Send + Sync> {
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    build_subscriber(log, &filter_from_env(log), std::io::stdout, ansi)
}

/// Makes `subscriber` the process's global default, once per process, and routes the `log`
/// records of dependencies (actix-web, awc, rustls) into it, so they pass the same filter and
/// reach the same writer as our own events instead of being dropped.
pub fn install(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) -> Result<(), TryInitError> {
    subscriber.try_init()
}

/// The id of one request: the caller's `X-Request-Id` when it is sane, else a fresh UUID. It is
/// returned on every response and forwarded to Proof, so one id follows the request end to end.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    fn from_request(req: &ServiceRequest) -> Self {
        let mut incoming = req.headers().get_all(REQUEST_ID_HEADER);
        if let (Some(value), None) = (incoming.next(), incoming.next())
            && is_sane_request_id(value.as_bytes())
        {
            return Self(value.clone());
        }
        Self::generate()
    }

    fn generate() -> Self {
        let mut buffer = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
        Self(HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("unknown")))
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ids are ever stored (checked or generated above).
        self.0.to_str().unwrap_or("")
    }
}

/// A request id a caller may choose: short, and only characters that are safe in logs and headers.
fn is_sane_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Handlers take the id as an extractor; outside the middleware (never in the running service)
/// a fresh one is made rather than failing the request.
impl actix_web::FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ok(req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate)))
    }
}

/// When the request arrived, for the latency in the completion log.
#[derive(Clone, Copy)]
struct RequestStart(Instant);

/// Assigns the request id before the root span is built, and returns it on every response,
/// errors included.
pub struct RequestIdMiddleware;

impl<S, B> Transform<S, ServiceRequest> for RequestIdMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService { service }))
    }
}

pub struct RequestIdService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let request_id = RequestId::from_request(&req);
        let header = request_id.0.clone();
        req.extensions_mut().insert(request_id);
        req.extensions_mut().insert(RequestStart(Instant::now()));
        let response = self.service.call(req);
        Box::pin(async move {
            match response.await {
                Ok(mut response) => {
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                    Ok(response)
                }
                Err(error) => {
                    // Turn the error into its response here so the id is still attached.
                    let mut response = error.error_response();
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                    Err(actix_web::error::InternalError::from_response(error, response).into())
                }
            }
        })
    }
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
        let route = request.match_pattern();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_checked() {
        assert!(is_sane_request_id(b"3f0c2a7e-1b9d-4c55-9f57-5f2b8f0b3a11"));
        assert!(is_sane_request_id(b"req_123.abc:7"));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id(b"line\nbreak"));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
    }
}

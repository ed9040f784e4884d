//! The call to Proof's `POST /widget/session`: one awc client per worker, the request built from an
//! allow-list of headers with the secret injected last, bounded in time and size, and retried
//! exactly as Proof's guidance says.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use awc::error::{PayloadError, SendRequestError};
use bytes::Bytes;
use rand::RngExt;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::configuration::ProofConfig;
use crate::error::UpstreamError;
use crate::telemetry::{REQUEST_ID_HEADER, RequestId};

/// Proof's widget parameters are a few kilobytes; anything far larger is not a session answer.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
const USER_AGENT: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));

/// What the worker-independent part of the client needs, built once from the configuration.
#[derive(Debug)]
pub struct ProofEndpoint {
    url: Uri,
    authorization: HeaderValue,
    origin: HeaderValue,
    connect_timeout: Duration,
    request_timeout: Duration,
    deadline: Duration,
    max_attempts: u32,
}

impl ProofEndpoint {
    pub fn new(config: &ProofConfig) -> Result<Self, String> {
        let url: Uri = config
            .widget_session_url
            .parse()
            .map_err(|e| format!("proof.base_url: {e}"))?;
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {}", config.client_token.expose_secret()))
                .map_err(|_| "proof.client_token: not a valid header value".to_owned())?;
        // Keeps the token out of any Debug output of the header map and out of HPACK tables.
        authorization.set_sensitive(true);
        let origin = HeaderValue::try_from(config.origin.as_str())
            .map_err(|_| "proof.origin: not a valid header value".to_owned())?;
        Ok(Self {
            url,
            authorization,
            origin,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            deadline: config.deadline,
            max_attempts: config.max_attempts,
        })
    }
}

/// Proof's answer that goes back to the browser unchanged: a 2xx with a JSON object body, or one of
/// Proof's own 4xx answers.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
}

/// One per worker: awc's client is not `Send`, and each keeps its own connection pool.
pub struct ProofClient {
    http: awc::Client,
    endpoint: Arc<ProofEndpoint>,
}

impl ProofClient {
    pub fn new(endpoint: Arc<ProofEndpoint>) -> Self {
        let connector = awc::Connector::new()
            .timeout(endpoint.connect_timeout)
            .conn_keep_alive(Duration::from_secs(15));
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(endpoint.request_timeout)
            .disable_redirects()
            .no_default_headers()
            .finish();
        Self { http, endpoint }
    }

    /// Creates a widget session, retrying only what Proof says is safe to retry and always with
    /// the same body, all within the deadline.
    pub async fn create_widget_session(
        &self,
        body: Bytes,
        request_id: &RequestId,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let endpoint = &*self.endpoint;
        let deadline = Instant::now() + endpoint.deadline;
        let mut internal_error_retried = false;
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(UpstreamError::Timeout { cause: "deadline" });
            }
            let attempt_timeout = endpoint.request_timeout.min(remaining);
            let outcome =
                tokio::time::timeout(attempt_timeout, self.attempt(body.clone(), request_id))
                    .await
                    .unwrap_or(Err(AttemptError::TimedOut));
            let (retry, error) = match classify(outcome, &mut internal_error_retried) {
                Classified::Done(result) => return result,
                Classified::Retryable(error) => (attempt < endpoint.max_attempts, error),
            };
            if !retry {
                return Err(error.into_final(attempt));
            }
            let backoff = backoff(attempt);
            if backoff >= deadline.saturating_duration_since(Instant::now()) {
                return Err(error.into_final(attempt));
            }
            tracing::warn!(
                attempt,
                reason = %error.reason(),
                backoff_ms = backoff.as_millis() as u64,
                "retrying Proof /widget/session"
            );
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        body: Bytes,
        request_id: &RequestId,
    ) -> Result<RawAnswer, AttemptError> {
        let endpoint = &*self.endpoint;
        // Built from scratch: nothing of the browser's request (Cookie, Authorization, Host) is
        // copied. The secret goes in last.
        let request = self
            .http
            .post(endpoint.url.clone())
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ))
            .insert_header((header::ACCEPT, HeaderValue::from_static("application/json")))
            .insert_header((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)))
            .insert_header((header::ORIGIN, endpoint.origin.clone()))
            .insert_header((REQUEST_ID_HEADER, request_id.header_value().clone()))
            .insert_header((header::AUTHORIZATION, endpoint.authorization.clone()));
        let mut response = request.send_body(body).await.map_err(|e| match e {
            SendRequestError::Connect(e) => AttemptError::Connect(e.to_string()),
            SendRequestError::Timeout => AttemptError::TimedOut,
            other => AttemptError::Broken(other.to_string()),
        })?;
        let status = response.status();
        let headers = response.headers();
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let retry_after = headers.get(header::RETRY_AFTER).cloned();
        let proof_request_id = headers.get(REQUEST_ID_HEADER).cloned();
        let body = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                PayloadError::Overflow => AttemptError::BodyTooLarge,
                other => AttemptError::Broken(other.to_string()),
            })?;
        Ok(RawAnswer {
            status,
            content_type,
            retry_after,
            proof_request_id,
            body,
        })
    }
}

struct RawAnswer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    retry_after: Option<HeaderValue>,
    proof_request_id: Option<HeaderValue>,
    body: Bytes,
}

impl RawAnswer {
    /// Proof's own request id, which its support asks for.
    fn proof_request_id(&self) -> &str {
        self.proof_request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

enum AttemptError {
    /// No connection was made, so nothing was sent: safe to retry.
    Connect(String),
    /// The attempt's time ran out after the request may have been sent.
    TimedOut,
    /// The connection failed after the request was sent.
    Broken(String),
    BodyTooLarge,
}

/// A failure that Proof's guidance allows to retry.
enum RetryableError {
    Unreachable(String),
    ServerError(StatusCode),
}

impl RetryableError {
    fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Unreachable(cause) => format!("unreachable: {cause}").into(),
            Self::ServerError(status) => format!("HTTP {}", status.as_u16()).into(),
        }
    }

    fn into_final(self, attempts: u32) -> UpstreamError {
        match self {
            Self::Unreachable(cause) => UpstreamError::Unavailable { attempts, cause },
            Self::ServerError(status) => UpstreamError::ProviderError {
                status: status.as_u16(),
                attempts,
            },
        }
    }
}

enum Classified {
    Done(Result<UpstreamAnswer, UpstreamError>),
    Retryable(RetryableError),
}

/// The error slug in Proof's envelope, the only part of a 5xx body that decides a retry.
#[derive(serde::Deserialize)]
struct ProofErrorSlug<'a> {
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
}

fn error_slug(body: &[u8]) -> Option<Cow<'_, str>> {
    // serde would also read a JSON array as the struct's fields in order: only an object counts.
    if !starts_like_object(body) {
        return None;
    }
    serde_json::from_slice::<ProofErrorSlug>(body)
        .ok()
        .and_then(|b| b.error)
}

fn starts_like_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

fn classify(
    outcome: Result<RawAnswer, AttemptError>,
    internal_error_retried: &mut bool,
) -> Classified {
    let answer = match outcome {
        Ok(answer) => answer,
        Err(AttemptError::Connect(cause)) => {
            return Classified::Retryable(RetryableError::Unreachable(cause));
        }
        Err(AttemptError::TimedOut) => {
            return Classified::Done(Err(UpstreamError::Timeout { cause: "attempt" }));
        }
        Err(AttemptError::Broken(cause)) => {
            return Classified::Done(Err(UpstreamError::Unavailable { attempts: 1, cause }));
        }
        Err(AttemptError::BodyTooLarge) => {
            return Classified::Done(Err(UpstreamError::InvalidResponse {
                status: 0,
                cause: "body too large",
            }));
        }
    };
    let status = answer.status;
    if status.is_success() {
        return Classified::Done(if is_json_object(&answer.body) {
            Ok(UpstreamAnswer {
                status,
                content_type: None,
                retry_after: None,
                body: answer.body,
            })
        } else {
            Err(UpstreamError::InvalidResponse {
                status: status.as_u16(),
                cause: "not a JSON object",
            })
        });
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        tracing::error!(
            status = status.as_u16(),
            proof_request_id = answer.proof_request_id(),
            proof_error = error_slug(&answer.body).as_deref().unwrap_or(""),
            "Proof refused the client_token or Origin: check proof.client_token and proof.origin"
        );
        return Classified::Done(Err(UpstreamError::Misconfigured {
            status: status.as_u16(),
        }));
    }
    if status.is_client_error() {
        return Classified::Done(Ok(UpstreamAnswer {
            status,
            content_type: answer.content_type,
            retry_after: answer.retry_after,
            body: answer.body,
        }));
    }
    if status.is_server_error() {
        let slug = error_slug(&answer.body);
        let retryable = match (status, slug.as_deref()) {
            (StatusCode::BAD_GATEWAY, Some("upstream_error" | "upstream_unavailable")) => true,
            (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error")) => {
                !std::mem::replace(internal_error_retried, true)
            }
            _ => false,
        };
        tracing::warn!(
            status = status.as_u16(),
            proof_request_id = answer.proof_request_id(),
            proof_error = slug.as_deref().unwrap_or(""),
            "Proof answered with a server error"
        );
        return if retryable {
            Classified::Retryable(RetryableError::ServerError(status))
        } else {
            Classified::Done(Err(UpstreamError::ProviderError {
                status: status.as_u16(),
                attempts: 1,
            }))
        };
    }
    Classified::Done(Err(UpstreamError::InvalidResponse {
        status: status.as_u16(),
        cause: "unexpected status",
    }))
}

/// The widget needs an object; checking the whole document parses keeps a truncated or HTML
/// answer from reaching the browser, without rebuilding the bytes.
fn is_json_object(body: &[u8]) -> bool {
    starts_like_object(body) && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Exponential backoff with jitter: half fixed, half random, so retries from many requests spread.
fn backoff(attempt: u32) -> Duration {
    let exponential = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let half = exponential / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_CAP);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn only_json_objects_are_widget_answers() {
        assert!(is_json_object(br#" {"a": 1.50, "b": "\u00e9"} "#));
        assert!(!is_json_object(b"[1,2]"));
        assert!(!is_json_object(b"<html></html>"));
        assert!(!is_json_object(br#"{"a": 1"#));
        assert!(!is_json_object(b""));
    }
}

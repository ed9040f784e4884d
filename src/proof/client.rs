//! The calls to Proof's partner API (`POST /widget/session`, `GET /widget/transactions/{id}`,
//! `GET /widget/users/{id}/kyc-status`): one awc client per worker, each request built from an
//! allow-list of headers with the secret injected last, bounded in time and size, and retried
//! exactly as Proof's guidance says: a session only when nothing of it can have been acted on, a
//! read (a `GET`, idempotent) on any server error or broken connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use awc::error::{ConnectError, PayloadError, SendRequestError};
use bytes::Bytes;
use rand::RngExt;
use secrecy::SecretString;
use tokio::time::Instant;

use super::error::{UpstreamError, UpstreamFailure};
use super::retry::{Decision, RetryState, Retryable};
use super::token::ClientToken;
use super::wire::{error_slug, is_json_media_type, is_json_object};
use crate::call_budget::{Busy, CallBudget, CallPlace};
use crate::telemetry::{
    Caller, ClientSpan, Metrics, REQUEST_ID_HEADER, RequestId, Traces, UpstreamOutcome,
    plain_request_id,
};

/// Proof's widget parameters are a few kilobytes; anything far larger is not a session answer.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
pub(super) const USER_AGENT: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));

/// What the worker-independent part of the client needs, built once from the configuration.
#[derive(Debug)]
pub struct ProofEndpoint {
    url: Uri,
    /// The base URL without a trailing slash, for the paths built per call.
    base: String,
    token: ClientToken,
    origin: HeaderValue,
    connect_timeout: Duration,
    request_timeout: Duration,
    deadline: Duration,
    max_attempts: u32,
    /// `proof.max_connections`: calls in flight for the whole instance.
    max_connections: usize,
}

/// The checked `[proof]` values the endpoint is built from.
#[derive(Debug)]
pub struct ProofEndpointSettings {
    /// The full URL of `POST /widget/session` under the configured base URL.
    pub widget_session_url: String,
    /// The configured base URL, checked.
    pub base_url: url::Url,
    pub client_token: SecretString,
    /// Where the token is re-read from on rotation, when it came from a file.
    pub client_token_file: Option<std::path::PathBuf>,
    pub origin: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub max_connections: usize,
}

impl ProofEndpoint {
    /// Fails only on values no checked configuration holds; the configuration layer calls it, so
    /// `check-config` reports any such problem before the service starts.
    pub fn new(config: &ProofEndpointSettings) -> Result<Self, String> {
        let url: Uri = config
            .widget_session_url
            .parse()
            .map_err(|e| format!("proof.base_url: {e}"))?;
        let token = ClientToken::new(&config.client_token, config.client_token_file.clone())
            .map_err(|problem| format!("proof.client_token: {problem}"))?;
        let origin = HeaderValue::try_from(config.origin.as_str())
            .map_err(|_| "proof.origin: not a valid header value".to_owned())?;
        let base = config.base_url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            url,
            base,
            token,
            origin,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            deadline: config.deadline,
            max_attempts: config.max_attempts,
            max_connections: config.max_connections,
        })
    }

    /// The most one attempt waits for Proof's answer.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The most a checkout waits for Proof, all attempts included.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Checkout and status calls in flight at once for the whole instance.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The base URL with `segments` and one query parameter, every part percent-escaped.
    pub(super) fn url_with_query(
        &self,
        segments: &[&str],
        name: &str,
        value: &str,
    ) -> Result<Uri, UpstreamError> {
        let mut url = self.base.clone();
        for segment in segments {
            url.push('/');
            push_escaped_segment(&mut url, segment);
        }
        url.push('?');
        push_escaped_segment(&mut url, name);
        url.push('=');
        push_escaped_segment(&mut url, value);
        Uri::try_from(url).map_err(|_| unbuildable_url())
    }

    pub(super) fn origin(&self) -> &HeaderValue {
        &self.origin
    }

    /// The client token, which a rotation replaces.
    pub fn token(&self) -> &ClientToken {
        &self.token
    }

    /// The base URL with `segments` appended, each percent-escaped: an id can never climb out of
    /// its place in the path nor add a query.
    fn url_with(&self, segments: &[&str]) -> Result<Uri, UpstreamError> {
        let mut url = self.base.clone();
        for segment in segments {
            url.push('/');
            push_escaped_segment(&mut url, segment);
        }
        Uri::try_from(url).map_err(|_| unbuildable_url())
    }
}

fn unbuildable_url() -> UpstreamError {
    UpstreamError {
        kind: UpstreamFailure::InvalidResponse {
            status: 0,
            cause: "the request URL could not be built",
        },
        attempts: 0,
    }
}

/// Appends `segment` with every byte but letters, digits, `-`, `_` and `~` percent-encoded: `/`,
/// `?`, `#` and `%` cannot change the path's shape, and `.` is encoded too, so an id of `..` is not
/// a step up the path.
fn push_escaped_segment(url: &mut String, segment: &str) {
    use std::fmt::Write as _;
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            url.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(url, "%{byte:02X}");
        }
    }
}

/// One call to Proof, for the request, the retry rules and the logs.
#[derive(Debug, Clone, Copy)]
enum Call {
    WidgetSession,
    Transaction,
    KycStatus,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Self::WidgetSession => "/widget/session",
            Self::Transaction => "/widget/transactions",
            Self::KycStatus => "/widget/users/kyc-status",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::WidgetSession => "POST",
            Self::Transaction | Self::KycStatus => "GET",
        }
    }

    /// The call's span name: the method and the path's template, never an id.
    fn span_name(self) -> &'static str {
        match self {
            Self::WidgetSession => "POST /widget/session",
            Self::Transaction => "GET /widget/transactions/{merchant_transaction_id}",
            Self::KycStatus => "GET /widget/users/{partner_user_id}/kyc-status",
        }
    }

    /// A read changes nothing at Proof, so it may be sent again whatever happened to it.
    fn is_idempotent(self) -> bool {
        !matches!(self, Self::WidgetSession)
    }
}

/// Proof's answer that goes back to the browser unchanged: a 2xx with a JSON object body, or one of
/// Proof's own 4xx answers (a JSON object too), labelled with Proof's JSON content type or
/// `application/json`. `content_type: None` is relayed as `application/json`.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
}

/// One per worker: awc's client is not `Send`, and each keeps its own connection pool. Clones
/// share both (a status watcher takes one along, without the budget: see [`Self::for_watcher`]).
#[derive(Clone)]
pub struct ProofClient {
    http: awc::Client,
    endpoint: Arc<ProofEndpoint>,
    /// The worker's share of `proof.max_connections`, which checkouts and status reads take a
    /// place in; `None` for a watcher's reads, which are bounded by the watchers themselves (one
    /// read at a time each) and so never take a place a checkout needs.
    budget: Option<Arc<CallBudget>>,
    /// When metrics are served (`metrics.listen`): each call is counted.
    metrics: Option<Arc<Metrics>>,
    /// When traces are on: each call made for a request is a span beneath the request's.
    traces: Option<Arc<Traces>>,
}

impl ProofClient {
    /// The client of one worker, whose calls share `budget` (the worker's share of
    /// `proof.max_connections`).
    pub fn new(
        endpoint: Arc<ProofEndpoint>,
        budget: Arc<CallBudget>,
        metrics: Option<Arc<Metrics>>,
        traces: Option<Arc<Traces>>,
    ) -> Self {
        // No limit of awc's own (its default is 100 connections, with a queue no deadline
        // bounds): the budget bounds the calls, and WebSockets, which the watchers bound, are
        // never queued behind checkouts.
        let connector = awc::Connector::new()
            .limit(0)
            .timeout(endpoint.connect_timeout)
            .conn_keep_alive(Duration::from_secs(15));
        // No timeout of awc's own: every attempt, and the WebSocket's opening, is bounded by a
        // timer of ours around the whole of it (the answer's body included), which fires first.
        let http = awc::Client::builder()
            .connector(connector)
            .disable_timeout()
            .disable_redirects()
            .no_default_headers()
            .finish();
        Self {
            http,
            endpoint,
            budget: Some(budget),
            metrics,
            traces,
        }
    }

    /// The same client (connections, metrics, traces) for a status watcher: its reads take no
    /// place in the budget of checkouts and status reads.
    pub fn for_watcher(&self) -> Self {
        Self {
            budget: None,
            ..self.clone()
        }
    }

    pub(super) fn endpoint(&self) -> &ProofEndpoint {
        &self.endpoint
    }

    pub(super) fn http(&self) -> &awc::Client {
        &self.http
    }

    /// Creates a widget session, retrying only what Proof says is safe to retry and always with
    /// the same body, all within the deadline.
    pub async fn create_widget_session(
        &self,
        body: Bytes,
        caller: Caller<'_>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let url = self.endpoint.url.clone();
        self.call(Call::WidgetSession, url, Some(body), caller)
            .await
    }

    /// `GET /widget/transactions/{merchant_transaction_id}`: Proof's answer, not yet checked for
    /// whose transaction it is.
    pub async fn transaction(
        &self,
        merchant_transaction_id: &str,
        caller: Caller<'_>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let url = self
            .endpoint
            .url_with(&["widget", "transactions", merchant_transaction_id])?;
        self.call(Call::Transaction, url, None, caller).await
    }

    /// `GET /widget/users/{partner_user_id}/kyc-status`.
    pub async fn kyc_status(
        &self,
        partner_user_id: &str,
        caller: Caller<'_>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let url = self
            .endpoint
            .url_with(&["widget", "users", partner_user_id, "kyc-status"])?;
        self.call(Call::KycStatus, url, None, caller).await
    }

    /// One call, counted in the metrics, noted on the caller's record and, when traces are on, a
    /// span beneath the caller's.
    async fn call(
        &self,
        call: Call,
        url: Uri,
        body: Option<Bytes>,
        caller: Caller<'_>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        caller.note_at_proof();
        let request_id = caller.request_id();
        let span = self.traces.as_deref().and_then(|traces| {
            let parent = caller.trace_parent()?;
            Some(traces.client_span(call.span_name(), call.method(), call.name(), parent))
        });
        let started = Instant::now();
        let deadline = started + self.endpoint.deadline;
        let (result, last) = match self.enter_budget(deadline).await {
            Ok(_place) => {
                self.call_with_retries(call, url, body, deadline, &request_id, span.as_ref())
                    .await
            }
            Err(busy) => (Err(busy), LastAttempt::new(0, None)),
        };
        let latency = started.elapsed();
        let outcome = match &result {
            Ok(answer) if answer.status.is_success() => "ok",
            Ok(_) => "proof_4xx",
            Err(error) => error.kind.outcome(),
        };
        if let Some(metrics) = &self.metrics {
            metrics.upstream_call(call.name(), outcome, last.attempts, latency);
        }
        let proof_request_id = plain_request_id(last.proof_request_id.as_ref());
        if let Some(span) = span {
            span.end(
                outcome,
                result.is_err(),
                last.attempts,
                last.status,
                proof_request_id.as_ref(),
            );
        }
        caller.note_upstream(UpstreamOutcome {
            attempts: last.attempts,
            status: last.status,
            proof_request_id,
            latency,
        });
        result
    }

    /// A place in the worker's budget for one call, waited for until the call's deadline less
    /// the time an attempt needs to connect: a place that comes later could only send a request
    /// doomed to time out. The wait counts against `deadline_ms`; it is not an attempt.
    async fn enter_budget(
        &self,
        deadline: Instant,
    ) -> Result<Option<CallPlace<'_>>, UpstreamError> {
        let Some(budget) = &self.budget else {
            return Ok(None);
        };
        let last_useful = deadline
            .checked_sub(self.endpoint.connect_timeout)
            .unwrap_or(deadline);
        match budget.enter(last_useful).await {
            Ok(place) => Ok(Some(place)),
            Err(Busy) => {
                tracing::warn!(
                    max_connections = self.endpoint.max_connections,
                    "no place for a call to Proof before its deadline (proof.max_connections): not sent"
                );
                Err(UpstreamError {
                    kind: UpstreamFailure::Busy,
                    attempts: 0,
                })
            }
        }
    }

    /// The call and its retries; also the number of attempts made and the last one's answer,
    /// whatever the result.
    async fn call_with_retries(
        &self,
        call: Call,
        url: Uri,
        body: Option<Bytes>,
        deadline: Instant,
        request_id: &RequestId,
        trace: Option<&ClientSpan>,
    ) -> (Result<UpstreamAnswer, UpstreamError>, LastAttempt) {
        let endpoint = &*self.endpoint;
        // Every attempt of this call carries the token it started with, whatever a rotation does
        // meanwhile.
        let authorization = endpoint.token.authorization();
        let mut retry = RetryState::new(endpoint.max_attempts, deadline, endpoint.connect_timeout);
        let mut answered = None;
        let failure = loop {
            let Some(time_left) = retry.start_attempt(Instant::now()) else {
                break UpstreamFailure::Timeout { cause: "deadline" };
            };
            let attempt_timeout = endpoint.request_timeout.min(time_left);
            let attempt =
                self.attempt(url.clone(), body.clone(), &authorization, request_id, trace);
            let outcome = tokio::time::timeout(attempt_timeout, attempt)
                .await
                .unwrap_or(Err(AttemptError::TimedOut));
            answered = outcome
                .as_ref()
                .ok()
                .map(|answer| (answer.status, answer.proof_request_id.clone()));
            let (why, failure) = match classify(outcome, call.is_idempotent(), &endpoint.token) {
                Verdict::Answer(answer) => {
                    return (Ok(answer), LastAttempt::new(retry.attempts(), answered));
                }
                Verdict::Final(failure) => break failure,
                Verdict::Retryable(why, failure) => (why, failure),
            };
            let after = match retry.decide(why, Instant::now(), rand::rng().random()) {
                Decision::Stop => break failure,
                Decision::Retry { after } => after,
            };
            tracing::warn!(
                attempt = retry.attempts(),
                reason = %RetryReason(&failure),
                backoff_ms = after.as_millis() as u64,
                "retrying Proof {}",
                call.name()
            );
            retry.retrying(why);
            tokio::time::sleep(after).await;
        };
        let error = UpstreamError {
            kind: failure,
            attempts: retry.attempts(),
        };
        tracing::warn!(
            attempts = error.attempts,
            error = %error.kind,
            "no usable answer from Proof {}",
            call.name()
        );
        let attempts = error.attempts;
        (Err(error), LastAttempt::new(attempts, answered))
    }

    async fn attempt(
        &self,
        url: Uri,
        body: Option<Bytes>,
        authorization: &HeaderValue,
        request_id: &RequestId,
        trace: Option<&ClientSpan>,
    ) -> Result<RawAnswer, AttemptError> {
        let endpoint = &*self.endpoint;
        // Built from scratch: nothing of the browser's request (Cookie, Authorization, Host) is
        // copied. The secret goes in last.
        let mut request = match body {
            Some(_) => self.http.request(Method::POST, url).insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )),
            None => self.http.request(Method::GET, url),
        };
        request = request
            .insert_header((header::ACCEPT, HeaderValue::from_static("application/json")))
            .insert_header((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)))
            .insert_header((header::ORIGIN, endpoint.origin.clone()))
            .insert_header((REQUEST_ID_HEADER, request_id.header_value().clone()));
        if let Some(trace) = trace {
            for (name, value) in trace.headers() {
                request = request.insert_header((name, value.clone()));
            }
        }
        request = request.insert_header((header::AUTHORIZATION, authorization.clone()));
        let sent = match body {
            Some(body) => request.send_body(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(AttemptError::from_send)?;
        let status = response.status();
        let headers = response.headers();
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let retry_after = headers.get(header::RETRY_AFTER).cloned();
        let proof_request_id = headers.get(REQUEST_ID_HEADER).cloned();
        let declared_length = declared_length(headers);
        let body = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                PayloadError::Overflow => AttemptError::BodyTooLarge(status),
                // Proof has the request: a body cut short is as final as no answer at all.
                other => AttemptError::Broken(other.to_string()),
            })?;
        // awc ends a body quietly when the connection closes before `Content-Length` bytes
        // arrived, so the count is checked here. (A chunked body cut short cannot be told from
        // a whole one; it fails the JSON checks instead.)
        if declared_length.is_some_and(|declared| declared != body.len()) {
            return Err(AttemptError::Broken(
                "the connection closed before the whole answer arrived".to_owned(),
            ));
        }
        Ok(RawAnswer {
            status,
            content_type,
            retry_after,
            proof_request_id,
            body,
        })
    }
}

/// The body length the answer's head promises, when its bytes arrive as they are on the wire.
fn declared_length(headers: &header::HeaderMap) -> Option<usize> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return None;
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A call's attempts, and what the last one was answered with, if anything.
struct LastAttempt {
    attempts: u32,
    status: Option<u16>,
    proof_request_id: Option<HeaderValue>,
}

impl LastAttempt {
    fn new(attempts: u32, answered: Option<(StatusCode, Option<HeaderValue>)>) -> Self {
        let (status, proof_request_id) = match answered {
            Some((status, id)) => (Some(status.as_u16()), id),
            None => (None, None),
        };
        Self {
            attempts,
            status,
            proof_request_id,
        }
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

#[derive(Debug)]
enum AttemptError {
    /// No connection was made, so not a byte of the request left this process: safe to retry.
    NotSent(String),
    /// The attempt's time ran out after the request may have been sent.
    TimedOut,
    /// The connection failed once the request had been written, or in a way a retry cannot mend.
    Broken(String),
    BodyTooLarge(StatusCode),
}

impl AttemptError {
    /// Whether any of the request reached the connection, read from where in awc the error arose
    /// rather than from its text.
    ///
    /// awc 3 makes a connection (DNS, TCP connect, TLS and HTTP/2 handshakes, each bounded by the
    /// connect timeout) before it writes a single byte of the request, and every failure of that
    /// phase is a `SendRequestError::Connect`. Once the request is written, a failed write is
    /// `Send`, a reset or garbage while reading the answer's head is `Response`, and a connection
    /// closed before the head arrives is `Connect(ConnectError::Disconnected)`: the same wrapper
    /// as a failed connect, which is why that one variant is singled out. (awc's only other source
    /// of `Disconnected`, an `Expect` header on an empty body, is never sent here.)
    ///
    /// A pooled keep-alive connection that Proof closed while idle is checked by awc before reuse
    /// and dropped if the close has already arrived; if it arrives just after, the request has
    /// been written and the failure looks exactly like Proof reading the request and dropping the
    /// connection (`Disconnected`, or a reset). Nothing on this side can tell the two apart, and a
    /// connection accepted by a load balancer or CDN in front of Proof says nothing about whether
    /// the request went further, so the line is drawn at the first byte written: that is sent, and
    /// never retried (as Go's net/http does for requests that are not replayable). A wrapper
    /// around the socket counting written bytes would differ only when the very first write fails
    /// outright (a pooled connection already reset): that is `Send` and counted as sent here,
    /// erring towards not creating a second session. Variants awc may add count as sent too.
    fn from_send(error: SendRequestError) -> Self {
        match error {
            SendRequestError::Connect(ConnectError::Disconnected) => {
                Self::Broken("the connection closed before Proof answered".to_owned())
            }
            SendRequestError::Connect(
                e @ (ConnectError::Io(_)
                | ConnectError::Timeout
                | ConnectError::Resolver(_)
                | ConnectError::NoRecords
                | ConnectError::Unresolved
                | ConnectError::H2(_)
                | ConnectError::SslIsNotSupported),
            ) => Self::NotSent(e.to_string()),
            SendRequestError::Timeout => Self::TimedOut,
            other => Self::Broken(other.to_string()),
        }
    }
}

/// The `reason` of a retry in the logs.
struct RetryReason<'a>(&'a UpstreamFailure);

impl fmt::Display for RetryReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            UpstreamFailure::Unavailable { cause } => write!(f, "unreachable: {cause}"),
            UpstreamFailure::ProviderError { status } => write!(f, "HTTP {status}"),
            other => other.fmt(f),
        }
    }
}

/// What one attempt came to.
enum Verdict {
    /// An answer for the browser.
    Answer(UpstreamAnswer),
    /// A failure Proof's guidance allows to retry, if the retry rules agree; the failure is
    /// reported when they do not.
    Retryable(Retryable, UpstreamFailure),
    Final(UpstreamFailure),
}

/// What an attempt came to; `idempotent`: the call may be repeated whatever Proof did with it.
fn classify(
    outcome: Result<RawAnswer, AttemptError>,
    idempotent: bool,
    token: &ClientToken,
) -> Verdict {
    let answer = match outcome {
        Ok(answer) => answer,
        Err(AttemptError::NotSent(cause)) => {
            return Verdict::Retryable(Retryable::NotSent, UpstreamFailure::Unavailable { cause });
        }
        Err(AttemptError::TimedOut) if idempotent => {
            let failure = UpstreamFailure::Timeout { cause: "attempt" };
            return Verdict::Retryable(Retryable::NotSent, failure);
        }
        Err(AttemptError::TimedOut) => {
            return Verdict::Final(UpstreamFailure::Timeout { cause: "attempt" });
        }
        Err(AttemptError::Broken(cause)) if idempotent => {
            let failure = UpstreamFailure::Unavailable { cause };
            return Verdict::Retryable(Retryable::NotSent, failure);
        }
        Err(AttemptError::Broken(cause)) => {
            return Verdict::Final(UpstreamFailure::Unavailable { cause });
        }
        Err(AttemptError::BodyTooLarge(status)) => {
            return Verdict::Final(UpstreamFailure::InvalidResponse {
                status: status.as_u16(),
                cause: "body too large",
            });
        }
    };
    let status = answer.status;
    if status.is_success() {
        return if is_json_object(&answer.body) {
            Verdict::Answer(UpstreamAnswer {
                status,
                content_type: None,
                retry_after: None,
                body: answer.body,
            })
        } else {
            invalid(&answer, "not a JSON object")
        };
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let proof_error = error_slug(&answer.body);
        let proof_error = proof_error.as_deref().unwrap_or("");
        match token.rotated_recently() {
            Some(ago) => tracing::error!(
                status = status.as_u16(),
                proof_request_id = answer.proof_request_id(),
                proof_error,
                token_rotated_s_ago = ago.as_secs(),
                "Proof refused the client_token or Origin soon after the token was rotated: is the new token active at Proof?"
            ),
            None => tracing::error!(
                status = status.as_u16(),
                proof_request_id = answer.proof_request_id(),
                proof_error,
                "Proof refused the client_token or Origin: check proof.client_token and proof.origin"
            ),
        }
        return Verdict::Final(UpstreamFailure::Misconfigured {
            status: status.as_u16(),
        });
    }
    if status.is_client_error() {
        // Only Proof's own envelope reaches the browser: a CDN's or firewall's HTML page, an
        // empty answer or a wrong path's 404 page would otherwise pass as Proof's verdict.
        if !is_json_object(&answer.body) {
            return invalid(&answer, "a 4xx that is not a JSON object");
        }
        let content_type = match answer.content_type {
            Some(value) if is_json_media_type(&value) => value,
            // The body was checked: it is JSON, whatever it was labelled.
            _ => HeaderValue::from_static("application/json"),
        };
        return Verdict::Answer(UpstreamAnswer {
            status,
            content_type: Some(content_type),
            retry_after: answer.retry_after,
            body: answer.body,
        });
    }
    if status.is_server_error() {
        let slug = error_slug(&answer.body);
        let retryable = match (status, slug.as_deref()) {
            (StatusCode::BAD_GATEWAY, Some("upstream_error" | "upstream_unavailable")) => {
                Some(Retryable::ProviderFailed)
            }
            (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error")) if !idempotent => {
                Some(Retryable::InternalError)
            }
            _ if idempotent => Some(Retryable::ProviderFailed),
            _ => None,
        };
        tracing::warn!(
            status = status.as_u16(),
            proof_request_id = answer.proof_request_id(),
            proof_error = slug.as_deref().unwrap_or(""),
            "Proof answered with a server error"
        );
        let failure = UpstreamFailure::ProviderError {
            status: status.as_u16(),
        };
        return match retryable {
            Some(why) => Verdict::Retryable(why, failure),
            None => Verdict::Final(failure),
        };
    }
    invalid(&answer, "unexpected status")
}

/// An answer that is not for the browser, logged with what the operator needs to find who sent
/// it: a CDN, a firewall or a wrong `proof.base_url` rather than Proof.
fn invalid(answer: &RawAnswer, cause: &'static str) -> Verdict {
    tracing::warn!(
        status = answer.status.as_u16(),
        content_type = %LoggableContentType(answer.content_type.as_ref()),
        body_bytes = answer.body.len(),
        proof_request_id = answer.proof_request_id(),
        cause,
        "Proof's answer is unusable"
    );
    Verdict::Final(UpstreamFailure::InvalidResponse {
        status: answer.status.as_u16(),
        cause,
    })
}

/// An upstream Content-Type as it may appear in a log line: whoever answered chose it, so it is
/// cut to 64 bytes and anything but printable ASCII is replaced.
struct LoggableContentType<'a>(Option<&'a HeaderValue>);

impl fmt::Display for LoggableContentType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        let Some(value) = self.0 else {
            return f.write_str("(none)");
        };
        let bytes = value.as_bytes();
        for &b in bytes.iter().take(MAX) {
            let c = if b == b' ' || b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            };
            fmt::Write::write_char(f, c)?;
        }
        if bytes.len() > MAX {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        let escaped = |segment: &str| {
            let mut url = String::new();
            push_escaped_segment(&mut url, segment);
            url
        };
        assert_eq!(escaped("550e8400-e29b_41d4~a"), "550e8400-e29b_41d4~a");
        assert_eq!(escaped("../a/b?c#d%"), "%2E%2E%2Fa%2Fb%3Fc%23d%25");
        assert_eq!(escaped("caf\u{e9} x"), "caf%C3%A9%20x");
    }

    #[test]
    fn the_declared_length_is_checked_only_for_bodies_as_sent() {
        let declared = |pairs: &[(&'static str, &'static str)]| {
            let mut map = header::HeaderMap::new();
            for &(name, value) in pairs {
                map.insert(
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            declared_length(&map)
        };
        let length = ("content-length", "400");
        assert_eq!(declared(&[length]), Some(400));
        assert_eq!(
            declared(&[length, ("content-encoding", "identity")]),
            Some(400)
        );
        assert_eq!(declared(&[length, ("content-encoding", "gzip")]), None);
        assert_eq!(declared(&[length, ("transfer-encoding", "chunked")]), None);
        assert_eq!(declared(&[]), None);
        assert_eq!(declared(&[("content-length", "x")]), None);
    }

    #[test]
    fn a_content_type_in_the_logs_is_bounded_and_printable() {
        let shown = |value: &[u8]| {
            LoggableContentType(Some(&HeaderValue::from_bytes(value).unwrap())).to_string()
        };
        assert_eq!(LoggableContentType(None).to_string(), "(none)");
        assert_eq!(
            shown(b"text/html; charset=utf-8"),
            "text/html; charset=utf-8"
        );
        assert_eq!(shown(b"text/\xe9\xff\thtml"), "text/???html");
        let long = shown(&[b'a'; 500]);
        assert_eq!(long, format!("{}...", "a".repeat(64)));
    }

    /// Which awc failures happen before a byte of the request is written.
    #[test]
    fn only_a_failure_to_connect_counts_as_not_sent() {
        let io = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let not_sent = [
            SendRequestError::Connect(ConnectError::Io(io())),
            SendRequestError::Connect(ConnectError::Timeout),
            SendRequestError::Connect(ConnectError::Resolver("no such host".into())),
            SendRequestError::Connect(ConnectError::NoRecords),
            SendRequestError::Connect(ConnectError::Unresolved),
            SendRequestError::Connect(ConnectError::SslIsNotSupported),
        ];
        for error in not_sent {
            let shown = error.to_string();
            assert!(
                matches!(AttemptError::from_send(error), AttemptError::NotSent(_)),
                "{shown}"
            );
        }
        let sent = [
            // The connection closed while the answer's head was awaited.
            SendRequestError::Connect(ConnectError::Disconnected),
            // Writing the request failed part-way.
            SendRequestError::Send(io::Error::from(io::ErrorKind::BrokenPipe)),
            // The connection was reset while the answer's head was read.
            SendRequestError::Response(actix_web::error::ParseError::Io(io::Error::from(
                io::ErrorKind::ConnectionReset,
            ))),
            SendRequestError::Response(actix_web::error::ParseError::Incomplete),
        ];
        for error in sent {
            let shown = error.to_string();
            assert!(
                matches!(AttemptError::from_send(error), AttemptError::Broken(_)),
                "{shown}"
            );
        }
        assert!(matches!(
            AttemptError::from_send(SendRequestError::Timeout),
            AttemptError::TimedOut
        ));
    }
}

//! The calls to Proof's partner API (`POST /widget/session`, `GET /widget/transactions/{id}`,
//! `GET /widget/users/{id}/kyc-status`): one awc client per worker, each request built from an
//! allow-list of headers with the secret injected last, bounded in time and size, and retried
//! exactly as Proof's guidance says: a session only when nothing of it can have been acted on, a
//! read (a `GET`, idempotent) on any server error or broken connection. It owns the sending and
//! the loop around it: the place in the worker's budget, the attempts within the deadline as
//! `retry.rs` rules, and each call's count in the metrics, its span and its note on the caller's
//! record. Where each call goes and its bounds are the [`ProofEndpoint`]'s; what an attempt came
//! to is judged in `attempt.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use bytes::Bytes;
use rand::RngExt;
use tokio::time::Instant;

use super::attempt::{AttemptError, RawAnswer, UpstreamAnswer, Verdict, classify};
use super::endpoint::ProofEndpoint;
use super::error::{UpstreamError, UpstreamFailure};
use super::retry::{Decision, RetryState};
use crate::call_budget::{Busy, CallBudget, CallPlace};
use crate::telemetry::{
    Caller, ClientSpan, Metrics, REQUEST_ID_HEADER, RequestId, Traces, UpstreamOutcome,
    plain_request_id,
};

/// How Proof sees this service, on every request and the WebSocket's opening.
pub(super) const USER_AGENT: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));

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
            .timeout(endpoint.connect_timeout())
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
        let url = self.endpoint.widget_session_url();
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
        let url = self.endpoint.transaction_url(merchant_transaction_id)?;
        self.call(Call::Transaction, url, None, caller).await
    }

    /// `GET /widget/users/{partner_user_id}/kyc-status`.
    pub async fn kyc_status(
        &self,
        partner_user_id: &str,
        caller: Caller<'_>,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let url = self.endpoint.kyc_status_url(partner_user_id)?;
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
        let deadline = started + self.endpoint.deadline();
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
            .checked_sub(self.endpoint.connect_timeout())
            .unwrap_or(deadline);
        match budget.enter(last_useful).await {
            Ok(place) => Ok(Some(place)),
            Err(Busy) => {
                tracing::warn!(
                    max_connections = self.endpoint.max_connections(),
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
        let authorization = endpoint.token().authorization();
        let mut retry = RetryState::new(
            endpoint.max_attempts(),
            deadline,
            endpoint.connect_timeout(),
        );
        let mut answered = None;
        let failure = loop {
            let Some(time_left) = retry.start_attempt(Instant::now()) else {
                break UpstreamFailure::Timeout { cause: "deadline" };
            };
            let attempt_timeout = endpoint.request_timeout().min(time_left);
            let attempt =
                self.attempt(url.clone(), body.clone(), &authorization, request_id, trace);
            let outcome = tokio::time::timeout(attempt_timeout, attempt)
                .await
                .unwrap_or(Err(AttemptError::TimedOut));
            answered = outcome
                .as_ref()
                .ok()
                .map(|answer| (answer.status, answer.proof_request_id.clone()));
            let (why, failure) = match classify(outcome, call.is_idempotent(), endpoint.token()) {
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
            .insert_header((header::ORIGIN, endpoint.origin().clone()))
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
        let response = sent.map_err(AttemptError::from_send)?;
        RawAnswer::read(response).await
    }
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

//! What one request came to, beyond its status: one [`RequestRecord`] per request, put in its
//! extensions when it starts, filled in by the phases that learn each part (the rate limits, how
//! far it got with Proof, the call to Proof), and read once when the request ends, for the
//! `request completed` line and the metrics alike. Only bounded values go in: names the service
//! defines, counts, Proof's status and its request id (checked like ours); never a user id, an
//! email, a token or a body.
//!
//! A request whose client goes away never ends the ordinary way: the server drops it half way, and
//! the record with it. Its end is then read from the record as it is dropped ([`Unended`]): a 499
//! `client_closed`, with what the request had reached. The record goes when the last handle on the
//! request does, so nothing may keep the request beyond its handler: work that is to outlive it
//! (a checkout's call to Proof) takes what it needs of it instead ([`DetachedCall`]).

use std::cell::Cell;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use actix_web::{HttpMessage, HttpRequest, web};
use opentelemetry::trace::SpanContext;
use tracing::Span;

use super::metrics::Metrics;
use super::request_id::RequestId;
use super::traces::ServerSpan;

/// One request's record, from its start to its end.
pub(super) struct RequestRecord {
    pub(super) started: Instant,
    /// The route pattern it is logged and counted under (or its label, or `unmatched`).
    pub(super) route: String,
    pub(super) rate_limit: Option<RateLimitDecision>,
    pub(super) upstream: Option<UpstreamOutcome>,
    /// The request's span in the trace, when traces are on.
    pub(super) server_span: Option<ServerSpan>,
    pub(super) reached: ProofStage,
    /// Until the request's end is read: what records it if the record is dropped first.
    pub(super) unended: Option<Unended>,
}

/// What a record needs to tell the end of a request that was dropped before it answered.
pub(super) struct Unended {
    pub(super) span: Span,
    pub(super) metrics: Option<web::Data<Metrics>>,
}

impl Unended {
    pub(super) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref().map(|metrics| &**metrics)
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        // Still set: the request was dropped without an answer, because its client went away.
        if let Some(unended) = self.unended.take() {
            super::root_span::client_closed(unended, self);
        }
    }
}

/// How far a request had got with Proof, for the end of one whose client went away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProofStage {
    /// Proof was not called (nor ever is, for this request).
    #[default]
    Before,
    /// The call to Proof had begun: waiting for a place, sent, or (for a checkout) its answer
    /// being kept for a retry.
    At,
    /// Proof had answered; the request's own answer was not yet on its way.
    After,
}

impl ProofStage {
    /// Its name in the log line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Before => "before_proof",
            Self::At => "at_proof",
            Self::After => "after_proof",
        }
    }
}

/// What the rate limits made of a request that reached them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitDecision {
    /// Every limit it met let it through.
    Allowed,
    /// The shared backend failed and `on_backend_error = "allow"` let it through unchecked.
    Unchecked,
    /// Refused by this limit (`per_ip`, `per_user`, `per_user_status`, `too_many_streams`).
    Refused(&'static str),
    /// The shared backend failed and `on_backend_error = "deny"` refused it.
    BackendUnavailable,
}

impl RateLimitDecision {
    /// The decision's name in the log line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Unchecked => "unchecked",
            Self::Refused(limit) => limit,
            Self::BackendUnavailable => "backend_unavailable",
        }
    }
}

/// What a call to Proof made for the request came to, all its attempts together.
#[derive(Debug, Clone)]
pub struct UpstreamOutcome {
    /// Attempts started; 0 when the call could not even be built.
    pub attempts: u32,
    /// The HTTP status of Proof's last answer; `None` when no answer arrived.
    pub status: Option<u16>,
    /// `X-Request-Id` of Proof's last answer, when it is a plain id (see `plain_request_id`).
    pub proof_request_id: Option<HeaderValue>,
    /// From the first attempt to the end of the last.
    pub latency: Duration,
}

/// Who a call to Proof is made for: a request (whose id and trace go along, and whose record
/// notes how far it got and the call's outcome), a request's call detached from it, or the service
/// itself (a status watcher's poll, under a fresh id).
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    Request(&'a HttpRequest),
    Detached(&'a DetachedCall),
    Background,
}

impl Caller<'_> {
    /// The id sent to Proof as `X-Request-Id`.
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::Request(req) => req.extensions().get::<RequestId>().cloned(),
            Self::Detached(call) => Some(call.request_id.clone()),
            Self::Background => None,
        }
        .unwrap_or_else(RequestId::generate)
    }

    /// The request's span, which a call to Proof is a child of; `None` when traces are off, and
    /// for the service's own calls.
    pub fn trace_parent(&self) -> Option<SpanContext> {
        match self {
            Self::Request(req) => req
                .extensions()
                .get::<RequestRecord>()?
                .server_span
                .as_ref()
                .map(ServerSpan::span_context),
            Self::Detached(call) => call.trace_parent.clone(),
            Self::Background => None,
        }
    }

    /// Notes on the request's record that its call to Proof has begun.
    pub fn note_at_proof(&self) {
        if let Self::Request(req) = self
            && let Some(record) = req.extensions_mut().get_mut::<RequestRecord>()
        {
            record.reached = ProofStage::At;
        }
    }

    /// Notes the call's outcome on the request's record (a later call's replaces an earlier's),
    /// or keeps it with a detached call until the request takes its answer.
    pub fn note_upstream(&self, outcome: UpstreamOutcome) {
        match self {
            Self::Request(req) => {
                if let Some(record) = req.extensions_mut().get_mut::<RequestRecord>() {
                    record.reached = ProofStage::After;
                    record.upstream = Some(outcome);
                }
            }
            Self::Detached(call) => call.upstream.set(Some(outcome)),
            Self::Background => {}
        }
    }
}

/// A request's call to Proof made in a task of its own, so that it runs to its end even when the
/// request is dropped (its client gone): what the call needs of the request, taken before the
/// task starts (the task holds nothing of the request itself), and the call's outcome, kept until
/// the request takes the answer.
pub struct DetachedCall {
    request_id: RequestId,
    trace_parent: Option<SpanContext>,
    upstream: Cell<Option<UpstreamOutcome>>,
}

impl DetachedCall {
    /// The call for `req`, noted on its record as begun.
    pub fn begin(req: &HttpRequest) -> Self {
        let caller = Caller::Request(req);
        caller.note_at_proof();
        Self {
            request_id: caller.request_id(),
            trace_parent: caller.trace_parent(),
            upstream: Cell::new(None),
        }
    }

    /// The call's outcome, for the request to note once it has the answer.
    pub fn outcome(&self) -> Option<UpstreamOutcome> {
        self.upstream.take()
    }
}

/// Notes what the rate limits made of the request.
pub fn note_rate_limit(req: &HttpRequest, decision: RateLimitDecision) {
    if let Some(record) = req.extensions_mut().get_mut::<RequestRecord>() {
        record.rate_limit = Some(decision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_named_for_the_log() {
        assert_eq!(RateLimitDecision::Allowed.name(), "allowed");
        assert_eq!(RateLimitDecision::Refused("per_ip").name(), "per_ip");
        assert_eq!(RateLimitDecision::Unchecked.name(), "unchecked");
        assert_eq!(
            RateLimitDecision::BackendUnavailable.name(),
            "backend_unavailable"
        );
    }

    #[test]
    fn how_far_a_request_got_is_named_for_the_log() {
        assert_eq!(ProofStage::default().name(), "before_proof");
        assert_eq!(ProofStage::At.name(), "at_proof");
        assert_eq!(ProofStage::After.name(), "after_proof");
    }
}

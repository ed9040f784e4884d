//! What one request keeps from its start to its end: one [`RequestRecord`] per request, put in its
//! extensions when it starts and read once when it ends, and [`Caller`], what a call to Proof takes
//! from the request it is made for.

use std::time::Instant;

use actix_web::{HttpMessage, HttpRequest};
use opentelemetry::trace::SpanContext;

use super::request_id::RequestId;
use super::traces::ServerSpan;

/// One request's record, from its start to its end.
pub(super) struct RequestRecord {
    pub(super) started: Instant,
    /// The route pattern it is logged and counted under (or its label, or `unmatched`).
    pub(super) route: String,
    /// The request's span in the trace, when traces are on.
    pub(super) server_span: Option<ServerSpan>,
}

/// Who a call to Proof is made for: a request (whose id and trace go along), or the service itself
/// (a status watcher's poll, under a fresh id).
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    Request(&'a HttpRequest),
    Background,
}

impl Caller<'_> {
    /// The id sent to Proof as `X-Request-Id`.
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::Request(req) => req.extensions().get::<RequestId>().cloned(),
            Self::Background => None,
        }
        .unwrap_or_else(RequestId::generate)
    }

    /// The request's span, which a call to Proof is a child of; `None` when traces are off, and
    /// for the service's own calls.
    pub fn trace_parent(&self) -> Option<SpanContext> {
        let Self::Request(req) = self else {
            return None;
        };
        req.extensions()
            .get::<RequestRecord>()?
            .server_span
            .as_ref()
            .map(ServerSpan::span_context)
    }
}

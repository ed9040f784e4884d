//! `GET /checkout/{merchant_transaction_id}/events`: the transaction's status as Server-Sent
//! Events, after the same ownership check as `GET /checkout/{id}`: the current status first, then
//! each change, each at most once and never backwards; `id:` is the status, so an `EventSource`
//! that reconnects with `Last-Event-ID` resumes without repeats. A comment line every 15 s keeps
//! proxies from timing the stream out. The stream ends after a terminal status, after
//! `max_stream_duration_s` (the browser reconnects), and when a drain starts (the browser
//! reconnects to another replica). A browser reconnecting after the terminal status gets 204,
//! which tells `EventSource` to stop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::event::{HEARTBEAT, Snapshot, is_news};
use super::limits::StreamPermit;
use super::transaction::{owned_transaction, transaction_id};
use super::watcher::Updates;
use super::{StatusContext, admit};
use crate::admission::{AdmissionContext, ApiError};
use crate::browser::BrowserConfig;
use crate::http::Readiness;
use crate::proof::{ProofClient, UpstreamError, UpstreamFailure};
use crate::telemetry::{Caller, RateLimitDecision, note_rate_limit};

const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

pub async fn transaction_events(
    req: HttpRequest,
    browser: web::Data<BrowserConfig>,
    context: web::Data<AdmissionContext>,
    status: web::Data<StatusContext>,
    proof: web::Data<ProofClient>,
) -> Result<HttpResponse, ApiError> {
    let reader = admit(&req, &browser, &context).await?;
    let id = transaction_id(&req)?;
    let Some(permit) = status.limits.try_open(&reader.user.user_id) else {
        note_rate_limit(&req, RateLimitDecision::Refused("too_many_streams"));
        return Err(ApiError::TooManyStreams);
    };
    let answer = owned_transaction(&proof, id, &reader, Caller::Request(&req)).await?;
    if !answer.status.is_success() {
        // Proof's own 4xx, as for `GET /checkout/{id}`.
        return Ok(super::relay(answer, &reader, &context));
    }
    let Some(current) = Snapshot::from_transaction(&answer.body) else {
        return Err(ApiError::Upstream(UpstreamError {
            kind: UpstreamFailure::InvalidResponse {
                status: answer.status.as_u16(),
                cause: "a transaction without a usable status",
            },
            attempts: 1,
        }));
    };
    let seen = last_event_id(&req);
    if current.is_terminal() && !is_news(seen.as_deref(), &current.status) {
        // The browser has the end already: 204 tells EventSource not to reconnect.
        return Ok(HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .finish());
    }
    let updates =
        (!current.is_terminal()).then(|| status.watchers.subscribe(id, current.clone(), &proof));
    let stream = EventStream {
        first: Some(current),
        seen,
        updates,
        heartbeat: heartbeat(),
        ends_at: Instant::now() + status.max_stream_duration,
        readiness: context.readiness.clone(),
        finished: false,
        _permit: permit,
    };
    let mut response = HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        // nginx would otherwise hold events back in its buffer.
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
        .streaming(futures_util::stream::unfold(stream, EventStream::next));
    // The connection ends with the stream: the browser's reconnection opens a new one, which a
    // load balancer sends to a replica that is not draining, and nothing idles on a draining one.
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(response)
}

/// The status a reconnecting `EventSource` saw last, if it is one a status could be.
fn last_event_id(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("last-event-id")?.to_str().ok()?.trim();
    (!value.is_empty() && value.len() <= 32).then(|| value.to_owned())
}

fn heartbeat() -> Interval {
    let mut interval =
        tokio::time::interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

enum Woke {
    Changed(bool),
    Heartbeat,
    End,
}

/// One open stream: what it still has to send and what ends it.
struct EventStream {
    /// What the ownership check read, sent first when it is news.
    first: Option<Snapshot>,
    /// The last status sent (or the browser's `Last-Event-ID`).
    seen: Option<String>,
    /// None when the first snapshot is already terminal.
    updates: Option<Updates>,
    heartbeat: Interval,
    ends_at: Instant,
    readiness: Arc<Readiness>,
    finished: bool,
    /// Holds the stream's place in the limits until it ends.
    _permit: StreamPermit,
}

impl EventStream {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.finished {
            return None;
        }
        if let Some(first) = self.first.take()
            && let Some(event) = self.send_if_news(&first)
        {
            return Some((Ok(event), self));
        }
        loop {
            let updates = self.updates.as_mut()?;
            // A snapshot published between the ownership check and the subscription counts.
            let latest = updates.borrow_and_update().clone();
            if let Some(event) = self.send_if_news(&latest) {
                return Some((Ok(event), self));
            }
            let updates = self.updates.as_mut()?;
            let woke = tokio::select! {
                changed = updates.changed() => Woke::Changed(changed.is_ok()),
                _ = self.heartbeat.tick() => Woke::Heartbeat,
                () = tokio::time::sleep_until(self.ends_at) => Woke::End,
                () = self.readiness.drain_started() => Woke::End,
            };
            match woke {
                Woke::Changed(true) => {}
                // The watcher is gone without a terminal status (it cannot be, while this stream
                // follows it): end, and let the browser reconnect.
                Woke::Changed(false) | Woke::End => return None,
                Woke::Heartbeat => return Some((Ok(Bytes::from_static(HEARTBEAT)), self)),
            }
        }
    }

    /// The event for `snapshot` when it is news to the browser; a terminal one is the last.
    fn send_if_news(&mut self, snapshot: &Snapshot) -> Option<Bytes> {
        if !is_news(self.seen.as_deref(), &snapshot.status) {
            return None;
        }
        self.seen = Some(snapshot.status.to_string());
        self.finished = snapshot.is_terminal();
        Some(snapshot.event())
    }
}

//! `POST /start-checkout`, as named phases in the order they run: refuse a foreign caller, know who
//! and where the user is, read and check what they asked for, then ask Proof and relay its answer.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::{CheckoutContext, CheckoutRequest, parse_checkout_request};
use crate::admission::{
    AdmissionContext, ApiError, discard_body, identify, read_body, resolve_client_ip,
};
use crate::browser::{BrowserConfig, check_caller};
use crate::client_ip::ClientIp;
use crate::http::{DrainHold, Readiness};
use crate::idempotency::{
    Claim, IDEMPOTENT_REPLAYED, IdempotencyKey, Scope, StoredAnswer, Ticket, idempotency_key,
};
use crate::proof::{
    ProofClient, UpstreamAnswer, UpstreamError, UpstreamFailure, WidgetSessionRequest,
};
use crate::rate_limit::{Allowance, Budget, RATE_LIMIT, RATE_LIMIT_POLICY};
use crate::session::SessionUser;
use crate::telemetry::{Caller, DetachedCall};

pub async fn start_checkout(
    req: HttpRequest,
    payload: web::Payload,
    admission: web::Data<AdmissionContext>,
    context: web::Data<CheckoutContext>,
    browser: web::Data<BrowserConfig>,
    proof: web::Data<ProofClient>,
) -> Result<HttpResponse, ApiError> {
    let admitted = match admit(&req, &admission, &browser).await {
        Ok(admitted) => admitted,
        Err(error) => {
            // Refused before its body was read: the body is read and dropped first (bounded as any
            // body), so the exchange is complete and the connection stays open for the client's
            // next request. Closed with the body unread, the connection would be reset by the
            // kernel, and the client could lose this very answer.
            discard_body(&req, payload, admission.max_body_bytes).await;
            return Err(error);
        }
    };
    let Admitted {
        client_ip,
        user,
        allowance,
        idempotency_key,
    } = admitted;
    let body = read_body(&req, payload, admission.max_body_bytes).await?;
    let checkout = parse_checkout_request(&body, &context.checkout)?;
    let mut response =
        match claim_checkout(&checkout, &user, idempotency_key.as_ref(), &context).await? {
            Claimed::Replay(answer) => replay(answer),
            Claimed::First(ticket) => {
                let upstream_body = widget_session_body(&checkout, &user, client_ip, &context);
                relay(&ask_proof(&req, &proof, upstream_body, ticket, &admission.readiness).await?)
            }
        };
    let headers = response.headers_mut();
    headers.insert(
        RATE_LIMIT_POLICY,
        admission.rate_limits.policy(Budget::Checkout).clone(),
    );
    // None when the shared backend failed and on_backend_error let the request through unchecked.
    if let Some(allowance) = allowance {
        headers.insert(RATE_LIMIT, allowance.rate_limit);
    }
    Ok(response)
}

/// What the checkout knows of its caller before reading the body.
struct Admitted {
    client_ip: ClientIp,
    user: SessionUser,
    /// None when the shared backend failed and on_backend_error let the request through unchecked.
    allowance: Option<Allowance>,
    idempotency_key: Option<IdempotencyKey>,
}

/// The phases before the body, in order: a draining instance, the browser's rules, the caller,
/// the body's type and the Idempotency-Key.
async fn admit(
    req: &HttpRequest,
    admission: &AdmissionContext,
    browser: &BrowserConfig,
) -> Result<Admitted, ApiError> {
    if admission.readiness.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    check_caller(req, browser)?;
    let client_ip = resolve_client_ip(req, admission);
    let (user, allowance) = identify(req, admission, client_ip, Budget::Checkout).await?;
    require_json(req)?;
    let idempotency_key = idempotency_key(req.headers())?;
    Ok(Admitted {
        client_ip,
        user,
        allowance,
        idempotency_key,
    })
}

/// Asks Proof for the session in a task of the worker's own, which the request waits for: if the
/// request is dropped (its client went away, say a phone changing networks), the call is not
/// cancelled with it. Proof may already have created the session; the call runs to its end, and
/// its answer is kept with the ticket as if it had been delivered, so the client's retry gets that
/// answer rather than a second session. Without a ticket the answer is logged and discarded.
async fn ask_proof(
    req: &HttpRequest,
    proof: &web::Data<ProofClient>,
    body: Bytes,
    ticket: Option<Ticket>,
    readiness: &Arc<Readiness>,
) -> Result<ProofAnswer, ApiError> {
    let call = DetachedCall::begin(req);
    let proof = proof.clone();
    let (answered, answer) = oneshot::channel();
    let (hand_over, drain_hold) = oneshot::channel();
    actix_web::rt::spawn(
        async move {
            let result = proof
                .create_widget_session(body, Caller::Detached(&call))
                .await
                .map(ProofAnswer::from);
            // Kept before the answer leaves, so a retry that follows it finds it, on any replica.
            // A ticket without an answer to keep is released here, as the task ends.
            let kept = match (&result, ticket) {
                (Ok(answer), Some(ticket)) => ticket.finish(&answer.kept).await,
                _ => false,
            };
            if let Err((result, _)) = answered.send((result, call.outcome())) {
                answered_after_client_left(&result, kept);
            }
            // Held to here: the drain hold the request handed over if its client left.
            drop(drain_hold);
        }
        .instrument(tracing::Span::current()),
    );
    let mut if_left = HoldDrainIfLeft {
        readiness,
        hand_over: Some(hand_over),
    };
    let answer = answer.await;
    if_left.hand_over = None;
    let Ok((result, outcome)) = answer else {
        // Only a panic in the task ends it without an answer.
        tracing::error!("the call to Proof ended without an answer");
        return Err(ApiError::Upstream(UpstreamError {
            kind: UpstreamFailure::Unavailable {
                cause: "the call ended without an answer".into(),
            },
            attempts: 0,
        }));
    };
    if let Some(outcome) = outcome {
        Caller::Request(req).note_upstream(outcome);
    }
    Ok(result?)
}

/// Dropped with a request whose call to Proof still runs (its client gone): hands that call's task
/// a hold on the drain, kept to the task's end, so that a drain does not stop the worker, and the
/// call with it, before Proof's answer is kept for the retry. A request still connected needs
/// none: the server's drain waits for its connection.
struct HoldDrainIfLeft<'a> {
    readiness: &'a Arc<Readiness>,
    hand_over: Option<oneshot::Sender<DrainHold>>,
}

impl Drop for HoldDrainIfLeft<'_> {
    fn drop(&mut self) {
        if let Some(hand_over) = self.hand_over.take() {
            // Taken here, before the connection closes: the drain always sees one or the other.
            let _ = hand_over.send(self.readiness.hold_drain());
        }
    }
}

/// The end of a checkout's call to Proof that no one waits for any more.
fn answered_after_client_left(result: &Result<ProofAnswer, UpstreamError>, kept: bool) {
    match result {
        Ok(answer) if kept => tracing::info!(
            status = answer.kept.status.as_u16(),
            "checkout answered after its client had gone: the answer is kept for a retry"
        ),
        Ok(answer) => tracing::info!(
            status = answer.kept.status.as_u16(),
            "checkout answered after its client had gone: the answer is discarded"
        ),
        Err(error) => tracing::info!(
            %error,
            "checkout's call to Proof failed after its client had gone"
        ),
    }
}

/// What double-submit protection made of a checkout.
enum Claimed {
    /// Ask Proof; keep its answer with the ticket, if the checkout is protected.
    First(Option<Ticket>),
    /// Proof answered this checkout before.
    Replay(StoredAnswer),
}

/// Finds an earlier answer to the same checkout (by `Idempotency-Key`, or within the dedupe
/// window), or takes its key so that retries find this one. A duplicate without a key that arrives
/// while the first is still at Proof waits for its answer, as a double click should.
async fn claim_checkout(
    checkout: &CheckoutRequest,
    user: &SessionUser,
    key: Option<&IdempotencyKey>,
    context: &CheckoutContext,
) -> Result<Claimed, ApiError> {
    let store = &context.idempotency;
    let user_id = user.user_id.as_str();
    let scope = match key {
        Some(key) => Scope::Key { user_id, key },
        None if store.dedupe_window().is_some() => Scope::Dedupe { user_id },
        None => return Ok(Claimed::First(None)),
    };
    let fingerprint = checkout.fingerprint();
    let waiting_until = Instant::now() + store.lock_ttl();
    let mut waited = false;
    loop {
        let claim = store
            .claim(scope, fingerprint)
            .await
            .map_err(|_| ApiError::RateLimitBackend)?;
        return match claim {
            Claim::Proceed(ticket) => Ok(Claimed::First(Some(ticket))),
            Claim::Unprotected => Ok(Claimed::First(None)),
            Claim::Replay(answer) => {
                tracing::info!(
                    status = answer.status.as_u16(),
                    by = scope_name(scope),
                    "checkout answered again from an earlier request"
                );
                Ok(Claimed::Replay(answer))
            }
            Claim::InProgress
                if matches!(scope, Scope::Dedupe { .. }) && Instant::now() < waiting_until =>
            {
                if !waited {
                    tracing::info!("checkout waits for the same one at Proof");
                    waited = true;
                }
                tokio::time::sleep(DUPLICATE_POLL_INTERVAL).await;
                continue;
            }
            Claim::InProgress => {
                tracing::info!(
                    by = scope_name(scope),
                    "checkout refused: the same one is still being served"
                );
                Err(ApiError::RequestInProgress)
            }
            Claim::Reused => {
                tracing::info!(
                    "checkout refused: its Idempotency-Key was used for another checkout"
                );
                Err(ApiError::IdempotencyKeyReused)
            }
        };
    }
}

/// How often a duplicate checkout looks for the first one's answer.
const DUPLICATE_POLL_INTERVAL: Duration = Duration::from_millis(50);

fn scope_name(scope: Scope<'_>) -> &'static str {
    match scope {
        Scope::Key { .. } => "idempotency_key",
        Scope::Dedupe { .. } => "dedupe_window",
    }
}

fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

fn widget_session_body(
    checkout: &CheckoutRequest,
    user: &SessionUser,
    client_ip: ClientIp,
    context: &CheckoutContext,
) -> Bytes {
    let request = WidgetSessionRequest {
        client_ip: client_ip.for_upstream(),
        address: context.address.as_deref(),
        ..checkout.widget_session(&user.user_id, user.email.expose())
    };
    // Room for the whole body at once (it is a few hundred bytes).
    let mut body = Vec::with_capacity(512);
    // Serialising borrowed strings and an IpAddr into a Vec cannot fail.
    match serde_json::to_writer(&mut body, &request) {
        Ok(()) => Bytes::from(body),
        Err(_) => Bytes::new(),
    }
}

/// Proof's answer, byte for byte.
fn relay(answer: &ProofAnswer) -> HttpResponse {
    let mut response = answer_response(&answer.kept);
    if let Some(retry_after) = &answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.clone());
    }
    response
}

/// An earlier answer from Proof, byte for byte, marked as a replay.
fn replay(answer: StoredAnswer) -> HttpResponse {
    let mut response = answer_response(&answer);
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

fn answer_response(answer: &StoredAnswer) -> HttpResponse {
    let mut response = HttpResponse::build(answer.status);
    response.insert_header((
        header::CONTENT_TYPE,
        answer
            .content_type
            .clone()
            .unwrap_or(HeaderValue::from_static("application/json")),
    ));
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response.body(answer.body.clone())
}

/// Proof's answer: what is kept for a retry, and what is only relayed this once.
struct ProofAnswer {
    kept: StoredAnswer,
    retry_after: Option<HeaderValue>,
}

impl From<UpstreamAnswer> for ProofAnswer {
    fn from(answer: UpstreamAnswer) -> Self {
        Self {
            kept: StoredAnswer {
                status: answer.status,
                content_type: answer.content_type,
                body: answer.body,
            },
            retry_after: answer.retry_after,
        }
    }
}

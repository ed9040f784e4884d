//! Who is calling: the phases every browser-facing route runs before its own work, in this order:
//! the client's real address and its limit, the session, the user's limit. `POST /start-checkout`
//! and the status routes share them, so a user is known and counted the same way everywhere.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderValue;

use super::{CheckoutContext, CheckoutError};
use crate::client_ip::ClientIp;
use crate::rate_limit::{Allowance, LimitError};
use crate::session::SessionUser;
use crate::telemetry::{RateLimitDecision, note_rate_limit};

pub fn resolve_client_ip(req: &HttpRequest, context: &CheckoutContext) -> ClientIp {
    let resolver = &context.client_ip;
    let client_ip = match req.peer_addr() {
        Some(peer) => resolver.resolve(
            peer.ip(),
            req.headers()
                .get_all(resolver.header_name())
                .map(HeaderValue::as_bytes),
        ),
        None => ClientIp::Unknown {
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        },
    };
    let span = tracing::Span::current();
    match client_ip {
        ClientIp::Trusted(ip) => {
            span.record("client_ip", tracing::field::display(ip));
        }
        ClientIp::Unknown { peer } => {
            tracing::warn!(
                %peer,
                header = resolver.header_name(),
                "no trustworthy client address from a trusted proxy: client_ip left out"
            );
        }
    }
    client_ip
}

/// Cut floods before any signature is checked. The key is the resolved client, or the socket
/// peer when there is no trustworthy client address, so rotating X-Forwarded-For from an untrusted
/// peer changes nothing.
pub async fn limit_client_ip(
    req: &HttpRequest,
    client_ip: ClientIp,
    context: &CheckoutContext,
) -> Result<(), CheckoutError> {
    context
        .rate_limits
        .check_ip(client_ip.rate_limit_key())
        .await
        .map_err(|error| limit_error(req, error, context))
}

/// The checkout's per-user limit, the last one a checkout meets: its decision is noted.
pub async fn limit_user(
    req: &HttpRequest,
    user: &SessionUser,
    context: &CheckoutContext,
) -> Result<Option<Allowance>, CheckoutError> {
    let allowance = context
        .rate_limits
        .check_user(&user.user_id)
        .await
        .map_err(|error| limit_error(req, error, context))?;
    note_let_through(req, allowance.as_ref());
    Ok(allowance)
}

/// Notes that every limit let the request through: checked, or unchecked because the shared
/// backend failed and `on_backend_error` allowed it (no allowance to show).
pub fn note_let_through(req: &HttpRequest, allowance: Option<&Allowance>) {
    let decision = match allowance {
        Some(_) => RateLimitDecision::Allowed,
        None => RateLimitDecision::Unchecked,
    };
    note_rate_limit(req, decision);
}

/// A refusal is 429; a shared backend that failed (with `on_backend_error = "deny"`) is 503, logged
/// by the limiter at most once a second. Either is noted on the request's record.
pub fn limit_error(
    req: &HttpRequest,
    error: LimitError,
    context: &CheckoutContext,
) -> CheckoutError {
    match error {
        LimitError::Refused(refusal) => {
            tracing::info!(
                limit = refusal.kind.code(),
                retry_after_s = refusal.retry_after_s,
                "checkout rate limited"
            );
            note_rate_limit(req, RateLimitDecision::Refused(refusal.kind.code()));
            CheckoutError::RateLimited(refusal, context.rate_limits.policy().clone())
        }
        LimitError::BackendUnavailable => {
            note_rate_limit(req, RateLimitDecision::BackendUnavailable);
            CheckoutError::RateLimitBackend
        }
    }
}

/// Identity comes only from the verified session, never from the request body.
pub async fn authenticate(
    req: &HttpRequest,
    context: &CheckoutContext,
) -> Result<SessionUser, CheckoutError> {
    let user = context
        .session
        .authenticate(req)
        .await
        .inspect_err(|e| tracing::info!(reason = e.code(), "session refused"))?;
    tracing::Span::current().record("user_id", user.user_id.as_str());
    Ok(user)
}

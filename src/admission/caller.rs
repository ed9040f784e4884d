//! Who is calling: the phases every browser-facing route runs before its own work, in this order:
//! the client's real address, whether the request carries a session at all, the address's limit,
//! the session, the user's limit. `POST /start-checkout` and the status routes share them, each
//! spending its own [`Budget`], so a user is known the same way everywhere and polling never
//! spends a checkout.
//!
//! The order is the same on every backend: no signature is checked, and no identity provider or
//! partner app asked, for a request whose address is over its limit.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderValue;

use super::{AdmissionContext, ApiError};
use crate::client_ip::ClientIp;
use crate::rate_limit::{Allowance, Budget, Checked, LimitError};
use crate::session::{SessionError, SessionUser};
use crate::telemetry::{RateLimitDecision, note_rate_limit};

pub fn resolve_client_ip(req: &HttpRequest, context: &AdmissionContext) -> ClientIp {
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

/// The address's limit, the session, then the user's limit, each of the route's `budget`: who is
/// calling, and their `RateLimit` standing (`None` when the shared backend failed and
/// `on_backend_error` let the request through).
///
/// A request that carries no session at all (no cookie, no token, no identity header) is refused
/// first: it costs nothing to find, and spends no one's budget, so a page elsewhere that makes the
/// browser send requests without the session cookie (an `<img>`) cannot use up the address's
/// limits. The address's limit then runs before any signature is checked, so a flood of forged
/// tokens from one address is cut at the cost of a limit check. Its key is the resolved client, or
/// the socket peer when there is no trustworthy client address, so rotating `X-Forwarded-For` from
/// an untrusted peer changes nothing. A request let through unchecked by a failed shared backend
/// is not checked again against the user's limit: the backend that just failed is not waited on
/// twice.
pub async fn identify(
    req: &HttpRequest,
    context: &AdmissionContext,
    client_ip: ClientIp,
    budget: Budget,
) -> Result<(SessionUser, Option<Allowance>), ApiError> {
    if !context.session.presents_credentials(req) {
        return Err(session_refused(SessionError::Missing));
    }
    let limits = &context.rate_limits;
    let address = limits
        .check_address(budget, client_ip.rate_limit_key())
        .await
        .map_err(|error| limit_error(req, error, budget, context))?;
    let user = authenticate(req, context).await?;
    let allowance = match address {
        Checked::Counted => limits
            .check_user(budget, &user.user_id)
            .await
            .map_err(|error| limit_error(req, error, budget, context))?,
        Checked::Skipped => None,
    };
    note_let_through(req, allowance.as_ref());
    Ok((user, allowance))
}

/// Notes that every limit let the request through: checked, or unchecked because the shared
/// backend failed and `on_backend_error` allowed it (no allowance to show).
fn note_let_through(req: &HttpRequest, allowance: Option<&Allowance>) {
    let decision = match allowance {
        Some(_) => RateLimitDecision::Allowed,
        None => RateLimitDecision::Unchecked,
    };
    note_rate_limit(req, decision);
}

/// A refusal is 429; a shared backend that failed (with `on_backend_error = "deny"`) is 503, logged
/// by the limiter at most once a second. Either is noted on the request's record.
fn limit_error(
    req: &HttpRequest,
    error: LimitError,
    budget: Budget,
    context: &AdmissionContext,
) -> ApiError {
    match error {
        LimitError::Refused(refusal) => {
            tracing::info!(
                limit = refusal.kind.code(),
                retry_after_s = refusal.retry_after_s,
                "checkout rate limited"
            );
            note_rate_limit(req, RateLimitDecision::Refused(refusal.kind.code()));
            ApiError::RateLimited(refusal, context.rate_limits.policy(budget).clone())
        }
        LimitError::BackendUnavailable => {
            note_rate_limit(req, RateLimitDecision::BackendUnavailable);
            ApiError::RateLimitBackend
        }
    }
}

/// Identity comes only from the verified session, never from the request body.
async fn authenticate(
    req: &HttpRequest,
    context: &AdmissionContext,
) -> Result<SessionUser, ApiError> {
    let user = context
        .session
        .authenticate(req)
        .await
        .map_err(session_refused)?;
    record_user(&user);
    Ok(user)
}

fn session_refused(error: SessionError) -> ApiError {
    tracing::info!(reason = error.code(), "session refused");
    error.into()
}

fn record_user(user: &SessionUser) {
    tracing::Span::current().record("user_id", user.user_id.as_str());
}

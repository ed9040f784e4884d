//! Per-user and per-client-address limits (GCRA), with the `RateLimit` / `RateLimit-Policy`
//! headers that describe them.
//!
//! Each route spends its own [`Budget`]: checkouts a per-address and a per-user limit, status reads
//! a per-address and a per-user limit of their own, so polling never spends a checkout. Both are
//! checked before Proof is called: the per-address limit before the session is even verified, on
//! every backend, so a flood of garbage tokens is cut cheaply, and the per-user limit once the user
//! is known.
//!
//! The state lives in this process ([`RateLimiter`], one instance) or in a Redis shared by every
//! replica ([`redis::RedisLimiter`]); the routes see one type, [`RateLimits`], which also
//! applies `on_backend_error` when the shared backend fails. The `[rate_limit]` settings, the
//! shared backend's included, are [`config`].

mod config;
mod memory;
pub mod redis;

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use config::{OnBackendError, RateLimitBackend, RateLimitSettings, SharedBackend};
pub use memory::RateLimiter;

use crate::shared_redis::{BackendError, WarningThrottle};
use redis::RedisLimiter;

pub use crate::shared_redis::BackendErrorPolicy;

pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// How often keys that are back to a fresh state are dropped.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(30);

/// How often a shared backend that checkouts need is pinged for `/readyz`.
pub const BACKEND_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    PerUser,
    PerIp,
    /// The status routes' own per-user limit (`GET /checkout/{id}`, `/events`, `/kyc-status`).
    PerUserStatus,
    /// The status routes' own per-address limit.
    PerIpStatus,
}

impl LimitKind {
    /// The code a refusal is answered with, and the policy's name in the `RateLimit*` headers. A
    /// status read over its address's budget is answered `per_ip`, as a checkout is: the client
    /// learns that its address is over its limit, and the route says which budget that was.
    pub fn code(self) -> &'static str {
        match self {
            Self::PerUser => "per_user",
            Self::PerIp | Self::PerIpStatus => "per_ip",
            Self::PerUserStatus => "per_user_status",
        }
    }

    /// The limit's own name, unique to it: what its state is kept under in Redis.
    pub fn name(self) -> &'static str {
        match self {
            Self::PerIpStatus => "per_ip_status",
            kind => kind.code(),
        }
    }
}

/// What a route spends: `POST /start-checkout` the checkout's budget, the status reads
/// (`GET /checkout/{id}`, `/events`, `/kyc-status`) a budget of their own, so that polling,
/// however much of it one address does, never refuses a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Checkout,
    Status,
}

impl Budget {
    /// The limit checked against the client's address, before the session.
    pub fn address_limit(self) -> LimitKind {
        match self {
            Self::Checkout => LimitKind::PerIp,
            Self::Status => LimitKind::PerIpStatus,
        }
    }

    /// The limit checked against the user, once the session is verified.
    pub fn user_limit(self) -> LimitKind {
        match self {
            Self::Checkout => LimitKind::PerUser,
            Self::Status => LimitKind::PerUserStatus,
        }
    }
}

/// A limit's quota: the sustained rate and the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

/// A refusal: when to try again, and the headers that describe it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: LimitKind,
    /// Whole seconds, rounded up, at least 1.
    pub retry_after_s: u64,
    pub rate_limit: HeaderValue,
}

/// A request's standing against the per-user limit after it was let through.
#[derive(Debug, Clone)]
pub struct Allowance {
    pub rate_limit: HeaderValue,
}

/// The `[rate_limit]` quotas, checked.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub per_user_burst: u32,
    pub per_user_per_minute: u32,
    pub per_ip_burst: u32,
    pub per_ip_per_minute: u32,
    /// The status routes, per user; their burst is [`status_burst`](Self::status_burst).
    pub status_per_user_per_minute: u32,
}

impl RateLimitConfig {
    /// The `RateLimit-Policy` value, the same on every answer and from every backend
    /// (draft-ietf-httpapi-ratelimit-headers-08: the sustained quota per window; the burst is an
    /// extension parameter).
    pub fn policy_header(&self) -> HeaderValue {
        HeaderValue::try_from(format!(
            "\"per_user\";q={};w=60;burst={}, \"per_ip\";q={};w=60;burst={}",
            self.per_user_per_minute,
            self.per_user_burst,
            self.per_ip_per_minute,
            self.per_ip_burst
        ))
        .unwrap_or(HeaderValue::from_static("\"per_user\";w=60"))
    }

    /// The status routes' burst: ten seconds' worth of their per-minute quota, so a page that
    /// reloads or opens a second tab is not refused, while a scraper is held to the rate.
    pub fn status_burst(&self) -> u32 {
        (self.status_per_user_per_minute / 6).max(1)
    }

    /// The quota of each limit.
    pub fn quota(&self, kind: LimitKind) -> Quota {
        match kind {
            LimitKind::PerUser => Quota {
                per_minute: self.per_user_per_minute,
                burst: self.per_user_burst,
            },
            LimitKind::PerIp => Quota {
                per_minute: self.per_ip_per_minute,
                burst: self.per_ip_burst,
            },
            LimitKind::PerUserStatus => Quota {
                per_minute: self.status_per_user_per_minute,
                burst: self.status_burst(),
            },
            LimitKind::PerIpStatus => {
                let users = self.users_per_address();
                Quota {
                    per_minute: self.status_per_user_per_minute.saturating_mul(users),
                    burst: self.status_burst().saturating_mul(users),
                }
            }
        }
    }

    /// How many users' checkouts an address's checkout budget admits at their full rate
    /// (`per_ip_per_minute / per_user_per_minute`), and at least two. The status reads'
    /// per-address budget admits as many users' status reads: an office behind one address may
    /// poll as much as it may check out, one user over their own status limit is refused by it
    /// (`per_user_status`) before their address is, and a flood of forged tokens is still cut by
    /// its address.
    pub fn users_per_address(&self) -> u32 {
        (self.per_ip_per_minute / self.per_user_per_minute.max(1)).max(2)
    }

    /// The `RateLimit-Policy` value on the status routes' answers.
    pub fn status_policy_header(&self) -> HeaderValue {
        let user = self.quota(LimitKind::PerUserStatus);
        let address = self.quota(LimitKind::PerIpStatus);
        HeaderValue::try_from(format!(
            "\"per_user_status\";q={};w=60;burst={}, \"per_ip\";q={};w=60;burst={}",
            user.per_minute, user.burst, address.per_minute, address.burst
        ))
        .unwrap_or(HeaderValue::from_static("\"per_user_status\";w=60"))
    }
}

pub(crate) fn rate_limit_header(kind: LimitKind, remaining: u32, reset_s: u64) -> HeaderValue {
    HeaderValue::try_from(format!("\"{}\";r={remaining};t={reset_s}", kind.code()))
        .unwrap_or(HeaderValue::from_static("\"per_user\";r=0;t=1"))
}

pub(crate) fn ceil_seconds(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

/// How a check let a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Within the limit, and counted.
    Counted,
    /// Not checked: the shared backend failed and `on_backend_error` is `allow`.
    Skipped,
}

/// Why a check did not let a request through.
#[derive(Debug, Clone)]
pub enum LimitError {
    /// Over a limit: 429.
    Refused(Refusal),
    /// The shared backend failed and `on_backend_error` is `deny`: 503.
    BackendUnavailable,
}

/// The limits the routes check, whichever backend holds their state.
#[derive(Debug)]
pub enum RateLimits {
    Memory(RateLimiter),
    Redis(SharedLimits),
}

/// The Redis backend and what to do when it fails.
#[derive(Debug)]
pub struct SharedLimits {
    limiter: RedisLimiter,
    on_error: BackendErrorPolicy,
    warnings: WarningThrottle,
}

impl RateLimits {
    pub fn memory(quotas: &RateLimitConfig) -> Self {
        Self::Memory(RateLimiter::new(quotas))
    }

    pub fn redis(limiter: RedisLimiter, on_error: BackendErrorPolicy) -> Self {
        Self::Redis(SharedLimits {
            limiter,
            on_error,
            warnings: WarningThrottle::new(WARNING_INTERVAL),
        })
    }

    /// The connection to the shared backend, when there is one.
    pub fn shared_link(&self) -> Option<&std::sync::Arc<crate::shared_redis::RedisLink>> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(shared) => Some(shared.limiter.link()),
        }
    }

    /// The `RateLimit-Policy` header value of a budget's answers, the same on every one.
    pub fn policy(&self, budget: Budget) -> &HeaderValue {
        let (checkout, status) = match self {
            Self::Memory(limiter) => (limiter.policy(), limiter.status_policy()),
            Self::Redis(shared) => (shared.limiter.policy(), shared.limiter.status_policy()),
        };
        match budget {
            Budget::Checkout => checkout,
            Budget::Status => status,
        }
    }

    /// The budget's per-address limit: [`Checked::Skipped`] when the shared backend failed and
    /// `on_backend_error` is `allow`.
    pub async fn check_address(&self, budget: Budget, ip: IpAddr) -> Result<Checked, LimitError> {
        match self {
            Self::Memory(limiter) => limiter
                .check_address(budget, ip)
                .map(|()| Checked::Counted)
                .map_err(LimitError::Refused),
            Self::Redis(shared) => match shared.limiter.check_address(budget, ip).await {
                Ok(outcome) => outcome
                    .map(|()| Checked::Counted)
                    .map_err(LimitError::Refused),
                Err(error) => shared
                    .backend_failed(budget.address_limit(), &error)
                    .map(|()| Checked::Skipped),
            },
        }
    }

    /// The budget's per-user limit. `Ok(None)`: let through unchecked, as the shared backend
    /// failed and `on_backend_error` is `allow` (there is no `RateLimit` header to give).
    pub async fn check_user(
        &self,
        budget: Budget,
        user_id: &str,
    ) -> Result<Option<Allowance>, LimitError> {
        match self {
            Self::Memory(limiter) => limiter
                .check_user_limit(budget, user_id)
                .map(Some)
                .map_err(LimitError::Refused),
            Self::Redis(shared) => match shared.limiter.check_user_limit(budget, user_id).await {
                Ok(outcome) => outcome.map(Some).map_err(LimitError::Refused),
                Err(error) => shared
                    .backend_failed(budget.user_limit(), &error)
                    .map(|()| None),
            },
        }
    }

    /// The in-memory limiter, whose idle keys must be dropped periodically.
    pub fn in_memory(&self) -> Option<&RateLimiter> {
        match self {
            Self::Memory(limiter) => Some(limiter),
            Self::Redis(_) => None,
        }
    }

    /// The Redis limiter when readiness depends on it: with `on_backend_error = "deny"` no
    /// checkout is served while Redis is unreachable, so the instance is not ready either. With
    /// `allow` it serves, and stays ready.
    pub fn required_backend(&self) -> Option<&RedisLimiter> {
        match self {
            Self::Redis(shared) if shared.on_error == BackendErrorPolicy::Deny => {
                Some(&shared.limiter)
            }
            _ => None,
        }
    }
}

/// At most one warning a second about a failing backend, whatever the request rate.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

impl SharedLimits {
    fn backend_failed(&self, kind: LimitKind, error: &BackendError) -> Result<(), LimitError> {
        if let Some(suppressed) = self.warnings.permit() {
            match self.on_error {
                BackendErrorPolicy::Deny => tracing::warn!(
                    limit = kind.code(),
                    %error,
                    suppressed,
                    "rate limit backend unreachable: checkout refused (on_backend_error = deny)"
                ),
                BackendErrorPolicy::Allow => tracing::warn!(
                    limit = kind.code(),
                    %error,
                    suppressed,
                    "rate limit backend unreachable: checkout let through unchecked (on_backend_error = allow)"
                ),
            }
        }
        match self.on_error {
            BackendErrorPolicy::Deny => Err(LimitError::BackendUnavailable),
            BackendErrorPolicy::Allow => Ok(()),
        }
    }
}

/// The secret that keys the shared backend's hashes, derived from the `client_token` so that every
/// replica of a deployment has the same one without another setting. A new token starts new keys
/// (the shared counters start afresh once).
pub fn key_secret_from_client_token(client_token: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(client_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"proof-bff rate-limit keys");
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(per_user_per_minute: u32, per_ip_per_minute: u32) -> RateLimitConfig {
        RateLimitConfig {
            per_user_burst: 5,
            per_user_per_minute,
            per_ip_burst: 20,
            per_ip_per_minute,
            status_per_user_per_minute: 60,
        }
    }

    #[test]
    fn the_status_reads_address_budget_admits_as_many_users_as_the_checkouts() {
        let defaults = quotas(10, 60);
        assert_eq!(defaults.users_per_address(), 6);
        assert_eq!(
            defaults.quota(LimitKind::PerUserStatus),
            Quota {
                per_minute: 60,
                burst: 10
            }
        );
        assert_eq!(
            defaults.quota(LimitKind::PerIpStatus),
            Quota {
                per_minute: 360,
                burst: 60
            }
        );
        assert_eq!(
            defaults.status_policy_header(),
            "\"per_user_status\";q=60;w=60;burst=10, \"per_ip\";q=360;w=60;burst=60"
        );
        // Always more than one user's, so a user over their own limit is told so.
        assert_eq!(quotas(10, 10).users_per_address(), 2);
        assert_eq!(quotas(30, 20).users_per_address(), 2);
        assert_eq!(quotas(0, 0).users_per_address(), 2);
        let huge = RateLimitConfig {
            status_per_user_per_minute: u32::MAX,
            ..quotas(1, u32::MAX)
        };
        assert_eq!(huge.quota(LimitKind::PerIpStatus).per_minute, u32::MAX);
    }

    #[test]
    fn refusals_by_either_address_budget_are_answered_per_ip() {
        assert_eq!(LimitKind::PerIpStatus.code(), "per_ip");
        assert_eq!(LimitKind::PerIpStatus.name(), "per_ip_status");
        for kind in [
            LimitKind::PerUser,
            LimitKind::PerIp,
            LimitKind::PerUserStatus,
        ] {
            assert_eq!(kind.name(), kind.code());
        }
        assert_eq!(Budget::Checkout.address_limit(), LimitKind::PerIp);
        assert_eq!(Budget::Status.user_limit(), LimitKind::PerUserStatus);
    }
}

//! Per-user and per-client-address limits (GCRA), with the `RateLimit` / `RateLimit-Policy`
//! headers that describe them.
//!
//! Both are checked before Proof is called: the per-address limit before the session is even
//! verified, on every backend, so a flood of garbage tokens is cut cheaply, and the per-user limit
//! once the user is known.
//!
//! The state lives in this process ([`RateLimiter`], one instance) or in a Redis shared by every
//! replica ([`redis::RedisLimiter`]); the checkout route sees one type, [`RateLimits`], which also
//! applies `on_backend_error` when the shared backend fails.

mod memory;
pub mod redis;

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

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

/// Which limit refused a request; also the policy name in the `RateLimit*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    PerUser,
    PerIp,
    /// The status routes' own per-user limit (`GET /checkout/{id}`, `GET /kyc-status`).
    PerUserStatus,
}

impl LimitKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::PerUser => "per_user",
            Self::PerIp => "per_ip",
            Self::PerUserStatus => "per_user_status",
        }
    }
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

    /// The `RateLimit-Policy` value on the status routes' answers.
    pub fn status_policy_header(&self) -> HeaderValue {
        HeaderValue::try_from(format!(
            "\"per_user_status\";q={};w=60;burst={}, \"per_ip\";q={};w=60;burst={}",
            self.status_per_user_per_minute,
            self.status_burst(),
            self.per_ip_per_minute,
            self.per_ip_burst
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

/// The limits the checkout route checks, whichever backend holds their state.
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

    /// The `RateLimit-Policy` header value, the same on every answer.
    pub fn policy(&self) -> &HeaderValue {
        match self {
            Self::Memory(limiter) => limiter.policy(),
            Self::Redis(shared) => shared.limiter.policy(),
        }
    }

    /// The `RateLimit-Policy` header value of the status routes.
    pub fn status_policy(&self) -> &HeaderValue {
        match self {
            Self::Memory(limiter) => limiter.status_policy(),
            Self::Redis(shared) => shared.limiter.status_policy(),
        }
    }

    /// The per-address limit: [`Checked::Skipped`] when the shared backend failed and
    /// `on_backend_error` is `allow`.
    pub async fn check_ip(&self, ip: IpAddr) -> Result<Checked, LimitError> {
        match self {
            Self::Memory(limiter) => limiter
                .check_ip(ip)
                .map(|()| Checked::Counted)
                .map_err(LimitError::Refused),
            Self::Redis(shared) => match shared.limiter.check_ip(ip).await {
                Ok(outcome) => outcome
                    .map(|()| Checked::Counted)
                    .map_err(LimitError::Refused),
                Err(error) => shared
                    .backend_failed(LimitKind::PerIp, &error)
                    .map(|()| Checked::Skipped),
            },
        }
    }

    /// The per-user limit. `Ok(None)`: let through unchecked, as the shared backend failed and
    /// `on_backend_error` is `allow` (there is no `RateLimit` header to give).
    pub async fn check_user(&self, user_id: &str) -> Result<Option<Allowance>, LimitError> {
        match self {
            Self::Memory(limiter) => limiter
                .check_user(user_id)
                .map(Some)
                .map_err(LimitError::Refused),
            Self::Redis(shared) => match shared.limiter.check_user(user_id).await {
                Ok(outcome) => outcome.map(Some).map_err(LimitError::Refused),
                Err(error) => shared
                    .backend_failed(LimitKind::PerUser, &error)
                    .map(|()| None),
            },
        }
    }

    /// The status routes' per-user limit; `Ok(None)` as for [`check_user`](Self::check_user).
    pub async fn check_user_status(&self, user_id: &str) -> Result<Option<Allowance>, LimitError> {
        match self {
            Self::Memory(limiter) => limiter
                .check_user_status(user_id)
                .map(Some)
                .map_err(LimitError::Refused),
            Self::Redis(shared) => match shared.limiter.check_user_status(user_id).await {
                Ok(outcome) => outcome.map(Some).map_err(LimitError::Refused),
                Err(error) => shared
                    .backend_failed(LimitKind::PerUserStatus, &error)
                    .map(|()| None),
            },
        }
    }

    /// [`check_user`](Self::check_user) or [`check_user_status`](Self::check_user_status).
    pub async fn check_user_limit(
        &self,
        user_limit: LimitKind,
        user_id: &str,
    ) -> Result<Option<Allowance>, LimitError> {
        match user_limit {
            LimitKind::PerUserStatus => self.check_user_status(user_id).await,
            LimitKind::PerUser | LimitKind::PerIp => self.check_user(user_id).await,
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

//! Per-user and per-client-address limits (GCRA), with the `RateLimit` / `RateLimit-Policy`
//! headers that describe them.
//!
//! Both are checked before Proof is called: the per-address limit before the session is even
//! verified, so a flood of garbage tokens is cut cheaply, and the per-user limit once the user is
//! known.

mod memory;
pub mod redis;

use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};

pub use memory::RateLimiter;

pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// How often keys that are back to a fresh state are dropped.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(30);

/// Which limit refused a request; also the policy name in the `RateLimit*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    PerUser,
    PerIp,
}

impl LimitKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::PerUser => "per_user",
            Self::PerIp => "per_ip",
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

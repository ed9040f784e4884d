//! The Redis backend (`rate_limit.backend = "redis"`): the same GCRA limits as the in-memory
//! backend, with their state in the Redis every replica shares ([`crate::shared_redis`]).
//!
//! It owns the script and the limits' keys. What a failure means for the request
//! (`on_backend_error`: deny or allow) is the caller's decision.
//!
//! - **One script per check** (`redis_gcra.lua`): it reads the state, decides and writes the new
//!   state with its expiry, atomically inside Redis, so any number of concurrent checks from any
//!   number of replicas let exactly the quota through. The routes check the address in one call,
//!   before the session is verified, and the user in another once it is. The script can also
//!   check several limits of one server in one call, as if one after the other
//!   ([`check_ip_and_user`](RedisLimiter::check_ip_and_user)).
//! - **Redis's clock** (`TIME`, inside the script): the replicas' clocks never enter a decision, so a
//!   replica whose clock is behind cannot let extra requests through. A key lives on one node and so
//!   only ever sees that node's clock.
//! - **Keys**: `{prefix}:<limit>:{<hash>}` (`per_user`, `per_ip`, `per_user_status`,
//!   `per_ip_status`), the hash keyed by the deployment's secret over the user id, or the address
//!   (IPv4 as is, IPv6 by its /64, as in memory). The raw id, email or address is never sent.
//! - **Expiry**: every write makes the key expire when its state is fresh again, so idle keys vanish
//!   by themselves and Redis holds only recently active users and addresses.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderValue;

use super::{
    Allowance, Budget, LimitKind, Quota, RateLimitConfig, Refusal, ceil_seconds, rate_limit_header,
};
pub use crate::shared_redis::{
    BackendError, Failure, KeyHasher, LuaScript, RedisLink, RedisSettings, RedisSetupError,
};

const GCRA_SCRIPT: &str = include_str!("redis_gcra.lua");

/// The per-user and per-address limits of both budgets, their state in Redis. One per process,
/// shared by every worker (it is `Send + Sync`); the checks may be awaited on any tokio runtime
/// with time enabled.
///
/// ```text
/// let limiter = RedisLimiter::new(settings, &quotas, &key_secret)?;
/// match limiter.check_ip(ip).await {
///     Ok(Ok(())) => {}                     // allowed
///     Ok(Err(refusal)) => {}               // 429 per_ip, Retry-After and RateLimit from `refusal`
///     Err(backend_error) => {}             // on_backend_error: deny (503) or allow
/// }
/// ```
#[derive(Debug)]
pub struct RedisLimiter {
    link: Arc<RedisLink>,
    keys: KeyHasher,
    per_user: Limit,
    per_ip: Limit,
    per_user_status: Limit,
    per_ip_status: Limit,
    script: LuaScript,
    policy: HeaderValue,
    status_policy: HeaderValue,
}

impl RedisLimiter {
    /// A limiter on a link of its own (see [`with_link`](Self::with_link)), its thread started.
    pub fn new(
        settings: RedisSettings,
        quotas: &RateLimitConfig,
        key_secret: &[u8],
    ) -> Result<Self, RedisSetupError> {
        let keys = KeyHasher::new(&settings.key_prefix, key_secret)?;
        let link = Arc::new(RedisLink::new(&settings)?);
        link.start()?;
        Ok(Self::with_link(link, keys, quotas))
    }

    /// A limiter on the shared link, its keys named by `keys`: every replica must use the same
    /// prefix and secret, or they count separately.
    pub fn with_link(link: Arc<RedisLink>, keys: KeyHasher, quotas: &RateLimitConfig) -> Self {
        Self {
            link,
            keys,
            per_user: Limit::of(LimitKind::PerUser, quotas),
            per_ip: Limit::of(LimitKind::PerIp, quotas),
            per_user_status: Limit::of(LimitKind::PerUserStatus, quotas),
            per_ip_status: Limit::of(LimitKind::PerIpStatus, quotas),
            script: LuaScript::new(GCRA_SCRIPT),
            policy: quotas.policy_header(),
            status_policy: quotas.status_policy_header(),
        }
    }

    /// The `RateLimit-Policy` header value: the same on every answer, and the same as the
    /// in-memory backend's for the same quotas.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// The `RateLimit-Policy` header value of the status routes.
    pub fn status_policy(&self) -> &HeaderValue {
        &self.status_policy
    }

    /// The connection the limits' state is kept through.
    pub fn link(&self) -> &Arc<RedisLink> {
        &self.link
    }

    /// The checkout's per-address limit. `Ok(Ok(()))`: allowed; `Ok(Err(refusal))`: over the
    /// limit; `Err(_)`: Redis failed or did not answer in time (nothing was counted, or it is
    /// unknown).
    pub async fn check_ip(&self, ip: IpAddr) -> Result<Result<(), Refusal>, BackendError> {
        self.check_address(Budget::Checkout, ip).await
    }

    /// The checkout's per-user limit. `Ok(Ok(allowance))`: allowed, with the per-user `RateLimit`
    /// header; `Ok(Err(refusal))`: over the limit; `Err(_)`: Redis failed or did not answer in
    /// time.
    pub async fn check_user(
        &self,
        user_id: &str,
    ) -> Result<Result<Allowance, Refusal>, BackendError> {
        self.check_user_limit(Budget::Checkout, user_id).await
    }

    /// The status routes' per-user limit, as [`check_user`](Self::check_user).
    pub async fn check_user_status(
        &self,
        user_id: &str,
    ) -> Result<Result<Allowance, Refusal>, BackendError> {
        self.check_user_limit(Budget::Status, user_id).await
    }

    /// The budget's per-address limit, as [`check_ip`](Self::check_ip).
    pub async fn check_address(
        &self,
        budget: Budget,
        ip: IpAddr,
    ) -> Result<Result<(), Refusal>, BackendError> {
        let limit = self.limit(budget.address_limit());
        let key = self.keys.key(limit.kind.name(), &[&ip_subject(ip)]);
        Ok(match self.run(limit, key).await? {
            Outcome::Allowed { .. } => Ok(()),
            Outcome::Refused { wait } => Err(limit.refusal(wait)),
        })
    }

    /// The budget's per-user limit, as [`check_user`](Self::check_user).
    pub async fn check_user_limit(
        &self,
        budget: Budget,
        user_id: &str,
    ) -> Result<Result<Allowance, Refusal>, BackendError> {
        let limit = self.limit(budget.user_limit());
        let key = self.keys.key(limit.kind.name(), &[user_id.as_bytes()]);
        Ok(match self.run(limit, key).await? {
            Outcome::Allowed { remaining } => Ok(Allowance {
                rate_limit: limit.allowance_header(remaining),
            }),
            Outcome::Refused { wait } => Err(limit.refusal(wait)),
        })
    }

    /// Whether [`check_ip_and_user`](Self::check_ip_and_user) can be used: on a single server,
    /// not on a cluster (the two keys are in different slots).
    pub fn checks_together(&self) -> bool {
        !self.link.is_cluster()
    }

    /// The checkout's per-address limit, then the user's limit (`PerUser` or `PerUserStatus`) if
    /// the address is within its own, in one call: the same outcome, headers and stored state as
    /// [`check_ip`](Self::check_ip) followed by [`check_user`](Self::check_user). Single server
    /// only (see [`checks_together`](Self::checks_together)). The routes do not use it: they check
    /// the address before the session is verified, when the user is not known yet.
    pub async fn check_ip_and_user(
        &self,
        ip: IpAddr,
        user_limit: LimitKind,
        user_id: &str,
    ) -> Result<Result<Allowance, Refusal>, BackendError> {
        let user = self.limit(user_limit);
        let keys = [
            self.keys.key(LimitKind::PerIp.name(), &[&ip_subject(ip)]),
            self.keys.key(user.kind.name(), &[user_id.as_bytes()]),
        ];
        let args = (self.per_ip.t_us, self.per_ip.tau_us, user.t_us, user.tau_us);
        let (allowed, value, limit): (i64, i64, i64) =
            self.link.eval_keys(&self.script, keys, args).await?;
        let limit = if limit == 1 { &self.per_ip } else { user };
        Ok(match Outcome::read(allowed, value, limit) {
            Outcome::Allowed { remaining } => Ok(Allowance {
                rate_limit: user.allowance_header(remaining),
            }),
            Outcome::Refused { wait } => Err(limit.refusal(wait)),
        })
    }

    fn limit(&self, kind: LimitKind) -> &Limit {
        match kind {
            LimitKind::PerUser => &self.per_user,
            LimitKind::PerIp => &self.per_ip,
            LimitKind::PerUserStatus => &self.per_user_status,
            LimitKind::PerIpStatus => &self.per_ip_status,
        }
    }

    /// One `PING`, bounded by the timeout (for a cluster: every node): for `/readyz`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.link.ping().await
    }

    async fn run(&self, limit: &Limit, key: String) -> Result<Outcome, BackendError> {
        let (allowed, value, _limit): (i64, i64, i64) = self
            .link
            .eval(&self.script, key, (limit.t_us, limit.tau_us))
            .await?;
        Ok(Outcome::read(allowed, value, limit))
    }
}

/// One limit's GCRA parameters, in microseconds (the unit of Redis's `TIME`).
#[derive(Debug, Clone, Copy)]
struct Limit {
    kind: LimitKind,
    /// One cell: a minute over the per-minute quota, as governor's `Quota::per_minute`.
    t_us: u64,
    /// The burst tolerance: `t * (burst - 1)`.
    tau_us: u64,
    burst: u32,
}

impl Limit {
    fn of(kind: LimitKind, quotas: &RateLimitConfig) -> Self {
        Self::new(kind, quotas.quota(kind))
    }

    fn new(kind: LimitKind, quota: Quota) -> Self {
        // As the in-memory backend: a zero quota or burst counts as 1.
        let per_minute = u64::from(quota.per_minute.max(1));
        let burst = quota.burst.max(1);
        let t_us = (60_000_000 / per_minute).max(1);
        Self {
            kind,
            t_us,
            tau_us: t_us.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }

    /// As the in-memory backend: the time until the burst is whole again is one cell per used one.
    fn allowance_header(&self, remaining: u32) -> HeaderValue {
        let used = u64::from(self.burst.saturating_sub(remaining));
        let reset = Duration::from_micros(self.t_us.saturating_mul(used));
        rate_limit_header(self.kind, remaining, ceil_seconds(reset))
    }

    fn refusal(&self, wait: Duration) -> Refusal {
        let retry_after_s = ceil_seconds(wait).max(1);
        Refusal {
            kind: self.kind,
            retry_after_s,
            rate_limit: rate_limit_header(self.kind, 0, retry_after_s),
        }
    }
}

enum Outcome {
    Allowed { remaining: u32 },
    Refused { wait: Duration },
}

impl Outcome {
    /// The script's answer about `limit`.
    fn read(allowed: i64, value: i64, limit: &Limit) -> Self {
        // The script never answers a negative value; a wrong one is not trusted beyond the quota.
        let value = u64::try_from(value).unwrap_or(0);
        if allowed == 1 {
            Self::Allowed {
                remaining: u32::try_from(value).unwrap_or(0).min(limit.burst),
            }
        } else {
            Self::Refused {
                wait: Duration::from_micros(value),
            }
        }
    }
}

/// What is hashed for an address: IPv4 as is, IPv6 by its /64 prefix (one host usually holds a
/// whole /64), an IPv4-mapped IPv6 address as its IPv4 address; as in the in-memory backend.
fn ip_subject(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            Ipv6Addr::from(prefix).octets().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_use_governors_cell_and_tolerance() {
        let limit = Limit::new(
            LimitKind::PerUser,
            Quota {
                per_minute: 6,
                burst: 3,
            },
        );
        assert_eq!(
            (limit.t_us, limit.tau_us, limit.burst),
            (10_000_000, 20_000_000, 3)
        );
        let zero = Limit::new(
            LimitKind::PerIp,
            Quota {
                per_minute: 0,
                burst: 0,
            },
        );
        assert_eq!((zero.t_us, zero.tau_us, zero.burst), (60_000_000, 0, 1));
    }

    #[test]
    fn headers_follow_the_in_memory_backend() {
        let limit = Limit::new(
            LimitKind::PerUser,
            Quota {
                per_minute: 6,
                burst: 3,
            },
        );
        assert_eq!(limit.allowance_header(2), "\"per_user\";r=2;t=10");
        assert_eq!(limit.allowance_header(0), "\"per_user\";r=0;t=30");
        let refusal = limit.refusal(Duration::from_millis(9_001));
        assert_eq!(refusal.retry_after_s, 10);
        assert_eq!(refusal.rate_limit, "\"per_user\";r=0;t=10");
        assert_eq!(limit.refusal(Duration::ZERO).retry_after_s, 1);
    }

    #[test]
    fn addresses_are_hashed_by_their_ipv4_or_ipv6_64() {
        let subject = |ip: &str| ip_subject(ip.parse().unwrap());
        assert_eq!(subject("2001:db8:1:2::1"), subject("2001:db8:1:2:ffff::9"));
        assert_ne!(subject("2001:db8:1:2::1"), subject("2001:db8:1:3::1"));
        assert_eq!(subject("::ffff:198.51.100.4"), subject("198.51.100.4"));
        assert_eq!(subject("198.51.100.4"), vec![198, 51, 100, 4]);
    }
}

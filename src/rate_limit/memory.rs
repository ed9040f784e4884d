//! The in-memory backend (`rate_limit.backend = "memory"`): governor's keyed GCRA, one limiter
//! shared by every worker of the instance.
//!
//! Keys are stored compactly: a user is a keyed 64-bit hash of the user id (never the raw string,
//! never the email), an address is its IPv4 value or its IPv6 /64 prefix (one host usually holds a
//! whole /64, so rotating inside it does not escape the limit).

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use actix_web::http::header::HeaderValue;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota};

use super::{Allowance, LimitKind, RateLimitConfig, Refusal, ceil_seconds, rate_limit_header};

type KeyedLimiter<K, C> =
    governor::RateLimiter<K, DashMapStateStore<K>, C, StateInformationMiddleware>;

/// Both limits, shared by all workers.
pub struct RateLimiter<C: Clock = DefaultClock> {
    per_user: KeyedLimiter<u64, C>,
    per_ip: KeyedLimiter<IpAddr, C>,
    per_user_status: KeyedLimiter<u64, C>,
    user_key_hasher: RandomState,
    clock: C,
    policy: HeaderValue,
    status_policy: HeaderValue,
}

impl<C: Clock> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policy", &self.policy)
            .field("user_keys", &self.per_user.len())
            .field("ip_keys", &self.per_ip.len())
            .finish()
    }
}

impl RateLimiter<DefaultClock> {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// With an explicit clock, so the memory benchmark can advance time instead of waiting.
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        let quota = |per_minute: u32, burst: u32| {
            Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
        };
        let per_user = governor::RateLimiter::dashmap_with_clock(
            quota(config.per_user_per_minute, config.per_user_burst),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        let per_ip = governor::RateLimiter::dashmap_with_clock(
            quota(config.per_ip_per_minute, config.per_ip_burst),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        let per_user_status = governor::RateLimiter::dashmap_with_clock(
            quota(config.status_per_user_per_minute, config.status_burst()),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Self {
            per_user,
            per_ip,
            per_user_status,
            user_key_hasher: RandomState::new(),
            clock,
            policy: config.policy_header(),
            status_policy: config.status_policy_header(),
        }
    }

    /// The `RateLimit-Policy` header value: the same on every checkout answer.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// The `RateLimit-Policy` header value of the status routes.
    pub fn status_policy(&self) -> &HeaderValue {
        &self.status_policy
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.per_ip
            .check_key(&ip_key(ip))
            .map(|_| ())
            .map_err(|not_until| self.refusal(LimitKind::PerIp, &not_until))
    }

    pub fn check_user(&self, user_id: &str) -> Result<Allowance, Refusal> {
        self.check_user_in(&self.per_user, LimitKind::PerUser, user_id)
    }

    pub fn check_user_status(&self, user_id: &str) -> Result<Allowance, Refusal> {
        self.check_user_in(&self.per_user_status, LimitKind::PerUserStatus, user_id)
    }

    fn check_user_in(
        &self,
        limiter: &KeyedLimiter<u64, C>,
        kind: LimitKind,
        user_id: &str,
    ) -> Result<Allowance, Refusal> {
        let key = self.user_key_hasher.hash_one(user_id);
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let remaining = snapshot.remaining_burst_capacity();
                // Time until the burst is whole again: one replenish interval per used cell.
                let used = quota.burst_size().get().saturating_sub(remaining);
                let reset = quota.replenish_interval().saturating_mul(used);
                Ok(Allowance {
                    rate_limit: rate_limit_header(kind, remaining, ceil_seconds(reset)),
                })
            }
            Err(not_until) => Err(self.refusal(kind, &not_until)),
        }
    }

    fn refusal(&self, kind: LimitKind, not_until: &NotUntil<C::Instant>) -> Refusal {
        let retry_after_s = ceil_seconds(not_until.wait_time_from(self.clock.now())).max(1);
        Refusal {
            kind,
            retry_after_s,
            rate_limit: rate_limit_header(kind, 0, retry_after_s),
        }
    }

    /// Drops the keys whose state is back to fresh, so memory follows the recently active keys
    /// rather than every key ever seen.
    pub fn retain_recent(&self) {
        self.per_user.retain_recent();
        self.per_user.shrink_to_fit();
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_user_status.retain_recent();
        self.per_user_status.shrink_to_fit();
    }

    /// Live keys: (users, addresses).
    pub fn len(&self) -> (usize, usize) {
        (self.per_user.len(), self.per_ip.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

/// IPv4 as is; IPv6 by its /64 prefix.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    fn config(burst: u32, per_minute: u32) -> RateLimitConfig {
        RateLimitConfig {
            per_user_burst: burst,
            per_user_per_minute: per_minute,
            per_ip_burst: burst,
            per_ip_per_minute: per_minute,
            status_per_user_per_minute: per_minute,
        }
    }

    #[test]
    fn a_burst_passes_then_the_next_is_refused_with_a_whole_second_retry() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(&config(3, 6), clock.clone());
        for _ in 0..3 {
            assert!(limiter.check_user("alice").is_ok());
        }
        let refusal = limiter.check_user("alice").unwrap_err();
        assert_eq!(refusal.kind, LimitKind::PerUser);
        // 6 per minute: one cell every 10 s.
        assert_eq!(refusal.retry_after_s, 10);
        assert_eq!(refusal.rate_limit, "\"per_user\";r=0;t=10");
        clock.advance(Duration::from_millis(9_500));
        assert_eq!(limiter.check_user("alice").unwrap_err().retry_after_s, 1);
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check_user("alice").is_ok());
    }

    #[test]
    fn users_and_addresses_are_limited_separately() {
        let limiter = RateLimiter::with_clock(&config(1, 1), FakeRelativeClock::default());
        assert!(limiter.check_user("alice").is_ok());
        assert!(limiter.check_user("alice").is_err());
        assert!(limiter.check_user("bob").is_ok());
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        assert!(limiter.check_ip(a).is_ok());
        assert!(limiter.check_ip(a).is_err());
        assert!(limiter.check_ip(b).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let limiter = RateLimiter::with_clock(&config(1, 1), FakeRelativeClock::default());
        assert!(limiter.check_ip("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(
            limiter
                .check_ip("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(limiter.check_ip("2001:db8:1:3::1".parse().unwrap()).is_ok());
        // The IPv4-mapped form is the IPv4 address.
        assert!(limiter.check_ip("198.51.100.4".parse().unwrap()).is_ok());
        assert!(
            limiter
                .check_ip("::ffff:198.51.100.4".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn remaining_and_reset_are_reported_while_allowed() {
        let limiter = RateLimiter::with_clock(&config(3, 6), FakeRelativeClock::default());
        let first = limiter.check_user("carol").unwrap();
        assert_eq!(first.rate_limit, "\"per_user\";r=2;t=10");
        let second = limiter.check_user("carol").unwrap();
        assert_eq!(second.rate_limit, "\"per_user\";r=1;t=20");
    }

    #[test]
    fn cleanup_drops_keys_back_to_fresh_and_keeps_active_ones() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(&config(2, 60), clock.clone());
        for i in 0..1000 {
            limiter.check_user(&format!("user-{i}")).unwrap();
        }
        assert_eq!(limiter.len().0, 1000);
        limiter.retain_recent();
        assert_eq!(
            limiter.len().0,
            1000,
            "keys still inside their window are kept"
        );
        clock.advance(Duration::from_secs(2));
        limiter.check_user("user-0").unwrap();
        limiter.retain_recent();
        assert_eq!(limiter.len().0, 1, "only the recently active key is left");
    }

    #[test]
    fn exact_under_concurrency() {
        let limiter = std::sync::Arc::new(RateLimiter::with_clock(
            &config(3, 1),
            FakeRelativeClock::default(),
        ));
        let allowed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..40 {
                scope.spawn(|| {
                    if limiter.check_user("dave").is_ok() {
                        allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 3);
    }
}

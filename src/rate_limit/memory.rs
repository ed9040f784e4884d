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

use super::{
    Allowance, Budget, LimitKind, RateLimitConfig, Refusal, ceil_seconds, rate_limit_header,
};

type KeyedLimiter<K, C> =
    governor::RateLimiter<K, DashMapStateStore<K>, C, StateInformationMiddleware>;

/// Every limit of both budgets, shared by all workers.
pub struct RateLimiter<C: Clock = DefaultClock> {
    per_user: KeyedLimiter<u64, C>,
    per_ip: KeyedLimiter<IpAddr, C>,
    per_user_status: KeyedLimiter<u64, C>,
    per_ip_status: KeyedLimiter<IpAddr, C>,
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
        fn limiter<K: Clone + Eq + std::hash::Hash, C: Clock>(
            config: &RateLimitConfig,
            kind: LimitKind,
            clock: C,
        ) -> KeyedLimiter<K, C> {
            let quota = config.quota(kind);
            let quota =
                Quota::per_minute(NonZeroU32::new(quota.per_minute).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN));
            governor::RateLimiter::dashmap_with_clock(quota, clock)
                .with_middleware::<StateInformationMiddleware>()
        }
        Self {
            per_user: limiter(config, LimitKind::PerUser, clock.clone()),
            per_ip: limiter(config, LimitKind::PerIp, clock.clone()),
            per_user_status: limiter(config, LimitKind::PerUserStatus, clock.clone()),
            per_ip_status: limiter(config, LimitKind::PerIpStatus, clock.clone()),
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

    /// The checkout's per-address limit.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.check_address(Budget::Checkout, ip)
    }

    /// The checkout's per-user limit.
    pub fn check_user(&self, user_id: &str) -> Result<Allowance, Refusal> {
        self.check_user_limit(Budget::Checkout, user_id)
    }

    /// The status reads' per-user limit.
    pub fn check_user_status(&self, user_id: &str) -> Result<Allowance, Refusal> {
        self.check_user_limit(Budget::Status, user_id)
    }

    /// The budget's per-address limit.
    pub fn check_address(&self, budget: Budget, ip: IpAddr) -> Result<(), Refusal> {
        let kind = budget.address_limit();
        let limiter = match budget {
            Budget::Checkout => &self.per_ip,
            Budget::Status => &self.per_ip_status,
        };
        limiter
            .check_key(&ip_key(ip))
            .map(|_| ())
            .map_err(|not_until| self.refusal(kind, &not_until))
    }

    /// The budget's per-user limit.
    pub fn check_user_limit(&self, budget: Budget, user_id: &str) -> Result<Allowance, Refusal> {
        let kind = budget.user_limit();
        let limiter = match budget {
            Budget::Checkout => &self.per_user,
            Budget::Status => &self.per_user_status,
        };
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
        self.per_ip_status.retain_recent();
        self.per_ip_status.shrink_to_fit();
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
    fn each_budget_has_its_own_address_and_user_limits() {
        let limiter = RateLimiter::with_clock(&config(1, 1), FakeRelativeClock::default());
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(limiter.check_address(Budget::Checkout, ip).is_ok());
        let refusal = limiter.check_address(Budget::Checkout, ip).unwrap_err();
        assert_eq!(refusal.kind, LimitKind::PerIp);
        // The status reads' address budget is two users' worth of their per-user one.
        assert!(limiter.check_address(Budget::Status, ip).is_ok());
        assert!(limiter.check_address(Budget::Status, ip).is_ok());
        let refusal = limiter.check_address(Budget::Status, ip).unwrap_err();
        assert_eq!(refusal.kind, LimitKind::PerIpStatus);
        assert_eq!(refusal.rate_limit, "\"per_ip\";r=0;t=30");

        assert!(limiter.check_user_limit(Budget::Checkout, "alice").is_ok());
        assert!(limiter.check_user_limit(Budget::Checkout, "alice").is_err());
        assert!(limiter.check_user_limit(Budget::Status, "alice").is_ok());
        assert_eq!(
            limiter
                .check_user_limit(Budget::Status, "alice")
                .unwrap_err()
                .kind,
            LimitKind::PerUserStatus
        );
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

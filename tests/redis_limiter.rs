//! The Redis rate limit backend against real `redis-server` processes on loopback ports, and a
//! three-master Redis Cluster: exact under concurrency across limiters, the same headers as the
//! in-memory backend, keys that reveal nothing and expire, and failures that are bounded, named
//! without secrets, and recovered from without a restart.

#[path = "support/redis.rs"]
mod redis_support;
// The test support's limit for waiting; this binary uses only that part of it.
#[allow(dead_code)]
#[path = "support/eventually.rs"]
mod eventually;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use eventually::{EVENTUALLY, eventually_async};
use proof_bff::rate_limit::redis::{
    BackendError, Failure, RedisLimiter, RedisSettings, RedisSetupError,
};
use proof_bff::rate_limit::{Allowance, Budget, LimitKind, RateLimitConfig, RateLimiter, Refusal};
use redis_support::{RedisCluster, RedisServer};
use secrecy::SecretString;
use tokio::sync::Barrier;

const KEY_SECRET: &[u8] = b"the replicas' shared key secret";
const PREFIX: &str = "proof-bff-test";
/// The per-call bound where a test is not about timeouts: generous, for a busy 2-core CI machine.
const RELAXED: Duration = Duration::from_secs(5);
const GCRA_SCRIPT: &str = include_str!("../src/rate_limit/redis_gcra.lua");

fn quotas(burst: u32, per_minute: u32) -> RateLimitConfig {
    RateLimitConfig {
        per_user_burst: burst,
        per_user_per_minute: per_minute,
        per_ip_burst: burst,
        per_ip_per_minute: per_minute,
        status_per_user_per_minute: per_minute,
    }
}

fn settings(url: &str, cluster: bool, timeout: Duration) -> RedisSettings {
    RedisSettings {
        url: SecretString::from(url),
        cluster,
        key_prefix: PREFIX.to_owned(),
        timeout,
    }
}

fn limiter(url: &str, quotas: &RateLimitConfig) -> Arc<RedisLimiter> {
    Arc::new(
        RedisLimiter::new(settings(url, false, RELAXED), quotas, KEY_SECRET).expect("a limiter"),
    )
}

fn cluster_limiter(url: &str, quotas: &RateLimitConfig) -> Arc<RedisLimiter> {
    Arc::new(
        RedisLimiter::new(settings(url, true, RELAXED), quotas, KEY_SECRET)
            .expect("a cluster limiter"),
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    allowed: usize,
    refused: usize,
}

/// 40 checks released at once, spread over the limiters in turn.
async fn concurrent_checks<F, Fut>(limiters: &[Arc<RedisLimiter>], check: F) -> Tally
where
    F: Fn(Arc<RedisLimiter>) -> Fut,
    Fut: Future<Output = Result<bool, BackendError>> + Send + 'static,
{
    const CHECKS: usize = 40;
    let barrier = Arc::new(Barrier::new(CHECKS));
    let tasks: Vec<_> = (0..CHECKS)
        .map(|i| {
            let check = check(limiters[i % limiters.len()].clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                check.await
            })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await.expect("the check task") {
            Ok(true) => tally.allowed += 1,
            Ok(false) => tally.refused += 1,
            Err(err) => panic!("Redis failed during the burst: {err}"),
        }
    }
    tally
}

async fn burst_of_users(limiters: &[Arc<RedisLimiter>], user: &'static str) -> Tally {
    concurrent_checks(limiters, |limiter| async move {
        let outcome = limiter.check_user(user).await?;
        if let Err(refusal) = &outcome {
            assert_eq!(refusal.kind, LimitKind::PerUser);
        }
        Ok(outcome.is_ok())
    })
    .await
}

async fn burst_of_addresses(limiters: &[Arc<RedisLimiter>], ip: IpAddr) -> Tally {
    concurrent_checks(limiters, |limiter| async move {
        let outcome = limiter.check_ip(ip).await?;
        if let Err(refusal) = &outcome {
            assert_eq!(refusal.kind, LimitKind::PerIp);
            assert!((1..=60).contains(&refusal.retry_after_s), "{refusal:?}");
        }
        Ok(outcome.is_ok())
    })
    .await
}

const EXACTLY_THE_BURST: Tally = Tally {
    allowed: 3,
    refused: 37,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_sharing_one_redis_let_exactly_the_burst_through() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // One a minute: nothing is replenished while the test runs.
    let config = quotas(3, 1);
    let limiters = [
        limiter(&server.url(), &config),
        limiter(&server.url(), &config),
    ];

    assert_eq!(burst_of_users(&limiters, "dave").await, EXACTLY_THE_BURST);
    assert_eq!(
        burst_of_addresses(&limiters, "203.0.113.50".parse().unwrap()).await,
        EXACTLY_THE_BURST
    );
    // Others are untouched.
    assert!(limiters[1].check_user("erin").await.unwrap().is_ok());
    assert!(
        limiters[0]
            .check_ip("203.0.113.51".parse().unwrap())
            .await
            .unwrap()
            .is_ok()
    );
}

/// `"name";r=R;t=T` into its parts.
fn parse_rate_limit(value: &HeaderValue) -> (String, u32, u64) {
    let text = value.to_str().expect("an ASCII header");
    let mut parts = text.split(';');
    let name = parts.next().expect("a name").to_owned();
    let mut remaining = None;
    let mut reset = None;
    for part in parts {
        match part.split_once('=') {
            Some(("r", r)) => remaining = r.parse().ok(),
            Some(("t", t)) => reset = t.parse().ok(),
            _ => panic!("unexpected parameter in {text}"),
        }
    }
    (name, remaining.expect("r"), reset.expect("t"))
}

/// Same limit, same remaining count, and the same seconds, but for one second of rounding: the two
/// backends read their clocks a few milliseconds apart.
fn assert_same_rate_limit(memory: &HeaderValue, redis: &HeaderValue, step: &str) {
    let (memory_name, memory_remaining, memory_reset) = parse_rate_limit(memory);
    let (redis_name, redis_remaining, redis_reset) = parse_rate_limit(redis);
    assert_eq!(memory_name, redis_name, "{step}");
    assert_eq!(
        memory_remaining, redis_remaining,
        "{step}: {memory:?} vs {redis:?}"
    );
    assert!(
        memory_reset.abs_diff(redis_reset) <= 1,
        "{step}: {memory:?} vs {redis:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_the_in_memory_backends_for_the_same_requests() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = RateLimitConfig {
        per_user_burst: 3,
        per_user_per_minute: 6,
        per_ip_burst: 2,
        per_ip_per_minute: 30,
        status_per_user_per_minute: 30,
    };
    let redis = limiter(&server.url(), &config);
    let memory = RateLimiter::new(&config);
    assert_eq!(redis.policy(), memory.policy());

    let mut refusals = 0;
    for (step, user) in [
        "alice", "alice", "bob", "alice", "alice", "alice", "bob", "bob", "bob",
    ]
    .into_iter()
    .enumerate()
    {
        let step = format!("user check {step} ({user})");
        match (
            memory.check_user(user),
            redis.check_user(user).await.expect("Redis answers"),
        ) {
            (Ok(memory), Ok(redis)) => {
                assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, &step)
            }
            (Err(memory), Err(redis)) => {
                refusals += 1;
                assert_eq!(memory.kind, redis.kind, "{step}");
                assert!(
                    memory.retry_after_s.abs_diff(redis.retry_after_s) <= 1,
                    "{step}: {memory:?} vs {redis:?}"
                );
                assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, &step);
            }
            (memory, redis) => panic!("{step}: memory {memory:?}, Redis {redis:?}"),
        }
    }
    assert_eq!(refusals, 3, "the sequence reaches both limits");

    // IPv6 by its /64, IPv4-mapped as IPv4: the same keys as in memory.
    let mut refusals = 0;
    for (step, ip) in [
        "203.0.113.9",
        "::ffff:203.0.113.9",
        "203.0.113.9",
        "2001:db8:1:2::1",
        "2001:db8:1:2:ffff::9",
        "2001:db8:1:2::7",
        "2001:db8:1:3::1",
    ]
    .into_iter()
    .enumerate()
    {
        let step = format!("address check {step} ({ip})");
        let ip: IpAddr = ip.parse().unwrap();
        match (
            memory.check_ip(ip),
            redis.check_ip(ip).await.expect("Redis answers"),
        ) {
            (Ok(()), Ok(())) => {}
            (Err(memory), Err(redis)) => {
                refusals += 1;
                assert_eq!(memory.kind, redis.kind, "{step}");
                assert!(
                    memory.retry_after_s.abs_diff(redis.retry_after_s) <= 1,
                    "{step}: {memory:?} vs {redis:?}"
                );
                assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, &step);
            }
            (memory, redis) => panic!("{step}: memory {memory:?}, Redis {redis:?}"),
        }
    }
    assert_eq!(
        refusals, 2,
        "the sequence reaches the limit of both address families"
    );
}

/// Memory's checks one after the other: the address, then the user only if the address passed.
fn in_order(
    memory: &RateLimiter,
    ip: IpAddr,
    user_limit: LimitKind,
    user: &str,
) -> Result<Allowance, Refusal> {
    memory.check_ip(ip)?;
    match user_limit {
        LimitKind::PerUserStatus => memory.check_user_status(user),
        _ => memory.check_user(user),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_for_address_and_user_counts_as_the_two_checks_in_order() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = RateLimitConfig {
        per_user_burst: 3,
        per_user_per_minute: 6,
        per_ip_burst: 5,
        per_ip_per_minute: 2,
        status_per_user_per_minute: 12,
    };
    let redis = limiter(&server.url(), &config);
    assert!(redis.checks_together(), "a single server");
    let memory = RateLimiter::new(&config);
    let (home, office, lab): (IpAddr, IpAddr, IpAddr) = (
        "203.0.113.70".parse().unwrap(),
        "2001:db8:70::1".parse().unwrap(),
        "198.51.100.70".parse().unwrap(),
    );
    let evalsha_before = command_calls(&server, "evalsha");
    let sequence = [
        // Alice's burst; her fourth is refused per user, and still counted by the address.
        (home, LimitKind::PerUser, "alice"),
        (home, LimitKind::PerUser, "alice"),
        (home, LimitKind::PerUser, "alice"),
        (home, LimitKind::PerUser, "alice"),
        // The status limit is a budget of its own (12 a minute, burst 2).
        (home, LimitKind::PerUserStatus, "alice"),
        // The address's burst of 5 is spent: Bob is refused per address, and his own limit is
        // not counted, as the next steps from another address show.
        (home, LimitKind::PerUser, "bob"),
        (home, LimitKind::PerUserStatus, "bob"),
        (office, LimitKind::PerUser, "bob"),
        (office, LimitKind::PerUser, "bob"),
        (office, LimitKind::PerUser, "bob"),
        (office, LimitKind::PerUser, "bob"),
        // Bob's status budget: burst 2, from a third address.
        (lab, LimitKind::PerUserStatus, "bob"),
        (lab, LimitKind::PerUserStatus, "bob"),
        (lab, LimitKind::PerUserStatus, "bob"),
    ];
    let mut refusals = Vec::new();
    for (step, (ip, user_limit, user)) in sequence.into_iter().enumerate() {
        let step = format!("step {step} ({ip}, {}, {user})", user_limit.code());
        match (
            in_order(&memory, ip, user_limit, user),
            redis
                .check_ip_and_user(ip, user_limit, user)
                .await
                .expect("Redis answers"),
        ) {
            (Ok(memory), Ok(redis)) => {
                assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, &step)
            }
            (Err(memory), Err(redis)) => {
                assert_eq!(memory.kind, redis.kind, "{step}");
                assert!(
                    memory.retry_after_s.abs_diff(redis.retry_after_s) <= 1,
                    "{step}: {memory:?} vs {redis:?}"
                );
                assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, &step);
                refusals.push(redis.kind);
            }
            (memory, redis) => panic!("{step}: memory {memory:?}, Redis {redis:?}"),
        }
    }
    assert_eq!(
        refusals,
        [
            LimitKind::PerUser,
            LimitKind::PerIp,
            LimitKind::PerIp,
            LimitKind::PerUser,
            LimitKind::PerUserStatus,
        ],
        "the sequence reaches each limit"
    );
    assert_eq!(
        command_calls(&server, "evalsha") - evalsha_before,
        sequence.len() as u64,
        "one script call per pair of checks"
    );
    // The combined checks and the single ones share their state.
    assert!(redis.check_ip(home).await.unwrap().is_err());
    assert!(redis.check_user("alice").await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_budget_keeps_its_own_state_and_answers_as_in_memory() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Status reads: a burst of 2 per user; the address's, two users' worth: 4.
    let config = RateLimitConfig {
        per_user_burst: 1,
        per_user_per_minute: 1,
        per_ip_burst: 1,
        per_ip_per_minute: 1,
        status_per_user_per_minute: 12,
    };
    let redis = limiter(&server.url(), &config);
    let memory = RateLimiter::new(&config);
    let ip: IpAddr = "203.0.113.80".parse().unwrap();
    let mut refusals = Vec::new();
    for (step, budget) in [
        Budget::Checkout,
        Budget::Checkout,
        Budget::Status,
        Budget::Status,
        Budget::Status,
        Budget::Status,
        Budget::Status,
    ]
    .into_iter()
    .enumerate()
    {
        let step = format!("address check {step} ({budget:?})");
        match (
            memory.check_address(budget, ip),
            redis
                .check_address(budget, ip)
                .await
                .expect("Redis answers"),
        ) {
            (Ok(()), Ok(())) => {}
            (Err(memory), Err(redis)) => {
                assert_eq!(memory.kind, redis.kind, "{step}");
                assert!(
                    memory.retry_after_s.abs_diff(redis.retry_after_s) <= 1,
                    "{step}: {memory:?} vs {redis:?}"
                );
                assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, &step);
                refusals.push(redis.kind);
            }
            (memory, redis) => panic!("{step}: memory {memory:?}, Redis {redis:?}"),
        }
    }
    assert_eq!(refusals, [LimitKind::PerIp, LimitKind::PerIpStatus]);
    for (budget, kind) in [
        (Budget::Checkout, LimitKind::PerUser),
        (Budget::Status, LimitKind::PerUserStatus),
    ] {
        let (memory, redis) = (
            memory.check_user_limit(budget, "alice").unwrap(),
            redis
                .check_user_limit(budget, "alice")
                .await
                .unwrap()
                .unwrap(),
        );
        assert_same_rate_limit(&memory.rate_limit, &redis.rate_limit, kind.code());
    }
    let mut kinds: Vec<String> = server
        .keys()
        .iter()
        .filter_map(|key| key.split(':').nth(1).map(str::to_owned))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["per_ip", "per_ip_status", "per_user", "per_user_status"]
    );
}

fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.admin())
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

fn script_is_cached(server: &RedisServer) -> bool {
    let sha = redis::Script::new(GCRA_SCRIPT).get_hash().to_owned();
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(sha)
        .query(&mut server.admin())
        .expect("SCRIPT EXISTS");
    exists == [true]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_runs_by_its_sha_and_comes_back_after_script_flush() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let limiter = limiter(&server.url(), &quotas(5, 1));
    let remaining = |outcome: Result<Allowance, Refusal>| {
        parse_rate_limit(&outcome.expect("allowed").rate_limit).1
    };

    assert_eq!(remaining(limiter.check_user("frank").await.unwrap()), 4);
    assert_eq!(remaining(limiter.check_user("frank").await.unwrap()), 3);
    assert!(script_is_cached(&server));
    // Sent by its text once, when Redis did not know it; by its SHA1 otherwise.
    assert_eq!(command_calls(&server, "eval"), 1);

    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server.admin())
        .expect("SCRIPT FLUSH");
    assert!(!script_is_cached(&server));

    // The state survived the flush; only the script had to come back.
    assert_eq!(remaining(limiter.check_user("frank").await.unwrap()), 2);
    assert!(script_is_cached(&server));
    assert_eq!(remaining(limiter.check_user("frank").await.unwrap()), 1);
    assert_eq!(command_calls(&server, "eval"), 2);
    assert!(command_calls(&server, "evalsha") >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_when_their_state_is_fresh_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // One cell every 100 ms: a used cell is back within 100 ms, two within 200 ms.
    let limiter = limiter(&server.url(), &quotas(2, 600));
    let ip: IpAddr = "198.51.100.20".parse().unwrap();
    assert!(limiter.check_user("grace").await.unwrap().is_ok());
    assert!(limiter.check_user("grace").await.unwrap().is_ok());
    assert!(limiter.check_ip(ip).await.unwrap().is_ok());

    let keys = server.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut admin = server.admin();
    for key in &keys {
        let ttl_ms: i64 = redis::cmd("PTTL").arg(key).query(&mut admin).unwrap();
        let limit = if key.contains(":per_user:") { 200 } else { 100 };
        assert!(
            (1..=limit).contains(&ttl_ms),
            "{key} expires in {ttl_ms} ms, expected at most {limit}"
        );
    }

    eventually_async("every key expired", async || server.keys().is_empty()).await;
    // Gone means fresh: the whole burst again.
    let allowance = limiter.check_user("grace").await.unwrap().expect("allowed");
    assert_eq!(parse_rate_limit(&allowance.rate_limit).1, 1);
}

fn is_hash_tag(text: &str) -> bool {
    text.len() == 34
        && text.starts_with('{')
        && text.ends_with('}')
        && text[1..33]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_keyed_hashes_never_the_user_id_email_or_address() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = quotas(5, 1);
    let limiter = limiter(&server.url(), &config);
    let users = ["alice@example.com", "user-4242"];
    let ips = ["203.0.113.7", "2001:db8:abcd:12::42"];
    for user in users {
        limiter.check_user(user).await.unwrap().unwrap();
    }
    for ip in ips {
        limiter
            .check_ip(ip.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
    }

    let keys = server.keys();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for key in &keys {
        let (kind, tag) = key
            .strip_prefix(&format!("{PREFIX}:"))
            .and_then(|rest| rest.split_once(':'))
            .unwrap_or_else(|| panic!("unexpected key {key}"));
        assert!(matches!(kind, "per_user" | "per_ip"), "{key}");
        assert!(is_hash_tag(tag), "{key}");
        for raw in [
            "alice",
            "example",
            "4242",
            "203.0.113",
            "cb00:7107",
            "2001",
            "db8",
            "abcd",
        ] {
            assert!(!key.contains(raw), "{key} contains {raw}");
        }
    }

    // The same secret on another replica: the same keys, so one count.
    let replica = self::limiter(&server.url(), &config);
    replica.check_user(users[0]).await.unwrap().unwrap();
    assert_eq!(server.keys().len(), 4);
    // Another secret: other keys.
    let stranger = RedisLimiter::new(
        settings(&server.url(), false, RELAXED),
        &config,
        b"a different key secret, 32 bytes",
    )
    .unwrap();
    stranger.check_user(users[0]).await.unwrap().unwrap();
    assert_eq!(server.keys().len(), 5);
}

/// The user, password and URL of a limiter that must never appear in its errors.
const BFF_USER: &str = "bff";
const BFF_PASSWORD: &str = "bff-pa55-word";

fn assert_names_only_the_address(err: &BackendError, server: &RedisServer) {
    let url = format!("redis://{BFF_USER}:{BFF_PASSWORD}@{}", server.addr());
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(text.contains(&server.addr()), "{text}");
        assert!(!text.contains(BFF_PASSWORD), "{text}");
        assert!(!text.contains(&url), "{text}");
        assert!(!text.contains("redis://"), "{text}");
    }
    assert_eq!(err.addr(), server.addr());
}

fn server_with_acl_user() -> Option<RedisServer> {
    let password = format!(">{BFF_PASSWORD}");
    RedisServer::start_with(
        &[
            "--requirepass",
            "admin-password",
            "--user",
            BFF_USER,
            "on",
            &password,
            "~*",
            "+@all",
        ],
        Some("admin-password"),
    )
}

async fn until_allowed(limiter: &RedisLimiter, user: &str) -> Duration {
    let started = Instant::now();
    loop {
        match limiter.check_user(user).await {
            Ok(outcome) => {
                assert!(outcome.is_ok(), "{user} was refused after recovery");
                return started.elapsed();
            }
            Err(err) => assert!(
                started.elapsed() < EVENTUALLY,
                "no recovery within {EVENTUALLY:?}: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_is_a_backend_error_and_checks_recover_when_it_is_back() {
    let Some(mut server) = server_with_acl_user() else {
        return;
    };
    let url = format!("redis://{BFF_USER}:{BFF_PASSWORD}@{}", server.addr());
    let timeout = Duration::from_millis(200);
    let limiter =
        RedisLimiter::new(settings(&url, false, timeout), &quotas(3, 1), KEY_SECRET).unwrap();
    assert!(limiter.check_user("heidi").await.unwrap().is_ok());

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = limiter
            .check_user("heidi")
            .await
            .expect_err("Redis is down");
        // Bounded by the timeout, with room for a busy machine; a refused connection is faster.
        assert!(started.elapsed() < timeout + Duration::from_secs(15));
        assert!(
            matches!(err.failure(), Failure::Connection(_) | Failure::Timeout(_)),
            "{err:?}"
        );
        assert_names_only_the_address(&err, &server);
        eprintln!("stopped: {err}");
    }
    assert!(limiter.ping().await.is_err());

    server.restart();
    let took = until_allowed(&limiter, "heidi").await;
    eprintln!("recovered {took:?} after the restart");
    assert!(limiter.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_does_not_answer_is_a_timeout_and_checks_recover_when_it_answers() {
    let Some(server) = server_with_acl_user() else {
        return;
    };
    let url = format!("redis://{BFF_USER}:{BFF_PASSWORD}@{}", server.addr());
    let timeout = Duration::from_millis(200);
    let limiter =
        RedisLimiter::new(settings(&url, false, timeout), &quotas(3, 1), KEY_SECRET).unwrap();
    assert!(limiter.check_user("ivan").await.unwrap().is_ok());

    server.pause();
    for _ in 0..3 {
        let started = Instant::now();
        // The outer bound turns a call that would hang into a failure of this test.
        let err = tokio::time::timeout(EVENTUALLY, limiter.check_ip("192.0.2.1".parse().unwrap()))
            .await
            .expect("the call ends by itself");
        let elapsed = started.elapsed();
        let err = err.expect_err("a frozen Redis answers nothing");
        assert_eq!(err.failure(), &Failure::Timeout(timeout), "{err:?}");
        assert!(elapsed >= timeout, "gave up after {elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_secs(15),
            "took {elapsed:?}"
        );
        assert_names_only_the_address(&err, &server);
        eprintln!("frozen: {err}");
    }

    server.resume();
    let took = until_allowed(&limiter, "ivan").await;
    eprintln!("recovered {took:?} after the server was resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_recovers_once_the_server_accepts_it() {
    let Some(server) = RedisServer::start_with(
        &["--requirepass", "the-old-password"],
        Some("the-old-password"),
    ) else {
        return;
    };
    let url = format!("redis://:the-new-password@{}", server.addr());
    let limiter =
        RedisLimiter::new(settings(&url, false, RELAXED), &quotas(3, 1), KEY_SECRET).unwrap();
    let err = limiter
        .check_user("judy")
        .await
        .expect_err("a wrong password");
    eprintln!("refused password: {err}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(text.contains(&server.addr()), "{text}");
        assert!(!text.contains("the-new-password"), "{text}");
    }

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("the-new-password")
        .query(&mut server.admin())
        .unwrap();
    let took = until_allowed(&limiter, "judy").await;
    eprintln!("recovered {took:?} after the password was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_lets_exactly_the_burst_through() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let config = quotas(3, 1);
    // Two replicas, each told of a different node.
    let limiters = [
        cluster_limiter(&cluster.url(0), &config),
        cluster_limiter(&cluster.url(1), &config),
    ];
    // The address's and the user's keys are in different slots: a call each.
    assert!(!limiters[0].checks_together());
    let users = ["kim", "lou", "mia", "ned", "oli", "pat"];
    for user in users {
        assert_eq!(
            burst_of_users(&limiters, user).await,
            EXACTLY_THE_BURST,
            "{user}"
        );
    }
    for ip in ["203.0.113.80", "2001:db8:80::1"] {
        assert_eq!(
            burst_of_addresses(&limiters, ip.parse().unwrap()).await,
            EXACTLY_THE_BURST,
            "{ip}"
        );
    }

    let keys = cluster.keys_by_node();
    assert_eq!(keys.iter().map(Vec::len).sum::<usize>(), 8, "{keys:?}");
    assert!(
        keys.iter().filter(|node| !node.is_empty()).count() >= 2,
        "the keys are spread over the masters: {keys:?}"
    );

    // Every node forgets the script; the next checks still count against the same state.
    for node in &cluster.nodes {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut node.admin())
            .unwrap();
    }
    for user in users {
        assert!(
            limiters[1].check_user(user).await.unwrap().is_err(),
            "{user}"
        );
    }
    assert!(limiters[0].check_user("quinn").await.unwrap().is_ok());
    assert!(limiters[0].ping().await.is_ok());
}

#[tokio::test]
async fn settings_are_checked_and_errors_never_show_the_url() {
    let config = quotas(3, 1);
    let new = |url: &str, prefix: &str, timeout: Duration, secret: &'static [u8]| {
        let settings = RedisSettings {
            url: SecretString::from(url),
            cluster: false,
            key_prefix: prefix.to_owned(),
            timeout,
        };
        RedisLimiter::new(settings, &config, secret)
    };
    let good = "redis://app:hunter2-secret@127.0.0.1:1";
    let second = Duration::from_secs(1);

    assert!(new(good, PREFIX, second, KEY_SECRET).is_ok());
    for (url, prefix, timeout, secret) in [
        (
            "http://app:hunter2-secret@127.0.0.1:1",
            PREFIX,
            second,
            KEY_SECRET,
        ),
        ("redis://app:hunter2-secret@/0", PREFIX, second, KEY_SECRET),
        ("hunter2-secret", PREFIX, second, KEY_SECRET),
        (
            "redis://app:hunter2-secret@127.0.0.1:1/not-a-db",
            PREFIX,
            second,
            KEY_SECRET,
        ),
        (good, "", second, KEY_SECRET),
        (good, "a{b}", second, KEY_SECRET),
        (good, PREFIX, Duration::ZERO, KEY_SECRET),
        (good, PREFIX, second, b"too short"),
    ] {
        let err: RedisSetupError = new(url, prefix, timeout, secret).expect_err("refused settings");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    // Nothing listens on port 1: the error says where, not how we log in.
    let limiter = new(good, PREFIX, second, KEY_SECRET).unwrap();
    let err = limiter
        .check_user("kate")
        .await
        .expect_err("nothing listens");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// actix-web's layout: one limiter shared by workers, each a single-threaded runtime of its own;
/// a worker that stops takes its tasks with it, and must not take the others' checks along.
#[test]
fn one_limiter_serves_single_threaded_workers_and_outlives_one_of_them() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let limiter = limiter(&server.url(), &quotas(3, 1));

    let worker = |limiter: Arc<RedisLimiter>| {
        std::thread::spawn(move || {
            current_thread_runtime().block_on(async {
                let mut allowed = 0;
                for _ in 0..20 {
                    let outcome = tokio::time::timeout(EVENTUALLY, limiter.check_user("rob"))
                        .await
                        .expect("a check ends")
                        .expect("Redis answers");
                    allowed += usize::from(outcome.is_ok());
                }
                allowed
            })
        })
    };
    // Both workers end, and with them their runtimes and whatever tasks ran on them.
    let allowed: usize = [worker(limiter.clone()), worker(limiter.clone())]
        .into_iter()
        .map(|worker| worker.join().expect("the worker"))
        .sum();
    assert_eq!(allowed, 3);

    // A worker started later still gets answers.
    let later = std::thread::spawn(move || {
        current_thread_runtime().block_on(async {
            tokio::time::timeout(EVENTUALLY, until_allowed(&limiter, "sam"))
                .await
                .expect("the limiter works from a new worker")
        })
    });
    let took = later.join().expect("the later worker");
    eprintln!("a new worker was answered after {took:?}");
}

const REDISS_URL_VAR: &str = "PROOF_BFF_TEST_REDISS_URL";

/// TLS with a private CA, trusted the way a partner would trust theirs: `SSL_CERT_FILE`. The
/// variable is read when connecting, and setting it inside this multi-threaded test binary would
/// race the other tests, so the trusting half runs in a child process of this same binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_connects_with_tls_to_a_server_whose_ca_is_trusted() {
    if let Ok(url) = std::env::var(REDISS_URL_VAR) {
        // The child: SSL_CERT_FILE names the CA.
        let limiter = limiter(&url, &quotas(3, 1));
        assert!(limiter.check_user("tess").await.expect("TLS works").is_ok());
        assert!(limiter.ping().await.is_ok());
        return;
    }
    if redis_support::binaries().is_none() {
        return;
    }
    let certificates = redis_support::TestCertificates::generate();
    let tls_port = redis_support::free_port().to_string();
    let path = |path: &std::path::Path| path.to_str().expect("a UTF-8 path").to_owned();
    let password = format!(">{BFF_PASSWORD}");
    let Some(server) = RedisServer::start_with(
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &path(&certificates.cert),
            "--tls-key-file",
            &path(&certificates.key),
            "--tls-ca-cert-file",
            &path(&certificates.ca),
            "--tls-auth-clients",
            "no",
            "--user",
            BFF_USER,
            "on",
            &password,
            "~*",
            "+@all",
        ],
        None,
    ) else {
        return;
    };
    let url = format!("rediss://{BFF_USER}:{BFF_PASSWORD}@127.0.0.1:{tls_port}");

    // Without the CA the server's certificate is refused: the connection is verified.
    let untrusting = limiter(&url, &quotas(3, 1));
    let err = untrusting
        .check_user("tess")
        .await
        .expect_err("an unknown CA");
    eprintln!("unknown CA: {err}");
    assert!(matches!(err.failure(), Failure::Connection(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(BFF_PASSWORD), "{err:?}");
    assert!(server.keys().is_empty());

    let output = tokio::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "rediss_connects_with_tls_to_a_server_whose_ca_is_trusted",
            "--nocapture",
        ])
        .env(REDISS_URL_VAR, &url)
        .env("SSL_CERT_FILE", &certificates.ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .await
        .expect("the child test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It counted through TLS: its key is there.
    assert_eq!(server.keys().len(), 1);
}

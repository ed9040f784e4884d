//! `rate_limit.backend = "redis"` over HTTP: replicas sharing one real `redis-server`, or a
//! three-master Redis Cluster (`redis_cluster = true`), count together, answer with the in-memory
//! backend's headers, and follow `on_backend_error` and `/readyz` while Redis is down and after it
//! is back, without a restart.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use proof_bff::config::{OnBackendError, RateLimitBackend, Settings};
use proof_bff::startup::Application;
use secrecy::SecretString;
use wiremock::MockServer;

use crate::helpers::*;
use crate::redis_support::{RedisCluster, RedisServer};

/// The per-call bound where a test is not about timeouts: generous, for a busy CI machine.
const RELAXED_TIMEOUT_MS: u64 = 5000;

/// One instance of the service, started like production, in front of a Proof it may share.
struct Replica {
    address: String,
    client: reqwest::Client,
}

async fn spawn_replica(proof: &MockServer, customise: impl FnOnce(&mut Settings)) -> Replica {
    logs();
    let mut settings = base_settings(proof);
    customise(&mut settings);
    let config = settings.validate().expect("test settings are valid");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let application =
        Application::build_with_listener(config, listener).expect("application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    Replica { address, client }
}

pub(crate) fn use_redis(settings: &mut Settings, redis: &RedisServer, on_error: OnBackendError) {
    settings.rate_limit.backend = RateLimitBackend::Redis;
    settings.rate_limit.redis_url = SecretString::from(redis.url());
    settings.rate_limit.redis_timeout_ms = RELAXED_TIMEOUT_MS;
    settings.rate_limit.on_backend_error = on_error;
}

/// A `redis-server` of the test's own, a Proof that creates every session, and a replica on both
/// with `on_error`, once ready; None when the Redis tests are skipped.
async fn ready_replica_on_own_redis(
    on_error: OnBackendError,
    customise: impl FnOnce(&mut Settings),
) -> Option<(RedisServer, MockServer, Replica)> {
    let redis = RedisServer::start()?;
    let proof = MockServer::start().await;
    widget_session_ok().mount(&proof).await;
    let app = spawn_replica(&proof, |s| {
        use_redis(s, &redis, on_error);
        customise(s);
    })
    .await;
    app.wait_for_readyz(200).await;
    Some((redis, proof, app))
}

impl Replica {
    fn checkout_as(&self, token: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/start-checkout", self.address))
            .header("Origin", APP_ORIGIN)
            .header("Cookie", format!("session={token}"))
            .json(&checkout_body())
    }

    async fn readyz(&self) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(format!("{}/readyz", self.address))
            .send()
            .await
            .expect("/readyz answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Polls `/readyz` until it answers `status`, for at most [`EVENTUALLY`].
    async fn wait_for_readyz(&self, status: u16) -> serde_json::Value {
        let answers = async || {
            let (now, body) = self.readyz().await;
            (now == status).then_some(body)
        };
        match within_async(EVENTUALLY, answers).await {
            Some(body) => body,
            None => {
                let (now, body) = self.readyz().await;
                panic!("/readyz still answers {now} {body} after {EVENTUALLY:?}, not {status}")
            }
        }
    }
}

async fn proof_calls(proof: &MockServer) -> usize {
    proof.received_requests().await.unwrap_or_default().len()
}

/// What one checkout of a burst was answered.
struct Answer {
    status: u16,
    /// The error envelope's `error` and `code`, for an answer other than 200.
    error: Option<(String, String)>,
    retry_after: bool,
}

/// `200`, or `429 rate_limited/per_user +Retry-After`: short, for a list of forty.
impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some((error, code)) = &self.error {
            write!(f, " {error}/{code}")?;
        }
        if self.retry_after {
            write!(f, " +Retry-After")?;
        }
        Ok(())
    }
}

/// 40 checkouts released at once, alternating between the replicas; what each was answered.
async fn burst_over(
    replicas: &[&Replica],
    request_for: impl Fn(&Replica, usize) -> reqwest::RequestBuilder,
) -> Vec<Answer> {
    const CHECKOUTS: usize = 40;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CHECKOUTS));
    let tasks: Vec<_> = (0..CHECKOUTS)
        .map(|i| {
            let request = request_for(replicas[i % replicas.len()], i);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let response = request.send().await.expect("the checkout answers");
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let error = if status == 200 {
                    None
                } else {
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
                    Some((field("error"), field("code")))
                };
                Answer {
                    status,
                    error,
                    retry_after,
                }
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("the checkout task"));
    }
    answers
}

/// Exactly three checkouts served, every other one refused with 429, our envelope naming `limit`,
/// and `Retry-After`.
fn assert_exactly_three_served(answers: &[Answer], limit: &str) {
    let served = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(served, 3, "{answers:?}");
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(answer.status, 429, "{answers:?}");
        assert_eq!(
            answer.error,
            Some(("rate_limited".to_owned(), limit.to_owned())),
            "{answers:?}"
        );
        assert!(answer.retry_after, "{answers:?}");
    }
}

/// Where the replicas keep their limits: one `redis-server`, or a Redis Cluster.
#[derive(Clone, Copy)]
enum Shared<'a> {
    Server(&'a RedisServer),
    /// Each replica is told of a different master and finds the others itself.
    Cluster(&'a RedisCluster),
}

impl Shared<'_> {
    /// Points the settings of the `replica`-th replica at this Redis.
    fn configure(self, settings: &mut Settings, replica: usize) {
        match self {
            Self::Server(redis) => use_redis(settings, redis, OnBackendError::Deny),
            Self::Cluster(cluster) => {
                let node = &cluster.nodes[replica % cluster.nodes.len()];
                use_redis(settings, node, OnBackendError::Deny);
                settings.rate_limit.redis_cluster = true;
            }
        }
    }

    /// Every key, on every node.
    fn keys(self) -> Vec<String> {
        match self {
            Self::Server(redis) => redis.keys(),
            Self::Cluster(cluster) => cluster.keys_by_node().concat(),
        }
    }

    /// Two replicas in front of one Proof, both using this Redis with `quotas`, both ready.
    async fn two_replicas(
        self,
        proof: &MockServer,
        quotas: impl Fn(&mut Settings),
    ) -> (Replica, Replica) {
        let mut replicas = Vec::new();
        for replica in 0..2 {
            let replica = spawn_replica(proof, |s| {
                self.configure(s, replica);
                quotas(s);
            })
            .await;
            replica.wait_for_readyz(200).await;
            replicas.push(replica);
        }
        let b = replicas.pop().unwrap();
        let a = replicas.pop().unwrap();
        (a, b)
    }
}

/// The keys of one limit (`per_user` or `per_ip`) among `keys`.
fn keys_of<'k>(keys: &'k [String], limit: &str) -> Vec<&'k String> {
    let prefix = format!("proof-bff:{limit}:{{");
    keys.iter().filter(|key| key.starts_with(&prefix)).collect()
}

/// One user's 40 concurrent checkouts, spread over two replicas sharing `redis`, with a burst of 3:
/// exactly 3 are served and reach Proof, the rest are refused by the per-user limit, whose one key
/// is in `redis`.
async fn one_users_burst_over_two_replicas(redis: Shared<'_>) {
    let proof = MockServer::start().await;
    widget_session_ok().mount(&proof).await;
    let (a, b) = redis
        .two_replicas(&proof, |s| {
            s.rate_limit.per_user_burst = 3;
            s.rate_limit.per_user_per_minute = 1;
        })
        .await;

    let token = session_token();
    let answers = burst_over(&[&a, &b], |replica, _| replica.checkout_as(&token)).await;

    assert_exactly_three_served(&answers, "per_user");
    assert_eq!(proof_calls(&proof).await, 3);
    // The state lives until the burst is whole again, three minutes from now.
    let keys = redis.keys();
    assert_eq!(keys_of(&keys, "per_user").len(), 1, "{keys:?}");
}

/// 40 concurrent checkouts of distinct users from one client address, named by the trusted proxy
/// in front of both replicas sharing `redis`, with a burst of 3: exactly 3 are served and reach
/// Proof, the rest are refused by the per-address limit, whose one key is in `redis`; another
/// address is not affected.
async fn one_addresses_burst_over_two_replicas(redis: Shared<'_>) {
    let proof = MockServer::start().await;
    widget_session_ok().mount(&proof).await;
    let (a, b) = redis
        .two_replicas(&proof, |s| {
            s.rate_limit.per_ip_burst = 3;
            s.rate_limit.per_ip_per_minute = 1;
            s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .await;

    let answers = burst_over(&[&a, &b], |replica, i| {
        replica
            .checkout_as(&session_token_for(&format!("user-{i}"), "u@example.org"))
            .header("X-Forwarded-For", "203.0.113.7")
    })
    .await;

    assert_exactly_three_served(&answers, "per_ip");
    assert_eq!(proof_calls(&proof).await, 3);
    let keys = redis.keys();
    assert_eq!(keys_of(&keys, "per_ip").len(), 1, "{keys:?}");
    // Another address is not affected.
    let other = a
        .checkout_as(&session_token_for("user-other", "u@example.org"))
        .header("X-Forwarded-For", "203.0.113.8")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn two_replicas_sharing_redis_let_exactly_one_users_burst_through() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    one_users_burst_over_two_replicas(Shared::Server(&redis)).await;
}

#[tokio::test]
async fn two_replicas_sharing_redis_let_exactly_one_addresses_burst_through() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    one_addresses_burst_over_two_replicas(Shared::Server(&redis)).await;
}

// On a cluster, the replicas are told of different masters: a connection that did not follow the
// cluster's routing would be answered `MOVED` by one of them, which `deny` turns into 503s; and the
// limit's key is looked for on every master.

#[tokio::test]
async fn two_replicas_on_a_redis_cluster_let_exactly_one_users_burst_through() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    one_users_burst_over_two_replicas(Shared::Cluster(&cluster)).await;
}

#[tokio::test]
async fn two_replicas_on_a_redis_cluster_let_exactly_one_addresses_burst_through() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    one_addresses_burst_over_two_replicas(Shared::Cluster(&cluster)).await;
}

/// `"per_user";r=2;t=40` as its name, remaining and reset.
fn parse_rate_limit(value: &str) -> (String, u64, u64) {
    let mut parts = value.split(';');
    let name = parts.next().unwrap_or_default().to_owned();
    let mut number = |prefix: &str| {
        parts
            .next()
            .and_then(|part| part.strip_prefix(prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a RateLimit value: {value}"))
    };
    let remaining = number("r=");
    let reset = number("t=");
    (name, remaining, reset)
}

#[tokio::test]
async fn the_redis_backend_answers_with_the_memory_backends_headers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proof = MockServer::start().await;
    widget_session_ok().mount(&proof).await;
    let quotas = |s: &mut Settings| {
        s.rate_limit.per_user_burst = 3;
        s.rate_limit.per_user_per_minute = 6;
        s.rate_limit.per_ip_burst = 5;
        s.rate_limit.per_ip_per_minute = 2;
    };
    let memory = spawn_replica(&proof, quotas).await;
    let shared = spawn_replica(&proof, |s| {
        quotas(s);
        use_redis(s, &redis, OnBackendError::Deny);
    })
    .await;
    shared.wait_for_readyz(200).await;

    // A bad session (counted by the address), the user's burst, its refusal, then the address's
    // refusal for another user and for a bad session.
    let alice = session_token_for("alice", "alice@example.org");
    let bob = session_token_for("bob", "bob@example.org");
    let forged = "not.a.session".to_owned();
    let sequence = [&forged, &alice, &alice, &alice, &alice, &bob, &forged];
    let expected = [401, 200, 200, 200, 429, 429, 429];
    for (step, token) in sequence.iter().enumerate() {
        let from_memory = memory.checkout_as(token).send().await.unwrap();
        let from_redis = shared.checkout_as(token).send().await.unwrap();
        assert_eq!(from_memory.status(), from_redis.status(), "step {step}");
        assert_eq!(from_redis.status(), expected[step], "step {step}");
        if from_redis.status() == 401 {
            continue;
        }
        let (memory_headers, redis_headers) = (from_memory.headers(), from_redis.headers());
        assert_eq!(
            memory_headers.get("ratelimit-policy"),
            redis_headers.get("ratelimit-policy"),
            "step {step}"
        );
        assert!(
            redis_headers.contains_key("ratelimit-policy"),
            "step {step}"
        );
        let header = |headers: &reqwest::header::HeaderMap, name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("step {step}: no {name}"))
        };
        let (m_name, m_remaining, m_reset) = parse_rate_limit(&header(memory_headers, "ratelimit"));
        let (r_name, r_remaining, r_reset) = parse_rate_limit(&header(redis_headers, "ratelimit"));
        assert_eq!((m_name, m_remaining), (r_name, r_remaining), "step {step}");
        // Whole seconds, from two clocks a few milliseconds apart.
        assert!(m_reset.abs_diff(r_reset) <= 1, "step {step}");
        if from_memory.status() == 429 {
            let (m, r) = (
                header(memory_headers, "retry-after"),
                header(redis_headers, "retry-after"),
            );
            let (m, r): (u64, u64) = (m.parse().unwrap(), r.parse().unwrap());
            assert!(m.abs_diff(r) <= 1, "step {step}: {m} vs {r}");
            let body: serde_json::Value = from_redis.json().await.unwrap();
            let limit = if step < 5 { "per_user" } else { "per_ip" };
            assert_eq!(body["code"], limit, "step {step}");
        }
    }
    // Alice's burst, on each backend; Bob's two are over the address's limit.
    assert_eq!(proof_calls(&proof).await, 2 * 3);
    let keys = redis.keys();
    for limit in ["per_user", "per_ip"] {
        assert!(
            keys.iter()
                .any(|key| key.starts_with(&format!("proof-bff:{limit}:{{"))),
            "the shared replica's {limit} state is in Redis: {keys:?}"
        );
    }
}

#[tokio::test]
async fn with_deny_a_stopped_redis_refuses_checkouts_and_readiness_until_it_is_back() {
    let Some((mut redis, proof, app)) =
        ready_replica_on_own_redis(OnBackendError::Deny, |_| {}).await
    else {
        return;
    };
    let token = session_token();
    assert_eq!(app.checkout_as(&token).send().await.unwrap().status(), 200);
    assert_eq!(proof_calls(&proof).await, 1);

    redis.stop();
    let response = app.checkout_as(&token).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    assert_eq!(body["code"], "rate_limit_backend");
    assert!(body["message"].is_string());
    assert_eq!(proof_calls(&proof).await, 1, "Proof is not called");
    let body = app.wait_for_readyz(503).await;
    assert_eq!(body["code"], "rate_limit_backend");

    redis.restart();
    app.wait_for_readyz(200).await;
    eventually_async("checkouts accepted again", async || {
        let status = app.checkout_as(&token).send().await.unwrap().status();
        if status == 200 {
            return true;
        }
        assert_eq!(status, 503);
        false
    })
    .await;
    assert_eq!(proof_calls(&proof).await, 2);
}

/// Each HTTP worker has its own Redis connection, which hears of a restart only when it is next
/// used: once `/readyz` is 200 again, no worker may refuse its first checkout for it.
#[tokio::test]
async fn once_ready_after_a_redis_restart_no_worker_refuses_a_checkout() {
    const WORKERS: usize = 3;
    let Some((mut redis, proof, app)) =
        ready_replica_on_own_redis(OnBackendError::Deny, |s| s.server.workers = WORKERS).await
    else {
        return;
    };
    let token = session_token();
    // Each checkout on a connection of its own: connections go to the workers in turn, so every
    // worker's own connection to Redis is made and used.
    let checkout_on_new_connection = || {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        client
            .post(format!("{}/start-checkout", app.address))
            .header("Origin", APP_ORIGIN)
            .header("Cookie", format!("session={token}"))
            .json(&checkout_body())
            .send()
    };
    for i in 0..2 * WORKERS {
        let response = checkout_on_new_connection().await.unwrap();
        assert_eq!(response.status(), 200, "checkout {i} before the restart");
    }

    redis.restart();
    app.wait_for_readyz(200).await;
    for i in 0..2 * WORKERS {
        let response = checkout_on_new_connection().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "checkout {i} after the restart: {body}");
    }
    assert_eq!(proof_calls(&proof).await, 4 * WORKERS);
}

/// The JSON log events whose message contains `message` and whose error names `addr`.
fn warnings_about(addr: &str, message: &str) -> Vec<serde_json::Value> {
    logs()
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(message))
                && event["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(addr))
        })
        .collect()
}

#[tokio::test]
async fn with_allow_a_stopped_redis_is_served_and_warned_about_at_most_once_a_second() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let proof = MockServer::start().await;
    widget_session_ok().mount(&proof).await;
    let app = spawn_replica(&proof, |s| use_redis(s, &redis, OnBackendError::Allow)).await;
    redis.stop();

    const REQUESTS: usize = 30;
    let token = session_token();
    let started = Instant::now();
    for i in 0..REQUESTS {
        let response = app.checkout_as(&token).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert!(response.headers().contains_key("ratelimit-policy"));
        assert!(
            !response.headers().contains_key("ratelimit"),
            "request {i}: no standing to report"
        );
    }
    // Past the interval: the next failure is warned about, with the count of those held back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.checkout_as(&token).send().await.unwrap().status(), 200);
    let elapsed = started.elapsed();
    assert_eq!(proof_calls(&proof).await, REQUESTS + 1);
    // Still ready: with allow, checkouts do not need Redis.
    assert_eq!(app.readyz().await.0, 200);

    let warnings = warnings_about(&redis.addr(), "let through unchecked");
    let most = usize::try_from(elapsed.as_secs()).unwrap() + 1;
    assert!(
        (2..=most).contains(&warnings.len()),
        "{} warnings in {elapsed:?}: {warnings:?}",
        warnings.len()
    );
    // Each request failed one call (a single server checks the address and the user together).
    // Every failure is in some line's count: the last request's, after the interval, is a line.
    let represented: u64 = warnings
        .iter()
        .map(|w| 1 + w["fields"]["suppressed"].as_u64().expect("a count"))
        .sum();
    let failures = REQUESTS as u64 + 1;
    assert_eq!(
        represented, failures,
        "failures in the warnings: {warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .skip(1)
            .any(|w| w["fields"]["suppressed"].as_u64() > Some(0)),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn the_completion_line_names_what_the_shared_limits_decided() {
    let Some((mut redis, _proof, app)) = ready_replica_on_own_redis(OnBackendError::Deny, |s| {
        s.rate_limit.per_user_burst = 1;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await
    else {
        return;
    };
    let token = session_token_for("shared-decision-user", "shared.decision@example.org");
    let decided = |request_id: &str| {
        let lines = log_events_with_message(request_id, "request completed");
        assert_eq!(lines.len(), 1, "{request_id}: {lines:?}");
        lines[0]["span"]["rate_limit"].clone()
    };
    // Both limits in one round trip: the first checkout is let through, the second is the user's
    // limit's, then a stopped Redis refuses (on_backend_error = "deny").
    for (request_id, status) in [
        ("shared-decision-allowed", 200),
        ("shared-decision-per-user", 429),
    ] {
        let response = app
            .checkout_as(&token)
            .header("X-Request-Id", request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{request_id}");
    }
    assert_eq!(decided("shared-decision-allowed"), "allowed");
    assert_eq!(decided("shared-decision-per-user"), "per_user");
    redis.stop();
    let response = app
        .checkout_as(&token)
        .header("X-Request-Id", "shared-decision-down")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(decided("shared-decision-down"), "backend_unavailable");
}

//! Double-submit protection over HTTP: `Idempotency-Key` replays, 409 and 422, the dedupe window,
//! with the in-memory store and with replicas sharing a real `redis-server`.

use proof_bff::config::Settings;
use reqwest::RequestBuilder;
use wiremock::MockServer;

use crate::errors::expect_error;
use crate::helpers::*;
use crate::redis_support::RedisServer;

const KEY: &str = "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"";

fn with_key(request: RequestBuilder, key: &str) -> RequestBuilder {
    request.header("Idempotency-Key", key)
}

fn other_checkout() -> serde_json::Value {
    serde_json::json!({"network": "TRC20", "currency": "USDT", "amount": "250"})
}

/// Status, the headers a replay is compared on, and the bytes.
struct Answer {
    status: u16,
    content_type: Option<String>,
    replayed: bool,
    rate_limit: bool,
    body: Vec<u8>,
}

async fn answer(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (content_type, replayed) = (header("content-type"), header("idempotent-replayed"));
    let rate_limit = header("ratelimit").is_some() && header("ratelimit-policy").is_some();
    Answer {
        status: response.status().as_u16(),
        content_type,
        replayed: replayed.as_deref() == Some("true"),
        rate_limit,
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn send(request: RequestBuilder) -> Answer {
    answer(request.send().await.expect("the service answers")).await
}

/// `request` is refused with 409 `request_in_progress` and `Retry-After: 1`.
async fn expect_in_progress(request: RequestBuilder) {
    let response = request.send().await.unwrap();
    let conflict = expect_error(response, 409, "conflict", "request_in_progress").await;
    assert_eq!(conflict.headers["retry-after"], "1");
}

/// `request` is refused with 422 `idempotency_key_reused`.
async fn expect_key_reused(request: RequestBuilder) {
    let response = request.send().await.unwrap();
    expect_error(response, 422, "invalid_request", "idempotency_key_reused").await;
}

/// `second` is a replay of `first`: the same status, Content-Type and bytes, marked as a replay.
fn assert_replay_of(second: &Answer, first: &Answer) {
    assert!(!first.replayed, "the first answer is not a replay");
    assert!(second.replayed, "Idempotent-Replayed: true on the replay");
    assert_eq!(second.status, first.status);
    assert_eq!(second.content_type, first.content_type);
    assert_eq!(
        String::from_utf8_lossy(&second.body),
        String::from_utf8_lossy(&first.body)
    );
    assert!(second.rate_limit, "a replay carries the RateLimit headers");
}

// --- In one instance ---

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_byte_for_byte_and_proof_is_called_once() {
    let app = spawn_app().await;
    app.proof_answers(widget_session_answer()).await;

    let first = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    // The same checkout in other JSON spelling is the same request.
    let retry = send(
        with_key(app.checkout(), KEY)
            .header("Content-Type", "application/json")
            .body(r#"{ "amount": "100", "currency": "USDT",  "network": "TRC20" }"#),
    )
    .await;

    assert_eq!(first.status, 200);
    assert_eq!(first.body, WIDGET_SESSION_BODY.as_bytes());
    assert_replay_of(&retry, &first);
    assert_eq!(app.proof_requests().await.len(), 1, "Proof is called once");
}

#[tokio::test]
async fn the_same_key_with_another_checkout_is_422_and_proof_is_not_called_again() {
    let app = spawn_app().await;
    app.proof_answers(widget_session_answer()).await;
    send(with_key(app.checkout(), KEY).json(&checkout_body())).await;

    expect_key_reused(with_key(app.checkout(), KEY).json(&other_checkout())).await;
    assert_eq!(app.proof_requests().await.len(), 1);
}

#[tokio::test]
async fn a_retry_while_the_first_is_at_proof_is_409_with_retry_after_then_a_replay() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let app = spawn_app_with(|s| proof_holding_answers(s, &proof)).await;
    let first = send_until_proof_has_it(
        with_key(app.checkout_on_own_connection(), KEY).json(&checkout_body()),
        &proof,
    )
    .await;

    expect_in_progress(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    // Another checkout under the key is refused as reused even while the first is served.
    expect_key_reused(with_key(app.checkout(), KEY).json(&other_checkout())).await;

    proof.release();
    let first = answer(first.await.unwrap().unwrap()).await;
    assert_eq!(first.status, 200);
    let retry = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    assert_replay_of(&retry, &first);
    assert_eq!(proof.requests(), 1, "Proof is called once");
}

#[tokio::test]
async fn two_users_with_equal_keys_do_not_share_answers() {
    let app = spawn_app().await;
    app.proof_answers_first(1, proof_json(200, r#"{"for":"alice"}"#))
        .await;
    app.proof_answers(proof_json(200, r#"{"for":"bob"}"#)).await;

    let alice = send(
        with_key(
            app.checkout_as(&session_token_for("alice", "a@example.org")),
            KEY,
        )
        .json(&checkout_body()),
    )
    .await;
    let bob = send(
        with_key(
            app.checkout_as(&session_token_for("bob", "b@example.org")),
            KEY,
        )
        .json(&checkout_body()),
    )
    .await;

    assert_eq!(alice.body, br#"{"for":"alice"}"#);
    assert_eq!(bob.body, br#"{"for":"bob"}"#);
    assert!(!bob.replayed);
    assert_eq!(app.proof_requests().await.len(), 2);
}

#[tokio::test]
async fn proofs_own_4xx_is_replayed_but_its_429_and_the_services_own_errors_are_not_kept() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 1).await;
    // Key one: Proof's own 4xx is the answer to this checkout, replayed as it came.
    app.proof_answers_first(
        1,
        proof_answer(
            422,
            r#"{"error":"invalid_request","code":"amount_too_low"}"#,
            "application/problem+json",
        ),
    )
    .await;
    let first = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    let retry = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    assert_eq!(first.status, 422);
    assert_eq!(
        first.content_type.as_deref(),
        Some("application/problem+json")
    );
    assert_replay_of(&retry, &first);
    assert_eq!(app.proof_requests().await.len(), 1);

    // Key two: Proof's 429 asks for a later retry, which goes to Proof again.
    app.proof_answers_first(1, proof_error_answer(429, "rate_limited", "too_many"))
        .await;
    let key = "\"second\"";
    assert_eq!(
        send(with_key(app.checkout(), key).json(&checkout_body()))
            .await
            .status,
        429
    );
    // Key three: the service's own 502 (a 400 that is an HTML page, not Proof's) is not kept either.
    app.proof_answers_first(1, proof_answer(400, "<html>bad</html>", "text/html"))
        .await;
    let third = "\"third\"";
    let failed = with_key(app.checkout(), third)
        .json(&checkout_body())
        .send()
        .await
        .unwrap();
    expect_error(failed, 502, "upstream_error", "invalid_upstream_response").await;

    app.proof_answers(widget_session_answer()).await;
    for key in [key, third] {
        let retry = send(with_key(app.checkout(), key).json(&checkout_body())).await;
        assert_eq!((retry.status, retry.replayed), (200, false), "{key}");
    }
    assert_eq!(app.proof_requests().await.len(), 5);
}

#[tokio::test]
async fn a_malformed_or_repeated_key_is_a_400_and_proof_is_not_called() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    let too_long = format!("\"{}\"", "k".repeat(256));
    for key in ["unquoted", "\"\"", "\"caf\u{e9}\"", too_long.as_str()] {
        let response = with_key(app.checkout(), key)
            .json(&checkout_body())
            .send()
            .await
            .unwrap();
        let refused = expect_error(response, 400, "invalid_request", "validation_error").await;
        assert!(refused.message.contains("Idempotency-Key"), "{key}");
        assert!(!refused.message.contains("caf"), "the key is not echoed");
    }
    let response = app
        .checkout()
        .header("Idempotency-Key", "\"one\"")
        .header("Idempotency-Key", "\"two\"")
        .json(&checkout_body())
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "invalid_request", "validation_error").await;
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn a_kept_answer_expires_after_the_ttl() {
    let app = spawn_app_with(|s| s.checkout.idempotency_ttl_s = 1).await;
    app.proof_answers(widget_session_answer()).await;
    send(with_key(app.checkout(), KEY).json(&checkout_body())).await;

    eventually_async("a retry no longer replayed", async || {
        let retry = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
        assert_eq!(retry.status, 200);
        !retry.replayed
    })
    .await;
    assert_eq!(app.proof_requests().await.len(), 2, "Proof is asked again");
}

#[tokio::test]
async fn within_the_dedupe_window_an_identical_checkout_gets_the_first_answer() {
    let app = spawn_app_with(|s| s.checkout.dedupe_window_ms = 60_000).await;
    app.proof_answers(widget_session_answer()).await;

    let first = send(app.checkout().json(&checkout_body())).await;
    let double_click = send(app.checkout().json(&checkout_body())).await;
    assert_replay_of(&double_click, &first);
    assert_eq!(app.proof_requests().await.len(), 1);

    // Another checkout, or another user, is not a duplicate.
    send(app.checkout().json(&other_checkout())).await;
    send(
        app.checkout_as(&session_token_for("bob", "b@example.org"))
            .json(&checkout_body()),
    )
    .await;
    assert_eq!(app.proof_requests().await.len(), 3);
}

#[tokio::test]
async fn a_duplicate_arriving_while_the_first_is_at_proof_waits_for_its_answer() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let app = spawn_app_with(|s| {
        proof_holding_answers(s, &proof);
        s.checkout.dedupe_window_ms = 60_000;
    })
    .await;
    let first = send_until_proof_has_it(
        app.checkout_on_own_connection().json(&checkout_body()),
        &proof,
    )
    .await;
    let duplicate = tokio::spawn(
        app.checkout_on_own_connection()
            .json(&checkout_body())
            .send(),
    );
    // The duplicate is refused nothing and sent nowhere while the first is held.
    wait_for_log("checkout waits for the same one at Proof").await;
    assert!(!duplicate.is_finished());

    proof.release();
    let first = answer(first.await.unwrap().unwrap()).await;
    let duplicate = answer(duplicate.await.unwrap().unwrap()).await;
    assert_replay_of(&duplicate, &first);
    assert_eq!(proof.requests(), 1, "Proof is called once");
}

#[tokio::test]
async fn without_a_dedupe_window_identical_checkouts_each_reach_proof() {
    let app = spawn_app().await;
    app.proof_answers(widget_session_answer()).await;
    send(app.checkout().json(&checkout_body())).await;
    let second = send(app.checkout().json(&checkout_body())).await;
    assert!(!second.replayed);
    assert_eq!(app.proof_requests().await.len(), 2);
}

/// Waits until any app in this process logged `message`.
async fn wait_for_log(message: &str) {
    eventually_async(&format!("logged: {message}"), async || {
        log_events_mentioning(message)
            .iter()
            .any(|event| event["fields"]["message"] == message)
    })
    .await;
}

// --- Replicas sharing Redis ---

/// Two instances sharing `redis` and one Proof: the first's wiremock, unless `customise` names
/// another.
async fn two_replicas(
    redis: &RedisServer,
    customise: impl Fn(&mut Settings),
) -> (TestApp, TestApp) {
    let configure = |s: &mut Settings| {
        use_redis(s, redis);
        customise(s);
    };
    let first = spawn_app_with(configure).await;
    let mut settings = base_settings(&first.proof);
    configure(&mut settings);
    let second = spawn_with_config(settings.validate().unwrap(), MockServer::start().await).await;
    (first, second)
}

#[tokio::test]
async fn a_retry_on_the_other_replica_gets_identical_bytes_and_proof_is_called_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_replicas(&redis, |_| {}).await;
    a.proof_answers(widget_session_answer()).await;

    let first = send(with_key(a.checkout(), KEY).json(&checkout_body())).await;
    let retry = send(with_key(b.checkout(), KEY).json(&checkout_body())).await;
    assert_eq!(first.status, 200);
    assert_replay_of(&retry, &first);
    expect_key_reused(with_key(b.checkout(), KEY).json(&other_checkout())).await;
    assert_eq!(a.proof_requests().await.len(), 1, "Proof is called once");

    // Kept under a keyed hash, expiring: the raw key, user id and email appear nowhere.
    let keys: Vec<String> = redis
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("proof-bff:idempotency:{"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    for raw in ["8e03978e", USER_ID, USER_EMAIL] {
        assert!(!keys[0].contains(raw));
    }
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query(&mut redis.admin())
        .unwrap();
    assert!((1..=600_000).contains(&ttl_ms), "PTTL {ttl_ms}");
}

#[tokio::test]
async fn a_retry_on_the_other_replica_while_the_first_is_at_proof_is_409() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let (a, b) = two_replicas(&redis, |s| proof_holding_answers(s, &proof)).await;
    let first = send_until_proof_has_it(
        with_key(a.checkout_on_own_connection(), KEY).json(&checkout_body()),
        &proof,
    )
    .await;

    expect_in_progress(with_key(b.checkout(), KEY).json(&checkout_body())).await;

    proof.release();
    let first = answer(first.await.unwrap().unwrap()).await;
    let retry = send(with_key(b.checkout(), KEY).json(&checkout_body())).await;
    assert_replay_of(&retry, &first);
    assert_eq!(proof.requests(), 1);
}

#[tokio::test]
async fn replicas_share_the_dedupe_window_and_kept_answers_expire_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_replicas(&redis, |s| {
        s.checkout.dedupe_window_ms = 60_000;
        s.checkout.idempotency_ttl_s = 1;
    })
    .await;
    a.proof_answers(widget_session_answer()).await;

    let first = send(a.checkout().json(&checkout_body())).await;
    let double_click = send(b.checkout().json(&checkout_body())).await;
    assert_replay_of(&double_click, &first);
    assert_eq!(a.proof_requests().await.len(), 1);

    send(with_key(a.checkout(), KEY).json(&checkout_body())).await;
    assert_eq!(a.proof_requests().await.len(), 2);
    eventually_async("the kept answer expired", async || {
        !redis
            .keys()
            .iter()
            .any(|key| key.starts_with("proof-bff:idempotency:"))
    })
    .await;
    let retry = send(with_key(b.checkout(), KEY).json(&checkout_body())).await;
    assert_eq!((retry.status, retry.replayed), (200, false));
    assert_eq!(a.proof_requests().await.len(), 3);
}

/// How many `SET`s the server has run.
fn sets_run(redis: &RedisServer) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.admin())
        .unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// The claim (`SET NX PX`) times out on the service's side while Redis is frozen, and the checkout
/// is refused; Redis runs the `SET` once it thaws. That lock must not outlive the request: the
/// retry is served at once rather than refused as in progress until the lock expires.
#[tokio::test]
async fn a_claim_that_timed_out_on_our_side_leaves_no_lock_behind() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app_with(|s| {
        use_redis(s, &redis);
        // Short enough for the frozen claim to time out; ample for the calls before it.
        s.rate_limit.redis_timeout_ms = 1000;
        // A lock that would outlive the test's patience (Proof's deadline plus 2 s).
        s.proof.request_timeout_ms = 60_000;
        s.proof.deadline_ms = 60_000;
    })
    .await;
    app.proof_answers(widget_session_answer()).await;
    app.wait_until_ready().await;

    // The head first: the address and the user are checked in Redis before the body is read.
    let body = checkout_body().to_string();
    let request = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .header("Idempotency-Key", KEY)
        .with_body_cut_short(body.as_bytes(), 0);
    let mut connection = RawConnection::open(app.port).await;
    connection.send_part(&request).await;
    eventually_async("the user was checked", async || {
        redis
            .keys()
            .iter()
            .any(|key| key.starts_with("proof-bff:per_user:"))
    })
    .await;
    let sets_before = sets_run(&redis);
    // Then Redis freezes, and the claim is the first call that finds it so.
    redis.pause();
    let refused = connection.exchange(body.as_bytes()).await;
    redis.resume();
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.text().contains("rate_limit_backend"), "{refused:?}");

    // Once Redis has run the claim's SET, the key is free again.
    eventually_async("the timed-out claim's lock was let go", async || {
        let locked = redis
            .keys()
            .iter()
            .any(|key| key.starts_with("proof-bff:idempotency:"));
        sets_run(&redis) > sets_before && !locked
    })
    .await;
    let retry = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    assert_eq!((retry.status, retry.replayed), (200, false));
    let replay = send(with_key(app.checkout(), KEY).json(&checkout_body())).await;
    assert_replay_of(&replay, &retry);
    assert_eq!(app.proof_requests().await.len(), 1, "Proof is called once");
}

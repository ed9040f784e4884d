//! Clients that go away half way (a phone changing networks, a closed tab): a checkout already sent
//! to Proof runs to its end, its answer kept for the retry under an `Idempotency-Key` (in memory and
//! in a shared Redis alike) so that Proof creates one session; and every such request is an
//! outcome, logged once and counted as a 499 `client_closed` with what it had reached.
//!
//! The client here is a raw connection, written in full and then dropped at the moment the test
//! chooses: while Proof holds the request (`AnswerWhenReleased`), while the partner's app is still
//! asked for the session, or before the body has arrived.

use std::time::Duration;

use proof_bff::config::{SessionSourceName, Settings};
use reqwest::RequestBuilder;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::errors::expect_error;
use crate::helpers::*;
use crate::metrics::{sample, scrape};
use crate::redis_support::RedisServer;

const KEY: &str = "\"0b7c4a52-dropped-phone-changing-networks\"";

const CLIENT_CLOSED_CHECKOUTS: &str =
    "proof_bff_requests_total{route=\"/start-checkout\",status=\"499\",code=\"client_closed\"}";
const IN_FLIGHT: &str = "proof_bff_requests_in_flight";

fn with_metrics(s: &mut Settings) {
    s.metrics.listen = "127.0.0.1:0".into();
}

/// A whole checkout as the partner's page sends it, under `request_id`, with `key` if given.
fn raw_checkout(app: &TestApp, request_id: &str, key: Option<&str>) -> RawRequest {
    let mut request = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .header("X-Request-Id", request_id);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request
}

/// A connection to `app` on which `request` has been written.
async fn connection_with(app: &TestApp, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect to the service");
    stream
        .write_all(request)
        .await
        .expect("the request is sent");
    stream
}

/// Sends a whole checkout and returns its connection once Proof has read the request (and holds
/// it), for the test to drop.
async fn checkout_at_proof(
    app: &TestApp,
    proof: &RawUpstream,
    request_id: &str,
    key: Option<&str>,
) -> TcpStream {
    let before = proof.requests();
    let request =
        raw_checkout(app, request_id, key).with_body(checkout_body().to_string().as_bytes());
    let connection = connection_with(app, &request).await;
    eventually_async("the checkout reached Proof", async || {
        proof.requests() != before
    })
    .await;
    connection
}

/// The one `request completed` line of the request with this id, once it is written, and its
/// span's fields; it must be the end of a request whose client went away.
async fn client_closed_line(request_id: &str) -> serde_json::Value {
    let what = format!("{request_id}: a request completed line after its client went away");
    let lines = eventually_async(&what, async || {
        let lines = log_events_with_message(request_id, "request completed");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 1, "logged once: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["status"], 499, "{line}");
    let span = line["span"].clone();
    assert_eq!(span["http.status_code"], 499, "{span}");
    assert_eq!(span["error.code"], "client_closed", "{span}");
    span
}

/// Waits until any app in this process logged `message` for the request with this id.
async fn wait_for_log(request_id: &str, message: &str) -> serde_json::Value {
    eventually_async(&format!("{request_id}: logged {message}"), async || {
        log_events_with_message(request_id, message).pop()
    })
    .await
}

/// The request ended once, as a client gone before anything was sent to Proof: logged with what
/// it had reached, counted as a 499, no longer in flight, and Proof never called.
async fn assert_left_before_proof(app: &TestApp, request_id: &str) {
    let span = client_closed_line(request_id).await;
    assert_eq!(span["reached"], "before_proof", "{span}");
    let text = scrape(app).await;
    assert_eq!(sample(&text, CLIENT_CLOSED_CHECKOUTS), Some(1.0), "{text}");
    assert_eq!(sample(&text, IN_FLIGHT), Some(0.0), "{text}");
    app.assert_proof_not_called().await;
}

/// The retry of the keyed checkout, as a page that reconnected sends it.
fn retry_on(app: &TestApp) -> RequestBuilder {
    app.checkout_on_own_connection()
        .header("Idempotency-Key", KEY)
        .json(&checkout_body())
        .timeout(EVENTUALLY)
}

/// The client of a keyed checkout leaves while Proof holds it; a retry on `retry_app` gets 409
/// while Proof still works, and once Proof has answered, that answer replayed: one session.
async fn left_at_proof_then_retried(
    first_app: &TestApp,
    retry_app: &TestApp,
    proof: &RawUpstream,
    request_id: &str,
) {
    let connection = checkout_at_proof(first_app, proof, request_id, Some(KEY)).await;
    drop(connection);
    let span = client_closed_line(request_id).await;
    assert_eq!(span["reached"], "at_proof", "{span}");

    // Proof still holds the first: the retry is told to come back, and is not sent to Proof.
    let retry = retry_on(retry_app)
        .send()
        .await
        .expect("the service answers");
    let conflict = expect_error(retry, 409, "conflict", "request_in_progress").await;
    assert_eq!(conflict.headers["retry-after"], "1");
    assert_eq!(proof.requests(), 1);

    proof.release();
    wait_for_log(
        request_id,
        "checkout answered after its client had gone: the answer is kept for a retry",
    )
    .await;
    let replay = retry_on(retry_app)
        .send()
        .await
        .expect("the service answers");
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.headers()["content-type"], "application/json");
    assert_eq!(replay.text().await.unwrap(), WIDGET_SESSION_BODY);
    assert_eq!(proof.requests(), 1, "Proof created one session");
}

#[tokio::test]
async fn a_keyed_checkout_whose_client_left_at_proof_is_finished_and_its_answer_replayed() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let app = spawn_app_with(|s| proof_holding_answers(s, &proof)).await;
    left_at_proof_then_retried(&app, &app, &proof, "dropped-keyed-memory").await;
}

/// Two replicas sharing `redis`, both calling the held `proof`.
async fn two_replicas_on_redis(proof: &RawUpstream, redis: &RedisServer) -> (TestApp, TestApp) {
    let configure = |s: &mut Settings| {
        proof_holding_answers(s, proof);
        use_redis(s, redis);
    };
    let first = spawn_app_with(configure).await;
    let mut settings = base_settings(&first.proof);
    configure(&mut settings);
    let second = spawn_with_config(settings.validate().unwrap(), MockServer::start().await).await;
    (first, second)
}

#[tokio::test]
async fn with_redis_the_retry_on_another_replica_gets_the_answer_of_the_checkout_whose_client_left()
{
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let (first, second) = two_replicas_on_redis(&proof, &redis).await;
    left_at_proof_then_retried(&first, &second, &proof, "dropped-keyed-redis").await;
}

/// A drain (a deploy) waits for the call of a checkout whose client left while Proof held it: the
/// workers stopped at once would end the call with them, and Proof's answer would never be kept.
/// The retry on the replica that takes over gets that answer: Proof creates one session.
#[tokio::test]
async fn a_drain_waits_for_the_call_of_a_checkout_whose_client_left_and_its_answer_is_replayed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let (leaving, replacement) = two_replicas_on_redis(&proof, &redis).await;
    // On connections of their own: one idling in a client's pool would hold the drain open by
    // itself, whatever the drain does about the call.
    for app in [&leaving, &replacement] {
        eventually_async("ready", async || {
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let ready = client.get(app.url("/readyz")).send().await;
            ready.is_ok_and(|answer| answer.status() == 200)
        })
        .await;
    }
    let request_id = "dropped-then-drained";
    let connection = checkout_at_proof(&leaving, &proof, request_id, Some(KEY)).await;
    drop(connection);
    client_closed_line(request_id).await;

    let mut drain = leaving.start_drain();
    // Draining, and still serving while the call is at Proof: new requests are told to go, and
    // the drain does not end (stopping the server, which would end the call with its worker).
    let told_to_go = || async {
        let answer = leaving
            .checkout_on_own_connection()
            .json(&checkout_body())
            .send()
            .await
            .ok()?;
        (answer.status() == 503).then_some(answer)
    };
    let first = eventually_async("the leaving instance drained", async || told_to_go().await).await;
    expect_error(first, 503, "unavailable", "shutting_down").await;
    for probe in 0..20 {
        assert!(
            told_to_go().await.is_some(),
            "probe {probe}: the server stopped while the checkout's call was still at Proof"
        );
        assert!(
            !drain.is_finished(),
            "the drain ended while the checkout's call was still at Proof"
        );
    }
    proof.release();
    tokio::time::timeout(EVENTUALLY, &mut drain)
        .await
        .expect("the drain ends once the call has")
        .expect("the drain task");
    // The call ended, and its answer was kept, before the drain did.
    assert!(
        !log_events_with_message(
            request_id,
            "checkout answered after its client had gone: the answer is kept for a retry"
        )
        .is_empty(),
        "the drain ended before the call's answer was kept"
    );

    let replay = retry_on(&replacement)
        .send()
        .await
        .expect("the service answers");
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), WIDGET_SESSION_BODY);
    assert_eq!(proof.requests(), 1, "Proof created one session");
}

#[tokio::test]
async fn a_checkout_without_a_key_whose_client_left_still_completes_at_proof_and_is_counted_499() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let app = spawn_app_with(|s| {
        proof_holding_answers(s, &proof);
        with_metrics(s);
    })
    .await;
    let request_id = "dropped-unkeyed";
    drop(checkout_at_proof(&app, &proof, request_id, None).await);

    let span = client_closed_line(request_id).await;
    assert_eq!(span["reached"], "at_proof", "{span}");
    assert_eq!(span["rate_limit"], "allowed", "{span}");
    let text = scrape(&app).await;
    assert_eq!(sample(&text, CLIENT_CLOSED_CHECKOUTS), Some(1.0), "{text}");
    assert_eq!(sample(&text, IN_FLIGHT), Some(0.0), "{text}");

    // The call to Proof was not cancelled with the request: Proof's answer arrives, is logged and
    // counted, and goes nowhere.
    proof.release();
    let line = wait_for_log(
        request_id,
        "checkout answered after its client had gone: the answer is discarded",
    )
    .await;
    assert_eq!(line["fields"]["status"], 200, "{line}");
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "proof_bff_upstream_requests_total{endpoint=\"/widget/session\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, CLIENT_CLOSED_CHECKOUTS), Some(1.0), "{text}");
    assert_eq!(proof.requests(), 1);
    assert_eq!(
        log_events_with_message(request_id, "request completed").len(),
        1,
        "the request ended once"
    );
}

#[tokio::test]
async fn a_client_that_leaves_before_its_body_arrives_is_499_before_proof() {
    let app = spawn_app_with(with_metrics).await;
    app.proof_must_not_be_called().await;
    let request_id = "dropped-before-body";
    let body = checkout_body().to_string();
    let half = raw_checkout(&app, request_id, None).with_body_cut_short(body.as_bytes(), 10);
    let connection = connection_with(&app, &half).await;
    // The request has started (its head is in) before the client goes.
    eventually_async("the request started", async || {
        sample(&scrape(&app).await, IN_FLIGHT) == Some(1.0)
    })
    .await;
    drop(connection);
    assert_left_before_proof(&app, request_id).await;
}

#[tokio::test]
async fn a_client_that_leaves_during_a_slow_session_check_is_499_before_proof() {
    // The partner's app takes its time to say who the session is.
    let partner = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/session/whoami"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"id": "app-user-9", "email": "x@example.org"}))
                .set_delay(Duration::from_secs(600)),
        )
        .mount(&partner)
        .await;
    let app = spawn_app_with(|s| {
        with_metrics(s);
        s.session.source = SessionSourceName::Forward;
        s.session.forward.url = format!("{}/session/whoami", partner.uri());
        s.session.forward.cookies = vec!["_app_session".into()];
        s.session.forward.timeout_ms = 60_000;
    })
    .await;
    app.proof_must_not_be_called().await;
    let request_id = "dropped-at-session";
    let request = RawRequest::checkout(app.port, APP_ORIGIN, None)
        .header("Cookie", "_app_session=abc")
        .header("X-Request-Id", request_id)
        .with_body(checkout_body().to_string().as_bytes());
    let connection = connection_with(&app, &request).await;
    eventually_async("the session was asked for", async || {
        !partner
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    drop(connection);
    assert_left_before_proof(&app, request_id).await;
}

#[tokio::test]
async fn a_status_read_whose_client_left_at_proof_is_499_at_proof() {
    let app = spawn_app_with(with_metrics).await;
    Mock::given(method("GET"))
        .and(path("/widget/users/user-42/kyc-status"))
        .respond_with(
            proof_json(200, r#"{"status":"approved"}"#).set_delay(Duration::from_secs(600)),
        )
        .mount(&app.proof)
        .await;
    let request_id = "dropped-kyc-status";
    let request = RawRequest::new(app.port, "GET", "/kyc-status")
        .header("Cookie", &format!("session={}", session_token()))
        .header("X-Request-Id", request_id)
        .head();
    let connection = connection_with(&app, request.as_bytes()).await;
    eventually_async("the read reached Proof", async || {
        !app.proof_requests().await.is_empty()
    })
    .await;
    drop(connection);

    let span = client_closed_line(request_id).await;
    assert_eq!(span["reached"], "at_proof", "{span}");
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "proof_bff_requests_total{route=\"/kyc-status\",status=\"499\",code=\"client_closed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, IN_FLIGHT), Some(0.0), "{text}");
}

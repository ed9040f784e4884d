//! The retry rules of the contract, observed from outside: how many times the Proof stand-in was
//! called, with what, how long the client waited, and what it was finally told.
//!
//! Proof's guidance: 502 `upstream_error`/`upstream_unavailable` up to `max_attempts` with
//! exponential backoff and jitter, 500 `internal_error` once, a refused connection up to
//! `max_attempts`, all within `deadline_ms`, always with the same body; a timeout after the request
//! was sent is not retried, and nothing else is.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use wiremock::{Request, Respond, ResponseTemplate};

use crate::helpers::*;

/// Backoff before retry `n` (1-based) is drawn from [50·2^(n-1), 100·2^(n-1)] ms, capped at 2 s.
fn backoff_range_ms(retry: u32) -> (u64, u64) {
    let ceiling = (100u64 << (retry - 1)).min(2000);
    (ceiling / 2, ceiling)
}

/// The least total time `retries` backoffs can take.
fn min_backoff_sum(retries: u32) -> Duration {
    Duration::from_millis((1..=retries).map(|n| backoff_range_ms(n).0).sum())
}

const FAILED: &str = "no usable answer from Proof /widget/session";

/// The `attempts` of the one log line for a checkout that got no usable answer from Proof.
#[track_caller]
fn failed_attempts(request_id: &str) -> u64 {
    let failures = log_events_with_message(request_id, FAILED);
    assert_eq!(failures.len(), 1, "{failures:?}");
    failures[0]["fields"]["attempts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no attempts: {}", failures[0]))
}

/// Answers calls in order from a script; the last entry repeats.
struct Script(Mutex<VecDeque<ResponseTemplate>>);

impl Script {
    fn new(templates: impl IntoIterator<Item = ResponseTemplate>) -> Self {
        let templates: VecDeque<_> = templates.into_iter().collect();
        assert!(!templates.is_empty());
        Self(Mutex::new(templates))
    }
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut templates = self.0.lock().unwrap();
        if templates.len() > 1 {
            templates.pop_front().unwrap()
        } else {
            templates[0].clone()
        }
    }
}

/// What the client saw.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: bytes::Bytes,
    elapsed: Duration,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    #[track_caller]
    fn assert_envelope(&self, status: u16, error: &str, code: &str) {
        let body = self.json();
        assert_eq!(
            (self.status, body["error"].as_str(), body["code"].as_str()),
            (status, Some(error), Some(code)),
            "{body}"
        );
        assert!(body["message"].is_string(), "{body}");
    }
}

/// A checkout with a valid session; `request_id` (when given) follows the request into the logs
/// and upstream.
async fn checkout(app: &TestApp, request_id: Option<&str>) -> Answer {
    let mut request = app.checkout().json(&checkout_body());
    if let Some(id) = request_id {
        request = request.header("X-Request-Id", id);
    }
    let started = Instant::now();
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("a complete body");
    Answer {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    }
}

/// A call's headers without `Date`, which the HTTP client stamps on each call.
fn headers_but_date(request: &Request) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<_> = request
        .headers
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    headers
}

/// Every call carried the same method, URL, headers (but `Date`) and body bytes as the first.
#[track_caller]
fn assert_identical(requests: &[Request]) {
    let first = requests.first().expect("at least one call");
    for (i, other) in requests.iter().enumerate().skip(1) {
        assert_eq!(other.method, first.method, "call {}", i + 1);
        assert_eq!(other.url, first.url, "call {}", i + 1);
        assert_eq!(
            headers_but_date(other),
            headers_but_date(first),
            "call {}",
            i + 1
        );
        assert_eq!(
            other.body,
            first.body,
            "call {} sent a different body: {:?} vs {:?}",
            i + 1,
            String::from_utf8_lossy(&other.body),
            String::from_utf8_lossy(&first.body)
        );
    }
}

#[tokio::test]
async fn a_502_upstream_error_then_200_returns_the_200_after_exactly_two_identical_calls() {
    let app = spawn_app_with(|_| {}).await;
    app.proof_answers_first(
        1,
        proof_error_answer(502, "upstream_error", "provider_error"),
    )
    .await;
    app.proof_answers(widget_session_answer()).await;

    let answer = checkout(&app, None).await;

    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], WIDGET_SESSION_BODY.as_bytes());
    let requests = app.proof_requests().await;
    assert_eq!(requests.len(), 2);
    assert_identical(&requests);
    // The generated request id is fixed once per request: every attempt and the answer carry it.
    let request_id = answer.headers["x-request-id"].to_str().unwrap();
    assert!(!request_id.is_empty());
    for upstream in &requests {
        assert_eq!(upstream.headers["x-request-id"], request_id);
    }
}

#[tokio::test]
async fn a_502_upstream_unavailable_then_200_returns_the_200() {
    let app = spawn_app_with(|_| {}).await;
    app.proof_answers_first(
        2,
        proof_error_answer(502, "upstream_unavailable", "upstream_unavailable"),
    )
    .await;
    app.proof_answers(widget_session_answer()).await;

    let answer = checkout(&app, Some("rt-unavailable-then-ok")).await;

    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], WIDGET_SESSION_BODY.as_bytes());
    let requests = app.proof_requests().await;
    assert_eq!(requests.len(), 3);
    assert_identical(&requests);
    assert_eq!(
        requests[0].headers["x-request-id"],
        "rt-unavailable-then-ok"
    );
}

#[tokio::test]
async fn a_persistent_retryable_error_is_tried_as_often_as_its_rule_allows() {
    // (max_attempts, Proof's answer, attempts made)
    for (max_attempts, (status, error, code), attempts) in [
        // A 502 upstream_unavailable or upstream_error: exactly max_attempts times.
        (
            3,
            (502, "upstream_unavailable", "upstream_invalid_response"),
            3,
        ),
        (
            4,
            (502, "upstream_unavailable", "upstream_invalid_response"),
            4,
        ),
        (2, (502, "upstream_error", "provider_error"), 2),
        // A 500 internal_error once and no more, though max_attempts would allow more.
        (5, (500, "internal_error", "db_error"), 2),
    ] {
        let app = spawn_app_with(|s| s.proof.max_attempts = max_attempts).await;
        app.proof_answers(proof_error_answer(status, error, code))
            .await;

        let answer = checkout(&app, None).await;

        answer.assert_envelope(502, "upstream_error", "provider_error");
        let requests = app.proof_requests().await;
        let row = format!("{status} {error}, max_attempts = {max_attempts}");
        assert_eq!(requests.len(), attempts, "{row}");
        assert_identical(&requests);
        assert!(
            answer.elapsed >= min_backoff_sum(attempts as u32 - 1),
            "{row}: {:?}",
            answer.elapsed
        );
    }
}

#[tokio::test]
async fn a_500_internal_error_once_then_200_returns_the_200() {
    let app = spawn_app_with(|_| {}).await;
    app.proof_answers_first(1, proof_error_answer(500, "internal_error", "token_error"))
        .await;
    app.proof_answers(widget_session_answer()).await;

    let answer = checkout(&app, None).await;

    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], WIDGET_SESSION_BODY.as_bytes());
    let requests = app.proof_requests().await;
    assert_eq!(requests.len(), 2);
    assert_identical(&requests);
}

#[tokio::test]
async fn the_500_internal_error_retry_is_spent_once_per_checkout_even_between_502s() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 5).await;
    widget_session()
        .respond_with(Script::new([
            proof_error_answer(500, "internal_error", "db_error"),
            proof_error_answer(502, "upstream_error", "provider_error"),
            proof_error_answer(500, "internal_error", "db_error"),
            widget_session_answer(),
        ]))
        .mount(&app.proof)
        .await;

    let answer = checkout(&app, None).await;

    answer.assert_envelope(502, "upstream_error", "provider_error");
    let requests = app.proof_requests().await;
    assert_eq!(
        requests.len(),
        3,
        "the second 500 internal_error was retried"
    );
    assert_identical(&requests);
}

#[tokio::test]
async fn other_5xx_answers_are_not_retried() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 4).await;
    let html = "<html><body>502 Bad Gateway</body></html>";
    let cases: Vec<(&str, ResponseTemplate)> = vec![
        (
            "500 with another slug",
            proof_error_answer(500, "upstream_error", "provider_error"),
        ),
        (
            "500 with an HTML body",
            proof_answer(500, html, "text/html"),
        ),
        ("500 with an empty body", ResponseTemplate::new(500)),
        (
            "500 with the slug only in code",
            proof_json(500, r#"{"code":"internal_error","message":"x"}"#),
        ),
        (
            "503 with a retryable-looking slug",
            proof_error_answer(503, "upstream_unavailable", "upstream_unavailable"),
        ),
        (
            "504 with a retryable-looking slug",
            proof_error_answer(504, "upstream_error", "provider_error"),
        ),
        (
            "502 with an HTML body",
            proof_answer(502, html, "text/html"),
        ),
        (
            "502 with another slug",
            proof_error_answer(502, "provider_error", "upstream_error"),
        ),
        (
            "502 with the slug only in code",
            proof_json(502, r#"{"code":"upstream_error","message":"x"}"#),
        ),
        (
            "502 with a slug in another case",
            proof_error_answer(502, "UPSTREAM_ERROR", "provider_error"),
        ),
    ];
    for (case, template) in cases {
        app.proof.reset().await;
        app.proof_answers(template).await;

        let answer = checkout(&app, None).await;

        assert_eq!(app.proof_requests().await.len(), 1, "{case}");
        let body = answer.json();
        assert_eq!(
            (answer.status, body["error"].as_str(), body["code"].as_str()),
            (502, Some("upstream_error"), Some("provider_error")),
            "{case}: {body}"
        );
    }
}

#[tokio::test]
async fn a_5xx_body_that_is_not_an_error_object_is_not_retried() {
    // Only an object's "error" member is Proof's slug; the same word elsewhere is not.
    let app = spawn_app_with(|s| s.proof.max_attempts = 4).await;
    for body in [
        r#"["upstream_error"]"#,
        r#"["internal_error"]"#,
        r#""upstream_error""#,
    ] {
        for status in [500, 502] {
            app.proof.reset().await;
            app.proof_answers(proof_json(status, body)).await;

            let answer = checkout(&app, None).await;

            assert_eq!(app.proof_requests().await.len(), 1, "HTTP {status} {body}");
            answer.assert_envelope(502, "upstream_error", "provider_error");
        }
    }
}

#[tokio::test]
async fn proofs_4xx_answers_are_not_retried_and_pass_through_verbatim() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 4).await;
    let cases = [
        (
            400,
            r#"{"error":"invalid_request","code":"currency_not_allowed","message":"USDT"}"#,
        ),
        (
            404,
            r#"{"error":"not_found", "code":"not_found","message":"no"}"#,
        ),
        (
            409,
            r#"{"error":"session_already_used","message":"x","request_id":"r1"}"#,
        ),
        (
            429,
            r#"{"error":"rate_limit_exceeded","code":"rate_limit_exceeded","message":"slow down"}"#,
        ),
    ];
    for (status, body) in cases {
        app.proof.reset().await;
        app.proof_answers(proof_json(status, body).insert_header("retry-after", "7"))
            .await;

        let answer = checkout(&app, None).await;

        assert_eq!(app.proof_requests().await.len(), 1, "HTTP {status}");
        assert_eq!(answer.status, status);
        assert_eq!(&answer.body[..], body.as_bytes(), "HTTP {status}");
        if status == 429 {
            assert_eq!(answer.headers["retry-after"], "7");
        }
    }
}

#[tokio::test]
async fn proofs_401_and_403_are_not_retried() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 4).await;
    for (status, error, code) in [
        (401, "unauthorised", "invalid_token"),
        (403, "forbidden", "forbidden_origin"),
    ] {
        app.proof.reset().await;
        app.proof_answers(proof_error_answer(status, error, code))
            .await;

        let answer = checkout(&app, None).await;

        assert_eq!(app.proof_requests().await.len(), 1, "HTTP {status}");
        answer.assert_envelope(502, "upstream_error", "upstream_misconfigured");
    }
}

#[tokio::test]
async fn with_max_attempts_1_nothing_is_retried() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 1).await;
    for template in [
        proof_error_answer(502, "upstream_error", "provider_error"),
        proof_error_answer(502, "upstream_unavailable", "upstream_unavailable"),
        proof_error_answer(500, "internal_error", "db_error"),
    ] {
        app.proof.reset().await;
        app.proof_answers(template).await;

        let answer = checkout(&app, None).await;

        assert_eq!(app.proof_requests().await.len(), 1);
        answer.assert_envelope(502, "upstream_error", "provider_error");
    }

    let request_id = "rt-refused-max-1";
    let app = spawn_app_with(|s| {
        s.proof.max_attempts = 1;
        s.proof.base_url = refused_base_url();
    })
    .await;
    let answer = checkout(&app, Some(request_id)).await;
    answer.assert_envelope(502, "upstream_error", "upstream_unavailable");
    assert!(log_events_with_message(request_id, RETRYING).is_empty());
}

#[tokio::test]
async fn retries_stop_when_the_next_backoff_would_pass_the_deadline() {
    // Ten attempts are allowed, but their backoffs (50–100, 100–200, 200–400, 400–800, 800–1600
    // ms, then 1–2 s each) add up to more than the 5 s deadline long before the tenth: the
    // retries stop early with Proof's last answer. A retry starts only with a connect timeout
    // (1 s) left after its backoff, so each attempt has at least that long for the mock's
    // answer, however busy the machine. The exact rule is unit-tested with an injected clock;
    // here only what is true however slow the machine is.
    let request_id = "rt-deadline-stops-retries";
    let deadline = Duration::from_millis(5000);
    let app = spawn_app_with(|s| {
        s.proof.max_attempts = 10;
        s.proof.connect_timeout_ms = 1000;
        s.proof.deadline_ms = deadline.as_millis() as u64;
    })
    .await;
    app.proof_answers(proof_error_answer(502, "upstream_error", "provider_error"))
        .await;

    let answer = checkout(&app, Some(request_id)).await;

    answer.assert_envelope(502, "upstream_error", "provider_error");
    let requests = app.proof_requests().await;
    assert!(
        (2..=7).contains(&requests.len()),
        "{} calls: at least one retry, and stopped by the deadline, not by max_attempts",
        requests.len()
    );
    assert_identical(&requests);
    let backoffs: u64 = log_events_with_message(request_id, RETRYING)
        .iter()
        .map(|w| w["fields"]["backoff_ms"].as_u64().unwrap())
        .sum();
    assert!(
        Duration::from_millis(backoffs) < deadline,
        "{backoffs} ms of backoff"
    );
}

#[tokio::test]
async fn the_deadline_bounds_a_single_attempt_too() {
    // The attempt timeout (60 s) and Proof's answer (after 30 s) are far longer than the whole
    // deadline: the deadline wins.
    let deadline = Duration::from_millis(200);
    let app = spawn_app_with(|s| {
        s.proof.max_attempts = 3;
        s.proof.request_timeout_ms = 60_000;
        s.proof.deadline_ms = deadline.as_millis() as u64;
    })
    .await;
    app.proof_answers(widget_session_answer().set_delay(Duration::from_secs(30)))
        .await;

    let answer = checkout(&app, None).await;

    answer.assert_envelope(504, "upstream_timeout", "upstream_timeout");
    assert_eq!(app.proof_requests().await.len(), 1);
    assert!(answer.elapsed >= deadline, "{:?}", answer.elapsed);
    assert!(
        answer.elapsed < Duration::from_secs(20),
        "waited for Proof's answer instead of the deadline: {:?}",
        answer.elapsed
    );
}

#[tokio::test]
async fn a_timeout_after_the_request_was_sent_is_not_retried() {
    let request_timeout = Duration::from_millis(250);
    let app = spawn_app_with(|s| {
        s.proof.max_attempts = 4;
        s.proof.request_timeout_ms = request_timeout.as_millis() as u64;
        s.proof.deadline_ms = 60_000;
    })
    .await;
    app.proof_answers(widget_session_answer().set_delay(Duration::from_secs(30)))
        .await;

    let answer = checkout(&app, Some("rt-timeout-after-send")).await;

    answer.assert_envelope(504, "upstream_timeout", "upstream_timeout");
    assert_eq!(app.proof_requests().await.len(), 1);
    assert!(answer.elapsed >= request_timeout, "{:?}", answer.elapsed);
    assert!(log_events_with_message("rt-timeout-after-send", RETRYING).is_empty());
}

#[tokio::test]
async fn a_refused_connection_is_retried_up_to_max_attempts_with_backoff() {
    for max_attempts in [3u32, 4] {
        let request_id = format!("rt-refused-max-{max_attempts}");
        let app = spawn_app_with(|s| {
            s.proof.max_attempts = max_attempts;
            s.proof.base_url = refused_base_url();
        })
        .await;

        let answer = checkout(&app, Some(&request_id)).await;

        answer.assert_envelope(502, "upstream_error", "upstream_unavailable");
        let retries = max_attempts - 1;
        assert!(
            answer.elapsed >= min_backoff_sum(retries),
            "max_attempts = {max_attempts}: {:?}",
            answer.elapsed
        );
        let warnings = log_events_with_message(&request_id, RETRYING);
        let attempts: Vec<_> = warnings
            .iter()
            .map(|w| w["fields"]["attempt"].as_u64().unwrap())
            .collect();
        assert_eq!(
            attempts,
            (1..=u64::from(retries)).collect::<Vec<_>>(),
            "{warnings:?}"
        );
        for warning in &warnings {
            let reason = warning["fields"]["reason"].as_str().unwrap();
            assert!(reason.starts_with("unreachable"), "{warning}");
        }
        assert_eq!(failed_attempts(&request_id), u64::from(max_attempts));
    }
}

#[tokio::test]
async fn retries_wait_an_exponential_jittered_backoff_between_calls() {
    let request_id = "rt-backoff-4";
    let app = spawn_app_with(|s| s.proof.max_attempts = 4).await;
    app.proof_answers(proof_error_answer(502, "upstream_error", "provider_error"))
        .await;

    let answer = checkout(&app, Some(request_id)).await;

    answer.assert_envelope(502, "upstream_error", "provider_error");
    assert_eq!(app.proof_requests().await.len(), 4);
    // 50–100 + 100–200 + 200–400 ms.
    assert!(answer.elapsed >= min_backoff_sum(3), "{:?}", answer.elapsed);
    let warnings = log_events_with_message(request_id, RETRYING);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let mut waited = Duration::ZERO;
    for (warning, retry) in warnings.iter().zip(1u32..) {
        let fields = &warning["fields"];
        assert_eq!(fields["attempt"], retry, "{warning}");
        assert_eq!(fields["reason"], "HTTP 502", "{warning}");
        let backoff_ms = fields["backoff_ms"].as_u64().unwrap();
        let (low, high) = backoff_range_ms(retry);
        assert!(
            (low..=high).contains(&backoff_ms),
            "retry {retry}: {backoff_ms} ms not in {low}..={high}"
        );
        waited += Duration::from_millis(backoff_ms);
    }
    assert!(
        answer.elapsed >= waited,
        "{:?} < {waited:?}",
        answer.elapsed
    );
}

/// An upstream that read the request may have acted on it: whatever happens to the connection
/// afterwards, the request is not sent again.
async fn assert_sent_once_then_broken(behaviour: RawBehaviour, request_id: &str) {
    let proof = RawUpstream::start([behaviour]).await;
    let app = spawn_app_with(|s| {
        s.proof.max_attempts = 3;
        s.proof.base_url = proof.base_url.clone();
    })
    .await;

    let answer = checkout(&app, Some(request_id)).await;

    answer.assert_envelope(502, "upstream_error", "upstream_unavailable");
    assert_eq!(proof.requests(), 1, "{behaviour:?}: requests Proof read");
    assert_eq!(proof.connections(), 1, "{behaviour:?}: connections");
    assert!(
        log_events_with_message(request_id, RETRYING).is_empty(),
        "{behaviour:?}"
    );
    assert_eq!(failed_attempts(request_id), 1, "{behaviour:?}");
}

#[tokio::test]
async fn a_connection_closed_after_proof_read_the_request_is_not_retried() {
    assert_sent_once_then_broken(RawBehaviour::CloseAfterRequest, "rt-raw-close").await;
}

#[tokio::test]
async fn an_answer_cut_short_is_not_retried() {
    assert_sent_once_then_broken(RawBehaviour::TruncatedAnswer, "rt-raw-truncated").await;
}

#[tokio::test]
async fn a_connection_reset_after_proof_read_the_request_is_not_retried() {
    assert_sent_once_then_broken(RawBehaviour::ResetAfterRequest, "rt-raw-reset").await;
}

#[tokio::test]
async fn a_connection_closed_on_accept_counts_as_sent_and_is_not_retried() {
    // The request has been written into the socket by the time the close is seen, and a
    // connection accepted by a load balancer in front of Proof looks just the same: it may have
    // gone further.
    let request_id = "rt-raw-close-on-accept";
    let proof = RawUpstream::start([RawBehaviour::CloseOnAccept]).await;
    let app = spawn_app_with(|s| {
        s.proof.max_attempts = 3;
        s.proof.base_url = proof.base_url.clone();
    })
    .await;

    let answer = checkout(&app, Some(request_id)).await;

    answer.assert_envelope(502, "upstream_error", "upstream_unavailable");
    assert_eq!(proof.connections(), 1);
    assert!(log_events_with_message(request_id, RETRYING).is_empty());
    assert_eq!(failed_attempts(request_id), 1);
}

#[tokio::test]
async fn a_retry_whose_connection_breaks_reports_the_attempts_made() {
    const RETRYABLE: &str =
        r#"{"error":"upstream_error","code":"provider_error","message":"from the stand-in"}"#;
    let cases = [
        (
            "rt-raw-broken-2",
            vec![
                RawBehaviour::Answer(502, RETRYABLE),
                RawBehaviour::CloseAfterRequest,
            ],
            2,
        ),
        (
            "rt-raw-broken-3",
            vec![
                RawBehaviour::Answer(502, RETRYABLE),
                RawBehaviour::Answer(502, RETRYABLE),
                RawBehaviour::TruncatedAnswer,
            ],
            3,
        ),
        (
            "rt-raw-reset-2",
            vec![
                RawBehaviour::Answer(502, RETRYABLE),
                RawBehaviour::ResetAfterRequest,
            ],
            2,
        ),
    ];
    for (request_id, script, attempts) in cases {
        let proof = RawUpstream::start(script).await;
        let app = spawn_app_with(|s| {
            s.proof.max_attempts = 4;
            s.proof.base_url = proof.base_url.clone();
        })
        .await;

        let answer = checkout(&app, Some(request_id)).await;

        answer.assert_envelope(502, "upstream_error", "upstream_unavailable");
        assert_eq!(proof.requests(), attempts, "{request_id}: requests");
        assert_eq!(
            log_events_with_message(request_id, RETRYING).len(),
            attempts - 1,
            "{request_id}"
        );
        assert_eq!(failed_attempts(request_id), attempts as u64, "{request_id}");
    }
}

#[tokio::test]
async fn a_final_5xx_after_a_retried_502_reports_two_attempts() {
    let request_id = "rt-503-after-502";
    let app = spawn_app_with(|s| s.proof.max_attempts = 4).await;
    widget_session()
        .respond_with(Script::new([
            proof_error_answer(502, "upstream_error", "provider_error"),
            proof_error_answer(503, "upstream_error", "provider_error"),
        ]))
        .mount(&app.proof)
        .await;

    let answer = checkout(&app, Some(request_id)).await;

    answer.assert_envelope(502, "upstream_error", "provider_error");
    assert_eq!(app.proof_requests().await.len(), 2);
    assert_eq!(failed_attempts(request_id), 2);
    let failure = &log_events_with_message(request_id, FAILED)[0];
    let error = failure["fields"]["error"].as_str().unwrap();
    assert!(error.contains("503"), "{failure}");
}

//! The `request completed` line carries what the request came to, as declared fields read once
//! from its record when it ends: the rate limits' decision, and the call to Proof (attempts,
//! Proof's status and request id, its latency). Plain values only: no debug strings, nothing
//! personal or secret.

use crate::helpers::*;

/// The one `request completed` line of the request with this id, and its span's fields.
fn completed(request_id: &str) -> serde_json::Value {
    let lines = log_events_with_message(request_id, "request completed");
    assert_eq!(
        lines.len(),
        1,
        "one completion line for {request_id}: {lines:?}"
    );
    lines[0]["span"].clone()
}

#[tokio::test]
async fn a_checkout_retried_once_logs_two_attempts_and_proofs_final_answer() {
    let app = spawn_app().await;
    app.proof_answers_first(
        1,
        proof_error_answer(502, "upstream_error", "provider_error")
            .insert_header("x-request-id", "proof-req-failed"),
    )
    .await;
    app.proof_answers(widget_session_answer()).await;
    let request_id = "log-outcome-retried";
    let response = app
        .checkout()
        .header("X-Request-Id", request_id)
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.proof_requests().await.len(), 2);

    let span = completed(request_id);
    assert_eq!(span["http.status_code"], 200);
    assert_eq!(span["rate_limit"], "allowed");
    assert_eq!(span["proof.attempts"], 2);
    assert_eq!(span["proof.status"], 200);
    assert_eq!(span["proof.request_id"], "proof-req-1", "the last answer's");
    let upstream_ms = span["proof.latency_ms"].as_f64().expect("a number");
    let total_ms = span["latency_ms"].as_f64().expect("a number");
    assert!(
        upstream_ms > 0.0 && upstream_ms <= total_ms,
        "{upstream_ms} within {total_ms}"
    );
    assert!(span.get("error.code").is_none(), "{span}");
    // Plain values: numbers, and strings that are no printed structure.
    for (field, value) in span.as_object().expect("the span's fields") {
        match value {
            serde_json::Value::Number(_) => {}
            serde_json::Value::String(text) => assert!(
                !text.contains(['{', '(', '"']),
                "{field} holds a debug string: {text}"
            ),
            other => panic!("{field} is not a plain value: {other}"),
        }
    }
    let line = span.to_string();
    for secret in [USER_EMAIL, CLIENT_TOKEN] {
        assert!(!line.contains(secret), "{secret} in {line}");
    }
}

#[tokio::test]
async fn a_request_the_rate_limits_refuse_logs_the_limit_and_no_call_to_proof() {
    let per_user = spawn_app_with(|s| {
        s.rate_limit.per_user_burst = 1;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    widget_session_ok().mount(&per_user.proof).await;
    let allowed = per_user
        .checkout()
        .header("X-Request-Id", "log-outcome-first")
        .send_with_valid_body()
        .await;
    assert_eq!(allowed.status(), 200);
    let refused = per_user
        .checkout()
        .header("X-Request-Id", "log-outcome-per-user")
        .send_with_valid_body()
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(completed("log-outcome-first")["rate_limit"], "allowed");
    let span = completed("log-outcome-per-user");
    assert_eq!(span["rate_limit"], "per_user");
    assert_eq!(span["error.code"], "per_user");
    assert!(span.get("proof.attempts").is_none(), "{span}");
    assert!(span.get("proof.status").is_none(), "{span}");

    let per_ip = spawn_app_with(|s| {
        s.rate_limit.per_ip_burst = 1;
        s.rate_limit.per_ip_per_minute = 1;
    })
    .await;
    widget_session_ok().mount(&per_ip.proof).await;
    per_ip.checkout().send_with_valid_body().await;
    let refused = per_ip
        .checkout()
        .header("X-Request-Id", "log-outcome-per-ip")
        .send_with_valid_body()
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(completed("log-outcome-per-ip")["rate_limit"], "per_ip");
}

#[tokio::test]
async fn a_request_refused_before_the_limits_logs_no_decision() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    let response = app
        .checkout_request(Some("https://evil.example"), Some(&session_token()))
        .header("X-Request-Id", "log-outcome-foreign")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 403);
    let span = completed("log-outcome-foreign");
    assert_eq!(span["error.code"], "forbidden_origin");
    assert!(span.get("rate_limit").is_none(), "{span}");
}

#[tokio::test]
async fn a_status_read_logs_its_call_to_proof() {
    let app = spawn_app().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/widget/users/user-42/kyc-status"))
        .respond_with(
            proof_json(200, r#"{"status":"approved"}"#).insert_header("x-request-id", "kyc req"),
        )
        .mount(&app.proof)
        .await;
    let response = app
        .client
        .get(app.url("/kyc-status"))
        .header("Cookie", format!("session={}", session_token()))
        .header("X-Request-Id", "log-outcome-kyc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let span = completed("log-outcome-kyc");
    assert_eq!(span["rate_limit"], "allowed");
    assert_eq!(span["proof.attempts"], 1);
    assert_eq!(span["proof.status"], 200);
    assert!(
        span.get("proof.request_id").is_none(),
        "an id with a space is not one: {span}"
    );
}

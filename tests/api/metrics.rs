//! `GET /metrics` on `metrics.listen`: exact counts after a known mix of answers, nothing on the
//! browser-facing port, and no label that carries personal data or a secret.

use crate::helpers::*;

/// `GET /metrics`, each time on a connection of its own: a kept-alive one could be closed by the
/// metrics port's idle timeout just as the next scrape is sent on it, on a machine slow enough.
pub(crate) async fn scrape(app: &TestApp) -> String {
    let port = app.metrics_port.expect("metrics.listen is set");
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample `name{labels}` (exactly as written), if there is one.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn a_known_mix_of_answers_is_counted_exactly() {
    let app = spawn_app_with(|s| {
        s.metrics.listen = "127.0.0.1:0".into();
        s.rate_limit.per_user_burst = 4;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    // Proof: a 502 upstream_error first (retried), then successes.
    app.proof_answers_first(
        1,
        proof_error_answer(502, "upstream_error", "provider_error"),
    )
    .await;
    app.proof_answers(widget_session_answer()).await;

    let retried = app.checkout().send_with_valid_body().await;
    assert_eq!(retried.status(), 200);
    assert_eq!(app.checkout().send_with_valid_body().await.status(), 200);
    let invalid = app
        .checkout()
        .json(&serde_json::json!({"network": "TRC20"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    assert_eq!(
        app.anonymous_checkout()
            .send_with_valid_body()
            .await
            .status(),
        401
    );
    // Proof refuses our token once.
    app.proof_answers_first(1, proof_error_answer(401, "unauthorised", "invalid_token"))
        .await;
    assert_eq!(app.checkout().send_with_valid_body().await.status(), 502);
    // The user's burst of four is spent.
    assert_eq!(app.checkout().send_with_valid_body().await.status(), 429);

    let text = scrape(&app).await;
    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let route = "route=\"/start-checkout\"";
    for (status, code, expected) in [
        (200, "ok", 2.0),
        (400, "validation_error", 1.0),
        (401, "no_session", 1.0),
        (502, "upstream_misconfigured", 1.0),
        (429, "per_user", 1.0),
    ] {
        assert_eq!(
            count(&format!(
                "proof_bff_requests_total{{{route},status=\"{status}\",code=\"{code}\"}}"
            )),
            expected,
            "{status} {code}"
        );
    }
    let endpoint = "endpoint=\"/widget/session\"";
    assert_eq!(
        count(&format!(
            "proof_bff_upstream_requests_total{{{endpoint},outcome=\"ok\"}}"
        )),
        2.0
    );
    assert_eq!(
        count(&format!(
            "proof_bff_upstream_requests_total{{{endpoint},outcome=\"misconfigured\"}}"
        )),
        1.0
    );
    assert_eq!(
        count(&format!("proof_bff_upstream_retries_total{{{endpoint}}}")),
        1.0
    );
    assert_eq!(count("proof_bff_upstream_misconfigured_total"), 1.0);
    assert_eq!(
        count("proof_bff_rate_limited_total{kind=\"per_user\"}"),
        1.0
    );
    assert_eq!(
        count("proof_bff_sessions_refused_total{reason=\"no_session\"}"),
        1.0
    );
    assert_eq!(count("proof_bff_rate_limit_keys{kind=\"per_user\"}"), 1.0);
    assert_eq!(count("proof_bff_requests_in_flight"), 0.0);
    assert_eq!(
        count(&format!(
            "proof_bff_upstream_duration_seconds_count{{{endpoint}}}"
        )),
        3.0
    );
    assert!(text.contains("proof_bff_build_info{version="));

    // Nothing personal or secret in any sample.
    for secret in [USER_ID, USER_EMAIL, CLIENT_TOKEN, JWT_SECRET] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}

#[tokio::test]
async fn metrics_are_never_served_on_the_browser_facing_port() {
    let app = spawn_app_with(|s| s.metrics.listen = "127.0.0.1:0".into()).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let without = spawn_app().await;
    assert_eq!(without.metrics_port, None);
    let response = without
        .client
        .get(without.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

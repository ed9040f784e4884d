//! `proof.max_connections` at its bound, over real sockets: a checkout that finds every place
//! taken waits within its own deadline, then gets 503 `upstream_busy` with `Retry-After`, and
//! Proof never sees it; the metrics show the place in use and the refusal.

use std::time::Duration;

use crate::errors::expect_error;
use crate::helpers::*;
use crate::metrics::{sample, scrape};

const WIDGET_SESSION_OK: &str = r#"{"widget_id":"w-1","merchant_transaction_id":"tx-1"}"#;

#[tokio::test]
async fn at_the_bound_a_checkout_waits_within_its_deadline_then_gets_503_upstream_busy_unsent() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_OK)]).await;
    let app = spawn_app_with(|s| {
        s.proof.base_url = proof.base_url.clone();
        s.proof.max_connections = 1;
        // The held checkout must outlive the waiting one's wait: a place is only worth waiting
        // for until the deadline less the time an attempt needs to connect (here 1 s of wait).
        s.proof.connect_timeout_ms = 9_000;
        s.proof.request_timeout_ms = 10_000;
        s.proof.deadline_ms = 10_000;
        s.metrics.listen = "127.0.0.1:0".into();
    })
    .await;
    let held = send_until_proof_has_it(app.checkout().json(&checkout_body()), &proof).await;
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "proof_bff_outbound_in_flight{client=\"proof\"}"),
        Some(1.0),
        "{metrics}"
    );

    let asked = tokio::time::Instant::now();
    let refused = app.checkout().send_with_valid_body().await;
    let waited = asked.elapsed();
    let answer = expect_error(refused, 503, "unavailable", "upstream_busy").await;
    assert_eq!(answer.headers["retry-after"], "1");
    assert!(
        waited >= Duration::from_millis(900),
        "it waited for a place first, within its deadline ({waited:?})"
    );
    assert_eq!(
        proof.requests(),
        1,
        "the refused checkout never reached Proof"
    );
    assert_eq!(proof.connections(), 1, "nor opened a connection to it");
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(
            &metrics,
            "proof_bff_outbound_refused_total{client=\"proof\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "proof_bff_upstream_requests_total{endpoint=\"/widget/session\",outcome=\"busy\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // The held checkout is answered once Proof answers, and its place comes back.
    proof.release();
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.status(), 200);
    let after = app.checkout().send_with_valid_body().await;
    assert_eq!(after.status(), 200);
    assert_eq!(proof.requests(), 2);
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "proof_bff_outbound_in_flight{client=\"proof\"}"),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn status_reads_share_the_bound_and_are_refused_the_same_way() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_OK)]).await;
    let app = spawn_app_with(|s| {
        s.proof.base_url = proof.base_url.clone();
        s.proof.max_connections = 1;
        s.proof.connect_timeout_ms = 9_000;
        s.proof.request_timeout_ms = 10_000;
        s.proof.deadline_ms = 10_000;
    })
    .await;
    let held = send_until_proof_has_it(app.checkout().json(&checkout_body()), &proof).await;
    let read = app
        .client
        .get(app.url("/kyc-status"))
        .header("Cookie", format!("session={}", session_token()))
        .send()
        .await
        .unwrap();
    expect_error(read, 503, "unavailable", "upstream_busy").await;
    assert_eq!(proof.requests(), 1);
    proof.release();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn the_default_bound_keeps_a_thousand_checkouts_in_flight_on_one_worker() {
    // Every request is held at Proof until all 1,000 have arrived there: with a bound below
    // 1,000 (awc's default of 100, say) the rest would wait, and Proof would never see them all.
    const CHECKOUTS: usize = 1000;
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_OK)]).await;
    let app = spawn_app_with(|s| {
        s.proof.base_url = proof.base_url.clone();
        s.proof.request_timeout_ms = 120_000;
        s.proof.deadline_ms = 120_000;
        s.server.client_request_timeout_ms = 120_000;
    })
    .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let token = session_token();
    let mut checkouts = tokio::task::JoinSet::new();
    for _ in 0..CHECKOUTS {
        let request = client
            .post(app.url("/start-checkout"))
            .header("Origin", APP_ORIGIN)
            .header("Cookie", format!("session={token}"))
            .json(&checkout_body());
        checkouts.spawn(request.send());
    }
    let all_in_flight = async || proof.requests() >= CHECKOUTS;
    if within_async(Duration::from_secs(120), all_in_flight)
        .await
        .is_none()
    {
        let seen = proof.requests();
        panic!("Proof saw only {seen} of {CHECKOUTS} checkouts in flight at once");
    }
    proof.release();
    while let Some(answer) = checkouts.join_next().await {
        assert_eq!(answer.unwrap().unwrap().status(), 200);
    }
}

//! `GET /checkout/{merchant_transaction_id}` and `GET /kyc-status` over HTTP: the owner reads
//! Proof's bytes, nobody else learns anything, malformed ids never reach Proof, and the status
//! routes have their own per-user limit.

use reqwest::RequestBuilder;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::errors::expect_error;
use crate::helpers::*;

const TX_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

/// Proof's poll answer for `TX_ID`, owned by `owner`, with odd spacing so any re-serialisation
/// would show.
fn transaction_body(owner: &str) -> String {
    format!(
        "{{ \"merchant_transaction_id\":\"{TX_ID}\", \"partner_user_id\" : \"{owner}\",\"type\":\"buy\",\"status\":\"processing\",\"currency\":\"USDT\",\"network\":\"TRC20\",\"crypto_amount\":\"100\",\"fiat_currency\":\"EUR\",\"fiat_amount\":\"92.10\",\"created_at\":\"2026-11-25T10:00:00Z\",\"updated_at\":\"2026-11-25T10:00:05Z\" }}"
    )
}

/// Proof's `GET /widget/transactions/{id}`.
fn proof_transaction(id: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path(format!("/widget/transactions/{id}")))
}

impl TestApp {
    fn status_request(&self, route: &str, origin: Option<&str>) -> RequestBuilder {
        let mut request = self
            .client
            .get(self.url(route))
            .header("Cookie", format!("session={}", session_token()));
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request
    }

    /// A same-origin `GET` of the transaction, as a page's `fetch` sends it: no `Origin`.
    fn transaction_request(&self, id: &str) -> RequestBuilder {
        self.status_request(&format!("/checkout/{id}"), None)
    }
}

#[tokio::test]
async fn the_owner_reads_proofs_transaction_byte_for_byte() {
    let app = spawn_app().await;
    let body = transaction_body(USER_ID);
    proof_transaction(TX_ID)
        .respond_with(proof_json(200, &body).insert_header("x-request-id", "proof-1"))
        .expect(1)
        .mount(&app.proof)
        .await;

    let response = app.transaction_request(TX_ID).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with("\"per_user_status\";q=1000;w=60;burst=166"),
        "{:?}",
        headers["ratelimit-policy"]
    );
    assert!(headers.contains_key("ratelimit"));
    assert_eq!(response.text().await.unwrap(), body);
    let sent = &app.proof_requests().await[0];
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {CLIENT_TOKEN}")
    );
    assert_eq!(sent.headers["origin"], PROOF_ORIGIN);
    assert!(!sent.headers.contains_key("cookie"));
}

#[tokio::test]
async fn another_users_and_an_unknown_transaction_get_identical_404s() {
    let app = spawn_app().await;
    proof_transaction(TX_ID)
        .respond_with(proof_json(200, &transaction_body("someone-else")))
        .mount(&app.proof)
        .await;
    let unknown = "0e4f1d2a-0000-4000-8000-000000000000";
    proof_transaction(unknown)
        .respond_with(proof_error_answer(404, "not_found", "not_found"))
        .mount(&app.proof)
        .await;

    let theirs = app.transaction_request(TX_ID).send().await.unwrap();
    let theirs = expect_error(theirs, 404, "not_found", "not_found").await;
    let missing = app.transaction_request(unknown).send().await.unwrap();
    let missing = expect_error(missing, 404, "not_found", "not_found").await;

    assert_eq!(theirs.body, missing.body);
    let shape = |answer: &crate::errors::ErrorAnswer| {
        let mut names: Vec<String> = answer
            .headers
            .keys()
            .map(|name| name.as_str().to_owned())
            .filter(|name| name != "date")
            .collect();
        names.sort();
        names
    };
    assert_eq!(shape(&theirs), shape(&missing));
    assert!(!String::from_utf8_lossy(&theirs.body).contains("someone-else"));
}

#[tokio::test]
async fn malformed_ids_get_the_same_404_and_never_reach_proof() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    let too_long = "a".repeat(65);
    for id in [
        "..%2Fsession",
        "a%20b",
        "tx.1",
        "%E2%82%AC",
        too_long.as_str(),
    ] {
        let response = app.transaction_request(id).send().await.unwrap();
        let refused = expect_error(response, 404, "not_found", "not_found").await;
        assert_eq!(refused.message, "no such transaction", "{id}");
    }
    assert!(app.proof.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn proof_refusing_our_token_is_502_upstream_misconfigured() {
    let app = spawn_app().await;
    proof_transaction(TX_ID)
        .respond_with(proof_error_answer(401, "unauthorised", "invalid_token"))
        .mount(&app.proof)
        .await;
    let response = app.transaction_request(TX_ID).send().await.unwrap();
    expect_error(response, 502, "upstream_error", "upstream_misconfigured").await;
}

#[tokio::test]
async fn a_read_is_retried_after_proofs_server_error() {
    let app = spawn_app().await;
    proof_transaction(TX_ID)
        .respond_with(proof_answer(503, "<html>busy</html>", "text/html"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.proof)
        .await;
    proof_transaction(TX_ID)
        .respond_with(proof_json(200, &transaction_body(USER_ID)))
        .with_priority(2)
        .mount(&app.proof)
        .await;

    let response = app.transaction_request(TX_ID).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(app.proof_requests().await.len(), 2, "retried once");
}

#[tokio::test]
async fn a_read_is_retried_after_the_connection_broke_once_it_was_sent() {
    const OWNED: &str = r#"{"merchant_transaction_id":"550e8400-e29b-41d4-a716-446655440000","partner_user_id":"user-42","status":"pending"}"#;
    let proof = RawUpstream::start([
        RawBehaviour::CloseAfterRequest,
        RawBehaviour::Answer(200, OWNED),
    ])
    .await;
    let app = spawn_app_with(|s| s.proof.base_url = proof.base_url.clone()).await;

    let response = app.transaction_request(TX_ID).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), OWNED);
    assert_eq!(
        proof.requests(),
        2,
        "a GET is sent again, unlike a checkout"
    );
}

#[tokio::test]
async fn the_status_limit_is_its_own_and_answers_429_per_user_status() {
    let app = spawn_app_with(|s| s.rate_limit.status_per_user_per_minute = 6).await;
    proof_transaction(TX_ID)
        .respond_with(proof_json(200, &transaction_body(USER_ID)))
        .mount(&app.proof)
        .await;
    app.proof_answers(widget_session_answer()).await;

    // A burst of one (six a minute), then refused.
    assert_eq!(
        app.transaction_request(TX_ID)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let refused = app.transaction_request(TX_ID).send().await.unwrap();
    let refused = expect_error(refused, 429, "rate_limited", "per_user_status").await;
    // Ten seconds until the next one, less whatever time passed between the two requests.
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    // The checkout budget is untouched.
    assert_eq!(app.checkout().send_with_valid_body().await.status(), 200);
}

#[tokio::test]
async fn origin_rules_a_present_origin_must_be_allowed_and_sign_in_is_required() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    let route = format!("/checkout/{TX_ID}");
    let foreign = app
        .status_request(&route, Some("https://evil.example.net"))
        .send()
        .await
        .unwrap();
    expect_error(foreign, 403, "forbidden", "forbidden_origin").await;
    let signed_out = app.client.get(app.url(&route)).send().await.unwrap();
    expect_error(signed_out, 401, "unauthorised", "no_session").await;
    let kyc_signed_out = app.client.get(app.url("/kyc-status")).send().await.unwrap();
    expect_error(kyc_signed_out, 401, "unauthorised", "no_session").await;
    let post = app
        .client
        .post(app.url(&route))
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn an_allowed_origin_reads_with_the_cors_grant() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path(format!("/widget/users/{USER_ID}/kyc-status")))
        .respond_with(proof_json(
            200,
            &format!("{{\"partner_user_id\":\"{USER_ID}\", \"status\":\"pending\"}}"),
        ))
        .mount(&app.proof)
        .await;
    let response = app
        .status_request("/kyc-status", Some(APP_ORIGIN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        APP_ORIGIN
    );
    assert_eq!(
        response.text().await.unwrap(),
        format!("{{\"partner_user_id\":\"{USER_ID}\", \"status\":\"pending\"}}")
    );
}

#[tokio::test]
async fn kyc_status_is_asked_for_the_session_user_and_proofs_404_passes_through() {
    let app = spawn_app().await;
    let user = "ops/team lead";
    Mock::given(method("GET"))
        .and(path("/widget/users/ops%2Fteam%20lead/kyc-status"))
        .respond_with(ResponseTemplate::new(404).set_body_raw(
            r#"{"error":"not_found","code":"not_found","message":"unknown user"}"#,
            "application/json",
        ))
        .expect(1)
        .mount(&app.proof)
        .await;
    let response = app
        .client
        .get(app.url("/kyc-status"))
        .header(
            "Cookie",
            format!("session={}", session_token_for(user, "ops@example.org")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":"not_found","code":"not_found","message":"unknown user"}"#
    );
}

//! The sandbox's documented test values, through the real service in front of the embedded
//! stand-in for Proof: what a frontend sees for each (the table in docs/sandbox.md, "Test values").

use std::net::TcpListener;
use std::time::Duration;

use proof_stand_in::{ProofStandIn, StandInClock, StandInConfig};
use secrecy::SecretString;

use crate::helpers::*;

struct Sandbox {
    app: TestApp,
    stand_in_url: String,
    stand_in_clock: StandInClock,
}

const STATUS_STEP: Duration = Duration::from_millis(200);

async fn sandbox_with(customise: impl FnOnce(&mut proof_bff::config::Settings)) -> Sandbox {
    let mut stand_in =
        StandInConfig::sandbox(SecretString::from(CLIENT_TOKEN), vec![PROOF_ORIGIN.into()]);
    stand_in.slow_answer = Duration::from_millis(1500);
    stand_in.status_step = STATUS_STEP;
    stand_in.clock = StandInClock::manual();
    let stand_in_clock = stand_in.clock.clone();
    let stand_in =
        ProofStandIn::start(stand_in, TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let stand_in_url = stand_in.base_url();
    tokio::spawn(stand_in.into_server());
    // wiremock is not used here; it only fills the helper's field.
    let unused = wiremock::MockServer::start().await;
    let mut settings = base_settings(&unused);
    settings.proof.base_url = stand_in_url.clone();
    // Far from anything a busy machine reaches: retries and backoff end in Proof's answer, never
    // in the deadline. The value that answers too late sets its own, below.
    settings.proof.request_timeout_ms = 30_000;
    settings.proof.deadline_ms = 120_000;
    customise(&mut settings);
    let app = spawn_with_config(settings.validate().unwrap(), unused).await;
    Sandbox {
        app,
        stand_in_url,
        stand_in_clock,
    }
}

async fn sandbox() -> Sandbox {
    sandbox_with(|_| {}).await
}

impl Sandbox {
    async fn checkout(
        &self,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        let response = self.app.checkout().json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, response.json().await.unwrap(), headers)
    }

    async fn amount(&self, amount: &str) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        self.checkout(serde_json::json!({"network": "TRC20", "currency": "USDT", "amount": amount}))
            .await
    }

    /// The status a partner backend polling the stand-in sees once the transaction has had time
    /// to end (the stand-in's clock is moved past both status steps).
    async fn final_status(&self, transaction: &str) -> String {
        self.stand_in_clock.advance(STATUS_STEP * 2);
        let poll: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "{}/widget/transactions/{transaction}",
                self.stand_in_url
            ))
            .bearer_auth(CLIENT_TOKEN)
            .header("Origin", PROOF_ORIGIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        poll["status"].as_str().unwrap().to_owned()
    }
}

fn code(body: &serde_json::Value) -> (&str, &str) {
    (
        body["error"].as_str().unwrap_or_default(),
        body["code"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn an_ordinary_amount_gets_widget_parameters_and_the_transaction_completes() {
    let sandbox = sandbox().await;
    let (status, params, _) = sandbox.amount("100").await;
    assert_eq!(status, 200, "{params}");
    assert_eq!(params["fix_network"], serde_json::json!(["TRC20"]));
    let transaction = params["merchant_transaction_id"].as_str().unwrap();
    assert_eq!(sandbox.final_status(transaction).await, "completed");
}

#[tokio::test]
async fn amount_1_02_fails_once_and_the_retry_succeeds() {
    let sandbox = sandbox().await;
    let response = sandbox
        .app
        .checkout()
        .header("X-Request-Id", "sandbox-value-1-02")
        .json(&serde_json::json!({"network": "TRC20", "currency": "USDT", "amount": "1.02"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let retries = log_events_with_message("sandbox-value-1-02", RETRYING);
    assert_eq!(retries.len(), 1, "{retries:?}");
}

#[tokio::test]
async fn amount_1_05_is_a_500_once_and_the_retry_succeeds() {
    let (status, body, _) = sandbox().await.amount("1.05").await;
    assert_eq!(status, 200, "{body}");
}

/// The test values a checkout fails on, and the error envelope the frontend gets for each.
const FAILING_AMOUNTS: [(&str, u16, (&str, &str)); 5] = [
    // Fails every attempt.
    ("2.02", 502, ("upstream_error", "provider_error")),
    // A 500 every time.
    ("2.05", 502, ("upstream_error", "provider_error")),
    // Answers too late.
    ("5.04", 504, ("upstream_timeout", "upstream_timeout")),
    // The credentials refused.
    ("4.01", 502, ("upstream_error", "upstream_misconfigured")),
    ("4.03", 502, ("upstream_error", "upstream_misconfigured")),
];

#[tokio::test]
async fn each_failing_amount_is_the_documented_error() {
    // A sandbox of its own for each value, all at once. The value that answers too late (after
    // the stand-in's 1.5 s) gets an attempt shorter than that.
    let checks = FAILING_AMOUNTS.map(|(amount, status, slugs)| async move {
        let sandbox = sandbox_with(|settings| {
            if status == 504 {
                settings.proof.request_timeout_ms = 500;
                settings.proof.deadline_ms = 3000;
            }
        })
        .await;
        let (got, body, _) = sandbox.amount(amount).await;
        assert_eq!((got, code(&body)), (status, slugs), "amount {amount}");
    });
    futures_util::future::join_all(checks).await;
}

#[tokio::test]
async fn amount_4_29_is_proofs_429_passed_through_with_its_retry_after() {
    let (status, body, headers) = sandbox().await.amount("4.29").await;
    assert_eq!(
        (status, code(&body)),
        (429, ("rate_limit_exceeded", "rate_limit_exceeded"))
    );
    assert_eq!(headers["retry-after"], "30");
}

#[tokio::test]
async fn amounts_3_00_and_3_01_end_failed_and_cancelled() {
    let sandbox = sandbox().await;
    for (amount, ending) in [("3.00", "failed"), ("3.01", "cancelled")] {
        let (status, params, _) = sandbox.amount(amount).await;
        assert_eq!(status, 200);
        let transaction = params["merchant_transaction_id"].as_str().unwrap();
        assert_eq!(sandbox.final_status(transaction).await, ending, "{amount}");
    }
}

#[tokio::test]
async fn a_currency_not_enabled_and_a_pair_without_wallet_are_proofs_400s() {
    let sandbox = sandbox().await;
    let (status, body, _) = sandbox
        .checkout(serde_json::json!({"network": "TRC20", "currency": "BTC", "amount": "1"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, ("invalid_request", "currency_not_allowed"))
    );
    let (status, body, _) = sandbox
        .checkout(serde_json::json!({"network": "TRC20", "currency": "USDC", "amount": "1"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, ("wallet_not_supported", "WALLET_NOT_SUPPORTED"))
    );
}

#[tokio::test]
async fn a_wrong_token_or_origin_is_refused_by_the_stand_in_for_real() {
    let wrong_token =
        sandbox_with(|s| s.proof.client_token = SecretString::from("pk_wrong_token_000")).await;
    let (status, body, _) = wrong_token.amount("100").await;
    assert_eq!(
        (status, code(&body)),
        (502, ("upstream_error", "upstream_misconfigured"))
    );

    let wrong_origin =
        sandbox_with(|s| s.proof.origin = "https://unregistered.example".into()).await;
    let (status, body, _) = wrong_origin.amount("100").await;
    assert_eq!(
        (status, code(&body)),
        (502, ("upstream_error", "upstream_misconfigured"))
    );
}

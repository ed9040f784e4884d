//! The embedded Proof stand-in, driven over HTTP as a partner backend would call Proof.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{CloseCode, Frame, Message};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hmac::{Hmac, Mac};
use proof_stand_in::{
    OVERSIZED_FRAME_BYTES, ProofStandIn, SignedFields, StandInClock, StandInConfig,
    StandInControls, WebSocketFault, session_signature,
};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// The same waiting as the service's own tests; this crate uses only part of it.
#[allow(dead_code)]
#[path = "../../tests/support/eventually.rs"]
mod eventually;

use eventually::{EVENTUALLY, eventually_async, within_async};

const TOKEN: &str = "pk_test_stand_in_9c1e5b2d4f60a8e1";
const ORIGIN: &str = "https://partner.example.com";
const STEP: Duration = Duration::from_millis(200);
const SLOW: Duration = Duration::from_millis(300);

/// The documented session response fields, in the documented order.
const SESSION_FIELDS: [&str; 22] = [
    "merchant_transaction_id",
    "widget_id",
    "address",
    "signature",
    "init_token",
    "init_token_type",
    "currency",
    "currencies",
    "fix_currency",
    "network",
    "networks",
    "fix_network",
    "amount",
    "fix_amount",
    "fiat_currency",
    "fiat_currencies",
    "fix_fiat_currency",
    "fix_fiat_amount",
    "type",
    "lang",
    "theme",
    "redirect_url",
];

/// Statuses move only when a test advances the stand-in's clock, so no test waits on real time.
fn test_config() -> StandInConfig {
    let mut config = StandInConfig::sandbox(SecretString::from(TOKEN), vec![ORIGIN.to_owned()]);
    config.status_step = STEP;
    config.slow_answer = SLOW;
    config.clock = StandInClock::manual();
    config
}

struct StandIn {
    base_url: String,
    signing_key: Vec<u8>,
    client: reqwest::Client,
    clock: StandInClock,
    controls: StandInControls,
}

async fn spawn() -> StandIn {
    spawn_with(test_config()).await
}

async fn spawn_with(config: StandInConfig) -> StandIn {
    let signing_key = config.signing_key.clone();
    let clock = config.clock.clone();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let stand_in = ProofStandIn::start(config, listener).expect("stand-in starts");
    let base_url = stand_in.base_url();
    assert_eq!(base_url, format!("http://127.0.0.1:{}", stand_in.port()));
    let controls = stand_in.controls();
    tokio::spawn(stand_in.into_server());
    StandIn {
        base_url,
        signing_key,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        clock,
        controls,
    }
}

fn session_body(amount: &str) -> Value {
    json!({
        "partner_user_id": "user-123",
        "user_email": "user@example.com",
        "network": "TRC20",
        "currency": "USDT",
        "amount": amount,
        "type": "buy",
        "client_ip": "203.0.113.42"
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

impl StandIn {
    fn post(&self) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/widget/session", self.base_url))
            .bearer_auth(TOKEN)
            .header("Origin", ORIGIN)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(TOKEN)
            .header("Origin", ORIGIN)
    }

    async fn create(&self, body: &Value) -> reqwest::Response {
        self.post().json(body).send().await.unwrap()
    }

    async fn create_with_request_id(&self, body: &Value, request_id: &str) -> reqwest::Response {
        self.post()
            .header("X-Request-Id", request_id)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a session that must succeed and returns its body.
    async fn session(&self, body: &Value) -> Value {
        let response = self.create(body).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn transaction(&self, id: &str) -> Value {
        let response = self
            .get(&format!("/widget/transactions/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn kyc(&self, user: &str) -> String {
        let response = self
            .get(&format!("/widget/users/{user}/kyc-status"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["partner_user_id"], user);
        body["status"].as_str().unwrap().to_owned()
    }
}

/// Checks a response is Proof's error envelope with this status, `error` and `code`, with JSON
/// content type and a request id, and returns its message.
async fn assert_error(
    response: reqwest::Response,
    status: StatusCode,
    error: &str,
    code: &str,
) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["code"], code, "{body}");
    body["message"].as_str().expect("a message").to_owned()
}

fn is_lower_hex(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_iso8601_utc(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

// Access control

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_missing_token() {
    let app = spawn().await;
    let response = app
        .client
        .post(format!("{}/widget/session", app.base_url))
        .header("Origin", ORIGIN)
        .json(&session_body("100"))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        "missing_token",
    )
    .await;
}

#[tokio::test]
async fn a_request_with_a_wrong_token_is_refused_with_invalid_token() {
    let app = spawn().await;
    for authorization in [
        "Bearer pk_test_wrong".to_owned(),
        format!("Bearer {TOKEN}x"),
        format!("Basic {TOKEN}"),
    ] {
        let response = app
            .client
            .post(format!("{}/widget/session", app.base_url))
            .header("Authorization", authorization)
            .header("Origin", ORIGIN)
            .json(&session_body("100"))
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::UNAUTHORIZED,
            "unauthorised",
            "invalid_token",
        )
        .await;
    }
}

#[tokio::test]
async fn a_request_without_an_origin_is_refused_with_forbidden_origin() {
    let app = spawn().await;
    let response = app
        .client
        .post(format!("{}/widget/session", app.base_url))
        .bearer_auth(TOKEN)
        .json(&session_body("100"))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::FORBIDDEN,
        "forbidden",
        "forbidden_origin",
    )
    .await;
}

#[tokio::test]
async fn a_request_from_a_foreign_origin_is_refused_with_forbidden_origin() {
    let app = spawn().await;
    for origin in [
        "https://evil.example.com",
        "https://partner.example.com/",
        "http://partner.example.com",
    ] {
        let response = app
            .client
            .post(format!("{}/widget/session", app.base_url))
            .bearer_auth(TOKEN)
            .header("Origin", origin)
            .json(&session_body("100"))
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::FORBIDDEN,
            "forbidden",
            "forbidden_origin",
        )
        .await;
    }
}

#[tokio::test]
async fn the_token_is_checked_before_the_origin() {
    let app = spawn().await;
    let response = app
        .client
        .post(format!("{}/widget/session", app.base_url))
        .bearer_auth("wrong")
        .header("Origin", "https://evil.example.com")
        .json(&session_body("100"))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn the_status_routes_check_the_token_and_the_origin_too() {
    let app = spawn().await;
    for path in [
        "/widget/transactions/550e8400-e29b-41d4-a716-446655440000",
        "/widget/users/user-123/kyc-status",
        "/no/such/route",
    ] {
        let url = format!("{}{path}", app.base_url);
        let response = app.client.get(&url).send().await.unwrap();
        assert_error(
            response,
            StatusCode::UNAUTHORIZED,
            "unauthorised",
            "missing_token",
        )
        .await;
        let response = app
            .client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::FORBIDDEN,
            "forbidden",
            "forbidden_origin",
        )
        .await;
    }
}

// Validation

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_with_decode_error() {
    let app = spawn().await;
    for body in ["not json", "", "{\"partner_user_id\":", "[1,2]", "\"text\""] {
        let response = app
            .post()
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "decode_error",
        )
        .await;
    }
}

#[tokio::test]
async fn each_missing_required_field_is_named_in_a_missing_param_error() {
    let app = spawn().await;
    for field in [
        "partner_user_id",
        "user_email",
        "network",
        "currency",
        "amount",
    ] {
        for body in [
            without(session_body("100"), field),
            with(session_body("100"), field, Value::Null),
        ] {
            let message = assert_error(
                app.create(&body).await,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "missing_param",
            )
            .await;
            assert!(message.contains(field), "{field}: {message}");
        }
    }
}

#[tokio::test]
async fn a_field_of_the_wrong_type_or_format_is_named_in_a_validation_error() {
    let app = spawn().await;
    let cases = [
        ("partner_user_id", json!(123)),
        ("partner_user_id", json!("")),
        ("partner_user_id", json!("user\n123")),
        ("user_email", json!(["user@example.com"])),
        ("user_email", json!("not-an-email")),
        ("network", json!(true)),
        ("network", json!("TRC 20")),
        ("currency", json!(5)),
        ("currency", json!("")),
        ("amount", json!(100)),
        ("amount", json!("-1")),
        ("amount", json!("0")),
        ("amount", json!("0.00")),
        ("amount", json!("1e3")),
        ("amount", json!("1.")),
        ("amount", json!("abc")),
        ("type", json!("swap")),
        ("type", json!(1)),
        ("client_ip", json!("not-an-ip")),
        ("client_ip", json!("203.0.113.42:443")),
        ("client_ip", json!(42)),
        ("redirect_url", json!("javascript:alert(1)")),
        ("redirect_url", json!("/done")),
        ("redirect_url", json!({})),
        ("address", json!(42)),
        ("address", json!("")),
    ];
    for (field, value) in cases {
        let message = assert_error(
            app.create(&with(session_body("100"), field, value.clone()))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "validation_error",
        )
        .await;
        assert!(message.contains(field), "{field}={value}: {message}");
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn().await;
    let body = with(session_body("100"), "favourite_colour", json!({"a": [1]}));
    app.session(&body).await;
}

#[tokio::test]
async fn a_currency_that_is_not_enabled_is_refused_with_currency_not_allowed() {
    let app = spawn().await;
    let body = with(session_body("100"), "currency", json!("BTC"));
    assert_error(
        app.create(&body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "currency_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_currency_without_a_wallet_on_the_network_is_refused_with_wallet_not_supported() {
    let app = spawn().await;
    for (currency, network) in [("USDC", "TRC20"), ("ETH", "BEP20"), ("USDT", "SOLANA")] {
        let body = with(
            with(session_body("100"), "currency", json!(currency)),
            "network",
            json!(network),
        );
        assert_error(
            app.create(&body).await,
            StatusCode::BAD_REQUEST,
            "wallet_not_supported",
            "WALLET_NOT_SUPPORTED",
        )
        .await;
    }
}

#[tokio::test]
async fn a_sell_session_is_refused_when_off_ramp_is_not_enabled() {
    let mut config = test_config();
    config.sell_enabled = false;
    let app = spawn_with(config).await;
    let body = with(session_body("100"), "type", json!("sell"));
    let message = assert_error(
        app.create(&body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "validation_error",
    )
    .await;
    assert!(message.contains("off-ramp"), "{message}");
    app.session(&session_body("100")).await;
}

#[tokio::test]
async fn a_sell_session_is_created_when_off_ramp_is_enabled() {
    let app = spawn().await;
    let session = app
        .session(&with(session_body("100"), "type", json!("sell")))
        .await;
    assert_eq!(session["type"], "sell");
}

// Test values

#[tokio::test]
async fn amount_1_02_fails_with_provider_error_on_the_first_attempt_and_succeeds_on_the_retry() {
    let app = spawn().await;
    let body = session_body("1.02");
    let first = app.create_with_request_id(&body, "req-102-a").await;
    assert_error(
        first,
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "provider_error",
    )
    .await;
    let retry = app.create_with_request_id(&body, "req-102-a").await;
    assert_eq!(retry.status(), StatusCode::OK);
    let other = app.create_with_request_id(&body, "req-102-b").await;
    assert_error(
        other,
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "provider_error",
    )
    .await;
    let other_retry = app.create_with_request_id(&body, "req-102-b").await;
    assert_eq!(other_retry.status(), StatusCode::OK);
}

#[tokio::test]
async fn amount_1_02_without_a_request_id_recognises_a_retry_by_its_body() {
    let app = spawn().await;
    let body = session_body("1.02");
    assert_eq!(app.create(&body).await.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(app.create(&body).await.status(), StatusCode::OK);
    let different = with(body, "partner_user_id", json!("user-456"));
    assert_eq!(
        app.create(&different).await.status(),
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn amount_2_02_fails_with_provider_error_every_time() {
    let app = spawn().await;
    for _ in 0..3 {
        let response = app
            .create_with_request_id(&session_body("2.02"), "req-202")
            .await;
        assert_error(
            response,
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "provider_error",
        )
        .await;
    }
}

#[tokio::test]
async fn amount_1_05_fails_with_db_error_on_the_first_attempt_and_succeeds_on_the_retry() {
    let app = spawn().await;
    let body = session_body("1.05");
    let first = app.create_with_request_id(&body, "req-105-a").await;
    assert_error(
        first,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "db_error",
    )
    .await;
    let retry = app.create_with_request_id(&body, "req-105-a").await;
    assert_eq!(retry.status(), StatusCode::OK);
    let other = app.create_with_request_id(&body, "req-105-b").await;
    assert_error(
        other,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "db_error",
    )
    .await;
}

#[tokio::test]
async fn amount_2_05_fails_with_db_error_every_time() {
    let app = spawn().await;
    for _ in 0..3 {
        let response = app
            .create_with_request_id(&session_body("2.05"), "req-205")
            .await;
        assert_error(
            response,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "db_error",
        )
        .await;
    }
}

#[tokio::test]
async fn amount_5_04_answers_only_after_the_slow_answer_delay() {
    let app = spawn().await;
    let started = Instant::now();
    app.session(&session_body("5.04")).await;
    assert!(started.elapsed() >= SLOW, "{:?}", started.elapsed());
}

#[tokio::test]
async fn other_amounts_are_answered_while_a_slow_one_is_still_waiting() {
    let mut config = test_config();
    config.slow_answer = Duration::from_secs(600);
    let app = std::sync::Arc::new(spawn_with(config).await);
    let slow = tokio::spawn({
        let app = app.clone();
        async move { app.create(&session_body("5.04")).await }
    });
    app.session(&session_body("100")).await;
    assert!(!slow.is_finished(), "the slow answer came back early");
    slow.abort();
}

#[tokio::test]
async fn amount_4_01_is_refused_as_if_the_token_were_revoked() {
    let app = spawn().await;
    assert_error(
        app.create(&session_body("4.01")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn amount_4_03_is_refused_with_forbidden_origin() {
    let app = spawn().await;
    assert_error(
        app.create(&session_body("4.03")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "forbidden_origin",
    )
    .await;
}

#[tokio::test]
async fn amount_4_29_is_rate_limited_with_retry_after_30() {
    let app = spawn().await;
    let response = app.create(&session_body("4.29")).await;
    assert_eq!(response.headers()["retry-after"], "30");
    assert_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    )
    .await;
}

#[tokio::test]
async fn test_values_apply_only_after_authentication_and_validation() {
    let app = spawn().await;
    let response = app
        .client
        .post(format!("{}/widget/session", app.base_url))
        .bearer_auth(TOKEN)
        .json(&session_body("4.29"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let missing_email = without(session_body("4.01"), "user_email");
    assert_error(
        app.create(&missing_email).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "missing_param",
    )
    .await;
    let foreign_currency = with(session_body("2.02"), "currency", json!("BTC"));
    assert_error(
        app.create(&foreign_currency).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "currency_not_allowed",
    )
    .await;
    let no_wallet = with(session_body("1.02"), "network", json!("BEP21"));
    assert_error(
        app.create(&no_wallet).await,
        StatusCode::BAD_REQUEST,
        "wallet_not_supported",
        "WALLET_NOT_SUPPORTED",
    )
    .await;
    // The refused 1.02 attempt did not count as the first attempt.
    assert_eq!(
        app.create(&session_body("1.02")).await.status(),
        StatusCode::BAD_GATEWAY
    );
}

// The session body

#[tokio::test]
async fn a_session_has_every_documented_field_in_the_documented_order() {
    let app = spawn().await;
    let response = app.create(&session_body("100")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let raw = response.text().await.unwrap();
    let session: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(session.as_object().unwrap().len(), SESSION_FIELDS.len());
    let mut previous = 0;
    for field in SESSION_FIELDS {
        let position = raw
            .find(&format!("\"{field}\":"))
            .unwrap_or_else(|| panic!("{field} missing from {raw}"));
        assert!(position >= previous, "{field} out of order in {raw}");
        previous = position;
    }

    let config = test_config();
    let widget = &config.widget_config;
    let mtid = session["merchant_transaction_id"].as_str().unwrap();
    let parsed = uuid::Uuid::parse_str(mtid).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert!(!session["widget_id"].as_str().unwrap().is_empty());
    assert_eq!(session["init_token_type"], "sdk_partner_authorization");
    assert_eq!(session["currency"], "USDT");
    assert_eq!(session["currencies"], json!(widget.currencies));
    assert_eq!(session["fix_currency"], true);
    assert_eq!(session["network"], "TRC20");
    assert_eq!(session["networks"], json!(["TRC20", "ERC20", "BEP20"]));
    assert_eq!(session["fix_network"], json!([session["network"]]));
    assert_eq!(session["amount"], "100");
    assert_eq!(session["fix_amount"], true);
    assert_eq!(session["fiat_currency"], "EUR");
    assert_eq!(session["fiat_currencies"], json!(["EUR", "USD"]));
    assert_eq!(session["fix_fiat_currency"], false);
    assert_eq!(session["fix_fiat_amount"], true);
    assert_eq!(session["type"], "buy");
    assert_eq!(session["lang"], "en");
    assert_eq!(session["theme"], "light");
    assert_eq!(session["redirect_url"], format!("{ORIGIN}/done"));
}

#[tokio::test]
async fn the_signature_is_v2_hex_and_recomputes_from_the_session() {
    let app = spawn().await;
    for (body, client_ip) in [
        (session_body("100"), "203.0.113.42"),
        (without(session_body("99.50"), "client_ip"), ""),
    ] {
        let session = app.session(&body).await;
        let signature = session["signature"].as_str().unwrap();
        let hex = signature.strip_prefix("v2:").expect("v2: prefix");
        assert_eq!(hex.len(), 128);
        assert!(is_lower_hex(hex), "{signature}");
        let fields = SignedFields {
            merchant_transaction_id: session["merchant_transaction_id"].as_str().unwrap(),
            partner_user_id: "user-123",
            network: session["network"].as_str().unwrap(),
            currency: session["currency"].as_str().unwrap(),
            amount: session["amount"].as_str().unwrap(),
            checkout_type: session["type"].as_str().unwrap(),
            client_ip,
            address: session["address"].as_str().unwrap(),
        };
        assert_eq!(signature, session_signature(&app.signing_key, &fields));
    }
}

#[tokio::test]
async fn the_init_token_is_a_signed_jwt_for_the_transaction_valid_for_an_hour() {
    let app = spawn().await;
    let session = app.session(&session_body("100")).await;
    let token = session["init_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).unwrap()
    };
    assert_eq!(decode(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
    let claims = decode(parts[1]);
    assert_eq!(claims["mtid"], session["merchant_transaction_id"]);
    assert_eq!(claims["sub"], "user-123");
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 3600
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&app.signing_key).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("HMAC-SHA256 signature");
}

#[tokio::test]
async fn the_address_is_derived_per_user_and_network_unless_the_request_has_one() {
    let app = spawn().await;
    let tron = app.session(&session_body("100")).await["address"].clone();
    let tron = tron.as_str().unwrap();
    assert_eq!(tron.len(), 34);
    assert!(tron.starts_with('T'));
    assert_eq!(app.session(&session_body("7")).await["address"], tron);
    let other_user = with(session_body("100"), "partner_user_id", json!("user-456"));
    assert_ne!(app.session(&other_user).await["address"], tron);

    let evm = with(session_body("100"), "network", json!("ERC20"));
    let evm = app.session(&evm).await["address"].clone();
    let evm = evm.as_str().unwrap();
    assert_eq!(evm.len(), 42);
    assert!(evm.starts_with("0x") && is_lower_hex(&evm[2..]), "{evm}");

    let given = with(session_body("100"), "address", json!("TGivenAddress123"));
    assert_eq!(app.session(&given).await["address"], "TGivenAddress123");
}

#[tokio::test]
async fn type_and_redirect_url_come_from_the_request_or_the_widget_config() {
    let mut config = test_config();
    config.widget_config.default_type = "sell".to_owned();
    config.widget_config.redirect_url = "https://partner.example.com/finished".to_owned();
    let app = spawn_with(config).await;
    let defaults = app.session(&without(session_body("100"), "type")).await;
    assert_eq!(defaults["type"], "sell");
    assert_eq!(
        defaults["redirect_url"],
        "https://partner.example.com/finished"
    );
    let overridden = with(
        session_body("100"),
        "redirect_url",
        json!("https://partner.example.com/other"),
    );
    let overridden = app.session(&overridden).await;
    assert_eq!(overridden["type"], "buy");
    assert_eq!(
        overridden["redirect_url"],
        "https://partner.example.com/other"
    );
}

// Transactions and KYC: the stand-in's clock is moved on by hand, one status step at a time.

#[tokio::test]
async fn a_transaction_moves_from_pending_to_processing_to_completed() {
    let app = spawn().await;
    let session = app.session(&session_body("100")).await;
    let id = session["merchant_transaction_id"].as_str().unwrap();

    let pending = app.transaction(id).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["merchant_transaction_id"], id);
    assert_eq!(pending["partner_user_id"], "user-123");
    assert_eq!(pending["type"], "buy");
    assert_eq!(pending["currency"], "USDT");
    assert_eq!(pending["network"], "TRC20");
    assert_eq!(pending["crypto_amount"], "100");
    assert_eq!(pending["fiat_currency"], "EUR");
    assert_eq!(pending["fiat_amount"], "92.00");
    let created_at = pending["created_at"].as_str().unwrap();
    assert!(is_iso8601_utc(created_at), "{created_at}");
    assert_eq!(pending["updated_at"], created_at);

    app.clock.advance(STEP - Duration::from_millis(1));
    assert_eq!(app.transaction(id).await["status"], "pending");
    app.clock.advance(Duration::from_millis(1));
    let processing = app.transaction(id).await;
    assert_eq!(processing["status"], "processing");
    assert!(is_iso8601_utc(processing["updated_at"].as_str().unwrap()));

    app.clock.advance(STEP);
    let completed = app.transaction(id).await;
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["created_at"], created_at);
    assert!(completed["updated_at"].as_str().unwrap() >= created_at);
}

#[tokio::test]
async fn amounts_3_00_and_3_01_end_failed_and_cancelled() {
    let app = spawn().await;
    let failed = app.session(&session_body("3.00")).await;
    let cancelled = app.session(&session_body("3.01")).await;
    let failed = failed["merchant_transaction_id"].as_str().unwrap();
    let cancelled = cancelled["merchant_transaction_id"].as_str().unwrap();
    assert_eq!(app.transaction(failed).await["status"], "pending");
    assert_eq!(app.transaction(cancelled).await["status"], "pending");
    app.clock.advance(STEP);
    assert_eq!(app.transaction(failed).await["status"], "processing");
    app.clock.advance(STEP);
    assert_eq!(app.transaction(failed).await["status"], "failed");
    assert_eq!(app.transaction(cancelled).await["status"], "cancelled");
}

#[tokio::test]
async fn an_unknown_transaction_is_not_found() {
    let app = spawn().await;
    let response = app
        .get("/widget/transactions/550e8400-e29b-41d4-a716-446655440000")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found", "not_found").await;
}

#[tokio::test]
async fn kyc_status_goes_from_not_started_to_pending_to_verified() {
    let app = spawn().await;
    assert_eq!(app.kyc("user-123").await, "not_started");
    app.session(&session_body("100")).await;
    assert_eq!(app.kyc("user-123").await, "pending");
    app.clock.advance(STEP);
    assert_eq!(app.kyc("user-123").await, "pending");
    app.clock.advance(STEP);
    assert_eq!(app.kyc("user-123").await, "verified");
}

#[tokio::test]
async fn kyc_status_stays_pending_while_no_transaction_completed() {
    let app = spawn().await;
    app.session(&with(
        session_body("3.00"),
        "partner_user_id",
        json!("user-9"),
    ))
    .await;
    app.clock.advance(STEP * 10);
    assert_eq!(app.kyc("user-9").await, "pending");
}

#[tokio::test]
async fn kyc_status_is_failed_for_user_ids_starting_with_kyc_failed() {
    let app = spawn().await;
    assert_eq!(app.kyc("kyc-failed-1").await, "failed");
    app.session(&with(
        session_body("100"),
        "partner_user_id",
        json!("kyc-failed-2"),
    ))
    .await;
    assert_eq!(app.kyc("kyc-failed-2").await, "failed");
}

// Routes and headers

#[tokio::test]
async fn an_unknown_route_is_not_found() {
    let app = spawn().await;
    let post_elsewhere = app
        .client
        .post(format!("{}/widget/sessions", app.base_url))
        .bearer_auth(TOKEN)
        .header("Origin", ORIGIN)
        .json(&session_body("100"));
    for request in [
        app.get("/widget/nothing"),
        app.get("/widget/session"),
        post_elsewhere,
    ] {
        let response = request.send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "not_found", "not_found").await;
    }
}

#[tokio::test]
async fn the_request_id_is_echoed_and_otherwise_generated() {
    let app = spawn().await;
    let echoed = app
        .create_with_request_id(&session_body("100"), "req-echo-1")
        .await;
    assert_eq!(echoed.headers()["x-request-id"], "req-echo-1");
    let refused = app
        .client
        .get(format!("{}/widget/users/u/kyc-status", app.base_url))
        .header("X-Request-Id", "req-echo-2")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["x-request-id"], "req-echo-2");
    let generated = app.create(&session_body("100")).await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

// Configuration

#[test]
fn the_config_debug_output_redacts_the_token_and_the_key() {
    let config = test_config();
    let debug = format!("{config:?}");
    assert!(!debug.contains(TOKEN));
    assert!(debug.contains("[REDACTED]"));
    let key_bytes = format!("{:?}", config.signing_key);
    assert!(!debug.contains(&key_bytes));

    let mut config = test_config();
    config.webhook_url = Some("http://partner.example.com/proof-webhook/s3cr3t-path".to_owned());
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t-path"), "{debug}");
}

#[test]
fn the_sandbox_defaults_match_the_documented_ones() {
    let config = StandInConfig::sandbox(SecretString::from(TOKEN), vec![ORIGIN.to_owned()]);
    assert_eq!(config.currencies, ["USDT", "USDC", "ETH"]);
    let wallets: Vec<(&str, &str)> = config
        .wallets
        .iter()
        .map(|(c, n)| (c.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        wallets,
        [
            ("USDT", "TRC20"),
            ("USDT", "ERC20"),
            ("USDT", "BEP20"),
            ("USDC", "ERC20"),
            ("USDC", "BEP20"),
            ("ETH", "ERC20"),
        ]
    );
    assert!(config.sell_enabled);
    assert_eq!(config.widget_config.currencies, config.currencies);
    assert_eq!(config.widget_config.networks, ["TRC20", "ERC20", "BEP20"]);
    assert_eq!(config.widget_config.fiat_currency, "EUR");
    assert_eq!(config.widget_config.fiat_currencies, ["EUR", "USD"]);
    assert_eq!(config.widget_config.default_type, "buy");
    assert_eq!(config.widget_config.lang, "en");
    assert_eq!(config.widget_config.theme, "light");
    assert_eq!(config.widget_config.redirect_url, format!("{ORIGIN}/done"));
    assert_eq!(config.signing_key.len(), 32);
    assert_ne!(
        config.signing_key,
        StandInConfig::sandbox(SecretString::from(TOKEN), vec![]).signing_key
    );
    assert_eq!(config.status_step, Duration::from_secs(2));
    assert_eq!(config.slow_answer, Duration::from_secs(30));
    assert!(config.websocket_enabled);
    assert_eq!(config.max_websockets, 10_000);
    assert_eq!(config.max_websockets, proof_stand_in::MAX_WEBSOCKETS);
    assert_eq!(config.webhook_url, None);
}

// The WebSocket: the clock is moved by hand, and each frame is awaited with a generous patience, so
// that only a stand-in that never sends fails.

/// The documented `tx.update` fields, in the documented order (`payment_method` is optional and
/// the stand-in has none).
const UPDATE_FIELDS: [&str; 9] = [
    "event",
    "merchant_transaction_id",
    "type",
    "status",
    "currency",
    "fiat_currency",
    "fiat_amount",
    "crypto_amount",
    "occurred_at",
];

/// awc's client runs on the current thread's local task set.
async fn local<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::LocalSet::new().run_until(future).await
}

impl StandIn {
    /// A WebSocket request for `tx_id`, without the token and the Origin. It waits for the
    /// connection and the upgrade with the tests' patience rather than awc's 5 s, which hundreds of
    /// handshakes at once on a busy machine could take.
    fn ws_request(&self, tx_id: &str) -> awc::ws::WebsocketsRequest {
        let url = self.base_url.replacen("http://", "ws://", 1);
        awc::Client::builder()
            .connector(awc::Connector::new().timeout(EVENTUALLY))
            .timeout(EVENTUALLY)
            .finish()
            .ws(format!("{url}/ws?tx_id={tx_id}"))
    }

    /// Opens the WebSocket of `tx_id` as a partner backend would.
    async fn ws(
        &self,
        tx_id: &str,
    ) -> Result<
        (
            awc::ClientResponse,
            impl Stream<Item = Result<Frame, WsProtocolError>>
            + Sink<Message, Error = WsProtocolError>
            + Unpin
            + use<>,
        ),
        WsClientError,
    > {
        self.ws_request(tx_id)
            .bearer_auth(TOKEN)
            .origin(ORIGIN)
            .connect()
            .await
    }

    async fn transaction_raw(&self, id: &str) -> String {
        let response = self
            .get(&format!("/widget/transactions/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    async fn transaction_id(&self, amount: &str) -> String {
        let session = self.session(&session_body(amount)).await;
        session["merchant_transaction_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The status a refused WebSocket request was answered with.
fn refusal(result: Result<impl Sized, WsClientError>) -> u16 {
    match result {
        Err(WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the upgrade was accepted"),
    }
}

async fn next_frame(
    socket: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin),
) -> Frame {
    match tokio::time::timeout(EVENTUALLY, socket.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(other) => panic!("expected a frame, got {other:?}"),
        Err(_) => panic!("no frame within {EVENTUALLY:?}"),
    }
}

/// The next frame, which must be a `tx.update` with every documented field in order.
async fn next_update(
    socket: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin),
) -> Value {
    let Frame::Text(raw) = next_frame(socket).await else {
        panic!("expected a text frame");
    };
    let raw = std::str::from_utf8(&raw).expect("UTF-8");
    let update: Value = serde_json::from_str(raw).expect("JSON");
    assert_eq!(
        update.as_object().unwrap().len(),
        UPDATE_FIELDS.len(),
        "{raw}"
    );
    let mut previous = 0;
    for field in UPDATE_FIELDS {
        let position = raw
            .find(&format!("\"{field}\":"))
            .unwrap_or_else(|| panic!("{field} missing from {raw}"));
        assert!(position >= previous, "{field} out of order in {raw}");
        previous = position;
    }
    assert_eq!(update["event"], "tx.update");
    update
}

/// The next frame is a normal close, and then the stand-in ends the connection.
async fn assert_closed_normally(
    socket: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin),
) {
    match next_frame(socket).await {
        Frame::Close(Some(reason)) => assert_eq!(reason.code, CloseCode::Normal),
        other => panic!("expected a normal close, got {other:?}"),
    }
    match tokio::time::timeout(EVENTUALLY, socket.next()).await {
        Ok(None | Some(Err(_))) => {}
        Ok(Some(Ok(frame))) => panic!("a frame after the close: {frame:?}"),
        Err(_) => panic!("the connection was still open {EVENTUALLY:?} after the close"),
    }
}

/// A frame says what the poll route says of the same status.
fn assert_agrees(update: &Value, poll: &Value) {
    for field in [
        "merchant_transaction_id",
        "type",
        "status",
        "currency",
        "fiat_currency",
        "fiat_amount",
        "crypto_amount",
    ] {
        assert_eq!(update[field], poll[field], "{field}: {update} vs {poll}");
    }
    assert_eq!(
        update["occurred_at"], poll["updated_at"],
        "{update} vs {poll}"
    );
}

#[tokio::test]
async fn the_websocket_checks_the_token_then_the_origin() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    local(async {
        assert_eq!(
            refusal(app.ws_request(&id).origin(ORIGIN).connect().await),
            401
        );
        let wrong = app
            .ws_request(&id)
            .bearer_auth("pk_test_wrong")
            .origin(ORIGIN)
            .connect()
            .await;
        assert_eq!(refusal(wrong), 401);
        let wrong_then_foreign = app
            .ws_request(&id)
            .bearer_auth(format!("{TOKEN}x"))
            .origin("https://evil.example.com")
            .connect()
            .await;
        assert_eq!(refusal(wrong_then_foreign), 401);
        let no_origin = app.ws_request(&id).bearer_auth(TOKEN).connect().await;
        assert_eq!(refusal(no_origin), 403);
    })
    .await;
    let response = app
        .client
        .get(format!("{}/ws?tx_id={id}", app.base_url))
        .bearer_auth("pk_test_wrong")
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        "invalid_token",
    )
    .await;
    assert_eq!(app.controls.websocket_connections(), 0);
}

#[tokio::test]
async fn the_websocket_refuses_an_unknown_transaction_a_missing_tx_id_and_a_plain_get() {
    let app = spawn().await;
    let unknown = "550e8400-e29b-41d4-a716-446655440000";
    local(async { assert_eq!(refusal(app.ws(unknown).await), 404) }).await;
    let response = app
        .get(&format!("/ws?tx_id={unknown}"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found", "not_found").await;
    for path in ["/ws", "/ws?tx_id=", "/ws?id=abc"] {
        let message = assert_error(
            app.get(path).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing_param",
        )
        .await;
        assert!(message.contains("tx_id"), "{message}");
    }
    let id = app.transaction_id("100").await;
    assert_error(
        app.get(&format!("/ws?tx_id={id}")).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "validation_error",
    )
    .await;
    assert_eq!(app.controls.websocket_connections(), 0);
    assert_eq!(app.controls.open_websockets(), 0);
}

#[tokio::test]
async fn the_websocket_sends_each_status_once_in_order_and_closes_after_the_terminal_one() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    local(async {
        let (response, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(response.status().as_u16(), 101);
        assert!(response.headers().contains_key("x-request-id"));
        assert!(!response.headers().contains_key("content-type"));

        let pending = next_update(&mut socket).await;
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["merchant_transaction_id"], id.as_str());
        assert_eq!(pending["type"], "buy");
        assert_eq!(pending["currency"], "USDT");
        assert_eq!(pending["fiat_currency"], "EUR");
        assert_eq!(pending["fiat_amount"], "92.00");
        assert_eq!(pending["crypto_amount"], "100");
        assert!(is_iso8601_utc(pending["occurred_at"].as_str().unwrap()));

        app.clock.advance(STEP);
        assert_eq!(next_update(&mut socket).await["status"], "processing");
        app.clock.advance(STEP);
        assert_eq!(next_update(&mut socket).await["status"], "completed");
        assert_closed_normally(&mut socket).await;
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the connection is released", async || {
        controls.open_websockets() == 0
    })
    .await;
}

#[tokio::test]
async fn the_websocket_frames_agree_with_the_poll_route() {
    let app = spawn().await;
    for amount in ["100", "3.00", "3.01"] {
        let id = app.transaction_id(amount).await;
        local(async {
            let (_, mut socket) = app.ws(&id).await.expect("upgraded");
            for _ in 0..3 {
                let update = next_update(&mut socket).await;
                assert_agrees(&update, &app.transaction(&id).await);
                app.clock.advance(STEP);
            }
            assert_closed_normally(&mut socket).await;
        })
        .await;
    }
}

#[tokio::test]
async fn a_clock_jump_over_processing_still_sends_processing_first() {
    let app = spawn().await;
    let id = app.transaction_id("3.01").await;
    local(async {
        let (_, mut socket) = app.ws(&id).await.expect("upgraded");
        let pending = next_update(&mut socket).await;
        assert_eq!(pending["status"], "pending");
        app.clock.advance(STEP * 5);
        let processing = next_update(&mut socket).await;
        let cancelled = next_update(&mut socket).await;
        assert_eq!(processing["status"], "processing");
        assert_eq!(cancelled["status"], "cancelled");
        let poll = app.transaction(&id).await;
        assert_agrees(&cancelled, &poll);
        assert!(processing["occurred_at"].as_str() >= pending["occurred_at"].as_str());
        assert!(processing["occurred_at"].as_str() <= cancelled["occurred_at"].as_str());
        assert_closed_normally(&mut socket).await;
    })
    .await;
}

#[tokio::test]
async fn a_websocket_opened_later_starts_from_the_current_status() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    app.clock.advance(STEP);
    local(async {
        let (_, mut socket) = app.ws(&id).await.expect("upgraded");
        let processing = next_update(&mut socket).await;
        assert_agrees(&processing, &app.transaction(&id).await);
        assert_eq!(processing["status"], "processing");
        app.clock.advance(STEP);
        assert_eq!(next_update(&mut socket).await["status"], "completed");
        assert_closed_normally(&mut socket).await;

        let (_, mut late) = app.ws(&id).await.expect("upgraded");
        let completed = next_update(&mut late).await;
        assert_agrees(&completed, &app.transaction(&id).await);
        assert_closed_normally(&mut late).await;
    })
    .await;
}

#[tokio::test]
async fn the_websocket_answers_pings_with_pongs_and_a_close_with_a_close() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    local(async {
        let (_, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(next_update(&mut socket).await["status"], "pending");
        socket
            .send(Message::Ping(web_bytes("are you there")))
            .await
            .unwrap();
        match next_frame(&mut socket).await {
            Frame::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
            other => panic!("expected a pong, got {other:?}"),
        }
        socket
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .unwrap();
        assert_closed_normally(&mut socket).await;
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the connection is released", async || {
        controls.open_websockets() == 0
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 1);
}

fn web_bytes(text: &'static str) -> actix_web::web::Bytes {
    actix_web::web::Bytes::from_static(text.as_bytes())
}

#[tokio::test]
async fn the_connection_counter_counts_accepted_websockets_only() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    assert_eq!(app.controls.websocket_connections(), 0);
    local(async {
        let (_, mut first) = app.ws(&id).await.expect("upgraded");
        assert_eq!(app.controls.websocket_connections(), 1);
        let (_, mut second) = app.ws(&id).await.expect("upgraded");
        assert_eq!(app.controls.websocket_connections(), 2);
        assert_eq!(app.controls.open_websockets(), 2);
        refusal(app.ws("unknown").await);
        assert_eq!(app.controls.websocket_connections(), 2);

        app.clock.advance(STEP * 2);
        for socket in [&mut first, &mut second] {
            assert_eq!(next_update(socket).await["status"], "pending");
            assert_eq!(next_update(socket).await["status"], "processing");
            assert_eq!(next_update(socket).await["status"], "completed");
            assert_closed_normally(socket).await;
        }
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("both connections are released", async || {
        controls.open_websockets() == 0
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 2);
}

#[tokio::test]
async fn switched_off_websockets_are_refused_with_503_until_switched_back_on() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    app.controls.set_websocket_enabled(false);
    assert_error(
        app.get(&format!("/ws?tx_id={id}")).send().await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "websocket_unavailable",
    )
    .await;
    local(async { assert_eq!(refusal(app.ws(&id).await), 503) }).await;
    assert_eq!(app.controls.websocket_connections(), 0);
    // Polling, the fallback, still answers.
    assert_eq!(app.transaction(&id).await["status"], "pending");

    app.controls.set_websocket_enabled(true);
    local(async {
        let (_, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(next_update(&mut socket).await["status"], "pending");
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 1);

    let mut config = test_config();
    config.websocket_enabled = false;
    let off = spawn_with(config).await;
    let id = off.transaction_id("100").await;
    local(async { assert_eq!(refusal(off.ws(&id).await), 503) }).await;
}

#[tokio::test]
async fn websockets_beyond_max_websockets_are_refused_with_503() {
    let mut config = test_config();
    config.max_websockets = 1;
    let app = spawn_with(config).await;
    let first_id = app.transaction_id("100").await;
    let second_id = app.transaction_id("100").await;
    local(async {
        let (_, mut first) = app.ws(&first_id).await.expect("upgraded");
        assert_eq!(next_update(&mut first).await["status"], "pending");
        assert_eq!(refusal(app.ws(&second_id).await), 503);
        assert_error(
            app.get(&format!("/ws?tx_id={second_id}"))
                .send()
                .await
                .unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "websocket_unavailable",
        )
        .await;
        drop(first);
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the place is freed", async || {
        controls.open_websockets() == 0
    })
    .await;
    local(async {
        let (_, mut second) = app.ws(&second_id).await.expect("upgraded");
        assert_eq!(next_update(&mut second).await["status"], "pending");
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 2);
}

// WebSocket faults: "nothing arrives" is only ever a supporting check, after the stand-in has shown
// (by counting a ping) that it had the chance to answer; a busy machine can only make such a check
// pass, never fail.

/// How long a test listens for a frame that must not come.
const QUIET: Duration = Duration::from_millis(300);

async fn assert_nothing_arrives(
    socket: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin),
    what: &str,
) {
    if let Ok(next) = tokio::time::timeout(QUIET, socket.next()).await {
        panic!("{what}: expected nothing, got {next:?}");
    }
}

/// Sends a ping and waits until the stand-in has received it: its count reaches `count`.
async fn ping(
    app: &StandIn,
    socket: &mut (impl Sink<Message, Error = WsProtocolError> + Unpin),
    count: u64,
) {
    socket
        .send(Message::Ping(web_bytes("are you there")))
        .await
        .unwrap();
    let controls = app.controls.clone();
    eventually_async("the stand-in receives the ping", async || {
        controls.websocket_pings() == count
    })
    .await;
}

async fn next_pong(socket: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin)) {
    match next_frame(socket).await {
        Frame::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// The three frames of a `Garbage` connection, none of them an event.
async fn assert_garbage(socket: &mut (impl Stream<Item = Result<Frame, WsProtocolError>> + Unpin)) {
    match next_frame(socket).await {
        Frame::Text(text) => assert_eq!(&text[..], b"not json"),
        other => panic!("expected a text frame, got {other:?}"),
    }
    match next_frame(socket).await {
        Frame::Text(text) => {
            assert_eq!(&text[..], "\u{1}garbage".as_bytes());
            assert!(serde_json::from_slice::<Value>(&text).is_err());
        }
        other => panic!("expected a text frame, got {other:?}"),
    }
    match next_frame(socket).await {
        Frame::Binary(bytes) => {
            assert!(!bytes.is_empty());
            assert!(std::str::from_utf8(&bytes).is_err(), "{bytes:?}");
        }
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

#[test]
fn websockets_behave_by_default() {
    assert_eq!(WebSocketFault::default(), WebSocketFault::None);
}

#[tokio::test]
async fn a_silent_websocket_sends_nothing_and_answers_no_ping_until_the_client_goes_away() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    app.controls.set_websocket_fault(WebSocketFault::Silent);
    local(async {
        let (response, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(response.status().as_u16(), 101);
        assert_eq!(app.controls.websocket_connections(), 1);
        assert_eq!(app.controls.open_websockets(), 1);
        // Every status a behaving connection would have sent by now, up to the terminal one.
        app.clock.advance(STEP * 2);
        ping(&app, &mut socket, 1).await;
        assert_nothing_arrives(&mut socket, "a silent connection after a ping").await;
        socket
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .unwrap();
        assert_nothing_arrives(&mut socket, "a silent connection after a close").await;
        assert_eq!(app.controls.open_websockets(), 1);
        drop(socket);
    })
    .await;
    let controls = app.controls.clone();
    eventually_async(
        "the connection is released once the client has gone",
        async || controls.open_websockets() == 0,
    )
    .await;
    assert_eq!(app.controls.websocket_connections(), 1);
    assert_eq!(app.controls.websocket_pings(), 1);
}

#[tokio::test]
async fn a_garbage_websocket_sends_frames_that_are_not_events_and_still_answers_pings() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    app.controls.set_websocket_fault(WebSocketFault::Garbage);
    local(async {
        let (response, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(response.status().as_u16(), 101);
        assert_garbage(&mut socket).await;
        app.clock.advance(STEP * 2);
        ping(&app, &mut socket, 1).await;
        next_pong(&mut socket).await;
        assert_nothing_arrives(&mut socket, "a garbage connection after its garbage").await;
        assert_eq!(app.controls.open_websockets(), 1);
        socket
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .unwrap();
        assert_closed_normally(&mut socket).await;
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the connection is released", async || {
        controls.open_websockets() == 0
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 1);
    assert_eq!(app.controls.websocket_pings(), 1);
}

#[tokio::test]
async fn an_oversized_frame_websocket_sends_all_50_mib_to_a_client_that_takes_them() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    app.controls
        .set_websocket_fault(WebSocketFault::OversizedFrame);
    local(async {
        let (response, mut socket) = app
            .ws_request(&id)
            .bearer_auth(TOKEN)
            .origin(ORIGIN)
            .max_frame_size(OVERSIZED_FRAME_BYTES as usize)
            .connect()
            .await
            .expect("upgraded");
        assert_eq!(response.status().as_u16(), 101);
        match next_frame(&mut socket).await {
            Frame::Binary(payload) => {
                assert_eq!(payload.len() as u64, OVERSIZED_FRAME_BYTES);
            }
            other => panic!("expected one binary frame, got {other:?}"),
        }
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the connection is released", async || {
        controls.open_websockets() == 0
    })
    .await;
    assert_eq!(
        app.controls.oversized_frame_sends(),
        [OVERSIZED_FRAME_BYTES]
    );
}

#[tokio::test]
async fn a_close_at_once_websocket_closes_normally_before_any_frame() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    app.controls
        .set_websocket_fault(WebSocketFault::CloseAtOnce);
    local(async {
        let (response, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(response.status().as_u16(), 101);
        assert_closed_normally(&mut socket).await;
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the connection is released", async || {
        controls.open_websockets() == 0
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 1);
    // Polling, the fallback, still answers.
    assert_eq!(app.transaction(&id).await["status"], "pending");
}

#[tokio::test]
async fn a_faulty_websocket_is_refused_before_the_upgrade_as_usual() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    for fault in [
        WebSocketFault::Silent,
        WebSocketFault::Garbage,
        WebSocketFault::CloseAtOnce,
    ] {
        app.controls.set_websocket_fault(fault);
        local(async {
            assert_eq!(refusal(app.ws("unknown").await), 404);
            assert_eq!(
                refusal(app.ws_request(&id).origin(ORIGIN).connect().await),
                401
            );
        })
        .await;
        assert_error(
            app.get(&format!("/ws?tx_id={id}")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "validation_error",
        )
        .await;
    }
    assert_eq!(app.controls.websocket_connections(), 0);
    assert_eq!(app.controls.open_websockets(), 0);
}

#[tokio::test]
async fn connections_keep_their_fault_and_switching_back_to_none_restores_the_statuses() {
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    local(async {
        app.controls.set_websocket_fault(WebSocketFault::Silent);
        let (_, mut silent) = app.ws(&id).await.expect("upgraded");
        app.controls.set_websocket_fault(WebSocketFault::Garbage);
        let (_, mut garbage) = app.ws(&id).await.expect("upgraded");
        assert_garbage(&mut garbage).await;
        app.controls.set_websocket_fault(WebSocketFault::None);
        let (_, mut behaving) = app.ws(&id).await.expect("upgraded");
        assert_eq!(app.controls.open_websockets(), 3);

        assert_eq!(next_update(&mut behaving).await["status"], "pending");
        app.clock.advance(STEP);
        assert_eq!(next_update(&mut behaving).await["status"], "processing");
        app.clock.advance(STEP);
        assert_eq!(next_update(&mut behaving).await["status"], "completed");
        assert_closed_normally(&mut behaving).await;

        ping(&app, &mut silent, 1).await;
        assert_nothing_arrives(&mut silent, "a silent connection after the switch").await;
        ping(&app, &mut garbage, 2).await;
        next_pong(&mut garbage).await;
        assert_nothing_arrives(&mut garbage, "a garbage connection after the switch").await;
        let controls = app.controls.clone();
        eventually_async("only the faulty connections are open", async || {
            controls.open_websockets() == 2
        })
        .await;
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("the faulty connections are released", async || {
        controls.open_websockets() == 0
    })
    .await;
    assert_eq!(app.controls.websocket_connections(), 3);
    assert_eq!(app.controls.websocket_pings(), 2);
}

/// Opens `count` WebSockets of `tx_id` all at once.
async fn open_at_once(
    app: &StandIn,
    tx_id: &str,
    count: usize,
) -> Vec<
    impl Stream<Item = Result<Frame, WsProtocolError>>
    + Sink<Message, Error = WsProtocolError>
    + Unpin
    + use<>,
> {
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = app.ws_request(tx_id).bearer_auth(TOKEN).origin(ORIGIN);
        connecting.spawn_local(async move { request.connect().await.expect("upgraded").1 });
    }
    connecting.join_all().await
}

#[tokio::test]
async fn hundreds_of_websockets_held_open_at_once_are_each_served() {
    /// Of each kind; the test's process holds both ends of each, so twice as many sockets.
    const EACH: usize = 150;
    let app = spawn().await;
    let id = app.transaction_id("100").await;
    local(async {
        app.controls.set_websocket_fault(WebSocketFault::Silent);
        let silent = open_at_once(&app, &id, EACH).await;
        app.controls.set_websocket_fault(WebSocketFault::None);
        let mut behaving = open_at_once(&app, &id, EACH).await;
        assert_eq!(app.controls.websocket_connections(), 2 * EACH as u64);
        assert_eq!(app.controls.open_websockets(), 2 * EACH);

        for socket in &mut behaving {
            assert_eq!(next_update(socket).await["status"], "pending");
        }
        app.clock.advance(STEP * 2);
        for socket in &mut behaving {
            assert_eq!(next_update(socket).await["status"], "processing");
            assert_eq!(next_update(socket).await["status"], "completed");
            assert_closed_normally(socket).await;
        }
        let controls = app.controls.clone();
        eventually_async("only the silent connections are open", async || {
            controls.open_websockets() == EACH
        })
        .await;
        drop(silent);
    })
    .await;
    let controls = app.controls.clone();
    eventually_async("every connection is released", async || {
        controls.open_websockets() == 0
    })
    .await;
}

// The webhook

const WEBHOOK_PATH: &str = "/proof-webhook/2b8f0c1e";

/// A partner endpoint answering 204 to the webhook, and a stand-in that posts to it.
async fn spawn_with_webhook() -> (StandIn, MockServer) {
    let partner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(WEBHOOK_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&partner)
        .await;
    let mut config = test_config();
    config.webhook_url = Some(format!("{}{WEBHOOK_PATH}", partner.uri()));
    (spawn_with(config).await, partner)
}

/// The webhooks received so far, once there are at least `count`.
async fn webhooks(partner: &MockServer, count: usize) -> Vec<wiremock::Request> {
    let received = async || {
        let received = partner.received_requests().await.expect("recording");
        (received.len() >= count).then_some(received)
    };
    if let Some(received) = within_async(EVENTUALLY, received).await {
        return received;
    }
    let received = partner.received_requests().await.expect("recording").len();
    panic!("{received} of {count} webhooks within {EVENTUALLY:?}")
}

/// The poll answer without `partner_user_id`, byte for byte.
async fn expected_webhook(app: &StandIn, id: &str) -> String {
    let poll = app.transaction_raw(id).await;
    let body = poll.replacen("\"partner_user_id\":\"user-123\",", "", 1);
    assert_ne!(body, poll, "the poll answer names the user");
    body
}

fn assert_webhook(request: &wiremock::Request, expected: &str) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), WEBHOOK_PATH);
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(std::str::from_utf8(&request.body).unwrap(), expected);
}

fn webhook_statuses(requests: &[wiremock::Request], id: &str) -> Vec<String> {
    requests
        .iter()
        .map(|request| serde_json::from_slice::<Value>(&request.body).unwrap())
        .filter(|body| body["merchant_transaction_id"] == id)
        .map(|body| body["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_status_change_is_posted_once_to_the_webhook_as_the_poll_answer_without_the_user() {
    let (app, partner) = spawn_with_webhook().await;
    let id = app.transaction_id("100").await;

    app.clock.advance(STEP);
    let received = webhooks(&partner, 1).await;
    assert_webhook(&received[0], &expected_webhook(&app, &id).await);
    assert_eq!(webhook_statuses(&received, &id), ["processing"]);

    app.clock.advance(STEP);
    let received = webhooks(&partner, 2).await;
    assert_webhook(&received[1], &expected_webhook(&app, &id).await);
    assert_eq!(
        webhook_statuses(&received, &id),
        ["processing", "completed"]
    );

    // A later transaction's webhooks come after any stray one of the first would have.
    let later = app.transaction_id("3.00").await;
    app.clock.advance(STEP * 2);
    let received = webhooks(&partner, 4).await;
    assert_eq!(
        webhook_statuses(&received, &later),
        ["processing", "failed"]
    );
    assert_webhook(&received[3], &expected_webhook(&app, &later).await);
    assert_eq!(
        webhook_statuses(&received, &id),
        ["processing", "completed"]
    );
    assert_eq!(received.len(), 4, "no webhook for the initial pending");
}

#[tokio::test]
async fn the_duplicate_switch_posts_each_status_change_twice() {
    let (app, partner) = spawn_with_webhook().await;
    app.controls.set_duplicate_webhooks(true);
    let id = app.transaction_id("3.01").await;
    app.clock.advance(STEP * 2);
    let received = webhooks(&partner, 4).await;
    assert_eq!(
        webhook_statuses(&received, &id),
        ["processing", "processing", "cancelled", "cancelled"]
    );
    assert_eq!(received[2].body, received[3].body);
    assert_webhook(&received[3], &expected_webhook(&app, &id).await);
}

#[tokio::test]
async fn the_webhook_and_the_websocket_report_the_same_changes() {
    let (app, partner) = spawn_with_webhook().await;
    let id = app.transaction_id("100").await;
    local(async {
        let (_, mut socket) = app.ws(&id).await.expect("upgraded");
        assert_eq!(next_update(&mut socket).await["status"], "pending");
        app.clock.advance(STEP);
        let processing = next_update(&mut socket).await;
        let received = webhooks(&partner, 1).await;
        let webhook: Value = serde_json::from_slice(&received[0].body).unwrap();
        assert_agrees(&processing, &webhook);
    })
    .await;
}

#[test]
fn a_webhook_url_that_is_not_absolute_http_is_refused_at_start() {
    for url in ["https://partner.example.com/hook", "/hook", "not a url"] {
        let mut config = test_config();
        config.webhook_url = Some(url.to_owned());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let error = ProofStandIn::start(config, listener)
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{url}");
        assert!(!error.to_string().contains(url), "{error}");
    }
}

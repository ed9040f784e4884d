//! Clients that go away half way (a phone changing networks, a closed tab): every such request is
//! an outcome, logged once and counted as a 499 `client_closed` with what it had reached.
//!
//! The client here is a raw connection, written and then dropped at the moment the test chooses:
//! while the partner's app is still asked for the session, before the body has arrived, or while
//! Proof has a status read.

use std::time::{Duration, Instant};

use proof_bff::config::{SessionSourceName, Settings};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::metrics::{sample, scrape};

/// How long a test waits for what takes a moment on a healthy machine.
const EVENTUALLY: Duration = Duration::from_secs(30);

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

/// The one `request completed` line of the request with this id, once it is written, and its
/// span's fields; it must be the end of a request whose client went away.
async fn client_closed_line(request_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + EVENTUALLY;
    let lines = loop {
        let lines = log_events_with_message(request_id, "request completed");
        if !lines.is_empty() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "{request_id}: no request completed line {EVENTUALLY:?} after its client went away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 1, "logged once: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["status"], 499, "{line}");
    let span = line["span"].clone();
    assert_eq!(span["http.status_code"], 499, "{span}");
    assert_eq!(span["error.code"], "client_closed", "{span}");
    span
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
    let deadline = Instant::now() + EVENTUALLY;
    while sample(&scrape(&app).await, IN_FLIGHT) != Some(1.0) {
        assert!(Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(connection);

    let span = client_closed_line(request_id).await;
    assert_eq!(span["reached"], "before_proof", "{span}");
    let text = scrape(&app).await;
    assert_eq!(sample(&text, CLIENT_CLOSED_CHECKOUTS), Some(1.0), "{text}");
    assert_eq!(sample(&text, IN_FLIGHT), Some(0.0), "{text}");
    app.assert_proof_not_called().await;
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
    let deadline = Instant::now() + EVENTUALLY;
    while partner
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the session was never asked for");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(connection);

    let span = client_closed_line(request_id).await;
    assert_eq!(span["reached"], "before_proof", "{span}");
    let text = scrape(&app).await;
    assert_eq!(sample(&text, CLIENT_CLOSED_CHECKOUTS), Some(1.0), "{text}");
    assert_eq!(sample(&text, IN_FLIGHT), Some(0.0), "{text}");
    app.assert_proof_not_called().await;
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
    let deadline = Instant::now() + EVENTUALLY;
    while app.proof_requests().await.is_empty() {
        assert!(Instant::now() < deadline, "the read never reached Proof");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

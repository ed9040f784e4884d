//! `GET /checkout/{id}/events` and the webhook receiver over HTTP, against a Proof (wiremock) whose
//! WebSocket is unavailable, so the watcher polls: statuses in order once each, `Last-Event-ID`,
//! the stream limits, a drain, and webhooks that only ever hint.

use std::time::Duration;

use proof_bff::config::Settings;
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::errors::expect_error;
use crate::helpers::*;

const TX_ID: &str = "550e8400-e29b-41d4-a716-446655440000";
const WEBHOOK: &str = "/proof-webhook/3f9c2a7d41b84e0c9a6f";
fn transaction(owner: &str, status: &str) -> String {
    format!(
        r#"{{"merchant_transaction_id":"{TX_ID}","partner_user_id":"{owner}","status":"{status}","currency":"USDT"}}"#
    )
}

fn polled_every_second(s: &mut Settings) {
    s.status.poll_interval_s = 1;
}

/// Proof reports `status` for the transaction to the next `times` reads (all later ones when
/// `None`); mounts made later take precedence.
async fn proof_reports(app: &TestApp, status: &str, times: Option<u64>, priority: u8) {
    let mock = Mock::given(method("GET"))
        .and(path(format!("/widget/transactions/{TX_ID}")))
        .respond_with(proof_json(200, &transaction(USER_ID, status)))
        .with_priority(priority);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(&app.proof).await,
        None => mock.mount(&app.proof).await,
    }
}

async fn transaction_reads(app: &TestApp) -> usize {
    app.proof_requests()
        .await
        .iter()
        .filter(|r| r.url.path() == format!("/widget/transactions/{TX_ID}"))
        .count()
}

fn events_request(app: &TestApp, last_event_id: Option<&str>) -> reqwest::RequestBuilder {
    events_request_on(&app.client, app, last_event_id)
}

fn events_request_on(
    client: &reqwest::Client,
    app: &TestApp,
    last_event_id: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = client
        .get(app.url(&format!("/checkout/{TX_ID}/events")))
        .header("Cookie", format!("session={}", session_token()));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    request
}

/// One parsed event: its `id:` and `data:`.
#[derive(Debug, PartialEq)]
struct Event {
    id: String,
    data: String,
}

/// Reads an event stream to its end (bounded by [`EVENTUALLY`]), returning its events.
async fn read_to_end(mut response: reqwest::Response) -> Vec<Event> {
    let mut text = String::new();
    tokio::time::timeout(EVENTUALLY, async {
        while let Some(chunk) = response.chunk().await.expect("the stream reads") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream did not end; so far: {text}"));
    parse_events(&text)
}

fn parse_events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|line| line.starts_with("event: status")))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            Event {
                id: field("id: "),
                data: field("data: "),
            }
        })
        .collect()
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

#[tokio::test]
async fn statuses_arrive_in_order_once_each_and_the_stream_ends_after_the_terminal_one() {
    let app = spawn_app_with(polled_every_second).await;
    proof_reports(&app, "pending", Some(2), 1).await;
    proof_reports(&app, "processing", Some(2), 2).await;
    proof_reports(&app, "completed", None, 3).await;

    let response = events_request(&app, None).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let events = read_to_end(response).await;

    assert_eq!(ids(&events), ["pending", "processing", "completed"]);
    assert_eq!(events[2].data, transaction(USER_ID, "completed"));
}

#[tokio::test]
async fn last_event_id_resumes_without_repeats_and_a_finished_stream_is_204() {
    let app = spawn_app_with(polled_every_second).await;
    proof_reports(&app, "processing", Some(2), 1).await;
    proof_reports(&app, "completed", None, 2).await;

    let resumed = events_request(&app, Some("processing"))
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&read_to_end(resumed).await), ["completed"]);

    let finished = events_request(&app, Some("completed"))
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 204, "EventSource stops reconnecting");
}

#[tokio::test]
async fn another_users_or_a_malformed_transaction_is_the_same_404() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path(format!("/widget/transactions/{TX_ID}")))
        .respond_with(proof_json(200, &transaction("someone-else", "pending")))
        .mount(&app.proof)
        .await;
    let theirs = events_request(&app, None).send().await.unwrap();
    expect_error(theirs, 404, "not_found", "not_found").await;
    let malformed = app
        .client
        .get(app.url("/checkout/tx.1/events"))
        .header("Cookie", format!("session={}", session_token()))
        .send()
        .await
        .unwrap();
    expect_error(malformed, 404, "not_found", "not_found").await;
}

#[tokio::test]
async fn over_the_per_user_stream_limit_is_429_before_the_stream_starts() {
    let app = spawn_app_with(|s| {
        polled_every_second(s);
        s.status.max_streams_per_user = 1;
    })
    .await;
    proof_reports(&app, "pending", None, 1).await;
    let open = events_request(&app, None).send().await.unwrap();
    assert_eq!(open.status(), 200);

    let second = events_request(&app, None).send().await.unwrap();
    let refused = expect_error(second, 429, "rate_limited", "too_many_streams").await;
    assert!(refused.headers.contains_key("retry-after"));

    // Closing the first frees its place.
    drop(open);
    eventually_async("the place came back", async || {
        let again = events_request(&app, None).send().await.unwrap();
        again.status() == 200
    })
    .await;
}

#[tokio::test]
async fn a_drain_ends_open_streams_so_browsers_reconnect_elsewhere() {
    let app = spawn_app_with(|s| {
        polled_every_second(s);
        s.server.shutdown_timeout_s = 60;
    })
    .await;
    proof_reports(&app, "pending", None, 1).await;
    // A client of its own, so no idle pooled connection holds the drain after the stream ends.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = events_request_on(&client, &app, None).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let drain = app.start_drain();
    let events = read_to_end(response).await;

    assert_eq!(ids(&events), ["pending"]);
    tokio::time::timeout(EVENTUALLY, drain)
        .await
        .expect("the drain is not held open by the stream")
        .unwrap();
}

fn with_webhook(s: &mut Settings) {
    // No polling within the test: only the webhook can wake the watcher.
    s.status.poll_interval_s = 3600;
    s.status.webhook_path = WEBHOOK.into();
}

async fn post_webhook(app: &TestApp, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(WEBHOOK))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Reads `response`'s stream until an event with `id` arrives; the events so far.
async fn read_until(response: &mut reqwest::Response, id: &str) -> Vec<Event> {
    let mut text = String::new();
    tokio::time::timeout(EVENTUALLY, async {
        while let Some(chunk) = response.chunk().await.expect("the stream reads") {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if parse_events(&text).iter().any(|event| event.id == id) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {id} event; so far: {text}"));
    parse_events(&text)
}

#[tokio::test]
async fn a_webhook_wakes_the_watcher_which_confirms_with_proof_before_any_browser_sees_it() {
    let app = spawn_app_with(with_webhook).await;
    proof_reports(&app, "pending", None, 3).await;
    let mut stream = events_request(&app, None).send().await.unwrap();
    assert_eq!(ids(&read_until(&mut stream, "pending").await), ["pending"]);
    let reads_before = transaction_reads(&app).await;

    // A forged "completed" while Proof still says pending: Proof is asked, nothing is sent.
    let forged = post_webhook(
        &app,
        &format!(r#"{{"merchant_transaction_id":"{TX_ID}","status":"completed"}}"#),
    )
    .await;
    assert_eq!(forged.status(), 204);
    eventually_async("Proof was asked", async || {
        transaction_reads(&app).await != reads_before
    })
    .await;

    // A real change: confirmed, then pushed.
    proof_reports(&app, "processing", None, 2).await;
    let hint = format!(r#"{{"merchant_transaction_id":"{TX_ID}","status":"processing"}}"#);
    assert_eq!(post_webhook(&app, &hint).await.status(), 204);
    let events = read_until(&mut stream, "processing").await;
    assert_eq!(
        ids(&events),
        ["processing"],
        "the forged completed never arrived"
    );
    let reads_after_hint = transaction_reads(&app).await;

    // The same hint again is a no-op: it wakes no watcher, so Proof is not asked again. The
    // request's own end is the signal: by its `request completed` line the handler has either
    // woken the watcher (and said so) or not.
    let repeated = "webhook-repeated-hint";
    let response = app
        .client
        .post(app.url(WEBHOOK))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", repeated)
        .body(hint)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    eventually_async("the repeated hint's request completed line", async || {
        log_events_with_message(repeated, "request completed").pop()
    })
    .await;
    assert_eq!(
        log_events_with_message(repeated, "status webhook received"),
        Vec::<serde_json::Value>::new(),
        "the repeated hint reached the watcher"
    );
    assert_eq!(transaction_reads(&app).await, reads_after_hint);
}

#[tokio::test]
async fn a_webhook_that_is_not_the_documented_json_is_refused_with_4xx() {
    let app = spawn_app_with(with_webhook).await;
    app.proof_must_not_be_called().await;
    for body in ["not json", "[]", r#"{"status":"completed"}"#] {
        let response = post_webhook(&app, body).await;
        expect_error(response, 400, "invalid_request", "validation_error").await;
    }
    let huge = format!(
        r#"{{"merchant_transaction_id":"{TX_ID}","status":"completed","pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    expect_error(
        post_webhook(&app, &huge).await,
        413,
        "invalid_request",
        "body_too_large",
    )
    .await;
    // Without a configured path there is no receiver.
    let plain = spawn_app().await;
    let response = post_webhook(&plain, "{}").await;
    assert_eq!(response.status(), 404);
    // The path is a secret: the logs name the route by its setting.
    assert!(
        !logs().text().contains("3f9c2a7d41b84e0c9a6f"),
        "the webhook path was logged"
    );
}

#[tokio::test]
async fn a_stream_from_an_allowed_origin_carries_the_cors_grant() {
    let app = spawn_app_with(polled_every_second).await;
    proof_reports(&app, "completed", None, 1).await;
    let response = events_request(&app, None)
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        APP_ORIGIN
    );
    assert_eq!(ids(&read_to_end(response).await), ["completed"]);
}

#[tokio::test]
async fn without_a_websocket_proof_is_polled_at_the_configured_cadence_not_faster() {
    let app = spawn_app_with(|s| s.status.poll_interval_s = 1).await;
    proof_reports(&app, "pending", None, 1).await;
    let opened = tokio::time::Instant::now();
    let mut stream = events_request(&app, None).send().await.unwrap();
    read_until(&mut stream, "pending").await;

    // The ownership check, then three polls a second apart.
    eventually_async("the watcher polled three times", async || {
        transaction_reads(&app).await >= 4
    })
    .await;
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2900),
        "three polls within {elapsed:?}: faster than poll_interval_s"
    );
    // The WebSocket was tried (wiremock has none) before falling back.
    let tried = app
        .proof_requests()
        .await
        .iter()
        .any(|r| r.url.path() == "/ws" && r.url.query() == Some(&format!("tx_id={TX_ID}")[..]));
    assert!(tried, "the WebSocket was never tried");
}

#[tokio::test]
async fn a_burst_of_hints_for_one_transaction_is_read_at_most_once_a_second() {
    let app = spawn_app_with(with_webhook).await;
    proof_reports(&app, "pending", None, 2).await;
    let mut stream = events_request(&app, None).send().await.unwrap();
    read_until(&mut stream, "pending").await;
    let reads_before = transaction_reads(&app).await;

    // Distinct statuses, so the receiver's deduplication lets every one through to the watcher.
    let started = tokio::time::Instant::now();
    for n in 0..300 {
        let hint = format!(r#"{{"merchant_transaction_id":"{TX_ID}","status":"hint-{n}"}}"#);
        assert_eq!(post_webhook(&app, &hint).await.status(), 204);
    }
    // One more hint, for a status Proof now reports: the read that brings it to the stream comes
    // after every read the burst caused (hints are folded into the next read, never queued
    // behind it), so all of those are counted below, the folded one after the burst included.
    proof_reports(&app, "processing", None, 1).await;
    let last = format!(r#"{{"merchant_transaction_id":"{TX_ID}","status":"processing"}}"#);
    assert_eq!(post_webhook(&app, &last).await.status(), 204);
    read_until(&mut stream, "processing").await;
    let reads = transaction_reads(&app).await - reads_before;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        reads as f64 <= seconds.ceil() + 1.0,
        "{reads} reads of one transaction in {seconds:.1} s for 300 hints"
    );
}

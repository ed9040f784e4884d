//! The event stream fed by the stand-in for Proof, WebSocket and all: statuses in order once each,
//! one upstream WebSocket shared by every stream of a transaction, polling while the WebSocket is
//! refused, and the stand-in's webhooks received end to end.

use std::net::TcpListener;
use std::time::Duration;

use proof_bff::config::Settings;
use proof_stand_in::{
    OVERSIZED_FRAME_BYTES, ProofStandIn, StandInClock, StandInConfig, StandInControls,
    WebSocketFault,
};
use secrecy::SecretString;

use crate::helpers::*;

const STATUS_STEP: Duration = Duration::from_secs(10);
struct Live {
    app: TestApp,
    clock: StandInClock,
    controls: StandInControls,
}

/// The service in front of a stand-in whose transactions move only when the test advances its
/// clock. `customise` also gets the service's port, known before either starts.
async fn live(customise: impl FnOnce(&mut StandInConfig, &mut Settings, u16)) -> Live {
    let app_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = app_listener.local_addr().unwrap().port();
    let mut stand_in =
        StandInConfig::sandbox(SecretString::from(CLIENT_TOKEN), vec![PROOF_ORIGIN.into()]);
    stand_in.status_step = STATUS_STEP;
    stand_in.clock = StandInClock::manual();
    let clock = stand_in.clock.clone();
    let unused = wiremock::MockServer::start().await;
    let mut settings = base_settings(&unused);
    settings.status.poll_interval_s = 3600;
    customise(&mut stand_in, &mut settings, app_port);
    let stand_in =
        ProofStandIn::start(stand_in, TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let controls = stand_in.controls();
    settings.proof.base_url = stand_in.base_url();
    tokio::spawn(stand_in.into_server());
    let app = spawn_on(
        app_listener,
        "127.0.0.1",
        settings.validate().unwrap(),
        unused,
    )
    .await;
    Live {
        app,
        clock,
        controls,
    }
}

impl Live {
    /// A checkout through the service: the new transaction's id.
    async fn transaction(&self) -> String {
        let response = self.app.checkout().send_with_valid_body().await;
        assert_eq!(response.status(), 200);
        let params: serde_json::Value = response.json().await.unwrap();
        params["merchant_transaction_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn open_stream(&self, transaction: &str) -> reqwest::Response {
        let response = self
            .app
            .client
            .get(self.app.url(&format!("/checkout/{transaction}/events")))
            .header("Cookie", format!("session={}", session_token()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response
    }

    /// Moves the stand-in's transactions one status on.
    fn step(&self) {
        self.clock.advance(STATUS_STEP);
    }
}

/// Reads `response` until an event with `id` arrives; every event id so far.
async fn read_until(response: &mut reqwest::Response, id: &str) -> Vec<String> {
    let mut text = String::new();
    tokio::time::timeout(EVENTUALLY, async {
        while let Some(chunk) = response.chunk().await.expect("the stream reads") {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if event_ids(&text).iter().any(|seen| seen == id) {
                return;
            }
        }
        panic!("the stream ended before {id}: {text}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {id} event; so far: {text}"));
    event_ids(&text)
}

fn event_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn two_streams_of_one_transaction_share_one_upstream_websocket() {
    let live = live(|_, _, _| {}).await;
    let transaction = live.transaction().await;
    let mut first = live.open_stream(&transaction).await;
    let mut second = live.open_stream(&transaction).await;
    assert_eq!(read_until(&mut first, "pending").await, ["pending"]);
    assert_eq!(read_until(&mut second, "pending").await, ["pending"]);
    eventually_async("the watcher's WebSocket opened", async || {
        live.controls.open_websockets() == 1
    })
    .await;

    live.step();
    assert_eq!(read_until(&mut first, "processing").await, ["processing"]);
    assert_eq!(read_until(&mut second, "processing").await, ["processing"]);
    live.step();
    assert_eq!(read_until(&mut first, "completed").await, ["completed"]);
    assert_eq!(read_until(&mut second, "completed").await, ["completed"]);
    // Both streams end after the terminal status.
    assert!(first.chunk().await.unwrap().is_none());
    assert!(second.chunk().await.unwrap().is_none());

    assert_eq!(
        live.controls.websocket_connections(),
        1,
        "one WebSocket for two streams"
    );
    eventually_async("the WebSocket closed with the transaction", async || {
        live.controls.open_websockets() == 0
    })
    .await;
}

#[tokio::test]
async fn the_last_stream_closing_closes_the_upstream_websocket() {
    let live = live(|_, _, _| {}).await;
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;
    eventually_async("the watcher's WebSocket opened", async || {
        live.controls.open_websockets() == 1
    })
    .await;

    drop(stream);

    eventually_async("the WebSocket closed with its last stream", async || {
        live.controls.open_websockets() == 0
    })
    .await;
}

#[tokio::test]
async fn while_the_websocket_is_refused_the_watcher_polls() {
    let live = live(|stand_in, settings, _| {
        stand_in.websocket_enabled = false;
        settings.status.poll_interval_s = 1;
    })
    .await;
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;

    live.step();
    assert_eq!(read_until(&mut stream, "processing").await, ["processing"]);
    live.step();
    assert_eq!(read_until(&mut stream, "completed").await, ["completed"]);
    assert_eq!(live.controls.websocket_connections(), 0);
}

#[tokio::test]
async fn the_stand_ins_webhooks_reach_the_receiver_which_confirms_and_pushes() {
    const WEBHOOK: &str = "/proof-webhook/5d1e0c7a9b3f42e8a6c1";
    let live = live(|stand_in, settings, app_port| {
        // Neither the WebSocket nor polling: only the webhook can tell the watcher.
        stand_in.websocket_enabled = false;
        stand_in.webhook_url = Some(format!("http://127.0.0.1:{app_port}{WEBHOOK}"));
        settings.status.webhook_path = WEBHOOK.into();
    })
    .await;
    live.controls.set_duplicate_webhooks(true);
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;

    live.step();
    assert_eq!(read_until(&mut stream, "processing").await, ["processing"]);
    live.step();
    assert_eq!(read_until(&mut stream, "completed").await, ["completed"]);
    assert!(stream.chunk().await.unwrap().is_none());
}

#[tokio::test]
async fn checkouts_answer_while_watchers_hold_every_websocket_they_may() {
    // More watched transactions than awc's default pool of 100 connections, and than the
    // WebSocket budget: the excess watchers poll, and no checkout waits behind any of them.
    const WATCHED: usize = 120;
    const MAX_WATCHERS: usize = 110;
    let live = live(|_, settings, _| {
        settings.status.max_streams_per_user = 1000;
        settings.status.max_watchers = MAX_WATCHERS;
        settings.metrics.listen = "127.0.0.1:0".into();
    })
    .await;
    let mut transactions = Vec::new();
    for _ in 0..WATCHED {
        transactions.push(live.transaction().await);
    }
    let mut streams = Vec::new();
    for transaction in &transactions {
        let mut stream = live.open_stream(transaction).await;
        assert_eq!(read_until(&mut stream, "pending").await, ["pending"]);
        streams.push(stream);
    }
    eventually_async("every WebSocket the budget allows is open", async || {
        live.controls.open_websockets() == MAX_WATCHERS
    })
    .await;

    for _ in 0..20 {
        let checkout = live.app.checkout().send_with_valid_body().await;
        assert_eq!(
            checkout.status(),
            200,
            "a checkout waited behind the watchers"
        );
    }
    let metrics = crate::metrics::scrape(&live.app).await;
    let sample = |series| crate::metrics::sample(&metrics, series);
    assert_eq!(
        sample("proof_bff_status_websockets"),
        Some(MAX_WATCHERS as f64),
        "{metrics}"
    );
    assert!(
        sample("proof_bff_status_websockets_refused_total")
            .is_some_and(|refused| refused >= (WATCHED - MAX_WATCHERS) as f64),
        "{metrics}"
    );
    assert_eq!(
        sample("proof_bff_watched_transactions"),
        Some(WATCHED as f64)
    );
    assert_eq!(live.controls.open_websockets(), MAX_WATCHERS);
}

#[tokio::test]
async fn many_browsers_on_one_transaction_across_workers_make_one_websocket() {
    let live = live(|_, settings, _| {
        settings.server.workers = 2;
        settings.status.max_streams_per_user = 100;
    })
    .await;
    let transaction = live.transaction().await;
    // A client each, so the streams arrive on connections of their own, spread over the workers.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut stream = client
            .get(live.app.url(&format!("/checkout/{transaction}/events")))
            .header("Cookie", format!("session={}", session_token()))
            .send()
            .await
            .unwrap();
        assert_eq!(read_until(&mut stream, "pending").await, ["pending"]);
        streams.push(stream);
    }
    eventually_async("the watcher's WebSocket opened", async || {
        live.controls.open_websockets() == 1
    })
    .await;
    live.step();
    for stream in &mut streams {
        assert_eq!(read_until(stream, "processing").await, ["processing"]);
    }
    assert_eq!(live.controls.websocket_connections(), 1);
}

#[tokio::test]
async fn a_silent_websocket_does_not_hide_a_completed_transaction() {
    let live = live(|_, settings, _| {
        // Polling never comes within the test: only the confirm reads and the ping can.
        settings.status.confirm_interval_s = 2;
    })
    .await;
    live.controls.set_websocket_fault(WebSocketFault::Silent);
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;
    // Silent for the confirm interval: pinged, unanswered, closed, and reopened after its backoff.
    eventually_async("the silent WebSocket was pinged", async || {
        live.controls.websocket_pings() >= 1
    })
    .await;
    eventually_async(
        "the unanswered WebSocket was closed and opened again",
        async || live.controls.websocket_connections() >= 2,
    )
    .await;

    live.step();
    live.step();
    // Proof's WebSocket never says so: the watcher's own reads do.
    let ids = read_until(&mut stream, "completed").await;
    assert_eq!(ids.last().map(String::as_str), Some("completed"), "{ids:?}");
}

#[tokio::test]
async fn a_websocket_that_sends_what_is_not_an_event_is_closed_and_the_watcher_polls() {
    let live = live(|_, settings, _| {
        settings.status.poll_interval_s = 1;
    })
    .await;
    live.controls.set_websocket_fault(WebSocketFault::Garbage);
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;
    eventually_async("the garbage WebSocket was accepted", async || {
        live.controls.websocket_connections() >= 1
    })
    .await;
    eventually_async("the garbage WebSocket was closed", async || {
        live.controls.open_websockets() == 0
    })
    .await;

    live.step();
    assert_eq!(read_until(&mut stream, "processing").await, ["processing"]);
}

#[tokio::test]
async fn a_websocket_frame_announced_beyond_the_limit_is_refused_before_its_payload_is_read() {
    let live = live(|_, settings, _| {
        settings.status.poll_interval_s = 1;
    })
    .await;
    live.controls
        .set_websocket_fault(WebSocketFault::OversizedFrame);
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;
    eventually_async("the oversized frame's connection ended", async || {
        !live.controls.oversized_frame_sends().is_empty()
    })
    .await;

    // The watcher closed the socket once the frame's header announced 50 MiB (its limit is
    // 64 KiB), instead of reading the payload first: only what the sockets' buffers took on the
    // way went out.
    let sent = live.controls.oversized_frame_sends()[0];
    assert!(
        sent < OVERSIZED_FRAME_BYTES / 2,
        "{sent} of the frame's {OVERSIZED_FRAME_BYTES} bytes were sent before the watcher closed it"
    );
    // The transaction is still followed, by polling.
    live.step();
    assert_eq!(read_until(&mut stream, "processing").await, ["processing"]);
}

#[tokio::test]
async fn a_websocket_that_accepts_and_closes_is_reopened_with_a_doubling_backoff() {
    let live = live(|_, _, _| {}).await;
    live.controls
        .set_websocket_fault(WebSocketFault::CloseAtOnce);
    let transaction = live.transaction().await;
    let mut stream = live.open_stream(&transaction).await;
    read_until(&mut stream, "pending").await;
    // Three backoffs (1 + 2 + 4 s) before the fourth opening: a longer limit than usual.
    let reopened = async || live.controls.websocket_accept_times().len() >= 4;
    if within_async(Duration::from_secs(60), reopened)
        .await
        .is_none()
    {
        let opened = live.controls.websocket_accept_times();
        panic!("the WebSocket was not reopened: {opened:?}");
    }
    let opened = live.controls.websocket_accept_times();
    let gaps: Vec<Duration> = opened.windows(2).map(|w| w[1] - w[0]).collect();
    // Each wait at least the backoff before it: 1 s, 2 s, 4 s (a slow machine only adds).
    for (gap, backoff) in gaps.iter().zip([1, 2, 4]) {
        assert!(
            *gap >= Duration::from_secs(backoff),
            "reopened after {gap:?}, before a backoff of {backoff} s: {gaps:?}"
        );
    }
    drop(stream);
}

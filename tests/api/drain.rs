//! A graceful drain and the connections open when it starts, over raw sockets: an idle
//! keep-alive connection is closed at once and holds nothing up; a busy one gets its whole answer,
//! then is closed; through the drain delay keep-alive still serves.
//!
//! Keep-alive and the shutdown timeout are an hour in these tests: a drain that waited for either
//! would fail the test after [`EVENTUALLY`], not pass slowly.

use std::time::Duration;

use proof_bff::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Longer than any test may wait.
const HOUR_S: u64 = 3600;

async fn spawn(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|settings| {
        settings.server.keep_alive_s = HOUR_S;
        settings.server.shutdown_timeout_s = HOUR_S;
        customise(settings);
    })
    .await
}

/// A connection answered once and now idle, kept alive by the service.
async fn idle_kept_alive(app: &TestApp) -> TcpStream {
    let mut connection = RawConnection::open(app.port).await;
    let answered = connection
        .exchange(
            RawRequest::new(app.port, "GET", "/healthz")
                .head()
                .as_bytes(),
        )
        .await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header("connection"), None, "kept alive");
    connection.into_stream()
}

/// Returns once the drain is past its delay and its holds: the listener refuses new connections.
async fn until_no_longer_accepting(app: &TestApp) {
    eventually_async("the drain stopped accepting connections", async || {
        std::net::TcpStream::connect(("127.0.0.1", app.port)).is_err()
    })
    .await;
}

async fn drain_returns(drain: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(EVENTUALLY, drain)
        .await
        .unwrap_or_else(|_| panic!("the drain still running {EVENTUALLY:?} on"))
        .expect("the drain task");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_when_the_drain_starts_and_holds_nothing_up() {
    let app = spawn(|_| {}).await;
    let mut idle = idle_kept_alive(&app).await;

    let drain = app.start_drain();
    let received = read_until_closed(&mut idle, EVENTUALLY)
        .await
        .expect("the idle connection still open: the drain waits for its keep-alive to run out");
    assert!(
        received.is_empty(),
        "closed without another answer: {:?}",
        String::from_utf8_lossy(&received)
    );
    drain_returns(drain).await;
}

#[tokio::test]
async fn a_request_in_flight_when_the_drain_starts_gets_its_whole_answer_with_connection_close() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let app = spawn(|s| {
        s.proof.base_url = proof.base_url.clone();
        s.proof.request_timeout_ms = 60_000;
        s.proof.deadline_ms = 60_000;
    })
    .await;
    let mut connection = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let checkout = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .with_body(checkout_body().to_string().as_bytes());
    connection.write_all(&checkout).await.unwrap();
    eventually_async("the checkout reached Proof", async || proof.requests() == 1).await;

    let drain = app.start_drain();
    // The drain is under way and cannot end while Proof holds the answer.
    until_no_longer_accepting(&app).await;
    assert!(
        !drain.is_finished(),
        "the drain returned while a checkout was still in flight"
    );

    proof.release();
    let received = read_until_closed(&mut connection, EVENTUALLY)
        .await
        .expect("the connection stayed open after the answer given while draining");
    let answer = RawResponse::parse(&received).expect("an answer before the close");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert_eq!(
        answer.text(),
        WIDGET_SESSION_BODY,
        "the whole answer, and nothing after it"
    );
    drain_returns(drain).await;
}

#[tokio::test]
async fn through_the_drain_delay_an_idle_keep_alive_connection_is_still_served() {
    let app = spawn(|s| s.server.drain_delay_s = 600).await;
    let readyz = RawRequest::new(app.port, "GET", "/readyz").head();
    let mut connection = RawConnection::open(app.port).await;
    assert_eq!(connection.exchange(readyz.as_bytes()).await.status, 200);

    let _drain = app.start_drain();
    // Each look is a request on the same connection, idle in between: every one is answered, and
    // `/readyz` turns 503 once the drain has started.
    let mut not_ready = None;
    let started = tokio::time::Instant::now();
    while not_ready.is_none() {
        assert!(
            started.elapsed() < EVENTUALLY,
            "/readyz still 200 {EVENTUALLY:?} after the drain started"
        );
        let answer = connection
            .try_exchange(readyz.as_bytes())
            .await
            .expect("the connection closed during the drain delay");
        assert_eq!(answer.header("connection"), None, "{answer:?}");
        if answer.status == 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        } else {
            not_ready = Some(answer);
        }
    }
    let not_ready = not_ready.expect("an answer once the drain starts");
    assert_eq!(not_ready.status, 503, "{not_ready:?}");
    // And once more after an idle moment: still kept alive, still served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let healthz = connection
        .try_exchange(
            RawRequest::new(app.port, "GET", "/healthz")
                .head()
                .as_bytes(),
        )
        .await
        .expect("the connection closed during the drain delay");
    assert_eq!(healthz.status, 200, "{healthz:?}");
    assert_eq!(healthz.header("connection"), None, "{healthz:?}");
}

#[tokio::test]
async fn a_large_answer_to_a_slow_reader_is_written_whole_when_the_drain_starts_mid_write() {
    // Near the largest answer the service takes from Proof: far more than the client's small
    // receive window holds, so the service is still writing it when the drain starts.
    let large = format!(
        "{{\"merchant_transaction_id\":\"550e8400-e29b-41d4-a716-446655440000\",\"padding\":\"{}\"}}",
        "0123456789abcdef".repeat(15_000)
    );
    let app = spawn(|_| {}).await;
    app.proof_answers(proof_json(200, &large)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut connection = socket
        .connect(format!("127.0.0.1:{}", app.port).parse().unwrap())
        .await
        .unwrap();
    let checkout = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .with_body(checkout_body().to_string().as_bytes());
    connection.write_all(&checkout).await.unwrap();
    // The answer has begun: its first bytes are here, the rest waits on the client.
    let mut first = [0u8; 1024];
    let read = tokio::time::timeout(EVENTUALLY, connection.read(&mut first))
        .await
        .expect("the answer began")
        .unwrap();
    assert!(
        read > 0,
        "the service closed the connection without answering"
    );

    let drain = app.start_drain();
    until_no_longer_accepting(&app).await;

    let rest = read_until_closed(&mut connection, EVENTUALLY)
        .await
        .expect("the connection stayed open after its answer, while draining");
    let received = [&first[..read], &rest].concat();
    let answer = RawResponse::parse(&received).expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(
        answer.header("content-length"),
        Some(large.len().to_string().as_str())
    );
    assert!(
        answer.body == large.as_bytes(),
        "the answer was cut: {} of {} bytes, then the close",
        answer.body.len(),
        large.len()
    );
    drain_returns(drain).await;
}

//! `GET /metrics` on `metrics.listen`: exact counts after a known mix of answers, nothing on the
//! browser-facing port, no label that carries personal data or a secret, and connection bounds of
//! its own.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Far above the metrics port's fixed bounds (5 s), so a busy machine cannot fail a test.
const GENEROUS: Duration = Duration::from_secs(30);
/// The metrics port's documented connection cap.
const METRICS_MAX_CONNECTIONS: usize = 64;

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

/// Whether the server closed `stream` within `limit` (end of stream, a reset, or a last answer
/// followed by the end).
async fn closed_within(mut stream: TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

#[tokio::test]
async fn sockets_held_on_the_metrics_port_never_take_the_browsers_connections_and_are_closed() {
    let app = spawn_app_with(|s| {
        s.metrics.listen = "127.0.0.1:0".into();
        s.server.max_connections = 20;
    })
    .await;
    let port = app.metrics_port.unwrap();
    // 25 sockets on the metrics port, more than the browser port allows connections: as many as
    // it allows, kept alive after a scrape and then stopped half way through their next request
    // (which nothing but a bound on the metrics port itself ever ends), and five that never send.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::from_std(scraped_once(port).await).unwrap();
        stream
            .write_all(
                RawRequest::new(port, "GET", "/metrics")
                    .unfinished_head()
                    .as_bytes(),
            )
            .await
            .unwrap();
        held.push(stream);
    }
    for _ in 0..5 {
        held.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to the metrics port"),
        );
    }

    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let healthz = fresh
        .get(app.url("/healthz"))
        .timeout(GENEROUS)
        .send()
        .await
        .expect("/healthz answers while sockets are held on the metrics port");
    assert_eq!(healthz.status(), 200);
    // The metrics port itself still serves a scrape beside them.
    scrape(&app).await;

    let watched: Vec<_> = held
        .into_iter()
        .map(|stream| tokio::spawn(closed_within(stream, GENEROUS)))
        .collect();
    let mut still_open = 0;
    for watch in watched {
        if !watch.await.unwrap() {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "sockets held on the metrics port still open after {GENEROUS:?} (5 s allowed)"
    );
}

/// A kept-alive connection to the metrics port that has been answered once, as a blocking socket
/// that can be asked without waiting whether the server has closed it.
async fn scraped_once(port: u16) -> std::net::TcpStream {
    let mut connection = RawConnection::open(port).await;
    let answer = connection
        .exchange(RawRequest::new(port, "GET", "/metrics").head().as_bytes())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), None, "kept alive");
    let stream = connection.into_stream().into_std().unwrap();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Whether the server has closed (or written to) `stream` by now, without waiting.
fn server_let_go(mut stream: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[tokio::test]
async fn beyond_its_connection_cap_the_metrics_port_serves_a_new_connection_only_once_one_closes() {
    let app = spawn_app_with(|s| s.metrics.listen = "127.0.0.1:0".into()).await;
    let port = app.metrics_port.unwrap();
    let mut held = Vec::new();
    for _ in 0..METRICS_MAX_CONNECTIONS {
        held.push(scraped_once(port).await);
    }

    // One more: served only once the server has closed one of those it holds (idle, they are
    // closed after 5 s).
    let mut beyond = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = RawRequest::new(port, "GET", "/metrics").head();
    beyond.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let answered = async {
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = beyond.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the connection beyond the cap was closed unanswered");
            received.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(GENEROUS, answered)
        .await
        .expect("a connection beyond the cap is served once another closes");
    assert!(received.starts_with(b"HTTP/1.1 200"));
    let closed = held.iter().filter(|stream| server_let_go(stream)).count();
    assert!(
        closed > 0,
        "connection {} was served while all {METRICS_MAX_CONNECTIONS} others were open",
        METRICS_MAX_CONNECTIONS + 1
    );
}

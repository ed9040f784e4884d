//! What a client can hold back, over raw sockets: a body announced and never sent, a body that
//! stops half way, idle connections, more connections than allowed. None of it may keep a
//! connection, a worker or a graceful drain waiting past the configured bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use proof_bff::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The configured `client_request_timeout_ms` in these tests. Actix measures its part of it on
/// a clock it refreshes every 500 ms, and a busy worker refreshes it late: a shorter timeout
/// would time out honest clients (the /healthz probes) on a loaded machine.
const REQUEST_TIMEOUT_MS: u64 = 2000;
/// Far above the configured bounds (so a busy machine cannot fail a test), far below "never".
const GENEROUS: Duration = Duration::from_secs(30);

async fn spawn(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|settings| {
        settings.server.client_request_timeout_ms = REQUEST_TIMEOUT_MS;
        customise(settings);
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect to the service")
}

/// Reads until one response head has arrived; `None` if the connection closes first or nothing
/// complete arrives within `limit`.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_head = async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(String::from_utf8_lossy(&received[..end]).into_owned());
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_head).await.ok().flatten()
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Healthz,
    UnknownPath,
    AnonymousCheckout,
    SignedInCheckout,
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    Chunked,
    ContentLength,
}

/// A request head that announces a body; the body itself is never sent.
fn head_announcing_a_body(app: &TestApp, target: Target, framing: Framing) -> String {
    let request = match target {
        Target::Healthz => RawRequest::new(app.port, "GET", "/healthz"),
        Target::UnknownPath => RawRequest::new(app.port, "POST", "/no-such-route"),
        Target::AnonymousCheckout => RawRequest::checkout(app.port, APP_ORIGIN, None),
        Target::SignedInCheckout => {
            RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        }
    };
    let request = match framing {
        Framing::Chunked => request.header("Transfer-Encoding", "chunked"),
        Framing::ContentLength => request.header("Content-Length", "64"),
    };
    request.head()
}

#[tokio::test]
async fn connections_that_never_send_their_announced_body_are_closed_while_healthz_keeps_answering()
{
    let app = spawn(|_| {}).await;
    let targets = [
        Target::Healthz,
        Target::UnknownPath,
        Target::AnonymousCheckout,
        Target::SignedInCheckout,
    ];
    let mut held = Vec::new();
    for i in 0..150 {
        let target = targets[i % targets.len()];
        let framing = if (i / targets.len()).is_multiple_of(2) {
            Framing::Chunked
        } else {
            Framing::ContentLength
        };
        let mut stream = connect(&app).await;
        stream
            .write_all(head_announcing_a_body(&app, target, framing).as_bytes())
            .await
            .unwrap();
        held.push(tokio::spawn(async move {
            let closed = read_until_closed(&mut stream, GENEROUS).await;
            (target, framing, closed)
        }));
    }

    // A fresh connection each time: the held ones must not starve new clients.
    let probe = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut probes = 0;
    while held.iter().any(|task| !task.is_finished()) {
        let status = probe
            .get(app.url("/healthz"))
            .timeout(GENEROUS)
            .send()
            .await
            .expect("/healthz answers on a fresh connection")
            .status();
        assert_eq!(status, 200, "/healthz while connections are held");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(probes > 0);

    let mut still_open = BTreeMap::<String, usize>::new();
    for task in held {
        let (target, framing, closed) = task.await.unwrap();
        match closed {
            None => {
                *still_open
                    .entry(format!("{target:?}/{framing:?}"))
                    .or_default() += 1
            }
            Some(bytes) => {
                // Whatever was answered, it was answered in our envelope or as the probe.
                let expected = match target {
                    Target::Healthz => 200,
                    Target::UnknownPath => 404,
                    Target::AnonymousCheckout => 401,
                    Target::SignedInCheckout => 408,
                };
                let response = RawResponse::parse(&bytes)
                    .unwrap_or_else(|| panic!("{target:?}/{framing:?}: no answer before close"));
                assert_eq!(response.status, expected, "{target:?}/{framing:?}");
                assert_eq!(
                    response.header("connection"),
                    Some("close"),
                    "{target:?}/{framing:?}: the answer says the connection closes"
                );
            }
        }
    }
    assert!(
        still_open.is_empty(),
        "still open {GENEROUS:?} after announcing a body ({REQUEST_TIMEOUT_MS} ms allowed), \
         of 150: {still_open:?}"
    );
    assert!(app.proof_requests().await.is_empty(), "Proof was called");
}

#[tokio::test]
async fn a_checkout_whose_body_stalls_half_way_gets_408_request_timeout_and_the_connection_closes()
{
    let app = spawn(|_| {}).await;
    let body = checkout_body().to_string();
    let half = &body[..body.len() / 2];
    let checkout = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()));
    let requests = [
        (
            "content-length",
            checkout
                .clone()
                .with_body_cut_short(body.as_bytes(), half.len()),
        ),
        (
            "chunked",
            (checkout.header("Transfer-Encoding", "chunked").head()
                + &format!("{:x}\r\n{half}\r\n", half.len()))
                .into_bytes(),
        ),
    ];
    for (framing, request) in requests {
        let mut stream = connect(&app).await;
        stream.write_all(&request).await.unwrap();
        let bytes = read_until_closed(&mut stream, GENEROUS)
            .await
            .unwrap_or_else(|| panic!("{framing}: still open {GENEROUS:?} after the body stalled"));
        let response = RawResponse::parse(&bytes)
            .unwrap_or_else(|| panic!("{framing}: closed without an answer"));
        assert_eq!(response.status, 408, "{framing}");
        assert_eq!(response.header("connection"), Some("close"), "{framing}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{framing}"
        );
        assert!(response.header("x-request-id").is_some(), "{framing}");
        let envelope: serde_json::Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("{framing}: not JSON ({e})"));
        assert_eq!(envelope["error"], "invalid_request", "{framing}");
        assert_eq!(envelope["code"], "request_timeout", "{framing}");
        assert!(envelope["message"].is_string(), "{framing}");
    }
    assert!(app.proof_requests().await.is_empty(), "Proof was called");
}

#[tokio::test]
async fn a_checkout_whose_body_trickles_in_past_the_timeout_gets_408_request_timeout() {
    let app = spawn(|_| {}).await;
    let body = checkout_body().to_string();
    let head = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .header("Content-Length", &body.len().to_string())
        .head();
    let (mut reader, mut writer) = connect(&app).await.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        // A byte every 200 ms: the whole body would take far longer than allowed.
        for byte in body.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let received = read_until_closed(&mut reader, GENEROUS).await;
    trickle.abort();
    let received =
        received.unwrap_or_else(|| panic!("still open {GENEROUS:?} while the body trickled in"));
    let response = RawResponse::parse(&received).expect("an answer before the close");
    assert_eq!(response.status, 408);
    let envelope: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(envelope["code"], "request_timeout");
    assert!(app.proof_requests().await.is_empty(), "Proof was called");
}

#[tokio::test]
async fn a_drain_is_not_held_by_connections_that_never_finish_their_request() {
    let app = spawn(|settings| {
        settings.server.shutdown_timeout_s = 60;
        settings.server.keep_alive_s = 300;
    })
    .await;
    let body = checkout_body().to_string();
    let mut stalled_checkout = connect(&app).await;
    stalled_checkout
        .write_all(
            &RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
                .with_body_cut_short(body.as_bytes(), body.len() / 2),
        )
        .await
        .unwrap();
    let mut answered_probe = connect(&app).await;
    answered_probe
        .write_all(head_announcing_a_body(&app, Target::Healthz, Framing::Chunked).as_bytes())
        .await
        .unwrap();
    // The probe is answered at once: from here on the server holds both connections.
    let head = read_head(&mut answered_probe, GENEROUS)
        .await
        .expect("/healthz answers before its body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let mut stalled_headers = kept_alive(&app).await;
    stalled_headers
        .write_all(healthz(&app).unfinished_head().as_bytes())
        .await
        .unwrap();

    let drain = app.start_drain();
    tokio::time::timeout(Duration::from_secs(15), drain)
        .await
        .expect("the drain waited on connections that never finish their request (timeout 60 s)")
        .unwrap();
    for (name, stream) in [
        ("stalled checkout", &mut stalled_checkout),
        ("answered probe", &mut answered_probe),
        ("kept alive, headers stalled", &mut stalled_headers),
    ] {
        assert!(
            read_until_closed(stream, GENEROUS).await.is_some(),
            "{name}: still open after the drain"
        );
    }
}

/// A connection that has been answered once and is kept alive.
async fn kept_alive(app: &TestApp) -> TcpStream {
    let mut connection = RawConnection::open(app.port).await;
    let answered = connection.exchange(healthz(app).head().as_bytes()).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header("connection"), None, "kept alive");
    connection.into_stream()
}

fn healthz(app: &TestApp) -> RawRequest {
    RawRequest::new(app.port, "GET", "/healthz")
}

#[tokio::test]
async fn a_kept_alive_connection_whose_next_headers_stop_half_way_is_closed() {
    // Keep-alive longer than the test, so only the bound on headers can close it.
    let app = spawn(|settings| settings.server.keep_alive_s = 300).await;
    let mut stream = kept_alive(&app).await;
    stream
        .write_all(healthz(&app).unfinished_head().as_bytes())
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut stream, GENEROUS).await.is_some(),
        "still open {GENEROUS:?} after headers stopped half way ({REQUEST_TIMEOUT_MS} ms allowed)"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_whose_next_headers_trickle_in_is_closed() {
    let app = spawn(|settings| settings.server.keep_alive_s = 300).await;
    let stream = kept_alive(&app).await;
    let healthz = healthz(&app);
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        // A header byte every 200 ms, for far longer than the headers may take.
        let headers = healthz.header("X-Slow", &"a".repeat(200)).head();
        for byte in headers.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = read_until_closed(&mut reader, GENEROUS).await;
    trickle.abort();
    assert!(
        closed.is_some(),
        "still open {GENEROUS:?} while headers trickled in ({REQUEST_TIMEOUT_MS} ms allowed)"
    );
}

#[tokio::test]
async fn a_client_that_reads_none_of_its_answers_is_disconnected() {
    let app = spawn(|settings| settings.server.keep_alive_s = 300).await;
    // A small receive window, so the server's writes block soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{}", app.port).parse().unwrap())
        .await
        .unwrap();
    let (reader, mut writer) = stream.into_split();
    // Far more requests than the kernel's buffers and the server's pipeline hold, so sending them
    // all can only finish if the server keeps answering into a client that reads nothing, and
    // ends (with an error) as soon as the server gives up on the connection. Nothing is ever read:
    // reading would let the server's writes progress, whatever the machine's speed.
    const REQUESTS: usize = 200_000;
    let pipelined = healthz(&app).head().repeat(REQUESTS);
    let sent = tokio::time::timeout(GENEROUS, writer.write_all(pipelined.as_bytes())).await;
    drop(reader);
    match sent {
        Err(_) => panic!(
            "still open after {GENEROUS:?}: a client that stopped reading kept its connection"
        ),
        Ok(Ok(())) => {
            panic!("the server took in {REQUESTS} requests from a client reading nothing")
        }
        Ok(Err(_closed)) => {}
    }
}

#[tokio::test]
async fn keep_alive_s_zero_closes_every_connection_after_its_answer() {
    let app = spawn(|settings| settings.server.keep_alive_s = 0).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(healthz(&app).head().as_bytes())
        .await
        .unwrap();
    let bytes = read_until_closed(&mut stream, GENEROUS)
        .await
        .expect("the connection closes after the answer");
    let response = RawResponse::parse(&bytes).expect("an answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test]
async fn beyond_max_connections_a_new_connection_waits_until_one_closes() {
    let app = spawn(|settings| {
        settings.server.max_connections = 1;
        settings.server.keep_alive_s = 60;
    })
    .await;
    let healthz = healthz(&app).head();
    let mut first = connect(&app).await;
    first.write_all(healthz.as_bytes()).await.unwrap();
    let head = read_head(&mut first, GENEROUS)
        .await
        .expect("first answered");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The first connection stays open (keep-alive), so the second waits in the backlog.
    let mut second = connect(&app).await;
    second.write_all(healthz.as_bytes()).await.unwrap();
    assert!(
        read_head(&mut second, Duration::from_millis(500))
            .await
            .is_none(),
        "a connection beyond max_connections was served"
    );

    drop(first);
    let head = read_head(&mut second, GENEROUS)
        .await
        .expect("the waiting connection is served once the first closes");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// A checkout refused before its body was needed (here: no session) still has its body read, so
/// the exchange is complete and the connection stays open for the client's next request. Closed
/// with the body unread, the connection is reset by the kernel, and a client can lose the refusal
/// itself, or find its next request on a pooled connection unanswered.
#[tokio::test]
async fn a_checkout_refused_before_its_body_keeps_the_connection_for_the_next_request() {
    let app = spawn(|_| {}).await;
    let mut connection = RawConnection::open(app.port).await;
    let refused = RawRequest::checkout(app.port, APP_ORIGIN, None)
        .with_body(br#"{"network":"TRC20","currency":"USDT","amount":"100"}"#);
    for attempt in 0..3 {
        let answer = connection.exchange(&refused).await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {answer:?}");
        assert_eq!(
            answer.header("connection"),
            None,
            "attempt {attempt}: kept alive"
        );
    }
    let answered = connection.exchange(healthz(&app).head().as_bytes()).await;
    assert_eq!(answered.status, 200);
}

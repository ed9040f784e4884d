//! The health probes as load balancers and orchestrators send them, `HEAD` included, read off a
//! raw connection so that a body sent where none belongs would show.

use crate::helpers::*;

/// `method path` as a load balancer's probe sends it.
fn probe(app: &TestApp, method: &str, path: &str) -> Vec<u8> {
    RawRequest::new(app.port, method, path).head().into_bytes()
}

/// `HEAD` answers exactly what `GET` would, without the body; the `GET` that follows on the same
/// connection starts right where the `HEAD` answer ended.
#[track_caller]
fn assert_head_matches_get(head: &RawResponse, get: &RawResponse, route: &str) {
    assert_eq!(head.status, get.status, "HEAD {route}: {head:?}");
    for name in ["content-type", "content-length", "cache-control"] {
        assert_eq!(
            head.header(name),
            get.header(name),
            "HEAD {route}: {name} differs from GET"
        );
    }
    assert!(
        head.header("x-request-id").is_some(),
        "HEAD {route}: {head:?}"
    );
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn head_on_healthz_and_readyz_answers_200_like_get_without_a_body() {
    let app = spawn_app().await;
    let mut connection = RawConnection::open(app.port).await;
    for route in ["/healthz", "/readyz"] {
        let get = connection.exchange(&probe(&app, "GET", route)).await;
        assert_eq!(get.status, 200, "GET {route}: {get:?}");
        assert!(!get.body.is_empty(), "GET {route} has a body");

        let head = connection.exchange(&probe(&app, "HEAD", route)).await;
        assert_eq!(head.status, 200, "HEAD {route}: {head:?}");
        assert_head_matches_get(&head, &get, route);

        let after = connection.exchange(&probe(&app, "GET", route)).await;
        assert_eq!(after.body, get.body, "GET {route} after HEAD");
    }
}

#[tokio::test]
async fn head_on_readyz_answers_503_without_a_body_while_draining() {
    // Through the drain delay (longer than the test) `/readyz` answers 503 and kept-alive
    // connections are still served, so the probes share one connection.
    let app = spawn_app_with(|s| s.server.drain_delay_s = 600).await;
    let mut connection = RawConnection::open(app.port).await;
    assert_eq!(
        connection
            .exchange(&probe(&app, "HEAD", "/readyz"))
            .await
            .status,
        200
    );

    let _drain = app.start_drain();
    let head = eventually_async(
        "HEAD /readyz leaves 200 once the drain starts",
        async || {
            let head = connection.exchange(&probe(&app, "HEAD", "/readyz")).await;
            (head.status != 200).then_some(head)
        },
    )
    .await;
    assert_eq!(head.status, 503, "{head:?}");
    let get = connection.exchange(&probe(&app, "GET", "/readyz")).await;
    assert_eq!(get.status, 503, "{get:?}");
    let envelope: serde_json::Value = serde_json::from_slice(&get.body).unwrap();
    assert_eq!(envelope["code"], "shutting_down");
    assert_head_matches_get(&head, &get, "/readyz");
    // /healthz stays 200 through the drain: the process still serves.
    assert_eq!(
        connection
            .exchange(&probe(&app, "HEAD", "/healthz"))
            .await
            .status,
        200
    );
}

//! The browser-facing rules at the HTTP level: the CORS preflight, the CSRF checks and the
//! hardening headers every answer carries.

use crate::helpers::*;

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_grants_exactly_what_the_route_needs() {
    let app = spawn_app().await;
    widget_session_ok().expect(0).mount(&app.proof).await;

    let response = app
        .preflight(
            APP_ORIGIN,
            "POST",
            Some("content-type, x-csrf, x-request-id, idempotency-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], APP_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-methods"], "POST");
    assert_eq!(
        headers["access-control-allow-headers"],
        "Content-Type, X-CSRF, X-Request-Id, Idempotency-Key"
    );
    assert_eq!(headers["access-control-max-age"], "600");
    assert_eq!(headers["vary"], "Origin");
    // No session was read and nothing was counted: a preflight without any cookie is granted, and
    // Proof is never called.
}

#[tokio::test]
async fn a_preflight_for_another_method_or_header_is_refused_without_a_grant_of_methods() {
    let app = spawn_app().await;
    for (method, headers) in [
        ("PUT", Some("content-type")),
        ("DELETE", None),
        ("POST", Some("content-type, authorization")),
        ("POST", Some("x-custom")),
    ] {
        let response = app
            .preflight(APP_ORIGIN, method, headers)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method} {headers:?}");
        assert!(
            response
                .headers()
                .get("access-control-allow-methods")
                .is_none()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
}

#[tokio::test]
async fn a_wildcard_or_null_origin_is_never_granted() {
    let app = spawn_app().await;
    for origin in [
        "null",
        "*",
        "https://app.example.com.evil.example",
        "http://app.example.com",
    ] {
        let response = app
            .preflight(origin, "POST", Some("content-type"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{origin}");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        let post = app
            .checkout_request(Some(origin), Some(&session_token()))
            .send_with_valid_body()
            .await;
        assert_eq!(post.status(), 403, "{origin}");
        assert!(post.headers().get("access-control-allow-origin").is_none());
    }
    assert!(app.proof_requests().await.is_empty());
}

#[tokio::test]
async fn without_origin_a_cross_site_browser_request_is_refused_even_when_missing_origins_are_allowed()
 {
    let app = spawn_app_with(|s| s.browser.allow_missing_origin = true).await;
    widget_session_ok().expect(1).mount(&app.proof).await;
    let post = |site: Option<&'static str>| {
        let mut request = app
            .checkout_request(None, Some(&session_token()))
            .json(&checkout_body());
        if let Some(site) = site {
            request = request.header("Sec-Fetch-Site", site);
        }
        request.send()
    };
    for site in ["cross-site", "same-site"] {
        let response = post(Some(site)).await.unwrap();
        assert_eq!(response.status(), 403, "{site}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "forbidden_origin");
    }
    // A server-to-server caller sends neither header.
    assert_eq!(post(None).await.unwrap().status(), 200);
}

#[tokio::test]
async fn every_answer_carries_the_hardening_headers() {
    let app = spawn_app().await;
    widget_session_ok().mount(&app.proof).await;
    let answers = vec![
        app.checkout().send_with_valid_body().await,
        app.anonymous_checkout().send_with_valid_body().await,
        app.client.get(app.url("/healthz")).send().await.unwrap(),
        app.client.get(app.url("/readyz")).send().await.unwrap(),
        app.client
            .get(app.url("/no-such-route"))
            .send()
            .await
            .unwrap(),
        app.preflight(APP_ORIGIN, "POST", Some("content-type"))
            .send()
            .await
            .unwrap(),
    ];
    for response in answers {
        let headers = response.headers();
        let what = format!("{} {}", response.status(), response.url().path());
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
        assert!(
            headers.get_all("vary").iter().any(|v| v == "Origin"),
            "{what}"
        );
        assert!(headers.contains_key("x-request-id"), "{what}");
    }
}

#[tokio::test]
async fn answers_carrying_session_data_are_never_cached() {
    let app = spawn_app().await;
    widget_session_ok().mount(&app.proof).await;
    for response in [
        app.checkout().send_with_valid_body().await,
        app.anonymous_checkout().send_with_valid_body().await,
        app.checkout()
            .json(&serde_json::json!({"amount": "1"}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(
            response.headers()["cache-control"],
            "no-store",
            "{}",
            response.status()
        );
    }
}

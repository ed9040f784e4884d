use crate::helpers::*;

async fn limited_app(user_burst: u32, ip_burst: u32, trust_loopback: bool) -> TestApp {
    spawn_app_with(|s| {
        s.rate_limit.per_user_burst = user_burst;
        s.rate_limit.per_user_per_minute = 1;
        s.rate_limit.per_ip_burst = ip_burst;
        s.rate_limit.per_ip_per_minute = 1;
        if trust_loopback {
            s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
        }
    })
    .await
}

#[tokio::test]
async fn a_users_burst_passes_and_the_next_request_is_refused_with_retry_headers() {
    let app = limited_app(3, 1000, false).await;
    widget_session_ok().expect(3).mount(&app.proof).await;

    for i in 0..3 {
        let response = app.checkout().send_with_valid_body().await;
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(
            response.headers()["ratelimit"],
            format!("\"per_user\";r={};t={}", 2 - i, 60 * (i + 1)).as_str()
        );
        assert!(response.headers().contains_key("ratelimit-policy"));
    }
    let response = app.checkout().send_with_valid_body().await;
    assert_eq!(response.status(), 429);
    let headers = response.headers().clone();
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        headers["ratelimit-policy"],
        "\"per_user\";q=1;w=60;burst=3, \"per_ip\";q=1;w=60;burst=1000"
    );
    assert_eq!(
        headers["ratelimit"],
        format!("\"per_user\";r=0;t={retry_after}").as_str()
    );
    assert_eq!(headers["access-control-allow-origin"], APP_ORIGIN);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["code"], "per_user");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn other_users_and_other_addresses_are_not_affected() {
    let app = limited_app(1, 1, true).await;
    widget_session_ok().expect(3).mount(&app.proof).await;

    let alice = session_token_for("alice", "alice@example.org");
    let bob = session_token_for("bob", "bob@example.org");
    let send = |token: String, ip: &'static str| {
        app.checkout_as(&token)
            .header("X-Forwarded-For", ip)
            .json(&checkout_body())
            .send()
    };
    assert_eq!(
        send(alice.clone(), "203.0.113.1").await.unwrap().status(),
        200
    );
    // Same user, another address: the per-user limit refuses.
    let refused = send(alice.clone(), "203.0.113.2").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["code"],
        "per_user"
    );
    // Another user at the address that is now exhausted: the per-IP limit refuses.
    let refused = send(bob.clone(), "203.0.113.1").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["code"],
        "per_ip"
    );
    // Another user at another address passes.
    assert_eq!(send(bob, "203.0.113.3").await.unwrap().status(), 200);
    let carol = session_token_for("carol", "carol@example.org");
    assert_eq!(send(carol, "203.0.113.4").await.unwrap().status(), 200);
}

#[tokio::test]
async fn forty_concurrent_requests_of_one_user_with_burst_three_let_exactly_three_through() {
    let app = spawn_app_with(|s| {
        s.server.workers = 2;
        s.rate_limit.per_user_burst = 3;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;

    let requests = (0..40).map(|_| app.checkout().json(&checkout_body()).send());
    let statuses: Vec<u16> = futures_join_all(requests).await;
    let passed = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((passed, refused), (3, 37), "{statuses:?}");
    assert_eq!(app.proof_requests().await.len(), 3);
}

async fn futures_join_all<F>(requests: impl Iterator<Item = F>) -> Vec<u16>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let handles: Vec<_> = requests.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap().unwrap().status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn rotating_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_ip_limit() {
    let app = limited_app(1000, 3, false).await;
    widget_session_ok().expect(3).mount(&app.proof).await;

    let mut statuses = Vec::new();
    for i in 0..8 {
        // A different user and a different claimed address every time.
        let token = session_token_for(&format!("user-{i}"), "someone@example.org");
        let response = app
            .checkout_as(&token)
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .send_with_valid_body()
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429]);
}

#[tokio::test]
async fn the_per_ip_limit_cuts_a_flood_of_garbage_tokens_before_they_are_verified() {
    let app = limited_app(1000, 2, false).await;
    widget_session_ok().expect(0).mount(&app.proof).await;

    let mut codes = Vec::new();
    for _ in 0..4 {
        let response = app.checkout_as("not.a.jwt").send_with_valid_body().await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        codes.push((status, body["code"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        codes,
        [
            (401, "invalid_session".to_owned()),
            (401, "invalid_session".to_owned()),
            (429, "per_ip".to_owned()),
            (429, "per_ip".to_owned()),
        ]
    );
}

#[tokio::test]
async fn cors_preflights_are_never_counted() {
    let app = limited_app(1, 1, false).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    for _ in 0..5 {
        let preflight = app
            .preflight(APP_ORIGIN, "POST", Some("content-type"))
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204);
    }
    let response = app.checkout().send_with_valid_body().await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn refusals_are_logged_with_the_limit_kind_and_never_the_email() {
    let app = limited_app(1, 1000, false).await;
    widget_session_ok().mount(&app.proof).await;
    let email = "rate.limited.person@example.net";
    let token = session_token_for("limited-user", email);
    for _ in 0..2 {
        app.checkout_as(&token)
            .header("X-Request-Id", "rate-limit-log-check")
            .send_with_valid_body()
            .await;
    }
    let refusals = log_events_with_message("rate-limit-log-check", "checkout rate limited");
    let refusal = refusals.first().expect("the refusal is logged");
    assert!(refusal.to_string().contains("per_user"), "{refusal}");
    assert!(!logs().text().contains(email));
}

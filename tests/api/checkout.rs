use crate::helpers::*;

#[tokio::test]
async fn start_checkout_returns_proofs_body_byte_for_byte() {
    let app = spawn_app().await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = app.checkout().send_with_valid_body().await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..], WIDGET_SESSION_BODY.as_bytes());
}

#[tokio::test]
async fn the_upstream_request_carries_identity_from_the_session_and_our_headers_only() {
    let app = spawn_app().await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = app
        .checkout()
        .header("Authorization", "Bearer browser-supplied")
        .header("X-Forwarded-For", "198.51.100.7")
        .header("X-Request-Id", "caller-chosen-id-1")
        .json(&serde_json::json!({
            "network": "TRC20", "currency": "USDT", "amount": "99.50",
            "type": "sell", "redirect_url": "https://app.example.com/done"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id-1");

    let requests = app.proof_requests().await;
    assert_eq!(requests.len(), 1);
    let upstream = &requests[0];
    let headers = &upstream.headers;
    assert_eq!(
        headers.get("authorization").unwrap(),
        &format!("Bearer {CLIENT_TOKEN}")
    );
    assert_eq!(headers.get("origin").unwrap(), PROOF_ORIGIN);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_eq!(headers.get("x-request-id").unwrap(), "caller-chosen-id-1");
    assert!(
        headers.get("cookie").is_none(),
        "the browser's cookie leaked upstream"
    );
    assert!(headers.get("x-forwarded-for").is_none());
    assert_ne!(
        headers.get("host").unwrap().to_str().unwrap(),
        format!("127.0.0.1:{}", app.port)
    );

    let sent: serde_json::Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "partner_user_id": USER_ID,
            "user_email": USER_EMAIL,
            "network": "TRC20",
            "currency": "USDT",
            "amount": "99.50",
            "type": "sell",
            "redirect_url": "https://app.example.com/done",
            // The test client connects directly: the socket peer is the client.
            "client_ip": "127.0.0.1",
        })
    );
}

#[tokio::test]
async fn identity_fields_in_the_body_are_refused_and_proof_is_not_called() {
    let app = spawn_app().await;
    widget_session_ok().expect(0).mount(&app.proof).await;

    for field in ["partner_user_id", "user_email", "client_ip", "address"] {
        let mut body = checkout_body();
        body[field] = serde_json::json!("attacker-chosen");
        let response = app.checkout().json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{field}");
        let envelope: serde_json::Value = response.json().await.unwrap();
        assert_eq!(envelope["error"], "invalid_request");
        assert_eq!(envelope["code"], "validation_error");
        assert!(
            envelope["message"].as_str().unwrap().contains(field),
            "{field}: {envelope}"
        );
    }
}

#[tokio::test]
async fn a_configured_address_is_sent_and_otherwise_omitted() {
    let app = spawn_app_with(|s| s.proof.address = "TRxConfiguredAddress".into()).await;
    widget_session_ok().mount(&app.proof).await;
    let response = app.checkout().send_with_valid_body().await;
    assert_eq!(response.status(), 200);
    let sent: serde_json::Value =
        serde_json::from_slice(&app.proof_requests().await[0].body).unwrap();
    assert_eq!(sent["address"], "TRxConfiguredAddress");

    let app = spawn_app().await;
    widget_session_ok().mount(&app.proof).await;
    app.checkout().send_with_valid_body().await;
    let sent: serde_json::Value =
        serde_json::from_slice(&app.proof_requests().await[0].body).unwrap();
    assert!(sent.get("address").is_none());
    assert!(
        sent.get("type").is_none(),
        "type is sent only when asked for"
    );
}

//! `session.source = "headers"`: an auth proxy in front (oauth2-proxy, nginx `auth_request`) names
//! the user in request headers, believed only from `client_ip.trusted_proxies`. The tests connect
//! from 127.0.0.1.

use proof_bff::config::SessionSourceName;
use reqwest::RequestBuilder;
use serde_json::Value;

use crate::helpers::*;

const PROXY_USER: &str = "oauth2-user-31";
const PROXY_EMAIL: &str = "proxied.person@example.org";

async fn header_app(
    trusted_proxies: &[&str],
    customise: impl FnOnce(&mut proof_bff::config::Settings),
) -> TestApp {
    let trusted: Vec<String> = trusted_proxies.iter().map(|s| (*s).to_owned()).collect();
    spawn_app_with(|s| {
        s.session.source = SessionSourceName::Headers;
        s.client_ip.trusted_proxies = trusted;
        customise(s);
    })
    .await
}

/// A checkout as the auth proxy passes it on, naming `user`.
fn proxied_checkout(app: &TestApp, user: &str, email: &str) -> RequestBuilder {
    app.checkout_request(Some(APP_ORIGIN), None)
        .header("X-Auth-Request-User", user.to_owned())
        .header("X-Auth-Request-Email", email.to_owned())
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_user_from_a_trusted_proxys_headers_reaches_proof() {
    let app = header_app(&["127.0.0.1/32"], |_| {}).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = proxied_checkout(&app, PROXY_USER, PROXY_EMAIL)
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    let sent: Value = serde_json::from_slice(&app.proof_requests().await[0].body).unwrap();
    assert_eq!(sent["partner_user_id"], PROXY_USER);
    assert_eq!(sent["user_email"], PROXY_EMAIL);
}

#[tokio::test]
async fn the_same_headers_from_an_untrusted_peer_are_401_and_proof_is_not_called() {
    let app = header_app(&["10.0.0.0/8"], |_| {}).await;
    app.proof_must_not_be_called().await;

    let response = proxied_checkout(&app, PROXY_USER, PROXY_EMAIL)
        .send_with_valid_body()
        .await;
    let (status, body) = error_of(response).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorised");
    assert_eq!(body["code"], "no_session");
}

#[tokio::test]
async fn headers_that_break_the_session_rules_or_come_twice_are_401() {
    let app = header_app(&["127.0.0.1"], |_| {}).await;
    app.proof_must_not_be_called().await;

    let twice = proxied_checkout(&app, PROXY_USER, PROXY_EMAIL)
        .header("X-Auth-Request-User", "someone-else");
    let missing_email = app
        .checkout_request(Some(APP_ORIGIN), None)
        .header("X-Auth-Request-User", PROXY_USER);
    for (case, request) in [
        ("the user header twice", twice),
        ("no email header", missing_email),
        (
            "an email that is not an address",
            proxied_checkout(&app, PROXY_USER, "nobody"),
        ),
        ("an empty user", proxied_checkout(&app, "", PROXY_EMAIL)),
        (
            "a user id over 256 characters",
            proxied_checkout(&app, &"u".repeat(257), PROXY_EMAIL),
        ),
    ] {
        let (status, body) = error_of(request.send_with_valid_body().await).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["code"], "invalid_session", "{case}");
    }
    let (status, body) = error_of(
        app.checkout_request(Some(APP_ORIGIN), None)
            .send_with_valid_body()
            .await,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "no_session");
}

#[tokio::test]
async fn the_per_user_limit_keys_on_the_user_the_proxy_names() {
    let app = header_app(&["127.0.0.1"], |s| {
        s.rate_limit.per_user_burst = 2;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;

    for _ in 0..2 {
        let response = proxied_checkout(&app, PROXY_USER, PROXY_EMAIL)
            .send_with_valid_body()
            .await;
        assert_eq!(response.status(), 200);
    }
    let (status, body) = error_of(
        proxied_checkout(&app, PROXY_USER, PROXY_EMAIL)
            .send_with_valid_body()
            .await,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "per_user");
    let other = proxied_checkout(&app, "another-user", "another@example.org")
        .send_with_valid_body()
        .await;
    assert_eq!(other.status(), 200);
}

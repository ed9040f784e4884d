//! CORS and cookies as a real browser applies them: pages served from an allowed origin and from a
//! foreign origin on other loopback ports call the service with `fetch`.

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::support::browser::{Browser, launch};

/// A blank page served from its own loopback origin.
async fn page_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("<!doctype html><title>partner page</title>", "text/html"),
        )
        .mount(&server)
        .await;
    server
}

/// Puts a valid session cookie for the service's host in the browser, as the partner's login would.
/// (WebDriver's add-cookie refuses IP-address hosts, so the page of the service's own origin sets it.)
async fn sign_in(browser: &Browser, app: &TestApp) {
    browser.client.goto(&app.url("/healthz")).await.unwrap();
    let set = browser
        .run_async(&format!(
            "document.cookie = 'session={}; path=/; SameSite=Lax'; done(document.cookie.includes('session='));",
            session_token()
        ))
        .await;
    assert_eq!(set, true, "the session cookie was not set");
}

fn fetch_checkout(app: &TestApp, extra_headers: &str) -> String {
    format!(
        r#"
        const response = await fetch("{}/start-checkout", {{
            method: "POST",
            credentials: "include",
            headers: {{ "Content-Type": "application/json" {extra_headers} }},
            body: JSON.stringify({{ network: "TRC20", currency: "USDT", amount: "100" }}),
        }});
        done({{
            status: response.status,
            body: await response.text(),
            requestId: response.headers.get("X-Request-Id"),
            retryAfter: response.headers.get("Retry-After"),
            rateLimit: response.headers.get("RateLimit"),
        }});
        "#,
        app.address
    )
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_reads_the_widget_parameters_with_the_session_cookie() {
    let Some(browser) = launch().await else {
        return;
    };
    let page = page_server().await;
    let page_origin = page.uri();
    let app = spawn_app_with(|s| s.browser.allowed_origins = vec![page_origin.clone()]).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    sign_in(&browser, &app).await;
    browser.client.goto(&page.uri()).await.unwrap();
    let answer = browser.run_async(&fetch_checkout(&app, "")).await;

    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"], WIDGET_SESSION_BODY);
    assert!(
        answer["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(answer["rateLimit"].as_str().is_some(), "{answer}");
    let sent: serde_json::Value =
        serde_json::from_slice(&app.proof_requests().await[0].body).unwrap();
    assert_eq!(sent["partner_user_id"], USER_ID);
    browser.close().await;
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_can_read_a_401_without_a_session() {
    let Some(browser) = launch().await else {
        return;
    };
    let page = page_server().await;
    let page_origin = page.uri();
    let app = spawn_app_with(|s| s.browser.allowed_origins = vec![page_origin.clone()]).await;
    widget_session_ok().expect(0).mount(&app.proof).await;

    browser.client.goto(&page.uri()).await.unwrap();
    let answer = browser.run_async(&fetch_checkout(&app, "")).await;

    assert_eq!(answer["status"], 401, "{answer}");
    let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "no_session");
    assert!(answer["requestId"].as_str().is_some());
    browser.close().await;
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_can_read_a_429_and_its_retry_after() {
    let Some(browser) = launch().await else {
        return;
    };
    let page = page_server().await;
    let page_origin = page.uri();
    let app = spawn_app_with(|s| {
        s.browser.allowed_origins = vec![page_origin.clone()];
        s.rate_limit.per_user_burst = 1;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    sign_in(&browser, &app).await;
    browser.client.goto(&page.uri()).await.unwrap();
    let first = browser.run_async(&fetch_checkout(&app, "")).await;
    assert_eq!(first["status"], 200, "{first}");
    let second = browser.run_async(&fetch_checkout(&app, "")).await;

    assert_eq!(second["status"], 429, "{second}");
    let retry_after: u64 = second["retryAfter"].as_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert!(
        second["rateLimit"]
            .as_str()
            .unwrap()
            .starts_with("\"per_user\";r=0")
    );
    let body: serde_json::Value = serde_json::from_str(second["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "per_user");
    browser.close().await;
}

#[tokio::test]
async fn a_page_on_a_foreign_origin_gets_nothing_and_never_reaches_proof() {
    let Some(browser) = launch().await else {
        return;
    };
    let allowed = page_server().await;
    let foreign = page_server().await;
    let allowed_origin = allowed.uri();
    let app = spawn_app_with(|s| s.browser.allowed_origins = vec![allowed_origin.clone()]).await;
    widget_session_ok().expect(0).mount(&app.proof).await;

    // The foreign page even runs in a browser that holds the user's session cookie.
    sign_in(&browser, &app).await;
    browser.client.goto(&foreign.uri()).await.unwrap();
    let answer = browser.run_async(&fetch_checkout(&app, "")).await;
    assert!(
        answer["thrown"]
            .as_str()
            .is_some_and(|e| e.contains("TypeError")),
        "the browser must block the call: {answer}"
    );
    // A "simple" request needs no preflight, so it reaches the service; it is refused there.
    let simple = browser
        .run_async(&format!(
            r#"
            try {{
                await fetch("{}/start-checkout", {{
                    method: "POST", credentials: "include", mode: "no-cors",
                    headers: {{ "Content-Type": "text/plain" }},
                    body: JSON.stringify({{ network: "TRC20", currency: "USDT", amount: "100" }}),
                }});
                done({{ sent: true }});
            }} catch (e) {{ done({{ thrown: String(e) }}); }}
            "#,
            app.address
        ))
        .await;
    assert_eq!(simple["sent"], true, "{simple}");
    assert!(app.proof_requests().await.is_empty(), "Proof was called");
    browser.close().await;
}

#[tokio::test]
async fn the_csrf_header_passes_the_preflight_from_an_allowed_origin() {
    let Some(browser) = launch().await else {
        return;
    };
    let page = page_server().await;
    let page_origin = page.uri();
    let app = spawn_app_with(|s| {
        s.browser.allowed_origins = vec![page_origin.clone()];
        s.browser.require_csrf_header = true;
    })
    .await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    sign_in(&browser, &app).await;
    browser.client.goto(&page.uri()).await.unwrap();
    let without = browser.run_async(&fetch_checkout(&app, "")).await;
    assert_eq!(without["status"], 403, "{without}");
    let with = browser
        .run_async(&fetch_checkout(&app, r#", "X-CSRF": "1""#))
        .await;
    assert_eq!(with["status"], 200, "{with}");
    browser.close().await;
}

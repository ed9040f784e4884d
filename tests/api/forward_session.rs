//! `session.source = "forward"`: the partner's app (a wiremock server standing in for a Rails or
//! Django app) is asked who the session belongs to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use proof_bff::config::{SessionSourceName, Settings};
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, Respond, ResponseTemplate};

use crate::helpers::*;
use crate::metrics::{sample, scrape};
use crate::tls_front::{CA_FILE, TlsFront};

const WHOAMI: &str = "/session/whoami";
const APP_USER_ID: &str = "app-user-7";
const APP_USER_EMAIL: &str = "forwarded.person@example.org";

/// The app's session endpoint.
fn whoami() -> MockBuilder {
    Mock::given(method("GET")).and(path(WHOAMI))
}

/// The app's answer for a signed-in user, with a field the service must ignore.
fn signed_in(id: &str, email: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"id": id, "email": email, "name": "Someone"}))
}

/// The service in front of `partner`, forwarding the cookies of a Rails app: the session and the
/// "remember me" cookie.
async fn forward_app(partner: &MockServer, customise: impl FnOnce(&mut Settings)) -> TestApp {
    let url = format!("{}{WHOAMI}", partner.uri());
    spawn_app_with(|s| {
        s.session.source = SessionSourceName::Forward;
        s.session.forward.url = url;
        s.session.forward.cookies = vec!["_app_session".into(), "remember_user_token".into()];
        s.session.forward.cache_ttl_s = 3600;
        customise(s);
    })
    .await
}

/// A checkout from the partner's page whose browser sends `cookie`.
fn checkout_with_cookie(app: &TestApp, cookie: &str) -> RequestBuilder {
    app.checkout_request(Some(APP_ORIGIN), None)
        .header("Cookie", cookie.to_owned())
}

async fn calls_at(partner: &MockServer) -> Vec<wiremock::Request> {
    partner.received_requests().await.unwrap_or_default()
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn only_the_named_cookies_reach_the_app_and_its_user_reaches_proof() {
    let partner = MockServer::start().await;
    whoami()
        .respond_with(signed_in(APP_USER_ID, APP_USER_EMAIL))
        .mount(&partner)
        .await;
    let app = forward_app(&partner, |_| {}).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = checkout_with_cookie(
        &app,
        "theme=dark; _app_session=s3ss10n%3D%3D--abc; _ga=GA1.2.3; remember_user_token=r3m",
    )
    .header("Authorization", "Bearer browser-token-not-forwarded")
    .header("X-Request-Id", "forward-cookies-1")
    .header("X-Forwarded-For", "198.51.100.7")
    .header("User-Agent", "Mozilla/5.0 browser")
    .send_with_valid_body()
    .await;
    assert_eq!(response.status(), 200);

    let calls = calls_at(&partner).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.headers.get_all("cookie").iter().collect::<Vec<_>>(),
        ["_app_session=s3ss10n%3D%3D--abc; remember_user_token=r3m"]
    );
    assert_eq!(call.headers["x-request-id"], "forward-cookies-1");
    assert_eq!(call.headers["accept"], "application/json");
    assert!(
        call.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("proof-bff/")
    );
    // An answer we can read as it is.
    assert_eq!(call.headers["accept-encoding"], "identity");
    // Nothing else of the browser's request: not its Authorization, Origin, address or agent;
    // the rest is the HTTP client's own framing.
    let mut names: Vec<&str> = call.headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "accept",
            "accept-encoding",
            "content-length",
            "cookie",
            "date",
            "host",
            "user-agent",
            "x-request-id"
        ]
    );

    let sent: Value = serde_json::from_slice(&app.proof_requests().await[0].body).unwrap();
    assert_eq!(sent["partner_user_id"], APP_USER_ID);
    assert_eq!(sent["user_email"], APP_USER_EMAIL);
}

#[tokio::test]
async fn the_user_is_read_by_json_pointer_and_a_numeric_id_is_its_decimal_string() {
    let partner = MockServer::start().await;
    whoami()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "user": {"id": 4217, "emails": ["primary@example.org", "old@example.org"]},
            "csrf_token": "x"
        })))
        .mount(&partner)
        .await;
    let app = forward_app(&partner, |s| {
        s.session.forward.user_id_field = "/user/id".into();
        s.session.forward.email_field = "/user/emails/0".into();
    })
    .await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = checkout_with_cookie(&app, "_app_session=s1")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    let sent: Value = serde_json::from_slice(&app.proof_requests().await[0].body).unwrap();
    assert_eq!(sent["partner_user_id"], "4217");
    assert_eq!(sent["user_email"], "primary@example.org");
}

#[tokio::test]
async fn forward_authorization_sends_the_authorization_header_alone_when_no_cookie_is_named() {
    let partner = MockServer::start().await;
    whoami()
        .and(header("authorization", "Bearer app-api-token"))
        .respond_with(signed_in(APP_USER_ID, APP_USER_EMAIL))
        .mount(&partner)
        .await;
    let app = forward_app(&partner, |s| {
        s.session.forward.cookies = Vec::new();
        s.session.forward.forward_authorization = true;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;

    let response = app
        .checkout_request(Some(APP_ORIGIN), None)
        .header("Authorization", "Bearer app-api-token")
        .header("Cookie", "_app_session=not-named-here")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    let calls = calls_at(&partner).await;
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].headers.contains_key("cookie"));
}

#[tokio::test]
async fn without_a_forwarded_credential_the_app_is_not_asked_and_there_is_no_session() {
    let partner = MockServer::start().await;
    whoami()
        .respond_with(signed_in(APP_USER_ID, APP_USER_EMAIL))
        .expect(0)
        .mount(&partner)
        .await;
    let app = forward_app(&partner, |_| {}).await;
    app.proof_must_not_be_called().await;

    for cookie in [None, Some("theme=dark; _ga=1"), Some("_app_session=")] {
        let mut request = app.checkout_request(Some(APP_ORIGIN), None);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        let (status, body) = error_of(request.send_with_valid_body().await).await;
        assert_eq!(status, 401, "{cookie:?}: {body}");
        assert_eq!(body["error"], "unauthorised");
        assert_eq!(body["code"], "no_session", "{cookie:?}");
    }
}

#[tokio::test]
async fn a_forwarded_cookie_whose_value_holds_a_comma_is_invalid_session_and_the_app_is_not_asked()
{
    let partner = MockServer::start().await;
    whoami()
        .respond_with(signed_in(APP_USER_ID, APP_USER_EMAIL))
        .mount(&partner)
        .await;
    let app = forward_app(&partner, |_| {}).await;

    // An app that splits its Cookie header on commas too (as older cookie parsers do) would read
    // a cookie the browser was never allowed to send it.
    for cookie in [
        "_app_session=s1,admin_session=x",
        "_app_session=s1, theme=dark",
        "theme=dark; remember_user_token=\"r,1\"",
        "_app_session=s1; remember_user_token=,",
    ] {
        let (status, body) = error_of(
            checkout_with_cookie(&app, cookie)
                .send_with_valid_body()
                .await,
        )
        .await;
        assert_eq!(status, 401, "{cookie}: {body}");
        assert_eq!(body["error"], "unauthorised", "{cookie}");
        assert_eq!(body["code"], "invalid_session", "{cookie}");
    }
    assert!(calls_at(&partner).await.is_empty(), "the app was asked");
    app.assert_proof_not_called().await;

    // A comma in a cookie that is not forwarded is none of the app's business.
    widget_session_ok().mount(&app.proof).await;
    let response = checkout_with_cookie(&app, "theme=dark,light; _app_session=s1")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    let calls = calls_at(&partner).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers["cookie"], "_app_session=s1");
}

#[tokio::test]
async fn the_apps_401_and_403_are_invalid_session_and_proof_is_not_called() {
    for status in [401, 403] {
        let partner = MockServer::start().await;
        whoami()
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": "no"})))
            .mount(&partner)
            .await;
        let app = forward_app(&partner, |_| {}).await;
        app.proof_must_not_be_called().await;

        let response = checkout_with_cookie(&app, "_app_session=signed-out")
            .send_with_valid_body()
            .await;
        let (answer, body) = error_of(response).await;
        assert_eq!(answer, 401, "the app's {status}: {body}");
        assert_eq!(body["error"], "unauthorised");
        assert_eq!(body["code"], "invalid_session", "the app's {status}");
        assert_eq!(calls_at(&partner).await.len(), 1);
    }
}

#[track_caller]
fn assert_session_backend(status: u16, body: &Value, case: &str) {
    assert_eq!(status, 503, "{case}: {body}");
    assert_eq!(body["error"], "unavailable", "{case}: {body}");
    assert_eq!(body["code"], "session_backend", "{case}: {body}");
}

#[tokio::test]
async fn an_app_that_fails_or_answers_garbage_is_503_session_backend_and_proof_is_not_called() {
    let partner = MockServer::start().await;
    let app = forward_app(&partner, |_| {}).await;
    app.proof_must_not_be_called().await;
    let json_answer = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    let cases = [
        ("500", ResponseTemplate::new(500)),
        (
            "502",
            ResponseTemplate::new(502).set_body_string("bad gateway"),
        ),
        ("404", ResponseTemplate::new(404)),
        (
            "a redirect to the sign-in page",
            ResponseTemplate::new(302).insert_header("Location", "/users/sign_in"),
        ),
        ("204", ResponseTemplate::new(204)),
        (
            "a 200 that is not JSON",
            ResponseTemplate::new(200).set_body_raw("<html>Sign in</html>", "text/html"),
        ),
        (
            "a 200 without the email",
            json_answer(json!({"id": APP_USER_ID})),
        ),
        (
            "a 200 whose id is null",
            json_answer(json!({"id": null, "email": APP_USER_EMAIL})),
        ),
        (
            "a 200 over 64 KiB",
            json_answer(
                json!({"id": APP_USER_ID, "email": APP_USER_EMAIL, "pad": "x".repeat(70_000)}),
            ),
        ),
    ];
    for (case, answer) in cases {
        partner.reset().await;
        whoami().respond_with(answer).mount(&partner).await;
        let response = checkout_with_cookie(&app, "_app_session=s1")
            .send_with_valid_body()
            .await;
        let (status, body) = error_of(response).await;
        assert_session_backend(status, &body, case);
        assert_eq!(calls_at(&partner).await.len(), 1, "{case}");
    }
}

#[tokio::test]
async fn a_user_the_session_rules_refuse_is_401_invalid_session() {
    let partner = MockServer::start().await;
    let app = forward_app(&partner, |_| {}).await;
    app.proof_must_not_be_called().await;
    for (id, email) in [
        ("user\u{202e}24", APP_USER_EMAIL),
        ("", APP_USER_EMAIL),
        (APP_USER_ID, "not-an-address"),
    ] {
        partner.reset().await;
        whoami()
            .respond_with(signed_in(id, email))
            .mount(&partner)
            .await;
        let response = checkout_with_cookie(&app, "_app_session=s1")
            .send_with_valid_body()
            .await;
        let (status, body) = error_of(response).await;
        assert_eq!(status, 401, "{id:?} {email:?}: {body}");
        assert_eq!(body["code"], "invalid_session");
    }
}

#[tokio::test]
async fn an_app_slower_than_timeout_ms_is_503_session_backend() {
    let partner = MockServer::start().await;
    whoami()
        .respond_with(signed_in(APP_USER_ID, APP_USER_EMAIL).set_delay(Duration::from_secs(10)))
        .mount(&partner)
        .await;
    let app = forward_app(&partner, |s| s.session.forward.timeout_ms = 200).await;
    app.proof_must_not_be_called().await;

    let response = checkout_with_cookie(&app, "_app_session=s1")
        .send_with_valid_body()
        .await;
    let (status, body) = error_of(response).await;
    assert_session_backend(status, &body, "a slow app");
}

#[tokio::test]
async fn an_unreachable_app_is_503_session_backend() {
    let app = spawn_app_with(|s| {
        s.session.source = SessionSourceName::Forward;
        s.session.forward.url = format!("{}{WHOAMI}", refused_base_url());
        s.session.forward.cookies = vec!["_app_session".into()];
    })
    .await;
    app.proof_must_not_be_called().await;

    let response = checkout_with_cookie(&app, "_app_session=s1")
        .send_with_valid_body()
        .await;
    let (status, body) = error_of(response).await;
    assert_session_backend(status, &body, "an unreachable app");
}

/// The app knows two sessions of one user and one of another; any other session is signed out.
async fn app_with_sessions(partner: &MockServer) {
    for (cookie, id, email) in [
        ("_app_session=alice-laptop", "alice", "alice@example.org"),
        ("_app_session=alice-phone", "alice", "alice@example.org"),
        ("_app_session=bob-laptop", "bob", "bob@example.org"),
    ] {
        whoami()
            .and(header("cookie", cookie))
            .respond_with(signed_in(id, email))
            .with_priority(1)
            .mount(partner)
            .await;
    }
    whoami()
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(partner)
        .await;
}

async fn calls_with_cookie(partner: &MockServer, cookie: &str) -> usize {
    calls_at(partner)
        .await
        .iter()
        .filter(|call| call.headers.get("cookie").is_some_and(|v| v == cookie))
        .count()
}

#[tokio::test]
async fn a_positive_answer_is_reused_for_the_same_credentials_and_a_refusal_is_not() {
    let partner = MockServer::start().await;
    app_with_sessions(&partner).await;
    let app = forward_app(&partner, |_| {}).await;
    widget_session_ok().mount(&app.proof).await;

    for _ in 0..3 {
        let response = checkout_with_cookie(&app, "theme=dark; _app_session=alice-laptop")
            .send_with_valid_body()
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        calls_with_cookie(&partner, "_app_session=alice-laptop").await,
        1
    );

    // Other credentials are another entry, even for the same user.
    let response = checkout_with_cookie(&app, "_app_session=alice-phone")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        calls_with_cookie(&partner, "_app_session=alice-phone").await,
        1
    );

    for _ in 0..2 {
        let response = checkout_with_cookie(&app, "_app_session=forgotten")
            .send_with_valid_body()
            .await;
        assert_eq!(response.status(), 401);
    }
    assert_eq!(
        calls_with_cookie(&partner, "_app_session=forgotten").await,
        2
    );
    assert_eq!(calls_at(&partner).await.len(), 4);
}

#[tokio::test]
async fn after_cache_ttl_s_the_app_is_asked_again() {
    let partner = MockServer::start().await;
    app_with_sessions(&partner).await;
    let app = forward_app(&partner, |s| s.session.forward.cache_ttl_s = 1).await;
    widget_session_ok().mount(&app.proof).await;

    // Checkouts keep coming; within a second or so the cached answer expires and the app is asked
    // again. Polled with a generous bound, so a slow machine only makes it take longer.
    let mut checkouts = 0;
    while calls_at(&partner).await.len() < 2 {
        assert!(checkouts < 600, "the app was never asked again");
        let response = checkout_with_cookie(&app, "_app_session=alice-laptop")
            .send_with_valid_body()
            .await;
        assert_eq!(response.status(), 200);
        checkouts += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        calls_with_cookie(&partner, "_app_session=alice-laptop").await,
        2
    );
}

/// The app's answer, held until the test opens the gate, however long that takes; counts calls.
/// (wiremock's responders are synchronous: holding one holds that mock server's thread, which is
/// what the test wants from the one call it expects.)
#[derive(Clone)]
struct Gate {
    calls: Arc<AtomicUsize>,
    open: Arc<(Mutex<bool>, Condvar)>,
    answer: ResponseTemplate,
}

impl Gate {
    fn new(answer: ResponseTemplate) -> Self {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
            open: Arc::new((Mutex::new(false), Condvar::new())),
            answer,
        }
    }

    fn open(&self) {
        let (open, changed) = &*self.open;
        *open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        changed.notify_all();
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Respond for Gate {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (open, changed) = &*self.open;
        // Bounded only so that nothing can hold the server for ever.
        let guard = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = changed.wait_timeout_while(guard, Duration::from_secs(180), |open| !*open);
        self.answer.clone()
    }
}

/// Opens the gate when the test ends, failed or not, so the mock server is let go at once.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[tokio::test]
async fn fifty_concurrent_checkouts_of_one_session_make_one_call_across_workers() {
    const CHECKOUTS: usize = 50;
    const JOINS: &str = "session check joins the same session's call to the app";
    let partner = MockServer::builder().start().await;
    let gate = Gate::new(signed_in(APP_USER_ID, APP_USER_EMAIL));
    let _opened_at_the_end = OpenOnDrop(gate.clone());
    whoami().respond_with(gate.clone()).mount(&partner).await;
    let app = forward_app(&partner, |s| {
        s.server.workers = 2;
        // No cache: only the call in flight can be shared.
        s.session.forward.cache_ttl_s = 0;
        s.session.forward.timeout_ms = 60_000;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;

    // Only what is logged from here on is read.
    let mut read_up_to = logs().len();
    let checkouts: Vec<_> = (0..CHECKOUTS)
        .map(|i| {
            let request = checkout_with_cookie(&app, "_app_session=one-session")
                .header("X-Request-Id", format!("single-flight-{i}"))
                .json(&checkout_body());
            tokio::spawn(request.send())
        })
        .collect();

    // The first checkout's call is held at the app; the gate opens once every other checkout is
    // waiting on that call, however long they take to arrive. None can be answered before.
    let mut joined = 0;
    let mut polls = 0;
    while joined < CHECKOUTS - 1 {
        let (lines, next) = logs().lines_from(read_up_to);
        read_up_to = next;
        joined += lines
            .iter()
            .filter(|line| line.contains(JOINS) && line.contains(r#""request_id":"single-flight-"#))
            .count();
        assert!(
            checkouts.iter().all(|checkout| !checkout.is_finished()),
            "a checkout was answered before the app; {joined} had joined the call"
        );
        assert!(polls < 2400, "only {joined} checkouts joined the call");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gate.calls(), 1);
    gate.open();

    for checkout in checkouts {
        let response = checkout.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        gate.calls(),
        1,
        "the app was called once for all the checkouts"
    );
    assert_eq!(app.proof_requests().await.len(), CHECKOUTS);
}

#[tokio::test]
async fn the_per_user_limit_keys_on_the_user_the_app_names() {
    let partner = MockServer::start().await;
    app_with_sessions(&partner).await;
    let app = forward_app(&partner, |s| {
        s.rate_limit.per_user_burst = 2;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;
    let send = |cookie: &'static str| checkout_with_cookie(&app, cookie).send_with_valid_body();

    assert_eq!(send("_app_session=alice-laptop").await.status(), 200);
    assert_eq!(send("_app_session=alice-phone").await.status(), 200);
    // Alice's burst is spent, whichever of her sessions she uses.
    let (status, body) = error_of(send("_app_session=alice-laptop").await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "per_user");
    assert_eq!(send("_app_session=bob-laptop").await.status(), 200);
}

#[tokio::test]
async fn forwarded_credentials_and_the_apps_email_never_reach_the_logs() {
    const COOKIE_VALUE: &str = "cookie-canary-8841";
    const OTHER_COOKIE: &str = "other-cookie-canary-8841";
    const AUTHORIZATION: &str = "Bearer authorization-canary-8841";
    const EMAIL: &str = "forward.canary.8841@pii-canary.example";
    const USER: &str = "forward-log-probe-8841";
    let partner = MockServer::start().await;
    let app = forward_app(&partner, |s| {
        s.session.forward.forward_authorization = true;
        s.session.forward.cache_ttl_s = 0;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;
    let cookie = format!("_app_session={COOKIE_VALUE}; theme={OTHER_COOKIE}");

    for (answer, expected) in [
        (signed_in(USER, EMAIL), 200),
        (ResponseTemplate::new(401), 401),
        (ResponseTemplate::new(500), 503),
        (
            ResponseTemplate::new(200).set_body_string(format!("not json {EMAIL}")),
            503,
        ),
        (signed_in("bad\u{7}id", EMAIL), 401),
    ] {
        partner.reset().await;
        whoami().respond_with(answer).mount(&partner).await;
        let response = checkout_with_cookie(&app, &cookie)
            .header("Authorization", AUTHORIZATION)
            .send_with_valid_body()
            .await;
        assert_eq!(response.status(), expected);
    }

    let logs = logs().text();
    assert!(
        logs.contains(USER),
        "the user id is logged, so the capture works"
    );
    assert!(logs.contains("session check with the app failed"));
    for (what, secret) in [
        ("the session cookie", COOKIE_VALUE),
        ("another cookie", OTHER_COOKIE),
        ("the Authorization header", "authorization-canary-8841"),
        ("the email the app named", EMAIL),
    ] {
        assert!(!logs.contains(secret), "{what} appears in the logs");
    }
}

#[tokio::test]
async fn an_app_with_a_certificate_from_a_private_ca_is_trusted_only_through_ca_file() {
    let partner = MockServer::start().await;
    whoami()
        .respond_with(signed_in(APP_USER_ID, APP_USER_EMAIL))
        .mount(&partner)
        .await;
    let front = TlsFront::start(*partner.address()).await;
    let url = front.url(WHOAMI);
    let settings = |ca_file: &'static str| {
        let url = url.clone();
        move |s: &mut Settings| {
            s.session.source = SessionSourceName::Forward;
            s.session.forward.url = url;
            s.session.forward.cookies = vec!["_app_session".into()];
            s.session.forward.ca_file = ca_file.into();
        }
    };

    // Without the partner's CA the app's certificate is not trusted: no session can be resolved.
    let untrusting = spawn_app_with(settings("")).await;
    untrusting.proof_must_not_be_called().await;
    let (status, body) = error_of(
        checkout_with_cookie(&untrusting, "_app_session=abc")
            .send_with_valid_body()
            .await,
    )
    .await;
    assert_session_backend(status, &body, "an app behind an untrusted certificate");
    // The front counts the refusal once it reads it, which may be just after the checkout's answer.
    front.wait_until_only_refused().await;
    assert!(calls_at(&partner).await.is_empty());
    untrusting.assert_proof_not_called().await;

    // With it, the app is asked over TLS and its user reaches Proof.
    let trusting = spawn_app_with(settings(CA_FILE)).await;
    widget_session_ok().expect(1).mount(&trusting.proof).await;
    let response = checkout_with_cookie(&trusting, "_app_session=abc")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(calls_at(&partner).await.len(), 1);
    let sent: Value = serde_json::from_slice(&trusting.proof_requests().await[0].body).unwrap();
    assert_eq!(sent["partner_user_id"], APP_USER_ID);
}

// ---------------------------------------------------------------------------------------------
// session.forward.max_connections
// ---------------------------------------------------------------------------------------------

/// The app's answer for a signed-in user, as the stand-in on raw sockets sends it.
const APP_ANSWER: &str = r#"{"id":"app-user-7","email":"forwarded.person@example.org"}"#;

/// The service in front of an app stand-in on raw sockets ([`RawUpstream`]), which counts the
/// connections and the calls it receives however long it holds its answers.
async fn forward_app_at(partner: &RawUpstream, customise: impl FnOnce(&mut Settings)) -> TestApp {
    let url = format!("{}{WHOAMI}", partner.base_url);
    spawn_app_with(|s| {
        s.session.source = SessionSourceName::Forward;
        s.session.forward.url = url;
        s.session.forward.cookies = vec!["_app_session".into()];
        customise(s);
    })
    .await
}

/// The sample of `proof_bff_outbound_{name}{client="forward"}`, and the whole scrape.
async fn forward_budget_series(app: &TestApp, name: &str) -> (Option<f64>, String) {
    let text = scrape(app).await;
    let series = format!("proof_bff_outbound_{name}{{client=\"forward\"}}");
    (sample(&text, &series), text)
}

/// Waits until the series shows `value`, however long that takes up to a generous bound.
async fn until_forward_budget_shows(app: &TestApp, name: &str, value: f64) {
    let shown = async || forward_budget_series(app, name).await.0 == Some(value);
    if within_async(EVENTUALLY, shown).await.is_none() {
        let (_, text) = forward_budget_series(app, name).await;
        panic!("{name} never showed {value}:\n{text}");
    }
}

#[tokio::test]
async fn three_hundred_sessions_are_asked_about_at_once_by_default() {
    // Every answer is held at the app until all the calls have arrived there. With a bound below
    // 300 (awc's own 100 connections, as before session.forward.max_connections) the others wait
    // behind the first ones, the app never sees them all, and the test gives up.
    const SESSIONS: usize = 300;
    let partner = RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, APP_ANSWER)]).await;
    let app = forward_app_at(&partner, |s| {
        // However long the calls take to reach the app on a busy machine.
        s.session.forward.timeout_ms = 60_000;
        s.server.client_request_timeout_ms = 120_000;
        s.proof.request_timeout_ms = 60_000;
        s.proof.deadline_ms = 60_000;
    })
    .await;
    widget_session_ok().mount(&app.proof).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut checkouts = tokio::task::JoinSet::new();
    for i in 0..SESSIONS {
        let request = client
            .post(app.url("/start-checkout"))
            .header("Origin", APP_ORIGIN)
            .header("Cookie", format!("_app_session=session-{i}"))
            .json(&checkout_body());
        checkouts.spawn(request.send());
    }

    if within_async(EVENTUALLY, async || partner.requests() >= SESSIONS)
        .await
        .is_none()
    {
        let seen = partner.requests();
        panic!("the app saw only {seen} of {SESSIONS} sessions' calls at once");
    }
    partner.release();
    while let Some(answer) = checkouts.join_next().await {
        let (status, body) = error_of(answer.unwrap().unwrap()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(partner.requests(), SESSIONS, "one call per session");
    let proof_calls = app.proof_requests().await;
    assert_eq!(proof_calls.len(), SESSIONS);
    for call in proof_calls {
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["partner_user_id"], APP_USER_ID, "the app's answer");
    }
}

#[tokio::test]
async fn at_max_connections_a_call_waits_for_a_place_without_sending_anything() {
    let partner = RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, APP_ANSWER)]).await;
    let app = forward_app_at(&partner, |s| {
        s.session.forward.max_connections = 1;
        // Far more than the test needs: here the place comes back when the app answers.
        s.session.forward.timeout_ms = 60_000;
        s.metrics.listen = "127.0.0.1:0".into();
    })
    .await;
    widget_session_ok().mount(&app.proof).await;
    let (in_flight, text) = forward_budget_series(&app, "in_flight").await;
    assert_eq!(in_flight, Some(0.0), "{text}");

    // The first session's call holds the only place while the app holds its answer.
    let first = send_until_proof_has_it(
        checkout_with_cookie(&app, "_app_session=first").json(&checkout_body()),
        &partner,
    )
    .await;
    let (in_flight, text) = forward_budget_series(&app, "in_flight").await;
    assert_eq!(in_flight, Some(1.0), "{text}");

    // Another session's call waits for it, and sends nothing meanwhile.
    let second = tokio::spawn(
        checkout_with_cookie(&app, "_app_session=second")
            .json(&checkout_body())
            .send(),
    );
    until_forward_budget_shows(&app, "waiting", 1.0).await;
    assert_eq!(partner.requests(), 1, "the waiting call reached the app");
    assert_eq!(
        partner.connections(),
        1,
        "the waiting call opened a connection"
    );
    let (in_flight, text) = forward_budget_series(&app, "in_flight").await;
    assert_eq!(in_flight, Some(1.0), "{text}");

    // The app answers: the place comes back, and the waiting call is made with it.
    partner.release();
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    assert_eq!(partner.requests(), 2);
    for (name, value) in [
        ("in_flight", 0.0),
        ("waiting", 0.0),
        ("wait_seconds_count", 2.0),
        ("refused_total", 0.0),
    ] {
        let (shown, text) = forward_budget_series(&app, name).await;
        assert_eq!(shown, Some(value), "{name}:\n{text}");
    }
}

#[tokio::test]
async fn at_max_connections_with_a_stalled_app_other_sessions_get_503_session_backend() {
    const TIMEOUT: Duration = Duration::from_millis(1000);
    // Never answers.
    let partner = RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, APP_ANSWER)]).await;
    let app = forward_app_at(&partner, |s| {
        s.session.forward.max_connections = 1;
        s.session.forward.timeout_ms = TIMEOUT.as_millis() as u64;
        s.metrics.listen = "127.0.0.1:0".into();
    })
    .await;
    app.proof_must_not_be_called().await;
    let first = send_until_proof_has_it(
        checkout_with_cookie(&app, "_app_session=first").json(&checkout_body()),
        &partner,
    )
    .await;

    let asked = tokio::time::Instant::now();
    let second = checkout_with_cookie(&app, "_app_session=second")
        .send_with_valid_body()
        .await;
    let took = asked.elapsed();
    let (status, body) = error_of(second).await;
    assert_session_backend(status, &body, "a session behind a stalled one");
    assert!(
        took >= TIMEOUT - Duration::from_millis(50),
        "answered once its timeout_ms had passed, not before ({took:?})"
    );
    let (status, body) = error_of(first.await.unwrap().unwrap()).await;
    assert_session_backend(status, &body, "the stalled session");
    let (in_flight, text) = forward_budget_series(&app, "in_flight").await;
    assert_eq!(in_flight, Some(0.0), "{text}");
    let (refused, text) = forward_budget_series(&app, "refused_total").await;
    assert!(refused.is_some(), "{text}");
}

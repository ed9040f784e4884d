//! Every row of the public error table, observed over real HTTP, and what every error answer
//! carries: the `{"error", "code", "message"}` envelope, `X-Request-Id`, `Cache-Control: no-store`
//! and, for the partner's own origin only, the CORS grant.

use std::collections::BTreeSet;
use std::time::Duration;

use proof_bff::session::sign_hs256;
use reqwest::header::HeaderMap;
use wiremock::ResponseTemplate;

use crate::helpers::*;

const FOREIGN_ORIGIN: &str = "https://evil.example.net";

/// An error answer that passed the envelope checks.
pub(crate) struct ErrorAnswer {
    pub(crate) headers: HeaderMap,
    pub(crate) message: String,
    pub(crate) body: Vec<u8>,
}

/// Checks the status, the envelope (exactly `error`, `code` and `message`, all strings) and the
/// headers every error answer carries.
fn check_envelope(
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    expected_status: u16,
    error: &str,
    code: &str,
) -> ErrorAnswer {
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, expected_status, "status; body: {text}");
    let content_type = headers
        .get("content-type")
        .unwrap_or_else(|| panic!("no Content-Type on {status}: {text}"))
        .to_str()
        .unwrap();
    let essence = content_type.split(';').next().unwrap().trim();
    assert!(
        essence.eq_ignore_ascii_case("application/json"),
        "Content-Type {content_type:?} on {status}"
    );
    assert_eq!(
        headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "Cache-Control on {status}"
    );
    let request_id = headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on {status}"));
    assert!(!request_id.is_empty(), "empty X-Request-Id on {status}");

    let envelope: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {text}"));
    let object = envelope
        .as_object()
        .unwrap_or_else(|| panic!("{status} body is not an object: {text}"));
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["code", "error", "message"]),
        "envelope keys: {text}"
    );
    for key in ["error", "code", "message"] {
        assert!(object[key].is_string(), "{key} is not a string: {text}");
    }
    assert_eq!(object["error"], error, "error slug: {text}");
    assert_eq!(object["code"], code, "code: {text}");
    let message = object["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty(), "empty message: {text}");
    ErrorAnswer {
        headers,
        message,
        body,
    }
}

/// `response` is the service's own error `status` with exactly this `error` and `code`.
pub(crate) async fn expect_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
    code: &str,
) -> ErrorAnswer {
    let actual = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    check_envelope(actual, headers, body, status, error, code)
}

fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The CORS grant a browser needs to let the partner's script read the answer.
fn assert_cors_granted(headers: &HeaderMap) {
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some(APP_ORIGIN),
        "Access-Control-Allow-Origin"
    );
    assert_eq!(
        headers
            .get("access-control-allow-credentials")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "Access-Control-Allow-Credentials"
    );
    let exposed = header_list(headers, "access-control-expose-headers");
    for name in ["retry-after", "x-request-id"] {
        assert!(
            exposed.iter().any(|e| e == name),
            "{name} not exposed: {exposed:?}"
        );
    }
    let vary = header_list(headers, "vary");
    assert!(vary.iter().any(|v| v == "origin"), "Vary: {vary:?}");
}

fn assert_no_cors_grant(headers: &HeaderMap) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
    ] {
        assert!(
            headers.get(name).is_none(),
            "{name} granted to a foreign origin: {:?}",
            headers.get(name)
        );
    }
}

/// A correctly signed session whose `exp` is an hour past: far beyond the 30 s leeway.
fn expired_session_token() -> String {
    let now = unix_now();
    let claims = serde_json::json!({
        "sub": USER_ID,
        "email": USER_EMAIL,
        "iat": now - 7200,
        "exp": now - 3600,
    });
    hs256_token(JWT_SECRET, &claims)
}

const OTHER_SECRET: &str = "another-hs256-secret-of-an-attacker-0123456789";

// 400 invalid_request / validation_error

#[tokio::test]
async fn a_bad_or_missing_field_is_a_400_validation_error_that_names_the_field() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;

    let cases: [(&str, String); 12] = [
        (
            "network",
            r#"{"network":"TRC 20","currency":"USDT","amount":"100"}"#.into(),
        ),
        (
            "network",
            r#"{"network":"","currency":"USDT","amount":"100"}"#.into(),
        ),
        (
            "currency",
            r#"{"network":"TRC20","currency":"US$","amount":"100"}"#.into(),
        ),
        (
            "amount",
            r#"{"network":"TRC20","currency":"USDT","amount":"-5"}"#.into(),
        ),
        (
            "amount",
            r#"{"network":"TRC20","currency":"USDT","amount":"1e3"}"#.into(),
        ),
        (
            "amount",
            r#"{"network":"TRC20","currency":"USDT","amount":100}"#.into(),
        ),
        (
            "type",
            r#"{"network":"TRC20","currency":"USDT","amount":"100","type":"rent"}"#.into(),
        ),
        (
            "redirect_url",
            format!(
                r#"{{"network":"TRC20","currency":"USDT","amount":"100","redirect_url":"{FOREIGN_ORIGIN}/done"}}"#
            ),
        ),
        ("amount", r#"{"network":"TRC20","currency":"USDT"}"#.into()),
        ("network", r#"{"currency":"USDT","amount":"100"}"#.into()),
        ("body", r#"["TRC20","USDT","100"]"#.into()),
        ("body", r#""network=TRC20""#.into()),
    ];
    for (field, body) in cases {
        let response = app
            .checkout()
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let answer = expect_error(response, 400, "invalid_request", "validation_error").await;
        assert!(
            answer.message.contains(field),
            "message for {body} does not name {field}: {}",
            answer.message
        );
        assert_cors_granted(&answer.headers);
    }
    app.assert_proof_not_called().await;
}

// 401 unauthorised

#[tokio::test]
async fn a_missing_garbage_forged_or_expired_session_is_401_and_proof_is_not_called() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    let now = unix_now();
    let forged_expired = hs256_token(
        OTHER_SECRET,
        &serde_json::json!({"sub": USER_ID, "email": USER_EMAIL, "exp": now - 3600}),
    );
    let other_secret = sign_hs256(OTHER_SECRET.as_bytes(), USER_ID, USER_EMAIL, 600).unwrap();
    // (the session cookie, the code)
    let sessions = [
        (None, "no_session"),
        (Some("garbage".to_owned()), "invalid_session"),
        (Some("a.b.c".to_owned()), "invalid_session"),
        (
            Some("eyJhbGciOiJIUzI1NiJ9.e30.AAAA".to_owned()),
            "invalid_session",
        ),
        (Some(other_secret), "invalid_session"),
        (Some(expired_session_token()), "session_expired"),
        // An expired session with a forged signature: invalid, not expired.
        (Some(forged_expired), "invalid_session"),
    ];
    for (token, code) in sessions {
        let checkout = match &token {
            None => app.anonymous_checkout(),
            Some(token) => app.checkout_as(token),
        };
        let response = checkout.send_with_valid_body().await;
        let answer = expect_error(response, 401, "unauthorised", code).await;
        assert_cors_granted(&answer.headers);
    }
    app.assert_proof_not_called().await;
}

// 403 forbidden

#[tokio::test]
async fn a_foreign_origin_is_403_forbidden_origin_without_any_cors_grant() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;

    for origin in [FOREIGN_ORIGIN, "https://app.example.com.evil.test", "null"] {
        let response = app
            .checkout_request(Some(origin), Some(&session_token()))
            .send_with_valid_body()
            .await;
        let answer = expect_error(response, 403, "forbidden", "forbidden_origin").await;
        assert_no_cors_grant(&answer.headers);
    }
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn a_missing_origin_is_403_forbidden_origin_by_default() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;

    let response = app
        .checkout_request(None, Some(&session_token()))
        .send_with_valid_body()
        .await;

    let answer = expect_error(response, 403, "forbidden", "forbidden_origin").await;
    assert_no_cors_grant(&answer.headers);
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn two_origin_headers_are_403_forbidden_origin_even_when_both_are_allowed() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;

    for second in [APP_ORIGIN, FOREIGN_ORIGIN] {
        let response = app
            .checkout()
            .header("Origin", second)
            .send_with_valid_body()
            .await;
        let answer = expect_error(response, 403, "forbidden", "forbidden_origin").await;
        assert_no_cors_grant(&answer.headers);
    }
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn a_missing_origin_is_allowed_when_allow_missing_origin_is_set() {
    let app = spawn_app_with(|s| s.browser.allow_missing_origin = true).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = app
        .checkout_request(None, Some(&session_token()))
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        WIDGET_SESSION_BODY.as_bytes()
    );

    // A foreign Origin is still refused: only its absence is tolerated.
    let response = app
        .checkout_request(Some(FOREIGN_ORIGIN), Some(&session_token()))
        .send_with_valid_body()
        .await;
    expect_error(response, 403, "forbidden", "forbidden_origin").await;
}

#[tokio::test]
async fn the_origin_is_checked_before_the_session() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;

    let response = app
        .checkout_request(Some(FOREIGN_ORIGIN), None)
        .send_with_valid_body()
        .await;

    expect_error(response, 403, "forbidden", "forbidden_origin").await;
}

#[tokio::test]
async fn a_missing_or_wrong_csrf_header_is_403_csrf_when_it_is_required() {
    let app = spawn_app_with(|s| s.browser.require_csrf_header = true).await;
    app.proof_must_not_be_called().await;

    for value in [None, Some(""), Some("0"), Some("true"), Some("11")] {
        let mut request = app.checkout().json(&checkout_body());
        if let Some(value) = value {
            request = request.header("X-CSRF", value);
        }
        let response = request.send().await.unwrap();
        let answer = expect_error(response, 403, "forbidden", "csrf").await;
        assert_cors_granted(&answer.headers);
    }
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn x_csrf_1_is_accepted_when_the_csrf_header_is_required() {
    let app = spawn_app_with(|s| s.browser.require_csrf_header = true).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = app
        .checkout()
        .header("X-CSRF", "1")
        .send_with_valid_body()
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        WIDGET_SESSION_BODY.as_bytes()
    );
}

#[tokio::test]
async fn a_preflight_from_a_foreign_origin_is_a_403_envelope_without_a_grant() {
    let app = spawn_app().await;

    let response = app
        .preflight(FOREIGN_ORIGIN, "POST", None)
        .send()
        .await
        .unwrap();

    let answer = expect_error(response, 403, "forbidden", "forbidden_origin").await;
    assert_no_cors_grant(&answer.headers);
}

// 413 invalid_request / body_too_large

/// A valid checkout body padded with whitespace to exactly `len` bytes.
fn padded_checkout_body(len: usize) -> Vec<u8> {
    let mut body = checkout_body().to_string().into_bytes();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

#[tokio::test]
async fn a_body_over_max_body_bytes_with_a_content_length_is_413_body_too_large() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 64).await;
    app.proof_must_not_be_called().await;

    let response = app
        .checkout()
        .header("Content-Type", "application/json")
        .body(padded_checkout_body(65))
        .send()
        .await
        .unwrap();

    let answer = expect_error(response, 413, "invalid_request", "body_too_large").await;
    assert_cors_granted(&answer.headers);
    app.assert_proof_not_called().await;
}

/// The sandbox's login reads its body within a bound of its own, in the envelope like every other
/// refusal (the framework's default reader answered a large body with a bare `text/plain` 413).
#[tokio::test]
async fn a_large_sandbox_login_body_is_413_body_too_large_in_the_envelope() {
    let proof = wiremock::MockServer::start().await;
    let mut config = base_settings(&proof).validate().unwrap();
    config.sandbox = Some(proof_bff::session::DevSession::new(
        secrecy::SecretString::from(JWT_SECRET),
        "session".into(),
        600,
    ));
    let app = spawn_with_config(config, proof).await;
    let login = |body: String| {
        app.client
            .post(app.url("/sandbox/login"))
            .header("Origin", APP_ORIGIN)
            .header("Content-Type", "application/json")
            .body(body)
    };
    for size in [5_000, 300_000] {
        let body = format!(
            "{{\"user_id\":\"u-1\",\"email\":\"a@example.org\",\"pad\":\"{}\"}}",
            "x".repeat(size)
        );
        let response = login(body).send().await.unwrap();
        expect_error(response, 413, "invalid_request", "body_too_large").await;
    }
    // An ordinary login still signs the user in.
    let response = login(r#"{"user_id":"u-1","email":"a@example.org"}"#.into())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_some());
}

#[tokio::test]
async fn a_chunked_body_over_max_body_bytes_is_413_body_too_large() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 64).await;
    app.proof_must_not_be_called().await;

    // Three chunks of 40 bytes: each fits the limit, together they do not.
    let body = padded_checkout_body(120);
    let mut request = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .header("Transfer-Encoding", "chunked")
        .header("Connection", "close")
        .head()
        .into_bytes();
    for chunk in body.chunks(40) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let (status, headers, body) =
        raw_parts(RawConnection::open(app.port).await.exchange(&request).await);

    let answer = check_envelope(
        status,
        headers,
        body,
        413,
        "invalid_request",
        "body_too_large",
    );
    assert_cors_granted(&answer.headers);
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn a_body_of_exactly_max_body_bytes_is_accepted() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 64).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = app
        .checkout()
        .header("Content-Type", "application/json")
        .body(padded_checkout_body(64))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_malformed_chunked_body_is_a_400_not_a_413() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;

    // Five bytes, then a chunk size that is not hexadecimal: far below the limit, just broken.
    let request = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .header("Transfer-Encoding", "chunked")
        .header("Connection", "close")
        .head()
        + "5\r\n{\"a\":\r\nzz\r\n1}\r\n0\r\n\r\n";
    let (status, headers, body) = raw_parts(
        RawConnection::open(app.port)
            .await
            .exchange(request.as_bytes())
            .await,
    );

    let (error, code) = slugs(&body);
    assert_ne!(
        code, "body_too_large",
        "a {status} {error}/{code} for a 5-byte body under a 16384-byte limit"
    );
    check_envelope(status, headers, body, 400, "invalid_request", &code);
    app.assert_proof_not_called().await;
}

// 400 invalid_request / malformed_request, 431 invalid_request / headers_too_large: refused by the
// HTTP server before any request exists.

/// `GET /healthz` with these extra header lines, written as they are.
fn healthz_with(port: u16, extra_lines: &str) -> Vec<u8> {
    format!(
        "{}{extra_lines}\r\n",
        RawRequest::new(port, "GET", "/healthz").unfinished_head()
    )
    .into_bytes()
}

#[tokio::test]
async fn requests_the_http_server_cannot_read_are_answered_in_the_envelope_with_a_request_id() {
    let app = spawn_app().await;
    let too_many_headers: String = (0..120).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let cases = [
        (
            "a header line without a colon",
            healthz_with(app.port, "Not A Header\r\n"),
            400,
            "malformed_request",
        ),
        (
            "a request line that is not HTTP",
            b"GET /healthz SPDY/9\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "two Content-Length headers that disagree",
            healthz_with(app.port, "Content-Length: 1\r\nContent-Length: 2\r\n"),
            400,
            "malformed_request",
        ),
        (
            "more header lines than the server takes",
            healthz_with(app.port, &too_many_headers),
            431,
            "headers_too_large",
        ),
    ];
    let mut request_ids = BTreeSet::new();
    for (case, request, status, code) in cases {
        // Read until the service closes the connection, off the runtime the service runs on.
        let port = app.port;
        let answer =
            tokio::task::spawn_blocking(move || crate::support::raw_http::send(port, &request))
                .await
                .unwrap()
                .unwrap_or_else(|error| panic!("{case}: no answer ({error})"));
        assert_eq!(answer.header("connection"), Some("close"), "{case}");
        let (actual, headers, body) = raw_parts(answer);
        let answer = check_envelope(actual, headers, body, status, "invalid_request", code);
        let request_id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
        uuid_v4(&request_id);
        assert!(
            request_ids.insert(request_id),
            "{case}: a request id reused"
        );
    }

    // After an answer on a kept-alive connection, and behind one in the same write: the answers
    // before it are left as they were.
    let mut connection = RawConnection::open(app.port).await;
    let first = connection
        .exchange(
            RawRequest::new(app.port, "GET", "/healthz")
                .head()
                .as_bytes(),
        )
        .await;
    assert_eq!(first.status, 200);
    let mut pipelined = RawRequest::new(app.port, "GET", "/healthz")
        .head()
        .into_bytes();
    pipelined.extend_from_slice(&healthz_with(app.port, "Not A Header\r\n"));
    let second = connection.exchange(&pipelined).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), r#"{"status":"ok"}"#);
    let third = connection.exchange(b"").await;
    check_envelope(
        third.status,
        third.header_map(),
        third.body,
        400,
        "invalid_request",
        "malformed_request",
    );
}

fn uuid_v4(id: &str) {
    let bytes = id.as_bytes();
    assert!(
        bytes.len() == 36
            && bytes[14] == b'4'
            && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "not a version 4 UUID: {id}"
    );
}

// 415 invalid_request / unsupported_media_type

#[tokio::test]
async fn a_body_not_declared_as_json_is_415_unsupported_media_type() {
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    let body = checkout_body().to_string();

    for content_type in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = app.checkout().body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.unwrap();
        let answer = expect_error(response, 415, "invalid_request", "unsupported_media_type").await;
        assert_cors_granted(&answer.headers);
    }
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_accepted() {
    let app = spawn_app().await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let response = app
        .checkout()
        .header("Content-Type", "application/json; charset=utf-8")
        .body(checkout_body().to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}

// 4xx from Proof, passed through

#[tokio::test]
async fn proofs_own_4xx_answers_are_passed_through_verbatim() {
    let app = spawn_app().await;
    let cases: [(u16, &str, Option<&str>); 6] = [
        (
            400,
            "{ \"error\":\"invalid_request\",  \"code\" : \"currency_not_allowed\",\n\"message\":\"USDT is not enabled\" }",
            None,
        ),
        (
            400,
            r#"{"error":"wallet_not_supported","code":"WALLET_NOT_SUPPORTED","message":"no wallet"}"#,
            None,
        ),
        (
            404,
            r#"{"error":"not_found","code":"not_found","message":"no such thing"}"#,
            None,
        ),
        (
            409,
            r#"{"error":"session_already_used","message":"used","request_id":"r-1"}"#,
            None,
        ),
        (
            422,
            r#"{"error":"kyc_required","code":"kyc_required","message":"verify first","rate":1.10}"#,
            None,
        ),
        (
            429,
            r#"{"error":"rate_limit_exceeded","code":"rate_limit_exceeded","message":"slow down"}"#,
            Some("17"),
        ),
    ];

    for (status, body, retry_after) in cases {
        app.proof.reset().await;
        let mut template = proof_json(status, body);
        if let Some(retry_after) = retry_after {
            template = template.insert_header("Retry-After", retry_after);
        }
        app.proof_answers(template).await;

        let response = app.checkout().send_with_valid_body().await;

        assert_eq!(response.status().as_u16(), status, "{body}");
        let headers = response.headers().clone();
        assert_eq!(
            headers.get("retry-after").map(|v| v.to_str().unwrap()),
            retry_after,
            "Retry-After on {status}"
        );
        assert!(headers.contains_key("x-request-id"));
        assert_cors_granted(&headers);
        assert_eq!(
            String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap(),
            body
        );
        assert_eq!(
            app.proof_requests().await.len(),
            1,
            "a {status} from Proof is not retried"
        );
    }
}

#[tokio::test]
async fn proofs_json_4xx_keeps_a_json_content_type_and_is_labelled_json_otherwise() {
    let app = spawn_app().await;
    let body =
        "{ \"error\":\"invalid_request\", \"code\":\"currency_not_allowed\",\"message\":\"USDT\" }";
    let cases: [(Option<&str>, &str); 5] = [
        (Some("application/json"), "application/json"),
        (
            Some("application/json; charset=utf-8"),
            "application/json; charset=utf-8",
        ),
        (Some("application/problem+json"), "application/problem+json"),
        // The body was checked to be a JSON object: it is labelled as what it is.
        (Some("text/plain"), "application/json"),
        (None, "application/json"),
    ];
    for (upstream_type, relayed_type) in cases {
        app.proof.reset().await;
        let template = match upstream_type {
            Some(content_type) => proof_answer(400, body, content_type),
            None => ResponseTemplate::new(400).set_body_bytes(body),
        };
        app.proof_answers(template).await;

        let response = app.checkout().send_with_valid_body().await;

        assert_eq!(response.status(), 400, "{upstream_type:?}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some(relayed_type),
            "Content-Type relayed for {upstream_type:?}"
        );
        assert_eq!(response.bytes().await.unwrap(), body.as_bytes());
    }
}

#[tokio::test]
async fn a_4xx_that_is_not_a_json_object_is_502_invalid_upstream_response() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 3).await;
    let html = "<html><body><h1>400 Bad Request</h1>Request blocked by the firewall</body></html>";
    let cases: [(&str, u16, Vec<u8>, Option<&str>); 6] = [
        (
            "rq-4xx-html",
            400,
            html.into(),
            Some("text/html; charset=UTF-8"),
        ),
        ("rq-4xx-empty", 400, Vec::new(), None),
        (
            "rq-4xx-array",
            400,
            br#"[{"error":"invalid_request","code":"blocked","message":"firewall"}]"#.to_vec(),
            Some("application/json"),
        ),
        (
            "rq-4xx-truncated",
            400,
            br#"{"error":"invalid_request","code":"blocked","message":"fire"#.to_vec(),
            Some("application/json"),
        ),
        // A wrong base_url path: the web server's own 404 page.
        ("rq-4xx-404-page", 404, html.into(), Some("text/html")),
        (
            "rq-4xx-json-type-no-json",
            422,
            b"Request blocked by the firewall".to_vec(),
            Some("application/json"),
        ),
    ];
    for (request_id, status, body, content_type) in cases {
        app.proof.reset().await;
        let template = match content_type {
            Some(content_type) => proof_answer(status, body, content_type),
            None => ResponseTemplate::new(status).set_body_bytes(body),
        };
        app.proof_answers(template).await;

        let response = app
            .checkout()
            .header("X-Request-Id", request_id)
            .send_with_valid_body()
            .await;

        let answer =
            expect_error(response, 502, "upstream_error", "invalid_upstream_response").await;
        assert_cors_granted(&answer.headers);
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("firewall") && !text.contains("blocked"),
            "{request_id}: the upstream's answer leaked: {text}"
        );
        assert_eq!(app.proof_requests().await.len(), 1, "{request_id}");
        let unusable = log_events_with_message(request_id, "Proof's answer is unusable");
        assert_eq!(unusable.len(), 1, "{request_id}: {unusable:?}");
        let fields = &unusable[0]["fields"];
        assert_eq!(fields["status"], status, "{request_id}");
        assert_eq!(
            fields["content_type"],
            content_type.unwrap_or("(none)"),
            "{request_id}"
        );
    }
}

// 502 upstream_error / upstream_misconfigured

#[tokio::test]
async fn a_401_or_403_from_proof_is_502_upstream_misconfigured_logged_as_an_error_with_proofs_request_id()
 {
    let app = spawn_app().await;
    for (status, proof_request_id, body) in [
        (
            401,
            "proof-req-misconfigured-401-c0ffee",
            r#"{"error":"unauthorised","code":"invalid_token","message":"token inactive"}"#,
        ),
        (
            403,
            "proof-req-misconfigured-403-decade",
            r#"{"error":"forbidden","code":"forbidden_origin","message":"origin not on allowlist"}"#,
        ),
    ] {
        app.proof.reset().await;
        app.proof_answers(proof_json(status, body).insert_header("X-Request-Id", proof_request_id))
            .await;

        let response = app.checkout().send_with_valid_body().await;

        let answer = expect_error(response, 502, "upstream_error", "upstream_misconfigured").await;
        assert_cors_granted(&answer.headers);
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("token inactive") && !text.contains("allowlist"),
            "Proof's {status} body reached the browser: {text}"
        );
        assert_eq!(
            app.proof_requests().await.len(),
            1,
            "{status} is not retried"
        );

        let errors: Vec<_> = log_events_mentioning(proof_request_id)
            .into_iter()
            .filter(|event| event["level"] == "ERROR")
            .filter(|event| event.to_string().contains(proof_request_id))
            .collect();
        assert!(
            !errors.is_empty(),
            "no ERROR log line carries Proof's request id {proof_request_id}"
        );
    }
}

// 502 upstream_error / provider_error

#[tokio::test]
async fn a_proof_5xx_without_a_retryable_slug_is_502_provider_error_after_a_single_call() {
    let app = spawn_app().await;
    for (status, body, content_type) in [
        (503, "<html>maintenance</html>", "text/html"),
        (
            503,
            r#"{"error":"upstream_error","code":"provider_error","message":"x"}"#,
            "application/json",
        ),
        (
            500,
            r#"{"error":"something_else","code":"db_error","message":"x"}"#,
            "application/json",
        ),
        (500, "Internal Server Error", "text/plain"),
        (
            504,
            r#"{"error":"gateway_timeout","code":"x","message":"x"}"#,
            "application/json",
        ),
    ] {
        app.proof.reset().await;
        app.proof_answers(proof_answer(status, body, content_type))
            .await;

        let response = app.checkout().send_with_valid_body().await;

        let answer = expect_error(response, 502, "upstream_error", "provider_error").await;
        assert_cors_granted(&answer.headers);
        assert_eq!(
            app.proof_requests().await.len(),
            1,
            "Proof's {status} {body} was retried"
        );
    }
}

#[tokio::test]
async fn a_proof_502_that_stays_retryable_is_502_provider_error_after_max_attempts() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 3).await;
    for slug in ["upstream_error", "upstream_unavailable"] {
        app.proof.reset().await;
        app.proof_answers(proof_answer(
            502,
            proof_error(slug, "provider_error").to_string(),
            "application/json",
        ))
        .await;

        let response = app.checkout().send_with_valid_body().await;

        expect_error(response, 502, "upstream_error", "provider_error").await;
        let calls = app.proof_requests().await;
        assert_eq!(calls.len(), 3, "{slug}: attempts");
        assert!(
            calls.iter().all(|c| c.body == calls[0].body),
            "{slug}: every attempt carries the same body"
        );
    }
}

#[tokio::test]
async fn a_proof_500_internal_error_is_retried_once_then_502_provider_error() {
    let app = spawn_app_with(|s| s.proof.max_attempts = 5).await;
    app.proof_answers(proof_answer(
        500,
        proof_error("internal_error", "db_error").to_string(),
        "application/json",
    ))
    .await;

    let response = app.checkout().send_with_valid_body().await;

    expect_error(response, 502, "upstream_error", "provider_error").await;
    assert_eq!(app.proof_requests().await.len(), 2);
}

// 502 upstream_error / upstream_unavailable

#[tokio::test]
async fn an_unreachable_proof_is_502_upstream_unavailable() {
    let app = spawn_app_with(|s| s.proof.base_url = refused_base_url()).await;

    let response = app.checkout().send_with_valid_body().await;

    let answer = expect_error(response, 502, "upstream_error", "upstream_unavailable").await;
    assert_cors_granted(&answer.headers);
}

// 502 upstream_error / invalid_upstream_response

#[tokio::test]
async fn a_200_from_proof_that_is_not_a_json_object_is_502_invalid_upstream_response() {
    let app = spawn_app().await;
    let oversized = format!(r#"{{"pad":"{}"}}"#, "a".repeat(300 * 1024));
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "HTML",
            b"<html><body>Welcome to Proof</body></html>".to_vec(),
            "text/html",
        ),
        (
            "a JSON array",
            br#"[{"widget_id":"fb359d09"}]"#.to_vec(),
            "application/json",
        ),
        (
            "truncated JSON",
            br#"{"widget_id":"fb359d09","init_token":"eyJ"#.to_vec(),
            "application/json",
        ),
        ("an empty body", Vec::new(), "application/json"),
        (
            "a JSON object over 256 KiB",
            oversized.into_bytes(),
            "application/json",
        ),
    ];
    for (what, body, content_type) in cases {
        app.proof.reset().await;
        app.proof_answers(proof_answer(200, body, content_type))
            .await;

        let response = app.checkout().send_with_valid_body().await;

        let answer =
            expect_error(response, 502, "upstream_error", "invalid_upstream_response").await;
        assert_cors_granted(&answer.headers);
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("Welcome") && !text.contains("fb359d09") && !text.contains("aaaa"),
            "{what} leaked into the answer: {text}"
        );
    }
}

// 504 upstream_timeout / upstream_timeout

#[tokio::test]
async fn proof_answering_after_the_attempt_timeout_is_504_upstream_timeout_without_a_retry() {
    let app = spawn_app_with(|s| {
        s.proof.request_timeout_ms = 300;
        s.proof.deadline_ms = 5000;
    })
    .await;
    app.proof_answers(widget_session_answer().set_delay(Duration::from_secs(2)))
        .await;

    let response = app.checkout().send_with_valid_body().await;

    let answer = expect_error(response, 504, "upstream_timeout", "upstream_timeout").await;
    assert_cors_granted(&answer.headers);
    assert_eq!(app.proof_requests().await.len(), 1);
}

#[tokio::test]
async fn proof_answering_after_the_deadline_is_504_upstream_timeout() {
    let app = spawn_app_with(|s| {
        s.proof.request_timeout_ms = 5000;
        s.proof.deadline_ms = 300;
    })
    .await;
    app.proof_answers(widget_session_answer().set_delay(Duration::from_secs(2)))
        .await;

    let response = app.checkout().send_with_valid_body().await;

    expect_error(response, 504, "upstream_timeout", "upstream_timeout").await;
}

// 503 unavailable / shutting_down

/// Starts a checkout that Proof holds until the test releases it, and returns once Proof has it.
async fn checkout_in_flight(
    app: &TestApp,
    proof: &RawUpstream,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    send_until_proof_has_it(
        app.checkout_on_own_connection().json(&checkout_body()),
        proof,
    )
    .await
}

#[tokio::test]
async fn draining_lets_a_checkout_already_in_flight_complete() {
    let proof =
        RawUpstream::start([RawBehaviour::AnswerWhenReleased(200, WIDGET_SESSION_BODY)]).await;
    let app = spawn_app_with(|s| {
        s.proof.base_url = proof.base_url.clone();
        s.proof.request_timeout_ms = 60_000;
        s.proof.deadline_ms = 60_000;
        // A drain that could last a minute: only the checkout's end may finish it.
        s.server.shutdown_timeout_s = 60;
    })
    .await;
    let in_flight = checkout_in_flight(&app, &proof).await;

    let drain = app.start_drain();
    // The drain has stopped accepting once a new connection is refused: from then on it only
    // waits for what is in flight, and it cannot end while Proof holds the answer.
    eventually_async("the drain stopped accepting connections", async || {
        std::net::TcpStream::connect(("127.0.0.1", app.port)).is_err()
    })
    .await;
    assert!(
        !drain.is_finished(),
        "the drain returned while a checkout was still in flight"
    );

    proof.release();
    let response = in_flight
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the drain cut off the checkout in flight: {e}"));
    assert_eq!(response.status(), 200, "the checkout in flight completes");
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        WIDGET_SESSION_BODY.as_bytes()
    );
    tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("the drain ends once nothing is in flight")
        .unwrap();
}

#[tokio::test]
async fn while_draining_readyz_and_start_checkout_answer_503_shutting_down_on_an_open_connection() {
    // A drain that could last an hour: it ends when the connections have closed, not on a
    // timeout that a slow machine might reach first; requests that have an hour to arrive.
    let app = spawn_app_with(|s| {
        s.server.shutdown_timeout_s = 3600;
        s.server.client_request_timeout_ms = 3_600_000;
    })
    .await;
    app.proof_must_not_be_called().await;
    let readyz = RawRequest::new(app.port, "GET", "/readyz")
        .head()
        .into_bytes();
    let checkout = RawRequest::checkout(app.port, APP_ORIGIN, Some(&session_token()))
        .with_body(checkout_body().to_string().as_bytes());
    // Once the drain starts the listener accepts nothing new and idle connections are closed, so
    // only a request already arriving when it starts can still be answered: each request's first
    // bytes go out before the drain, the rest once it is under way.
    let mut started = Vec::new();
    for request in [&readyz, &checkout] {
        let mut connection = RawConnection::open(app.port).await;
        let ready = connection.exchange(&readyz).await;
        assert_eq!(ready.status, 200, "ready before the drain");
        connection.send_part(&request[..10]).await;
        started.push((connection, &request[10..]));
    }

    let drain = app.start_drain();
    eventually_async("the drain stopped accepting connections", async || {
        std::net::TcpStream::connect(("127.0.0.1", app.port)).is_err()
    })
    .await;
    let closed = "the drain closed a connection whose request had begun, without answering";
    for (route, (mut connection, rest)) in ["/readyz", "/start-checkout"].into_iter().zip(started) {
        let (status, headers, body) = connection
            .try_exchange(rest)
            .await
            .map(raw_parts)
            .expect(closed);
        let answer = check_envelope(status, headers, body, 503, "unavailable", "shutting_down");
        if route == "/start-checkout" {
            assert_cors_granted(&answer.headers);
        }
        assert_eq!(
            answer.headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "{route}: a draining instance closes the connection after its 503"
        );
        assert!(
            connection.try_exchange(&readyz).await.is_none(),
            "{route}: the connection stayed open after the 503 that said it closes"
        );
    }
    app.assert_proof_not_called().await;

    tokio::time::timeout(EVENTUALLY, drain)
        .await
        .expect("the drain ends once no connection is left")
        .unwrap();
}

// Routes outside the table

/// A raw answer in the parts [`check_envelope`] takes.
fn raw_parts(response: RawResponse) -> (u16, HeaderMap, Vec<u8>) {
    let headers = response.header_map();
    (response.status, headers, response.body)
}

async fn into_parts(response: reqwest::Response) -> (u16, HeaderMap, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    (status, headers, body)
}

/// The slug and code of an answer whose slug and code the contract leaves open; `check_envelope`
/// then holds the answer to the envelope's shape.
fn slugs(body: &[u8]) -> (String, String) {
    let envelope: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not the JSON envelope: {:?}", String::from_utf8_lossy(body)));
    let text = |key: &str| envelope[key].as_str().unwrap_or_default().to_owned();
    (text("error"), text("code"))
}

#[tokio::test]
async fn an_unknown_route_is_a_404_and_another_method_on_start_checkout_a_405_envelope() {
    use reqwest::Method;
    let app = spawn_app().await;
    app.proof_must_not_be_called().await;
    for (method, path, expected) in [
        (Method::GET, "/nope", 404),
        (Method::GET, "/start-checkout/extra", 404),
        (Method::GET, "/sandbox/login", 404),
        (Method::GET, "/start-checkout", 405),
        (Method::PUT, "/start-checkout", 405),
        (Method::DELETE, "/start-checkout", 405),
    ] {
        let response = app
            .client
            .request(method, app.url(path))
            .header("Origin", APP_ORIGIN)
            .header("Cookie", format!("session={}", session_token()))
            .send()
            .await
            .unwrap();
        let (status, headers, body) = into_parts(response).await;
        let (error, code) = slugs(&body);
        let answer = check_envelope(status, headers, body, expected, &error, &code);
        assert_cors_granted(&answer.headers);
    }
}

/// RFC 9110: a 405 lists the methods the path does take. Each path's own list, not the checkout's
/// for every path; and the probes answer another method with 405 too, not the unknown-route 404.
#[tokio::test]
async fn another_method_on_a_known_path_is_a_405_whose_allow_names_that_paths_methods() {
    use reqwest::Method;
    const WEBHOOK: &str = "/proof-webhook/0123456789abcdef0123456789abcdef";
    let app = spawn_app_with(|s| s.status.webhook_path = WEBHOOK.into()).await;
    app.proof_must_not_be_called().await;
    for (method, path, allow) in [
        (Method::GET, "/start-checkout", "POST, OPTIONS"),
        (Method::POST, "/checkout/tx-1", "GET"),
        (Method::OPTIONS, "/checkout/tx-1/events", "GET"),
        (Method::DELETE, "/kyc-status", "GET"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::TRACE, "/readyz", "GET, HEAD"),
        (Method::GET, WEBHOOK, "POST"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("Origin", APP_ORIGIN)
            .send()
            .await
            .unwrap();
        let (status, headers, body) = into_parts(response).await;
        let answer = check_envelope(
            status,
            headers,
            body,
            405,
            "invalid_request",
            "method_not_allowed",
        );
        assert_eq!(
            answer.headers.get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_method_other_than_get_on_a_probe_is_a_4xx_envelope() {
    let app = spawn_app().await;
    for route in ["/healthz", "/readyz"] {
        let response = app.client.post(app.url(route)).send().await.unwrap();
        let (status, headers, body) = into_parts(response).await;
        assert!((400..500).contains(&status), "POST {route}: {status}");
        let (error, code) = slugs(&body);
        check_envelope(status, headers, body, status, &error, &code);
    }
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_with_a_request_id() {
    let app = spawn_app().await;
    for route in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(route)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{route}");
        assert!(response.headers().contains_key("x-request-id"), "{route}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body.is_object(), "{route}: {body}");
    }
}

// What every error answer carries

#[tokio::test]
async fn the_callers_request_id_is_returned_on_an_error_answer() {
    let app = spawn_app().await;

    let response = app
        .anonymous_checkout()
        .header("X-Request-Id", "caller-trace-401-e7")
        .send_with_valid_body()
        .await;

    let answer = expect_error(response, 401, "unauthorised", "no_session").await;
    assert_eq!(answer.headers["x-request-id"], "caller-trace-401-e7");
}

#[tokio::test]
async fn error_answers_to_a_foreign_origin_carry_no_cors_grant() {
    let app = spawn_app().await;
    for (path, method) in [
        ("/start-checkout", reqwest::Method::POST),
        ("/start-checkout", reqwest::Method::GET),
        ("/nope", reqwest::Method::GET),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("Origin", FOREIGN_ORIGIN)
            .send_with_valid_body()
            .await;
        assert!(
            response.status().is_client_error(),
            "{method} {path}: {}",
            response.status()
        );
        assert_no_cors_grant(response.headers());
        assert!(response.headers().contains_key("x-request-id"));
    }
}

// Secrets and personal data stay out of the logs

#[tokio::test]
async fn logs_never_contain_secrets_the_users_email_or_the_session_token() {
    const PROBE_USER: &str = "log-probe-user-5150";
    const PROBE_EMAIL: &str = "log.probe.5150@pii-canary.example";
    let app = spawn_app().await;
    let token = session_token_for(PROBE_USER, PROBE_EMAIL);

    widget_session_ok().mount(&app.proof).await;
    let response = app.checkout_as(&token).send_with_valid_body().await;
    assert_eq!(response.status(), 200);

    for status in [401, 403] {
        app.proof.reset().await;
        app.proof_answers(
            proof_answer(
                status,
                proof_error("unauthorised", "invalid_token").to_string(),
                "application/json",
            )
            .insert_header("X-Request-Id", "proof-req-log-probe"),
        )
        .await;
        let response = app.checkout_as(&token).send_with_valid_body().await;
        assert_eq!(response.status(), 502);
    }

    let response = app
        .checkout_as(&token)
        .json(&serde_json::json!({"network": "TRC20", "currency": "USDT", "amount": "-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // A Proof reached over TLS that hangs up in the handshake, so the TLS library logs through the
    // `log` facade (the one path in this test where it runs at all).
    let hang_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_base_url = format!("https://{}", hang_up.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = hang_up.accept().await {
            drop(stream);
        }
    });
    let tls_app = spawn_app_with(|s| {
        s.proof.base_url = tls_base_url;
        s.proof.max_attempts = 1;
    })
    .await;
    let response = tls_app.checkout_as(&token).send_with_valid_body().await;
    assert!(response.status().is_server_error(), "{}", response.status());

    let logs = logs().text();
    assert!(
        logs.contains(PROBE_USER),
        "the user id is logged, so the capture works"
    );
    assert!(logs.contains("request completed"));
    assert!(
        logs.lines()
            .any(|line| line.contains(r#""log.target":"rustls::"#)),
        "the TLS library's `log` records reach the capture, so they are checked below too"
    );
    for (what, secret) in [
        ("client_token", CLIENT_TOKEN),
        ("session.jwt.secret", JWT_SECRET),
        ("the default test user's email", USER_EMAIL),
        ("this user's email", PROBE_EMAIL),
        ("the session token", token.as_str()),
    ] {
        assert!(!logs.contains(secret), "{what} appears in the logs");
    }
    // The claims and the signature would give the email and a replayable token away.
    for segment in token.split('.').skip(1) {
        assert!(
            !logs.contains(segment),
            "part of the session token is logged"
        );
    }
}

// The log level of a failure that is Proof's, not ours

#[tokio::test]
async fn a_failure_at_proof_is_logged_as_warnings_with_its_cause_and_never_at_error_level() {
    // An error-level line pages the partner's on-call: it is kept for what they must fix (a
    // refused client_token, tested above), not for Proof's bad minute, which the service answers
    // and reports at warn.
    let app = spawn_app_with(|s| s.proof.max_attempts = 1).await;
    app.proof_answers(proof_answer(
        502,
        proof_error("upstream_error", "provider_error").to_string(),
        "application/json",
    ))
    .await;
    let unreachable = spawn_app_with(|s| s.proof.base_url = refused_base_url()).await;

    for (app, code, cause) in [
        (&app, "provider_error", "Proof answered with a server error"),
        (&unreachable, "upstream_unavailable", ""),
    ] {
        let response = app.checkout().send_with_valid_body().await;
        let answer = expect_error(response, 502, "upstream_error", code).await;
        let request_id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
        let completed =
            eventually_async(&format!("{code}: its request completed line"), async || {
                let lines = log_events_with_message(&request_id, "request completed");
                (!lines.is_empty()).then_some(lines)
            })
            .await;
        assert_eq!(completed.len(), 1, "{code}: {completed:?}");
        assert_eq!(completed[0]["level"], "WARN", "{code}: {}", completed[0]);

        let events = log_events_for(&request_id);
        let errors: Vec<_> = events
            .iter()
            .filter(|event| event["level"] == "ERROR")
            .collect();
        assert!(errors.is_empty(), "{code}: error-level lines: {errors:?}");
        assert!(
            events
                .iter()
                .filter(|event| event["level"] == "WARN")
                .count()
                >= 2,
            "{code}: the cause is logged at warn beside the completed line: {events:?}"
        );
        if !cause.is_empty() {
            assert!(
                events
                    .iter()
                    .any(|event| event["fields"]["message"] == cause),
                "{code}: no {cause:?} line: {events:?}"
            );
        }
    }
}

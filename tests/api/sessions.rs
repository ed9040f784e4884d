//! Session tokens that are correctly signed but malformed: refused as `invalid_session` before
//! Proof is called.

use serde_json::{Value, json};

use crate::helpers::*;

const ISSUER: &str = "https://idp.example";

/// A token signed with the configured secret, carrying `claims` plus a valid `exp`.
fn signed(mut claims: Value) -> String {
    claims["exp"] = json!(unix_now() + 600);
    hs256_token(JWT_SECRET, &claims)
}

async fn answer_to(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app.checkout_as(token).send_with_valid_body().await;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[track_caller]
fn assert_invalid_session(status: u16, body: &Value, case: &str) {
    assert_eq!(status, 401, "{case}: {body}");
    assert_eq!(body["error"], "unauthorised", "{case}: {body}");
    assert_eq!(body["code"], "invalid_session", "{case}: {body}");
}

#[tokio::test]
async fn a_session_whose_iss_is_not_a_string_is_401_invalid_session() {
    for issuer_configured in [false, true] {
        let app = spawn_app_with(|s| {
            if issuer_configured {
                s.session.jwt.issuer = ISSUER.into();
            }
        })
        .await;
        // Proof answers, so the control case succeeds; no refused case may reach it.
        widget_session_ok().mount(&app.proof).await;

        let control = signed(json!({"sub": USER_ID, "email": USER_EMAIL, "iss": ISSUER}));
        let (status, body) = answer_to(&app, &control).await;
        assert_eq!(status, 200, "a string iss is accepted: {body}");
        let calls = app.proof_requests().await.len();

        for iss in [
            json!([ISSUER]),
            json!([ISSUER, "https://evil.example"]),
            json!(7),
        ] {
            let token = signed(json!({"sub": USER_ID, "email": USER_EMAIL, "iss": iss}));
            let (status, body) = answer_to(&app, &token).await;
            let case = format!("iss = {iss}, issuer configured: {issuer_configured}");
            assert_invalid_session(status, &body, &case);
        }
        assert_eq!(app.proof_requests().await.len(), calls, "Proof was called");
    }
}

#[tokio::test]
async fn a_session_whose_sub_hides_characters_is_401_invalid_session() {
    let app = spawn_app().await;
    // Proof answers, so the control case succeeds; no refused case may reach it.
    widget_session_ok().mount(&app.proof).await;

    let control = signed(json!({"sub": "user-42", "email": USER_EMAIL}));
    let (status, body) = answer_to(&app, &control).await;
    assert_eq!(status, 200, "a plain sub is accepted: {body}");
    let calls = app.proof_requests().await.len();

    for sub in [
        "user\u{202e}24",  // RIGHT-TO-LEFT OVERRIDE: displays as "user42"
        "user\u{200b}-42", // ZERO WIDTH SPACE
        "\u{feff}user-42", // ZERO WIDTH NO-BREAK SPACE
        "user\u{2028}42",  // LINE SEPARATOR
    ] {
        let token = signed(json!({"sub": sub, "email": USER_EMAIL}));
        let (status, body) = answer_to(&app, &token).await;
        assert_invalid_session(status, &body, &format!("sub = {sub:?}"));
    }
    assert_eq!(app.proof_requests().await.len(), calls, "Proof was called");
}

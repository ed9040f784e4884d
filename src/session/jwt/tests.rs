use super::*;
use crate::session::claims::{MAX_LEEWAY_S, MAX_TOKEN_BYTES};
use crate::session::token_from_cookie_header;
use crate::session::user::MAX_EMAIL_CHARS;
use serde_json::json;
use serde_json::{Map, Value};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const OTHER_SECRET: &str = "another-secret-0123456789abcdef-0123456";
const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/rsa_public.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/rsa_other_private.pem");
const EC_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/ec_public.pem");
const EC_OTHER_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/ec_other_private.pem");
const EC_P384_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/ec_p384_public.pem");
const EMAIL: &str = "alice@example.com";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn settings(algorithm: JwtAlgorithm) -> JwtVerifierSettings {
    JwtVerifierSettings {
        algorithm,
        hs256_secret: match algorithm {
            JwtAlgorithm::HS256 => Some(SecretString::from(SECRET)),
            _ => None,
        },
        public_key_pem: match algorithm {
            JwtAlgorithm::HS256 => None,
            JwtAlgorithm::RS256 => Some(RSA_PUBLIC.to_owned()),
            JwtAlgorithm::ES256 => Some(EC_PUBLIC.to_owned()),
        },
        issuer: None,
        audience: None,
        user_id_claim: DEFAULT_USER_ID_CLAIM.to_owned(),
        email_claim: DEFAULT_EMAIL_CLAIM.to_owned(),
        leeway_s: 60,
    }
}

fn verifier(algorithm: JwtAlgorithm) -> JwtVerifier {
    JwtVerifier::new(settings(algorithm)).unwrap()
}

fn claims() -> Value {
    json!({ "sub": "user-1", "email": EMAIL, "iat": now(), "exp": now() + 300 })
}

fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

fn claims_without(key: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn encode(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    encode(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn rs(claims: &Value) -> String {
    encode(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        claims,
    )
}

fn es(claims: &Value) -> String {
    encode(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        claims,
    )
}

/// The base64url (no padding) of `bytes`, for tokens made by hand.
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unsigned_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        signature
    )
}

fn assert_user(result: Result<SessionUser, SessionError>, user_id: &str, email: &str) {
    let user = result.unwrap();
    assert_eq!(user.user_id, user_id);
    assert_eq!(user.email.expose(), email);
}

// --- valid tokens ---

#[test]
fn accepts_valid_hs256_token() {
    assert_user(
        verifier(JwtAlgorithm::HS256).verify(&hs(&claims())),
        "user-1",
        EMAIL,
    );
}

#[test]
fn accepts_valid_rs256_token() {
    assert_user(
        verifier(JwtAlgorithm::RS256).verify(&rs(&claims())),
        "user-1",
        EMAIL,
    );
}

#[test]
fn accepts_valid_es256_token() {
    assert_user(
        verifier(JwtAlgorithm::ES256).verify(&es(&claims())),
        "user-1",
        EMAIL,
    );
}

#[test]
fn accepts_token_from_sign_hs256() {
    let token = sign_hs256(SECRET.as_bytes(), "dev-user", "dev@example.test", 600).unwrap();
    assert_user(
        verifier(JwtAlgorithm::HS256).verify(&token),
        "dev-user",
        "dev@example.test",
    );
}

#[test]
fn sign_hs256_writes_expected_claims() {
    let token = sign_hs256(SECRET.as_bytes(), "dev-user", EMAIL, 600).unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(
        &token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap();
    let claims = data.claims;
    assert_eq!(claims["sub"], "dev-user");
    assert_eq!(claims["email"], EMAIL);
    let iat = claims["iat"].as_u64().unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(exp - iat, 600);
    assert!(iat.abs_diff(now()) <= 5);
}

#[test]
fn sign_hs256_rejects_bad_input_without_leaking() {
    let short = "too-short-secret";
    let err = sign_hs256(short.as_bytes(), "u", EMAIL, 60).unwrap_err();
    assert!(err.0.contains("32"));
    assert!(!err.0.contains(short));
    assert!(sign_hs256(SECRET.as_bytes(), "", EMAIL, 60).is_err());
    assert!(sign_hs256(SECRET.as_bytes(), "u\n", EMAIL, 60).is_err());
    let err = sign_hs256(SECRET.as_bytes(), "u", "not an email", 60).unwrap_err();
    assert!(!err.0.contains("not an email"));
    assert!(sign_hs256(SECRET.as_bytes(), "u", EMAIL, 0).is_err());
    assert!(sign_hs256(SECRET.as_bytes(), "u", EMAIL, u64::MAX).is_err());
}

// --- signatures, keys and algorithm pinning ---

#[test]
fn rejects_tampered_signature() {
    let token = hs(&claims());
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    let v = verifier(JwtAlgorithm::HS256);
    assert_eq!(v.verify(&tampered), Err(SessionError::Invalid));
    assert_eq!(v.verify(&format!("{head}.")), Err(SessionError::Invalid));
}

#[test]
fn rejects_tampered_payload() {
    let token = rs(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64url(claims_with("sub", json!("admin")).to_string().as_bytes());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(
        verifier(JwtAlgorithm::RS256).verify(&forged),
        Err(SessionError::Invalid)
    );
}

#[test]
fn rejects_wrong_hs256_secret() {
    let token = encode(
        Algorithm::HS256,
        &EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
        &claims(),
    );
    assert_eq!(
        verifier(JwtAlgorithm::HS256).verify(&token),
        Err(SessionError::Invalid)
    );
}

#[test]
fn rejects_wrong_rsa_key() {
    let token = encode(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE.as_bytes()).unwrap(),
        &claims(),
    );
    assert_eq!(
        verifier(JwtAlgorithm::RS256).verify(&token),
        Err(SessionError::Invalid)
    );
}

#[test]
fn rejects_wrong_ec_key() {
    let token = encode(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_OTHER_PRIVATE.as_bytes()).unwrap(),
        &claims(),
    );
    assert_eq!(
        verifier(JwtAlgorithm::ES256).verify(&token),
        Err(SessionError::Invalid)
    );
}

#[test]
fn rejects_hs256_token_when_rs256_configured() {
    let v = verifier(JwtAlgorithm::RS256);
    assert_eq!(v.verify(&hs(&claims())), Err(SessionError::Invalid));
    // Classic key confusion: HMAC keyed with the public key the verifier holds.
    let confused = encode(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &claims(),
    );
    assert_eq!(v.verify(&confused), Err(SessionError::Invalid));
}

#[test]
fn rejects_hs256_token_when_es256_configured() {
    let v = verifier(JwtAlgorithm::ES256);
    let confused = encode(
        Algorithm::HS256,
        &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
        &claims(),
    );
    assert_eq!(v.verify(&confused), Err(SessionError::Invalid));
    assert_eq!(v.verify(&rs(&claims())), Err(SessionError::Invalid));
}

#[test]
fn rejects_asymmetric_tokens_when_hs256_configured() {
    let v = verifier(JwtAlgorithm::HS256);
    assert_eq!(v.verify(&rs(&claims())), Err(SessionError::Invalid));
    assert_eq!(v.verify(&es(&claims())), Err(SessionError::Invalid));
}

#[test]
fn rejects_other_algorithm_of_same_family() {
    let rs384 = encode(
        Algorithm::RS384,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        &claims(),
    );
    assert_eq!(
        verifier(JwtAlgorithm::RS256).verify(&rs384),
        Err(SessionError::Invalid)
    );
    let hs512 = encode(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims(),
    );
    assert_eq!(
        verifier(JwtAlgorithm::HS256).verify(&hs512),
        Err(SessionError::Invalid)
    );
}

#[test]
fn rejects_alg_none() {
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "typ": "JWT" });
        let token = unsigned_token(&header, &claims(), "");
        for algorithm in [
            JwtAlgorithm::HS256,
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
        ] {
            assert_eq!(
                verifier(algorithm).verify(&token),
                Err(SessionError::Invalid),
                "{alg} accepted by {algorithm:?}"
            );
        }
    }
    // A `none` header grafted onto a genuine signature is no better.
    let genuine = hs(&claims());
    let signature = genuine.rsplit_once('.').unwrap().1;
    let grafted = unsigned_token(&json!({ "alg": "none" }), &claims(), signature);
    assert_eq!(
        verifier(JwtAlgorithm::HS256).verify(&grafted),
        Err(SessionError::Invalid)
    );
}

// --- time claims ---

#[test]
fn expired_beyond_leeway_is_expired() {
    let token = hs(&claims_with("exp", json!(now() - 120)));
    assert_eq!(
        verifier(JwtAlgorithm::HS256).verify(&token),
        Err(SessionError::Expired)
    );
    let mut s = settings(JwtAlgorithm::HS256);
    s.leeway_s = 0;
    let token = hs(&claims_with("exp", json!(now() - 2)));
    assert_eq!(
        JwtVerifier::new(s).unwrap().verify(&token),
        Err(SessionError::Expired)
    );
}

#[test]
fn expired_within_leeway_is_accepted() {
    let token = hs(&claims_with("exp", json!(now() - 30)));
    assert_user(
        verifier(JwtAlgorithm::HS256).verify(&token),
        "user-1",
        EMAIL,
    );
}

#[test]
fn expired_token_with_bad_signature_is_invalid_not_expired() {
    let token = encode(
        Algorithm::HS256,
        &EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
        &claims_with("exp", json!(now() - 3600)),
    );
    assert_eq!(
        verifier(JwtAlgorithm::HS256).verify(&token),
        Err(SessionError::Invalid)
    );
}

#[test]
fn nbf_in_future_beyond_leeway_is_invalid() {
    let token = hs(&claims_with("nbf", json!(now() + 600)));
    assert_eq!(
        verifier(JwtAlgorithm::HS256).verify(&token),
        Err(SessionError::Invalid)
    );
}

#[test]
fn nbf_within_leeway_is_accepted() {
    let token = hs(&claims_with("nbf", json!(now() + 30)));
    assert_user(
        verifier(JwtAlgorithm::HS256).verify(&token),
        "user-1",
        EMAIL,
    );
}

#[test]
fn missing_or_malformed_exp_is_invalid() {
    let v = verifier(JwtAlgorithm::HS256);
    assert_eq!(
        v.verify(&hs(&claims_without("exp"))),
        Err(SessionError::Invalid)
    );
    for bad in [json!("9999999999"), json!(null), json!(-1), json!({})] {
        assert_eq!(
            v.verify(&hs(&claims_with("exp", bad.clone()))),
            Err(SessionError::Invalid),
            "exp = {bad}"
        );
    }
}

// --- issuer and audience ---

#[test]
fn issuer_enforced_when_configured() {
    let mut s = settings(JwtAlgorithm::HS256);
    s.issuer = Some("https://idp.example".to_owned());
    let v = JwtVerifier::new(s).unwrap();
    assert_user(
        v.verify(&hs(&claims_with("iss", json!("https://idp.example")))),
        "user-1",
        EMAIL,
    );
    assert_eq!(
        v.verify(&hs(&claims_with("iss", json!("https://evil.example")))),
        Err(SessionError::Invalid)
    );
    assert_eq!(v.verify(&hs(&claims())), Err(SessionError::Invalid));
    assert_eq!(
        v.verify(&hs(&claims_with("iss", json!(42)))),
        Err(SessionError::Invalid)
    );
}

#[test]
fn non_string_issuer_is_invalid_whether_or_not_issuer_is_configured() {
    let mut s = settings(JwtAlgorithm::HS256);
    s.issuer = Some("https://idp.example".to_owned());
    let checked = JwtVerifier::new(s).unwrap();
    let unchecked = verifier(JwtAlgorithm::HS256);
    for bad in [
        json!(["https://idp.example"]),
        json!(["https://idp.example", "https://evil.example"]),
        json!([]),
        json!(42),
        json!(null),
        json!({ "iss": "https://idp.example" }),
    ] {
        for v in [&checked, &unchecked] {
            assert_eq!(
                v.verify(&hs(&claims_with("iss", bad.clone()))),
                Err(SessionError::Invalid),
                "iss = {bad}"
            );
        }
    }
    assert_user(
        unchecked.verify(&hs(&claims_with("iss", json!("https://idp.example")))),
        "user-1",
        EMAIL,
    );
}

#[test]
fn audience_enforced_when_configured() {
    let mut s = settings(JwtAlgorithm::HS256);
    s.audience = Some("proof-bff".to_owned());
    let v = JwtVerifier::new(s).unwrap();
    assert_user(
        v.verify(&hs(&claims_with("aud", json!("proof-bff")))),
        "user-1",
        EMAIL,
    );
    assert_user(
        v.verify(&hs(&claims_with("aud", json!(["other", "proof-bff"])))),
        "user-1",
        EMAIL,
    );
    assert_eq!(
        v.verify(&hs(&claims_with("aud", json!("other")))),
        Err(SessionError::Invalid)
    );
    assert_eq!(
        v.verify(&hs(&claims_with("aud", json!(["other"])))),
        Err(SessionError::Invalid)
    );
    assert_eq!(v.verify(&hs(&claims())), Err(SessionError::Invalid));
}

#[test]
fn issuer_and_audience_ignored_when_not_configured() {
    let mut claims = claims();
    claims["iss"] = json!("https://anyone.example");
    claims["aud"] = json!("someone-else");
    assert_user(
        verifier(JwtAlgorithm::HS256).verify(&hs(&claims)),
        "user-1",
        EMAIL,
    );
    claims["aud"] = json!(["a", "b"]);
    assert_user(
        verifier(JwtAlgorithm::HS256).verify(&hs(&claims)),
        "user-1",
        EMAIL,
    );

    let mut s = settings(JwtAlgorithm::HS256);
    s.issuer = Some(String::new());
    s.audience = Some(String::new());
    assert_user(
        JwtVerifier::new(s).unwrap().verify(&hs(&claims)),
        "user-1",
        EMAIL,
    );
}

// --- user id and email claims ---

#[test]
fn custom_claim_names() {
    let mut s = settings(JwtAlgorithm::RS256);
    s.user_id_claim = "uid".to_owned();
    s.email_claim = "mail".to_owned();
    let v = JwtVerifier::new(s).unwrap();
    let token = rs(&json!({
        "sub": "ignored", "email": "ignored@example.com",
        "uid": "custom-7", "mail": "bob@example.org", "exp": now() + 60,
    }));
    assert_user(v.verify(&token), "custom-7", "bob@example.org");
    // The default claims do not stand in for the configured ones.
    assert_eq!(v.verify(&rs(&claims())), Err(SessionError::Invalid));
}

#[test]
fn missing_empty_or_non_string_user_id_is_invalid() {
    let v = verifier(JwtAlgorithm::HS256);
    assert_eq!(
        v.verify(&hs(&claims_without("sub"))),
        Err(SessionError::Invalid)
    );
    let too_long = "u".repeat(MAX_USER_ID_CHARS + 1);
    for bad in [
        json!(""),
        json!(null),
        json!(true),
        json!(1.5),
        json!(["user-1"]),
        json!({ "id": "user-1" }),
        json!(too_long),
        json!("user\n1"),
        json!("user\u{0}1"),
    ] {
        assert_eq!(
            v.verify(&hs(&claims_with("sub", bad.clone()))),
            Err(SessionError::Invalid),
            "sub = {bad}"
        );
    }
}

#[test]
fn user_id_with_invisible_or_control_characters_is_invalid() {
    let v = verifier(JwtAlgorithm::HS256);
    for bad in [
        "user\u{202e}1",  // RIGHT-TO-LEFT OVERRIDE (Cf)
        "user\u{200b}1",  // ZERO WIDTH SPACE (Cf)
        "\u{feff}user-1", // ZERO WIDTH NO-BREAK SPACE / BOM (Cf)
        "user\u{2066}1",  // LEFT-TO-RIGHT ISOLATE (Cf)
        "user\u{ad}1",    // SOFT HYPHEN (Cf)
        "user\u{85}1",    // NEXT LINE (Cc)
        "user\u{7f}1",    // DELETE (Cc)
        "user\u{2028}1",  // LINE SEPARATOR (Zl)
        "user\u{2029}1",  // PARAGRAPH SEPARATOR (Zp)
        "user\u{e0001}1", // LANGUAGE TAG (Cf, outside the BMP)
    ] {
        assert!(!is_valid_user_id(bad), "{bad:?}");
        assert_eq!(
            v.verify(&hs(&claims_with("sub", json!(bad)))),
            Err(SessionError::Invalid),
            "sub = {bad:?}"
        );
    }
    // Visible non-ASCII text, combining marks and ordinary spaces stay valid ids.
    for good in ["jörg", "用户-7", "e\u{301}", "user 1", "user\u{a0}1", "🦀"] {
        assert!(is_valid_user_id(good), "{good:?}");
        assert_user(v.verify(&hs(&claims_with("sub", json!(good)))), good, EMAIL);
    }
}

#[test]
fn sign_hs256_refuses_a_user_id_the_verifier_would_refuse() {
    assert!(sign_hs256(SECRET.as_bytes(), "user\u{202e}1", EMAIL, 60).is_err());
    assert!(sign_hs256(SECRET.as_bytes(), "user\u{200b}1", EMAIL, 60).is_err());
}

#[test]
fn user_id_length_limit_counts_characters() {
    let v = verifier(JwtAlgorithm::HS256);
    let max = "é".repeat(MAX_USER_ID_CHARS);
    assert_user(v.verify(&hs(&claims_with("sub", json!(max)))), &max, EMAIL);
}

#[test]
fn integer_user_id_becomes_decimal_string() {
    let v = verifier(JwtAlgorithm::HS256);
    assert_user(
        v.verify(&hs(&claims_with("sub", json!(12345)))),
        "12345",
        EMAIL,
    );
    assert_user(
        v.verify(&hs(&claims_with("sub", json!(u64::MAX)))),
        "18446744073709551615",
        EMAIL,
    );
    assert_user(v.verify(&hs(&claims_with("sub", json!(-7)))), "-7", EMAIL);
}

#[test]
fn missing_or_bad_email_is_invalid() {
    let v = verifier(JwtAlgorithm::HS256);
    assert_eq!(
        v.verify(&hs(&claims_without("email"))),
        Err(SessionError::Invalid)
    );
    let long_local = format!("{}@example.com", "a".repeat(MAX_EMAIL_CHARS));
    for bad in [
        json!(""),
        json!(null),
        json!(42),
        json!(["alice@example.com"]),
        json!("alice"),
        json!("@example.com"),
        json!("alice@"),
        json!("@"),
        json!("alice@@example.com"),
        json!("alice@example@com"),
        json!("alice smith@example.com"),
        json!("alice@example.com "),
        json!("alice\t@example.com"),
        json!("alice@exa\u{a0}mple.com"),
        json!("alice@example.com\r\nBcc: x@y"),
        json!("ali\u{7f}ce@example.com"),
        json!(long_local),
    ] {
        assert_eq!(
            v.verify(&hs(&claims_with("email", bad.clone()))),
            Err(SessionError::Invalid),
            "email = {bad}"
        );
    }
}

#[test]
fn email_at_length_limit_is_accepted() {
    let v = verifier(JwtAlgorithm::HS256);
    let domain = "example.com";
    let email = format!(
        "{}@{domain}",
        "a".repeat(MAX_EMAIL_CHARS - 1 - domain.len())
    );
    assert_eq!(email.chars().count(), MAX_EMAIL_CHARS);
    assert_user(
        v.verify(&hs(&claims_with("email", json!(email)))),
        "user-1",
        &email,
    );
    assert_user(
        v.verify(&hs(&claims_with("email", json!("jörg@bücher.example")))),
        "user-1",
        "jörg@bücher.example",
    );
}

// --- malformed input ---

#[test]
fn empty_token_is_missing() {
    for algorithm in [
        JwtAlgorithm::HS256,
        JwtAlgorithm::RS256,
        JwtAlgorithm::ES256,
    ] {
        assert_eq!(verifier(algorithm).verify(""), Err(SessionError::Missing));
    }
}

#[test]
fn garbage_is_invalid() {
    let v = verifier(JwtAlgorithm::HS256);
    let valid = hs(&claims());
    let oversized = format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES));
    let not_json = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(b"not json"),
        "sig"
    );
    let array_payload = hs(&json!([1, 2, 3]));
    for garbage in [
        " ",
        "null",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "..",
        "...",
        "Bearer abc",
        "\u{0}",
        "ünïcödé.ünïcödé.ünïcödé",
        &format!(" {valid}"),
        &format!("{valid} "),
        &format!("{valid}.extra"),
        &oversized,
        &not_json,
        &array_payload,
    ] {
        assert_eq!(v.verify(garbage), Err(SessionError::Invalid), "{garbage:?}");
    }
}

// --- redaction ---

#[test]
fn debug_output_never_contains_email_or_secret() {
    let v = verifier(JwtAlgorithm::HS256);
    let user = v.verify(&hs(&claims())).unwrap();
    let user_debug = format!("{user:?}");
    assert!(!user_debug.contains(EMAIL), "{user_debug}");
    assert!(!user_debug.contains("alice"), "{user_debug}");
    assert!(user_debug.contains("user-1"));
    assert!(user_debug.contains("UserEmail(<redacted>)"));
    assert_eq!(format!("{:?}", user.email), "UserEmail(<redacted>)");
    assert_eq!(format!("{:#?}", user.email), "UserEmail(<redacted>)");

    let verifier_debug = format!("{v:?}");
    assert!(!verifier_debug.contains(SECRET), "{verifier_debug}");
    assert!(verifier_debug.contains("HS256"));
    assert!(verifier_debug.contains("email"));

    let settings_debug = format!("{:?}", settings(JwtAlgorithm::HS256));
    assert!(!settings_debug.contains(SECRET), "{settings_debug}");

    let rs_debug = format!("{:?}", verifier(JwtAlgorithm::RS256));
    assert!(!rs_debug.contains("BEGIN"), "{rs_debug}");
}

#[test]
fn error_codes() {
    assert_eq!(SessionError::Missing.code(), "no_session");
    assert_eq!(SessionError::Invalid.code(), "invalid_session");
    assert_eq!(SessionError::Expired.code(), "session_expired");
    assert_eq!(SessionError::Expired.to_string(), "session expired");
}

// --- configuration errors ---

fn config_error(settings: JwtVerifierSettings) -> String {
    JwtVerifier::new(settings).unwrap_err().to_string()
}

#[test]
fn hs256_secret_must_be_present_and_long_enough() {
    let mut s = settings(JwtAlgorithm::HS256);
    s.hs256_secret = None;
    assert_eq!(config_error(s), "session.jwt.secret is required for HS256");

    let short = "0123456789abcdef0123456789abcde"; // 31 bytes
    let mut s = settings(JwtAlgorithm::HS256);
    s.hs256_secret = Some(SecretString::from(short));
    let message = config_error(s);
    assert!(message.contains("at least 32 bytes"), "{message}");
    assert!(!message.contains(short), "{message}");

    let mut s = settings(JwtAlgorithm::HS256);
    s.hs256_secret = Some(SecretString::from("0123456789abcdef0123456789abcdef"));
    assert!(JwtVerifier::new(s).is_ok());
}

#[test]
fn public_key_must_be_present_and_valid() {
    for algorithm in [JwtAlgorithm::RS256, JwtAlgorithm::ES256] {
        let mut s = settings(algorithm);
        s.public_key_pem = None;
        let message = config_error(s);
        assert!(message.contains("is required for"), "{message}");
        let mut s = settings(algorithm);
        s.public_key_pem = Some("  \n".to_owned());
        assert!(config_error(s).contains("is required for"));

        for bad in [
            "not a pem",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            let mut s = settings(algorithm);
            s.public_key_pem = Some(bad.to_owned());
            let message = config_error(s);
            assert!(message.contains("is not a valid"), "{message}");
        }
    }
    let message = config_error(JwtVerifierSettings {
        public_key_pem: Some(EC_PUBLIC.to_owned()),
        ..settings(JwtAlgorithm::RS256)
    });
    assert_eq!(
        message,
        "session.jwt.public_key_pem_file is not a valid RSA public key PEM"
    );
    let message = config_error(JwtVerifierSettings {
        public_key_pem: Some(RSA_PUBLIC.to_owned()),
        ..settings(JwtAlgorithm::ES256)
    });
    assert!(message.contains("not a valid P-256"), "{message}");
    let message = config_error(JwtVerifierSettings {
        public_key_pem: Some(EC_P384_PUBLIC.to_owned()),
        ..settings(JwtAlgorithm::ES256)
    });
    assert!(message.contains("not a valid P-256"), "{message}");
}

#[test]
fn private_key_pem_is_refused() {
    for (algorithm, pem) in [
        (JwtAlgorithm::RS256, RSA_PRIVATE),
        (JwtAlgorithm::ES256, EC_PRIVATE),
    ] {
        let message = config_error(JwtVerifierSettings {
            public_key_pem: Some(pem.to_owned()),
            ..settings(algorithm)
        });
        assert!(message.contains("private key"), "{message}");
        assert!(!message.contains("BEGIN"), "{message}");
    }
}

#[test]
fn claim_names_and_leeway_are_checked() {
    let mut s = settings(JwtAlgorithm::HS256);
    s.user_id_claim = String::new();
    assert!(config_error(s).contains("user_id_claim"));
    let mut s = settings(JwtAlgorithm::HS256);
    s.email_claim = String::new();
    assert!(config_error(s).contains("email_claim"));
    let mut s = settings(JwtAlgorithm::HS256);
    s.leeway_s = u64::MAX;
    assert!(config_error(s).contains("leeway_s"));
    let mut s = settings(JwtAlgorithm::HS256);
    s.leeway_s = MAX_LEEWAY_S;
    assert!(JwtVerifier::new(s).is_ok());
}

#[test]
fn algorithm_deserializes_from_config_names() {
    let alg: JwtAlgorithm = serde_json::from_str(r#""ES256""#).unwrap();
    assert_eq!(alg, JwtAlgorithm::ES256);
    assert!(serde_json::from_str::<JwtAlgorithm>(r#""none""#).is_err());
    assert!(serde_json::from_str::<JwtAlgorithm>(r#""HS512""#).is_err());
}

#[test]
fn cookie_token_round_trip() {
    let token = sign_hs256(SECRET.as_bytes(), "user-9", EMAIL, 60).unwrap();
    let line = format!("theme=dark; session={token}");
    let found = token_from_cookie_header([line.as_bytes()], "session").unwrap();
    assert_user(verifier(JwtAlgorithm::HS256).verify(found), "user-9", EMAIL);
}

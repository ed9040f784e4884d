//! Verification of the user's session JWT.
//!
//! The session token is the only proof of identity the BFF receives from the browser, so every
//! decision here leans towards rejecting: the algorithm comes from configuration and never from
//! the token, keys are parsed once at start-up so that a broken key fails the deployment rather
//! than every request, and the only distinction leaked to callers is "missing", "expired" (so the
//! frontend can refresh instead of showing an error) and "invalid".
//!
//! The user's email is personal data. It is carried in [`UserEmail`], which cannot be printed by
//! accident, so that request logging and error reporting stay free of it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// Claim holding the user id when the configuration does not name another one.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// Claim holding the email when the configuration does not name another one.
pub const DEFAULT_EMAIL_CLAIM: &str = "email";

/// RFC 7518 §3.2: an HMAC-SHA256 key shorter than the hash output weakens the signature.
const MIN_HS256_SECRET_BYTES: usize = 32;
const MAX_USER_ID_CHARS: usize = 256;
/// RFC 5321 limits: 64 (local part) + 1 + 255 (domain).
const MAX_EMAIL_CHARS: usize = 320;
/// Bounds the work an anonymous request can cause (base64 + JSON + signature) before it is
/// rejected. Browsers cap a cookie at about 4 KiB, so a real session token never gets close.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Leeway only absorbs clock skew; anything larger is a misconfiguration that would quietly
/// extend every session. It also keeps `now - leeway` inside jsonwebtoken from underflowing.
const MAX_LEEWAY_S: u64 = 3600;

/// The signature algorithm the identity provider uses. Pinned by configuration so that a token
/// cannot choose how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

impl JwtAlgorithm {
    fn to_jwt(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
        }
    }
}

/// What the verifier needs; the configuration layer fills it in.
///
/// `issuer` and `audience` are only enforced when set to a non-empty string; when enforced, the
/// token must carry the claim. Key material not used by `algorithm` is ignored.
#[derive(Debug)]
pub struct JwtVerifierSettings {
    pub algorithm: JwtAlgorithm,
    /// Required for HS256, at least 32 bytes.
    pub hs256_secret: Option<SecretString>,
    /// Required for RS256/ES256: the contents of the public key PEM file (SPKI `PUBLIC KEY`; for
    /// RSA also PKCS#1 `RSA PUBLIC KEY`).
    pub public_key_pem: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub user_id_claim: String,
    pub email_claim: String,
    /// Clock-skew allowance for `exp` and `nbf`, at most 3600.
    pub leeway_s: u64,
}

/// The authenticated user, as asserted by a verified session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: String,
    pub email: UserEmail,
}

/// An email address that has passed the session checks.
///
/// Deliberately has no `Display`, `Serialize` or revealing `Debug`: reading the address takes an
/// explicit [`UserEmail::expose`], which keeps it out of logs and error messages by default.
#[derive(Clone, PartialEq, Eq)]
pub struct UserEmail(String);

impl UserEmail {
    /// The address itself, for the places that legitimately need it (e.g. the upstream API).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn parse(value: &str) -> Option<Self> {
        is_valid_email(value).then(|| Self(value.to_owned()))
    }
}

impl fmt::Debug for UserEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserEmail(<redacted>)")
    }
}

/// Why a request has no usable session. Carries no detail on purpose: the reason a token was
/// rejected is of use to an attacker probing forgeries, not to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no session")]
    Missing,
    #[error("invalid session")]
    Invalid,
    #[error("session expired")]
    Expired,
}

impl SessionError {
    /// Stable machine-readable code for API error bodies: `"no_session"`, `"invalid_session"` or
    /// `"session_expired"`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "no_session",
            Self::Invalid => "invalid_session",
            Self::Expired => "session_expired",
        }
    }
}

/// A verifier (or signer) could not be built from the given settings. The message names the
/// setting at fault and never contains key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwtConfigError(pub String);

impl JwtConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Checks session tokens on the request path. Holds the parsed key and the validation rules so
/// that per-request work is limited to decoding and the signature check.
pub struct JwtVerifier {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    validation: Validation,
    user_id_claim: String,
    email_claim: String,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("user_id_claim", &self.user_id_claim)
            .field("email_claim", &self.email_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Fails on anything that would make verification silently weaker or always fail, so that a
    /// bad deployment is caught at start-up.
    pub fn new(settings: JwtVerifierSettings) -> Result<Self, JwtConfigError> {
        let JwtVerifierSettings {
            algorithm,
            hs256_secret,
            public_key_pem,
            issuer,
            audience,
            user_id_claim,
            email_claim,
            leeway_s,
        } = settings;

        if user_id_claim.is_empty() {
            return Err(JwtConfigError::new(
                "session.jwt.user_id_claim must not be empty",
            ));
        }
        if email_claim.is_empty() {
            return Err(JwtConfigError::new(
                "session.jwt.email_claim must not be empty",
            ));
        }
        if leeway_s > MAX_LEEWAY_S {
            return Err(JwtConfigError(format!(
                "session.jwt.leeway_s must be at most {MAX_LEEWAY_S} seconds"
            )));
        }

        let key = match algorithm {
            JwtAlgorithm::HS256 => {
                let secret = hs256_secret.ok_or_else(|| {
                    JwtConfigError::new("session.jwt.secret is required for HS256")
                })?;
                let secret = secret.expose_secret().as_bytes();
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return Err(JwtConfigError(format!(
                        "session.jwt.secret must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"
                    )));
                }
                DecodingKey::from_secret(secret)
            }
            JwtAlgorithm::RS256 => {
                let pem = public_key_pem_for(public_key_pem.as_deref(), "RS256")?;
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                    JwtConfigError::new(
                        "session.jwt.public_key_pem_file is not a valid RSA public key PEM",
                    )
                })?
            }
            JwtAlgorithm::ES256 => {
                let pem = public_key_pem_for(public_key_pem.as_deref(), "ES256")?;
                let invalid = || {
                    JwtConfigError::new(
                        "session.jwt.public_key_pem_file is not a valid P-256 (ES256) public key PEM",
                    )
                };
                let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| invalid())?;
                // `from_ec_pem` accepts any EC curve and only parses the point when verifying.
                // Checking a dummy signature forces that parse now: a wrong curve or a corrupt
                // point is an error here, while a well-formed key just reports "no match".
                jsonwebtoken::crypto::verify("AA", b"", &key, Algorithm::ES256)
                    .map_err(|_| invalid())?;
                key
            }
        };

        let mut validation = Validation::new(algorithm.to_jwt());
        validation.leeway = leeway_s;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.sub = None;
        let mut required = vec!["exp"];
        // jsonwebtoken only compares iss/aud when the token carries them, so a configured
        // check must also make the claim mandatory or a token could pass by omitting it.
        match issuer.filter(|iss| !iss.is_empty()) {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match audience.filter(|aud| !aud.is_empty()) {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.validate_aud = true;
                required.push("aud");
            }
            None => {
                // Otherwise jsonwebtoken rejects every token that has an `aud`, which is most
                // tokens from a real identity provider.
                validation.aud = None;
                validation.validate_aud = false;
            }
        }
        validation.set_required_spec_claims(&required);

        Ok(Self {
            algorithm,
            key,
            validation,
            user_id_claim,
            email_claim,
        })
    }

    /// An empty token means the browser sent none (`Missing`); a token whose only fault is being
    /// past `exp` + leeway is `Expired`; everything else is `Invalid`. A forged token is always
    /// `Invalid`, whatever its `exp`, because the signature is checked before the claims.
    ///
    /// The user id claim may be a string or a JSON integer (some identity providers use numeric
    /// ids); an integer is turned into its decimal string. Floats and other types are rejected,
    /// and so is an id that [`is_valid_user_id`] refuses. An `iss` claim, when present, must be a
    /// string, whether or not an issuer is configured.
    pub fn verify(&self, token: &str) -> Result<SessionUser, SessionError> {
        if token.is_empty() {
            return Err(SessionError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Invalid);
        }

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|err| session_error(&err))?;
        // jsonwebtoken already refuses any alg outside `validation.algorithms`; repeated so
        // that the pinning does not depend on a library detail.
        if data.header.alg != self.algorithm.to_jwt() {
            return Err(SessionError::Invalid);
        }

        let claims = data.claims;
        // jsonwebtoken accepts an array of issuers and, when no issuer is configured, any type
        // at all. RFC 7519 makes `iss` one string: anything else is a malformed token, refused
        // whether or not the issuer is checked.
        if claims.get("iss").is_some_and(|iss| !iss.is_string()) {
            return Err(SessionError::Invalid);
        }
        let user_id = claims
            .get(&self.user_id_claim)
            .and_then(user_id_from_claim)
            .ok_or(SessionError::Invalid)?;
        let email = claims
            .get(&self.email_claim)
            .and_then(Value::as_str)
            .and_then(UserEmail::parse)
            .ok_or(SessionError::Invalid)?;

        Ok(SessionUser { user_id, email })
    }
}

/// Signs a session token with an HS256 secret, for the sandbox dev login and for tests.
///
/// Applies the same rules the verifier does (secret length, user id and email shape) so that it
/// can never mint a token that [`JwtVerifier::verify`] would turn down. The user id always goes
/// into `sub`, so a verifier meant to accept these tokens must use the default claim names.
pub fn sign_hs256(
    secret: &[u8],
    user_id: &str,
    email: &str,
    ttl_s: u64,
) -> Result<String, JwtConfigError> {
    #[derive(serde::Serialize)]
    struct SessionClaims<'a> {
        sub: &'a str,
        email: &'a str,
        iat: u64,
        exp: u64,
    }

    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(JwtConfigError(format!(
            "session.jwt.secret must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"
        )));
    }
    if !is_valid_user_id(user_id) {
        return Err(JwtConfigError(format!(
            "user id must be a non-empty string of at most {MAX_USER_ID_CHARS} characters without control or invisible characters"
        )));
    }
    if !is_valid_email(email) {
        // The address itself is personal data and stays out of the message.
        return Err(JwtConfigError::new("email is not a valid address"));
    }
    if ttl_s == 0 {
        return Err(JwtConfigError::new(
            "session token ttl must be at least 1 second",
        ));
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| JwtConfigError::new("system clock is set before the Unix epoch"))?
        .as_secs();
    let exp = now
        .checked_add(ttl_s)
        .ok_or_else(|| JwtConfigError::new("session token ttl is too large"))?;
    let claims = SessionClaims {
        sub: user_id,
        email,
        iat: now,
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|_| JwtConfigError::new("signing the session token failed"))
}

/// Finds the session token in raw `Cookie` header lines without allocating, so that requests
/// without a session cost nothing.
///
/// Pairs are split on `;` and trimmed; the name must match exactly (so `session2` does not match
/// `session`), the first match wins and a value wrapped in double quotes is unwrapped. A line that
/// is not UTF-8 is skipped rather than failing the whole lookup. A matching cookie with an empty
/// value counts as absent, since that is how a logged-out session is usually cleared.
pub fn token_from_cookie_header<'a>(
    cookie_header_lines: impl IntoIterator<Item = &'a [u8]>,
    cookie_name: &str,
) -> Option<&'a str> {
    if cookie_name.is_empty() {
        return None;
    }
    for line in cookie_header_lines {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        for pair in line.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.trim_ascii() != cookie_name {
                continue;
            }
            let value = value.trim_ascii();
            let value = value
                .strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .unwrap_or(value);
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

/// Extracts the token from an `Authorization: Bearer <token>` value without allocating.
///
/// The scheme is case-insensitive (RFC 9110 §11.1); scheme and token are separated by one or more
/// spaces (RFC 6750 `1*SP`); exactly one token must follow, made of visible ASCII only. Anything
/// else yields `None`, i.e. the request is treated as carrying no bearer token.
pub fn token_from_authorization(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim_ascii();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(token)
}

fn public_key_pem_for<'a>(
    pem: Option<&'a str>,
    algorithm: &str,
) -> Result<&'a str, JwtConfigError> {
    let pem = pem.filter(|pem| !pem.trim().is_empty()).ok_or_else(|| {
        JwtConfigError(format!(
            "session.jwt.public_key_pem_file is required for {algorithm}"
        ))
    })?;
    // jsonwebtoken would accept a private key here and derive the public part, but a private key
    // has no business on this service: refuse it so that it is moved out of the deployment.
    if pem.contains("PRIVATE KEY") {
        return Err(JwtConfigError::new(
            "session.jwt.public_key_pem_file contains a private key; configure the public key only",
        ));
    }
    Ok(pem)
}

/// Only expiry is worth telling apart (the frontend can renew the session); every other reason
/// collapses into `Invalid`.
fn session_error(err: &jsonwebtoken::errors::Error) -> SessionError {
    match err.kind() {
        ErrorKind::ExpiredSignature => SessionError::Expired,
        _ => SessionError::Invalid,
    }
}

fn user_id_from_claim(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => is_valid_user_id(s).then(|| s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `value` may be used as a user id, whatever source it came from (a session token
/// today; an auth proxy's header or the app's forward-auth answer alike): non-empty, at most 256
/// characters, and free of characters that are invisible or control the display.
///
/// The id ends up in logs, in the request to Proof and in Proof's records. Control characters
/// (general category Cc) could forge log lines; format characters (Cf: bidirectional overrides
/// such as U+202E, zero-width spaces and joiners, U+FEFF) make two ids that look the same differ,
/// or one id display as another; line and paragraph separators (Zl, Zp) break lines like a
/// newline does. None of them belongs in an identifier.
pub fn is_valid_user_id(value: &str) -> bool {
    !value.is_empty()
        && value.chars().count() <= MAX_USER_ID_CHARS
        && !value.chars().any(is_hidden_or_control)
}

fn is_hidden_or_control(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // ASCII ids are the common case: only its control characters are Cc, and none is Cf.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Deliberately shallow: the identity provider owns address validation; this only guarantees the
/// shape downstream code relies on (one `@`, both sides present, nothing that could break a
/// header or a log line).
fn is_valid_email(value: &str) -> bool {
    if value.is_empty() || value.chars().count() > MAX_EMAIL_CHARS {
        return false;
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match value.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
    const OTHER_SECRET: &str = "another-secret-0123456789abcdef-0123456";
    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/jwt/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/jwt/rsa_public.pem");
    const RSA_OTHER_PRIVATE: &str = include_str!("../tests/fixtures/jwt/rsa_other_private.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/jwt/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/fixtures/jwt/ec_public.pem");
    const EC_OTHER_PRIVATE: &str = include_str!("../tests/fixtures/jwt/ec_other_private.pem");
    const EC_P384_PUBLIC: &str = include_str!("../tests/fixtures/jwt/ec_p384_public.pem");
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

    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
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

    #[test]
    fn b64url_helper_matches_rfc4648_vectors() {
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
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

    // --- cookie and bearer extraction ---

    fn cookie<'a>(lines: &[&'a [u8]], name: &str) -> Option<&'a str> {
        token_from_cookie_header(lines.iter().copied(), name)
    }

    #[test]
    fn cookie_found_among_several() {
        let line: &[u8] = b"theme=dark; session=abc.def.ghi; lang=en";
        assert_eq!(cookie(&[line], "session"), Some("abc.def.ghi"));
        assert_eq!(cookie(&[b"session=first"], "session"), Some("first"));
        assert_eq!(
            cookie(&[b"a=1;session=tight;b=2"], "session"),
            Some("tight")
        );
        assert_eq!(
            cookie(&[b"  session = spaced  ; x=1"], "session"),
            Some("spaced")
        );
    }

    #[test]
    fn cookie_across_multiple_lines() {
        let lines: [&[u8]; 3] = [b"a=1; b=2", b"c=3", b"session=tok; d=4"];
        assert_eq!(cookie(&lines, "session"), Some("tok"));
        assert_eq!(cookie(&lines, "c"), Some("3"));
        assert_eq!(cookie(&lines, "missing"), None);
        assert_eq!(cookie(&[], "session"), None);
    }

    #[test]
    fn cookie_name_must_match_exactly_and_first_wins() {
        let lines: [&[u8]; 2] = [
            b"session2=nope; my_session=nope; Session=nope",
            b"session=yes",
        ];
        assert_eq!(cookie(&lines, "session"), Some("yes"));
        let lines: [&[u8]; 2] = [b"session=first; session=second", b"session=third"];
        assert_eq!(cookie(&lines, "session"), Some("first"));
        assert_eq!(cookie(&[b"session2=x"], "session"), None);
        assert_eq!(cookie(&[b"xsession=x"], "session"), None);
        assert_eq!(cookie(&[b"session=x"], "session2"), None);
        assert_eq!(cookie(&[b"session=x"], ""), None);
        // A value may itself contain '='.
        assert_eq!(cookie(&[b"session=a=b=="], "session"), Some("a=b=="));
    }

    #[test]
    fn cookie_quoted_and_empty_values() {
        assert_eq!(
            cookie(&[br#"session="quoted.tok""#], "session"),
            Some("quoted.tok")
        );
        assert_eq!(cookie(&[br#"session=""#], "session"), Some("\""));
        assert_eq!(
            cookie(&[br#"session="unbalanced"#], "session"),
            Some("\"unbalanced")
        );
        assert_eq!(cookie(&[br#"session="""#], "session"), None);
        assert_eq!(cookie(&[b"session=; other=1"], "session"), None);
        assert_eq!(cookie(&[b"session"], "session"), None);
        assert_eq!(cookie(&[b";;; ;"], "session"), None);
    }

    #[test]
    fn cookie_non_utf8_line_is_skipped() {
        let bad: &[u8] = b"session=\xff\xfe; x=1";
        let good: &[u8] = b"session=good";
        assert_eq!(cookie(&[bad, good], "session"), Some("good"));
        assert_eq!(cookie(&[bad], "session"), None);
    }

    #[test]
    fn cookie_token_round_trip() {
        let token = sign_hs256(SECRET.as_bytes(), "user-9", EMAIL, 60).unwrap();
        let line = format!("theme=dark; session={token}");
        let found = cookie(&[line.as_bytes()], "session").unwrap();
        assert_user(verifier(JwtAlgorithm::HS256).verify(found), "user-9", EMAIL);
    }

    #[test]
    fn bearer_token_extraction() {
        assert_eq!(
            token_from_authorization(b"Bearer abc.def.ghi"),
            Some("abc.def.ghi")
        );
        assert_eq!(token_from_authorization(b"bearer abc"), Some("abc"));
        assert_eq!(token_from_authorization(b"BEARER abc"), Some("abc"));
        assert_eq!(token_from_authorization(b"  Bearer abc  "), Some("abc"));
        assert_eq!(token_from_authorization(b"Bearer  abc"), Some("abc"));
        assert_eq!(
            token_from_authorization(b"Bearer a-_.~+/b=="),
            Some("a-_.~+/b==")
        );
    }

    #[test]
    fn bearer_rejects_malformed_values() {
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer  ",
            b"Bearerabc",
            b"Basic abc",
            b"Bearer abc def",
            b"Bearer abc\tdef",
            b"Bearer\tabc",
            b"Token abc",
            b"Bearer \xff\xfe",
            b"Bearer t\xc3\xb6ken",
            b"Bearer a\x00b",
        ] {
            assert_eq!(token_from_authorization(bad), None, "{bad:?}");
        }
    }
}

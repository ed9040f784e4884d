//! Session JWTs signed by the partner's app with a fixed key (`session.source = "jwt"`).
//!
//! The session token is the only proof of identity the BFF receives from the browser, so every
//! decision here leans towards rejecting: the algorithm comes from configuration and never from
//! the token, keys are parsed once at start-up so that a broken key fails the deployment rather
//! than every request, and the only distinction leaked to callers is "missing", "expired" (so the
//! frontend can refresh instead of showing an error) and "invalid".

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::token::{token_from_authorization, token_from_cookie_header};
use super::user::{MAX_USER_ID_CHARS, is_valid_email, is_valid_user_id};
use super::{SessionError, SessionUser, UserEmail};

/// Claim holding the user id when the configuration does not name another one.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// Claim holding the email when the configuration does not name another one.
pub const DEFAULT_EMAIL_CLAIM: &str = "email";

/// RFC 7518 §3.2: an HMAC-SHA256 key shorter than the hash output weakens the signature.
const MIN_HS256_SECRET_BYTES: usize = 32;
/// Bounds the work an anonymous request can cause (base64 + JSON + signature) before it is
/// rejected. Browsers cap a cookie at about 4 KiB, so a real session token never gets close.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Leeway only absorbs clock skew; anything larger is a misconfiguration that would quietly
/// extend every session. It also keeps `now - leeway` inside jsonwebtoken from underflowing.
const MAX_LEEWAY_S: u64 = 3600;

/// The signature algorithm the identity provider uses. Pinned by configuration so that a token
/// cannot choose how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

impl TryFrom<String> for JwtAlgorithm {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "HS256" => Ok(Self::HS256),
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            _ => Err(format!("{name:?} is not one of HS256, RS256, ES256")),
        }
    }
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

/// `session.source = "jwt"`: where the token travels and how it is checked.
#[derive(Debug)]
pub struct JwtSession {
    /// The cookie that holds the token.
    pub cookie: String,
    /// Whether `Authorization: Bearer <token>` is read too (after the cookie).
    pub bearer: bool,
    pub verifier: JwtVerifier,
}

impl JwtSession {
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<SessionUser, SessionError> {
        let token = token_from_cookie_header(
            headers.get_all(header::COOKIE).map(HeaderValue::as_bytes),
            &self.cookie,
        )
        .or_else(|| {
            if !self.bearer {
                return None;
            }
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| token_from_authorization(v.as_bytes()))
        });
        match token {
            Some(token) => self.verifier.verify(token),
            None => Err(SessionError::Missing),
        }
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

/// Signs the HS256 session tokens of the sandbox's dev login, with the key its verifier checks.
#[derive(Clone)]
pub struct DevSession {
    secret: SecretString,
    /// The cookie the token is set in.
    pub cookie: String,
    /// How long a dev session lasts.
    pub ttl_s: u64,
}

impl fmt::Debug for DevSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevSession")
            .field("cookie", &self.cookie)
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

impl DevSession {
    pub fn new(secret: SecretString, cookie: String, ttl_s: u64) -> Self {
        Self {
            secret,
            cookie,
            ttl_s,
        }
    }

    pub fn sign(&self, user_id: &str, email: &str) -> Result<String, String> {
        sign_hs256(
            self.secret.expose_secret().as_bytes(),
            user_id,
            email,
            self.ttl_s,
        )
        .map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests;

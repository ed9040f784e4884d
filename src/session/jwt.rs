//! Session JWTs signed by the partner's app with a fixed key (`session.source = "jwt"`).
//!
//! The session token is the only proof of identity the BFF receives from the browser, so every
//! decision here leans towards rejecting: the algorithm comes from configuration and never from
//! the token, keys are parsed once at start-up so that a broken key fails the deployment rather
//! than every request, and the only distinction leaked to callers is "missing", "expired" (so the
//! frontend can refresh instead of showing an error) and "invalid".

use crate::config_checks::named_setting;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use actix_web::http::header::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};

use crate::secret_file::{SecretFile, SecretFileError, without_line_end};

use super::claims::{self, ClaimRules, ClaimRulesError};
use super::token::session_token;
use super::user::{MAX_USER_ID_CHARS, is_valid_email, is_valid_user_id};
use super::{SessionError, SessionUser};

/// Claim holding the user id when the configuration does not name another one.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// Claim holding the email when the configuration does not name another one.
pub const DEFAULT_EMAIL_CLAIM: &str = "email";

/// RFC 7518 §3.2: an HMAC-SHA256 key shorter than the hash output weakens the signature.
const MIN_HS256_SECRET_BYTES: usize = 32;

named_setting! {
    /// The signature algorithm the identity provider uses. Pinned by configuration so that a token
    /// cannot choose how it is checked.
    JwtAlgorithm { HS256 = "HS256", RS256 = "RS256", ES256 = "ES256" }
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
#[derive(Debug, Clone)]
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
    /// Swapped whole when the key file changes; a check uses the one it loaded.
    verifier: ArcSwap<JwtVerifier>,
    /// Where the key is re-read from, when it came from a file.
    key_file: Option<KeyFile>,
}

/// The largest key file read (`secret_file`, `public_key_pem_file`). An HS256 key is tens of bytes
/// and an RSA public key PEM under 2 KiB even at 8192 bits: far more is a wrong file.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A key given as a file (`secret_file` or `public_key_pem_file`), and what rebuilds the verifier
/// from its new contents.
#[derive(Debug)]
pub struct KeyFile {
    file: SecretFile,
    /// The settings the current verifier was built with, its key included.
    settings: Mutex<JwtVerifierSettings>,
}

impl KeyFile {
    pub fn new(path: std::path::PathBuf, settings: JwtVerifierSettings) -> Self {
        Self {
            file: SecretFile::new(path, MAX_KEY_FILE_BYTES),
            settings: Mutex::new(settings),
        }
    }
}

impl JwtSession {
    pub fn new(
        cookie: String,
        bearer: bool,
        verifier: JwtVerifier,
        key_file: Option<KeyFile>,
    ) -> Self {
        Self {
            cookie,
            bearer,
            verifier: ArcSwap::from_pointee(verifier),
            key_file,
        }
    }

    /// Whether the request carries a token where this source reads one.
    pub fn presents_token(&self, headers: &HeaderMap) -> bool {
        session_token(headers, &self.cookie, self.bearer).is_some()
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<SessionUser, SessionError> {
        match session_token(headers, &self.cookie, self.bearer) {
            Some(token) => self.verifier.load().verify(token),
            None => Err(SessionError::Missing),
        }
    }

    /// Reads the key file again (as every secret file is read: [`crate::secret_file`]) and, when
    /// it holds a new key that passes the checks made at start ([`JwtVerifier::new`]), swaps the
    /// verifier. A file that cannot be read or holds no valid key keeps the last good one and logs
    /// an error. Returns whether the key changed.
    pub async fn reload(&self) -> bool {
        let Some(key_file) = &self.key_file else {
            return false;
        };
        let path = key_file.file.path();
        let contents = match key_file.file.read().await {
            Ok(contents) => contents,
            Err(error @ SecretFileError::StillReading) => {
                tracing::warn!(file = %path.display(), %error, "session key file not re-read: the last good key stays in use");
                return false;
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "session key file cannot be read: the last good key stays in use");
                return false;
            }
        };
        // Reloads are rare and never on the request path: one at a time.
        let mut current = key_file
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut settings = current.clone();
        if settings.algorithm == JwtAlgorithm::HS256 {
            let secret = without_line_end(&contents);
            if settings
                .hs256_secret
                .as_ref()
                .is_some_and(|known| known.expose_secret() == secret)
            {
                return false;
            }
            settings.hs256_secret = Some(SecretString::from(secret));
        } else {
            if settings.public_key_pem.as_deref() == Some(contents.as_str()) {
                return false;
            }
            settings.public_key_pem = Some(contents);
        }
        match JwtVerifier::new(settings.clone()) {
            Ok(verifier) => {
                self.verifier.store(Arc::new(verifier));
                *current = settings;
                tracing::info!(file = %path.display(), "session key file changed: the new key is in use");
                true
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "session key file holds no valid key: the last good key stays in use");
                false
            }
        }
    }
}

/// Checks session tokens on the request path. Holds the parsed key and the validation rules so
/// that per-request work is limited to decoding and the signature check.
pub struct JwtVerifier {
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    validation: Validation,
    rules: ClaimRules,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("rules", &self.rules)
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

        let rules = ClaimRules::new(issuer, audience, user_id_claim, email_claim, leeway_s)
            .map_err(|ClaimRulesError { setting, problem }| {
                JwtConfigError(format!("session.jwt.{setting} {problem}"))
            })?;

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
        let validation = rules.validation(algorithm.to_jwt());

        Ok(Self {
            algorithm,
            key,
            validation,
            rules,
        })
    }

    /// An empty token means the browser sent none (`Missing`); a token whose only fault is being
    /// past `exp` + leeway is `Expired`; everything else is `Invalid`, by the rules every token
    /// source shares (see [`claims`]).
    pub fn verify(&self, token: &str) -> Result<SessionUser, SessionError> {
        claims::check_size(token)?;
        claims::verify_signed(
            token,
            &self.key,
            self.algorithm.to_jwt(),
            &self.validation,
            &self.rules,
        )
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

mod config;
#[cfg(test)]
mod tests;

pub use config::JwtSettings;

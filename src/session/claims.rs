//! What a signed session token must say once its signature holds, whichever source found the key:
//! the partner's fixed key ([`super::jwt`]) or the identity provider's key set ([`super::jwks`]).
//! Both sources run these same rules, so a token means the same user under either.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::user::is_valid_user_id;
use super::{SessionError, SessionUser, UserEmail};

/// Bounds the work an anonymous request can cause (base64 + JSON + signature) before it is
/// rejected. Browsers cap a cookie at about 4 KiB, so a real session token never gets close.
pub(super) const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Leeway only absorbs clock skew; anything larger is a misconfiguration that would quietly
/// extend every session. It also keeps `now - leeway` inside jsonwebtoken from underflowing.
pub(super) const MAX_LEEWAY_S: u64 = 3600;

/// The claim checks of one source: which claims name the user, and what `iss`, `aud`, `exp` and
/// `nbf` must say.
#[derive(Debug, Clone)]
pub(super) struct ClaimRules {
    issuer: Option<String>,
    audience: Option<String>,
    leeway_s: u64,
    user_id_claim: String,
    email_claim: String,
}

/// A claim setting that would make every token fail, or the checks silently weaker.
#[derive(Debug)]
pub(super) struct ClaimRulesError {
    /// The setting's name under the source's table, e.g. `leeway_s`.
    pub setting: &'static str,
    pub problem: String,
}

impl ClaimRules {
    /// `issuer` and `audience` are enforced only when non-empty; then the token must carry them.
    pub(super) fn new(
        issuer: Option<String>,
        audience: Option<String>,
        user_id_claim: String,
        email_claim: String,
        leeway_s: u64,
    ) -> Result<Self, ClaimRulesError> {
        for (setting, claim) in [
            ("user_id_claim", &user_id_claim),
            ("email_claim", &email_claim),
        ] {
            if claim.is_empty() {
                return Err(ClaimRulesError {
                    setting,
                    problem: "must not be empty".into(),
                });
            }
        }
        if leeway_s > MAX_LEEWAY_S {
            return Err(ClaimRulesError {
                setting: "leeway_s",
                problem: format!("must be at most {MAX_LEEWAY_S} seconds"),
            });
        }
        Ok(Self {
            issuer: issuer.filter(|iss| !iss.is_empty()),
            audience: audience.filter(|aud| !aud.is_empty()),
            leeway_s,
            user_id_claim,
            email_claim,
        })
    }

    /// jsonwebtoken's checks for a token signed with `algorithm` (and no other): `exp` required,
    /// `nbf` honoured, `iss` and `aud` as configured. Built once per algorithm, not per request.
    pub(super) fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway_s;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.sub = None;
        let mut required = vec!["exp"];
        // jsonwebtoken only compares iss/aud when the token carries them, so a configured
        // check must also make the claim mandatory or a token could pass by omitting it.
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
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
        validation
    }

    /// The user a token's verified claims name.
    ///
    /// The user id claim may be a string or a JSON integer (some identity providers use numeric
    /// ids); an integer is turned into its decimal string. Floats and other types are rejected,
    /// and so is an id that [`is_valid_user_id`] refuses. An `iss` claim, when present, must be a
    /// string, whether or not an issuer is configured.
    fn user(&self, claims: &Map<String, Value>) -> Result<SessionUser, SessionError> {
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

/// An empty token means the browser sent none (`Missing`); one over [`MAX_TOKEN_BYTES`] is refused
/// before any parsing.
pub(super) fn check_size(token: &str) -> Result<(), SessionError> {
    if token.is_empty() {
        return Err(SessionError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SessionError::Invalid);
    }
    Ok(())
}

/// The signature with `key` under `algorithm` and no other, then the claims. A token whose only
/// fault is being past `exp` + leeway is `Expired`; everything else is `Invalid`. A forged token is
/// always `Invalid`, whatever its `exp`, because the signature is checked before the claims.
pub(super) fn verify_signed(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    validation: &Validation,
    rules: &ClaimRules,
) -> Result<SessionUser, SessionError> {
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map_err(|err| session_error(&err))?;
    // jsonwebtoken already refuses any alg outside `validation.algorithms`; repeated so that the
    // pinning does not depend on a library detail.
    if data.header.alg != algorithm {
        return Err(SessionError::Invalid);
    }
    rules.user(&data.claims)
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

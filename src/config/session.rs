//! `[session]`: the source that `session.source` names, checked and built.

use super::ConfigError;
use super::settings::*;
use super::validate::read_secret;
use crate::client_ip::ClientIpResolver;
use crate::session::{JwtSession, JwtVerifier, JwtVerifierSettings, SessionSource};

/// The `[session.<source>]` table that `session.source` names; the others are not read.
pub(super) fn validate_session(
    s: SessionSettings,
    client_ip: &ClientIpResolver,
) -> Result<SessionSource, ConfigError> {
    match s.source {
        SessionSourceName::Jwt => validate_jwt(s.jwt),
        SessionSourceName::Jwks => validate_jwks(s.jwks),
        SessionSourceName::Forward => validate_forward(s.forward),
        SessionSourceName::Headers => validate_headers(s.headers, client_ip),
    }
}

fn validate_jwks(_s: JwksSettings) -> Result<SessionSource, ConfigError> {
    Err(ConfigError::key(
        "session.source",
        "\"jwks\" is not available in this version",
    ))
}

fn validate_jwt(jwt: JwtSettings) -> Result<SessionSource, ConfigError> {
    if !is_cookie_name(&jwt.cookie) {
        return Err(ConfigError::key(
            "session.jwt.cookie",
            format!("{:?} is not a valid cookie name", jwt.cookie),
        ));
    }
    let algorithm = jwt.algorithm;
    let hs256_secret = read_secret(
        "session.jwt.secret",
        jwt.secret,
        "session.jwt.secret_file",
        &jwt.secret_file,
    )?;
    let public_key_pem = match jwt.public_key_pem_file.trim() {
        "" => None,
        path => Some(std::fs::read_to_string(path).map_err(|e| {
            ConfigError::key(
                "session.jwt.public_key_pem_file",
                format!("cannot read {path:?}: {e}"),
            )
        })?),
    };
    let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    for (key, claim) in [
        ("session.jwt.user_id_claim", &jwt.user_id_claim),
        ("session.jwt.email_claim", &jwt.email_claim),
    ] {
        if claim.trim().is_empty() {
            return Err(ConfigError::key(key, "must not be empty"));
        }
    }
    let verifier = JwtVerifier::new(JwtVerifierSettings {
        algorithm,
        hs256_secret,
        public_key_pem,
        issuer: non_empty(jwt.issuer),
        audience: non_empty(jwt.audience),
        user_id_claim: jwt.user_id_claim,
        email_claim: jwt.email_claim,
        leeway_s: jwt.leeway_s,
    })
    .map_err(|e| ConfigError(e.to_string()))?;
    Ok(SessionSource::Jwt(JwtSession {
        cookie: jwt.cookie,
        bearer: jwt.bearer,
        verifier,
    }))
}

/// RFC 6265 cookie-name: a token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate_forward(_s: ForwardSettings) -> Result<SessionSource, ConfigError> {
    Err(ConfigError::key(
        "session.source",
        "\"forward\" is not available in this version",
    ))
}

fn validate_headers(
    _s: HeaderSessionSettings,
    _client_ip: &ClientIpResolver,
) -> Result<SessionSource, ConfigError> {
    Err(ConfigError::key(
        "session.source",
        "\"headers\" is not available in this version",
    ))
}

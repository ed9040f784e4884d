//! `[session]`: the source that `session.source` names, checked and built.

use std::time::Duration;

use actix_web::http::Uri;
use actix_web::http::header::HeaderName;

use super::ConfigError;
use super::range::range;
use super::secrets::{read_secret, read_secret_file};
use super::settings::*;
use crate::client_ip::ClientIpResolver;
use crate::http::{UrlRules, outbound_url};
use crate::session::forward::is_json_pointer;
use crate::session::{
    ForwardConfig, ForwardSession, HeaderSession, JwksSession, JwtAlgorithm, JwtSession,
    JwtVerifier, JwtVerifierSettings, KeyFile, MAX_KEY_FILE_BYTES, SessionSource,
};
use crate::tls_roots::TlsRoots;

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

/// Checked without fetching anything: `check-config` and start-up see the same faults, and a
/// replica may start before its identity provider answers.
fn validate_jwks(s: JwksSettings) -> Result<SessionSource, ConfigError> {
    if !is_cookie_name(&s.cookie) {
        return Err(ConfigError::key(
            "session.jwks.cookie",
            format!("{:?} is not a valid cookie name", s.cookie),
        ));
    }
    let tls_roots = TlsRoots::with_ca_file(&s.ca_file)
        .map_err(|problem| ConfigError::key("session.jwks.ca_file", problem))?;
    let session = JwksSession::new(s, tls_roots).map_err(|e| ConfigError(e.to_string()))?;
    Ok(SessionSource::Jwks(session))
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
        MAX_KEY_FILE_BYTES,
    )?;
    let public_key_pem = match jwt.public_key_pem_file.trim() {
        "" => None,
        path => Some(read_secret_file(
            "session.jwt.public_key_pem_file",
            path,
            MAX_KEY_FILE_BYTES,
        )?),
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
    let settings = JwtVerifierSettings {
        algorithm,
        hs256_secret,
        public_key_pem,
        issuer: non_empty(jwt.issuer),
        audience: non_empty(jwt.audience),
        user_id_claim: jwt.user_id_claim,
        email_claim: jwt.email_claim,
        leeway_s: jwt.leeway_s,
    };
    let verifier = JwtVerifier::new(settings.clone()).map_err(|e| ConfigError(e.to_string()))?;
    // The file the key came from, re-read on SIGHUP and every proof.token_reload_s.
    let key_path = match algorithm {
        JwtAlgorithm::HS256 => jwt.secret_file.trim(),
        _ => jwt.public_key_pem_file.trim(),
    };
    let key_file = (!key_path.is_empty()).then(|| KeyFile::new(key_path.into(), settings));
    Ok(SessionSource::Jwt(JwtSession::new(
        jwt.cookie, jwt.bearer, verifier, key_file,
    )))
}

/// RFC 6265 cookie-name: a token.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Below this a call to the partner's app (a connection, perhaps TLS, and its own session lookup)
/// could seldom answer in time: every session check would be 503.
const MIN_FORWARD_TIMEOUT_MS: u64 = 100;
const MAX_FORWARD_TIMEOUT_MS: u64 = 60_000;
/// A signed-out session stays usable for up to the TTL: an hour is already long for that.
const MAX_FORWARD_CACHE_TTL_S: u64 = 3600;
/// A few hundred bytes each: a million is a few hundred MiB at most.
const MAX_FORWARD_CACHE_ENTRIES: usize = 1_000_000;

fn validate_forward(s: ForwardSettings) -> Result<SessionSource, ConfigError> {
    let url = forward_url(&s.url)?;
    let cookies = forward_cookies(&s.cookies, s.forward_authorization)?;
    for (key, pointer) in [
        ("session.forward.user_id_field", &s.user_id_field),
        ("session.forward.email_field", &s.email_field),
    ] {
        if !is_json_pointer(pointer) {
            return Err(ConfigError::key(
                key,
                format!(
                    "{pointer:?} is not a JSON pointer into the app's answer (RFC 6901: \"/id\", \"/user/email\")"
                ),
            ));
        }
    }
    range(
        "session.forward.timeout_ms",
        s.timeout_ms,
        MIN_FORWARD_TIMEOUT_MS..=MAX_FORWARD_TIMEOUT_MS,
        " (shorter, the app could seldom answer in time)",
    )?;
    range(
        "session.forward.cache_ttl_s",
        s.cache_ttl_s,
        0..=MAX_FORWARD_CACHE_TTL_S,
        " (0 turns the cache off)",
    )?;
    range(
        "session.forward.cache_max_entries",
        s.cache_max_entries,
        1..=MAX_FORWARD_CACHE_ENTRIES,
        " (cache_ttl_s = 0 turns the cache off)",
    )?;
    // For the whole instance, not per worker: one thread makes every call to the app.
    range(
        "session.forward.max_connections",
        s.max_connections,
        1..=usize::MAX,
        "",
    )?;
    let tls_roots = TlsRoots::with_ca_file(&s.ca_file)
        .map_err(|problem| ConfigError::key("session.forward.ca_file", problem))?;
    let session = ForwardSession::new(ForwardConfig {
        url,
        cookies,
        forward_authorization: s.forward_authorization,
        user_id_field: s.user_id_field,
        email_field: s.email_field,
        timeout: Duration::from_millis(s.timeout_ms),
        cache_ttl: Duration::from_secs(s.cache_ttl_s),
        cache_max_entries: s.cache_max_entries,
        max_connections: s.max_connections,
        tls_roots,
    });
    Ok(SessionSource::Forward(session))
}

/// Valid, distinct cookie names; none at all only when `Authorization` carries the session.
fn forward_cookies(names: &[String], authorization: bool) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "session.forward.cookies";
    let mut cookies: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim();
        if !is_cookie_name(name) {
            return Err(ConfigError::key(
                KEY,
                format!("{name:?} is not a valid cookie name"),
            ));
        }
        if cookies.iter().any(|seen| seen == name) {
            return Err(ConfigError::key(KEY, format!("{name:?} is listed twice")));
        }
        cookies.push(name.to_owned());
    }
    if cookies.is_empty() && !authorization {
        return Err(ConfigError::key(
            KEY,
            "name the cookie(s) that carry your app's session (or set forward_authorization = true)",
        ));
    }
    Ok(cookies)
}

/// The app's session endpoint. The cookies travel to it in every call, so in clear text only to
/// this very machine. Never echoed in an error: a URL may carry a secret.
fn forward_url(raw: &str) -> Result<Uri, ConfigError> {
    const KEY: &str = "session.forward.url";
    if raw.trim().is_empty() {
        return Err(ConfigError::key(
            KEY,
            "is required: your app's endpoint that answers who is signed in",
        ));
    }
    let url = outbound_url(
        raw,
        &UrlRules {
            not_http: "must be an https:// URL",
            credentials: "must not carry a user name or password",
            query_allowed: true,
            https_unless_loopback: Some(
                "must be https:// (http:// only for a loopback host: 127.0.0.0/8, ::1 or \
                 localhost): the session cookies travel to it",
            ),
        },
    )
    .map_err(|problem| ConfigError::key(KEY, problem))?;
    url.as_str()
        .parse()
        .map_err(|e| ConfigError::key(KEY, format!("is not a valid URL ({e})")))
}

/// Headers that mean something else to the service or to HTTP: an auth proxy never names the user
/// in them, so choosing one is a mistake.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "host",
    "idempotency-key",
    "origin",
    "transfer-encoding",
    "x-csrf",
    "x-forwarded-for",
    "x-request-id",
];

fn validate_headers(
    s: HeaderSessionSettings,
    client_ip: &ClientIpResolver,
) -> Result<SessionSource, ConfigError> {
    let user_id_header = identity_header(
        "session.headers.user_id_header",
        &s.user_id_header,
        client_ip,
    )?;
    let email_header = identity_header("session.headers.email_header", &s.email_header, client_ip)?;
    if user_id_header == email_header {
        return Err(ConfigError::key(
            "session.headers.email_header",
            "must differ from session.headers.user_id_header",
        ));
    }
    let trusted = client_ip.trusted_proxies();
    if trusted.is_empty() {
        return Err(ConfigError::key(
            "client_ip.trusted_proxies",
            "is empty, but session.source = \"headers\" reads the user only from your auth proxy: list its addresses",
        ));
    }
    // The user is whoever a trusted peer names: trusting every address would let any client
    // name any user.
    if let Some(family) = trusted.trusts_every_address() {
        return Err(ConfigError::key(
            "client_ip.trusted_proxies",
            format!(
                "covers every {family} address, but session.source = \"headers\" believes the user any trusted peer names: any client could sign in as anyone; list only your auth proxy's addresses"
            ),
        ));
    }
    Ok(SessionSource::Headers(HeaderSession::new(
        user_id_header,
        email_header,
        trusted.clone(),
    )))
}

fn identity_header(
    key: &str,
    name: &str,
    client_ip: &ClientIpResolver,
) -> Result<HeaderName, ConfigError> {
    let header = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| ConfigError::key(key, format!("{name:?} is not a valid HTTP header name")))?;
    if RESERVED_HEADERS.contains(&header.as_str()) || header.as_str() == client_ip.header_name() {
        return Err(ConfigError::key(
            key,
            format!("{name:?} is a header the service reads for something else"),
        ));
    }
    Ok(header)
}

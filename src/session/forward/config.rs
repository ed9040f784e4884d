//! `[session.forward]`: the partner's app that answers who is signed in, checked and built into the
//! [`ForwardSession`]; its client thread is started by the application, never by a check.

use std::time::Duration;

use actix_web::http::Uri;
use serde::Deserialize;

use super::answer::is_json_pointer;
use super::{ForwardConfig, ForwardSession};
use crate::config_checks::{ConfigError, UrlRules, outbound_url, range};
use crate::session::config::is_cookie_name;
use crate::tls_roots::TlsRoots;

/// `[session.forward]`: opaque app sessions, resolved by asking the partner's app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct ForwardSettings {
    pub url: String,
    pub cookies: Vec<String>,
    pub forward_authorization: bool,
    pub user_id_field: String,
    pub email_field: String,
    pub timeout_ms: u64,
    pub cache_ttl_s: u64,
    pub cache_max_entries: usize,
    pub max_connections: usize,
    pub ca_file: String,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            cookies: Vec::new(),
            forward_authorization: false,
            user_id_field: "/id".into(),
            email_field: "/email".into(),
            timeout_ms: 1000,
            cache_ttl_s: 30,
            cache_max_entries: 100_000,
            max_connections: 1024,
            ca_file: String::new(),
        }
    }
}

/// Below this a call to the partner's app (a connection, perhaps TLS, and its own session lookup)
/// could seldom answer in time: every session check would be 503.
const MIN_FORWARD_TIMEOUT_MS: u64 = 100;
const MAX_FORWARD_TIMEOUT_MS: u64 = 60_000;
/// A signed-out session stays usable for up to the TTL: an hour is already long for that.
const MAX_FORWARD_CACHE_TTL_S: u64 = 3600;
/// A few hundred bytes each: a million is a few hundred MiB at most.
const MAX_FORWARD_CACHE_ENTRIES: usize = 1_000_000;

impl ForwardSettings {
    /// Keys whose environment value is a comma-separated list.
    pub const LIST_KEYS: &[&str] = &["session.forward.cookies"];

    pub fn build(self) -> Result<ForwardSession, ConfigError> {
        let url = forward_url(&self.url)?;
        let cookies = forward_cookies(&self.cookies, self.forward_authorization)?;
        for (key, pointer) in [
            ("session.forward.user_id_field", &self.user_id_field),
            ("session.forward.email_field", &self.email_field),
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
            self.timeout_ms,
            MIN_FORWARD_TIMEOUT_MS..=MAX_FORWARD_TIMEOUT_MS,
            " (shorter, the app could seldom answer in time)",
        )?;
        range(
            "session.forward.cache_ttl_s",
            self.cache_ttl_s,
            0..=MAX_FORWARD_CACHE_TTL_S,
            " (0 turns the cache off)",
        )?;
        range(
            "session.forward.cache_max_entries",
            self.cache_max_entries,
            1..=MAX_FORWARD_CACHE_ENTRIES,
            " (cache_ttl_s = 0 turns the cache off)",
        )?;
        // For the whole instance, not per worker: one thread makes every call to the app.
        range(
            "session.forward.max_connections",
            self.max_connections,
            1..=usize::MAX,
            "",
        )?;
        let tls_roots = TlsRoots::with_ca_file(&self.ca_file)
            .map_err(|problem| ConfigError::key("session.forward.ca_file", problem))?;
        Ok(ForwardSession::new(ForwardConfig {
            url,
            cookies,
            forward_authorization: self.forward_authorization,
            user_id_field: self.user_id_field,
            email_field: self.email_field,
            timeout: Duration::from_millis(self.timeout_ms),
            cache_ttl: Duration::from_secs(self.cache_ttl_s),
            cache_max_entries: self.cache_max_entries,
            max_connections: self.max_connections,
            tls_roots,
        }))
    }
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

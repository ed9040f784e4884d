//! `[proof]`: where Proof is, the client token, and the bounds of every call, checked and built
//! into the [`ProofConfig`] the clients share; the shared backend's key secret is derived here
//! from the token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::endpoint::{ProofEndpoint, ProofEndpointSettings};
use super::token::{MAX_CLIENT_TOKEN_BYTES, check_client_token};
use crate::browser::origin::normalise_origin;
use crate::config_checks::{
    ConfigError, HTTPS_UNLESS_LOOPBACK, UrlRules, outbound_url, range, read_secret,
};
use crate::rate_limit::key_secret_from_client_token;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct ProofSettings {
    pub base_url: String,
    #[cfg_attr(
        test,
        serde(serialize_with = "crate::config_checks::serialize_redacted")
    )]
    pub client_token: SecretString,
    pub client_token_file: String,
    pub token_reload_s: u64,
    pub origin: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub deadline_ms: u64,
    pub max_attempts: u32,
    pub address: String,
    pub max_connections: usize,
}

impl Default for ProofSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            client_token: SecretString::from(""),
            client_token_file: String::new(),
            token_reload_s: 10,
            origin: String::new(),
            connect_timeout_ms: 1000,
            request_timeout_ms: 10000,
            deadline_ms: 15000,
            max_attempts: 3,
            address: String::new(),
            max_connections: 1024,
        }
    }
}

/// The `[proof]` settings, checked: how to reach Proof, and what a checkout adds to each session.
#[derive(Debug)]
pub struct ProofConfig {
    pub endpoint: ProofEndpoint,
    /// `proof.address`: sent only when Proof asked the partner to.
    pub address: Option<String>,
    /// How often `client_token_file` is checked for a new token; zero: only on SIGHUP.
    pub token_reload: Duration,
}

const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// Below these no connection to Proof (a TCP and TLS handshake across the internet), and no
/// answer from it, could arrive in time: every checkout would fail.
const MIN_PROOF_CONNECT_TIMEOUT_MS: u64 = 100;
const MIN_PROOF_REQUEST_TIMEOUT_MS: u64 = 200;
const MIN_PROOF_DEADLINE_MS: u64 = 200;
const MAX_TOKEN_RELOAD_S: u64 = 86_400;
/// Far above what one instance's file descriptors allow; a larger number is a typo.
const MAX_PROOF_CONNECTIONS: usize = 1_000_000;

impl ProofSettings {
    /// The client token as configured, inline or from its file (read as every reload reads it);
    /// `None` when neither is set.
    pub fn client_token(&self) -> Result<Option<SecretString>, ConfigError> {
        read_secret(
            "proof.client_token",
            self.client_token.clone(),
            "proof.client_token_file",
            &self.client_token_file,
            MAX_CLIENT_TOKEN_BYTES,
        )
    }

    /// Proof's settings, and the shared backend's key secret derived from the client token.
    pub fn build(self) -> Result<(ProofConfig, [u8; 32]), ConfigError> {
        let (base_url, widget_session_url) = widget_session_url(&self.base_url)?;
        let token_key = if self.client_token_file.trim().is_empty() {
            "proof.client_token"
        } else {
            "proof.client_token_file"
        };
        let client_token = self.client_token()?.ok_or_else(|| {
            ConfigError::key(
                "proof.client_token",
                "is required (or proof.client_token_file, or PROOF_BFF__PROOF__CLIENT_TOKEN)",
            )
        })?;
        // The checks every reload of the file makes too.
        check_client_token(client_token.expose_secret())
            .map_err(|problem| ConfigError::key(token_key, problem))?;
        let rate_limit_key_secret = key_secret_from_client_token(client_token.expose_secret());
        let origin =
            normalise_origin(&self.origin).map_err(|e| ConfigError::key("proof.origin", e))?;
        let at_least = |key: &str, ms: u64, min: u64| {
            range(
                key,
                ms,
                min..=u64::MAX,
                ": shorter, no call to Proof could succeed",
            )
            .map(Duration::from_millis)
        };
        let connect_timeout = at_least(
            "proof.connect_timeout_ms",
            self.connect_timeout_ms,
            MIN_PROOF_CONNECT_TIMEOUT_MS,
        )?;
        let request_timeout = at_least(
            "proof.request_timeout_ms",
            self.request_timeout_ms,
            MIN_PROOF_REQUEST_TIMEOUT_MS,
        )?;
        let deadline = at_least("proof.deadline_ms", self.deadline_ms, MIN_PROOF_DEADLINE_MS)?;
        range(
            "proof.max_attempts",
            self.max_attempts,
            1..=MAX_ATTEMPTS_LIMIT,
            "",
        )?;
        range(
            "proof.max_connections",
            self.max_connections,
            1..=MAX_PROOF_CONNECTIONS,
            "",
        )?;
        range(
            "proof.token_reload_s",
            self.token_reload_s,
            0..=MAX_TOKEN_RELOAD_S,
            " (0: only on SIGHUP)",
        )?;
        let address = self.address.trim();
        if address.len() > 256 || address.chars().any(char::is_control) {
            return Err(ConfigError::key(
                "proof.address",
                "must be at most 256 printable characters",
            ));
        }
        let endpoint = ProofEndpoint::new(&ProofEndpointSettings {
            widget_session_url,
            base_url,
            client_token,
            client_token_file: (!self.client_token_file.trim().is_empty())
                .then(|| std::path::PathBuf::from(self.client_token_file.trim())),
            origin,
            connect_timeout,
            request_timeout,
            deadline,
            max_attempts: self.max_attempts,
            max_connections: self.max_connections,
        })
        .map_err(ConfigError)?;
        Ok((
            ProofConfig {
                endpoint,
                address: (!address.is_empty()).then(|| address.to_owned()),
                token_reload: Duration::from_secs(self.token_reload_s),
            },
            rate_limit_key_secret,
        ))
    }
}

/// The base URL, checked, and `POST /widget/session`'s URL under it.
fn widget_session_url(base_url: &str) -> Result<(url::Url, String), ConfigError> {
    const KEY: &str = "proof.base_url";
    if base_url.trim().is_empty() {
        return Err(ConfigError::key(
            KEY,
            "is required: the base URL Proof gave you at onboarding",
        ));
    }
    let url = outbound_url(
        base_url,
        &UrlRules {
            not_http: "must be an https:// URL",
            credentials: "must not carry a user name or password: the client token is the credential",
            query_allowed: false,
            // The client token travels in every request: in clear text only to this very machine.
            https_unless_loopback: Some(HTTPS_UNLESS_LOOPBACK),
        },
    )
    .map_err(|problem| ConfigError::key(KEY, problem))?;
    let base = url.as_str().trim_end_matches('/');
    let widget_session = format!("{base}/widget/session");
    Ok((url, widget_session))
}

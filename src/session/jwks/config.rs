//! `[session.jwks]`, and its build into the [`JwksSession`]: checked without fetching anything, so
//! `check-config` and start-up see the same faults, and a replica may start before its identity
//! provider answers.

use super::JwksSession;
use crate::config_checks::ConfigError;
use crate::session::config::is_cookie_name;
use crate::tls_roots::TlsRoots;

/// `[session.jwks]`, as the operator writes it: tokens from an identity provider, verified with
/// its published key set. `ca_file` is read by [`JwksSettings::build`] into the [`TlsRoots`] the source
/// is built with.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct JwksSettings {
    pub issuer: String,
    /// Empty: found through OpenID Connect discovery under the issuer.
    pub jwks_url: String,
    pub algorithms: Vec<String>,
    pub audience: String,
    pub cookie: String,
    pub bearer: bool,
    pub user_id_claim: String,
    pub email_claim: String,
    pub leeway_s: u64,
    pub min_refresh_interval_s: u64,
    pub ca_file: String,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            jwks_url: String::new(),
            algorithms: vec!["RS256".into()],
            audience: String::new(),
            cookie: "session".into(),
            bearer: false,
            user_id_claim: "sub".into(),
            email_claim: "email".into(),
            leeway_s: 30,
            min_refresh_interval_s: 30,
            ca_file: String::new(),
        }
    }
}

impl JwksSettings {
    /// Keys whose environment value is a comma-separated list.
    pub const LIST_KEYS: &[&str] = &["session.jwks.algorithms"];

    pub fn build(self) -> Result<JwksSession, ConfigError> {
        if !is_cookie_name(&self.cookie) {
            return Err(ConfigError::key(
                "session.jwks.cookie",
                format!("{:?} is not a valid cookie name", self.cookie),
            ));
        }
        let tls_roots = TlsRoots::with_ca_file(&self.ca_file)
            .map_err(|problem| ConfigError::key("session.jwks.ca_file", problem))?;
        JwksSession::new(self, tls_roots).map_err(|e| ConfigError(e.to_string()))
    }
}

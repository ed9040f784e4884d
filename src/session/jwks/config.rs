//! `[session.jwks]` built into the [`JwksSession`]: checked without fetching anything, so
//! `check-config` and start-up see the same faults, and a replica may start before its identity
//! provider answers.

use super::{JwksSession, JwksSettings};
use crate::config::ConfigError;
use crate::session::config::is_cookie_name;
use crate::tls_roots::TlsRoots;

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

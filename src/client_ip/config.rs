//! `[client_ip]`: which peers are trusted and which header they write, checked and built into the
//! [`ClientIpResolver`] every route asks.

use serde::Deserialize;

use super::{ClientIpResolver, ClientIpSource, TrustedProxies};
use crate::config_checks::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct ClientIpSettings {
    pub trusted_proxies: Vec<String>,
    pub source: String,
}

impl Default for ClientIpSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            source: "x-forwarded-for".into(),
        }
    }
}

impl ClientIpSettings {
    /// `client_ip.trusted_proxies`, for the checks of other sections that depend on it.
    pub const TRUSTED_PROXIES_KEY: &str = "client_ip.trusted_proxies";
    /// Keys whose environment value is a comma-separated list.
    pub const LIST_KEYS: &[&str] = &[Self::TRUSTED_PROXIES_KEY];

    pub fn build(self) -> Result<ClientIpResolver, ConfigError> {
        let trusted = TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| ConfigError::key(Self::TRUSTED_PROXIES_KEY, e))?;
        let source = ClientIpSource::parse(&self.source)
            .map_err(|e| ConfigError::key("client_ip.source", e))?;
        Ok(ClientIpResolver::new(trusted, source))
    }
}

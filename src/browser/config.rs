//! `[browser]`: which pages may call, and the CSRF rules, checked and built into the
//! [`BrowserConfig`] the routes apply.

use serde::Deserialize;

use super::origin::AllowedOrigins;
use crate::config_checks::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct BrowserSettings {
    pub allowed_origins: Vec<String>,
    pub require_csrf_header: bool,
    pub allow_missing_origin: bool,
}

/// The `[browser]` rules, checked.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    pub allowed_origins: AllowedOrigins,
    pub require_csrf_header: bool,
    pub allow_missing_origin: bool,
}

impl BrowserSettings {
    /// Keys whose environment value is a comma-separated list.
    pub const LIST_KEYS: &[&str] = &["browser.allowed_origins"];

    pub fn build(self) -> Result<BrowserConfig, ConfigError> {
        let allowed_origins = AllowedOrigins::parse(&self.allowed_origins)
            .map_err(|e| ConfigError::key("browser.allowed_origins", e))?;
        Ok(BrowserConfig {
            allowed_origins,
            require_csrf_header: self.require_csrf_header,
            allow_missing_origin: self.allow_missing_origin,
        })
    }
}

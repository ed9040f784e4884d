//! `[session]`: which source `session.source` names, and that source's own table, checked and
//! built into the [`SessionSource`] the routes ask. Each source owns its table (`jwt/config.rs`,
//! `jwks/config.rs`, `forward/config.rs`, `headers/config.rs`); the others are not read.

use serde::Deserialize;

use super::SessionSource;
use super::forward::ForwardSettings;
use super::headers::HeaderSessionSettings;
use super::jwks::JwksSettings;
use super::jwt::JwtSettings;
use crate::client_ip::ClientIpResolver;
use crate::config_checks::{ConfigError, named_setting};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct SessionSettings {
    pub source: SessionSourceName,
    pub jwt: JwtSettings,
    pub jwks: JwksSettings,
    pub forward: ForwardSettings,
    pub headers: HeaderSessionSettings,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            source: SessionSourceName::Jwt,
            jwt: JwtSettings::default(),
            jwks: JwksSettings::default(),
            forward: ForwardSettings::default(),
            headers: HeaderSessionSettings::default(),
        }
    }
}

named_setting! {
    /// `session.source`: where the user's identity comes from.
    SessionSourceName { Jwt = "jwt", Jwks = "jwks", Forward = "forward", Headers = "headers" }
}

impl SessionSettings {
    /// The `[session.<source>]` table that `session.source` names, built; nothing is started
    /// or fetched ([`SessionSource::start`] does that). `client_ip`: which peers are trusted, for
    /// the source that believes them.
    pub fn build(self, client_ip: &ClientIpResolver) -> Result<SessionSource, ConfigError> {
        Ok(match self.source {
            SessionSourceName::Jwt => SessionSource::Jwt(self.jwt.build()?),
            SessionSourceName::Jwks => SessionSource::Jwks(self.jwks.build()?),
            SessionSourceName::Forward => SessionSource::Forward(self.forward.build()?),
            SessionSourceName::Headers => SessionSource::Headers(self.headers.build(client_ip)?),
        })
    }
}

/// RFC 6265 cookie-name: a token.
pub(super) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

//! `[session.headers]`: the headers an auth proxy names the user in, checked and built into the
//! [`HeaderSession`], which believes them only from the trusted proxies of `[client_ip]`.

use actix_web::http::header::HeaderName;
use serde::Deserialize;

use super::HeaderSession;
use crate::client_ip::{ClientIpResolver, ClientIpSettings};
use crate::config_checks::ConfigError;

/// `[session.headers]`: an auth proxy in front already resolved the user into headers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct HeaderSessionSettings {
    pub user_id_header: String,
    pub email_header: String,
}

impl Default for HeaderSessionSettings {
    fn default() -> Self {
        Self {
            user_id_header: "x-auth-request-user".into(),
            email_header: "x-auth-request-email".into(),
        }
    }
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

impl HeaderSessionSettings {
    /// `client_ip`: the trusted proxies, the only peers whose headers name a user.
    pub fn build(self, client_ip: &ClientIpResolver) -> Result<HeaderSession, ConfigError> {
        let user_id_header = identity_header(
            "session.headers.user_id_header",
            &self.user_id_header,
            client_ip,
        )?;
        let email_header = identity_header(
            "session.headers.email_header",
            &self.email_header,
            client_ip,
        )?;
        if user_id_header == email_header {
            return Err(ConfigError::key(
                "session.headers.email_header",
                "must differ from session.headers.user_id_header",
            ));
        }
        let trusted_key = ClientIpSettings::TRUSTED_PROXIES_KEY;
        let trusted = client_ip.trusted_proxies();
        if trusted.is_empty() {
            return Err(ConfigError::key(
                trusted_key,
                "is empty, but session.source = \"headers\" reads the user only from your auth proxy: list its addresses",
            ));
        }
        // The user is whoever a trusted peer names: trusting every address would let any client
        // name any user.
        if let Some(family) = trusted.trusts_every_address() {
            return Err(ConfigError::key(
                trusted_key,
                format!(
                    "covers every {family} address, but session.source = \"headers\" believes the user any trusted peer names: any client could sign in as anyone; list only your auth proxy's addresses"
                ),
            ));
        }
        Ok(HeaderSession::new(
            user_id_header,
            email_header,
            trusted.clone(),
        ))
    }
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

//! `[session.jwt]`: the partner's own signing key and the claims it signs, checked and built into
//! the [`JwtSession`], with the key file it is re-read from.

use secrecy::SecretString;
use serde::Deserialize;

use super::{
    JwtAlgorithm, JwtSession, JwtVerifier, JwtVerifierSettings, KeyFile, MAX_KEY_FILE_BYTES,
};
use crate::config_checks::{ConfigError, read_secret, read_secret_file};
use crate::session::config::is_cookie_name;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct JwtSettings {
    pub cookie: String,
    pub bearer: bool,
    pub algorithm: JwtAlgorithm,
    #[cfg_attr(
        test,
        serde(serialize_with = "crate::config_checks::serialize_redacted")
    )]
    pub secret: SecretString,
    pub secret_file: String,
    pub public_key_pem_file: String,
    pub issuer: String,
    pub audience: String,
    pub user_id_claim: String,
    pub email_claim: String,
    pub leeway_s: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            cookie: "session".into(),
            bearer: false,
            algorithm: JwtAlgorithm::HS256,
            secret: SecretString::from(""),
            secret_file: String::new(),
            public_key_pem_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            user_id_claim: "sub".into(),
            email_claim: "email".into(),
            leeway_s: 30,
        }
    }
}

impl JwtSettings {
    /// The HS256 secret as configured, inline or from its file (read as every reload reads it);
    /// `None` when neither is set.
    pub fn secret(&self) -> Result<Option<SecretString>, ConfigError> {
        read_secret(
            "session.jwt.secret",
            self.secret.clone(),
            "session.jwt.secret_file",
            &self.secret_file,
            MAX_KEY_FILE_BYTES,
        )
    }

    pub fn build(self) -> Result<JwtSession, ConfigError> {
        if !is_cookie_name(&self.cookie) {
            return Err(ConfigError::key(
                "session.jwt.cookie",
                format!("{:?} is not a valid cookie name", self.cookie),
            ));
        }
        let algorithm = self.algorithm;
        let hs256_secret = self.secret()?;
        let public_key_pem = match self.public_key_pem_file.trim() {
            "" => None,
            path => Some(read_secret_file(
                "session.jwt.public_key_pem_file",
                path,
                MAX_KEY_FILE_BYTES,
            )?),
        };
        let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        for (key, claim) in [
            ("session.jwt.user_id_claim", &self.user_id_claim),
            ("session.jwt.email_claim", &self.email_claim),
        ] {
            if claim.trim().is_empty() {
                return Err(ConfigError::key(key, "must not be empty"));
            }
        }
        let settings = JwtVerifierSettings {
            algorithm,
            hs256_secret,
            public_key_pem,
            issuer: non_empty(self.issuer),
            audience: non_empty(self.audience),
            user_id_claim: self.user_id_claim,
            email_claim: self.email_claim,
            leeway_s: self.leeway_s,
        };
        let verifier =
            JwtVerifier::new(settings.clone()).map_err(|e| ConfigError(e.to_string()))?;
        // The file the key came from, re-read on SIGHUP and whenever the client token file is.
        let key_path = match algorithm {
            JwtAlgorithm::HS256 => self.secret_file.trim(),
            _ => self.public_key_pem_file.trim(),
        };
        let key_file = (!key_path.is_empty()).then(|| KeyFile::new(key_path.into(), settings));
        Ok(JwtSession::new(
            self.cookie,
            self.bearer,
            verifier,
            key_file,
        ))
    }
}

//! Configuration: the settings as an operator writes them ([`settings`]), where they are read from
//! ([`load`]), and their validation into the typed values each capability runs on ([`validate`]),
//! with the checks many keys share written once ([`range`], [`secrets`]).
//! Capabilities own their typed configuration (`BrowserConfig`, `SessionSource`, `ProofConfig`,
//! `RateLimitConfig`, …); this folder builds them and is the only place that knows the file's shape.

mod listen;
mod load;
mod range;
mod secrets;
mod session;
mod settings;
mod validate;

pub use listen::ListenAddress;
pub use load::{ENV_PREFIX, PresetValue, SettingsSources};
pub use settings::*;
pub use validate::{AppConfig, ServerConfig};

/// A configuration problem: one line, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub(crate) fn key(key: &str, problem: impl std::fmt::Display) -> Self {
        Self(format!("{key}: {problem}"))
    }
}

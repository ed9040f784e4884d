//! Configuration, as far as no single capability owns it: the file's top-level shape
//! ([`Settings`], composing each capability's section by its type), where settings are read from
//! ([`load`]), the one [`ConfigError`], the checks many keys share, written once ([`range`],
//! [`secrets`], [`ListenAddress`], and what an upstream URL may be: [`outbound_url`]), and
//! [`Settings::validate`], which asks each capability to build its section in order.
//!
//! Each capability owns its section: the serde struct with its documented defaults, its checks, its
//! key names and the `build()` into the typed value it runs on (`proof/config.rs`,
//! `session/config.rs`, `rate_limit/config.rs`, …). Nothing here imports more of a capability than
//! its settings type and that type's `build()`; the shared checks import no capability at all.

mod listen;
mod load;
mod range;
mod secrets;
mod settings;
mod upstream_url;
mod validate;

pub use listen::ListenAddress;
pub use load::{ENV_PREFIX, PresetValue, SettingsSources};
pub(crate) use range::range;
pub(crate) use secrets::{read_secret, read_secret_file};
pub use settings::Settings;
pub use upstream_url::{HTTPS_UNLESS_LOOPBACK, UrlRules, outbound_url};
pub use validate::AppConfig;
// Named by the tests and the sandbox when they choose a source or a backend.
pub use crate::rate_limit::{OnBackendError, RateLimitBackend};
pub use crate::session::SessionSourceName;

/// A configuration problem: one line, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub(crate) fn key(key: &str, problem: impl std::fmt::Display) -> Self {
        Self(format!("{key}: {problem}"))
    }
}

/// A setting that takes one of a few names: parsed from the name, and refused with the names it
/// takes (`"xml" is not one of json, pretty`), which serde's own enum message does not say.
macro_rules! named_setting {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name {
            $($variant),+
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(value: String) -> Result<Self, String> {
                match value.as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!("{value:?} is not one of {}", [$($text),+].join(", "))),
                }
            }
        }
    };
}
pub(crate) use named_setting;

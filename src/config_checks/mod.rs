//! The vocabulary every capability's settings are built with, so that each check many keys share is
//! written once: the one [`ConfigError`] (one line naming the key), numeric ranges ([`range`]),
//! secrets given inline or in a file ([`read_secret`]), listen addresses ([`ListenAddress`]), what an
//! upstream URL may be ([`outbound_url`]), and settings that take one of a few names
//! ([`named_setting!`]). It imports no capability, so every capability's `config.rs` can use it
//! while `config/` composes them.

mod listen;
mod range;
mod secrets;
mod upstream_url;

pub use listen::ListenAddress;
pub(crate) use range::range;
pub(crate) use secrets::{read_secret, read_secret_file};
pub use upstream_url::{HTTPS_UNLESS_LOOPBACK, UrlRules, outbound_url};

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

        /// The name it is written with: for the test that holds `config.toml.example` to the
        /// defaults.
        #[cfg(test)]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(match self {
                    $(Self::$variant => $text,)+
                })
            }
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

/// A secret in a settings struct, written as an empty string whatever it holds: for the test that
/// holds `config.toml.example` to the defaults, which never needs a secret's value.
#[cfg(test)]
pub(crate) fn serialize_redacted<S: serde::Serializer>(
    _secret: &secrecy::SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("")
}

//! Configuration, as far as no single capability owns it: the file's top-level shape
//! ([`Settings`], composing each capability's section by its type), where settings are read from
//! ([`load`]), and [`Settings::validate`], which asks each capability to build its section in order.
//!
//! Each capability owns its section: the serde struct with its documented defaults, its checks, its
//! key names and the `build()` into the typed value it runs on (`proof/config.rs`,
//! `session/config.rs`, `rate_limit/config.rs`, …), with the checks many keys share from
//! `config_checks/`. Nothing here imports more of a capability than its settings type and that
//! type's `build()`, and no capability imports this folder: the imports run one way.

mod load;
mod settings;
mod validate;

#[cfg(test)]
mod example_file;

pub use load::{ENV_PREFIX, PresetValue, SettingsSources};
pub use settings::Settings;
pub use validate::AppConfig;
// The shared vocabulary of settings, named here too as the public API has it.
pub use crate::config_checks::{ConfigError, ListenAddress};
// Named by the tests and the sandbox when they choose a source or a backend.
pub use crate::rate_limit::{OnBackendError, RateLimitBackend};
pub use crate::session::SessionSourceName;

//! Where settings come from, lowest precedence first: the defaults, a preset (the sandbox's), the
//! TOML file, then `PROOF_BFF__SECTION__KEY` environment variables. Unknown keys are errors.

use std::path::PathBuf;

use super::{ConfigError, Settings};

/// Prefix of every environment override: `PROOF_BFF__SECTION__KEY`.
pub const ENV_PREFIX: &str = "PROOF_BFF";
const ENV_SEPARATOR: &str = "__";

/// Where settings come from, lowest precedence first.
#[derive(Debug, Default)]
pub struct SettingsSources {
    /// Key/value pairs applied over the defaults and under the file (the sandbox preset).
    pub preset: Vec<(String, PresetValue)>,
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum PresetValue {
    Str(String),
    List(Vec<String>),
}

impl Settings {
    /// Reads the file (when given) and the process environment.
    pub fn load(sources: &SettingsSources) -> Result<Self, ConfigError> {
        Self::load_with_env(sources, std::env::vars_os())
    }

    /// Like [`Settings::load`], with the environment passed in so tests need not mutate the process's.
    pub fn load_with_env(
        sources: &SettingsSources,
        env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        for (key, value) in &sources.preset {
            builder = match value {
                PresetValue::Str(s) => builder.set_default(key.as_str(), s.as_str()),
                PresetValue::List(items) => builder.set_default(key.as_str(), items.clone()),
            }
            .map_err(|e| ConfigError::key(key, e))?;
        }
        if let Some(path) = &sources.file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {}: not found or not a file",
                    path.display()
                )));
            }
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        // The environment is read by hand rather than with `config::Environment`: its list parsing
        // needs `try_parsing`, which would turn a token like "0042" into the number 42.
        for (key, value) in environment_overrides(env)? {
            builder = match value {
                PresetValue::Str(s) => builder.set_override(key.as_str(), s),
                PresetValue::List(items) => builder.set_override(key.as_str(), items),
            }
            .map_err(|e| ConfigError::key(&key, e))?;
        }
        let config = builder.build().map_err(one_line_error)?;
        config.try_deserialize::<Settings>().map_err(one_line_error)
    }
}

/// The TOML parser's messages carry a multi-line excerpt of the file; one line is kept per problem
/// so a start-up failure is a single log line. The excerpt (`N | <the line>`) is always dropped:
/// the broken line may hold a secret.
fn one_line_error(error: config::ConfigError) -> ConfigError {
    let text = error.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('|') && !line.contains(" | "))
        .collect::<Vec<_>>()
        .join(": ");
    ConfigError(key_first(line))
}

/// `<problem> for key `<key>`` becomes `<key>: <problem>`, the shape of every other error here.
fn key_first(line: String) -> String {
    const MARKER: &str = " for key `";
    let Some(at) = line.rfind(MARKER) else {
        return line;
    };
    let rest = &line[at + MARKER.len()..];
    match rest.split_once('`') {
        Some((key, "")) => format!("{key}: {}", &line[..at]),
        Some((key, file)) if file.starts_with(" in ") => {
            format!("{key}: {} ({})", &line[..at], file.trim_start())
        }
        _ => line,
    }
}

fn environment_overrides(
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, PresetValue)>, ConfigError> {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let mut overrides = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace(ENV_SEPARATOR, ".");
        let value = value
            .into_string()
            .map_err(|_| ConfigError(format!("{name}: not valid UTF-8")))?;
        let is_list = Settings::LIST_KEYS
            .iter()
            .any(|keys| keys.contains(&key.as_str()));
        let value = if is_list {
            PresetValue::List(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )
        } else {
            PresetValue::Str(value)
        };
        overrides.push((key, value));
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each section names its own list keys: a name that is not one of its keys would be refused
    /// as unknown, and one that is not a list could not take the items.
    #[test]
    fn every_list_key_takes_comma_separated_items_from_the_environment() {
        for key in Settings::LIST_KEYS.iter().flat_map(|keys| keys.iter()) {
            let name = format!(
                "{ENV_PREFIX}{ENV_SEPARATOR}{}",
                key.replace('.', ENV_SEPARATOR)
            );
            let env = [(name.into(), "RS256, ES256".into())];
            if let Err(error) = Settings::load_with_env(&SettingsSources::default(), env) {
                panic!("{key}: {error}");
            }
        }
    }
}

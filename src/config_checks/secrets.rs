//! Secrets as the configuration gives them: inline (or by the environment) or as a file, never
//! both; a file read by the same rules as every later reload of it.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use crate::secret_file::{SecretFile, without_line_end};

/// A secret given inline or as a file: exactly one of the two, never both. The file is read as on
/// every reload ([`SecretFile`]: a regular file of at most `max_bytes`, read until two reads
/// agree, with a timeout), so start-up refuses what a reload would, and never hangs on it.
pub(crate) fn read_secret(
    key: &str,
    inline: SecretString,
    file_key: &str,
    file: &str,
    max_bytes: u64,
) -> Result<Option<SecretString>, ConfigError> {
    let has_inline = !inline.expose_secret().is_empty();
    match (has_inline, file.trim().is_empty()) {
        (true, false) => Err(ConfigError::key(
            key,
            format!("set either {key} or {file_key}, not both"),
        )),
        (true, true) => Ok(Some(inline)),
        (false, true) => Ok(None),
        (false, false) => {
            let contents = read_secret_file(file_key, file, max_bytes)?;
            let secret = without_line_end(&contents);
            if secret.is_empty() {
                return Err(ConfigError::key(file_key, format!("{file:?} is empty")));
            }
            Ok(Some(SecretString::from(secret)))
        }
    }
}

/// A secret file's whole contents, read as on every reload; the error names the file, never what
/// it holds.
pub(crate) fn read_secret_file(
    file_key: &str,
    file: &str,
    max_bytes: u64,
) -> Result<String, ConfigError> {
    SecretFile::new(PathBuf::from(file.trim()), max_bytes)
        .read_blocking()
        .map_err(|e| ConfigError::key(file_key, format!("{file:?} {e}")))
}

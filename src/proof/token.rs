//! The `client_token`, as the `Authorization` header every call to Proof carries, swapped without
//! a restart when `client_token_file` changes (checked every `token_reload_s`, and on SIGHUP).
//!
//! Proof issues a new token with only a short grace period for the old one, so a rotation must
//! reach every replica quickly and without dropping a request: a call reads the current value once
//! when it starts and keeps it for all its attempts; the swap is atomic and lock-free. The file is
//! read as every secret file is ([`crate::secret_file`]: settled, bounded, off the runtime) and its
//! token passes the same checks as at start ([`check_client_token`]). A file that cannot be read or
//! holds no valid token keeps the last good value and logs an error.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};

use crate::secret_file::{SecretFile, SecretFileError, without_line_end};

/// A rejection by Proof this soon after a rotation is reported as probably the rotation's doing.
const RECENT_ROTATION: Duration = Duration::from_secs(300);

/// The longest token taken, inline or from the file (whose size is bounded by the same number). A
/// real token is tens of bytes; a header this long already nears what servers accept, and anything
/// longer is a wrong file, not a token.
pub const MAX_CLIENT_TOKEN_BYTES: u64 = 4096;

#[derive(Debug)]
pub struct ClientToken {
    authorization: ArcSwap<HeaderValue>,
    /// Where it is re-read from; `None` when it was given inline (or by the environment).
    file: Option<SecretFile>,
    rotated_at: Mutex<Option<Instant>>,
}

/// What a reload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The file holds a new token, now in use.
    Rotated,
    Unchanged,
    /// The token was not given by a file.
    NoFile,
    /// The file could not be read or holds no valid token: the last good one stays.
    Failed,
}

impl ClientToken {
    /// `token`, re-read later from `file` when one is given.
    pub fn new(token: &SecretString, file: Option<PathBuf>) -> Result<Self, &'static str> {
        Ok(Self {
            authorization: ArcSwap::from_pointee(bearer(token.expose_secret())?),
            file: file.map(|path| SecretFile::new(path, MAX_CLIENT_TOKEN_BYTES)),
            rotated_at: Mutex::new(None),
        })
    }

    /// The current `Authorization` value; a call keeps the one it started with.
    pub fn authorization(&self) -> Arc<HeaderValue> {
        self.authorization.load_full()
    }

    /// Reads the file again and swaps the token if it changed. Never blocks the runtime: the read
    /// runs on a thread of its own, and is given up on after a timeout.
    pub async fn reload(&self) -> Reload {
        let Some(file) = &self.file else {
            return Reload::NoFile;
        };
        let contents = match file.read().await {
            Ok(contents) => contents,
            Err(error @ SecretFileError::StillReading) => {
                tracing::warn!(file = %file.path().display(), %error, "proof.client_token_file not re-read: the last good token stays in use");
                return Reload::Failed;
            }
            Err(error) => {
                // The error names the file and the failure, never its contents.
                tracing::error!(file = %file.path().display(), %error, "proof.client_token_file cannot be read: the last good token stays in use");
                return Reload::Failed;
            }
        };
        let authorization = match bearer(without_line_end(&contents)) {
            Ok(authorization) => authorization,
            Err(problem) => {
                tracing::error!(file = %file.path().display(), problem, "proof.client_token_file holds no valid token: the last good token stays in use");
                return Reload::Failed;
            }
        };
        if **self.authorization.load() == authorization {
            return Reload::Unchanged;
        }
        self.authorization.store(Arc::new(authorization));
        *self
            .rotated_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        tracing::info!(file = %file.path().display(), "proof.client_token_file changed: the new token is in use");
        Reload::Rotated
    }

    /// How long ago the token was last replaced, if that was recently.
    pub fn rotated_recently(&self) -> Option<Duration> {
        let rotated_at = *self
            .rotated_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        rotated_at
            .map(|at| at.elapsed())
            .filter(|ago| *ago < RECENT_ROTATION)
    }
}

/// What a client token must be, at start-up and on every reload alike: not empty, at most
/// [`MAX_CLIENT_TOKEN_BYTES`], printable ASCII without spaces (it travels in a header).
pub fn check_client_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("the token is empty");
    }
    if token.len() as u64 > MAX_CLIENT_TOKEN_BYTES {
        return Err("the token is longer than 4096 bytes");
    }
    if token.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err("the token must be printable ASCII without spaces");
    }
    Ok(())
}

/// `Bearer <token>`, marked sensitive so no header dump shows it.
fn bearer(token: &str) -> Result<HeaderValue, &'static str> {
    check_client_token(token)?;
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &std::path::Path, contents: &str) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[tokio::test]
    async fn a_changed_file_is_swapped_in_and_a_bad_one_keeps_the_last_good_token() {
        let dir = std::env::temp_dir().join(format!("proof-bff-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = file_with(&dir, "pk_old\n");
        let token = ClientToken::new(&SecretString::from("pk_old"), Some(path.clone())).unwrap();
        assert_eq!(token.reload().await, Reload::Unchanged);
        assert_eq!(token.rotated_recently(), None);

        file_with(&dir, "pk_new\n");
        assert_eq!(token.reload().await, Reload::Rotated);
        assert_eq!(*token.authorization(), "Bearer pk_new");
        assert!(token.rotated_recently().is_some());

        let too_long = "t".repeat(MAX_CLIENT_TOKEN_BYTES as usize + 1);
        for bad in ["", "\n", "pk with spaces", "pk_\u{e9}", &too_long] {
            file_with(&dir, bad);
            assert_eq!(token.reload().await, Reload::Failed, "{bad:.20?}");
            assert_eq!(*token.authorization(), "Bearer pk_new");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token.reload().await, Reload::Failed);
        assert_eq!(*token.authorization(), "Bearer pk_new");
        std::fs::remove_dir_all(&dir).unwrap();

        let inline = ClientToken::new(&SecretString::from("pk_inline"), None).unwrap();
        assert_eq!(inline.reload().await, Reload::NoFile);
    }

    #[test]
    fn a_token_of_the_bound_is_taken_and_a_longer_one_refused() {
        let longest = "t".repeat(MAX_CLIENT_TOKEN_BYTES as usize);
        assert_eq!(check_client_token(&longest), Ok(()));
        let problem = check_client_token(&format!("{longest}t")).unwrap_err();
        assert!(
            problem.contains(&MAX_CLIENT_TOKEN_BYTES.to_string()),
            "{problem}"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let token = ClientToken::new(&SecretString::from("pk_secret_value"), None).unwrap();
        assert!(!format!("{token:?}").contains("pk_secret_value"));
    }
}

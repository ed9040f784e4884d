//! The one Redis (or Redis Cluster) that every replica shares, for the state that must be the same
//! on all of them: the rate limits' counters and the idempotency store's locks and answers.
//!
//! It owns the connection ([`RedisLink`]), how a failing Redis is reported ([`BackendError`], never
//! with the URL or password) and how keys are named ([`KeyHasher`]). What is stored, and what a
//! failure means for a request, belongs to the capability that uses it.
//!
//! - **Keys**: `{prefix}:{kind}:{<hash>}`, where the hash is the first 128 bits, in hex, of
//!   HMAC-SHA256 under the deployment's key secret of the kind and the subject (a user id, an
//!   address, an idempotency key). The raw id, email or address is never sent. The braces are a
//!   Redis Cluster hash tag, so all that one operation touches is in one slot; keys are the same
//!   without a cluster, so moving to one changes nothing.
//! - **Failures**: each call, connecting included, is bounded by the timeout. A slow, unreachable or
//!   erroring Redis is a [`BackendError`] whose text names only `host:port`. Each connection is
//!   multiplexed (one per HTTP worker plus the link's own, whatever the concurrency) and
//!   reconnects after an I/O error; after a second with nothing but failures it is also replaced
//!   outright, which covers what reconnecting on I/O errors does not: a connection that went
//!   silent, or a server that refused our password for a while. Recovery needs no restart. A call
//!   that finds its connection lost (a Redis restart, an idle connection closed) is sent once
//!   more, within the same timeout, on the connection that replaces it: each worker's connection
//!   hears of a restart only when next used, and that request should not be refused for it.
//! - **Unanswered calls**: a call abandoned on our side may still run once Redis gets to it. One
//!   whose effect must not outlive its caller (an idempotency lock) carries an undo that is sent,
//!   unless the call was answered, right behind it on the same connection.
//! - **Threads**: an HTTP worker's calls go out on the worker's own connection, driven by its own
//!   runtime, so a request's call never leaves its worker. Every other call (from a thread with no
//!   connection of its own, or a clean-up in the background) goes out on the link's connection,
//!   whose tasks run on the link's own thread (`shared-redis`, a
//!   [`SideThread`](crate::side_thread::SideThread)): a connection that all may use must not be
//!   driven by one worker's runtime. Building a link starts nothing, so a configuration check
//!   leaves no thread behind; the application starts it ([`RedisLink::start`]).
//! - **Scripts** are called by their SHA1 (`EVALSHA`); when Redis does not know one (a restart, a
//!   failover, `SCRIPT FLUSH`) the same call is sent once with the script's text (`EVAL`), routed
//!   like the key, which also caches it on that node.

mod link;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;

pub use link::{LuaScript, RedisLink};

/// A shorter key secret is refused: the keys would be as guessable as the secret.
pub const MIN_KEY_SECRET_BYTES: usize = 16;

/// 128 bits of the HMAC: no two live subjects share a key in practice, and keys stay short.
const HASH_BYTES: usize = 16;

/// Where the shared state lives and how long a call may take: the `[rate_limit]` `redis_*` keys.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:pass@]host:port[/db]`, or `rediss://` for TLS (rustls, with the system's
    /// trusted roots, or those of the file named by `SSL_CERT_FILE`). Secret: it may carry the
    /// password.
    pub url: SecretString,
    /// `url` names one node of a Redis Cluster; the others are discovered from it.
    pub cluster: bool,
    /// Every key starts with `{key_prefix}:`. Not empty; no braces, spaces or control characters.
    pub key_prefix: String,
    /// The bound on each call, connecting included; a slower Redis counts as unreachable.
    pub timeout: Duration,
}

/// Why a [`RedisLink`] or a user of it could not be built. Never includes the URL or the password.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("the Redis URL must be redis://host[:port][/db] or rediss://…, with a host")]
    InvalidUrl,
    #[error(
        "the Redis key prefix must not be empty nor contain braces, spaces or control characters"
    )]
    InvalidKeyPrefix,
    #[error("the Redis timeout must be more than 0")]
    ZeroTimeout,
    #[error("the Redis key secret must be at least {MIN_KEY_SECRET_BYTES} bytes")]
    ShortKeySecret,
    #[error("Redis at {addr}: {cause}")]
    Client { addr: String, cause: String },
    #[error("the Redis connection's thread could not start: {0}")]
    Thread(std::io::Error),
}

/// A Redis call that failed or did not answer in time. Its text names the configured `host:port`
/// and what went wrong, never the password or the full URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Redis at {addr}: {failure}")]
pub struct BackendError {
    addr: Arc<str>,
    failure: Failure,
}

impl BackendError {
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// `host:port` of the configured Redis (for a cluster: the node named in the URL).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// What went wrong with a Redis call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No answer within the per-call timeout (connecting included).
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection could not be made or was lost.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Redis answered with an error; the error code, e.g. `NOAUTH`, `WRONGPASS`, `CLUSTERDOWN`.
    #[error("Redis answered {0}")]
    Server(String),
    /// Anything else: an unexpected answer, a client-side error.
    #[error("{0}")]
    Other(String),
}

/// What a request gets while the shared backend cannot answer (`rate_limit.on_backend_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorPolicy {
    /// Refused with 503 `unavailable` / `rate_limit_backend`; Proof is not called.
    Deny,
    /// Served without the limit that could not be checked.
    Allow,
}

/// Lets one event through per interval and counts the others, so a failing backend under load
/// writes one log line a second, each saying how many failures it stands for.
#[derive(Debug)]
pub struct WarningThrottle {
    interval: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarningThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(ThrottleState::default()),
        }
    }

    /// `Some(n)`: log now, `n` events having been held back since the last line; `None`: counted.
    pub fn permit(&self) -> Option<u64> {
        // Every field is written in one step: a panic elsewhere cannot leave it half-updated.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if state
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            state.suppressed += 1;
            return None;
        }
        let suppressed = std::mem::take(&mut state.suppressed);
        state.last = Some(now);
        Some(suppressed)
    }
}

/// Names keys `{prefix}:{kind}:{<keyed hash of the subject>}` (see the module docs).
#[derive(Clone)]
pub struct KeyHasher {
    hasher: Hmac<Sha256>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHasher")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl KeyHasher {
    /// `secret`: at least [`MIN_KEY_SECRET_BYTES`]; every replica must use the same one, or they
    /// name the same subject differently.
    pub fn new(prefix: &str, secret: &[u8]) -> Result<Self, RedisSetupError> {
        if !valid_key_prefix(prefix) {
            return Err(RedisSetupError::InvalidKeyPrefix);
        }
        if secret.len() < MIN_KEY_SECRET_BYTES {
            return Err(RedisSetupError::ShortKeySecret);
        }
        let hasher =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| RedisSetupError::ShortKeySecret)?;
        Ok(Self {
            hasher,
            prefix: prefix.into(),
        })
    }

    /// The key of a subject made of `parts`; the kind is hashed too, so equal subjects of two
    /// kinds never share a hash, and each part is length-prefixed, so no two lists of parts do.
    pub fn key(&self, kind: &str, parts: &[&[u8]]) -> String {
        let mut mac = self.hasher.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let digest = mac.finalize().into_bytes();
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + 4 + 2 * HASH_BYTES);
        key.push_str(&self.prefix);
        key.push(':');
        key.push_str(kind);
        key.push_str(":{");
        for byte in &digest[..HASH_BYTES] {
            // Writing to a String cannot fail.
            let _ = write!(key, "{byte:02x}");
        }
        key.push('}');
        key
    }
}

fn valid_key_prefix(prefix: &str) -> bool {
    // A brace would change which part of the key Redis Cluster hashes.
    !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '{' && c != '}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes_cannot_move_the_hash_tag() {
        assert!(valid_key_prefix("proof-bff"));
        assert!(valid_key_prefix("app:prod"));
        for bad in ["", "a{b", "a}b", "a b", "a\nb"] {
            assert!(!valid_key_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_hash_tagged_and_keep_kinds_and_parts_apart() {
        let keys = KeyHasher::new("app", b"0123456789abcdef").unwrap();
        let key = keys.key("per_user", &[b"alice"]);
        assert!(key.starts_with("app:per_user:{") && key.ends_with('}'));
        assert_eq!(key.len(), "app:per_user:{}".len() + 32);
        assert!(!key.contains("alice"));
        assert_ne!(key, keys.key("per_user", &[b"bob"]));
        assert_ne!(keys.key("x", &[b"ab", b"c"]), keys.key("x", &[b"a", b"bc"]));
        let other_kind = keys.key("per_ip", &[b"alice"]);
        assert_ne!(key[key.len() - 34..], other_kind[other_kind.len() - 34..]);
        assert!(KeyHasher::new("app", b"short").is_err());
    }
}

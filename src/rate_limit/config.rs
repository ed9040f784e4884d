//! `[rate_limit]`: the limits and where their state lives, checked and built into the
//! [`RateLimits`] every route spends; with the Redis backend, also the [`SharedBackend`] that the
//! other state kept beside the limits (the idempotency store) is built on. The link is described,
//! not started: the application starts it.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::redis::RedisLimiter;
use super::{BackendErrorPolicy, RateLimitConfig, RateLimits};
use crate::config_checks::{ConfigError, named_setting, range, read_secret};
use crate::shared_redis::{KeyHasher, RedisLink, RedisSettings, RedisSetupError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct RateLimitSettings {
    pub backend: RateLimitBackend,
    #[cfg_attr(
        test,
        serde(serialize_with = "crate::config_checks::serialize_redacted")
    )]
    pub redis_url: SecretString,
    pub redis_url_file: String,
    pub redis_cluster: bool,
    pub redis_key_prefix: String,
    pub redis_timeout_ms: u64,
    pub per_user_burst: u32,
    pub per_user_per_minute: u32,
    pub per_ip_burst: u32,
    pub per_ip_per_minute: u32,
    pub on_backend_error: OnBackendError,
    pub status_per_user_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            backend: RateLimitBackend::Memory,
            redis_url: SecretString::from(""),
            redis_url_file: String::new(),
            redis_cluster: false,
            redis_key_prefix: "proof-bff".into(),
            redis_timeout_ms: 50,
            per_user_burst: 5,
            per_user_per_minute: 10,
            per_ip_burst: 20,
            per_ip_per_minute: 60,
            on_backend_error: OnBackendError::Deny,
            status_per_user_per_minute: 60,
        }
    }
}

named_setting! {
    /// `rate_limit.backend`: where the limits' state lives.
    RateLimitBackend { Memory = "memory", Redis = "redis" }
}

named_setting! {
    /// `rate_limit.on_backend_error`: what a request gets while the shared backend is unreachable.
    OnBackendError { Deny = "deny", Allow = "allow" }
}

/// The shared Redis, for the other state that lives beside the limits.
pub struct SharedBackend {
    pub link: Arc<RedisLink>,
    pub keys: KeyHasher,
    pub on_error: BackendErrorPolicy,
}

/// A Redis URL is a line; a file far larger than any is a wrong file.
const MAX_REDIS_URL_FILE_BYTES: u64 = 64 * 1024;
/// Below this even a Redis beside the service (a round trip of well under a millisecond, a
/// connection's handshake of a few) would often count as unreachable.
const MIN_REDIS_TIMEOUT_MS: u64 = 10;
const MAX_REDIS_TIMEOUT_MS: u64 = 60_000;

impl RateLimitSettings {
    /// The limits on their backend, and the shared backend when it is Redis. `key_secret` keys
    /// the names of everything kept in Redis.
    pub fn build(
        self,
        key_secret: &[u8],
    ) -> Result<(RateLimits, Option<SharedBackend>), ConfigError> {
        // Checked whatever the backend, so a URL prepared for the shared backend is known good
        // (and a secret set twice is caught) before the deployment depends on it.
        let file_given = !self.redis_url_file.trim().is_empty();
        let url_key = if file_given {
            "rate_limit.redis_url_file"
        } else {
            "rate_limit.redis_url"
        };
        let redis_url = read_secret(
            "rate_limit.redis_url",
            self.redis_url,
            "rate_limit.redis_url_file",
            &self.redis_url_file,
            MAX_REDIS_URL_FILE_BYTES,
        )?;
        if let Some(redis_url) = &redis_url {
            check_redis_url(redis_url).map_err(|problem| ConfigError::key(url_key, problem))?;
        }
        range(
            "rate_limit.redis_timeout_ms",
            self.redis_timeout_ms,
            MIN_REDIS_TIMEOUT_MS..=MAX_REDIS_TIMEOUT_MS,
            " (shorter, a healthy Redis would count as unreachable)",
        )?;
        for (key, value) in [
            ("rate_limit.per_user_burst", self.per_user_burst),
            ("rate_limit.per_user_per_minute", self.per_user_per_minute),
            ("rate_limit.per_ip_burst", self.per_ip_burst),
            ("rate_limit.per_ip_per_minute", self.per_ip_per_minute),
            (
                "rate_limit.status_per_user_per_minute",
                self.status_per_user_per_minute,
            ),
        ] {
            range(key, value, 1..=u32::MAX, "")?;
        }
        let quotas = RateLimitConfig {
            per_user_burst: self.per_user_burst,
            per_user_per_minute: self.per_user_per_minute,
            per_ip_burst: self.per_ip_burst,
            per_ip_per_minute: self.per_ip_per_minute,
            status_per_user_per_minute: self.status_per_user_per_minute,
        };
        if self.backend == RateLimitBackend::Memory {
            return Ok((RateLimits::memory(&quotas), None));
        }
        let url = redis_url.ok_or_else(|| {
            ConfigError::key(
                "rate_limit.redis_url",
                "is required when rate_limit.backend is \"redis\" (or rate_limit.redis_url_file)",
            )
        })?;
        let settings = RedisSettings {
            url: SecretString::from(url.expose_secret().trim()),
            cluster: self.redis_cluster,
            key_prefix: self.redis_key_prefix,
            timeout: Duration::from_millis(self.redis_timeout_ms),
        };
        // Built here, without starting or connecting, so check-config sees every fault start-up
        // would.
        let redis_error = |error| match error {
            RedisSetupError::InvalidUrl => {
                ConfigError::key(url_key, "must be redis://host[:port][/db] or rediss://…")
            }
            RedisSetupError::InvalidKeyPrefix => ConfigError::key(
                "rate_limit.redis_key_prefix",
                "must not be empty nor contain braces, spaces or control characters",
            ),
            RedisSetupError::ZeroTimeout => {
                ConfigError::key("rate_limit.redis_timeout_ms", "must be at least 1")
            }
            // The cause names the fault, never the URL or its password.
            RedisSetupError::Client { cause, .. } => {
                ConfigError::key(url_key, format!("is not usable: {cause}"))
            }
            error @ (RedisSetupError::ShortKeySecret | RedisSetupError::Thread(_)) => {
                ConfigError::key("rate_limit.backend", error)
            }
        };
        let keys = KeyHasher::new(&settings.key_prefix, key_secret).map_err(redis_error)?;
        let link = Arc::new(RedisLink::new(&settings).map_err(redis_error)?);
        let limiter = RedisLimiter::with_link(link.clone(), keys.clone(), &quotas);
        let on_error = match self.on_backend_error {
            OnBackendError::Deny => BackendErrorPolicy::Deny,
            OnBackendError::Allow => BackendErrorPolicy::Allow,
        };
        Ok((
            RateLimits::redis(limiter, on_error),
            Some(SharedBackend {
                link,
                keys,
                on_error,
            }),
        ))
    }
}

/// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. The problem never quotes
/// the URL: it is a secret as a whole, since it usually carries the password.
fn check_redis_url(redis_url: &SecretString) -> Result<(), String> {
    let url = url::Url::parse(redis_url.expose_secret().trim())
        .map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err("must be a redis:// or rediss:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host (redis://host:6379)".into());
    }
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() && path.parse::<u32>().is_err() {
        return Err("the path must be a database number (redis://host:6379/0)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must not carry a query or fragment (percent-encode / ? # @ in the password)".into(),
        );
    }
    Ok(())
}

//! `[status]`: the event streams' bounds and where Proof's webhook is received, checked and built
//! into the [`StatusConfig`] the status routes run on.

use std::time::Duration;

use serde::Deserialize;

use crate::config_checks::{ConfigError, range};

/// `[status]`: the transaction event streams and the webhook receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct StatusSettings {
    pub poll_interval_s: u64,
    pub max_streams_per_user: usize,
    pub max_streams: usize,
    pub max_stream_duration_s: u64,
    pub webhook_path: String,
    pub max_watchers: usize,
    pub confirm_interval_s: u64,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            poll_interval_s: 5,
            max_streams_per_user: 3,
            max_streams: 10_000,
            max_stream_duration_s: 3600,
            webhook_path: String::new(),
            max_watchers: 10_000,
            confirm_interval_s: 60,
        }
    }
}

/// The `[status]` settings, checked.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub poll_interval: Duration,
    pub max_streams_per_user: usize,
    pub max_streams: usize,
    pub max_stream_duration: Duration,
    /// Where Proof's webhook is received; `None`: no receiver.
    pub webhook_path: Option<String>,
    /// WebSockets to Proof open at once, one per watched transaction; zero: watchers only poll.
    pub max_watchers: usize,
    /// How often a transaction whose WebSocket is open is still read with a `GET`.
    pub confirm_interval: Duration,
}

const MAX_POLL_INTERVAL_S: u64 = 3600;
const MAX_CONFIRM_INTERVAL_S: u64 = 3600;
const MAX_STREAM_DURATION_S: u64 = 24 * 3600;
/// The webhook's path is its only secret: at least this many characters after the `/`.
const MIN_WEBHOOK_PATH_SECRET: usize = 16;

impl StatusSettings {
    pub fn build(self) -> Result<StatusConfig, ConfigError> {
        range(
            "status.poll_interval_s",
            self.poll_interval_s,
            1..=MAX_POLL_INTERVAL_S,
            "",
        )?;
        for (key, value) in [
            ("status.max_streams_per_user", self.max_streams_per_user),
            ("status.max_streams", self.max_streams),
        ] {
            range(key, value, 1..=usize::MAX, "")?;
        }
        range(
            "status.max_stream_duration_s",
            self.max_stream_duration_s,
            1..=MAX_STREAM_DURATION_S,
            "",
        )?;
        range(
            "status.confirm_interval_s",
            self.confirm_interval_s,
            1..=MAX_CONFIRM_INTERVAL_S,
            "",
        )?;
        let webhook_path = match self.webhook_path.trim() {
            "" => None,
            path => Some(webhook_path(path)?),
        };
        Ok(StatusConfig {
            poll_interval: Duration::from_secs(self.poll_interval_s),
            max_streams_per_user: self.max_streams_per_user,
            max_streams: self.max_streams,
            max_stream_duration: Duration::from_secs(self.max_stream_duration_s),
            webhook_path,
            max_watchers: self.max_watchers,
            confirm_interval: Duration::from_secs(self.confirm_interval_s),
        })
    }
}

/// A path of its own, long and plain; never quoted back, since it is a secret.
fn webhook_path(path: &str) -> Result<String, ConfigError> {
    const KEY: &str = "status.webhook_path";
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ConfigError::key(KEY, "must start with /"));
    };
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
        || rest
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(ConfigError::key(
            KEY,
            "must be a plain path: letters, digits, - _ . ~ between single slashes",
        ));
    }
    if rest.len() < MIN_WEBHOOK_PATH_SECRET {
        return Err(ConfigError::key(
            KEY,
            format!(
                "must be long and random: it is the webhook's only secret (at least {MIN_WEBHOOK_PATH_SECRET} characters after the first /)"
            ),
        ));
    }
    let first = rest.split('/').next().unwrap_or("");
    if matches!(
        first,
        "start-checkout" | "checkout" | "kyc-status" | "healthz" | "readyz" | "sandbox" | "metrics"
    ) {
        return Err(ConfigError::key(
            KEY,
            "must not lie under one of the service's own routes",
        ));
    }
    Ok(path.to_owned())
}

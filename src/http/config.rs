//! `[server]`: where the service listens and the bounds of its connections, checked and built into
//! the [`ServerConfig`] the application serves with.

use std::time::Duration;

use serde::Deserialize;

use crate::config_checks::{ConfigError, ListenAddress, range};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct ServerSettings {
    pub listen: String,
    pub workers: usize,
    pub shutdown_timeout_s: u64,
    pub drain_delay_s: u64,
    pub client_request_timeout_ms: u64,
    pub keep_alive_s: u64,
    pub max_connections: usize,
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_s: 30,
            drain_delay_s: 0,
            client_request_timeout_ms: 10000,
            keep_alive_s: 15,
            max_connections: 10000,
            max_body_bytes: 16384,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: ListenAddress,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    /// After SIGTERM: `/readyz` answers 503 while everything is still served, for this long.
    pub drain_delay: Duration,
    /// A request's headers and body must both arrive within this.
    pub client_request_timeout: Duration,
    /// Zero turns keep-alive off: every connection closes after its response.
    pub keep_alive: Duration,
    /// For the whole instance; split across the workers when the server starts.
    pub max_connections: usize,
    pub max_body_bytes: usize,
}

/// The HTTP server checks header deadlines against a clock it refreshes every 500 ms, so a
/// shorter timeout can end before the client had any time at all: every request would get 408.
const MIN_CLIENT_REQUEST_TIMEOUT_MS: u64 = 1000;
const MAX_CLIENT_REQUEST_TIMEOUT_MS: u64 = 3_600_000;
/// A drain must have time to finish a request in flight.
const MIN_SHUTDOWN_TIMEOUT_S: u64 = 1;
const MAX_KEEP_ALIVE_S: u64 = 3600;
const MAX_DRAIN_DELAY_S: u64 = 600;

impl ServerSettings {
    /// `server.listen`, for the checks of other sections that compare with it.
    pub const LISTEN_KEY: &str = "server.listen";

    /// `server.listen`, parsed: for the service, and for the commands and the sandbox that reach it.
    pub fn listen_address(&self) -> Result<ListenAddress, ConfigError> {
        ListenAddress::parse(&self.listen).map_err(|e| ConfigError::key(Self::LISTEN_KEY, e))
    }

    pub fn build(self) -> Result<ServerConfig, ConfigError> {
        let listen = self.listen_address()?;
        range(
            "server.max_body_bytes",
            self.max_body_bytes,
            1..=usize::MAX,
            "",
        )?;
        // Below the lower bound honest requests time out (even /healthz); the upper bounds keep
        // deadlines far from the clock's range.
        range(
            "server.client_request_timeout_ms",
            self.client_request_timeout_ms,
            MIN_CLIENT_REQUEST_TIMEOUT_MS..=MAX_CLIENT_REQUEST_TIMEOUT_MS,
            " (the server's clock has 500 ms granularity: a shorter timeout refuses honest requests with 408)",
        )?;
        range(
            "server.shutdown_timeout_s",
            self.shutdown_timeout_s,
            MIN_SHUTDOWN_TIMEOUT_S..=u64::MAX,
            ": a drain needs time to finish the requests in flight",
        )?;
        range(
            "server.keep_alive_s",
            self.keep_alive_s,
            0..=MAX_KEEP_ALIVE_S,
            " (0 turns keep-alive off)",
        )?;
        range(
            "server.drain_delay_s",
            self.drain_delay_s,
            0..=MAX_DRAIN_DELAY_S,
            "",
        )?;
        range(
            "server.max_connections",
            self.max_connections,
            1..=usize::MAX,
            "",
        )?;
        Ok(ServerConfig {
            listen,
            workers: self.workers,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_s),
            drain_delay: Duration::from_secs(self.drain_delay_s),
            client_request_timeout: Duration::from_millis(self.client_request_timeout_ms),
            keep_alive: Duration::from_secs(self.keep_alive_s),
            max_connections: self.max_connections,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

//! Every section checked and turned into the typed value the service runs on, before anything is
//! bound, called or started, so `check-config` catches every problem start-up could hit and
//! leaves nothing running. Each capability builds its own section; this only orders the builds
//! and hands one section's product to the next that needs it. Each problem is one line naming
//! the key; a secret or a URL's password is never quoted.

use super::{ConfigError, Settings};
use crate::browser::BrowserConfig;
use crate::checkout::CheckoutPolicy;
use crate::client_ip::ClientIpResolver;
use crate::config_checks::ListenAddress;
use crate::http::{ServerConfig, ServerSettings};
use crate::idempotency::IdempotencyStore;
use crate::proof::ProofConfig;
use crate::rate_limit::RateLimits;
use crate::session::{DevSession, SessionSource};
use crate::status::StatusConfig;
use crate::telemetry::{LogConfig, TracesConfig};

/// Everything the service runs on, checked; what runs in the background is described here and
/// started by the application.
#[derive(Debug)]
pub struct AppConfig {
    pub server: ServerConfig,
    pub proof: ProofConfig,
    pub browser: BrowserConfig,
    pub session: SessionSource,
    pub client_ip: ClientIpResolver,
    pub checkout: CheckoutPolicy,
    /// The limits with their backend, built (for Redis: not yet started, nor connected).
    pub rate_limit: RateLimits,
    /// Where `Idempotency-Key` answers and dedupe locks are kept: the rate limits' backend.
    pub idempotency: IdempotencyStore,
    pub status: StatusConfig,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<ListenAddress>,
    /// Where traces are exported, and how many; `None`: traces off.
    pub traces: Option<TracesConfig>,
    pub log: LogConfig,
    /// Set only by `--sandbox`, never from the file or the environment: it adds the dev login and
    /// the demo page.
    pub sandbox: Option<DevSession>,
}

impl Settings {
    /// Checks every key and builds the values the service runs on; starts nothing.
    pub fn validate(self) -> Result<AppConfig, ConfigError> {
        // Metrics are never served on the browser-facing address.
        let metrics_listen = self
            .metrics
            .build(&self.server.listen, ServerSettings::LISTEN_KEY)?;
        let traces = self.telemetry.build()?;
        // The shared backend's keys are derived from the client token.
        let (proof, rate_limit_key_secret) = self.proof.build()?;
        // Before the session: a session source may depend on which peers are trusted.
        let client_ip = self.client_ip.build()?;
        let (rate_limit, shared_backend) = self.rate_limit.build(&rate_limit_key_secret)?;
        // A request holds its idempotency key for Proof's whole deadline.
        let idempotency = self
            .checkout
            .build_idempotency(shared_backend, proof.endpoint.deadline())?;
        Ok(AppConfig {
            server: self.server.build()?,
            proof,
            browser: self.browser.build()?,
            session: self.session.build(&client_ip)?,
            client_ip,
            checkout: self.checkout.build_policy()?,
            rate_limit,
            idempotency,
            status: self.status.build()?,
            metrics_listen,
            traces,
            log: self.log.build()?,
            sandbox: None,
        })
    }
}

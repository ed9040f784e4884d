//! `[checkout]`: the partner's limits on what a checkout may ask for, built into the
//! [`CheckoutPolicy`], and the `Idempotency-Key` store's bounds, built into the
//! [`IdempotencyStore`] on the backend the rate limits chose.

use std::time::Duration;

use serde::Deserialize;

use super::policy::CheckoutPolicy;
use crate::config_checks::{ConfigError, range};
use crate::idempotency::{DEFAULT_MAX_BYTES, IdempotencyConfig, IdempotencyStore};
use crate::rate_limit::SharedBackend;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct CheckoutSettings {
    pub networks: Vec<String>,
    pub currencies: Vec<String>,
    pub types: Vec<String>,
    pub redirect_url_origins: Vec<String>,
    pub max_amount: String,
    pub idempotency_ttl_s: u64,
    pub idempotency_max_bytes: u64,
    pub dedupe_window_ms: u64,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        Self {
            networks: Vec::new(),
            currencies: Vec::new(),
            types: vec!["buy".into()],
            redirect_url_origins: Vec::new(),
            max_amount: String::new(),
            idempotency_ttl_s: 600,
            idempotency_max_bytes: DEFAULT_MAX_BYTES as u64,
            dedupe_window_ms: 0,
        }
    }
}

const MAX_IDEMPOTENCY_TTL_S: u64 = 7 * 24 * 3600;
const MAX_DEDUPE_WINDOW_MS: u64 = 3_600_000;
/// Less than a megabyte keeps too few answers to be worth having; over 16 GiB is a typo.
const IDEMPOTENCY_MAX_BYTES: std::ops::RangeInclusive<u64> = (1 << 20)..=(16 << 30);
/// A request holds its key for Proof's whole deadline and this much more: time to store the answer.
const LOCK_MARGIN: Duration = Duration::from_secs(2);

impl CheckoutSettings {
    /// Keys whose environment value is a comma-separated list.
    pub const LIST_KEYS: &[&str] = &[
        "checkout.networks",
        "checkout.currencies",
        "checkout.types",
        "checkout.redirect_url_origins",
    ];

    pub fn build_policy(&self) -> Result<CheckoutPolicy, ConfigError> {
        CheckoutPolicy::from_config(
            &self.networks,
            &self.currencies,
            &self.types,
            &self.redirect_url_origins,
            self.max_amount.trim(),
        )
        .map_err(ConfigError)
    }

    /// The store on the shared backend when the rate limits have one, in memory otherwise; its
    /// locks outlast `proof_deadline`, the longest a checkout can hold one.
    pub fn build_idempotency(
        &self,
        shared: Option<SharedBackend>,
        proof_deadline: Duration,
    ) -> Result<IdempotencyStore, ConfigError> {
        range(
            "checkout.idempotency_ttl_s",
            self.idempotency_ttl_s,
            1..=MAX_IDEMPOTENCY_TTL_S,
            "",
        )?;
        range(
            "checkout.dedupe_window_ms",
            self.dedupe_window_ms,
            0..=MAX_DEDUPE_WINDOW_MS,
            " (0 turns it off)",
        )?;
        range(
            "checkout.idempotency_max_bytes",
            self.idempotency_max_bytes,
            IDEMPOTENCY_MAX_BYTES,
            " (1 MiB to 16 GiB)",
        )?;
        let config = IdempotencyConfig {
            key_ttl: Duration::from_secs(self.idempotency_ttl_s),
            // In range, so it fits any 64-bit usize; a 32-bit one saturates, and the bound is then
            // what the address space allows.
            memory_max_bytes: usize::try_from(self.idempotency_max_bytes).unwrap_or(usize::MAX),
            dedupe_window: Duration::from_millis(self.dedupe_window_ms),
            lock_ttl: proof_deadline.saturating_add(LOCK_MARGIN),
        };
        Ok(match shared {
            None => IdempotencyStore::memory(config),
            Some(shared) => {
                IdempotencyStore::redis(config, shared.link, shared.keys, shared.on_error)
            }
        })
    }
}

//! What every worker shares to serve a checkout, built once at start-up.

use std::sync::Arc;

use super::CheckoutPolicy;
use crate::client_ip::ClientIpResolver;
use crate::http::Readiness;
use crate::idempotency::IdempotencyStore;
use crate::rate_limit::RateLimits;
use crate::session::SessionSource;

#[derive(Debug)]
pub struct CheckoutContext {
    pub session: SessionSource,
    pub client_ip: ClientIpResolver,
    pub checkout: CheckoutPolicy,
    pub max_body_bytes: usize,
    /// `proof.address`, sent only when Proof asked for it.
    pub address: Option<String>,
    pub readiness: Arc<Readiness>,
    pub rate_limits: Arc<RateLimits>,
    /// `Idempotency-Key` answers and the dedupe window.
    pub idempotency: IdempotencyStore,
}

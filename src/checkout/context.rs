//! What every worker shares to serve a checkout beyond admitting it (that is
//! [`AdmissionContext`](crate::admission::AdmissionContext)'s), built once at start-up.

use super::CheckoutPolicy;
use crate::idempotency::IdempotencyStore;

#[derive(Debug)]
pub struct CheckoutContext {
    pub checkout: CheckoutPolicy,
    /// `proof.address`, sent only when Proof asked for it.
    pub address: Option<String>,
    /// `Idempotency-Key` answers and the dedupe window.
    pub idempotency: IdempotencyStore,
}

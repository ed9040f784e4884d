//! Proof's webhook at `status.webhook_path`: a hint, never trusted. Proof signs nothing, so the
//! long random path is the only secret, and the payload may be forged or repeated: it is answered
//! 204 at once, checked for shape (at most 16 KiB, a JSON object with a transaction id and a
//! status), deduplicated on (id, status), and then only wakes the watcher of a transaction that
//! has open streams, which asks Proof itself before any browser sees a change.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::StatusContext;
use crate::admission::{ApiError, ValidationError, read_body};

/// Proof's payload is the poll answer: well under this.
pub const MAX_WEBHOOK_BYTES: usize = 16 * 1024;

/// How many (id, status) pairs are remembered for deduplication.
const REMEMBERED: usize = 10_000;

#[derive(serde::Deserialize)]
struct Hint {
    merchant_transaction_id: String,
    status: String,
}

pub async fn webhook(
    req: HttpRequest,
    payload: web::Payload,
    status: web::Data<StatusContext>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, MAX_WEBHOOK_BYTES).await?;
    let hint = serde_json::from_slice::<Hint>(&body).map_err(|_| {
        ApiError::Validation(ValidationError::body(
            "the webhook body must be a JSON object with merchant_transaction_id and status",
        ))
    })?;
    if status
        .seen_hints
        .first_time(&hint.merchant_transaction_id, &hint.status)
    {
        let watched = status.watchers.hint(&hint.merchant_transaction_id);
        tracing::info!(watched, "status webhook received");
    } else {
        tracing::debug!("status webhook repeated: ignored");
    }
    Ok(HttpResponse::build(StatusCode::NO_CONTENT).finish())
}

/// The (id, status) pairs seen lately, by hash, oldest forgotten first.
#[derive(Debug, Default)]
pub struct SeenHints {
    seen: Mutex<Remembered>,
}

/// A hash of each pair, and the order they came in.
#[derive(Debug, Default)]
struct Remembered {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl SeenHints {
    /// True the first time a pair is seen (among the last [`REMEMBERED`]).
    fn first_time(&self, id: &str, status: &str) -> bool {
        let mut hasher = Sha256::new();
        hasher.update((id.len() as u64).to_be_bytes());
        hasher.update(id);
        hasher.update(status);
        let key: [u8; 32] = hasher.finalize().into();
        // Both parts change together below, nothing in between can panic.
        let mut guard = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Remembered { set, order } = &mut *guard;
        if !set.insert(key) {
            return false;
        }
        order.push_back(key);
        if order.len() > REMEMBERED
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_counts_once_until_it_is_forgotten() {
        let seen = SeenHints::default();
        assert!(seen.first_time("tx", "processing"));
        assert!(!seen.first_time("tx", "processing"));
        assert!(seen.first_time("tx", "completed"));
        assert!(seen.first_time("tx2", "processing"));
        for i in 0..REMEMBERED {
            seen.first_time(&format!("other-{i}"), "pending");
        }
        assert!(
            seen.first_time("tx", "processing"),
            "forgotten after {REMEMBERED} others"
        );
    }
}

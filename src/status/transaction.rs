//! `GET /checkout/{merchant_transaction_id}`: Proof's `GET /widget/transactions/{id}`, byte for
//! byte, only when its `partner_user_id` is the session user's. An unknown id, a malformed one
//! (which never reaches Proof) and another user's all get the same 404.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{Reader, admit, relay};
use crate::admission::{AdmissionContext, ApiError};
use crate::browser::BrowserConfig;
use crate::proof::{ProofClient, UpstreamAnswer, transaction_owner};
use crate::telemetry::Caller;

/// Proof's ids are UUIDs; anything outside this is not one of them.
const MAX_TRANSACTION_ID_LEN: usize = 64;

pub async fn transaction_status(
    req: HttpRequest,
    browser: web::Data<BrowserConfig>,
    context: web::Data<AdmissionContext>,
    proof: web::Data<ProofClient>,
) -> Result<HttpResponse, ApiError> {
    let reader = admit(&req, &browser, &context).await?;
    let id = transaction_id(&req)?;
    let answer = owned_transaction(&proof, id, &reader, Caller::Request(&req)).await?;
    Ok(relay(answer, &reader, &context))
}

/// The route's transaction id, if it is one that may be asked of Proof.
pub(super) fn transaction_id(req: &HttpRequest) -> Result<&str, ApiError> {
    let id = req
        .match_info()
        .get("merchant_transaction_id")
        .unwrap_or("");
    if is_transaction_id(id) {
        Ok(id)
    } else {
        tracing::info!("transaction id malformed: not asked of Proof");
        Err(ApiError::NotFound)
    }
}

/// Proof's answer for the transaction when it is the reader's (or one of Proof's own 4xx other
/// than its 404); an unknown or another user's transaction is [`ApiError::NotFound`].
pub(super) async fn owned_transaction(
    proof: &ProofClient,
    id: &str,
    reader: &Reader,
    caller: Caller<'_>,
) -> Result<UpstreamAnswer, ApiError> {
    let answer = proof.transaction(id, caller).await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Err(ApiError::NotFound);
    }
    if answer.status.is_success() {
        let owner = transaction_owner(&answer.body);
        if owner.as_deref() != Some(reader.user.user_id.as_str()) {
            // Logged without either user id: the owner is another user's personal data.
            tracing::info!(
                owner_known = owner.is_some(),
                "transaction refused: not the session user's"
            );
            return Err(ApiError::NotFound);
        }
    }
    Ok(answer)
}

/// Letters, digits, `-` and `_`, at most 64: a UUID and the like, nothing that could mean
/// something else in a path.
fn is_transaction_id(id: &str) -> bool {
    (1..=MAX_TRANSACTION_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_reach_proof() {
        assert!(is_transaction_id("550e8400-e29b-41d4-a716-446655440000"));
        assert!(is_transaction_id("tx_1"));
        let too_long = "a".repeat(65);
        for bad in [
            "",
            "..",
            "a/b",
            "a b",
            "a%2Fb",
            "a?b",
            "tx.1",
            too_long.as_str(),
        ] {
            assert!(!is_transaction_id(bad), "{bad:?}");
        }
    }
}

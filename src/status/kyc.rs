//! `GET /kyc-status`: Proof's `GET /widget/users/{partner_user_id}/kyc-status` for the session
//! user, byte for byte; Proof's 404 for a user it does not know yet passes through as Proof's.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{admit, relay};
use crate::admission::{AdmissionContext, ApiError};
use crate::browser::BrowserConfig;
use crate::proof::ProofClient;
use crate::telemetry::Caller;

pub async fn kyc_status(
    req: HttpRequest,
    browser: web::Data<BrowserConfig>,
    context: web::Data<AdmissionContext>,
    proof: web::Data<ProofClient>,
) -> Result<HttpResponse, ApiError> {
    let reader = admit(&req, &browser, &context).await?;
    let answer = proof
        .kyc_status(&reader.user.user_id, Caller::Request(&req))
        .await?;
    Ok(relay(answer, &reader, &context))
}

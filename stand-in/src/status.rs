//! `GET /widget/transactions/{id}`, `GET /widget/users/{id}/kyc-status`, and unknown routes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::Shared;
use super::envelope;
use super::store::lock;
use super::time::{fiat_amount, iso8601_utc};

/// The poll response, fields in the documented order.
#[derive(Serialize)]
struct TransactionStatus<'a> {
    merchant_transaction_id: &'a str,
    partner_user_id: &'a str,
    #[serde(rename = "type")]
    checkout_type: &'a str,
    status: &'a str,
    currency: &'a str,
    network: &'a str,
    crypto_amount: &'a str,
    fiat_currency: &'a str,
    fiat_amount: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct KycStatusBody<'a> {
    partner_user_id: &'a str,
    status: &'a str,
}

pub(super) async fn transaction(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let id = req
        .match_info()
        .get("merchant_transaction_id")
        .unwrap_or("");
    let ledger = lock(&shared.ledger);
    let Some(transaction) = ledger.transaction(id) else {
        return envelope::not_found("transaction not found");
    };
    let (status, updated_at) =
        transaction.status_at(shared.config.clock.now(), shared.config.status_step);
    let body = serde_json::to_vec(&TransactionStatus {
        merchant_transaction_id: &transaction.id,
        partner_user_id: &transaction.partner_user_id,
        checkout_type: &transaction.checkout_type,
        status: status.as_str(),
        currency: &transaction.currency,
        network: &transaction.network,
        crypto_amount: &transaction.amount,
        fiat_currency: &shared.config.widget_config.fiat_currency,
        fiat_amount: fiat_amount(&transaction.amount),
        created_at: iso8601_utc(transaction.created_at),
        updated_at: iso8601_utc(updated_at),
    });
    drop(ledger);
    encoded(body)
}

pub(super) async fn kyc_status(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let partner_user_id = req.match_info().get("partner_user_id").unwrap_or("");
    let status = lock(&shared.ledger).kyc_status(partner_user_id, shared.config.clock.now());
    encoded(serde_json::to_vec(&KycStatusBody {
        partner_user_id,
        status: status.as_str(),
    }))
}

pub(super) async fn unknown_route() -> HttpResponse {
    envelope::not_found("no such route")
}

fn encoded(body: serde_json::Result<Vec<u8>>) -> HttpResponse {
    match body {
        Ok(body) => envelope::json_response(StatusCode::OK, body),
        Err(_) => envelope::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal_error",
            "response could not be encoded",
        ),
    }
}

//! `GET /widget/transactions/{id}`, `GET /widget/users/{id}/kyc-status`, and unknown routes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::envelope;
use super::store::{Status, Transaction, lock};
use super::time::{fiat_amount, iso8601_utc};
use super::{Shared, StandInConfig};

/// The poll response, fields in the documented order; the webhook sends it without
/// `partner_user_id`.
#[derive(Serialize)]
struct TransactionStatus<'a> {
    merchant_transaction_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partner_user_id: Option<&'a str>,
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

/// Who a transaction's JSON is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    /// `GET /widget/transactions/{id}`.
    Poll,
    /// The partner webhook: the poll answer without `partner_user_id`.
    Webhook,
}

/// The transaction's JSON as it stands in `status`, `updated_at` being when it entered it.
pub(super) fn transaction_json(
    transaction: &Transaction,
    status: Status,
    config: &StandInConfig,
    audience: Audience,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&TransactionStatus {
        merchant_transaction_id: &transaction.id,
        partner_user_id: match audience {
            Audience::Poll => Some(&transaction.partner_user_id),
            Audience::Webhook => None,
        },
        checkout_type: &transaction.checkout_type,
        status: status.as_str(),
        currency: &transaction.currency,
        network: &transaction.network,
        crypto_amount: &transaction.amount,
        fiat_currency: &config.widget_config.fiat_currency,
        fiat_amount: fiat_amount(&transaction.amount),
        created_at: iso8601_utc(transaction.created_at),
        updated_at: iso8601_utc(transaction.entered_at(status, config.status_step)),
    })
}

pub(super) async fn transaction(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let id = req
        .match_info()
        .get("merchant_transaction_id")
        .unwrap_or("");
    let config = &shared.config;
    let ledger = lock(&shared.ledger);
    let Some(transaction) = ledger.transaction(id) else {
        return envelope::not_found("transaction not found");
    };
    let status = transaction.status_at(config.clock.now(), config.status_step);
    let body = transaction_json(transaction, status, config, Audience::Poll);
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

//! `POST /widget/session`: validation in Proof's order, the test values, and the session body.

use std::net::IpAddr;
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Map, Value};

use super::access::REQUEST_ID;
use super::crypto::{self, SignedFields};
use super::envelope::{self, invalid_request};
use super::store::{Terminal, Transaction, lock};
use super::time::unix_seconds;
use super::{Shared, TestValue};

/// Request bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_ID_LEN: usize = 256;
const MAX_EMAIL_LEN: usize = 254;
const MAX_CODE_LEN: usize = 32;
const MAX_AMOUNT_DIGITS: usize = 18;
const MAX_URL_LEN: usize = 2048;
/// The `Retry-After` of the rate-limit test value, in seconds.
const RATE_LIMIT_RETRY_AFTER_S: &str = "30";

/// A validated session request.
#[derive(Debug)]
struct SessionRequest {
    partner_user_id: String,
    network: String,
    currency: String,
    amount: String,
    checkout_type: Option<String>,
    redirect_url: Option<String>,
    client_ip: Option<String>,
    address: Option<String>,
}

/// The session response, fields in the order of Proof's documented example.
#[derive(Serialize)]
struct SessionResponse<'a> {
    merchant_transaction_id: &'a str,
    widget_id: &'a str,
    address: &'a str,
    signature: &'a str,
    init_token: &'a str,
    init_token_type: &'static str,
    currency: &'a str,
    currencies: &'a [String],
    fix_currency: bool,
    network: &'a str,
    networks: &'a [String],
    fix_network: [&'a str; 1],
    amount: &'a str,
    fix_amount: bool,
    fiat_currency: &'a str,
    fiat_currencies: &'a [String],
    fix_fiat_currency: bool,
    fix_fiat_amount: bool,
    #[serde(rename = "type")]
    checkout_type: &'a str,
    lang: &'a str,
    theme: &'a str,
    redirect_url: &'a str,
}

pub(super) async fn create(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let body = match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return invalid_request("decode_error", "request body could not be read"),
        Err(_) => {
            return envelope::error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "body_too_large",
                "request body is too large",
            );
        }
    };
    let request = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    let config = &shared.config;
    if !config.currencies.contains(&request.currency) {
        return invalid_request(
            "currency_not_allowed",
            "currency is not enabled for this integration",
        );
    }
    let has_wallet = config
        .wallets
        .iter()
        .any(|(currency, network)| *currency == request.currency && *network == request.network);
    if !has_wallet {
        return envelope::error_response(
            StatusCode::BAD_REQUEST,
            "wallet_not_supported",
            "WALLET_NOT_SUPPORTED",
            "no active wallet for this currency and network",
        );
    }
    let checkout_type = request
        .checkout_type
        .as_deref()
        .unwrap_or(&config.widget_config.default_type);
    if checkout_type == "sell" && !config.sell_enabled {
        return invalid_request(
            "validation_error",
            "type: off-ramp (sell) is not enabled for this integration",
        );
    }

    let terminal = match TestValue::of(&request.amount) {
        None => Terminal::Completed,
        Some(TestValue::ProviderErrorOnce) => {
            if shared.first_attempt(attempt_key(&request.amount, &req, &body)) {
                return provider_error();
            }
            Terminal::Completed
        }
        Some(TestValue::ProviderError) => return provider_error(),
        Some(TestValue::DbErrorOnce) => {
            if shared.first_attempt(attempt_key(&request.amount, &req, &body)) {
                return db_error();
            }
            Terminal::Completed
        }
        Some(TestValue::DbError) => return db_error(),
        Some(TestValue::Slow) => {
            tokio::time::sleep(config.slow_answer).await;
            Terminal::Completed
        }
        Some(TestValue::Unauthorised) => return envelope::invalid_token(),
        Some(TestValue::Forbidden) => return envelope::forbidden_origin(),
        Some(TestValue::RateLimited) => return rate_limited(),
        Some(TestValue::EndsFailed) => Terminal::Failed,
        Some(TestValue::EndsCancelled) => Terminal::Cancelled,
    };
    session(&shared, &request, checkout_type, terminal)
}

/// Builds the session, records its transaction, and answers 200.
fn session(
    shared: &Shared,
    request: &SessionRequest,
    checkout_type: &str,
    terminal: Terminal,
) -> HttpResponse {
    let config = &shared.config;
    let widget = &config.widget_config;
    let merchant_transaction_id = uuid::Uuid::new_v4().to_string();
    let address = match &request.address {
        Some(address) => address.clone(),
        None => crypto::derived_address(
            &config.signing_key,
            &request.partner_user_id,
            &request.network,
        ),
    };
    let signature = crypto::session_signature(
        &config.signing_key,
        &SignedFields {
            merchant_transaction_id: &merchant_transaction_id,
            partner_user_id: &request.partner_user_id,
            network: &request.network,
            currency: &request.currency,
            amount: &request.amount,
            checkout_type,
            client_ip: request.client_ip.as_deref().unwrap_or(""),
            address: &address,
        },
    );
    let created_at = SystemTime::now();
    let init_token = crypto::init_token(
        &config.signing_key,
        &merchant_transaction_id,
        &request.partner_user_id,
        unix_seconds(created_at),
    );
    let body = serde_json::to_vec(&SessionResponse {
        merchant_transaction_id: &merchant_transaction_id,
        widget_id: &widget.widget_id,
        address: &address,
        signature: &signature,
        init_token: &init_token,
        init_token_type: "sdk_partner_authorization",
        currency: &request.currency,
        currencies: &widget.currencies,
        fix_currency: true,
        network: &request.network,
        networks: &widget.networks,
        fix_network: [&request.network],
        amount: &request.amount,
        fix_amount: true,
        fiat_currency: &widget.fiat_currency,
        fiat_currencies: &widget.fiat_currencies,
        fix_fiat_currency: false,
        fix_fiat_amount: true,
        checkout_type,
        lang: &widget.lang,
        theme: &widget.theme,
        redirect_url: request
            .redirect_url
            .as_deref()
            .unwrap_or(&widget.redirect_url),
    });
    let body = match body {
        Ok(body) => body,
        Err(_) => {
            return envelope::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "token_error",
                "session could not be encoded",
            );
        }
    };
    lock(&shared.ledger).record(
        Transaction {
            id: merchant_transaction_id.clone(),
            partner_user_id: request.partner_user_id.clone(),
            checkout_type: checkout_type.to_owned(),
            currency: request.currency.clone(),
            network: request.network.clone(),
            amount: request.amount.clone(),
            created: config.clock.now(),
            created_at,
            terminal,
        },
        config.status_step,
        // The webhook hears of every transaction; without one, only watched ones are followed.
        config.webhook_url.is_some(),
    );
    tracing::debug!(%merchant_transaction_id, "proof stand-in created a session");
    envelope::json_response(StatusCode::OK, body)
}

/// Which request a retry test value's first attempt belongs to: the caller's `X-Request-Id`, or
/// the body's SHA-256 when there is none.
fn attempt_key(amount: &str, req: &HttpRequest, body: &[u8]) -> String {
    match req.headers().get(REQUEST_ID) {
        Some(id) => format!("{amount}|id|{}", String::from_utf8_lossy(id.as_bytes())),
        None => format!("{amount}|body|{}", crypto::sha256_hex(body)),
    }
}

fn provider_error() -> HttpResponse {
    envelope::error_response(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "provider_error",
        "an external provider returned an error",
    )
}

fn db_error() -> HttpResponse {
    envelope::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "db_error",
        "database error",
    )
}

fn rate_limited() -> HttpResponse {
    let mut response = envelope::error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "rate_limit_exceeded",
        "too many requests",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RATE_LIMIT_RETRY_AFTER_S),
    );
    response
}

/// Parses and validates the body: JSON object, then the required fields in order, then the
/// optional ones. Unknown fields are ignored.
fn parse(body: &[u8]) -> Result<SessionRequest, HttpResponse> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid_request(
            "decode_error",
            "request body must be a JSON object",
        ));
    };
    let partner_user_id = required(&fields, "partner_user_id")?;
    check(
        "partner_user_id",
        plain_text(&partner_user_id, MAX_ID_LEN),
        "a non-empty string of at most 256 bytes without control characters",
    )?;
    let user_email = required(&fields, "user_email")?;
    check("user_email", is_email(&user_email), "an email address")?;
    let network = required(&fields, "network")?;
    check(
        "network",
        is_code(&network),
        "1-32 letters, digits, '-' or '_'",
    )?;
    let currency = required(&fields, "currency")?;
    check(
        "currency",
        is_code(&currency),
        "1-32 letters, digits, '-' or '_'",
    )?;
    let amount = required(&fields, "amount")?;
    check(
        "amount",
        is_positive_decimal(&amount),
        "a positive decimal string",
    )?;

    let checkout_type = optional(&fields, "type")?;
    if let Some(value) = &checkout_type {
        check(
            "type",
            value == "buy" || value == "sell",
            "\"buy\" or \"sell\"",
        )?;
    }
    let redirect_url = optional(&fields, "redirect_url")?;
    if let Some(value) = &redirect_url {
        check(
            "redirect_url",
            is_http_url(value),
            "an absolute http(s) URL",
        )?;
    }
    let client_ip = optional(&fields, "client_ip")?;
    if let Some(value) = &client_ip {
        check(
            "client_ip",
            value.parse::<IpAddr>().is_ok(),
            "an IPv4 or IPv6 address",
        )?;
    }
    let address = optional(&fields, "address")?;
    if let Some(value) = &address {
        check(
            "address",
            plain_text(value, MAX_ID_LEN),
            "a non-empty string of at most 256 bytes without control characters",
        )?;
    }
    Ok(SessionRequest {
        partner_user_id,
        network,
        currency,
        amount,
        checkout_type,
        redirect_url,
        client_ip,
        address,
    })
}

/// A required string field: absent or null is `missing_param`, another JSON type is
/// `validation_error`.
fn required(fields: &Map<String, Value>, name: &str) -> Result<String, HttpResponse> {
    match optional(fields, name)? {
        Some(value) => Ok(value),
        None => Err(invalid_request(
            "missing_param",
            &format!("missing required parameter: {name}"),
        )),
    }
}

/// An optional string field: absent or null is `None`, another JSON type is `validation_error`.
fn optional(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, HttpResponse> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(invalid_request(
            "validation_error",
            &format!("invalid parameter {name}: must be a string"),
        )),
    }
}

fn check(name: &str, valid: bool, expected: &str) -> Result<(), HttpResponse> {
    if valid {
        Ok(())
    } else {
        Err(invalid_request(
            "validation_error",
            &format!("invalid parameter {name}: must be {expected}"),
        ))
    }
}

fn plain_text(value: &str, max_len: usize) -> bool {
    !value.is_empty() && value.len() <= max_len && !value.chars().any(char::is_control)
}

fn is_email(value: &str) -> bool {
    plain_text(value, MAX_EMAIL_LEN)
        && !value.chars().any(char::is_whitespace)
        && value
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

fn is_code(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CODE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// ASCII digits with at most one dot (digits on both sides), at most 18 digits on each side, and
/// not zero.
fn is_positive_decimal(value: &str) -> bool {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let digits = |part: &str| {
        !part.is_empty()
            && part.len() <= MAX_AMOUNT_DIGITS
            && part.bytes().all(|b| b.is_ascii_digit())
    };
    digits(whole)
        && fraction.is_none_or(digits)
        && value.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

fn is_http_url(value: &str) -> bool {
    value.len() <= MAX_URL_LEN
        && url::Url::parse(value).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive_decimal_strings() {
        for valid in ["100", "99.50", "0.01", "1.02", "000.5"] {
            assert!(is_positive_decimal(valid), "{valid}");
        }
        for invalid in [
            "",
            "0",
            "0.00",
            "-1",
            "+1",
            "1e3",
            "1.",
            ".5",
            "1.2.3",
            " 1",
            "1,5",
            "١",
            "1234567890123456789",
        ] {
            assert!(!is_positive_decimal(invalid), "{invalid}");
        }
    }

    #[test]
    fn redirect_urls_must_be_absolute_http_urls() {
        assert!(is_http_url("https://app.example.com/done"));
        assert!(is_http_url("http://127.0.0.1:8080/x"));
        assert!(!is_http_url("javascript:alert(1)"));
        assert!(!is_http_url("/done"));
        assert!(!is_http_url("ftp://example.com"));
    }
}

//! Proof's error envelope, `{"error","code","message"}`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use serde::Serialize;

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    code: &'a str,
    message: &'a str,
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(body)
}

pub(super) fn error_response(
    status: StatusCode,
    error: &str,
    code: &str,
    message: &str,
) -> HttpResponse {
    let body = serde_json::to_vec(&Envelope {
        error,
        code,
        message,
    })
    .unwrap_or_else(|_| {
        br#"{"error":"internal_error","code":"internal_error","message":"internal error"}"#.to_vec()
    });
    json_response(status, body)
}

pub(super) fn invalid_request(code: &str, message: &str) -> HttpResponse {
    error_response(StatusCode::BAD_REQUEST, "invalid_request", code, message)
}

pub(super) fn missing_token() -> HttpResponse {
    error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        "missing_token",
        "Authorization: Bearer <client_token> is required",
    )
}

pub(super) fn invalid_token() -> HttpResponse {
    error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        "invalid_token",
        "client_token is invalid or inactive",
    )
}

pub(super) fn forbidden_origin() -> HttpResponse {
    error_response(
        StatusCode::FORBIDDEN,
        "forbidden",
        "forbidden_origin",
        "request origin is not on the allowlist",
    )
}

pub(super) fn not_found(message: &str) -> HttpResponse {
    error_response(StatusCode::NOT_FOUND, "not_found", "not_found", message)
}

/// 503 for a WebSocket upgrade the stand-in will not take; the caller falls back to polling.
pub(super) fn websocket_unavailable(message: &str) -> HttpResponse {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "websocket_unavailable",
        message,
    )
}

//! The JSON error envelope every error answer uses: Proof's own shape,
//! `{"error": "...", "code": "...", "message": "..."}`, so a frontend handles one shape.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use serde::Serialize;

use crate::telemetry::ErrorCode;

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    code: &'a str,
    message: &'a str,
}

/// Builds an error response in the envelope.
pub fn envelope_response(
    status: StatusCode,
    error: &str,
    code: &'static str,
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
    let mut response = HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body);
    // Counted and logged by code when the request ends.
    response.extensions_mut().insert(ErrorCode(code));
    response
}

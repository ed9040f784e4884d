//! Answers for what no route serves: an unknown path, a method a route does not take.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use super::envelope_response;

/// Unknown paths get the same envelope as every other error.
pub async fn not_found() -> HttpResponse {
    envelope_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "not_found",
        "no such route",
    )
}

pub async fn method_not_allowed() -> HttpResponse {
    let mut response = envelope_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method_not_allowed",
        "this route does not accept that method",
    );
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static("POST, OPTIONS"),
    );
    response
}

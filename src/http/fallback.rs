//! Answers for what no route serves: an unknown path, a method a route does not take.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};

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

/// A method the path does not take; `allow` lists the ones it does (RFC 9110: a 405 carries them).
pub fn method_not_allowed(allow: HeaderValue) -> HttpResponse {
    let mut response = envelope_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method_not_allowed",
        "this route does not accept that method",
    );
    response.headers_mut().insert(header::ALLOW, allow);
    response
}

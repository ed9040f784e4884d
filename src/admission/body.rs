//! A request's body, read within bounds: its size (declared or actual) and its time; or read and
//! dropped, for a request refused before its body was needed.

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::{ApiError, ValidationError};
use crate::http::connection::{client_left, is_request_timeout};

/// Reads at most `limit` bytes; a declared or actual larger body is refused without buffering it.
/// The payload ends with a timeout error once the request's time is up (see `RequestBodyBound`).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::BodyTooLarge { limit };
    let declared = declared_length(req);
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| match error {
            PayloadError::Overflow => ApiError::BodyTooLarge { limit },
            error if is_request_timeout(&error) => ApiError::RequestTimeout,
            // The connection closed (or broke) before the body's end: the client went away.
            PayloadError::Incomplete(_) if client_left(req) => ApiError::ClientClosed,
            // A broken chunked encoding or a body cut short is the client's fault, not size.
            _ => ApiError::Validation(ValidationError::body("the request body could not be read")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads and drops the body of a request refused before its body was needed, up to `limit` bytes
/// and within the request's time, so that the connection can serve the client's next request.
/// Nothing is kept; a body over `limit`, cut short or too slow simply ends the reading, and the
/// server then closes the connection after the answer, as it does for any request whose body was
/// left unread.
pub async fn discard_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) {
    let declared = declared_length(req);
    if declared.is_some_and(|len| len > limit) {
        return;
    }
    let mut read = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        read += chunk.len();
        if read > limit {
            return;
        }
    }
}

/// The body's length as the request declares it (`Content-Length`), if it does.
fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

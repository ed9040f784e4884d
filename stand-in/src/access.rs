//! What every request goes through: the request id, the Bearer token, the Origin, and the headers
//! every answer carries.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;

use super::Shared;
use super::envelope;

pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A caller's `X-Request-Id` longer than this, or with characters other than visible ASCII, is
/// replaced by a fresh one.
const MAX_REQUEST_ID_LEN: usize = 200;

/// Checks the token, then the Origin, then runs the route; every answer gets `X-Request-Id` and,
/// unless it upgrades to a WebSocket, `Content-Type: application/json`.
pub(super) async fn gate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let request_id = request_id(req.request());
    let refusal = match req.app_data::<web::Data<Shared>>() {
        Some(shared) => check_access(req.request(), shared).err(),
        None => Some(envelope::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal_error",
            "stand-in state missing",
        )),
    };
    let mut response = match refusal {
        Some(refusal) => {
            tracing::debug!(
                path = req.path(),
                status = refusal.status().as_u16(),
                "proof stand-in refused a request"
            );
            req.into_response(refusal).map_into_right_body()
        }
        // The routes answer every failure themselves; an `Err` here can only come from actix.
        None => next.call(req).await?.map_into_left_body(),
    };
    let switching_protocols = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id);
    // An upgraded connection carries WebSocket frames, not a JSON body.
    if !switching_protocols {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(response)
}

/// The caller's `X-Request-Id` when it is sane, else a fresh UUID.
fn request_id(req: &HttpRequest) -> HeaderValue {
    req.headers()
        .get(REQUEST_ID)
        .filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID_LEN
                && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
}

fn check_access(req: &HttpRequest, shared: &Shared) -> Result<(), HttpResponse> {
    let Some(authorization) = req.headers().get(header::AUTHORIZATION) else {
        return Err(envelope::missing_token());
    };
    let presented = authorization
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some("") => return Err(envelope::missing_token()),
        Some(token)
            if super::crypto::token_matches(
                &shared.config.signing_key,
                token,
                shared.config.client_token.expose_secret(),
            ) => {}
        _ => return Err(envelope::invalid_token()),
    }
    let origin_registered = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .is_some_and(|origin| {
            shared
                .config
                .registered_origins
                .iter()
                .any(|registered| registered == origin)
        });
    if origin_registered {
        Ok(())
    } else {
        Err(envelope::forbidden_origin())
    }
}

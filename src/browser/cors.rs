//! CORS for the partner's own origins, and the headers every answer carries.
//!
//! A browser only lets the partner's script read an answer (a 401 or a 429 included) when the CORS
//! headers are on it, so they are added to every answer to an allowed origin, errors included.
//! Nothing is granted to any other origin, and never `*`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, web};

use super::{BrowserConfig, CallerOrigin};
use crate::http::envelope_response;

const ALLOWED_METHODS: &str = "POST";
const ALLOWED_REQUEST_HEADERS: [&str; 4] =
    ["content-type", "x-csrf", "x-request-id", "idempotency-key"];
const ALLOWED_HEADERS_VALUE: &str = "Content-Type, X-CSRF, X-Request-Id, Idempotency-Key";
const EXPOSED_HEADERS: &str =
    "Retry-After, X-Request-Id, RateLimit, RateLimit-Policy, Idempotent-Replayed";
/// How long a browser may cache a granted preflight.
const PREFLIGHT_MAX_AGE_S: &str = "600";

/// Adds the CORS grant (for allowed origins) and the hardening headers to every response.
pub async fn browser_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let allowed_origin = req
        .app_data::<web::Data<BrowserConfig>>()
        .and_then(|browser| allowed_origin(req.headers(), browser));
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    if let Some(origin) = allowed_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// The request's single `Origin`, when it is one of the partner's.
fn allowed_origin(headers: &HeaderMap, browser: &BrowserConfig) -> Option<HeaderValue> {
    match browser.allowed_origins.judge(headers) {
        CallerOrigin::Allowed(origin) => Some(origin.clone()),
        CallerOrigin::Missing | CallerOrigin::Foreign => None,
    }
}

/// `OPTIONS /start-checkout`: granted only to an allowed origin asking for what the route needs.
/// It touches neither the session nor the rate limits.
pub async fn preflight(req: HttpRequest, browser: web::Data<BrowserConfig>) -> HttpResponse {
    let headers = req.headers();
    let origin_allowed = allowed_origin(headers, &browser).is_some();
    let method_allowed = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_some_and(|m| m.as_bytes() == Method::POST.as_str().as_bytes());
    let headers_allowed = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .all(|line| {
            line.to_str().is_ok_and(|line| {
                line.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .all(|name| {
                        ALLOWED_REQUEST_HEADERS
                            .iter()
                            .any(|allowed| allowed.eq_ignore_ascii_case(name))
                    })
            })
        });
    if !origin_allowed {
        return envelope_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "forbidden_origin",
            "the request's Origin is not allowed to call this service",
        );
    }
    if !(method_allowed && headers_allowed) {
        return envelope_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cors_request_not_allowed",
            "only POST with Content-Type, X-CSRF, X-Request-Id and Idempotency-Key headers is allowed",
        );
    }
    HttpResponse::NoContent()
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS_VALUE),
        ))
        .insert_header((
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_S),
        ))
        .finish()
}

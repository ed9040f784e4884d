//! The sandbox's own routes: the demo page and its assets, and the dev login. They are registered
//! only in sandbox mode; anywhere else these paths are 404.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::admission::{ApiError, discard_body, read_body};
use crate::browser::{BrowserConfig, check_caller};
use crate::http::envelope_response;
use crate::session::DevSession;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/demo.js");
const STYLE: &str = include_str!("assets/demo.css");
/// The browser client partners use (`clients/js`), as compiled and committed there: the demo page
/// runs exactly what a partner installs.
const CLIENT: &str = include_str!("../../clients/js/dist/index.js");

/// Only our own script and style, no inline code, no framing.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub async fn demo_page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(PAGE)
}

pub async fn demo_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SCRIPT)
}

pub async fn demo_client() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(CLIENT)
}

pub async fn demo_css() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(STYLE)
}

/// A user id and an email of at most 256 characters each, as JSON, fit well within this; anything
/// larger is refused in the envelope before it is buffered.
const LOGIN_MAX_BODY_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    user_id: String,
    email: String,
}

/// `POST /sandbox/login {"user_id","email"}`: sets a dev session cookie, as the partner's own login
/// would. The same Origin check as the checkout applies.
pub async fn login(
    req: HttpRequest,
    payload: web::Payload,
    browser: web::Data<BrowserConfig>,
    session: web::Data<DevSession>,
) -> Result<HttpResponse, ApiError> {
    if let Err(refused) = check_caller(&req, &browser) {
        // Read and dropped, so the connection can serve the page's next request.
        discard_body(&req, payload, LOGIN_MAX_BODY_BYTES).await;
        return Err(refused.into());
    }
    let body = read_body(&req, payload, LOGIN_MAX_BODY_BYTES).await?;
    let Ok(login) = serde_json::from_slice::<LoginRequest>(&body) else {
        return Ok(envelope_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "validation_error",
            "the body must be {\"user_id\": \"...\", \"email\": \"...\"}",
        ));
    };
    let token = match session.sign(login.user_id.trim(), login.email.trim()) {
        Ok(token) => token,
        Err(problem) => {
            return Ok(envelope_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "validation_error",
                &problem,
            ));
        }
    };
    let cookie = Cookie::build(session.cookie.clone(), token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(session.ttl_s).unwrap_or(i64::MAX),
        ))
        .finish();
    let body = serde_json::json!({ "user_id": login.user_id.trim() }).to_string();
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .cookie(cookie)
        .body(body))
}

//! CSRF defence for the cookie-carrying POSTs: they must come from one of the partner's own pages.
//!
//! The `Origin` header is the check (browsers set it on every cross-origin and same-origin POST and
//! scripts cannot forge it); `Sec-Fetch-Site` backs it up when `Origin` may be absent; the optional
//! `X-CSRF: 1` header forces a CORS preflight for anything not sent by the partner's script.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::configuration::BrowserConfig;
use crate::error::CheckoutError;

pub fn check_caller(req: &HttpRequest, browser: &BrowserConfig) -> Result<(), CheckoutError> {
    let headers = req.headers();
    let mut origins = headers.get_all(header::ORIGIN);
    match (origins.next(), origins.next()) {
        (Some(origin), None) if browser.allowed_origins.allows(origin.as_bytes()) => {}
        // Server-to-server callers send neither Origin nor Sec-Fetch-Site; a browser that
        // somehow omits Origin still says where the request comes from.
        (None, _) if browser.allow_missing_origin && !is_cross_site_browser_request(req) => {}
        _ => return Err(CheckoutError::ForbiddenOrigin),
    }
    if browser.require_csrf_header
        && headers
            .get("x-csrf")
            .is_none_or(|value| value.as_bytes() != b"1")
    {
        return Err(CheckoutError::CsrfHeaderMissing);
    }
    Ok(())
}

fn is_cross_site_browser_request(req: &HttpRequest) -> bool {
    req.headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() != b"same-origin" && site.as_bytes() != b"none")
}
